//! Arrow Flight SQL front door.
//!
//! Statement and prepared-statement tickets carry what is needed to plan
//! the statement again (SQL, workspace, prepared handle), so `DoGet` needs
//! no state from `GetFlightInfo` beyond the session and bound parameters.

use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use dashmap::DashMap;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use serde::{Deserialize, Serialize};
use tarn_common::{ErrorCode, TarnError, CATALOG};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info_span, Instrument};

use crate::auth::Authenticator;
use crate::error::from_datafusion;
use crate::lease::LeaseWish;
use crate::query::{new_query_id, Queries};
use crate::session::{bind_parameters, Session, Sessions};

/// Header selecting the workspace for one request.
pub const WORKSPACE_HEADER: &str = "x-tarn-workspace";

/// Header carrying a bulk ingest's write options as JSON, the provider's
/// `write_options`: `{"mode": "append"|"overwrite", "partitionBy": [...]}`.
pub const WRITE_OPTIONS_HEADER: &str = "x-tarn-write-options";

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// What a statement ticket carries.
#[derive(Debug, Serialize, Deserialize)]
struct StatementTicket {
    /// Query id: names the Ballista job, and is what cancel refers to.
    query_id: String,
    sql: String,
    workspace: String,
    /// Set for prepared statements: whose bound parameters to use.
    prepared: Option<String>,
}

/// A read planned for GetFlightInfo, waiting for its DoGet.
struct PlannedRead {
    session_id: String,
    plan: datafusion::logical_expr::LogicalPlan,
    at: std::time::Instant,
}

/// How long a GetFlightInfo's plan waits for its DoGet; a later DoGet
/// (or a second one of the same ticket) plans again.
const PLAN_REUSE: std::time::Duration = std::time::Duration::from_secs(30);

/// A prepared statement held between create and close.
#[derive(Debug)]
struct Prepared {
    session_id: String,
    sql: String,
    workspace: String,
    params: parking_lot::Mutex<Option<RecordBatch>>,
    /// The client connection that created it: on a shared session, that
    /// connection's CloseSession closes it, and no one else's.
    peer: Option<std::net::SocketAddr>,
}

/// The Flight SQL service.
pub struct TarnFlightSql {
    sessions: Arc<Sessions>,
    queries: Arc<Queries>,
    auth: Arc<Authenticator>,
    prepared: DashMap<String, Arc<Prepared>>,
    /// Plans made for GetFlightInfo, by ticket id, for the DoGet that
    /// follows: a query is parsed, resolved and planned once, not twice.
    planned: DashMap<String, PlannedRead>,
    sql_info: SqlInfoData,
    /// Prepared statements one session may hold.
    max_prepared: usize,
    /// Sessions of requests that carry a token rather than a session id
    /// (ADBC's bearer header), and of dev-mode requests without
    /// credentials (key ""): opened on first use, reopened if they end.
    #[allow(clippy::type_complexity)]
    implicit: parking_lot::Mutex<
        std::collections::HashMap<String, Arc<tokio::sync::Mutex<Option<Arc<Session>>>>>,
    >,
}

