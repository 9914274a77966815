//! Following the leading coordinator.
//!
//! Gateways and executors may be given several coordinator addresses
//! (`a:50050,b:50050`). Only the leader serves; standbys answer Health
//! with `role = "standby"`. [`LeaderProxy`] listens on a loopback port and
//! forwards each connection to whichever coordinator currently leads, so
//! every client behind it — Tarn's API clients and Ballista's scheduler
//! clients alike — talks to one stable address. When the leader changes,
//! connections to the old one are closed and the clients' reconnects land
//! on the new one.

use std::net::SocketAddr;
use std::time::Duration;

use tarn_common::supervisor::Supervisor;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{header, HealthRequest};

/// How often coordinators are asked who leads.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// The coordinator address a role should dial: the only one given, or a
/// local proxy that follows the leader among several.
pub async fn coordinator_endpoint(
    coordinators: &str,
    tasks: &Supervisor,
) -> Result<String, tarn_common::net::BindError> {
    let list: Vec<String> = coordinators
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if list.len() <= 1 {
        return Ok(list.into_iter().next().unwrap_or_default());
    }
    let proxy = LeaderProxy::start(list, tasks)
        .await
        .map_err(|e| tarn_common::net::BindError::new("127.0.0.1:0 (coordinator proxy)", e))?;
    Ok(proxy.local_addr.to_string())
}

/// Waits until one of `coordinators` (comma-separated) leads, retrying
/// with backoff; returns `false` only if `shutdown` came first.
///
/// A coordinator serves its port before it leads: with the embedded store
/// it is leader once its ledger is loaded, with etcd once it wins the
/// election. A role that registers meanwhile is refused with NOT_LEADER, so
/// executors and gateways call this first rather than fail (and, under
/// `tarn standalone`, bring the whole cluster down) on start-up order.
pub async fn wait_for_leader(coordinators: &str, shutdown: &CancellationToken) -> bool {
    let list: Vec<&str> = coordinators
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(50);
    let mut said: Option<tokio::time::Instant> = None;
    loop {
        for c in &list {
            if is_leader(c).await {
                if said.is_some() {
                    info!(leader = %c, waited_ms = started.elapsed().as_millis() as u64, "a coordinator leads; going on");
                }
                return true;
            }
        }
        // Said at once, then every half minute.
        if said.is_none_or(|at| at.elapsed() >= Duration::from_secs(30)) {
            info!(coordinators = %coordinators, "waiting for a coordinator to lead");
            said = Some(tokio::time::Instant::now());
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The longest pause between two looks for a leader.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A loopback TCP forwarder to the current leader.
#[derive(Debug, Clone)]
pub struct LeaderProxy {
    /// Where clients connect.
    pub local_addr: SocketAddr,
    leader: watch::Receiver<Option<String>>,
}

impl LeaderProxy {
    /// Starts probing `coordinators` and forwarding.
    pub async fn start(coordinators: Vec<String>, tasks: &Supervisor) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local_addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(None);
        let probing = probe(coordinators, tx, tasks.token().clone());
        tasks.service("leader probe", async move {
            probing.await;
            Ok::<(), std::convert::Infallible>(())
        });
        let accepting = accept(listener, rx.clone(), tasks.clone());
        tasks.service("leader proxy", async move {
            accepting.await;
            Ok::<(), std::convert::Infallible>(())
        });
        Ok(Self {
            local_addr,
            leader: rx,
        })
    }

    /// The leader as last seen.
    pub fn leader(&self) -> Option<String> {
        self.leader.borrow().clone()
    }
}

async fn probe(
    coordinators: Vec<String>,
    tx: watch::Sender<Option<String>>,
    shutdown: CancellationToken,
) {
    loop {
        let mut found = None;
        for c in &coordinators {
            if is_leader(c).await {
                found = Some(c.clone());
                break;
            }
        }
        if *tx.borrow() != found {
            match &found {
                Some(l) => info!(leader = %l, "following coordinator leader"),
                None => warn!("no coordinator leads right now"),
            }
            let _ = tx.send(found);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

async fn is_leader(addr: &str) -> bool {
    let ask = async {
        let mut c = crate::connect_coordinator(addr).await.ok()?;
        let h = c
            .health(HealthRequest {
                header: Some(header()),
            })
            .await
            .ok()?
            .into_inner();
        Some(h.role == "leader")
    };
    tokio::time::timeout(Duration::from_secs(1), ask)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

async fn accept(listener: TcpListener, leader: watch::Receiver<Option<String>>, tasks: Supervisor) {
    let shutdown = tasks.token().clone();
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((inbound, _)) = conn else { continue };
        let _ = inbound.set_nodelay(true);
        tasks.spawn(
            "leader proxy connection",
            forward(inbound, leader.clone(), shutdown.clone()),
        );
    }
}

async fn forward(
    mut inbound: TcpStream,
    mut leader: watch::Receiver<Option<String>>,
    shutdown: CancellationToken,
) {
    // Wait (bounded) for a leader: during a failover there is none for a
    // few seconds, and failing at once would only make clients retry.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let target = loop {
        if let Some(t) = leader.borrow_and_update().clone() {
            break t;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = shutdown.cancelled() => return,
            r = leader.changed() => if r.is_err() { return },
        }
    };
    let Ok(mut outbound) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = shutdown.cancelled() => {}
        // The leader changed: drop this connection so the client
        // reconnects to the new one.
        _ = async {
            loop {
                if leader.changed().await.is_err() {
                    return;
                }
                // A probe that briefly finds no leader is not a change:
                // only another coordinator leading is.
                if matches!(leader.borrow().as_deref(), Some(l) if l != target) {
                    return;
                }
            }
        } => {}
    }
}
