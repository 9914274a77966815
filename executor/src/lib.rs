//! The Tarn executor: Ballista's executor as a library, with the lake
//! registered, plus an announcement of its pool and vCores to the
//! coordinator's `tarn.v1` API.

pub mod direct;
pub mod engine;
pub mod error;
pub mod front;
pub mod memory;
pub mod metrics;
pub mod options;

pub use error::{Error, Result};
pub use options::ExecutorOptions;

use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use tarn_common::supervisor::Supervisor;
use tarn_proto::{Pool, RegisterExecutorRequest};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Picks a free port on `host` (see [`tarn_common::net::free_port`]).
pub fn free_port(host: &str) -> Result<u16> {
    Ok(tarn_common::net::free_port(host)?)
}

/// Runs an executor until a shutdown signal (SIGINT/SIGTERM) or until the
/// embedded Ballista executor stops.
pub async fn run(opts: Arc<ExecutorOptions>, shutdown: CancellationToken) -> Result<()> {
    let pool = Pool::from_label(&opts.pool).ok_or_else(|| Error::InvalidPool(opts.pool.clone()))?;
    let tasks = Supervisor::new(shutdown.clone());
    let counted = Arc::new(metrics::ExecutorMetrics::default());
    let vcores = if opts.vcores == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.vcores as usize
    };
    // Every internal call, the leader probes included, is mutual TLS as
    // this executor.
    let tls = tarn_common::cluster::ClusterTls::load(
        std::path::Path::new(&opts.cluster_dir),
        tarn_common::cluster::Role::Executor,
    )
    .map_err(|e| Error::Credentials(e.to_string()))?
    .install();
    // Registering before a coordinator leads is refused (NOT_LEADER).
    if !tarn_proto::leader::wait_for_leader(&opts.coordinator, &shutdown).await {
        return Ok(());
    }
    // Several coordinators: dial a local proxy that follows the leader.
    let endpoint = tarn_proto::leader::coordinator_endpoint(&opts.coordinator, &tasks).await?;
    let (coord_host, coord_port) = split_host_port(&endpoint)?;
    let flight_port = match opts.flight_port {
        0 => free_port(&opts.bind_host)?,
        p => p,
    };
    let grpc_port = match opts.grpc_port {
        0 => free_port(&opts.bind_host)?,
        p => p,
    };
    let executor_id = format!("{}-{}", pool.label(), uuid::Uuid::new_v4().simple());
    let lake_root = tarn_lake::parse_root(&opts.lake).map_err(Error::Lake)?;
    let cluster_dir = std::path::Path::new(&opts.cluster_dir);
    let reservation_key = tarn_common::cluster::reservation_key(cluster_dir)
        .map_err(|e| Error::Credentials(e.to_string()))?;
    // The task port's TLS front takes the advertised address; Ballista's
    // own server sits behind it on a loopback alias of the same port.
    let public = |port: u16| -> Result<std::net::SocketAddr> {
        let addr = format!("{}:{port}", opts.bind_host);
        let parsed: std::net::SocketAddr = addr
            .parse()
            .map_err(|_| Error::InvalidAddress(addr.clone()))?;
        if parsed.ip().is_unspecified() {
            return Err(Error::InvalidAddress(format!(
                "{addr}: bind_host must be one address (the host's or the pod's IP), not a \
                 wildcard, so the task port's TLS front and Ballista's loopback server can share \
                 the port"
            )));
        }
        Ok(parsed)
    };
    let task_front_addr = public(grpc_port)?;
    let flight_addr = public(flight_port)?;
    let task_inner_addr: std::net::SocketAddr = format!("{}:{grpc_port}", front::INNER_HOST)
        .parse()
        .map_err(|_| Error::InvalidAddress(front::INNER_HOST.into()))?;
    // Shuffle files live here until their job's data expires. An explicit
    // directory, because Ballista's fallback temp dir is deleted as soon as
    // it is created.
    let (work_dir, owned_work_dir) = match &opts.work_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("tarn-{executor_id}"));
            std::fs::create_dir_all(&d).map_err(|source| Error::WorkDir {
                path: d.display().to_string(),
                source,
            })?;
            (d.display().to_string(), Some(d))
        }
    };

    let mut config = ExecutorProcessConfig {
        executor_id: executor_id.clone(),
        bind_host: front::INNER_HOST.to_string(),
        external_host: Some(
            opts.advertise_host
                .clone()
                .unwrap_or_else(|| opts.bind_host.clone()),
        ),
        port: flight_port,
        grpc_port,
        scheduler_host: coord_host.clone(),
        scheduler_port: coord_port,
        scheduler_connect_timeout_seconds: 30,
        vcores,
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: Some(work_dir.clone()),
        print_thread_info: false,
        job_data_ttl_seconds: 3600,
        job_data_clean_up_interval_seconds: 600,
        executor_heartbeat_interval_seconds: 3,
        override_logical_codec: Some(Arc::new(tarn_lake::LakeLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(tarn_lake::LakePhysicalCodec::default())),
        // Every task's plan is checked before it runs: only Tarn's
        // operators, over lake files.
        override_execution_engine: Some(Arc::new(engine::GuardedEngine::new(
            lake_root.clone(),
            Arc::clone(&counted),
        ))),
        // Calls to the scheduler, and its clients' reconnects, go over the
        // cluster's mutual TLS as this executor.
        override_create_grpc_client_endpoint: Some(Arc::new(tarn_common::cluster::secure_endpoint)),
        // So do tasks' shuffle fetches from other executors.
        override_config_producer: Some(Arc::new(|| {
            use ballista_core::extension::SessionConfigExt;
            datafusion::prelude::SessionConfig::new_with_ballista()
                .with_ballista_override_create_grpc_client_endpoint(Arc::new(
                    tarn_common::cluster::secure_endpoint,
                ))
        })),
        ..Default::default()
    };
    // Tasks open files only through the lake's store, confined to its root.
    // One memory pool for the process; each session's tasks (one runtime
    // per session, as Ballista caches them) get a share sized by the
    // partitions its lease runs, which follow its vCores.
    let memory_limit = match opts.memory_limit_bytes {
        0 => memory::default_limit(),
        n => n as usize,
    };
    let per_vcore = memory_limit / vcores.max(1);
    let process_pool = memory::process_pool(memory_limit);
    info!(memory_limit, per_vcore, "executor memory budget");
    let metrics_listener =
        tarn_common::net::bind(&format!("{}:{}", opts.bind_host, opts.metrics_port))
            .await?
            .0;
    let metrics_port = metrics_listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_default();
    tasks.service(
        "metrics server",
        metrics::serve(
            metrics_listener,
            Arc::clone(&counted),
            Arc::clone(&process_pool),
            memory_limit,
            shutdown.clone(),
        ),
    );
    let root = lake_root.clone();
    let spill_dir = work_dir.clone();
    let task_pool = Arc::clone(&process_pool);
    config.override_runtime_producer = Some(Arc::new(
        move |session: &datafusion::prelude::SessionConfig| {
            let lease_vcores = session.target_partitions().clamp(1, vcores.max(1));
            let job = tarn_lake::job_name(session).unwrap_or_default();
            let lease = job.rsplit_once('@').map(|(_, l)| l).unwrap_or("a session");
            let share = memory::LeaseShare::new(
                Arc::clone(&task_pool),
                per_vcore * lease_vcores,
                format!("lease {lease}"),
            );
            let env = RuntimeEnvBuilder::new()
                .with_temp_file_path(spill_dir.clone())
                .with_memory_pool(Arc::new(share))
                .build()?;
            tarn_lake::guard::confine_runtime(&env, &root)?;
            Ok(Arc::new(env))
        },
    ));
    // Direct runs share Ballista's Flight port, so a cluster needs no
    // extra port (or Service entry) for them.
    let direct_runtime = {
        let env = RuntimeEnvBuilder::new()
            .build()
            .map_err(|e| Error::Ballista {
                source: ballista_core::error::BallistaError::DataFusionError(Box::new(e)),
            })?;
        tarn_lake::guard::confine_runtime(&env, &lake_root).map_err(Error::Lake)?;
        Arc::new(env)
    };
    // Direct runs compute here, never on the runtime serving gRPC and
    // announcing the executor. A thread per vCore, like Ballista's task
    // slots: an operator that does not yield (a huge nested-loop join)
    // holds its thread until it ends, even when cancelled, and must not
    // starve other sessions' runs.
    let compute = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(vcores.max(1))
        .thread_name("tarn-direct")
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let compute_handle = compute.handle().clone();
    let max_message = config.grpc_max_encoding_message_size as usize;
    let flight_id = executor_id.clone();
    let grants = Arc::new(tarn_common::reservation::GrantChecker::new(
        reservation_key,
        executor_id.clone(),
    ));
    let flight_root = lake_root.clone();
    let flight_tls = Arc::clone(&tls);
    let direct_pool = Arc::clone(&process_pool);
    let flight_tasks = tasks.clone();
    config.override_arrow_flight_service = Some(Arc::new(
        move |work_dir, _inner_address, shutdown, grpc_config| {
            direct::serve(
                direct::TarnFlightService::new(
                    work_dir,
                    Arc::clone(&direct_runtime),
                    flight_id.clone(),
                    direct::Compute {
                        handle: compute_handle.clone(),
                        tasks: flight_tasks.clone(),
                        metrics: Arc::clone(&counted),
                    },
                    flight_root.clone(),
                    Arc::clone(&grants),
                    direct::MemoryBudget {
                        process: Arc::clone(&direct_pool),
                        per_vcore,
                    },
                ),
                flight_addr,
                shutdown,
                grpc_config,
                max_message,
                Arc::clone(&flight_tls),
                &flight_tasks,
            )
        },
    ));
    info!(%executor_id, pool = pool.label(), vcores, flight_port, grpc_port, "starting executor");

    let announce = RegisterExecutorRequest {
        header: Some(tarn_proto::header()),
        executor_id: executor_id.clone(),
        pool: pool as i32,
        vcores: vcores as u32,
        host: config.external_host.clone().unwrap_or_default(),
        flight_port: flight_port as u32,
        grpc_port: grpc_port as u32,
        pid: std::process::id(),
        draining: false,
        metrics_port: u32::from(metrics_port),
    };
    let coordinator = format!("http://{coord_host}:{coord_port}");
    let announcing = announce_loop(coordinator, announce, shutdown.clone());
    tasks.service("announcer", async move {
        announcing.await;
        Ok::<(), std::convert::Infallible>(())
    });
    // The task port stays up while Ballista drains (the scheduler still
    // talks to a draining executor), so it stops with Ballista, not at
    // the signal.
    let front_stop = CancellationToken::new();
    front::serve(
        task_front_addr,
        task_inner_addr,
        Arc::clone(&tls),
        front_stop.clone(),
        &tasks,
    )?;

    // Ballista's executor handles SIGINT/SIGTERM itself: it fences itself
    // with the scheduler, drains running tasks and stops its servers. The
    // same signal cancels `shutdown`: the announcer tells the coordinator
    // this executor is draining and stops. A failed service of ours stops
    // the executor at once.
    let ballista = start_executor_process(Arc::new(config));
    let failed = async {
        match tasks.wait().await {
            Err(e) => e,
            Ok(()) => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = ballista => r.map_err(|source| Error::Ballista { source }),
        e = failed => Err(Error::Task(e)),
    };
    shutdown.cancel();
    front_stop.cancel();
    tasks.drain(Duration::from_secs(5)).await;
    compute.shutdown_background();
    if let Some(d) = owned_work_dir {
        let _ = std::fs::remove_dir_all(d);
    }
    result
}

/// Announces the executor's pool until shutdown, at a third of the TTL the
/// coordinator asks for (at most every 2 s, so a coordinator that just took
/// over learns the pools quickly), so one lost announcement never expires it.
/// At shutdown it announces once more as draining (bounded, best effort:
/// the TTL forgets it anyway), so the pool stops counting it at once.
async fn announce_loop(
    coordinator: String,
    mut req: RegisterExecutorRequest,
    shutdown: CancellationToken,
) {
    let mut period = Duration::from_secs(1);
    let mut warned = false;
    loop {
        let draining = shutdown.is_cancelled();
        req.draining = draining;
        let call = async {
            let mut client = tarn_proto::connect_coordinator(&coordinator)
                .await
                .map_err(|e| e.to_string())?;
            client
                .register_executor(req.clone())
                .await
                .map(|r| r.into_inner())
                .map_err(|e| e.message().to_string())
        };
        let result = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .unwrap_or_else(|_| Err("no answer within 5 s".to_string()));
        if draining {
            match result {
                Ok(_) => info!(%coordinator, "told the coordinator this executor is draining"),
                Err(e) => {
                    warn!(%coordinator, error = %e, "could not tell the coordinator this executor is draining")
                }
            }
            return;
        }
        match result {
            Ok(resp) => {
                warned = false;
                period = Duration::from_millis(
                    (u64::from(resp.ttl_seconds.max(1)) * 1000 / 3).clamp(200, 2000),
                );
            }
            Err(e) if !warned => {
                warn!(%coordinator, error = %e, "cannot announce executor to coordinator; retrying");
                warned = true;
                period = Duration::from_millis(500);
            }
            Err(_) => {}
        }
        // Woken by shutdown to send the draining announcement.
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(period) => {}
        }
    }
}

fn split_host_port(addr: &str) -> Result<(String, u16)> {
    let addr = addr.trim_start_matches("http://");
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| Error::InvalidAddress(addr.to_string()))?;
    let port = port
        .parse()
        .map_err(|_| Error::InvalidAddress(addr.to_string()))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}
