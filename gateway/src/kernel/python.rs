//! `tarn-python` kernels: a real IPython process per kernel, hosted in a
//! sandbox by `tarn-pykernel`, bridged to the notebook's websocket.
//!
//! The gateway keeps what makes a kernel a Tarn session — its lease, its
//! user and roles, every timeout, shutdown — and passes Jupyter's messages
//! through both ways: the websocket's JSON frames become signed ZeroMQ
//! messages on the kernel's shell, control and stdin channels, and what
//! the kernel says on shell, iopub, stdin and control goes back as JSON
//! with the `channel` it came on. The kernel has no network: it reaches
//! the lake through the gateway's Flight SQL service on a Unix socket
//! bound into its sandbox, with a short-lived credential of its user that
//! the gateway writes into the kernel's directory and renews.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tarn_common::{ErrorCode, TarnError};
use tarn_pykernel::{Channel, Event, HostedKernel, Message, Pool};
use tokio::sync::mpsc;

use super::channel::close_reason;
use super::{Kernel, Kernels, CLOSE_SHUTDOWN};
use crate::session::Session;

/// The kernelspec name.
pub const PYTHON_KERNEL: &str = "tarn-python";
/// Where the gateway's Flight SQL socket appears inside a sandbox.
pub const LAKE_SOCKET_INSIDE: &str = "/run/tarn/flight.sock";

/// Makes the credential a kernel's lake calls carry: one that stands for
/// the kernel's session (its user, roles, lease and limits), good for the
/// given time.
pub type Minter = Arc<dyn Fn(&Arc<Session>, Duration) -> String + Send + Sync>;

/// Extends a credential the minter made by the given time from now; false
/// when it is gone (expired or revoked).
pub type Extender = Arc<dyn Fn(&str, Duration) -> bool + Send + Sync>;

/// The first of the five TCP ports a kernel pod listens on (the chart's
/// NetworkPolicy opens these to gateway pods only).
pub const POD_FIRST_PORT: u16 = 52000;

/// How this gateway hosts Python kernels.
pub struct PythonHost {
    /// Started kernels, waiting for their users.
    pub pool: Arc<Pool>,
    /// Bytes of memory per leased vCore a kernel may use.
    pub memory_per_vcore: u64,
    /// Longest wait for a kernel's setup.
    pub start_timeout: Duration,
    /// How long a kernel's credential lasts (renewed at a third of it).
    pub credential_lifetime: Duration,
    /// How a kernel reaches the gateway's Flight SQL service: a Unix
    /// socket in its sandbox, or this gateway's address (pods).
    pub lake_uri: String,
    /// Whether kernels are sandboxed (their directory is then
    /// `/home/kernel` inside).
    pub sandboxed: bool,
    /// Makes the kernels' credentials.
    pub mint: Minter,
    /// Extends a pod's credential in place (a pod has no file the gateway
    /// can rewrite).
    pub extend: Extender,
    /// The kernels' interpreter as the gateway runs it (outside any
    /// sandbox): used only to parse notebooks, never to run them.
    pub interpreter: PathBuf,
}

impl PythonHost {
    fn home(&self, hosted: &HostedKernel) -> PathBuf {
        if self.sandboxed {
            PathBuf::from(tarn_pykernel::launch::KERNEL_HOME)
        } else {
            hosted.dir.clone()
        }
    }

    /// Gives the kernel a credential standing for `session`, good for
    /// `ttl`, or renews it. A kernel process finds it in a file in its
    /// directory, rewritten with a new one at each renewal; a pod is handed
    /// it once at setup, and the gateway extends it in place (it still
    /// dies with the kernel, its session, or this gateway).
    fn give_credential(
        &self,
        session: &Arc<Session>,
        ttl: Duration,
        hosted: &HostedKernel,
    ) -> std::io::Result<()> {
        if hosted.pod.is_some() {
            let mut held = hosted.credential.lock();
            if let Some(pass) = held.as_deref() {
                if (self.extend)(pass, ttl) {
                    return Ok(());
                }
                return Err(std::io::Error::other(
                    "the kernel's credential was revoked or has expired",
                ));
            }
            *held = Some((self.mint)(session, ttl));
            return Ok(());
        }
        let value = format!("Bearer {}", (self.mint)(session, ttl));
        let dir = hosted.dir.join(".tarn");
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join("credential.tmp");
        std::fs::write(&tmp, value)?;
        // The kernel's own user reads it; it cannot mint another.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, dir.join("credential"))
    }

