//! Job definitions: what a user sends to define a job, and the pure rules
//! that go with it.
//!
//! A job runs a SQL script or a Jupyter notebook in a workspace, on a
//! schedule or on request, with parameters. This crate holds the parts of
//! that which need neither the query engine nor any I/O, so the gateway can
//! check a definition where the request arrives and the coordinator can
//! compute fire times and prepare runs with the same code:
//!
//! - [`spec`]: the [`JobSpec`] JSON of the REST API, its validation and
//!   PATCH merging;
//! - [`schedule`]: [`Schedule`]s and their fire times, time zones and clock
//!   changes included;
//! - [`script`]: splitting a SQL script into [`Statement`]s;
//! - [`notebook`]: reading nbformat 4 [`Notebook`]s, their parameters cell,
//!   and writing the executed document back;
//! - [`params`]: [`ParamValue`]s, merging a run's overrides into defaults,
//!   and the `$name` placeholders a script uses;
//! - [`error`]: the one [`Error`] type, each message naming cause and fix,
//!   and its [`Kind`] for choosing a protocol code.
//!
//! Nothing here runs a statement, reads a clock or touches storage: callers
//! pass in the times and documents, and get values back.

#![warn(missing_docs)]

pub mod error;
pub mod notebook;
pub mod params;
pub mod schedule;
pub mod script;
pub mod spec;

pub use error::{Error, Kind};
pub use notebook::{injected_parameters_cell, Cell, Notebook};
pub use params::ParamValue;
pub use schedule::{CatchUp, Overlap, Schedule, When};
pub use script::Statement;
pub use spec::{JobSpec, RetryPolicy, Work};
