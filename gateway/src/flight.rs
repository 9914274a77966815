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
    CommandGetTables, CommandPreparedStatementQuery, CommandStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use dashmap::DashMap;
use datafusion::dataframe::DataFrame;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use serde::{Deserialize, Serialize};
use tarn_common::{ErrorCode, TarnError, CATALOG};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info_span, Instrument};

use crate::error::from_datafusion;
use crate::lease::LeaseWish;
use crate::session::{bind_parameters, Session, Sessions};

/// Header selecting the workspace for one request.
pub const WORKSPACE_HEADER: &str = "x-tarn-workspace";

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

/// A prepared statement held between create and close.
#[derive(Debug)]
struct Prepared {
    session_id: String,
    sql: String,
    workspace: String,
    params: parking_lot::Mutex<Option<RecordBatch>>,
}

/// The Flight SQL service.
pub struct TarnFlightSql {
    sessions: Arc<Sessions>,
    coordinator: String,
    pool: PoolProbe,
    prepared: DashMap<String, Arc<Prepared>>,
    running: Arc<DashMap<String, Run>>,
    sql_info: SqlInfoData,
    /// The session of requests without credentials (dev mode), opened on
    /// first use and reopened if its lease ends.
    anonymous: tokio::sync::Mutex<Option<Arc<Session>>>,
}

impl TarnFlightSql {
    /// A service over `sessions`. Requests without credentials share one
    /// anonymous session (standalone dev mode).
    pub fn new(sessions: Arc<Sessions>, coordinator: String) -> Result<Self, TarnError> {
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
            coordinator: format!("http://{coordinator}"),
            pool: PoolProbe::new(format!("http://{coordinator}")),
            prepared: DashMap::new(),
            running: Arc::new(DashMap::new()),
            sql_info,
            anonymous: tokio::sync::Mutex::new(None),
        })
    }

    /// Whether a session has a query streaming right now.
    pub fn is_busy(&self, session_id: &str) -> bool {
        self.running.iter().any(|r| r.session_id == session_id)
    }

    /// Drops prepared statements whose session has ended.
    pub fn purge_orphans(&self) {
        self.prepared
            .retain(|_, p| self.sessions.is_open(&p.session_id));
    }

    /// The session a request belongs to: its bearer token, or the
    /// anonymous session when it carries none.
    async fn session(&self, md: &MetadataMap) -> Result<Arc<Session>, Status> {
        let Some(auth) = md.get("authorization").and_then(|v| v.to_str().ok()) else {
            let mut anon = self.anonymous.lock().await;
            if let Some(s) = anon.as_ref().filter(|s| self.sessions.is_open(&s.id)) {
                let s = Arc::clone(s);
                drop(anon);
                // Touch it, so the idle sweep sees it in use.
                return Ok(self.sessions.get(&s.id).unwrap_or(s));
            }
            let s = self.sessions.open("anonymous", &lease_wish(md)?).await?;
            *anon = Some(Arc::clone(&s));
            return Ok(s);
        };
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .ok_or_else(|| {
                Status::from(TarnError::new(
                    ErrorCode::Unauthenticated,
                    "the authorization header is not a bearer token",
                ))
            })?;
        self.sessions.get(token.trim()).ok_or_else(|| {
            TarnError::new(
                ErrorCode::SessionNotFound,
                "the session for this token has ended",
            )
            .with_fix("reconnect: the client's handshake opens a new session")
            .into()
        })
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
            .map_err(|e| {
                Status::internal(format!("TARN-2901 INTERNAL: cannot encode schema: {e}"))
            })?
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
        let plan = bind_parameters(planned.plan, params.as_ref())?;
        let schema = plan.schema().as_arrow().clone();
        let handle = serde_json::to_vec(&t).map_err(|e| Status::internal(e.to_string()))?;
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
        let run_id = new_query_id();
        let planned = self
            .sessions
            .plan(session, &t.workspace, &t.sql, &run_id)
            .await?;
        let plan = bind_parameters(planned.plan, params.as_ref())?;
        // A job submitted with no executor to run it would wait forever;
        // say so at once instead.
        self.pool.check().await?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let df = DataFrame::new(planned.state, plan);
        let stream = df
            .execute_stream()
            .await
            .map_err(|e| Status::from(from_datafusion(&e)))?;

        let token = CancellationToken::new();
        self.running.insert(
            run_id.clone(),
            Run {
                ticket_id: t.query_id.clone(),
                session_id: session.id.clone(),
                token: token.clone(),
            },
        );
        let mut guard = Some(RunningGuard {
            running: Arc::clone(&self.running),
            run_id: run_id.clone(),
            coordinator: self.coordinator.clone(),
            finished: false,
        });
        let query_id = run_id;
        let was_cancelled = token.clone();
        // A cancelled query ends with an error, never with a silently
        // truncated result.
        let tail = futures::stream::once(async move {
            was_cancelled.is_cancelled().then(|| {
                Err(FlightError::Tonic(Box::new(Status::from(TarnError::new(
                    ErrorCode::Cancelled,
                    "the query was cancelled by the client",
                )))))
            })
        })
        .filter_map(futures::future::ready);
        let batches = stream
            .map_err(|e| FlightError::Tonic(Box::new(Status::from(from_datafusion(&e)))))
            .take_until(token.cancelled_owned())
            .chain(tail)
            .chain(futures::stream::poll_fn(move |_| {
                // Reached only when the stream ran to its end; a stream
                // dropped before (client gone) leaves `finished` false and
                // the guard cancels the job.
                if let Some(g) = guard.as_mut() {
                    g.finished = true;
                }
                std::task::Poll::Ready(None)
            }));
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(|e| match e {
                FlightError::Tonic(s) => *s,
                other => Status::internal(format!("TARN-2901 INTERNAL: {other}")),
            });
        tracing::debug!(%query_id, "streaming results");
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
        let runs: Vec<(String, CancellationToken)> = self
            .running
            .iter()
            .filter(|r| r.ticket_id == t.query_id && r.session_id == session.id)
            .map(|r| (r.key().clone(), r.token.clone()))
            .collect();
        for (run_id, token) in &runs {
            token.cancel();
            tokio::spawn(cancel_jobs(self.coordinator.clone(), run_id.clone()));
        }
        !runs.is_empty()
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
        let batch = built.map_err(|e| Status::internal(format!("TARN-2901 INTERNAL: {e}")))?;
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
            .map_err(|e| Status::internal(format!("TARN-2901 INTERNAL: {e}")));
        Box::pin(s)
    }
}

