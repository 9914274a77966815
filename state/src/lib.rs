//! Where the coordinator keeps the truth: session leases, job runs and the
//! queue.
//!
//! One trait, [`StateStore`], with two backends:
//!
//! - [`EmbeddedStore`] (the default): a `redb` file on local disk. Every
//!   commit is durable before it returns (fsync), so a `kill -9` of the
//!   coordinator loses nothing it acknowledged. The file is locked, so two
//!   coordinators can never write it at once.
//! - [`EtcdStore`]: etcd through `etcd-client`. Coordinators elect a leader
//!   with etcd's election API ([`Election`]); every commit is one etcd
//!   transaction guarded by the leader key's creation revision, so a
//!   coordinator that lost leadership without noticing cannot write.
//!
//! The coordinator is the only writer while it leads and keeps a copy of
//! the state in memory; the store is read in full when it takes over and
//! written through on every change, so the trait is small: load a prefix,
//! commit a batch atomically.

mod embedded;
mod etcd;

pub use embedded::EmbeddedStore;
pub use etcd::{Election, EtcdStore, Leadership};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded store's file could not be opened or written.
    #[error("embedded state store {path}: {message}")]
    Embedded {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// etcd refused or could not be reached.
    #[error("etcd at {endpoints}: {message}")]
    Etcd {
        /// The endpoints tried.
        endpoints: String,
        /// What failed.
        message: String,
    },
    /// This coordinator is no longer the leader; the commit was not applied.
    #[error("this coordinator lost leadership; the change was not written")]
    NotLeader,
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One change in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets a key.
    Put(String, Vec<u8>),
    /// Removes a key (absent keys are fine).
    Delete(String),
}

/// A durable key-value store with atomic multi-key commits.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// `embedded` or `etcd`.
    fn backend(&self) -> &'static str;

    /// Every key starting with `prefix`, in key order.
    async fn load(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;

    /// Applies all of `ops` or none of them. Returns once durable.
    async fn commit(&self, ops: Vec<Op>) -> Result<()>;
}
