//! Errors a client can provoke: each carries its gRPC code, its stable
//! number and a fix; none harms the cluster.

use prost::Message;
use tarn_tests::{query, scalar_i64, Cluster};
use tonic::Code;

async fn expect_error(
    c: &mut arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
    code: Code,
    number: &str,
    mentions: &str,
) {
    let err = query(c, sql).await.expect_err(sql);
    assert_eq!(err.code(), code, "{sql}: {}", err.message());
    assert!(
        err.message().contains(number),
        "{sql}: expected {number} in {}",
        err.message()
    );
    assert!(
        err.message().contains("Fix:"),
        "{sql}: a fix is named: {}",
        err.message()
    );
    assert!(
        err.message().contains(mentions),
        "{sql}: names the cause '{mentions}': {}",
        err.message()
    );
    assert_eq!(
        tarn_tests::error_code(&err).as_deref(),
        Some(number.trim_start_matches("TARN-")),
        "{sql}: the code travels as metadata too"
    );
}

#[tokio::test]
async fn bad_statements_get_coded_errors() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut c = cluster.flight_sql().await?;
    expect_error(
        &mut c,
        "SELEC 1",
        Code::InvalidArgument,
        "TARN-2801",
        "SELEC",
    )
    .await;
    expect_error(
        &mut c,
        "SELECT * FROM nowhere.SigninLogs",
        Code::NotFound,
        "TARN-2001",
        "nowhere",
    )
    .await;
    expect_error(
        &mut c,
        "SELECT * FROM NoSuchTable",
        Code::NotFound,
        "TARN-2100",
        "NoSuchTable",
    )
    .await;
    expect_error(
        &mut c,
        "SELECT NoSuchColumn FROM SigninLogs",
        Code::NotFound,
        "TARN-2101",
        "NoSuchColumn",
    )
    .await;
    expect_error(
        &mut c,
        "SELECT * FROM other.demo.SigninLogs",
        Code::NotFound,
        "TARN-2001",
        "other",
    )
    .await;
    // Nothing reaches outside the lake.
    expect_error(
        &mut c,
        "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'",
        Code::PermissionDenied,
        "TARN-2206",
        "only operators",
    )
    .await;
    expect_error(
        &mut c,
        "COPY (SELECT 1) TO '/tmp/tarn-escape.csv'",
        Code::PermissionDenied,
        "TARN-2206",
        "only operators",
    )
    .await;
    assert!(!std::path::Path::new("/tmp/tarn-escape.csv").exists());

    // A path is not a table name: refused as a path, before any lookup,
    // so no file outside the lake is ever read.
    expect_error(
        &mut c,
        "SELECT * FROM '/etc/passwd'",
        Code::PermissionDenied,
        "TARN-2206",
        "'/etc/passwd' is a path",
    )
    .await;
    expect_error(
        &mut c,
        "SELECT * FROM demo.\"../../../../etc/passwd\"",
        Code::PermissionDenied,
        "TARN-2206",
        "is a path",
    )
    .await;

    // The cluster is unharmed.
    assert_eq!(scalar_i64(&query(&mut c, "SELECT 41 + 1").await?), 42);
    Ok(())
}

#[tokio::test]
async fn unknown_tickets_and_handles_are_refused() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut c = cluster.flight_sql().await?;
    let Err(err) = c
        .do_get(arrow_flight::Ticket::new(b"garbage".to_vec()))
        .await
    else {
        panic!("a garbage ticket is refused");
    };
    let status = tarn_tests::to_status(err);
    assert_eq!(
        tarn_tests::error_code(&status).as_deref(),
        Some("2805"),
        "{status:?}"
    );
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("ticket"), "{status:?}");

    // A prepared statement handle nobody made.
    let cmd = arrow_flight::sql::CommandPreparedStatementQuery {
        prepared_statement_handle: b"no-such-handle".to_vec().into(),
    };
    let ticket =
        arrow_flight::Ticket::new(arrow_flight::sql::ProstMessageExt::as_any(&cmd).encode_to_vec());
    let Err(err) = c.do_get(ticket).await else {
        panic!("an unknown prepared statement handle is refused");
    };
    let status = tarn_tests::to_status(err);
    assert_eq!(
        tarn_tests::error_code(&status).as_deref(),
        Some("2807"),
        "{status:?}"
    );
    assert_eq!(scalar_i64(&query(&mut c, "SELECT 1").await?), 1);
    Ok(())
}
