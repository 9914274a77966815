//! The in-process mode: the gateway's planning over a demo lake of this
//! test's own, run by DataFusion in this process.

use std::sync::Arc;

use sqllogictest::DBOutput;

use super::format::ColumnType;
use tarn_common::roles::Grants;
use tarn_gateway::local::LocalSession;
use tarn_lake::Lake;

use super::{format, SltError};

/// The partitions a session plans with: a default (small) cluster
/// session's vCores.
const PARTITIONS: usize = 2;

/// A demo lake generated for this run (as `tarn demo` generates one), with
/// the `soc` workspace, opened as the gateway opens its lake.
pub struct DemoLake {
    pub lake: Arc<Lake>,
    _dir: tempfile::TempDir,
}

pub async fn demo_lake() -> anyhow::Result<DemoLake> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("lake");
    let root = tarn_lake::parse_root(&path.to_string_lossy())?;
    tarn_demo::generate(
        &root.join("demo/")?,
        &Default::default(),
        &tarn_demo::DemoOptions::default(),
    )
    .await?;
    super::add_soc_workspace(&path)?;
    Ok(DemoLake {
        lake: Lake::open(root)?,
        _dir: dir,
    })
}

/// One connection: a session of its own.
pub struct InProcess(LocalSession);

impl InProcess {
    pub fn new(lake: Arc<Lake>, grants: Grants) -> Result<Self, SltError> {
        LocalSession::new(lake, "slt", grants, "demo", PARTITIONS)
            .map(Self)
            .map_err(|e| SltError::coded(Some(&e.code.number().to_string()), &e.to_string()))
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for InProcess {
    type Error = SltError;
    type ColumnType = ColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<ColumnType>, SltError> {
        super::within_limit(async {
            let (schema, batches) =
                self.0.run(sql).await.map_err(|e| {
                    SltError::coded(Some(&e.code.number().to_string()), &e.to_string())
                })?;
            format::output(&schema, &batches).map_err(SltError)
        })
        .await
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tarn-in-process"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}
