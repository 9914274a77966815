//! Coordinator configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Options of the coordinator role (`[coordinator]` in the config file,
/// `TARN_COORDINATOR__*` in the environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorOptions {
    /// Address of the Ballista scheduler and the tarn.v1 API.
    pub bind: String,
    /// Address other roles reach this coordinator at (what the leader
    /// election publishes); empty means the bound address.
    pub advertise: String,
    /// HTTP address for `/metrics` and `/healthz`; empty disables it.
    pub http_bind: String,
    /// Lake root: a directory or an object-store URL.
    pub lake: String,
    /// `embedded` (a redb file in `state_dir`) or `etcd`.
    pub store: String,
    /// Folder of the embedded store.
    pub state_dir: String,
    /// Folder of the cluster's credentials (`tarn certs --dir`), shared
    /// with the executors: the reservation key lives there.
    pub cluster_dir: String,
    /// etcd endpoints, comma-separated (`http://127.0.0.1:2379`).
    pub etcd_endpoints: String,
    /// Key prefix of this cluster in etcd.
    pub etcd_prefix: String,
    /// With etcd: how long a dead leader keeps its leadership before a
    /// standby takes over.
    #[serde(with = "humantime_serde")]
    pub election_ttl: Duration,
    /// Configured size of the interactive pool, in vCores.
    pub interactive_pool_vcores: u32,
    /// Configured size of the job pool, in vCores.
    pub job_pool_vcores: u32,
    /// vCores all leases together may hold.
    pub account_vcores: u32,
    /// Distinct users holding interactive sessions at once (a user with
    /// several sessions counts once).
    pub max_interactive_users: u32,
    /// Job runs running at once; later ones queue in order.
    pub max_running_jobs: u32,
    /// Job runs waiting at once; more are refused (TARN-2305).
    pub max_queued_jobs: u32,
    /// A lease whose holder stops renewing it ends after this long.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Named session sizes in vCores.
    pub session_sizes: BTreeMap<String, u32>,
    /// The size a session gets when it asks for none.
    pub default_session_size: String,
    /// An executor that has not re-announced itself for this long is
    /// considered gone.
    #[serde(with = "humantime_serde")]
    pub executor_ttl: Duration,
    /// After a shutdown request, how long open connections may stay.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Job definitions a workspace may hold.
    pub max_jobs_per_workspace: u32,
    /// Job definitions one user may own.
    pub max_jobs_per_user: u32,
    /// Jobs with a schedule a workspace may hold.
    pub max_scheduled_jobs_per_workspace: u32,
    /// Jobs with a schedule one user may own.
    pub max_scheduled_jobs_per_user: u32,
    /// Ended runs kept per job (older ones are forgotten).
    pub job_history: u32,
    /// The longest timeout a job may set; also its default.
    #[serde(with = "humantime_serde")]
    pub max_job_timeout: Duration,
    /// No schedule may fire more often (tests lower it to seconds).
    #[serde(with = "humantime_serde")]
    pub min_schedule_interval: Duration,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:50050".into(),
            advertise: String::new(),
            http_bind: "127.0.0.1:8050".into(),
            lake: "./lake".into(),
            store: "embedded".into(),
            state_dir: "./tarn-state".into(),
            cluster_dir: "./tarn-state/cluster".into(),
            etcd_endpoints: "http://127.0.0.1:2379".into(),
            etcd_prefix: "/tarn".into(),
            election_ttl: Duration::from_secs(5),
            interactive_pool_vcores: 760,
            job_pool_vcores: 240,
            account_vcores: 1000,
            max_interactive_users: 10,
            max_running_jobs: 3,
            max_queued_jobs: 100,
            lease_ttl: Duration::from_secs(30),
            session_sizes: [("small", 2), ("medium", 8), ("large", 32)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            default_session_size: "small".into(),
            executor_ttl: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(5),
            max_jobs_per_workspace: 100,
            max_jobs_per_user: 50,
            max_scheduled_jobs_per_workspace: 50,
            max_scheduled_jobs_per_user: 20,
            job_history: 100,
            max_job_timeout: Duration::from_secs(8 * 3600),
            min_schedule_interval: Duration::from_secs(60),
        }
    }
}
