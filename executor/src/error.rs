//! Executor errors.

/// Result with the executor's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What failed in the executor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pool label is not `interactive` or `job`.
    #[error("unknown pool '{0}': use 'interactive' or 'job'")]
    InvalidPool(String),
    /// An address is not `host:port`.
    #[error("'{0}' is not host:port")]
    InvalidAddress(String),
    /// A listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] tarn_common::net::BindError),
    /// The work directory for shuffle files could not be made.
    #[error("cannot create the work directory {path}: {source}")]
    WorkDir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The runtime for direct runs could not be built.
    #[error("cannot start the direct-run runtime: {0}")]
    Runtime(std::io::Error),
    /// The executor's task port could not be served.
    #[error("cannot serve the task port {addr}: {source}")]
    TaskFront {
        /// The address.
        addr: String,
        /// The cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The lake root is unusable.
    #[error("lake: {0}")]
    Lake(tarn_lake::Error),
    /// The cluster credentials are missing or unreadable.
    #[error("{0}")]
    Credentials(String),
    /// The embedded Ballista executor failed.
    #[error("executor failed: {source}")]
    Ballista {
        /// The cause.
        source: ballista_core::error::BallistaError,
    },
    /// One of the executor's own servers or loops failed.
    #[error("executor task failed: {0}")]
    Task(String),
}
