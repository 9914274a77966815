//! Test harness: starts the real `tarn` binary on free loopback ports and
//! hands out real clients.
//!
//! The binary is found through `TARN_BIN`, else `<target>/debug/tarn`; build
//! it first (`cargo build -p tarn-cli`). The demo lake is generated once per
//! target directory with `tarn demo` and shared read-only by every test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::FlightInfo;
use futures::TryStreamExt;
use tonic::transport::Channel;

mod process;
use process::terminate;
pub use process::{Etcd, Role};

/// The target directory this test was built into: found from the running
/// test executable (`<target>/<profile>/deps/<test>`), so a test never
/// picks up another checkout's build, whatever path it was compiled at.
pub fn target_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    profile_dir()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        })
}

/// `<target>/<profile>` of the running test executable.
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    (deps.file_name()? == "deps").then(|| deps.parent().map(Path::to_path_buf))?
}

/// The `tarn` binary under test: `TARN_BIN`, or the one built beside this
/// test. Refused when any source of the workspace is newer than it (a
/// stale binary would test old code): build it with the tests, as
/// `dev/test.sh` does (`cargo build --workspace --bins --tests`).
pub fn tarn_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("TARN_BIN") {
        return Ok(PathBuf::from(p));
    }
    let dir = profile_dir().unwrap_or_else(|| target_dir().join("debug"));
    let p = dir.join("tarn");
    let built = match std::fs::metadata(&p).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(_) => bail!(
            "{} is missing: run `cargo build --workspace --bins --tests` first (or set TARN_BIN)",
            p.display()
        ),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Some(newer) = newer_source(&root, built) {
        bail!(
            "{} is older than {}: run `cargo build --workspace --bins --tests` (or set TARN_BIN)",
            p.display(),
            newer.display()
        );
    }
    Ok(p)
}

/// A Rust source or manifest of the binary's crates modified after `than`.
fn newer_source(root: &Path, than: std::time::SystemTime) -> Option<PathBuf> {
    fn walk(dir: &Path, than: std::time::SystemTime) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                if let Some(found) = walk(&p, than) {
                    return Some(found);
                }
            } else if p
                .extension()
                .is_some_and(|x| x == "rs" || x == "toml" || x == "proto")
            {
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                if modified > than {
                    return Some(p);
                }
            }
        }
        None
    }
    [
        "cli",
        "common",
        "config",
        "coordinator",
        "datalake",
        "demo",
        "executor",
        "gateway",
        "proto",
        "state",
    ]
    .iter()
    .find_map(|c| walk(&root.join(c), than))
}

