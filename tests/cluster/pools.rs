//! vCore pools, session leases and the job queue, seen from clients.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use arrow_flight::sql::client::FlightSqlServiceClient;
use tarn_proto::*;
use tarn_tests::{demo_lake, eventually, http_get, http_json, query, scalar_i64, Cluster};
use tonic::transport::Channel;
use tonic::Code;

/// A Flight SQL client whose handshake opens a session of `vcores`.
async fn session(
    cluster: &Cluster,
    user: &str,
    vcores: u32,
) -> Result<FlightSqlServiceClient<Channel>, tonic::Status> {
    let mut c = cluster
        .flight_sql()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
    if vcores > 0 {
        c.set_header("x-tarn-vcores", vcores.to_string());
    }
    c.handshake(user, "dev")
        .await
        .map_err(tarn_tests::to_status)?;
    Ok(c)
}

/// Largest sum of vCores (and count) of one job stage's tasks running at
/// the same instant, from the executors' own start/end times.
fn peak(tasks: &[&TaskPlacement]) -> (u32, u32) {
    // One entry per task (a task may carry several partitions).
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for t in tasks {
        if seen.insert((t.stage_id, t.task_id)) {
            assert!(t.end_exec_unix_ms >= t.start_exec_unix_ms && t.start_exec_unix_ms > 0);
            events.push((t.start_exec_unix_ms, 1i64, t.vcores as i64));
            events.push((t.end_exec_unix_ms, -1, -(t.vcores as i64)));
        }
    }
    // Ends before starts at the same millisecond: back-to-back tasks do
    // not overlap.
    events.sort_by_key(|(at, kind, _)| (*at, *kind));
    let (mut tasks_now, mut vcores_now, mut peak_tasks, mut peak_vcores) = (0i64, 0i64, 0i64, 0i64);
    for (_, kind, v) in events {
        tasks_now += kind;
        vcores_now += v;
        peak_tasks = peak_tasks.max(tasks_now);
        peak_vcores = peak_vcores.max(vcores_now);
    }
    (peak_tasks as u32, peak_vcores as u32)
}

const WIDE: &str = "SELECT Computer, COUNT(*) AS n, SUM(LENGTH(CommandLine)) AS l \
                    FROM SecurityEvent GROUP BY Computer";

#[tokio::test]
async fn a_lease_caps_the_tasks_a_session_runs_at_once() -> anyhow::Result<()> {
    // The interactive executor offers 12 task slots, so only the lease can
    // hold a session to 2.
    // Ballista's task binding is what is under test: no direct runs.
    let cluster = Cluster::start_with(
        &demo_lake()?,
        &["--interactive-vcores", "12"],
        &[("TARN_GATEWAY__DIRECT_RUNS", "false")],
    )
    .await?;
    let mut narrow = session(&cluster, "ana", 2).await?;
    query(
        &mut narrow,
        "SET datafusion.execution.target_partitions = 16",
    )
    .await?;
    let mut other = session(&cluster, "ben", 2).await?;
    let mut wide = session(&cluster, "cy", 8).await?;
    query(&mut wide, "SET datafusion.execution.target_partitions = 16").await?;

    // The narrow session's 16-partition query, with another session's
    // query on the same pool alongside it.
    let mut n2 = narrow.clone();
    let long = tokio::spawn(async move { query(&mut n2, WIDE).await });
    eventually(Duration::from_secs(30), "the wide query to run", || async {
        let n = cluster
            .gateway_metric("tarn_gateway_queries_running")
            .await
            .ok()?;
        (n >= 1.0).then_some(())
    })
    .await?;
    let short = query(&mut other, "SELECT COUNT(*) FROM IdentityInfo").await?;
    assert_eq!(scalar_i64(&short), 201);
    let narrow_rows = long.await??;
    let wide_rows = query(&mut wide, WIDE).await?;
    assert_eq!(
        tarn_tests::rows(&narrow_rows),
        tarn_tests::rows(&wide_rows),
        "the cap changes speed, not answers"
    );

    let leases = cluster
        .coordinator()
        .await?
        .list_leases(ListLeasesRequest {
            header: Some(header()),
            pool: Pool::Interactive as i32,
        })
        .await?
        .into_inner()
        .leases;
    let lease_of = |user: &str| {
        leases
            .iter()
            .find(|l| l.user == user)
            .map(|l| (l.lease_id.clone(), l.vcores))
            .expect("the user holds a lease")
    };
    assert_eq!(lease_of("ana").1, 2);
    assert_eq!(lease_of("cy").1, 8);

    let jobs = cluster.jobs().await?;
    let scan_stage = |lease: &str| -> Vec<TaskPlacement> {
        let job = jobs
            .iter()
            .find(|j| j.lease_id == lease && j.job_name.contains("@") && j.tasks.len() >= 16)
            .unwrap_or_else(|| panic!("a 16-partition job under lease {lease}: {jobs:?}"));
        assert_eq!(job.status, "successful");
        // The stage with 16 input partitions is the scan.
        let mut by_stage: HashMap<u32, Vec<TaskPlacement>> = HashMap::new();
        for t in &job.tasks {
            by_stage.entry(t.stage_id).or_default().push(t.clone());
        }
        by_stage
            .into_values()
            .find(|ts| ts.len() == 16)
            .expect("a stage of 16 partitions")
    };

    let narrow_tasks = scan_stage(&lease_of("ana").0);
    let (tasks, vcores) = peak(&narrow_tasks.iter().collect::<Vec<_>>());
    assert!(
        tasks <= 2 && vcores <= 2,
        "a 2-vCore lease ran {tasks} tasks / {vcores} vCores at once"
    );
    // Control: the same query under an 8-vCore lease does use more, so the
    // measurement can see concurrency when there is some.
    let wide_tasks = scan_stage(&lease_of("cy").0);
    let (_, wide_vcores) = peak(&wide_tasks.iter().collect::<Vec<_>>());
    assert!(
        wide_vcores > 2,
        "an 8-vCore lease used only {wide_vcores} at once"
    );
    eprintln!("peak at once: 2-vCore lease {tasks} tasks / {vcores} vCores; 8-vCore lease {wide_vcores} vCores");
    assert!(wide_vcores <= 8);

    // Every task ran on the interactive executor.
    let info = cluster
        .coordinator()
        .await?
        .get_cluster_info(GetClusterInfoRequest {
            header: Some(header()),
        })
        .await?
        .into_inner();
    let interactive: HashSet<&str> = info
        .executors
        .iter()
        .filter(|e| e.pool == Pool::Interactive as i32)
        .map(|e| e.executor_id.as_str())
        .collect();
    for t in narrow_tasks.iter().chain(wide_tasks.iter()) {
        assert!(interactive.contains(t.executor_id.as_str()), "{t:?}");
    }
    Ok(())
}

