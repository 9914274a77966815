//! Session settings: the operator's defaults every session starts with,
//! and the few a user may change with `SET`, checked before they apply.

use ballista_core::extension::SessionConfigExt;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::SessionConfig;
use tarn_common::{ErrorCode, TarnError};

use super::{Session, Sessions};
use crate::error::from_datafusion;

/// Session settings `SET` may change; everything else is fixed by Tarn.
const SETTABLE: &[&str] = &[
    "datafusion.execution.target_partitions",
    "datafusion.execution.batch_size",
];

impl Sessions {
    /// Every session starts with `settings` (`key=value,key=value`),
    /// which must be DataFusion or Ballista settings.
    pub fn with_settings(mut self, settings: &str) -> Result<Self, TarnError> {
        let mut probe = SessionConfig::new_with_ballista();
        for pair in settings.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    TarnError::new(
                        ErrorCode::InvalidArgument,
                        format!("session setting {pair:?} is not key=value"),
                    )
                    .with_fix(
                        "write session_settings as key=value pairs separated by commas, \
                         e.g. ballista.shuffle.compression.codec=none",
                    )
                })?;
            if key.eq_ignore_ascii_case("datafusion.execution.target_partitions") {
                return Err(TarnError::new(
                    ErrorCode::InvalidArgument,
                    "target_partitions cannot be a session default: each session's lease decides it",
                )
                .with_fix("set session_vcores or session_size instead"));
            }
            probe.options_mut().set(&key, &value).map_err(|e| {
                TarnError::new(
                    ErrorCode::InvalidArgument,
                    format!("session setting {key}={value} is not accepted: {e}"),
                )
                .with_fix(
                    "use a datafusion.* or ballista.* setting name with a value of its type, \
                     or remove it from session_settings",
                )
            })?;
            self.settings.push((key, value));
        }
        Ok(self)
    }
}

/// The setting `SET <variable> = <value>` may change, and its value: only
/// the settings on [`SETTABLE`], each to a number from 1 to 4096.
pub(super) fn settable(variable: &str, value: &str) -> Result<(String, usize), TarnError> {
    let key = variable.to_ascii_lowercase();
    if !SETTABLE.contains(&key.as_str()) {
        return Err(TarnError::new(
            ErrorCode::Unsupported,
            format!("{variable} cannot be set in a Tarn session"),
        )
        .with_fix(format!("settable: {}", SETTABLE.join(", "))));
    }
    let n: usize = value
        .trim_matches(['\'', '"'])
        .parse()
        .ok()
        .filter(|n| (1..=4096).contains(n))
        .ok_or_else(|| {
            TarnError::new(
                ErrorCode::InvalidArgument,
                format!("{variable} takes a number from 1 to 4096, not {value:?}"),
            )
        })?;
    Ok((key, n))
}

/// `state` with the setting `key` (a setting `SET` may change) set to `value`.
pub fn with_setting(
    state: &SessionState,
    key: &str,
    value: usize,
) -> Result<SessionState, TarnError> {
    let mut config = state.config().clone();
    config
        .options_mut()
        .set(key, &value.to_string())
        .map_err(|e| from_datafusion(&e))?;
    Ok(with_config(state, config))
}

/// `state` planning with `config` instead of its own. A clone with the
/// config swapped, not `SessionStateBuilder::new_from_existing(..).build()`:
/// building registers every function again (hundreds, with their
/// aliases), which was a tenth of the gateway's CPU per small query.
pub fn with_config(state: &SessionState, config: SessionConfig) -> SessionState {
    let mut state = state.clone();
    *state.config_mut() = config;
    state
}

/// Applies a checked `SET` to the session.
pub(super) fn apply_set(session: &Session, key: &str, value: usize) -> Result<(), TarnError> {
    let mut state = session.state.write();
    *state = with_setting(&state, key, value)?;
    Ok(())
}
