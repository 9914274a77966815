//! Statements run in this process, for tests of SQL behaviour that need
//! no cluster (`tests/slt`).
//!
//! Planning is the gateway's own ([`crate::session::prepare`]: the same
//! read-only check, table-function check, name resolution, write rules,
//! catalog, series functions and constant-folding guard, so the same
//! statements get the same results and codes). Only the running differs:
//! DataFusion executes the plan here instead of Ballista on the executors,
//! with the coordinator's physical rules, the executors' plan check and
//! a runtime confined to the lake as theirs is; a write is committed
//! exactly as the gateway commits one.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use futures::TryStreamExt;
use tarn_common::roles::Grants;
use tarn_common::{ErrorCode, TarnError};
use tarn_lake::Lake;

use crate::error::from_datafusion;
use crate::session::{
    planning_config, prepare, prepare_kql, with_lake, with_setting, Language, Prepared,
};
use crate::write::Effect;

/// A session over `lake` whose statements run in this process.
#[derive(Debug)]
pub struct LocalSession {
    lake: Arc<Lake>,
    grants: Grants,
    user: String,
    workspace: String,
    state: parking_lot::RwLock<SessionState>,
    /// KQL's pinned `now()` (`set query_now = …;` sent alone).
    kql_now: parking_lot::RwLock<Option<chrono::DateTime<chrono::Utc>>>,
    /// Commits run as tracked work, as the gateway's do.
    tasks: tarn_common::supervisor::Supervisor,
}

impl LocalSession {
    /// A session of `user` holding `grants`, in `workspace`, planning
    /// scans into `partitions` partitions (a cluster session's vCores).
    pub fn new(
        lake: Arc<Lake>,
        user: &str,
        grants: Grants,
        workspace: &str,
        partitions: usize,
    ) -> Result<Self, TarnError> {
        let internal = |e: &dyn std::fmt::Display| {
            TarnError::new(ErrorCode::Internal, format!("cannot create session: {e}"))
        };
        let runtime = RuntimeEnvBuilder::new()
            .build_arc()
            .map_err(|e| internal(&e))?;
        tarn_lake::guard::confine_runtime(&runtime, lake.root()).map_err(|e| e.to_tarn())?;
        let state = SessionStateBuilder::new()
            .with_config(planning_config(workspace, partitions))
            .with_default_features()
            .with_runtime_env(runtime)
            // As the coordinator's scheduler plans every job.
            .with_physical_optimizer_rule(Arc::new(tarn_lake::leaves::MemoryLeaves))
            .build();
        let state = with_lake(
            state,
            &lake,
            &grants,
            crate::GatewayOptions::default().max_constant_bytes,
        )?;
        Ok(Self {
            lake,
            grants,
            user: user.to_string(),
            workspace: workspace.to_string(),
            state: parking_lot::RwLock::new(state),
            kql_now: Default::default(),
            tasks: tarn_common::supervisor::Supervisor::new(Default::default()),
        })
    }

    /// Plans and runs one statement: its result schema and every batch
    /// (a write's one `count` row comes after its commit).
    pub async fn run(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), TarnError> {
        self.run_in(sql, Language::Sql).await
    }

    /// Plans and runs one KQL query, as [`LocalSession::run`] a SQL
    /// statement.
    pub async fn run_kql(&self, kql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), TarnError> {
        self.run_in(kql, Language::Kql).await
    }

