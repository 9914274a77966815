//! Tests against a real `tarn standalone` with real clients.
// The tests are clients of a cluster, not a role: their tasks need no
// supervisor (clippy.toml bans bare spawns in the roles).
#![allow(clippy::disallowed_methods)]

mod cancel;
mod direct;
mod distributed;
mod errors;
mod ha;
mod jobs;
mod kql;
mod metadata;
mod pools;
mod queries;
#[path = "../security/mod.rs"]
mod security;
mod sessions;
mod slt;
mod writes;