#[tokio::test]
async fn the_eleventh_user_is_refused_until_one_leaves() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut clients = Vec::new();
    for i in 0..10 {
        clients.push(session(&cluster, &format!("user{i}"), 0).await?);
    }
    // A second session of a user already in does not count again.
    let _again = session(&cluster, "user0", 0).await?;
    let refused = session(&cluster, "user10", 0)
        .await
        .expect_err("the 11th user is refused");
    // The Rust client folds a handshake's status into its message.
    assert!(
        refused.message().contains("resource has been exhausted"),
        "RESOURCE_EXHAUSTED: {}",
        refused.message()
    );
    assert!(
        refused.message().contains("TARN-2304"),
        "{}",
        refused.message()
    );
    assert!(refused.message().contains("Fix:"), "{}", refused.message());

    // The REST view and the coordinator's metrics agree.
    let (status, pools) = http_json(&cluster.http, "GET", "/v1/pools", None).await?;
    assert_eq!(status, 200);
    let interactive = &pools["pools"][0];
    assert_eq!(interactive["name"], "interactive");
    assert_eq!(interactive["users"], 10);
    assert_eq!(interactive["leases"], 11);
    assert_eq!(
        interactive["leased_vcores"], 22,
        "11 small sessions of 2 vCores"
    );
    assert_eq!(interactive["refusals"]["user_limit"], 1);
    let (_, metrics) = http_get(&cluster.metrics, "/metrics").await?;
    assert!(
        metrics.contains("tarn_pool_refusals_total{pool=\"interactive\",reason=\"user_limit\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tarn_pool_leased_vcores{pool=\"interactive\"} 22"),
        "{metrics}"
    );

    // One user leaves (REST close of their session) and the 11th gets in.
    let (_, sessions) = http_json(&cluster.http, "GET", "/v1/sessions", None).await?;
    let user3 = sessions["sessions"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["user"] == "user3"))
        .and_then(|s| s["session_id"].as_str())
        .expect("user3's session")
        .to_string();
    let (status, _) = http_json(
        &cluster.http,
        "DELETE",
        &format!("/v1/sessions/{user3}"),
        None,
    )
    .await?;
    assert_eq!(status, 204);
    let mut late = session(&cluster, "user10", 0).await?;
    assert_eq!(scalar_i64(&query(&mut late, "SELECT 7").await?), 7);
    // Flight's CloseSession action gives a session's vCores back at once.
    let before = http_json(&cluster.http, "GET", "/v1/pools", None).await?.1["pools"][0]
        ["leased_vcores"]
        .clone();
    futures::TryStreamExt::try_collect::<Vec<_>>(
        late.do_action(arrow_flight::Action::new("CloseSession", Vec::<u8>::new()))
            .await?,
    )
    .await?;
    let after = http_json(&cluster.http, "GET", "/v1/pools", None).await?.1["pools"][0]
        ["leased_vcores"]
        .clone();
    assert_eq!(
        before.as_u64().map(|v| v - 2),
        after.as_u64(),
        "{before} → {after}"
    );
    // The closed session's token no longer works.
    let (status, body) = http_json(
        &cluster.http,
        "DELETE",
        &format!("/v1/sessions/{user3}"),
        None,
    )
    .await?;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], 2302);
    Ok(())
}

