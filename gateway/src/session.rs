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

use std::sync::Arc;

use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use dashmap::DashMap;
use datafusion::common::{ParamValues, TableReference};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionConfig};
use datafusion::sql::parser::Statement as DFStatement;
use tarn_common::{ErrorCode, TarnError, CATALOG};
use tarn_lake::{Lake, LakeCatalog, LakeLogicalCodec};

use crate::auth::Identity;
use crate::error::from_datafusion;
use crate::lease::{LeaseClient, LeaseWish};

/// How many ended sessions are remembered, so a late request learns why
/// its session ended rather than only that it is unknown.
const REMEMBER_ENDED: usize = 4096;

/// Session settings `SET` may change; everything else is fixed by Tarn.
const SETTABLE: &[&str] = &[
    "datafusion.execution.target_partitions",
    "datafusion.execution.batch_size",
];

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

    /// The default workspace for unqualified names.
    pub fn workspace(&self) -> String {
        self.workspace.read().clone()
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
}

/// Per-gateway limits on sessions and what planning may compute.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Bytes of constants one optimizer pass may compute (see `fold`).
    pub max_constant_bytes: usize,
    /// Bytes the gateway's own operators may hold, all sessions together.
    pub memory_pool_bytes: usize,
    /// Open sessions per user.
    pub max_sessions_per_user: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        let o = crate::GatewayOptions::default();
        Self {
            max_constant_bytes: o.max_constant_bytes,
            memory_pool_bytes: o.memory_pool_bytes,
            max_sessions_per_user: o.max_sessions_per_user,
        }
    }
}

fn runtime_with_pool(bytes: usize) -> Arc<datafusion::execution::runtime_env::RuntimeEnv> {
    datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_limit(bytes.max(1024 * 1024), 1.0)
        .build_arc()
        .expect("invariant: a memory-limited runtime with default parts builds")
}

impl Sessions {
    /// How many sessions are open.
    pub fn open_count(&self) -> usize {
        self.sessions.len()
    }

    /// A session table over `lake`, submitting to the scheduler at
    /// `scheduler_url` and leasing vCores through `leases`.
    pub fn new(
        lake: Arc<Lake>,
        scheduler_url: String,
        leases: LeaseClient,
        default_workspace: String,
    ) -> Self {
        Self {
            lake,
            scheduler_url,
            leases,
            default_workspace,
            sessions: DashMap::new(),
            ended: DashMap::new(),
            events: tokio::sync::broadcast::channel(1024).0,
            settings: Vec::new(),
            runtime: runtime_with_pool(SessionLimits::default().memory_pool_bytes),
            limits: SessionLimits::default(),
            metrics: Arc::default(),
        }
    }

    /// The gateway's query counters.
    pub fn metrics(&self) -> &Arc<crate::metrics::GatewayMetrics> {
        &self.metrics
    }

    /// Sessions within `limits`.
    pub fn with_limits(mut self, limits: SessionLimits) -> Self {
        self.runtime = runtime_with_pool(limits.memory_pool_bytes);
        self.limits = limits;
        self
    }

    /// Refuses a session for `user` when they would hold more than the
    /// most allowed; `opened` says whether the new one is already counted.
    fn check_user_sessions(&self, user: &str, opened: bool) -> Result<(), TarnError> {
        let max = self.limits.max_sessions_per_user;
        let held = self.sessions.iter().filter(|s| s.user == user).count() + usize::from(!opened);
        if held > max {
            return Err(TarnError::new(
                ErrorCode::TooManySessions,
                format!(
                    "user '{user}' already holds {max} sessions or kernels on this gateway, \
                     the most allowed (max_sessions_per_user)"
                ),
            ));
        }
        Ok(())
    }

