//! The gateway's HTTP port: health, readiness, and the REST API for pools,
//! sessions and job runs. Errors are JSON bodies with a stable code:
//! `{"error": {"code": 2303, "name": "INSUFFICIENT_VCORES", ...}}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tarn_common::{ErrorCode, TarnError};
use tarn_proto::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::lease::{coordinator_error, LeaseWish};
use crate::session::Sessions;

#[derive(Clone)]
struct AppState {
    sessions: Arc<Sessions>,
}

/// A REST error: the code's HTTP status and its JSON form.
struct ApiError(TarnError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.to_json())).into_response()
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
    shutdown: CancellationToken,
) -> Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/pools", get(pools))
        .route("/v1/leases", get(leases))
        .route("/v1/sessions", get(list_sessions).post(open_session))
        .route("/v1/sessions/{id}", get(get_session).delete(close_session))
        .route("/v1/job-runs", get(list_runs).post(submit_run))
        .route("/v1/job-runs/{id}", get(get_run).delete(cancel_run))
        .route("/v1/job-runs/{id}/finish", post(finish_run))
        .route("/v1/job-runs/{id}/heartbeat", post(heartbeat_run))
        .fallback(|| async {
            ApiError(
                TarnError::new(ErrorCode::InvalidArgument, "no such endpoint").with_fix(
                    "see the README for the REST API: /v1/pools, /v1/sessions, /v1/job-runs",
                ),
            )
            .into_response()
        })
        .with_state(AppState { sessions });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Serve(e.to_string()))
}

fn body<T: for<'de> Deserialize<'de> + Default>(bytes: &Bytes) -> std::result::Result<T, ApiError> {
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
    let pools: Vec<_> = r
        .pools
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "configured_vcores": p.configured_vcores,
                "offered_vcores": p.offered_vcores,
                "capacity_vcores": p.capacity_vcores,
                "leased_vcores": p.leased_vcores,
                "free_vcores": p.free_vcores,
                "leases": p.leases,
                "users": p.users,
                "queued_runs": p.queued_runs,
                "running_runs": p.running_runs,
                "grants": p.grants,
                "refusals": p.refusals,
            })
        })
        .collect();
    Ok(Json(json!({
        "pools": pools,
        "account_vcores": r.account_vcores,
        "max_interactive_users": r.max_interactive_users,
        "interactive_users": r.interactive_users,
        "max_running_jobs": r.max_running_jobs,
        "max_queued_jobs": r.max_queued_jobs,
    }))
    .into_response())
}

fn lease_json(l: &LeaseInfo) -> serde_json::Value {
    json!({
        "lease_id": l.lease_id,
        "pool": Pool::try_from(l.pool).map(|p| p.label()).unwrap_or("unspecified"),
        "user": l.user,
        "workspace": l.workspace,
        "vcores": l.vcores,
        "holder": l.holder,
        "created_unix_ms": l.created_unix_ms,
        "expires_unix_ms": l.expires_unix_ms,
        "run_id": l.run_id,
    })
}

async fn leases(State(s): State<AppState>) -> ApiResult {
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
    let leases: Vec<_> = r.leases.iter().map(lease_json).collect();
    Ok(Json(json!({ "leases": leases })).into_response())
}

fn session_json(s: &crate::session::Session) -> serde_json::Value {
    json!({
        "session_id": s.id,
        "user": s.user,
        "vcores": s.vcores,
        "lease_id": s.lease_id,
        "workspace": *s.workspace.read(),
        "opened_unix_ms": s.opened_ms,
    })
}

async fn list_sessions(State(s): State<AppState>) -> ApiResult {
    let list: Vec<_> = s.sessions.list().iter().map(|x| session_json(x)).collect();
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

async fn open_session(State(s): State<AppState>, bytes: Bytes) -> ApiResult {
    let req: OpenSession = body(&bytes)?;
    let user = if req.user.trim().is_empty() {
        "anonymous".to_string()
    } else {
        req.user
    };
    let session = s
        .sessions
        .open(
            &user,
            &LeaseWish {
                vcores: req.vcores,
                size: req.size,
            },
        )
        .await?;
    let mut v = session_json(&session);
    // Dev mode: the session id is the bearer token Flight SQL accepts.
    v["token"] = json!(session.id);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

fn session_gone(id: &str) -> ApiError {
    ApiError(TarnError::new(
        ErrorCode::SessionNotFound,
        format!("no open session {id:?}"),
    ))
}

async fn get_session(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let session = s.sessions.get(&id).ok_or_else(|| session_gone(&id))?;
    Ok(Json(session_json(&session)).into_response())
}

async fn close_session(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    if s.sessions.close(&id).await {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(session_gone(&id))
    }
}

fn run_json(r: &JobRunInfo) -> serde_json::Value {
    let state = match JobRunState::try_from(r.state).unwrap_or(JobRunState::Unspecified) {
        JobRunState::Queued => "queued",
        JobRunState::Running => "running",
        JobRunState::Succeeded => "succeeded",
        JobRunState::Failed => "failed",
        JobRunState::Cancelled => "cancelled",
        JobRunState::Expired => "expired",
        JobRunState::Unspecified => "unknown",
    };
    json!({
        "run_id": r.run_id,
        "name": r.name,
        "user": r.user,
        "workspace": r.workspace,
        "vcores": r.vcores,
        "state": state,
        "queue_position": r.queue_position,
        "lease_id": r.lease_id,
        "seq": r.seq,
        "submitted_unix_ms": r.submitted_unix_ms,
        "started_unix_ms": r.started_unix_ms,
        "ended_unix_ms": r.ended_unix_ms,
        "message": r.message,
    })
}

async fn list_runs(State(s): State<AppState>) -> ApiResult {
    let r = s
        .sessions
        .leases()
        .api()
        .list_job_runs(ListJobRunsRequest {
            header: Some(header()),
        })
        .await?
        .into_inner();
    let runs: Vec<_> = r.runs.iter().map(run_json).collect();
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

async fn submit_run(State(s): State<AppState>, bytes: Bytes) -> ApiResult {
    let req: SubmitRun = body(&bytes)?;
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
            user: if req.user.is_empty() {
                "anonymous".into()
            } else {
                req.user
            },
            workspace: req.workspace,
            vcores: req.vcores,
            size: req.size,
        })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(run_json(&r))).into_response())
}

async fn get_run(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let r = s
        .sessions
        .leases()
        .api()
        .get_job_run(GetJobRunRequest {
            header: Some(header()),
            run_id: id,
        })
        .await?
        .into_inner();
    Ok(Json(run_json(&r)).into_response())
}

async fn cancel_run(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
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
    Ok(Json(run_json(&r)).into_response())
}

/// The holder of a running run keeps its lease alive (within the
/// coordinator's lease TTL, 30 s by default).
async fn heartbeat_run(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
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
    get_run(State(s), Path(id)).await
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

async fn finish_run(State(s): State<AppState>, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    let req: FinishRun = if bytes.iter().all(u8::is_ascii_whitespace) {
        FinishRun {
            succeeded: true,
            message: String::new(),
        }
    } else {
        body(&bytes)?
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
    Ok(Json(run_json(&r)).into_response())
}
