//! Job definitions and their runs in the ledger, against a real embedded
//! store: quotas and names, a fire handled once across a reload, the
//! overlap policy, retries that keep the run's sequence number, timeouts
//! and the kept history.

use serde_json::json;

use super::tests::{ledger, limits, registry};
use super::*;

fn spec(name: &str, ws: &str) -> serde_json::Value {
    json!({"name": name, "workspace": ws, "sql": "SELECT 1"})
}

fn put(owner: &str, spec: serde_json::Value) -> JobPut {
    JobPut {
        id: String::new(),
        owner: owner.into(),
        spec,
        grants: json!({}),
        credential_expires_ms: unix_ms() + 60_000,
    }
}

#[tokio::test]
async fn names_are_unique_per_workspace_and_quotas_hold() {
    let dir = tempfile::tempdir().unwrap();
    // max_jobs: 3 per workspace, 2 per user; scheduled: 2 and 1.
    let l = ledger(dir.path(), limits(), registry(760, 240)).await;
    let a = l.put_job(put("ann", spec("a", "w"))).await.unwrap();
    let e = l.put_job(put("bob", spec("a", "w"))).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::JobAlreadyExists, "{e}");
    // The same name elsewhere is another job.
    l.put_job(put("bob", spec("a", "v"))).await.unwrap();
    l.put_job(put("ann", spec("b", "w"))).await.unwrap();
    let e = l.put_job(put("ann", spec("c", "w"))).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::JobQuotaExceeded);
    assert!(e.message.contains("max_jobs_per_user"), "{e}");
    l.put_job(put("cy", spec("c", "w"))).await.unwrap();
    let e = l.put_job(put("dee", spec("d", "w"))).await.unwrap_err();
    assert!(e.message.contains("max_jobs_per_workspace"), "{e}");
    // Replacing a job does not count it twice.
    let mut again = put(
        "ann",
        json!({"name": "a", "workspace": "w", "sql": "SELECT 2"}),
    );
    again.id = a.id.clone();
    let a2 = l.put_job(again).await.unwrap();
    assert_eq!(a2.revision, 2);
    assert_eq!(a2.created_ms, a.created_ms);
    let mut sched = spec("s", "v");
    sched["schedule"] = json!({"every": "1h"});
    l.put_job(put("eve", sched.clone())).await.unwrap();
    sched["name"] = json!("t");
    let e = l.put_job(put("eve", sched)).await.unwrap_err();
    assert!(e.message.contains("max_scheduled_jobs_per_user"), "{e}");
}

