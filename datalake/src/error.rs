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