    /// Every session starts with `settings` (`key=value,key=value`),
    /// which must be DataFusion or Ballista settings.
    pub fn with_settings(mut self, settings: &str) -> Result<Self, TarnError> {
        let mut probe = SessionConfig::new_with_ballista();
        for pair in settings.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    TarnError::new(
                        ErrorCode::InvalidArgument,
                        format!("session setting {pair:?} is not key=value"),
                    )
                    .with_fix(
                        "write session_settings as key=value pairs separated by commas, \
                         e.g. ballista.shuffle.compression.codec=none",
                    )
                })?;
            if key.eq_ignore_ascii_case("datafusion.execution.target_partitions") {
                return Err(TarnError::new(
                    ErrorCode::InvalidArgument,
                    "target_partitions cannot be a session default: each session's lease decides it",
                )
                .with_fix("set session_vcores or session_size instead"));
            }
            probe.options_mut().set(&key, &value).map_err(|e| {
                TarnError::new(
                    ErrorCode::InvalidArgument,
                    format!("session setting {key}={value} is not accepted: {e}"),
                )
                .with_fix(
                    "use a datafusion.* or ballista.* setting name with a value of its type, \
                     or remove it from session_settings",
                )
            })?;
            self.settings.push((key, value));
        }
        Ok(self)
    }

    /// Sessions ending from now on, with why.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<(String, TarnError)> {
        self.events.subscribe()
    }

    fn ended(&self, id: &str, why: TarnError) {
        if self.ended.len() >= REMEMBER_ENDED {
            self.ended.clear();
        }
        self.ended.insert(id.to_string(), why.clone());
        let _ = self.events.send((id.to_string(), why));
    }

    /// The lease client.
    pub fn leases(&self) -> &LeaseClient {
        &self.leases
    }

    /// Open sessions.
    pub fn list(&self) -> Vec<Arc<Session>> {
        let mut v: Vec<Arc<Session>> = self.sessions.iter().map(|s| Arc::clone(&s)).collect();
        v.sort_by_key(|s| s.opened_ms);
        v
    }

    /// Renews every session's lease; sessions whose lease is gone end.
    /// Returns how many ended.
    pub async fn heartbeat(&self) -> Result<usize, TarnError> {
        let ids: Vec<String> = self.sessions.iter().map(|s| s.lease_id.clone()).collect();
        let gone = self.leases.renew(ids).await?;
        let gone: std::collections::HashSet<String> = gone.into_iter().collect();
        let mut ended = Vec::new();
        self.sessions.retain(|id, s| {
            let keep = !gone.contains(&s.lease_id);
            if !keep {
                ended.push(id.clone());
            }
            keep
        });
        for id in &ended {
            self.ended(
                id,
                TarnError::new(
                    ErrorCode::SessionNotFound,
                    "the session ended: its vCore lease expired at the coordinator",
                ),
            );
        }
        Ok(ended.len())
    }

    /// The lake.
    pub fn lake(&self) -> &Arc<Lake> {
        &self.lake
    }

    /// Opens a session for `who`: takes a lease (or returns the
    /// coordinator's refusal: capacity, user limit, no executors).
    pub async fn open(&self, who: &Identity, wish: &LeaseWish) -> Result<Arc<Session>, TarnError> {
        let user = who.user.as_str();
        self.check_user_sessions(user, false)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let lease = self
            .leases
            .acquire(user, &self.default_workspace, wish, &id)
            .await?;
        let state = match self.build_state(&id, lease.vcores as usize, &who.grants) {
            Ok(s) => s,
            Err(e) => {
                self.leases.release(lease.lease_id).await;
                return Err(e);
            }
        };
        let session = Arc::new(Session {
            id: id.clone(),
            user: user.to_string(),
            grants: who.grants.clone(),
            lease_id: lease.lease_id,
            vcores: lease.vcores,
            opened_ms: lease.created_unix_ms,
            credential_expires_ms: who.expires_ms,
            token: who.token.clone(),
            warned: std::sync::atomic::AtomicBool::new(false),
            workspace: parking_lot::RwLock::new(self.default_workspace.clone()),
            state: parking_lot::RwLock::new(state),
            last_used: parking_lot::Mutex::new(std::time::Instant::now()),
        });
        self.sessions.insert(id.clone(), Arc::clone(&session));
        // Two opens racing past the first check: the later one gives way.
        if let Err(e) = self.check_user_sessions(user, true) {
            self.sessions.remove(&id);
            self.leases.release(session.lease_id.clone()).await;
            tracing::info!(user, "session refused: {e}");
            return Err(e);
        }
        tracing::info!(session = %session.id, user, vcores = session.vcores, "session opened");
        Ok(session)
    }

    /// A session by id; using it keeps it alive.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.sessions.get(id).map(|s| Arc::clone(&s))?;
        s.touch();
        Some(s)
    }

    /// A session by id for a request: refused once the credential that
    /// opened it expired, and with the reason if it ended.
    pub fn lookup(&self, id: &str) -> Result<Arc<Session>, TarnError> {
        let Some(s) = self.sessions.get(id).map(|s| Arc::clone(&s)) else {
            return Err(self
                .ended
                .get(id)
                .map(|e| e.clone())
                .unwrap_or_else(|| TarnError::new(ErrorCode::SessionNotFound, "no such session")));
        };
        if let Some(exp) = s.credential_expires_ms {
            if now_ms() >= exp {
                return Err(TarnError::new(
                    ErrorCode::CredentialsExpired,
                    format!(
                        "the credential of '{}' that opened this session has expired",
                        s.user
                    ),
                )
                .with_fix(format!(
                    "mint a new token (`tarn token --key-file <key> --user {}`) and connect again",
                    s.user
                )));
            }
        }
        s.touch();
        Ok(s)
    }

    /// Sessions idle for at least `after` that were not warned since they
    /// were last used; each is marked warned.
    pub fn to_warn(&self, after: std::time::Duration) -> Vec<Arc<Session>> {
        self.sessions
            .iter()
            .filter(|s| s.idle_for() >= after)
            .filter(|s| !s.warned.swap(true, std::sync::atomic::Ordering::SeqCst))
            .map(|s| Arc::clone(&s))
            .collect()
    }

    /// Ends sessions unused for longer than `max_idle`, except those
    /// `busy` says are still streaming a result, and gives their leases
    /// back; returns how many ended.
    pub async fn expire_idle(
        &self,
        max_idle: std::time::Duration,
        busy: impl Fn(&str) -> bool,
    ) -> usize {
        let mut ended = Vec::new();
        self.sessions.retain(|id, s| {
            let keep = s.last_used.lock().elapsed() <= max_idle || busy(id);
            if !keep {
                ended.push((id.clone(), s.lease_id.clone()));
            }
            keep
        });
        let n = ended.len();
        for (id, lease) in ended {
            // vCores first, so whoever hears of the end finds them free.
            self.leases.release(lease).await;
            self.ended(
                &id,
                TarnError::new(
                    ErrorCode::SessionTimedOut,
                    format!(
                        "the session ended after {} of inactivity, and its vCores went back to the pool",
                        tarn_common::auth::human(max_idle.as_secs())
                    ),
                ),
            );
            tracing::info!(session = %id, "session ended after inactivity");
        }
        n
    }

    /// Whether a session id is still open.
    pub fn is_open(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    /// Closes a session and gives its lease back.
    pub async fn close(&self, id: &str) -> bool {
        match self.sessions.remove(id) {
            Some((_, s)) => {
                self.leases.release(s.lease_id.clone()).await;
                self.ended(
                    id,
                    TarnError::new(ErrorCode::SessionNotFound, "the session was closed"),
                );
                tracing::info!(session = %id, "session closed");
                true
            }
            None => false,
        }
    }

    /// Gives back every session's lease (gateway shutdown).
    pub async fn close_all(&self) {
        let ids: Vec<String> = self.sessions.iter().map(|s| s.id.clone()).collect();
        for id in ids {
            self.close(&id).await;
        }
    }

    fn build_state(
        &self,
        session_id: &str,
        vcores: usize,
        grants: &tarn_common::roles::Grants,
    ) -> Result<SessionState, TarnError> {
        let mut config = planning_config(&self.default_workspace, vcores)
            .with_ballista_logical_extension_codec(Arc::new(LakeLogicalCodec::default()))
            .with_ballista_physical_extension_codec(Arc::new(
                tarn_lake::LakePhysicalCodec::default(),
            ))
            .with_ballista_job_name("tarn-query")
            // Ballista's clients (job submission, result fetches) dial the
            // coordinator and executors over the cluster's mutual TLS.
            .with_ballista_override_create_grpc_client_endpoint(Arc::new(
                tarn_common::cluster::secure_endpoint,
            ))
            // Jobs are planned by Ballista's static planner. The adaptive
            // one replaces empty subplans with multi-partition `EmptyExec`s
            // as stages finish, which Ballista then cannot restrict to a
            // task's partitions: a union over such a branch wrote some
            // partitions twice (a CTAS failed "partition result … came back
            // twice") — and it ignores the scheduler session's planner
            // rules Tarn relies on (`tarn_lake::leaves`).
            .with_ballista_adaptive_query_planner(false);
        for (key, value) in &self.settings {
            // Checked when the gateway started.
            let _ = config.options_mut().set(key, value);
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_runtime_env(Arc::clone(&self.runtime))
            .with_session_id(session_id.to_string())
            .build();
        let state = state
            .upgrade_for_ballista(self.scheduler_url.clone())
            .map_err(|e| {
                TarnError::new(ErrorCode::Internal, format!("cannot create session: {e}"))
            })?;
        // After the upgrade, which replaces the scalar functions.
        with_lake(state, &self.lake, grants, self.limits.max_constant_bytes)
    }

    /// A catalog list holding only the `tarn` catalog as `grants` sees it
    /// (a run with narrower grants than its session's gets its own).
    fn catalogs_for(
        &self,
        grants: &tarn_common::roles::Grants,
    ) -> Arc<dyn datafusion::catalog::CatalogProviderList> {
        let list = datafusion::catalog::MemoryCatalogProviderList::new();
        datafusion::catalog::CatalogProviderList::register_catalog(
            &list,
            CATALOG.to_string(),
            lake_catalog(&self.lake, grants),
        );
        Arc::new(list)
    }

    /// Parses, resolves and plans one statement for `session` in `workspace`.
    ///
    /// Every table the statement names is resolved against the lake first,
    /// so an unknown workspace or table gets its own coded error rather than
    /// a generic planning failure.
    pub async fn plan(
        &self,
        session: &Session,
        workspace: &str,
        sql: &str,
        query_id: &str,
    ) -> Result<Planned, TarnError> {
        self.plan_as(session, &session.grants, workspace, sql, query_id)
            .await
    }

    /// Like [`Sessions::plan`], checked against `grants` instead of the
    /// session's own: a kernel plans each cell with the grants of the
    /// credential that sent it (never more than the session's). The
    /// catalog then shows only the workspaces `grants` sees, so
    /// `information_schema` and name resolution narrow with them.
    pub async fn plan_as(
        &self,
        session: &Session,
        grants: &tarn_common::roles::Grants,
        workspace: &str,
        sql: &str,
        query_id: &str,
    ) -> Result<Planned, TarnError> {
        let planned = self
            .plan_checked(session, grants, workspace, sql, query_id)
            .await;
        // A statement refused before it runs ends here: counted by its
        // code, as a run's failure is counted when its stream ends.
        if let Err(e) = &planned {
            self.metrics.queries.inc(e.code.name());
        }
        planned
    }

    async fn plan_checked(
        &self,
        session: &Session,
        grants: &tarn_common::roles::Grants,
        workspace: &str,
        sql: &str,
        query_id: &str,
    ) -> Result<Planned, TarnError> {
        let base = session.state.read().clone();
        // The job name carries the lease: the coordinator binds the job's
        // tasks within it, and refuses the job if the lease has ended.
        let mut config = base
            .config()
            .clone()
            .with_ballista_job_name(&format!("{query_id}@{}", session.lease_id));
        config.options_mut().catalog.default_schema = workspace.to_string();
        let mut builder = SessionStateBuilder::new_from_existing(base).with_config(config);
        if grants != &session.grants {
            builder = builder.with_catalog_list(self.catalogs_for(grants));
        }
        let state = builder.build();
        match prepare(&self.lake, &state, grants, workspace, sql).await? {
            Prepared::Plan { plan, effect } => Ok(Planned {
                plan,
                state,
                effect,
            }),
            Prepared::Set { key, value } => {
                apply_set(session, &key, value)?;
                let empty = LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                });
                Ok(Planned {
                    plan: empty,
                    state,
                    effect: crate::write::Effect::Nothing,
                })
            }
        }
    }

    /// The state a session plans with, named for one run (ingest plans
    /// its write here).
    pub fn run_state(&self, session: &Session, workspace: &str, query_id: &str) -> SessionState {
        let base = session.state.read().clone();
        let mut config = base
            .config()
            .clone()
            .with_ballista_job_name(&format!("{query_id}@{}", session.lease_id));
        config.options_mut().catalog.default_schema = workspace.to_string();
        SessionStateBuilder::new_from_existing(base)
            .with_config(config)
            .build()
    }

    /// Re-lists workspaces and their tables (for information_schema and
    /// metadata calls, which must show the current lake).
    pub async fn refresh_all(&self) -> Result<Vec<String>, TarnError> {
        refresh_lake(&self.lake).await
    }
}

