//! Sessions end when idle; a gateway without executors says so.

use std::time::{Duration, Instant};

use tarn_tests::{demo_lake, free_port, http_get, query, scalar_i64, Cluster, Role};
use tonic::Code;

#[tokio::test]
async fn idle_sessions_end_and_say_how_to_come_back() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(
        &demo_lake()?,
        &[],
        &[("TARN_GATEWAY__SESSION_IDLE_TIMEOUT", "1s")],
    )
    .await?;
    let mut c = cluster.flight_sql().await?;
    c.handshake("alice", "dev").await?;
    assert_eq!(scalar_i64(&query(&mut c, "SELECT 1").await?), 1);

    // The gateway ends it by itself (its own count drops to none) …
    tarn_tests::eventually(
        Duration::from_secs(15),
        "the idle session to end",
        || async {
            let n = cluster.gateway_metric("tarn_gateway_sessions").await.ok()?;
            (n == 0.0).then_some(())
        },
    )
    .await?;
    // … and the client is told so on its next request.
    let err = query(&mut c, "SELECT 1")
        .await
        .expect_err("the idle session has ended");
    assert_eq!(err.code(), Code::Unauthenticated, "{}", err.message());
    // The error says why the session ended and how to get a new one.
    assert!(err.message().contains("TARN-2307"), "{}", err.message());
    assert!(err.message().contains("inactivity"), "{}", err.message());
    assert!(err.message().contains("new session"), "{}", err.message());

    // A new handshake opens a new session.
    c.handshake("alice", "dev").await?;
    assert_eq!(scalar_i64(&query(&mut c, "SELECT 2").await?), 2);
    Ok(())
}

#[tokio::test]
async fn queries_without_executors_fail_fast_with_pool_not_available() -> anyhow::Result<()> {
    let lake = demo_lake()?;
    let lake = lake.to_str().expect("utf-8 path");
    let coordinator = format!("127.0.0.1:{}", free_port());
    let flight = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let state = tempfile::tempdir()?;
    let _coordinator = Role::spawn(&[
        "coordinator",
        "--bind",
        &coordinator,
        "--http-bind",
        "",
        "--state-dir",
        state.path().to_str().expect("utf-8 path"),
        "--lake",
        lake,
    ])?;
    let _gateway = Role::spawn(&[
        "gateway",
        "--flight-addr",
        &flight,
        "--http-addr",
        &http,
        "--coordinator",
        &coordinator,
        "--lake",
        lake,
        "--auth",
        "dev",
    ])?;

    // Not ready: no interactive executor has registered.
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        match http_get(&http, "/readyz").await {
            Ok((status, body)) if body.contains("interactive executor") => {
                assert_eq!(status, 503);
                break body;
            }
            _ if Instant::now() > deadline => anyhow::bail!("gateway never answered /readyz"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(body.contains("\"interactive_executors\":0"), "{body}");

    let channel = tonic::transport::Channel::from_shared(format!("http://{flight}"))?
        .connect()
        .await?;
    let mut c = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    let started = Instant::now();
    let err = query(&mut c, "SELECT COUNT(*) FROM SigninLogs")
        .await
        .expect_err("no executor, no answer");
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("TARN-2301"), "{}", err.message());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused at once, not after a hang"
    );
    Ok(())
}

#[tokio::test]
async fn a_session_streaming_a_long_query_is_not_idle() -> anyhow::Result<()> {
    use arrow_flight::CancelFlightInfoRequest;
    use futures::TryStreamExt;
    use prost::Message;

    let cluster = Cluster::start_with(
        &demo_lake()?,
        &[],
        &[("TARN_GATEWAY__SESSION_IDLE_TIMEOUT", "1s")],
    )
    .await?;
    let mut c = cluster.flight_sql().await?;
    // A lease of 4 vCores with queries of 2 partitions: the long query
    // leaves room in the lease for the session's next one.
    c.set_header("x-tarn-vcores", "4");
    c.handshake("alice", "dev").await?;
    query(&mut c, "SET datafusion.execution.target_partitions = 2").await?;
    let info = c
        .execute(
            "SELECT COUNT(*) FROM SecurityEvent a CROSS JOIN SecurityEvent b WHERE a.EventID + b.EventID > 0".into(),
            None,
        )
        .await?;
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let mut reader = c.clone();
    let fetch = tokio::spawn(async move {
        let stream = reader.do_get(ticket).await.map_err(tarn_tests::to_status)?;
        stream
            .try_collect::<Vec<_>>()
            .await
            .map_err(tarn_tests::to_status)
    });

    // Longer than the idle timeout, with no other request from the session.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        scalar_i64(&query(&mut c, "SELECT 3").await?),
        3,
        "a session with a query in flight is not idle"
    );

    let action = arrow_flight::Action::new(
        "CancelFlightInfo",
        CancelFlightInfoRequest::new(info).encode_to_vec(),
    );
    c.do_action(action).await?.try_next().await?;
    let outcome = tokio::time::timeout(Duration::from_secs(10), fetch).await??;
    assert_eq!(outcome.expect_err("cancelled").code(), Code::Cancelled);
    Ok(())
}
