//! Queries and prepared statements over the demo lake.

use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use tarn_tests::{delta_row_count, fetch, query, rows, scalar_i64, Cluster};

#[tokio::test]
async fn counts_match_the_delta_log_and_names_are_typed_as_analysts_type_them() -> anyhow::Result<()>
{
    let cluster = Cluster::start().await?;
    let mut c = cluster.flight_sql().await?;
    for table in [
        "SigninLogs",
        "SecurityEvent",
        "AuditLogs",
        "DeviceNetworkEvents",
    ] {
        let expected = delta_row_count(&cluster.lake.join("demo").join(table))?;
        assert!(expected > 0, "{table} has rows");
        let got = scalar_i64(&query(&mut c, &format!("SELECT COUNT(*) FROM {table}")).await?);
        assert_eq!(
            got, expected,
            "{table}: Tarn's count equals the Delta log's"
        );
        // Fully qualified names resolve to the same table.
        let got =
            scalar_i64(&query(&mut c, &format!("SELECT COUNT(*) FROM tarn.demo.{table}")).await?);
        assert_eq!(got, expected);
    }

    // CamelCase, unquoted, exactly as in KQL.
    let batches = query(
        &mut c,
        "SELECT UserPrincipalName, IPAddress FROM SigninLogs WHERE ResultType = '0' LIMIT 7",
    )
    .await?;
    assert_eq!(rows(&batches), 7);
    assert_eq!(batches[0].schema().field(0).name(), "UserPrincipalName");
    Ok(())
}

#[tokio::test]
async fn planted_incidents_are_found() -> anyhow::Result<()> {
    let t = std::time::Instant::now();
    let cluster = Cluster::start().await?;
    eprintln!("TIMING started {:?}", t.elapsed());
    let mut c = cluster.flight_sql().await?;
    // Password spray: one IP, many users, failures within a short window.
    let batches = query(
        &mut c,
        "SELECT IPAddress, date_trunc('hour', TimeGenerated) AS hour, COUNT(DISTINCT UserPrincipalName) AS users \
         FROM SigninLogs WHERE ResultType = '50126' \
         GROUP BY IPAddress, date_trunc('hour', TimeGenerated) \
         HAVING COUNT(DISTINCT UserPrincipalName) >= 40 ORDER BY users DESC",
    )
    .await?;
    assert_eq!(rows(&batches), 1, "exactly one spraying address");
    let ip = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8")
        .value(0)
        .to_string();
    assert_eq!(ip, "185.220.101.47");

    // Lateral movement: 4648 explicit credentials, then network logons.
    let hosts = scalar_i64(
        &query(
            &mut c,
            "SELECT COUNT(DISTINCT Computer) FROM SecurityEvent \
             WHERE EventID = 4624 AND LogonType IN (3, 10) AND Account = 'CONTOSO\\svc-sqlbackup' AND IpAddress = '10.10.1.33'",
        )
        .await?,
    );
    assert!(hosts >= 4, "the service account hopped to {hosts} hosts");
    eprintln!("TIMING queried {:?}", t.elapsed());
    Ok(())
}

