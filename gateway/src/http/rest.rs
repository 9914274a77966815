//! The REST API: pools, leases, sessions and job runs, each shown as the
//! coordinator or the session registry knows it; a caller sees their own
//! (dev mode without a token: everything).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use tarn_common::{ErrorCode, TarnError};
use tarn_proto::*;

use super::{acting_user, body, may_see, ApiError, ApiResult, AppState};
use crate::auth::Identity;
use crate::lease::LeaseWish;

pub(super) async fn pools(State(s): State<AppState>) -> ApiResult {
    let r = s
        .coordinator()
        .get_pools(GetPoolsRequest {
            header: Some(header()),
        })
        .await?
        .into_inner();
    Ok(Json(r).into_response())
}

pub(super) async fn leases(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
) -> ApiResult {
    let r = s
        .coordinator()
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

pub(super) async fn list_sessions(
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

pub(super) async fn open_session(
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

pub(super) async fn get_session(
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

pub(super) async fn close_session(
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

pub(super) async fn list_runs(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
) -> ApiResult {
    let r = s
        .coordinator()
        .list_job_runs(ListJobRunsRequest {
            header: Some(header()),
            job_id: String::new(),
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

pub(super) async fn submit_run(
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
        .coordinator()
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
pub(super) async fn own_run(
    s: &AppState,
    who: &Identity,
    id: &str,
) -> Result<JobRunInfo, ApiError> {
    let r = s
        .coordinator()
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

pub(super) async fn get_run(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(own_run(&s, &who, &id).await?).into_response())
}

pub(super) async fn cancel_run(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    own_run(&s, &who, &id).await?;
    let r = s
        .coordinator()
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
pub(super) async fn heartbeat_run(
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

pub(super) async fn finish_run(
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
        .coordinator()
        .finish_job_run(FinishJobRunRequest {
            header: Some(header()),
            run_id: id,
            succeeded: req.succeeded,
            message: req.message,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(Json(&r).into_response())
}
