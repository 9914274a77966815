//! Executor configuration.

use serde::{Deserialize, Serialize};

/// Options of the executor role (`[executor]`, `TARN_EXECUTOR__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorOptions {
    /// Coordinator address (`host:port`), or several separated by commas
    /// (the executor follows whichever leads).
    pub coordinator: String,
    /// Pool this executor serves: `interactive` or `job`.
    pub pool: String,
    /// vCores offered; 0 means the machine's cores.
    pub vcores: u32,
    /// Host to bind the Flight (shuffle) and task gRPC servers on.
    pub bind_host: String,
    /// Host advertised to the coordinator and peers; defaults to `bind_host`.
    pub advertise_host: Option<String>,
    /// Flight port for shuffle data; 0 picks a free port.
    pub flight_port: u16,
    /// Task gRPC port; 0 picks a free port.
    pub grpc_port: u16,
    /// Lake root: a directory or an object-store URL.
    pub lake: String,
    /// Where shuffle files go; a temporary directory when unset.
    pub work_dir: Option<String>,
    /// Folder of the cluster's credentials (`tarn certs --dir`), the same
    /// as the coordinators': direct runs need a reservation signed with
    /// its key.
    pub cluster_dir: String,
    /// Memory all tasks and direct runs together may reserve, in bytes;
    /// 0 means three quarters of the machine's memory. Each lease gets its
    /// vCores' share of it on this executor.
    pub memory_limit_bytes: u64,
    /// Port of the Prometheus `/metrics` endpoint on `bind_host`; 0 picks
    /// a free port (announced to the coordinator, shown in the cluster
    /// view).
    pub metrics_port: u16,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            coordinator: "127.0.0.1:50050".into(),
            pool: "interactive".into(),
            vcores: 0,
            bind_host: "127.0.0.1".into(),
            advertise_host: None,
            flight_port: 0,
            grpc_port: 0,
            lake: "./lake".into(),
            work_dir: None,
            cluster_dir: "./tarn-state/cluster".into(),
            memory_limit_bytes: 0,
            metrics_port: 0,
        }
    }
}
