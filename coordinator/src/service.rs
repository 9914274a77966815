//! The `tarn.v1.Coordinator` gRPC service.

use std::collections::HashSet;
use std::sync::Arc;

use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use ballista_core::serde::protobuf::{job_status, task_status, CancelJobParams};
use ballista_scheduler::state::execution_stage::ExecutionStage;
use tarn_common::{ErrorCode, TarnError, PROTOCOL_VERSION};
use tarn_proto::coordinator_server::Coordinator as CoordinatorApi;
use tarn_proto::*;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::binding::{lease_of_job, query_of_job};
use crate::front::{LeaderSlot, Leading};
use crate::ledger::{Finish, JobPut, JobRun, Lease, LeaseRequest, Ledger, RunState, StoredJob};
use crate::registry::ExecutorRegistry;

/// Serves pools, leases, job runs, executors and job views.
pub struct CoordinatorService {
    registry: Arc<ExecutorRegistry>,
    slot: Arc<LeaderSlot>,
    advertise: String,
    backend: &'static str,
    election: Option<Arc<tarn_state::Election>>,
    /// Signs direct-run reservations for the executors to check.
    reservation_key: Arc<tarn_common::auth::TokenKey>,
}

impl CoordinatorService {
    /// A service over the registry and (once leading) the scheduler and
    /// ledger in `slot`.
    pub fn new(
        registry: Arc<ExecutorRegistry>,
        slot: Arc<LeaderSlot>,
        advertise: String,
        backend: &'static str,
        election: Option<Arc<tarn_state::Election>>,
        reservation_key: Arc<tarn_common::auth::TokenKey>,
    ) -> Self {
        Self {
            registry,
            slot,
            advertise,
            backend,
            election,
            reservation_key,
        }
    }

    fn leading(&self) -> Result<&Leading, Status> {
        self.slot.get()
    }

    /// The leader's Ballista jobs of a gateway query (named `query@lease`).
    async fn jobs_of_query(
        &self,
        query_id: &str,
    ) -> Result<
        (
            &Leading,
            Vec<ballista_scheduler::state::task_manager::JobOverview>,
        ),
        Status,
    > {
        if query_id.is_empty() {
            return Err(TarnError::new(ErrorCode::InvalidArgument, "query_id is empty").into());
        }
        let leading = self.leading()?;
        let jobs = leading
            .scheduler
            .state
            .task_manager
            .get_all_jobs()
            .await
            .map_err(|e| TarnError::new(ErrorCode::Internal, format!("cannot list jobs: {e}")))?
            .into_iter()
            .filter(|j| query_of_job(&j.job_name) == query_id)
            .collect();
        Ok((leading, jobs))
    }

    fn ledger(&self) -> Result<&Arc<Ledger>, Status> {
        Ok(&self.slot.get()?.ledger)
    }

    /// Live executors, each marked with whether Ballista also sees it.
    async fn executors(&self) -> Vec<ExecutorInfo> {
        live_executors(&self.registry, &self.slot).await
    }
}

/// Executors announced to Tarn, each marked with whether Ballista's
/// scheduler also sees it alive.
pub async fn live_executors(registry: &ExecutorRegistry, slot: &LeaderSlot) -> Vec<ExecutorInfo> {
    let alive: HashSet<String> = match slot.get() {
        Ok(l) => l
            .scheduler
            .state
            .executor_manager
            .get_executors_state()
            .await
            .map(|v| v.into_iter().map(|(m, _, _)| m.id).collect())
            .unwrap_or_default(),
        Err(_) => HashSet::new(),
    };
    let mut live = registry.live();
    for e in &mut live {
        e.scheduler_alive = alive.contains(&e.executor_id);
    }
    live
}

/// The request, once its header says the caller speaks this protocol.
fn open<T: Headed>(request: Request<T>) -> Result<T, Status> {
    check_header(request.get_ref())?;
    Ok(request.into_inner())
}

