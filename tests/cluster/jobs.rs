//! Jobs on a real cluster: definitions over REST checked at submit, runs
//! on the job pool that write what the same SQL reads over Flight SQL, a
//! retried run that does not write twice, parameters bound as values, and
//! credentials that expire.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tarn_tests::{demo_lake, http_json, query, scalar_i64, Cluster};

/// Longer than any of these runs takes, far shorter than "forever".
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// A lake of the test's own with the demo's sign-ins.
fn private_lake() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    tarn_tests::copy_dir(
        &demo_lake()?.join("demo").join("SigninLogs"),
        &lake.join("demo").join("SigninLogs"),
    )?;
    Ok((dir, lake))
}

async fn post(h: &str, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    http_json(h, "POST", path, Some(&body.to_string())).await
}

/// Waits for a run to end; returns its record.
async fn ended(h: &str, run: &str) -> anyhow::Result<Value> {
    tarn_tests::eventually(RUN_LIMIT, "the job run to end", || async {
        let (_, r) = http_json(h, "GET", &format!("/v1/job-runs/{run}"), None)
            .await
            .ok()?;
        let status = r["status"].as_str()?.to_string();
        (!matches!(status.as_str(), "queued" | "running")).then_some(r)
    })
    .await
}

async fn run_now(h: &str, job: &str, body: Value) -> anyhow::Result<Value> {
    let (status, run) = post(h, &format!("/v1/jobs/{job}/runs"), &body).await?;
    assert_eq!(status, 201, "{run}");
    ended(h, run["run_id"].as_str().expect("run id")).await
}

const FAILED: &str = "SELECT UserPrincipalName, count(*) AS failures FROM demo.SigninLogs \
                      WHERE ResultType <> '0' GROUP BY UserPrincipalName";

#[tokio::test]
async fn a_sql_job_writes_what_the_same_sql_reads_and_a_retry_writes_nothing_twice(
) -> anyhow::Result<()> {
    let (_dir, lake) = private_lake()?;
    let cluster = Cluster::start_with(&lake, &[], &[]).await?;
    let h = &cluster.http;
    let (status, job) = post(
        h,
        "/v1/jobs",
        &json!({
            "name": "failed sign-ins",
            "workspace": "demo",
            "sql": format!("CREATE TABLE IF NOT EXISTS FailedSignins_SPRK AS {FAILED} LIMIT 0;\n\
                            INSERT INTO FailedSignins_SPRK {FAILED}"),
        }),
    )
    .await?;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().expect("job id").to_string();

    let run = run_now(h, &id, json!({})).await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["job_id"], id.as_str());
    let mut c = cluster.flight_sql().await?;
    let expected = scalar_i64(&query(&mut c, &format!("SELECT count(*) FROM ({FAILED})")).await?);
    assert!(expected > 0, "the demo has failed sign-ins");
    let count = "SELECT count(*) FROM demo.FailedSignins_SPRK";
    assert_eq!(scalar_i64(&query(&mut c, count).await?), expected);
    // What it wrote, per table, with the Delta version it committed.
    let tables = run["result"]["tables"].as_array().expect("tables").clone();
    assert_eq!(tables.len(), 2, "{run}");
    assert_eq!(tables[1]["table"], "demo.FailedSignins_SPRK");
    assert_eq!(tables[1]["rows"], expected);
    assert!(
        tables[1]["version"].as_i64().is_some_and(|v| v >= 1),
        "{run}"
    );

    // The same run tried again: its write landed already, so nothing is
    // appended …
    let run_id = run["run_id"].as_str().expect("run id").to_string();
    let (status, retry) = post(h, &format!("/v1/job-runs/{run_id}/retry"), &json!({})).await?;
    assert_eq!(status, 201, "{retry}");
    let retried = ended(h, &run_id).await?;
    assert_eq!(retried["status"], "succeeded", "{retried}");
    assert_eq!(retried["attempt"], 2);
    assert_eq!(retried["trigger"], "retry");
    let statuses: Vec<&str> = retried["result"]["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .filter_map(|s| s["status"].as_str())
        .collect();
    // The create finds its table and has nothing to do; the insert finds
    // its write landed in the first attempt.
    assert_eq!(statuses, ["succeeded", "already_committed"], "{retried}");
    assert_eq!(scalar_i64(&query(&mut c, count).await?), expected);
    // … while a new run of the job appends once more (the control).
    let again = run_now(h, &id, json!({})).await?;
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(scalar_i64(&query(&mut c, count).await?), 2 * expected);

    // The executed script and the log are kept.
    let (status, out) = http_json(h, "GET", &format!("/v1/job-runs/{run_id}/output"), None).await?;
    assert_eq!(status, 200);
    assert_eq!(out["nbformat"], 4);
    assert_eq!(out["cells"].as_array().map(Vec::len), Some(2));
    let (status, log) = cluster
        .http_get(&format!("/v1/job-runs/{run_id}/log"))
        .await?;
    assert_eq!(status, 200);
    assert!(
        log.contains("already written") || log.contains("already_committed"),
        "{log}"
    );

    // The job's history lists its runs, newest first.
    let (_, runs) = http_json(h, "GET", &format!("/v1/jobs/{id}/runs"), None).await?;
    let runs = runs["runs"].as_array().expect("runs").clone();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["run_id"], again["run_id"]);
    Ok(())
}