/// Knows, to within a second, whether the interactive pool has executors.
struct PoolProbe {
    coordinator: String,
    last: parking_lot::Mutex<Option<(std::time::Instant, Result<u32, String>)>>,
}

impl PoolProbe {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(1);

    fn new(coordinator: String) -> Self {
        Self {
            coordinator,
            last: parking_lot::Mutex::new(None),
        }
    }

    async fn check(&self) -> Result<(), TarnError> {
        let cached = self
            .last
            .lock()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < Self::FRESH)
            .map(|(_, r)| r.clone());
        let result = match cached {
            Some(r) => r,
            None => {
                let r = self.ask().await;
                *self.last.lock() = Some((std::time::Instant::now(), r.clone()));
                r
            }
        };
        match result {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => Err(TarnError::new(
                ErrorCode::PoolNotAvailable,
                "no executor of the interactive pool is running",
            )),
            Err(e) => Err(TarnError::new(
                ErrorCode::PoolNotAvailable,
                format!("the coordinator is unreachable: {e}"),
            )
            .with_fix("retry shortly; if it persists, ask an operator to check the coordinator")),
        }
    }

    async fn ask(&self) -> Result<u32, String> {
        let mut c =
            tarn_proto::coordinator_client::CoordinatorClient::connect(self.coordinator.clone())
                .await
                .map_err(|e| e.to_string())?;
        c.health(tarn_proto::HealthRequest {
            header: Some(tarn_proto::header()),
        })
        .await
        .map(|r| r.into_inner().interactive_executors)
        .map_err(|e| e.message().to_string())
    }
}

