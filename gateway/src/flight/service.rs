//! The Flight SQL service as arrow-flight dispatches to it. Each call
//! finds its session and hands the work to the statement, prepared
//! statement or metadata code; cancels and CloseSession are answered here.

use std::pin::Pin;

use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, CommandGetCatalogs,
    CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tarn_common::{ErrorCode, TarnError, CATALOG};
use tonic::{Request, Response, Status, Streaming};
use tracing::{info_span, Instrument};

use super::metadata::tables_builder;
use super::sessions::{language_of, lease_wish, pass_of, session_id_of};
use super::{StatementTicket, TarnFlightSql, WRITE_OPTIONS_HEADER};
use crate::query::drain_count;
use crate::query::new_query_id;

#[tonic::async_trait]
impl FlightSqlService for TarnFlightSql {
    type FlightService = TarnFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        // Basic credentials (the password a token) or a bearer token open
        // a session; its id is the bearer the client sends from then on.
        // Dev mode also takes any user name, or none.
        // A client reconnecting may resend its old session id; that names
        // no one, so it counts as no credentials.
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .filter(|h| session_id_of(h).is_none());
        // A kernel's credential already names its session: it stays the
        // bearer (the session id would let the kernel close its session).
        let token = match header.and_then(pass_of) {
            Some(pass) => {
                self.sessions.by_pass(pass)?;
                pass.to_string()
            }
            None => {
                let who = self.auth.identify(header, None)?;
                let session = self
                    .sessions
                    .open(&who, &lease_wish(request.metadata())?)
                    .await?;
                session.id.clone()
            }
        };
        let resp = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(futures::stream::once(async { Ok(resp) })));
        if let Ok(v) = format!("Bearer {token}").parse() {
            response.metadata_mut().insert("authorization", v);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let language = language_of(request.metadata())?;
        let session = self.session(request.metadata()).await?;
        let workspace = self.workspace(&session, request.metadata());
        let t = StatementTicket {
            query_id: new_query_id(),
            sql: query.query,
            workspace,
            prepared: None,
            language: language.into(),
        };
        let span =
            info_span!("get_flight_info_statement", query_id = %t.query_id, user = %session.user);
        self.statement_info(&session, t, None, request.into_inner())
            .instrument(span)
            .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let (handle, p) = self.prepared(&cmd.prepared_statement_handle, &session)?;
        let params = p.params.lock().clone();
        let t = StatementTicket {
            query_id: new_query_id(),
            sql: p.sql.clone(),
            workspace: p.workspace.clone(),
            prepared: Some(handle),
            language: p.language.into(),
        };
        let span =
            info_span!("get_flight_info_prepared", query_id = %t.query_id, user = %session.user);
        self.statement_info(&session, t, params, request.into_inner())
            .instrument(span)
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        let t: StatementTicket =
            serde_json::from_slice(&ticket.statement_handle).map_err(|_| {
                Status::from(
                    TarnError::new(
                        ErrorCode::InvalidArgument,
                        "the ticket was not issued by this gateway",
                    )
                    .with_fix("call GetFlightInfo first and pass its ticket unchanged"),
                )
            })?;
        let span = info_span!("do_get", query_id = %t.query_id, user = %session.user);
        let stream = self.run(&session, t).instrument(span).await?;
        Ok(Response::new(stream))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        let (handle, p) = self.prepared(&cmd.prepared_statement_handle, &session)?;
        let t = StatementTicket {
            query_id: new_query_id(),
            sql: p.sql.clone(),
            workspace: p.workspace.clone(),
            prepared: Some(handle),
            language: p.language.into(),
        };
        let stream = self.run(&session, t).await?;
        Ok(Response::new(stream))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.create_prepared(query, request).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.bind_prepared(query, request).await
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let language = language_of(request.metadata())?;
        let session = self.session(request.metadata()).await?;
        let workspace = self.workspace(&session, request.metadata());
        let query_id = new_query_id();
        let span = info_span!("statement_update", %query_id, user = %session.user);
        let q = self
            .queries
            .start_in(
                &session,
                &session.grants,
                &workspace,
                &cmd.query,
                language,
                None,
                &query_id,
            )
            .instrument(span)
            .await?;
        Ok(drain_count(q.stream.into_batches()).await?)
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(request.metadata()).await?;
        let (_, p) = self.prepared(&cmd.prepared_statement_handle, &session)?;
        let params = p.params.lock().clone();
        let query_id = new_query_id();
        let q = self
            .queries
            .start_in(
                &session,
                &session.grants,
                &p.workspace,
                &p.sql,
                p.language,
                params.as_ref(),
                &query_id,
            )
            .await?;
        Ok(drain_count(q.stream.into_batches()).await?)
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(request.metadata()).await?;
        let md = request.metadata().clone();
        let workspace = match cmd.schema.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => s.to_string(),
            None => self.workspace(&session, &md),
        };
        let span = info_span!("ingest", user = %session.user, %workspace, table = %cmd.table);
        let data = request.into_inner().map_err(FlightError::from);
        let n = crate::ingest::ingest(
            &self.sessions,
            &self.queries,
            &session,
            &workspace,
            &cmd,
            md.get(WRITE_OPTIONS_HEADER).and_then(|v| v.to_str().ok()),
            md.get("x-tarn-run-id").and_then(|v| v.to_str().ok()),
            data,
        )
        .instrument(span)
        .await?;
        Ok(n)
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let session = self.session(request.metadata()).await?;
        let (handle, _) = self.prepared(&query.prepared_statement_handle, &session)?;
        self.prepared.remove(&handle);
        Ok(())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let session = self.session(request.metadata()).await?;
        let info = FlightInfo::decode(query.info).map_err(|e| {
            Status::from(TarnError::new(
                ErrorCode::InvalidArgument,
                format!("bad FlightInfo: {e}"),
            ))
        })?;
        let cancelled = info
            .endpoint
            .iter()
            .filter_map(|e| e.ticket.as_ref())
            .filter(|t| self.cancel(&t.ticket, &session))
            .count()
            > 0;
        Ok(ActionCancelQueryResult {
            // 1 = CANCELLED, 2 = CANCELLING, 3 = NOT_CANCELLABLE
            result: if cancelled { 1 } else { 3 },
        })
    }

    async fn do_action_fallback(
        &self,
        request: Request<arrow_flight::Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let session = self.session(request.metadata()).await?;
        let md = request.metadata().clone();
        let peer = request.remote_addr();
        let action = request.into_inner();
        if action.r#type == "CancelFlightInfo" {
            let req = arrow_flight::CancelFlightInfoRequest::decode(action.body).map_err(|e| {
                Status::from(TarnError::new(
                    ErrorCode::InvalidArgument,
                    format!("bad CancelFlightInfo: {e}"),
                ))
            })?;
            let cancelled = req
                .info
                .iter()
                .flat_map(|i| i.endpoint.iter())
                .filter_map(|e| e.ticket.as_ref())
                .filter(|t| self.cancel(&t.ticket, &session))
                .count()
                > 0;
            let status = if cancelled {
                arrow_flight::CancelStatus::Cancelled
            } else {
                arrow_flight::CancelStatus::NotCancellable
            };
            let body = arrow_flight::CancelFlightInfoResult::new(status).encode_to_vec();
            let out = arrow_flight::Result { body: body.into() };
            return Ok(Response::new(Box::pin(futures::stream::once(async {
                Ok(out)
            }))));
        }
        if action.r#type == "CloseSession" {
            self.close_session(&session, &md, peer).await;
            // CloseSessionResult { status: CLOSED (1) }, field 1 as a varint.
            let out = arrow_flight::Result {
                body: vec![0x08, 0x01].into(),
            };
            return Ok(Response::new(Box::pin(futures::stream::once(async {
                Ok(out)
            }))));
        }
        Err(TarnError::new(
            ErrorCode::Unsupported,
            format!("action '{}' is not supported", action.r#type),
        )
        .into())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(request, &schema, &query).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let mut b = query.into_builder();
        b.append(CATALOG);
        self.batch_response(b.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(request, &schema, &query).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.list_schemas(query, request).await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = tables_builder(&query).schema();
        self.metadata_info(request, &schema, &query).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.list_tables(query, request).await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(request, &schema, &query).await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let mut b = query.into_builder();
        b.append("TABLE");
        self.batch_response(b.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.metadata_info(request, &schema, &query).await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let b = query.into_builder(&self.sql_info);
        self.batch_response(b.build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
