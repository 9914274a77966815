//! Flight SQL bulk ingest (`CommandStatementIngest`, ADBC's `adbc_ingest`,
//! the provider's `save_as_table`).
//!
//! The client's batches are staged as Parquet under the lake's `_staging`
//! folder (which no listing shows), then written into the table like any
//! other write: on the executors, checked against the lake's rules first,
//! ending in one Delta commit. The staged files are removed afterwards,
//! whatever happened.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::CommandStatementIngest;
use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
use arrow_flight::FlightData;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use futures::{Stream, StreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use tarn_common::{ErrorCode, TarnError, CATALOG};
use tarn_lake::rules::WriteMode;
use tarn_lake::table::{LakeFile, LakeTableSpec};
use tarn_lake::LakeTable;

use crate::query::{new_query_id, Queries};
use crate::session::{Planned, Session, Sessions};
use crate::write::WriteRequest;

/// Staged files are cut at about this much Arrow data.
const STAGE_FILE_BYTES: usize = 64 * 1024 * 1024;

/// What the caller asked for, from the write-options header (the
/// provider's `write_options`), else from ADBC's ingest mode.
fn request(cmd: &CommandStatementIngest, header: Option<&str>) -> Result<WriteRequest, TarnError> {
    let invalid = |m: String| {
        TarnError::new(ErrorCode::InvalidArgument, m).with_fix(
            "pass write_options as {'mode': 'append'|'overwrite', 'partitionBy': [column, ...]}",
        )
    };
    let json: Option<serde_json::Value> = match header {
        Some(h) => Some(
            serde_json::from_str(h)
                .map_err(|e| invalid(format!("write options are not JSON: {e}")))?,
        ),
        None if cmd.options.contains_key("mode") || cmd.options.contains_key("partitionBy") => {
            let mut m = serde_json::Map::new();
            if let Some(v) = cmd.options.get("mode") {
                m.insert("mode".into(), v.clone().into());
            }
            if let Some(v) = cmd.options.get("partitionBy") {
                let cols: Vec<serde_json::Value> =
                    v.split(',').map(|c| c.trim().to_string().into()).collect();
                m.insert("partitionBy".into(), cols.into());
            }
            Some(m.into())
        }
        None => None,
    };
    if let Some(v) = json {
        let obj = v
            .as_object()
            .ok_or_else(|| invalid("write options must be a JSON object".into()))?;
        for k in obj.keys() {
            if !["mode", "partitionBy"].contains(&k.as_str()) {
                return Err(invalid(format!(
                    "unknown write option '{k}'; the options are 'mode' and 'partitionBy'"
                )));
            }
        }
        let mode = match obj.get("mode") {
            None | Some(serde_json::Value::Null) => WriteMode::parse(None)?,
            Some(serde_json::Value::String(m)) => WriteMode::parse(Some(m))?,
            Some(other) => WriteMode::parse(Some(&other.to_string()))?,
        };
        let partition_by = match obj.get("partitionBy") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(c)) => vec![c.clone()],
            Some(serde_json::Value::Array(cs)) => cs
                .iter()
                .map(|c| {
                    c.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid("partitionBy lists column names".into()))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("partitionBy lists column names".into())),
        };
        return Ok(WriteRequest {
            mode,
            partition_by,
            create: true,
            existing: true,
        });
    }
    let opts = cmd.table_definition_options.unwrap_or_default();
    let not_exist = TableNotExistOption::try_from(opts.if_not_exist)
        .unwrap_or(TableNotExistOption::Unspecified);
    let exists =
        TableExistsOption::try_from(opts.if_exists).unwrap_or(TableExistsOption::Unspecified);
    Ok(WriteRequest {
        mode: if exists == TableExistsOption::Replace {
            WriteMode::Overwrite
        } else {
            WriteMode::Append
        },
        partition_by: Vec::new(),
        create: not_exist != TableNotExistOption::Fail,
        existing: matches!(
            exists,
            TableExistsOption::Append | TableExistsOption::Replace
        ),
    })
}

