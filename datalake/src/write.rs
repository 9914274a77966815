//! Writing to the lake.
//!
//! A write is a DataFusion `INSERT` into a [`LakeTable`](crate::LakeTable) whose spec carries
//! a [`WriteSpec`]. Its physical form, [`DeltaWriteExec`], runs on the
//! executors: each execution of one of its partitions writes those rows as
//! Parquet files into the table folder and records the files in a manifest
//! under `_tarn_txn/<txn>/`, named by a fresh random id. That id is the
//! partition's one output row. Nothing is visible until the gateway, after
//! the job succeeded, makes one Delta commit ([`commit`]) of exactly the
//! manifests whose ids came back in the job's result.
//!
//! Why ids and not partition numbers: Ballista restricts each task's plan
//! to the partitions it owns and renumbers them from 0, so the partition
//! number an operator sees is local to its task and two tasks would write
//! the same manifest name (one overwriting the other: lost rows). And a
//! task attempt that wrote its manifest but was then retried must not count
//! twice: only the attempt whose output the job kept is committed. A crash
//! before the commit leaves only unreferenced files; the commit itself is
//! one atomic put of the next log entry, so readers see the old version or
//! the new one, never a mix.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DataFusionError;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use deltalake::kernel::{Action, Add};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tarn_common::{ErrorCode, TarnError};

use crate::rules::WriteMode;
use crate::table::LakeTableSpec;

/// Folder (inside the table folder) holding the manifests of writes in
/// flight. Delta readers skip folders starting with `_`.
pub const TXN_DIR: &str = "_tarn_txn";

/// Files above this size are rolled over to a new one.
const TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// What a write target carries besides the table it writes to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WriteSpec {
    /// Unique id of this write (names its manifest folder).
    pub txn: String,
    /// The table does not exist yet; the commit creates it.
    pub create: bool,
    /// Append or overwrite.
    pub mode: WriteMode,
    /// Partition columns (of the table, or the new table's).
    pub partition_by: Vec<String>,
    /// The table's full schema, in table order, partition columns included.
    pub schema: Schema,
    /// Makes the write idempotent: committed with Delta's application
    /// transaction (`txn`) action, so a retry of the same work can see it
    /// already landed ([`app_txn_version`]) instead of appending twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_txn: Option<AppTxn>,
}

/// An application transaction: who writes (`app_id`) and which of its
/// attempts (`version`, increasing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppTxn {
    /// The writer, e.g. one statement of one job.
    pub app_id: String,
    /// Its monotonic version, e.g. the run's submission number.
    pub version: i64,
}

impl AppTxn {
    fn action(&self) -> deltalake::kernel::Transaction {
        deltalake::kernel::Transaction::new_with_last_update(
            &self.app_id,
            self.version,
            Some(tarn_common::clock::unix_ms() as i64),
        )
    }
}

/// The last version `app_id` committed to the table at `url`, if the table
/// exists and it ever did.
pub async fn app_txn_version(url: &str, app_id: &str) -> Result<Option<i64>, TarnError> {
    let url = url::Url::parse(url).map_err(|e| internal("bad table URL", e))?;
    let table = match deltalake::open_table(url).await {
        Ok(t) => t,
        // No table (or not even its folder) yet: nothing was committed.
        Err(
            deltalake::DeltaTableError::NotATable(_)
            | deltalake::DeltaTableError::InvalidTableLocation(_),
        ) => return Ok(None),
        Err(e) => return Err(internal("cannot read the table's log", e)),
    };
    let snapshot = table
        .snapshot()
        .map_err(|e| internal("cannot read the table's log", e))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| internal("cannot read the table's application transactions", e))
}

/// What one task wrote.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    rows: u64,
    adds: Vec<Add>,
}

/// The `count` schema DataFusion gives DML plans.
fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

/// Writes its input's partitions as Delta data files (one task each).
#[derive(Debug)]
pub struct DeltaWriteExec {
    input: Arc<dyn ExecutionPlan>,
    spec: Arc<LakeTableSpec>,
    properties: Arc<PlanProperties>,
}

impl DeltaWriteExec {
    /// Writes `input` into the table `spec` describes (its `write` must be set).
    pub fn new(input: Arc<dyn ExecutionPlan>, spec: Arc<LakeTableSpec>) -> Self {
        let n = input.properties().output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(n),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            input,
            spec,
            properties,
        }
    }

    /// The target.
    pub fn spec(&self) -> &LakeTableSpec {
        &self.spec
    }
}