    /// The code that makes `lake` (for `user`, in `workspace`) and the
    /// magics in a kernel.
    fn bind_code(
        &self,
        user: &str,
        workspace: &str,
        hosted: &HostedKernel,
        max_rows: usize,
    ) -> String {
        let credential = match hosted.credential.lock().as_deref() {
            Some(pass) => format!("credential={}", py_str(&format!("Bearer {pass}"))),
            None => format!(
                "credential_file={}",
                py_str(
                    &self
                        .home(hosted)
                        .join(".tarn/credential")
                        .display()
                        .to_string()
                )
            ),
        };
        format!(
            "import tarn_provider.kernel as _tk\n_tk.bind(uri={uri}, {credential}, database={db}, user={user}, max_rows={max_rows})\ndel _tk\n",
            uri = py_str(&self.lake_uri),
            db = py_str(workspace),
            user = py_str(user),
        )
    }
}

impl PythonHost {
    /// A kernel from the pool made ready for `session`: its address space
    /// capped at the session's vCores' share, a credential standing for
    /// the session (good for `ttl`) written, `lake` bound to its user and
    /// workspace. Returns the process and its events.
    pub async fn prepare(
        &self,
        session: &Arc<Session>,
        ttl: Duration,
        max_rows: usize,
    ) -> Result<(Arc<HostedKernel>, mpsc::UnboundedReceiver<Event>), TarnError> {
        let (user, workspace, vcores) = (&session.user, session.workspace(), session.vcores);
        let unavailable =
            |e: tarn_pykernel::Error| TarnError::new(ErrorCode::KernelUnavailable, e.to_string());
        let hosted = Arc::new(self.pool.take().await.map_err(unavailable)?);
        let memory = self
            .memory_per_vcore
            .saturating_mul(u64::from(vcores.max(1)));
        hosted
            .limit_memory(memory, self.start_timeout)
            .await
            .map_err(unavailable)?;
        self.give_credential(session, ttl, &hosted).map_err(|e| {
            TarnError::new(
                ErrorCode::KernelUnavailable,
                format!("cannot give the kernel its credential: {e}"),
            )
        })?;
        hosted
            .run_setup(
                &self.bind_code(user, &workspace, &hosted, max_rows),
                self.start_timeout,
            )
            .await
            .map_err(unavailable)?;
        let events = hosted.take_events().ok_or_else(|| {
            TarnError::new(ErrorCode::Internal, "the kernel's events were taken twice")
        })?;
        tracing::info!(uid = hosted.uid, pod = hosted.pod.as_deref().unwrap_or(""), memory, %user, "python kernel prepared");
        Ok((hosted, events))
    }
}

/// A Python string literal (JSON's escapes are Python's).
fn py_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "''".into())
}

impl Kernels {
    /// Gives `kernel` a process from the pool: memory capped at its
    /// lease's share, `lake` bound to its user, its messages bridged.
    pub(super) async fn attach_process(
        self: &Arc<Self>,
        kernel: &Arc<Kernel>,
    ) -> Result<(), TarnError> {
        let host = self.python_host()?;
        // Waiting for a process (the pool may be empty) is not idleness.
        let _hold = kernel.session.hold();
        let (hosted, events) = host
            .prepare(
                &kernel.session,
                host.credential_lifetime,
                self.opts.max_result_rows,
            )
            .await?;
        let generation = kernel.generation.fetch_add(1, Ordering::SeqCst) + 1;
        // Requests an earlier process left unanswered died with it.
        kernel.unanswered.lock().clear();
        kernel.process.send_replace(Some(Arc::clone(&hosted)));
        self.ensure_sender(kernel, host.start_timeout);
        let me = Arc::downgrade(self);
        let k = Arc::clone(kernel);
        self.queries.tasks().spawn(
            "python kernel bridge",
            bridge(me, k, Arc::clone(&hosted), generation, events, host),
        );
        tracing::info!(kernel = %kernel.id, uid = hosted.uid, "python kernel attached");
        Ok(())
    }

