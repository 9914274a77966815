//! The `tarn.v1.Coordinator` gRPC service.

use std::collections::HashSet;
use std::sync::Arc;

use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use ballista_core::serde::protobuf::{job_status, task_status, CancelJobParams};
use ballista_scheduler::cluster::JobState;
use ballista_scheduler::state::execution_stage::ExecutionStage;
use tarn_common::{ErrorCode, TarnError, PROTOCOL_VERSION};
use tarn_proto::coordinator_server::Coordinator as CoordinatorApi;
use tarn_proto::*;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::registry::ExecutorRegistry;
use crate::Scheduler;

/// Serves pools, executors and job views.
pub struct CoordinatorService {
    registry: Arc<ExecutorRegistry>,
    scheduler: Scheduler,
    jobs: Arc<dyn JobState>,
}

impl CoordinatorService {
    /// A service over the registry and the embedded scheduler.
    pub fn new(
        registry: Arc<ExecutorRegistry>,
        scheduler: Scheduler,
        jobs: Arc<dyn JobState>,
    ) -> Self {
        Self {
            registry,
            scheduler,
            jobs,
        }
    }

    /// Live executors, each marked with whether Ballista also sees it.
    async fn executors(&self) -> Vec<ExecutorInfo> {
        let alive: HashSet<String> = self
            .scheduler
            .state
            .executor_manager
            .get_executors_state()
            .await
            .map(|v| v.into_iter().map(|(m, _, _)| m.id).collect())
            .unwrap_or_default();
        let mut live = self.registry.live();
        for e in &mut live {
            e.scheduler_alive = alive.contains(&e.executor_id);
        }
        live
    }
}

fn check_header(h: &Option<RequestHeader>) -> Result<(), Status> {
    match h {
        Some(h) if h.protocol_version != PROTOCOL_VERSION => {
            Err(Status::failed_precondition(format!(
                "protocol version {} is not {}; run the same Tarn version on every role",
                h.protocol_version, PROTOCOL_VERSION
            )))
        }
        _ => Ok(()),
    }
}

#[tonic::async_trait]
impl CoordinatorApi for CoordinatorService {
    #[instrument(skip_all)]
    async fn health(
        &self,
        request: Request<HealthRequest>,
    ) -> Result<Response<HealthResponse>, Status> {
        check_header(&request.get_ref().header)?;
        let live = self.executors().await;
        let count = |p: Pool| {
            live.iter()
                .filter(|e| e.pool == p as i32 && e.scheduler_alive)
                .count() as u32
        };
        Ok(Response::new(HealthResponse {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol_version: PROTOCOL_VERSION,
            interactive_executors: count(Pool::Interactive),
            job_executors: count(Pool::Job),
        }))
    }

    #[instrument(skip_all, fields(executor_id = %request.get_ref().executor_id))]
    async fn register_executor(
        &self,
        request: Request<RegisterExecutorRequest>,
    ) -> Result<Response<RegisterExecutorResponse>, Status> {
        let r = request.into_inner();
        check_header(&r.header)?;
        if r.executor_id.is_empty() {
            return Err(TarnError::new(ErrorCode::InvalidArgument, "executor_id is empty").into());
        }
        let pool = Pool::try_from(r.pool).unwrap_or(Pool::Unspecified);
        if pool == Pool::Unspecified {
            return Err(TarnError::new(
                ErrorCode::InvalidArgument,
                "executor pool must be interactive or job",
            )
            .with_fix("start the executor with --pool interactive or --pool job")
            .into());
        }
        self.registry.upsert(ExecutorInfo {
            executor_id: r.executor_id,
            pool: pool as i32,
            vcores: r.vcores,
            host: r.host,
            flight_port: r.flight_port,
            grpc_port: r.grpc_port,
            pid: r.pid,
            scheduler_alive: false,
            last_seen_unix_ms: 0,
        });
        Ok(Response::new(RegisterExecutorResponse {
            ttl_seconds: self.registry.ttl().as_secs() as u32,
        }))
    }

