//! Prometheus `/metrics` of an executor: tasks and direct runs in flight
//! and by outcome, and the memory its pool has reserved.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use datafusion::execution::memory_pool::MemoryPool;
use tarn_common::metrics::{Exposition, Gauge, LabeledCounter};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What an executor counts.
#[derive(Debug, Default)]
pub struct ExecutorMetrics {
    /// Ballista tasks running now.
    pub tasks_running: Gauge,
    /// Ballista tasks ended, by outcome (`ok`, `failed`, `cancelled`).
    pub tasks: LabeledCounter,
    /// Direct runs streaming now.
    pub direct_running: Gauge,
    /// Direct runs ended, by outcome (`ok`, `failed`, `cancelled`).
    pub direct_runs: LabeledCounter,
}

impl ExecutorMetrics {
    /// The exposition text, with the process pool's figures.
    pub fn render(&self, pool: &dyn MemoryPool, limit: usize) -> String {
        let mut e = Exposition::default();
        e.gauge(
            "tarn_executor_tasks_running",
            "Ballista tasks running on this executor",
            self.tasks_running.get(),
        )
        .labeled(
            "tarn_executor_tasks_total",
            "Ballista tasks ended, by outcome",
            "outcome",
            &self.tasks,
        )
        .gauge(
            "tarn_executor_direct_runs_running",
            "Direct runs streaming from this executor",
            self.direct_running.get(),
        )
        .labeled(
            "tarn_executor_direct_runs_total",
            "Direct runs ended, by outcome",
            "outcome",
            &self.direct_runs,
        )
        .gauge(
            "tarn_executor_memory_reserved_bytes",
            "Memory operators hold from the executor's pool",
            pool.reserved() as i64,
        )
        .gauge(
            "tarn_executor_memory_limit_bytes",
            "The executor's memory pool size",
            limit as i64,
        );
        e.finish()
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<ExecutorMetrics>,
    pool: Arc<dyn MemoryPool>,
    limit: usize,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render(pool.as_ref(), limit);
                async move { ([(CONTENT_TYPE, Exposition::CONTENT_TYPE)], text) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
