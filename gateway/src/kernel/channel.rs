//! A kernel's websocket. One is attached at a time; it closes at its
//! lifetime, when the credential that opened it expires, or when the
//! kernel ends. Each message it carries acts as that credential and is
//! answered as Jupyter's messaging protocol expects, never by dropping
//! the connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tarn_common::{ErrorCode, TarnError};
use tokio::sync::mpsc;

use super::{
    error_content, Kernel, Kernels, Outgoing, CLOSE_ALREADY_CONNECTED, CLOSE_CREDENTIALS_EXPIRED,
    CLOSE_LIFETIME, CLOSE_TOO_BIG,
};
use crate::auth::Identity;
use crate::kernel_auth::Sender;

/// How often an idle websocket is pinged.
const PING_EVERY: Duration = Duration::from_secs(30);

impl Kernels {
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
            .map(|exp| Duration::from_millis(exp.saturating_sub(tarn_common::clock::unix_ms())));
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
                        if sender.expired_at(tarn_common::clock::unix_ms()) {
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
        let Err(e) = sender.check(tarn_common::clock::unix_ms()) else {
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
        if kernel.spec == super::PYTHON_KERNEL {
            self.forward_to_process(kernel, msg, &msg_type, &channel, &content);
            return;
        }
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
            "kernel_info_request" => reply(kernel_info(kernel.spec)),
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
                self.shutdown_requested(kernel, restart);
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
                    format!("Tarn's {} kernel does not handle '{other}' messages", kernel.spec),
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
}

/// The `kernel_info_reply` content of a `tarn-sql` or `tarn-kql` kernel.
fn kernel_info(spec: &str) -> Value {
    if spec == super::KQL_KERNEL {
        return json!({
            "status": "ok",
            "protocol_version": "5.3",
            "implementation": "tarn",
            "implementation_version": env!("CARGO_PKG_VERSION"),
            "language_info": {
                "name": "kql",
                "version": "Tarn KQL",
                "mimetype": "text/x-kusto",
                "file_extension": ".kql",
                "codemirror_mode": "text/x-kusto",
                "pygments_lexer": "kusto",
            },
            "banner": "Tarn KQL: each cell is one KQL query, run on the cluster over the lake. %%sql or %sql runs SQL.",
            "help_links": [],
        });
    }
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
        "banner": "Tarn SQL: cells run on the cluster over the lake. Several statements per cell are allowed; %%kql or %kql runs KQL.",
        "help_links": [],
    })
}

/// A close reason in the catalogue's form, `TARN-<n> <NAME>: <cause>`
/// (the fix does not fit a close frame; the notebook gets it as a message).
pub(super) fn close_reason(code: ErrorCode, cause: impl std::fmt::Display) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_a_close_frame() {
        assert!(truncate_reason("é".repeat(100)).len() <= 123);
    }
}