impl TarnFlightSql {
    /// A service over `sessions`. Requests without credentials share one
    /// anonymous session (standalone dev mode).
    pub fn new(
        sessions: Arc<Sessions>,
        queries: Arc<Queries>,
        auth: Arc<Authenticator>,
    ) -> Result<Self, TarnError> {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Tarn");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        b.append(SqlInfo::FlightSqlServerCancel, true);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        let sql_info = b
            .build()
            .map_err(|e| TarnError::new(ErrorCode::Internal, format!("sql info: {e}")))?;
        Ok(Self {
            sessions,
            queries,
            auth,
            prepared: DashMap::new(),
            planned: DashMap::new(),
            sql_info,
            max_prepared: crate::GatewayOptions::default().max_prepared_statements,
            implicit: parking_lot::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// At most `n` prepared statements per session.
    pub fn with_max_prepared(mut self, n: usize) -> Self {
        self.max_prepared = n;
        self
    }

    /// Drops prepared statements whose session has ended.
    pub fn purge_orphans(&self) {
        self.prepared
            .retain(|_, p| self.sessions.is_open(&p.session_id));
    }

    /// The session a request belongs to: the session id a handshake
    /// returned, or the session of the token (or, in dev mode, of no
    /// credentials at all) it carries.
    async fn session(&self, md: &MetadataMap) -> Result<Arc<Session>, Status> {
        let auth = md.get("authorization").and_then(|v| v.to_str().ok());
        if let Some(id) = auth.and_then(session_id_of) {
            return Ok(self.sessions.lookup(id)?);
        }
        let who = self.auth.identify(auth, None)?;
        let key = who
            .token
            .clone()
            .unwrap_or_else(|| format!("dev:{}", who.user));
        // One opener per key at a time, without holding up other keys
        // while the coordinator grants (or refuses) a lease.
        let slot = {
            let mut implicit = self.implicit.lock();
            implicit.retain(|_, s| {
                s.try_lock()
                    .map(|g| g.as_ref().is_some_and(|s| self.sessions.is_open(&s.id)))
                    .unwrap_or(true)
            });
            Arc::clone(implicit.entry(key).or_default())
        };
        let mut slot = slot.lock().await;
        if let Some(s) = slot.as_ref().and_then(|s| self.sessions.get(&s.id)) {
            return Ok(s);
        }
        let s = self.sessions.open(&who, &lease_wish(md)?).await?;
        *slot = Some(Arc::clone(&s));
        Ok(s)
    }

    /// Flight's CloseSession. A session opened by a handshake belongs to
    /// the client holding its id: it ends, and its vCores return now rather
    /// than after the idle timeout. A shared session — one per token, or the
    /// anonymous one of dev mode — serves every client sending the same
    /// credentials, so one of them leaving must not end it for the others:
    /// only the prepared statements the calling connection created are
    /// closed, and the session ends when idle (or by `DELETE /v1/sessions`).
    async fn close_session(
        &self,
        session: &Session,
        md: &MetadataMap,
        peer: Option<std::net::SocketAddr>,
    ) {
        let owned = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(session_id_of)
            .is_some();
        if owned {
            self.sessions.close(&session.id).await;
            self.purge_orphans();
            return;
        }
        let before = self.prepared.len();
        self.prepared
            .retain(|_, p| !(p.session_id == session.id && peer.is_some() && p.peer == peer));
        tracing::info!(
            session = %session.id,
            user = %session.user,
            closed_statements = before.saturating_sub(self.prepared.len()),
            "CloseSession on a shared session: the caller's prepared statements closed, the session stays"
        );
    }

    fn workspace(&self, session: &Session, md: &MetadataMap) -> String {
        md.get(WORKSPACE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| session.workspace.read().clone())
    }

    /// A prepared statement of `session`; another session's handles are
    /// indistinguishable from unknown ones.
    fn prepared(
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

    fn flight_info(
        &self,
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| TarnError::internal(format!("cannot encode the result schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor)
            .with_ordered(true);
        Ok(info)
    }

    async fn statement_info(
        &self,
        session: &Session,
        t: StatementTicket,
        params: Option<RecordBatch>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let planned = self
            .sessions
            .plan(session, &t.workspace, &t.sql, &t.query_id)
            .await?;
        let reusable =
            t.prepared.is_none() && matches!(planned.effect, crate::write::Effect::Nothing);
        let plan = bind_parameters(planned.plan, params.as_ref())?;
        let schema = plan.schema().as_arrow().clone();
        if reusable {
            if self.planned.len() >= 1024 {
                self.planned.retain(|_, p| p.at.elapsed() < PLAN_REUSE);
            }
            self.planned.insert(
                t.query_id.clone(),
                PlannedRead {
                    session_id: session.id.clone(),
                    plan,
                    at: std::time::Instant::now(),
                },
            );
        }
        let handle = serde_json::to_vec(&t)
            .map_err(|e| TarnError::internal(format!("cannot encode the statement handle: {e}")))?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        }
        .as_any()
        .encode_to_vec();
        Ok(Response::new(
            self.flight_info(&schema, ticket, descriptor)?,
        ))
    }

    /// Plans and runs a ticketed statement, streaming batches as executors
    /// produce them.
    async fn run(
        &self,
        session: &Session,
        t: StatementTicket,
    ) -> Result<BoxStream<arrow_flight::FlightData>, Status> {
        let params = match &t.prepared {
            Some(h) => self
                .prepared(h.as_bytes(), session)?
                .1
                .params
                .lock()
                .clone(),
            None => None,
        };
        // Each DoGet is its own run with a server-made id (the Ballista job
        // name): a replayed or forged ticket can never share or cancel
        // someone else's job.
        let reuse = match t.prepared {
            Some(_) => None,
            None => self
                .planned
                .remove(&t.query_id)
                .map(|(_, p)| p)
                .filter(|p| p.session_id == session.id && p.at.elapsed() < PLAN_REUSE),
        };
        let q = match reuse {
            Some(p) => {
                let run_id = new_query_id();
                let state = self.sessions.run_state(session, &t.workspace, &run_id);
                self.queries
                    .start_planned(
                        session,
                        crate::session::Planned {
                            plan: p.plan,
                            state,
                            effect: crate::write::Effect::Nothing,
                        },
                        run_id,
                        &t.query_id,
                    )
                    .await?
            }
            None => {
                self.queries
                    .start(session, &t.workspace, &t.sql, params.as_ref(), &t.query_id)
                    .await?
            }
        };
        tracing::debug!(run_id = %q.run_id, "streaming results");
        let batches = q
            .stream
            .map_err(|e| FlightError::Tonic(Box::new(Status::from(e))));
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(q.schema)
            .build(batches)
            .map_err(|e| match e {
                FlightError::Tonic(s) => *s,
                other => {
                    TarnError::internal(format!("cannot encode the result: {other}")).to_status()
                }
            });
        Ok(Box::pin(flight))
    }

    /// Cancels the caller's runs of a ticket: their streams end with
    /// `CANCELLED` and their Ballista jobs are cancelled on the executors
    /// at once, whether or not the client still reads.
    fn cancel(&self, ticket: &[u8], session: &Session) -> bool {
        let Some(t) = Any::decode(ticket)
            .ok()
            .and_then(|a| a.unpack::<TicketStatementQuery>().ok().flatten())
            .and_then(|t| serde_json::from_slice::<StatementTicket>(&t.statement_handle).ok())
        else {
            return false;
        };
        self.queries.cancel_ticket(&t.query_id, &session.id)
    }

    /// FlightInfo for a metadata command: its result schema, and the
    /// command itself as the ticket (metadata is computed at `DoGet`).
    async fn metadata_info<C: ProstMessageExt>(
        &self,
        request: Request<FlightDescriptor>,
        schema: &Schema,
        command: &C,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(request.metadata()).await?;
        let ticket = command.as_any().encode_to_vec();
        let info = self.flight_info(schema, ticket, request.into_inner())?;
        Ok(Response::new(info))
    }

    /// A one-batch metadata result.
    fn batch_response<E: std::fmt::Display>(
        &self,
        built: Result<RecordBatch, E>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let batch = built
            .map_err(|e| TarnError::internal(format!("cannot build the metadata batch: {e}")))?;
        Ok(Response::new(self.batch_stream(batch.schema(), batch)))
    }

    fn batch_stream(
        &self,
        schema: Arc<Schema>,
        batch: RecordBatch,
    ) -> BoxStream<arrow_flight::FlightData> {
        let s = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async { Ok(batch) }))
            .map_err(|e| TarnError::internal(format!("cannot encode the result: {e}")).to_status());
        Box::pin(s)
    }
}

/// Session size a client asks for at handshake: `x-tarn-vcores: N` or
/// `x-tarn-session-size: small|medium|large`.
fn lease_wish(md: &MetadataMap) -> Result<LeaseWish, TarnError> {
    let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let vcores = match get(VCORES_HEADER) {
        None | Some("") => 0,
        Some(v) => v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            TarnError::new(
                ErrorCode::InvalidArgument,
                format!("{VCORES_HEADER} must be a positive number of vCores, not {v:?}"),
            )
        })?,
    };
    Ok(LeaseWish {
        vcores,
        size: get(SIZE_HEADER).unwrap_or_default().to_string(),
    })
}

/// The session id in a bearer header, if that is what it carries (signed
/// tokens start with `tarn.`; session ids are plain hex).
fn session_id_of(header: &str) -> Option<&str> {
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(value)
}

/// Handshake header: vCores the new session leases.
pub const VCORES_HEADER: &str = "x-tarn-vcores";
/// Handshake header: named session size.
pub const SIZE_HEADER: &str = "x-tarn-session-size";

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
        let who = self.auth.identify(header, None)?;
        let session = self
            .sessions
            .open(&who, &lease_wish(request.metadata())?)
            .await?;
        let token = session.id.clone();
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
        let session = self.session(request.metadata()).await?;
        let workspace = self.workspace(&session, request.metadata());
        let t = StatementTicket {
            query_id: new_query_id(),
            sql: query.query,
            workspace,
            prepared: None,
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
        };
        let stream = self.run(&session, t).await?;
        Ok(Response::new(stream))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let session = self.session(request.metadata()).await?;
        let workspace = self.workspace(&session, request.metadata());
        let planned = self
            .sessions
            .plan(&session, &workspace, &query.query, "prepare")
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

