//! Prometheus `/metrics` of the coordinator: per pool total / leased /
//! free vCores, leases, distinct users, queue length, grants and refusals
//! by reason, and whether this coordinator leads.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::front::LeaderSlot;
use crate::registry::ExecutorRegistry;
use crate::service::pool_infos;
use crate::{Error, Result};

#[derive(Clone)]
struct AppState {
    registry: Arc<ExecutorRegistry>,
    slot: Arc<LeaderSlot>,
}

/// Serves `/metrics` and `/healthz` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<ExecutorRegistry>,
    slot: Arc<LeaderSlot>,
    shutdown: CancellationToken,
) -> Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(AppState { registry, slot });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Task(format!("metrics server: {e}")))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&s.registry, &s.slot).await,
    )
}

/// The exposition text.
pub async fn render(registry: &ExecutorRegistry, slot: &LeaderSlot) -> String {
    let mut out = String::new();
    let leader = slot.is_leader();
    let _ = writeln!(
        out,
        "# HELP tarn_coordinator_leader 1 if this coordinator leads\n# TYPE tarn_coordinator_leader gauge\ntarn_coordinator_leader {}",
        u8::from(leader)
    );
    let Ok(leading) = slot.get() else {
        return out;
    };
    let pools = pool_infos(registry, &leading.ledger);
    let gauge =
        |out: &mut String, name: &str, help: &str, f: &dyn Fn(&tarn_proto::PoolInfo) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for p in &pools {
                let _ = writeln!(out, "{name}{{pool=\"{}\"}} {}", p.name, f(p));
            }
        };
    gauge(
        &mut out,
        "tarn_pool_configured_vcores",
        "Configured pool size",
        &|p| p.configured_vcores as u64,
    );
    gauge(
        &mut out,
        "tarn_pool_offered_vcores",
        "vCores live executors offer",
        &|p| p.offered_vcores as u64,
    );
    gauge(
        &mut out,
        "tarn_pool_capacity_vcores",
        "min(configured, offered)",
        &|p| p.capacity_vcores as u64,
    );
    gauge(
        &mut out,
        "tarn_pool_leased_vcores",
        "vCores held by leases",
        &|p| p.leased_vcores as u64,
    );
    gauge(
        &mut out,
        "tarn_pool_free_vcores",
        "capacity minus leased",
        &|p| p.free_vcores as u64,
    );
    gauge(
        &mut out,
        "tarn_pool_leases",
        "Leases (sessions or running job runs)",
        &|p| p.leases as u64,
    );
    gauge(
        &mut out,
        "tarn_pool_users",
        "Distinct users holding leases",
        &|p| p.users as u64,
    );
    gauge(
        &mut out,
        "tarn_pool_queued_runs",
        "Job runs waiting",
        &|p| p.queued_runs as u64,
    );
    gauge(
        &mut out,
        "tarn_pool_running_runs",
        "Job runs running",
        &|p| p.running_runs as u64,
    );
    let _ = writeln!(
        out,
        "# HELP tarn_pool_grants_total Leases granted since this coordinator started leading\n# TYPE tarn_pool_grants_total counter"
    );
    for p in &pools {
        let _ = writeln!(
            out,
            "tarn_pool_grants_total{{pool=\"{}\"}} {}",
            p.name, p.grants
        );
    }
    let _ = writeln!(
        out,
        "# HELP tarn_pool_refusals_total Lease requests refused, by reason\n# TYPE tarn_pool_refusals_total counter"
    );
    for p in &pools {
        let mut reasons: Vec<_> = p.refusals.iter().collect();
        reasons.sort();
        for (reason, n) in reasons {
            let _ = writeln!(
                out,
                "tarn_pool_refusals_total{{pool=\"{}\",reason=\"{reason}\"}} {n}",
                p.name
            );
        }
    }
    let (by_lease, _) = leading.direct.held();
    let _ = writeln!(
        out,
        "# HELP tarn_direct_reserved_vcores vCores reserved by direct runs (given back when their streams end)\n# TYPE tarn_direct_reserved_vcores gauge\ntarn_direct_reserved_vcores {}",
        by_lease.values().map(|v| u64::from(*v)).sum::<u64>()
    );
    out
}