/// Ingests the client's batches into `workspace.cmd.table`; returns the
/// rows written.
#[allow(clippy::too_many_arguments)] // each is one part of the Flight request
pub async fn ingest(
    sessions: &Arc<Sessions>,
    queries: &Queries,
    session: &Session,
    workspace: &str,
    cmd: &CommandStatementIngest,
    options_header: Option<&str>,
    run_id: Option<&str>,
    data: impl Stream<Item = Result<FlightData, FlightError>> + Send + 'static,
) -> Result<i64, TarnError> {
    if let Some(c) = cmd.catalog.as_deref().filter(|c| !c.is_empty()) {
        if c != CATALOG {
            return Err(TarnError::new(
                ErrorCode::WorkspaceNotFound,
                format!("catalog '{c}' does not exist; Tarn's only catalog is '{CATALOG}'"),
            ));
        }
    }
    if cmd.temporary {
        return Err(
            TarnError::new(ErrorCode::Unsupported, "temporary tables are not supported")
                .with_fix("ingest into a lake table (<Name>_SPRK)"),
        );
    }
    if cmd.transaction_id.is_some() {
        return Err(TarnError::new(
            ErrorCode::Unsupported,
            "transactions are not supported; every write is its own atomic commit",
        ));
    }
    if cmd.table.is_empty() {
        return Err(TarnError::new(
            ErrorCode::InvalidArgument,
            "the ingest names no table",
        ));
    }
    let req = request(cmd, options_header)?;
    // Cheap refusals before reading any data.
    session.grants.require(
        workspace,
        tarn_common::roles::Role::Contributor,
        "writing a table",
    )?;
    let lake = sessions.lake();
    let stage_id = uuid::Uuid::new_v4().simple().to_string();
    let stage_url = lake
        .root()
        .join(&format!("_staging/{stage_id}/"))
        .map_err(|e| TarnError::new(ErrorCode::Internal, e.to_string()))?;
    // The staging folder is written first: it must not lead out of the lake.
    for rel in ["_staging".to_string(), format!("_staging/{stage_id}")] {
        lake.check_write_path(&rel).map_err(|e| e.to_tarn())?;
    }
    let result = async {
        let staged = stage(&stage_url, data).await?;
        let Some((schema, files)) = staged else {
            return Err(TarnError::new(
                ErrorCode::InvalidArgument,
                "the ingest carried no schema and no rows",
            ));
        };
        let spec = LakeTableSpec {
            workspace: workspace.to_string(),
            name: format!("staged {}", cmd.table),
            url: stage_url.to_string(),
            version: 0,
            file_schema: schema.as_ref().clone(),
            partition_fields: Vec::new(),
            files,
            write: None,
        };
        let scan = LogicalPlanBuilder::scan(
            "ingest",
            provider_as_source(Arc::new(LakeTable::new(spec))),
            None,
        )
        .and_then(|b| b.build())
        .map_err(|e| crate::error::from_datafusion(&e))?;
        let (plan, effect) = crate::write::plan_dataframe_write(
            lake,
            &session.grants,
            workspace,
            &cmd.table,
            scan,
            &req,
        )
        .await?;
        // A client-chosen run id (the provider returns it) names the
        // Ballista job, so the run can be found in the job list.
        let run_id = run_id
            .filter(|r| {
                (8..=80).contains(&r.len())
                    && r.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
            .map(str::to_string)
            .unwrap_or_else(new_query_id);
        let state = sessions.run_state(session, workspace, &run_id);
        let q = queries
            .start_planned(
                session,
                Planned {
                    plan,
                    state,
                    effect,
                },
                run_id.clone(),
                &run_id,
            )
            .await?;
        crate::query::drain_count(q.stream.into_batches()).await
    }
    .await;
    remove_stage(&stage_url).await;
    result
}

/// Writes the client's batches as Parquet files under `url`; `None` if the
/// stream carried nothing at all.
async fn stage(
    url: &url::Url,
    data: impl Stream<Item = Result<FlightData, FlightError>> + Send + 'static,
) -> Result<Option<(SchemaRef, Vec<LakeFile>)>, TarnError> {
    let bad = |e: FlightError| {
        TarnError::new(
            ErrorCode::InvalidArgument,
            format!("cannot read the ingested data: {e}"),
        )
    };
    let (store, root) = store_at(url)?;
    let mut decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(data);
    let mut files = Vec::new();
    let mut schema: Option<SchemaRef> = None;
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_bytes = 0usize;
    loop {
        let next = decoded.next().await.transpose().map_err(bad)?;
        if schema.is_none() {
            schema = decoded
                .schema()
                .cloned()
                .or_else(|| next.as_ref().map(|b| b.schema()));
        }
        let done = next.is_none();
        if let Some(b) = next {
            pending_bytes += b.get_array_memory_size();
            pending.push(b);
        }
        if (done && !pending.is_empty()) || pending_bytes >= STAGE_FILE_BYTES {
            let Some(s) = schema.clone() else { break };
            let file =
                write_parquet(&store, &root, files.len(), &s, std::mem::take(&mut pending)).await?;
            pending_bytes = 0;
            files.push(file);
        }
        if done {
            break;
        }
    }
    Ok(schema.map(|s| (s, files)))
}

async fn write_parquet(
    store: &Arc<dyn ObjectStore>,
    root: &object_store::path::Path,
    n: usize,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<LakeFile, TarnError> {
    let internal = |e: String| {
        TarnError::new(
            ErrorCode::Internal,
            format!("cannot stage ingested data: {e}"),
        )
    };
    let mut rows = 0u64;
    let mut buf = Vec::new();
    {
        let mut w = ArrowWriter::try_new(&mut buf, Arc::clone(schema), None)
            .map_err(|e| internal(e.to_string()))?;
        for b in &batches {
            if b.schema().fields() != schema.fields() {
                return Err(TarnError::new(
                    ErrorCode::InvalidArgument,
                    "the ingested batches do not all have the same columns",
                ));
            }
            rows += b.num_rows() as u64;
            w.write(b).map_err(|e| internal(e.to_string()))?;
        }
        w.close().map_err(|e| internal(e.to_string()))?;
    }
    let name = format!("part-{n:05}.parquet");
    let size = buf.len() as u64;
    store
        .put(&root.clone().join(name.as_str()), buf.into())
        .await
        .map_err(|e| internal(e.to_string()))?;
    Ok(LakeFile {
        path: name,
        size,
        rows: Some(rows),
        partition_values: Vec::new(),
    })
}

fn store_at(url: &url::Url) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path), TarnError> {
    let opts: HashMap<String, String> = std::env::vars()
        .filter_map(|(k, v)| {
            let k = k.to_ascii_lowercase();
            (k.starts_with("aws_") || k.starts_with("azure_") || k.starts_with("google_"))
                .then_some((k, v))
        })
        .collect();
    let (store, path) = object_store::parse_url_opts(url, opts).map_err(|e| {
        TarnError::new(
            ErrorCode::Internal,
            format!("cannot open the lake store: {e}"),
        )
    })?;
    Ok((Arc::from(store), path))
}

async fn remove_stage(url: &url::Url) {
    if url.scheme() == "file" {
        if let Ok(p) = url.to_file_path() {
            let _ = tokio::fs::remove_dir_all(p).await;
        }
        return;
    }
    if let Ok((store, root)) = store_at(url) {
        let locations = store
            .list(Some(&root))
            .map(|r| r.map(|m| m.location))
            .boxed();
        let mut s = store.delete_stream(locations);
        while s.next().await.is_some() {}
    }
}
