//! The ledger's rules, run against a real embedded store: capacity, users
//! and sizes, the admission queue, reopening, and TTLs crossed on a clock
//! the test moves.

use std::time::Duration;

use super::*;
use tarn_proto::ExecutorInfo;
use tarn_state::EmbeddedStore;

pub(super) fn limits() -> Limits {
    Limits {
        interactive_vcores: 760,
        job_vcores: 240,
        account_vcores: 1000,
        max_interactive_users: 10,
        max_running_jobs: 3,
        max_queued_jobs: 5,
        lease_ttl: Duration::from_secs(30),
        sizes: [("small".to_string(), 8), ("large".to_string(), 32)]
            .into_iter()
            .collect(),
        default_size: "small".into(),
        max_jobs: (3, 2),
        max_scheduled_jobs: (2, 1),
        job_history: 3,
        max_job_timeout: Duration::from_secs(3600),
        min_schedule_interval: Duration::from_secs(60),
    }
}

pub(super) fn registry(interactive: u32, job: u32) -> Arc<ExecutorRegistry> {
    let r = Arc::new(ExecutorRegistry::new(Duration::from_secs(60), 760, 240));
    for (id, pool, vcores) in [("i", Pool::Interactive, interactive), ("j", Pool::Job, job)] {
        if vcores > 0 {
            r.upsert(ExecutorInfo {
                executor_id: id.into(),
                pool: pool as i32,
                vcores,
                ..Default::default()
            });
        }
    }
    r
}

pub(super) async fn ledger(dir: &std::path::Path, l: Limits, reg: Arc<ExecutorRegistry>) -> Ledger {
    let store = Arc::new(EmbeddedStore::open(dir.join("s.redb")).unwrap());
    Ledger::load(l, store, reg, None).await.unwrap()
}

/// A ledger whose TTLs are measured on a clock the test moves.
async fn ledger_on(
    dir: &std::path::Path,
    l: Limits,
    reg: Arc<ExecutorRegistry>,
) -> (Ledger, Arc<tarn_common::clock::ManualClock>) {
    let store = Arc::new(EmbeddedStore::open(dir.join("s.redb")).unwrap());
    let clock = Arc::new(tarn_common::clock::ManualClock::default());
    let ledger = Ledger::load_with_clock(
        l,
        store,
        reg,
        None,
        Arc::<tarn_common::clock::ManualClock>::clone(&clock),
    )
    .await
    .unwrap();
    (ledger, clock)
}

fn req(user: &str, vcores: u32) -> LeaseRequest {
    LeaseRequest {
        user: user.into(),
        vcores,
        ..Default::default()
    }
}

#[tokio::test]
async fn capacity_users_and_sizes_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path(), limits(), registry(760, 240)).await;
    let small = l.acquire(req("u0", 0)).await.unwrap();
    assert_eq!(small.vcores, 8);
    let too_big = l.acquire(req("u0", 800)).await.unwrap_err();
    assert_eq!(too_big.code, ErrorCode::InvalidArgument);
    // A second session of the same user does not count as a new user.
    l.acquire(req("u0", 8)).await.unwrap();
    for i in 1..10 {
        l.acquire(req(&format!("u{i}"), 8)).await.unwrap();
    }
    let eleventh = l.acquire(req("u10", 8)).await.unwrap_err();
    assert_eq!(eleventh.code, ErrorCode::UserLimitReached);
    // Existing users may still take more, up to the capacity.
    let leased = l.pool_figures(Pool::Interactive).leased;
    assert_eq!(leased, 88);
    let e = l.acquire(req("u1", 760 - 88 + 1)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InsufficientVcores);
    assert!(
        e.to_string().contains(&format!(
            "requested {} vCores, {} available",
            760 - 88 + 1,
            760 - 88
        )),
        "{e}"
    );
    l.acquire(req("u1", 760 - 88)).await.unwrap();
    assert_eq!(l.pool_figures(Pool::Interactive).leased, 760);
    let figures = l.pool_figures(Pool::Interactive);
    assert_eq!(figures.refusals.get("user_limit"), Some(&1));
    assert_eq!(figures.refusals.get("insufficient_vcores"), Some(&1));
}

#[tokio::test]
async fn capacity_follows_live_executors() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path(), limits(), registry(0, 0)).await;
    let e = l.acquire(req("a", 2)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PoolNotAvailable);
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path(), limits(), registry(16, 0)).await;
    l.acquire(req("a", 16)).await.unwrap();
    assert_eq!(
        l.acquire(req("b", 1)).await.unwrap_err().code,
        ErrorCode::InsufficientVcores
    );
}

#[tokio::test]
async fn queue_runs_three_at_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path(), limits(), registry(760, 240)).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let r = l
            .submit(format!("r{i}"), "eng".into(), "demo".into(), 8, "")
            .await
            .unwrap();
        ids.push(r.id);
    }
    let states: Vec<RunState> = ids.iter().map(|id| l.run(id).unwrap().0.state).collect();
    assert_eq!(&states[..3], &[RunState::Running; 3]);
    assert_eq!(&states[3..], &[RunState::Queued; 3]);
    assert_eq!(l.run(&ids[4]).unwrap().1, 2);
    // The queue has room for 5; the 6th submission above made it 3.
    for i in 0..2 {
        l.submit(format!("x{i}"), "eng".into(), "demo".into(), 8, "")
            .await
            .unwrap();
    }
    let full = l
        .submit("y".into(), "eng".into(), "demo".into(), 8, "")
        .await
        .unwrap_err();
    assert_eq!(full.code, ErrorCode::JobQuotaExceeded);
    // Cancelling a queued run moves the ones behind it up.
    l.cancel_run(&ids[3]).await.unwrap();
    assert_eq!(l.run(&ids[4]).unwrap().1, 1);
    // Finishing a running run starts the head of the queue.
    l.finish_run(&ids[0], true, "").await.unwrap();
    assert_eq!(l.run(&ids[4]).unwrap().0.state, RunState::Running);
    assert_eq!(l.run(&ids[5]).unwrap().1, 1);
    assert_eq!(l.run(&ids[0]).unwrap().0.state, RunState::Succeeded);
    assert_eq!(l.pool_figures(Pool::Job).leased, 24);
}

