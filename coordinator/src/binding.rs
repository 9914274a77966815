//! Lease-aware task binding: Tarn's `DistributionPolicy` for Ballista.
//!
//! Ballista hands the policy every executor's free vCores and every
//! running job. A job is named `query@lease`; its lease says which pool it
//! may use and how many task-vCores it may hold at once, counted across all
//! of the lease's jobs (a session running two queries shares its vCores
//! between them). Tasks bind only to executors of the lease's pool, and a
//! lease at its limit binds nothing until its tasks finish. Jobs whose
//! lease is unknown bind nothing (the scheduler front refuses them first,
//! and jobs of released leases are cancelled).

use std::collections::HashMap;
use std::sync::Arc;

use ballista_core::config::BallistaConfig;
use ballista_core::execution_plans::{RangeShuffleReaderExec, ShuffleReaderExec};
use ballista_core::serde::protobuf::{job_status, AvailableVcores};
use ballista_core::serde::scheduler::TaskKey;
use ballista_core::JobId;
use ballista_scheduler::cluster::{BoundTask, DistributionPolicy};
use ballista_scheduler::state::execution_graph::{create_task_info, TaskDescription};
use ballista_scheduler::state::execution_stage::RunningStage;
use ballista_scheduler::state::task_manager::JobInfoCache;
use datafusion::physical_plan::ExecutionPlan;
use tarn_proto::Pool;

use crate::direct::DirectRuns;
use crate::ledger::Ledger;
use crate::registry::ExecutorRegistry;

/// The lease id in a Ballista job name `query@lease`.
pub fn lease_of_job(job_name: &str) -> Option<&str> {
    job_name
        .rsplit_once('@')
        .map(|(_, l)| l)
        .filter(|l| !l.is_empty())
}

/// The query id in a Ballista job name `query@lease`.
pub fn query_of_job(job_name: &str) -> &str {
    job_name
        .rsplit_once('@')
        .map(|(q, _)| q)
        .unwrap_or(job_name)
}

/// Binds tasks within leases and pools.
#[derive(Debug)]
pub struct LeasePolicy {
    ledger: Arc<Ledger>,
    registry: Arc<ExecutorRegistry>,
    direct: Arc<DirectRuns>,
    /// Jobs whose first tasks were bound (logged once, under the query id).
    started: parking_lot::Mutex<std::collections::HashSet<JobId>>,
}

