//! The Tarn lake: a root URL holding one folder per workspace, each a set of
//! Delta tables.
//!
//! Planning reads a table's Delta log once per version and pins the query to
//! that snapshot: the plan carries the exact Parquet files (with sizes,
//! partition values and row counts) of the version it read, so the
//! coordinator and executors never list the store or re-read the log, and a
//! concurrent commit can never give a query a mix of two versions.

pub mod catalog;
pub mod cloud;
pub mod codec;
pub mod error;
pub mod guard;
pub mod leaves;
pub mod rules;
pub mod series;
pub mod table;
pub mod write;

pub use catalog::{Lake, LakeCatalog, Workspace};
pub use codec::LakeLogicalCodec;
pub use error::{Error, Result};
pub use table::LakeTable;
pub use write::LakePhysicalCodec;

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use url::Url;

/// Parses a lake root given as a URL (`file:///…`, `s3://…`, `az://…`,
/// `gs://…`) or a local directory (created if missing, made absolute).
pub fn parse_root(root: &str) -> Result<Url> {
    cloud::register();
    if root.contains("://") {
        let mut url = Url::parse(root).map_err(|e| Error::InvalidRoot {
            root: root.to_string(),
            reason: e.to_string(),
        })?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|_| Error::InvalidRoot {
                root: root.to_string(),
                reason: "not a local path".into(),
            })?;
            std::fs::create_dir_all(&path).map_err(|e| Error::InvalidRoot {
                root: root.to_string(),
                reason: e.to_string(),
            })?;
        }
        return Ok(url);
    }
    let path = std::path::Path::new(root);
    std::fs::create_dir_all(path).map_err(|e| Error::InvalidRoot {
        root: root.to_string(),
        reason: e.to_string(),
    })?;
    let abs = std::fs::canonicalize(path).map_err(|e| Error::InvalidRoot {
        root: root.to_string(),
        reason: e.to_string(),
    })?;
    Url::from_directory_path(&abs).map_err(|_| Error::InvalidRoot {
        root: root.to_string(),
        reason: "cannot express as a file URL".into(),
    })
}

/// The object store serving `root` and the path of `root` inside it.
/// Credentials come from the usual `AWS_*`, `AZURE_*` and `GOOGLE_*`
/// environment variables (see [`cloud`]).
pub(crate) fn open_store(
    root: &Url,
) -> Result<(Box<dyn object_store::ObjectStore>, object_store::path::Path)> {
    object_store::parse_url_opts(root, cloud::options(root, &Default::default())).map_err(|e| {
        Error::ObjectStore {
            root: root.to_string(),
            source: Box::new(e),
        }
    })
}

/// The Ballista job name of a session's job. Gateways name jobs
/// `query@lease` (the query id every role logs, and the lease its tasks
/// run within); executors and the coordinator read it back from here.
pub fn job_name(config: &datafusion::prelude::SessionConfig) -> Option<String> {
    config
        .options()
        .entries()
        .into_iter()
        .find(|e| e.key == ballista_core::config::BALLISTA_JOB_NAME)
        .and_then(|e| e.value)
}

/// Registers the object store serving `root` in `env`, so executors can read
/// the Parquet files a plan names. Local roots need nothing: DataFusion's
/// runtime always has the local file system.
pub fn register_object_store(env: &RuntimeEnv, root: &Url) -> Result<()> {
    if root.scheme() == "file" {
        return Ok(());
    }
    let (store, _path) = open_store(root)?;
    let mut base = root.clone();
    base.set_path("/");
    env.register_object_store(&base, Arc::from(store));
    Ok(())
}
