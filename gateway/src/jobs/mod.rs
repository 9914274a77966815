//! Jobs: definitions checked at submit, and the worker that runs them.
//!
//! The coordinator keeps job definitions, fires schedules and admits runs
//! (3 at once, the rest queued in order). A gateway's worker claims a run
//! once it holds its job-pool lease and executes it here, with the same
//! planning, lake rules and writes as an interactive statement — as the
//! job's owner, with the roles the owner delegated to the job, never a
//! user's token.
//!
//! Every write a run makes is committed with a Delta application
//! transaction (app id: the job and the statement's place in it; version:
//! the run's sequence number). A retried run — after its gateway or an
//! executor was lost, or a failover — keeps its sequence number, so a
//! statement whose write already landed is skipped, not appended twice.

mod check;
mod kernel;
mod run;
mod worker;

pub use check::{check, delegated_grants};
pub(crate) use check::{invalid, work_of};
pub use run::{output_path, RunReport};

use std::sync::Arc;
use std::time::Duration;

use crate::kernel::KernelOptions;
use crate::lease::LeaseClient;
use crate::query::Queries;
use crate::session::Sessions;
use tarn_common::supervisor::Supervisor;

/// What the job worker needs to know.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Runs this gateway executes at once (0: it runs none).
    pub workers: usize,
    /// How often a running run's lease is renewed.
    pub renew: Duration,
    /// How a run's results are rendered into its output notebook.
    pub render: KernelOptions,
}

/// Runs jobs on this gateway.
pub struct Jobs {
    /// Hosts `tarn-python` notebook runs, when this gateway can.
    python: Option<Arc<crate::kernel::PythonHost>>,
    sessions: Arc<Sessions>,
    queries: Arc<Queries>,
    opts: JobOptions,
    worker_id: String,
    tasks: Supervisor,
}

impl Jobs {
    /// Jobs run with `sessions`' planning and `queries`' execution; the
    /// worker id names this gateway to the coordinator.
    pub fn new(
        sessions: Arc<Sessions>,
        queries: Arc<Queries>,
        opts: JobOptions,
        worker_id: String,
        tasks: Supervisor,
    ) -> Self {
        Self {
            python: None,
            sessions,
            queries,
            opts,
            worker_id,
            tasks,
        }
    }

    /// Python notebook jobs run in kernels from `host`.
    pub fn with_python(mut self, host: Option<Arc<crate::kernel::PythonHost>>) -> Self {
        self.python = host;
        self
    }

    fn leases(&self) -> &LeaseClient {
        self.sessions.leases()
    }
}