#[tokio::test]
async fn a_fire_is_handled_once_even_across_a_reload_and_overlap_skips() {
    let dir = tempfile::tempdir().unwrap();
    let job = {
        let l = ledger(dir.path(), limits(), registry(760, 240)).await;
        let job = l.put_job(put("ann", spec("nightly", "w"))).await.unwrap();
        let fire = job.last_fire_ms + 1_000;
        let run = l.fire(&job.id, fire, true, false).await.unwrap().unwrap();
        assert_eq!(run.state, RunState::Running);
        assert_eq!(run.job.as_ref().unwrap().trigger, "schedule");
        assert_eq!(run.job.as_ref().unwrap().fire_ms, fire);
        // The same fire again (a second loop, a retried call): nothing.
        assert!(l.fire(&job.id, fire, true, false).await.unwrap().is_none());
        // The next fire while the run is active: recorded as skipped.
        let skipped = l
            .fire(&job.id, fire + 1_000, true, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(skipped.state, RunState::Skipped);
        assert!(skipped.message.contains("overlap"), "{}", skipped.message);
        (job, fire + 1_000)
    };
    // A new leader loads the cursor: the handled fires stay handled.
    let l = ledger(dir.path(), limits(), registry(760, 240)).await;
    let (job, last) = job;
    assert_eq!(l.job(&job.id).unwrap().last_fire_ms, last);
    assert!(l.fire(&job.id, last, true, false).await.unwrap().is_none());
    let runs = l.job_runs(&job.id);
    let states: Vec<RunState> = runs.iter().map(|(r, _)| r.state).collect();
    assert_eq!(states, [RunState::Running, RunState::Skipped]);
    // With overlap = queue, the next fire queues behind the running run.
    let queued = l
        .fire(&job.id, last + 1_000, true, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queued.state, RunState::Running, "3 may run at once");
}

#[tokio::test]
async fn a_claimed_run_is_retried_as_itself_and_ends_in_history() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path(), limits(), registry(760, 240)).await;
    let mut s = spec("flaky", "w");
    s["retry"] = json!({"attempts": 2, "backoff": "0s"});
    let job = l.put_job(put("ann", s)).await.unwrap();
    let run = l.run_job(&job.id, "api", json!({"k": 1})).await.unwrap();
    let (claimed, with_job) = l
        .claim("gw-1", std::time::Duration::from_millis(10))
        .await
        .unwrap()
        .expect("a started run to claim");
    assert_eq!(claimed.id, run.id);
    assert_eq!(with_job.id, job.id);
    // Nobody else gets it.
    assert!(l
        .claim("gw-2", std::time::Duration::from_millis(10))
        .await
        .unwrap()
        .is_none());
    // Another worker cannot end it.
    let e = l
        .finish_job_run(
            &run.id,
            Finish {
                worker: "gw-2".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::JobRunNotFound);
    // A retryable failure: the same run (same sequence number) goes again.
    let again = l
        .finish_job_run(
            &run.id,
            Finish {
                state: Some(RunState::Failed),
                message: "an executor was lost".into(),
                error_code: ErrorCode::ExecutionFailed.number(),
                retryable: true,
                worker: "gw-1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.id, run.id);
    assert_eq!(again.seq, run.seq);
    let j = again.job.as_ref().unwrap();
    assert_eq!((j.attempt, j.trigger.as_str()), (2, "retry"));
    assert_eq!(j.parameters, json!({"k": 1}));
    let (second, _) = l
        .claim("gw-2", std::time::Duration::from_secs(2))
        .await
        .unwrap()
        .expect("the retry to start");
    assert_eq!((second.id.as_str(), second.seq), (run.id.as_str(), run.seq));
    // The last try's failure ends it, with its code, in the job's history.
    let ended = l
        .finish_job_run(
            &run.id,
            Finish {
                state: Some(RunState::Failed),
                message: "lost again".into(),
                error_code: ErrorCode::ExecutionFailed.number(),
                retryable: true,
                worker: "gw-2".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ended.state, RunState::Failed);
    assert_eq!(ended.job.as_ref().unwrap().error_code, 2806);
    let (found, _) = l.run(&run.id).unwrap();
    assert_eq!(found.state, RunState::Failed);
    // Tried again by hand: still the same run and sequence number.
    let manual = l.retry_run(&job.id, &run.id).await.unwrap();
    assert_eq!((manual.id.as_str(), manual.seq), (run.id.as_str(), run.seq));
    assert_eq!(manual.job.as_ref().unwrap().attempt, 3);
    assert_eq!(l.job_runs(&job.id).len(), 1, "the run is listed once");
}

#[tokio::test]
async fn runs_past_their_timeout_end_timed_out_and_history_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // job_history: 3.
    let l = ledger(dir.path(), limits(), registry(760, 240)).await;
    let mut s = spec("slow", "w");
    s["timeout"] = json!("1ms");
    let job = l.put_job(put("ann", s)).await.unwrap();
    let run = l.run_job(&job.id, "api", json!({})).await.unwrap();
    wall_clock_passes(5).await;
    l.expire().await.unwrap();
    let (r, _) = l.run(&run.id).unwrap();
    assert_eq!(r.state, RunState::TimedOut);
    assert_eq!(
        r.job.as_ref().unwrap().error_code,
        ErrorCode::JobTimedOut.number()
    );
    for _ in 0..4 {
        let r = l.run_job(&job.id, "api", json!({})).await.unwrap();
        l.cancel_run(&r.id).await.unwrap();
    }
    let kept = l.job_runs(&job.id);
    assert_eq!(kept.len(), 3, "the retention");
    assert!(kept.iter().all(|(r, _)| r.state == RunState::Cancelled));
    // Deleting the job forgets its history, also after a reload.
    assert!(l.delete_job(&job.id).await.unwrap());
    drop(l);
    let l = ledger(dir.path(), limits(), registry(760, 240)).await;
    assert!(l.job(&job.id).is_err());
    assert!(l.job_runs(&job.id).is_empty());
}

/// Lets the wall clock pass `ms` (run timeouts are wall-clock times).
async fn wall_clock_passes(ms: u64) {
    let until = unix_ms() + ms;
    while unix_ms() <= until {
        tokio::task::yield_now().await;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[tokio::test]
async fn a_run_handed_back_by_a_stopping_worker_runs_again_as_the_same_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path(), limits(), registry(760, 240)).await;
    let job = l.put_job(put("ann", spec("nightly", "w"))).await.unwrap();
    let run = l.run_job(&job.id, "api", json!({})).await.unwrap();
    let wait = std::time::Duration::from_millis(10);
    l.claim("gw-1", wait)
        .await
        .unwrap()
        .expect("a run to claim");
    let back = l
        .finish_job_run(
            &run.id,
            Finish {
                state: Some(RunState::Failed),
                message: "the gateway shut down".into(),
                error_code: ErrorCode::Cancelled.number(),
                worker: "gw-1".into(),
                handed_back: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Not ended, not a new attempt: the same run waits for another worker.
    assert_eq!(
        back.state,
        RunState::Running,
        "it fits, so it starts again at once"
    );
    let j = back.job.as_ref().unwrap();
    assert_eq!(
        (j.attempt, j.trigger.as_str(), j.worker.as_str()),
        (1, "api", "")
    );
    let (again, _) = l
        .claim("gw-2", wait)
        .await
        .unwrap()
        .expect("another worker to take it");
    assert_eq!((again.id.as_str(), again.seq), (run.id.as_str(), run.seq));
    assert!(l
        .job_runs(&job.id)
        .iter()
        .all(|(r, _)| r.state != RunState::Failed));
}
