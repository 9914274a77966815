//! Tests against a real `tarn standalone` with real clients.

mod cancel;
mod distributed;
mod errors;
mod metadata;
mod queries;
mod sessions;