impl DisplayAs for DeltaWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let mode = self
            .spec
            .write
            .as_ref()
            .map(|w| w.mode.name())
            .unwrap_or("?");
        write!(
            f,
            "DeltaWriteExec: table={}.{} mode={mode}",
            self.spec.workspace, self.spec.name
        )
    }
}

impl ExecutionPlan for DeltaWriteExec {
    fn name(&self) -> &str {
        "DeltaWriteExec"
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal("DeltaWriteExec needs one input".into()))?;
        Ok(Arc::new(Self::new(input, Arc::clone(&self.spec))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let spec = Arc::clone(&self.spec);
        let fut = write_partition(spec, partition, input, context);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            count_schema(),
            futures::stream::once(fut),
        )))
    }
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The table folder's store, rooted at the folder.
fn table_store(url: &str, ctx: &TaskContext) -> DfResult<Arc<dyn ObjectStore>> {
    let url = if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    };
    let table_url = ListingTableUrl::parse(&url)?;
    let store = ctx.runtime_env().object_store(table_url.object_store())?;
    Ok(Arc::new(object_store::prefix::PrefixStore::new(
        store,
        table_url.prefix().clone(),
    )))
}

/// The gateway checked the write's folders before planning it; checked
/// again here, just before writing, so a link planted in between is not
/// followed either. For a local lake the root is the table folder's
/// grandparent (`<root>/<workspace>/<table>/`).
fn check_local_target(spec: &LakeTableSpec, txn: &str) -> DfResult<()> {
    let Ok(url) = url::Url::parse(&spec.url) else {
        return Ok(());
    };
    if url.scheme() != "file" {
        return Ok(());
    }
    let Ok(table) = url.to_file_path() else {
        return Ok(());
    };
    let Some(root) = table.parent().and_then(|p| p.parent()) else {
        return Ok(());
    };
    let Ok(real_root) = std::fs::canonicalize(root) else {
        return Ok(());
    };
    let what = format!("{}/{}", spec.workspace, spec.name);
    for p in [table.clone(), table.join(TXN_DIR).join(txn)] {
        crate::catalog::resolve_inside(&real_root, &p, &what)
            .map_err(|e| DataFusionError::External(Box::new(e.to_tarn())))?;
    }
    Ok(())
}

