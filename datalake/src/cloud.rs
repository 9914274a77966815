//! Lakes on object storage: Azure Blob Storage and ADLS Gen2 (`az://`,
//! `abfs://`, `abfss://`, `adl://`, `azure://`) and S3 (`s3://`, `s3a://`).
//!
//! deltalake finds a table's object store and log store by the URL's
//! scheme in two registries. They are filled here with `object_store`'s own
//! Azure and S3 clients, which the engine already carries for reading
//! Parquet, instead of deltalake's cloud crates (whose AWS SDK would double
//! the build). Credentials come from the environment only (`AZURE_*`,
//! `AWS_*`; the chart's Secret sets them), never from SQL.
//!
//! Commits stay atomic: Delta's log store writes each log entry with
//! put-if-absent, which Azure supports natively and S3 through conditional
//! writes (`If-None-Match: *`, turned on here unless `AWS_CONDITIONAL_PUT`
//! says otherwise), so of two writers racing for one version exactly one
//! wins and the other retries or fails with its conflict.

use std::collections::HashMap;
use std::sync::{Arc, Once};

use deltalake::logstore::{
    default_logstore, logstore_factories, object_store_factories, LogStore, LogStoreFactory,
    ObjectStoreFactory, ObjectStoreRef, StorageConfig,
};
use deltalake::{DeltaResult, DeltaTableError};
use object_store::path::Path;
use url::Url;

/// The schemes served here.
pub const SCHEMES: &[&str] = &["az", "abfs", "abfss", "adl", "azure", "s3", "s3a"];

/// Registers the object-store lakes with deltalake (once per process).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in SCHEMES {
            let Ok(url) = Url::parse(&format!("{scheme}://")) else {
                continue;
            };
            object_store_factories().insert(url.clone(), Arc::new(CloudStores));
            logstore_factories().insert(url, Arc::new(CloudLogs));
        }
    });
}

/// The store options: the environment's `AWS_*`, `AZURE_*` and `GOOGLE_*`
/// variables (lower-cased, as `object_store` names its keys), then
/// `overrides`; S3 commits use conditional writes unless told otherwise.
pub(crate) fn options(root: &Url, overrides: &HashMap<String, String>) -> HashMap<String, String> {
    let mut opts: HashMap<String, String> = std::env::vars()
        .filter_map(|(k, v)| {
            let k = k.to_ascii_lowercase();
            (k.starts_with("aws_") || k.starts_with("azure_") || k.starts_with("google_"))
                .then_some((k, v))
        })
        .collect();
    opts.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
    );
    if matches!(root.scheme(), "s3" | "s3a") {
        opts.entry("aws_conditional_put".into())
            .or_insert_with(|| "etag".into());
    }
    opts
}

struct CloudStores;

impl ObjectStoreFactory for CloudStores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = object_store::parse_url_opts(url, options(url, &config.raw))
            .map_err(DeltaTableError::from)?;
        Ok((Arc::from(store), path))
    }
}

struct CloudLogs;

impl LogStoreFactory for CloudLogs {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_commits_are_conditional_unless_told_otherwise() {
        let s3 = Url::parse("s3://bucket/lake/").unwrap();
        assert_eq!(options(&s3, &HashMap::new())["aws_conditional_put"], "etag");
        let mine = HashMap::from([("AWS_CONDITIONAL_PUT".to_string(), "disabled".to_string())]);
        assert_eq!(options(&s3, &mine)["aws_conditional_put"], "disabled");
        let az = Url::parse("az://container/lake/").unwrap();
        assert!(!options(&az, &HashMap::new()).contains_key("aws_conditional_put"));
    }

    #[test]
    fn every_scheme_finds_a_table_store() {
        register();
        for scheme in SCHEMES {
            let url = Url::parse(&format!("{scheme}://")).unwrap();
            assert!(object_store_factories().contains_key(&url), "{scheme}");
            assert!(logstore_factories().contains_key(&url), "{scheme}");
        }
    }
}
