//! What an executor agrees to run, and which files it may touch.
//!
//! Executors decode physical plans that arrive over the network (Ballista
//! tasks, direct runs). DataFusion's decoder rebuilds any node it knows —
//! CSV scans, file sinks, scans of arbitrary paths — so decoding alone would
//! let whoever reaches an executor read or write any file it can. Two
//! checks stand in the way, each enough on its own for the cases it covers:
//!
//! - [`check_plan`]: every node must be one Tarn's planner produces between
//!   lake scans and Tarn's Delta write, every scan a Parquet scan of files
//!   under the lake root, every write a table folder under it, and every
//!   shuffle a job id that cannot name a path.
//! - [`ConfinedStore`]: the object store executors open files through refuses
//!   any path outside the lake root, so a plan that slipped past the first
//!   check still cannot name `/etc` or the state directory.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use ballista_core::execution_plans::{
    RangeShuffleReaderExec, ShuffleReaderExec, ShuffleWriterExec, UnresolvedShuffleExec,
};
use bytes::Bytes;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::ExecutionPlan;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use tarn_common::{ErrorCode, TarnError};
use url::Url;

use crate::write::DeltaWriteExec;

/// Operators DataFusion and Ballista plan between Tarn's scans and writes.
/// Sources and sinks are not here: they are checked one by one below.
const ALLOWED: &[&str] = &[
    // DataFusion
    "AggregateExec",
    "AnalyzeExec",
    "AsyncFuncExec",
    "BoundedWindowAggExec",
    "BufferExec",
    "CoalesceBatchesExec",
    "CoalescePartitionsExec",
    "CooperativeExec",
    "CrossJoinExec",
    "EmptyExec",
    "ExplainExec",
    "ExactSortPushdownExec",
    "FilterExec",
    "GlobalLimitExec",
    "HashJoinExec",
    "InterleaveExec",
    "LazyMemoryExec",
    "LocalLimitExec",
    "NestedLoopJoinExec",
    "OutputRequirementExec",
    "PartialSortExec",
    "PartitionedTopKExec",
    "PiecewiseMergeJoinExec",
    "PlaceholderRowExec",
    "ProjectionExec",
    "RecursiveQueryExec",
    "RepartitionExec",
    "ScalarSubqueryExec",
    "SortExec",
    "SortMergeJoinExec",
    "SortPreservingMergeExec",
    "SymmetricHashJoinExec",
    "UnionExec",
    "UnnestExec",
    "WindowAggExec",
    "WorkTableExec",
    // Ballista's stages and adaptive operators
    "OrderedRangeRepartitionExec",
    "PartitionedBoundedWindowAggExec",
    "PerPartitionFilterExec",
    "PrefixMergeExec",
    "RangeFilterExec",
    "RangeShuffleWriterExec",
    "RuntimeStatsExec",
    "SortShuffleWriterExec",
    "UnorderedRangeRepartitionExec",
];

fn refused(why: impl fmt::Display) -> TarnError {
    TarnError::new(ErrorCode::PlanRefused, format!("plan refused: {why}"))
}

/// Checks that `plan` is one Tarn produces over the lake at `root`.
pub fn check_plan(plan: &Arc<dyn ExecutionPlan>, root: &Url) -> Result<(), TarnError> {
    let lake = LakePrefix::new(root);
    check_node(plan, &lake)
}

fn check_node(plan: &Arc<dyn ExecutionPlan>, lake: &LakePrefix) -> Result<(), TarnError> {
    let name = plan.name();
    // "SortExec(TopK)" and the like: the operator is what precedes the detail.
    let kind = name.split('(').next().unwrap_or(name);
    if let Some(source) = plan.downcast_ref::<DataSourceExec>() {
        check_source(source, lake)?;
    } else if let Some(write) = plan.downcast_ref::<DeltaWriteExec>() {
        let url = &write.spec().url;
        if !lake.contains_url(url) {
            return Err(refused(format!("a write to {url}, outside the lake")));
        }
    } else if let Some(w) = plan.downcast_ref::<ShuffleWriterExec>() {
        check_job_id(w.job_id().as_str())?;
    } else if let Some(r) = plan.downcast_ref::<ShuffleReaderExec>() {
        for loc in r.partition.iter().flatten() {
            check_job_id(loc.partition_id.job_id.as_str())?;
        }
    } else if let Some(r) = plan.downcast_ref::<RangeShuffleReaderExec>() {
        for loc in r.partition.iter().flatten() {
            check_job_id(loc.partition_id.job_id.as_str())?;
        }
    } else if plan.downcast_ref::<UnresolvedShuffleExec>().is_some() {
        // A placeholder the scheduler replaces before a stage runs.
    } else if !ALLOWED.contains(&kind) {
        return Err(refused(format!(
            "{name} is not an operator Tarn plans; executors run only queries and \
             writes over lake tables"
        )));
    }
    for child in plan.children() {
        check_node(child, lake)?;
    }
    Ok(())
}

