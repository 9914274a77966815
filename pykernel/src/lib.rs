//! Tarn's hosted Python kernels.
//!
//! A `tarn-python` kernel is a real `ipykernel` process, started by a
//! [`Launcher`]: on the gateway's host in a sandbox (see [`launch`]), or as
//! a pod of its own in Kubernetes (see [`pods`]). It is spoken to over
//! ZeroMQ with the Jupyter wire protocol ([`wire`], [`client`]). A [`Pool`] keeps
//! a few started and warmed up, so a notebook's kernel is ready in
//! milliseconds; the gateway binds a pooled kernel to its user and bridges
//! its channels to the notebook's websocket.

pub mod client;
pub mod connection;
pub mod launch;
pub mod pods;
mod pool;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use tarn_common::supervisor::Supervisor;

pub use client::{Connection, Event};
pub use connection::{Channel, ConnectionInfo};
pub use launch::{LaunchOptions, ProcessLauncher, Sandbox};
pub use pods::{PodLauncher, PodOptions};
pub use pool::Pool;
pub use wire::Message;

/// What can go wrong with a hosted kernel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel environment or the sandbox is not usable.
    #[error("the Python kernel environment is not usable: {0}")]
    Environment(String),
    /// A kernel could not be started.
    #[error("a Python kernel could not be started: {0}")]
    Start(String),
    /// A message could not be sent or read.
    #[error("kernel messaging failed: {0}")]
    Wire(String),
    /// Code run for the kernel's setup failed.
    #[error("the kernel's setup failed: {0}")]
    Setup(String),
    /// The kernel process is gone.
    #[error("the kernel process ended: {0}")]
    Exited(String),
}

/// Where kernels run.
pub enum Launcher {
    /// Processes on the gateway's host, each in its sandbox.
    Process(ProcessLauncher),
    /// Pods of their own, in Kubernetes.
    Pods(PodLauncher),
}

impl Launcher {
    /// Kernels as processes on this host (see [`ProcessLauncher::new`]).
    pub async fn new(opts: LaunchOptions, tasks: Supervisor) -> Result<Launcher, Error> {
        Ok(Launcher::Process(ProcessLauncher::new(opts, tasks).await?))
    }

    /// Kernels as pods (see [`PodLauncher::new`]).
    pub async fn pods(opts: PodOptions, tasks: Supervisor) -> Result<Launcher, Error> {
        Ok(Launcher::Pods(PodLauncher::new(opts, tasks).await?))
    }

    /// Where the kernels' background tasks run.
    pub fn tasks(&self) -> &Supervisor {
        match self {
            Launcher::Process(l) => l.tasks(),
            Launcher::Pods(l) => l.tasks(),
        }
    }
}

/// One running kernel and the connection to it. Dropping it stops the
/// process (and removes its directory) or deletes its pod.
pub struct HostedKernel {
    /// The connection.
    pub conn: Arc<Connection>,
    events: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    /// The kernel's directory on the host (empty for a pod).
    pub dir: PathBuf,
    /// The uid it runs as.
    pub uid: u32,
    /// Its pod's name, when it is a pod.
    pub pod: Option<String>,
    /// The credential its host handed it at setup, when it cannot be kept
    /// in a file beside it (a pod): the host extends it in place.
    pub credential: parking_lot::Mutex<Option<String>>,
    exit: watch::Receiver<Option<String>>,
    kill: CancellationToken,
}

impl Drop for HostedKernel {
    fn drop(&mut self) {
        self.kill.cancel();
        self.conn.close();
    }
}

impl HostedKernel {
    /// Starts a kernel and waits (up to `wait`) until it answers on its
    /// shell and publishes on iopub.
    pub async fn start(launcher: &Launcher, wait: Duration) -> Result<HostedKernel, Error> {
        match launcher {
            Launcher::Process(l) => HostedKernel::start_process(l, wait).await,
            Launcher::Pods(l) => HostedKernel::start_pod(l, wait).await,
        }
    }