    #[instrument(skip_all)]
    async fn get_cluster_info(
        &self,
        request: Request<GetClusterInfoRequest>,
    ) -> Result<Response<GetClusterInfoResponse>, Status> {
        check_header(&request.get_ref().header)?;
        let executors = self.executors().await;
        let pools = self.registry.pools(&executors);
        Ok(Response::new(GetClusterInfoResponse { executors, pools }))
    }

    #[instrument(skip_all)]
    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let r = request.into_inner();
        check_header(&r.header)?;
        let limit = if r.limit == 0 { 50 } else { r.limit as usize };
        let mut overviews = self
            .scheduler
            .state
            .task_manager
            .get_all_jobs()
            .await
            .map_err(|e| TarnError::new(ErrorCode::Internal, format!("cannot list jobs: {e}")))?;
        overviews.sort_by_key(|o| std::cmp::Reverse(o.start_time));
        let mut jobs = Vec::new();
        for o in overviews.into_iter().take(limit) {
            let mut tasks = Vec::new();
            let mut stage_count = o.num_stages as u32;
            let mut session_id = String::new();
            if let Ok(Some(graph)) = self.jobs.get_execution_graph(&o.job_id).await {
                stage_count = graph.stage_count() as u32;
                session_id = graph.session_id().to_string();
                for (stage_id, stage) in graph.stages() {
                    if let ExecutionStage::Successful(s) = stage {
                        for t in &s.task_infos {
                            if let task_status::Status::Successful(ok) = &t.task_status {
                                for p in &t.global_input_partition_ids {
                                    tasks.push(TaskPlacement {
                                        stage_id: *stage_id as u32,
                                        partition: *p as u32,
                                        executor_id: ok.executor_id.clone(),
                                    });
                                }
                            }
                        }
                    }
                }
            }
            let status = match &o.status.status {
                Some(job_status::Status::Queued(_)) => "queued",
                Some(job_status::Status::Running(_)) => "running",
                Some(job_status::Status::Successful(_)) => "successful",
                Some(job_status::Status::Failed(_)) => "failed",
                None => "unknown",
            };
            jobs.push(JobSummary {
                job_id: o.job_id.to_string(),
                job_name: o.job_name,
                session_id,
                status: status.into(),
                stage_count,
                tasks,
                queued_at_unix_ms: o.start_time,
            });
        }
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    #[instrument(skip_all, fields(query_id = %request.get_ref().query_id))]
    async fn cancel_query(
        &self,
        request: Request<CancelQueryRequest>,
    ) -> Result<Response<CancelQueryResponse>, Status> {
        let r = request.into_inner();
        check_header(&r.header)?;
        if r.query_id.is_empty() {
            return Err(TarnError::new(ErrorCode::InvalidArgument, "query_id is empty").into());
        }
        let running = self
            .scheduler
            .state
            .task_manager
            .get_all_jobs()
            .await
            .map_err(|e| TarnError::new(ErrorCode::Internal, format!("cannot list jobs: {e}")))?;
        let mut cancelled_jobs = 0;
        let active = |j: &ballista_scheduler::state::task_manager::JobOverview| {
            matches!(
                j.status.status,
                Some(job_status::Status::Queued(_)) | Some(job_status::Status::Running(_))
            )
        };
        for job in running
            .into_iter()
            .filter(|j| j.job_name == r.query_id && active(j))
        {
            let params = CancelJobParams {
                job_id: job.job_id.to_string(),
            };
            if SchedulerGrpc::cancel_job(&self.scheduler, Request::new(params))
                .await
                .map(|r| r.into_inner().cancelled)
                .unwrap_or(false)
            {
                cancelled_jobs += 1;
            }
        }
        tracing::info!(query_id = %r.query_id, cancelled_jobs, "query cancelled");
        Ok(Response::new(CancelQueryResponse { cancelled_jobs }))
    }
}