fn notebook(cells: &[(&str, bool)]) -> Value {
    json!({
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "tarn-sql", "display_name": "Tarn SQL"}},
        "cells": cells.iter().map(|(src, params)| json!({
            "cell_type": "code",
            "metadata": if *params { json!({"tags": ["parameters"]}) } else { json!({}) },
            "source": src,
            "outputs": [],
            "execution_count": null,
        })).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn a_notebook_job_binds_parameters_as_values_and_keeps_its_outputs() -> anyhow::Result<()> {
    let (_dir, lake) = private_lake()?;
    let cluster = Cluster::start_with(&lake, &[], &[]).await?;
    let h = &cluster.http;
    let nb = notebook(&[
        ("min_failures = 2\nuser = 'nobody'", true),
        (
            "CREATE OR REPLACE TABLE Repeat_SPRK AS SELECT UserPrincipalName, count(*) AS failures \
             FROM demo.SigninLogs WHERE ResultType <> '0' AND UserPrincipalName <> $user \
             GROUP BY UserPrincipalName HAVING count(*) >= $min_failures",
            false,
        ),
        ("SELECT count(*) AS n FROM Repeat_SPRK", false),
    ]);
    let (status, job) = post(
        h,
        "/v1/jobs",
        &json!({"name": "repeat offenders", "workspace": "demo", "notebook": nb}),
    )
    .await?;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().expect("job id").to_string();
    let mut c = cluster.flight_sql().await?;
    let truth = |min: i64| {
        format!(
            "SELECT count(*) FROM (SELECT UserPrincipalName FROM demo.SigninLogs WHERE ResultType <> '0' \
             GROUP BY UserPrincipalName HAVING count(*) >= {min})"
        )
    };

    let run = run_now(h, &id, json!({})).await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    let by_default = scalar_i64(&query(&mut c, &truth(2)).await?);
    assert_eq!(
        scalar_i64(&query(&mut c, "SELECT count(*) FROM demo.Repeat_SPRK").await?),
        by_default
    );
    // A run's values override the defaults.
    let run = run_now(h, &id, json!({"parameters": {"min_failures": 1}})).await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    let with_one = scalar_i64(&query(&mut c, &truth(1)).await?);
    assert!(with_one > by_default, "the override changes the result");
    assert_eq!(
        scalar_i64(&query(&mut c, "SELECT count(*) FROM demo.Repeat_SPRK").await?),
        with_one
    );
    // A value is a value, never SQL: quotes and statements in it match
    // no user, and the table is still there.
    let run = run_now(
        h,
        &id,
        json!({"parameters": {"user": "x' OR '1'='1'; DROP TABLE Repeat_SPRK; --"}}),
    )
    .await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        scalar_i64(&query(&mut c, "SELECT count(*) FROM demo.Repeat_SPRK").await?),
        by_default
    );
    // An undeclared parameter is refused when the run is asked for.
    let (status, e) = post(
        h,
        &format!("/v1/jobs/{id}/runs"),
        &json!({"parameters": {"min_fails": 1}}),
    )
    .await?;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], 2317, "{e}");

    // The executed notebook carries each cell's output: the last cell's
    // count is the table's.
    let run_id = run["run_id"].as_str().expect("run id");
    let (status, out) = http_json(h, "GET", &format!("/v1/job-runs/{run_id}/output"), None).await?;
    assert_eq!(status, 200);
    let last = &out["cells"][2]["outputs"][0];
    let plain = last["data"]["text/plain"].as_str().unwrap_or_default();
    assert!(plain.contains(&by_default.to_string()), "{out}");
    Ok(())
}