    async fn start_pod(launcher: &PodLauncher, wait: Duration) -> Result<HostedKernel, Error> {
        let began = tokio::time::Instant::now();
        let spawned = launcher.create(wait).await?;
        let kill = CancellationToken::new();
        let (exit_tx, exit) = watch::channel(None);
        let (watcher, name, killed) = (launcher.clone(), spawned.name.clone(), kill.clone());
        launcher.tasks().spawn("kernel pod", async move {
            let why = watcher.watch(&name, killed).await;
            let _ = exit_tx.send(Some(why));
        });
        let left = wait.saturating_sub(began.elapsed());
        let started = HostedKernel::connected(
            &spawned.info,
            std::path::Path::new(""),
            left,
            launcher.tasks(),
            exit,
            kill.clone(),
            PathBuf::new(),
            spawned.uid,
            Some(spawned.name),
        )
        .await;
        if started.is_err() {
            kill.cancel();
        }
        started
    }

    async fn start_process(
        launcher: &ProcessLauncher,
        wait: Duration,
    ) -> Result<HostedKernel, Error> {
        let mut spawned = launcher.spawn()?;
        let stderr = spawned.child.stderr.take();
        let kill = CancellationToken::new();
        let (exit_tx, exit) = watch::channel(None);
        let tail = Arc::new(parking_lot::Mutex::new(String::new()));
        if let Some(mut err) = stderr {
            let tail = Arc::clone(&tail);
            launcher.tasks().spawn("kernel stderr", async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut t = tail.lock();
                    t.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if t.len() > 4096 {
                        let cut = t.len() - 4096;
                        let cut = (cut..t.len()).find(|i| t.is_char_boundary(*i)).unwrap_or(0);
                        t.drain(..cut);
                    }
                }
            });
        }
        let mut child = spawned.child;
        let dir = spawned.dir.clone();
        let killed = kill.clone();
        let why_tail = Arc::clone(&tail);
        launcher.tasks().spawn("kernel process", async move {
            let why = tokio::select! {
                status = child.wait() => match status {
                    Ok(s) => exit_reason(s, &why_tail.lock()),
                    Err(e) => format!("cannot wait for the kernel process: {e}"),
                },
                _ = killed.cancelled() => {
                    let _ = child.kill().await;
                    "the kernel was shut down".to_string()
                }
            };
            let _ = exit_tx.send(Some(why));
            let _ = tokio::fs::remove_dir_all(&dir).await;
        });
        HostedKernel::connected(
            &spawned.info,
            &spawned.host_prefix,
            wait,
            launcher.tasks(),
            exit,
            kill,
            spawned.dir,
            spawned.uid,
            None,
        )
        .await
    }

    /// Connects to a started kernel and waits until it is ready.
    #[allow(clippy::too_many_arguments)]
    async fn connected(
        info: &ConnectionInfo,
        host_prefix: &std::path::Path,
        wait: Duration,
        tasks: &Supervisor,
        exit: watch::Receiver<Option<String>>,
        kill: CancellationToken,
        dir: PathBuf,
        uid: u32,
        pod: Option<String>,
    ) -> Result<HostedKernel, Error> {
        let connect = Connection::connect(info, host_prefix, wait, tasks);
        let mut ready_exit = exit.clone();
        let (conn, mut events) = tokio::select! {
            c = connect => c?,
            r = ready_exit.wait_for(Option::is_some) => {
                let why = r.map(|v| v.clone().unwrap_or_default()).unwrap_or_default();
                return Err(Error::Start(why));
            }
        };
        let kernel = HostedKernel {
            conn,
            events: parking_lot::Mutex::new(None),
            dir,
            uid,
            pod,
            credential: parking_lot::Mutex::new(None),
            exit,
            kill,
        };
        kernel.wait_ready(&mut events, wait).await?;
        *kernel.events.lock() = Some(events);
        Ok(kernel)
    }

    /// Sends kernel_info requests until one is answered and its status
    /// arrives on iopub (a subscription misses what was published before
    /// it connected).
    async fn wait_ready(
        &self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        wait: Duration,
    ) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let req = self.conn.request("kernel_info_request", json!({}));
            self.conn.send(Channel::Shell, &req).await?;
            let (mut replied, mut published) = (false, false);
            let round = tokio::time::Instant::now() + Duration::from_millis(200);
            while !(replied && published) {
                let next = tokio::time::timeout_at(round.min(deadline), events.recv()).await;
                match next {
                    Ok(Some(Event::Message(ch, m))) => {
                        let mine = m.parent_header.get("msg_id").and_then(Value::as_str)
                            == Some(req.msg_id());
                        replied |= mine && ch == Channel::Shell;
                        published |= mine && ch == Channel::IoPub;
                    }
                    Ok(Some(Event::Unresponsive(_))) | Ok(None) => {
                        return Err(Error::Start(self.exit_reason_now()))
                    }
                    Err(_) => break,
                }
            }
            if replied && published {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Start(format!(
                    "the kernel did not answer within {wait:?}{}",
                    self.exited_now()
                        .map(|w| format!(" ({w})"))
                        .unwrap_or_default()
                )));
            }
        }
    }

    fn exit_reason_now(&self) -> String {
        self.exited_now()
            .unwrap_or_else(|| "the kernel stopped answering".into())
    }

    /// Why the process ended, if it has.
    pub fn exited_now(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// Waits until the process ends; says why.
    pub async fn exited(&self) -> String {
        let mut rx = self.exit.clone();
        let _ = rx.wait_for(Option::is_some).await;
        let why = rx.borrow().clone();
        why.unwrap_or_default()
    }

    /// The kernel's events, once (the bridge takes them).
    pub fn take_events(&self) -> Option<mpsc::UnboundedReceiver<Event>> {
        self.events.lock().take()
    }

    /// Runs `code` silently (no history, no execution count), before the
    /// events are taken; its error is returned.
    pub async fn run_setup(&self, code: &str, wait: Duration) -> Result<(), Error> {
        let mut guard = self.events.lock().take();
        let Some(events) = guard.as_mut() else {
            return Err(Error::Setup("the kernel is already bridged".into()));
        };
        let result = self.setup_inner(events, code, wait).await;
        *self.events.lock() = guard;
        result
    }

    async fn setup_inner(
        &self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        code: &str,
        wait: Duration,
    ) -> Result<(), Error> {
        let req = self.conn.request(
            "execute_request",
            json!({"code": code, "silent": true, "store_history": false,
                   "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}),
        );
        self.conn.send(Channel::Shell, &req).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Message(Channel::Shell, m)))
                    if m.parent_header.get("msg_id").and_then(Value::as_str)
                        == Some(req.msg_id()) =>
                {
                    return match m.content.get("status").and_then(Value::as_str) {
                        Some("ok") => Ok(()),
                        _ => Err(Error::Setup(format!(
                            "{}: {}",
                            m.content
                                .get("ename")
                                .and_then(Value::as_str)
                                .unwrap_or("error"),
                            m.content
                                .get("evalue")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                        ))),
                    };
                }
                Ok(Some(Event::Message(..))) => {}
                Ok(Some(Event::Unresponsive(_))) | Ok(None) => {
                    return Err(Error::Exited(self.exit_reason_now()))
                }
                Err(_) => return Err(Error::Setup(format!("no answer within {wait:?}"))),
            }
        }
    }

    /// Caps the kernel's address space at `bytes` (its share of its
    /// lease). Set from inside before any user code runs; the hard limit
    /// cannot be raised again without privileges the sandbox drops.
    pub async fn limit_memory(&self, bytes: u64, wait: Duration) -> Result<(), Error> {
        self.run_setup(
            &format!(
                "import resource as _r; _r.setrlimit(_r.RLIMIT_AS, ({bytes}, {bytes})); del _r"
            ),
            wait,
        )
        .await
    }

    /// Stops the process now.
    pub fn kill(&self) {
        self.kill.cancel();
    }
}

fn exit_reason(status: std::process::ExitStatus, stderr: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let last: Vec<&str> = stderr.lines().rev().take(3).collect();
    let last: Vec<&str> = last.into_iter().rev().collect();
    let said = if last.is_empty() {
        String::new()
    } else {
        format!("; it said: {}", last.join(" | "))
    };
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("the Python process exited with status {c}{said}"),
        (_, Some(9)) => format!("the Python process was killed (SIGKILL){said}"),
        (_, Some(s)) => format!("the Python process was ended by signal {s}{said}"),
        _ => format!("the Python process ended{said}"),
    }
}
