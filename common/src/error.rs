//! The error catalogue users see.
//!
//! Every failure a client can provoke maps to one [`ErrorCode`]: a stable
//! number (in the ranges the notebook service uses, so runbooks carry over),
//! the gRPC code it travels as, the HTTP status it travels as, and a default
//! "what to do" hint. A [`TarnError`] is a code plus a message naming the
//! cause; its `Display` form is what every protocol shows.

use std::fmt;

/// Declares the catalogue once: each entry gives the variant, its stable
/// number, its name, the gRPC code and HTTP status it travels as, and the
/// default advice. The enum, [`ErrorCode::ALL`] and every lookup come from
/// this one list, so a code cannot be half-added; a repeated number fails
/// the build.
macro_rules! catalogue {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $number:literal, $name:ident, $grpc:ident, $http:literal, $fix:literal;
    )*) => {
        /// Stable, documented error codes. Never renumber: clients match on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            fn spec(self) -> Spec {
                match self {
                    $(ErrorCode::$variant => Spec {
                        number: $number,
                        name: stringify!($name),
                        grpc: tonic::Code::$grpc,
                        http: $http,
                        fix: $fix,
                    },)*
                }
            }
        }

        const _: () = {
            let numbers = [$($number),*];
            let mut i = 0;
            while i < numbers.len() {
                let mut j = i + 1;
                while j < numbers.len() {
                    assert!(numbers[i] != numbers[j], "two error codes share a number");
                    j += 1;
                }
                i += 1;
            }
        };
    };
}

/// How a code travels over HTTP and gRPC, and what the user should do.
struct Spec {
    number: u32,
    name: &'static str,
    grpc: tonic::Code,
    http: u16,
    fix: &'static str,
}