/// The Tarn error code (`"2100"`) a status carries as metadata.
pub fn error_code(s: &tonic::Status) -> Option<String> {
    s.metadata()
        .get("x-tarn-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("invariant: loopback has free ports")
}

/// The cluster credentials every role a test starts directly shares (as a
/// deployment's coordinators and executors share theirs), made on first
/// use with `tarn certs`, which keeps what exists.
pub fn cluster_dir() -> anyhow::Result<PathBuf> {
    let dir = target_dir().join("tarn-test-cluster");
    if dir.join("reservation.key").is_file() && dir.join("gateway.pem").is_file() {
        return Ok(dir);
    }
    let status = Command::new(tarn_bin()?)
        .args(["certs", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running tarn certs")?;
    if !status.success() {
        bail!("tarn certs failed: {status}");
    }
    Ok(dir)
}

/// The shared demo lake, generated on first use. Generation goes to a
/// temporary sibling and is renamed into place, so concurrent test processes
/// never see half a lake.
pub fn demo_lake() -> anyhow::Result<PathBuf> {
    let lake = target_dir().join("tarn-test-lake");
    if lake
        .join("demo")
        .join("SigninLogs")
        .join("_delta_log")
        .is_dir()
    {
        return Ok(lake);
    }
    let tmp = target_dir().join(format!("tarn-test-lake.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let status = Command::new(tarn_bin()?)
        .args(["demo", "--lake"])
        .arg(&tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running tarn demo")?;
    if !status.success() {
        bail!("tarn demo failed: {status}");
    }
    if std::fs::rename(&tmp, &lake).is_err() {
        // Another process won the race; its lake is as good as ours.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(lake)
}

/// Why a start attempt failed.
enum StartError {
    /// The process died before ready (e.g. a port taken meanwhile): retry.
    Early(anyhow::Error),
    /// Anything else: report at once.
    Fatal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for StartError {
    fn from(e: E) -> Self {
        StartError::Fatal(e.into())
    }
}

/// A running `tarn standalone`.
pub struct Cluster {
    child: Child,
    /// Flight SQL `host:port`.
    pub flight: String,
    /// HTTP `host:port`.
    pub http: String,
    /// Coordinator `host:port`.
    pub coordinator: String,
    /// Coordinator metrics `host:port`.
    pub metrics: String,
    /// Lake root directory.
    pub lake: PathBuf,
    /// The standalone's state directory (token key, cluster credentials).
    pub state: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a cluster over the shared demo lake.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&demo_lake()?, &[], &[]).await
    }

    /// Starts a cluster over `lake` with extra `standalone` flags and
    /// environment (e.g. `TARN_GATEWAY__SESSION_IDLE_TIMEOUT`).
    ///
    /// Ports are picked free but only bound by the roles later, so another
    /// test process can take one in between; a start that dies early is
    /// retried on fresh ports, and the last failure is reported.
    pub async fn start_with(
        lake: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(lake, extra, env).await {
                Ok(c) => return Ok(c),
                Err(StartError::Early(e)) => last = Some(e),
                Err(StartError::Fatal(e)) => return Err(e),
            }
        }
        Err(last.expect("invariant: three attempts were made"))
    }

    async fn start_once(
        lake: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, StartError> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("tarn.log");
        let flight = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let coordinator = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let state = dir.path().join("state");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(tarn_bin()?)
            .args(["standalone", "--no-demo", "--lake"])
            .arg(lake)
            .args([
                "--flight-addr",
                &flight,
                "--http-addr",
                &http,
                "--coordinator-addr",
                &coordinator,
                "--metrics-addr",
                &metrics,
                "--state-dir",
            ])
            .arg(&state)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("TARN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // The test's own idle client connections cannot close while Drop
            // blocks its runtime; don't wait the production 5 s for them.
            .env("TARN_GATEWAY__DRAIN_TIMEOUT", "200ms")
            .env("TARN_COORDINATOR__DRAIN_TIMEOUT", "200ms")
            // Python kernels have their own tests; the cluster tests do not
            // pay for a pool of interpreters each.
            .env("TARN_GATEWAY__PYTHON_KERNEL_PYTHON", "")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawning tarn standalone")?;
        let mut cluster = Cluster {
            child,
            flight,
            http,
            coordinator,
            metrics,
            lake: lake.to_path_buf(),
            state,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            // The supervisor prints this once every role, both executors
            // included, is up; the gateway's /readyz needs only one.
            if String::from_utf8_lossy(&std::fs::read(&cluster.log).unwrap_or_default())
                .contains("Tarn is ready")
            {
                return Ok(cluster);
            }
            if let Ok(Some(status)) = cluster.child.try_wait() {
                return Err(StartError::Early(anyhow::anyhow!(
                    "tarn standalone exited ({status}) before ready:\n{}",
                    cluster.log_tail()
                )));
            }
            if Instant::now() > deadline {
                return Err(StartError::Fatal(anyhow::anyhow!(
                    "tarn standalone not ready after 90s:\n{}",
                    cluster.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The cluster's whole log.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).to_string()
    }

    /// The last lines of the cluster's log (errors first), for failure
    /// messages.
    pub fn log_tail(&self) -> String {
        // Lossy: a log may carry non-UTF-8 bytes, and an empty tail hides
        // exactly the failure it is printed for.
        let s = String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).to_string();
        // Errors first (a backtrace can push them out of the tail), then
        // the tail.
        let errors: Vec<&str> = s
            .lines()
            .filter(|l| l.contains("Error") || l.contains("ERROR"))
            .take(20)
            .collect();
        let lines: Vec<&str> = s.lines().collect();
        let tail = &lines[lines.len().saturating_sub(60)..];
        errors
            .into_iter()
            .chain(["----"])
            .chain(tail.iter().copied())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A plain HTTP GET on the gateway's HTTP port: (status, body).
    pub async fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(&self.http, path).await
    }

    /// A Flight SQL client on the gateway.
    pub async fn flight_sql(&self) -> anyhow::Result<FlightSqlServiceClient<Channel>> {
        let channel = Channel::from_shared(format!("http://{}", self.flight))?
            .connect()
            .await?;
        Ok(FlightSqlServiceClient::new(channel))
    }

    /// A client of the coordinator's tarn.v1 API, as the gateway role.
    pub async fn coordinator(
        &self,
    ) -> anyhow::Result<tarn_proto::coordinator_client::CoordinatorClient<Channel>> {
        let channel = internal_endpoint(
            &self.coordinator,
            &self.cluster_dir(),
            Some(tarn_common::cluster::Role::Gateway),
        )?
        .connect()
        .await?;
        Ok(tarn_proto::coordinator_client::CoordinatorClient::new(
            channel,
        ))
    }

    /// The cluster's interactive executor, as the coordinator lists it.
    pub async fn interactive_executor(&self) -> anyhow::Result<tarn_proto::ExecutorInfo> {
        let info = self
            .coordinator()
            .await?
            .get_cluster_info(tarn_proto::GetClusterInfoRequest {
                header: Some(tarn_proto::header()),
            })
            .await?
            .into_inner();
        info.executors
            .into_iter()
            .find(|e| e.pool == tarn_proto::Pool::Interactive as i32)
            .ok_or_else(|| anyhow::anyhow!("no interactive executor"))
    }

    /// Every executor the coordinator lists.
    pub async fn executors(&self) -> anyhow::Result<Vec<tarn_proto::ExecutorInfo>> {
        Ok(self
            .coordinator()
            .await?
            .get_cluster_info(tarn_proto::GetClusterInfoRequest {
                header: Some(tarn_proto::header()),
            })
            .await?
            .into_inner()
            .executors)
    }

    /// A sample of an executor's own `/metrics` (e.g.
    /// `tarn_executor_tasks_running`), 0 when it has none yet.
    pub async fn executor_metric(
        &self,
        e: &tarn_proto::ExecutorInfo,
        sample: &str,
    ) -> anyhow::Result<f64> {
        let (status, text) =
            http_get(&format!("{}:{}", e.host, e.metrics_port), "/metrics").await?;
        anyhow::ensure!(status == 200, "executor /metrics answered {status}");
        Ok(tarn_common::metrics::sample(&text, sample).unwrap_or(0.0))
    }

    /// `sample` summed over every executor's `/metrics`.
    pub async fn executors_metric(&self, sample: &str) -> anyhow::Result<f64> {
        let mut sum = 0.0;
        for e in self.executors().await? {
            sum += self.executor_metric(&e, sample).await?;
        }
        Ok(sum)
    }

    /// One sample of the gateway's `/metrics` (0 when absent).
    pub async fn gateway_metric(&self, sample: &str) -> anyhow::Result<f64> {
        let (status, text) = self.http_get("/metrics").await?;
        anyhow::ensure!(status == 200, "gateway /metrics answered {status}");
        Ok(tarn_common::metrics::sample(&text, sample).unwrap_or(0.0))
    }

    /// One sample of the coordinator's `/metrics` (0 when absent).
    pub async fn coordinator_metric(&self, sample: &str) -> anyhow::Result<f64> {
        let (status, text) = http_get(&self.metrics, "/metrics").await?;
        anyhow::ensure!(status == 200, "coordinator /metrics answered {status}");
        Ok(tarn_common::metrics::sample(&text, sample).unwrap_or(0.0))
    }

    /// The standalone's cluster credentials folder.
    pub fn cluster_dir(&self) -> PathBuf {
        self.state.join("cluster")
    }

    /// The coordinator's most recent Ballista jobs.
    pub async fn jobs(&self) -> anyhow::Result<Vec<tarn_proto::JobSummary>> {
        let mut c = self.coordinator().await?;
        Ok(c.list_jobs(tarn_proto::ListJobsRequest {
            header: Some(tarn_proto::header()),
            limit: 20,
        })
        .await?
        .into_inner()
        .jobs)
    }

    /// Pid of the standalone supervisor.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Keep the cluster's log for post-mortems when asked to.
        if let Ok(dir) = std::env::var("TARN_TEST_KEEP_LOGS") {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(
                &self.log,
                Path::new(&dir).join(format!("cluster-{}.log", self.child.id())),
            );
        }
        if !terminate(&mut self.child, Duration::from_secs(15)) {
            eprintln!(
                "tarn standalone ignored SIGTERM for 15s and was killed. Log tail:\n{}",
                self.log_tail()
            );
        }
    }
}

/// Runs a statement and collects every batch.
pub async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(to_status)?;
    fetch(client, info).await
}

/// Fetches every endpoint of a FlightInfo.
pub async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let mut out = Vec::new();
    for ep in info.endpoint {
        let ticket = ep
            .ticket
            .ok_or_else(|| tonic::Status::internal("endpoint without ticket"))?;
        let stream = client.do_get(ticket).await.map_err(to_status)?;
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(to_status)?;
        out.extend(batches);
    }
    Ok(out)
}

/// Flight client errors carry the server's status; get it back.
pub fn to_status(e: arrow_flight::error::FlightError) -> tonic::Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => tonic::Status::unknown(other.to_string()),
    }
}

/// Total rows of some batches.
pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// The single i64 value of a one-cell result.
pub fn scalar_i64(batches: &[RecordBatch]) -> i64 {
    let b = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .expect("a non-empty result");
    let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64)
        .expect("castable to i64");
    col.as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("invariant: cast to Int64")
        .value(0)
}

/// Rows of a Delta table according to its own log (the sum of `numRecords`
/// of the live `add` actions), read without any Tarn code.
pub fn delta_row_count(table_dir: &Path) -> anyhow::Result<i64> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(table_dir.join("_delta_log"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().map(|x| x == "json").unwrap_or(false))
        .collect();
    files.sort();
    let mut live: std::collections::HashMap<String, i64> = Default::default();
    for f in files {
        for line in std::fs::read_to_string(&f)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if let Some(add) = v.get("add") {
                let stats: serde_json::Value =
                    serde_json::from_str(add["stats"].as_str().context("add without stats")?)?;
                live.insert(
                    add["path"]
                        .as_str()
                        .context("add without path")?
                        .to_string(),
                    stats["numRecords"]
                        .as_i64()
                        .context("stats without numRecords")?,
                );
            }
            if let Some(rm) = v.get("remove") {
                live.remove(rm["path"].as_str().unwrap_or_default());
            }
        }
    }
    Ok(live.values().sum())
}

/// A client of a coordinator's tarn.v1 API at `addr`.
pub async fn coordinator_client(
    addr: &str,
) -> anyhow::Result<tarn_proto::coordinator_client::CoordinatorClient<Channel>> {
    coordinator_client_as(addr, tarn_common::cluster::Role::Gateway).await
}

/// A client of a directly started coordinator at `addr` as `role`, with
/// the tests' shared cluster credentials.
pub async fn coordinator_client_as(
    addr: &str,
    role: tarn_common::cluster::Role,
) -> anyhow::Result<tarn_proto::coordinator_client::CoordinatorClient<Channel>> {
    let channel = internal_endpoint(addr, &cluster_dir()?, Some(role))?
        .connect()
        .await?;
    Ok(tarn_proto::coordinator_client::CoordinatorClient::new(
        channel,
    ))
}

/// An endpoint of an internal port (`host:port`) over the cluster's TLS:
/// as `role` with that role's certificate from `cluster_dir`, or with no
/// client certificate at all (`None`, trusting the cluster CA only).
pub fn internal_endpoint(
    addr: &str,
    cluster_dir: &Path,
    role: Option<tarn_common::cluster::Role>,
) -> anyhow::Result<tonic::transport::Endpoint> {
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?;
    match role {
        Some(role) => Ok(tarn_common::cluster::ClusterTls::load(cluster_dir, role)?.secure(plain)?),
        None => {
            let ca = std::fs::read(cluster_dir.join("ca.pem"))?;
            Ok(
                tonic::transport::Endpoint::from_shared(format!("https://{addr}"))?.tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                        .domain_name(tarn_common::cluster::CLUSTER_NAME),
                )?,
            )
        }
    }
}

/// Polls `f` every 100 ms until it returns `Some`, or fails after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Copies a folder with everything in it (a private copy of demo tables
/// for tests that write).
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

/// An HTTP request with a JSON body: (status, parsed body or null).
pub async fn http_json(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let (status, raw) = http_request(addr, method, path, body.unwrap_or("")).await?;
    Ok((
        status,
        serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null),
    ))
}

/// A plain HTTP GET: (status, body).
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    http_request(addr, "GET", path, "").await
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    Ok(tarn_common::http::request(addr, method, path, body).await?)
}
