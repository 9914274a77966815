//! Processes the tests start themselves, outside `tarn standalone`: a role
//! run directly (`tarn coordinator`, `tarn executor`, …) and a real etcd.
//! Each is stopped and reaped when dropped, so a failing test leaves no
//! process behind.

use super::*;

/// SIGTERM, then SIGKILL after `grace`; reaps the child either way.
/// Returns false when it had to be killed.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> bool {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// A role process started directly (not through `standalone`), killed on
/// drop.
pub struct Role(Child);

impl Role {
    /// Starts `tarn <args>` with its output discarded.
    pub fn spawn(args: &[&str]) -> anyhow::Result<Self> {
        Self::spawn_with(args, &[], None)
    }

    /// Starts `tarn <args>` with extra environment, its output appended to
    /// `log` when given.
    pub fn spawn_with(
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let (out, err) = match log {
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?;
                (Stdio::from(f.try_clone()?), Stdio::from(f))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let cluster = cluster_dir()?;
        let child = Command::new(tarn_bin()?)
            .args(args)
            .env("TARN_COORDINATOR__CLUSTER_DIR", &cluster)
            .env("TARN_EXECUTOR__CLUSTER_DIR", &cluster)
            .env("TARN_GATEWAY__CLUSTER_DIR", &cluster)
            .env("TARN_GATEWAY__DRAIN_TIMEOUT", "200ms")
            .env("TARN_COORDINATOR__DRAIN_TIMEOUT", "200ms")
            .env("TARN_GATEWAY__PYTHON_KERNEL_PYTHON", "")
            .env(
                "RUST_LOG",
                std::env::var("TARN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?;
        Ok(Self(child))
    }

    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Sends SIGTERM (what Kubernetes sends a pod it stops) and waits up to
    /// `grace` for the process to exit by itself: whether it did, cleanly.
    pub fn stop_within(&mut self, grace: Duration) -> bool {
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        terminate(&mut self.0, Duration::from_secs(5));
    }
}

/// A real etcd (Debian `etcd-server`) on free loopback ports with a
/// temporary data directory; stopped and reaped on drop.
pub struct Etcd {
    child: Child,
    /// Client URL, `http://127.0.0.1:<port>`.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context("etcd is not installed: run dev/setup.sh (installs Debian's etcd-server)")?;
        let dir = tempfile::tempdir()?;
        let client = free_port();
        let peer = free_port();
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new(bin)
            .args(["--name", "s1", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--logger=zap",
                "--log-level=warn",
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("s1={peer_url}"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting etcd")?;
        let mut etcd = Self {
            child,
            endpoint,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, body)) = http_get(&format!("127.0.0.1:{client}"), "/health").await {
                if body.contains("true") {
                    return Ok(etcd);
                }
            }
            if let Ok(Some(status)) = etcd.child.try_wait() {
                bail!("etcd exited ({status}) before it was ready");
            }
            if Instant::now() > deadline {
                bail!("etcd not ready after 20s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}
