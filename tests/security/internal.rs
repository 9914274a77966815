//! Unauthenticated and wrong-role calls on every internal service.
//!
//! Found from outside before the internal plane had credentials:
//! `AcquireLease` as any user name, `ListLeases`/`ReleaseLease` of other
//! users' leases, `GetClusterInfo` handing out executor addresses, and
//! Ballista's `StopExecutor` on an executor's task port stopping the whole
//! standalone. Each call below is made as an outsider (no certificate, or
//! plain HTTP/2) and as the wrong role, and is refused; the control calls
//! with the right role succeed.

use std::time::Duration;

use tarn_common::cluster::Role;
use tarn_proto::coordinator_client::CoordinatorClient;
use tarn_proto::*;
use tarn_tests::{internal_endpoint, query, scalar_i64, Cluster};
use tonic::transport::Channel;

/// Ballista's `StopExecutorParams`, declared here as a client that knows
/// the wire format would.
#[derive(Clone, PartialEq, prost::Message)]
struct StopExecutorParams {
    #[prost(string, tag = "1")]
    executor_id: String,
    #[prost(string, tag = "2")]
    reason: String,
    #[prost(bool, tag = "3")]
    force: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StopExecutorResult {}

async fn stop_executor(channel: Channel, executor_id: &str) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec: tonic_prost::ProstCodec<StopExecutorParams, StopExecutorResult> =
        tonic_prost::ProstCodec::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/ballista.protobuf.ExecutorGrpc/StopExecutor",
    );
    grpc.unary(
        tonic::Request::new(StopExecutorParams {
            executor_id: executor_id.to_string(),
            reason: "attack".into(),
            force: true,
        }),
        path,
        codec,
    )
    .await
    .map(|_| ())
}

fn code(s: &tonic::Status) -> String {
    tarn_tests::error_code(s).unwrap_or_else(|| "none".into())
}

async fn as_role(cluster: &Cluster, addr: &str, role: Option<Role>) -> anyhow::Result<Channel> {
    Ok(internal_endpoint(addr, &cluster.cluster_dir(), role)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?)
}

