//! The gateway's HTTP port: health and readiness now, REST and Jupyter later.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tarn_proto::coordinator_client::CoordinatorClient;
use tarn_proto::HealthRequest;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

#[derive(Clone)]
struct AppState {
    coordinator: String,
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    coordinator: String,
    shutdown: CancellationToken,
) -> Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            coordinator: format!("http://{coordinator}"),
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Serve(e.to_string()))
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the coordinator answers and at least one interactive
/// executor is registered with both Tarn and Ballista.
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let health = async {
        let mut c = CoordinatorClient::connect(s.coordinator.clone())
            .await
            .map_err(|e| e.to_string())?;
        c.health(HealthRequest {
            header: Some(tarn_proto::header()),
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|e| e.message().to_string())
    }
    .await;
    match health {
        Ok(h) if h.interactive_executors > 0 => (
            StatusCode::OK,
            Json(serde_json::json!({
                "status": "ready",
                "interactive_executors": h.interactive_executors,
                "job_executors": h.job_executors,
            })),
        ),
        Ok(h) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "waiting",
                "reason": "no interactive executor has registered yet",
                "interactive_executors": h.interactive_executors,
                "job_executors": h.job_executors,
            })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "waiting",
                "reason": format!("coordinator unreachable: {e}"),
            })),
        ),
    }
}
