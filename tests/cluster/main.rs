//! Tests against a real `tarn standalone` with real clients.

mod cancel;
mod direct;
mod distributed;
mod errors;
mod ha;
mod metadata;
mod pools;
mod queries;
#[path = "../security/mod.rs"]
mod security;
mod sessions;
mod slt;
mod writes;