fn check_header(r: &impl Headed) -> Result<(), Status> {
    match r.header() {
        Some(h) if h.protocol_version != PROTOCOL_VERSION => Err(TarnError::new(
            ErrorCode::InvalidArgument,
            format!(
                "the caller speaks protocol version {}, this coordinator {}",
                h.protocol_version, PROTOCOL_VERSION
            ),
        )
        .with_fix("run the same Tarn version on every role")
        .to_status()),
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
        check_header(request.get_ref())?;
        let live = self.executors().await;
        let count = |p: Pool| {
            live.iter()
                .filter(|e| e.pool == p as i32 && e.scheduler_alive)
                .count() as u32
        };
        let leader = self.slot.is_leader();
        let leader_addr = if leader {
            self.advertise.clone()
        } else {
            match &self.election {
                Some(e) => e.leader().await.unwrap_or_default(),
                None => String::new(),
            }
        };
        Ok(Response::new(HealthResponse {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol_version: PROTOCOL_VERSION,
            interactive_executors: count(Pool::Interactive),
            job_executors: count(Pool::Job),
            role: if leader { "leader" } else { "standby" }.into(),
            leader: leader_addr,
            store: self.backend.into(),
            address: self.advertise.clone(),
        }))
    }

    #[instrument(skip_all, fields(executor_id = %request.get_ref().executor_id))]
    async fn register_executor(
        &self,
        request: Request<RegisterExecutorRequest>,
    ) -> Result<Response<RegisterExecutorResponse>, Status> {
        let r = open(request)?;
        self.leading()?;
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
            draining: r.draining,
            metrics_port: r.metrics_port,
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
        check_header(request.get_ref())?;
        self.leading()?;
        let executors = self.executors().await;
        let pools = self.pool_infos()?;
        Ok(Response::new(GetClusterInfoResponse { executors, pools }))
    }

    #[instrument(skip_all)]
    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let r = open(request)?;
        let limit = if r.limit == 0 { 50 } else { r.limit as usize };
        let leading = self.leading()?;
        let mut overviews = leading
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
            if let Some(graph) = leading.graph(&o.job_id).await {
                stage_count = graph.stage_count() as u32;
                session_id = graph.session_id().to_string();
                for (stage_id, stage) in graph.stages() {
                    if let ExecutionStage::Successful(s) = stage {
                        for (task_id, t) in s.task_infos.iter().enumerate() {
                            if let task_status::Status::Successful(ok) = &t.task_status {
                                for p in &t.global_input_partition_ids {
                                    tasks.push(TaskPlacement {
                                        stage_id: *stage_id as u32,
                                        partition: *p as u32,
                                        executor_id: ok.executor_id.clone(),
                                        task_id: task_id as u32,
                                        vcores: t.vcores_consumed,
                                        start_exec_unix_ms: t.start_exec_time as u64,
                                        end_exec_unix_ms: t.end_exec_time as u64,
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
                lease_id: lease_of_job(&o.job_name).unwrap_or_default().to_string(),
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

    async fn get_query_progress(
        &self,
        request: Request<GetQueryProgressRequest>,
    ) -> Result<Response<QueryProgress>, Status> {
        let r = open(request)?;
        let (leading, jobs) = self.jobs_of_query(&r.query_id).await?;
        let mut p = QueryProgress::default();
        for job in jobs {
            p.jobs += 1;
            let Some(graph) = leading.graph(&job.job_id).await else {
                p.stages_total += job.num_stages as u32;
                continue;
            };
            for stage in graph.stages().values() {
                p.stages_total += 1;
                let done_parts =
                    |infos: &[ballista_scheduler::state::execution_stage::TaskInfo]| {
                        infos
                            .iter()
                            .filter(|t| matches!(t.task_status, task_status::Status::Successful(_)))
                            .map(|t| t.global_input_partition_ids.len().max(1) as u32)
                            .sum::<u32>()
                    };
                match stage {
                    ExecutionStage::UnResolved(_) => {}
                    ExecutionStage::Resolved(s) => p.tasks_total += s.partitions as u32,
                    ExecutionStage::Running(s) => {
                        p.tasks_total += s.partitions as u32;
                        let done = done_parts(&s.task_infos);
                        p.tasks_done += done;
                        p.tasks_running += s
                            .task_infos
                            .iter()
                            .filter(|t| matches!(t.task_status, task_status::Status::Running(_)))
                            .map(|t| t.global_input_partition_ids.len().max(1) as u32)
                            .sum::<u32>();
                    }
                    ExecutionStage::Successful(s) => {
                        p.stages_done += 1;
                        p.tasks_total += s.partitions as u32;
                        p.tasks_done += s.partitions as u32;
                    }
                    ExecutionStage::Failed(s) => p.tasks_total += s.partitions as u32,
                }
            }
        }
        Ok(Response::new(p))
    }

    #[instrument(skip_all, fields(query_id = %request.get_ref().query_id))]
    async fn cancel_query(
        &self,
        request: Request<CancelQueryRequest>,
    ) -> Result<Response<CancelQueryResponse>, Status> {
        let r = open(request)?;
        let (leading, running) = self.jobs_of_query(&r.query_id).await?;
        let mut cancelled_jobs = 0;
        let active = |j: &ballista_scheduler::state::task_manager::JobOverview| {
            matches!(
                j.status.status,
                Some(job_status::Status::Queued(_)) | Some(job_status::Status::Running(_))
            )
        };
        for job in running.into_iter().filter(active) {
            let params = CancelJobParams {
                job_id: job.job_id.to_string(),
            };
            if SchedulerGrpc::cancel_job(&leading.scheduler, Request::new(params))
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

    #[instrument(skip_all, fields(user = %request.get_ref().user))]
    async fn acquire_lease(
        &self,
        request: Request<AcquireLeaseRequest>,
    ) -> Result<Response<LeaseInfo>, Status> {
        let r = open(request)?;
        let ledger = self.ledger()?;
        let pool = match Pool::try_from(r.pool).unwrap_or(Pool::Unspecified) {
            Pool::Unspecified => Pool::Interactive,
            p => p,
        };
        let lease = ledger
            .acquire(LeaseRequest {
                pool: Some(pool),
                user: r.user,
                workspace: r.workspace,
                vcores: r.vcores,
                size: r.size,
                holder: r.holder,
            })
            .await?;
        let expires = tarn_common::clock::unix_ms() + ledger.limits().lease_ttl.as_millis() as u64;
        Ok(Response::new(lease_info(&lease, expires, ledger)))
    }

    async fn renew_leases(
        &self,
        request: Request<RenewLeasesRequest>,
    ) -> Result<Response<RenewLeasesResponse>, Status> {
        let r = open(request)?;
        let ledger = self.ledger()?;
        let gone = ledger.renew(&r.lease_ids);
        Ok(Response::new(RenewLeasesResponse {
            gone,
            ttl_seconds: ledger.limits().lease_ttl.as_secs() as u32,
        }))
    }

    #[instrument(skip_all, fields(lease = %request.get_ref().lease_id, query = %request.get_ref().query_id))]
    async fn reserve_direct(
        &self,
        request: Request<ReserveDirectRequest>,
    ) -> Result<Response<ReserveDirectResponse>, Status> {
        let r = open(request)?;
        let leading = self.leading()?;
        if r.plan_sha256.len() != 64 {
            return Err(TarnError::new(
                ErrorCode::InvalidArgument,
                "a direct-run reservation must name its plan's SHA-256 (plan_sha256)",
            )
            .into());
        }
        let Some((pool, lease_vcores)) = leading.ledger.lease_grant(&r.lease_id) else {
            leading.direct.forget_lease(&r.lease_id);
            return Err(TarnError::new(
                ErrorCode::SessionNotFound,
                format!("lease {} does not exist (expired or released)", r.lease_id),
            )
            .into());
        };
        let live = self.executors().await;
        let candidates: Vec<(String, u32)> = live
            .iter()
            .filter(|e| e.pool == pool as i32 && e.scheduler_alive && e.flight_port > 0)
            .map(|e| (e.executor_id.clone(), e.vcores))
            .collect();
        let reply = match leading
            .direct
            .reserve(&r.lease_id, lease_vcores, r.vcores, &candidates)
        {
            Ok(g) => {
                let e = live
                    .iter()
                    .find(|e| e.executor_id == g.executor_id)
                    .cloned()
                    .unwrap_or_default();
                let grant = tarn_common::reservation::Grant {
                    reservation_id: g.reservation_id.clone(),
                    executor_id: g.executor_id.clone(),
                    lease_id: r.lease_id.clone(),
                    plan_sha256: r.plan_sha256.clone(),
                    vcores: g.vcores,
                    exp_ms: tarn_common::clock::unix_ms()
                        + tarn_common::reservation::GRANT_TTL.as_millis() as u64,
                }
                .sign(&self.reservation_key);
                ReserveDirectResponse {
                    granted: true,
                    grant,
                    reservation_id: g.reservation_id,
                    executor_id: g.executor_id,
                    host: e.host,
                    flight_port: e.flight_port,
                    vcores: g.vcores,
                    reason: String::new(),
                }
            }
            Err(reason) => ReserveDirectResponse {
                granted: false,
                reason,
                ..Default::default()
            },
        };
        // One line per query on the coordinator too, under the gateway's
        // query id, so a query can be followed through every role's log.
        tracing::info!(
            query_id = %r.query_id,
            lease = %r.lease_id,
            granted = reply.granted,
            executor = %reply.executor_id,
            vcores = reply.vcores,
            reason = %reply.reason,
            "direct run reserved"
        );
        Ok(Response::new(reply))
    }

    async fn release_direct(
        &self,
        request: Request<ReleaseDirectRequest>,
    ) -> Result<Response<ReleaseDirectResponse>, Status> {
        let r = open(request)?;
        let released = self.leading()?.direct.release(&r.reservation_id);
        Ok(Response::new(ReleaseDirectResponse { released }))
    }

    #[instrument(skip_all, fields(lease = %request.get_ref().lease_id))]
    async fn release_lease(
        &self,
        request: Request<ReleaseLeaseRequest>,
    ) -> Result<Response<ReleaseLeaseResponse>, Status> {
        let r = open(request)?;
        let released = self.ledger()?.release(&r.lease_id).await?;
        self.leading()?.direct.forget_lease(&r.lease_id);
        Ok(Response::new(ReleaseLeaseResponse { released }))
    }

    async fn list_leases(
        &self,
        request: Request<ListLeasesRequest>,
    ) -> Result<Response<ListLeasesResponse>, Status> {
        let r = open(request)?;
        let ledger = self.ledger()?;
        let want = Pool::try_from(r.pool).unwrap_or(Pool::Unspecified);
        let mut leases: Vec<LeaseInfo> = ledger
            .leases()
            .into_iter()
            .filter(|(l, _)| want == Pool::Unspecified || l.pool() == want)
            .map(|(l, exp)| lease_info(&l, exp, ledger))
            .collect();
        leases.sort_by_key(|l| l.created_unix_ms);
        Ok(Response::new(ListLeasesResponse { leases }))
    }

    async fn get_pools(
        &self,
        request: Request<GetPoolsRequest>,
    ) -> Result<Response<GetPoolsResponse>, Status> {
        check_header(request.get_ref())?;
        let ledger = self.ledger()?;
        let pools = self.pool_infos()?;
        let l = ledger.limits();
        Ok(Response::new(GetPoolsResponse {
            interactive_users: pools
                .iter()
                .find(|p| p.pool == Pool::Interactive as i32)
                .map(|p| p.users)
                .unwrap_or(0),
            pools,
            account_vcores: l.account_vcores,
            max_interactive_users: l.max_interactive_users,
            max_running_jobs: l.max_running_jobs,
            max_queued_jobs: l.max_queued_jobs,
        }))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn submit_job_run(
        &self,
        request: Request<SubmitJobRunRequest>,
    ) -> Result<Response<JobRunInfo>, Status> {
        let r = open(request)?;
        let ledger = self.ledger()?;
        let run = ledger
            .submit(r.name, r.user, r.workspace, r.vcores, &r.size)
            .await?;
        let (run, pos) = ledger.run(&run.id).unwrap_or((run, 0));
        Ok(Response::new(run_info(&run, pos)))
    }

    async fn get_job_run(
        &self,
        request: Request<GetJobRunRequest>,
    ) -> Result<Response<JobRunInfo>, Status> {
        let r = open(request)?;
        let (run, pos) = self.ledger()?.run(&r.run_id)?;
        Ok(Response::new(run_info(&run, pos)))
    }

    async fn list_job_runs(
        &self,
        request: Request<ListJobRunsRequest>,
    ) -> Result<Response<ListJobRunsResponse>, Status> {
        let r = open(request)?;
        let ledger = self.ledger()?;
        let runs = if r.job_id.is_empty() {
            ledger.runs()
        } else {
            ledger.job(&r.job_id)?;
            ledger.job_runs(&r.job_id)
        };
        let runs = runs.iter().map(|(r, p)| run_info(r, *p)).collect();
        Ok(Response::new(ListJobRunsResponse { runs }))
    }

    #[instrument(skip_all, fields(run = %request.get_ref().run_id))]
    async fn cancel_job_run(
        &self,
        request: Request<CancelJobRunRequest>,
    ) -> Result<Response<JobRunInfo>, Status> {
        let r = open(request)?;
        let run = self.ledger()?.cancel_run(&r.run_id).await?;
        Ok(Response::new(run_info(&run, 0)))
    }

    #[instrument(skip_all, fields(run = %request.get_ref().run_id))]
    async fn finish_job_run(
        &self,
        request: Request<FinishJobRunRequest>,
    ) -> Result<Response<JobRunInfo>, Status> {
        let r = open(request)?;
        let ledger = self.ledger()?;
        let run = if r.worker.is_empty() {
            ledger
                .finish_run(&r.run_id, r.succeeded, &r.message)
                .await?
        } else {
            let state = if r.succeeded {
                RunState::Succeeded
            } else if r.timed_out {
                RunState::TimedOut
            } else {
                RunState::Failed
            };
            ledger
                .finish_job_run(
                    &r.run_id,
                    Finish {
                        state: Some(state),
                        message: r.message,
                        error_code: r.error_code,
                        retryable: r.retryable,
                        result: parse_json("result_json", &r.result_json)?,
                        worker: r.worker,
                        handed_back: r.handed_back,
                    },
                )
                .await?
        };
        Ok(Response::new(run_info(&run, 0)))
    }

    #[instrument(skip_all, fields(job = %request.get_ref().job_id))]
    async fn put_job(&self, request: Request<PutJobRequest>) -> Result<Response<JobInfo>, Status> {
        let r = open(request)?;
        let job = self
            .ledger()?
            .put_job(JobPut {
                id: r.job_id,
                owner: r.owner,
                spec: parse_json("spec_json", &r.spec_json)?,
                grants: parse_json("grants_json", &r.grants_json)?,
                credential_expires_ms: r.credential_expires_unix_ms,
            })
            .await?;
        Ok(Response::new(job_info(
            &job,
            crate::schedule::next_fire(&job),
        )))
    }

    async fn get_job(&self, request: Request<GetJobRequest>) -> Result<Response<JobInfo>, Status> {
        let r = open(request)?;
        let job = self.ledger()?.job(&r.job_id)?;
        Ok(Response::new(job_info(
            &job,
            crate::schedule::next_fire(&job),
        )))
    }

    async fn list_job_definitions(
        &self,
        request: Request<ListJobDefinitionsRequest>,
    ) -> Result<Response<ListJobDefinitionsResponse>, Status> {
        check_header(request.get_ref())?;
        let jobs = self
            .ledger()?
            .jobs()
            .iter()
            .map(|j| job_info(j, crate::schedule::next_fire(j)))
            .collect();
        Ok(Response::new(ListJobDefinitionsResponse { jobs }))
    }

    #[instrument(skip_all, fields(job = %request.get_ref().job_id))]
    async fn delete_job(
        &self,
        request: Request<DeleteJobRequest>,
    ) -> Result<Response<DeleteJobResponse>, Status> {
        let r = open(request)?;
        let deleted = self.ledger()?.delete_job(&r.job_id).await?;
        Ok(Response::new(DeleteJobResponse { deleted }))
    }

    #[instrument(skip_all, fields(job = %request.get_ref().job_id))]
    async fn run_job(
        &self,
        request: Request<RunJobRequest>,
    ) -> Result<Response<JobRunInfo>, Status> {
        let r = open(request)?;
        let trigger = match r.trigger.as_str() {
            "" | "manual" => "manual",
            "api" => "api",
            other => {
                return Err(TarnError::new(
                    ErrorCode::InvalidArgument,
                    format!("trigger {other:?} is not 'manual' or 'api'"),
                )
                .to_status())
            }
        };
        let params = parse_json("parameters_json", &r.parameters_json)?;
        let ledger = self.ledger()?;
        let run = if r.retry_run_id.is_empty() {
            ledger.run_job(&r.job_id, trigger, params).await?
        } else {
            ledger.retry_run(&r.job_id, &r.retry_run_id).await?
        };
        let (run, pos) = ledger.run(&run.id).unwrap_or((run, 0));
        Ok(Response::new(run_info(&run, pos)))
    }

    async fn claim_job_run(
        &self,
        request: Request<ClaimJobRunRequest>,
    ) -> Result<Response<ClaimJobRunResponse>, Status> {
        let r = open(request)?;
        // Bounded: a worker's long poll never holds a call open for long.
        let wait = std::time::Duration::from_millis(u64::from(r.wait_ms.min(10_000)));
        let claimed = self.ledger()?.claim(&r.worker, wait).await?;
        Ok(Response::new(match claimed {
            Some((run, job)) => ClaimJobRunResponse {
                run: Some(run_info(&run, 0)),
                job: Some(job_info(&job, crate::schedule::next_fire(&job))),
            },
            None => ClaimJobRunResponse::default(),
        }))
    }

    #[instrument(skip_all, fields(run = %request.get_ref().run_id))]
    async fn report_job_run(
        &self,
        request: Request<ReportJobRunRequest>,
    ) -> Result<Response<JobRunInfo>, Status> {
        let r = open(request)?;
        let result = parse_json("result_json", &r.result_json)?;
        let run = self.ledger()?.report(&r.run_id, &r.worker, result).await?;
        Ok(Response::new(run_info(&run, 0)))
    }
}

impl CoordinatorService {
    /// Pool capacities and ledger figures.
    fn pool_infos(&self) -> Result<Vec<PoolInfo>, Status> {
        let ledger = self.ledger()?;
        Ok(pool_infos(&self.registry, ledger))
    }
}

/// Pool capacities (from live executors) with the ledger's figures.
pub fn pool_infos(registry: &ExecutorRegistry, ledger: &Ledger) -> Vec<PoolInfo> {
    let mut pools = registry.pools();
    for p in &mut pools {
        let pool = Pool::try_from(p.pool).unwrap_or(Pool::Interactive);
        // The ledger grants from the registry's capacity; read it once.
        p.capacity_vcores = ledger.capacity(pool);
        let f = ledger.pool_figures(pool);
        p.leased_vcores = f.leased;
        p.free_vcores = p.capacity_vcores.saturating_sub(f.leased);
        p.leases = f.leases;
        p.users = f.users;
        p.queued_runs = f.queued;
        p.running_runs = f.running;
        p.grants = f.grants;
        p.refusals = f.refusals.into_iter().collect();
    }
    pools
}

fn lease_info(l: &Lease, expires: u64, ledger: &Ledger) -> LeaseInfo {
    LeaseInfo {
        lease_id: l.id.clone(),
        pool: l.pool() as i32,
        user: l.user.clone(),
        workspace: l.workspace.clone(),
        vcores: l.vcores,
        holder: l.holder.clone(),
        created_unix_ms: l.created_ms,
        expires_unix_ms: expires,
        run_id: l.run_id.clone().unwrap_or_default(),
        ttl_seconds: ledger.limits().lease_ttl.as_secs() as u32,
    }
}

fn run_info(r: &JobRun, position: u32) -> JobRunInfo {
    let state = match r.state {
        RunState::Queued => JobRunState::Queued,
        RunState::Running => JobRunState::Running,
        RunState::Succeeded => JobRunState::Succeeded,
        RunState::Failed => JobRunState::Failed,
        RunState::Cancelled => JobRunState::Cancelled,
        RunState::Expired => JobRunState::Expired,
        RunState::TimedOut => JobRunState::TimedOut,
        RunState::Skipped => JobRunState::Skipped,
    };
    let job = r.job.clone().unwrap_or_default();
    let json = |v: &serde_json::Value| {
        if v.is_null() {
            String::new()
        } else {
            v.to_string()
        }
    };
    let ran_ms = match (r.started_ms, r.ended_ms) {
        (0, _) => 0,
        (s, 0) => tarn_common::clock::unix_ms().saturating_sub(s),
        (s, e) => e.saturating_sub(s),
    };
    JobRunInfo {
        run_id: r.id.clone(),
        name: r.name.clone(),
        user: r.user.clone(),
        workspace: r.workspace.clone(),
        vcores: r.vcores,
        status: state as i32,
        queue_position: position,
        lease_id: if r.state == RunState::Running {
            r.id.clone()
        } else {
            String::new()
        },
        submitted_unix_ms: r.submitted_ms,
        started_unix_ms: r.started_ms,
        ended_unix_ms: r.ended_ms,
        message: r.message.clone(),
        seq: r.seq,
        job_id: job.job_id,
        trigger: job.trigger,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        fire_unix_ms: job.fire_ms,
        worker: job.worker,
        parameters_json: json(&job.parameters),
        result_json: json(&job.result),
        error_code: job.error_code,
        timeout_ms: job.timeout_ms,
        vcore_seconds: r.vcores as f64 * ran_ms as f64 / 1000.0,
        queue_wait_ms: if r.started_ms > 0 {
            r.started_ms.saturating_sub(r.submitted_ms)
        } else {
            0
        },
    }
}

fn job_info(j: &StoredJob, next_fire_ms: u64) -> JobInfo {
    JobInfo {
        job_id: j.id.clone(),
        owner: j.owner.clone(),
        spec_json: j.spec.to_string(),
        created_unix_ms: j.created_ms,
        updated_unix_ms: j.updated_ms,
        revision: j.revision,
        credential_expires_unix_ms: j.credential_expires_ms,
        grants_json: j.grants.to_string(),
        last_fire_unix_ms: j.last_fire_ms,
        next_fire_unix_ms: next_fire_ms,
    }
}

/// A JSON document field of a request.
fn parse_json(what: &str, text: &str) -> Result<serde_json::Value, Status> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(text).map_err(|e| {
        TarnError::new(
            ErrorCode::InvalidArgument,
            format!("{what} is not JSON: {e}"),
        )
        .to_status()
    })
}
