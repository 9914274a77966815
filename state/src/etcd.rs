//! The etcd backend and leader election.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
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
    let list: Vec<String> = endpoints
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
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

    /// Waits until this candidate leads (or `cancel` fires: `None`).
    pub async fn campaign(&self, cancel: &CancellationToken) -> Result<Option<Leadership>> {
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
        tokio::spawn(keep_alive(
            self.client.clone(),
            lease,
            self.ttl,
            lost.clone(),
        ));
        let mut election = self.client.election_client();
        let campaign = election.campaign(self.name.clone(), self.value.clone(), lease);
        let resp = tokio::select! {
            r = campaign => r.map_err(err)?,
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

/// Renews `lease` every third of its TTL; cancels `lost` when a renewal
/// reports the lease gone, or none succeeded for a whole TTL.
async fn keep_alive(client: Client, lease: i64, ttl: Duration, lost: CancellationToken) {
    let period = (ttl / 3).max(Duration::from_millis(300));
    let mut last_ok = tokio::time::Instant::now();
    let mut stream = None;
    loop {
        if lost.is_cancelled() {
            return;
        }
        if last_ok.elapsed() > ttl {
            warn!(lease, "election lease could not be renewed for a whole TTL");
            lost.cancel();
            return;
        }
        if stream.is_none() {
            stream = client.lease_client().keep_alive(lease).await.ok();
        }
        if let Some((keeper, responses)) = stream.as_mut() {
            let renewed = async {
                keeper.keep_alive().await?;
                responses.message().await
            };
            match tokio::time::timeout(period, renewed).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => last_ok = tokio::time::Instant::now(),
                Ok(Ok(Some(_))) => {
                    warn!(lease, "election lease expired");
                    lost.cancel();
                    return;
                }
                _ => stream = None,
            }
        }
        tokio::select! {
            _ = lost.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}
