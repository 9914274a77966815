//! The lake as DataFusion sees it: one catalog (`tarn`), one schema per
//! workspace, one table per Delta folder.
//!
//! DataFusion asks for schema and table names synchronously, so each
//! workspace keeps a cached listing that [`Workspace::refresh`] renews; the
//! gateway refreshes before every statement and metadata call (one LIST of
//! one folder). Table lookups are async and read the Delta log, caching the
//! table per version.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::{Mutex, RwLock};
use url::Url;

use crate::error::{Error, Result};
use crate::table::LakeTable;

/// A lake root with its object store.
#[derive(Debug)]
pub struct Lake {
    root: Url,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    workspaces: RwLock<BTreeMap<String, Arc<Workspace>>>,
}

impl Lake {
    /// Opens the lake at `root` (see [`crate::parse_root`]).
    pub fn open(root: Url) -> Result<Arc<Self>> {
        let (store, prefix) = crate::open_store(&root)?;
        Ok(Arc::new(Self {
            root,
            store: Arc::from(store),
            prefix,
            workspaces: RwLock::new(BTreeMap::new()),
        }))
    }

    /// The root URL (always ends with `/`).
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// URL of a workspace folder.
    pub fn workspace_url(&self, name: &str) -> Result<Url> {
        validate_name(name)?;
        self.root
            .join(&format!("{name}/"))
            .map_err(|e| Error::InvalidRoot {
                root: self.root.to_string(),
                reason: e.to_string(),
            })
    }

    /// Re-lists the workspaces (the root's sub-folders).
    pub async fn refresh(self: &Arc<Self>) -> Result<Vec<String>> {
        let names = list_dirs(self.store.as_ref(), &self.prefix)
            .await
            .map_err(|source| Error::List {
                location: self.root.to_string(),
                source: Box::new(source),
            })?;
        let mut map = self.workspaces.write();
        map.retain(|k, _| names.contains(k));
        for n in &names {
            if validate_name(n).is_ok() && !map.contains_key(n) {
                map.insert(
                    n.clone(),
                    Arc::new(Workspace {
                        lake: Arc::clone(self),
                        name: n.clone(),
                        tables: RwLock::new(Vec::new()),
                        cache: Mutex::new(HashMap::new()),
                    }),
                );
            }
        }
        Ok(map.keys().cloned().collect())
    }

    /// Writes a file of Tarn's own under the root's `_tarn/` folder (job
    /// run outputs and logs): never a workspace (folders starting with `_`
    /// are not listed), so SQL cannot reach it.
    pub async fn put_system_file(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.system_path(rel)?;
        self.store
            .put(&path, bytes.into())
            .await
            .map(|_| ())
            .map_err(|source| Error::List {
                location: path.to_string(),
                source: Box::new(source),
            })
    }

    /// Reads what [`Lake::put_system_file`] wrote; `None` when absent.
    pub async fn get_system_file(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let path = self.system_path(rel)?;
        let got = match self.store.get(&path).await {
            Ok(g) => g.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => Err(e),
        };
        got.map(|b| Some(b.to_vec())).map_err(|source| Error::List {
            location: path.to_string(),
            source: Box::new(source),
        })
    }

    fn system_path(&self, rel: &str) -> Result<Path> {
        let bad = rel
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
        if bad {
            return Err(Error::OutsideLake {
                what: "a system file".into(),
                path: rel.to_string(),
            });
        }
        Ok(self.prefix.clone().join("_tarn").join(rel))
    }

    /// Workspace names as of the last refresh.
    pub fn workspace_names(&self) -> Vec<String> {
        self.workspaces.read().keys().cloned().collect()
    }

