//! Kernels started ahead of time: a notebook's kernel comes from here in
//! milliseconds, and the pool starts another behind it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Error, HostedKernel, Launcher};

/// A pool of started, warmed kernels.
pub struct Pool {
    launcher: Arc<Launcher>,
    ready: parking_lot::Mutex<VecDeque<HostedKernel>>,
    size: usize,
    warmup: String,
    wait: Duration,
    wake: Notify,
}

impl Pool {
    /// Keeps `size` kernels started (0: each is started when asked for),
    /// each having run `warmup` (imports that make first cells fast).
    pub fn new(
        launcher: Arc<Launcher>,
        size: usize,
        warmup: String,
        wait: Duration,
        stop: CancellationToken,
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            launcher,
            ready: parking_lot::Mutex::new(VecDeque::new()),
            size,
            warmup,
            wait,
            wake: Notify::new(),
        });
        if size > 0 {
            let weak = Arc::downgrade(&pool);
            let tasks = pool.launcher.tasks().clone();
            tasks.spawn("python kernel pool", async move {
                let mut failures = 0u32;
                loop {
                    let Some(p) = weak.upgrade() else { return };
                    if p.ready.lock().len() >= p.size {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = p.wake.notified() => continue,
                        }
                    }
                    let started = tokio::select! {
                        _ = stop.cancelled() => break,
                        k = p.start() => k,
                    };
                    match started {
                        Ok(k) => {
                            failures = 0;
                            p.ready.lock().push_back(k);
                        }
                        Err(e) => {
                            failures += 1;
                            tracing::warn!(error = %e, "cannot start a pooled Python kernel");
                            drop(p);
                            // Back off so a broken environment is not
                            // restarted in a tight loop.
                            let pause = Duration::from_millis(500) * failures.min(60);
                            tokio::select! {
                                _ = stop.cancelled() => break,
                                _ = tokio::time::sleep(pause) => {}
                            }
                        }
                    }
                }
                if let Some(p) = weak.upgrade() {
                    p.ready.lock().clear();
                }
            });
        }
        pool
    }

    async fn start(&self) -> Result<HostedKernel, Error> {
        let k = HostedKernel::start(&self.launcher, self.wait).await?;
        if !self.warmup.is_empty() {
            k.run_setup(&self.warmup, self.wait).await?;
        }
        Ok(k)
    }

    /// A started kernel: a pooled one if any is ready, else a new one.
    pub async fn take(&self) -> Result<HostedKernel, Error> {
        loop {
            let next = self.ready.lock().pop_front();
            self.wake.notify_one();
            match next {
                Some(k) if k.exited_now().is_none() => return Ok(k),
                Some(_) => continue,
                None => return self.start().await,
            }
        }
    }

    /// Kernels ready now.
    pub fn ready(&self) -> usize {
        self.ready.lock().len()
    }
}
