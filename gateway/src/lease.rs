//! The gateway's side of vCore leases: every session holds one, taken from
//! the coordinator when the session opens, renewed by a heartbeat, given
//! back when the session closes or idles out.

use std::time::Duration;

use tarn_common::{ErrorCode, TarnError};
use tarn_proto::coordinator_client::CoordinatorClient;
use tarn_proto::*;
use tonic::transport::Channel;

/// What a session asks for; empty fields take the configured defaults.
#[derive(Debug, Clone, Default)]
pub struct LeaseWish {
    /// vCores (0 = by size).
    pub vcores: u32,
    /// small | medium | large.
    pub size: String,
}

/// A client of the coordinator's lease API.
#[derive(Debug, Clone)]
pub struct LeaseClient {
    client: CoordinatorClient<Channel>,
    holder: String,
    default: LeaseWish,
}

fn unreachable(e: impl std::fmt::Display) -> TarnError {
    TarnError::new(
        ErrorCode::PoolNotAvailable,
        format!("the coordinator is unreachable: {e}"),
    )
    .with_fix("retry shortly; if it persists, ask an operator to check the coordinator")
}

/// The coordinator's answer as a coded error. Its own errors carry their
/// code; a status without one is either the transport failing (the
/// coordinator is unreachable) or something else answering, reported as
/// what it is.
fn from_status(s: tonic::Status) -> TarnError {
    if s.metadata()
        .get(tarn_common::error::ERROR_CODE_HEADER)
        .is_some()
    {
        return TarnError::from_status(&s);
    }
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => unreachable(s.message()),
        code => {
            let mut e = TarnError::from_status(&s);
            e.message = format!("the coordinator answered {code:?}: {}", s.message());
            e
        }
    }
}

impl LeaseClient {
    /// A client of the coordinator at `endpoint` (`host:port`); connects lazily.
    pub fn new(endpoint: &str, holder: String, default: LeaseWish) -> Result<Self, TarnError> {
        let channel = tarn_common::cluster::endpoint(endpoint)
            .map_err(|e| {
                TarnError::new(ErrorCode::Internal, format!("bad coordinator address: {e}"))
            })?
            .connect_timeout(Duration::from_secs(3))
            // A coordinator that stops answering must not stall the lease
            // heartbeat, idle sweep or shutdown behind one call.
            .timeout(Duration::from_secs(10))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            client: CoordinatorClient::new(channel),
            holder,
            default,
        })
    }

    /// The raw API client (same channel).
    pub fn api(&self) -> CoordinatorClient<Channel> {
        self.client.clone()
    }

    /// Takes an interactive lease for `user`.
    pub async fn acquire(
        &self,
        user: &str,
        workspace: &str,
        wish: &LeaseWish,
        _session_id: &str,
    ) -> Result<LeaseInfo, TarnError> {
        let (vcores, size) = if wish.vcores > 0 || !wish.size.is_empty() {
            (wish.vcores, wish.size.clone())
        } else {
            (self.default.vcores, self.default.size.clone())
        };
        self.client
            .clone()
            .acquire_lease(AcquireLeaseRequest {
                header: Some(header()),
                pool: Pool::Interactive as i32,
                user: user.to_string(),
                workspace: workspace.to_string(),
                vcores,
                size,
                // Never the session id: that is a bearer credential, and
                // leases are listed to operators.
                holder: self.holder.clone(),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(from_status)
    }

    /// Renews leases; returns those that are gone.
    pub async fn renew(&self, ids: Vec<String>) -> Result<Vec<String>, TarnError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.client
            .clone()
            .renew_leases(RenewLeasesRequest {
                header: Some(header()),
                lease_ids: ids,
            })
            .await
            .map(|r| r.into_inner().gone)
            .map_err(from_status)
    }

    /// Gives a lease back; errors are logged, never raised (an unreleased
    /// lease expires by itself).
    pub async fn release(&self, id: String) {
        let r = self
            .client
            .clone()
            .release_lease(ReleaseLeaseRequest {
                header: Some(header()),
                lease_id: id.clone(),
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(lease = %id, error = %e.message(), "could not release a lease; it will expire");
        }
    }
}

/// Maps a coordinator status to the user-facing error.
pub fn coordinator_error(s: tonic::Status) -> TarnError {
    from_status(s)
}
