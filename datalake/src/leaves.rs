//! Self-generating leaves (`PlaceholderRowExec`, `EmptyExec`) as in-memory
//! scans: a physical optimizer rule of the coordinator's scheduler, so
//! every job's stages are planned with them.
//!
//! Ballista hands each task a copy of its stage's plan restricted to the
//! partitions the task owns. A union branch the task does not own is cut
//! down to nothing, and for these two leaves that means being swapped for
//! an empty in-memory scan — an operator that reports metrics where the
//! original reports none. Tasks of one stage then report metric lists of
//! different lengths, the scheduler rejects the status update of every
//! task after the first ("task metrics array size … does not equal stage
//! metrics array size …"), and the stage never completes: a job such as
//! `INSERT … SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7`, or a SELECT
//! over a union of constants and table scans, hangs.
//!
//! Planning these leaves as in-memory scans from the start gives every
//! task the same operators, owned branch or not. The rows are the same:
//! one row per partition for a placeholder, none for an empty leaf. (This
//! holds because jobs use Ballista's static planner: the adaptive one
//! replaces the session's optimizer rules.)

use std::sync::Arc;

use arrow::array::{new_null_array, RecordBatch, RecordBatchOptions};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::ScalarValue;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
use datafusion::physical_plan::ExecutionPlan;

/// Rewrites the self-generating leaves of a plan as in-memory scans.
#[derive(Debug, Default)]
pub struct MemoryLeaves;

impl PhysicalOptimizerRule for MemoryLeaves {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let n = node.properties().output_partitioning().partition_count();
            let schema = node.schema();
            let partitions = if node.downcast_ref::<EmptyExec>().is_some() {
                vec![Vec::new(); n]
            } else if node.downcast_ref::<PlaceholderRowExec>().is_some() {
                match placeholder_row(&schema) {
                    Some(row) => vec![vec![row]; n],
                    // A type without a value to stand in: keep the original
                    // (correct alone, if not uniform across tasks).
                    None => return Ok(Transformed::no(node)),
                }
            } else {
                return Ok(Transformed::no(node));
            };
            let scan = MemorySourceConfig::try_new_exec(&partitions, schema, None)?;
            Ok(Transformed::yes(scan as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tarn_memory_leaves"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The one row a `PlaceholderRowExec` stands for: NULL in every column
/// (it usually has none). Nothing reads a placeholder's values, only its
/// row (DataFusion's own emits NULL-typed columns whatever its schema
/// says), so a column that cannot hold NULL — the aggregate's schema, when
/// `count(*)` is answered from statistics — gets its type's default value.
fn placeholder_row(schema: &arrow::datatypes::SchemaRef) -> Option<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            if f.is_nullable() {
                Some(new_null_array(f.data_type(), 1))
            } else {
                ScalarValue::new_default(f.data_type())
                    .and_then(|v| v.to_array_of_size(1))
                    .ok()
            }
        })
        .collect::<Option<Vec<_>>>()?;
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Schema;
    use datafusion::physical_plan::union::UnionExec;

    #[test]
    fn placeholders_and_empty_leaves_become_memory_scans() {
        let schema = Arc::new(Schema::empty());
        let leaves: Vec<Arc<dyn ExecutionPlan>> = vec![
            Arc::new(PlaceholderRowExec::new(Arc::clone(&schema))),
            Arc::new(PlaceholderRowExec::new(Arc::clone(&schema))),
            Arc::new(EmptyExec::new(Arc::clone(&schema))),
        ];
        let union = UnionExec::try_new(leaves).unwrap();
        let out = MemoryLeaves
            .optimize(union, &ConfigOptions::default())
            .unwrap();
        let text = datafusion::physical_plan::displayable(out.as_ref())
            .indent(false)
            .to_string();
        assert!(!text.contains("PlaceholderRowExec"), "{text}");
        assert!(!text.contains("EmptyExec"), "{text}");
        assert_eq!(
            out.properties().output_partitioning().partition_count(),
            3,
            "{text}"
        );
    }

    /// `count(*)` answered from statistics: a projection of the counts
    /// over a placeholder with the aggregate's NOT NULL schema. Left as a
    /// placeholder under a union, the job's tasks reported different
    /// metrics and it never finished.
    #[tokio::test]
    async fn placeholders_of_not_null_columns_become_memory_scans_too() {
        use arrow::datatypes::{DataType, Field};
        let schema = Arc::new(Schema::new(vec![
            Field::new("count(*)", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let leaves: Vec<Arc<dyn ExecutionPlan>> = vec![
            Arc::new(PlaceholderRowExec::new(Arc::clone(&schema))),
            Arc::new(PlaceholderRowExec::new(Arc::clone(&schema))),
        ];
        let union = UnionExec::try_new(leaves).unwrap();
        let out = MemoryLeaves
            .optimize(union, &ConfigOptions::default())
            .unwrap();
        let text = datafusion::physical_plan::displayable(out.as_ref())
            .indent(false)
            .to_string();
        assert!(!text.contains("PlaceholderRowExec"), "{text}");
        assert_eq!(out.schema(), schema);
        let ctx = Arc::new(datafusion::execution::TaskContext::default());
        let batches = datafusion::physical_plan::collect(out, ctx).await.unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2);
    }

    #[tokio::test]
    async fn the_rows_stay_the_same() {
        let schema = Arc::new(Schema::empty());
        let leaves: Vec<Arc<dyn ExecutionPlan>> = vec![
            Arc::new(PlaceholderRowExec::new(Arc::clone(&schema))),
            Arc::new(PlaceholderRowExec::new(Arc::clone(&schema)).with_partitions(2)),
            Arc::new(EmptyExec::new(Arc::clone(&schema))),
        ];
        let union = UnionExec::try_new(leaves).unwrap();
        let out = MemoryLeaves
            .optimize(union, &ConfigOptions::default())
            .unwrap();
        let ctx = Arc::new(datafusion::execution::TaskContext::default());
        let batches = datafusion::physical_plan::collect(out, ctx).await.unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 3);
    }
}
