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
    /// Coordinator address (`host:port`).
    pub coordinator: String,
    /// Lake root: a directory or an object-store URL.
    pub lake: String,
    /// Workspace a session starts in.
    pub default_workspace: String,
    /// vCores a session's queries may use at once; also the number of
    /// partitions each scan is split into.
    pub session_vcores: u32,
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
            session_vcores: 2,
            drain_timeout: std::time::Duration::from_secs(5),
            session_idle_timeout: std::time::Duration::from_secs(20 * 60),
        }
    }
}
