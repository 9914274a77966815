//! What the ledger knows (the book: leases, queued and running runs, the
//! submission counter) and how one change to it is drafted: the changed
//! copy together with the store operations that make the same change
//! durable, so the two cannot drift apart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tarn_proto::Pool;
use tarn_state::Op;

pub(super) const LEASES: &str = "leases/";
pub(super) const RUNS: &str = "runs/";
pub(super) const SEQ: &str = "meta/run_seq";
pub(super) const JOBS: &str = "jobs/";
/// `history/<job id>/<seq, 20 digits>`: ended runs of a job, oldest first.
pub(super) const HISTORY: &str = "history/";

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
    /// Job definitions per workspace and per user.
    pub max_jobs: (u32, u32),
    /// Scheduled jobs per workspace and per user.
    pub max_scheduled_jobs: (u32, u32),
    /// Ended runs kept per job.
    pub job_history: u32,
    /// The longest (and default) job timeout.
    pub max_job_timeout: Duration,
    /// No schedule may fire more often.
    pub min_schedule_interval: Duration,
}

impl Limits {
    pub(super) fn pool_size(&self, pool: Pool) -> u32 {
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
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
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
    /// Ran past its job's timeout and was stopped.
    #[serde(rename = "timed_out")]
    TimedOut,
    /// A scheduled fire that did not run: the job's previous run was
    /// still active and its overlap policy is `skip`.
    Skipped,
}

/// A job run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// What a run of a job definition carries besides (absent for runs
    /// submitted bare).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<RunOfJob>,
}

/// The job side of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RunOfJob {
    /// The job it runs.
    pub job_id: String,
    /// `manual`, `schedule`, `retry` or `api`.
    pub trigger: String,
    /// 1 for the first try.
    pub attempt: u32,
    /// Tries allowed in all.
    pub max_attempts: u32,
    /// Wait before a retry.
    pub backoff_ms: u64,
    /// A retry waits in the queue until then (ms since epoch).
    #[serde(default)]
    pub not_before_ms: u64,
    /// 0: none.
    pub timeout_ms: u64,
    /// The schedule's fire time, for scheduled runs.
    #[serde(default)]
    pub fire_ms: u64,
    /// Parameter values (JSON object).
    #[serde(default)]
    pub parameters: serde_json::Value,
    /// The gateway worker running it ("" while unclaimed).
    #[serde(default)]
    pub worker: String,
    /// What the worker reported: statements, tables, output.
    #[serde(default)]
    pub result: serde_json::Value,
    /// The code it failed with; 0 if it did not.
    #[serde(default)]
    pub error_code: u32,
}

/// A job definition as the coordinator keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredJob {
    /// Opaque id.
    pub id: String,
    /// Who created it; runs act as this user.
    pub owner: String,
    /// The definition (the REST API's JSON, checked by the gateway).
    pub spec: serde_json::Value,
    /// The owner's roles the delegated grant carries.
    pub grants: serde_json::Value,
    /// When the delegated grant ends (ms since epoch).
    pub credential_expires_ms: u64,
    /// ms since epoch.
    pub created_ms: u64,
    /// ms since epoch.
    pub updated_ms: u64,
    /// Increases with every update.
    pub revision: u64,
    /// The last schedule fire handled (run, skipped or caught up): the
    /// cursor that keeps a fire from running twice across failovers.
    #[serde(default)]
    pub last_fire_ms: u64,
}

impl StoredJob {
    /// A string field of the definition.
    pub fn field(&self, name: &str) -> &str {
        self.spec.get(name).and_then(|v| v.as_str()).unwrap_or("")
    }
}

/// Counters since this coordinator started leading.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Grants by pool label.
    pub grants: HashMap<&'static str, u64>,
    /// Refusals by (pool label, reason).
    pub refusals: HashMap<(&'static str, &'static str), u64>,
    /// Ended runs of jobs by status.
    pub job_runs: HashMap<RunState, u64>,
    /// vCore-seconds of ended job runs by workspace.
    pub vcore_seconds: HashMap<String, f64>,
    /// Queue wait of started job runs: (count, total seconds).
    pub queue_wait: (u64, f64),
    /// Fire time to claim by a worker, of scheduled runs.
    pub lateness: Histogram,
}

/// A Prometheus histogram: counts per upper bound (seconds).
#[derive(Debug, Clone)]
pub struct Histogram {
    /// Upper bounds, ascending.
    pub bounds: Vec<f64>,
    /// Observations at or below each bound.
    pub counts: Vec<u64>,
    /// All observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        let bounds = vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        Self {
            counts: vec![0; bounds.len()],
            bounds,
            count: 0,
            sum: 0.0,
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Book {
    pub(super) leases: BTreeMap<String, Lease>,
    /// Queued and running runs.
    pub(super) runs: BTreeMap<String, JobRun>,
    pub(super) next_seq: u64,
    /// Job definitions by id.
    pub(super) jobs: BTreeMap<String, StoredJob>,
    /// Ended runs of each job, oldest first (at most the retention).
    pub(super) history: BTreeMap<String, std::collections::VecDeque<JobRun>>,
    /// Ended runs kept per job.
    pub(super) retention: usize,
}

impl Book {
    pub(super) fn leased(&self, pool: Pool) -> u32 {
        self.leases
            .values()
            .filter(|l| l.pool() == pool)
            .map(|l| l.vcores)
            .sum()
    }

