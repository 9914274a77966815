//! The Flight SQL mode: each statement sent to a real `tarn standalone`
//! as a client sends it.

use std::path::PathBuf;

use arrow_flight::sql::client::FlightSqlServiceClient;
use sqllogictest::DBOutput;

use super::format::ColumnType;
use tonic::transport::Channel;

use super::{add_soc_workspace, format, SltError};
use tarn_tests::copy_dir;

/// A lake of this test's own holding a copy of the shared demo workspace
/// (made by `tarn demo`) and the `soc` workspace: the files write tables,
/// and the shared lake is read-only.
pub fn private_demo_lake() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    copy_dir(&tarn_tests::demo_lake()?.join("demo"), &lake.join("demo"))?;
    add_soc_workspace(&lake)?;
    Ok((dir, lake))
}

/// One connection: a Flight SQL session of its own, opened by a handshake
/// with a token carrying the file's roles, closed at the end of the file.
pub struct FlightSql(FlightSqlServiceClient<Channel>);

fn from_status(s: tonic::Status) -> SltError {
    SltError::coded(tarn_tests::error_code(&s).as_deref(), s.message())
}

impl FlightSql {
    pub async fn connect(addr: String, token: String) -> Result<Self, SltError> {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| SltError(format!("bad address {addr}: {e}")))?
            .connect()
            .await
            .map_err(|e| SltError(format!("cannot reach the gateway at {addr}: {e}")))?;
        let mut client = FlightSqlServiceClient::new(channel);
        client
            .handshake("slt", &token)
            .await
            .map_err(|e| from_status(tarn_tests::to_status(e)))?;
        Ok(Self(client))
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for FlightSql {
    type Error = SltError;
    type ColumnType = ColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<ColumnType>, SltError> {
        let c = &mut self.0;
        super::within_limit(async {
            let info = c
                .execute(sql.to_string(), None)
                .await
                .map_err(|e| from_status(tarn_tests::to_status(e)))?;
            let schema = info
                .clone()
                .try_decode_schema()
                .map_err(|e| SltError(format!("the FlightInfo's schema does not decode: {e}")))?;
            let batches = tarn_tests::fetch(c, info).await.map_err(from_status)?;
            format::output(&schema, &batches).map_err(SltError)
        })
        .await
    }

    async fn shutdown(&mut self) {
        // Ends the handshake's session and gives its vCores back.
        let action = arrow_flight::Action::new("CloseSession", Vec::<u8>::new());
        if let Ok(results) = self.0.do_action(action).await {
            let _ = futures::TryStreamExt::try_collect::<Vec<_>>(results).await;
        }
    }

    fn engine_name(&self) -> &str {
        "tarn-flight-sql"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}
