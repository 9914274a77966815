//! The embedded backend: one redb file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::{Error, Op, Result, StateStore};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// A redb file holding the coordinator's state.
#[derive(Clone)]
pub struct EmbeddedStore {
    path: PathBuf,
    db: Arc<Database>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store at `path`; its parent folder is
    /// created too. Fails if another process holds the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let err = |message: String| Error::Embedded {
            path: path.display().to_string(),
            message,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| err(format!("cannot create {}: {e}", parent.display())))?;
        }
        let db = Database::create(&path).map_err(|e| {
            err(format!(
                "{e} (is another coordinator using this state directory?)"
            ))
        })?;
        // Create the table up front so reads of a new store see it empty.
        let tx = db.begin_write().map_err(|e| err(e.to_string()))?;
        tx.open_table(KV).map_err(|e| err(e.to_string()))?;
        tx.commit().map_err(|e| err(e.to_string()))?;
        Ok(Self {
            path,
            db: Arc::new(db),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Embedded {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl StateStore for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn load(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let db = Arc::clone(&self.db);
        let prefix = prefix.to_string();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(|e| this.err(e))?;
            let table = tx.open_table(KV).map_err(|e| this.err(e))?;
            let mut out = Vec::new();
            for entry in table.range(prefix.as_str()..).map_err(|e| this.err(e))? {
                let (k, v) = entry.map_err(|e| this.err(e))?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
        .map_err(|e| self.err(e))?
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<()> {
        let db = Arc::clone(&self.db);
        let this = self.clone();
        // redb commits with fsync (Durability::Immediate by default), which
        // blocks: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(|e| this.err(e))?;
            {
                let mut table = tx.open_table(KV).map_err(|e| this.err(e))?;
                for op in &ops {
                    match op {
                        Op::Put(k, v) => {
                            table
                                .insert(k.as_str(), v.as_slice())
                                .map_err(|e| this.err(e))?;
                        }
                        Op::Delete(k) => {
                            table.remove(k.as_str()).map_err(|e| this.err(e))?;
                        }
                    }
                }
            }
            tx.commit().map_err(|e| this.err(e))
        })
        .await
        .map_err(|e| self.err(e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_survive_reopen_and_prefixes_do_not_leak() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("tarn.redb");
        {
            let s = EmbeddedStore::open(&path).unwrap();
            s.commit(vec![
                Op::Put("leases/a".into(), b"1".to_vec()),
                Op::Put("leases/b".into(), b"2".to_vec()),
                Op::Put("runs/x".into(), b"3".to_vec()),
            ])
            .await
            .unwrap();
            s.commit(vec![Op::Delete("leases/a".into())]).await.unwrap();
        }
        let s = EmbeddedStore::open(&path).unwrap();
        let leases = s.load("leases/").await.unwrap();
        assert_eq!(leases, vec![("leases/b".to_string(), b"2".to_vec())]);
        assert_eq!(s.load("runs/").await.unwrap().len(), 1);
        assert_eq!(s.load("").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tarn.redb");
        let _first = EmbeddedStore::open(&path).unwrap();
        let second = EmbeddedStore::open(&path).unwrap_err().to_string();
        assert!(second.contains("another coordinator"), "{second}");
    }
}