impl LeasePolicy {
    /// A policy reading leases from `ledger`, executor pools from
    /// `registry`, and the vCores direct runs hold from `direct`.
    pub fn new(
        ledger: Arc<Ledger>,
        registry: Arc<ExecutorRegistry>,
        direct: Arc<DirectRuns>,
    ) -> Self {
        Self {
            ledger,
            registry,
            direct,
            started: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl DistributionPolicy for LeasePolicy {
    async fn bind_tasks(
        &self,
        mut budgets: Vec<&mut AvailableVcores>,
        running_jobs: Arc<HashMap<JobId, JobInfoCache>>,
    ) -> datafusion::error::Result<Vec<BoundTask>> {
        // Direct runs hold vCores Ballista does not know about: off the
        // executors' free vCores, and onto their leases' running count.
        // The budgets are the scheduler's live free-vCore counts, so what
        // is taken off here is put back at the end: only bound tasks may
        // change them.
        let (direct_by_lease, direct_by_executor) = self.direct.held();
        let mut set_aside: HashMap<String, u32> = HashMap::new();
        for b in budgets.iter_mut() {
            if let Some(n) = direct_by_executor.get(&b.executor_id) {
                let taken = (*n).min(b.vcores);
                b.vcores -= taken;
                set_aside.insert(b.executor_id.clone(), taken);
            }
        }
        let bound = self
            .bind_within(&mut budgets, running_jobs, direct_by_lease)
            .await;
        for b in budgets.iter_mut() {
            if let Some(n) = set_aside.get(&b.executor_id) {
                b.vcores += n;
            }
        }
        bound
    }

    fn name(&self) -> &str {
        "tarn-lease"
    }
}

impl LeasePolicy {
    async fn bind_within(
        &self,
        budgets: &mut [&mut AvailableVcores],
        running_jobs: Arc<HashMap<JobId, JobInfoCache>>,
        direct_by_lease: HashMap<String, u32>,
    ) -> datafusion::error::Result<Vec<BoundTask>> {
        let mut bound: Vec<BoundTask> = Vec::new();
        if budgets.iter().all(|b| b.vcores == 0) {
            return Ok(bound);
        }
        // Largest executors first, as Ballista's bias policy does: a
        // stage's tasks pack onto few executors.
        budgets.sort_by_key(|b| std::cmp::Reverse(b.vcores));
        let pools: Vec<Option<Pool>> = budgets
            .iter()
            .map(|b| self.registry.pool_of(&b.executor_id))
            .collect();

        // vCores each lease's tasks hold right now, across its jobs, and
        // each job's own share.
        let mut in_use: HashMap<String, u32> = direct_by_lease;
        let mut job_held: HashMap<&JobId, (u32, u64)> = HashMap::new();
        for (job_id, job) in running_jobs.iter() {
            let graph = job.execution_graph.read().await;
            let Some(lease) = lease_of_job(graph.job_name()) else {
                continue;
            };
            let held: u32 = graph
                .running_tasks()
                .iter()
                .map(|t| graph.task_vcores(t.stage_id, t.task_id).unwrap_or(1))
                .sum();
            *in_use.entry(lease.to_string()).or_default() += held;
            job_held.insert(job_id, (held, graph.start_time()));
        }

        // Jobs holding the least first (then the oldest): when a session
        // runs several queries, a freed vCore goes to the one starved of
        // them, so a long query does not lock its session's others out.
        self.started
            .lock()
            .retain(|id| running_jobs.contains_key(id));
        let mut jobs: Vec<(&JobId, &JobInfoCache)> = running_jobs.iter().collect();
        jobs.sort_by_key(|(id, _)| job_held.get(id).copied().unwrap_or((0, 0)));
        for (job_id, job) in jobs {
            if !matches!(job.status, Some(job_status::Status::Running(_))) {
                continue;
            }
            let mut graph = job.execution_graph.write().await;
            let Some(lease) = lease_of_job(graph.job_name()).map(str::to_string) else {
                continue;
            };
            let Some((pool, vcores)) = self.ledger.lease_grant(&lease) else {
                // It would wait forever: have it cancelled.
                tracing::info!(%job_id, %lease, "job's lease is gone; cancelling it");
                self.ledger.cancel_jobs_of(&lease);
                self.direct.forget_lease(&lease);
                continue;
            };
            let used = in_use.entry(lease.clone()).or_default();
            if *used >= vcores {
                continue;
            }
            let session_id = graph.session_id().to_string();
            let query_id = query_of_job(graph.job_name()).to_string();
            let mut black_list = vec![];
            'stages: while let Some(stage) = graph.fetch_running_stage(&black_list) {
                let stage_id = stage.stage_id;
                for (i, budget) in budgets.iter_mut().enumerate() {
                    if pools[i] != Some(pool) {
                        continue;
                    }
                    while budget.vcores > 0 && *used < vcores {
                        let allowance = budget.vcores.min(vcores - *used);
                        match bind_one(stage, &session_id, job_id, budget, allowance) {
                            Some(task) => {
                                *used += task.1.vcores_consumed;
                                if self.started.lock().insert(job_id.clone()) {
                                    // One line per query here, under the
                                    // gateway's query id (as every role logs it).
                                    tracing::info!(
                                        %query_id,
                                        job = %job_id,
                                        %lease,
                                        pool = ?pool,
                                        "query's first tasks bound"
                                    );
                                }
                                bound.push(task);
                            }
                            None => break,
                        }
                    }
                    if stage.available_tasks() == 0 || *used >= vcores {
                        break;
                    }
                }
                if *used >= vcores {
                    break 'stages;
                }
                // This stage is drained or no executor of the pool has room:
                // look at the job's other runnable stages.
                black_list.push(stage_id);
            }
        }
        Ok(bound)
    }
}

/// Ballista's `bind_one` (crate-private there) with an extra cap: the
/// lease's remaining vCores.
fn bind_one(
    running_stage: &mut RunningStage,
    session_id: &str,
    job_id: &JobId,
    budget: &mut AvailableVcores,
    allowance: u32,
) -> Option<BoundTask> {
    let is_collapse = stage_has_input_collapse(&running_stage.plan);
    let cap = running_stage
        .session_config
        .options()
        .extensions
        .get::<BallistaConfig>()
        .map(|bc| bc.max_partitions_per_task())
        .filter(|&n| n > 0)
        .unwrap_or(usize::MAX);
    // A collapse stage must take its whole pending queue in one task (a
    // split would give partial results) and drives it with one thread.
    let max_partitions = if is_collapse {
        usize::MAX
    } else {
        (allowance as usize).min(cap)
    };
    let input_partition_ids = running_stage.pending.next_slice(max_partitions);
    if input_partition_ids.is_empty() {
        return None;
    }
    let vcores_consumed = if is_collapse {
        1
    } else {
        input_partition_ids.len() as u32
    };
    let executor_id = budget.executor_id.clone();
    let task_id = running_stage.task_infos.len();
    let task_attempt = input_partition_ids
        .iter()
        .map(|pid| running_stage.task_failure_numbers[*pid])
        .max()
        .unwrap_or(0);
    let mut task_info = create_task_info(executor_id.clone(), task_id);
    task_info.global_input_partition_ids = input_partition_ids.clone();
    task_info.vcores_consumed = vcores_consumed;
    running_stage.task_infos.push(task_info);
    let task_desc = TaskDescription {
        session_id: session_id.to_string(),
        key: TaskKey {
            job_id: job_id.clone(),
            stage_id: running_stage.stage_id,
            task_id,
        },
        stage_attempt_num: running_stage.stage_attempt_num,
        task_attempt,
        global_input_partition_ids: input_partition_ids,
        vcores_consumed,
        plan: Arc::clone(&running_stage.plan),
        session_config: Arc::clone(&running_stage.session_config),
    };
    budget.vcores = budget.vcores.saturating_sub(vcores_consumed);
    Some((executor_id, task_desc))
}

/// Whether a stage's plan collapses its input to one partition before any
/// stage boundary (then one task must take all its input partitions).
fn stage_has_input_collapse(plan_root: &Arc<dyn ExecutionPlan>) -> bool {
    fn walk(node: &Arc<dyn ExecutionPlan>) -> bool {
        if node.downcast_ref::<ShuffleReaderExec>().is_some()
            || node.downcast_ref::<RangeShuffleReaderExec>().is_some()
        {
            return false;
        }
        if node.properties().output_partitioning().partition_count() == 1 {
            return true;
        }
        match node.children().as_slice() {
            [child] => walk(child),
            _ => false,
        }
    }
    match plan_root.children().as_slice() {
        [child] => walk(child),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_carry_query_and_lease() {
        assert_eq!(lease_of_job("tarn-abc@l1"), Some("l1"));
        assert_eq!(query_of_job("tarn-abc@l1"), "tarn-abc");
        assert_eq!(lease_of_job("tarn-abc"), None);
        assert_eq!(query_of_job("tarn-abc"), "tarn-abc");
        assert_eq!(lease_of_job("x@"), None);
    }
}
