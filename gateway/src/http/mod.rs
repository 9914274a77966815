//! The gateway's HTTP port: health, readiness, the REST API for pools,
//! sessions and job runs, and the Jupyter Server kernels API with its
//! websocket. Errors are JSON bodies with a stable code:
//! `{"error": {"code": 2303, "name": "INSUFFICIENT_VCORES", ...}}`; every
//! route but `/healthz`, `/readyz` and `/api` needs credentials outside dev
//! mode, and every route but the two probes checks `Host` and `Origin`
//! ([`crate::http_guard`]).

use std::sync::Arc;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tarn_common::{ErrorCode, TarnError};
use tarn_proto::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Identity, ANONYMOUS};
use crate::error::{Error, Result};
use crate::http_guard::{require_json, HttpGuard};
use crate::kernel::Kernels;
use crate::lease::coordinator_error;
use crate::session::Sessions;

mod jobs;
mod jupyter;
mod rest;

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) sessions: Arc<Sessions>,
    pub(super) kernels: Arc<Kernels>,
    pub(super) auth: Arc<Authenticator>,
    pub(super) guard: Arc<HttpGuard>,
    /// How long the credentials a job is given last.
    pub(super) job_credential_lifetime: std::time::Duration,
}

impl AppState {
    /// The coordinator's API, for the REST calls that pass through.
    fn coordinator(&self) -> coordinator_client::CoordinatorClient<tonic::transport::Channel> {
        self.sessions.leases().api()
    }

    /// The caller, from the `Authorization` header (`Bearer` or Jupyter's
    /// `token` scheme) or a `token` query parameter.
    fn caller(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> std::result::Result<Identity, ApiError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(self
            .auth
            .identify(header, query.get("token").map(String::as_str))?)
    }
}

/// A dev-mode caller without a token may act for a user it names.
pub(super) fn acting_user(who: &Identity, named: &str) -> String {
    if who.token.is_none() && who.user == ANONYMOUS && !named.trim().is_empty() {
        named.trim().to_string()
    } else {
        who.user.clone()
    }
}

/// Whether `who` may see a session of `user`.
pub(super) fn may_see(who: &Identity, user: &str) -> bool {
    who.user == user || (who.token.is_none() && who.user == ANONYMOUS)
}

/// A REST error: the code's HTTP status and its JSON form.
pub(super) struct ApiError(pub(super) TarnError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.0.to_json())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: say which scheme re-authenticates.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(
                    "Bearer realm=\"tarn\", error=\"invalid_token\"",
                ),
            );
        }
        response
    }
}

impl From<TarnError> for ApiError {
    fn from(e: TarnError) -> Self {
        Self(e)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        Self(coordinator_error(s))
    }
}

pub(super) type ApiResult = std::result::Result<Response, ApiError>;

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    sessions: Arc<Sessions>,
    kernels: Arc<Kernels>,
    auth: Arc<Authenticator>,
    guard: Arc<HttpGuard>,
    job_credential_lifetime: std::time::Duration,
    shutdown: CancellationToken,
) -> Result<()> {
    let state = AppState {
        sessions,
        kernels,
        auth,
        guard,
        job_credential_lifetime,
    };
    let guarded = Router::new()
        .route("/v1/pools", get(rest::pools))
        .route("/v1/leases", get(rest::leases))
        .route(
            "/v1/sessions",
            get(rest::list_sessions).post(rest::open_session),
        )
        .route(
            "/v1/sessions/{id}",
            get(rest::get_session).delete(rest::close_session),
        )
        .route("/v1/job-runs", get(rest::list_runs).post(rest::submit_run))
        .route(
            "/v1/job-runs/{id}",
            get(rest::get_run).delete(rest::cancel_run),
        )
        .route("/v1/job-runs/{id}/finish", post(rest::finish_run))
        .route("/v1/job-runs/{id}/output", get(jobs::run_output))
        .route("/v1/job-runs/{id}/log", get(jobs::run_log))
        .route("/v1/job-runs/{id}/retry", post(jobs::retry_run))
        .route("/v1/jobs", get(jobs::list_jobs).post(jobs::create_job))
        .route(
            "/v1/jobs/{id}",
            get(jobs::get_job)
                .patch(jobs::update_job)
                .delete(jobs::delete_job),
        )
        .route(
            "/v1/jobs/{id}/runs",
            get(jobs::job_runs).post(jobs::run_job),
        )
        .route("/v1/jobs/{id}/renew", post(jobs::renew_job))
        .route("/v1/job-runs/{id}/heartbeat", post(rest::heartbeat_run))
        .route("/api/kernelspecs", get(jupyter::kernelspecs))
        .route("/api/kernelspecs/{name}", get(jupyter::kernelspec))
        .route(
            "/kernelspecs/{name}/{*resource}",
            get(jupyter::kernelspec_resource),
        )
        .route(
            "/api/kernels",
            get(jupyter::list_kernels).post(jupyter::start_kernel),
        )
        .route(
            "/api/kernels/{id}",
            get(jupyter::get_kernel).delete(jupyter::delete_kernel),
        )
        .route(
            "/api/kernels/{id}/interrupt",
            post(jupyter::interrupt_kernel),
        )
        .route("/api/kernels/{id}/restart", post(jupyter::restart_kernel))
        .route("/api/kernels/{id}/channels", get(jupyter::channels))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/api", get(jupyter::api_version))
        .merge(guarded)
        .fallback(|| async {
            ApiError(
                TarnError::new(ErrorCode::InvalidArgument, "no such endpoint").with_fix(
                    "see the README for the REST API: /v1/pools, /v1/sessions, /v1/jobs, /v1/job-runs, /api/kernels",
                ),
            )
            .into_response()
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_host_and_origin,
        ))
        .with_state(state);
    // Small websocket frames and JSON replies would otherwise wait on
    // Nagle for the peer's delayed ACK (~40 ms a round trip).
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Serve(e.to_string()))
}

