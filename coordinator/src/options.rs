//! Coordinator configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Options of the coordinator role (`[coordinator]` in the config file,
/// `TARN_COORDINATOR__*` in the environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorOptions {
    /// Address of the Ballista scheduler and the tarn.v1 API.
    pub bind: String,
    /// Lake root: a directory or an object-store URL.
    pub lake: String,
    /// Configured size of the interactive pool, in vCores.
    pub interactive_pool_vcores: u32,
    /// Configured size of the job pool, in vCores.
    pub job_pool_vcores: u32,
    /// An executor that has not re-announced itself for this long is
    /// considered gone.
    #[serde(with = "humantime_serde")]
    pub executor_ttl: Duration,
    /// After a shutdown request, how long open connections may stay.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:50050".into(),
            lake: "./lake".into(),
            interactive_pool_vcores: 760,
            job_pool_vcores: 240,
            executor_ttl: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(5),
        }
    }
}
