//! The coordinator's state survives `kill -9` with either store, and with
//! etcd a standby takes over from a dead leader.

use std::time::{Duration, Instant};

use tarn_proto::*;
use tarn_tests::{
    coordinator_client, demo_lake, eventually, free_port, http_get, query, scalar_i64, Etcd, Role,
};

/// Starts a coordinator; `store` is ("embedded", state dir) or ("etcd", endpoints).
fn coordinator(addr: &str, store: (&str, &str), log: &std::path::Path) -> anyhow::Result<Role> {
    let lake = demo_lake()?;
    let mut args = vec![
        "coordinator",
        "--bind",
        addr,
        "--http-bind",
        "",
        "--lake",
        lake.to_str().expect("utf-8 path"),
        "--store",
        store.0,
    ];
    match store.0 {
        "etcd" => args.extend(["--etcd-endpoints", store.1]),
        _ => args.extend(["--state-dir", store.1]),
    }
    Role::spawn_with(
        &args,
        &[
            ("TARN_COORDINATOR__ELECTION_TTL", "2s"),
            ("TARN_COORDINATOR__LEASE_TTL", "30s"),
        ],
        Some(log),
    )
}

/// The coordinator's pools, or `None` while it does not answer.
async fn pools(addr: &str) -> Option<Vec<PoolInfo>> {
    let mut c = coordinator_client(addr).await.ok()?;
    let r = c
        .get_pools(GetPoolsRequest {
            header: Some(header()),
        })
        .await
        .ok()?;
    Some(r.into_inner().pools)
}

async fn health(addr: &str) -> Option<HealthResponse> {
    let mut c = coordinator_client(addr).await.ok()?;
    c.health(HealthRequest {
        header: Some(header()),
    })
    .await
    .ok()
    .map(|r| r.into_inner())
}