    /// A workspace by exact name, re-listing the root once if unknown.
    pub async fn workspace(self: &Arc<Self>, name: &str) -> Result<Arc<Workspace>> {
        validate_name(name)?;
        if let Some(ws) = self.workspaces.read().get(name) {
            return Ok(Arc::clone(ws));
        }
        self.refresh().await?;
        let ws = self
            .workspaces
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::WorkspaceNotFound(name.to_string()))?;
        self.check_inside(name)?;
        Ok(ws)
    }

    fn cached_workspace(&self, name: &str) -> Option<Arc<Workspace>> {
        self.workspaces.read().get(name).cloned()
    }

    /// For a local lake: refuses `rel` (a folder or file under the root)
    /// when it resolves — through symlinks — to somewhere outside the root.
    pub fn check_inside(&self, rel: &str) -> Result<()> {
        if self.root.scheme() != "file" {
            return Ok(());
        }
        let Ok(root) = self.root.to_file_path() else {
            return Ok(());
        };
        let Ok(real_root) = std::fs::canonicalize(&root) else {
            return Ok(());
        };
        let target = root.join(rel);
        match std::fs::canonicalize(&target) {
            Ok(real) if !real.starts_with(&real_root) => Err(Error::OutsideLake {
                what: format!("'{rel}'"),
                path: real.display().to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// For a local lake: refuses writing at `rel` (a folder or file under
    /// the root, which need not exist yet) when its nearest existing
    /// ancestor resolves — through symlinks — outside the root, so a write
    /// never follows a link planted in the lake. Remote lakes have no links.
    pub fn check_write_path(&self, rel: &str) -> Result<()> {
        let Some((root, real_root)) = self.local_root()? else {
            return Ok(());
        };
        resolve_inside(&real_root, &root.join(rel), rel)
    }

    /// Checks everything a write to `workspace.table` (transaction `txn`)
    /// creates or writes into: the table folder, its log, its manifest
    /// folders and every link already inside the table folder (a planted
    /// partition folder, say). Run before anything is written.
    pub fn check_write_target(&self, workspace: &str, table: &str, txn: &str) -> Result<()> {
        validate_name(workspace)?;
        validate_name(table)?;
        let base = format!("{workspace}/{table}");
        for rel in [
            base.clone(),
            format!("{base}/_delta_log"),
            format!("{base}/{}", crate::write::TXN_DIR),
            format!("{base}/{}/{txn}", crate::write::TXN_DIR),
        ] {
            self.check_write_path(&rel)?;
        }
        let Some((root, real_root)) = self.local_root()? else {
            return Ok(());
        };
        let mut pending = vec![root.join(&base)];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(kind) = e.file_type() else { continue };
                let path = e.path();
                if kind.is_symlink() {
                    let what = path
                        .strip_prefix(&root)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| path.display().to_string());
                    resolve_inside(&real_root, &path, &what)?;
                } else if kind.is_dir() {
                    pending.push(path);
                }
            }
        }
        Ok(())
    }

    /// The local root and its canonical form; `None` for remote lakes.
    fn local_root(&self) -> Result<Option<(std::path::PathBuf, std::path::PathBuf)>> {
        if self.root.scheme() != "file" {
            return Ok(None);
        }
        let Ok(root) = self.root.to_file_path() else {
            return Ok(None);
        };
        let real_root = std::fs::canonicalize(&root).map_err(|e| Error::InvalidRoot {
            root: self.root.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some((root, real_root)))
    }

    /// URL of a table folder (which need not exist yet).
    pub fn table_url(&self, workspace: &str, table: &str) -> Result<Url> {
        validate_name(workspace)?;
        validate_name(table)?;
        self.root
            .join(&format!("{workspace}/{table}/"))
            .map_err(|e| Error::InvalidRoot {
                root: self.root.to_string(),
                reason: e.to_string(),
            })
    }

    /// Deletes a table: first its log (so it stops being a table at
    /// once), then its files. On a local lake the folder is first moved
    /// aside in one rename, so readers never see a half-deleted table.
    pub async fn delete_table(&self, workspace: &str, table: &str) -> Result<()> {
        validate_name(workspace)?;
        validate_name(table)?;
        let io = |e: std::io::Error, what: &str| Error::List {
            location: format!("{}{workspace}/{table}", self.root),
            source: Box::new(object_store::Error::Generic {
                store: "lake",
                source: format!("{what}: {e}").into(),
            }),
        };
        if self.root.scheme() == "file" {
            if let Ok(root) = self.root.to_file_path() {
                let dir = root.join(workspace).join(table);
                let trash = root
                    .join(workspace)
                    .join(format!("_deleted_{table}_{}", uuid_like()));
                std::fs::rename(&dir, &trash).map_err(|e| io(e, "cannot move the table aside"))?;
                std::fs::remove_dir_all(&trash).map_err(|e| io(e, "cannot remove the table"))?;
                if let Some(ws) = self.cached_workspace(workspace) {
                    ws.forget(table);
                }
                return Ok(());
            }
        }
        let base = self.prefix.clone().join(workspace).join(table);
        let store = self.store.as_ref();
        for sub in [Some("_delta_log"), None] {
            let p = match sub {
                Some(s) => base.clone().join(s),
                None => base.clone(),
            };
            let locations = store.list(Some(&p)).map_ok(|m| m.location).boxed();
            let mut deleted = store.delete_stream(locations);
            while let Some(r) = deleted.next().await {
                r.map_err(|source| Error::List {
                    location: p.to_string(),
                    source: Box::new(source),
                })?;
            }
        }
        if let Some(ws) = self.cached_workspace(workspace) {
            ws.forget(table);
        }
        Ok(())
    }
}

/// Refuses `target` when its nearest existing ancestor (itself, if it
/// exists) resolves outside `real_root`, or is a link that resolves nowhere
/// (writing through it could create its target, wherever that is).
pub fn resolve_inside(
    real_root: &std::path::Path,
    target: &std::path::Path,
    what: &str,
) -> Result<()> {
    let mut p = target.to_path_buf();
    loop {
        if std::fs::symlink_metadata(&p).is_ok() {
            let real = std::fs::canonicalize(&p).map_err(|_| Error::OutsideLake {
                what: format!("'{what}'"),
                path: format!("{} (a link that resolves nowhere)", p.display()),
            })?;
            if !real.starts_with(real_root) {
                return Err(Error::OutsideLake {
                    what: format!("'{what}'"),
                    path: real.display().to_string(),
                });
            }
            return Ok(());
        }
        if !p.pop() {
            return Ok(());
        }
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}{}", std::process::id())
}

/// Workspace names become folder names: keep them boring.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidWorkspaceName(name.to_string()))
    }
}

