//! The error catalogue users see.
//!
//! Every failure a client can provoke maps to one [`ErrorCode`]: a stable
//! number (in the ranges the notebook service uses, so runbooks carry over),
//! the gRPC code it travels as, the HTTP status it travels as, and a default
//! "what to do" hint. A [`TarnError`] is a code plus a message naming the
//! cause; its `Display` form is what every protocol shows.

use std::fmt;

/// Stable, documented error codes. Never renumber: clients match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The workspace (database) does not exist.
    WorkspaceNotFound,
    /// A workspace name is not a valid folder name.
    InvalidWorkspaceName,
    /// The table does not exist in the workspace.
    TableNotFound,
    /// A column named in the query does not exist.
    ColumnNotFound,
    /// The caller presented no credentials where they are required.
    Unauthenticated,
    /// The caller's credentials expired.
    CredentialsExpired,
    /// The caller lacks the role the operation needs.
    AccessDenied,
    /// A token is malformed or not signed with this deployment's key.
    InvalidToken,
    /// No executor of the needed pool is available.
    PoolNotAvailable,
    /// The session is unknown, closed or timed out.
    SessionNotFound,
    /// The pool has fewer free vCores than the lease asks for.
    InsufficientVcores,
    /// The limit of concurrent interactive users is reached.
    UserLimitReached,
    /// The job queue is full.
    JobQuotaExceeded,
    /// A job run id is unknown (or its run ended long ago).
    JobRunNotFound,
    /// The session ended because nobody used it for the inactivity limit.
    SessionTimedOut,
    /// A kernel id is unknown, or its kernel was shut down.
    KernelNotFound,
    /// A kernel already has a websocket; a second one is refused.
    KernelAlreadyConnected,
    /// A websocket reached its maximum lifetime and was closed.
    ConnectionLifetimeReached,
    /// The statement is not valid SQL.
    SqlSyntax,
    /// The statement is valid SQL but cannot be planned.
    InvalidQuery,
    /// The feature or statement kind is not supported.
    Unsupported,
    /// The query was cancelled by the user.
    Cancelled,
    /// An argument of the request is missing or invalid.
    InvalidArgument,
    /// A query stage failed on an executor (memory, crash, lost shuffle).
    ExecutionFailed,
    /// A prepared statement handle is unknown or was closed.
    PreparedStatementNotFound,
    /// An interactive query ran longer than the query time limit.
    QueryTimeout,
    /// the table exists already.
    TableAlreadyExists,
    /// the data's columns differ from the table's.
    SchemaMismatch,
    /// a column's type differs from the table's.
    ColumnTypeMismatch,
    /// nullable data for a NOT NULL column.
    NullabilityMismatch,
    /// a column's name or type cannot be stored in a Delta table.
    UnsupportedColumn,
    /// a write mode is missing or unknown, or not allowed on the table's tier.
    InvalidWriteMode,
    /// partitionBy names unknown columns, differs from the table's, or targets the analytics tier.
    InvalidPartitioning,
    /// a custom table's name lacks the tier suffix.
    MissingTableSuffix,
    /// a write or delete the table's kind does not allow.
    InvalidWrite,
    /// another write committed to the table first.
    WriteConflict,
    /// the statement reads or writes files outside the lake.
    PathOutsideLake,
    /// The caller of an internal port is not a Tarn role of this cluster, or its role may not make the call.
    ClusterCredentialRefused,
    /// An executor refused a plan with a node, file format or path Tarn does not produce.
    PlanRefused,
    /// A direct run came without a valid, unused reservation signed by the coordinator.
    ReservationInvalid,
    /// An HTTP request's Host or Origin is not one the gateway serves.
    OriginNotAllowed,
    /// A request body is not of the media type the endpoint takes.
    UnsupportedMediaType,
    /// A kernel already has the most cells waiting to run.
    KernelQueueFull,
    /// A session holds the most prepared statements allowed.
    TooManyPreparedStatements,
    /// A user holds the most sessions (or kernels) allowed.
    TooManySessions,
    /// A statement needed more memory than its share.
    MemoryLimitExceeded,
    /// Something inside Tarn failed; this is a bug or an outage.
    Internal,
    /// This coordinator is a standby; another one leads.
    NotLeader,
    /// The state store (embedded file or etcd) cannot be read or written.
    StateStoreUnavailable,
}