/// Waits until `coordinator` sees executors of both counts, so the ports
/// they picked are bound before the test picks the gateway's (a port
/// picked free and bound later can otherwise collide).
async fn executors_up(
    coordinator: &str,
    interactive: u32,
    job: u32,
    log: &std::path::Path,
) -> anyhow::Result<()> {
    eventually(Duration::from_secs(60), "executors to register", || async {
        health(coordinator)
            .await
            .filter(|h| h.interactive_executors >= interactive && h.job_executors >= job)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; roles' log:\n{}", tail(log)))?;
    Ok(())
}

/// Starts a gateway on fresh ports and waits until it is ready:
/// (process, Flight SQL address, HTTP address).
async fn start_gateway(
    coordinators: &str,
    lake: &str,
    env: &[(&str, &str)],
    log: &std::path::Path,
) -> anyhow::Result<(Role, String, String)> {
    let flight = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let role = Role::spawn_with(
        &[
            "gateway",
            "--flight-addr",
            &flight,
            "--http-addr",
            &http,
            "--coordinator",
            coordinators,
            "--lake",
            lake,
            "--auth",
            "dev",
        ],
        env,
        Some(log),
    )?;
    eventually(
        Duration::from_secs(60),
        "the gateway to be ready",
        || async {
            http_get(&http, "/readyz")
                .await
                .ok()
                .filter(|(s, _)| *s == 200)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; roles' log:\n{}", tail(log)))?;
    Ok((role, flight, http))
}

fn tail(log: &std::path::Path) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).to_string();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

async fn announce(addr: &str, id: &str, pool: Pool, vcores: u32) -> anyhow::Result<()> {
    // What an executor's announcer sends (with an executor's certificate);
    // the ledger's capacity follows it.
    tarn_tests::coordinator_client_as(addr, tarn_common::cluster::Role::Executor)
        .await?
        .register_executor(RegisterExecutorRequest {
            header: Some(header()),
            executor_id: id.into(),
            pool: pool as i32,
            vcores,
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// Leases and runs as the coordinator reports them, comparable across a
/// restart.
async fn snapshot(
    addr: &str,
) -> anyhow::Result<(Vec<(String, String, u32)>, Vec<(String, i32, u32)>)> {
    let mut c = coordinator_client(addr).await?;
    let mut leases: Vec<(String, String, u32)> = c
        .list_leases(ListLeasesRequest {
            header: Some(header()),
            pool: Pool::Unspecified as i32,
        })
        .await?
        .into_inner()
        .leases
        .into_iter()
        .map(|l| (l.lease_id, l.user, l.vcores))
        .collect();
    leases.sort();
    let mut runs: Vec<(String, i32, u32)> = c
        .list_job_runs(ListJobRunsRequest {
            header: Some(header()),
            ..Default::default()
        })
        .await?
        .into_inner()
        .runs
        .into_iter()
        .map(|r| (r.run_id, r.status, r.queue_position))
        .collect();
    runs.sort();
    Ok((leases, runs))
}

async fn fill(addr: &str) -> anyhow::Result<()> {
    let mut c = coordinator_client(addr).await?;
    for user in ["ana", "ben", "ana"] {
        c.acquire_lease(AcquireLeaseRequest {
            header: Some(header()),
            pool: Pool::Interactive as i32,
            user: user.into(),
            vcores: 4,
            ..Default::default()
        })
        .await?;
    }
    for i in 0..5 {
        c.submit_job_run(SubmitJobRunRequest {
            header: Some(header()),
            name: format!("run{i}"),
            user: "eng".into(),
            vcores: 2,
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

async fn survives_kill9(backend: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let etcd = match backend {
        "etcd" => Some(Etcd::start().await?),
        _ => None,
    };
    let location = match &etcd {
        Some(e) => e.endpoint.clone(),
        None => dir.path().join("state").display().to_string(),
    };
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("coordinator.log");
    let mut first = coordinator(&addr, (backend, &location), &log)?;
    eventually(
        Duration::from_secs(30),
        "the coordinator to lead",
        || async { health(&addr).await.filter(|h| h.role == "leader") },
    )
    .await?;
    announce(&addr, "i-1", Pool::Interactive, 16).await?;
    announce(&addr, "j-1", Pool::Job, 8).await?;
    fill(&addr).await?;
    let before = snapshot(&addr).await?;
    assert_eq!(
        before.0.len(),
        3 + 3,
        "3 sessions and 3 running runs hold leases"
    );
    assert_eq!(
        before.1.iter().filter(|r| r.2 > 0).count(),
        2,
        "2 runs queued"
    );

    first.kill9();
    let mut second = coordinator(&addr, (backend, &location), &log)?;
    let h = eventually(
        Duration::from_secs(30),
        "the restarted coordinator to lead",
        || async { health(&addr).await.filter(|h| h.role == "leader") },
    )
    .await?;
    assert_eq!(h.store, backend);
    let after = snapshot(&addr).await?;
    assert_eq!(before, after, "nothing lost across kill -9 ({backend})");

    // The restored leases still count: 12 of 16 interactive vCores are
    // leased, so 8 more are refused and 4 granted.
    announce(&addr, "i-1", Pool::Interactive, 16).await?;
    let mut c = coordinator_client(&addr).await?;
    let refused = c
        .acquire_lease(AcquireLeaseRequest {
            header: Some(header()),
            user: "cy".into(),
            vcores: 8,
            ..Default::default()
        })
        .await
        .expect_err("only 4 vCores are free");
    assert!(
        refused
            .message()
            .contains("requested 8 vCores, 4 available"),
        "{}",
        refused.message()
    );
    // The renewed leases are known by id.
    let gone = c
        .renew_leases(RenewLeasesRequest {
            header: Some(header()),
            lease_ids: before.0.iter().map(|l| l.0.clone()).collect(),
        })
        .await?
        .into_inner()
        .gone;
    assert!(gone.is_empty(), "{gone:?}");
    second.kill9();
    Ok(())
}

#[tokio::test]
async fn embedded_store_survives_kill9() -> anyhow::Result<()> {
    survives_kill9("embedded").await
}

#[tokio::test]
async fn etcd_store_survives_kill9() -> anyhow::Result<()> {
    survives_kill9("etcd").await
}

#[tokio::test]
async fn a_standby_takes_over_within_ten_seconds_and_nothing_is_lost() -> anyhow::Result<()> {
    let etcd = Etcd::start().await?;
    let dir = tempfile::tempdir()?;
    let lake = demo_lake()?;
    let lake = lake.to_str().expect("utf-8 path");
    let a = format!("127.0.0.1:{}", free_port());
    let b = format!("127.0.0.1:{}", free_port());
    let both = format!("{a},{b}");
    let mut coord_a = coordinator(&a, ("etcd", &etcd.endpoint), &dir.path().join("a.log"))?;
    eventually(Duration::from_secs(30), "A to lead", || async {
        health(&a).await.filter(|h| h.role == "leader")
    })
    .await?;
    let _coord_b = coordinator(&b, ("etcd", &etcd.endpoint), &dir.path().join("b.log"))?;
    let standby = eventually(Duration::from_secs(30), "B to stand by", || async {
        health(&b).await.filter(|h| h.role == "standby")
    })
    .await?;
    assert_eq!(standby.leader, a, "the standby knows who leads");
    // A standby keeps standing by however long the leader lives (a
    // campaign is a request etcd answers only on winning).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(health(&b).await.map(|h| h.role).as_deref(), Some("standby"));

    let log = dir.path().join("roles.log");
    let _interactive = Role::spawn_with(
        &[
            "executor",
            "--pool",
            "interactive",
            "--vcores",
            "4",
            "--coordinator",
            &both,
            "--lake",
            lake,
        ],
        &[],
        Some(&log),
    )?;
    let _job = Role::spawn_with(
        &[
            "executor",
            "--pool",
            "job",
            "--vcores",
            "4",
            "--coordinator",
            &both,
            "--lake",
            lake,
        ],
        &[],
        Some(&log),
    )?;
    executors_up(&a, 1, 1, &log).await?;
    let (_gateway, flight, _http) = start_gateway(&both, lake, &[], &log).await?;

    let channel = tonic::transport::Channel::from_shared(format!("http://{flight}"))?
        .connect()
        .await?;
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    client.handshake("ana", "dev").await?;
    assert_eq!(
        scalar_i64(&query(&mut client, "SELECT COUNT(*) FROM IdentityInfo").await?),
        201
    );
    coordinator_client(&a)
        .await?
        .submit_job_run(SubmitJobRunRequest {
            header: Some(header()),
            name: "nightly".into(),
            user: "eng".into(),
            vcores: 2,
            ..Default::default()
        })
        .await?;
    let before = snapshot(&a).await?;
    assert_eq!(before.0.len(), 2, "ana's session and the running run");

    coord_a.kill9();
    let killed = Instant::now();
    eventually(Duration::from_secs(10), "B to take over", || async {
        health(&b).await.filter(|h| h.role == "leader")
    })
    .await?;
    let takeover = killed.elapsed();
    assert!(takeover <= Duration::from_secs(10), "took {takeover:?}");
    assert_eq!(
        snapshot(&b).await?,
        before,
        "the new leader has every lease and run"
    );

    // The same client session keeps working once executors and the
    // gateway have followed the leader on their own.
    let n = eventually(Duration::from_secs(30), "queries to work again", || {
        let mut c = client.clone();
        async move {
            query(&mut c, "SELECT COUNT(*) FROM IdentityInfo")
                .await
                .ok()
                .map(|b| scalar_i64(&b))
        }
    })
    .await?;
    assert_eq!(n, 201);
    eprintln!(
        "takeover in {} ms; queries served again {} ms after the kill",
        takeover.as_millis(),
        killed.elapsed().as_millis()
    );
    Ok(())
}

#[tokio::test]
async fn a_dead_gateways_leases_expire_and_their_vcores_return() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = demo_lake()?;
    let lake = lake.to_str().expect("utf-8 path");
    let coord = format!("127.0.0.1:{}", free_port());
    let state = dir.path().join("state").display().to_string();
    let log = dir.path().join("roles.log");
    let _coordinator = Role::spawn_with(
        &[
            "coordinator",
            "--bind",
            &coord,
            "--http-bind",
            "",
            "--state-dir",
            &state,
            "--lake",
            lake,
        ],
        &[("TARN_COORDINATOR__LEASE_TTL", "2s")],
        Some(&log),
    )?;
    let _executor = Role::spawn_with(
        &[
            "executor",
            "--pool",
            "interactive",
            "--vcores",
            "8",
            "--coordinator",
            &coord,
            "--lake",
            lake,
        ],
        &[],
        Some(&log),
    )?;
    executors_up(&coord, 1, 0, &log).await?;
    let (mut gateway, _flight, http) = start_gateway(
        &coord,
        lake,
        &[("TARN_GATEWAY__LEASE_RENEW_INTERVAL", "500ms")],
        &log,
    )
    .await?;
    let (status, opened) = tarn_tests::http_json(
        &http,
        "POST",
        "/v1/sessions",
        Some(r#"{"user": "ana", "vcores": 8}"#),
    )
    .await?;
    assert_eq!(status, 201, "{opened}");
    let leased = |addr: String| async move { Some(pools(&addr).await?[0].leased_vcores) };
    // Renewed by the heartbeat, the lease outlives its 2 s TTL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(leased(coord.clone()).await, Some(8));

    // The gateway dies without a word; within a TTL the vCores are back.
    gateway.kill9();
    let killed = Instant::now();
    eventually(Duration::from_secs(10), "the lease to expire", || {
        let c = coord.clone();
        async move { leased(c).await.filter(|v| *v == 0) }
    })
    .await?;
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    Ok(())
}

/// A lake of the test's own with the demo's sign-ins, for jobs that write.
fn private_lake(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let lake = dir.join("lake");
    tarn_tests::copy_dir(
        &demo_lake()?.join("demo").join("SigninLogs"),
        &lake.join("demo").join("SigninLogs"),
    )?;
    Ok(lake)
}

#[tokio::test]
async fn a_leader_killed_mid_scheduled_run_fires_it_once_and_its_retry_writes_once(
) -> anyhow::Result<()> {
    let etcd = Etcd::start().await?;
    let dir = tempfile::tempdir()?;
    let lake = private_lake(dir.path())?;
    let lake = lake.to_str().expect("utf-8 path");
    let log = dir.path().join("roles.log");
    let a = format!("127.0.0.1:{}", free_port());
    let b = format!("127.0.0.1:{}", free_port());
    let both = format!("{a},{b}");
    let coordinator = |addr: &str, name: &str| {
        Role::spawn_with(
            &[
                "coordinator",
                "--bind",
                addr,
                "--http-bind",
                "",
                "--lake",
                lake,
                "--store",
                "etcd",
                "--etcd-endpoints",
                &etcd.endpoint,
            ],
            &[
                ("TARN_COORDINATOR__ELECTION_TTL", "2s"),
                ("TARN_COORDINATOR__MIN_SCHEDULE_INTERVAL", "1s"),
            ],
            Some(&dir.path().join(name)),
        )
    };
    let mut coord_a = coordinator(&a, "a.log")?;
    eventually(Duration::from_secs(30), "A to lead", || async {
        health(&a).await.filter(|h| h.role == "leader")
    })
    .await?;
    let _coord_b = coordinator(&b, "b.log")?;
    eventually(Duration::from_secs(30), "B to stand by", || async {
        health(&b).await.filter(|h| h.role == "standby")
    })
    .await?;
    let mut executors = Vec::new();
    for pool in ["interactive", "job"] {
        executors.push(Role::spawn_with(
            &[
                "executor",
                "--pool",
                pool,
                "--vcores",
                "4",
                "--coordinator",
                &both,
                "--lake",
                lake,
            ],
            &[],
            Some(&log),
        )?);
    }
    executors_up(&a, 1, 1, &log).await?;
    let (_gateway, flight, http) = start_gateway(&both, lake, &[], &log).await?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{flight}"))?
        .connect()
        .await?;
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    client.handshake("ana", "dev").await?;
    query(
        &mut client,
        "CREATE TABLE demo.Nightly_SPRK AS SELECT 1 AS s LIMIT 0",
    )
    .await?;

    // A write that takes seconds (a sum over 300 million rows), fired
    // once, a few seconds from now; tried up to three times.
    let start = chrono::Utc::now() + chrono::Duration::seconds(3);
    let (status, job) = tarn_tests::http_json(
        &http,
        "POST",
        "/v1/jobs",
        Some(
            &serde_json::json!({
                "name": "nightly", "workspace": "demo",
                "sql": "INSERT INTO Nightly_SPRK SELECT sum(a.value + b.value) AS s \
                        FROM generate_series(1, 1000000) a, generate_series(1, 300) b",
                "schedule": {"every": "1h", "start": start.to_rfc3339()},
                "retry": {"attempts": 3, "backoff": "1s"},
            })
            .to_string(),
        ),
    )
    .await?;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().expect("job id").to_string();
    let runs = |h: String, id: String| async move {
        let (_, r) = tarn_tests::http_json(&h, "GET", &format!("/v1/jobs/{id}/runs"), None)
            .await
            .ok()?;
        r["runs"].as_array().cloned()
    };
    // The fire's run is writing: kill the leader under it.
    let run = eventually(
        Duration::from_secs(30),
        "the scheduled run to be writing",
        || {
            let (h, id) = (http.clone(), id.clone());
            async move {
                let r = runs(h, id).await?;
                let r = r.first()?.clone();
                (r["status"] == "running" && r["result"]["current"].is_object()).then_some(r)
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; roles' log:\n{}", tail(&log)))?;
    assert_eq!(run["trigger"], "schedule", "{run}");
    let fire = run["fire_unix_ms"].as_u64().expect("fire time");
    coord_a.kill9();
    eventually(Duration::from_secs(15), "B to take over", || async {
        health(&b).await.filter(|h| h.role == "leader")
    })
    .await?;

    // The run is tried again — the same run — and ends.
    let run_id = run["run_id"].as_str().expect("run id").to_string();
    let ended = eventually(Duration::from_secs(120), "the run to end", || {
        let h = http.clone();
        let run_id = run_id.clone();
        async move {
            let (_, r) = tarn_tests::http_json(&h, "GET", &format!("/v1/job-runs/{run_id}"), None)
                .await
                .ok()?;
            (!matches!(r["status"].as_str()?, "queued" | "running")).then_some(r)
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; roles' log:\n{}", tail(&log)))?;
    assert_eq!(ended["status"], "succeeded", "{ended}");
    assert!(
        ended["attempt"].as_u64().is_some_and(|n| n >= 2),
        "it was retried: {ended}"
    );
    // The fire ran once: one run for it, neither none nor two …
    let all = runs(http.clone(), id.clone()).await.expect("runs");
    let for_fire: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| r["fire_unix_ms"].as_u64() == Some(fire) && r["status"] != "skipped")
        .collect();
    assert_eq!(for_fire.len(), 1, "{all:?}");
    // … and its rows are in the table once.
    let n = eventually(Duration::from_secs(30), "queries to work again", || {
        let mut c = client.clone();
        async move {
            query(&mut c, "SELECT count(*) FROM demo.Nightly_SPRK")
                .await
                .ok()
                .map(|b| scalar_i64(&b))
        }
    })
    .await?;
    assert_eq!(n, 1, "one copy of the run's row");
    Ok(())
}

/// What Kubernetes does to an executor it moves: SIGTERM, then a grace
/// period. The executor stops being offered (the coordinator binds it no
/// new tasks), the query it was running tasks of still answers right (its
/// tasks finish there or run again elsewhere), and it exits by itself
/// within the grace period.
///
/// When the drain catches the query between stages, the scheduler rolls
/// back the stage reading the drained executor's output and forgets that
/// stage's tasks on the other executor too; without the coordinator's
/// refund of their vCores (`tarn_coordinator::vcores`) the other executor
/// looked full for ever and the query hung (4 runs in 14 before the fix).
/// The wait is bounded, so such a hang fails here rather than hangs.
#[tokio::test]
async fn an_executor_told_to_stop_drains_and_its_query_still_answers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = demo_lake()?;
    let lake = lake.to_str().expect("utf-8 path");
    let coord = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("roles.log");
    let _coordinator = coordinator(
        &coord,
        (
            "embedded",
            dir.path().join("state").to_str().expect("utf-8"),
        ),
        &log,
    )?;
    let a_metrics = free_port().to_string();
    let executor = |metrics: &str| {
        Role::spawn_with(
            &[
                "executor",
                "--pool",
                "interactive",
                "--vcores",
                "2",
                "--coordinator",
                &coord,
                "--lake",
                lake,
            ],
            &[("TARN_EXECUTOR__METRICS_PORT", metrics)],
            Some(&log),
        )
    };
    let mut a = executor(&a_metrics)?;
    let _b = executor("0")?;
    executors_up(&coord, 2, 0, &log).await?;
    // Every query a Ballista job across both executors (no direct runs).
    let (_gateway, flight, _http) = start_gateway(
        &coord,
        lake,
        &[("TARN_GATEWAY__DIRECT_RUNS", "false")],
        &log,
    )
    .await?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{flight}"))?
        .connect()
        .await?;
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    // A lease of both executors' vCores, so the query's tasks run on both.
    client.set_header("x-tarn-vcores", "4");
    client.handshake("dana", "dev").await?;
    // A few seconds of work in tasks on both executors.
    let sql = "SELECT COUNT(*) + SUM(length(a.IPAddress || b.Location)) FROM SigninLogs a \
               JOIN SigninLogs b ON a.UserPrincipalName = b.UserPrincipalName";
    let t0 = Instant::now();
    let expected = scalar_i64(&query(&mut client, sql).await?);
    assert!(expected > 0);
    eprintln!("baseline: {expected} rows in {:?}", t0.elapsed());

    let mut c = client.clone();
    let running = tokio::spawn(async move { query(&mut c, sql).await.map(|b| scalar_i64(&b)) });
    let a_addr = format!("127.0.0.1:{a_metrics}");
    eventually(
        Duration::from_secs(30),
        "A to run tasks of the query",
        || async {
            let (_, text) = http_get(&a_addr, "/metrics").await.ok()?;
            tarn_common::metrics::sample(&text, "tarn_executor_tasks_running").filter(|n| *n > 0.0)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; roles' log:\n{}", tail(&log)))?;
    let stopped = tokio::task::spawn_blocking(move || {
        let clean = a.stop_within(Duration::from_secs(60));
        (clean, a)
    });
    // While it drains, the pool offers only B.
    eventually(Duration::from_secs(20), "A to leave the pool", || async {
        pools(&coord)
            .await?
            .into_iter()
            .find(|p| p.pool == Pool::Interactive as i32)
            .filter(|p| p.offered_vcores == 2)
            .map(|_| ())
    })
    .await?;
    let answered = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the query did not answer within 60 s of its executor draining; log:\n{}",
                tail(&log)
            )
        })??;
    let (clean, _a) = stopped.await?;
    assert!(
        clean,
        "A did not exit cleanly within its grace period; log:\n{}",
        tail(&log)
    );
    assert_eq!(
        answered.map_err(|s| anyhow::anyhow!("{s}; log:\n{}", tail(&log)))?,
        expected,
        "the query running on the drained executor answered wrong"
    );
    // And B alone serves what comes next.
    assert_eq!(scalar_i64(&query(&mut client, sql).await?), expected);
    Ok(())
}
