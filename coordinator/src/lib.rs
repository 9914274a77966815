//! The Tarn coordinator: owns the truth of the cluster.
//!
//! It embeds Ballista's scheduler as a library (push-based task scheduling,
//! Tarn's lake codec and lease-aware task binding) and serves Tarn's own
//! `tarn.v1.Coordinator` API on the same port. Executors register with
//! both: with Ballista for tasks, with Tarn for their pool label and
//! vCores. Leases and the job queue live in the ledger, persisted in the
//! state store (embedded redb file, or etcd with leader election).

pub mod binding;
pub mod direct;
pub mod error;
pub mod front;
pub mod ledger;
pub mod metrics;
pub mod options;
pub mod registry;
pub mod schedule;
pub mod service;
pub mod vcores;

pub use error::{Error, Result};
pub use options::CoordinatorOptions;

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::SessionConfigExt;
use ballista_core::utils::default_session_builder;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::create_scheduler;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tarn_state::{EmbeddedStore, EtcdStore, StateStore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::front::{LeaderSlot, Leading, SchedulerFront};
use crate::ledger::{Ledger, Limits};
use crate::registry::ExecutorRegistry;
use crate::service::CoordinatorService;
use tarn_common::cluster::{Role, RoleGuard};
use tarn_common::supervisor::Supervisor;

/// Ballista's scheduler specialised to the plan encodings Tarn uses.
pub type Scheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// The session configuration every coordinator-side planning session starts
/// from: Ballista's defaults plus Tarn's codec.
pub fn session_config() -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_ballista_adaptive_query_planner(false)
        .with_ballista_logical_extension_codec(Arc::new(tarn_lake::LakeLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(tarn_lake::LakePhysicalCodec::default()))
}

/// A running coordinator.
pub struct Coordinator {
    /// Where it listens (Ballista scheduler and Tarn API share the port).
    pub addr: SocketAddr,
    /// Where `/metrics` is served, if enabled.
    pub http_addr: Option<SocketAddr>,
    tasks: Supervisor,
    drain_timeout: std::time::Duration,
}

/// The state store a coordinator was configured with.
enum Store {
    Embedded(EmbeddedStore),
    Etcd(Box<EtcdStore>),
}

impl Coordinator {
    /// Binds, opens the state store and starts serving at once; the
    /// scheduler starts when this coordinator becomes leader (at once with
    /// the embedded store, after winning the election with etcd).
    pub async fn start(opts: Arc<CoordinatorOptions>, shutdown: CancellationToken) -> Result<Self> {
        let (listener, addr) = tarn_common::net::bind(&opts.bind).await?;
        let advertise = if opts.advertise.is_empty() {
            addr.to_string()
        } else {
            opts.advertise.clone()
        };
        let lake_root = tarn_lake::parse_root(&opts.lake).map_err(Error::Lake)?;
        let limits = limits(&opts)?;
        let tls = tarn_common::cluster::ClusterTls::load(
            std::path::Path::new(&opts.cluster_dir),
            Role::Coordinator,
        )
        .map_err(|e| Error::Config(e.to_string()))?
        .install();
        let reservation_key = Arc::new(
            tarn_common::cluster::reservation_key(std::path::Path::new(&opts.cluster_dir))
                .map_err(|e| Error::Config(e.to_string()))?,
        );

        let store = match opts.store.as_str() {
            "embedded" => Store::Embedded(EmbeddedStore::open(
                std::path::Path::new(&opts.state_dir).join("tarn.redb"),
            )?),
            "etcd" => Store::Etcd(Box::new(
                EtcdStore::connect(&opts.etcd_endpoints, &opts.etcd_prefix).await?,
            )),
            other => {
                return Err(Error::Config(format!(
                    "store must be \"embedded\" or \"etcd\", not {other:?}"
                )))
            }
        };
        let election = match &store {
            Store::Etcd(s) => Some(Arc::new(s.election(&advertise, opts.election_ttl))),
            Store::Embedded(_) => None,
        };

        let registry = Arc::new(ExecutorRegistry::new(
            opts.executor_ttl,
            opts.interactive_pool_vcores,
            opts.job_pool_vcores,
        ));
        let slot = Arc::new(LeaderSlot::default());
        let backend = match &store {
            Store::Embedded(_) => "embedded",
            Store::Etcd(_) => "etcd",
        };
        let service = CoordinatorService::new(
            Arc::clone(&registry),
            Arc::clone(&slot),
            advertise.clone(),
            backend,
            election.clone(),
            reservation_key,
        );
        let ballista = RoleGuard::new(
            ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer::new(
                SchedulerFront::new(Arc::clone(&slot)),
            )
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024),
            callers,
        );
        let tarn = RoleGuard::new(
            tarn_proto::coordinator_server::CoordinatorServer::new(service),
            callers,
        );

        info!(%addr, %advertise, store = backend, lake = %lake_root, "coordinator listening (Ballista scheduler + tarn.v1.Coordinator)");
        let tasks = Supervisor::new(shutdown.clone());
        let server_shutdown = shutdown.clone();
        tasks.service("coordinator server", async move {
            // Nagle on these sockets costs a delayed-ACK round (~40 ms) per
            // small response; the builder's own nodelay flag does not reach
            // a caller-supplied listener, so it is set on the incoming side.
            tonic::transport::Server::builder()
                .tls_config(tls.server_config())
                .map_err(|source| Error::Serve { source })?
                .add_service(ballista)
                .add_service(tarn)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    server_shutdown.cancelled_owned(),
                )
                .await
                .map_err(|source| Error::Serve { source })
        });

        let mut http_addr = None;
        if !opts.http_bind.is_empty() {
            let (l, local) = tarn_common::net::bind(&opts.http_bind).await?;
            http_addr = Some(local);
            info!(addr = ?http_addr, "metrics on /metrics");
            tasks.service(
                "metrics server",
                metrics::serve(
                    l,
                    Arc::clone(&registry),
                    Arc::clone(&slot),
                    shutdown.clone(),
                ),
            );
        }

        let lead = Lead {
            opts: Arc::clone(&opts),
            addr,
            lake_root,
            limits,
            registry,
            slot,
            tasks: tasks.clone(),
        };
        tasks.service("leadership", lead.run(store, election));
        Ok(Self {
            addr,
            http_addr,
            tasks,
            drain_timeout: opts.drain_timeout,
        })
    }

    /// Waits until the servers stop. Executors hold connections open, so
    /// after a shutdown request they get `drain_timeout`, then are dropped.
    /// Returns the first failure of a server or loop (leadership lost, the
    /// store unusable) at once: a process that can neither lead nor stand
    /// by must exit so it is restarted, and one that lost leadership must
    /// stop serving before a standby takes over, so there is no drain.
    pub async fn wait(self) -> Result<()> {
        self.tasks.wait().await.map_err(Error::Task)?;
        if !self.tasks.drain(self.drain_timeout).await {
            info!("drain timeout reached; closing remaining connections");
        }
        Ok(())
    }
}