fn check_source(source: &DataSourceExec, lake: &LakePrefix) -> Result<(), TarnError> {
    let data = source.data_source();
    if data.downcast_ref::<MemorySourceConfig>().is_some() {
        return Ok(());
    }
    let Some(scan) = data.downcast_ref::<FileScanConfig>() else {
        return Err(refused("a data source other than a lake table"));
    };
    let kind = scan.file_source().file_type();
    if kind != "parquet" {
        return Err(refused(format!(
            "a {kind} scan; the lake holds Parquet files of Delta tables only"
        )));
    }
    let store = scan.object_store_url.as_str();
    if !lake.same_store(store) {
        return Err(refused(format!("a scan of {store}, not the lake's store")));
    }
    for file in scan.file_groups.iter().flat_map(|g| g.files().iter()) {
        let path = file.object_meta.location.as_ref();
        if !lake.contains_path(path) {
            return Err(refused(format!("a scan of {path}, outside the lake")));
        }
    }
    Ok(())
}

/// Ballista builds shuffle file paths from job ids: one that is not a
/// plain name could walk out of the work directory.
pub fn check_job_id(job_id: &str) -> Result<(), TarnError> {
    let ok = !job_id.is_empty()
        && job_id.len() <= 128
        && job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(refused(format!("job id {job_id:?} is not a plain name")))
    }
}

/// The lake root as the store it lives in and the path prefix inside it.
#[derive(Debug, Clone)]
struct LakePrefix {
    /// `scheme://authority/` of the root.
    store: String,
    /// The root's path inside the store, without leading or trailing `/`.
    prefix: String,
}

impl LakePrefix {
    fn new(root: &Url) -> Self {
        let mut store = root.clone();
        store.set_path("/");
        store.set_query(None);
        store.set_fragment(None);
        let prefix = Path::from_url_path(root.path())
            .map(|p| p.as_ref().to_string())
            .unwrap_or_else(|_| root.path().trim_matches('/').to_string());
        Self {
            store: store.as_str().to_string(),
            prefix,
        }
    }

    fn same_store(&self, url: &str) -> bool {
        let norm = |s: &str| s.trim_end_matches('/').to_string();
        norm(url) == norm(&self.store)
    }

    /// `path` (as an object store path: no leading `/`) lies under the root.
    fn contains_path(&self, path: &str) -> bool {
        let path = path.trim_start_matches('/');
        let inside = self.prefix.is_empty()
            || path == self.prefix
            || path
                .strip_prefix(&self.prefix)
                .is_some_and(|rest| rest.starts_with('/'));
        inside && !path.split('/').any(|seg| seg == ".." || seg == ".")
    }

    fn contains_url(&self, url: &str) -> bool {
        let Ok(u) = Url::parse(url) else {
            return false;
        };
        let mut store = u.clone();
        store.set_path("/");
        if !self.same_store(store.as_str()) {
            return false;
        }
        // Url::parse has already resolved `.` and `..` segments.
        self.contains_path(u.path())
    }
}

/// An object store that serves only paths under the lake root.
#[derive(Debug)]
pub struct ConfinedStore {
    inner: Arc<dyn ObjectStore>,
    lake: LakePrefix,
}

impl fmt::Display for ConfinedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfinedStore({}{})", self.lake.store, self.lake.prefix)
    }
}

impl ConfinedStore {
    /// Wraps `inner`, the store holding `root`.
    pub fn new(inner: Arc<dyn ObjectStore>, root: &Url) -> Self {
        Self {
            inner,
            lake: LakePrefix::new(root),
        }
    }

    fn check(&self, location: &Path) -> object_store::Result<()> {
        confine(&self.lake, location)
    }
}

/// `location` if it lies under the lake, else a refusal naming it.
fn confine(lake: &LakePrefix, location: &Path) -> object_store::Result<()> {
    if lake.contains_path(location.as_ref()) {
        Ok(())
    } else {
        Err(object_store::Error::PermissionDenied {
            path: location.to_string(),
            source: Box::new(TarnError::new(
                ErrorCode::PathOutsideLake,
                format!("{location} is outside the lake; executors open lake files only"),
            )),
        })
    }
}