async fn list_dirs(store: &dyn ObjectStore, prefix: &Path) -> object_store::Result<Vec<String>> {
    let listing = store.list_with_delimiter(Some(prefix)).await?;
    let mut names: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .filter(|n| !n.starts_with('_') && !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// A workspace: a folder of Delta tables.
#[derive(Debug)]
pub struct Workspace {
    lake: Arc<Lake>,
    name: String,
    tables: RwLock<Vec<String>>,
    cache: Mutex<HashMap<String, (deltalake::DeltaTable, Arc<LakeTable>)>>,
}

impl Workspace {
    /// The workspace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn prefix(&self) -> Path {
        self.lake.prefix.clone().join(self.name.as_str())
    }

    /// Re-lists the workspace's tables (folders holding a `_delta_log`).
    pub async fn refresh(&self) -> Result<Vec<String>> {
        let store = self.lake.store.as_ref();
        let dirs = list_dirs(store, &self.prefix())
            .await
            .map_err(|source| Error::List {
                location: format!("{}{}", self.lake.root, self.name),
                source: Box::new(source),
            })?;
        // A folder already known as a table is not probed again: a lake of
        // hundreds of tables made every new table name (each CTAS) list
        // every table's log.
        let known: std::collections::HashSet<String> = self.tables.read().iter().cloned().collect();
        let mut tables = Vec::with_capacity(dirs.len());
        for d in dirs {
            if known.contains(&d) {
                tables.push(d);
                continue;
            }
            let log = self.prefix().clone().join(d.as_str()).join("_delta_log");
            let mut entries = store.list(Some(&log));
            if entries.try_next().await.ok().flatten().is_some() {
                tables.push(d);
            }
        }
        *self.tables.write() = tables.clone();
        Ok(tables)
    }

    /// Drops a deleted table from the listing and the cache.
    pub fn forget(&self, table: &str) {
        self.tables.write().retain(|t| t != table);
        self.cache.lock().remove(table);
    }

    /// Table names as of the last refresh.
    pub fn cached_table_names(&self) -> Vec<String> {
        self.tables.read().clone()
    }

    /// Resolves a table name as typed: exact match first, then the one
    /// table whose name matches ignoring case.
    pub fn resolve_name(&self, typed: &str) -> Option<String> {
        let tables = self.tables.read();
        if tables.iter().any(|t| t == typed) {
            return Some(typed.to_string());
        }
        let mut matches = tables.iter().filter(|t| t.eq_ignore_ascii_case(typed));
        match (matches.next(), matches.next()) {
            (Some(t), None) => Some(t.clone()),
            _ => None,
        }
    }

    /// The latest version of a table, as a DataFusion table.
    pub async fn table(&self, typed: &str) -> Result<Arc<LakeTable>> {
        let name = match self.resolve_name(typed) {
            Some(n) => n,
            None => {
                self.refresh().await?;
                self.resolve_name(typed)
                    .ok_or_else(|| Error::TableNotFound {
                        workspace: self.name.clone(),
                        table: typed.to_string(),
                    })?
            }
        };
        let full = format!("{}.{}", self.name, name);
        self.lake.check_inside(&format!("{}/{}", self.name, name))?;
        let cached = self
            .cache
            .lock()
            .get(&name)
            .map(|(t, l)| (t.clone(), Arc::clone(l)));
        let (mut dt, previous) = match cached {
            Some((dt, lt)) => (dt, Some(lt)),
            None => {
                let url = self
                    .lake
                    .root
                    .join(&format!("{}/{}/", self.name, name))
                    .map_err(|e| Error::InvalidRoot {
                        root: self.lake.root.to_string(),
                        reason: e.to_string(),
                    })?;
                let dt = deltalake::open_table(url)
                    .await
                    .map_err(|source| match source {
                        deltalake::DeltaTableError::NotATable(_) => Error::TableNotFound {
                            workspace: self.name.clone(),
                            table: typed.to_string(),
                        },
                        source => Error::OpenTable {
                            table: full.clone(),
                            source: Box::new(source),
                        },
                    })?;
                (dt, None)
            }
        };
        if previous.is_some() {
            // One LIST of the log after the version we hold: cheap, and it
            // keeps every statement on the newest committed version.
            dt.update_incremental(None)
                .await
                .map_err(|source| Error::OpenTable {
                    table: full.clone(),
                    source: Box::new(source),
                })?;
        }
        let version = dt.version().map(|v| v as i64).unwrap_or(-1);
        if let Some(prev) = previous {
            if prev.spec().version == version {
                return Ok(prev);
            }
        }
        let table = Arc::new(LakeTable::load(&self.name, &name, &dt).await?);
        for f in &table.spec().files {
            self.lake
                .check_inside(&format!("{}/{}/{}", self.name, name, f.path))?;
        }
        self.cache.lock().insert(name, (dt, Arc::clone(&table)));
        Ok(table)
    }
}

/// Which workspaces a catalog shows.
pub type Visible = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The `tarn` catalog over a lake, showing the workspaces its caller may see.
pub struct LakeCatalog {
    lake: Arc<Lake>,
    visible: Visible,
}

impl std::fmt::Debug for LakeCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeCatalog")
            .field("lake", &self.lake.root)
            .finish()
    }
}