catalogue! {
    /// The workspace (database) does not exist.
    WorkspaceNotFound = 2001, WORKSPACE_NOT_FOUND, NotFound, 404,
        "list workspaces with `SHOW SCHEMAS` (or GetDbSchemas) and use one of them";
    /// A workspace name is not a valid folder name.
    InvalidWorkspaceName = 2002, INVALID_WORKSPACE_NAME, InvalidArgument, 400,
        "workspace names use letters, digits, '_' and '-' only";
    /// A named object (a resource of a request, an endpoint's ticket) does not exist.
    NotFound = 2003, NOT_FOUND, NotFound, 404,
        "check the name or id against what the endpoint lists";
    /// The table does not exist in the workspace.
    TableNotFound = 2100, TABLE_NOT_FOUND, NotFound, 404,
        "list tables with `SHOW TABLES` (or GetTables); names are case-sensitive as shown";
    /// A column named in the query does not exist.
    ColumnNotFound = 2101, COLUMN_NOT_FOUND, NotFound, 404,
        "check the column name and its case against the table's schema (`DESCRIBE <table>`)";
    /// The caller presented no credentials where they are required.
    Unauthenticated = 2201, UNAUTHENTICATED, Unauthenticated, 401,
        "authenticate with a bearer token (`tarn token --user <name>`) or basic credentials";
    /// The caller's credentials expired.
    CredentialsExpired = 2202, CREDENTIALS_EXPIRED, Unauthenticated, 401,
        "mint a new token (`tarn token --key-file <key> --user <name>`) and reconnect with it";
    /// The caller lacks the role the operation needs.
    AccessDenied = 2203, ACCESS_DENIED, PermissionDenied, 403,
        "ask a workspace owner for the role named in the message";
    /// A token is malformed or not signed with this deployment's key.
    InvalidToken = 2204, INVALID_TOKEN, Unauthenticated, 401,
        "use a token minted with this deployment's key (`tarn token --key-file <key> --user <name>`)";
    /// No executor of the needed pool is available.
    PoolNotAvailable = 2301, POOL_NOT_AVAILABLE, Unavailable, 503,
        "wait for executors of the pool to register, or ask an operator to add capacity";
    // UNAUTHENTICATED, so drivers re-authenticate (a new handshake
    // opens a new session) instead of giving up.
    /// The session is unknown, closed or timed out.
    SessionNotFound = 2302, SESSION_NOT_FOUND, Unauthenticated, 401,
        "start a new session; sessions end after inactivity or when closed";
    /// The pool has fewer free vCores than the lease asks for.
    InsufficientVcores = 2303, INSUFFICIENT_VCORES, ResourceExhausted, 429,
        "ask for fewer vCores, close sessions you no longer use, or retry when other sessions end";
    /// The limit of concurrent interactive users is reached.
    UserLimitReached = 2304, USER_LIMIT_REACHED, ResourceExhausted, 429,
        "retry when another user's sessions end; a user with several sessions counts once";
    /// The job queue is full.
    JobQuotaExceeded = 2305, JOB_QUOTA_EXCEEDED, ResourceExhausted, 429,
        "wait for queued job runs to start or cancel some; the queue length is limited";
    /// A job run id is unknown (or its run ended long ago).
    JobRunNotFound = 2306, JOB_RUN_NOT_FOUND, NotFound, 404,
        "list job runs (GET /v1/job-runs) and use an id from there";
    // UNAUTHENTICATED like 2302, so drivers open a new session.
    /// The session ended because nobody used it for the inactivity limit.
    SessionTimedOut = 2307, SESSION_TIMED_OUT, Unauthenticated, 410,
        "start a new session (or kernel); run something at least every inactivity period to keep one";
    /// A kernel id is unknown, or its kernel was shut down.
    KernelNotFound = 2308, KERNEL_NOT_FOUND, NotFound, 404,
        "list kernels (GET /api/kernels) or start a new one";
    /// A kernel already has a websocket; a second one is refused.
    KernelAlreadyConnected = 2309, KERNEL_ALREADY_CONNECTED, FailedPrecondition, 409,
        "close the other connection to this kernel first, or start another kernel";
    /// A websocket reached its maximum lifetime and was closed.
    ConnectionLifetimeReached = 2310, CONNECTION_LIFETIME_REACHED, Unavailable, 503,
        "reconnect: the kernel and its session are still running";
    /// A job id is unknown (or its job was deleted).
    JobNotFound = 2315, JOB_NOT_FOUND, NotFound, 404,
        "list jobs (GET /v1/jobs or `tarn job list`) and use an id from there";
    /// A job with that name already exists in the workspace.
    JobAlreadyExists = 2316, JOB_ALREADY_EXISTS, AlreadyExists, 409,
        "choose another name, or update the existing job (PATCH /v1/jobs/{id}, `tarn job update`)";
    /// A job definition is not valid: its schedule, notebook, parameters or settings.
    InvalidJob = 2317, INVALID_JOB, InvalidArgument, 400,
        "correct the job definition as the message says; nothing was saved";
    /// A job run ran longer than its job's timeout and was stopped.
    JobTimedOut = 2318, JOB_TIMED_OUT, DeadlineExceeded, 408,
        "raise the job's timeout (up to the operator's cap) or make one run do less (filter by TimeGenerated)";
    /// A Python kernel's process ended or stopped answering.
    KernelDied = 2319, KERNEL_DIED, Unavailable, 404,
        "start a new kernel (its vCores were returned); if it ran out of memory, ask for more vCores (KERNEL_TARN_VCORES) or load less at once";
    /// Python kernels cannot be started on this gateway.
    KernelUnavailable = 2320, KERNEL_UNAVAILABLE, Unavailable, 503,
        "use a tarn-sql kernel, or ask the operator to set up the kernel environment (dev/setup.sh --kernels, python_kernel_python)";
    /// The gateway is stopping (a restart, an upgrade, a scale-down).
    GatewayShuttingDown = 2321, GATEWAY_SHUTTING_DOWN, Unavailable, 503,
        "reconnect: another gateway (or this one once restarted) opens a new session or kernel; queued job runs are taken over";
    /// A Python kernel went idle without answering a cell (an interrupt
    /// that arrived before the cell's code started).
    CellReplyLost = 2322, CELL_REPLY_LOST, Aborted, 409,
        "run the cell again: its code did not run, or stopped at once";
    /// The statement is not valid SQL.
    SqlSyntax = 2801, SQL_SYNTAX, InvalidArgument, 400,
        "correct the SQL near the position given";
    /// The statement is valid SQL but cannot be planned.
    InvalidQuery = 2802, INVALID_QUERY, InvalidArgument, 400,
        "correct the query as the message says";
    /// The feature or statement kind is not supported.
    Unsupported = 2803, UNSUPPORTED, Unimplemented, 501,
        "use a supported statement; see the README for what Tarn runs";
    /// The query was cancelled by the user.
    Cancelled = 2804, CANCELLED, Cancelled, 499,
        "run the query again if needed";
    /// An argument of the request is missing or invalid.
    InvalidArgument = 2805, INVALID_ARGUMENT, InvalidArgument, 400,
        "correct the request as the message says";
    /// A query stage failed on an executor (memory, crash, lost shuffle).
    ExecutionFailed = 2806, EXECUTION_FAILED, Aborted, 500,
        "retry; if it fails again, reduce the data the query touches (filter by TimeGenerated) or ask an operator to check executor memory";
    /// A prepared statement handle is unknown or was closed.
    PreparedStatementNotFound = 2807, PREPARED_STATEMENT_NOT_FOUND, NotFound, 404,
        "prepare the statement again; handles end with their session";
    /// An interactive query ran longer than the query time limit.
    QueryTimeout = 2808, QUERY_TIMEOUT, DeadlineExceeded, 408,
        "narrow the query (filter by TimeGenerated, fewer columns) or run it as a job, which has a longer limit";
    /// A value the query computes cannot be what it asks (a cast that
    /// does not fit, an overflow, a division by zero): the same every run.
    InvalidValue = 2809, INVALID_VALUE, InvalidArgument, 400,
        "correct the query (cast to a wider type, guard the division) or filter out the rows with such values; running it again gives the same error";
    /// The query is not valid KQL, or names what its input does not have
    /// (the message gives line, column and a caret under the mistake).
    KqlSyntax = 2810, KQL_SYNTAX, InvalidArgument, 400,
        "correct the KQL at the line and column given";
    /// The table exists already.
    TableAlreadyExists = 2102, TABLE_ALREADY_EXISTS, AlreadyExists, 409,
        "write to it with INSERT (or mode 'append'/'overwrite'), or choose another name";
    /// The data's columns differ from the table's.
    SchemaMismatch = 2401, SCHEMA_MISMATCH, InvalidArgument, 400,
        "align the data's columns with the table's (`DESCRIBE <table>`): same names, none missing, none extra";
    /// A column's type differs from the table's.
    ColumnTypeMismatch = 2402, COLUMN_TYPE_MISMATCH, InvalidArgument, 400,
        "cast the column to the table's type before writing";
    /// Nullable data for a NOT NULL column.
    NullabilityMismatch = 2403, NULLABILITY_MISMATCH, InvalidArgument, 400,
        "fill or drop the NULLs, or declare the column NOT NULL in the data";
    /// A column's name or type cannot be stored in a Delta table.
    UnsupportedColumn = 2404, UNSUPPORTED_COLUMN, InvalidArgument, 400,
        "rename the column or cast it to a supported type (string, integer, float, boolean, date, timestamp, decimal, binary, list, struct, map)";
    /// A write mode is missing or unknown, or not allowed on the table's tier.
    InvalidWriteMode = 2601, INVALID_WRITE_MODE, InvalidArgument, 400,
        "pass mode 'append' or 'overwrite' (the analytics tier takes 'append' only)";
    /// PartitionBy names unknown columns, differs from the table's, or targets the analytics tier.
    InvalidPartitioning = 2602, INVALID_PARTITIONING, InvalidArgument, 400,
        "partition lake-tier tables only, by existing columns, as the table already is";
    /// A custom table's name lacks the tier suffix.
    MissingTableSuffix = 2603, MISSING_TABLE_SUFFIX, InvalidArgument, 400,
        "name lake-tier tables <Name>_SPRK and analytics-tier tables <Name>_SPRK_CL";
    /// A write or delete the table's kind does not allow.
    InvalidWrite = 2604, INVALID_WRITE, PermissionDenied, 403,
        "write to a custom table (<Name>_SPRK or <Name>_SPRK_CL); system tables are read-only and only lake-tier tables can be deleted";
    /// Another write committed to the table first.
    WriteConflict = 2605, WRITE_CONFLICT, Aborted, 409,
        "run the write again; nothing of this one was committed";
    /// The statement reads or writes files outside the lake.
    PathOutsideLake = 2206, PATH_OUTSIDE_LAKE, PermissionDenied, 403,
        "query lake tables by name; only operators may name files or locations";
    /// The caller of an internal port is not a Tarn role of this cluster, or its role may not make the call.
    ClusterCredentialRefused = 2207, CLUSTER_CREDENTIAL_REFUSED, PermissionDenied, 403,
        "internal ports (coordinator, executors) take only Tarn roles with a certificate of this cluster's CA; users go through the gateway";
    /// An executor refused a plan with a node, file format or path Tarn does not produce.
    PlanRefused = 2208, PLAN_REFUSED, PermissionDenied, 403,
        "send queries through the gateway; executors run only the plans Tarn makes over lake tables";
    /// A direct run came without a valid, unused reservation signed by the coordinator.
    ReservationInvalid = 2209, RESERVATION_INVALID, PermissionDenied, 403,
        "send queries through the gateway; it reserves vCores before each direct run";
    /// An HTTP request's Host or Origin is not one the gateway serves.
    OriginNotAllowed = 2210, ORIGIN_NOT_ALLOWED, PermissionDenied, 403,
        "open the gateway by an allowed host name, or ask an operator to add yours to http_allowed_hosts / http_allowed_origins";
    /// A request body is not of the media type the endpoint takes.
    UnsupportedMediaType = 2211, UNSUPPORTED_MEDIA_TYPE, InvalidArgument, 415,
        "send the body as application/json";
    /// A kernel already has the most cells waiting to run.
    KernelQueueFull = 2311, KERNEL_QUEUE_FULL, ResourceExhausted, 429,
        "wait for the queued cells to finish, or interrupt the kernel";
    /// A session holds the most prepared statements allowed.
    TooManyPreparedStatements = 2312, TOO_MANY_PREPARED_STATEMENTS, ResourceExhausted, 429,
        "close prepared statements you no longer use";
    /// A user holds the most sessions (or kernels) allowed.
    TooManySessions = 2313, TOO_MANY_SESSIONS, ResourceExhausted, 429,
        "close sessions or kernels you no longer use";
    /// A statement needed more memory than its share.
    MemoryLimitExceeded = 2904, MEMORY_LIMIT_EXCEEDED, ResourceExhausted, 507,
        "narrow the query (filter by TimeGenerated, fewer columns, a LIMIT), or lease more vCores for a larger memory share";
    /// Something inside Tarn failed; this is a bug or an outage.
    Internal = 2901, INTERNAL, Internal, 500,
        "retry; if it persists, report it with the time and the query";
    /// This coordinator is a standby; another one leads.
    NotLeader = 2902, NOT_LEADER, Unavailable, 503,
        "send the request to the leading coordinator (its address is in Health); clients given every coordinator's address do this themselves";
    /// The state store (embedded file or etcd) cannot be read or written.
    StateStoreUnavailable = 2903, STATE_STORE_UNAVAILABLE, Unavailable, 503,
        "retry shortly; if it persists, an operator should check the coordinator's state directory or etcd";
}