    /// Parses, checks and plans one statement written in `language`, as
    /// [`LocalSession::run_in`] does before running it (for measuring
    /// planning alone). A `SET` plans to nothing and changes nothing.
    pub async fn plan(
        &self,
        text: &str,
        language: Language,
    ) -> Result<datafusion::logical_expr::LogicalPlan, TarnError> {
        let state = {
            let base = self.state.read();
            let mut config = base.config().clone();
            config.options_mut().catalog.default_schema = self.workspace.clone();
            crate::session::with_config(&base, config)
        };
        let prepared = match language {
            Language::Sql => {
                prepare(&self.lake, &state, &self.grants, &self.workspace, text).await?
            }
            Language::Kql => {
                let now = *self.kql_now.read();
                prepare_kql(&self.lake, &state, &self.grants, &self.workspace, text, now).await?
            }
        };
        match prepared {
            Prepared::Plan { plan, .. } => state.optimize(&plan).map_err(|e| from_datafusion(&e)),
            Prepared::Set { .. } | Prepared::PinNow(_) => {
                Ok(datafusion::logical_expr::LogicalPlan::EmptyRelation(
                    datafusion::logical_expr::EmptyRelation {
                        produce_one_row: false,
                        schema: Arc::new(datafusion::common::DFSchema::empty()),
                    },
                ))
            }
        }
    }

    /// Plans and runs one statement written in `language`.
    pub async fn run_in(
        &self,
        text: &str,
        language: Language,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), TarnError> {
        let state = {
            let base = self.state.read();
            let mut config = base.config().clone();
            config.options_mut().catalog.default_schema = self.workspace.clone();
            crate::session::with_config(&base, config)
        };
        let prepared = match language {
            Language::Sql => {
                prepare(&self.lake, &state, &self.grants, &self.workspace, text).await?
            }
            Language::Kql => {
                let now = *self.kql_now.read();
                prepare_kql(&self.lake, &state, &self.grants, &self.workspace, text, now).await?
            }
        };
        let (plan, effect) = match prepared {
            Prepared::Plan { plan, effect } => (plan, effect),
            Prepared::Set { key, value } => {
                let mut current = self.state.write();
                *current = with_setting(&current, &key, value)?;
                return Ok((Arc::new(arrow::datatypes::Schema::empty()), Vec::new()));
            }
            Prepared::PinNow(now) => {
                *self.kql_now.write() = now;
                return Ok((Arc::new(arrow::datatypes::Schema::empty()), Vec::new()));
            }
        };
        match effect {
            Effect::Skip => return Ok(count(0)),
            Effect::Drop { workspace, table } => {
                self.lake
                    .delete_table(&workspace, &table)
                    .await
                    .map_err(|e| e.to_tarn())?;
                return Ok(count(0));
            }
            Effect::Nothing | Effect::Commit(_) => {}
        }
        let plan = state.optimize(&plan).map_err(|e| from_datafusion(&e))?;
        // As a session's Ballista planner decides: a plan reading only
        // `information_schema` runs where it was planned (the gateway);
        // any other runs on the executors, which check it first.
        let on_executors = !ballista_core::planner::scans_only_information_schema(&plan)
            .map_err(|e| from_datafusion(&e))?;
        let physical = DefaultPhysicalPlanner::default()
            .create_physical_plan(&plan, &state)
            .await
            .map_err(|e| from_datafusion(&e))?;
        if on_executors {
            tarn_lake::guard::check_plan(&physical, self.lake.root())?;
        }
        let stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())
            .map_err(|e| from_datafusion(&e))?;
        let stream = match effect {
            Effect::Commit(spec) => crate::query::commit_after(
                stream,
                spec,
                Arc::clone(&self.lake),
                self.user.clone(),
                self.tasks.clone(),
                None,
            ),
            _ => stream,
        };
        let schema = stream.schema();
        let batches = stream
            .try_collect()
            .await
            .map_err(|e| from_datafusion(&e))?;
        Ok((schema, batches))
    }
}

/// The one `count` row a write, drop or skipped create answers with.
fn count(n: u64) -> (SchemaRef, Vec<RecordBatch>) {
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("count", arrow::datatypes::DataType::UInt64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(arrow::array::UInt64Array::from(vec![n])) as arrow::array::ArrayRef],
    )
    .expect("invariant: one UInt64 column of one row matches its schema");
    (schema, vec![batch])
}
