//! The Jupyter Server kernels API: kernel specs, kernels (start, list,
//! interrupt, restart, delete) and the websocket a notebook talks to, as
//! Jupyter clients expect them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use tarn_common::{ErrorCode, TarnError};

use super::{body, ApiError, ApiResult, AppState};
use crate::auth::Identity;
use crate::kernel::{KERNEL_NAME, KQL_KERNEL, PYTHON_KERNEL};
use crate::lease::LeaseWish;

/// Jupyter clients read the server version from here.
pub(super) async fn api_version() -> impl IntoResponse {
    Json(json!({"version": "2.14.0", "tarn_version": env!("CARGO_PKG_VERSION")}))
}

fn spec_json(name: &str) -> serde_json::Value {
    if name == PYTHON_KERNEL {
        return json!({
            "name": PYTHON_KERNEL,
            "spec": {
                "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Tarn Python",
                "language": "python",
                "interrupt_mode": "message",
                "env": {},
                "metadata": {"tarn": {"preloaded": "lake (the lake provider), %sql, %%sql, %kql and %%kql"}},
            },
            "resources": {},
        });
    }
    if name == KQL_KERNEL {
        return json!({
            "name": KQL_KERNEL,
            "spec": {
                "argv": ["tarn", "kernel", "--kql"],
                "display_name": "Tarn KQL",
                "language": "kql",
                "interrupt_mode": "message",
                "env": {},
                "metadata": {"tarn": {"row_limit": "per result, with the true row count", "cells": "one KQL query per cell; %%sql and %sql run SQL"}},
            },
            "resources": {},
        });
    }
    json!({
        "name": KERNEL_NAME,
        "spec": {
            "argv": ["tarn", "kernel"],
            "display_name": "Tarn SQL",
            "language": "sql",
            "interrupt_mode": "message",
            "env": {},
            "metadata": {"tarn": {"row_limit": "per result, with the true row count", "magics": "%%kql and %kql run KQL"}},
        },
        "resources": {},
    })
}

pub(super) async fn kernelspecs(State(s): State<AppState>) -> impl IntoResponse {
    let specs: serde_json::Map<String, serde_json::Value> = s
        .kernels
        .spec_names()
        .into_iter()
        .map(|n| (n.to_string(), spec_json(n)))
        .collect();
    Json(json!({"default": KERNEL_NAME, "kernelspecs": specs}))
}

fn no_spec(name: &str, offered: &[&str]) -> ApiError {
    ApiError(
        TarnError::new(
            ErrorCode::InvalidArgument,
            format!("there is no kernelspec {name:?}; this gateway offers {offered:?}"),
        )
        .with_fix("GET /api/kernelspecs lists the kernels"),
    )
}

pub(super) async fn kernelspec(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let offered = s.kernels.spec_names();
    if offered.contains(&name.as_str()) {
        Ok(Json(spec_json(&name)).into_response())
    } else {
        Err(no_spec(&name, &offered))
    }
}

/// The kernelspec has no logos or other resources.
pub(super) async fn kernelspec_resource(
    Path((name, resource)): Path<(String, String)>,
) -> ApiResult {
    // 404, which notebook front ends expect for a missing logo.
    Err(ApiError(
        TarnError::new(
            ErrorCode::KernelNotFound,
            format!("kernelspec {name:?} has no resource {resource:?}"),
        )
        .with_fix("none needed: the kernel has no logos"),
    ))
}

pub(super) async fn list_kernels(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
) -> ApiResult {
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

pub(super) async fn start_kernel(
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
fn check_kernel_user(who: &Identity, named: Option<&str>) -> Result<(), ApiError> {
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

pub(super) async fn get_kernel(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(s.kernels.get(&id, &who)?.model()).into_response())
}

pub(super) async fn delete_kernel(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let k = s.kernels.get(&id, &who)?;
    s.kernels.shutdown(&k).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn interrupt_kernel(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let k = s.kernels.get(&id, &who)?;
    s.kernels.interrupt(&k);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn restart_kernel(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let k = s.kernels.get(&id, &who)?;
    s.kernels.restart(&k);
    Ok(Json(k.model()).into_response())
}

/// The kernel's websocket (Jupyter messaging 5.3, JSON text frames).
pub(super) async fn channels(
    State(s): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
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
