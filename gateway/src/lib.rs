//! The Tarn gateway: the only public door.
//!
//! It speaks Arrow Flight SQL (queries, prepared statements, metadata,
//! cancel), REST, and the Jupyter Server kernels API with its websocket,
//! all behind the same signed bearer tokens. Statements are planned here
//! against the lake catalog and executed as Ballista jobs through the
//! coordinator; result batches stream from the executors through the
//! gateway to the client without being gathered first.

pub mod auth;
pub mod cells;
pub mod collect;
pub mod direct;
pub mod error;
pub mod flight;
pub mod flight_coded;
pub mod fold;
pub mod http;
pub mod http_guard;
pub mod ingest;
pub mod jobs;
pub mod kernel;
pub mod kernel_auth;
pub mod kernel_msg;
pub mod lease;
pub mod local;
pub mod metrics;
pub mod options;
pub mod query;
pub mod session;
pub mod table_functions;
pub mod write;

pub use error::{Error, Result};
pub use options::GatewayOptions;

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::auth::Authenticator;
use crate::flight::TarnFlightSql;
use crate::kernel::{KernelOptions, Kernels};
use crate::lease::{LeaseClient, LeaseWish};
use crate::query::Queries;
use crate::session::Sessions;
use tarn_common::supervisor::Supervisor;

/// A running gateway.
pub struct Gateway {
    /// Flight SQL address.
    pub flight_addr: SocketAddr,
    /// HTTP address.
    pub http_addr: SocketAddr,
    tasks: Supervisor,
    drain_timeout: std::time::Duration,
}

