//! Jupyter kernels: the Jupyter Server kernels API and messaging 5.3 over
//! a websocket, with SQL cells (`tarn-sql`), KQL cells (`tarn-kql`) or a
//! hosted IPython process (`tarn-python`).
//!
//! A kernel is an interactive session (a vCore lease) plus what Jupyter
//! needs: an id, an execution state and count, and at most one websocket.
//! Cells run one at a time per kernel; each statement of a cell is a query
//! like any Flight SQL query (same planner, limits and cancellation).
//! Output is sent to whichever websocket is attached when it is produced,
//! so a notebook that reconnects mid-query still gets the result.

mod channel;
mod complete;
mod execute;
mod magic;
mod python;
mod registry;
mod render;

pub use python::{Extender, Minter, PythonHost, LAKE_SOCKET_INSIDE, POD_FIRST_PORT, PYTHON_KERNEL};

pub use execute::split_statements;
pub use magic::{cell_queries, CellQuery};
pub use render::group;
pub use render::render as render_result;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use serde_json::{json, Value};
use tarn_common::TarnError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::kernel_auth::Sender;
use crate::query::Queries;
use crate::session::{Session, Sessions};

/// The SQL kernelspec (the default).
pub const KERNEL_NAME: &str = "tarn-sql";
/// The KQL kernelspec: each cell is one KQL query.
pub const KQL_KERNEL: &str = "tarn-kql";
/// Close code: the websocket reached its lifetime (the kernel lives on).
pub const CLOSE_LIFETIME: u16 = 4001;
/// Close code: the kernel's session ended (inactivity, lease lost).
pub const CLOSE_SESSION_ENDED: u16 = 4000;
/// Close code: the kernel was shut down.
pub const CLOSE_SHUTDOWN: u16 = 4004;
/// Close code (RFC 6455 "service restart"): the gateway is stopping.
pub const CLOSE_GATEWAY_STOPPING: u16 = 1012;
/// Close code: the credential the websocket connected with expired.
pub const CLOSE_CREDENTIALS_EXPIRED: u16 = 4401;
/// Close code: another websocket is attached to the kernel.
pub const CLOSE_ALREADY_CONNECTED: u16 = 4409;
/// Close code (RFC 6455): a message was larger than accepted.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Limits and addresses kernels need.
#[derive(Debug, Clone)]
pub struct KernelOptions {
    /// A websocket is closed after this long.
    pub websocket_lifetime: Duration,
    /// Largest message accepted.
    pub max_message_bytes: usize,
    /// Rows shown per result.
    pub max_result_rows: usize,
    /// Bytes of rendered rows per result (tornado-based clients such as
    /// `jupyter_server --gateway-url` drop messages over 10 MiB).
    pub max_output_bytes: usize,
    /// Cells waiting behind the running one; more get KERNEL_QUEUE_FULL.
    pub max_queued_cells: usize,
    /// Where the whole result can be fetched (`grpc://host:port`).
    pub flight_url: String,
    /// The inactivity limit (for the warning text).
    pub idle_timeout: Duration,
}

/// Something to send on a kernel's websocket.
#[derive(Debug)]
pub enum Outgoing {
    /// A JSON message.
    Text(String),
    /// Close with a code and a reason (≤ 123 bytes).
    Close(u16, String),
}

/// One kernel.
pub struct Kernel {
    /// Jupyter's id (a UUID with dashes; clients' URL patterns need them).
    pub id: String,
    /// Its kernelspec: `tarn-sql`, `tarn-kql` or `tarn-python`.
    pub spec: &'static str,
    /// A `tarn-python` kernel's process (none while it restarts).
    process: tokio::sync::watch::Sender<Option<Arc<tarn_pykernel::HostedKernel>>>,
    /// Messages for the process, sent in order by one task; they wait
    /// there while the process restarts.
    outbox: parking_lot::Mutex<
        Option<mpsc::UnboundedSender<(tarn_pykernel::Channel, tarn_pykernel::Message)>>,
    >,
    /// Bumped whenever the process is replaced: what an older one says
    /// is not passed on.
    generation: AtomicU64,
    /// The session it runs in.
    pub session: Arc<Session>,
    /// The kernel's own Jupyter session id (message headers).
    jupyter_session: String,
    last_activity: parking_lot::Mutex<SystemTime>,
    busy: std::sync::atomic::AtomicBool,
    /// Execute requests a `tarn-python` process was sent and has not
    /// answered (by message id, with their headers).
    unanswered: parking_lot::Mutex<std::collections::HashMap<String, Value>>,
    execution_count: AtomicU32,
    /// The attached websocket: its number and sender.
    out: parking_lot::Mutex<Option<(u64, mpsc::UnboundedSender<Outgoing>)>>,
    /// The cell running now: its interrupt token and current run id.
    current: parking_lot::Mutex<Option<(CancellationToken, Option<String>)>>,
    /// At most one completion request runs at a time.
    completing: Arc<tokio::sync::Semaphore>,
    /// Cells waiting to run, in arrival order, each with its number and
    /// the credential that sent it (the cell runs as that credential).
    cells: mpsc::UnboundedSender<(u64, Value, Arc<Sender>)>,
    /// Number of the last cell queued.
    queued: AtomicU64,
    /// Cells queued and not yet taken by the runner.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// Cells numbered up to this are answered `aborted` instead of run
    /// (after an error with stop_on_error, a restart or a shutdown).
    abort_upto: AtomicU64,
    /// The header of the last execute request (idle warnings go under it).
    last_parent: parking_lot::Mutex<Value>,
    /// Cancelled when the kernel ends; the websocket closes with `ended`.
    closed: CancellationToken,
    ended: parking_lot::Mutex<Option<(u16, String)>>,
}

