//! Coordinator errors.

/// Result with the coordinator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What failed in the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] tarn_common::net::BindError),
    /// The lake root is unusable.
    #[error("lake: {0}")]
    Lake(tarn_lake::Error),
    /// Ballista's scheduler did not start.
    #[error("cannot start the Ballista scheduler: {source}")]
    StartScheduler {
        /// The cause.
        source: ballista_core::error::BallistaError,
    },
    /// The gRPC server failed.
    #[error("coordinator server failed: {source}")]
    Serve {
        /// The cause.
        source: tonic::transport::Error,
    },
    /// The state store could not be opened.
    #[error("state store: {0}")]
    Store(#[from] tarn_state::Error),
    /// The ledger could not be loaded.
    #[error("cannot load leases and job runs: {0}")]
    Ledger(tarn_common::TarnError),
    /// The configuration is inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// This coordinator was leader and lost its etcd lease; it stops so
    /// that it never acts on a stale view.
    #[error("lost leadership (etcd lease expired); stopping so a standby takes over")]
    LostLeadership,
    /// A background task panicked or was cancelled.
    #[error("coordinator task failed: {0}")]
    Task(String),
}
