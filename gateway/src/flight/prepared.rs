//! Prepared statements: created with their result and parameter schemas,
//! bound to one row of parameters at a time, and held per session (up to
//! a cap) until closed or until their session ends.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    CommandPreparedStatementQuery, DoPutPreparedStatementResult,
};
use arrow_flight::{IpcMessage, SchemaAsIpc};
use futures::{StreamExt, TryStreamExt};
use tarn_common::{ErrorCode, TarnError};
use tonic::{Request, Status};
use tracing::{info_span, Instrument};

use super::{Prepared, TarnFlightSql};
use crate::error::from_datafusion;
use crate::session::{Language, Session};

impl TarnFlightSql {
    /// A prepared statement of `session`; another session's handles are
    /// indistinguishable from unknown ones.
    pub(super) fn prepared(
        &self,
        handle: &[u8],
        session: &Session,
    ) -> Result<(String, Arc<Prepared>), Status> {
        let handle = String::from_utf8_lossy(handle).to_string();
        match self.prepared.get(&handle) {
            Some(p) if p.session_id == session.id => Ok((handle, Arc::clone(&p))),
            _ => Err(TarnError::new(
                ErrorCode::PreparedStatementNotFound,
                format!("prepared statement '{handle}' does not exist or was closed"),
            )
            .into()),
        }
    }

    /// Creates a prepared statement: plans it to learn its result and
    /// parameter schemas, and holds it for the session.
    pub(super) async fn create_prepared(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let language = super::sessions::language_of(request.metadata())?;
        let session = self.session(request.metadata()).await?;
        let workspace = self.workspace(&session, request.metadata());
        let planned = self
            .sessions
            .plan_in(
                &session,
                &session.grants,
                &workspace,
                &query.query,
                language,
                "prepare",
            )
            .instrument(info_span!("prepare", user = %session.user))
            .await?;
        let dataset_schema = planned.plan.schema().as_arrow().clone();
        let mut params: Vec<(String, Option<DataType>)> = planned
            .plan
            .get_parameter_types()
            .map_err(|e| Status::from(from_datafusion(&e)))?
            .into_iter()
            .collect();
        params.sort_by_key(|(name, _)| {
            name.trim_start_matches('$')
                .parse::<u32>()
                .unwrap_or(u32::MAX)
        });
        let parameter_schema = Schema::new(
            params
                .into_iter()
                .map(|(name, dt)| Field::new(name, dt.unwrap_or(DataType::Null), true))
                .collect::<Vec<_>>(),
        );
        let held = self
            .prepared
            .iter()
            .filter(|p| p.session_id == session.id)
            .count();
        if held >= self.max_prepared {
            return Err(TarnError::new(
                ErrorCode::TooManyPreparedStatements,
                format!(
                    "this session already holds {held} prepared statements, the most allowed \
                     (max_prepared_statements = {})",
                    self.max_prepared
                ),
            )
            .into());
        }
        let handle = uuid::Uuid::new_v4().simple().to_string();
        self.prepared.insert(
            handle.clone(),
            Arc::new(Prepared {
                session_id: session.id.clone(),
                sql: query.query,
                workspace,
                language,
                params: parking_lot::Mutex::new(None),
                peer: request.remote_addr(),
            }),
        );
        let opts = arrow::ipc::writer::IpcWriteOptions::default();
        let encode = |s: &Schema| -> Result<bytes::Bytes, Status> {
            let msg: IpcMessage =
                SchemaAsIpc::new(s, &opts)
                    .try_into()
                    .map_err(|e: arrow::error::ArrowError| {
                        TarnError::internal(format!(
                            "cannot encode a prepared statement's schema: {e}"
                        ))
                    })?;
            Ok(msg.0)
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema: encode(&dataset_schema)?,
            parameter_schema: encode(&parameter_schema)?,
        })
    }

    /// Binds the row of parameters a client sends to a prepared statement.
    pub(super) async fn bind_prepared(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let session = self.session(request.metadata()).await?;
        let (handle, p) = self.prepared(&query.prepared_statement_handle, &session)?;
        let stream = request.into_inner().map_err(FlightError::from);
        let mut decoded =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream);
        let bad = |msg: String| Status::from(TarnError::new(ErrorCode::InvalidArgument, msg));
        let mut batch: Option<RecordBatch> = None;
        // One row of parameters per execution: stop reading as soon as a
        // client sends more, rather than buffer whatever it streams.
        while let Some(next) = decoded.next().await {
            let next = next.map_err(|e| bad(format!("cannot read bound parameters: {e}")))?;
            if p.language == Language::Kql && next.num_columns() > 0 {
                return Err(TarnError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "this prepared statement is KQL, which takes no bound parameters \
                         ({} {} bound)",
                        next.num_columns(),
                        if next.num_columns() == 1 {
                            "parameter was"
                        } else {
                            "parameters were"
                        }
                    ),
                )
                .with_fix(
                    "write the values into the KQL query (a `let name = value;` before it), \
                     or prepare it as SQL with `?` or `$1` placeholders",
                )
                .into());
            }
            if next.num_rows() == 0 {
                continue;
            }
            if batch.is_some() || next.num_rows() > 1 {
                return Err(TarnError::new(
                    ErrorCode::InvalidArgument,
                    "more than one row of parameters was bound; a query takes one",
                )
                .with_fix("bind a single row of parameters per execution")
                .into());
            }
            batch = Some(next);
        }
        *p.params.lock() = batch;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into_bytes().into()),
        })
    }
}
