//! Errors of the lake: each maps to a user-facing code.

use tarn_common::{ErrorCode, TarnError};

/// Result with the lake's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong reading or resolving the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake root is not a usable URL or directory.
    #[error("invalid lake root '{root}': {reason}")]
    InvalidRoot {
        /// What was given.
        root: String,
        /// Why it is unusable.
        reason: String,
    },
    /// The object store for a remote root could not be built.
    #[error("cannot open object store for '{root}': {source}")]
    ObjectStore {
        /// The root.
        root: String,
        /// The cause.
        source: Box<object_store::Error>,
    },
    /// Listing the lake failed.
    #[error("cannot list '{location}': {source}")]
    List {
        /// Where.
        location: String,
        /// The cause.
        source: Box<object_store::Error>,
    },
    /// The workspace does not exist.
    #[error("workspace '{0}' does not exist")]
    WorkspaceNotFound(String),
    /// The workspace name is not acceptable.
    #[error("'{0}' is not a valid workspace name")]
    InvalidWorkspaceName(String),
    /// The table does not exist.
    #[error("table '{table}' does not exist in workspace '{workspace}'")]
    TableNotFound {
        /// The workspace.
        workspace: String,
        /// The table as typed.
        table: String,
    },
    /// The Delta log could not be read.
    #[error("cannot read Delta table '{table}': {source}")]
    OpenTable {
        /// The table.
        table: String,
        /// The cause.
        source: Box<deltalake::DeltaTableError>,
    },
    /// A path resolves outside the lake root (symlink, absolute or `..`).
    #[error("{what} resolves to '{path}', which is outside the lake")]
    OutsideLake {
        /// The workspace, table or file.
        what: String,
        /// Where it points.
        path: String,
    },
    /// The table uses a Delta feature Tarn cannot read faithfully.
    #[error("table '{table}' uses {feature}, which Tarn does not read yet")]
    UnsupportedFeature {
        /// The table.
        table: String,
        /// The feature.
        feature: String,
    },
}

impl Error {
    /// The user-facing form of this error.
    pub fn to_tarn(&self) -> TarnError {
        match self {
            Error::WorkspaceNotFound(_) => {
                TarnError::new(ErrorCode::WorkspaceNotFound, self.to_string())
            }
            Error::InvalidWorkspaceName(_) => {
                TarnError::new(ErrorCode::InvalidWorkspaceName, self.to_string())
            }
            Error::TableNotFound { .. } => {
                TarnError::new(ErrorCode::TableNotFound, self.to_string())
            }
            Error::OutsideLake { .. } => {
                TarnError::new(ErrorCode::PathOutsideLake, self.to_string()).with_fix(
                    "ask an operator to move the data into the lake; Tarn reads nothing outside it",
                )
            }
            Error::UnsupportedFeature { .. } => {
                TarnError::new(ErrorCode::Unsupported, self.to_string())
            }
            // The Delta reader's errors can carry a whole backtrace: keep
            // the first line, which says what is wrong with the log.
            Error::OpenTable { table, source } => {
                let text = source.to_string();
                let first = text.lines().next().unwrap_or_default().trim();
                TarnError::new(
                    ErrorCode::Internal,
                    format!("cannot read Delta table '{table}': {first}"),
                )
                .with_fix("ask an operator to repair or remove the table's _delta_log")
            }
            _ => TarnError::new(ErrorCode::Internal, self.to_string()),
        }
    }
}

/// A value error of the engine (a cast that does not fit, an overflow, a
/// division by zero) as [`ErrorCode::InvalidValue`]: the same every run,
/// so it must not read as a failed stage worth retrying. Found anywhere in
/// the error's chain.
pub fn value_error(e: &datafusion::error::DataFusionError) -> Option<TarnError> {
    use arrow::error::ArrowError;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let cause = match err.downcast_ref::<ArrowError>() {
            Some(ArrowError::CastError(m) | ArrowError::ParseError(m)) => Some(m.clone()),
            Some(ArrowError::ArithmeticOverflow(m)) => Some(format!("arithmetic overflow: {m}")),
            Some(ArrowError::DivideByZero) => Some("division by zero".to_string()),
            _ => None,
        };
        if let Some(cause) = cause {
            return Some(TarnError::new(ErrorCode::InvalidValue, cause));
        }
        cur = err.source();
    }
    None
}

/// `e`, with a value error carried as its coded form (an executor's errors
/// reach the gateway as text, which keeps the code).
pub fn with_value_code(
    e: datafusion::error::DataFusionError,
) -> datafusion::error::DataFusionError {
    match value_error(&e) {
        Some(t) => datafusion::error::DataFusionError::External(Box::new(t)),
        None => e,
    }
}

#[cfg(test)]
mod value_tests {
    use super::*;
    use arrow::error::ArrowError;
    use datafusion::error::DataFusionError;

    #[test]
    fn cast_and_arithmetic_errors_are_invalid_values_wherever_they_sit() {
        let cast = DataFusionError::ArrowError(
            Box::new(ArrowError::CastError("Cannot cast string 'abc'".into())),
            None,
        );
        let wrapped = DataFusionError::Context("stage".into(), Box::new(cast));
        let t = value_error(&wrapped).expect("found under the context");
        assert_eq!(t.code, ErrorCode::InvalidValue);
        assert!(t.to_string().contains("'abc'"), "{t}");
        let zero = DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None);
        assert_eq!(value_error(&zero).unwrap().code, ErrorCode::InvalidValue);
        // Control: a failure of the machinery is not a value error.
        let io = DataFusionError::Execution("shuffle file lost".into());
        assert!(value_error(&io).is_none());
        let mem =
            DataFusionError::ArrowError(Box::new(ArrowError::MemoryError("oom".into())), None);
        assert!(value_error(&mem).is_none());
    }
}
