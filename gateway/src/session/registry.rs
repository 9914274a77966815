//! The session table: a session opens on a vCore lease and ends when it is
//! closed, idle too long or its lease is gone. Why it ended is remembered,
//! so a late request learns the reason, and announced, so kernels close.

use std::sync::Arc;

use dashmap::DashMap;
use tarn_common::{ErrorCode, TarnError};
use tarn_lake::Lake;

use super::{Session, Sessions};
use crate::auth::Identity;
use crate::lease::{LeaseClient, LeaseWish};

/// How many ended sessions are remembered, so a late request learns why
/// its session ended rather than only that it is unknown.
const REMEMBER_ENDED: usize = 4096;

/// What a kernel's credential starts with (a signed token starts with
/// `tarn.`, a handshake's session id is plain hex).
pub const PASS_PREFIX: &str = "tarnk.";

/// A credential that stands for one session: what a hosted kernel's `lake`
/// sends, so its statements run in the kernel's own session (its lease,
/// its limits, its job run) rather than opening another.
#[derive(Debug)]
pub(super) struct Pass {
    session: Arc<Session>,
    /// In the session table (so it can end there), or a job run's.
    registered: bool,
    expires: std::time::Instant,
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
            passes: DashMap::new(),
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

    /// Sessions ending from now on, with why.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<(String, TarnError)> {
        self.events.subscribe()
    }

    fn ended(&self, id: &str, why: TarnError) {
        self.remember_end(id, why.clone());
        let _ = self.events.send((id.to_string(), why));
    }

    /// Records why a session ended, so a request that comes after it is
    /// told the reason rather than "no such session".
    fn remember_end(&self, id: &str, why: TarnError) {
        if self.ended.len() >= REMEMBER_ENDED {
            self.ended.clear();
        }
        self.ended.insert(id.to_string(), why);
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
        let why = TarnError::new(
            ErrorCode::SessionNotFound,
            "the session ended: its vCore lease expired at the coordinator",
        );
        let mut ended = Vec::new();
        self.sessions.retain(|id, s| {
            let keep = !gone.contains(&s.lease_id);
            if !keep {
                self.remember_end(id, why.clone());
                ended.push(id.clone());
            }
            keep
        });
        for id in &ended {
            self.ended(id, why.clone());
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
            job: None,
            kql_now: Default::default(),
            held: Default::default(),
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

    /// A session outside the registry, for a job run (`lease_id` is the
    /// run's job-pool lease, renewed by the run's worker) or for checking
    /// a job's statements at submit (no lease: it only plans). It is not
    /// listed, not ended by inactivity, and acts with `grants`.
    pub fn detached(
        &self,
        user: &str,
        grants: &tarn_common::roles::Grants,
        lease_id: &str,
        vcores: u32,
        workspace: &str,
        job: Option<Arc<super::JobScope>>,
    ) -> Result<Arc<Session>, TarnError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let state = self.build_state(&id, vcores.max(1) as usize, grants)?;
        Ok(Arc::new(Session {
            id,
            user: user.to_string(),
            grants: grants.clone(),
            lease_id: lease_id.to_string(),
            vcores,
            opened_ms: tarn_common::clock::unix_ms(),
            credential_expires_ms: None,
            token: None,
            warned: std::sync::atomic::AtomicBool::new(false),
            workspace: parking_lot::RwLock::new(workspace.to_string()),
            state: parking_lot::RwLock::new(state),
            last_used: parking_lot::Mutex::new(std::time::Instant::now()),
            job,
            kql_now: Default::default(),
            held: Default::default(),
        }))
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
            if tarn_common::clock::unix_ms() >= exp {
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
        let why = TarnError::new(
            ErrorCode::SessionTimedOut,
            format!(
                "the session ended after {} of inactivity, and its vCores went back to the pool",
                tarn_common::auth::human(max_idle.as_secs())
            ),
        );
        let mut ended = Vec::new();
        self.sessions.retain(|id, s| {
            let keep = s.last_used.lock().elapsed() <= max_idle || s.is_held() || busy(id);
            if !keep {
                // On record before the entry goes, so a request arriving
                // while the lease is given back hears why, not "no such
                // session".
                self.remember_end(id, why.clone());
                ended.push((id.clone(), s.lease_id.clone()));
            }
            keep
        });
        let n = ended.len();
        for (id, lease) in ended {
            // vCores first, so whoever hears of the end finds them free.
            self.leases.release(lease).await;
            self.ended(&id, why.clone());
            tracing::info!(session = %id, "session ended after inactivity");
        }
        n
    }

    /// A credential good for `ttl` that stands for `session`: requests
    /// bearing it run in that session, with its grants. It is unguessable,
    /// not the session id (which a handshake client could close).
    pub fn delegate(&self, session: &Arc<Session>, ttl: std::time::Duration) -> String {
        let now = std::time::Instant::now();
        self.passes.retain(|_, p| p.expires > now);
        let pass = format!(
            "{PASS_PREFIX}{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.passes.insert(
            pass.clone(),
            Pass {
                session: Arc::clone(session),
                registered: self.sessions.contains_key(&session.id),
                expires: now + ttl,
            },
        );
        pass
    }

    /// Extends a credential's life to `ttl` from now; false when it has
    /// expired or was revoked (it is not brought back).
    pub fn extend_pass(&self, pass: &str, ttl: std::time::Duration) -> bool {
        let now = std::time::Instant::now();
        match self.passes.get_mut(pass) {
            Some(mut p) if p.expires > now => {
                p.expires = now + ttl;
                true
            }
            _ => false,
        }
    }

    /// The session a kernel's credential stands for; refused once it
    /// expired, was revoked or its session ended (with why).
    pub fn by_pass(&self, pass: &str) -> Result<Arc<Session>, TarnError> {
        let refused = || {
            TarnError::new(
                ErrorCode::InvalidToken,
                "this kernel credential has expired or was revoked",
            )
            .with_fix(
                "the kernel renews its credential by itself; if this persists, restart the kernel",
            )
        };
        let (session, registered) = {
            let p = self.passes.get(pass).ok_or_else(refused)?;
            if p.expires <= std::time::Instant::now() {
                return Err(refused());
            }
            (Arc::clone(&p.session), p.registered)
        };
        if registered {
            return self.lookup(&session.id);
        }
        Ok(session)
    }

    /// Revokes every credential standing for `session_id`.
    pub fn revoke_passes(&self, session_id: &str) {
        self.passes.retain(|_, p| p.session.id != session_id);
    }

    /// Whether a session id is still open.
    pub fn is_open(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    /// Closes a session and gives its lease back.
    pub async fn close(&self, id: &str) -> bool {
        self.close_because(
            id,
            TarnError::new(ErrorCode::SessionNotFound, "the session was closed"),
        )
        .await
    }

    /// Closes a session for `why` (what its kernels and late requests hear).
    async fn close_because(&self, id: &str, why: TarnError) -> bool {
        match self.sessions.remove_if(id, |id, _| {
            self.remember_end(id, why.clone());
            true
        }) {
            Some((_, s)) => {
                self.revoke_passes(id);
                self.leases.release(s.lease_id.clone()).await;
                self.ended(id, why);
                tracing::info!(session = %id, "session closed");
                true
            }
            None => false,
        }
    }

    /// Gives back every session's lease (gateway shutdown); their kernels
    /// and clients hear that the gateway is stopping.
    pub async fn close_all(&self) {
        let why = TarnError::new(
            ErrorCode::GatewayShuttingDown,
            "this gateway is shutting down; the session and its kernel ended",
        );
        let ids: Vec<String> = self.sessions.iter().map(|s| s.id.clone()).collect();
        for id in ids {
            self.close_because(&id, why.clone()).await;
        }
    }
}