impl Gateway {
    /// Binds both listeners and starts serving.
    pub async fn start(opts: Arc<GatewayOptions>, shutdown: CancellationToken) -> Result<Self> {
        let tasks = Supervisor::new(shutdown.clone());
        // Every call behind the gateway is mutual TLS as the gateway role.
        tarn_common::cluster::ClusterTls::load(
            std::path::Path::new(&opts.cluster_dir),
            tarn_common::cluster::Role::Gateway,
        )
        .map_err(|e| Error::Config(e.to_string()))?
        .install();
        let (flight_listener, flight_addr) = tarn_common::net::bind(&opts.flight_addr).await?;
        let (http_listener, http_addr) = tarn_common::net::bind(&opts.http_addr).await?;

        let key = if opts.auth_key_file.is_empty() {
            None
        } else {
            Some(
                tarn_common::auth::TokenKey::load(std::path::Path::new(&opts.auth_key_file))
                    .map_err(|e| Error::Config(e.to_string()))?,
            )
        };
        let previous = opts
            .auth_previous_key_files
            .iter()
            .map(|f| tarn_common::auth::TokenKey::load(std::path::Path::new(f)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("auth_previous_key_files: {e}")))?;
        let auth = Arc::new(
            Authenticator::new(&opts.auth, key, opts.credential_lifetime)
                .map_err(Error::Config)?
                .with_previous_keys(previous),
        );
        if auth.is_dev() {
            tracing::warn!("dev mode: requests without credentials run as user 'anonymous'");
        }
        let root = tarn_lake::parse_root(&opts.lake).map_err(Error::Lake)?;
        let lake = tarn_lake::Lake::open(root).map_err(Error::Lake)?;
        // Several coordinators: dial a local proxy that follows the leader.
        let coordinator =
            tarn_proto::leader::coordinator_endpoint(&opts.coordinator, &tasks).await?;
        let scheduler_url = format!("df://{coordinator}");
        let leases = LeaseClient::new(
            &coordinator,
            format!("gateway {flight_addr}"),
            LeaseWish {
                vcores: opts.session_vcores,
                size: opts.session_size.clone(),
            },
        )
        .map_err(|e| Error::Serve(e.to_string()))?;
        let direct = Arc::new(direct::Direct::new(
            direct::DirectOptions {
                enabled: opts.direct_runs,
                small_input_bytes: opts.direct_small_input_bytes,
                execution: opts.execution,
                local_max_input_bytes: opts.local_max_input_bytes,
            },
            leases.clone(),
            tasks.clone(),
        ));
        let sessions = Arc::new(
            Sessions::new(lake, scheduler_url, leases, opts.default_workspace.clone())
                .with_limits(session::SessionLimits {
                    max_constant_bytes: opts.max_constant_bytes,
                    memory_pool_bytes: opts.memory_pool_bytes,
                    max_sessions_per_user: opts.max_sessions_per_user,
                })
                .with_settings(&opts.session_settings)
                .map_err(|e| Error::Serve(e.to_string()))?,
        );
        // Sessions need a leading coordinator; one may still be starting.
        // Waited for after the configuration is checked, so a bad setting
        // stops the gateway at once rather than after a coordinator leads.
        if !tarn_proto::leader::wait_for_leader(&opts.coordinator, &shutdown).await {
            return Err(Error::Serve(
                "shut down while waiting for a coordinator to lead".into(),
            ));
        }
        let queries = Arc::new(Queries::new(
            Arc::clone(&sessions),
            &coordinator,
            opts.query_timeout,
            opts.direct_runs.then_some(direct),
            tasks.clone(),
        ));
        let service = Arc::new(
            TarnFlightSql::new(
                Arc::clone(&sessions),
                Arc::clone(&queries),
                Arc::clone(&auth),
            )
            .map_err(|e| Error::Serve(e.to_string()))?
            .with_max_prepared(opts.max_prepared_statements),
        );
        let python = python_host(&opts, &service, &sessions, &tasks, &shutdown).await;
        let python_for_jobs = python.as_ref().ok().cloned();
        if let Err(why) = &python {
            tracing::warn!(reason = %why, "tarn-python kernels are not offered");
        }
        let kernels = Kernels::new(
            Arc::clone(&sessions),
            Arc::clone(&queries),
            KernelOptions {
                websocket_lifetime: opts.websocket_lifetime,
                max_message_bytes: opts.max_message_bytes,
                max_result_rows: opts.max_result_rows,
                max_output_bytes: opts.max_result_bytes,
                max_queued_cells: opts.max_queued_cells,
                flight_url: format!("grpc://{flight_addr}"),
                idle_timeout: opts.session_idle_timeout,
            },
            python,
        );
        let jobs = Arc::new(
            jobs::Jobs::new(
                Arc::clone(&sessions),
                Arc::clone(&queries),
                jobs::JobOptions {
                    workers: opts.job_workers,
                    renew: opts.lease_renew_interval,
                    render: KernelOptions {
                        websocket_lifetime: opts.websocket_lifetime,
                        max_message_bytes: opts.max_message_bytes,
                        max_result_rows: opts.job_output_rows,
                        // A run's output is a file, not a websocket message.
                        max_output_bytes: 64 * 1024 * 1024,
                        max_queued_cells: 0,
                        flight_url: format!("grpc://{flight_addr}"),
                        idle_timeout: opts.session_idle_timeout,
                    },
                },
                format!("gateway {flight_addr} ({})", uuid::Uuid::new_v4().simple()),
                tasks.clone(),
            )
            .with_python(python_for_jobs),
        );
        jobs.start_workers();
        let sweeper = sweep_sessions(
            Arc::clone(&sessions),
            Arc::clone(&service),
            Arc::clone(&queries),
            Arc::clone(&kernels),
            Sweep {
                idle: opts.session_idle_timeout,
                warning: opts.idle_warning,
                renew: opts.lease_renew_interval,
            },
            shutdown.clone(),
        );

        let flight_shutdown = shutdown.clone();
        tasks.service("session sweep", sweeper);
        tasks.service("Flight SQL server", async move {
            // Nagle on these sockets costs a delayed-ACK round (~40 ms) per
            // small response; the builder's own nodelay flag does not reach
            // a caller-supplied listener, so it is set on the incoming side.
            tonic::transport::Server::builder()
                .add_service(
                    FlightServiceServer::new(flight_coded::Coded(service))
                        // Requests are commands and parameter rows, never
                        // bulk data yet: a small cap bounds what a client
                        // can make the gateway buffer.
                        .max_decoding_message_size(16 * 1024 * 1024)
                        .max_encoding_message_size(256 * 1024 * 1024),
                )
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(flight_listener)
                        .with_nodelay(Some(true)),
                    flight_shutdown.cancelled_owned(),
                )
                .await
                .map_err(|e| Error::Serve(e.to_string()))
        });
        // The HTTP port answers to loopback names and to the addresses it
        // and the Flight port are bound to, plus what the operator allows.
        let guard = Arc::new(http_guard::HttpGuard::new(
            &[
                opts.http_addr.clone(),
                http_addr.to_string(),
                opts.flight_addr.clone(),
            ],
            &opts.http_allowed_hosts,
            &opts.http_allowed_origins,
        ));
        tasks.service(
            "HTTP server",
            http::serve(
                http_listener,
                Arc::clone(&sessions),
                kernels,
                auth,
                guard,
                opts.job_credential_lifetime,
                shutdown.clone(),
            ),
        );
        info!(%flight_addr, %http_addr, "gateway listening");
        Ok(Self {
            flight_addr,
            http_addr,
            tasks,
            drain_timeout: opts.drain_timeout,
        })
    }

    /// Waits until shutdown is requested or any server or loop fails
    /// (returned at once, whichever it was). After a shutdown request,
    /// idle client connections (pooled by most Flight clients) get
    /// `drain_timeout` to go away before the servers are dropped.
    pub async fn wait(self) -> Result<()> {
        self.tasks.wait().await.map_err(Error::Serve)?;
        if !self.tasks.drain(self.drain_timeout).await {
            tracing::info!("drain timeout reached; closing remaining connections");
        }
        Ok(())
    }
}

