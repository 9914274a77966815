//! `tarn standalone`: a supervisor of child processes — coordinator, one
//! interactive executor (or `--interactive-executors`), one job executor,
//! gateway — so each role runs as it does in a cluster and a crash in one
//! is visible, not hidden.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// Flags of `tarn standalone`.
#[derive(clap::Args)]
pub struct Args {
    /// Lake root (directory or URL); the demo workspace is created in it
    /// when missing.
    #[arg(long, default_value = "./lake")]
    lake: String,
    /// Arrow Flight SQL address.
    #[arg(long, default_value = "127.0.0.1:50060")]
    flight_addr: String,
    /// HTTP address (/healthz, /readyz, REST /v1/...).
    #[arg(long, default_value = "127.0.0.1:8060")]
    http_addr: String,
    /// Coordinator address; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    coordinator_addr: String,
    /// Coordinator metrics address (/metrics); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    metrics_addr: String,
    /// Folder of the coordinator's state (leases, job queue).
    #[arg(long, default_value = "./tarn-state")]
    state_dir: String,
    /// vCores each interactive executor offers: the interactive pool's
    /// capacity is min(760, executors × this). Task slots, so more than the
    /// machine's cores oversubscribes it (and shrinks each task's memory
    /// share).
    #[arg(long, default_value_t = 32)]
    interactive_vcores: u32,
    /// Interactive executors to start, each offering --interactive-vcores.
    /// More than one lets a lease spread over executors on one host (its
    /// reads then run as Ballista stages with shuffles between the
    /// executors), to try or measure the distributed path.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    interactive_executors: u32,
    /// vCores the job executor offers (the job pool's capacity is
    /// min(240, this)).
    #[arg(long, default_value_t = 8)]
    job_vcores: u32,
    /// vCores a session leases when its client asks for none (0: the
    /// coordinator's default size, small = 2).
    #[arg(long, default_value_t = 0)]
    session_vcores: u32,
    /// Size of the demo data generated when the demo workspace is missing.
    #[arg(long, default_value_t = 1.0)]
    demo_scale: f64,
    /// Do not create the demo workspace.
    #[arg(long)]
    no_demo: bool,
    /// `dev`: requests without credentials run as user `anonymous` (and a
    /// token is printed for trying tokens); `token`: every request needs a
    /// signed token. Default: `dev`, unless the config file or
    /// TARN_GATEWAY__AUTH says otherwise.
    #[arg(long)]
    auth: Option<String>,
    /// Token signing key; created when missing (default:
    /// `<state-dir>/gateway.key`).
    #[arg(long)]
    auth_key_file: Option<String>,
    /// User the printed token names.
    #[arg(long, default_value = "analyst")]
    token_user: String,
    /// Seconds to wait for readiness before giving up.
    #[arg(long, default_value_t = 60)]
    ready_timeout: u64,
}

/// Writes the demo workspace into `lake`.
pub async fn generate_demo(
    lake: &str,
    opts: &tarn_demo::DemoOptions,
) -> anyhow::Result<tarn_demo::DemoSummary> {
    let root = tarn_lake::parse_root(lake)?;
    let ws = root.join("demo/").context("demo workspace URL")?;
    let started = Instant::now();
    let summary = tarn_demo::generate(&ws, &HashMap::new(), opts).await?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, workspace = %ws, "demo lake written");
    Ok(summary)
}

fn demo_exists(lake: &str) -> bool {
    match tarn_lake::parse_root(lake) {
        Ok(root) if root.scheme() == "file" => root
            .to_file_path()
            .map(|p| {
                p.join("demo")
                    .join("SigninLogs")
                    .join("_delta_log")
                    .is_dir()
            })
            .unwrap_or(false),
        // Remote lakes are never seeded implicitly.
        _ => true,
    }
}

