//! Ballista's task execution with Tarn's plan check in front.
//!
//! Tasks arrive on the executor's task port as encoded plans. Ballista
//! decodes and runs whatever it is sent; this engine first refuses any plan
//! Tarn would not have made (see [`tarn_lake::guard`]), so a task can only
//! ever read lake files and write lake tables and shuffle files.

use std::sync::Arc;

use ballista_core::JobId;
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use url::Url;

/// Checks each task's plan, then runs it as Ballista does.
pub struct GuardedEngine {
    inner: DefaultExecutionEngine,
    lake_root: Url,
}

impl GuardedEngine {
    /// An engine for an executor of the lake at `lake_root`.
    pub fn new(lake_root: Url) -> Self {
        Self {
            inner: DefaultExecutionEngine::new(),
            lake_root,
        }
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
        self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )
    }
}