#[tokio::test]
async fn a_storm_of_lease_requests_never_overgrants() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(
        &demo_lake()?,
        &["--interactive-vcores", "760", "--job-vcores", "240"],
        &[],
    )
    .await?;
    let coordinator = cluster.coordinator().await?;
    let acquire = |user: String, vcores: u32| {
        let mut c = coordinator.clone();
        async move {
            c.acquire_lease(AcquireLeaseRequest {
                header: Some(header()),
                pool: Pool::Interactive as i32,
                user,
                vcores,
                ..Default::default()
            })
            .await
        }
    };

    // 500 distinct users open sessions at once (REST, as a client would):
    // exactly 10 get in, every other one is told why.
    let storm: Vec<_> = (0..500)
        .map(|i| {
            let http = cluster.http.clone();
            tokio::spawn(async move {
                let body = format!(r#"{{"user": "u{i}", "vcores": 2}}"#);
                http_json(&http, "POST", "/v1/sessions", Some(&body)).await
            })
        })
        .collect();
    let mut users = HashSet::new();
    for h in storm {
        let (status, body) = h.await??;
        match status {
            201 => assert!(users.insert(body["user"].as_str().unwrap_or_default().to_string())),
            _ => {
                assert_eq!(status, 429, "{body}");
                assert_eq!(body["error"]["code"], 2304, "{body}");
            }
        }
    }
    assert_eq!(users.len(), 10, "exactly the user limit is admitted");
    let mut granted: Vec<LeaseInfo> = cluster
        .coordinator()
        .await?
        .list_leases(ListLeasesRequest {
            header: Some(header()),
            pool: Pool::Interactive as i32,
        })
        .await?
        .into_inner()
        .leases;
    assert_eq!(granted.len(), 10);

    // Those 10 users ask for 500 more leases of 1–4 vCores at once: the
    // pool fills to at most 760 and every refusal says why.
    let users: Vec<String> = users.into_iter().collect();
    let storm: Vec<_> = (0..500)
        .map(|i| tokio::spawn(acquire(users[i % 10].clone(), 1 + (i as u32 % 4))))
        .collect();
    let mut refusals = 0;
    for h in storm {
        match h.await? {
            Ok(l) => granted.push(l.into_inner()),
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted);
                assert!(s.message().contains("TARN-2303"), "{}", s.message());
                refusals += 1;
            }
        }
    }
    let total: u32 = granted.iter().map(|l| l.vcores).sum();
    assert!(total <= 760, "{total} vCores granted from a 760-vCore pool");
    assert!(total > 760 - 4, "the pool fills up: {total}");
    assert!(refusals > 0);
    let ids: HashSet<&str> = granted.iter().map(|l| l.lease_id.as_str()).collect();
    assert_eq!(ids.len(), granted.len(), "lease ids are unique");

    let mut c = cluster.coordinator().await?;
    let pools = c
        .get_pools(GetPoolsRequest {
            header: Some(header()),
        })
        .await?
        .into_inner();
    let interactive = &pools.pools[0];
    assert_eq!(
        interactive.leased_vcores, total,
        "the ledger agrees with the grants"
    );
    assert_eq!(interactive.users, 10);

    // The job pool: 40 runs at once; 3 run, the rest queue in submission
    // order, and each finish starts the head of the queue.
    let submit = |i: usize| {
        let mut c = coordinator.clone();
        async move {
            c.submit_job_run(SubmitJobRunRequest {
                header: Some(header()),
                name: format!("run{i}"),
                user: "eng".into(),
                vcores: 8,
                ..Default::default()
            })
            .await
        }
    };
    let storm: Vec<_> = (0..40).map(|i| tokio::spawn(submit(i))).collect();
    for h in storm {
        h.await??;
    }
    for _ in 0..5 {
        let runs = c
            .list_job_runs(ListJobRunsRequest {
                header: Some(header()),
                ..Default::default()
            })
            .await?
            .into_inner()
            .runs;
        let running: Vec<&JobRunInfo> = runs
            .iter()
            .filter(|r| r.status == JobRunState::Running as i32)
            .collect();
        let queued: Vec<&JobRunInfo> = runs
            .iter()
            .filter(|r| r.status == JobRunState::Queued as i32)
            .collect();
        assert_eq!(running.len(), 3, "three runs at once");
        let positions: Vec<u32> = queued.iter().map(|r| r.queue_position).collect();
        assert_eq!(positions, (1..=queued.len() as u32).collect::<Vec<_>>());
        let seqs: Vec<u64> = queued.iter().map(|r| r.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "queue in order: {seqs:?}"
        );
        let newest_running = running.iter().map(|r| r.seq).max().unwrap_or(0);
        assert!(seqs.first().is_none_or(|s| *s > newest_running), "FIFO");
        // Finish the earliest running run; the head of the queue starts.
        let head = queued[0].run_id.clone();
        let first = running
            .iter()
            .min_by_key(|r| r.seq)
            .map(|r| r.run_id.clone());
        c.finish_job_run(FinishJobRunRequest {
            header: Some(header()),
            run_id: first.expect("a running run"),
            succeeded: true,
            message: String::new(),
            ..Default::default()
        })
        .await?;
        let now = c
            .get_job_run(GetJobRunRequest {
                header: Some(header()),
                run_id: head,
            })
            .await?
            .into_inner();
        assert_eq!(now.status, JobRunState::Running as i32);
    }
    Ok(())
}

