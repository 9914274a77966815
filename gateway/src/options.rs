//! Gateway configuration.

use serde::{Deserialize, Serialize};

/// Where reads with a shuffle run (`execution`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Execution {
    /// On the lease's executor when the lease fits there and the inputs
    /// are at most `local_max_input_bytes`; Ballista stages otherwise.
    #[default]
    Auto,
    /// On the lease's executor whenever the lease fits there.
    Local,
    /// Always as Ballista stages.
    Distributed,
}

impl std::fmt::Display for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Execution::Auto => "auto",
            Execution::Local => "local",
            Execution::Distributed => "distributed",
        })
    }
}

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
    /// A session (or kernel) nobody used for this long ends, with its
    /// prepared statements, and its vCores return to the pool.
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: std::time::Duration,
    /// How long before the inactivity timeout a kernel's notebook is
    /// warned (0 s: no warning).
    #[serde(with = "humantime_serde")]
    pub idle_warning: std::time::Duration,
    /// An interactive query running longer is cancelled with QUERY_TIMEOUT.
    #[serde(with = "humantime_serde")]
    pub query_timeout: std::time::Duration,
    /// A kernel websocket is closed after this long (close code 4001); the
    /// kernel lives on and a new websocket can attach.
    #[serde(with = "humantime_serde")]
    pub websocket_lifetime: std::time::Duration,
    /// Largest websocket message accepted, in bytes; a bigger one closes
    /// the websocket with code 1009.
    pub max_message_bytes: usize,
    /// Rows a notebook cell shows per result; the rest are counted, and the
    /// whole result is available over Flight SQL.
    pub max_result_rows: usize,
    /// `token`: every request needs a token signed with `auth_key_file`.
    /// `dev`: requests without credentials are served as user `anonymous`
    /// and basic credentials name any user (tokens are still checked).
    pub auth: String,
    /// File holding the token signing key (base64, 32+ bytes); `tarn
    /// token --key-file F --create-key` makes one.
    pub auth_key_file: String,
    /// Keys tokens may also be signed with, for rotating the key without
    /// logging anyone out: the new key becomes `auth_key_file`, the old
    /// one goes here until the tokens it signed have expired
    /// (`credential_lifetime`). A list, or one string separated by commas.
    #[serde(deserialize_with = "list")]
    pub auth_previous_key_files: Vec<String>,
    /// Folder of the cluster credentials (`tarn certs --dir`): the gateway
    /// reads only `ca.pem`, `gateway.pem` and `gateway.key` there, to call
    /// coordinators and executors over mutual TLS.
    pub cluster_dir: String,
    /// Credentials older than this are refused (401 CREDENTIALS_EXPIRED)
    /// whatever their own expiry; queries already running finish.
    #[serde(with = "humantime_serde")]
    pub credential_lifetime: std::time::Duration,
    /// Reads whose plan has no shuffle run directly on one executor of the
    /// session's pool (still within the session's leased vCores), without
    /// a Ballista job; their batches stream back as they are produced.
    pub direct_runs: bool,
    /// Reads scanning at most this many bytes are planned with a single
    /// partition, so that aggregates and joins need no shuffle and run
    /// directly on one vCore (0: only plans without a shuffle at the
    /// leased partition count run directly).
    pub direct_small_input_bytes: u64,
    /// Where a read with a shuffle runs: `auto` runs the whole plan on the
    /// one executor holding the session's leased vCores (partitions and
    /// repartitions in memory, batches streamed as produced) when its
    /// inputs are at most `local_max_input_bytes`, and as Ballista stages
    /// otherwise; `local` does so whatever the inputs; `distributed`
    /// always uses Ballista stages. A lease spread over several executors
    /// always uses Ballista stages.
    pub execution: Execution,
    /// The most input bytes (of the files a read scans) `execution = auto`
    /// runs on one executor; larger reads run as Ballista stages.
    pub local_max_input_bytes: u64,
    /// DataFusion and Ballista settings every session starts with, as
    /// `key=value` pairs separated by commas, e.g.
    /// `ballista.shuffle.compression.codec=none`. Checked at start-up.
    /// `datafusion.execution.target_partitions` is not among them: the
    /// session's lease decides it.
    pub session_settings: String,
    /// Bytes of constant values one statement's planning may compute in
    /// the gateway (`repeat`, `lpad`/`rpad`, `array_repeat`, `replace`,
    /// `concat`, `range` of constants, together); a statement needing more
    /// is refused with MEMORY_LIMIT_EXCEEDED before anything is computed.
    pub max_constant_bytes: usize,
    /// Bytes of memory the gateway's own query operators may hold, all
    /// sessions together (what it runs itself: `information_schema` and
    /// metadata queries); beyond it they fail with MEMORY_LIMIT_EXCEEDED.
    /// Queries run on the executors, within their own limits.
    pub memory_pool_bytes: usize,
    /// Cells a kernel holds waiting behind the running one; more are
    /// answered KERNEL_QUEUE_FULL at once.
    pub max_queued_cells: usize,
    /// Bytes of result data a notebook cell keeps for display (counted as
    /// Arrow data while the result streams in, and again as rendered
    /// text); the rest is counted, not kept.
    pub max_result_bytes: usize,
    /// Prepared statements one session may hold open; more are refused
    /// with TOO_MANY_PREPARED_STATEMENTS.
    pub max_prepared_statements: usize,
    /// Sessions (Flight SQL, REST and kernels together) one user may hold
    /// open on this gateway; more are refused with TOO_MANY_SESSIONS.
    pub max_sessions_per_user: usize,
    /// Host names the HTTP port answers to, besides `localhost`,
    /// `127.0.0.1`, `[::1]` and the gateway's own bind address (each with
    /// any port): `name` (any port) or `name:port`; `*` allows any. A
    /// request by another `Host` gets 403 ORIGIN_NOT_ALLOWED, which keeps
    /// web pages from reaching the gateway through DNS rebinding. A list,
    /// or one string separated by commas (`TARN_GATEWAY__HTTP_ALLOWED_HOSTS`).
    #[serde(deserialize_with = "list")]
    pub http_allowed_hosts: Vec<String>,
    /// Web page origins allowed to call the HTTP port, besides pages on
    /// loopback names and on the gateway's own host: `scheme://host[:port]`
    /// exactly, or a bare `host` (any scheme and port); `*` allows any.
    /// Requests without an `Origin` header (non-browser clients) are not
    /// affected.
    #[serde(deserialize_with = "list")]
    pub http_allowed_origins: Vec<String>,
    /// Job runs this gateway executes at once (its job worker); 0 runs
    /// none here (other gateways do).
    pub job_workers: usize,
    /// How long the credentials a job is given (when created or renewed)
    /// last; runs after that fail with CREDENTIALS_EXPIRED until the
    /// owner renews them.
    #[serde(with = "humantime_serde")]
    pub job_credential_lifetime: std::time::Duration,
    /// Rows of each statement's result kept in a run's executed notebook
    /// (the true count is always recorded).
    pub job_output_rows: usize,
    /// The interpreter `tarn-python` kernels run (its environment needs
    /// `ipykernel` and the Tarn package; `dev/setup.sh --kernels` makes
    /// `.kernel-env`). Empty: this gateway offers only `tarn-sql`. When it
    /// is missing or broken, `tarn-python` is not offered and the reason
    /// is logged.
    pub python_kernel_python: String,
    /// Where kernels run: `process` (on this host, confined by
    /// `python_kernel_sandbox`) or `kubernetes` (a pod per kernel, made
    /// from `python_kernel_pod_template`; `python_kernel_python` is then
    /// only used to check job notebooks parse, and may be empty).
    pub python_kernel_launcher: String,
    /// With `kubernetes`: the kernel pod template, a Pod in JSON (the
    /// chart ships it in a ConfigMap).
    pub python_kernel_pod_template: String,
    /// With `kubernetes`: the namespace kernel pods are made in (empty:
    /// the gateway's own, from its service account).
    pub python_kernel_pod_namespace: String,
    /// With `kubernetes`: the gateway's own pod name (the chart sets it);
    /// kernel pods are owned by that pod, so they are deleted with it.
    pub python_kernel_pod_owner: String,
    /// With `kubernetes`: how kernel pods reach this gateway's Flight SQL
    /// port, e.g. `grpc://10.0.0.5:50051` (this gateway, not a Service:
    /// the kernel's session lives here).
    pub python_kernel_lake_uri: String,
    /// With `kubernetes`: the API server (empty: the in-cluster address
    /// from `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`).
    pub kubernetes_api: String,
    /// The service account token sent to the API server (re-read for
    /// every call).
    pub kubernetes_token_file: String,
    /// The API server's CA certificate (empty or missing: the system's).
    pub kubernetes_ca_file: String,
    /// How kernels are confined: `bubblewrap` (no network, a file system
    /// of the system's read-only parts, the environment and the kernel's
    /// own directory; its own uid and process limit when the gateway runs
    /// as root) or `none` (development only: the kernel can read what the
    /// gateway can).
    pub python_kernel_sandbox: String,
    /// Kernels started ahead of time, so a notebook's kernel is ready at
    /// once (0: each is started when asked for, in about a second).
    pub python_kernel_pool: usize,
    /// Where kernels' directories are made (empty: a fresh directory
    /// under /tmp/tarn-kernels). Kept short: Unix socket paths are at most
    /// 107 bytes.
    pub python_kernel_dir: String,
    /// Kernels run as uids from here on when the gateway runs as root
    /// (one uid per running kernel).
    pub python_kernel_uid_base: u32,
    /// Processes and threads one kernel may run at once.
    pub python_kernel_max_processes: u64,
    /// Bytes of memory a kernel may use per vCore of its lease (its
    /// address space is capped at this times its vCores).
    pub python_kernel_memory_per_vcore: u64,
    /// Longest wait for a kernel to start or be set up.
    #[serde(with = "humantime_serde")]
    pub python_kernel_start_timeout: std::time::Duration,
    /// How long the credential a kernel's `lake` uses lasts; the gateway
    /// renews it at a third of this while the kernel lives.
    #[serde(with = "humantime_serde")]
    pub python_kernel_credential_lifetime: std::time::Duration,
}