/// How a code travels over HTTP and gRPC, and what the user should do.
struct Spec {
    number: u32,
    grpc: tonic::Code,
    http: u16,
    fix: &'static str,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::WorkspaceNotFound,
        ErrorCode::InvalidWorkspaceName,
        ErrorCode::TableNotFound,
        ErrorCode::ColumnNotFound,
        ErrorCode::Unauthenticated,
        ErrorCode::CredentialsExpired,
        ErrorCode::AccessDenied,
        ErrorCode::InvalidToken,
        ErrorCode::PoolNotAvailable,
        ErrorCode::SessionNotFound,
        ErrorCode::InsufficientVcores,
        ErrorCode::UserLimitReached,
        ErrorCode::JobQuotaExceeded,
        ErrorCode::JobRunNotFound,
        ErrorCode::SessionTimedOut,
        ErrorCode::KernelNotFound,
        ErrorCode::KernelAlreadyConnected,
        ErrorCode::ConnectionLifetimeReached,
        ErrorCode::SqlSyntax,
        ErrorCode::InvalidQuery,
        ErrorCode::Unsupported,
        ErrorCode::Cancelled,
        ErrorCode::InvalidArgument,
        ErrorCode::ExecutionFailed,
        ErrorCode::PreparedStatementNotFound,
        ErrorCode::QueryTimeout,
        ErrorCode::TableAlreadyExists,
        ErrorCode::SchemaMismatch,
        ErrorCode::ColumnTypeMismatch,
        ErrorCode::NullabilityMismatch,
        ErrorCode::UnsupportedColumn,
        ErrorCode::InvalidWriteMode,
        ErrorCode::InvalidPartitioning,
        ErrorCode::MissingTableSuffix,
        ErrorCode::InvalidWrite,
        ErrorCode::WriteConflict,
        ErrorCode::PathOutsideLake,
        ErrorCode::ClusterCredentialRefused,
        ErrorCode::PlanRefused,
        ErrorCode::ReservationInvalid,
        ErrorCode::OriginNotAllowed,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::KernelQueueFull,
        ErrorCode::TooManyPreparedStatements,
        ErrorCode::TooManySessions,
        ErrorCode::MemoryLimitExceeded,
        ErrorCode::Internal,
        ErrorCode::NotLeader,
        ErrorCode::StateStoreUnavailable,
    ];

    fn spec(self) -> Spec {
        use tonic::Code as G;
        let s = |number, grpc, http, fix| Spec {
            number,
            grpc,
            http,
            fix,
        };
        match self {
            ErrorCode::WorkspaceNotFound => s(
                2001,
                G::NotFound,
                404,
                "list workspaces with `SHOW SCHEMAS` (or GetDbSchemas) and use one of them",
            ),
            ErrorCode::InvalidWorkspaceName => s(
                2002,
                G::InvalidArgument,
                400,
                "workspace names use letters, digits, '_' and '-' only",
            ),
            ErrorCode::TableNotFound => s(
                2100,
                G::NotFound,
                404,
                "list tables with `SHOW TABLES` (or GetTables); names are case-sensitive as shown",
            ),
            ErrorCode::ColumnNotFound => s(
                2101,
                G::NotFound,
                404,
                "check the column name and its case against the table's schema (`DESCRIBE <table>`)",
            ),
            ErrorCode::Unauthenticated => s(
                2201,
                G::Unauthenticated,
                401,
                "authenticate with a bearer token (`tarn token --user <name>`) or basic credentials",
            ),
            ErrorCode::CredentialsExpired => s(
                2202,
                G::Unauthenticated,
                401,
                "mint a new token (`tarn token --key-file <key> --user <name>`) and reconnect with it",
            ),
            ErrorCode::AccessDenied => s(
                2203,
                G::PermissionDenied,
                403,
                "ask a workspace owner for the role named in the message",
            ),
            ErrorCode::InvalidToken => s(
                2204,
                G::Unauthenticated,
                401,
                "use a token minted with this deployment's key (`tarn token --key-file <key> --user <name>`)",
            ),
            ErrorCode::PoolNotAvailable => s(
                2301,
                G::Unavailable,
                503,
                "wait for executors of the pool to register, or ask an operator to add capacity",
            ),
            // UNAUTHENTICATED, so drivers re-authenticate (a new handshake
            // opens a new session) instead of giving up.
            ErrorCode::SessionNotFound => s(
                2302,
                G::Unauthenticated,
                401,
                "start a new session; sessions end after inactivity or when closed",
            ),
            ErrorCode::InsufficientVcores => s(
                2303,
                G::ResourceExhausted,
                429,
                "ask for fewer vCores, close sessions you no longer use, or retry when other sessions end",
            ),
            ErrorCode::UserLimitReached => s(
                2304,
                G::ResourceExhausted,
                429,
                "retry when another user's sessions end; a user with several sessions counts once",
            ),
            ErrorCode::JobQuotaExceeded => s(
                2305,
                G::ResourceExhausted,
                429,
                "wait for queued job runs to start or cancel some; the queue length is limited",
            ),
            ErrorCode::JobRunNotFound => s(
                2306,
                G::NotFound,
                404,
                "list job runs (GET /v1/job-runs) and use an id from there",
            ),
            // UNAUTHENTICATED like 2302, so drivers open a new session.
            ErrorCode::SessionTimedOut => s(
                2307,
                G::Unauthenticated,
                410,
                "start a new session (or kernel); run something at least every inactivity period to keep one",
            ),
            ErrorCode::KernelNotFound => s(
                2308,
                G::NotFound,
                404,
                "list kernels (GET /api/kernels) or start a new one",
            ),
            ErrorCode::KernelAlreadyConnected => s(
                2309,
                G::FailedPrecondition,
                409,
                "close the other connection to this kernel first, or start another kernel",
            ),
            ErrorCode::ConnectionLifetimeReached => s(
                2310,
                G::Unavailable,
                503,
                "reconnect: the kernel and its session are still running",
            ),
            ErrorCode::SqlSyntax => s(
                2801,
                G::InvalidArgument,
                400,
                "correct the SQL near the position given",
            ),
            ErrorCode::InvalidQuery => s(
                2802,
                G::InvalidArgument,
                400,
                "correct the query as the message says",
            ),
            ErrorCode::Unsupported => s(
                2803,
                G::Unimplemented,
                501,
                "use a supported statement; see the README for what Tarn runs",
            ),
            ErrorCode::Cancelled => s(2804, G::Cancelled, 499, "run the query again if needed"),
            ErrorCode::InvalidArgument => s(
                2805,
                G::InvalidArgument,
                400,
                "correct the request as the message says",
            ),
            ErrorCode::ExecutionFailed => s(
                2806,
                G::Aborted,
                500,
                "retry; if it fails again, reduce the data the query touches (filter by TimeGenerated) or ask an operator to check executor memory",
            ),
            ErrorCode::PreparedStatementNotFound => s(
                2807,
                G::NotFound,
                404,
                "prepare the statement again; handles end with their session",
            ),
            ErrorCode::QueryTimeout => s(
                2808,
                G::DeadlineExceeded,
                408,
                "narrow the query (filter by TimeGenerated, fewer columns) or run it as a job, which has a longer limit",
            ),
            ErrorCode::TableAlreadyExists => s(
                2102,
                G::AlreadyExists,
                409,
                "write to it with INSERT (or mode 'append'/'overwrite'), or choose another name",
            ),
            ErrorCode::SchemaMismatch => s(
                2401,
                G::InvalidArgument,
                400,
                "align the data's columns with the table's (`DESCRIBE <table>`): same names, none missing, none extra",
            ),
            ErrorCode::ColumnTypeMismatch => s(
                2402,
                G::InvalidArgument,
                400,
                "cast the column to the table's type before writing",
            ),
            ErrorCode::NullabilityMismatch => s(
                2403,
                G::InvalidArgument,
                400,
                "fill or drop the NULLs, or declare the column NOT NULL in the data",
            ),
            ErrorCode::UnsupportedColumn => s(
                2404,
                G::InvalidArgument,
                400,
                "rename the column or cast it to a supported type (string, integer, float, boolean, date, timestamp, decimal, binary, list, struct, map)",
            ),
            ErrorCode::InvalidWriteMode => s(
                2601,
                G::InvalidArgument,
                400,
                "pass mode 'append' or 'overwrite' (the analytics tier takes 'append' only)",
            ),
            ErrorCode::InvalidPartitioning => s(
                2602,
                G::InvalidArgument,
                400,
                "partition lake-tier tables only, by existing columns, as the table already is",
            ),
            ErrorCode::MissingTableSuffix => s(
                2603,
                G::InvalidArgument,
                400,
                "name lake-tier tables <Name>_SPRK and analytics-tier tables <Name>_SPRK_CL",
            ),
            ErrorCode::InvalidWrite => s(
                2604,
                G::PermissionDenied,
                403,
                "write to a custom table (<Name>_SPRK or <Name>_SPRK_CL); system tables are read-only and only lake-tier tables can be deleted",
            ),
            ErrorCode::WriteConflict => s(
                2605,
                G::Aborted,
                409,
                "run the write again; nothing of this one was committed",
            ),
            ErrorCode::PathOutsideLake => s(
                2206,
                G::PermissionDenied,
                403,
                "query lake tables by name; only operators may name files or locations",
            ),
            ErrorCode::ClusterCredentialRefused => s(
                2207,
                G::PermissionDenied,
                403,
                "internal ports (coordinator, executors) take only Tarn roles with a certificate of this cluster's CA; users go through the gateway",
            ),
            ErrorCode::PlanRefused => s(
                2208,
                G::PermissionDenied,
                403,
                "send queries through the gateway; executors run only the plans Tarn makes over lake tables",
            ),
            ErrorCode::ReservationInvalid => s(
                2209,
                G::PermissionDenied,
                403,
                "send queries through the gateway; it reserves vCores before each direct run",
            ),
            ErrorCode::OriginNotAllowed => s(
                2210,
                G::PermissionDenied,
                403,
                "open the gateway by an allowed host name, or ask an operator to add yours to http_allowed_hosts / http_allowed_origins",
            ),
            ErrorCode::UnsupportedMediaType => s(
                2211,
                G::InvalidArgument,
                415,
                "send the body as application/json",
            ),
            ErrorCode::KernelQueueFull => s(
                2311,
                G::ResourceExhausted,
                429,
                "wait for the queued cells to finish, or interrupt the kernel",
            ),
            ErrorCode::TooManyPreparedStatements => s(
                2312,
                G::ResourceExhausted,
                429,
                "close prepared statements you no longer use",
            ),
            ErrorCode::TooManySessions => s(
                2313,
                G::ResourceExhausted,
                429,
                "close sessions or kernels you no longer use",
            ),
            ErrorCode::MemoryLimitExceeded => s(
                2904,
                G::ResourceExhausted,
                507,
                "narrow the query (filter by TimeGenerated, fewer columns, a LIMIT), or lease more vCores for a larger memory share",
            ),
            ErrorCode::Internal => s(
                2901,
                G::Internal,
                500,
                "retry; if it persists, report it with the time and the query",
            ),
            ErrorCode::NotLeader => s(
                2902,
                G::Unavailable,
                503,
                "send the request to the leading coordinator (its address is in Health); clients given every coordinator's address do this themselves",
            ),
            ErrorCode::StateStoreUnavailable => s(
                2903,
                G::Unavailable,
                503,
                "retry shortly; if it persists, an operator should check the coordinator's state directory or etcd",
            ),
        }
    }

    /// The stable number, e.g. 2100.
    pub fn number(self) -> u32 {
        self.spec().number
    }

    /// The gRPC status code this error travels as.
    pub fn grpc_code(self) -> tonic::Code {
        self.spec().grpc
    }

    /// The HTTP status this error travels as.
    pub fn http_status(self) -> u16 {
        self.spec().http
    }

    /// The default advice on what to do.
    pub fn fix(self) -> &'static str {
        self.spec().fix
    }

    /// A short stable name, e.g. `TABLE_NOT_FOUND`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::WorkspaceNotFound => "WORKSPACE_NOT_FOUND",
            ErrorCode::InvalidWorkspaceName => "INVALID_WORKSPACE_NAME",
            ErrorCode::TableNotFound => "TABLE_NOT_FOUND",
            ErrorCode::ColumnNotFound => "COLUMN_NOT_FOUND",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::CredentialsExpired => "CREDENTIALS_EXPIRED",
            ErrorCode::AccessDenied => "ACCESS_DENIED",
            ErrorCode::InvalidToken => "INVALID_TOKEN",
            ErrorCode::PoolNotAvailable => "POOL_NOT_AVAILABLE",
            ErrorCode::SessionNotFound => "SESSION_NOT_FOUND",
            ErrorCode::InsufficientVcores => "INSUFFICIENT_VCORES",
            ErrorCode::UserLimitReached => "USER_LIMIT_REACHED",
            ErrorCode::JobQuotaExceeded => "JOB_QUOTA_EXCEEDED",
            ErrorCode::JobRunNotFound => "JOB_RUN_NOT_FOUND",
            ErrorCode::SessionTimedOut => "SESSION_TIMED_OUT",
            ErrorCode::KernelNotFound => "KERNEL_NOT_FOUND",
            ErrorCode::KernelAlreadyConnected => "KERNEL_ALREADY_CONNECTED",
            ErrorCode::ConnectionLifetimeReached => "CONNECTION_LIFETIME_REACHED",
            ErrorCode::SqlSyntax => "SQL_SYNTAX",
            ErrorCode::InvalidQuery => "INVALID_QUERY",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::ExecutionFailed => "EXECUTION_FAILED",
            ErrorCode::PreparedStatementNotFound => "PREPARED_STATEMENT_NOT_FOUND",
            ErrorCode::QueryTimeout => "QUERY_TIMEOUT",
            ErrorCode::TableAlreadyExists => "TABLE_ALREADY_EXISTS",
            ErrorCode::SchemaMismatch => "SCHEMA_MISMATCH",
            ErrorCode::ColumnTypeMismatch => "COLUMN_TYPE_MISMATCH",
            ErrorCode::NullabilityMismatch => "NULLABILITY_MISMATCH",
            ErrorCode::UnsupportedColumn => "UNSUPPORTED_COLUMN",
            ErrorCode::InvalidWriteMode => "INVALID_WRITE_MODE",
            ErrorCode::InvalidPartitioning => "INVALID_PARTITIONING",
            ErrorCode::MissingTableSuffix => "MISSING_TABLE_SUFFIX",
            ErrorCode::InvalidWrite => "INVALID_WRITE",
            ErrorCode::WriteConflict => "WRITE_CONFLICT",
            ErrorCode::PathOutsideLake => "PATH_OUTSIDE_LAKE",
            ErrorCode::ClusterCredentialRefused => "CLUSTER_CREDENTIAL_REFUSED",
            ErrorCode::PlanRefused => "PLAN_REFUSED",
            ErrorCode::ReservationInvalid => "RESERVATION_INVALID",
            ErrorCode::OriginNotAllowed => "ORIGIN_NOT_ALLOWED",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::KernelQueueFull => "KERNEL_QUEUE_FULL",
            ErrorCode::TooManyPreparedStatements => "TOO_MANY_PREPARED_STATEMENTS",
            ErrorCode::TooManySessions => "TOO_MANY_SESSIONS",
            ErrorCode::MemoryLimitExceeded => "MEMORY_LIMIT_EXCEEDED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::StateStoreUnavailable => "STATE_STORE_UNAVAILABLE",
        }
    }

    /// Looks a code up by its number (clients rebuild errors from metadata).
    pub fn from_number(n: u32) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.number() == n)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TARN-{}", self.number())
    }
}

