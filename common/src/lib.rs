//! Plumbing shared by every Tarn role: the stable error catalogue and its
//! protocol forms, configuration loading, telemetry and shutdown.
//!
//! This crate stays small on purpose: anything that knows about DataFusion,
//! Ballista or the lake lives in the crate that owns that concern.

pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod net;
pub mod reservation;
pub mod roles;
pub mod shutdown;
pub mod supervisor;
pub mod telemetry;

pub use error::{ErrorCode, TarnError};

/// Version of the gateway/coordinator/executor protocol. Roles with a
/// different version refuse each other rather than misbehave.
pub const PROTOCOL_VERSION: u32 = 1;

/// Name of the one catalog Tarn exposes; workspaces are its schemas.
pub const CATALOG: &str = "tarn";
