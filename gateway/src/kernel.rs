//! Jupyter kernels: the Jupyter Server kernels API and messaging 5.3 over
//! a websocket, with SQL cells.
//!
//! A kernel is an interactive session (a vCore lease) plus what Jupyter
//! needs: an id, an execution state and count, and at most one websocket.
//! Cells run one at a time per kernel; each statement of a cell is a query
//! like any Flight SQL query (same planner, limits and cancellation).
//! Output is sent to whichever websocket is attached when it is produced,
//! so a notebook that reconnects mid-query still gets the result.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use dashmap::DashMap;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tarn_common::{ErrorCode, TarnError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::Identity;
use crate::kernel_auth::Sender;
use crate::lease::LeaseWish;
use crate::query::Queries;
use crate::session::{Session, Sessions};

/// The one kernelspec.
pub const KERNEL_NAME: &str = "tarn-sql";
/// Close code: the websocket reached its lifetime (the kernel lives on).
pub const CLOSE_LIFETIME: u16 = 4001;
/// Close code: the kernel's session ended (inactivity, lease lost).
pub const CLOSE_SESSION_ENDED: u16 = 4000;
/// Close code: the kernel was shut down.
pub const CLOSE_SHUTDOWN: u16 = 4004;
/// Close code: the credential the websocket connected with expired.
pub const CLOSE_CREDENTIALS_EXPIRED: u16 = 4401;
/// Close code: another websocket is attached to the kernel.
pub const CLOSE_ALREADY_CONNECTED: u16 = 4409;
/// Close code (RFC 6455): a message was larger than accepted.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Rows of the plain-text view of a result (the HTML and table views
/// carry every row shown).
const PLAIN_ROWS: usize = 20;
/// Longest cell text shown; longer values end with `…`.
const MAX_CELL_CHARS: usize = 300;
/// How often an idle websocket is pinged.
const PING_EVERY: Duration = Duration::from_secs(30);
/// How often a running cell's progress display is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

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
    /// The session it runs in.
    pub session: Arc<Session>,
    /// The kernel's own Jupyter session id (message headers).
    jupyter_session: String,
    last_activity: parking_lot::Mutex<SystemTime>,
    busy: std::sync::atomic::AtomicBool,
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
    /// The kernel model of the Jupyter Server API.
    pub fn model(&self) -> Value {
        json!({
            "id": self.id,
            "name": KERNEL_NAME,
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
        json!({
            "header": {
                "msg_id": uuid::Uuid::new_v4().to_string(),
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
    /// Why recently ended kernels ended.
    ended: DashMap<String, TarnError>,
    next_conn: AtomicU64,
}

impl Kernels {
    /// The gateway's `/metrics` text.
    pub fn metrics_text(&self) -> String {
        self.queries
            .metrics()
            .render(self.sessions.open_count(), self.kernels.len())
    }

    /// Kernels over `sessions`, running cells through `queries`.
    pub fn new(sessions: Arc<Sessions>, queries: Arc<Queries>, opts: KernelOptions) -> Arc<Self> {
        let k = Arc::new(Self {
            sessions,
            queries,
            opts,
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
                    let event = tokio::select! {
                        _ = stop.cancelled() => return,
                        e = events.recv() => e,
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
                } else {
                    (CLOSE_SHUTDOWN, "the kernel was shut down".to_string())
                };
                // 404 whatever the cause: notebook clients treat it as
                // "this kernel is gone"; the message says why.
                self.remember(
                    &id,
                    TarnError::new(
                        ErrorCode::KernelNotFound,
                        format!("kernel {id} ended: {}", why.message),
                    ),
                );
                k.end(code, reason);
                tracing::info!(kernel = %id, reason = %why.message, "kernel ended");
            }
        }
    }

    fn remember(&self, id: &str, why: TarnError) {
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
        if !name.is_empty() && name != KERNEL_NAME {
            return Err(TarnError::new(
                ErrorCode::InvalidArgument,
                format!("there is no kernelspec {name:?}; this gateway offers {KERNEL_NAME:?}"),
            )
            .with_fix(format!(
                "start a {KERNEL_NAME:?} kernel (GET /api/kernelspecs)"
            )));
        }
        let session = self.sessions.open(who, wish).await?;
        let (cells, mut queue) = mpsc::unbounded_channel();
        let kernel = Arc::new(Kernel {
            id: uuid::Uuid::new_v4().to_string(),
            session,
            jupyter_session: uuid::Uuid::new_v4().to_string(),
            last_activity: parking_lot::Mutex::new(SystemTime::now()),
            busy: std::sync::atomic::AtomicBool::new(false),
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
        // One runner per kernel: cells run one at a time, in the order
        // they arrived.
        let me = Arc::clone(self);
        let k = Arc::clone(&kernel);
        let stop = self.queries.tasks().token().clone();
        self.queries
            .tasks()
            .spawn("kernel cell runner", async move {
                loop {
                    let next = tokio::select! {
                        _ = k.closed.cancelled() => return,
                        _ = stop.cancelled() => return,
                        next = queue.recv() => next,
                    };
                    let Some((seq, msg, sender)) = next else {
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
        tracing::info!(kernel = %kernel.id, user = %who.user, vcores = kernel.session.vcores, "kernel started");
        Ok(kernel)
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

    /// Restart: the running cell is interrupted and the execution count
    /// starts again; the session and its lease stay.
    pub fn restart(&self, kernel: &Kernel) {
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

    /// Serves one websocket until it closes, the kernel ends, or its
    /// lifetime is reached.
    /// Every message it carries acts as `who`, the credential that opened
    /// it (its roles met with the kernel's), and the websocket closes with
    /// 4401 when that credential expires.
    pub async fn connect(
        self: &Arc<Self>,
        kernel: Arc<Kernel>,
        socket: axum::extract::ws::WebSocket,
        who: Identity,
    ) {
        use axum::extract::ws::{CloseFrame, Message};
        let sender = Arc::new(Sender::new(&who, &kernel.session.grants));
        let credential_expires_ms = sender.expires_ms;
        let (mut sink, mut incoming) = socket.split();
        let close = |code: u16, reason: String| {
            Message::Close(Some(CloseFrame {
                code,
                reason: truncate_reason(reason).into(),
            }))
        };
        let conn = self.next_conn.fetch_add(1, Ordering::SeqCst);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let taken = {
            let mut out = kernel.out.lock();
            let taken = out.as_ref().is_some_and(|(_, t)| !t.is_closed());
            if !taken {
                *out = Some((conn, tx));
            }
            taken
        };
        if taken {
            let e = TarnError::new(
                ErrorCode::KernelAlreadyConnected,
                "another websocket is attached to this kernel",
            );
            let reason = format!("{} {}: {}", e.code, e.code.name(), e.message);
            let _ = futures::SinkExt::send(&mut sink, close(CLOSE_ALREADY_CONNECTED, reason)).await;
            return;
        }
        tracing::info!(kernel = %kernel.id, conn, user = %sender.user, grants = %sender.grants.describe(), "websocket attached");
        let lifetime = tokio::time::sleep(self.opts.websocket_lifetime);
        tokio::pin!(lifetime);
        // The credential it connected with ends the websocket too (a
        // running cell finishes; a new websocket with a fresh token sees
        // its output).
        let credential = credential_expires_ms
            .map(|exp| Duration::from_millis(exp.saturating_sub(crate::session::now_ms())));
        let credential =
            tokio::time::sleep(credential.unwrap_or(Duration::from_secs(10 * 365 * 86_400)));
        tokio::pin!(credential);
        // Pings find a peer that vanished without closing, so the kernel is
        // free for a new websocket within about a minute, not when TCP
        // gives up.
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut last_heard = Instant::now();
        let why = loop {
            tokio::select! {
                _ = ping.tick() => {
                    if last_heard.elapsed() > PING_EVERY * 2 + Duration::from_secs(15) {
                        tracing::info!(kernel = %kernel.id, conn, "websocket peer stopped answering pings");
                        break None;
                    }
                    let sent = tokio::time::timeout(
                        Duration::from_secs(10),
                        futures::SinkExt::send(&mut sink, Message::Ping(Vec::new().into())),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break None;
                    }
                }
                _ = &mut lifetime => {
                    break Some((CLOSE_LIFETIME, close_reason(ErrorCode::ConnectionLifetimeReached, format!(
                        "websocket closed after {}; reconnect, the kernel is running",
                        tarn_common::auth::human(self.opts.websocket_lifetime.as_secs())
                    ))));
                }
                _ = &mut credential => {
                    break Some((CLOSE_CREDENTIALS_EXPIRED,
                        close_reason(ErrorCode::CredentialsExpired, "reconnect with a new token; the kernel is running")));
                }
                _ = kernel.closed.cancelled() => {
                    // Flush what the kernel said last, then close.
                    while let Ok(Outgoing::Text(t)) = rx.try_recv() {
                        let _ = futures::SinkExt::send(&mut sink, Message::Text(t.into())).await;
                    }
                    break kernel.ended.lock().clone();
                }
                out = rx.recv() => match out {
                    Some(Outgoing::Text(t)) => {
                        // A client that stops reading loses its websocket,
                        // not the gateway's memory.
                        let sent = tokio::time::timeout(
                            Duration::from_secs(30),
                            futures::SinkExt::send(&mut sink, Message::Text(t.into())),
                        )
                        .await;
                        if !matches!(sent, Ok(Ok(()))) {
                            break None;
                        }
                    }
                    Some(Outgoing::Close(code, reason)) => break Some((code, reason)),
                    None => break None,
                },
                msg = incoming.next() => {
                    last_heard = Instant::now();
                    match msg {
                    Some(Ok(Message::Text(t))) => {
                        if t.len() > self.opts.max_message_bytes {
                            break Some((CLOSE_TOO_BIG, close_reason(ErrorCode::InvalidArgument, format!(
                                "a {} byte message exceeds the {} byte limit",
                                t.len(), self.opts.max_message_bytes
                            ))));
                        }
                        // Checked per message, not only by the timer: a
                        // message that races the expiry is still refused.
                        if sender.expired_at(crate::session::now_ms()) {
                            self.refuse(&kernel, t.as_str(), &sender);
                            // The refusal goes out before the close.
                            while let Ok(Outgoing::Text(t)) = rx.try_recv() {
                                let _ = futures::SinkExt::send(&mut sink, Message::Text(t.into())).await;
                            }
                            break Some((CLOSE_CREDENTIALS_EXPIRED,
                                close_reason(ErrorCode::CredentialsExpired, "reconnect with a new token; the kernel is running")));
                        }
                        self.handle(&kernel, t.as_str(), &sender);
                    }
                    Some(Ok(Message::Binary(b))) => {
                        if b.len() > self.opts.max_message_bytes {
                            break Some((CLOSE_TOO_BIG, close_reason(ErrorCode::InvalidArgument, format!(
                                "a {} byte message exceeds the {} byte limit",
                                b.len(), self.opts.max_message_bytes
                            ))));
                        }
                        kernel.emit("iopub", "error", &json!({}), error_content(&TarnError::new(
                            ErrorCode::InvalidArgument,
                            "binary websocket frames are not supported",
                        ).with_fix("send Jupyter messages as JSON text frames")));
                    }
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Ok(_)) => {} // ping/pong: answered by the library
                    Some(Err(e)) => {
                        if is_too_big(e) {
                            break Some((CLOSE_TOO_BIG, close_reason(ErrorCode::InvalidArgument, format!(
                                "message over the {} byte limit",
                                self.opts.max_message_bytes
                            ))));
                        }
                        break None;
                    }
                }
                },
            }
        };
        {
            let mut out = kernel.out.lock();
            if out.as_ref().is_some_and(|(c, _)| *c == conn) {
                *out = None;
            }
        }
        if let Some((code, reason)) = why {
            tracing::info!(kernel = %kernel.id, conn, code, %reason, "closing websocket");
            let _ = futures::SinkExt::send(&mut sink, close(code, reason)).await;
        }
        tracing::info!(kernel = %kernel.id, conn, "websocket detached");
    }

    /// Answers a message whose sender's credential has expired with
    /// TARN-2202 in the form its type expects (an execute request gets
    /// its error and an `error` reply), and acts on nothing.
    fn refuse(&self, kernel: &Kernel, text: &str, sender: &Sender) {
        let Err(e) = sender.check(crate::session::now_ms()) else {
            return;
        };
        let Ok(d) = crate::kernel_msg::decode(text) else {
            kernel.emit("iopub", "error", &json!({}), error_content(&e));
            return;
        };
        tracing::info!(kernel = %kernel.id, user = %sender.user, msg_type = %d.msg_type, "refused a message: credential expired");
        let mut content = error_content(&e);
        content["status"] = json!("error");
        if d.msg_type == "execute_request" {
            kernel.emit("iopub", "error", &d.msg, error_content(&e));
            content["execution_count"] = json!(kernel.execution_count.load(Ordering::SeqCst));
        }
        match d.msg_type.strip_suffix("_request") {
            Some(base) => kernel.emit(&d.channel, &format!("{base}_reply"), &d.msg, content),
            None => kernel.emit("iopub", "error", &d.msg, error_content(&e)),
        }
    }

    /// One message from the client. Malformed input gets an error message,
    /// never a dropped connection or a dead kernel.
    fn handle(self: &Arc<Self>, kernel: &Arc<Kernel>, text: &str, sender: &Arc<Sender>) {
        let crate::kernel_msg::Decoded {
            msg,
            msg_type,
            channel,
            content,
        } = match crate::kernel_msg::decode(text) {
            Ok(d) => d,
            Err(r) => {
                kernel.emit("iopub", "error", &r.parent, error_content(&r.error));
                return;
            }
        };
        kernel.touch();
        // Busy/idle around a reply only while no cell runs: front ends
        // take every status at face value.
        let reply = |content: Value| {
            let reply_type = msg_type.replace("_request", "_reply");
            let quiet = kernel.busy.load(Ordering::SeqCst);
            if !quiet {
                kernel.status(&msg, "busy");
            }
            kernel.emit(&channel, &reply_type, &msg, content);
            if !quiet {
                kernel.status(&msg, "idle");
            }
        };
        match msg_type.as_str() {
            "kernel_info_request" => reply(kernel_info()),
            "execute_request" => {
                if let Err(e) = crate::cells::admit(&kernel.waiting, self.opts.max_queued_cells) {
                    let count = kernel.execution_count.load(Ordering::SeqCst);
                    crate::cells::refuse(&msg, &e, count, |ch, t, p, c| kernel.emit(ch, t, p, c));
                    return;
                }
                *kernel.last_parent.lock() = msg.clone();
                let seq = kernel.queued.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = kernel.cells.send((seq, msg, Arc::clone(sender)));
            }
            "complete_request" => {
                // One completion at a time per kernel: a burst while one
                // runs gets an empty answer rather than more lake listings.
                let Ok(permit) = Arc::clone(&kernel.completing).try_acquire_owned() else {
                    reply(
                        json!({"status": "ok", "matches": [], "cursor_start": 0, "cursor_end": 0, "metadata": {}}),
                    );
                    return;
                };
                let me = Arc::clone(self);
                let kernel = Arc::clone(kernel);
                let sender = Arc::clone(sender);
                self.queries.tasks().spawn("kernel completion", async move {
                    let c = me.complete(&kernel, &content, &sender.grants).await;
                    kernel.emit(&channel, "complete_reply", &msg, c);
                    drop(permit);
                });
            }
            "is_complete_request" => reply(json!({"status": "complete"})),
            "inspect_request" => {
                reply(json!({"status": "ok", "found": false, "data": {}, "metadata": {}}))
            }
            "history_request" => reply(json!({"status": "ok", "history": []})),
            "comm_info_request" => reply(json!({"status": "ok", "comms": {}})),
            "interrupt_request" => {
                kernel.interrupt(&self.queries);
                reply(json!({"status": "ok"}));
            }
            "shutdown_request" => {
                let restart = content
                    .get("restart")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                reply(json!({"status": "ok", "restart": restart}));
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
            // A comm nobody here serves is closed, as the protocol asks.
            "comm_open" => {
                let id = content.get("comm_id").cloned().unwrap_or(Value::Null);
                kernel.emit(
                    "iopub",
                    "comm_close",
                    &msg,
                    json!({"comm_id": id, "data": {}}),
                );
            }
            "input_reply" | "comm_msg" | "comm_close" => {}
            other => {
                let e = TarnError::new(
                    ErrorCode::Unsupported,
                    format!("Tarn's SQL kernel does not handle '{other}' messages"),
                )
                .with_fix("send execute_request, complete_request, kernel_info_request or interrupt_request");
                let reply_type = other
                    .strip_suffix("_request")
                    .map(|b| format!("{b}_reply"))
                    .unwrap_or_else(|| "error".into());
                let ch = if reply_type == "error" {
                    "iopub"
                } else {
                    channel.as_str()
                };
                kernel.emit(ch, &reply_type, &msg, error_content(&e));
            }
        }
    }

    /// Runs one cell; returns whether the cells queued behind it should
    /// be aborted (it failed and asked to stop on error).
    async fn execute(&self, kernel: &Kernel, parent: Value, sender: &Sender) -> bool {
        let content = parent.get("content").cloned().unwrap_or_else(|| json!({}));
        let code = content
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let silent = content
            .get("silent")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let store = content
            .get("store_history")
            .and_then(Value::as_bool)
            .unwrap_or(!silent);
        let stop_on_error = content
            .get("stop_on_error")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let token = CancellationToken::new();
        let count = if store && !silent {
            kernel.execution_count.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            kernel.execution_count.load(Ordering::SeqCst)
        };
        kernel.busy.store(true, Ordering::SeqCst);
        *kernel.current.lock() = Some((token.clone(), None));
        kernel.status(&parent, "busy");
        if !silent {
            kernel.emit(
                "iopub",
                "execute_input",
                &parent,
                json!({"code": code, "execution_count": count}),
            );
        }
        let statements = split_statements(&code);
        let mut failure = None;
        let last = statements.len().saturating_sub(1);
        for (i, sql) in statements.iter().enumerate() {
            if token.is_cancelled() {
                failure = Some(TarnError::new(
                    ErrorCode::Cancelled,
                    "the cell was interrupted",
                ));
                break;
            }
            // The sender's credential may have expired while the cell
            // waited in the queue or ran its earlier statements.
            if let Err(e) = sender.check(crate::session::now_ms()) {
                failure = Some(e);
                break;
            }
            match self
                .run_statement(kernel, &parent, sql, &token, &sender.grants)
                .await
            {
                Ok(Some(data)) if !silent => {
                    if i == last {
                        kernel.emit(
                            "iopub",
                            "execute_result",
                            &parent,
                            json!({"execution_count": count, "data": data.0, "metadata": data.1}),
                        );
                    } else {
                        kernel.emit(
                            "iopub",
                            "display_data",
                            &parent,
                            json!({"data": data.0, "metadata": data.1}),
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            kernel.touch();
        }
        *kernel.current.lock() = None;
        let stop = failure.is_some() && stop_on_error;
        match failure {
            None => kernel.emit(
                "shell",
                "execute_reply",
                &parent,
                json!({"status": "ok", "execution_count": count, "payload": [], "user_expressions": {}}),
            ),
            Some(e) => {
                let mut c = error_content(&e);
                kernel.emit("iopub", "error", &parent, c.clone());
                c["status"] = json!("error");
                c["execution_count"] = json!(count);
                kernel.emit("shell", "execute_reply", &parent, c);
            }
        }
        kernel.busy.store(false, Ordering::SeqCst);
        kernel.touch();
        kernel.status(&parent, "idle");
        stop
    }

    /// Runs one statement, updating a progress display meanwhile; returns
    /// the result's mime bundle and metadata (none for empty results).
    async fn run_statement(
        &self,
        kernel: &Kernel,
        parent: &Value,
        sql: &str,
        interrupt: &CancellationToken,
        grants: &tarn_common::roles::Grants,
    ) -> Result<Option<(Value, Value)>, TarnError> {
        let started = Instant::now();
        let workspace = kernel.session.workspace();
        let q = self
            .queries
            .start_as(
                &kernel.session,
                grants,
                &workspace,
                sql,
                None,
                &format!("kernel-{}", kernel.id),
            )
            .await?;
        if let Some(cur) = kernel.current.lock().as_mut() {
            cur.1 = Some(q.run_id.clone());
        }
        // An interrupt that landed while planning stops the query now.
        if interrupt.is_cancelled() {
            self.queries.cancel_run(&q.run_id);
        }
        let display_id = format!("tarn-progress-{}", uuid::Uuid::new_v4().simple());
        let progress_text = |p: Option<&crate::query::Progress>, rows: usize, done: bool| {
            let secs = started.elapsed().as_secs_f64();
            let stages = p
                .map(|p| {
                    format!(
                        "stages {}/{} · tasks {}/{}",
                        p.stages_done, p.stages_total, p.tasks_done, p.tasks_total
                    )
                })
                .unwrap_or_else(|| "planning".into());
            if done {
                format!("Done in {secs:.1} s: {stages} · {} rows", group(rows))
            } else {
                format!(
                    "Running {secs:.1} s: {stages} · {} rows so far",
                    group(rows)
                )
            }
        };
        kernel.emit(
            "iopub",
            "display_data",
            parent,
            json!({"data": {"text/plain": progress_text(None, 0, false)}, "metadata": {}, "transient": {"display_id": display_id}}),
        );
        let mut shown =
            crate::collect::Shown::new(self.opts.max_result_rows, self.opts.max_output_bytes);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        let mut stream = q.stream;
        let mut last_progress = None;
        let outcome = loop {
            tokio::select! {
                next = stream.next() => match next {
                    Some(Ok(batch)) => shown.push(&batch),
                    Some(Err(e)) => break Err(e),
                    None => break Ok(()),
                },
                _ = tick.tick() => {
                    if let Ok(p) = self.queries.progress(&q.run_id).await {
                        last_progress = Some(p);
                    }
                    kernel.emit("iopub", "update_display_data", parent, json!({
                        "data": {"text/plain": progress_text(last_progress.as_ref(), shown.total(), false)},
                        "metadata": {}, "transient": {"display_id": display_id}}));
                }
            }
        };
        if let Ok(p) = self.queries.progress(&q.run_id).await {
            last_progress = Some(p);
        }
        kernel.emit(
            "iopub",
            "update_display_data",
            parent,
            json!({
            "data": {"text/plain": progress_text(last_progress.as_ref(), shown.total(), true)},
            "metadata": {}, "transient": {"display_id": display_id}}),
        );
        outcome?;
        if q.schema.fields().is_empty() {
            return Ok(None);
        }
        Ok(Some(render(
            &q.schema,
            shown.batches(),
            shown.total(),
            &self.opts,
        )))
    }

    /// Completions for the word before the cursor: workspaces, tables of
    /// the session's workspace, `workspace.table`, `table.column`, and
    /// columns of the tables the cell names.
    ///
    /// Only what `grants` sees is offered, exactly as `information_schema`
    /// shows it: no workspace, table or column of a workspace the caller
    /// holds no role in.
    async fn complete(
        &self,
        kernel: &Kernel,
        content: &Value,
        grants: &tarn_common::roles::Grants,
    ) -> Value {
        let code = content.get("code").and_then(Value::as_str).unwrap_or("");
        let chars: Vec<char> = code.chars().collect();
        let cursor = content
            .get("cursor_pos")
            .and_then(Value::as_u64)
            .map(|c| (c as usize).min(chars.len()))
            .unwrap_or(chars.len());
        let mut start = cursor;
        while start > 0
            && (chars[start - 1].is_alphanumeric()
                || chars[start - 1] == '_'
                || chars[start - 1] == '.')
        {
            start -= 1;
        }
        let word: String = chars[start..cursor].iter().collect();
        let lake = self.sessions.lake();
        if lake.workspace_names().is_empty() {
            let _ = self.sessions.refresh_all().await;
        }
        let default_ws = kernel.session.workspace();
        let mut candidates: Vec<String> = Vec::new();
        let (qualifier, stem) = match word.rsplit_once('.') {
            Some((q, s)) => (Some(q.to_string()), s.to_string()),
            None => (None, word.clone()),
        };
        let replace_from = match &qualifier {
            Some(q) => start + q.chars().count() + 1,
            None => start,
        };
        let default_visible = grants.sees(&default_ws);
        match &qualifier {
            Some(q) => {
                if let Some(ws) = visible_workspace(lake, grants, q).await {
                    // A workspace first named here has not been listed yet.
                    if ws.cached_table_names().is_empty() {
                        let _ = ws.refresh().await;
                    }
                    candidates.extend(ws.cached_table_names());
                } else if !default_visible || lake.workspace_names().iter().any(|w| w == q) {
                    // `hidden_ws.` offers nothing, as if it did not exist.
                } else if let Ok(ws) = lake.workspace(&default_ws).await {
                    if let Ok(t) = ws.table(q).await {
                        let schema = datafusion::catalog::TableProvider::schema(t.as_ref());
                        candidates.extend(schema.fields().iter().map(|f| f.name().clone()));
                    }
                }
            }
            None => {
                candidates.extend(
                    lake.workspace_names()
                        .into_iter()
                        .filter(|w| grants.sees(w)),
                );
                if let Some(ws) = visible_workspace(lake, grants, &default_ws).await {
                    let tables = ws.cached_table_names();
                    for t in &tables {
                        let mentioned = code
                            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .any(|w| w == t);
                        if mentioned {
                            if let Ok(table) = ws.table(t).await {
                                let schema =
                                    datafusion::catalog::TableProvider::schema(table.as_ref());
                                candidates.extend(schema.fields().iter().map(|f| f.name().clone()));
                            }
                        }
                    }
                    candidates.extend(tables);
                }
                candidates.extend(SQL_KEYWORDS.iter().map(|k| k.to_string()));
            }
        }
        let lower = stem.to_lowercase();
        let mut matches: Vec<String> = candidates
            .into_iter()
            .filter(|c| c.to_lowercase().starts_with(&lower))
            .collect();
        matches.sort();
        matches.dedup();
        json!({
            "status": "ok",
            "matches": matches,
            "cursor_start": replace_from,
            "cursor_end": cursor,
            "metadata": {},
        })
    }
}

/// A workspace the caller may see; others are not offered at all.
async fn visible_workspace(
    lake: &Arc<tarn_lake::Lake>,
    grants: &tarn_common::roles::Grants,
    name: &str,
) -> Option<Arc<tarn_lake::Workspace>> {
    if !grants.sees(name) {
        return None;
    }
    lake.workspace(name).await.ok()
}

const SQL_KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "AS",
    "COUNT",
    "DISTINCT",
    "HAVING",
    "WITH",
    "UNION ALL",
    "DESCRIBE",
    "SHOW TABLES",
    "EXPLAIN",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "BETWEEN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
];

fn owns(who: &Identity, session: &Session) -> bool {
    // Dev-mode callers without a token share the anonymous view.
    who.user == session.user || (who.token.is_none() && who.user == crate::auth::ANONYMOUS)
}

/// The `kernel_info_reply` content.
fn kernel_info() -> Value {
    json!({
        "status": "ok",
        "protocol_version": "5.3",
        "implementation": "tarn",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "language_info": {
            "name": "sql",
            "version": "DataFusion SQL",
            "mimetype": "application/sql",
            "file_extension": ".sql",
            "codemirror_mode": "sql",
            "pygments_lexer": "sql",
        },
        "banner": "Tarn SQL: cells run on the cluster over the lake. Several statements per cell are allowed.",
        "help_links": [],
    })
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

/// A close reason in the catalogue's form, `TARN-<n> <NAME>: <cause>`
/// (the fix does not fit a close frame; the notebook gets it as a message).
fn close_reason(code: ErrorCode, cause: impl std::fmt::Display) -> String {
    format!("{code} {}: {cause}", code.name())
}

/// Whether the websocket failed because a frame or message was over the
/// configured size (the library's own capacity error, not its text).
fn is_too_big(e: axum::Error) -> bool {
    e.into_inner()
        .downcast::<tungstenite::Error>()
        .is_ok_and(|e| matches!(*e, tungstenite::Error::Capacity(_)))
}

fn truncate_reason(mut s: String) -> String {
    // RFC 6455: a close reason fits a 125-byte control frame.
    if s.len() > 123 {
        let mut cut = 120;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// `1234567` → `1,234,567`.
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Splits a cell into statements at top-level semicolons (never one in a
/// string, quoted name or comment); empty statements are dropped.
pub fn split_statements(sql: &str) -> Vec<String> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        // Let the planner report the error on the whole text.
        return vec![sql.trim().to_string()];
    };
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut cuts = Vec::new();
    for t in &tokens {
        if t.token == Token::SemiColon {
            let Some(line) = line_starts.get((t.span.start.line as usize).saturating_sub(1)) else {
                continue;
            };
            let col = (t.span.start.column as usize).saturating_sub(1);
            if let Some((off, ';')) = sql[*line..].char_indices().nth(col) {
                cuts.push(line + off);
            }
        }
    }
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts.into_iter().chain(std::iter::once(sql.len())) {
        let piece = sql[last..c].trim();
        let only_comments = piece
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"));
        if !piece.is_empty() && !only_comments {
            out.push(piece.to_string());
        }
        last = (c + 1).min(sql.len());
    }
    out
}

/// The mime bundle of a result: plain text (the first rows), HTML and a
/// data resource (every row shown), each with the note on how many rows
/// there are; and metadata with the counts.
fn render(
    schema: &arrow::datatypes::Schema,
    shown: &[RecordBatch],
    total: usize,
    opts: &KernelOptions,
) -> (Value, Value) {
    let fmt = FormatOptions::default().with_null("");
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0usize;
    let mut cut_by_bytes = false;
    'outer: for batch in shown {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &fmt).ok())
            .collect();
        for r in 0..batch.num_rows() {
            let row: Vec<String> = formatters
                .iter()
                .map(|f| {
                    f.as_ref()
                        .map(|f| clip(f.value(r).to_string()))
                        .unwrap_or_default()
                })
                .collect();
            // HTML and JSON each carry the row once more: count it twice.
            bytes += 2 * (row.iter().map(|c| c.len() + 12).sum::<usize>() + 12);
            if bytes > opts.max_output_bytes {
                cut_by_bytes = true;
                break 'outer;
            }
            rows.push(row);
        }
    }
    let n = rows.len();
    let note = if n < total {
        // Fewer rows than the row cap: bytes cut them, here or while the
        // result was collected.
        let why = if cut_by_bytes || n < opts.max_result_rows {
            format!(
                " (a cell shows at most {} rows and {} MiB)",
                group(opts.max_result_rows),
                opts.max_output_bytes / (1024 * 1024)
            )
        } else {
            String::new()
        };
        format!(
            "showing {} of {} rows{why}. The whole result: run the same SQL over Flight SQL at {} (for example ADBC's cursor.execute), which is not capped.",
            group(n),
            group(total),
            opts.flight_url
        )
    } else if total == 1 {
        "1 row".to_string()
    } else {
        format!("{} rows", group(total))
    };

    // Plain text: an aligned table of the first rows.
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for row in rows.iter().take(PLAIN_ROWS) {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count()).min(40);
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                let c: String = c.chars().take(*w).collect();
                format!("{c:<w$}", w = *w)
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut plain = line(&names);
    plain.push('\n');
    plain.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    for row in rows.iter().take(PLAIN_ROWS) {
        plain.push('\n');
        plain.push_str(&line(row));
    }
    if n > PLAIN_ROWS {
        plain.push_str(&format!(
            "\n… ({} more rows in the table view)",
            group(n - PLAIN_ROWS)
        ));
    }
    plain.push_str(&format!("\n{note}"));

    let mut html = String::with_capacity(bytes / 2 + 256);
    html.push_str("<table class=\"tarn-result\"><thead><tr>");
    for n in &names {
        html.push_str(&format!("<th>{}</th>", escape(n)));
    }
    html.push_str("</tr></thead><tbody>");
    for row in &rows {
        html.push_str("<tr>");
        for c in row {
            html.push_str("<td>");
            html.push_str(&escape(c));
            html.push_str("</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str(&format!(
        "</tbody></table><p><em>{}</em></p>",
        escape(&note)
    ));

    let fields: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": table_type(f.data_type())}))
        .collect();
    let kinds: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| table_type(f.data_type()))
        .collect();
    let data: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut m = Map::new();
            for ((name, c), kind) in names.iter().zip(row).zip(&kinds) {
                let v = match *kind {
                    _ if c.is_empty() => Value::Null,
                    "integer" | "number" | "boolean" => {
                        serde_json::from_str(c).unwrap_or_else(|_| Value::String(c.clone()))
                    }
                    _ => Value::String(c.clone()),
                };
                m.insert(name.clone(), v);
            }
            Value::Object(m)
        })
        .collect();
    let bundle = json!({
        "text/plain": plain,
        "text/html": html,
        "application/vnd.dataresource+json": {
            "schema": {"fields": fields},
            "data": data,
            "tarn": {"rows_shown": n, "rows_total": total, "note": note},
        },
    });
    let metadata = json!({"tarn": {"rows_shown": n, "rows_total": total, "truncated": n < total}});
    (bundle, metadata)
}

fn clip(s: String) -> String {
    if s.chars().count() <= MAX_CELL_CHARS {
        return s;
    }
    let mut out: String = s.chars().take(MAX_CELL_CHARS - 1).collect();
    out.push('…');
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Table Schema type names for the data resource view.
fn table_type(t: &arrow::datatypes::DataType) -> &'static str {
    use arrow::datatypes::DataType as D;
    match t {
        D::Boolean => "boolean",
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
            "integer"
        }
        D::Float16 | D::Float32 | D::Float64 | D::Decimal128(..) | D::Decimal256(..) => "number",
        D::Timestamp(..) | D::Date32 | D::Date64 => "datetime",
        _ => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_split_at_top_level_semicolons_only() {
        assert_eq!(
            split_statements("SELECT 1; SELECT ';' AS \"a;b\";\n-- done;\n"),
            vec!["SELECT 1".to_string(), "SELECT ';' AS \"a;b\"".to_string()]
        );
        assert_eq!(split_statements("  "), Vec::<String>::new());
        assert_eq!(split_statements("SELECT 2"), vec!["SELECT 2".to_string()]);
    }

    #[test]
    fn counts_are_grouped_and_reasons_fit_a_close_frame() {
        assert_eq!(group(10000), "10,000");
        assert_eq!(group(999), "999");
        assert_eq!(group(1234567), "1,234,567");
        assert!(truncate_reason("é".repeat(100)).len() <= 123);
    }

    #[test]
    fn the_note_carries_the_true_row_count() {
        use arrow::array::Int64Array;
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..10))],
        )
        .unwrap();
        let opts = KernelOptions {
            websocket_lifetime: Duration::from_secs(1),
            max_message_bytes: 1,
            max_result_rows: 10,
            max_output_bytes: 1 << 20,
            max_queued_cells: 1,
            flight_url: "grpc://h:1".into(),
            idle_timeout: Duration::from_secs(1),
        };
        let (bundle, meta) = render(&schema, &[batch], 12_345, &opts);
        let plain = bundle["text/plain"].as_str().unwrap();
        assert!(plain.contains("showing 10 of 12,345 rows"), "{plain}");
        assert!(plain.contains("grpc://h:1"));
        assert_eq!(meta["tarn"]["rows_total"], 12_345);
        assert_eq!(
            bundle["application/vnd.dataresource+json"]["data"]
                .as_array()
                .unwrap()
                .len(),
            10
        );
    }
}
