//! Gateway errors and the translation of engine errors into the catalogue.

use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use tarn_common::{ErrorCode, TarnError};

/// Result with the gateway's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What failed starting or running the gateway itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] tarn_common::net::BindError),
    /// The lake root is unusable.
    #[error("lake: {0}")]
    Lake(tarn_lake::Error),
    /// The configuration is unusable (names the setting).
    #[error("configuration: {0}")]
    Config(String),
    /// A server failed.
    #[error("gateway server failed: {0}")]
    Serve(String),
}

/// Translates an engine error into the user-facing catalogue.
pub fn from_datafusion(e: &DataFusionError) -> TarnError {
    // Lake errors travel wrapped; recover them first.
    if let Some(lake) = find_lake_error(e) {
        return lake.to_tarn();
    }
    if let Some(t) = find_tarn_error(e) {
        return t;
    }
    if let Some(t) = tarn_lake::error::value_error(e) {
        return t;
    }
    match e.find_root() {
        DataFusionError::SQL(p, _) => {
            TarnError::new(ErrorCode::SqlSyntax, format!("SQL syntax error: {p}"))
        }
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { .. } => {
                TarnError::new(ErrorCode::ColumnNotFound, s.to_string())
            }
            _ => TarnError::new(ErrorCode::InvalidQuery, s.to_string()),
        },
        // Tables are resolved against the lake before DataFusion plans
        // (a missing one is the lake's typed TableNotFound, above), so a
        // plan error is the query's own.
        DataFusionError::Plan(m) => TarnError::new(ErrorCode::InvalidQuery, m.clone()),
        DataFusionError::NotImplemented(m) => TarnError::new(ErrorCode::Unsupported, m.clone()),
        DataFusionError::ResourcesExhausted(m) => TarnError::new(
            ErrorCode::MemoryLimitExceeded,
            format!("the query ran out of its memory share: {m}"),
        ),
        // A client's cancel or the time limit ends the stream with its own
        // coded reason before the job's failure is read (query.rs), so what
        // arrives here failed while running.
        other @ (DataFusionError::Execution(_)
        | DataFusionError::External(_)
        | DataFusionError::ArrowError(..)
        | DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ParquetError(_)) => {
            TarnError::new(ErrorCode::ExecutionFailed, other.to_string())
        }
        other => TarnError::new(ErrorCode::Internal, other.to_string()),
    }
}

/// A coded error raised inside the engine: wrapped directly, or (from an
/// executor, whose errors arrive as text) as its `TARN-<n> NAME: …` form.
fn find_tarn_error(e: &DataFusionError) -> Option<TarnError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<TarnError>() {
            return Some(t.clone());
        }
        if let Some(DataFusionError::External(inner)) = err.downcast_ref::<DataFusionError>() {
            if let Some(t) = inner.downcast_ref::<TarnError>() {
                return Some(t.clone());
            }
        }
        cur = err.source();
    }
    let text = e.to_string();
    let at = text.find("TARN-")?;
    let rest = &text[at + 5..];
    let number: u32 = rest.get(..4)?.parse().ok()?;
    let code = ErrorCode::from_number(number)?;
    let body = rest[4..].trim_start();
    let body = body
        .strip_prefix(code.name())
        .map(|b| b.trim_start_matches(':').trim_start())
        .unwrap_or(body);
    let (cause, fix) = match body.split_once(". Fix: ") {
        Some((c, f)) => (c.to_string(), Some(unwrapped(f))),
        None => (unwrapped(body), None),
    };
    let mut t = TarnError::new(code, cause);
    if let Some(f) = fix {
        t = t.with_fix(f);
    }
    Some(t)
}

/// The tail of an error text without what wrapped it: the rest of the
/// line, less the closing brackets and quotes of the error chain around it
/// (a bracket the text itself opened stays).
fn unwrapped(text: &str) -> String {
    let mut t = text.lines().next().unwrap_or("").trim_end();
    loop {
        let opened = t.matches('(').count();
        let closed = t.matches(')').count();
        let before = t.len();
        t = t.trim_end_matches(['"', '\'']).trim_end();
        if closed > opened {
            t = t.strip_suffix(')').unwrap_or(t);
        }
        if t.len() == before {
            return t.to_string();
        }
    }
}

fn find_lake_error(e: &DataFusionError) -> Option<&tarn_lake::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(l) = err.downcast_ref::<tarn_lake::Error>() {
            return Some(l);
        }
        if let Some(DataFusionError::External(inner)) = err.downcast_ref::<DataFusionError>() {
            if let Some(l) = inner.downcast_ref::<tarn_lake::Error>() {
                return Some(l);
            }
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the gateway gets back when a write fails on an executor: the
    /// executor's coded error inside Ballista's text of the error chain.
    #[test]
    fn a_coded_executor_error_keeps_its_code_through_ballista() {
        let raised = TarnError::new(
            ErrorCode::NullabilityMismatch,
            "column 'v' of table 'demo.T_SPRK' is NOT NULL, but 1 row(s) of the data are NULL there",
        )
        .with_fix("write a value (mode 'append')");
        let text = format!(
            "Job 1 failed: Job failed due to stage 0 failed: Task failed due to runtime execution error: \
             DataFusionError(Shared(External(DataFusionError(External({raised:?})))))\n"
        );
        let got = from_datafusion(&DataFusionError::Execution(text));
        assert_eq!(got, raised);
    }

    #[test]
    fn the_default_fix_is_kept_whole() {
        let raised = TarnError::new(ErrorCode::PlanRefused, "plan refused: CsvExec");
        let text = format!("Task failed: External({raised:?})");
        let got = from_datafusion(&DataFusionError::Execution(text));
        assert_eq!(got.code, ErrorCode::PlanRefused);
        assert_eq!(got.message, raised.message);
        assert_eq!(got.fix(), raised.fix());
    }
}