/// The configuration every statement is planned with, for a session of
/// `partitions` vCores whose default workspace is `default_workspace`:
/// Ballista's settings (which the cluster reads from it), the `tarn`
/// catalog only, `information_schema`, identifiers as typed.
pub fn planning_config(default_workspace: &str, partitions: usize) -> SessionConfig {
    let mut config = SessionConfig::new_with_ballista()
        .with_target_partitions(partitions.max(1))
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG, default_workspace)
        .with_create_default_catalog_and_schema(false);
    // Analysts type `SigninLogs.UserPrincipalName` exactly as the
    // schema spells it; lower-casing unquoted identifiers would break
    // every CamelCase name in the lake.
    config.options_mut().sql_parser.enable_ident_normalization = false;
    config.options_mut().execution.collect_statistics = true;
    config
}

/// Adds Tarn's planning parts to a DataFusion state: bounded constant
/// folding (`max_constant_bytes`, see [`crate::fold`]), the series table
/// functions, and the lake as the `tarn` catalog of a caller holding
/// `grants`.
pub fn with_lake(
    state: SessionState,
    lake: &Arc<Lake>,
    grants: &tarn_common::roles::Grants,
    max_constant_bytes: usize,
) -> Result<SessionState, TarnError> {
    let mut state = crate::fold::guard(state, max_constant_bytes);
    // Series functions that can travel to the cluster (see
    // `tarn_lake::series`); `table_functions` allows only these.
    for name in tarn_lake::series::NAMES {
        let f = tarn_lake::series::SeriesFunction::new(name).map_err(|e| {
            TarnError::new(ErrorCode::Internal, format!("cannot create session: {e}"))
        })?;
        state.register_udtf(name, Arc::new(f));
    }
    state
        .catalog_list()
        .register_catalog(CATALOG.to_string(), lake_catalog(lake, grants));
    Ok(state)
}

