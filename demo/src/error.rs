//! What can go wrong while generating or writing the demo workspace.

use std::path::PathBuf;

use arrow::error::ArrowError;
use deltalake::DeltaTableError;

/// A failure of [`generate`](crate::generate).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The options cannot produce a workspace.
    #[error("invalid demo options: {0}")]
    InvalidOptions(String),
    /// The background task building the data panicked or was cancelled.
    #[error("the demo data generation task failed")]
    GenerateTask {
        /// Why the task did not finish.
        #[source]
        source: tokio::task::JoinError,
    },
    /// Assembling an Arrow record batch failed.
    #[error("building a record batch for table {table} failed")]
    BuildBatch {
        /// The table being built.
        table: String,
        /// The Arrow error.
        #[source]
        source: ArrowError,
    },
    /// The location of a table could not be derived from the workspace URL.
    #[error("cannot derive the location of table {table} from workspace URL {workspace}")]
    TableUrl {
        /// The table.
        table: String,
        /// The workspace URL given.
        workspace: String,
        /// The URL error.
        #[source]
        source: url::ParseError,
    },
    /// The local directory of a table could not be created.
    #[error("creating directory {} failed", path.display())]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Opening (or preparing to create) a Delta table failed.
    #[error("opening Delta table {table} failed")]
    OpenTable {
        /// The table.
        table: String,
        /// The Delta error.
        #[source]
        source: DeltaTableError,
    },
    /// Writing a Delta table failed.
    #[error("writing Delta table {table} failed")]
    WriteTable {
        /// The table.
        table: String,
        /// The Delta error.
        #[source]
        source: DeltaTableError,
    },
}