/// A list given as a TOML array or as one string separated by commas
/// (environment variables can only say the latter).
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        Either::Many(v) => v,
    })
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
            idle_warning: std::time::Duration::from_secs(5 * 60),
            query_timeout: std::time::Duration::from_secs(2 * 3600),
            websocket_lifetime: std::time::Duration::from_secs(2 * 3600),
            max_message_bytes: 1024 * 1024,
            max_result_rows: 10_000,
            auth: "token".into(),
            auth_key_file: String::new(),
            auth_previous_key_files: Vec::new(),
            cluster_dir: "./tarn-state/cluster".into(),
            credential_lifetime: std::time::Duration::from_secs(3600),
            direct_runs: true,
            direct_small_input_bytes: 64 * 1024 * 1024,
            execution: Execution::Auto,
            local_max_input_bytes: 8 * 1024 * 1024 * 1024,
            session_settings: String::new(),
            max_constant_bytes: 16 * 1024 * 1024,
            memory_pool_bytes: 512 * 1024 * 1024,
            max_queued_cells: 16,
            max_result_bytes: 8 * 1024 * 1024,
            max_prepared_statements: 256,
            max_sessions_per_user: 64,
            http_allowed_hosts: Vec::new(),
            http_allowed_origins: Vec::new(),
            job_workers: 3,
            job_credential_lifetime: std::time::Duration::from_secs(30 * 24 * 3600),
            job_output_rows: 10_000,
            python_kernel_python: ".kernel-env/bin/python".into(),
            python_kernel_launcher: "process".into(),
            python_kernel_pod_template: String::new(),
            python_kernel_pod_namespace: String::new(),
            python_kernel_pod_owner: String::new(),
            python_kernel_lake_uri: String::new(),
            kubernetes_api: String::new(),
            kubernetes_token_file: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            kubernetes_ca_file: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt".into(),
            python_kernel_sandbox: "bubblewrap".into(),
            python_kernel_pool: 2,
            python_kernel_dir: String::new(),
            python_kernel_uid_base: 2_000_000,
            python_kernel_max_processes: 256,
            python_kernel_memory_per_vcore: 4 << 30,
            python_kernel_start_timeout: std::time::Duration::from_secs(60),
            python_kernel_credential_lifetime: std::time::Duration::from_secs(15 * 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_lists_take_an_array_or_a_comma_separated_string() {
        let o: GatewayOptions = serde_json::from_str(
            r#"{"http_allowed_hosts": ["a.example", "b.example:9"],
                "http_allowed_origins": "https://x.example, *"}"#,
        )
        .unwrap();
        assert_eq!(o.http_allowed_hosts, ["a.example", "b.example:9"]);
        assert_eq!(o.http_allowed_origins, ["https://x.example", "*"]);
        assert!(GatewayOptions::default().http_allowed_hosts.is_empty());
    }
}
