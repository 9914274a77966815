//! Direct runs: reads without a shuffle go straight to an executor of the
//! session's pool, with the same answers as Ballista jobs, and stop when
//! cancelled.

use std::time::Duration;

use arrow::record_batch::RecordBatch;
use arrow_flight::{CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus};
use futures::TryStreamExt;
use prost::Message;
use tarn_tests::{demo_lake, eventually, query, rows, scalar_i64, to_status, Cluster};

fn text(batches: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .map(|t| t.to_string())
        .unwrap_or_else(|e| e.to_string())
}

const READS: &[&str] = &[
    // a scan with a filter: no shuffle at any partition count
    "SELECT TimeGenerated, IPAddress, ResultType FROM SigninLogs \
     WHERE UserPrincipalName = 'megan.bowen@contoso.com' ORDER BY TimeGenerated",
    // an aggregate and a join over small inputs: one partition, no shuffle
    "SELECT ResultType, COUNT(*) AS n FROM SigninLogs GROUP BY ResultType ORDER BY n DESC, ResultType",
    "SELECT i.Department, COUNT(*) AS n FROM SigninLogs s \
     JOIN IdentityInfo i ON s.UserPrincipalName = i.AccountUPN \
     GROUP BY i.Department ORDER BY n DESC, i.Department",
];

#[tokio::test]
async fn small_reads_run_directly_with_the_answers_of_ballista_jobs() -> anyhow::Result<()> {
    let direct = Cluster::start().await?;
    let jobs = Cluster::start_with(
        &demo_lake()?,
        &[],
        &[("TARN_GATEWAY__DIRECT_RUNS", "false")],
    )
    .await?;
    let mut d = direct.flight_sql().await?;
    let mut j = jobs.flight_sql().await?;
    for sql in READS {
        let got = query(&mut d, sql).await?;
        let want = query(&mut j, sql).await?;
        assert!(
            want.iter().map(|b| b.num_rows()).sum::<usize>() > 0,
            "{sql}"
        );
        assert_eq!(text(&got), text(&want), "{sql}");
    }
    // Ran on an executor without a Ballista job; the other cluster's reads
    // were jobs.
    assert!(
        direct.jobs().await?.is_empty(),
        "{:?}",
        direct.jobs().await?
    );
    assert!(jobs.jobs().await?.len() >= READS.len());
    Ok(())
}

#[tokio::test]
async fn cancelling_a_direct_run_stops_it() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut c = cluster.flight_sql().await?;
    // Small inputs, so it runs directly; ~13 billion joined rows, so it
    // runs far longer than this test.
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
    // Wait until the run streams from an executor, by its own count.
    eventually(
        Duration::from_secs(30),
        "the direct run to start",
        || async {
            let n = cluster
                .executors_metric("tarn_executor_direct_runs_running")
                .await
                .ok()?;
            (n > 0.0).then_some(())
        },
    )
    .await?;
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
    assert!(cluster.jobs().await?.is_empty(), "it was a direct run");
    // The executor stopped it: measured on the executor, which counts the
    // run as cancelled when its stream really ends.
    eventually(
        Duration::from_secs(15),
        "the executor to end the run, cancelled",
        || async {
            let running = cluster
                .executors_metric("tarn_executor_direct_runs_running")
                .await
                .ok()?;
            let cancelled = cluster
                .executors_metric("tarn_executor_direct_runs_total{outcome=\"cancelled\"}")
                .await
                .ok()?;
            (running == 0.0 && cancelled > 0.0).then_some(())
        },
    )
    .await?;
    // Its reservation is given back (the coordinator holds none), so a
    // read using every vCore of the session's lease still runs directly
    // (were the cancelled run still holding one, it would become a
    // Ballista job).
    eventually(
        Duration::from_secs(15),
        "the coordinator to hold no direct reservation",
        || async {
            let held = cluster
                .coordinator_metric("tarn_direct_reserved_vcores")
                .await
                .ok()?;
            (held == 0.0).then_some(())
        },
    )
    .await?;
    let n = scalar_i64(
        &query(
            &mut c,
            "SELECT COUNT(*) FROM SigninLogs WHERE ResultType = '0'",
        )
        .await?,
    );
    assert!(n > 0);
    assert!(
        cluster.jobs().await?.is_empty(),
        "{:?}",
        cluster.jobs().await?
    );
    Ok(())
}

/// Reads with a shuffle at the session's 2 partitions: groupings, a join,
/// a window, a distinct.
const MULTI_STAGE: &[&str] = &[
    "SELECT ResultType, COUNT(*) AS n, COUNT(DISTINCT IPAddress) AS ips FROM SigninLogs \
     GROUP BY ResultType ORDER BY n DESC, ResultType",
    "SELECT i.Department, COUNT(*) AS n FROM SigninLogs s \
     JOIN IdentityInfo i ON s.UserPrincipalName = i.AccountUPN \
     GROUP BY i.Department ORDER BY n DESC, i.Department",
    "SELECT UserPrincipalName, IPAddress, n FROM ( \
       SELECT UserPrincipalName, IPAddress, COUNT(*) AS n, \
              ROW_NUMBER() OVER (PARTITION BY UserPrincipalName ORDER BY COUNT(*) DESC, IPAddress) AS r \
       FROM SigninLogs GROUP BY UserPrincipalName, IPAddress) \
     WHERE r = 1 ORDER BY UserPrincipalName",
    "SELECT DISTINCT Computer FROM SecurityEvent ORDER BY Computer",
];