/// gRPC metadata key carrying the numeric code.
pub const ERROR_CODE_HEADER: &str = "x-tarn-error-code";

/// A user-facing error: what failed, why, and what to do.
#[derive(Clone, PartialEq, Eq)]
pub struct TarnError {
    /// The catalogue entry.
    pub code: ErrorCode,
    /// The cause, naming the object involved.
    pub message: String,
    /// What to do; defaults to the code's advice.
    pub fix: Option<String>,
}

impl TarnError {
    /// An error with the code's default advice.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            fix: None,
        }
    }

    /// Replaces the default advice with a specific one.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// The advice shown to the user.
    pub fn fix(&self) -> &str {
        self.fix.as_deref().unwrap_or(self.code.fix())
    }

    /// The error as a gRPC status (Flight SQL's form).
    pub fn to_status(&self) -> tonic::Status {
        let mut status = tonic::Status::new(self.code.grpc_code(), self.to_string());
        if let Ok(v) = self.code.number().to_string().parse() {
            status.metadata_mut().insert(ERROR_CODE_HEADER, v);
        }
        status
    }

    /// The error as the JSON body of an HTTP response.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "code": self.code.number(),
                "name": self.code.name(),
                "message": self.message,
                "fix": self.fix(),
            }
        })
    }

    /// Rebuilds an error from a status produced by [`TarnError::to_status`].
    pub fn from_status(status: &tonic::Status) -> Self {
        let code = status
            .metadata()
            .get(ERROR_CODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .and_then(ErrorCode::from_number)
            .unwrap_or(match status.code() {
                tonic::Code::NotFound => ErrorCode::InvalidArgument,
                tonic::Code::Unavailable => ErrorCode::PoolNotAvailable,
                tonic::Code::Cancelled => ErrorCode::Cancelled,
                tonic::Code::Unauthenticated => ErrorCode::Unauthenticated,
                tonic::Code::PermissionDenied => ErrorCode::AccessDenied,
                tonic::Code::InvalidArgument => ErrorCode::InvalidArgument,
                _ => ErrorCode::Internal,
            });
        // A status made by `to_status` reads "TARN-n NAME: cause. Fix: fix";
        // take the cause and the fix back apart so they are not repeated.
        let text = status.message();
        let prefix = format!("{} {}: ", code, code.name());
        let body = text.strip_prefix(&prefix).unwrap_or(text);
        match body.rsplit_once(". Fix: ") {
            Some((cause, fix)) => Self::new(code, cause.to_string()).with_fix(fix.to_string()),
            None => Self::new(code, body.to_string()),
        }
    }
}