/// Python kernels, if this gateway can host them: a launcher (processes
/// on this host, or pods) and a pool of started kernels.
async fn python_host(
    opts: &GatewayOptions,
    service: &Arc<TarnFlightSql>,
    sessions: &Arc<Sessions>,
    tasks: &Supervisor,
    shutdown: &CancellationToken,
) -> std::result::Result<Arc<kernel::PythonHost>, String> {
    let (launcher, lake_uri, sandboxed) = match opts.python_kernel_launcher.as_str() {
        "process" => process_launcher(opts, service, tasks, shutdown).await?,
        "kubernetes" => pod_launcher(opts, tasks).await?,
        other => {
            return Err(format!(
                "python_kernel_launcher must be \"process\" or \"kubernetes\", not {other:?}"
            ))
        }
    };
    let pool = tarn_pykernel::Pool::new(
        Arc::new(launcher),
        opts.python_kernel_pool,
        // What the first cells of most notebooks import, loaded ahead.
        "import pyarrow, pandas, tarn_provider, tarn_provider.kernel".into(),
        opts.python_kernel_start_timeout,
        shutdown.clone(),
    );
    let (minter, extender) = (Arc::clone(sessions), Arc::clone(sessions));
    Ok(Arc::new(kernel::PythonHost {
        pool,
        memory_per_vcore: opts.python_kernel_memory_per_vcore,
        start_timeout: opts.python_kernel_start_timeout,
        credential_lifetime: opts.python_kernel_credential_lifetime,
        lake_uri,
        sandboxed,
        mint: Arc::new(move |session, ttl| minter.delegate(session, ttl)),
        extend: Arc::new(move |pass, ttl| extender.extend_pass(pass, ttl)),
        interpreter: std::path::PathBuf::from(&opts.python_kernel_python),
    }))
}

