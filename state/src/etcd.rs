//! The etcd backend and leader election.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use tarn_common::supervisor::Supervisor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Error, Op, Result, StateStore};

/// The coordinator's state under a key prefix in etcd.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: String,
    prefix: String,
    /// The leader key and its creation revision: every commit is guarded
    /// by it, so only the current leader's writes land.
    fence: std::sync::Arc<std::sync::Mutex<Option<Fence>>>,
}

/// The leader key and its creation revision.
type Fence = (Vec<u8>, i64);

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (comma-separated `http://host:port`)
    /// and keeps keys under `prefix`.
    pub async fn connect(endpoints: &str, prefix: &str) -> Result<Self> {
        let client = connect(endpoints).await?;
        let mut prefix = prefix.trim_end_matches('/').to_string();
        prefix.push('/');
        Ok(Self {
            client,
            endpoints: endpoints.to_string(),
            prefix,
            fence: Default::default(),
        })
    }

    /// Guards every later commit with `leadership`'s key.
    pub fn fence_with(&self, leadership: &Leadership) {
        *self.fence.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((leadership.key.clone(), leadership.rev));
    }

    /// An election among coordinators sharing this store's prefix.
    pub fn election(&self, value: &str, ttl: Duration) -> Election {
        Election {
            client: self.client.clone(),
            endpoints: self.endpoints.clone(),
            name: format!("{}leader", self.prefix),
            value: value.to_string(),
            ttl,
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Etcd {
            endpoints: self.endpoints.clone(),
            message: e.to_string(),
        }
    }
}

async fn connect(endpoints: &str) -> Result<Client> {
    connect_with(endpoints, Some(Duration::from_secs(5))).await
}

/// A client; `timeout` bounds each request (none for campaigns, which etcd
/// answers only once the candidate wins).
async fn connect_with(endpoints: &str, timeout: Option<Duration>) -> Result<Client> {
    let list: Vec<String> = endpoints
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    if let Some(t) = timeout {
        opts = opts.with_timeout(t);
    }
    Client::connect(list, Some(opts))
        .await
        .map_err(|e| Error::Etcd {
            endpoints: endpoints.to_string(),
            message: format!("{e} (is etcd running there?)"),
        })
}

#[async_trait::async_trait]
impl StateStore for EtcdStore {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    async fn load(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let full = format!("{}{prefix}", self.prefix);
        let mut kv = self.client.kv_client();
        let resp = kv
            .get(full, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let key = kv.key_str().map_err(|e| self.err(e))?;
            if let Some(rel) = key.strip_prefix(&self.prefix) {
                out.push((rel.to_string(), kv.value().to_vec()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<()> {
        let ops: Vec<TxnOp> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put(k, v) => TxnOp::put(format!("{}{k}", self.prefix), v, None),
                Op::Delete(k) => TxnOp::delete(format!("{}{k}", self.prefix), None),
            })
            .collect();
        let fence = self.fence.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let txn = match fence {
            Some((key, rev)) => Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, rev)])
                .and_then(ops),
            None => Txn::new().and_then(ops),
        };
        let mut kv = self.client.kv_client();
        let resp = kv.txn(txn).await.map_err(|e| self.err(e))?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }
}

/// A coordinator's candidacy in the leader election.
pub struct Election {
    client: Client,
    endpoints: String,
    name: String,
    value: String,
    ttl: Duration,
}

/// Held while this coordinator leads. `lost` fires if the etcd lease
/// behind it cannot be kept alive (etcd unreachable for a TTL, or the key
/// deleted), after which the holder must stop acting as leader.
#[derive(Debug, Clone)]
pub struct Leadership {
    key: Vec<u8>,
    rev: i64,
    /// Fires when leadership is lost.
    pub lost: CancellationToken,
}

impl Election {
    /// The value (address) of the current leader, if any.
    pub async fn leader(&self) -> Option<String> {
        let mut c = self.client.election_client();
        let resp = c.leader(self.name.clone()).await.ok()?;
        resp.kv()
            .and_then(|kv| kv.value_str().ok())
            .map(str::to_string)
    }