/// Every guarded route runs as the caller its credentials name; the
/// request fails with 401 and a JSON body saying how to authenticate
/// otherwise.
async fn authenticate(
    State(s): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let query = Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    match s.caller(req.headers(), &query) {
        Ok(who) => {
            let span = tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), user = %who.user);
            req.extensions_mut().insert(who);
            tracing::Instrument::instrument(next.run(req), span).await
        }
        Err(e) => e.into_response(),
    }
}

/// Requests by a foreign `Host` or `Origin` get 403 TARN-2210 before
/// anything else (before authentication too: a rebinding page must not
/// even learn whether dev mode is on). Health and readiness probes come
/// from orchestrators by any address and reveal nothing, so they pass.
async fn check_host_and_origin(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    if let Err(e) = s.guard.check(req.headers()) {
        tracing::warn!(
            method = %req.method(),
            path = %req.uri().path(),
            host = ?req.headers().get(axum::http::header::HOST),
            origin = ?req.headers().get(axum::http::header::ORIGIN),
            "refused a request by its Host or Origin"
        );
        return ApiError(e).into_response();
    }
    next.run(req).await
}

/// A JSON body (empty: the defaults); a body not sent as
/// `application/json` is refused with 415 (TARN-2211).
pub(super) fn body<T: for<'de> Deserialize<'de> + Default>(
    headers: &HeaderMap,
    bytes: &Bytes,
) -> std::result::Result<T, ApiError> {
    require_json(headers, bytes)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError(
            TarnError::new(
                ErrorCode::InvalidArgument,
                format!("the JSON body is invalid: {e}"),
            )
            .with_fix("send a JSON object with the documented fields"),
        )
    })
}

/// Prometheus metrics; like `/healthz`, for the operator's scraper (the
/// Host check still applies).
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            tarn_common::metrics::Exposition::CONTENT_TYPE,
        )],
        s.kernels.metrics_text(),
    )
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready when the coordinator answers and at least one interactive
/// executor is registered with both Tarn and Ballista.
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let health = s
        .coordinator()
        .health(HealthRequest {
            header: Some(header()),
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|e| e.message().to_string());
    match health {
        Ok(h) if h.interactive_executors > 0 => (
            StatusCode::OK,
            Json(json!({
                "status": "ready",
                "interactive_executors": h.interactive_executors,
                "job_executors": h.job_executors,
                "coordinator": h.address,
                "store": h.store,
            })),
        ),
        Ok(h) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "waiting",
                "reason": "no interactive executor has registered yet",
                "interactive_executors": h.interactive_executors,
                "job_executors": h.job_executors,
            })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "waiting",
                "reason": format!("coordinator unreachable: {e}"),
            })),
        ),
    }
}