#[tokio::test]
async fn bad_jobs_are_refused_at_submit_with_the_run_time_codes() -> anyhow::Result<()> {
    let (_dir, lake) = private_lake()?;
    let cluster = Cluster::start_with(&lake, &[], &[]).await?;
    let h = &cluster.http;
    let mut c = cluster.flight_sql().await?;
    query(&mut c, "CREATE TABLE Existing_SPRK AS SELECT 1 AS x").await?;
    let refused = |sql: Value| async move {
        let mut body = json!({"name": "bad", "workspace": "demo"});
        body.as_object_mut()
            .expect("object")
            .extend(sql.as_object().expect("object").clone());
        let (status, e) = post(h, "/v1/jobs", &body).await?;
        anyhow::Ok((status, e["error"]["code"].as_u64().unwrap_or(0), e))
    };
    for (job, code) in [
        (json!({"sql": "SELEC 1"}), 2801),
        (json!({"sql": "CREATE TABLE Failed AS SELECT 1 AS x"}), 2603),
        (json!({"sql": "SELECT nope FROM demo.SigninLogs"}), 2101),
        (
            json!({"sql": "INSERT INTO Existing_SPRK SELECT 1, 2"}),
            2401,
        ),
        (
            json!({"sql": format!("CREATE TABLE IF NOT EXISTS Mismatch_SPRK AS {FAILED};\n\
                                   INSERT INTO Mismatch_SPRK SELECT 1 AS other")}),
            0,
        ),
        (
            json!({"notebook": notebook(&[("x = input('which user?')", false)])}),
            2317,
        ),
        (
            json!({"sql": "SELECT 1", "schedule": {"daily": "25:00"}}),
            2317,
        ),
    ] {
        let (status, got, e) = refused(job.clone()).await?;
        if code == 0 {
            // A write into a table an earlier statement creates is checked
            // when it runs; the definition itself is fine.
            assert_eq!(status, 201, "{job}: {e}");
            continue;
        }
        assert_eq!(got, code, "{job}: {e}");
        assert!(status >= 400, "{job}: {e}");
    }
    // Nothing refused was saved.
    let (_, jobs) = http_json(h, "GET", "/v1/jobs", None).await?;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs}");
    Ok(())
}

#[tokio::test]
async fn a_run_whose_credentials_expired_fails_with_2202_and_writes_nothing() -> anyhow::Result<()>
{
    let (_dir, lake) = private_lake()?;
    let cluster = Cluster::start_with(
        &lake,
        &[],
        &[("TARN_GATEWAY__JOB_CREDENTIAL_LIFETIME", "3s")],
    )
    .await?;
    let h = &cluster.http;
    let (status, job) = post(
        h,
        "/v1/jobs",
        &json!({"name": "late", "workspace": "demo", "sql": format!("CREATE TABLE Late_SPRK AS {FAILED}")}),
    )
    .await?;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().expect("job id").to_string();
    let expires = job["credential_expires_unix_ms"].as_u64().expect("expiry");
    tarn_tests::eventually(
        Duration::from_secs(10),
        "the job's credentials to expire",
        || async { (tarn_common::clock::unix_ms() > expires).then_some(()) },
    )
    .await?;
    let run = run_now(h, &id, json!({})).await?;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error_code"], 2202, "{run}");
    assert!(
        run["message"]
            .as_str()
            .unwrap_or_default()
            .contains("renew"),
        "{run}"
    );
    assert!(
        !lake.join("demo").join("Late_SPRK").exists(),
        "nothing was written"
    );
    // Renewed, the same job runs (the control).
    let (status, renewed) = post(h, &format!("/v1/jobs/{id}/renew"), &json!({})).await?;
    assert_eq!(status, 200, "{renewed}");
    let run = run_now(h, &id, json!({})).await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(lake.join("demo").join("Late_SPRK").exists());
    Ok(())
}

/// A query that runs for hours unless stopped: it sums a million by a
/// million rows (a count alone would come from statistics).
const SLOW: &str = "SELECT sum(a.value + b.value) AS s \
                    FROM generate_series(1, 1000000) a, generate_series(1, 1000000) b";