impl Kernel {
    /// The language its cells are written in when they say nothing else.
    pub fn language(&self) -> crate::session::Language {
        if self.spec == KQL_KERNEL {
            crate::session::Language::Kql
        } else {
            crate::session::Language::Sql
        }
    }

    /// The kernel model of the Jupyter Server API.
    pub fn model(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.spec,
            "last_activity": jupyter_time(*self.last_activity.lock()),
            "execution_state": if self.busy.load(Ordering::SeqCst) { "busy" } else { "idle" },
            "connections": u32::from(self.out.lock().is_some()),
            "tarn": {
                "session_id": self.session.id,
                "user": self.session.user,
                "vcores": self.session.vcores,
                "lease_id": self.session.lease_id,
            },
        })
    }

    fn touch(&self) {
        *self.last_activity.lock() = SystemTime::now();
        self.session.touch();
    }

    /// Sends to the attached websocket, if any.
    fn send(&self, text: String) {
        if let Some((_, tx)) = self.out.lock().as_ref() {
            let _ = tx.send(Outgoing::Text(text));
        }
    }

    /// A Jupyter message answering (or caused by) `parent`.
    fn message(&self, channel: &str, msg_type: &str, parent: &Value, content: Value) -> String {
        let msg_id = uuid::Uuid::new_v4().to_string();
        // `msg_id` and `msg_type` also at the top level, where Jupyter's own
        // sessions put them and its clients read them.
        json!({
            "msg_id": msg_id,
            "msg_type": msg_type,
            "header": {
                "msg_id": msg_id,
                "msg_type": msg_type,
                "username": "tarn",
                "session": self.jupyter_session,
                "date": jupyter_time(SystemTime::now()),
                "version": "5.3",
            },
            "parent_header": parent.get("header").cloned().unwrap_or_else(|| json!({})),
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        })
        .to_string()
    }

    fn emit(&self, channel: &str, msg_type: &str, parent: &Value, content: Value) {
        self.send(self.message(channel, msg_type, parent, content));
    }

    fn status(&self, parent: &Value, state: &str) {
        self.emit(
            "iopub",
            "status",
            parent,
            json!({ "execution_state": state }),
        );
    }

    /// Stops the running cell (within a second: the query's stream ends at
    /// once and its Ballista jobs are cancelled).
    pub fn interrupt(&self, queries: &Queries) -> bool {
        if self.spec == PYTHON_KERNEL {
            return self.interrupt_process();
        }
        let current = self.current.lock().clone();
        match current {
            Some((token, run)) => {
                token.cancel();
                if let Some(run) = run {
                    queries.cancel_run(&run);
                }
                true
            }
            None => false,
        }
    }

    /// Every cell queued so far is answered `aborted` instead of run.
    fn abort_queued(&self) {
        self.abort_upto
            .fetch_max(self.queued.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Answers a queued cell that will not run, as Jupyter expects.
    fn abort(&self, parent: &Value) {
        let count = self.execution_count.load(Ordering::SeqCst);
        self.status(parent, "busy");
        self.emit(
            "shell",
            "execute_reply",
            parent,
            json!({"status": "aborted", "execution_count": count}),
        );
        self.status(parent, "idle");
    }

    fn end(&self, code: u16, reason: String) {
        self.kill_process();
        *self.ended.lock() = Some((code, reason));
        self.closed.cancel();
    }
}

/// All kernels of this gateway.
pub struct Kernels {
    sessions: Arc<Sessions>,
    queries: Arc<Queries>,
    opts: KernelOptions,
    kernels: DashMap<String, Arc<Kernel>>,
    /// How Python kernels are hosted, or why they cannot be.
    python: Result<Arc<PythonHost>, String>,
    /// Why recently ended kernels ended.
    ended: DashMap<String, TarnError>,
    next_conn: AtomicU64,
}

/// Jupyter's `error` content for a Tarn error.
pub fn error_content(e: &TarnError) -> Value {
    json!({
        "ename": format!("{} {}", e.code, e.code.name()),
        "evalue": format!("{}. Fix: {}", e.message, e.fix()),
        "traceback": [e.to_string()],
    })
}

/// `%Y-%m-%dT%H:%M:%S.%fZ`, the form Jupyter's clients parse.
pub fn jupyter_time(t: SystemTime) -> String {
    let d: chrono::DateTime<chrono::Utc> = t.into();
    d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