async fn write_partition(
    spec: Arc<LakeTableSpec>,
    partition: usize,
    mut input: SendableRecordBatchStream,
    ctx: Arc<TaskContext>,
) -> DfResult<RecordBatch> {
    let write = spec
        .write
        .as_ref()
        .ok_or_else(|| DataFusionError::Internal("write target without a write spec".into()))?;
    check_local_target(&spec, &write.txn)?;
    let store = table_store(&spec.url, &ctx)?;
    let schema = Arc::new(write.schema.clone());
    let config = deltalake::datafile::writer::WriterConfig::new(
        Arc::clone(&schema),
        write.partition_by.clone(),
        None,
        NonZeroU64::new(TARGET_FILE_BYTES),
        None,
        delta_kernel::table_properties::DataSkippingNumIndexedCols::NumColumns(32),
        None,
    );
    let mut writer = deltalake::datafile::writer::DeltaWriter::new(Arc::clone(&store), config);
    let mut rows = 0u64;
    let full = format!("{}.{}", spec.workspace, spec.name);
    let result: DfResult<()> = async {
        while let Some(batch) = input.next().await {
            let batch = conform(&batch?, &schema, &full)?;
            if batch.num_rows() == 0 {
                continue;
            }
            rows += batch.num_rows() as u64;
            writer.write(&batch).await.map_err(external)?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = writer.abort().await;
        return Err(e);
    }
    let adds = writer.close().await.map_err(external)?;
    let files = adds.len();
    let manifest = serde_json::to_vec(&Manifest { rows, adds })
        .map_err(|e| DataFusionError::Internal(format!("cannot encode manifest: {e}")))?;
    let id = new_manifest_id();
    store
        .put(
            &Path::from(format!("{TXN_DIR}/{}/{}", write.txn, manifest_name(id))),
            manifest.into(),
        )
        .await
        .map_err(external)?;
    tracing::debug!(table = %full, txn = %write.txn, partition, manifest = id, rows, files,
        "write partition done");
    Ok(RecordBatch::try_new(
        count_schema(),
        vec![Arc::new(UInt64Array::from(vec![id])) as ArrayRef],
    )?)
}

/// A manifest id: random, so that partitions of different tasks (all
/// numbered from 0 in their own task) and retried attempts never share one.
fn new_manifest_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// The file name of manifest `id` (in the write's folder `_tarn_txn/<txn>/`).
fn manifest_name(id: u64) -> String {
    format!("part-{id:016x}.json")
}

/// The manifest ids a write job returned: the `count` column of its
/// result rows (see [`DeltaWriteExec`]).
pub fn manifest_ids(batch: &RecordBatch) -> Result<Vec<u64>, TarnError> {
    let col = batch
        .columns()
        .first()
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .ok_or_else(|| internal("write result", "not a UInt64 column"))?;
    if col.null_count() > 0 {
        return Err(internal("write result", "a NULL manifest id"));
    }
    Ok(col.values().iter().copied().collect())
}

/// Brings a batch to the table's schema: columns by name in table order,
/// cast to the stored types, and NULLs refused in NOT NULL columns.
fn conform(batch: &RecordBatch, schema: &SchemaRef, full: &str) -> DfResult<RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        let col = match batch.column_by_name(f.name()) {
            Some(c) => c,
            // DataFusion's INSERT planning names columns after the table;
            // fall back to position for inputs that kept their own names.
            None => batch.columns().get(i).ok_or_else(|| {
                DataFusionError::Execution(format!("the data has no column '{}'", f.name()))
            })?,
        };
        let col = if col.data_type() == f.data_type() {
            Arc::clone(col)
        } else {
            // Not the default "safe" cast, which turns a value that does
            // not fit into NULL: that would write something other than
            // what the query produced.
            let strict = arrow::compute::CastOptions {
                safe: false,
                ..Default::default()
            };
            arrow::compute::cast_with_options(col, f.data_type(), &strict)
                .map_err(|e| value_does_not_fit(e, f.name(), full))?
        };
        if !f.is_nullable() && col.null_count() > 0 {
            return Err(DataFusionError::External(Box::new(TarnError::new(
                ErrorCode::NullabilityMismatch,
                format!(
                    "column '{}' of table '{full}' is NOT NULL, but {} row(s) of the data are NULL there",
                    f.name(),
                    col.null_count()
                ),
            ))));
        }
        columns.push(col);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// A value that does not fit the column it is written to, as 2809 naming
/// the column.
fn value_does_not_fit(e: arrow::error::ArrowError, column: &str, full: &str) -> DataFusionError {
    DataFusionError::External(Box::new(TarnError::new(
        ErrorCode::InvalidValue,
        format!("a value of column '{column}' does not fit table '{full}': {e}"),
    )))
}

/// What a commit did.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The table version the write created.
    pub version: i64,
    /// Rows written.
    pub rows: u64,
    /// Files added.
    pub files: usize,
}

fn table_root(spec: &LakeTableSpec) -> Result<(Arc<dyn ObjectStore>, Path), TarnError> {
    let url = url::Url::parse(&spec.url).map_err(|e| {
        TarnError::new(
            ErrorCode::Internal,
            format!("bad table URL {}: {e}", spec.url),
        )
    })?;
    let (store, _) = crate::open_store(&url).map_err(|e| e.to_tarn())?;
    let store: Arc<dyn ObjectStore> = Arc::from(store);
    let path = Path::from_url_path(url.path()).map_err(|e| {
        TarnError::new(
            ErrorCode::Internal,
            format!("bad table path {}: {e}", spec.url),
        )
    })?;
    Ok((store, path))
}

fn internal(what: &str, e: impl fmt::Display) -> TarnError {
    TarnError::new(ErrorCode::Internal, format!("{what}: {e}"))
}

/// Reads the manifests `ids` of the write in `dir`. A missing one means a
/// partition's files cannot be found: the write fails rather than commit
/// less than its query produced.
async fn read_listed_manifests(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    txn: &str,
    ids: &[u64],
) -> Result<(u64, Vec<Add>), TarnError> {
    let mut rows = 0;
    let mut adds = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for &id in ids {
        if !seen.insert(id) {
            return Err(TarnError::new(
                ErrorCode::ExecutionFailed,
                format!("write {txn}: partition result {id:016x} came back twice"),
            ));
        }
        let path = dir.clone().join(manifest_name(id).as_str());
        let bytes = match store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| internal("cannot read a manifest", e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(TarnError::new(
                    ErrorCode::ExecutionFailed,
                    format!(
                        "write {txn}: the files of one partition are not recorded under {dir}; nothing was committed"
                    ),
                )
                .with_fix("run the write again"));
            }
            Err(e) => return Err(internal("cannot read a manifest", e)),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| internal("corrupt manifest", e))?;
        rows += manifest.rows;
        adds.extend(manifest.adds);
    }
    Ok((rows, adds))
}

