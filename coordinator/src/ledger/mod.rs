//! The vCore ledger: session leases, job runs and the admission queue.
//!
//! Every grant is decided by the one leading coordinator, one change at a
//! time (a writer lock), against an in-memory book that mirrors the state
//! store; a change is written to the store before it becomes visible, so
//! what a client was told survives `kill -9`. Expiry times are not stored:
//! whoever loads the book gives every lease a fresh TTL, because holders
//! could not heartbeat while no coordinator led.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tarn_common::clock::{unix_ms, Clock, SystemClock};
use tarn_common::{ErrorCode, TarnError};
use tarn_proto::Pool;
use tarn_state::StateStore;
use tokio::sync::mpsc::UnboundedSender;

use crate::registry::ExecutorRegistry;

mod book;
#[cfg(test)]
mod job_tests;
mod jobs;
#[cfg(test)]
mod tests;

use book::{coalesce, Book, Draft, HISTORY, JOBS, LEASES, RUNS, SEQ};
pub use book::{JobRun, Lease, Limits, RunOfJob, RunState, Stats, StoredJob};
pub use jobs::{Finish, JobPut};

/// Finished runs remembered for GetJobRun (not persisted).
const RECENT_RUNS: usize = 200;

/// The ledger of one leading coordinator.
pub struct Ledger {
    limits: Limits,
    store: Arc<dyn StateStore>,
    registry: Arc<ExecutorRegistry>,
    book: RwLock<Book>,
    /// One change at a time, held across the store write.
    writer: tokio::sync::Mutex<()>,
    /// Lease id → expiry (ms on `clock`); renewals touch only this.
    expiry: Mutex<HashMap<String, u64>>,
    /// Measures lease TTLs; monotonic, so a wall-clock step neither ends
    /// nor prolongs a lease (and tests move it by hand).
    clock: Arc<dyn Clock>,
    recent: Mutex<VecDeque<JobRun>>,
    stats: Mutex<Stats>,
    /// Lease ids whose Ballista jobs must stop (released or expired).
    released: Option<UnboundedSender<String>>,
    /// Woken on every change, for job workers waiting for a run.
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("store", &self.store.backend())
            .finish()
    }
}

fn store_error(e: tarn_state::Error) -> TarnError {
    match e {
        tarn_state::Error::NotLeader => TarnError::new(
            ErrorCode::NotLeader,
            "this coordinator lost leadership; nothing was granted",
        ),
        other => TarnError::new(
            ErrorCode::StateStoreUnavailable,
            format!("the state store did not confirm the change, so it was not granted: {other}"),
        ),
    }
}

/// What a lease request asks for.
#[derive(Debug, Clone, Default)]
pub struct LeaseRequest {
    /// Pool to lease from.
    pub pool: Option<Pool>,
    /// User it is for.
    pub user: String,
    /// Workspace.
    pub workspace: String,
    /// vCores; 0 = `size` or the default size.
    pub vcores: u32,
    /// Named size.
    pub size: String,
    /// Holder description.
    pub holder: String,
}

impl Ledger {
    /// Loads the book from `store`. Every loaded lease gets a fresh TTL.
    pub async fn load(
        limits: Limits,
        store: Arc<dyn StateStore>,
        registry: Arc<ExecutorRegistry>,
        released: Option<UnboundedSender<String>>,
    ) -> Result<Self, TarnError> {
        Self::load_with_clock(
            limits,
            store,
            registry,
            released,
            Arc::new(SystemClock::default()),
        )
        .await
    }

