//! The lake as a session's catalog. A session's state carries Ballista's
//! codecs and settings, the operator's defaults and the `tarn` catalog as
//! the caller may see it; the in-process runs of [`crate::local`] build
//! theirs from the same parts, so both plan alike.

use std::sync::Arc;

use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionConfig;
use tarn_common::{ErrorCode, TarnError, CATALOG};
use tarn_lake::{Lake, LakeCatalog, LakeLogicalCodec};

use super::Sessions;

impl Sessions {
    pub(super) fn build_state(
        &self,
        session_id: &str,
        vcores: usize,
        grants: &tarn_common::roles::Grants,
    ) -> Result<SessionState, TarnError> {
        let mut config = planning_config(&self.default_workspace, vcores)
            .with_ballista_logical_extension_codec(Arc::new(LakeLogicalCodec::default()))
            .with_ballista_physical_extension_codec(Arc::new(
                tarn_lake::LakePhysicalCodec::default(),
            ))
            .with_ballista_job_name("tarn-query")
            // Ballista's clients (job submission, result fetches) dial the
            // coordinator and executors over the cluster's mutual TLS.
            .with_ballista_override_create_grpc_client_endpoint(Arc::new(
                tarn_common::cluster::secure_endpoint,
            ))
            // Jobs are planned by Ballista's static planner. The adaptive
            // one replaces empty subplans with multi-partition `EmptyExec`s
            // as stages finish, which Ballista then cannot restrict to a
            // task's partitions: a union over such a branch wrote some
            // partitions twice (a CTAS failed "partition result … came back
            // twice") — and it ignores the scheduler session's planner
            // rules Tarn relies on (`tarn_lake::leaves`).
            .with_ballista_adaptive_query_planner(false);
        for (key, value) in &self.settings {
            // Checked when the gateway started.
            let _ = config.options_mut().set(key, value);
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_runtime_env(Arc::clone(&self.runtime))
            .with_session_id(session_id.to_string())
            .build();
        let state = state
            .upgrade_for_ballista(self.scheduler_url.clone())
            .map_err(|e| {
                TarnError::new(ErrorCode::Internal, format!("cannot create session: {e}"))
            })?;
        // After the upgrade, which replaces the scalar functions.
        with_lake(state, &self.lake, grants, self.limits.max_constant_bytes)
    }

    /// A catalog list holding only the `tarn` catalog as `grants` sees it
    /// (a run with narrower grants than its session's gets its own).
    pub(super) fn catalogs_for(
        &self,
        grants: &tarn_common::roles::Grants,
    ) -> Arc<dyn datafusion::catalog::CatalogProviderList> {
        let list = datafusion::catalog::MemoryCatalogProviderList::new();
        datafusion::catalog::CatalogProviderList::register_catalog(
            &list,
            CATALOG.to_string(),
            lake_catalog(&self.lake, grants),
        );
        Arc::new(list)
    }

    /// Re-lists workspaces and their tables (for information_schema and
    /// metadata calls, which must show the current lake).
    pub async fn refresh_all(&self) -> Result<Vec<String>, TarnError> {
        refresh_lake(&self.lake).await
    }
}

/// The configuration every statement is planned with, for a session of
/// `partitions` vCores whose default workspace is `default_workspace`:
/// Ballista's settings (which the cluster reads from it), the `tarn`
/// catalog only, `information_schema`, identifiers as typed.
pub fn planning_config(default_workspace: &str, partitions: usize) -> SessionConfig {
    let mut config = SessionConfig::new_with_ballista()
        .with_target_partitions(partitions.max(1))
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG, default_workspace)
        .with_create_default_catalog_and_schema(false);
    // Analysts type `SigninLogs.UserPrincipalName` exactly as the
    // schema spells it; lower-casing unquoted identifiers would break
    // every CamelCase name in the lake.
    config.options_mut().sql_parser.enable_ident_normalization = false;
    config.options_mut().execution.collect_statistics = true;
    config
}

/// Adds Tarn's planning parts to a DataFusion state: bounded constant
/// folding (`max_constant_bytes`, see [`crate::fold`]), the series table
/// functions, and the lake as the `tarn` catalog of a caller holding
/// `grants`.
pub fn with_lake(
    state: SessionState,
    lake: &Arc<Lake>,
    grants: &tarn_common::roles::Grants,
    max_constant_bytes: usize,
) -> Result<SessionState, TarnError> {
    let mut state = crate::fold::guard(state, max_constant_bytes);
    // Series functions that can travel to the cluster (see
    // `tarn_lake::series`); `table_functions` allows only these.
    for name in tarn_lake::series::NAMES {
        let f = tarn_lake::series::SeriesFunction::new(name).map_err(|e| {
            TarnError::new(ErrorCode::Internal, format!("cannot create session: {e}"))
        })?;
        state.register_udtf(name, Arc::new(f));
    }
    state
        .catalog_list()
        .register_catalog(CATALOG.to_string(), lake_catalog(lake, grants));
    Ok(state)
}

/// The lake as the `tarn` catalog of a caller holding `grants`.
fn lake_catalog(
    lake: &Arc<Lake>,
    grants: &tarn_common::roles::Grants,
) -> Arc<dyn datafusion::catalog::CatalogProvider> {
    // Workspaces the user holds no role in are not there at all: not
    // in SHOW SCHEMAS, information_schema, nor name resolution.
    Arc::new(LakeCatalog::with_visible(Arc::clone(lake), {
        let grants = grants.clone();
        Arc::new(move |ws: &str| grants.sees(ws))
    }))
}

/// Re-lists the lake's workspaces and their tables.
pub async fn refresh_lake(lake: &Arc<Lake>) -> Result<Vec<String>, TarnError> {
    let names = lake.refresh().await.map_err(|e| e.to_tarn())?;
    for n in &names {
        if let Ok(ws) = lake.workspace(n).await {
            ws.refresh().await.map_err(|e| e.to_tarn())?;
        }
    }
    Ok(names)
}