/// Kernels as pods: the template from its file, the API server from the
/// settings or the pod's own environment. Kernel pods reach this
/// gateway's Flight SQL port at `python_kernel_lake_uri`.
async fn pod_launcher(
    opts: &GatewayOptions,
    tasks: &Supervisor,
) -> std::result::Result<(tarn_pykernel::Launcher, String, bool), String> {
    if opts.python_kernel_lake_uri.is_empty() {
        return Err("python_kernel_launcher = \"kubernetes\" needs python_kernel_lake_uri: the address kernel pods reach this gateway's Flight SQL port at (grpc://POD_IP:PORT)".into());
    }
    if opts.python_kernel_pod_template.is_empty() {
        return Err("python_kernel_launcher = \"kubernetes\" needs python_kernel_pod_template (the chart's kernel-pod ConfigMap)".into());
    }
    let text = std::fs::read_to_string(&opts.python_kernel_pod_template).map_err(|e| {
        format!(
            "cannot read the kernel pod template {}: {e}",
            opts.python_kernel_pod_template
        )
    })?;
    let template: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "the kernel pod template {} is not JSON: {e}",
            opts.python_kernel_pod_template
        )
    })?;
    const SA: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
    let api =
        if opts.kubernetes_api.is_empty() {
            match (
                std::env::var("KUBERNETES_SERVICE_HOST"),
                std::env::var("KUBERNETES_SERVICE_PORT"),
            ) {
                (Ok(h), Ok(p)) if h.contains(':') => format!("https://[{h}]:{p}"),
                (Ok(h), Ok(p)) => format!("https://{h}:{p}"),
                _ => return Err(
                    "kubernetes_api is empty and this is not a pod (no KUBERNETES_SERVICE_HOST)"
                        .into(),
                ),
            }
        } else {
            opts.kubernetes_api.clone()
        };
    let namespace = if opts.python_kernel_pod_namespace.is_empty() {
        std::fs::read_to_string(format!("{SA}/namespace"))
            .map(|n| n.trim().to_string())
            .map_err(|e| format!("python_kernel_pod_namespace is empty and the service account's namespace cannot be read: {e}"))?
    } else {
        opts.python_kernel_pod_namespace.clone()
    };
    let ca = std::path::PathBuf::from(&opts.kubernetes_ca_file);
    let launcher = tarn_pykernel::Launcher::pods(
        tarn_pykernel::PodOptions {
            api,
            token_file: opts.kubernetes_token_file.clone().into(),
            ca_file: (!opts.kubernetes_ca_file.is_empty() && ca.exists()).then_some(ca),
            namespace,
            template,
            first_port: kernel::POD_FIRST_PORT,
            uid_base: opts.python_kernel_uid_base,
            max_processes: opts.python_kernel_max_processes,
            env: vec![],
            owner: opts.python_kernel_pod_owner.clone(),
        },
        tasks.clone(),
    )
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!("tarn-python kernels run as pods");
    Ok((launcher, opts.python_kernel_lake_uri.clone(), true))
}

/// Kernels as processes on this host: the gateway's Flight SQL service on
/// a Unix socket that each kernel's sandbox sees (kernels have no
/// network), and a launcher checked against the kernel environment.
async fn process_launcher(
    opts: &GatewayOptions,
    service: &Arc<TarnFlightSql>,
    tasks: &Supervisor,
    shutdown: &CancellationToken,
) -> std::result::Result<(tarn_pykernel::Launcher, String, bool), String> {
    use std::os::unix::fs::PermissionsExt;
    if opts.python_kernel_python.is_empty() {
        return Err("python_kernel_python is empty".into());
    }
    let sandbox = match opts.python_kernel_sandbox.as_str() {
        "bubblewrap" => tarn_pykernel::Sandbox::Bubblewrap,
        "none" => {
            tracing::warn!(
                "python_kernel_sandbox = \"none\": kernels can read what the gateway can"
            );
            tarn_pykernel::Sandbox::Unconfined
        }
        other => {
            return Err(format!(
                "python_kernel_sandbox must be \"bubblewrap\" or \"none\", not {other:?}"
            ))
        }
    };
    let python = std::path::PathBuf::from(&opts.python_kernel_python);
    if !python.exists() {
        return Err(format!(
            "no interpreter at {} (run dev/setup.sh --kernels, or set python_kernel_python)",
            python.display()
        ));
    }
    let dir = if opts.python_kernel_dir.is_empty() {
        let base = std::path::Path::new("/tmp/tarn-kernels");
        let _ = std::fs::create_dir_all(base);
        let _ = std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o711));
        remove_stale_kernel_dirs(base);
        base.join(&uuid::Uuid::new_v4().simple().to_string()[..8])
    } else {
        std::path::PathBuf::from(&opts.python_kernel_dir)
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711));
    // The lake door for kernels: the same Flight SQL service and rules,
    // on a socket only the sandboxes see.
    let socket = dir.join("flight.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| e.to_string())?;
    let svc = Arc::clone(service);
    let stop = shutdown.clone();
    let cleanup = dir.clone();
    tasks.service("Flight SQL for kernels", async move {
        let served = tonic::transport::Server::builder()
            .add_service(
                FlightServiceServer::new(flight_coded::Coded(svc))
                    .max_decoding_message_size(256 * 1024 * 1024)
                    .max_encoding_message_size(256 * 1024 * 1024),
            )
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                stop.cancelled_owned(),
            )
            .await
            .map_err(|e| Error::Serve(e.to_string()));
        let _ = tokio::fs::remove_dir_all(&cleanup).await;
        served
    });
    let sandboxed = sandbox == tarn_pykernel::Sandbox::Bubblewrap;
    let lake_socket = if sandboxed {
        std::path::PathBuf::from(kernel::LAKE_SOCKET_INSIDE)
    } else {
        socket.clone()
    };
    let launcher = tarn_pykernel::Launcher::new(
        tarn_pykernel::LaunchOptions {
            python,
            root: dir.join("k"),
            sandbox,
            uid_base: opts.python_kernel_uid_base,
            max_processes: opts.python_kernel_max_processes,
            binds: if sandboxed {
                vec![(socket, lake_socket.clone())]
            } else {
                vec![]
            },
            env: vec![],
        },
        tasks.clone(),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok((
        launcher,
        format!("grpc+unix://{}", lake_socket.display()),
        sandboxed,
    ))
}

