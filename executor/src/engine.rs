//! Ballista's task execution with Tarn's plan check in front.
//!
//! Tasks arrive on the executor's task port as encoded plans. Ballista
//! decodes and runs whatever it is sent; this engine first refuses any plan
//! Tarn would not have made (see [`tarn_lake::guard`]), so a task can only
//! ever read lake files and write lake tables and shuffle files.

use std::fmt;
use std::sync::Arc;

use ballista_core::serde::protobuf::ShuffleWritePartition;
use ballista_core::JobId;
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use url::Url;

use crate::metrics::ExecutorMetrics;

/// Checks each task's plan, then runs it as Ballista does, counted in the
/// executor's metrics and logged under its query's id.
pub struct GuardedEngine {
    inner: DefaultExecutionEngine,
    lake_root: Url,
    metrics: Arc<ExecutorMetrics>,
}

impl GuardedEngine {
    /// An engine for an executor of the lake at `lake_root`.
    pub fn new(lake_root: Url, metrics: Arc<ExecutorMetrics>) -> Self {
        Self {
            inner: DefaultExecutionEngine::new(),
            lake_root,
            metrics,
        }
    }
}

/// The gateway's query id: Tarn names Ballista jobs `query@lease`.
fn query_id(config: &SessionConfig) -> String {
    tarn_lake::job_name(config)
        .and_then(|name| name.split_once('@').map(|(q, _)| q.to_string()))
        .unwrap_or_default()
}

/// A task as Ballista runs it, counted while it runs (however it ends:
/// done, failed, or dropped when cancelled) and run inside a span naming
/// its query, job and stage.
#[derive(Debug)]
struct TrackedStage {
    inner: Arc<dyn QueryStageExecutor>,
    metrics: Arc<ExecutorMetrics>,
    span: tracing::Span,
}

impl fmt::Display for TrackedStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait::async_trait]
impl QueryStageExecutor for TrackedStage {
    async fn execute_query_stage(
        &self,
        task_id: usize,
        context: Arc<TaskContext>,
    ) -> Result<Vec<ShuffleWritePartition>> {
        use tracing::Instrument;
        let _running = self.metrics.tasks_running.track();
        // Counted as cancelled unless it comes back: Ballista drops the
        // future of a cancelled task.
        let mut outcome = self.metrics.tasks.outcome("cancelled");
        let r = self
            .inner
            .execute_query_stage(task_id, context)
            .instrument(self.span.clone())
            .await;
        outcome.set(if r.is_ok() { "ok" } else { "failed" });
        tracing::info!(parent: &self.span, task_id, ok = r.is_ok(), "task ended");
        // Ballista carries a task's error to the gateway as text: a value
        // error goes coded, or it would read as a stage worth retrying.
        r.map_err(tarn_lake::error::with_value_code)
    }

    fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
        self.inner.collect_plan_metrics()
    }

    fn collect_runtime_stats_reports(
        &self,
    ) -> Vec<ballista_core::serde::protobuf::RuntimeStatsReport> {
        self.inner.collect_runtime_stats_reports()
    }
}

impl ExecutionEngine for GuardedEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        let checked = tarn_lake::guard::check_job_id(job_id.as_str())
            .and_then(|()| tarn_lake::guard::check_plan(&plan, &self.lake_root));
        if let Err(e) = checked {
            tracing::warn!(job = %job_id, stage_id, error = %e, "refused a task's plan");
            return Err(DataFusionError::External(Box::new(e)));
        }
        let span = tracing::info_span!("task", query_id = %query_id(config), job = %job_id, stage_id, task_id);
        let inner = self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(TrackedStage {
            inner,
            metrics: Arc::clone(&self.metrics),
            span,
        }))
    }
}