#[tokio::test]
async fn the_head_of_the_queue_is_not_overtaken() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path(), limits(), registry(760, 240)).await;
    let big = l
        .submit("a".into(), "e".into(), "w".into(), 200, "")
        .await
        .unwrap();
    let wide = l
        .submit("b".into(), "e".into(), "w".into(), 100, "")
        .await
        .unwrap();
    let small = l
        .submit("c".into(), "e".into(), "w".into(), 8, "")
        .await
        .unwrap();
    assert_eq!(big.state, RunState::Running);
    assert_eq!(wide.state, RunState::Queued);
    // `c` would fit, but `b` is ahead of it.
    assert_eq!(small.state, RunState::Queued);
    l.finish_run(&big.id, true, "").await.unwrap();
    assert_eq!(l.run(&wide.id).unwrap().0.state, RunState::Running);
    assert_eq!(l.run(&small.id).unwrap().0.state, RunState::Running);
}

#[tokio::test]
async fn leases_and_queue_survive_reopen_with_fresh_ttls() {
    let dir = tempfile::tempdir().unwrap();
    let (lease, runs) = {
        let l = ledger(dir.path(), limits(), registry(760, 240)).await;
        let lease = l.acquire(req("ana", 16)).await.unwrap();
        let mut runs = Vec::new();
        for i in 0..4 {
            runs.push(
                l.submit(format!("r{i}"), "e".into(), "w".into(), 8, "")
                    .await
                    .unwrap()
                    .id,
            );
        }
        (lease, runs)
    };
    let l = ledger(dir.path(), limits(), registry(760, 240)).await;
    assert_eq!(l.lease(&lease.id), Some(lease.clone()));
    assert_eq!(l.run(&runs[3]).unwrap().1, 1);
    assert!(l.renew(std::slice::from_ref(&lease.id)).is_empty());
    // Submission order continues after the restart.
    let next = l
        .submit("r4".into(), "e".into(), "w".into(), 8, "")
        .await
        .unwrap();
    assert_eq!(next.seq, 5);
}

#[tokio::test]
async fn runs_larger_than_the_live_job_pool_are_refused_not_queued() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path(), limits(), registry(760, 8)).await;
    let e = l
        .submit("big".into(), "e".into(), "w".into(), 32, "")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InsufficientVcores);
    assert!(
        l.runs().is_empty(),
        "nothing queued behind an impossible head"
    );
}

#[tokio::test]
async fn hundreds_of_expiries_commit_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut lim = limits();
    lim.max_interactive_users = 1000;
    let (l, clock) = ledger_on(dir.path(), lim, registry(760, 240)).await;
    for i in 0..300 {
        l.acquire(req(&format!("u{i}"), 1)).await.unwrap();
    }
    // Control: at the TTL exactly, nothing has ended yet.
    clock.advance(Duration::from_secs(30));
    assert_eq!(l.expire().await.unwrap(), 0);
    assert_eq!(l.pool_figures(Pool::Interactive).leased, 300);
    clock.advance(Duration::from_millis(1));
    assert_eq!(l.expire().await.unwrap(), 300);
    assert_eq!(l.pool_figures(Pool::Interactive).leased, 0);
}

#[tokio::test]
async fn unrenewed_leases_expire_and_free_their_vcores() {
    let dir = tempfile::tempdir().unwrap();
    let (l, clock) = ledger_on(dir.path(), limits(), registry(760, 240)).await;
    let kept = l.acquire(req("a", 8)).await.unwrap();
    let dropped = l.acquire(req("b", 8)).await.unwrap();
    let run = l
        .submit("r".into(), "e".into(), "w".into(), 8, "")
        .await
        .unwrap();
    // Four renewals 10 s apart carry `kept` well past its first TTL.
    for _ in 0..4 {
        clock.advance(Duration::from_secs(10));
        assert!(l.renew(std::slice::from_ref(&kept.id)).is_empty());
        if clock.now_ms() <= 30_000 {
            assert_eq!(l.expire().await.unwrap(), 0, "nothing is due yet");
        }
    }
    // The shown expiry of the renewed lease is a full TTL ahead.
    let shown = l
        .leases()
        .into_iter()
        .find(|(x, _)| x.id == kept.id)
        .unwrap()
        .1;
    let ahead = shown.saturating_sub(unix_ms());
    assert!((29_000..=30_000).contains(&ahead), "{ahead} ms");
    assert_eq!(l.expire().await.unwrap(), 2);
    assert!(l.lease(&kept.id).is_some());
    assert!(l.lease(&dropped.id).is_none());
    assert_eq!(l.run(&run.id).unwrap().0.state, RunState::Expired);
    assert_eq!(l.renew(std::slice::from_ref(&dropped.id)), vec![dropped.id]);
    assert_eq!(l.pool_figures(Pool::Interactive).leased, 8);
    assert_eq!(l.pool_figures(Pool::Job).leased, 0);
}
