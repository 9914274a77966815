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

/// The longest the loop sleeps: a job created or changed meanwhile is
/// seen within this.
const TICK: Duration = Duration::from_millis(500);

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
    let mut wait = TICK;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        fire_due(&ledger).await;
        // Wake at the next fire rather than on a coarse tick, so a fire is
        // late by milliseconds, not by a tick.
        let now = tarn_common::clock::unix_ms();
        let next = ledger
            .jobs()
            .iter()
            .map(next_fire)
            .filter(|n| *n > 0)
            .min()
            .unwrap_or(u64::MAX);
        wait = Duration::from_millis(next.saturating_sub(now)).min(TICK);
    }
}

/// Fires every job whose schedule is due.
async fn fire_due(ledger: &Ledger) {
    {
        let now = tarn_common::clock::unix_ms();
        for job in ledger.jobs() {
            let Some(s) = schedule_of(&job) else {
                continue;
            };
            let (count, latest) = match due_fires(&s, &job, now) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "cannot compute the job's schedule");
                    continue;
                }
            };
            let Some(latest) = latest else {
                continue;
            };
            let latest_ms = latest.timestamp_millis().max(0) as u64;
            let missed = count > 1 || now.saturating_sub(latest_ms) > ON_TIME.as_millis() as u64;
            let run = !missed || s.catch_up == tarn_jobs::CatchUp::Once;
            let queue = s.overlap == tarn_jobs::Overlap::Queue;
            if missed {
                tracing::info!(job = %job.id, fires = count, run, "fires were missed while no coordinator led");
            }
            if let Err(e) = ledger.fire(&job.id, latest_ms, run, queue).await {
                tracing::warn!(job = %job.id, error = %e, "cannot fire the job's schedule; will retry");
            }
        }
    }
}

/// How many fires are due since the job's cursor, and the latest of them
/// (all of them, however many: the schedule answers in batches).
fn due_fires(
    s: &tarn_jobs::Schedule,
    job: &StoredJob,
    now: u64,
) -> Result<(usize, Option<DateTime<Utc>>), tarn_jobs::Error> {
    let (mut count, mut latest) = (0, None);
    let mut from = utc(job.last_fire_ms);
    loop {
        let due = s.missed(from, utc(now), utc(job.created_ms))?;
        count += due.len();
        let Some(last) = due.last().copied() else {
            return Ok((count, latest));
        };
        latest = Some(last);
        if due.len() < tarn_jobs::schedule::MAX_MISSED {
            return Ok((count, latest));
        }
        from = last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(schedule: serde_json::Value, created_ms: u64, last_fire_ms: u64) -> StoredJob {
        StoredJob {
            id: "j".into(),
            owner: "ann".into(),
            spec: serde_json::json!({"name": "j", "workspace": "w", "sql": "SELECT 1", "schedule": schedule}),
            grants: serde_json::Value::Null,
            credential_expires_ms: 0,
            created_ms,
            updated_ms: created_ms,
            revision: 1,
            last_fire_ms,
        }
    }

    #[test]
    fn every_missed_fire_is_counted_and_the_latest_found_past_one_batch() {
        let created = 1_700_000_000_000;
        let minute = 60_000;
        let j = job(serde_json::json!({"every": "1m"}), created, created);
        let s = schedule_of(&j).expect("a schedule");
        // 2,500 minutes without a leader: more than one batch of fires.
        let now = created + 2_500 * minute + 30_000;
        let (count, latest) = due_fires(&s, &j, now).unwrap();
        assert_eq!(count, 2_500);
        assert_eq!(
            latest.map(|t| t.timestamp_millis() as u64),
            Some(created + 2_500 * minute)
        );
        // Nothing due right after the cursor.
        let j = job(
            serde_json::json!({"every": "1m"}),
            created,
            created + 2_500 * minute,
        );
        assert_eq!(due_fires(&s, &j, now).unwrap(), (0, None));
        assert_eq!(next_fire(&j), created + 2_501 * minute);
    }

    #[test]
    fn disabled_jobs_have_no_next_fire() {
        let mut j = job(
            serde_json::json!({"every": "1m"}),
            1_700_000_000_000,
            1_700_000_000_000,
        );
        assert!(next_fire(&j) > 0);
        j.spec["enabled"] = serde_json::json!(false);
        assert_eq!(next_fire(&j), 0);
    }
}
