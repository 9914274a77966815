//! The scheduler's count of each executor's free vCores, kept honest.
//!
//! Ballista refunds a finished task's vCores by looking the task up in its
//! stage. When an executor is lost (drained, killed), every stage reading
//! its output is rolled back and forgets its running tasks, including the
//! ones on *other* executors; those are cancelled, their statuses arrive,
//! nothing is found and nothing is refunded. An executor that lost all its
//! vCores this way is never offered work again (the scheduler only offers
//! executors with free vCores), and a query waiting on it hangs.
//!
//! This wraps the scheduler's cluster state and keeps its own copy of each
//! executor's count (registrations, bindings and refunds all pass through
//! here). Before each binding round it compares the count with the truth —
//! what the executor offers less what the running jobs' tasks on it hold —
//! and refunds the difference when the count is lower.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ballista_core::error::Result;
use ballista_core::serde::protobuf::ExecutorHeartbeat;
use ballista_core::serde::scheduler::{ExecutorData, ExecutorMetadata};
use ballista_core::JobId;
use ballista_scheduler::cluster::{BoundTask, ClusterState, ClusterStateEventStream, ExecutorSlot};
use ballista_scheduler::config::TaskDistributionPolicy;
use ballista_scheduler::state::task_manager::JobInfoCache;

/// An executor's vCores as the scheduler counts them.
#[derive(Debug, Clone, Copy)]
struct Count {
    total: u32,
    free: u32,
}

/// The scheduler's cluster state, with leaked vCores refunded.
pub struct RefundingClusterState {
    inner: Arc<dyn ClusterState>,
    counts: parking_lot::Mutex<HashMap<String, Count>>,
}

impl RefundingClusterState {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ClusterState>) -> Self {
        Self {
            inner,
            counts: Default::default(),
        }
    }

    /// Refunds what the count lost: vCores no running task holds.
    async fn refund_leaks(&self, active_jobs: &HashMap<JobId, JobInfoCache>) -> Result<()> {
        let mut held: HashMap<String, u32> = HashMap::new();
        for job in active_jobs.values() {
            let graph = job.execution_graph.read().await;
            for t in graph.running_tasks() {
                *held.entry(t.executor_id.clone()).or_default() +=
                    graph.task_vcores(t.stage_id, t.task_id).unwrap_or(1);
            }
        }
        let refunds = leaks(&mut self.counts.lock(), &held);
        if !refunds.is_empty() {
            tracing::info!(
                ?refunds,
                "refunding vCores of tasks whose stage was rolled back"
            );
            self.inner.unbind_tasks(refunds).await?;
        }
        Ok(())
    }
}

/// The refunds that bring each count up to what its executor offers less
/// what is `held` on it (never down: a count above the truth is a refund
/// made before the task's graph caught up).
fn leaks(counts: &mut HashMap<String, Count>, held: &HashMap<String, u32>) -> Vec<ExecutorSlot> {
    counts
        .iter_mut()
        .filter_map(|(executor, c)| {
            let truth = c
                .total
                .saturating_sub(held.get(executor).copied().unwrap_or(0));
            (truth > c.free).then(|| {
                let n = truth - c.free;
                c.free = truth;
                (executor.clone(), n)
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl ClusterState for RefundingClusterState {
    async fn init(&self) -> Result<()> {
        self.inner.init().await
    }

    async fn bind_schedulable_tasks(
        &self,
        distribution: TaskDistributionPolicy,
        active_jobs: Arc<HashMap<JobId, JobInfoCache>>,
        executors: Option<HashSet<String>>,
    ) -> Result<Vec<BoundTask>> {
        self.refund_leaks(&active_jobs).await?;
        let bound = self
            .inner
            .bind_schedulable_tasks(distribution, active_jobs, executors)
            .await?;
        let mut counts = self.counts.lock();
        for (executor, task) in &bound {
            if let Some(c) = counts.get_mut(executor) {
                c.free = c.free.saturating_sub(task.vcores_consumed);
            }
        }
        Ok(bound)
    }

    async fn unbind_tasks(&self, executor_slots: Vec<ExecutorSlot>) -> Result<()> {
        {
            let mut counts = self.counts.lock();
            for (executor, n) in &executor_slots {
                if let Some(c) = counts.get_mut(executor) {
                    c.free = c.free.saturating_add(*n);
                }
            }
        }
        self.inner.unbind_tasks(executor_slots).await
    }

    async fn register_executor(
        &self,
        metadata: ExecutorMetadata,
        spec: ExecutorData,
    ) -> Result<()> {
        let (id, total, free) = (
            spec.executor_id.clone(),
            spec.total_vcores,
            spec.available_vcores,
        );
        self.inner.register_executor(metadata, spec).await?;
        self.counts.lock().insert(id, Count { total, free });
        Ok(())
    }

    async fn save_executor_metadata(&self, metadata: ExecutorMetadata) -> Result<()> {
        self.inner.save_executor_metadata(metadata).await
    }

    async fn get_executor_metadata(&self, executor_id: &str) -> Result<ExecutorMetadata> {
        self.inner.get_executor_metadata(executor_id).await
    }

    async fn registered_executor_metadata(&self) -> Vec<ExecutorMetadata> {
        self.inner.registered_executor_metadata().await
    }

    async fn save_executor_heartbeat(&self, heartbeat: ExecutorHeartbeat) -> Result<()> {
        self.inner.save_executor_heartbeat(heartbeat).await
    }

    async fn remove_executor(&self, executor_id: &str) -> Result<()> {
        self.counts.lock().remove(executor_id);
        self.inner.remove_executor(executor_id).await
    }

    fn executor_heartbeats(&self) -> HashMap<String, ExecutorHeartbeat> {
        self.inner.executor_heartbeats()
    }

    fn get_executor_heartbeat(&self, executor_id: &str) -> Option<ExecutorHeartbeat> {
        self.inner.get_executor_heartbeat(executor_id)
    }

    async fn cluster_state_events(&self) -> Result<ClusterStateEventStream> {
        self.inner.cluster_state_events().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_below_the_truth_is_refunded_and_one_above_is_left() {
        let mut counts = HashMap::from([
            // Its two running tasks were forgotten: 0 counted, 2 free.
            ("b".to_string(), Count { total: 2, free: 0 }),
            // One task on it: counted right.
            ("c".to_string(), Count { total: 4, free: 3 }),
            // Counted freer than the truth (refunded before its graph
            // forgot the task): left alone.
            ("d".to_string(), Count { total: 2, free: 2 }),
        ]);
        let held = HashMap::from([("c".to_string(), 1), ("d".to_string(), 1)]);
        let mut refunds = leaks(&mut counts, &held);
        refunds.sort();
        assert_eq!(refunds, vec![("b".to_string(), 2)]);
        assert_eq!(counts["b"].free, 2);
        assert_eq!(counts["d"].free, 2);
        // Refunded once: a second round finds nothing.
        assert!(leaks(&mut counts, &held).is_empty());
    }
}
