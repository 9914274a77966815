//! Talking to one kernel: a DEALER on shell, control and stdin (shell and
//! stdin share an identity, so `input()` requests reach us), a SUB on
//! iopub, a REQ on the heartbeat. Everything the kernel says arrives as
//! one stream of events; a kernel that stops answering its heartbeat is
//! an event too.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zeromq::prelude::*;
use zeromq::{DealerSendHalf, DealerSocket, ReqSocket, SocketOptions, SubSocket};

use crate::connection::{Channel, ConnectionInfo};
use crate::wire::{self, Key, Message};
use crate::Error;
use tarn_common::supervisor::Supervisor;

/// What the kernel says.
#[derive(Debug)]
pub enum Event {
    /// A message on a channel.
    Message(Channel, Message),
    /// The heartbeat went unanswered this long.
    Unresponsive(Duration),
}

/// How often the heartbeat is sent, and how many misses make a kernel
/// unresponsive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);
const HEARTBEAT_MISSES: u32 = 10;

/// Waits until every TCP port of a kernel accepts a connection: a ZeroMQ
/// connect to a port nobody listens on yet fails rather than waits.
async fn wait_for_ports(
    info: &ConnectionInfo,
    host_prefix: &Path,
    all: &[Channel],
    deadline: Instant,
    wait: Duration,
) -> Result<(), Error> {
    for c in all {
        let ep = info.endpoint(host_prefix, *c);
        let addr = ep.trim_start_matches("tcp://").to_string();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Start(format!(
                    "the kernel did not open {ep} within {wait:?}"
                )));
            }
            let attempt = tokio::time::timeout(
                left.min(Duration::from_secs(1)),
                tokio::net::TcpStream::connect(&addr),
            )
            .await;
            if matches!(attempt, Ok(Ok(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// A connection to one kernel.
pub struct Connection {
    key: Key,
    session: String,
    shell: tokio::sync::Mutex<DealerSendHalf>,
    control: tokio::sync::Mutex<DealerSendHalf>,
    stdin: tokio::sync::Mutex<DealerSendHalf>,
    stop: CancellationToken,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Connection {
    /// Connects to a kernel whose sockets are at `host_prefix-N`, waiting
    /// up to `wait` for them to appear. Events arrive on the receiver.
    pub async fn connect(
        info: &ConnectionInfo,
        host_prefix: &Path,
        wait: Duration,
        tasks: &Supervisor,
    ) -> Result<(Arc<Connection>, mpsc::UnboundedReceiver<Event>), Error> {
        let deadline = Instant::now() + wait;
        let all = [
            Channel::Shell,
            Channel::IoPub,
            Channel::Stdin,
            Channel::Control,
            Channel::Heartbeat,
        ];
        // Unix sockets appear as files when the kernel listens; TCP ports
        // cannot be seen from here, and ZeroMQ reconnects until they open.
        while info.is_ipc() && !all.iter().all(|c| info.socket(host_prefix, *c).exists()) {
            if Instant::now() > deadline {
                return Err(Error::Start(format!(
                    "the kernel did not open its sockets within {wait:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !info.is_ipc() {
            wait_for_ports(info, host_prefix, &all, deadline, wait).await?;
        }
        let ep = |c| info.endpoint(host_prefix, c);
        let zmq = |e: zeromq::ZmqError| Error::Start(format!("cannot connect to the kernel: {e}"));
        // Shell and stdin must share one identity: the kernel sends input
        // requests to the identity that sent the execute request.
        let identity: zeromq::util::PeerIdentity = Bytes::from(uuid::Uuid::new_v4().to_string())
            .try_into()
            .map_err(zmq)?;
        let dealer = |id: Option<zeromq::util::PeerIdentity>| {
            let mut o = SocketOptions::default();
            if let Some(id) = id {
                o.peer_identity(id);
            }
            DealerSocket::with_options(o)
        };
        let mut shell = dealer(Some(identity.clone()));
        shell.connect(&ep(Channel::Shell)).await.map_err(zmq)?;
        let mut stdin = dealer(Some(identity));
        stdin.connect(&ep(Channel::Stdin)).await.map_err(zmq)?;
        let mut control = dealer(None);
        control.connect(&ep(Channel::Control)).await.map_err(zmq)?;
        let mut iopub = SubSocket::new();
        iopub.connect(&ep(Channel::IoPub)).await.map_err(zmq)?;
        iopub.subscribe("").await.map_err(zmq)?;
        let mut hb = ReqSocket::new();
        hb.connect(&ep(Channel::Heartbeat)).await.map_err(zmq)?;

        let key = Key::new(&info.key);
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let (shell_tx, shell_rx) = shell.split();
        let (stdin_tx, stdin_rx) = stdin.split();
        let (control_tx, control_rx) = control.split();
        // Each reader ends with the connection or the process.
        let reader = |ch| (ch, key.clone(), tx.clone(), stop.clone());
        spawn_reader(tasks, shell_rx, reader(Channel::Shell));
        spawn_reader(tasks, stdin_rx, reader(Channel::Stdin));
        spawn_reader(tasks, control_rx, reader(Channel::Control));
        spawn_reader(tasks, iopub, reader(Channel::IoPub));
        tasks.spawn(
            "kernel heartbeat",
            heartbeat(hb, ep(Channel::Heartbeat), tx.clone(), stop.clone()),
        );
        Ok((
            Arc::new(Connection {
                key,
                session: uuid::Uuid::new_v4().to_string(),
                shell: tokio::sync::Mutex::new(shell_tx),
                control: tokio::sync::Mutex::new(control_tx),
                stdin: tokio::sync::Mutex::new(stdin_tx),
                stop,
            }),
            rx,
        ))
    }

    /// The session id this side signs its messages with.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Sends `msg` on `channel` (shell, control or stdin).
    pub async fn send(&self, channel: Channel, msg: &Message) -> Result<(), Error> {
        let frames = wire::encode(&self.key, &[], msg);
        let sock = match channel {
            Channel::Shell => &self.shell,
            Channel::Control => &self.control,
            Channel::Stdin => &self.stdin,
            other => {
                return Err(Error::Wire(format!(
                    "messages are not sent on {}",
                    other.name()
                )))
            }
        };
        sock.lock()
            .await
            .send(frames)
            .await
            .map_err(|e| Error::Wire(format!("cannot send to the kernel: {e}")))
    }

    /// A new request of `msg_type` from this side.
    pub fn request(&self, msg_type: &str, content: serde_json::Value) -> Message {
        Message::new(msg_type, &self.session, json!({}), content)
    }

    /// Stops reading from the kernel.
    pub fn close(&self) {
        self.stop.cancel();
    }
}

/// Reads one channel until the connection closes; messages with a bad
/// signature are dropped, not passed on.
type Reader = (
    Channel,
    Key,
    mpsc::UnboundedSender<Event>,
    CancellationToken,
);

fn spawn_reader<S: SocketRecv + Send + 'static>(
    tasks: &Supervisor,
    mut sock: S,
    (channel, key, tx, stop): Reader,
) {
    tasks.spawn("kernel channel reader", async move {
        loop {
            let frames = tokio::select! {
                _ = stop.cancelled() => return,
                r = sock.recv() => r,
            };
            match frames {
                Ok(f) => match wire::decode(&key, f) {
                    Ok((_, m)) => {
                        if tx.send(Event::Message(channel, m)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(channel = channel.name(), error = %e, "dropped a message from the kernel")
                    }
                },
                Err(e) => {
                    tracing::debug!(channel = channel.name(), error = %e, "kernel channel closed");
                    return;
                }
            }
        }
    });
}

/// Pings the kernel's heartbeat; after too many misses in a row the
/// kernel is reported unresponsive (a REQ socket that missed its reply is
/// replaced, as its state machine cannot send again).
async fn heartbeat(
    mut hb: ReqSocket,
    endpoint: String,
    tx: mpsc::UnboundedSender<Event>,
    stop: CancellationToken,
) {
    let mut missed = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
        }
        let answered = tokio::time::timeout(HEARTBEAT_EVERY, async {
            hb.send("ping".into()).await?;
            hb.recv().await
        })
        .await;
        if matches!(answered, Ok(Ok(_))) {
            missed = 0;
            continue;
        }
        missed += 1;
        if missed >= HEARTBEAT_MISSES {
            let _ = tx.send(Event::Unresponsive(HEARTBEAT_EVERY * missed));
            return;
        }
        hb = ReqSocket::new();
        if hb.connect(&endpoint).await.is_err() {
            continue;
        }
    }
}