struct Children(Vec<(&'static str, Child)>);

impl Children {
    async fn spawn(
        &mut self,
        name: &'static str,
        args: &[String],
        file: Option<&Path>,
    ) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the tarn binary")?;
        let mut cmd = Command::new(exe);
        if let Some(f) = file {
            cmd.arg("--config").arg(f);
        }
        cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
        // Own process group: a terminal's Ctrl-C reaches only the
        // supervisor, which then stops the roles in order.
        cmd.process_group(0);
        // Children die with the supervisor, even on SIGKILL.
        #[cfg(target_os = "linux")]
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        self.0.push((name, child));
        Ok(())
    }

    /// Stops the children newest first — gateway, executors, coordinator —
    /// each SIGTERMed and awaited before the next, so executors can still
    /// tell the coordinator they are leaving. SIGKILL after `grace` each.
    async fn stop(&mut self, grace: Duration) {
        for (name, child) in self.0.iter_mut().rev() {
            if let Some(pid) = child.id() {
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
            // Each role gets the whole grace period: a slow gateway drain
            // must not rob the executors of their chance to deregister.
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                tracing::warn!(role = *name, "did not stop in time; killing");
                let _ = child.kill().await;
            }
        }
    }

    /// Resolves when any child exits.
    async fn any_exit(&mut self) -> (&'static str, std::io::Result<std::process::ExitStatus>) {
        let futs = self.0.iter_mut().map(|(n, c)| {
            let n = *n;
            Box::pin(async move { (n, c.wait().await) })
        });
        futures_select_all(futs).await
    }
}

async fn futures_select_all<F, T>(futs: impl Iterator<Item = std::pin::Pin<Box<F>>>) -> T
where
    F: std::future::Future<Output = T>,
{
    let mut futs: Vec<_> = futs.collect();
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The gateway is ready with one interactive executor; standalone also
/// waits for the others and its job executor, so "ready" means every role
/// is up.
async fn both_pools_up(coordinator: &str, interactive: u32) -> bool {
    let Ok(mut c) = tarn_proto::connect_coordinator(coordinator).await else {
        return false;
    };
    c.health(tarn_proto::HealthRequest {
        header: Some(tarn_proto::header()),
    })
    .await
    .map(|h| {
        let h = h.into_inner();
        h.interactive_executors >= interactive && h.job_executors > 0
    })
    .unwrap_or(false)
}

async fn http_status(addr: &str, path: &str) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(2), http_status_once(addr, path))
        .await
        .ok()?
}

async fn http_status_once(addr: &str, path: &str) -> Option<u16> {
    tarn_common::http::request(addr, "GET", path, "")
        .await
        .ok()
        .map(|(status, _)| status)
}

