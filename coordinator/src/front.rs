//! The Ballista scheduler's gRPC face, in front of the scheduler itself.
//!
//! A coordinator serves its port from the start, but only the leader has a
//! scheduler behind it: a standby answers Ballista calls with TARN-2902
//! NOT_LEADER, so executors and gateways (through their leader-following
//! proxy) move on to the leader. On the leader, query submissions are
//! checked against the ledger first: a job must be named `query@lease`
//! after a live lease, or it is refused before it is planned.

use std::sync::{Arc, OnceLock};

use ballista_core::config::BALLISTA_JOB_NAME;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use ballista_core::serde::protobuf::*;
use ballista_scheduler::cluster::JobState;
use tarn_common::{ErrorCode, TarnError};
use tonic::{Request, Response, Status};

use crate::binding::lease_of_job;
use crate::ledger::Ledger;
use crate::Scheduler;

/// What only the leader has.
pub struct Leading {
    /// The embedded Ballista scheduler.
    pub scheduler: Scheduler,
    /// Its job state (execution graphs).
    pub jobs: Arc<dyn JobState>,
    /// Leases and the job queue.
    pub ledger: Arc<Ledger>,
    /// Reservations of direct runs (single-stage plans sent straight to
    /// an executor), counted by the binding policy.
    pub direct: Arc<crate::direct::DirectRuns>,
}

impl Leading {
    /// A job's execution graph: a running job's from the scheduler's
    /// active cache (the job state holds only finished jobs' graphs, so
    /// a running job's stages would otherwise never show), a finished
    /// job's from the job state.
    pub async fn graph(
        &self,
        job_id: &ballista_core::JobId,
    ) -> Option<ballista_scheduler::state::execution_graph::ExecutionGraphBox> {
        let running = self.scheduler.state.task_manager.get_running_job_cache();
        if let Some(job) = running.get(job_id) {
            return Some(job.execution_graph.read().await.cloned());
        }
        self.jobs.get_execution_graph(job_id).await.ok().flatten()
    }
}

/// Set once, when this coordinator becomes leader.
#[derive(Default)]
pub struct LeaderSlot(OnceLock<Leading>);

impl LeaderSlot {
    /// Installs the leader's parts; later calls are ignored.
    pub fn set(&self, leading: Leading) {
        let _ = self.0.set(leading);
    }

    /// The leader's parts, or NOT_LEADER.
    pub fn get(&self) -> Result<&Leading, Status> {
        self.0.get().ok_or_else(not_leader)
    }

    /// Whether this coordinator leads.
    pub fn is_leader(&self) -> bool {
        self.0.get().is_some()
    }
}

/// The NOT_LEADER status.
pub fn not_leader() -> Status {
    TarnError::new(
        ErrorCode::NotLeader,
        "this coordinator is a standby; another coordinator leads",
    )
    .to_status()
}

/// `SchedulerGrpc` delegating to the leader's scheduler.
#[derive(Clone)]
pub struct SchedulerFront {
    slot: Arc<LeaderSlot>,
}

impl SchedulerFront {
    /// A front over `slot`.
    pub fn new(slot: Arc<LeaderSlot>) -> Self {
        Self { slot }
    }

    fn scheduler(&self) -> Result<&Scheduler, Status> {
        Ok(&self.slot.get()?.scheduler)
    }

    /// Refuses a query that does not run under a live lease.
    fn admit(&self, params: &ExecuteQueryParams) -> Result<(), Status> {
        let leading = self.slot.get()?;
        let name = params
            .settings
            .iter()
            .find(|kv| kv.key == BALLISTA_JOB_NAME)
            .and_then(|kv| kv.value.clone())
            .unwrap_or_default();
        let Some(lease) = lease_of_job(&name) else {
            return Err(TarnError::new(
                ErrorCode::InvalidArgument,
                format!("job {name:?} names no vCore lease; jobs are named query@lease"),
            )
            .with_fix(
                "submit queries through the Tarn gateway, which runs them under a session's lease",
            )
            .to_status());
        };
        if leading.ledger.lease_grant(lease).is_none() {
            return Err(TarnError::new(
                ErrorCode::SessionNotFound,
                format!("the vCore lease {lease} has ended (session closed or timed out)"),
            )
            .to_status());
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl SchedulerGrpc for SchedulerFront {
    async fn poll_work(
        &self,
        request: Request<PollWorkParams>,
    ) -> Result<Response<PollWorkResult>, Status> {
        SchedulerGrpc::poll_work(self.scheduler()?, request).await
    }

    async fn register_executor(
        &self,
        request: Request<RegisterExecutorParams>,
    ) -> Result<Response<RegisterExecutorResult>, Status> {
        SchedulerGrpc::register_executor(self.scheduler()?, request).await
    }

    async fn heart_beat_from_executor(
        &self,
        request: Request<HeartBeatParams>,
    ) -> Result<Response<HeartBeatResult>, Status> {
        SchedulerGrpc::heart_beat_from_executor(self.scheduler()?, request).await
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusParams>,
    ) -> Result<Response<UpdateTaskStatusResult>, Status> {
        SchedulerGrpc::update_task_status(self.scheduler()?, request).await
    }

    async fn create_update_session(
        &self,
        request: Request<CreateUpdateSessionParams>,
    ) -> Result<Response<CreateUpdateSessionResult>, Status> {
        SchedulerGrpc::create_update_session(self.scheduler()?, request).await
    }

    async fn remove_session(
        &self,
        request: Request<RemoveSessionParams>,
    ) -> Result<Response<RemoveSessionResult>, Status> {
        SchedulerGrpc::remove_session(self.scheduler()?, request).await
    }

    type ExecuteQueryPushStream = <Scheduler as SchedulerGrpc>::ExecuteQueryPushStream;

    async fn execute_query_push(
        &self,
        request: Request<ExecuteQueryParams>,
    ) -> Result<Response<Self::ExecuteQueryPushStream>, Status> {
        self.admit(request.get_ref())?;
        SchedulerGrpc::execute_query_push(self.scheduler()?, request).await
    }

    async fn execute_query(
        &self,
        request: Request<ExecuteQueryParams>,
    ) -> Result<Response<ExecuteQueryResult>, Status> {
        self.admit(request.get_ref())?;
        SchedulerGrpc::execute_query(self.scheduler()?, request).await
    }

    async fn get_job_status(
        &self,
        request: Request<GetJobStatusParams>,
    ) -> Result<Response<GetJobStatusResult>, Status> {
        SchedulerGrpc::get_job_status(self.scheduler()?, request).await
    }

    async fn get_job_metrics(
        &self,
        request: Request<GetJobMetricsParams>,
    ) -> Result<Response<GetJobMetricsResult>, Status> {
        SchedulerGrpc::get_job_metrics(self.scheduler()?, request).await
    }

    async fn executor_stopped(
        &self,
        request: Request<ExecutorStoppedParams>,
    ) -> Result<Response<ExecutorStoppedResult>, Status> {
        SchedulerGrpc::executor_stopped(self.scheduler()?, request).await
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobParams>,
    ) -> Result<Response<CancelJobResult>, Status> {
        SchedulerGrpc::cancel_job(self.scheduler()?, request).await
    }

    async fn clean_job_data(
        &self,
        request: Request<CleanJobDataParams>,
    ) -> Result<Response<CleanJobDataResult>, Status> {
        SchedulerGrpc::clean_job_data(self.scheduler()?, request).await
    }
}