/// The lake as the `tarn` catalog of a caller holding `grants`.
fn lake_catalog(
    lake: &Arc<Lake>,
    grants: &tarn_common::roles::Grants,
) -> Arc<dyn datafusion::catalog::CatalogProvider> {
    // Workspaces the user holds no role in are not there at all: not
    // in SHOW SCHEMAS, information_schema, nor name resolution.
    Arc::new(LakeCatalog::with_visible(Arc::clone(lake), {
        let grants = grants.clone();
        Arc::new(move |ws: &str| grants.sees(ws))
    }))
}

/// One statement, checked and planned, before it runs.
#[derive(Debug)]
pub enum Prepared {
    /// A query or a write, and what must happen once it ran.
    Plan {
        /// The logical plan (placeholders still unbound for prepared
        /// statements).
        plan: LogicalPlan,
        /// A write's commit, a drop, or nothing.
        effect: crate::write::Effect,
    },
    /// `SET <key> = <value>` of a setting users may change.
    Set {
        /// The setting, lower-cased.
        key: String,
        /// Its new value.
        value: usize,
    },
}

/// Parses, checks and plans one statement in `state` (whose default
/// schema is `workspace`) for a caller holding `grants`: the one path every
/// statement takes, whether a session's on the cluster or one run in
/// process ([`crate::local`]).
///
/// Every table the statement names is resolved against the lake first,
/// so an unknown workspace or table gets its own coded error rather than
/// a generic planning failure.
pub async fn prepare(
    lake: &Arc<Lake>,
    state: &SessionState,
    grants: &tarn_common::roles::Grants,
    workspace: &str,
    sql: &str,
) -> Result<Prepared, TarnError> {
    let sql = number_placeholders(sql);
    let statement = state
        .sql_to_statement(&sql, &datafusion::config::Dialect::Generic)
        .map_err(|e| from_datafusion(&e))?;
    let write = crate::write::classify(&statement, grants)?;
    if write.is_none() {
        check_read_only(&statement)?;
    }
    let calls = crate::table_functions::called(&statement);
    crate::table_functions::check(&calls)?;
    let refs = state
        .resolve_table_references(&statement)
        .map_err(|e| from_datafusion(&e))?;
    // The table a write creates or deletes need not resolve; its
    // checks are the write's own. A target that is no table name (a path,
    // a name a table cannot have) is refused as such, not looked up.
    let skip = match &write {
        Some(crate::write::WriteStatement::CreateAs { name, .. })
        | Some(crate::write::WriteStatement::Drop { name, .. })
        | Some(crate::write::WriteStatement::Insert { name, .. }) => {
            Some(crate::write::target(name, workspace)?)
        }
        None => None,
    };
    let mut wants_listing = false;
    for r in refs {
        // A table function, not a table (checked above).
        if r.schema().is_none() && calls.contains(r.table()) {
            continue;
        }
        if let Some((ws, t)) = &skip {
            if r.schema().unwrap_or(workspace) == ws && r.table() == t {
                continue;
            }
        }
        check_reference(lake, &r, workspace, grants, &mut wants_listing).await?;
    }
    if wants_listing {
        refresh_lake(lake).await?;
    }
    if let Some(w) = write {
        let (plan, effect) =
            crate::write::plan_statement(lake, state, grants, workspace, statement, w).await?;
        return Ok(Prepared::Plan { plan, effect });
    }
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|e| from_datafusion(&e))?;
    if let LogicalPlan::Statement(datafusion::logical_expr::Statement::SetVariable(set)) = &plan {
        let (key, value) = settable(&set.variable, &set.value)?;
        return Ok(Prepared::Set { key, value });
    }
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| {
            TarnError::new(
                ErrorCode::Unsupported,
                format!("only queries run here: {}", e.strip_backtrace()),
            )
            .with_fix("send SELECT (or WITH … SELECT, SHOW, DESCRIBE, EXPLAIN) statements")
        })?;
    Ok(Prepared::Plan {
        plan,
        effect: crate::write::Effect::Nothing,
    })
}

