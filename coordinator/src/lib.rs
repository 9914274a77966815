//! The Tarn coordinator: owns the truth of the cluster.
//!
//! It embeds Ballista's scheduler as a library (push-based task scheduling,
//! Tarn's lake codec registered) and serves Tarn's own `tarn.v1.Coordinator`
//! API on the same port. Executors register with both: with Ballista for
//! tasks, with Tarn for their pool label and vCores.

pub mod error;
pub mod options;
pub mod registry;
pub mod service;

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
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::registry::ExecutorRegistry;
use crate::service::CoordinatorService;

/// Ballista's scheduler specialised to the plan encodings Tarn uses.
pub type Scheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// The session configuration every coordinator-side planning session starts
/// from: Ballista's defaults plus Tarn's codec.
pub fn session_config() -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_ballista_logical_extension_codec(Arc::new(tarn_lake::LakeLogicalCodec::default()))
}

/// A running coordinator.
pub struct Coordinator {
    /// Where it listens (Ballista scheduler and Tarn API share the port).
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<Result<()>>,
    shutdown: CancellationToken,
    drain_timeout: std::time::Duration,
}

impl Coordinator {
    /// Binds, starts the scheduler and the API, and returns at once.
    pub async fn start(opts: Arc<CoordinatorOptions>, shutdown: CancellationToken) -> Result<Self> {
        let listener = TcpListener::bind(&opts.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: opts.bind.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: opts.bind.clone(),
            source,
        })?;
        let lake_root = tarn_lake::parse_root(&opts.lake).map_err(Error::Lake)?;

        let root = lake_root.clone();
        let session_builder: ballista_scheduler::scheduler_server::SessionBuilder =
            Arc::new(move |config: SessionConfig| {
                let state = default_session_builder(config)?;
                tarn_lake::register_object_store(state.runtime_env(), &root)?;
                Ok(state)
            });
        let config_producer: ballista_core::ConfigProducer = Arc::new(session_config);

        let endpoint = format!("{}:{}", addr.ip(), addr.port());
        let cluster = BallistaCluster::new_memory(
            endpoint.clone(),
            Arc::clone(&session_builder),
            Arc::clone(&config_producer),
        );
        let job_state = cluster.job_state();

        let mut config = SchedulerConfig {
            bind_host: addr.ip().to_string(),
            external_host: addr.ip().to_string(),
            bind_port: addr.port(),
            scheduling_policy: TaskSchedulingPolicy::PushStaged,
            task_distribution: TaskDistributionPolicy::Bias,
            executor_timeout_seconds: opts.executor_ttl.as_secs().max(1),
            expire_dead_executor_interval_seconds: 2,
            override_session_builder: Some(session_builder),
            override_config_producer: Some(config_producer),
            override_logical_codec: Some(Arc::new(tarn_lake::LakeLogicalCodec::default())),
            ..Default::default()
        };
        config.finished_job_data_clean_up_interval_seconds = 300;
        config.finished_job_state_clean_up_interval_seconds = 3600;
        let scheduler: Scheduler = create_scheduler(cluster, Arc::new(config))
            .await
            .map_err(|source| Error::StartScheduler { source })?;

        let registry = Arc::new(ExecutorRegistry::new(
            opts.executor_ttl,
            opts.interactive_pool_vcores,
            opts.job_pool_vcores,
        ));
        let service = CoordinatorService::new(Arc::clone(&registry), scheduler.clone(), job_state);

        let ballista =
            ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer::new(
                scheduler,
            )
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024);
        let tarn = tarn_proto::coordinator_server::CoordinatorServer::new(service);

        info!(%addr, lake = %lake_root, "coordinator listening (Ballista scheduler + tarn.v1.Coordinator)");
        let server_shutdown = shutdown.clone();
        let task = tokio::spawn(async move {
            // Nagle on these sockets costs a delayed-ACK round (~40 ms) per
            // small response; the builder's own nodelay flag does not reach
            // a caller-supplied listener, so it is set on the incoming side.
            tonic::transport::Server::builder()
                .add_service(ballista)
                .add_service(tarn)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    server_shutdown.cancelled_owned(),
                )
                .await
                .map_err(|source| Error::Serve { source })
        });
        Ok(Self {
            addr,
            task,
            shutdown,
            drain_timeout: opts.drain_timeout,
        })
    }

    /// Waits until the server stops. Executors hold connections open, so
    /// after a shutdown request they get `drain_timeout`, then are dropped.
    pub async fn wait(self) -> Result<()> {
        let deadline = async {
            self.shutdown.cancelled().await;
            tokio::time::sleep(self.drain_timeout).await;
        };
        tokio::select! {
            r = self.task => r.map_err(|e| Error::Task(e.to_string()))?,
            _ = deadline => Ok(()),
        }
    }
}
