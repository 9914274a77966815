//! The job definition a user sends (the body of `POST /v1/jobs`).
//!
//! The JSON field names are the REST API's: renaming a field here changes
//! the API.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::notebook::{Notebook, DEFAULT_KERNEL};
use crate::params::{self, is_identifier, ParamValue};
use crate::schedule::Schedule;
use crate::script::{self, Statement};

/// The longest job name, in characters.
pub const NAME_MAX: usize = 128;
/// The most tries `retry.attempts` may ask for.
pub const MAX_ATTEMPTS: u32 = 10;
/// The top-level fields of a job definition, as a PATCH may name them.
pub const FIELDS: &[&str] = &[
    "name",
    "workspace",
    "description",
    "sql",
    "kql",
    "notebook",
    "parameters",
    "schedule",
    "size",
    "vcores",
    "timeout",
    "retry",
    "enabled",
];
/// Fields without a default, which a PATCH cannot reset.
const REQUIRED: &[&str] = &["name", "workspace"];

/// A job definition. Exactly one of `sql`, `kql` and `notebook` is set; see
/// [`JobSpec::validate`] for every rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// 1 to 128 letters, digits, spaces, `_`, `-` or `.`.
    pub name: String,
    /// The workspace (schema) the job runs in.
    pub workspace: String,
    /// Free text for people.
    #[serde(default)]
    pub description: String,
    /// A SQL script, run statement by statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// A KQL query (its `let` and `set` statements and one tabular
    /// expression), run as one query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kql: Option<String>,
    /// A Jupyter notebook document (nbformat 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notebook: Option<Value>,
    /// For a SQL job, the parameters and their defaults; for a notebook,
    /// values overriding its parameters cell.
    #[serde(default)]
    pub parameters: BTreeMap<String, ParamValue>,
    /// When the job runs by itself; without one it runs only on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// `small`, `medium`, `large` or empty for the cluster's default; the
    /// coordinator checks it against its configured sizes.
    #[serde(default)]
    pub size: String,
    /// vCores to reserve; 0 for what `size` implies.
    #[serde(default)]
    pub vcores: u32,
    /// Longest a run may take, e.g. `"8h"`; none when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub timeout: Option<Duration>,
    /// How a failed run is retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// A disabled job keeps its definition but its schedule does not fire.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// How a failed run is retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total tries, the first included: 1 (the default) means no retry, at
    /// most [`MAX_ATTEMPTS`].
    #[serde(default = "one")]
    pub attempts: u32,
    /// Wait between tries, e.g. `"30s"` (the default).
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    pub backoff: Duration,
}

fn one() -> u32 {
    1
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: one(),
            backoff: thirty_seconds(),
        }
    }
}

/// What a run executes.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// A SQL script, split into statements.
    Sql {
        /// The statements, in order.
        statements: Vec<Statement>,
    },
    /// A KQL query, run whole.
    Kql {
        /// The query as written.
        query: String,
    },
    /// A notebook.
    Notebook(Notebook),
}