    /// Starts the kernel's sender once: it passes the notebook's messages
    /// to whichever process is current, in order, waiting (up to `wait`)
    /// while a restart brings a new one; a message that finds no process
    /// gets its coded error, never silence.
    fn ensure_sender(&self, kernel: &Arc<Kernel>, wait: Duration) {
        let mut outbox = kernel.outbox.lock();
        if outbox.is_some() {
            return;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<(Channel, Message)>();
        *outbox = Some(tx);
        let kernel = Arc::clone(kernel);
        self.queries
            .tasks()
            .spawn("python kernel sender", async move {
                let mut current = kernel.process.subscribe();
                loop {
                    let next = tokio::select! {
                        _ = kernel.closed.cancelled() => return,
                        m = rx.recv() => m,
                    };
                    let Some((ch, msg)) = next else { return };
                    let hosted = tokio::select! {
                        _ = kernel.closed.cancelled() => return,
                        p = tokio::time::timeout(wait, current.wait_for(Option::is_some)) => {
                            p.ok().and_then(|r| r.ok()).and_then(|v| v.clone())
                        }
                    };
                    let sent = match hosted {
                        Some(h) => h.conn.send(ch, &msg).await.map_err(|e| e.to_string()),
                        None => Err("the kernel's process is not running".into()),
                    };
                    if sent.is_ok() && ch == Channel::Shell && msg.msg_type() == "execute_request" {
                        kernel
                            .unanswered
                            .lock()
                            .insert(msg.msg_id().to_string(), msg.header.clone());
                    }
                    if let Err(why) = sent {
                        answer_unsent(&kernel, &msg, why);
                    }
                }
            });
    }

    pub(super) fn python_host(&self) -> Result<Arc<PythonHost>, TarnError> {
        match &self.python {
            Ok(h) => Ok(Arc::clone(h)),
            Err(why) => Err(TarnError::new(
                ErrorCode::KernelUnavailable,
                format!("this gateway cannot start tarn-python kernels: {why}"),
            )),
        }
    }

    /// The kernels' interpreter, when `tarn-python` kernels run here.
    pub fn python_interpreter(&self) -> Option<PathBuf> {
        self.python.as_ref().ok().map(|h| h.interpreter.clone())
    }

    /// Whether `tarn-python` kernels can be started here.
    pub fn python_available(&self) -> bool {
        self.python.is_ok()
    }

    /// A message from the notebook for a Python kernel: passed to the
    /// process, except shutdown, which is Tarn's.
    pub(super) fn forward_to_process(
        self: &Arc<Self>,
        kernel: &Arc<Kernel>,
        msg: Value,
        msg_type: &str,
        channel: &str,
        content: &Value,
    ) {
        if msg_type == "shutdown_request" {
            let restart = content
                .get("restart")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            kernel.emit(
                channel,
                "shutdown_reply",
                &msg,
                json!({"status": "ok", "restart": restart}),
            );
            self.shutdown_requested(kernel, restart);
            return;
        }
        let ch = match Channel::from_name(channel) {
            Some(c @ (Channel::Shell | Channel::Control | Channel::Stdin)) => c,
            _ => {
                let e = TarnError::new(
                    ErrorCode::InvalidArgument,
                    format!("messages cannot be sent on the {channel:?} channel"),
                )
                .with_fix("send on shell, control or stdin");
                kernel.emit("iopub", "error", &msg, super::error_content(&e));
                return;
            }
        };
        let obj = |k: &str| match msg.get(k) {
            Some(v @ Value::Object(_)) => v.clone(),
            _ => json!({}),
        };
        let wire = Message {
            header: obj("header"),
            parent_header: obj("parent_header"),
            metadata: obj("metadata"),
            content: content.clone(),
            buffers: Vec::new(),
        };
        if !kernel.to_process(ch, wire.clone()) {
            answer_unsent(kernel, &wire, "the kernel's process has ended".into());
        }
    }

    /// Restarts a Python kernel: a fresh process from the pool replaces
    /// the old one; the session and its lease stay.
    pub(super) fn restart_process(self: &Arc<Self>, kernel: &Arc<Kernel>) {
        kernel.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(p) = kernel.process.send_replace(None) {
            p.kill();
        }
        kernel.status(&json!({}), "restarting");
        let me = Arc::clone(self);
        let kernel = Arc::clone(kernel);
        self.queries
            .tasks()
            .spawn("python kernel restart", async move {
                match me.attach_process(&kernel).await {
                    Ok(()) => {
                        kernel.busy.store(false, Ordering::SeqCst);
                        kernel.status(&json!({}), "idle");
                    }
                    Err(e) => me.process_died(&kernel, e.message),
                }
            });
    }

    /// A Python kernel's process ended on its own or stopped answering:
    /// the notebook is told why, the kernel ends and its lease returns.
    pub(super) fn process_died(&self, kernel: &Arc<Kernel>, why: String) {
        let e = TarnError::new(
            ErrorCode::KernelDied,
            format!("kernel {} died: {why}", kernel.id),
        );
        tracing::info!(kernel = %kernel.id, reason = %why, "python kernel died");
        // Removed and remembered before the notebook is told, so a client
        // that asks at once hears why.
        let removed = self.kernels.remove(&kernel.id).is_some();
        if removed {
            self.remember(&kernel.id, e.clone());
        }
        let parent = kernel.last_parent.lock().clone();
        kernel.emit(
            "iopub",
            "stream",
            &parent,
            json!({"name": "stderr", "text": format!("{e}\n")}),
        );
        kernel.status(&parent, "dead");
        if removed {
            kernel.end(
                CLOSE_SHUTDOWN,
                close_reason(ErrorCode::KernelDied, "the kernel's process ended"),
            );
            let sessions = Arc::clone(&self.sessions);
            let id = kernel.session.id.clone();
            self.queries
                .tasks()
                .spawn("close a dead kernel's session", async move {
                    sessions.close(&id).await;
                });
        }
    }
}

impl Kernel {
    /// Queues a message for the kernel's process; false if it has none.
    pub(super) fn to_process(&self, ch: Channel, msg: Message) -> bool {
        match self.outbox.lock().as_ref() {
            Some(tx) => tx.send((ch, msg)).is_ok(),
            None => false,
        }
    }

