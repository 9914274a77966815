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
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use tarn_common::{ErrorCode, TarnError};
use tarn_proto::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Identity, ANONYMOUS};
use crate::error::{Error, Result};
use crate::http_guard::{require_json, HttpGuard};
use crate::kernel::{Kernels, KERNEL_NAME};
use crate::lease::{coordinator_error, LeaseWish};
use crate::session::Sessions;

#[derive(Clone)]
struct AppState {
    sessions: Arc<Sessions>,
    kernels: Arc<Kernels>,
    auth: Arc<Authenticator>,
    guard: Arc<HttpGuard>,
}

impl AppState {
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
fn acting_user(who: &Identity, named: &str) -> String {
    if who.token.is_none() && who.user == ANONYMOUS && !named.trim().is_empty() {
        named.trim().to_string()
    } else {
        who.user.clone()
    }
}

/// Whether `who` may see a session of `user`.
fn may_see(who: &Identity, user: &str) -> bool {
    who.user == user || (who.token.is_none() && who.user == ANONYMOUS)
}

/// A REST error: the code's HTTP status and its JSON form.
struct ApiError(TarnError);

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

type ApiResult = std::result::Result<Response, ApiError>;

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    sessions: Arc<Sessions>,
    kernels: Arc<Kernels>,
    auth: Arc<Authenticator>,
    guard: Arc<HttpGuard>,
    shutdown: CancellationToken,
) -> Result<()> {
    let state = AppState {
        sessions,
        kernels,
        auth,
        guard,
    };
    let guarded = Router::new()
        .route("/v1/pools", get(pools))
        .route("/v1/leases", get(leases))
        .route("/v1/sessions", get(list_sessions).post(open_session))
        .route("/v1/sessions/{id}", get(get_session).delete(close_session))
        .route("/v1/job-runs", get(list_runs).post(submit_run))
        .route("/v1/job-runs/{id}", get(get_run).delete(cancel_run))
        .route("/v1/job-runs/{id}/finish", post(finish_run))
        .route("/v1/job-runs/{id}/heartbeat", post(heartbeat_run))
        .route("/api/kernelspecs", get(kernelspecs))
        .route("/api/kernelspecs/{name}", get(kernelspec))
        .route("/kernelspecs/{name}/{*resource}", get(kernelspec_resource))
        .route("/api/kernels", get(list_kernels).post(start_kernel))
        .route("/api/kernels/{id}", get(get_kernel).delete(delete_kernel))
        .route("/api/kernels/{id}/interrupt", post(interrupt_kernel))
        .route("/api/kernels/{id}/restart", post(restart_kernel))
        .route("/api/kernels/{id}/channels", get(channels))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/api", get(api_version))
        .merge(guarded)
        .fallback(|| async {
            ApiError(
                TarnError::new(ErrorCode::InvalidArgument, "no such endpoint").with_fix(
                    "see the README for the REST API: /v1/pools, /v1/sessions, /v1/job-runs, /api/kernels",
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
fn body<T: for<'de> Deserialize<'de> + Default>(
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
        .sessions
        .leases()
        .api()
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

async fn pools(State(s): State<AppState>) -> ApiResult {
    let r = s
        .sessions
        .leases()
        .api()
        .get_pools(GetPoolsRequest {
            header: Some(header()),
        })
        .await?
        .into_inner();
    Ok(Json(r).into_response())
}

async fn leases(State(s): State<AppState>, Extension(who): Extension<Identity>) -> ApiResult {
    let r = s
        .sessions
        .leases()
        .api()
        .list_leases(ListLeasesRequest {
            header: Some(header()),
            pool: Pool::Unspecified as i32,
        })
        .await?
        .into_inner();
    // A caller sees their own leases (dev mode without a token: all).
    let leases: Vec<_> = r.leases.iter().filter(|l| may_see(&who, &l.user)).collect();
    Ok(Json(json!({ "leases": leases })).into_response())
}

fn session_json(s: &crate::session::Session) -> serde_json::Value {
    json!({
        "idle_ms": s.idle_for().as_millis() as u64,
        "credential_expires_unix_ms": s.credential_expires_ms,
        "session_id": s.id,
        "user": s.user,
        "vcores": s.vcores,
        "lease_id": s.lease_id,
        "workspace": *s.workspace.read(),
        "opened_unix_ms": s.opened_ms,
    })
}

async fn list_sessions(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
) -> ApiResult {
    let list: Vec<_> = s
        .sessions
        .list()
        .iter()
        .filter(|x| may_see(&who, &x.user))
        .map(|x| session_json(x))
        .collect();
    Ok(Json(json!({ "sessions": list })).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OpenSession {
    #[serde(default)]
    user: String,
    #[serde(default)]
    vcores: u32,
    #[serde(default)]
    size: String,
}

async fn open_session(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let req: OpenSession = body(&headers, &bytes)?;
    let who = Identity {
        user: acting_user(&who, &req.user),
        ..who
    };
    let session = s
        .sessions
        .open(
            &who,
            &LeaseWish {
                vcores: req.vcores,
                size: req.size,
            },
        )
        .await?;
    let mut v = session_json(&session);
    // The session id is a bearer Flight SQL accepts for this session.
    v["token"] = json!(session.id);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

fn session_gone(id: &str) -> ApiError {
    ApiError(TarnError::new(
        ErrorCode::SessionNotFound,
        format!("no open session {id:?}"),
    ))
}

async fn get_session(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let session = s
        .sessions
        .get(&id)
        .filter(|x| may_see(&who, &x.user))
        .ok_or_else(|| session_gone(&id))?;
    Ok(Json(session_json(&session)).into_response())
}

async fn close_session(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let mine = s
        .sessions
        .list()
        .iter()
        .any(|x| x.id == id && may_see(&who, &x.user));
    if mine && s.sessions.close(&id).await {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(session_gone(&id))
    }
}

async fn list_runs(State(s): State<AppState>, Extension(who): Extension<Identity>) -> ApiResult {
    let r = s
        .sessions
        .leases()
        .api()
        .list_job_runs(ListJobRunsRequest {
            header: Some(header()),
        })
        .await?
        .into_inner();
    let runs: Vec<_> = r.runs.iter().filter(|x| may_see(&who, &x.user)).collect();
    Ok(Json(json!({ "runs": runs })).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SubmitRun {
    #[serde(default)]
    name: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    workspace: String,
    #[serde(default)]
    vcores: u32,
    #[serde(default)]
    size: String,
}

async fn submit_run(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let req: SubmitRun = body(&headers, &bytes)?;
    if req.name.trim().is_empty() {
        return Err(ApiError(
            TarnError::new(ErrorCode::InvalidArgument, "a job run needs a name")
                .with_fix("send {\"name\": \"...\", \"user\": \"...\"}"),
        ));
    }
    let r = s
        .sessions
        .leases()
        .api()
        .submit_job_run(SubmitJobRunRequest {
            header: Some(header()),
            name: req.name,
            user: acting_user(&who, &req.user),
            workspace: req.workspace,
            vcores: req.vcores,
            size: req.size,
        })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(&r)).into_response())
}

/// A job run the caller may act on; others' runs look unknown.
async fn own_run(
    s: &AppState,
    who: &Identity,
    id: &str,
) -> std::result::Result<JobRunInfo, ApiError> {
    let r = s
        .sessions
        .leases()
        .api()
        .get_job_run(GetJobRunRequest {
            header: Some(header()),
            run_id: id.to_string(),
        })
        .await?
        .into_inner();
    if may_see(who, &r.user) {
        Ok(r)
    } else {
        Err(ApiError(TarnError::new(
            ErrorCode::JobRunNotFound,
            format!("no job run {id:?}"),
        )))
    }
}

async fn get_run(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(own_run(&s, &who, &id).await?).into_response())
}

async fn cancel_run(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    own_run(&s, &who, &id).await?;
    let r = s
        .sessions
        .leases()
        .api()
        .cancel_job_run(CancelJobRunRequest {
            header: Some(header()),
            run_id: id,
        })
        .await?
        .into_inner();
    Ok(Json(&r).into_response())
}

/// The holder of a running run keeps its lease alive (within the
/// coordinator's lease TTL, 30 s by default).
async fn heartbeat_run(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    own_run(&s, &who, &id).await?;
    let gone = s.sessions.leases().renew(vec![id.clone()]).await?;
    if !gone.is_empty() {
        return Err(ApiError(
            TarnError::new(
                ErrorCode::JobRunNotFound,
                format!("job run {id:?} is not running (queued, ended or unknown)"),
            )
            .with_fix("heartbeat a run only while GET /v1/job-runs/{id} says it is running"),
        ));
    }
    get_run(State(s), Extension(who), Path(id)).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FinishRun {
    #[serde(default = "yes")]
    succeeded: bool,
    #[serde(default)]
    message: String,
}

fn yes() -> bool {
    true
}

async fn finish_run(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    own_run(&s, &who, &id).await?;
    let req: FinishRun = if bytes.iter().all(u8::is_ascii_whitespace) {
        FinishRun {
            succeeded: true,
            message: String::new(),
        }
    } else {
        body(&headers, &bytes)?
    };
    let r = s
        .sessions
        .leases()
        .api()
        .finish_job_run(FinishJobRunRequest {
            header: Some(header()),
            run_id: id,
            succeeded: req.succeeded,
            message: req.message,
        })
        .await?
        .into_inner();
    Ok(Json(&r).into_response())
}

/// Jupyter clients read the server version from here.
async fn api_version() -> impl IntoResponse {
    Json(json!({"version": "2.14.0", "tarn_version": env!("CARGO_PKG_VERSION")}))
}

fn spec_json() -> serde_json::Value {
    json!({
        "name": KERNEL_NAME,
        "spec": {
            "argv": ["tarn", "kernel"],
            "display_name": "Tarn SQL",
            "language": "sql",
            "interrupt_mode": "message",
            "env": {},
            "metadata": {"tarn": {"row_limit": "per result, with the true row count"}},
        },
        "resources": {},
    })
}

async fn kernelspecs() -> impl IntoResponse {
    Json(json!({"default": KERNEL_NAME, "kernelspecs": {KERNEL_NAME: spec_json()}}))
}

fn no_spec(name: &str) -> ApiError {
    ApiError(
        TarnError::new(
            ErrorCode::InvalidArgument,
            format!("there is no kernelspec {name:?}; this gateway offers {KERNEL_NAME:?}"),
        )
        .with_fix("GET /api/kernelspecs lists the kernels"),
    )
}

async fn kernelspec(Path(name): Path<String>) -> ApiResult {
    if name == KERNEL_NAME {
        Ok(Json(spec_json()).into_response())
    } else {
        Err(no_spec(&name))
    }
}

/// The kernelspec has no logos or other resources.
async fn kernelspec_resource(Path((name, resource)): Path<(String, String)>) -> ApiResult {
    // 404, which notebook front ends expect for a missing logo.
    Err(ApiError(
        TarnError::new(
            ErrorCode::KernelNotFound,
            format!("kernelspec {name:?} has no resource {resource:?}"),
        )
        .with_fix("none needed: the kernel has no logos"),
    ))
}

async fn list_kernels(State(s): State<AppState>, Extension(who): Extension<Identity>) -> ApiResult {
    let list: Vec<_> = s.kernels.list(&who).iter().map(|k| k.model()).collect();
    Ok(Json(serde_json::Value::Array(list)).into_response())
}

#[derive(Deserialize, Default)]
struct StartKernel {
    #[serde(default)]
    name: String,
    /// `KERNEL_*` variables from the notebook server; Tarn reads
    /// `KERNEL_TARN_VCORES` and `KERNEL_TARN_SESSION_SIZE` (the lease).
    /// `KERNEL_USERNAME`, when sent, must name the authenticated user.
    #[serde(default)]
    env: HashMap<String, serde_json::Value>,
}

async fn start_kernel(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let req: StartKernel = body(&headers, &bytes)?;
    let env = |k: &str| {
        req.env.get(k).map(|v| match v {
            serde_json::Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        })
    };
    let vcores = match env("KERNEL_TARN_VCORES").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => v.parse().ok().filter(|n: &u32| *n > 0).ok_or_else(|| {
            ApiError(TarnError::new(
                ErrorCode::InvalidArgument,
                format!("KERNEL_TARN_VCORES must be a positive number, not {v:?}"),
            ))
        })?,
    };
    let wish = LeaseWish {
        vcores,
        size: env("KERNEL_TARN_SESSION_SIZE").unwrap_or_default(),
    };
    check_kernel_user(&who, env("KERNEL_USERNAME").as_deref())?;
    let kernel = s.kernels.start(&who, &req.name, &wish).await?;
    Ok((StatusCode::CREATED, Json(kernel.model())).into_response())
}

/// A kernel runs as whoever authenticated the request: a `KERNEL_USERNAME`
/// naming someone else is refused (403 TARN-2203) rather than ignored, so
/// a notebook server configured for another user finds out. Notebook
/// servers send the variable from their own environment, which names the
/// same user when it is set at all. (Dev mode names users by basic
/// credentials, `user:anything`.)
fn check_kernel_user(who: &Identity, named: Option<&str>) -> std::result::Result<(), ApiError> {
    match named.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) if n != who.user => Err(ApiError(
            TarnError::new(
                ErrorCode::AccessDenied,
                format!(
                    "KERNEL_USERNAME {n:?} differs from the authenticated user {:?}; a request cannot choose the kernel's user",
                    who.user
                ),
            )
            .with_fix(format!(
                "leave KERNEL_USERNAME unset, or authenticate as {n:?} (a token minted for that user)"
            )),
        )),
        _ => Ok(()),
    }
}

async fn get_kernel(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(s.kernels.get(&id, &who)?.model()).into_response())
}

async fn delete_kernel(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let k = s.kernels.get(&id, &who)?;
    s.kernels.shutdown(&k).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn interrupt_kernel(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let k = s.kernels.get(&id, &who)?;
    s.kernels.interrupt(&k);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn restart_kernel(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let k = s.kernels.get(&id, &who)?;
    s.kernels.restart(&k);
    Ok(Json(k.model()).into_response())
}

/// The kernel's websocket (Jupyter messaging 5.3, JSON text frames).
async fn channels(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    ws: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> ApiResult {
    let kernel = s.kernels.get(&id, &who)?;
    let ws = ws.map_err(|e| {
        ApiError(
            TarnError::new(
                ErrorCode::InvalidArgument,
                format!("this endpoint is a websocket: {e}"),
            )
            .with_fix("connect with a websocket client (ws://…/api/kernels/{id}/channels)"),
        )
    })?;
    let limit = s.kernels.options().max_message_bytes;
    // The library's own cap sits above ours, so an oversized message is
    // read, measured and refused with a reason instead of a bare error.
    let hard = limit.saturating_mul(2).max(limit + 64 * 1024);
    let kernels = Arc::clone(&s.kernels);
    // The websocket's messages act as the credential that opened it.
    Ok(ws
        .max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| async move { kernels.connect(kernel, socket, who).await })
        .into_response())
}