    async fn do_put_prepared_statement_query(
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

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(request.metadata()).await?;
        let workspace = self.workspace(&session, request.metadata());
        let query_id = new_query_id();
        let span = info_span!("statement_update", %query_id, user = %session.user);
        let q = self
            .queries
            .start(&session, &workspace, &cmd.query, None, &query_id)
            .instrument(span)
            .await?;
        Ok(drain_count(q.stream).await?)
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
            .start(&session, &p.workspace, &p.sql, params.as_ref(), &query_id)
            .await?;
        Ok(drain_count(q.stream).await?)
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
        let session = self.session(request.metadata()).await?;
        let names = self.sessions.refresh_all().await?;
        let mut b = query.into_builder();
        for n in names.into_iter().filter(|n| session.grants.sees(n)) {
            b.append(CATALOG, n);
        }
        self.batch_response(b.build())
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
        let session = self.session(request.metadata()).await?;
        let names = self.sessions.refresh_all().await?;
        let mut b = tables_builder(&query);
        let lake = self.sessions.lake();
        for ws_name in names.into_iter().filter(|n| session.grants.sees(n)) {
            let ws = lake
                .workspace(&ws_name)
                .await
                .map_err(|e| Status::from(e.to_tarn()))?;
            for t in ws.cached_table_names() {
                let schema = if query.include_schema {
                    match ws.table(&t).await {
                        Ok(table) => datafusion::catalog::TableProvider::schema(table.as_ref())
                            .as_ref()
                            .clone(),
                        Err(_) => continue, // dropped between listing and reading
                    }
                } else {
                    Schema::empty()
                };
                b.append(CATALOG, &ws_name, &t, "TABLE", &schema)
                    .map_err(|e| TarnError::internal(format!("cannot list table '{t}': {e}")))?;
            }
        }
        self.batch_response(b.build())
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

fn tables_builder(q: &CommandGetTables) -> arrow_flight::sql::metadata::GetTablesBuilder {
    arrow_flight::sql::metadata::GetTablesBuilder::new(
        q.catalog.clone(),
        q.db_schema_filter_pattern.clone(),
        q.table_name_filter_pattern.clone(),
        q.table_types.clone(),
        q.include_schema,
    )
}

/// Reads a write's result to its end: the one `count` row.
async fn drain_count(mut stream: crate::query::BatchStream) -> Result<i64, TarnError> {
    let mut n: i64 = 0;
    while let Some(b) = stream.next().await {
        let b = b?;
        if let Some(c) = b
            .columns()
            .first()
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
        {
            n += c.iter().flatten().sum::<u64>() as i64;
        }
    }
    Ok(n)
}