impl LakeCatalog {
    /// A catalog over every workspace of `lake`.
    pub fn new(lake: Arc<Lake>) -> Self {
        Self {
            lake,
            visible: Arc::new(|_| true),
        }
    }

    /// A catalog showing only the workspaces `visible` accepts: the others
    /// are absent from listings, `information_schema` and name resolution.
    pub fn with_visible(lake: Arc<Lake>, visible: Visible) -> Self {
        Self { lake, visible }
    }
}

impl CatalogProvider for LakeCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.lake
            .workspace_names()
            .into_iter()
            .filter(|w| (self.visible)(w))
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if !(self.visible)(name) {
            return None;
        }
        self.lake
            .cached_workspace(name)
            .map(|w| Arc::new(WorkspaceSchema(w)) as Arc<dyn SchemaProvider>)
    }
}

/// A workspace as a DataFusion schema.
#[derive(Debug)]
pub struct WorkspaceSchema(pub Arc<Workspace>);

#[async_trait]
impl SchemaProvider for WorkspaceSchema {
    fn table_names(&self) -> Vec<String> {
        self.0.cached_table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.0.table(name).await {
            Ok(t) => Ok(Some(t as Arc<dyn TableProvider>)),
            Err(Error::TableNotFound { .. }) => Ok(None),
            // One unreadable table (a corrupt log, a link out of the lake)
            // must not break information_schema for the whole workspace:
            // it is left out here. A statement naming it is checked before
            // planning and gets the table's own coded error.
            Err(e) => {
                tracing::warn!(workspace = %self.0.name, table = %name, error = %e,
                    "table left out of the listing: it cannot be read");
                Ok(None)
            }
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.0.resolve_name(name).is_some()
    }
}
