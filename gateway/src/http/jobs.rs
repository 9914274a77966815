//! `/v1/jobs`: job definitions, running them, and their runs' output.
//!
//! A job is checked here as its owner would run it (every statement
//! planned against the catalog) before the coordinator stores it. Who may
//! see a job: anyone who sees its workspace. Who may change, run, renew or
//! delete it: its owner, an owner of its workspace, or an operator.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::{json, Value};
use tarn_common::roles::Role;
use tarn_common::{ErrorCode, TarnError};
use tarn_jobs::JobSpec;
use tarn_proto::*;

use super::rest::own_run;
use super::{body, ApiError, ApiResult, AppState};
use crate::auth::Identity;

fn parse_spec(v: Value) -> Result<JobSpec, ApiError> {
    JobSpec::from_json(&v).map_err(|e| ApiError(crate::jobs::invalid(e)))
}

/// The definition a stored job holds.
fn stored_spec(j: &JobInfo) -> Result<JobSpec, ApiError> {
    parse_spec(serde_json::from_str(&j.spec_json).unwrap_or_default())
}

fn job_not_found(id: &str) -> ApiError {
    ApiError(TarnError::new(
        ErrorCode::JobNotFound,
        format!("no job {id:?}"),
    ))
}

/// The job as the API shows it: its definition under `spec` (or the
/// fields a caller who may not read the definition sees).
fn job_json(j: &JobInfo) -> Value {
    let mut v = serde_json::to_value(j).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        // The delegated roles are the owner's business.
        o.remove("grants");
        o.insert("id".into(), json!(j.job_id));
    }
    v
}

