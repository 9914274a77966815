//! Direct tickets sent straight to an executor's Flight port.

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::Ticket;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use futures::TryStreamExt;
use prost::Message;
use tarn_common::reservation::{sha256_hex, Grant};
use tarn_proto::*;
use tarn_tests::{internal_endpoint, Cluster};

/// The interactive executor's id and Flight address.
async fn interactive_executor(cluster: &Cluster) -> anyhow::Result<(String, String)> {
    let e = cluster.interactive_executor().await?;
    Ok((
        e.executor_id,
        format!("http://{}:{}", e.host, e.flight_port),
    ))
}

/// A physical plan of `sql` (after `setup`), encoded as executors decode it.
async fn plan_bytes(setup: impl AsyncFnOnce(&SessionContext), sql: &str) -> Vec<u8> {
    let ctx = SessionContext::new();
    setup(&ctx).await;
    let plan = ctx
        .sql(sql)
        .await
        .expect("plans")
        .create_physical_plan()
        .await
        .expect("physical plan");
    datafusion_proto::bytes::physical_plan_to_bytes(plan)
        .expect("encodes")
        .to_vec()
}

/// A CSV scan of the standalone's token key file: what the attack used.
async fn key_file_scan(cluster: &Cluster) -> Vec<u8> {
    let path = cluster.state.join("gateway.key").display().to_string();
    plan_bytes(
        async |ctx| {
            ctx.register_csv(
                "k",
                &path,
                CsvReadOptions::new()
                    .has_header(false)
                    .file_extension(".key"),
            )
            .await
            .expect("registers");
        },
        "SELECT * FROM k",
    )
    .await
}

fn ticket(plan: Vec<u8>, reservation_id: &str, grant: String) -> Ticket {
    let mut t = DIRECT_TICKET_MAGIC.to_vec();
    DirectTicket {
        plan,
        settings: Default::default(),
        query_id: "attack".into(),
        reservation_id: reservation_id.into(),
        grant,
    }
    .encode(&mut t)
    .expect("encodes");
    Ticket { ticket: t.into() }
}

/// Sends a ticket as a gateway would (with the gateway's certificate: the
/// attacker here holds one); the rows it streamed, or the refusal's code
/// and message.
async fn send(cluster: &Cluster, address: &str, t: Ticket) -> Result<usize, (String, String)> {
    let addr = address.trim_start_matches("http://");
    let channel = internal_endpoint(
        addr,
        &cluster.cluster_dir(),
        Some(tarn_common::cluster::Role::Gateway),
    )
    .map_err(|e| ("endpoint".to_string(), e.to_string()))?
    .connect()
    .await
    .map_err(|e| ("connect".to_string(), e.to_string()))?;
    let mut client = FlightServiceClient::new(channel);
    let code = |s: &tonic::Status| tarn_tests::error_code(s).unwrap_or_else(|| "none".into());
    let stream = client
        .do_get(t)
        .await
        .map_err(|s| (code(&s), s.message().to_string()))?
        .into_inner();
    let data: Vec<_> = stream
        .try_collect()
        .await
        .map_err(|s| (code(&s), s.message().to_string()))?;
    let batches = arrow_flight::utils::flight_data_to_batches(&data)
        .map_err(|e| ("decode".to_string(), e.to_string()))?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

fn grant_for(cluster: &Cluster, executor_id: &str, id: &str, plan: &[u8]) -> String {
    let key = tarn_common::cluster::reservation_key(&cluster.cluster_dir())
        .expect("the standalone's cluster key");
    Grant {
        reservation_id: id.into(),
        executor_id: executor_id.into(),
        lease_id: "attack".into(),
        plan_sha256: sha256_hex(plan),
        exp_ms: tarn_common::clock::unix_ms() + 30_000,
        vcores: 1,
    }
    .sign(&key)
}

/// The finding: a CSV scan of the gateway's key file in a hand-built
/// ticket returned the key. Without a reservation the executor does not
/// even decode the plan; with one forged under another key, neither.
#[tokio::test]
async fn a_direct_ticket_without_a_coordinator_reservation_is_refused() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let (_id, address) = interactive_executor(&cluster).await?;
    let key_file = cluster.state.join("gateway.key");
    assert!(
        key_file.is_file(),
        "the standalone keeps its token key there"
    );
    let plan = key_file_scan(&cluster).await;

    let no_grant = send(
        &cluster,
        &address,
        ticket(plan.clone(), "r1", String::new()),
    )
    .await;
    let (code, message) = no_grant.expect_err("refused");
    assert_eq!(code, "2209", "{message}");

    let forged = Grant {
        reservation_id: "r2".into(),
        executor_id: "anything".into(),
        lease_id: "l".into(),
        plan_sha256: sha256_hex(&plan),
        exp_ms: u64::MAX,
        vcores: 1,
    }
    .sign(&tarn_common::auth::TokenKey::from_secret(&[1u8; 32]));
    let (code, message) = send(&cluster, &address, ticket(plan, "r2", forged))
        .await
        .expect_err("refused");
    assert_eq!(code, "2209", "{message}");
    assert!(message.contains("not signed by"), "{message}");
    Ok(())
}