#[tokio::test]
async fn prepared_statements_bind_parameters() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut c = cluster.flight_sql().await?;
    let literal = scalar_i64(
        &query(
            &mut c,
            "SELECT COUNT(*) FROM SigninLogs WHERE ResultType = '50126'",
        )
        .await?,
    );
    assert!(literal > 0);

    let mut stmt = c
        .prepare(
            "SELECT COUNT(*) FROM SigninLogs WHERE ResultType = $1".to_string(),
            None,
        )
        .await?;
    let params = stmt.parameter_schema()?.clone();
    assert_eq!(params.fields().len(), 1, "one parameter: {params:?}");
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["50126"]))],
    )?;
    stmt.set_parameters(batch)?;
    let info = stmt.execute().await?;
    let bound = scalar_i64(&fetch(&mut c, info).await?);
    assert_eq!(
        bound, literal,
        "a bound parameter gives the literal's answer"
    );

    // Rebinding changes the answer; the statement is reusable.
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["0"]))],
    )?;
    stmt.set_parameters(batch)?;
    let info = stmt.execute().await?;
    let ok = scalar_i64(&fetch(&mut c, info).await?);
    let expected_ok = scalar_i64(
        &query(
            &mut c,
            "SELECT COUNT(*) FROM SigninLogs WHERE ResultType = '0'",
        )
        .await?,
    );
    assert_eq!(ok, expected_ok);

    // A ticket runs with the parameters bound when it was issued, even
    // when the statement is bound again before its DoGet.
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["50126"]))],
    )?;
    stmt.set_parameters(batch)?;
    let first = stmt.execute().await?;
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["0"]))],
    )?;
    stmt.set_parameters(batch)?;
    let second = stmt.execute().await?;
    assert_eq!(scalar_i64(&fetch(&mut c, second).await?), expected_ok);
    assert_eq!(
        scalar_i64(&fetch(&mut c, first).await?),
        literal,
        "the first ticket keeps the parameter it was issued with"
    );
    stmt.close().await?;
    Ok(())
}

#[tokio::test]
async fn results_stream_in_many_batches() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut c = cluster.flight_sql().await?;
    let expected = delta_row_count(&cluster.lake.join("demo").join("SecurityEvent"))?;
    let batches = query(&mut c, "SELECT * FROM SecurityEvent").await?;
    assert_eq!(rows(&batches) as i64, expected);
    assert!(
        batches.len() > 1,
        "a large result arrives as a stream of batches, got {}",
        batches.len()
    );
    Ok(())
}

/// A union of constant rows and table scans, read (not written): every
/// task of the union's stage reports the same operators, so the stage
/// completes. Before, tasks that did not own a constant branch reported
/// one metric more, the scheduler dropped their status and the query hung.
#[tokio::test]
async fn unions_of_constants_and_scans_return_every_row() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut c = cluster.flight_sql().await?;
    let scans = scalar_i64(
        &query(
            &mut c,
            "SELECT count(*) FROM SigninLogs WHERE ResultType = '0' OR ResultType <> '0'",
        )
        .await?,
    );
    let sql = "SELECT count(*) FROM (\
        SELECT 11 AS k UNION ALL \
        SELECT CAST(length(UserPrincipalName) AS BIGINT) FROM SigninLogs WHERE ResultType = '0' UNION ALL \
        SELECT CAST(length(UserPrincipalName) AS BIGINT) FROM SigninLogs WHERE ResultType <> '0' UNION ALL \
        SELECT 1 UNION ALL SELECT k FROM (VALUES (2), (3)) t(k) WHERE k > 10) u";
    let got = tokio::time::timeout(std::time::Duration::from_secs(60), query(&mut c, sql))
        .await
        .map_err(|_| anyhow::anyhow!("the union query did not return within 60 s"))??;
    assert_eq!(scalar_i64(&got), scans + 2, "both scans and both constants");
    Ok(())
}

/// EXPLAIN answers with the plan (its plan carries text only, and the
/// executor's plan check lets it through).
#[tokio::test]
async fn explain_shows_the_plan() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut c = cluster.flight_sql().await?;
    let batches = query(
        &mut c,
        "EXPLAIN SELECT count(*) FROM SigninLogs WHERE ResultType = '0'",
    )
    .await?;
    let text = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    assert!(text.contains("physical_plan"), "{text}");
    assert!(text.contains("SigninLogs"), "the scan is named:\n{text}");
    Ok(())
}