    /// Waits until this candidate leads (or `cancel` fires: `None`),
    /// retrying after etcd errors: a standby must keep standing by through
    /// an etcd restart.
    pub async fn campaign(&self, tasks: &Supervisor) -> Result<Option<Leadership>> {
        let cancel = tasks.token();
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.campaign_once(tasks).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    warn!(error = %e, "campaign failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn campaign_once(&self, tasks: &Supervisor) -> Result<Option<Leadership>> {
        let cancel = tasks.token();
        let err = |e: etcd_client::Error| Error::Etcd {
            endpoints: self.endpoints.clone(),
            message: e.to_string(),
        };
        let ttl = self.ttl.as_secs().max(2) as i64;
        let mut lease_client = self.client.lease_client();
        let lease = lease_client.grant(ttl, None).await.map_err(err)?.id();
        let lost = CancellationToken::new();
        // Keep the lease alive from now on: a standby's candidacy must not
        // lapse while it waits, and the leader's must not while it leads.
        tasks.spawn(
            "etcd lease keep-alive",
            keep_alive(self.client.clone(), lease, self.ttl, lost.clone()),
        );
        // Its own client: the shared one's request timeout would end a
        // campaign that is simply waiting for the leader to go.
        let waiting = match connect_with(&self.endpoints, None).await {
            Ok(c) => c,
            Err(e) => {
                lost.cancel();
                let _ = lease_client.revoke(lease).await;
                return Err(e);
            }
        };
        let mut election = waiting.election_client();
        let campaign = election.campaign(self.name.clone(), self.value.clone(), lease);
        let resp = tokio::select! {
            r = campaign => match r {
                Ok(r) => r,
                Err(e) => {
                    lost.cancel();
                    let _ = lease_client.revoke(lease).await;
                    return Err(err(e));
                }
            },
            _ = cancel.cancelled() => {
                lost.cancel();
                let _ = lease_client.revoke(lease).await;
                return Ok(None);
            }
            _ = lost.cancelled() => {
                return Err(Error::Etcd {
                    endpoints: self.endpoints.clone(),
                    message: "the election lease expired while waiting".into(),
                });
            }
        };
        let leader = resp.leader().ok_or_else(|| Error::Etcd {
            endpoints: self.endpoints.clone(),
            message: "campaign returned no leader key".into(),
        })?;
        info!(value = %self.value, rev = leader.rev(), "elected leader");
        Ok(Some(Leadership {
            key: leader.key().to_vec(),
            rev: leader.rev(),
            lost,
        }))
    }
}

fn lapse(lease: i64, lost: &CancellationToken) {
    warn!(lease, "election lease could not be renewed in time");
    lost.cancel();
}

/// Renews `lease` every third of its TTL; cancels `lost` when a renewal
/// reports the lease gone, or when no renewal was sent successfully for
/// most of a TTL — before etcd itself can expire the lease and let a
/// standby win, so two coordinators never both believe they lead for long.
async fn keep_alive(client: Client, lease: i64, ttl: Duration, lost: CancellationToken) {
    let period = (ttl / 3).max(Duration::from_millis(300));
    // Counted from when the last successful renewal was *sent*.
    let mut deadline = tokio::time::Instant::now() + ttl.mul_f32(0.8);
    let mut stream = None;
    loop {
        let round = async {
            if stream.is_none() {
                stream = client.lease_client().keep_alive(lease).await.ok();
            }
            let sent = tokio::time::Instant::now();
            let (keeper, responses) = stream.as_mut()?;
            let renewed = async {
                keeper.keep_alive().await?;
                responses.message().await
            };
            match tokio::time::timeout(period, renewed).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => Some(Ok(sent)),
                Ok(Ok(Some(_))) => Some(Err(())),
                _ => {
                    stream = None;
                    None
                }
            }
        };
        tokio::select! {
            _ = lost.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => return lapse(lease, &lost),
            r = round => match r {
                Some(Ok(sent)) => deadline = sent + ttl.mul_f32(0.8),
                Some(Err(())) => {
                    warn!(lease, "election lease expired");
                    lost.cancel();
                    return;
                }
                None => {}
            },
        }
        tokio::select! {
            _ = lost.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => return lapse(lease, &lost),
            _ = tokio::time::sleep(period) => {}
        }
    }
}