/// Checks that a table a statement names exists and that the caller may
/// read it; `information_schema` asks for a fresh listing instead.
async fn check_reference(
    lake: &Arc<Lake>,
    r: &TableReference,
    default_ws: &str,
    grants: &tarn_common::roles::Grants,
    wants_listing: &mut bool,
) -> Result<(), TarnError> {
    for part in [r.schema(), Some(r.table())].into_iter().flatten() {
        crate::write::refuse_path(part)?;
    }
    if let Some(c) = r.catalog() {
        if c != CATALOG {
            return Err(TarnError::new(
                ErrorCode::WorkspaceNotFound,
                format!("catalog '{c}' does not exist; Tarn's only catalog is '{CATALOG}'"),
            )
            .with_fix(format!(
                "write {CATALOG}.<workspace>.<table>, <workspace>.<table> or <table>"
            )));
        }
    }
    let ws = r.schema().unwrap_or(default_ws);
    if ws == "information_schema" {
        *wants_listing = true;
        return Ok(());
    }
    grants.require(ws, tarn_common::roles::Role::Reader, "reading a table")?;
    let workspace = lake.workspace(ws).await.map_err(|e| e.to_tarn())?;
    workspace.table(r.table()).await.map_err(|e| e.to_tarn())?;
    Ok(())
}