fn workspace_of(j: &JobInfo) -> String {
    serde_json::from_str::<Value>(&j.spec_json)
        .ok()
        .and_then(|v| {
            v.get("workspace")
                .and_then(|w| w.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// A job the caller may see; others' jobs look unknown.
async fn visible(s: &AppState, who: &Identity, id: &str) -> Result<JobInfo, ApiError> {
    let j = s
        .coordinator()
        .get_job(GetJobRequest {
            header: Some(header()),
            job_id: id.to_string(),
        })
        .await?
        .into_inner();
    if who.grants.sees(&workspace_of(&j)) || j.owner == who.user {
        Ok(j)
    } else {
        Err(job_not_found(id))
    }
}

/// A job the caller may change, run, renew or delete.
async fn controlled(
    s: &AppState,
    who: &Identity,
    id: &str,
    action: &str,
) -> Result<JobInfo, ApiError> {
    let j = visible(s, who, id).await?;
    let ws = workspace_of(&j);
    if j.owner == who.user || who.grants.operator || who.grants.role_in(&ws) == Some(Role::Owner) {
        return Ok(j);
    }
    Err(ApiError(
        TarnError::new(
            ErrorCode::AccessDenied,
            format!("only the job's owner ('{}'), an owner of workspace '{ws}' or an operator may {action} it", j.owner),
        )
        .with_fix("ask the job's owner"),
    ))
}

async fn store(
    s: &AppState,
    id: &str,
    owner: &str,
    spec: &JobSpec,
    grants: &tarn_common::roles::Grants,
    expires_ms: u64,
) -> Result<JobInfo, ApiError> {
    Ok(s.coordinator()
        .put_job(PutJobRequest {
            header: Some(header()),
            job_id: id.to_string(),
            owner: owner.to_string(),
            spec_json: serde_json::to_string(spec).unwrap_or_default(),
            grants_json: serde_json::to_string(grants).unwrap_or_default(),
            credential_expires_unix_ms: expires_ms,
        })
        .await?
        .into_inner())
}

fn grant_until(s: &AppState) -> u64 {
    tarn_common::clock::unix_ms() + s.job_credential_lifetime.as_millis() as u64
}

pub(super) async fn create_job(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let spec = parse_spec(body::<Value>(&headers, &bytes)?)?;
    let grants = crate::jobs::delegated_grants(&who.grants);
    crate::jobs::check(
        &s.sessions,
        &spec,
        &who.user,
        &grants,
        s.kernels.python_interpreter().as_deref(),
    )
    .await?;
    let j = store(&s, "", &who.user, &spec, &grants, grant_until(&s)).await?;
    tracing::info!(job = %j.job_id, user = %who.user, "job created");
    Ok((StatusCode::CREATED, Json(job_json(&j))).into_response())
}

pub(super) async fn list_jobs(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
) -> ApiResult {
    let r = s
        .coordinator()
        .list_job_definitions(ListJobDefinitionsRequest {
            header: Some(header()),
        })
        .await?
        .into_inner();
    let jobs: Vec<Value> = r
        .jobs
        .iter()
        .filter(|j| who.grants.sees(&workspace_of(j)) || j.owner == who.user)
        .map(job_json)
        .collect();
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

pub(super) async fn get_job(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(job_json(&visible(&s, &who, &id).await?)).into_response())
}

/// A JSON merge patch of the definition; checked like a new job.
pub(super) async fn update_job(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let j = controlled(&s, &who, &id, "change").await?;
    let patch = body::<Value>(&headers, &bytes)?;
    let current = stored_spec(&j)?;
    let spec = current
        .patch(&patch)
        .map_err(|e| ApiError(crate::jobs::invalid(e)))?;
    let grants: tarn_common::roles::Grants =
        serde_json::from_str(&j.grants_json).unwrap_or_default();
    crate::jobs::check(
        &s.sessions,
        &spec,
        &j.owner,
        &grants,
        s.kernels.python_interpreter().as_deref(),
    )
    .await?;
    let j = store(
        &s,
        &id,
        &j.owner,
        &spec,
        &grants,
        j.credential_expires_unix_ms,
    )
    .await?;
    Ok(Json(job_json(&j)).into_response())
}

pub(super) async fn delete_job(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    controlled(&s, &who, &id, "delete").await?;
    s.coordinator()
        .delete_job(DeleteJobRequest {
            header: Some(header()),
            job_id: id,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The owner hands the job fresh credentials: their current roles, for
/// another `job_credential_lifetime`.
pub(super) async fn renew_job(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let j = visible(&s, &who, &id).await?;
    if j.owner != who.user {
        return Err(ApiError(
            TarnError::new(
                ErrorCode::AccessDenied,
                format!(
                    "only the job's owner ('{}') can renew its credentials",
                    j.owner
                ),
            )
            .with_fix("ask the owner to renew it, or create your own job"),
        ));
    }
    let spec = stored_spec(&j)?;
    let grants = crate::jobs::delegated_grants(&who.grants);
    let j = store(&s, &id, &j.owner, &spec, &grants, grant_until(&s)).await?;
    Ok(Json(job_json(&j)).into_response())
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RunNow {
    #[serde(default)]
    parameters: std::collections::BTreeMap<String, tarn_jobs::ParamValue>,
}

pub(super) async fn run_job(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let j = controlled(&s, &who, &id, "run").await?;
    let req: RunNow = body(&headers, &bytes)?;
    // Undeclared parameters are refused now, not when the run starts.
    let spec = stored_spec(&j)?;
    let work = crate::jobs::work_of(&spec)?;
    tarn_jobs::params::merge(&work.defaults, &req.parameters)
        .map_err(|e| ApiError(crate::jobs::invalid(e)))?;
    let run = s
        .coordinator()
        .run_job(RunJobRequest {
            header: Some(header()),
            job_id: id,
            trigger: "api".into(),
            parameters_json: serde_json::to_string(&req.parameters).unwrap_or_default(),
            retry_run_id: String::new(),
        })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(&run)).into_response())
}

pub(super) async fn job_runs(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    visible(&s, &who, &id).await?;
    let r = s
        .coordinator()
        .list_job_runs(ListJobRunsRequest {
            header: Some(header()),
            job_id: id,
        })
        .await?
        .into_inner();
    Ok(Json(json!({ "runs": r.runs })).into_response())
}

async fn run_file(s: &AppState, who: &Identity, id: &str, file: &str) -> Result<Vec<u8>, ApiError> {
    own_run(s, who, id).await?;
    s.sessions
        .lake()
        .get_system_file(&crate::jobs::output_path(id, file))
        .await
        .map_err(|e| ApiError(e.to_tarn()))?
        .ok_or_else(|| {
            ApiError(
                TarnError::new(
                    ErrorCode::NotFound,
                    format!("job run {id:?} has no {file} (yet)"),
                )
                .with_fix("a run's output and log are kept when it ends; check its status (GET /v1/job-runs/{id})"),
            )
        })
}

/// The executed notebook of an ended run.
pub(super) async fn run_output(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    kept_file(&s, &who, &id, "output.ipynb", "application/x-ipynb+json").await
}

/// The log of an ended run.
pub(super) async fn run_log(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    kept_file(&s, &who, &id, "log.txt", "text/plain; charset=utf-8").await
}

async fn kept_file(
    s: &AppState,
    who: &Identity,
    id: &str,
    file: &str,
    kind: &'static str,
) -> ApiResult {
    let bytes = run_file(s, who, id, file).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, kind)], bytes).into_response())
}

/// Tries an ended run of a job again (same run, next attempt).
pub(super) async fn retry_run(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let run = own_run(&s, &who, &id).await?;
    if run.job_id.is_empty() {
        return Err(ApiError(
            TarnError::new(
                ErrorCode::InvalidArgument,
                format!("job run {id:?} was submitted without a job; only runs of a job can be tried again"),
            )
            .with_fix("submit it again (POST /v1/job-runs)"),
        ));
    }
    controlled(&s, &who, &run.job_id, "run").await?;
    let run = s
        .coordinator()
        .run_job(RunJobRequest {
            header: Some(header()),
            job_id: run.job_id,
            trigger: "api".into(),
            parameters_json: String::new(),
            retry_run_id: id,
        })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(&run)).into_response())
}
