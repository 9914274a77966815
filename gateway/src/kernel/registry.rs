//! The gateway's kernels: starting one (its session and its cell runner),
//! finding it for its owner, restarting and shutting it down, and ending
//! it with its session, remembering why so a late request learns it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use serde_json::json;
use tarn_common::{ErrorCode, TarnError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::channel::close_reason;
use super::{
    Kernel, KernelOptions, Kernels, PythonHost, CLOSE_GATEWAY_STOPPING, CLOSE_SESSION_ENDED,
    CLOSE_SHUTDOWN, KERNEL_NAME, KQL_KERNEL, PYTHON_KERNEL,
};
use crate::auth::Identity;
use crate::lease::LeaseWish;
use crate::query::Queries;
use crate::session::{Session, Sessions};

impl Kernels {
    /// The gateway's `/metrics` text.
    pub fn metrics_text(&self) -> String {
        self.queries
            .metrics()
            .render(self.sessions.open_count(), self.kernels.len())
    }

    /// Kernels over `sessions`, running cells through `queries`.
    pub fn new(
        sessions: Arc<Sessions>,
        queries: Arc<Queries>,
        opts: KernelOptions,
        python: Result<Arc<PythonHost>, String>,
    ) -> Arc<Self> {
        let k = Arc::new(Self {
            sessions,
            queries,
            opts,
            python,
            kernels: DashMap::new(),
            ended: DashMap::new(),
            next_conn: AtomicU64::new(1),
        });
        // A kernel ends with its session, whatever ended the session.
        let mut events = k.sessions.subscribe();
        let weak = Arc::downgrade(&k);
        let stop = k.queries.tasks().token().clone();
        k.queries
            .tasks()
            .spawn("end kernels with their sessions", async move {
                loop {
                    let Some(event) = unless_stopped(&stop, events.recv()).await else {
                        return;
                    };
                    let Some(k) = weak.upgrade() else { return };
                    match event {
                        Ok((session_id, why)) => k.session_ended(&session_id, why),
                        // Missed some: end every kernel whose session is gone.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            let gone: Vec<String> = k
                                .kernels
                                .iter()
                                .filter(|x| !k.sessions.is_open(&x.session.id))
                                .map(|x| x.session.id.clone())
                                .collect();
                            for id in gone {
                                k.session_ended(
                                    &id,
                                    TarnError::new(ErrorCode::SessionNotFound, "the session ended"),
                                );
                            }
                        }
                        Err(_) => return,
                    }
                }
            });
        k
    }

    /// Ends every kernel because the gateway is stopping: each notebook
    /// hears why, and each websocket closes with 1012 (service restart).
    pub fn end_all_for_shutdown(&self) {
        let why = TarnError::new(
            ErrorCode::GatewayShuttingDown,
            "this gateway is shutting down; the kernel ended",
        );
        let sessions: Vec<String> = self.kernels.iter().map(|k| k.session.id.clone()).collect();
        for id in sessions {
            self.session_ended(&id, why.clone());
        }
    }

    /// The options.
    pub fn options(&self) -> &KernelOptions {
        &self.opts
    }

    fn session_ended(&self, session_id: &str, why: TarnError) {
        let ids: Vec<String> = self
            .kernels
            .iter()
            .filter(|k| k.session.id == session_id)
            .map(|k| k.id.clone())
            .collect();
        for id in ids {
            if let Some((_, k)) = self.kernels.remove(&id) {
                // 404 whatever the cause: notebook clients treat it as
                // "this kernel is gone"; the message says why. Remembered
                // before the notebook is told, so a client that asks at
                // once hears the reason, not "no kernel".
                self.remember(
                    &id,
                    TarnError::new(
                        ErrorCode::KernelNotFound,
                        format!("kernel {id} ended: {}", why.message),
                    ),
                );
                k.interrupt(&self.queries);
                let timed_out = why.code == ErrorCode::SessionTimedOut;
                // The whole story goes to the notebook; the close reason
                // is short (websocket reasons are at most 123 bytes).
                k.emit(
                    "iopub",
                    "stream",
                    &k.last_parent.lock().clone(),
                    json!({"name": "stderr", "text": format!("{why}\n")}),
                );
                let (code, reason) = if timed_out {
                    (
                        CLOSE_SESSION_ENDED,
                        close_reason(
                            ErrorCode::SessionTimedOut,
                            "the session ended after inactivity",
                        ),
                    )
                } else if why.code == ErrorCode::GatewayShuttingDown {
                    (
                        CLOSE_GATEWAY_STOPPING,
                        close_reason(
                            ErrorCode::GatewayShuttingDown,
                            "the gateway is shutting down",
                        ),
                    )
                } else {
                    (CLOSE_SHUTDOWN, "the kernel was shut down".to_string())
                };
                k.end(code, reason);
                tracing::info!(kernel = %id, reason = %why.message, "kernel ended");
            }
        }
    }

    pub(super) fn remember(&self, id: &str, why: TarnError) {
        if self.ended.len() > 4096 {
            self.ended.clear();
        }
        self.ended.insert(id.to_string(), why);
    }

    /// Starts a kernel for `who`: opens its session (taking a lease).
    pub async fn start(
        self: &Arc<Self>,
        who: &Identity,
        name: &str,
        wish: &LeaseWish,
    ) -> Result<Arc<Kernel>, TarnError> {
        let spec = match name {
            "" | KERNEL_NAME => KERNEL_NAME,
            KQL_KERNEL => KQL_KERNEL,
            PYTHON_KERNEL => {
                self.python_host()?;
                PYTHON_KERNEL
            }
            other => {
                return Err(TarnError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "there is no kernelspec {other:?}; this gateway offers {:?}",
                        self.spec_names()
                    ),
                )
                .with_fix("start one of those (GET /api/kernelspecs)"))
            }
        };
        // A Python kernel's session is what its user's code acts with: it
        // never names files, whatever its user may do elsewhere.
        let session = if spec == PYTHON_KERNEL {
            let mut who = who.clone();
            who.grants.operator = false;
            self.sessions.open(&who, wish).await?
        } else {
            self.sessions.open(who, wish).await?
        };
        let (cells, mut queue) = mpsc::unbounded_channel();
        let kernel = Arc::new(Kernel {
            id: uuid::Uuid::new_v4().to_string(),
            spec,
            process: tokio::sync::watch::Sender::new(None),
            outbox: parking_lot::Mutex::new(None),
            generation: AtomicU64::new(0),
            session,
            jupyter_session: uuid::Uuid::new_v4().to_string(),
            last_activity: parking_lot::Mutex::new(SystemTime::now()),
            busy: std::sync::atomic::AtomicBool::new(false),
            unanswered: parking_lot::Mutex::new(Default::default()),
            execution_count: AtomicU32::new(0),
            out: parking_lot::Mutex::new(None),
            current: parking_lot::Mutex::new(None),
            completing: Arc::new(tokio::sync::Semaphore::new(1)),
            cells,
            queued: AtomicU64::new(0),
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            abort_upto: AtomicU64::new(0),
            last_parent: parking_lot::Mutex::new(json!({})),
            closed: CancellationToken::new(),
            ended: parking_lot::Mutex::new(None),
        });
        self.kernels.insert(kernel.id.clone(), Arc::clone(&kernel));
        if spec == PYTHON_KERNEL {
            if let Err(e) = self.attach_process(&kernel).await {
                self.kernels.remove(&kernel.id);
                kernel.end(CLOSE_SHUTDOWN, "the kernel could not start".into());
                self.sessions.close(&kernel.session.id).await;
                return Err(e);
            }
            tracing::info!(kernel = %kernel.id, user = %who.user, vcores = kernel.session.vcores, spec, "kernel started");
            return Ok(kernel);
        }
        // One runner per kernel: cells run one at a time, in the order
        // they arrived.
        let me = Arc::clone(self);
        let k = Arc::clone(&kernel);
        let stop = self.queries.tasks().token().clone();
        self.queries
            .tasks()
            .spawn("kernel cell runner", async move {
                loop {
                    // Ends with the kernel or the gateway, or when its
                    // queue is gone.
                    let next = unless_stopped(&stop, unless_stopped(&k.closed, queue.recv())).await;
                    let Some((seq, msg, sender)) = next.flatten().flatten() else {
                        return;
                    };
                    k.waiting.fetch_sub(1, Ordering::SeqCst);
                    if seq <= k.abort_upto.load(Ordering::SeqCst) {
                        k.abort(&msg);
                    } else if me.execute(&k, msg, &sender).await {
                        // Stop on error: the cells queued behind it are aborted.
                        k.abort_queued();
                    }
                }
            });
        tracing::info!(kernel = %kernel.id, user = %who.user, vcores = kernel.session.vcores, spec, "kernel started");
        Ok(kernel)
    }

    /// The kernelspecs this gateway offers.
    pub fn spec_names(&self) -> Vec<&'static str> {
        let mut names = vec![KERNEL_NAME, KQL_KERNEL];
        if self.python.is_ok() {
            names.push(PYTHON_KERNEL);
        }
        names
    }

    /// A kernel `who` may use; others' kernels look unknown.
    pub fn get(&self, id: &str, who: &Identity) -> Result<Arc<Kernel>, TarnError> {
        match self.kernels.get(id).map(|k| Arc::clone(&k)) {
            Some(k) if owns(who, &k.session) => Ok(k),
            _ => Err(self.ended.get(id).map(|e| e.clone()).unwrap_or_else(|| {
                TarnError::new(ErrorCode::KernelNotFound, format!("no kernel {id:?}"))
            })),
        }
    }

    /// The kernels `who` may use.
    pub fn list(&self, who: &Identity) -> Vec<Arc<Kernel>> {
        self.kernels
            .iter()
            .filter(|k| owns(who, &k.session))
            .map(|k| Arc::clone(&k))
            .collect()
    }

    /// Shuts a kernel down: its cell is interrupted, its session closed
    /// and its lease released.
    pub async fn shutdown(&self, kernel: &Kernel) {
        kernel.abort_queued();
        kernel.interrupt(&self.queries);
        if self.kernels.remove(&kernel.id).is_some() {
            self.remember(
                &kernel.id,
                TarnError::new(
                    ErrorCode::KernelNotFound,
                    format!("kernel {} was shut down", kernel.id),
                ),
            );
            kernel.end(CLOSE_SHUTDOWN, "the kernel was shut down".into());
            self.sessions.close(&kernel.session.id).await;
            tracing::info!(kernel = %kernel.id, "kernel shut down");
        }
    }

    /// What a `shutdown_request` on the websocket asks for, once it is
    /// answered: a restart, or the kernel's end (which closes that very
    /// websocket, so it runs apart from it).
    pub(super) fn shutdown_requested(self: &Arc<Self>, kernel: &Arc<Kernel>, restart: bool) {
        if restart {
            self.restart(kernel);
        } else {
            let me = Arc::clone(self);
            let kernel = Arc::clone(kernel);
            self.queries
                .tasks()
                .spawn("kernel shutdown", async move { me.shutdown(&kernel).await });
        }
    }

    /// Restart: the running cell is interrupted and the execution count
    /// starts again; the session and its lease stay.
    pub fn restart(self: &Arc<Self>, kernel: &Arc<Kernel>) {
        if kernel.spec == PYTHON_KERNEL {
            self.restart_process(kernel);
            return;
        }
        kernel.abort_queued();
        kernel.interrupt(&self.queries);
        kernel.execution_count.store(0, Ordering::SeqCst);
        kernel.status(&json!({}), "idle");
    }

    /// Interrupts a kernel's running cell.
    pub fn interrupt(&self, kernel: &Kernel) -> bool {
        kernel.interrupt(&self.queries)
    }

    /// Warns kernels whose session has been idle long enough that it will
    /// end in `remaining`.
    pub fn warn_idle(&self, session_ids: &[String], remaining: Duration) {
        for k in self.kernels.iter() {
            if session_ids.contains(&k.session.id) {
                let text = format!(
                    "Warning: this session ends in {} unless it is used: sessions end after {} without activity. Run a cell to keep it.\n",
                    tarn_common::auth::human(remaining.as_secs()),
                    tarn_common::auth::human(self.opts.idle_timeout.as_secs()),
                );
                k.emit(
                    "iopub",
                    "stream",
                    &k.last_parent.lock().clone(),
                    json!({"name": "stderr", "text": text}),
                );
            }
        }
    }
}

/// `next`, or `None` if `stop` is cancelled first. The kernels' background
/// loops wait for their next event or cell through this, so each ends as
/// soon as the gateway, or its kernel, stops.
async fn unless_stopped<T>(
    stop: &CancellationToken,
    next: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        _ = stop.cancelled() => None,
        v = next => Some(v),
    }
}

fn owns(who: &Identity, session: &Session) -> bool {
    // Dev-mode callers without a token share the anonymous view.
    who.user == session.user || (who.token.is_none() && who.user == crate::auth::ANONYMOUS)
}
