//! KQL, the Kusto Query Language, planned into DataFusion.
//!
//! A query is parsed here ([`parse`]) into a [`Script`] — its `let`
//! statements, request properties (`set query_now = …;`) and one tabular
//! expression — and planned ([`plan`]) into a DataFusion
//! [`LogicalPlan`] over the tables
//! of a session state. Everything after planning (the optimiser, the lake
//! catalog, roles, the plan checks, leases, distribution) is the SQL
//! path's, unchanged.
//!
//! KQL's own semantics are kept where they differ from SQL: `==` is
//! case-sensitive and `=~` is not, `has` matches whole terms, a `join`
//! is `innerunique` unless it says otherwise, `summarize` names its
//! columns `count_`, `sum_X`…, and `project` renames with `=`.
//!
//! The parser is this crate's own (recursive descent over a small lexer)
//! rather than a published one: every error must carry its line, column
//! and a caret, and name the operator or function it does not know, and
//! the published parsers either stop at "parse error" or plan against a
//! DataFusion several versions older.

mod ast;
mod error;
pub mod functions;
mod lexer;
mod parser;
mod planner;

use chrono::{DateTime, Utc};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;

pub use ast::Script;
pub use error::{nearest, ErrorKind, KqlError};

/// A table a query names, as written (`T`, `ws.T` or `tarn.ws.T`), with
/// the byte offset it was written at (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// Catalog, if written.
    pub catalog: Option<String>,
    /// Workspace (schema), if written.
    pub workspace: Option<String>,
    /// The table.
    pub table: String,
    /// Where it was written.
    pub offset: usize,
}

/// Parses a KQL query: `let` statements, `set` request properties and
/// at most one tabular expression, separated by `;`.
pub fn parse(text: &str) -> Result<Script, KqlError> {
    parser::parse(text)
}

/// What planning needs besides the query.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The time `now()` and `ago()` answer. `None`: the query's start,
    /// as SQL's `now()`. A `set query_now = …;` in the query wins.
    pub now: Option<DateTime<Utc>>,
}

/// Plans `script` against the tables `state` resolves (its default
/// catalog and schema apply to unqualified names).
pub async fn plan(
    script: &Script,
    state: &SessionState,
    options: &Options,
) -> Result<LogicalPlan, KqlError> {
    planner::plan(script, state, options).await
}

#[cfg(test)]
mod tests;
