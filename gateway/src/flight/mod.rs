//! Arrow Flight SQL front door.
//!
//! Statement and prepared-statement tickets carry what is needed to plan
//! the statement again (SQL, workspace, prepared handle), so `DoGet` needs
//! no state from `GetFlightInfo` beyond the session and bound parameters.

mod metadata;
mod prepared;
mod service;
mod sessions;
mod statement;

use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::SqlInfo;
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use dashmap::DashMap;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tarn_common::{ErrorCode, TarnError};
use tonic::Status;

use crate::auth::Authenticator;
use crate::query::Queries;
use crate::session::{Language, Session, Sessions};

/// Header selecting the workspace for one request.
pub const WORKSPACE_HEADER: &str = "x-tarn-workspace";

/// Header carrying a bulk ingest's write options as JSON, the provider's
/// `write_options`: `{"mode": "append"|"overwrite", "partitionBy": [...]}`.
pub const WRITE_OPTIONS_HEADER: &str = "x-tarn-write-options";

/// Header naming the language of a request's statements: `sql` (the
/// default) or `kql`. ADBC sends it with the connection or statement
/// option `adbc.flight.sql.rpc.call_header.x-tarn-language`.
pub const LANGUAGE_HEADER: &str = "x-tarn-language";

/// Handshake header: vCores the new session leases.
pub const VCORES_HEADER: &str = "x-tarn-vcores";
/// Handshake header: named session size.
pub const SIZE_HEADER: &str = "x-tarn-session-size";

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
    /// The language `sql` is written in (tickets without it are SQL).
    #[serde(default)]
    language: Lang,
}

/// [`Language`] as a ticket carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Lang {
    #[default]
    Sql,
    Kql,
}

impl From<Language> for Lang {
    fn from(l: Language) -> Self {
        match l {
            Language::Sql => Lang::Sql,
            Language::Kql => Lang::Kql,
        }
    }
}

impl From<Lang> for Language {
    fn from(l: Lang) -> Self {
        match l {
            Lang::Sql => Language::Sql,
            Lang::Kql => Language::Kql,
        }
    }
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
    /// The language it was created in (the request's `x-tarn-language`).
    language: Language,
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
}