async fn read_manifests(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
) -> Result<(u64, Vec<Add>), TarnError> {
    let metas: Vec<_> = store
        .list(Some(dir))
        .try_collect()
        .await
        .map_err(|e| internal("cannot list the write's manifests", e))?;
    let mut rows = 0;
    let mut adds = Vec::new();
    for m in metas {
        let bytes = store
            .get(&m.location)
            .await
            .map_err(|e| internal("cannot read a manifest", e))?
            .bytes()
            .await
            .map_err(|e| internal("cannot read a manifest", e))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| internal("corrupt manifest", e))?;
        rows += manifest.rows;
        adds.extend(manifest.adds);
    }
    Ok((rows, adds))
}

async fn remove_dir(store: &Arc<dyn ObjectStore>, dir: &Path) {
    let locations = store.list(Some(dir)).map_ok(|m| m.location).boxed();
    let mut deleted = store.delete_stream(locations);
    while let Some(r) = deleted.next().await {
        if let Err(e) = r {
            tracing::warn!(dir = %dir, error = %e, "could not remove a write's leftover");
        }
    }
}

/// Commits a write whose job succeeded: one Delta commit adding the files
/// of the manifests `ids` (the job's result rows; and, for an overwrite,
/// removing every file of the version the write read). Manifests of task
/// attempts the job did not keep, and their files, are removed with the
/// rest of the write's manifest folder.
pub async fn commit(spec: &LakeTableSpec, ids: &[u64]) -> Result<Committed, TarnError> {
    let write = spec
        .write
        .as_ref()
        .ok_or_else(|| internal("commit", "not a write"))?;
    let (store, root) = table_root(spec)?;
    let dir = root.clone().join(TXN_DIR).join(write.txn.as_str());
    let (rows, adds) = match read_listed_manifests(&store, &dir, &write.txn, ids).await {
        Ok(r) => r,
        Err(e) => {
            abort(spec).await;
            return Err(e);
        }
    };
    remove_unlisted(&store, &root, &dir, &write.txn, ids).await;
    let files = adds.len();
    let full = format!("{}.{}", spec.workspace, spec.name);
    let url = url::Url::parse(&spec.url).map_err(|e| internal("bad table URL", e))?;
    let partition_by = (!write.partition_by.is_empty()).then(|| write.partition_by.clone());
    let version = if write.create {
        let delta = crate::rules::delta_schema(&write.schema)?;
        let result = deltalake::operations::create::CreateBuilder::new()
            .with_location(url.as_str())
            .with_table_name(spec.name.clone())
            .with_columns(delta.fields().cloned())
            .with_partition_columns(write.partition_by.clone())
            .with_save_mode(deltalake::protocol::SaveMode::ErrorIfExists)
            .with_actions(
                adds.into_iter()
                    .map(Action::Add)
                    .chain(write.app_txn.iter().map(|t| Action::Txn(t.action()))),
            )
            .await;
        match result {
            Ok(t) => t.version().map(|v| v as i64).unwrap_or(0),
            Err(e) => {
                remove_dir(&store, &dir).await;
                // The builder's own "already exists" error is private, so
                // ask the lake: a table there now was created by another
                // write first (whether it won the race or was there before).
                let raced = matches!(e, deltalake::DeltaTableError::VersionAlreadyExists(_))
                    || deltalake::open_table(url.clone()).await.is_ok();
                return Err(if raced {
                    TarnError::new(
                        ErrorCode::TableAlreadyExists,
                        format!("table '{full}' was created by another write first"),
                    )
                } else {
                    internal(&format!("cannot create table '{full}'"), e)
                });
            }
        }
    } else {
        let table = deltalake::open_table_with_version(url, spec.version.max(0) as u64)
            .await
            .map_err(|e| internal(&format!("cannot read table '{full}'"), e))?;
        let snapshot = table
            .snapshot()
            .map_err(|e| internal(&format!("cannot read table '{full}'"), e))?;
        let mut actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
        if write.mode == WriteMode::Overwrite {
            for view in snapshot.log_data().iter() {
                actions.push(Action::Remove(view.remove_action(true)));
            }
        }
        let op = deltalake::protocol::DeltaOperation::Write {
            mode: match write.mode {
                WriteMode::Append => deltalake::protocol::SaveMode::Append,
                WriteMode::Overwrite => deltalake::protocol::SaveMode::Overwrite,
            },
            partition_by,
            predicate: None,
        };
        let mut props = deltalake::kernel::transaction::CommitProperties::default();
        if let Some(t) = &write.app_txn {
            props = props.with_application_transaction(t.action());
        }
        let result = deltalake::kernel::transaction::CommitBuilder::from(props)
            .with_actions(actions)
            .build(Some(snapshot), table.log_store(), op)
            .await;
        match result {
            Ok(done) => done.version() as i64,
            Err(e) => {
                remove_dir(&store, &dir).await;
                use deltalake::kernel::transaction::TransactionError as T;
                let conflict = matches!(
                    &e,
                    deltalake::DeltaTableError::VersionAlreadyExists(_)
                        | deltalake::DeltaTableError::Transaction {
                            source: T::CommitConflict(_) | T::MaxCommitAttempts(_)
                        }
                );
                return Err(if conflict {
                    TarnError::new(
                        ErrorCode::WriteConflict,
                        format!("another write to '{full}' committed first and this one conflicts with it: {e}"),
                    )
                } else {
                    internal(&format!("cannot commit to '{full}'"), e)
                });
            }
        }
    };
    remove_dir(&store, &dir).await;
    Ok(Committed {
        version,
        rows,
        files,
    })
}