/// Directories left by gateways that were killed (their kernels died with
/// them): a directory whose lake socket no longer answers is removed; one
/// whose gateway is alive, or still starting, is left alone.
fn remove_stale_kernel_dirs(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let socket = e.path().join("flight.sock");
        if socket.exists()
            && std::os::unix::net::UnixStream::connect(&socket)
                .is_err_and(|err| err.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            tracing::info!(dir = %e.path().display(), "removing a stopped gateway's kernel directory");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Timings of the session sweep.
struct Sweep {
    idle: std::time::Duration,
    warning: std::time::Duration,
    renew: std::time::Duration,
}

/// Until shutdown: renews the sessions' leases (ending sessions whose
/// lease is gone), warns kernels whose session is about to time out, and
/// ends idle sessions, giving their leases back. On shutdown every lease
/// is given back, so vCores return at once.
async fn sweep_sessions(
    sessions: Arc<Sessions>,
    service: Arc<TarnFlightSql>,
    queries: Arc<Queries>,
    kernels: Arc<Kernels>,
    t: Sweep,
    shutdown: CancellationToken,
) -> Result<()> {
    let period = (t.idle / 8).min(t.renew).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(30),
    );
    let mut last_renew = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Kernels first, so their notebooks hear why before the
                // sessions (and the kernels' own end events) go.
                kernels.end_all_for_shutdown();
                sessions.close_all().await;
                return Ok(());
            }
            _ = tokio::time::sleep(period) => {}
        }
        if last_renew.elapsed() >= t.renew {
            match sessions.heartbeat().await {
                Ok(0) => {}
                Ok(ended) => {
                    tracing::warn!(ended, "sessions ended: their leases expired");
                    service.purge_orphans();
                }
                Err(e) => tracing::warn!(error = %e, "lease heartbeat failed; will retry"),
            }
            last_renew = tokio::time::Instant::now();
        }
        if !t.warning.is_zero() && t.warning < t.idle {
            let due: Vec<String> = sessions
                .to_warn(t.idle - t.warning)
                .iter()
                .filter(|s| !queries.is_busy(&s.id))
                .map(|s| s.id.clone())
                .collect();
            if !due.is_empty() {
                kernels.warn_idle(&due, t.warning);
            }
        }
        let ended = sessions.expire_idle(t.idle, |id| queries.is_busy(id)).await;
        if ended > 0 {
            tracing::info!(ended, "idle sessions ended");
            service.purge_orphans();
        }
    }
}
