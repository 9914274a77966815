//! The vCore ledger: session leases, job runs and the admission queue.
//!
//! Every grant is decided by the one leading coordinator, one change at a
//! time (a writer lock), against an in-memory book that mirrors the state
//! store; a change is written to the store before it becomes visible, so
//! what a client was told survives `kill -9`. Expiry times are not stored:
//! whoever loads the book gives every lease a fresh TTL, because holders
//! could not heartbeat while no coordinator led.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tarn_common::{ErrorCode, TarnError};
use tarn_proto::Pool;
use tarn_state::{Op, StateStore};
use tokio::sync::mpsc::UnboundedSender;

use crate::registry::ExecutorRegistry;

const LEASES: &str = "leases/";
const RUNS: &str = "runs/";
const SEQ: &str = "meta/run_seq";
/// Finished runs remembered for GetJobRun (not persisted).
const RECENT_RUNS: usize = 200;

/// The limits the ledger enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Configured size of the interactive pool.
    pub interactive_vcores: u32,
    /// Configured size of the job pool.
    pub job_vcores: u32,
    /// vCores all leases of the account may hold together.
    pub account_vcores: u32,
    /// Distinct users holding interactive leases at once.
    pub max_interactive_users: u32,
    /// Job runs running at once.
    pub max_running_jobs: u32,
    /// Job runs waiting at once.
    pub max_queued_jobs: u32,
    /// A lease whose holder does not renew it for this long ends.
    pub lease_ttl: Duration,
    /// Named lease sizes, in vCores.
    pub sizes: BTreeMap<String, u32>,
    /// The size used when a request names none.
    pub default_size: String,
}

impl Limits {
    fn pool_size(&self, pool: Pool) -> u32 {
        match pool {
            Pool::Job => self.job_vcores,
            _ => self.interactive_vcores,
        }
    }
}

/// A lease of vCores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    /// Opaque id; Ballista jobs run under it are named `query@id`.
    pub id: String,
    /// `interactive` or `job`.
    pub pool: String,
    /// Who it is for.
    pub user: String,
    /// Workspace the session or run works in.
    pub workspace: String,
    /// vCores held.
    pub vcores: u32,
    /// Who renews it.
    pub holder: String,
    /// When it was granted (ms since epoch).
    pub created_ms: u64,
    /// The job run it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

impl Lease {
    /// The pool as an enum.
    pub fn pool(&self) -> Pool {
        Pool::from_label(&self.pool).unwrap_or(Pool::Interactive)
    }
}

/// Where a job run is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Waiting in the queue.
    Queued,
    /// Holding its job-pool lease.
    Running,
    /// Finished as its holder reported.
    Succeeded,
    /// Failed as its holder reported.
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// Its holder stopped renewing the lease.
    Expired,
}

/// A job run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobRun {
    /// Opaque id (also its lease id while running).
    pub id: String,
    /// What the submitter called it.
    pub name: String,
    /// Who submitted it.
    pub user: String,
    /// Its workspace.
    pub workspace: String,
    /// vCores it will lease.
    pub vcores: u32,
    /// Submission order.
    pub seq: u64,
    /// Where it is.
    pub state: RunState,
    /// ms since epoch.
    pub submitted_ms: u64,
    /// ms since epoch, once running.
    #[serde(default)]
    pub started_ms: u64,
    /// ms since epoch, once ended.
    #[serde(default)]
    pub ended_ms: u64,
    /// Why it ended, if it did.
    #[serde(default)]
    pub message: String,
}

/// Counters since this coordinator started leading.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Grants by pool label.
    pub grants: HashMap<&'static str, u64>,
    /// Refusals by (pool label, reason).
    pub refusals: HashMap<(&'static str, &'static str), u64>,
}

#[derive(Debug, Clone, Default)]
struct Book {
    leases: BTreeMap<String, Lease>,
    /// Queued and running runs.
    runs: BTreeMap<String, JobRun>,
    next_seq: u64,
}

impl Book {
    fn leased(&self, pool: Pool) -> u32 {
        self.leases
            .values()
            .filter(|l| l.pool() == pool)
            .map(|l| l.vcores)
            .sum()
    }

    fn interactive_users(&self) -> HashSet<&str> {
        self.leases
            .values()
            .filter(|l| l.pool() == Pool::Interactive)
            .map(|l| l.user.as_str())
            .collect()
    }

    fn running(&self) -> usize {
        self.runs
            .values()
            .filter(|r| r.state == RunState::Running)
            .count()
    }

    fn queued(&self) -> Vec<&JobRun> {
        let mut q: Vec<&JobRun> = self
            .runs
            .values()
            .filter(|r| r.state == RunState::Queued)
            .collect();
        q.sort_by_key(|r| r.seq);
        q
    }
}