    pub(super) fn interactive_users(&self) -> HashSet<&str> {
        self.leases
            .values()
            .filter(|l| l.pool() == Pool::Interactive)
            .map(|l| l.user.as_str())
            .collect()
    }

    pub(super) fn running(&self) -> usize {
        self.runs
            .values()
            .filter(|r| r.state == RunState::Running)
            .count()
    }

    /// Queued runs in order; a retry waiting out its backoff is not in
    /// line yet.
    pub(super) fn queued(&self) -> Vec<&JobRun> {
        self.queued_at(tarn_common::clock::unix_ms())
    }

    pub(super) fn queued_at(&self, now: u64) -> Vec<&JobRun> {
        let mut q: Vec<&JobRun> = self
            .runs
            .values()
            .filter(|r| r.state == RunState::Queued)
            .filter(|r| r.job.as_ref().is_none_or(|j| j.not_before_ms <= now))
            .collect();
        q.sort_by_key(|r| r.seq);
        q
    }
}

/// A book being changed: the copy and the store operations that make the
/// same change durable.
pub(super) struct Draft {
    pub(super) book: Book,
    pub(super) ops: Vec<Op>,
    pub(super) ended: Vec<JobRun>,
    pub(super) released: Vec<String>,
}

impl Draft {
    pub(super) fn new(book: &Book) -> Self {
        Self {
            book: book.clone(),
            ops: Vec::new(),
            ended: Vec::new(),
            released: Vec::new(),
        }
    }

    pub(super) fn put_lease(&mut self, l: Lease) {
        self.ops
            .push(Op::Put(format!("{LEASES}{}", l.id), to_json(&l)));
        self.book.leases.insert(l.id.clone(), l);
    }

    pub(super) fn del_lease(&mut self, id: &str) {
        if self.book.leases.remove(id).is_some() {
            self.ops.push(Op::Delete(format!("{LEASES}{id}")));
            self.released.push(id.to_string());
        }
    }

    pub(super) fn put_run(&mut self, r: JobRun) {
        self.ops
            .push(Op::Put(format!("{RUNS}{}", r.id), to_json(&r)));
        self.book.runs.insert(r.id.clone(), r);
    }

    pub(super) fn end_run(
        &mut self,
        id: &str,
        state: RunState,
        message: &str,
        now: u64,
    ) -> Option<JobRun> {
        let mut run = self.book.runs.remove(id)?;
        self.ops.push(Op::Delete(format!("{RUNS}{id}")));
        if run.state == RunState::Running {
            self.del_lease(id);
        }
        run.state = state;
        run.ended_ms = now;
        run.message = message.to_string();
        self.ended.push(run.clone());
        if run.job.is_some() {
            self.keep_in_history(run.clone());
        }
        Some(run)
    }

    /// Puts an ended run of a job in its history, dropping the oldest
    /// past the retention.
    pub(super) fn keep_in_history(&mut self, run: JobRun) {
        let Some(job) = run.job.as_ref().map(|j| j.job_id.clone()) else {
            return;
        };
        self.ops
            .push(Op::Put(history_key(&job, run.seq), to_json(&run)));
        let keep = self.book.retention.max(1);
        let h = self.book.history.entry(job.clone()).or_default();
        h.push_back(run);
        while h.len() > keep {
            if let Some(old) = h.pop_front() {
                self.ops.push(Op::Delete(history_key(&job, old.seq)));
            }
        }
    }

    /// A running or queued run of a job goes back in line for another try.
    pub(super) fn requeue(&mut self, id: &str, message: &str, now: u64) -> Option<JobRun> {
        self.back_in_line(id, message, now, true)
    }

    /// A run goes back in line: as its next attempt (after its backoff),
    /// or — `next_attempt` false, its worker stopped — as it was, at once.
    pub(super) fn back_in_line(
        &mut self,
        id: &str,
        message: &str,
        now: u64,
        next_attempt: bool,
    ) -> Option<JobRun> {
        let mut run = self.book.runs.get(id).cloned()?;
        if run.state == RunState::Running {
            self.del_lease(id);
        }
        let job = run.job.as_mut()?;
        job.worker.clear();
        if next_attempt {
            job.attempt += 1;
            job.trigger = "retry".into();
            job.not_before_ms = now + job.backoff_ms;
        } else {
            job.not_before_ms = 0;
        }
        run.state = RunState::Queued;
        run.started_ms = 0;
        run.message = message.to_string();
        self.put_run(run.clone());
        Some(run)
    }

    pub(super) fn put_job(&mut self, j: StoredJob) {
        self.ops
            .push(Op::Put(format!("{JOBS}{}", j.id), to_json(&j)));
        self.book.jobs.insert(j.id.clone(), j);
    }

    pub(super) fn del_job(&mut self, id: &str) -> bool {
        if self.book.jobs.remove(id).is_none() {
            return false;
        }
        self.ops.push(Op::Delete(format!("{JOBS}{id}")));
        for r in self.book.history.remove(id).unwrap_or_default() {
            self.ops.push(Op::Delete(history_key(id, r.seq)));
        }
        true
    }

    pub(super) fn next_seq(&mut self) -> u64 {
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
pub(super) fn coalesce(ops: Vec<Op>) -> Vec<Op> {
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

pub(super) fn history_key(job: &str, seq: u64) -> String {
    format!("{HISTORY}{job}/{seq:020}")
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain data structs: serialization cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}
