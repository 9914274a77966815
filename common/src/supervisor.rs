//! Every background task of a role runs under its [`Supervisor`]: tracked,
//! under the role's cancellation token, and its failure noticed at once.
//!
//! Two kinds of task:
//! - a **service** (a server, a sweep, an announcer) runs until shutdown.
//!   If it fails, panics or simply ends before shutdown was asked for, the
//!   role stops: the failure is recorded and the token cancelled, so every
//!   other service of the role winds down and [`Supervisor::wait`] returns
//!   the failure — whichever service it was, not after the ones before it
//!   end.
//! - **work** (cancelling a job, a kernel's cell, a commit that must finish
//!   even if its client left) ends by itself; [`Supervisor::spawn`] tracks
//!   it so shutdown can wait for it, and its panic is logged, not fatal.
//!
//! `clippy.toml` bans bare `tokio::spawn` outside this module, so a task
//! cannot escape the tree.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The tasks of one role (or of one process, for standalone's roles).
#[derive(Clone, Debug)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    token: CancellationToken,
    tracker: TaskTracker,
    failure: Mutex<Option<String>>,
}

impl Supervisor {
    /// Tasks under `token`: cancelling it (a signal, the caller) is the
    /// shutdown request; a failing service cancels it too.
    pub fn new(token: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                token,
                tracker: TaskTracker::new(),
                failure: Mutex::new(None),
            }),
        }
    }

    /// The role's token: cancelled at shutdown or when a service failed.
    pub fn token(&self) -> &CancellationToken {
        &self.inner.token
    }

    /// Runs `fut` as a service named `name` (see the module docs).
    pub fn service<F, E>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let task = self.inner.tracker.spawn(fut);
        self.inner.tracker.spawn(async move {
            let why = match task.await {
                Ok(Ok(())) if inner.token.is_cancelled() => None,
                Ok(Ok(())) => Some(format!("{name} stopped before shutdown was requested")),
                Ok(Err(e)) => Some(format!("{name} failed: {e}")),
                Err(j) if j.is_panic() => Some(format!("{name} panicked")),
                Err(_) => None,
            };
            if let Some(why) = why {
                tracing::error!(task = name, "{why}; stopping");
                inner.failure.lock().get_or_insert(why);
                inner.token.cancel();
            }
        });
    }

    /// Runs `fut` as tracked work named `name` (see the module docs).
    pub fn spawn<F>(&self, name: &'static str, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_on(name, fut, &tokio::runtime::Handle::current())
    }

    /// Runs `fut` as tracked work on another runtime (`handle`), e.g. a
    /// compute runtime kept apart from the one serving requests.
    pub fn spawn_on<F>(
        &self,
        name: &'static str,
        fut: F,
        handle: &tokio::runtime::Handle,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let span = tracing::debug_span!("task", name);
        self.inner
            .tracker
            .spawn_on(tracing::Instrument::instrument(fut, span), handle)
    }

    /// Waits until shutdown is requested or a service failed; then the
    /// failure, if there was one.
    pub async fn wait(&self) -> Result<(), String> {
        self.inner.token.cancelled().await;
        self.failure().map_or(Ok(()), Err)
    }

    /// The first service failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.lock().clone()
    }

    /// After shutdown: waits up to `timeout` for every task to end. False
    /// when some were still running (they are dropped with the runtime).
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.inner.tracker.close();
        tokio::time::timeout(timeout, self.inner.tracker.wait())
            .await
            .is_ok()
    }

    /// How many tasks are running (services count twice: the task and its
    /// watcher).
    pub fn running(&self) -> usize {
        self.inner.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_service_stops_the_role_at_once() {
        let s = Supervisor::new(CancellationToken::new());
        // A service that would outlive the test if nothing stopped it.
        let slow = s.token().clone();
        s.service("slow", async move {
            slow.cancelled().await;
            Ok::<(), String>(())
        });
        s.service("broken", async { Err::<(), _>("port in use") });
        let got = tokio::time::timeout(Duration::from_secs(10), s.wait())
            .await
            .expect("the failure is noticed without waiting for 'slow'");
        assert_eq!(got, Err("broken failed: port in use".to_string()));
        assert!(s.drain(Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn a_service_that_ends_early_or_panics_is_a_failure() {
        let s = Supervisor::new(CancellationToken::new());
        s.service("quiet", async { Ok::<(), String>(()) });
        let got = tokio::time::timeout(Duration::from_secs(10), s.wait()).await;
        assert!(got.unwrap().unwrap_err().contains("quiet stopped"));

        let s = Supervisor::new(CancellationToken::new());
        s.service("boom", async {
            if s_is_true() {
                panic!("bug");
            }
            Ok::<(), String>(())
        });
        let got = tokio::time::timeout(Duration::from_secs(10), s.wait()).await;
        assert_eq!(got.unwrap(), Err("boom panicked".to_string()));
    }

    fn s_is_true() -> bool {
        std::hint::black_box(true)
    }

    #[tokio::test]
    async fn shutdown_is_not_a_failure_and_drain_waits_for_work() {
        let token = CancellationToken::new();
        let s = Supervisor::new(token.clone());
        let t = token.clone();
        s.service("server", async move {
            t.cancelled().await;
            Ok::<(), String>(())
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        s.spawn("work", async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = tx.send(());
        });
        token.cancel();
        assert_eq!(s.wait().await, Ok(()));
        assert!(s.drain(Duration::from_secs(10)).await);
        assert!(rx.await.is_ok(), "drain returned before the work ended");
        assert_eq!(s.running(), 0);
    }
}