/// Deletes the files of manifests the job did not keep (attempts that were
/// retried, or re-run after their output was lost), and those manifests.
async fn remove_unlisted(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    dir: &Path,
    txn: &str,
    ids: &[u64],
) {
    let kept: std::collections::HashSet<String> = ids.iter().map(|&id| manifest_name(id)).collect();
    let Ok(metas) = store.list(Some(dir)).try_collect::<Vec<_>>().await else {
        return;
    };
    for m in metas {
        if m.location.filename().is_some_and(|f| kept.contains(f)) {
            continue;
        }
        tracing::info!(txn, manifest = %m.location, "removing the files of a task attempt the job did not keep");
        if let Ok(r) = store.get(&m.location).await {
            if let Ok(bytes) = r.bytes().await {
                if let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) {
                    for a in manifest.adds {
                        if let Ok(p) = Path::parse(format!("{root}/{}", a.path)) {
                            let _ = store.delete(&p).await;
                        }
                    }
                }
            }
        }
        let _ = store.delete(&m.location).await;
    }
}

/// Undoes a write that will not be committed: deletes the files its
/// manifests list and the manifests. Files of tasks that died before
/// writing a manifest stay unreferenced (readers never see them).
pub async fn abort(spec: &LakeTableSpec) {
    let Some(write) = spec.write.as_ref() else {
        return;
    };
    let Ok((store, root)) = table_root(spec) else {
        return;
    };
    let dir = root.clone().join(TXN_DIR).join(write.txn.as_str());
    if let Ok((_, adds)) = read_manifests(&store, &dir).await {
        for a in adds {
            if let Ok(p) = Path::parse(format!("{root}/{}", a.path)) {
                let _ = store.delete(&p).await;
            }
        }
    }
    remove_dir(&store, &dir).await;
}

/// The physical codec: Ballista's, plus [`DeltaWriteExec`].
#[derive(Debug, Default)]
pub struct LakePhysicalCodec {
    inner: ballista_core::serde::BallistaPhysicalExtensionCodec,
}

const WRITE_MAGIC: &[u8] = b"TARNWRITE1:";

impl datafusion_proto::physical_plan::PhysicalExtensionCodec for LakePhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn datafusion_proto::physical_plan::PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match buf.strip_prefix(WRITE_MAGIC) {
            Some(body) => {
                let spec: LakeTableSpec = serde_json::from_slice(body).map_err(|e| {
                    DataFusionError::Internal(format!("corrupt write in plan: {e}"))
                })?;
                let input = inputs.first().cloned().ok_or_else(|| {
                    DataFusionError::Internal("DeltaWriteExec arrived without input".into())
                })?;
                Ok(Arc::new(DeltaWriteExec::new(input, Arc::new(spec))))
            }
            None => self.inner.try_decode(buf, inputs, ctx, proto_converter),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn datafusion_proto::physical_plan::PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        if let Some(w) = node.downcast_ref::<DeltaWriteExec>() {
            buf.extend_from_slice(WRITE_MAGIC);
            serde_json::to_writer(&mut *buf, w.spec())
                .map_err(|e| DataFusionError::Internal(format!("cannot encode write: {e}")))?;
            return Ok(());
        }
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        match tarn_kql::functions::udf(name) {
            Some(f) => Ok(f),
            None => self.inner.try_decode_udf(name, buf),
        }
    }
}
