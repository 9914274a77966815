//! [`LakeTable`]: one Delta table at one version, as a DataFusion table.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, Statistics};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{ListingTableUrl, PartitionedFile};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One data file of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LakeFile {
    /// Object-store path relative to the table folder.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Row count from the Delta statistics, when recorded.
    pub rows: Option<u64>,
    /// Partition values in partition-column order (`None` is SQL NULL).
    pub partition_values: Vec<Option<String>>,
}

/// The serialisable description of a table at one version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LakeTableSpec {
    /// Workspace (schema) name.
    pub workspace: String,
    /// Table name with its stored case.
    pub name: String,
    /// URL of the table folder.
    pub url: String,
    /// Delta version this spec was read at.
    pub version: i64,
    /// Schema of the columns stored in the files.
    pub file_schema: Schema,
    /// Partition columns, appended after the file columns.
    pub partition_fields: Vec<Field>,
    /// Every live data file of the version.
    pub files: Vec<LakeFile>,
    /// Set on the target of a write: how to write into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<crate::write::WriteSpec>,
}

/// A Delta table pinned at one version.
#[derive(Debug)]
pub struct LakeTable {
    spec: Arc<LakeTableSpec>,
    schema: SchemaRef,
}

impl LakeTable {
    /// Wraps a spec.
    pub fn new(spec: LakeTableSpec) -> Self {
        let mut fields: Vec<Field> = spec
            .file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(spec.partition_fields.iter().cloned());
        let schema = Arc::new(Schema::new(fields));
        Self {
            spec: Arc::new(spec),
            schema,
        }
    }

    /// The description this table was built from.
    pub fn spec(&self) -> &LakeTableSpec {
        &self.spec
    }

    /// This table as the target of a write: same snapshot, plus `write`.
    pub fn for_write(&self, write: crate::write::WriteSpec) -> LakeTable {
        let mut spec = (*self.spec).clone();
        spec.write = Some(write);
        LakeTable::new(spec)
    }

    /// Reads the latest snapshot of the Delta table at `url`.
    pub async fn load(workspace: &str, name: &str, table: &deltalake::DeltaTable) -> Result<Self> {
        let open_err = |source| Error::OpenTable {
            table: format!("{workspace}.{name}"),
            source: Box::new(source),
        };
        let state = table.snapshot().map_err(open_err)?;
        let version = state.version();
        let arrow_schema = state.snapshot().arrow_schema();
        let partition_cols: Vec<String> = state.metadata().partition_columns().to_vec();

        let mut file_fields = Vec::new();
        let mut partition_fields = Vec::new();
        for f in arrow_schema.fields() {
            if !partition_cols.iter().any(|p| p == f.name()) {
                file_fields.push(f.as_ref().clone());
            }
        }
        for p in &partition_cols {
            let f = arrow_schema
                .field_with_name(p)
                .map_err(|e| Error::OpenTable {
                    table: format!("{workspace}.{name}"),
                    source: Box::new(deltalake::DeltaTableError::Generic(e.to_string())),
                })?;
            partition_fields.push(f.clone().with_nullable(true));
        }

        // With column mapping the Parquet columns carry physical names that
        // differ from the table's; reading them by logical name would yield
        // NULLs, so refuse rather than answer wrongly.
        if let Some(mode) = &state.table_config().column_mapping_mode {
            let mode = format!("{mode:?}");
            if mode != "None" {
                return Err(Error::UnsupportedFeature {
                    table: format!("{workspace}.{name}"),
                    feature: format!("column mapping (mode {mode})"),
                });
            }
        }
        let mut files = Vec::new();
        for view in state.log_data().iter() {
            // A log entry naming an absolute URL or climbing out of the
            // table folder would let a table read files outside the lake.
            let raw = view.path().to_string();
            if raw.contains("://") || raw.starts_with('/') || raw.split('/').any(|seg| seg == "..")
            {
                return Err(Error::OutsideLake {
                    what: format!("table '{workspace}.{name}'"),
                    path: raw,
                });
            }
            if view.deletion_vector_descriptor().is_some() {
                return Err(Error::UnsupportedFeature {
                    table: format!("{workspace}.{name}"),
                    feature: "deletion vectors".into(),
                });
            }
            let values = view.partition_values_map();
            files.push(LakeFile {
                path: view.object_store_path().to_string(),
                size: view.size().max(0) as u64,
                rows: view.num_records().map(|n| n as u64),
                partition_values: partition_cols
                    .iter()
                    .map(|p| values.get(p).cloned().flatten())
                    .collect(),
            });
        }

        Ok(Self::new(LakeTableSpec {
            workspace: workspace.to_string(),
            name: name.to_string(),
            url: table.table_url().to_string(),
            version: version as i64,
            file_schema: Schema::new(file_fields),
            partition_fields,
            files,
            write: None,
        }))
    }

