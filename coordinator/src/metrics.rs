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
    job_metrics(&mut out, &leading.ledger.stats());
    let (by_lease, _) = leading.direct.held();
    let _ = writeln!(
        out,
        "# HELP tarn_direct_reserved_vcores vCores reserved by direct runs (given back when their streams end)\n# TYPE tarn_direct_reserved_vcores gauge\ntarn_direct_reserved_vcores {}",
        by_lease.values().map(|v| u64::from(*v)).sum::<u64>()
    );
    out
}

/// Job runs by status, queue wait, schedule lateness and vCore-seconds.
fn job_metrics(out: &mut String, stats: &crate::ledger::Stats) {
    let _ = writeln!(
        out,
        "# HELP tarn_job_runs_total Ended runs of jobs, by status\n# TYPE tarn_job_runs_total counter"
    );
    let mut by: Vec<(String, u64)> = stats
        .job_runs
        .iter()
        .map(|(state, n)| {
            let label = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            (label, *n)
        })
        .collect();
    by.sort();
    for (label, n) in by {
        let _ = writeln!(out, "tarn_job_runs_total{{status=\"{label}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP tarn_job_queue_wait_seconds Time job runs waited in the queue before they started\n# TYPE tarn_job_queue_wait_seconds summary\ntarn_job_queue_wait_seconds_count {}\ntarn_job_queue_wait_seconds_sum {}",
        stats.queue_wait.0, stats.queue_wait.1
    );
    let h = &stats.lateness;
    let _ = writeln!(
        out,
        "# HELP tarn_job_schedule_lateness_seconds From a schedule's fire time to a worker taking the run\n# TYPE tarn_job_schedule_lateness_seconds histogram"
    );
    for (b, c) in h.bounds.iter().zip(&h.counts) {
        let _ = writeln!(
            out,
            "tarn_job_schedule_lateness_seconds_bucket{{le=\"{b}\"}} {c}"
        );
    }
    let _ = writeln!(
        out,
        "tarn_job_schedule_lateness_seconds_bucket{{le=\"+Inf\"}} {}\ntarn_job_schedule_lateness_seconds_count {}\ntarn_job_schedule_lateness_seconds_sum {}",
        h.count, h.count, h.sum
    );
    let _ = writeln!(
        out,
        "# HELP tarn_job_vcore_seconds_total vCores held times seconds by ended job runs, by workspace\n# TYPE tarn_job_vcore_seconds_total counter"
    );
    let mut ws: Vec<_> = stats.vcore_seconds.iter().collect();
    ws.sort_by(|a, b| a.0.cmp(b.0));
    for (w, v) in ws {
        let _ = writeln!(out, "tarn_job_vcore_seconds_total{{workspace=\"{w}\"}} {v}");
    }
}
