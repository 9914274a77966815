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
pub(super) struct Book {
    pub(super) leases: BTreeMap<String, Lease>,
    /// Queued and running runs.
    pub(super) runs: BTreeMap<String, JobRun>,
    pub(super) next_seq: u64,
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

    pub(super) fn queued(&self) -> Vec<&JobRun> {
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
        Some(run)
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

pub(super) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain data structs: serialization cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}