    /// [`Ledger::load`], measuring TTLs on `clock`.
    pub async fn load_with_clock(
        limits: Limits,
        store: Arc<dyn StateStore>,
        registry: Arc<ExecutorRegistry>,
        released: Option<UnboundedSender<String>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TarnError> {
        let mut book = Book {
            retention: limits.job_history as usize,
            ..Book::default()
        };
        for (k, v) in store.load("").await.map_err(store_error)? {
            if let Some(id) = k.strip_prefix(LEASES) {
                match serde_json::from_slice::<Lease>(&v) {
                    Ok(l) => {
                        book.leases.insert(id.to_string(), l);
                    }
                    Err(e) => tracing::warn!(key = %k, error = %e, "skipping unreadable lease"),
                }
            } else if let Some(id) = k.strip_prefix(RUNS) {
                match serde_json::from_slice::<JobRun>(&v) {
                    Ok(r) => {
                        book.runs.insert(id.to_string(), r);
                    }
                    Err(e) => tracing::warn!(key = %k, error = %e, "skipping unreadable run"),
                }
            } else if let Some(id) = k.strip_prefix(JOBS) {
                match serde_json::from_slice::<StoredJob>(&v) {
                    Ok(j) => {
                        book.jobs.insert(id.to_string(), j);
                    }
                    Err(e) => tracing::warn!(key = %k, error = %e, "skipping unreadable job"),
                }
            } else if k.starts_with(HISTORY) {
                match serde_json::from_slice::<JobRun>(&v) {
                    Ok(r) => {
                        if let Some(j) = &r.job {
                            // Keys sort by sequence: oldest first.
                            book.history
                                .entry(j.job_id.clone())
                                .or_default()
                                .push_back(r);
                        }
                    }
                    Err(e) => tracing::warn!(key = %k, error = %e, "skipping unreadable run"),
                }
            } else if k == SEQ {
                book.next_seq = String::from_utf8_lossy(&v).parse().unwrap_or(0);
            }
        }
        let until = clock.now_ms() + limits.lease_ttl.as_millis() as u64;
        let expiry = book.leases.keys().map(|k| (k.clone(), until)).collect();
        tracing::info!(
            leases = book.leases.len(),
            runs = book.runs.len(),
            backend = store.backend(),
            "ledger loaded"
        );
        Ok(Self {
            limits,
            store,
            registry,
            book: RwLock::new(book),
            writer: tokio::sync::Mutex::new(()),
            expiry: Mutex::new(expiry),
            clock,
            recent: Mutex::new(VecDeque::new()),
            stats: Mutex::new(Stats::default()),
            released,
            changed: tokio::sync::Notify::new(),
        })
    }

    /// Counters since this coordinator started leading.
    pub fn stats(&self) -> Stats {
        self.stats.lock().clone()
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Which backend persists the book.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// What a pool can lease now: min(configured, offered by live executors).
    pub fn capacity(&self, pool: Pool) -> u32 {
        self.registry.capacity(pool)
    }

    async fn commit(&self, mut draft: Draft) -> Result<(), TarnError> {
        let ops = coalesce(std::mem::take(&mut draft.ops));
        if !ops.is_empty() {
            self.store.commit(ops).await.map_err(store_error)?;
        }
        let until = self.lease_deadline();
        {
            let mut expiry = self.expiry.lock();
            for id in &draft.released {
                expiry.remove(id);
            }
            for id in draft.book.leases.keys() {
                expiry.entry(id.clone()).or_insert(until);
            }
        }
        *self.book.write() = draft.book;
        {
            let mut stats = self.stats.lock();
            for r in draft.ended.iter().filter(|r| r.job.is_some()) {
                *stats.job_runs.entry(r.state).or_default() += 1;
                if r.started_ms > 0 {
                    let secs = r.ended_ms.saturating_sub(r.started_ms) as f64 / 1000.0;
                    *stats.vcore_seconds.entry(r.workspace.clone()).or_default() +=
                        secs * f64::from(r.vcores);
                }
            }
        }
        {
            let mut recent = self.recent.lock();
            for r in draft.ended {
                recent.push_front(r);
            }
            recent.truncate(RECENT_RUNS);
        }
        if let Some(tx) = &self.released {
            for id in draft.released {
                let _ = tx.send(id);
            }
        }
        self.changed.notify_waiters();
        Ok(())
    }

    fn refuse(&self, pool: Pool, reason: &'static str, e: TarnError) -> TarnError {
        *self
            .stats
            .lock()
            .refusals
            .entry((pool.label(), reason))
            .or_default() += 1;
        e
    }

    fn resolve_vcores(&self, pool: Pool, vcores: u32, size: &str) -> Result<u32, TarnError> {
        let v = if vcores > 0 {
            vcores
        } else {
            let name = if size.is_empty() {
                self.limits.default_size.as_str()
            } else {
                size
            };
            *self
                .limits
                .sizes
                .get(&name.to_ascii_lowercase())
                .ok_or_else(|| {
                    TarnError::new(
                        ErrorCode::InvalidArgument,
                        format!(
                            "unknown session size {name:?}; sizes are {}",
                            self.sizes_text()
                        ),
                    )
                    .with_fix("ask for a named size or a vCore count")
                })?
        };
        let max = self.limits.pool_size(pool);
        if v > max {
            return Err(TarnError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "requested {v} vCores, more than the whole {} pool ({max})",
                    pool.label()
                ),
            )
            .with_fix(format!("ask for at most {max} vCores")));
        }
        Ok(v)
    }