#[tokio::test]
async fn job_runs_over_rest_queue_cancel_and_finish() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let h = &cluster.http;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, run) = http_json(
            h,
            "POST",
            "/v1/job-runs",
            Some(&format!(r#"{{"name": "nightly-{i}", "user": "eng"}}"#)),
        )
        .await?;
        assert_eq!(status, 201, "{run}");
        ids.push(run["run_id"].as_str().expect("run id").to_string());
    }
    let state = |v: &serde_json::Value| v["status"].as_str().unwrap_or_default().to_string();
    let get =
        |id: String| async move { http_json(h, "GET", &format!("/v1/job-runs/{id}"), None).await };
    assert_eq!(state(&get(ids[2].clone()).await?.1), "running");
    let (_, fourth) = get(ids[3].clone()).await?;
    assert_eq!(state(&fourth), "queued");
    assert_eq!(fourth["queue_position"], 1);
    assert_eq!(get(ids[4].clone()).await?.1["queue_position"], 2);

    // A running run's holder heartbeats its lease; a queued one has none.
    let (status, _) = http_json(
        h,
        "POST",
        &format!("/v1/job-runs/{}/heartbeat", ids[0]),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    let (status, err) = http_json(
        h,
        "POST",
        &format!("/v1/job-runs/{}/heartbeat", ids[3]),
        None,
    )
    .await?;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], 2306);

    // Cancel the queued 4th: the 5th moves up.
    let (status, cancelled) =
        http_json(h, "DELETE", &format!("/v1/job-runs/{}", ids[3]), None).await?;
    assert_eq!(status, 200);
    assert_eq!(state(&cancelled), "cancelled");
    assert_eq!(get(ids[4].clone()).await?.1["queue_position"], 1);

    // Finish the 1st: the 5th starts; cancel a running one: its vCores return.
    let (status, done) = http_json(
        h,
        "POST",
        &format!("/v1/job-runs/{}/finish", ids[0]),
        Some(r#"{"succeeded": true}"#),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(state(&done), "succeeded");
    assert_eq!(state(&get(ids[4].clone()).await?.1), "running");
    http_json(h, "DELETE", &format!("/v1/job-runs/{}", ids[1]), None).await?;
    let (_, pools) = http_json(h, "GET", "/v1/pools", None).await?;
    let job = &pools["pools"][1];
    assert_eq!(job["name"], "job");
    assert_eq!(job["running_runs"], 2);
    assert_eq!(job["leased_vcores"], 4);

    // Bad input: coded JSON errors, nothing changes.
    let (status, err) = http_json(h, "GET", "/v1/job-runs/nope", None).await?;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], 2306);
    let (status, err) = http_json(h, "POST", "/v1/job-runs", Some("{not json")).await?;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], 2805);
    let (status, err) = http_json(
        h,
        "POST",
        "/v1/job-runs",
        Some(r#"{"name": "huge", "user": "eng", "vcores": 5000}"#),
    )
    .await?;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("5000"),
        "{err}"
    );
    let (status, err) = http_json(
        h,
        "POST",
        "/v1/sessions",
        Some(r#"{"user": "x", "size": "giant"}"#),
    )
    .await?;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("small"),
        "{err}"
    );
    let (_, runs) = http_json(h, "GET", "/v1/job-runs", None).await?;
    let active = runs["runs"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|r| r["status"] == "running" || r["status"] == "queued")
                .count()
        })
        .unwrap_or(0);
    assert_eq!(active, 2);
    Ok(())
}
