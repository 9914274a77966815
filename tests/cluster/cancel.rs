//! Cancelling a running query stops its stream with a coded error and
//! stops its Ballista job on the executors.

use std::time::{Duration, Instant};

use arrow_flight::{CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus};
use futures::TryStreamExt;
use prost::Message;
use tarn_tests::{query, scalar_i64, to_status, Cluster};

#[tokio::test]
async fn cancel_flight_info_stops_the_query_and_its_job() -> anyhow::Result<()> {
    // The Ballista job is what is watched here (direct runs: direct.rs).
    let cluster = Cluster::start_with(
        &tarn_tests::demo_lake()?,
        &[],
        &[("TARN_GATEWAY__DIRECT_RUNS", "false")],
    )
    .await?;
    let mut c = cluster.flight_sql().await?;
    // ~13 billion joined rows: runs far longer than this test.
    let info = c
        .execute(
            "SELECT COUNT(*) FROM SecurityEvent a CROSS JOIN SecurityEvent b WHERE a.EventID + b.EventID > 0".into(),
            None,
        )
        .await?;
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let mut reader = c.clone();
    let fetch = tokio::spawn(async move {
        let stream = reader.do_get(ticket).await.map_err(to_status)?;
        stream.try_collect::<Vec<_>>().await.map_err(to_status)
    });
    // Wait until the job's long stage runs on an executor. The scan that
    // feeds the cross join is a stage of its own and ends quickly; a cancel
    // landing between it and the join would find no task to stop. So wait
    // for a stage to have succeeded (by the scheduler's progress) and
    // for a task to be running by the executors' own count.
    let executors = cluster.executors().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = cluster.jobs().await?;
        let mut past_first_stage = false;
        if let Some(job) = jobs.iter().find(|j| j.status == "running") {
            let query_id = job.job_name.split('@').next().unwrap_or_default();
            let progress = cluster
                .coordinator()
                .await?
                .get_query_progress(tarn_proto::GetQueryProgressRequest {
                    header: Some(tarn_proto::header()),
                    query_id: query_id.to_string(),
                })
                .await?
                .into_inner();
            past_first_stage = progress.stages_done >= 1 && progress.tasks_running > 0;
        }
        let mut running = 0.0;
        if past_first_stage {
            for e in &executors {
                running += cluster
                    .executor_metric(e, "tarn_executor_tasks_running")
                    .await?;
            }
        }
        if running > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the query's join stage never ran on an executor: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let action = arrow_flight::Action::new(
        "CancelFlightInfo",
        CancelFlightInfoRequest::new(info).encode_to_vec(),
    );
    let mut results = c.do_action(action).await?;
    let body = results.try_next().await?.expect("a cancel result");
    let result = CancelFlightInfoResult::decode(body.body)?;
    assert_eq!(result.status, CancelStatus::Cancelled as i32);

    let outcome = tokio::time::timeout(Duration::from_secs(10), fetch).await??;
    let err = outcome.expect_err("a cancelled query does not return a result");
    assert_eq!(err.code(), tonic::Code::Cancelled, "{}", err.message());
    assert!(err.message().contains("TARN-2804"), "{}", err.message());

    // Its Ballista job stops too, freeing the executors.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let jobs = cluster.jobs().await?;
        if !jobs
            .iter()
            .any(|j| j.status == "running" || j.status == "queued")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job kept running after cancel: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the executors' tasks really ended, cancelled: measured by the
    // executors themselves, not by the scheduler's view of the job.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (mut running, mut cancelled) = (0.0, 0.0);
        for e in &executors {
            running += cluster
                .executor_metric(e, "tarn_executor_tasks_running")
                .await?;
            cancelled += cluster
                .executor_metric(e, "tarn_executor_tasks_total{outcome=\"cancelled\"}")
                .await?;
        }
        if running == 0.0 && cancelled > 0.0 {
            break;
        }
        if Instant::now() >= deadline {
            let mut seen = String::new();
            for e in &executors {
                let (_, text) =
                    tarn_tests::http_get(&format!("{}:{}", e.host, e.metrics_port), "/metrics")
                        .await?;
                seen.push_str(&text);
            }
            panic!("executors still run {running} task(s) ({cancelled} cancelled) after the cancel:\n{seen}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(scalar_i64(&query(&mut c, "SELECT 1").await?), 1);
    Ok(())
}