fn lease_request(user: &str) -> AcquireLeaseRequest {
    AcquireLeaseRequest {
        header: Some(header()),
        user: user.into(),
        holder: "attacker".into(),
        vcores: 1,
        pool: Pool::Interactive as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn the_coordinator_refuses_outsiders_and_wrong_roles() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let addr = cluster.coordinator.clone();

    // Plain HTTP/2 (what the earlier attack used) does not get a reply.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(ch) = plain {
        let r = CoordinatorClient::new(ch)
            .get_cluster_info(GetClusterInfoRequest {
                header: Some(header()),
            })
            .await;
        assert!(r.is_err(), "plain HTTP/2 was answered: {r:?}");
    }
    // TLS without a client certificate fails its handshake.
    let no_cert = as_role(&cluster, &addr, None).await;
    if let Ok(ch) = no_cert {
        let r = CoordinatorClient::new(ch)
            .acquire_lease(lease_request("mallory"))
            .await;
        assert!(
            r.is_err(),
            "a caller without a certificate was answered: {r:?}"
        );
    }

    // An executor's certificate may not lease, list or release leases.
    let mut as_executor =
        CoordinatorClient::new(as_role(&cluster, &addr, Some(Role::Executor)).await?);
    let s = as_executor
        .acquire_lease(lease_request("mallory"))
        .await
        .expect_err("executors do not lease");
    assert_eq!(code(&s), "2207", "{s:?}");
    let s = as_executor
        .list_leases(ListLeasesRequest {
            header: Some(header()),
            pool: Pool::Unspecified as i32,
        })
        .await
        .expect_err("executors do not list leases");
    assert_eq!(code(&s), "2207", "{s:?}");
    // Nor define a job as any owner with any roles, start runs, or claim
    // and finish other gateways' runs: a job's credentials are minted by
    // a gateway from a verified token, never taken from the cluster.
    let s = as_executor
        .put_job(PutJobRequest {
            header: Some(header()),
            job_id: "j-attack".into(),
            owner: "admin".into(),
            spec_json: r#"{"name":"x","workspace":"default","sql":"SELECT 1"}"#.into(),
            grants_json: r#"{"operator":true}"#.into(),
            credential_expires_unix_ms: u64::MAX,
        })
        .await
        .expect_err("executors do not define jobs");
    assert_eq!(code(&s), "2207", "{s:?}");
    let s = as_executor
        .run_job(RunJobRequest {
            header: Some(header()),
            job_id: "j-attack".into(),
            trigger: "api".into(),
            ..Default::default()
        })
        .await
        .expect_err("executors do not start runs");
    assert_eq!(code(&s), "2207", "{s:?}");
    let s = as_executor
        .claim_job_run(ClaimJobRunRequest {
            header: Some(header()),
            worker: "attacker".into(),
            wait_ms: 0,
        })
        .await
        .expect_err("executors do not claim runs");
    assert_eq!(code(&s), "2207", "{s:?}");
    let s = as_executor
        .finish_job_run(FinishJobRunRequest {
            header: Some(header()),
            run_id: "r-any".into(),
            worker: "attacker".into(),
            succeeded: true,
            ..Default::default()
        })
        .await
        .expect_err("executors do not end runs");
    assert_eq!(code(&s), "2207", "{s:?}");
    // A gateway's certificate may not register an executor.
    let mut as_gateway =
        CoordinatorClient::new(as_role(&cluster, &addr, Some(Role::Gateway)).await?);
    let s = as_gateway
        .register_executor(RegisterExecutorRequest {
            header: Some(header()),
            executor_id: "fake".into(),
            pool: Pool::Interactive as i32,
            vcores: 64,
            host: "127.0.0.1".into(),
            flight_port: 1,
            grpc_port: 1,
            pid: 1,
            draining: false,
            metrics_port: 0,
        })
        .await
        .expect_err("gateways do not register executors");
    assert_eq!(code(&s), "2207", "{s:?}");
    assert!(s.message().contains("only executor may"), "{s:?}");

    // Control: every role may ask who leads, and the gateway may lease.
    for role in [Role::Executor, Role::Gateway] {
        let mut c = CoordinatorClient::new(as_role(&cluster, &addr, Some(role)).await?);
        let h = c
            .health(HealthRequest {
                header: Some(header()),
            })
            .await?
            .into_inner();
        assert_eq!(h.role, "leader");
    }
    // The gateway may ask for a run to claim (none is waiting).
    let claimed = as_gateway
        .claim_job_run(ClaimJobRunRequest {
            header: Some(header()),
            worker: "gateway-control".into(),
            wait_ms: 0,
        })
        .await?
        .into_inner();
    assert!(claimed.run.is_none(), "{claimed:?}");
    let lease = as_gateway
        .acquire_lease(lease_request("alice"))
        .await?
        .into_inner();
    as_gateway
        .release_lease(ReleaseLeaseRequest {
            header: Some(header()),
            lease_id: lease.lease_id,
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn only_the_coordinator_may_stop_an_executor() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let exec = cluster.interactive_executor().await?;
    let task_port = format!("{}:{}", exec.host, exec.grpc_port);

    // No certificate: the handshake fails, nothing reaches Ballista.
    if let Ok(ch) = as_role(&cluster, &task_port, None).await {
        let r = stop_executor(ch, &exec.executor_id).await;
        assert!(
            r.is_err(),
            "StopExecutor without a certificate was answered"
        );
    }
    // Plain HTTP/2, as the earlier attack: no answer either.
    if let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{task_port}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
    {
        assert!(stop_executor(ch, &exec.executor_id).await.is_err());
    }
    // A gateway's or another executor's certificate: refused by role.
    for role in [Role::Gateway, Role::Executor] {
        let ch = as_role(&cluster, &task_port, Some(role)).await?;
        let s = stop_executor(ch, &exec.executor_id)
            .await
            .expect_err("only the coordinator stops executors");
        assert_eq!(code(&s), "2207", "{role:?}: {s:?}");
    }
    // The executor is still serving: a query runs on it.
    let mut client = cluster.flight_sql().await?;
    let batches = query(&mut client, "SELECT COUNT(*) FROM SigninLogs").await?;
    assert!(scalar_i64(&batches) > 0);
    Ok(())
}