/// A book being changed: the copy and the store operations that make the
/// same change durable.
struct Draft {
    book: Book,
    ops: Vec<Op>,
    ended: Vec<JobRun>,
    released: Vec<String>,
}

impl Draft {
    fn new(book: &Book) -> Self {
        Self {
            book: book.clone(),
            ops: Vec::new(),
            ended: Vec::new(),
            released: Vec::new(),
        }
    }

    fn put_lease(&mut self, l: Lease) {
        self.ops
            .push(Op::Put(format!("{LEASES}{}", l.id), to_json(&l)));
        self.book.leases.insert(l.id.clone(), l);
    }

    fn del_lease(&mut self, id: &str) {
        if self.book.leases.remove(id).is_some() {
            self.ops.push(Op::Delete(format!("{LEASES}{id}")));
            self.released.push(id.to_string());
        }
    }

    fn put_run(&mut self, r: JobRun) {
        self.ops
            .push(Op::Put(format!("{RUNS}{}", r.id), to_json(&r)));
        self.book.runs.insert(r.id.clone(), r);
    }

    fn end_run(&mut self, id: &str, state: RunState, message: &str, now: u64) -> Option<JobRun> {
        let mut run = self.book.runs.remove(id)?;
        self.ops.push(Op::Delete(format!("{RUNS}{id}")));
        if run.state == RunState::Running {
            self.del_lease(id);
        }
        run.state = state;
        run.ended_ms = now;
        run.message = message.to_string();
        self.ended.push(run.clone());
        Some(run)
    }

    fn next_seq(&mut self) -> u64 {
        self.book.next_seq += 1;
        self.ops.push(Op::Put(
            SEQ.to_string(),
            self.book.next_seq.to_string().into_bytes(),
        ));
        self.book.next_seq
    }
}

