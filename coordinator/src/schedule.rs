//! Firing schedules. Only the leading coordinator runs this loop; the
//! ledger moves a job's fire cursor and queues the run in one commit, so a
//! fire is handled once even when leadership moves in between.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

use crate::ledger::{Ledger, StoredJob};

/// A fire this late (or later) was missed while no coordinator led; the
/// job's `catch_up` policy decides whether it still runs.
const ON_TIME: Duration = Duration::from_secs(30);

/// How often the loop looks, at most.
const TICK: Duration = Duration::from_millis(250);

fn utc(ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_default()
}

fn schedule_of(job: &StoredJob) -> Option<tarn_jobs::Schedule> {
    let enabled = job
        .spec
        .get("enabled")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let s = job.spec.get("schedule").filter(|s| !s.is_null())?;
    if !enabled {
        return None;
    }
    tarn_jobs::Schedule::from_json(s).ok()
}

/// The next fire of a job after its cursor (ms since epoch; 0: none).
pub fn next_fire(job: &StoredJob) -> u64 {
    let Some(s) = schedule_of(job) else {
        return 0;
    };
    s.next_after(utc(job.last_fire_ms), utc(job.created_ms))
        .ok()
        .flatten()
        .map(|t| t.timestamp_millis().max(0) as u64)
        .unwrap_or(0)
}

/// Fires what is due, until shutdown.
pub async fn run(ledger: Arc<Ledger>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let now = tarn_common::clock::unix_ms();
        for job in ledger.jobs() {
            let Some(s) = schedule_of(&job) else {
                continue;
            };
            let due = match s.missed(utc(job.last_fire_ms), utc(now), utc(job.created_ms)) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "cannot compute the job's schedule");
                    continue;
                }
            };
            let Some(latest) = due.last() else {
                continue;
            };
            let latest_ms = latest.timestamp_millis().max(0) as u64;
            let missed =
                due.len() > 1 || now.saturating_sub(latest_ms) > ON_TIME.as_millis() as u64;
            let run = !missed || s.catch_up == tarn_jobs::CatchUp::Once;
            let queue = s.overlap == tarn_jobs::Overlap::Queue;
            if missed {
                tracing::info!(job = %job.id, fires = due.len(), run, "fires were missed while no coordinator led");
            }
            if let Err(e) = ledger.fire(&job.id, latest_ms, run, queue).await {
                tracing::warn!(job = %job.id, error = %e, "cannot fire the job's schedule; will retry");
            }
        }
    }
}
