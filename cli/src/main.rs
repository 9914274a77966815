//! `tarn`: one binary, a subcommand per role.

mod job;
mod query;
mod standalone;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tarn_common::config;

#[derive(Parser)]
#[command(
    name = "tarn",
    version,
    about = "Tarn: a compute cluster for notebooks and jobs over a security data lake"
)]
struct Cli {
    /// TOML file with `[coordinator]`, `[executor]` and `[gateway]` sections.
    #[arg(long, global = true, env = "TARN_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, global = true, env = "TARN_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Coordinator, one interactive and one job executor, and the gateway,
    /// with the demo lake created when missing.
    Standalone(standalone::Args),
    /// The coordinator (embedded Ballista scheduler + tarn.v1 API).
    Coordinator {
        /// Listen address.
        #[arg(long)]
        bind: Option<String>,
        /// Address other roles reach this coordinator at (default: bind).
        #[arg(long)]
        advertise: Option<String>,
        /// HTTP address for /metrics ("" disables it).
        #[arg(long)]
        http_bind: Option<String>,
        /// Lake root (directory or URL).
        #[arg(long)]
        lake: Option<String>,
        /// State store: `embedded` or `etcd`.
        #[arg(long)]
        store: Option<String>,
        /// Folder of the embedded state store.
        #[arg(long)]
        state_dir: Option<String>,
        /// etcd endpoints, comma-separated (with --store etcd).
        #[arg(long)]
        etcd_endpoints: Option<String>,
        /// Folder of the cluster credentials (`tarn certs --dir`).
        #[arg(long)]
        cluster_dir: Option<String>,
    },
    /// An executor of one pool.
    Executor {
        /// Coordinator host:port.
        #[arg(long)]
        coordinator: Option<String>,
        /// `interactive` or `job`.
        #[arg(long)]
        pool: Option<String>,
        /// vCores offered (default: the machine's cores).
        #[arg(long)]
        vcores: Option<u32>,
        /// Lake root (directory or URL).
        #[arg(long)]
        lake: Option<String>,
        /// Host to bind and advertise.
        #[arg(long)]
        bind_host: Option<String>,
        /// Folder of the cluster credentials (`tarn certs --dir`), the
        /// coordinators' folder.
        #[arg(long)]
        cluster_dir: Option<String>,
    },
    /// The gateway (Flight SQL + HTTP).
    Gateway {
        /// Flight SQL listen address.
        #[arg(long)]
        flight_addr: Option<String>,
        /// HTTP listen address.
        #[arg(long)]
        http_addr: Option<String>,
        /// Coordinator host:port.
        #[arg(long)]
        coordinator: Option<String>,
        /// Lake root (directory or URL).
        #[arg(long)]
        lake: Option<String>,
        /// vCores (and scan partitions) a session leases when its client
        /// asks for none (0: the coordinator's default size).
        #[arg(long)]
        session_vcores: Option<u32>,
        /// `token` (every request needs a signed token) or `dev`
        /// (requests without credentials run as `anonymous`).
        #[arg(long)]
        auth: Option<String>,
        /// File with the token signing key.
        #[arg(long)]
        auth_key_file: Option<String>,
        /// Folder of the cluster credentials (`tarn certs --dir`); the
        /// gateway reads its own certificate there.
        #[arg(long)]
        cluster_dir: Option<String>,
    },
    /// Mints a bearer token for a user, signed with the deployment's key.
    Token {
        /// The user the token names.
        #[arg(long)]
        user: Option<String>,
        /// File with the signing key (the gateway's auth_key_file).
        #[arg(long, env = "TARN_AUTH_KEY_FILE")]
        key_file: PathBuf,
        /// How long the token is valid (the gateway also caps credentials
        /// at its credential_lifetime, 1h by default).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// Create the key file with a fresh random key if it does not exist.
        #[arg(long)]
        create_key: bool,
        /// A role: `<workspace>=<reader|contributor|owner>`, `*` for every
        /// workspace; repeat for several. Reads need reader, writes
        /// contributor, deleting a table owner.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Mark the user an operator: owner everywhere, and the SQL sandbox
        /// lets them name files.
        #[arg(long)]
        operator: bool,
    },
    /// Creates the credentials coordinators and executors share (the
    /// direct-run reservation key), keeping any that exist. Gateways do not
    /// need them; executors must never get the gateway's token key.
    Certs {
        /// The folder to create or complete.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Jobs: create, schedule, run and follow them (over the gateway's REST API).
    Job {
        #[command(flatten)]
        conn: job::Connection,
        #[command(subcommand)]
        command: job::JobCommand,
    },
    /// Runs a KQL query on a gateway over Flight SQL and prints the result.
    Kql(query::QueryArgs),
    /// Runs a SQL statement on a gateway over Flight SQL and prints the
    /// result.
    Sql(query::QueryArgs),
    /// The configuration: `tarn config show` prints what each role would
    /// run with, and where each value comes from.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// (Re)generates the demo workspace in the lake.
    Demo {
        /// Lake root (directory or URL).
        #[arg(long, default_value = "./lake")]
        lake: String,
        /// Size factor: 1.0 is about 200 users and a few hundred thousand events.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Days of history.
        #[arg(long, default_value_t = 21)]
        days: u32,
        /// Random seed (the output is deterministic per seed).
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Prints the effective configuration (defaults, then the file, then
    /// `TARN_<ROLE>__<KEY>` variables) as TOML, each key with its source.
    /// Flags given to a role override what this shows.
    Show {
        /// Only this role's section: coordinator, executor or gateway.
        #[arg(long)]
        role: Option<String>,
    },
}

/// Log levels unless `RUST_LOG` says otherwise. The Delta kernel's snapshot
/// builder logs an ERROR for every table it finds not yet created ("No
/// files in log segment") — which is how each new table starts, the demo
/// lake's included — and returns the same error to its caller, who reports
/// it where it matters; so it is silenced. So is the scheduler's `display`
/// module, which logs an ERROR whenever a stage's plan and its tasks'
/// metrics differ in length — which they can, as each task runs its own
/// copy of the stage restricted to its partitions (seen on unions of
/// `VALUES`, constants and scans) — while it only assembles metrics for
/// showing a finished job.
const DEFAULT_LOG_FILTER: &str = "info,ballista=warn,ballista_executor=warn,datafusion=warn,\
deltalake=warn,deltalake_core=warn,buoyant_kernel=warn,buoyant_kernel::snapshot::builder=off,\
ballista_scheduler::display=off";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tarn_common::telemetry::init(DEFAULT_LOG_FILTER, cli.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tarn")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = cli.config.as_deref();
    match cli.command {
        Command::Standalone(args) => standalone::run(args, file).await,
        Command::Job { conn, command } => job::run(conn, command).await,
        Command::Kql(args) => query::run(args, query::Language::Kql).await,
        Command::Sql(args) => query::run(args, query::Language::Sql).await,
        Command::Coordinator {
            bind,
            advertise,
            http_bind,
            lake,
            store,
            state_dir,
            etcd_endpoints,
            cluster_dir,
        } => {
            let mut o: tarn_coordinator::CoordinatorOptions = config::load("coordinator", file)?;
            set(&mut o.bind, bind);
            set(&mut o.advertise, advertise);
            set(&mut o.http_bind, http_bind);
            set(&mut o.lake, lake);
            set(&mut o.store, store);
            set(&mut o.state_dir, state_dir);
            set(&mut o.etcd_endpoints, etcd_endpoints);
            set(&mut o.cluster_dir, cluster_dir);
            let shutdown = tarn_common::shutdown::install_signal_handlers();
            let c = tarn_coordinator::Coordinator::start(Arc::new(o), shutdown).await?;
            c.wait().await?;
            Ok(())
        }
        Command::Executor {
            coordinator,
            pool,
            vcores,
            lake,
            bind_host,
            cluster_dir,
        } => {
            let mut o: tarn_executor::ExecutorOptions = config::load("executor", file)?;
            set(&mut o.coordinator, coordinator);
            set(&mut o.pool, pool);
            set(&mut o.vcores, vcores);
            set(&mut o.lake, lake);
            set(&mut o.bind_host, bind_host);
            set(&mut o.cluster_dir, cluster_dir);
            // Ballista's executor drains on SIGINT/SIGTERM by itself; the
            // same signal cancels this token, so the executor announces
            // itself draining, and a second signal exits at once.
            let shutdown = tarn_common::shutdown::install_signal_handlers();
            tarn_executor::run(Arc::new(o), shutdown).await?;
            Ok(())
        }
        Command::Gateway {
            flight_addr,
            http_addr,
            coordinator,
            lake,
            session_vcores,
            auth,
            auth_key_file,
            cluster_dir,
        } => {
            let mut o: tarn_gateway::GatewayOptions = config::load("gateway", file)?;
            set(&mut o.auth, auth);
            set(&mut o.auth_key_file, auth_key_file);
            set(&mut o.cluster_dir, cluster_dir);
            set(&mut o.flight_addr, flight_addr);
            set(&mut o.http_addr, http_addr);
            set(&mut o.coordinator, coordinator);
            set(&mut o.lake, lake);
            set(&mut o.session_vcores, session_vcores);
            let shutdown = tarn_common::shutdown::install_signal_handlers();
            let g = tarn_gateway::Gateway::start(Arc::new(o), shutdown).await?;
            g.wait().await?;
            Ok(())
        }
        Command::Token {
            user,
            key_file,
            ttl,
            create_key,
            roles,
            operator,
        } => {
            let key = if create_key {
                tarn_common::auth::TokenKey::load_or_create(&key_file)?
            } else {
                tarn_common::auth::TokenKey::load(&key_file)?
            };
            match user {
                Some(user) if !user.trim().is_empty() => {
                    let grants = tarn_common::roles::Grants::parse_specs(
                        roles.iter().map(String::as_str),
                        operator,
                    )
                    .map_err(|e| anyhow::anyhow!("--role: {e}"))?;
                    if grants.roles.is_empty() && !grants.operator {
                        anyhow::bail!(
                            "a token without roles can do nothing: pass --role <workspace>=<reader|contributor|owner> \
                             (e.g. --role demo=reader, or --role '*=reader' for every workspace), or --operator"
                        );
                    }
                    #[allow(clippy::print_stdout)]
                    {
                        println!("{}", key.mint(user.trim(), ttl, grants));
                    }
                }
                Some(_) => anyhow::bail!("--user must name someone"),
                None if create_key => {
                    tracing::info!(key_file = %key_file.display(), "signing key ready")
                }
                None => anyhow::bail!("--user is required (or --create-key alone to make a key)"),
            }
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Show { role },
        } => {
            #[allow(clippy::print_stdout)]
            {
                print!("{}", show_config(file, role.as_deref())?);
            }
            Ok(())
        }
        Command::Certs { dir } => {
            tarn_common::cluster::create(&dir)?;
            tracing::info!(dir = %dir.display(), "cluster credentials ready");
            Ok(())
        }
        Command::Demo {
            lake,
            scale,
            days,
            seed,
        } => {
            let opts = tarn_demo::DemoOptions {
                scale,
                days,
                seed,
                ..Default::default()
            };
            let summary = standalone::generate_demo(&lake, &opts).await?;
            for (t, n) in summary.tables {
                tracing::info!(table = %t, rows = n, "written");
            }
            Ok(())
        }
    }
}

/// The effective configuration of `role` (or every role) as TOML, each
/// key followed by where its value came from.
fn show_config(file: Option<&std::path::Path>, role: Option<&str>) -> anyhow::Result<String> {
    fn section<T: serde::de::DeserializeOwned + serde::Serialize + Default>(
        name: &str,
        file: Option<&std::path::Path>,
    ) -> anyhow::Result<String> {
        let (options, sources) = config::load_with_sources::<T>(name, file)?;
        let value = toml::Value::try_from(&options).context("options serialise")?;
        let toml::Value::Table(table) = value else {
            anyhow::bail!("[{name}] is not a table");
        };
        let mut out = format!("[{name}]\n");
        let mut tables = String::new();
        for (k, v) in &table {
            let from = sources
                .get(k)
                .map(ToString::to_string)
                .unwrap_or_else(|| "default".into());
            match v {
                toml::Value::Table(t) => {
                    tables.push_str(&format!("\n# {k}: {from}\n[{name}.{k}]\n"));
                    tables.push_str(&toml::to_string(t).context("options serialise")?);
                }
                _ => {
                    let one: toml::Table = [(k.clone(), v.clone())].into_iter().collect();
                    let line = toml::to_string(&one).context("options serialise")?;
                    out.push_str(&format!("{}  # {from}\n", line.trim_end()));
                }
            }
        }
        Ok(out + &tables)
    }
    let roles = ["coordinator", "executor", "gateway"];
    let wanted: Vec<&str> = match role {
        None => roles.to_vec(),
        Some(r) if roles.contains(&r) => vec![r],
        Some(r) => anyhow::bail!("--role is coordinator, executor or gateway, not {r:?}"),
    };
    let mut out = String::from(
        "# Effective configuration: defaults, then the file (--config / TARN_CONFIG),\n\
         # then TARN_<ROLE>__<KEY> variables. A role's flags override these.\n",
    );
    for r in wanted {
        out.push('\n');
        out.push_str(&match r {
            "coordinator" => section::<tarn_coordinator::CoordinatorOptions>(r, file)?,
            "executor" => section::<tarn_executor::ExecutorOptions>(r, file)?,
            _ => section::<tarn_gateway::GatewayOptions>(r, file)?,
        });
    }
    Ok(out)
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The example file parses into every role's options and states their
    /// defaults, so it cannot drift from the code.
    #[test]
    fn example_config_matches_the_defaults() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/tarn.example.toml");
        let c: tarn_coordinator::CoordinatorOptions =
            tarn_common::config::load("coordinator", Some(&path)).expect("coordinator section");
        let e: tarn_executor::ExecutorOptions =
            tarn_common::config::load("executor", Some(&path)).expect("executor section");
        let g: tarn_gateway::GatewayOptions =
            tarn_common::config::load("gateway", Some(&path)).expect("gateway section");
        let text = |v: &dyn erased::Ser| v.to_toml();
        assert_eq!(
            text(&c),
            text(&tarn_coordinator::CoordinatorOptions::default())
        );
        assert_eq!(text(&e), text(&tarn_executor::ExecutorOptions::default()));
        assert_eq!(text(&g), text(&tarn_gateway::GatewayOptions::default()));
    }

    /// `tarn config show` names each value's source, and what it prints
    /// is itself a configuration file giving the same options.
    #[test]
    fn config_show_says_where_each_value_comes_from() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "[gateway]\nquery_timeout = \"90m\"\n").unwrap();
        // Configuration loads read the environment: one test at a time.
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("TARN_GATEWAY__MAX_QUEUED_CELLS", "7");
        let text = super::show_config(Some(&file), Some("gateway")).unwrap();
        std::env::remove_var("TARN_GATEWAY__MAX_QUEUED_CELLS");
        let line = |k: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{k} =")))
                .unwrap_or_else(|| panic!("{k} missing in\n{text}"))
                .to_string()
        };
        assert!(
            line("query_timeout").contains("\"1h 30m\"")
                && line("query_timeout").ends_with(&format!("# file {}", file.display())),
            "{text}"
        );
        assert!(
            line("max_queued_cells").ends_with("= 7  # environment TARN_GATEWAY__MAX_QUEUED_CELLS"),
            "{text}"
        );
        assert!(line("max_result_rows").ends_with("# default"), "{text}");
        assert!(!text.contains("[coordinator]"));
        let back = dir.path().join("back.toml");
        std::fs::write(&back, &text).unwrap();
        let g: tarn_gateway::GatewayOptions =
            tarn_common::config::load("gateway", Some(&back)).unwrap();
        assert_eq!(g.query_timeout, std::time::Duration::from_secs(90 * 60));
        assert_eq!(g.max_queued_cells, 7);
        assert!(super::show_config(None, Some("scheduler")).is_err());
    }

    mod erased {
        pub trait Ser {
            fn to_toml(&self) -> String;
        }
        impl<T: serde::Serialize> Ser for T {
            fn to_toml(&self) -> String {
                toml::to_string(self).expect("options serialise")
            }
        }
    }
}