    /// Spreads files over `n` groups, largest first onto the lightest group,
    /// so partitions follow the session's vCores and finish together.
    fn file_groups(&self, n: usize, prefix: &str) -> DfResult<Vec<FileGroup>> {
        let n = n.max(1).min(self.spec.files.len().max(1));
        let mut order: Vec<&LakeFile> = self.spec.files.iter().collect();
        order.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> =
            (0..n).map(|_| (0, Vec::new())).collect();
        for f in order {
            let mut pf = PartitionedFile::new(String::new(), f.size);
            // `path` is already a valid object-store path; parsing (not
            // `Path::from`) keeps its escapes from being encoded twice.
            pf.object_meta.location =
                object_store::path::Path::parse(format!("{prefix}{}", f.path))
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
            if !self.spec.partition_fields.is_empty() {
                let mut values = Vec::with_capacity(self.spec.partition_fields.len());
                for (field, v) in self.spec.partition_fields.iter().zip(&f.partition_values) {
                    values.push(match v {
                        Some(s) => ScalarValue::try_from_string(s.clone(), field.data_type())?,
                        None => ScalarValue::try_from(field.data_type())?,
                    });
                }
                pf = pf.with_partition_values(values);
            }
            if let Some(rows) = f.rows {
                let mut stats = Statistics::new_unknown(&self.schema);
                stats.num_rows = Precision::Exact(rows as usize);
                stats.total_byte_size = Precision::Inexact(f.size as usize);
                pf = pf.with_statistics(Arc::new(stats));
            }
            let lightest = groups
                .iter_mut()
                .min_by_key(|(bytes, _)| *bytes)
                .expect("invariant: at least one group");
            lightest.0 += f.size;
            lightest.1.push(pf);
        }
        Ok(groups
            .into_iter()
            .map(|(_, files)| FileGroup::new(files))
            .collect())
    }

    fn statistics_all(&self) -> Statistics {
        let rows: Option<u64> = self.spec.files.iter().map(|f| f.rows).sum();
        let bytes: u64 = self.spec.files.iter().map(|f| f.size).sum();
        Statistics {
            num_rows: rows
                .map(|r| Precision::Exact(r as usize))
                .unwrap_or(Precision::Absent),
            total_byte_size: Precision::Inexact(bytes as usize),
            column_statistics: vec![ColumnStatistics::new_unknown(); self.schema.fields().len()],
        }
    }
}

#[async_trait]
impl TableProvider for LakeTable {
    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        _op: datafusion::logical_expr::dml::InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // The mode travels in the write spec, which the gateway checked
        // against the lake's rules; a plain table refuses writes.
        if self.spec.write.is_none() {
            return Err(DataFusionError::Plan(format!(
                "table '{}.{}' is not a write target",
                self.spec.workspace, self.spec.name
            )));
        }
        Ok(Arc::new(crate::write::DeltaWriteExec::new(
            input,
            Arc::clone(&self.spec),
        )))
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.statistics_all())
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Parquet row-group pruning and row filters use them; the filter
        // still runs above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.spec.files.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let url = if self.spec.url.ends_with('/') {
            self.spec.url.clone()
        } else {
            format!("{}/", self.spec.url)
        };
        let table_url = ListingTableUrl::parse(&url)?;
        let prefix = {
            let p = table_url.prefix().as_ref();
            if p.is_empty() {
                String::new()
            } else {
                format!("{p}/")
            }
        };
        let groups = self.file_groups(state.config().target_partitions(), &prefix)?;
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let table_schema = TableSchema::builder(Arc::new(self.spec.file_schema.clone()))
            .with_table_partition_cols(
                self.spec
                    .partition_fields
                    .iter()
                    .map(|f| Arc::new(f.clone()))
                    .collect::<Vec<_>>(),
            )
            .build();
        let source = format.file_source(table_schema);
        let config = FileScanConfigBuilder::new(table_url.object_store(), source)
            .with_file_groups(groups)
            .with_statistics(self.statistics_all())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        DataFusionError::External(Box::new(e))
    }
}