impl ErrorCode {
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
        self.spec().name
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

    /// A failure inside Tarn (2901): `what` names what could not be done.
    pub fn internal(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, what)
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
    ///
    /// A status without a Tarn code did not come from a Tarn role's error
    /// path (a proxy, the transport, a foreign server): it keeps its gRPC
    /// class (NOT_FOUND stays a not-found, UNAVAILABLE a pool/peer outage)
    /// and its message says what answered, so nobody reads it as ours.
    pub fn from_status(status: &tonic::Status) -> Self {
        let coded = status
            .metadata()
            .get(ERROR_CODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .and_then(ErrorCode::from_number);
        let Some(code) = coded else {
            return Self::uncoded(status);
        };
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

    /// A status that carries no Tarn code, classed by its gRPC code.
    fn uncoded(status: &tonic::Status) -> Self {
        use tonic::Code as G;
        let code = match status.code() {
            G::NotFound => ErrorCode::NotFound,
            G::Unavailable | G::DeadlineExceeded => ErrorCode::PoolNotAvailable,
            G::Cancelled => ErrorCode::Cancelled,
            G::Unauthenticated => ErrorCode::Unauthenticated,
            G::PermissionDenied => ErrorCode::AccessDenied,
            G::InvalidArgument | G::OutOfRange | G::FailedPrecondition => {
                ErrorCode::InvalidArgument
            }
            G::Unimplemented => ErrorCode::Unsupported,
            _ => ErrorCode::Internal,
        };
        let what = status.code().description();
        Self::new(
            code,
            format!(
                "the peer answered '{what}' without a Tarn code: {}",
                status.message()
            ),
        )
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

    #[test]
    fn an_uncoded_status_says_what_answered() {
        let e = TarnError::from_status(&tonic::Status::not_found("no route /x"));
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("without a Tarn code"), "{e}");
        assert!(e.message.contains("no route /x"), "{e}");
        let e = TarnError::from_status(&tonic::Status::internal("boom"));
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(e.message.contains("boom"), "{e}");
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
