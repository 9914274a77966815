//! The worker loops: each long-polls the coordinator for a started run
//! that no worker holds, runs it, and asks again.

use std::sync::Arc;
use std::time::Duration;

use tarn_proto::ClaimJobRunRequest;

use super::Jobs;

/// How long one claim waits at the coordinator for a run.
const CLAIM_WAIT: Duration = Duration::from_secs(5);

impl Jobs {
    /// Starts the configured number of worker loops (none when 0).
    pub fn start_workers(self: &Arc<Self>) {
        for _ in 0..self.opts.workers {
            let jobs = Arc::clone(self);
            self.tasks
                .spawn("job worker", async move { jobs.work().await });
        }
    }

    async fn work(&self) {
        let shutdown = self.tasks.token().clone();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let claim = ClaimJobRunRequest {
                header: Some(tarn_proto::header()),
                worker: self.worker_id.clone(),
                wait_ms: CLAIM_WAIT.as_millis() as u32,
            };
            let mut api = self.leases().api();
            let got = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = api.claim_job_run(claim) => r,
            };
            match got.map(|r| r.into_inner()) {
                Ok(tarn_proto::ClaimJobRunResponse {
                    run: Some(run),
                    job: Some(job),
                }) => {
                    let span = tracing::info_span!("job run", run = %run.run_id, job = %job.job_id);
                    tracing::Instrument::instrument(self.execute(run, job, shutdown.clone()), span)
                        .await;
                }
                Ok(_) => {}
                Err(e) => {
                    // No leader for a moment (failover): ask again shortly.
                    tracing::debug!(error = %e.message(), "cannot claim job runs; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}