/// Re-lists the lake's workspaces and their tables.
pub async fn refresh_lake(lake: &Arc<Lake>) -> Result<Vec<String>, TarnError> {
    let names = lake.refresh().await.map_err(|e| e.to_tarn())?;
    for n in &names {
        if let Ok(ws) = lake.workspace(n).await {
            ws.refresh().await.map_err(|e| e.to_tarn())?;
        }
    }
    Ok(names)
}

/// JDBC/ODBC/ADBC clients write parameters as `?`; DataFusion numbers them
/// (`$1`, `$2`, …). Rewrites each `?` token — never one inside a string or a
/// quoted name — to its position.
pub fn number_placeholders(sql: &str) -> String {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    if !sql.contains('?') {
        return sql.to_string();
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        // Let the parser report the error on the original text.
        return sql.to_string();
    };
    // Only the `?` characters themselves are replaced, found by their token
    // positions; every other byte (escaped quotes included) stays as sent.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut at: Vec<usize> = tokens
        .iter()
        .filter(|t| matches!(&t.token, Token::Placeholder(p) if p == "?"))
        .filter_map(|t| {
            let line = *line_starts.get((t.span.start.line as usize).checked_sub(1)?)?;
            let col = (t.span.start.column as usize).checked_sub(1)?;
            let (offset, ch) = sql[line..].char_indices().nth(col)?;
            (ch == '?').then_some(line + offset)
        })
        .collect();
    at.sort_unstable();
    let mut out = String::with_capacity(sql.len() + at.len() * 2);
    let mut last = 0;
    for (n, pos) in at.iter().enumerate() {
        out.push_str(&sql[last..*pos]);
        out.push_str(&format!("${}", n + 1));
        last = pos + 1;
    }
    out.push_str(&sql[last..]);
    out
}