    fn sizes_text(&self) -> String {
        self.limits
            .sizes
            .iter()
            .map(|(k, v)| format!("{k} ({v} vCores)"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Grants an interactive (or job, for tools) lease or refuses it.
    pub async fn acquire(&self, req: LeaseRequest) -> Result<Lease, TarnError> {
        let pool = req.pool.unwrap_or(Pool::Interactive);
        let vcores = self
            .resolve_vcores(pool, req.vcores, &req.size)
            .map_err(|e| self.refuse(pool, "invalid", e))?;
        if req.user.trim().is_empty() {
            return Err(self.refuse(
                pool,
                "invalid",
                TarnError::new(ErrorCode::InvalidArgument, "a lease needs a user"),
            ));
        }
        let capacity = self.capacity(pool);
        let _w = self.writer.lock().await;
        let mut draft = Draft::new(&self.book.read());
        if capacity == 0 {
            return Err(self.refuse(
                pool,
                "no_executors",
                TarnError::new(
                    ErrorCode::PoolNotAvailable,
                    format!("no executor of the {} pool is running", pool.label()),
                ),
            ));
        }
        let leased = draft.book.leased(pool);
        let free = capacity.saturating_sub(leased);
        if vcores > free {
            return Err(self.refuse(
                pool,
                "insufficient_vcores",
                TarnError::new(
                    ErrorCode::InsufficientVcores,
                    format!(
                        "requested {vcores} vCores, {free} available in the {} pool ({leased} of {capacity} leased)",
                        pool.label()
                    ),
                ),
            ));
        }
        let account_leased = draft.book.leased(Pool::Interactive) + draft.book.leased(Pool::Job);
        if account_leased + vcores > self.limits.account_vcores {
            return Err(self.refuse(
                pool,
                "insufficient_vcores",
                TarnError::new(
                    ErrorCode::InsufficientVcores,
                    format!(
                        "requested {vcores} vCores, {} available to the account ({account_leased} of {} leased)",
                        self.limits.account_vcores.saturating_sub(account_leased),
                        self.limits.account_vcores
                    ),
                ),
            ));
        }
        if pool == Pool::Interactive {
            let users = draft.book.interactive_users();
            if !users.contains(req.user.as_str())
                && users.len() as u32 >= self.limits.max_interactive_users
            {
                return Err(self.refuse(
                    pool,
                    "user_limit",
                    TarnError::new(
                        ErrorCode::UserLimitReached,
                        format!(
                            "{} users already hold interactive sessions, the limit; {:?} cannot start one now",
                            users.len(),
                            req.user
                        ),
                    ),
                ));
            }
        }
        let lease = Lease {
            id: uuid::Uuid::new_v4().simple().to_string(),
            pool: pool.label().to_string(),
            user: req.user,
            workspace: req.workspace,
            vcores,
            holder: req.holder,
            created_ms: unix_ms(),
            run_id: None,
        };
        draft.put_lease(lease.clone());
        self.commit(draft).await?;
        *self.stats.lock().grants.entry(pool.label()).or_default() += 1;
        tracing::info!(lease = %lease.id, user = %lease.user, vcores, pool = pool.label(), "lease granted");
        Ok(lease)
    }

    /// Extends the leases by the TTL; returns the ids that do not exist.
    pub fn renew(&self, ids: &[String]) -> Vec<String> {
        let until = self.lease_deadline();
        let mut expiry = self.expiry.lock();
        let mut gone = Vec::new();
        for id in ids {
            match expiry.get_mut(id) {
                Some(t) => *t = until,
                None => gone.push(id.clone()),
            }
        }
        gone
    }

    /// Releases a lease; a job run's lease finishes the run (succeeded).
    pub async fn release(&self, id: &str) -> Result<bool, TarnError> {
        let _w = self.writer.lock().await;
        let mut draft = Draft::new(&self.book.read());
        let Some(lease) = draft.book.leases.get(id).cloned() else {
            return Ok(false);
        };
        match &lease.run_id {
            Some(run) => {
                draft.end_run(run, RunState::Succeeded, "lease released", unix_ms());
            }
            None => draft.del_lease(id),
        }
        self.admit(&mut draft);
        self.commit(draft).await?;
        tracing::info!(lease = %id, "lease released");
        Ok(true)
    }

    /// Ends leases whose holders stopped renewing; returns how many.
    /// Commits in small batches: etcd caps the operations of one
    /// transaction, and a dead gateway can leave hundreds of leases.
    pub async fn expire(&self) -> Result<usize, TarnError> {
        const BATCH: usize = 50;
        let now = self.clock.now_ms();
        let due: Vec<String> = self
            .expiry
            .lock()
            .iter()
            .filter(|(_, t)| **t < now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut n = 0;
        let mut chunks: Vec<&[String]> = due.chunks(BATCH).collect();
        if chunks.is_empty() {
            // Nothing due: still start queued runs that now fit (executors
            // may have joined since the last change).
            chunks.push(&[]);
        }
        for chunk in chunks {
            let _w = self.writer.lock().await;
            let mut draft = Draft::new(&self.book.read());
            for id in chunk {
                // A renewal may have landed since the scan.
                if self.expiry.lock().get(id).is_some_and(|t| *t >= now) {
                    continue;
                }
                let Some(lease) = draft.book.leases.get(id).cloned() else {
                    self.expiry.lock().remove(id);
                    continue;
                };
                match &lease.run_id {
                    Some(run) => {
                        jobs::retry_or_end(
                            &mut draft,
                            run,
                            RunState::Expired,
                            "its worker stopped renewing the lease (the gateway running it was lost)",
                            0,
                            unix_ms(),
                        );
                    }
                    None => draft.del_lease(id),
                }
                tracing::info!(lease = %id, user = %lease.user, "lease expired");
                n += 1;
            }
            n += jobs::end_timed_out(&mut draft, unix_ms());
            self.admit(&mut draft);
            self.commit(draft).await?;
        }
        Ok(n)
    }

    /// Asks for the Ballista jobs of a lease to be cancelled (task binding
    /// found a job whose lease is gone).
    pub fn cancel_jobs_of(&self, lease: &str) {
        if let Some(tx) = &self.released {
            let _ = tx.send(lease.to_string());
        }
    }

    /// Starts queued runs, in order, while the running limit and the job
    /// pool's free vCores allow. The head of the queue is never skipped.
    fn admit(&self, draft: &mut Draft) {
        let capacity = self.capacity(Pool::Job);
        loop {
            if draft.book.running() as u32 >= self.limits.max_running_jobs {
                return;
            }
            let Some(head) = draft.book.queued().first().map(|r| (*r).clone()) else {
                return;
            };
            let free = capacity.saturating_sub(draft.book.leased(Pool::Job));
            let account_free = self.limits.account_vcores.saturating_sub(
                draft.book.leased(Pool::Interactive) + draft.book.leased(Pool::Job),
            );
            if head.vcores > free || head.vcores > account_free {
                return;
            }
            let now = unix_ms();
            draft.put_lease(Lease {
                id: head.id.clone(),
                pool: Pool::Job.label().to_string(),
                user: head.user.clone(),
                workspace: head.workspace.clone(),
                vcores: head.vcores,
                holder: format!("job run {}", head.name),
                created_ms: now,
                run_id: Some(head.id.clone()),
            });
            tracing::info!(run = %head.id, name = %head.name, seq = head.seq, "job run started");
            *self
                .stats
                .lock()
                .grants
                .entry(Pool::Job.label())
                .or_default() += 1;
            if head.job.is_some() {
                let mut stats = self.stats.lock();
                stats.queue_wait.0 += 1;
                stats.queue_wait.1 += now.saturating_sub(head.submitted_ms) as f64 / 1000.0;
            }
            draft.put_run(JobRun {
                state: RunState::Running,
                started_ms: now,
                ..head
            });
        }
    }

    /// Queues a job run (and starts it if it fits).
    pub async fn submit(
        &self,
        name: String,
        user: String,
        workspace: String,
        vcores: u32,
        size: &str,
    ) -> Result<JobRun, TarnError> {
        self.submit_run(name, user, workspace, vcores, size, None)
            .await
    }

    /// Queues a run, bare or of a job.
    pub(crate) async fn submit_run(
        &self,
        name: String,
        user: String,
        workspace: String,
        vcores: u32,
        size: &str,
        job: Option<RunOfJob>,
    ) -> Result<JobRun, TarnError> {
        let vcores = self
            .resolve_vcores(Pool::Job, vcores, size)
            .map_err(|e| self.refuse(Pool::Job, "invalid", e))?;
        if user.trim().is_empty() {
            return Err(self.refuse(
                Pool::Job,
                "invalid",
                TarnError::new(ErrorCode::InvalidArgument, "a job run needs a user"),
            ));
        }
        let capacity = self.capacity(Pool::Job);
        if capacity > 0 && vcores > capacity {
            // It could never start, and the queue never skips its head.
            return Err(self.refuse(
                Pool::Job,
                "insufficient_vcores",
                TarnError::new(
                    ErrorCode::InsufficientVcores,
                    format!(
                        "requested {vcores} vCores, but the job pool's executors offer {capacity} in all"
                    ),
                )
                .with_fix(format!("ask for at most {capacity} vCores")),
            ));
        }
        let _w = self.writer.lock().await;
        let mut draft = Draft::new(&self.book.read());
        let queued = draft.book.queued().len() as u32;
        if queued >= self.limits.max_queued_jobs {
            return Err(self.refuse(
                Pool::Job,
                "queue_full",
                TarnError::new(
                    ErrorCode::JobQuotaExceeded,
                    format!(
                        "{queued} job runs are already queued, the limit; {:?} was not queued",
                        name
                    ),
                ),
            ));
        }
        let seq = draft.next_seq();
        let id = uuid::Uuid::new_v4().simple().to_string();
        draft.put_run(JobRun {
            id: id.clone(),
            name,
            user,
            workspace,
            vcores,
            seq,
            state: RunState::Queued,
            submitted_ms: unix_ms(),
            started_ms: 0,
            ended_ms: 0,
            message: String::new(),
            job,
        });
        self.admit(&mut draft);
        let run = draft.book.runs.get(&id).cloned();
        self.commit(draft).await?;
        run.ok_or_else(|| TarnError::new(ErrorCode::Internal, "submitted run vanished"))
    }

    /// Cancels a queued or running run.
    pub async fn cancel_run(&self, id: &str) -> Result<JobRun, TarnError> {
        self.end_run(id, RunState::Cancelled, "cancelled by a user")
            .await
    }

    /// The holder reports a running run's end.
    pub async fn finish_run(
        &self,
        id: &str,
        succeeded: bool,
        message: &str,
    ) -> Result<JobRun, TarnError> {
        let state = if succeeded {
            RunState::Succeeded
        } else {
            RunState::Failed
        };
        self.end_run(id, state, message).await
    }

    async fn end_run(&self, id: &str, state: RunState, message: &str) -> Result<JobRun, TarnError> {
        let _w = self.writer.lock().await;
        let mut draft = Draft::new(&self.book.read());
        let Some(run) = draft.end_run(id, state, message, unix_ms()) else {
            return self.recent_run(id).ok_or_else(|| run_not_found(id));
        };
        self.admit(&mut draft);
        self.commit(draft).await?;
        tracing::info!(run = %id, state = ?state, "job run ended");
        Ok(run)
    }

    fn recent_run(&self, id: &str) -> Option<JobRun> {
        self.recent.lock().iter().find(|r| r.id == id).cloned()
    }

    /// A run with its queue position (1-based, 0 when not queued).
    pub fn run(&self, id: &str) -> Result<(JobRun, u32), TarnError> {
        let book = self.book.read();
        if let Some(r) = book.runs.get(id) {
            let pos = book
                .queued()
                .iter()
                .position(|q| q.id == id)
                .map(|p| p as u32 + 1)
                .unwrap_or(0);
            return Ok((r.clone(), pos));
        }
        drop(book);
        self.recent_run(id)
            .or_else(|| self.run_in_history(id))
            .map(|r| (r, 0))
            .ok_or_else(|| run_not_found(id))
    }

    /// Running runs, then queued ones in order (with positions), then
    /// recently ended ones.
    pub fn runs(&self) -> Vec<(JobRun, u32)> {
        let book = self.book.read();
        let mut running: Vec<JobRun> = book
            .runs
            .values()
            .filter(|r| r.state == RunState::Running)
            .cloned()
            .collect();
        running.sort_by_key(|r| r.seq);
        let mut out: Vec<(JobRun, u32)> = running.into_iter().map(|r| (r, 0)).collect();
        out.extend(
            book.queued()
                .into_iter()
                .enumerate()
                .map(|(i, r)| (r.clone(), i as u32 + 1)),
        );
        drop(book);
        out.extend(self.recent.lock().iter().map(|r| (r.clone(), 0)));
        out
    }

    /// A lease by id.
    pub fn lease(&self, id: &str) -> Option<Lease> {
        self.book.read().leases.get(id).cloned()
    }

    /// The (pool, vCores) of a lease — what task binding needs.
    pub fn lease_grant(&self, id: &str) -> Option<(Pool, u32)> {
        self.book
            .read()
            .leases
            .get(id)
            .map(|l| (l.pool(), l.vcores))
    }

    /// All leases with their expiry (ms since the epoch: when it ends on
    /// the TTL clock, as wall time).
    pub fn leases(&self) -> Vec<(Lease, u64)> {
        let expiry = self.expiry.lock().clone();
        let (now, wall) = (self.clock.now_ms(), unix_ms());
        self.book
            .read()
            .leases
            .values()
            .map(|l| {
                let left = expiry.get(&l.id).map_or(0, |t| t.saturating_sub(now));
                (l.clone(), wall + left)
            })
            .collect()
    }

    /// When a lease granted or renewed now ends, on the TTL clock.
    fn lease_deadline(&self) -> u64 {
        self.clock.now_ms() + self.limits.lease_ttl.as_millis() as u64
    }

    /// Per-pool figures.
    pub fn pool_figures(&self, pool: Pool) -> PoolFigures {
        let book = self.book.read();
        let leases: Vec<&Lease> = book.leases.values().filter(|l| l.pool() == pool).collect();
        let users: HashSet<&str> = leases.iter().map(|l| l.user.as_str()).collect();
        let stats = self.stats.lock();
        PoolFigures {
            leased: leases.iter().map(|l| l.vcores).sum(),
            leases: leases.len() as u32,
            users: users.len() as u32,
            queued: if pool == Pool::Job {
                book.queued().len() as u32
            } else {
                0
            },
            running: if pool == Pool::Job {
                book.running() as u32
            } else {
                0
            },
            grants: stats.grants.get(pool.label()).copied().unwrap_or(0),
            refusals: stats
                .refusals
                .iter()
                .filter(|((p, _), _)| *p == pool.label())
                .map(|((_, r), n)| (r.to_string(), *n))
                .collect(),
        }
    }
}

/// Figures of one pool.
#[derive(Debug, Clone, Default)]
pub struct PoolFigures {
    /// vCores held by leases.
    pub leased: u32,
    /// Number of leases.
    pub leases: u32,
    /// Distinct users.
    pub users: u32,
    /// Queued runs (job pool).
    pub queued: u32,
    /// Running runs (job pool).
    pub running: u32,
    /// Grants.
    pub grants: u64,
    /// Refusals by reason.
    pub refusals: HashMap<String, u64>,
}

fn run_not_found(id: &str) -> TarnError {
    TarnError::new(
        ErrorCode::JobRunNotFound,
        format!("no job run {id:?} is queued, running or recently ended"),
    )
}
