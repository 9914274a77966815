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
    /// A port could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
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