/// The setting `SET <variable> = <value>` may change, and its value: only
/// the settings on [`SETTABLE`], each to a number from 1 to 4096.
fn settable(variable: &str, value: &str) -> Result<(String, usize), TarnError> {
    let key = variable.to_ascii_lowercase();
    if !SETTABLE.contains(&key.as_str()) {
        return Err(TarnError::new(
            ErrorCode::Unsupported,
            format!("{variable} cannot be set in a Tarn session"),
        )
        .with_fix(format!("settable: {}", SETTABLE.join(", "))));
    }
    let n: usize = value
        .trim_matches(['\'', '"'])
        .parse()
        .ok()
        .filter(|n| (1..=4096).contains(n))
        .ok_or_else(|| {
            TarnError::new(
                ErrorCode::InvalidArgument,
                format!("{variable} takes a number from 1 to 4096, not {value:?}"),
            )
        })?;
    Ok((key, n))
}

/// `state` with the setting `key` (a setting `SET` may change) set to `value`.
pub fn with_setting(
    state: &SessionState,
    key: &str,
    value: usize,
) -> Result<SessionState, TarnError> {
    let mut config = state.config().clone();
    config
        .options_mut()
        .set(key, &value.to_string())
        .map_err(|e| from_datafusion(&e))?;
    Ok(SessionStateBuilder::new_from_existing(state.clone())
        .with_config(config)
        .build())
}

/// Applies a checked `SET` to the session.
fn apply_set(session: &Session, key: &str, value: usize) -> Result<(), TarnError> {
    let mut state = session.state.write();
    *state = with_setting(&state, key, value)?;
    Ok(())
}

/// Refuses anything but queries before any name is resolved: DDL, DML,
/// `COPY … TO` and external tables could reach outside the lake.
fn check_read_only(statement: &DFStatement) -> Result<(), TarnError> {
    use datafusion::sql::sqlparser::ast::Statement as S;
    let allowed = match statement {
        DFStatement::Statement(s) => matches!(
            s.as_ref(),
            S::Query(_)
                | S::Set(_)
                | S::ShowTables { .. }
                | S::ShowColumns { .. }
                | S::ExplainTable { .. }
                | S::Explain { .. }
        ),
        DFStatement::Explain(_) => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        let kind = statement.to_string();
        let kind: String = kind
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Err(TarnError::new(
            ErrorCode::Unsupported,
            format!("only queries run here, not '{kind} …'"),
        )
        .with_fix("send SELECT (or WITH … SELECT, SHOW, DESCRIBE, EXPLAIN) statements"))
    }
}

/// Binds positional parameters (`$1`, `$2`, …) from the first row of `params`.
pub fn bind_parameters(
    plan: LogicalPlan,
    params: Option<&arrow::record_batch::RecordBatch>,
) -> Result<LogicalPlan, TarnError> {
    let Some(batch) = params else {
        return Ok(plan);
    };
    if batch.num_rows() == 0 {
        return Ok(plan);
    }
    if batch.num_rows() > 1 {
        return Err(TarnError::new(
            ErrorCode::InvalidArgument,
            format!(
                "{} parameter rows were bound; a query takes one",
                batch.num_rows()
            ),
        )
        .with_fix("bind a single row of parameters per execution"));
    }
    let mut values = Vec::with_capacity(batch.num_columns());
    for col in batch.columns() {
        values.push(
            datafusion::scalar::ScalarValue::try_from_array(col, 0).map_err(|e| {
                TarnError::new(ErrorCode::InvalidArgument, format!("bad parameter: {e}"))
            })?,
        );
    }
    plan.with_param_values(ParamValues::List(
        values.into_iter().map(Into::into).collect(),
    ))
    .map_err(|e| from_datafusion(&e))
}

#[cfg(test)]
mod tests {
    use super::number_placeholders;

    #[test]
    fn question_marks_become_positions_outside_literals() {
        assert_eq!(
            number_placeholders("SELECT a FROM t WHERE b = ? AND c = '?' AND \"d?\" = ?"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND \"d?\" = $2"
        );
        assert_eq!(number_placeholders("SELECT 1"), "SELECT 1");
        // Escaped quotes survive untouched.
        assert_eq!(
            number_placeholders("SELECT 'O''Brien', ? FROM t\nWHERE x = ?"),
            "SELECT 'O''Brien', $1 FROM t\nWHERE x = $2"
        );
    }
}