/// The same text as `Display`: errors raised on an executor reach the
/// gateway as the `Debug` text of the error chain Ballista reports, and the
/// gateway recovers the code from its `TARN-<n>` form.
impl fmt::Debug for TarnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for TarnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}. Fix: {}",
            self.code,
            self.code.name(),
            self.message,
            self.fix()
        )
    }
}

impl std::error::Error for TarnError {}

impl From<TarnError> for tonic::Status {
    fn from(e: TarnError) -> Self {
        e.to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.number()), "duplicate number {}", c.number());
            assert_eq!(ErrorCode::from_number(c.number()), Some(*c));
        }
    }

    #[test]
    fn a_status_round_trips_without_repeating_itself() {
        let e = TarnError::new(ErrorCode::UserLimitReached, "10 users. Really").with_fix("wait");
        let back = TarnError::from_status(&e.to_status());
        assert_eq!(back, e);
        assert_eq!(back.to_string(), e.to_string());
    }

    #[test]
    fn status_carries_code_cause_and_fix() {
        let e = TarnError::new(ErrorCode::TableNotFound, "table 'demo.Nope' does not exist");
        let s = e.to_status();
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert!(s
            .message()
            .starts_with("TARN-2100 TABLE_NOT_FOUND: table 'demo.Nope'"));
        assert!(s.message().contains("Fix: "));
        assert_eq!(TarnError::from_status(&s).code, ErrorCode::TableNotFound);
    }
}

#[cfg(test)]
mod docs {
    use super::ErrorCode;

    /// docs/errors.md lists every code with its name, gRPC code and HTTP
    /// status, so the catalogue users read cannot drift from the code.
    #[test]
    fn every_code_is_documented() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/errors.md"))
                .expect("docs/errors.md exists");
        for c in ErrorCode::ALL {
            let grpc = format!("{:?}", c.grpc_code());
            let grpc = grpc
                .chars()
                .enumerate()
                .flat_map(|(i, ch)| {
                    let mut v = Vec::new();
                    if ch.is_uppercase() && i > 0 {
                        v.push('_');
                    }
                    v.push(ch.to_ascii_uppercase());
                    v
                })
                .collect::<String>();
            let row = format!(
                "| {} | {} | {} | {} |",
                c.number(),
                c.name(),
                grpc,
                c.http_status()
            );
            assert!(
                doc.contains(&row),
                "docs/errors.md lacks the row starting `{row}`"
            );
        }
    }
}