/// Even a valid reservation (as an insider holding the cluster key could
/// sign) does not make the executor read files outside the lake or write
/// files: the plan check refuses CSV scans and file sinks by node.
#[tokio::test]
async fn a_reserved_plan_still_cannot_scan_the_key_file_or_write_files() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let (executor_id, address) = interactive_executor(&cluster).await?;
    let scan = key_file_scan(&cluster).await;
    let grant = grant_for(&cluster, &executor_id, "scan-1", &scan);
    let (code, message) = send(&cluster, &address, ticket(scan, "scan-1", grant))
        .await
        .expect_err("a CSV scan is refused");
    assert_eq!(code, "2208", "{message}");

    let outside = cluster.state.join("planted.csv");
    let sink_sql = format!(
        "COPY (SELECT 1 AS x) TO '{}' STORED AS CSV",
        outside.display()
    );
    let sink = plan_bytes(async |_| {}, &sink_sql).await;
    let grant = grant_for(&cluster, &executor_id, "sink-1", &sink);
    let (code, message) = send(&cluster, &address, ticket(sink, "sink-1", grant))
        .await
        .expect_err("a file sink is refused");
    assert_eq!(code, "2208", "{message}");
    assert!(!outside.exists(), "nothing was written outside the lake");
    Ok(())
}

/// A reservation admits its own plan once, on its own executor: a replayed
/// ticket, or its grant on another plan, is refused. The control: the same
/// plan with a fresh reservation runs.
#[tokio::test]
async fn a_reservation_runs_its_plan_once() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let (executor_id, address) = interactive_executor(&cluster).await?;
    let plan = plan_bytes(
        async |_| {},
        "SELECT * FROM (VALUES (1), (2)) AS t(x) ORDER BY x",
    )
    .await;
    let grant = grant_for(&cluster, &executor_id, "once-1", &plan);
    let rows = send(
        &cluster,
        &address,
        ticket(plan.clone(), "once-1", grant.clone()),
    )
    .await;
    assert_eq!(rows, Ok(2), "a reserved Tarn-shaped plan runs");
    let (code, message) = send(
        &cluster,
        &address,
        ticket(plan.clone(), "once-1", grant.clone()),
    )
    .await
    .expect_err("a replay is refused");
    assert_eq!(code, "2209", "{message}");
    assert!(message.contains("used already"), "{message}");

    let other = plan_bytes(async |_| {}, "SELECT 3 AS x").await;
    let grant2 = grant_for(&cluster, &executor_id, "once-2", &plan);
    let (code, message) = send(&cluster, &address, ticket(other, "once-2", grant2))
        .await
        .expect_err("a grant for another plan is refused");
    assert_eq!(code, "2209", "{message}");
    assert!(message.contains("another plan"), "{message}");

    let fresh = grant_for(&cluster, &executor_id, "once-3", &plan);
    assert_eq!(
        send(&cluster, &address, ticket(plan, "once-3", fresh)).await,
        Ok(2)
    );
    Ok(())
}