/// One operation per key, the last one: a change may touch a key twice
/// (a run queued then started), and etcd refuses a transaction that does.
fn coalesce(ops: Vec<Op>) -> Vec<Op> {
    let key = |op: &Op| match op {
        Op::Put(k, _) | Op::Delete(k) => k.clone(),
    };
    let last: HashMap<String, usize> = ops.iter().enumerate().map(|(i, op)| (key(op), i)).collect();
    ops.into_iter()
        .enumerate()
        .filter(|(i, op)| last.get(&key(op)) == Some(i))
        .map(|(_, op)| op)
        .collect()
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain data structs: serialization cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// The ledger of one leading coordinator.
pub struct Ledger {
    limits: Limits,
    store: Arc<dyn StateStore>,
    registry: Arc<ExecutorRegistry>,
    book: RwLock<Book>,
    /// One change at a time, held across the store write.
    writer: tokio::sync::Mutex<()>,
    /// Lease id → expiry (ms since epoch); renewals touch only this.
    expiry: Mutex<HashMap<String, u64>>,
    recent: Mutex<VecDeque<JobRun>>,
    stats: Mutex<Stats>,
    /// Lease ids whose Ballista jobs must stop (released or expired).
    released: Option<UnboundedSender<String>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("store", &self.store.backend())
            .finish()
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
        let mut book = Book::default();
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
            } else if k == SEQ {
                book.next_seq = String::from_utf8_lossy(&v).parse().unwrap_or(0);
            }
        }
        let until = now_ms() + limits.lease_ttl.as_millis() as u64;
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
            recent: Mutex::new(VecDeque::new()),
            stats: Mutex::new(Stats::default()),
            released,
        })
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
        let until = now_ms() + self.limits.lease_ttl.as_millis() as u64;
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
            created_ms: now_ms(),
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
        let until = now_ms() + self.limits.lease_ttl.as_millis() as u64;
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
                draft.end_run(run, RunState::Succeeded, "lease released", now_ms());
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
        let now = now_ms();
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
                        draft.end_run(
                            run,
                            RunState::Expired,
                            "its holder stopped renewing the lease",
                            now,
                        );
                    }
                    None => draft.del_lease(id),
                }
                tracing::info!(lease = %id, user = %lease.user, "lease expired");
                n += 1;
            }
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
            let now = now_ms();
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
            submitted_ms: now_ms(),
            started_ms: 0,
            ended_ms: 0,
            message: String::new(),
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
        let Some(run) = draft.end_run(id, state, message, now_ms()) else {
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

    /// All leases with their expiry (ms since epoch).
    pub fn leases(&self) -> Vec<(Lease, u64)> {
        let expiry = self.expiry.lock().clone();
        self.book
            .read()
            .leases
            .values()
            .map(|l| (l.clone(), expiry.get(&l.id).copied().unwrap_or(0)))
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use tarn_proto::ExecutorInfo;
    use tarn_state::EmbeddedStore;

    fn limits() -> Limits {
        Limits {
            interactive_vcores: 760,
            job_vcores: 240,
            account_vcores: 1000,
            max_interactive_users: 10,
            max_running_jobs: 3,
            max_queued_jobs: 5,
            lease_ttl: Duration::from_secs(30),
            sizes: [("small".to_string(), 8), ("large".to_string(), 32)]
                .into_iter()
                .collect(),
            default_size: "small".into(),
        }
    }

    fn registry(interactive: u32, job: u32) -> Arc<ExecutorRegistry> {
        let r = Arc::new(ExecutorRegistry::new(Duration::from_secs(60), 760, 240));
        for (id, pool, vcores) in [("i", Pool::Interactive, interactive), ("j", Pool::Job, job)] {
            if vcores > 0 {
                r.upsert(ExecutorInfo {
                    executor_id: id.into(),
                    pool: pool as i32,
                    vcores,
                    ..Default::default()
                });
            }
        }
        r
    }

    async fn ledger(dir: &std::path::Path, l: Limits, reg: Arc<ExecutorRegistry>) -> Ledger {
        let store = Arc::new(EmbeddedStore::open(dir.join("s.redb")).unwrap());
        Ledger::load(l, store, reg, None).await.unwrap()
    }

    fn req(user: &str, vcores: u32) -> LeaseRequest {
        LeaseRequest {
            user: user.into(),
            vcores,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn capacity_users_and_sizes_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path(), limits(), registry(760, 240)).await;
        let small = l.acquire(req("u0", 0)).await.unwrap();
        assert_eq!(small.vcores, 8);
        let too_big = l.acquire(req("u0", 800)).await.unwrap_err();
        assert_eq!(too_big.code, ErrorCode::InvalidArgument);
        // A second session of the same user does not count as a new user.
        l.acquire(req("u0", 8)).await.unwrap();
        for i in 1..10 {
            l.acquire(req(&format!("u{i}"), 8)).await.unwrap();
        }
        let eleventh = l.acquire(req("u10", 8)).await.unwrap_err();
        assert_eq!(eleventh.code, ErrorCode::UserLimitReached);
        // Existing users may still take more, up to the capacity.
        let leased = l.pool_figures(Pool::Interactive).leased;
        assert_eq!(leased, 88);
        let e = l.acquire(req("u1", 760 - 88 + 1)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InsufficientVcores);
        assert!(
            e.to_string().contains(&format!(
                "requested {} vCores, {} available",
                760 - 88 + 1,
                760 - 88
            )),
            "{e}"
        );
        l.acquire(req("u1", 760 - 88)).await.unwrap();
        assert_eq!(l.pool_figures(Pool::Interactive).leased, 760);
        let figures = l.pool_figures(Pool::Interactive);
        assert_eq!(figures.refusals.get("user_limit"), Some(&1));
        assert_eq!(figures.refusals.get("insufficient_vcores"), Some(&1));
    }

    #[tokio::test]
    async fn capacity_follows_live_executors() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path(), limits(), registry(0, 0)).await;
        let e = l.acquire(req("a", 2)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::PoolNotAvailable);
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path(), limits(), registry(16, 0)).await;
        l.acquire(req("a", 16)).await.unwrap();
        assert_eq!(
            l.acquire(req("b", 1)).await.unwrap_err().code,
            ErrorCode::InsufficientVcores
        );
    }

    #[tokio::test]
    async fn queue_runs_three_at_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path(), limits(), registry(760, 240)).await;
        let mut ids = Vec::new();
        for i in 0..6 {
            let r = l
                .submit(format!("r{i}"), "eng".into(), "demo".into(), 8, "")
                .await
                .unwrap();
            ids.push(r.id);
        }
        let states: Vec<RunState> = ids.iter().map(|id| l.run(id).unwrap().0.state).collect();
        assert_eq!(&states[..3], &[RunState::Running; 3]);
        assert_eq!(&states[3..], &[RunState::Queued; 3]);
        assert_eq!(l.run(&ids[4]).unwrap().1, 2);
        // The queue has room for 5; the 6th submission above made it 3.
        for i in 0..2 {
            l.submit(format!("x{i}"), "eng".into(), "demo".into(), 8, "")
                .await
                .unwrap();
        }
        let full = l
            .submit("y".into(), "eng".into(), "demo".into(), 8, "")
            .await
            .unwrap_err();
        assert_eq!(full.code, ErrorCode::JobQuotaExceeded);
        // Cancelling a queued run moves the ones behind it up.
        l.cancel_run(&ids[3]).await.unwrap();
        assert_eq!(l.run(&ids[4]).unwrap().1, 1);
        // Finishing a running run starts the head of the queue.
        l.finish_run(&ids[0], true, "").await.unwrap();
        assert_eq!(l.run(&ids[4]).unwrap().0.state, RunState::Running);
        assert_eq!(l.run(&ids[5]).unwrap().1, 1);
        assert_eq!(l.run(&ids[0]).unwrap().0.state, RunState::Succeeded);
        assert_eq!(l.pool_figures(Pool::Job).leased, 24);
    }

    #[tokio::test]
    async fn the_head_of_the_queue_is_not_overtaken() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path(), limits(), registry(760, 240)).await;
        let big = l
            .submit("a".into(), "e".into(), "w".into(), 200, "")
            .await
            .unwrap();
        let wide = l
            .submit("b".into(), "e".into(), "w".into(), 100, "")
            .await
            .unwrap();
        let small = l
            .submit("c".into(), "e".into(), "w".into(), 8, "")
            .await
            .unwrap();
        assert_eq!(big.state, RunState::Running);
        assert_eq!(wide.state, RunState::Queued);
        // `c` would fit, but `b` is ahead of it.
        assert_eq!(small.state, RunState::Queued);
        l.finish_run(&big.id, true, "").await.unwrap();
        assert_eq!(l.run(&wide.id).unwrap().0.state, RunState::Running);
        assert_eq!(l.run(&small.id).unwrap().0.state, RunState::Running);
    }

    #[tokio::test]
    async fn leases_and_queue_survive_reopen_with_fresh_ttls() {
        let dir = tempfile::tempdir().unwrap();
        let (lease, runs) = {
            let l = ledger(dir.path(), limits(), registry(760, 240)).await;
            let lease = l.acquire(req("ana", 16)).await.unwrap();
            let mut runs = Vec::new();
            for i in 0..4 {
                runs.push(
                    l.submit(format!("r{i}"), "e".into(), "w".into(), 8, "")
                        .await
                        .unwrap()
                        .id,
                );
            }
            (lease, runs)
        };
        let l = ledger(dir.path(), limits(), registry(760, 240)).await;
        assert_eq!(l.lease(&lease.id), Some(lease.clone()));
        assert_eq!(l.run(&runs[3]).unwrap().1, 1);
        assert!(l.renew(std::slice::from_ref(&lease.id)).is_empty());
        // Submission order continues after the restart.
        let next = l
            .submit("r4".into(), "e".into(), "w".into(), 8, "")
            .await
            .unwrap();
        assert_eq!(next.seq, 5);
    }

    #[tokio::test]
    async fn runs_larger_than_the_live_job_pool_are_refused_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path(), limits(), registry(760, 8)).await;
        let e = l
            .submit("big".into(), "e".into(), "w".into(), 32, "")
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InsufficientVcores);
        assert!(
            l.runs().is_empty(),
            "nothing queued behind an impossible head"
        );
    }

    #[tokio::test]
    async fn hundreds_of_expiries_commit_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut lim = limits();
        lim.lease_ttl = Duration::from_millis(100);
        lim.max_interactive_users = 1000;
        let l = ledger(dir.path(), lim, registry(760, 240)).await;
        for i in 0..300 {
            l.acquire(req(&format!("u{i}"), 1)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(l.expire().await.unwrap(), 300);
        assert_eq!(l.pool_figures(Pool::Interactive).leased, 0);
    }

    #[tokio::test]
    async fn unrenewed_leases_expire_and_free_their_vcores() {
        let dir = tempfile::tempdir().unwrap();
        let mut lim = limits();
        lim.lease_ttl = Duration::from_millis(200);
        let l = ledger(dir.path(), lim, registry(760, 240)).await;
        let kept = l.acquire(req("a", 8)).await.unwrap();
        let dropped = l.acquire(req("b", 8)).await.unwrap();
        let run = l
            .submit("r".into(), "e".into(), "w".into(), 8, "")
            .await
            .unwrap();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(l.renew(std::slice::from_ref(&kept.id)).is_empty());
        }
        assert_eq!(l.expire().await.unwrap(), 2);
        assert!(l.lease(&kept.id).is_some());
        assert!(l.lease(&dropped.id).is_none());
        assert_eq!(l.run(&run.id).unwrap().0.state, RunState::Expired);
        assert_eq!(l.renew(std::slice::from_ref(&dropped.id)), vec![dropped.id]);
        assert_eq!(l.pool_figures(Pool::Interactive).leased, 8);
        assert_eq!(l.pool_figures(Pool::Job).leased, 0);
    }
}