fn limits(opts: &CoordinatorOptions) -> Result<Limits> {
    let sizes: std::collections::BTreeMap<String, u32> = opts
        .session_sizes
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), *v))
        .collect();
    if !sizes.contains_key(&opts.default_session_size.to_ascii_lowercase()) {
        return Err(Error::Config(format!(
            "default_session_size {:?} is not one of session_sizes ({})",
            opts.default_session_size,
            sizes.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(Limits {
        interactive_vcores: opts.interactive_pool_vcores,
        job_vcores: opts.job_pool_vcores,
        account_vcores: opts.account_vcores,
        max_interactive_users: opts.max_interactive_users,
        max_running_jobs: opts.max_running_jobs,
        max_queued_jobs: opts.max_queued_jobs,
        lease_ttl: opts.lease_ttl,
        sizes,
        default_size: opts.default_session_size.to_ascii_lowercase(),
        max_jobs: (opts.max_jobs_per_workspace, opts.max_jobs_per_user),
        max_scheduled_jobs: (
            opts.max_scheduled_jobs_per_workspace,
            opts.max_scheduled_jobs_per_user,
        ),
        job_history: opts.job_history,
        max_job_timeout: opts.max_job_timeout,
        min_schedule_interval: opts.min_schedule_interval,
    })
}

/// Becoming (and staying) leader.
struct Lead {
    opts: Arc<CoordinatorOptions>,
    addr: SocketAddr,
    lake_root: url::Url,
    limits: Limits,
    registry: Arc<ExecutorRegistry>,
    slot: Arc<LeaderSlot>,
    tasks: Supervisor,
}

impl Lead {
    async fn run(self, store: Store, election: Option<Arc<tarn_state::Election>>) -> Result<()> {
        let (store, leadership): (Arc<dyn StateStore>, _) = match store {
            Store::Embedded(s) => (Arc::new(s), None),
            Store::Etcd(s) => {
                let election = election.ok_or_else(|| Error::Task("no election".into()))?;
                info!("standing by: campaigning for leadership in etcd");
                let Some(l) = election.campaign(&self.tasks).await? else {
                    return Ok(());
                };
                s.fence_with(&l);
                (Arc::new(*s), Some(l))
            }
        };
        let started = std::time::Instant::now();
        let (released_tx, released_rx) = tokio::sync::mpsc::unbounded_channel();
        let ledger = Arc::new(
            Ledger::load(
                self.limits.clone(),
                store,
                Arc::clone(&self.registry),
                Some(released_tx),
            )
            .await
            .map_err(Error::Ledger)?,
        );
        let direct = Arc::new(direct::DirectRuns::default());
        let (scheduler, jobs) = self
            .start_scheduler(Arc::clone(&ledger), Arc::clone(&direct))
            .await?;
        self.tasks.spawn(
            "cancel released leases' jobs",
            cancel_released(scheduler.clone(), released_rx),
        );
        let sweep = sweep(
            Arc::clone(&ledger),
            self.opts.lease_ttl,
            self.tasks.token().clone(),
        );
        self.tasks.service("lease sweep", async move {
            sweep.await;
            Ok::<(), Error>(())
        });
        let schedules = schedule::run(Arc::clone(&ledger), self.tasks.token().clone());
        self.tasks.service("job schedules", async move {
            schedules.await;
            Ok::<(), Error>(())
        });
        if let Some(ms) = std::env::var("TARN_TEST_LEADERSHIP_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            // Tests only: hold leadership back, as a slow ledger load would,
            // to show the other roles waiting for it.
            tracing::warn!(ms, "leadership delayed (TARN_TEST_LEADERSHIP_DELAY_MS)");
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        self.slot.set(Leading {
            scheduler,
            jobs,
            ledger,
            direct,
        });
        info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "leading: scheduler started, ledger loaded"
        );
        // Leading lasts until shutdown; losing the etcd lease ends it with
        // an error, which stops the whole coordinator (its supervisor).
        match leadership {
            None => {
                self.tasks.token().cancelled().await;
                Ok(())
            }
            Some(l) => tokio::select! {
                _ = self.tasks.token().cancelled() => Ok(()),
                _ = l.lost.cancelled() => Err(Error::LostLeadership),
            },
        }
    }

    async fn start_scheduler(
        &self,
        ledger: Arc<Ledger>,
        direct: Arc<direct::DirectRuns>,
    ) -> Result<(Scheduler, Arc<dyn ballista_scheduler::cluster::JobState>)> {
        let root = self.lake_root.clone();
        let session_builder: ballista_scheduler::scheduler_server::SessionBuilder =
            Arc::new(move |config: SessionConfig| {
                // Gateways name jobs `query@lease`: this line ties the
                // scheduler's work to the query id the gateway and the
                // executors log.
                let job = tarn_lake::job_name(&config).unwrap_or_default();
                if let Some((query_id, lease)) = job.split_once('@') {
                    info!(query_id, lease, "planning a query's job");
                }
                let state = default_session_builder(config)?;
                tarn_lake::register_object_store(state.runtime_env(), &root)?;
                // Every task of a stage must run the same operators (see
                // `tarn_lake::leaves`).
                Ok(SessionStateBuilder::new_from_existing(state)
                    .with_physical_optimizer_rule(Arc::new(tarn_lake::leaves::MemoryLeaves))
                    .build())
            });
        let config_producer: ballista_core::ConfigProducer = Arc::new(session_config);
        let endpoint = format!("{}:{}", self.addr.ip(), self.addr.port());
        let memory = BallistaCluster::new_memory(
            endpoint,
            Arc::clone(&session_builder),
            Arc::clone(&config_producer),
        );
        // Ballista's own state, with vCores it leaks on a lost executor
        // refunded (see `vcores`).
        let cluster = BallistaCluster::new(
            Arc::new(vcores::RefundingClusterState::new(memory.cluster_state())),
            memory.job_state(),
        );
        let job_state = cluster.job_state();
        let policy = binding::LeasePolicy::new(ledger, Arc::clone(&self.registry), direct);
        let mut config = SchedulerConfig {
            bind_host: self.addr.ip().to_string(),
            external_host: self.addr.ip().to_string(),
            bind_port: self.addr.port(),
            scheduling_policy: TaskSchedulingPolicy::PushStaged,
            task_distribution: TaskDistributionPolicy::Custom(Arc::new(policy)),
            executor_timeout_seconds: self.opts.executor_ttl.as_secs().max(1),
            expire_dead_executor_interval_seconds: 2,
            override_session_builder: Some(session_builder),
            override_config_producer: Some(config_producer),
            override_logical_codec: Some(Arc::new(tarn_lake::LakeLogicalCodec::default())),
            override_physical_codec: Some(Arc::new(tarn_lake::LakePhysicalCodec::default())),
            // The scheduler launches tasks over mutual TLS as the
            // coordinator; executors' task ports take no one else.
            override_create_grpc_client_endpoint: Some(Arc::new(
                tarn_common::cluster::secure_endpoint,
            )),
            ..Default::default()
        };
        config.finished_job_data_clean_up_interval_seconds = 300;
        config.finished_job_state_clean_up_interval_seconds = 3600;
        let scheduler: Scheduler = create_scheduler(cluster, Arc::new(config))
            .await
            .map_err(|source| Error::StartScheduler { source })?;
        Ok((scheduler, job_state))
    }
}

/// Who may call what on the coordinator's port: executors register and
/// report on their tasks; gateways lease, submit plans and reserve direct
/// runs; anyone of the cluster may ask who leads.
fn callers(path: &str) -> &'static [Role] {
    const ANY: &[Role] = &[Role::Gateway, Role::Executor, Role::Coordinator];
    const EXECUTOR: &[Role] = &[Role::Executor];
    const GATEWAY: &[Role] = &[Role::Gateway];
    match path.rsplit_once('/') {
        Some(("/tarn.v1.Coordinator", "Health")) => ANY,
        Some(("/tarn.v1.Coordinator", "RegisterExecutor")) => EXECUTOR,
        Some((
            "/ballista.protobuf.SchedulerGrpc",
            "RegisterExecutor"
            | "HeartBeatFromExecutor"
            | "UpdateTaskStatus"
            | "PollWork"
            | "ExecutorStopped",
        )) => EXECUTOR,
        _ => GATEWAY,
    }
}

/// Ends leases nobody renews, and starts queued runs that now fit.
async fn sweep(ledger: Arc<Ledger>, ttl: std::time::Duration, shutdown: CancellationToken) {
    let period = (ttl / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        if let Err(e) = ledger.expire().await {
            warn!(error = %e, "lease sweep failed; will retry");
        }
    }
}

/// Cancels the Ballista jobs of leases that ended, so a closed or expired
/// session stops using executors at once.
async fn cancel_released(
    scheduler: Scheduler,
    mut released: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
    use ballista_core::serde::protobuf::{job_status, CancelJobParams};
    while let Some(lease) = released.recv().await {
        let Ok(jobs) = scheduler.state.task_manager.get_all_jobs().await else {
            continue;
        };
        for job in jobs.into_iter().filter(|j| {
            binding::lease_of_job(&j.job_name) == Some(lease.as_str())
                && matches!(
                    j.status.status,
                    Some(job_status::Status::Queued(_)) | Some(job_status::Status::Running(_))
                )
        }) {
            let params = CancelJobParams {
                job_id: job.job_id.to_string(),
            };
            if let Err(e) = SchedulerGrpc::cancel_job(&scheduler, tonic::Request::new(params)).await
            {
                warn!(%lease, error = %e, "could not cancel a job of an ended lease");
            } else {
                info!(%lease, job = %job.job_id, "cancelled a job of an ended lease");
            }
        }
    }
}