impl JobSpec {
    /// Reads and [`validate`]s a job definition from JSON, with an
    /// [`Error`] of the right [`Kind`] for a malformed schedule or parameter
    /// rather than only a decoder message.
    ///
    /// [`validate`]: JobSpec::validate
    /// [`Kind`]: crate::Kind
    pub fn from_json(value: &Value) -> Result<JobSpec, Error> {
        if let Some(schedule) = value.get("schedule").filter(|s| !s.is_null()) {
            Schedule::from_json(schedule)?;
        }
        if let Some(parameters) = value.get("parameters").and_then(Value::as_object) {
            for (name, v) in parameters {
                ParamValue::from_json(name, v)?;
            }
        }
        let spec: JobSpec =
            serde_json::from_value(value.clone()).map_err(|e| Error::Malformed {
                message: e.to_string(),
            })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks every rule except how often the schedule may fire, which is
    /// the cluster's setting: the coordinator calls
    /// [`validate_with`](JobSpec::validate_with).
    ///
    /// The rules: the name's; a non-empty workspace; exactly one of `sql`
    /// and `notebook`; a script with at least one statement, or a notebook
    /// that [`Notebook::parse`] accepts and whose parameters cell reads;
    /// parameter names that are identifiers; for a script, a declared
    /// parameter for every `$name` placeholder; for a notebook, overrides
    /// only of parameters its parameters cell declares (and, on the SQL
    /// kernel, a value for every placeholder its cells use); a positive
    /// timeout; 1 to 10 attempts; a valid schedule.
    pub fn validate(&self) -> Result<(), Error> {
        self.validate_with(Duration::ZERO)
    }

    /// [`validate`](JobSpec::validate), and refuses a schedule that fires
    /// more often than `min_interval`.
    pub fn validate_with(&self, min_interval: Duration) -> Result<(), Error> {
        if !valid_name(&self.name) {
            return Err(Error::JobName {
                name: self.name.clone(),
            });
        }
        if self.workspace.trim().is_empty() {
            return Err(Error::EmptyWorkspace);
        }
        if let Some(name) = self.parameters.keys().find(|n| !is_identifier(n)) {
            return Err(Error::ParamName { name: name.clone() });
        }
        match self.work()? {
            Work::Sql { .. } => {
                let sql = self.sql.as_deref().unwrap_or_default();
                params::check_placeholders(sql, &self.parameters)?;
            }
            Work::Kql { .. } => {
                if !self.parameters.is_empty() {
                    return Err(Error::KqlParameters {
                        names: crate::error::name_list(self.parameters.keys()),
                    });
                }
            }
            Work::Notebook(notebook) => {
                let values = params::merge(&notebook.defaults()?, &self.parameters)?;
                if notebook.kernel == DEFAULT_KERNEL {
                    // `%%kql` cells and `%kql` lines are KQL: no placeholders.
                    for cell in notebook.cells.iter().filter(|c| !c.is_parameters) {
                        params::check_placeholders(
                            &crate::notebook::sql_text(&cell.source),
                            &values,
                        )?;
                    }
                }
            }
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::ZeroTimeout);
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.retry.attempts) {
            return Err(Error::RetryAttempts {
                attempts: self.retry.attempts,
            });
        }
        if let Some(schedule) = &self.schedule {
            schedule.validate(min_interval)?;
        }
        Ok(())
    }

    /// What a run executes: the script's statements or the parsed notebook.
    pub fn work(&self) -> Result<Work, Error> {
        let given = [
            self.sql.is_some(),
            self.kql.is_some(),
            self.notebook.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            0 => return Err(Error::NoWork),
            1 => {}
            _ => return Err(Error::BothWork),
        }
        if let Some(sql) = &self.sql {
            let statements = script::split(sql);
            if statements.is_empty() {
                return Err(Error::BlankSql);
            }
            return Ok(Work::Sql { statements });
        }
        if let Some(kql) = &self.kql {
            if kql_is_blank(kql) {
                return Err(Error::BlankKql);
            }
            return Ok(Work::Kql { query: kql.clone() });
        }
        match &self.notebook {
            Some(doc) => Notebook::parse(doc).map(Work::Notebook),
            None => Err(Error::NoWork),
        }
    }

    /// This job with a PATCH applied, validated as [`from_json`] does.
    ///
    /// The merge follows RFC 7386 at the top level: a field given replaces
    /// the current value whole (a new `schedule` or `parameters` object
    /// replaces the old one rather than merging into it), a field set to
    /// `null` goes back to its default, a field not given stays. Unknown
    /// fields are refused, and so is `null` for a required field.
    ///
    /// [`from_json`]: JobSpec::from_json
    pub fn patch(&self, patch: &Value) -> Result<JobSpec, Error> {
        let Value::Object(changes) = patch else {
            return Err(Error::PatchNotObject);
        };
        let mut current = serde_json::to_value(self).map_err(|e| Error::Malformed {
            message: e.to_string(),
        })?;
        let Some(fields) = current.as_object_mut() else {
            return Err(Error::Malformed {
                message: "the job did not serialize to an object".into(),
            });
        };
        for (field, value) in changes {
            if !FIELDS.contains(&field.as_str()) {
                return Err(Error::PatchUnknownField {
                    field: field.clone(),
                });
            }
            if value.is_null() {
                if REQUIRED.contains(&field.as_str()) {
                    return Err(Error::PatchRequired {
                        field: field.clone(),
                    });
                }
                fields.remove(field);
            } else {
                fields.insert(field.clone(), value.clone());
            }
        }
        JobSpec::from_json(&current)
    }
}

/// Whether a KQL text holds nothing but whitespace and `//` comments.
fn kql_is_blank(kql: &str) -> bool {
    kql.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with("//")
    })
}

/// Names appear in URLs, logs and listings, so they keep to characters that
/// need no escaping in any of them, and to no edge spaces that would make
/// two names look alike.
fn valid_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=NAME_MAX).contains(&count)
        && name.trim() == name
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.'))
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
