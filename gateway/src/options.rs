//! Gateway configuration.

use serde::{Deserialize, Serialize};

/// Options of the gateway role (`[gateway]`, `TARN_GATEWAY__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayOptions {
    /// Arrow Flight SQL listen address.
    pub flight_addr: String,
    /// HTTP listen address (`/healthz`, `/readyz`).
    pub http_addr: String,
    /// Coordinator address (`host:port`), or several separated by commas
    /// (the gateway follows whichever leads).
    pub coordinator: String,
    /// Lake root: a directory or an object-store URL.
    pub lake: String,
    /// Workspace a session starts in.
    pub default_workspace: String,
    /// vCores a session leases when its client asks for none (0: by
    /// `session_size`); also the number of partitions each scan is split
    /// into. Clients choose per session with the `x-tarn-vcores` or
    /// `x-tarn-session-size` handshake header.
    pub session_vcores: u32,
    /// Named size a session leases when its client asks for none (empty:
    /// the coordinator's default size).
    pub session_size: String,
    /// How often session leases are renewed; keep it well under the
    /// coordinator's `lease_ttl`.
    #[serde(with = "humantime_serde")]
    pub lease_renew_interval: std::time::Duration,
    /// After a shutdown request, how long in-flight requests may finish
    /// before open connections are dropped.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: std::time::Duration,
    /// A session nobody used for this long ends (with its prepared
    /// statements).
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: std::time::Duration,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            flight_addr: "127.0.0.1:50060".into(),
            http_addr: "127.0.0.1:8060".into(),
            coordinator: "127.0.0.1:50050".into(),
            lake: "./lake".into(),
            default_workspace: "demo".into(),
            session_vcores: 0,
            session_size: String::new(),
            lease_renew_interval: std::time::Duration::from_secs(5),
            drain_timeout: std::time::Duration::from_secs(5),
            session_idle_timeout: std::time::Duration::from_secs(20 * 60),
        }
    }
}