/// The `tarn_execution` row of an EXPLAIN.
async fn execution_of(
    c: &mut arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
) -> anyhow::Result<String> {
    explain_row(c, sql, "tarn_execution").await
}

/// The text of `EXPLAIN sql`'s row of `plan_type`.
async fn explain_row(
    c: &mut arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
    plan_type: &str,
) -> anyhow::Result<String> {
    let batches = query(c, &format!("EXPLAIN {sql}")).await?;
    for b in &batches {
        let kind = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        let text = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8)?;
        let kind = kind
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("utf8");
        let text = text
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("utf8");
        for i in 0..b.num_rows() {
            if kind.value(i) == plan_type {
                return Ok(text.value(i).to_string());
            }
        }
    }
    anyhow::bail!("no {plan_type} row in EXPLAIN {sql}: {}", text(&batches))
}

#[tokio::test]
async fn multi_stage_reads_run_lease_local_with_the_answers_of_ballista_stages(
) -> anyhow::Result<()> {
    // Without the small-input rule every read below has a shuffle at the
    // session's 2 partitions.
    let no_small = ("TARN_GATEWAY__DIRECT_SMALL_INPUT_BYTES", "0");
    let local = Cluster::start_with(&demo_lake()?, &[], &[no_small]).await?;
    let staged = Cluster::start_with(
        &demo_lake()?,
        &[],
        &[no_small, ("TARN_GATEWAY__EXECUTION", "distributed")],
    )
    .await?;
    let mut l = local.flight_sql().await?;
    let mut s = staged.flight_sql().await?;
    for sql in MULTI_STAGE {
        let got = query(&mut l, sql).await?;
        let want = query(&mut s, sql).await?;
        assert!(rows(&want) > 0, "{sql}");
        assert_eq!(text(&got), text(&want), "{sql}");
    }
    // The lease-local cluster ran no Ballista job, and its executor ran
    // every read as one direct run; the other ran a job per read.
    assert!(local.jobs().await?.is_empty(), "{:?}", local.jobs().await?);
    assert!(
        local
            .executors_metric("tarn_executor_direct_runs_total{outcome=\"ok\"}")
            .await?
            >= MULTI_STAGE.len() as f64
    );
    assert!(staged.jobs().await?.len() >= MULTI_STAGE.len());

    // EXPLAIN says which, and why; the log line of each query too.
    let why = execution_of(&mut l, MULTI_STAGE[1]).await?;
    assert!(why.starts_with("lease-local:"), "{why}");
    assert!(why.contains("2 leased vCores"), "{why}");
    let why = execution_of(&mut s, MULTI_STAGE[1]).await?;
    assert!(
        why.starts_with("distributed:") && why.contains("execution = distributed"),
        "{why}"
    );
    // And its plan is the one that runs: the lease-local join is a hash
    // join, made with DataFusion's settings, where the staged one is a
    // sort-merge join, made with Ballista's.
    let plan = explain_row(&mut l, MULTI_STAGE[1], "physical_plan").await?;
    assert!(
        plan.contains("HashJoinExec") && !plan.contains("SortMergeJoinExec"),
        "{plan}"
    );
    let plan = explain_row(&mut s, MULTI_STAGE[1], "physical_plan").await?;
    assert!(plan.contains("SortMergeJoinExec"), "{plan}");
    let why = execution_of(&mut l, "SELECT TimeGenerated FROM SigninLogs LIMIT 3").await?;
    assert!(why.starts_with("direct:"), "{why}");
    let log = local.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("query dispatched") && l.contains("lease-local")),
        "{}",
        local.log_tail()
    );
    Ok(())
}

#[tokio::test]
async fn the_input_limit_sends_larger_reads_to_ballista_stages() -> anyhow::Result<()> {
    // 1 KiB: every demo table is larger, so every multi-stage read goes to
    // Ballista, with the reason given; a plan without a shuffle still runs
    // directly.
    let cluster = Cluster::start_with(
        &demo_lake()?,
        &[],
        &[
            ("TARN_GATEWAY__DIRECT_SMALL_INPUT_BYTES", "0"),
            ("TARN_GATEWAY__LOCAL_MAX_INPUT_BYTES", "1024"),
        ],
    )
    .await?;
    let mut c = cluster.flight_sql().await?;
    let why = execution_of(&mut c, MULTI_STAGE[0]).await?;
    assert!(
        why.starts_with("distributed:") && why.contains("local_max_input_bytes = 1.0 KiB"),
        "{why}"
    );
    let before = cluster.jobs().await?.len();
    assert!(rows(&query(&mut c, MULTI_STAGE[0]).await?) > 0);
    assert_eq!(
        cluster.jobs().await?.len(),
        before + 1,
        "the read was a job"
    );
    // A read without a shuffle is not held to the limit.
    let why = execution_of(&mut c, "SELECT TimeGenerated FROM SigninLogs LIMIT 3").await?;
    assert!(why.starts_with("direct:"), "{why}");
    Ok(())
}