#[async_trait]
impl ObjectStore for ConfinedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.check(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let lake = self.lake.clone();
        let checked = locations
            .map(move |loc| {
                let loc = loc?;
                confine(&lake, &loc).map(|()| loc)
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let root = Path::from(self.lake.prefix.as_str());
        let p = prefix.unwrap_or(&root);
        if let Err(e) = self.check(p) {
            return futures::stream::once(async { Err(e) }).boxed();
        }
        self.inner.list(Some(p))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let root = Path::from(self.lake.prefix.as_str());
        let p = prefix.unwrap_or(&root);
        if let Err(e) = self.check(p) {
            return futures::stream::once(async { Err(e) }).boxed();
        }
        self.inner.list_with_offset(Some(p), offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let root = Path::from(self.lake.prefix.as_str());
        let p = prefix.unwrap_or(&root);
        self.check(p)?;
        self.inner.list_with_delimiter(Some(p)).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// Makes `env` open files only through the lake: the lake's own store
/// confined to its root, and a local file system confined the same way
/// (refusing everything when the lake is remote). DataFusion's runtime
/// otherwise serves any local path through `file://`.
pub fn confine_runtime(env: &RuntimeEnv, root: &Url) -> crate::Result<()> {
    let file_base = Url::parse("file:///").expect("a constant URL");
    if root.scheme() == "file" {
        let local: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        env.register_object_store(&file_base, Arc::new(ConfinedStore::new(local, root)));
    } else {
        let (store, _path) = crate::open_store(root)?;
        let mut base = root.clone();
        base.set_path("/");
        env.register_object_store(&base, Arc::new(ConfinedStore::new(Arc::from(store), root)));
        // Nothing local is lake data when the lake is remote.
        let nowhere = Url::parse("file:///nonexistent-lake-root/").expect("a constant URL");
        let local: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        env.register_object_store(&file_base, Arc::new(ConfinedStore::new(local, &nowhere)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[test]
    fn the_lake_prefix_admits_only_paths_below_the_root() {
        let root = Url::parse("file:///srv/lake/").unwrap();
        let lake = LakePrefix::new(&root);
        assert!(lake.contains_path("srv/lake/demo/SigninLogs/part-0.parquet"));
        assert!(!lake.contains_path("srv/lakehouse/x.parquet"));
        assert!(!lake.contains_path("srv/state/gateway.key"));
        assert!(!lake.contains_path("etc/passwd"));
        assert!(!lake.contains_path("srv/lake/../state/gateway.key"));
        assert!(lake.contains_url("file:///srv/lake/demo/New_SPRK"));
        assert!(!lake.contains_url("file:///srv/lake/../state"));
        assert!(!lake.contains_url("file:///tmp/x"));
        assert!(!lake.contains_url("s3://bucket/srv/lake/x"));
        assert!(lake.same_store("file:///"));
        assert!(lake.same_store("file://"));
    }

    #[test]
    fn job_ids_must_be_plain_names() {
        assert!(check_job_id("aB3_x-9").is_ok());
        for bad in ["", "../etc", "a/b", "a\\b", ".."] {
            let e = check_job_id(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::PlanRefused, "{bad}");
        }
    }

    #[tokio::test]
    async fn the_confined_store_refuses_paths_outside_the_lake() {
        let dir = tempfile::tempdir().unwrap();
        let lake_dir = dir.path().join("lake");
        std::fs::create_dir_all(&lake_dir).unwrap();
        std::fs::write(dir.path().join("secret.key"), b"k").unwrap();
        std::fs::write(lake_dir.join("ok.txt"), b"ok").unwrap();
        let root = Url::from_directory_path(&lake_dir).unwrap();
        let store =
            ConfinedStore::new(Arc::new(object_store::local::LocalFileSystem::new()), &root);
        let inside = Path::from_filesystem_path(lake_dir.join("ok.txt")).unwrap();
        let outside = Path::from_filesystem_path(dir.path().join("secret.key")).unwrap();
        assert_eq!(
            store.get(&inside).await.unwrap().bytes().await.unwrap(),
            Bytes::from_static(b"ok")
        );
        let err = store.get(&outside).await.unwrap_err();
        assert!(
            matches!(err, object_store::Error::PermissionDenied { .. }),
            "{err}"
        );
        assert!(store
            .put(
                &Path::from_absolute_path(dir.path().join("planted")).unwrap(),
                "x".into()
            )
            .await
            .is_err());
        assert!(!dir.path().join("planted").exists());
    }
}