/// Runs the supervisor until Ctrl-C or a child's death.
pub async fn run(args: Args, file: Option<&Path>) -> anyhow::Result<()> {
    let started = Instant::now();
    let shutdown = tarn_common::shutdown::install_signal_handlers();
    let root = tarn_lake::parse_root(&args.lake)?;
    if !args.no_demo && !demo_exists(&args.lake) {
        tracing::info!(lake = %root, "creating the demo workspace");
        let opts = tarn_demo::DemoOptions {
            scale: args.demo_scale,
            ..Default::default()
        };
        generate_demo(&args.lake, &opts).await?;
    }
    let lake = root.to_string();

    let coordinator = if args.coordinator_addr.ends_with(":0") {
        let host = args.coordinator_addr.trim_end_matches(":0");
        let port = tarn_executor::free_port(host)?;
        format!("{host}:{port}")
    } else {
        args.coordinator_addr.clone()
    };

    let metrics = if args.metrics_addr.ends_with(":0") {
        let host = args.metrics_addr.trim_end_matches(":0");
        let port = tarn_executor::free_port(host)?;
        format!("{host}:{port}")
    } else {
        args.metrics_addr.clone()
    };

    // Dev mode unless asked otherwise — by flag, or by the gateway's own
    // configuration (file or environment), which a default must not override.
    let auth = match &args.auth {
        Some(a) => a.clone(),
        None => {
            let configured: tarn_gateway::GatewayOptions =
                tarn_common::config::load("gateway", file)?;
            let explicit = std::env::var_os("TARN_GATEWAY__AUTH").is_some()
                || file
                    .and_then(|f| std::fs::read_to_string(f).ok())
                    .is_some_and(|t| {
                        t.lines().any(|l| {
                            l.trim_start().starts_with("auth ")
                                || l.trim_start().starts_with("auth=")
                        })
                    });
            if explicit {
                configured.auth
            } else {
                "dev".to_string()
            }
        }
    };
    // One key per state directory, so tokens survive restarts.
    let key_file = args.auth_key_file.clone().unwrap_or_else(|| {
        Path::new(&args.state_dir)
            .join("gateway.key")
            .display()
            .to_string()
    });
    let key = tarn_common::auth::TokenKey::load_or_create(Path::new(&key_file))
        .context("cannot prepare the token signing key")?;

    // The internal roles' own credentials, apart from the token key:
    // executors get these, never the gateway's key.
    let cluster_dir = Path::new(&args.state_dir).join("cluster");
    tarn_common::cluster::create(&cluster_dir).context("cannot prepare the cluster credentials")?;
    // The supervisor asks the coordinator whether both pools are up: it
    // needs a cluster identity to be let in at all.
    tarn_common::cluster::ClusterTls::load(&cluster_dir, tarn_common::cluster::Role::Gateway)
        .context("cannot read the cluster credentials")?
        .install();
    let cluster_dir = cluster_dir.display().to_string();

    let mut children = Children(Vec::new());
    let s = |v: &str| v.to_string();
    children
        .spawn(
            "coordinator",
            &[
                s("coordinator"),
                s("--bind"),
                coordinator.clone(),
                s("--http-bind"),
                metrics.clone(),
                s("--lake"),
                lake.clone(),
                s("--store"),
                s("embedded"),
                s("--state-dir"),
                args.state_dir.clone(),
                s("--cluster-dir"),
                cluster_dir.clone(),
            ],
            file,
        )
        .await?;
    let pools = std::iter::repeat_n("interactive", args.interactive_executors as usize)
        .chain(std::iter::once("job"));
    for pool in pools {
        let vcores = if pool == "job" {
            args.job_vcores
        } else {
            args.interactive_vcores
        };
        let a = vec![
            s("executor"),
            s("--pool"),
            s(pool),
            s("--coordinator"),
            coordinator.clone(),
            s("--lake"),
            lake.clone(),
            s("--vcores"),
            vcores.to_string(),
            s("--cluster-dir"),
            cluster_dir.clone(),
        ];
        children
            .spawn(
                if pool == "job" {
                    "job executor"
                } else {
                    "interactive executor"
                },
                &a,
                file,
            )
            .await?;
    }
    children
        .spawn(
            "gateway",
            &[
                s("gateway"),
                s("--flight-addr"),
                args.flight_addr.clone(),
                s("--http-addr"),
                args.http_addr.clone(),
                s("--coordinator"),
                coordinator.clone(),
                s("--lake"),
                lake.clone(),
                s("--session-vcores"),
                args.session_vcores.to_string(),
                s("--auth"),
                auth.clone(),
                s("--auth-key-file"),
                key_file.clone(),
                s("--cluster-dir"),
                cluster_dir.clone(),
            ],
            file,
        )
        .await?;

    let deadline = Instant::now() + Duration::from_secs(args.ready_timeout);
    // The demo user may do the whole provider workflow, deletes included.
    let token = key.mint(
        &args.token_user,
        Duration::from_secs(3600),
        tarn_common::roles::Grants::owner_everywhere(),
    );
    loop {
        if http_status(&args.http_addr, "/readyz").await == Some(200)
            && both_pools_up(&coordinator, args.interactive_executors).await
        {
            break;
        }
        if Instant::now() > deadline {
            children.stop(Duration::from_secs(5)).await;
            bail!(
                "Tarn did not become ready within {}s; see the logs above",
                args.ready_timeout
            );
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                children.stop(Duration::from_secs(10)).await;
                return Ok(());
            }
            (name, status) = children.any_exit() => {
                children.stop(Duration::from_secs(5)).await;
                bail!("the {name} exited during start-up ({status:?})");
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let ready_ms = started.elapsed().as_millis();
    #[allow(clippy::print_stdout)]
    {
        println!("Tarn is ready in {ready_ms} ms");
        println!(
            "  Flight SQL : grpc://{}   (catalog \"tarn\", workspace \"demo\")",
            args.flight_addr
        );
        println!(
            "  HTTP       : http://{}/readyz   REST: /v1/pools /v1/sessions /v1/jobs /v1/job-runs",
            args.http_addr
        );
        println!("  metrics    : http://{metrics}/metrics");
        println!("  state      : {} (embedded store)", args.state_dir);
        println!("  lake       : {lake}");
        println!(
            "  Jupyter    : jupyter server --gateway-url=http://{} --GatewayClient.auth_token=<token>",
            args.http_addr
        );
        if auth == "dev" {
            println!("  dev mode   : requests without credentials run as 'anonymous'");
        }
        println!("  token      : {token}");
        println!(
            "               (user '{}', owner of every workspace, valid 1h; more: tarn token --key-file {key_file} --user <name> --role <workspace>=<role>)",
            args.token_user
        );
        println!("Press Ctrl-C to stop.");
    }

    tokio::select! {
        _ = shutdown.cancelled() => {
            tracing::info!("stopping");
            children.stop(Duration::from_secs(15)).await;
            Ok(())
        }
        (name, status) = children.any_exit() => {
            children.stop(Duration::from_secs(10)).await;
            bail!("the {name} exited unexpectedly ({status:?}); Tarn stopped")
        }
    }
}