/// The pure table functions run on the cluster, alone, projected away
/// (`count(*)`), under unions split over tasks and joined with the lake;
/// any other table function is refused before planning.
#[tokio::test]
async fn series_functions_run_and_other_table_functions_are_refused() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut c = cluster.flight_sql().await?;
    let signins = scalar_i64(&query(&mut c, "SELECT count(*) FROM SigninLogs").await?);
    for (sql, want) in [
        ("SELECT count(*) FROM range(100000)", 100_000),
        ("SELECT sum(value) FROM generate_series(1, 10)", 55),
        (
            "SELECT count(*) FROM (SELECT * FROM range(10) UNION ALL SELECT * FROM range(10) \
             UNION ALL SELECT value FROM generate_series(1, 5) ORDER BY 1) t",
            25,
        ),
        (
            "SELECT count(*) FROM (SELECT 1 AS x FROM range(7) UNION ALL \
             SELECT length(UserPrincipalName) FROM SigninLogs UNION ALL SELECT 3) t",
            signins + 8,
        ),
        ("SELECT count(*) FROM range(1000) a CROSS JOIN range(1000) b", 1_000_000),
        (
            "SELECT count(*) FROM generate_series(DATE '2024-01-01', DATE '2024-01-31', INTERVAL '1 day')",
            31,
        ),
    ] {
        let got = query(&mut c, sql)
            .await
            .map_err(|e| anyhow::anyhow!("{sql}: {e}"))?;
        assert_eq!(scalar_i64(&got), want, "{sql}");
    }
    for sql in [
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT count(*) FROM range(10000000)",
    ] {
        let err = query(&mut c, sql).await.expect_err(sql);
        let code = tarn_tests::error_code(&err);
        assert_eq!(code.as_deref(), Some("2803"), "{sql}: {}", err.message());
    }
    Ok(())
}

/// The gateway's `/metrics` counts what its users did — a query that ran,
/// one refused (by its code), the bytes sent — and the executors count the
/// work they ran for it.
#[tokio::test]
async fn metrics_count_queries_by_outcome_on_gateway_and_executors() -> anyhow::Result<()> {
    use tarn_common::metrics::sample;
    let cluster = Cluster::start().await?;
    let mut c = cluster.flight_sql().await?;
    let gateway = |text: &str, name: &str| sample(text, name).unwrap_or(0.0);

    let (status, before) = cluster.http_get("/metrics").await?;
    assert_eq!(status, 200, "{before}");
    let ok_before = gateway(&before, "tarn_gateway_queries_total{outcome=\"ok\"}");

    let got = query(
        &mut c,
        "SELECT UserPrincipalName FROM demo.SigninLogs LIMIT 50",
    )
    .await?;
    assert_eq!(rows(&got), 50);
    let refused = query(&mut c, "SELECT * FROM demo.NoSuchTable").await;
    assert!(refused.is_err());

    let (_, after) = cluster.http_get("/metrics").await?;
    assert_eq!(
        gateway(&after, "tarn_gateway_queries_total{outcome=\"ok\"}"),
        ok_before + 1.0,
        "{after}"
    );
    assert!(
        gateway(
            &after,
            "tarn_gateway_queries_total{outcome=\"TABLE_NOT_FOUND\"}"
        ) >= 1.0,
        "{after}"
    );
    assert!(
        gateway(&after, "tarn_gateway_result_bytes_total") > 0.0,
        "{after}"
    );
    assert!(gateway(&after, "tarn_gateway_sessions") >= 1.0, "{after}");
    assert_eq!(
        gateway(&after, "tarn_gateway_queries_running"),
        0.0,
        "{after}"
    );

    // The read ran on an executor, as a Ballista task or a direct run.
    let mut done = 0.0;
    for e in cluster.executors().await? {
        done += cluster
            .executor_metric(&e, "tarn_executor_tasks_total{outcome=\"ok\"}")
            .await?;
        done += cluster
            .executor_metric(&e, "tarn_executor_direct_runs_total{outcome=\"ok\"}")
            .await?;
        assert!(
            cluster
                .executor_metric(&e, "tarn_executor_memory_limit_bytes")
                .await?
                > 0.0
        );
    }
    assert!(done >= 1.0, "no executor counts the work it ran");
    Ok(())
}