/// One DoGet in flight.
struct Run {
    /// The ticket it came from (what cancel requests name).
    ticket_id: String,
    /// Only its own session may cancel it.
    session_id: String,
    token: CancellationToken,
}

/// Removes a run from the running set when its stream ends or is dropped,
/// and cancels its Ballista job if it did not run to completion (client
/// gone). An explicit cancel already cancelled the job.
struct RunningGuard {
    running: Arc<DashMap<String, Run>>,
    run_id: String,
    coordinator: String,
    finished: bool,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        let cancelled = self
            .running
            .remove(&self.run_id)
            .map(|(_, r)| r.token.is_cancelled())
            .unwrap_or(false);
        tracing::debug!(run_id = %self.run_id, finished = self.finished, cancelled, "query stream closed");
        if !self.finished && !cancelled {
            let coordinator = self.coordinator.clone();
            let query_id = self.run_id.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(cancel_jobs(coordinator, query_id));
            }
        }
    }
}

/// Asks the coordinator to cancel the Ballista jobs of a query, so an
/// abandoned query stops using executors.
async fn cancel_jobs(coordinator: String, query_id: String) {
    let result = async {
        let mut c = tarn_proto::coordinator_client::CoordinatorClient::connect(coordinator).await?;
        c.cancel_query(tarn_proto::CancelQueryRequest {
            header: Some(tarn_proto::header()),
            query_id: query_id.clone(),
        })
        .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(%query_id, "query's jobs cancelled"),
        Err(e) => tracing::warn!(%query_id, error = %e, "could not cancel the query's jobs"),
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

/// Handshake header: vCores the new session leases.
pub const VCORES_HEADER: &str = "x-tarn-vcores";
/// Handshake header: named session size.
pub const SIZE_HEADER: &str = "x-tarn-session-size";

fn new_query_id() -> String {
    format!("tarn-{}", uuid::Uuid::new_v4().simple())
}

fn decode_basic(header: &str) -> Option<(String, String)> {
    use base64_lite::decode;
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let raw = decode(b64.trim())?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Just enough base64 for the Basic scheme, without another dependency.
mod base64_lite {
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let val = |c: u8| -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => (c - b'A') as u32,
                b'a'..=b'z' => (c - b'a' + 26) as u32,
                b'0'..=b'9' => (c - b'0' + 52) as u32,
                b'+' | b'-' => 62,
                b'/' | b'_' => 63,
                _ => return None,
            })
        };
        let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
        let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
        for chunk in bytes.chunks(4) {
            let mut acc = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                acc |= val(c)? << (18 - 6 * i);
            }
            out.push((acc >> 16) as u8);
            if chunk.len() > 2 {
                out.push((acc >> 8) as u8);
            }
            if chunk.len() > 3 {
                out.push(acc as u8);
            }
        }
        Some(out)
    }
}

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
        // Dev mode: any user name opens a session; the token is its id.
        let user = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(decode_basic)
            .map(|(u, _)| u)
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "anonymous".to_string());
        let session = self
            .sessions
            .open(&user, &lease_wish(request.metadata())?)
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
        let handle = uuid::Uuid::new_v4().simple().to_string();
        self.prepared.insert(
            handle.clone(),
            Arc::new(Prepared {
                session_id: session.id.clone(),
                sql: query.query,
                workspace,
                params: parking_lot::Mutex::new(None),
            }),
        );
        let opts = arrow::ipc::writer::IpcWriteOptions::default();
        let encode = |s: &Schema| -> Result<bytes::Bytes, Status> {
            let msg: IpcMessage = SchemaAsIpc::new(s, &opts)
                .try_into()
                .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
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
            // Flight's CloseSession: the session ends and its vCores return
            // now rather than after the idle timeout.
            self.sessions.close(&session.id).await;
            self.purge_orphans();
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
        self.session(request.metadata()).await?;
        let names = self.sessions.refresh_all().await?;
        let mut b = query.into_builder();
        for n in names {
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
        self.session(request.metadata()).await?;
        let names = self.sessions.refresh_all().await?;
        let mut b = tables_builder(&query);
        let lake = self.sessions.lake();
        for ws_name in names {
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
                    .map_err(|e| Status::internal(e.to_string()))?;
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
