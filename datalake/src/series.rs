//! `generate_series` and `range` in `FROM`, runnable on the cluster.
//!
//! DataFusion's versions plan fine in one process but not across Tarn's:
//! - their table cannot travel in a logical plan to the coordinator (no
//!   codec knows it: a multi-stage query failed with "LogicalExtensionCodec
//!   is not provided");
//! - their lazily generated scan, once projected (`count(*)` reads no
//!   column), loses the projection on its way to an executor, which then
//!   produced a column its plan did not expect;
//! - Ballista cannot restrict a lazily generated scan to the partitions a
//!   task owns, so under a union every task generated the series again and
//!   its rows came back several times over.
//!
//! These wrappers keep DataFusion's functions and fix all three: the table
//! travels as its function name and literal arguments
//! ([`crate::LakeLogicalCodec`]), and the scan is the generated rows in
//! memory (which carries its projection and restricts as a scan should).
//! Series are short in practice; one over [`MAX_ROWS`] is refused with a
//! code rather than generated in the planner.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::plan_err;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::bytes::Serializeable;
use serde::{Deserialize, Serialize};

/// The longest series generated (8 MB of `BIGINT`s).
pub const MAX_ROWS: usize = 1_000_000;

/// The series functions, by name.
pub const NAMES: &[&str] = &["generate_series", "range"];

/// DataFusion's implementation of the series function `name`.
fn datafusion_function(name: &str) -> Result<Arc<dyn TableFunctionImpl>> {
    datafusion::functions_table::all_default_table_functions()
        .into_iter()
        .find(|f| f.name() == name)
        .map(|f| Arc::clone(f.function()))
        .ok_or_else(|| DataFusionError::Plan(format!("no table function '{name}'")))
}

/// A series function as the gateway's sessions register it.
#[derive(Debug)]
pub struct SeriesFunction {
    name: String,
    inner: Arc<dyn TableFunctionImpl>,
}

impl SeriesFunction {
    /// The function `name` (one of [`NAMES`]).
    pub fn new(name: &str) -> Result<Self> {
        Ok(Self {
            name: name.to_string(),
            inner: datafusion_function(name)?,
        })
    }
}

impl TableFunctionImpl for SeriesFunction {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> Result<Arc<dyn TableProvider>> {
        let inner = self
            .inner
            .call_with_args(datafusion::catalog::TableFunctionArgs::new(
                args.exprs(),
                args.session(),
            ))?;
        Ok(Arc::new(SeriesTable {
            name: self.name.clone(),
            args: args.exprs().to_vec(),
            inner,
        }))
    }
}

/// One call of a series function: its name and literal arguments, and
/// DataFusion's table for them.
#[derive(Debug)]
pub struct SeriesTable {
    name: String,
    args: Vec<Expr>,
    inner: Arc<dyn TableProvider>,
}

#[derive(Serialize, Deserialize)]
struct Encoded {
    name: String,
    /// Each argument as datafusion-proto bytes.
    args: Vec<Vec<u8>>,
}

impl SeriesTable {
    /// The call as bytes (for the logical codec).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let args = self
            .args
            .iter()
            .map(|e| e.to_bytes().map(|b| b.to_vec()))
            .collect::<Result<Vec<_>>>()?;
        serde_json::to_vec(&Encoded {
            name: self.name.clone(),
            args,
        })
        .map_err(|e| DataFusionError::Internal(format!("cannot encode a series call: {e}")))
    }

    /// The call back from [`SeriesTable::encode`]'s bytes.
    pub fn decode(buf: &[u8], ctx: &TaskContext) -> Result<Self> {
        let e: Encoded = serde_json::from_slice(buf)
            .map_err(|e| DataFusionError::Internal(format!("corrupt series call in plan: {e}")))?;
        if !NAMES.contains(&e.name.as_str()) {
            return plan_err!("'{}' is not a series function", e.name);
        }
        let args = e
            .args
            .iter()
            .map(|b| Expr::from_bytes_with_ctx(b, ctx))
            .collect::<Result<Vec<_>>>()?;
        // DataFusion's series functions read only their arguments.
        let session = datafusion::execution::session_state::SessionStateBuilder::new().build();
        let inner = datafusion_function(&e.name)?
            .call_with_args(datafusion::catalog::TableFunctionArgs::new(&args, &session))?;
        Ok(Self {
            name: e.name,
            args,
            inner,
        })
    }
}

#[async_trait]
impl TableProvider for SeriesTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        use futures::StreamExt;
        let lazy = self.inner.scan(state, None, &[], limit).await?;
        let schema = lazy.schema();
        let ctx = state.task_ctx();
        let mut batches = Vec::new();
        let mut rows = 0usize;
        for partition in 0..lazy.properties().output_partitioning().partition_count() {
            let mut stream = lazy.execute(partition, Arc::clone(&ctx))?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows();
                if rows > MAX_ROWS {
                    return Err(DataFusionError::External(Box::new(
                        tarn_common::TarnError::new(
                            tarn_common::ErrorCode::Unsupported,
                            format!("{}(…) would generate more than {MAX_ROWS} rows", self.name),
                        )
                        .with_fix(
                            "generate fewer rows, or cross join two shorter series \
                             (range(1000) × range(1000) is a million rows)",
                        ),
                    )));
                }
                batches.push(batch);
            }
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            schema,
            projection.cloned(),
        )?)
    }
}
