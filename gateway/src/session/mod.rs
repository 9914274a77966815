//! Sessions and statement planning.
//!
//! A session is a vCore lease from the coordinator's interactive pool plus
//! a DataFusion context upgraded for Ballista: statements are planned here
//! (the catalog is the lake) and every plan runs as a Ballista job named
//! `query@lease`, so the coordinator binds its tasks within the lease. A
//! session's queries get `target_partitions` equal to its leased vCores, so
//! a scan is split into as many tasks as the session may run at once — not
//! Ballista's default of 16. `SET datafusion.execution.target_partitions`
//! changes that for the session (the lease still caps tasks at once).

mod lake;
mod params;
mod plan;
mod registry;
mod settings;

pub use lake::{planning_config, refresh_lake, with_lake};
pub use params::{bind_parameters, number_placeholders};
pub use plan::{prepare, prepare_kql, Language, Prepared};
pub use registry::{SessionLimits, PASS_PREFIX};
pub use settings::{with_config, with_setting};

use std::sync::Arc;

use dashmap::DashMap;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use tarn_common::TarnError;
use tarn_lake::Lake;

use crate::lease::LeaseClient;

/// One client's session.
#[derive(Debug)]
pub struct Session {
    /// Opaque id (also the bearer token in dev mode).
    pub id: String,
    /// Who opened it.
    pub user: String,
    /// What they may do, per workspace.
    pub grants: tarn_common::roles::Grants,
    /// The coordinator lease it holds.
    pub lease_id: String,
    /// vCores leased.
    pub vcores: u32,
    /// When it opened (ms since epoch).
    pub opened_ms: u64,
    /// When the credential that opened it stops being accepted (ms since
    /// the epoch); `None` in dev mode without a token.
    pub credential_expires_ms: Option<u64>,
    /// The token that opened it, for requests that send the token itself
    /// rather than the session id.
    pub token: Option<String>,
    /// Whether the idle warning was given since the last use.
    warned: std::sync::atomic::AtomicBool,
    /// Default workspace for unqualified table names.
    pub workspace: parking_lot::RwLock<String>,
    /// The Ballista-upgraded state statements are planned with.
    state: parking_lot::RwLock<SessionState>,
    /// When a request last used the session.
    last_used: parking_lot::Mutex<std::time::Instant>,
    /// Set on a job run's session: its statements run under the run's
    /// time limit and its writes commit once per run.
    pub job: Option<Arc<JobScope>>,
    /// The time KQL's `now()` and `ago()` answer in this session, pinned
    /// by a `set query_now = datetime(…);` sent alone (reproducible
    /// notebooks); `None`: each query's start.
    pub kql_now: parking_lot::RwLock<Option<chrono::DateTime<chrono::Utc>>>,
    /// Work in progress that is not a query (a kernel's process starting):
    /// the session does not end by inactivity meanwhile.
    held: std::sync::atomic::AtomicUsize,
}

/// Keeps a session from ending by inactivity while it lives; using the
/// session again when it drops.
pub struct Hold<'a>(&'a Session);

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0
            .held
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What a job run's session knows of the run, so that statements a
/// notebook sends on its own (a `tarn-python` cell calling `lake`) are held
/// to the run's timeout and written exactly once, as the runner's own
/// statements are.
#[derive(Debug)]
pub struct JobScope {
    /// The job.
    pub job_id: String,
    /// The run's submission number: the Delta application-transaction
    /// version its writes commit with.
    pub seq: i64,
    /// When the run must be done.
    pub deadline: std::time::Instant,
    /// The run's timeout (for the error that names it).
    pub timeout: std::time::Duration,
    cursor: parking_lot::Mutex<(usize, u32)>,
    writes: parking_lot::Mutex<Vec<ScopedWrite>>,
}

/// One write a job's statement made (or found made by an earlier attempt).
#[derive(Debug, Clone)]
pub struct ScopedWrite {
    /// `workspace.table`.
    pub table: String,
    /// The write's id (its receipt), or `None` when an earlier attempt of
    /// the run had committed it and it was skipped.
    pub txn: Option<String>,
}

impl JobScope {
    /// A run's scope.
    pub fn new(
        job_id: String,
        seq: i64,
        deadline: std::time::Instant,
        timeout: std::time::Duration,
    ) -> Self {
        Self {
            job_id,
            seq,
            deadline,
            timeout,
            cursor: parking_lot::Mutex::new((0, 0)),
            writes: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// The run moves on to `cell`: its writes are numbered from 0 again.
    pub fn begin_cell(&self, cell: usize) {
        *self.cursor.lock() = (cell, 0);
    }

    /// The application id of the next write: the job, the cell and the
    /// write's place in it. A retried run makes the same writes in the
    /// same order, so each finds its own earlier commit.
    pub fn next_app_id(&self) -> String {
        let mut c = self.cursor.lock();
        let id = format!("tarn-job/{}/{}.w{}", self.job_id, c.0, c.1);
        c.1 += 1;
        id
    }

    /// Notes a write of the current cell.
    pub fn record(&self, write: ScopedWrite) {
        self.writes.lock().push(write);
    }

    /// The writes noted since the last call.
    pub fn take_writes(&self) -> Vec<ScopedWrite> {
        std::mem::take(&mut *self.writes.lock())
    }

    /// How long the run has left.
    pub fn left(&self) -> std::time::Duration {
        self.deadline
            .saturating_duration_since(std::time::Instant::now())
    }
}

impl Session {
    /// Marks the session used now (and owed a new idle warning).
    pub fn touch(&self) {
        *self.last_used.lock() = std::time::Instant::now();
        self.warned
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// How long nobody used it.
    pub fn idle_for(&self) -> std::time::Duration {
        self.last_used.lock().elapsed()
    }

    /// Holds the session open (not ended by inactivity) until the guard
    /// drops, which counts as a use.
    pub fn hold(&self) -> Hold<'_> {
        self.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Hold(self)
    }

    /// Whether something holds it open.
    pub fn is_held(&self) -> bool {
        self.held.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// The default workspace for unqualified names.
    pub fn workspace(&self) -> String {
        self.workspace.read().clone()
    }
}

/// A planned statement, ready to run.
pub struct Planned {
    /// The logical plan (placeholders still unbound for prepared statements).
    /// A `SET` statement is applied while planning and yields an empty plan.
    pub plan: LogicalPlan,
    /// The state to execute it with (carries the Ballista job name).
    pub state: SessionState,
    /// What must happen once it ran (a write's commit, a drop).
    pub effect: crate::write::Effect,
}

/// All sessions of this gateway.
#[derive(Debug)]
pub struct Sessions {
    lake: Arc<Lake>,
    scheduler_url: String,
    leases: LeaseClient,
    default_workspace: String,
    sessions: DashMap<String, Arc<Session>>,
    /// Why recently ended sessions ended.
    ended: DashMap<String, TarnError>,
    /// Every session that ends, with why (kernels close their websockets).
    events: tokio::sync::broadcast::Sender<(String, TarnError)>,
    /// Operator-set DataFusion/Ballista defaults of every session.
    settings: Vec<(String, String)>,
    /// Memory and count limits.
    limits: SessionLimits,
    /// The memory pool of everything the gateway runs itself, shared by
    /// every session so that together they stay within it.
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    /// The gateway's query counters.
    metrics: Arc<crate::metrics::GatewayMetrics>,
    /// Credentials handed to hosted kernels, each good for one session.
    passes: DashMap<String, registry::Pass>,
}