#[tokio::test]
async fn a_schedule_fires_on_time_again_and_again() -> anyhow::Result<()> {
    let (_dir, lake) = private_lake()?;
    let cluster = Cluster::start_with(
        &lake,
        &[],
        &[("TARN_COORDINATOR__MIN_SCHEDULE_INTERVAL", "1s")],
    )
    .await?;
    let h = &cluster.http;
    // The operator's floor holds: every 2 s is fine here, every 500 ms not.
    let (status, e) = post(
        h,
        "/v1/jobs",
        &json!({"name": "too often", "workspace": "demo", "sql": "SELECT 1", "schedule": {"every": "500ms"}}),
    )
    .await?;
    assert_eq!(
        (status, e["error"]["code"].as_u64()),
        (400, Some(2317)),
        "{e}"
    );
    let (status, job) = post(
        h,
        "/v1/jobs",
        &json!({"name": "ticker", "workspace": "demo",
                "sql": "INSERT INTO Ticks_SPRK SELECT now() AS at",
                "schedule": {"every": "2s"}}),
    )
    .await?;
    // Checked at submit: the table it appends to does not exist yet.
    assert_eq!(
        (status, job["error"]["code"].as_u64()),
        (404, Some(2100)),
        "{job}"
    );
    let mut c = cluster.flight_sql().await?;
    query(
        &mut c,
        "CREATE TABLE demo.Ticks_SPRK AS SELECT now() AS at LIMIT 0",
    )
    .await?;
    let (status, job) = post(
        h,
        "/v1/jobs",
        &json!({"name": "ticker", "workspace": "demo",
                "sql": "INSERT INTO Ticks_SPRK SELECT now() AS at",
                "schedule": {"every": "2s"}}),
    )
    .await?;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().expect("job id").to_string();
    assert!(
        job["next_fire_unix_ms"].as_u64().is_some_and(|n| n > 0),
        "{job}"
    );
    let runs = tarn_tests::eventually(
        Duration::from_secs(30),
        "two scheduled runs to succeed",
        || async {
            let (_, r) = http_json(h, "GET", &format!("/v1/jobs/{id}/runs"), None)
                .await
                .ok()?;
            let done: Vec<Value> = r["runs"]
                .as_array()?
                .iter()
                .filter(|r| r["status"] == "succeeded")
                .cloned()
                .collect();
            (done.len() >= 2).then_some(done)
        },
    )
    .await?;
    let mut fires: Vec<u64> = runs
        .iter()
        .map(|r| {
            assert_eq!(r["trigger"], "schedule", "{r}");
            r["fire_unix_ms"].as_u64().expect("fire time")
        })
        .collect();
    fires.sort();
    // Fires of one schedule, on its 2 s grid, none twice (on a loaded
    // machine a fire may find the previous run still going and be
    // skipped, so the two runs may be more than one step apart).
    let step = fires[1] - fires[0];
    assert!(step > 0 && step.is_multiple_of(2000), "{fires:?}");
    for r in &runs {
        let late = r["started_unix_ms"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(r["fire_unix_ms"].as_u64().unwrap_or(0));
        assert!(late < 10_000, "a fire started {late} ms late: {r}");
    }
    assert!(scalar_i64(&query(&mut c, "SELECT count(*) FROM demo.Ticks_SPRK").await?) >= 2);
    // Disabled, it stops firing.
    let (status, _) = http_json(
        h,
        "PATCH",
        &format!("/v1/jobs/{id}"),
        Some(r#"{"enabled": false}"#),
    )
    .await?;
    assert_eq!(status, 200);
    let (_, j) = http_json(h, "GET", &format!("/v1/jobs/{id}"), None).await?;
    assert_eq!(j["next_fire_unix_ms"], 0, "{j}");
    let lateness = cluster
        .coordinator_metric("tarn_job_schedule_lateness_seconds_count")
        .await?;
    assert!(
        lateness >= 2.0,
        "lateness observed per scheduled run: {lateness}"
    );
    Ok(())
}

#[tokio::test]
async fn timeouts_and_cancels_stop_runs_and_free_their_vcores() -> anyhow::Result<()> {
    let (_dir, lake) = private_lake()?;
    let cluster = Cluster::start_with(&lake, &[], &[]).await?;
    let h = &cluster.http;
    let (status, job) = post(
        h,
        "/v1/jobs",
        &json!({"name": "slow", "workspace": "demo", "sql": SLOW, "timeout": "2s"}),
    )
    .await?;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().expect("job id").to_string();
    let run = run_now(h, &id, json!({})).await?;
    assert_eq!(run["status"], "timed_out", "{run}");
    assert_eq!(run["error_code"], 2318, "{run}");
    // Its lease is gone: the job pool is all free again.
    let free = || async {
        let (_, pools) = http_json(h, "GET", "/v1/pools", None).await.ok()?;
        let job_pool = pools["pools"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "job")?
            .clone();
        (job_pool["leased_vcores"] == 0).then_some(())
    };
    tarn_tests::eventually(Duration::from_secs(10), "the job pool to be free", free).await?;

    // Cancelled while running: it ends cancelled, and its vCores return.
    let (_, no_limit) = http_json(
        h,
        "PATCH",
        &format!("/v1/jobs/{id}"),
        Some(r#"{"timeout": null}"#),
    )
    .await?;
    assert!(no_limit["spec"]["timeout"].is_null(), "{no_limit}");
    let (status, run) = post(h, &format!("/v1/jobs/{id}/runs"), &json!({})).await?;
    assert_eq!(status, 201, "{run}");
    let run_id = run["run_id"].as_str().expect("run id").to_string();
    tarn_tests::eventually(
        Duration::from_secs(30),
        "the run's statement to start",
        || async {
            let (_, r) = http_json(h, "GET", &format!("/v1/job-runs/{run_id}"), None)
                .await
                .ok()?;
            (r["status"] == "running" && !r["worker"].as_str()?.is_empty()).then_some(())
        },
    )
    .await?;
    // Its record follows the running statement's stages and tasks.
    let current = tarn_tests::eventually(
        Duration::from_secs(30),
        "the run to report its progress",
        || async {
            let (_, r) = http_json(h, "GET", &format!("/v1/job-runs/{run_id}"), None)
                .await
                .ok()?;
            // (Stages and tasks count when the statement runs as a
            // Ballista job; this one may go straight to one executor.)
            let c = r["result"]["current"].clone();
            c.is_object().then_some(c)
        },
    )
    .await?;
    assert_eq!(current["index"], 0, "{current}");
    let (status, cancelled) =
        http_json(h, "DELETE", &format!("/v1/job-runs/{run_id}"), None).await?;
    assert_eq!(status, 200, "{cancelled}");
    let ended = ended(h, &run_id).await?;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    tarn_tests::eventually(Duration::from_secs(10), "the job pool to be free", free).await?;
    // The executors stopped its tasks too.
    tarn_tests::eventually(
        Duration::from_secs(30),
        "no task running on the executors",
        || async {
            let n = cluster
                .executors_metric("tarn_executor_tasks_running")
                .await
                .ok()?;
            (n == 0.0).then_some(())
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn four_jobs_at_once_run_three_and_queue_one_in_order() -> anyhow::Result<()> {
    let (_dir, lake) = private_lake()?;
    let cluster = Cluster::start_with(&lake, &[], &[]).await?;
    let h = &cluster.http;
    let mut runs = Vec::new();
    for i in 0..4 {
        let (status, job) = post(
            h,
            "/v1/jobs",
            &json!({"name": format!("slow {i}"), "workspace": "demo", "sql": SLOW, "vcores": 1}),
        )
        .await?;
        assert_eq!(status, 201, "{job}");
        let (status, run) = post(
            h,
            &format!("/v1/jobs/{}/runs", job["id"].as_str().unwrap_or_default()),
            &json!({}),
        )
        .await?;
        assert_eq!(status, 201, "{run}");
        runs.push(run["run_id"].as_str().expect("run id").to_string());
    }
    let get = |id: String| async move {
        http_json(h, "GET", &format!("/v1/job-runs/{id}"), None)
            .await
            .map(|(_, r)| r)
    };
    for id in &runs[..3] {
        assert_eq!(get(id.clone()).await?["status"], "running");
    }
    let fourth = get(runs[3].clone()).await?;
    assert_eq!(fourth["status"], "queued", "{fourth}");
    assert_eq!(fourth["queue_position"], 1, "{fourth}");
    // One ends: the waiting run starts, in its turn.
    let (status, _) = http_json(h, "DELETE", &format!("/v1/job-runs/{}", runs[0]), None).await?;
    assert_eq!(status, 200);
    tarn_tests::eventually(
        Duration::from_secs(30),
        "the queued run to start",
        || async {
            let r = get(runs[3].clone()).await.ok()?;
            (r["status"] == "running" && r["queue_wait_ms"].as_u64()? > 0).then_some(())
        },
    )
    .await?;
    for id in &runs[1..] {
        http_json(h, "DELETE", &format!("/v1/job-runs/{id}"), None).await?;
    }
    Ok(())
}