    /// Asks the process to interrupt its running cell (ipykernel answers
    /// `interrupt_request` on control by signalling itself).
    pub(super) fn interrupt_process(&self) -> bool {
        let msg = Message::new(
            "interrupt_request",
            &self.jupyter_session,
            json!({}),
            json!({}),
        );
        self.to_process(Channel::Control, msg)
    }

    /// Stops the process (shutdown, session end).
    pub(super) fn kill_process(&self) {
        if let Some(p) = self.process.send_replace(None) {
            p.kill();
        }
    }

    /// A message from the process, onto the websocket as JSON.
    fn pass_on(&self, ch: Channel, m: &Message) {
        if ch == Channel::IoPub && m.msg_type() == "status" {
            let state = m.content.get("execution_state").and_then(Value::as_str);
            match state {
                Some("busy") => self.busy.store(true, Ordering::SeqCst),
                Some("idle") => self.busy.store(false, Ordering::SeqCst),
                _ => {}
            }
        }
        if ch == Channel::Shell && m.msg_type() == "execute_reply" {
            if let Some(n) = m.content.get("execution_count").and_then(Value::as_u64) {
                self.execution_count.store(n as u32, Ordering::SeqCst);
            }
            if let Some(id) = m.parent_header.get("msg_id").and_then(Value::as_str) {
                self.unanswered.lock().remove(id);
            }
        }
        self.touch();
        // Binary buffers (widgets) cannot travel in a JSON text frame.
        let text = json!({
            "msg_id": m.msg_id(),
            "msg_type": m.msg_type(),
            "header": m.header,
            "parent_header": m.parent_header,
            "metadata": m.metadata,
            "content": m.content,
            "channel": ch.name(),
            "buffers": [],
        })
        .to_string();
        self.send(text);
    }
}

/// Answers a message the process never got, in the form its type
/// expects (an execute request: its error and an error reply), so the
/// notebook is not left waiting.
fn answer_unsent(kernel: &Kernel, msg: &Message, why: String) {
    let e = TarnError::new(ErrorCode::KernelDied, why);
    let parent = json!({"header": msg.header});
    let count = kernel.execution_count.load(Ordering::SeqCst);
    match msg.msg_type() {
        "execute_request" => {
            crate::cells::refuse(&parent, &e, count, |ch, t, p, c| kernel.emit(ch, t, p, c))
        }
        other => {
            let mut content = super::error_content(&e);
            content["status"] = json!("error");
            match other.strip_suffix("_request") {
                Some(base) => kernel.emit("shell", &format!("{base}_reply"), &parent, content),
                None => kernel.emit("iopub", "error", &parent, super::error_content(&e)),
            }
        }
    }
}

/// How long after a kernel went idle on a cell its reply may still come
/// (shell and iopub are separate sockets: their order is not kept).
const REPLY_GRACE: Duration = Duration::from_secs(2);

/// The execute request a status message says the kernel went idle on,
/// if that request is still unanswered.
fn idle_on_unanswered(kernel: &Kernel, ch: Channel, m: &Message) -> Option<String> {
    if ch != Channel::IoPub
        || m.msg_type() != "status"
        || m.content.get("execution_state").and_then(Value::as_str) != Some("idle")
    {
        return None;
    }
    let id = m.parent_header.get("msg_id").and_then(Value::as_str)?;
    kernel
        .unanswered
        .lock()
        .contains_key(id)
        .then(|| id.to_string())
}

/// Answers a cell the kernel finished without a reply: ipykernel drops
/// the reply of a cell interrupted before its code starts, and the
/// notebook would wait for it forever.
fn answer_lost(kernel: &Kernel, id: &str) {
    let Some(header) = kernel.unanswered.lock().remove(id) else {
        return;
    };
    tracing::info!(kernel = %kernel.id, msg_id = %id, "a cell went unanswered; answering for it");
    let e = TarnError::new(
        ErrorCode::CellReplyLost,
        "the kernel went idle without answering this cell (it was interrupted before its code started)",
    );
    let count = kernel.execution_count.load(Ordering::SeqCst);
    crate::cells::refuse(&json!({"header": header}), &e, count, |ch, t, p, c| {
        kernel.emit(ch, t, p, c)
    });
}

/// Passes what the process says to the notebook until the kernel ends,
/// the process is replaced, or it dies; renews the kernel's credential
/// and keeps a busy kernel's session from looking idle.
async fn bridge(
    kernels: std::sync::Weak<Kernels>,
    kernel: Arc<Kernel>,
    hosted: Arc<HostedKernel>,
    generation: u64,
    mut events: mpsc::UnboundedReceiver<Event>,
    host: Arc<PythonHost>,
) {
    let current = || kernel.generation.load(Ordering::SeqCst) == generation;
    let mut renew =
        tokio::time::interval((host.credential_lifetime / 3).max(Duration::from_secs(1)));
    renew.tick().await;
    let mut keepalive = tokio::time::interval(Duration::from_secs(30));
    keepalive.tick().await;
    // Cells the kernel went idle on without a reply, with when to answer.
    let mut lost: std::collections::VecDeque<(tokio::time::Instant, String)> = Default::default();
    let died = loop {
        let next_lost = lost.front().map(|(at, _)| *at);
        tokio::select! {
            _ = kernel.closed.cancelled() => return,
            ev = events.recv() => match ev {
                Some(Event::Message(ch, m)) => {
                    if !current() {
                        return;
                    }
                    kernel.pass_on(ch, &m);
                    if let Some(id) = idle_on_unanswered(&kernel, ch, &m) {
                        lost.push_back((tokio::time::Instant::now() + REPLY_GRACE, id));
                    }
                }
                Some(Event::Unresponsive(d)) => {
                    break format!("it stopped answering its heartbeat for {} s", d.as_secs());
                }
                None => break hosted.exited().await,
            },
            why = hosted.exited() => break why,
            _ = renew.tick() => {
                if let Err(e) = host.give_credential(&kernel.session, host.credential_lifetime, &hosted) {
                    tracing::warn!(kernel = %kernel.id, error = %e, "cannot renew the kernel's credential");
                }
            }
            _ = tokio::time::sleep_until(next_lost.unwrap_or_else(tokio::time::Instant::now)), if next_lost.is_some() => {
                if let Some((_, id)) = lost.pop_front() {
                    if current() {
                        answer_lost(&kernel, &id);
                    }
                }
            }
            _ = keepalive.tick() => {
                // A long cell is activity, though nothing is printed.
                if kernel.busy.load(Ordering::SeqCst) {
                    kernel.touch();
                }
            }
        }
    };
    if !current() || kernel.closed.is_cancelled() {
        return;
    }
    if let Some(k) = kernels.upgrade() {
        k.process_died(&kernel, died);
    }
}
