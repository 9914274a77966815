//! Checked at submit, not at 2 a.m.: a job's every statement (SQL, or KQL
//! with the KQL planner) is parsed and planned against the current catalog
//! as its owner when the job is created or changed, with the same codes
//! and fixes as at run time.

use std::collections::{BTreeMap, HashMap};

use datafusion::scalar::ScalarValue;
use tarn_common::roles::{Grants, Role};
use tarn_common::{ErrorCode, TarnError};
use tarn_jobs::{JobSpec, ParamValue};

use super::kernel::KernelKind;
use crate::session::{Language, Session, Sessions};

/// The statements of a job, grouped by the cell they come from.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    /// The notebook cell's index in the document (0 for a SQL script).
    pub cell: usize,
    /// The statement's place in its cell.
    pub index: usize,
    /// Its text.
    pub sql: String,
    /// What it is written in (a `.kql` script, a `tarn-kql` cell or a
    /// `%%kql` cell is KQL).
    pub language: Language,
}

/// What a job runs: its statements in order, and its parameter defaults.
#[derive(Debug, Clone)]
pub(crate) struct Work {
    pub pieces: Vec<Piece>,
    pub defaults: BTreeMap<String, ParamValue>,
    /// The notebook, for the executed copy kept as the run's output.
    pub notebook: Option<tarn_jobs::Notebook>,
    /// The kernel the pieces run in.
    pub kernel: KernelKind,
}

pub(crate) fn invalid(e: tarn_jobs::Error) -> TarnError {
    TarnError::new(ErrorCode::InvalidJob, e.to_string())
}

/// The job's statements and parameter defaults.
pub(crate) fn work_of(spec: &JobSpec) -> Result<Work, TarnError> {
    spec.validate().map_err(invalid)?;
    if let Some(sql) = &spec.sql {
        let pieces = crate::kernel::split_statements(sql)
            .into_iter()
            .enumerate()
            .map(|(index, sql)| Piece {
                cell: 0,
                index,
                sql,
                language: Language::Sql,
            })
            .collect();
        return Ok(Work {
            pieces,
            defaults: spec.parameters.clone(),
            notebook: None,
            kernel: KernelKind::Sql,
        });
    }
    if let Some(kql) = &spec.kql {
        // One KQL query: its `let`s and `set`s belong to it.
        return Ok(Work {
            pieces: vec![Piece {
                cell: 0,
                index: 0,
                sql: kql.clone(),
                language: Language::Kql,
            }],
            defaults: spec.parameters.clone(),
            notebook: None,
            kernel: KernelKind::Kql,
        });
    }
    let doc = spec.notebook.as_ref().ok_or_else(|| {
        TarnError::new(
            ErrorCode::InvalidJob,
            "a job needs `sql`, `kql` or `notebook`",
        )
    })?;
    let nb = tarn_jobs::Notebook::parse(doc).map_err(invalid)?;
    let kernel = KernelKind::of(&nb.kernel)?;
    // The notebook's own defaults, overridden by the job's.
    let defaults = tarn_jobs::params::merge(&nb.defaults().map_err(invalid)?, &spec.parameters)
        .map_err(invalid)?;
    let mut pieces = Vec::new();
    if kernel == KernelKind::Python {
        // A Python cell runs whole; the parameters cell runs too (its
        // defaults), followed by the run's values, as papermill does.
        for cell in &nb.cells {
            if !cell.source.trim().is_empty() {
                pieces.push(Piece {
                    cell: cell.index,
                    index: 0,
                    sql: cell.source.clone(),
                    language: Language::Sql,
                });
            }
        }
    }
    // A SQL or KQL notebook's cells, each split as its kernel splits it
    // (`%%kql` and `%kql` in a SQL cell, `%%sql` and `%sql` in a KQL one).
    let language = match kernel {
        KernelKind::Kql => Some(Language::Kql),
        KernelKind::Sql => Some(Language::Sql),
        KernelKind::Python => None,
    };
    for cell in nb.cells.iter().filter(|c| !c.is_parameters) {
        let Some(language) = language else { break };
        let queries =
            crate::kernel::cell_queries(&cell.source, language).map_err(|e| TarnError {
                message: format!("cell {}: {}", cell.index + 1, e.message),
                ..e
            })?;
        for (index, q) in queries.into_iter().enumerate() {
            pieces.push(Piece {
                cell: cell.index,
                index,
                sql: q.text,
                language: q.language,
            });
        }
    }
    if pieces.is_empty() {
        return Err(TarnError::new(
            ErrorCode::InvalidJob,
            "the notebook has no statement to run",
        ));
    }
    Ok(Work {
        pieces,
        defaults,
        notebook: Some(nb),
        kernel,
    })
}

/// Parameter values as DataFusion binds them to `$name` placeholders:
/// values travel beside the SQL, never pasted into it.
pub(crate) fn scalars(values: &BTreeMap<String, ParamValue>) -> HashMap<String, ScalarValue> {
    values
        .iter()
        .map(|(k, v)| {
            let s = match v {
                ParamValue::Null => ScalarValue::Null,
                ParamValue::Bool(b) => ScalarValue::Boolean(Some(*b)),
                ParamValue::Int(i) => ScalarValue::Int64(Some(*i)),
                ParamValue::Float(f) => ScalarValue::Float64(Some(*f)),
                ParamValue::Text(t) => ScalarValue::Utf8(Some(t.clone())),
            };
            (k.clone(), s)
        })
        .collect()
}

/// Where a statement sits, for messages.
pub(crate) fn place(p: &Piece, notebook: bool) -> String {
    if notebook {
        format!("cell {}, statement {}", p.cell + 1, p.index + 1)
    } else {
        format!("statement {}", p.index + 1)
    }
}

/// A statement's error, saying where it is; the code stays.
pub(crate) fn located(e: TarnError, p: &Piece, notebook: bool) -> TarnError {
    TarnError {
        message: format!("{}: {}", place(p, notebook), e.message),
        ..e
    }
}

/// The roles a job acts with: the owner's, without the operator flag (a
/// job never names files).
pub fn delegated_grants(grants: &Grants) -> Grants {
    Grants {
        operator: false,
        ..grants.clone()
    }
}

/// Checks a job as its owner would run it now: the definition, the
/// notebook, the parameters, and every statement planned against the
/// catalog with the owner's roles. A statement reading or writing a table
/// an earlier statement of the job creates is checked when it runs.
pub async fn check(
    sessions: &Sessions,
    spec: &JobSpec,
    owner: &str,
    grants: &Grants,
    python: Option<&std::path::Path>,
) -> Result<(), TarnError> {
    let work = work_of(spec)?;
    grants.require(&spec.workspace, Role::Reader, "create jobs in")?;
    if work.kernel == KernelKind::Python {
        // Its cells are parsed now (a typo fails at submit, not at 2 am);
        // what they do is checked when they run: their SQL goes through
        // `lake`, with the same rules and codes.
        if let Some(python) = python {
            python_syntax(python, &work.pieces).await?;
        }
        return Ok(());
    }
    let session = sessions.detached(owner, grants, "", 1, &spec.workspace, None)?;
    let values = scalars(&work.defaults);
    let notebook = work.notebook.is_some();
    let mut created: Vec<String> = Vec::new();
    for p in &work.pieces {
        if p.language == Language::Sql {
            if let Some((_, t)) = created_table(sessions, &session, grants, &spec.workspace, &p.sql)
            {
                created.push(t);
            }
        }
        let id = crate::query::new_query_id();
        let planned = match sessions
            .plan_in(&session, grants, &spec.workspace, &p.sql, p.language, &id)
            .await
        {
            Ok(p) => p,
            Err(e)
                if e.code == ErrorCode::TableNotFound
                    && created.iter().any(|t| e.message.contains(t.as_str())) =>
            {
                continue
            }
            Err(e) => return Err(located(e, p, notebook)),
        };
        if p.language == Language::Sql {
            bind(planned.plan, &values).map_err(|e| located(e, p, notebook))?;
        }
    }
    Ok(())
}

/// Binds the values to a plan's placeholders; a placeholder without a
/// value is the job's error.
pub(crate) fn bind(
    plan: datafusion::logical_expr::LogicalPlan,
    values: &HashMap<String, ScalarValue>,
) -> Result<datafusion::logical_expr::LogicalPlan, TarnError> {
    plan.with_param_values(values.clone()).map_err(|e| {
        TarnError::new(
            ErrorCode::InvalidJob,
            format!("a parameter is missing: {}", e.strip_backtrace()),
        )
        .with_fix("declare it in the job's `parameters` (or the notebook's parameters cell), or pass it to the run")
    })
}

/// The table (workspace, name) a `CREATE TABLE … AS` statement creates,
/// if it is one.
pub(crate) fn created_table(
    sessions: &Sessions,
    session: &Session,
    grants: &Grants,
    workspace: &str,
    sql: &str,
) -> Option<(String, String)> {
    let state = sessions.run_state(session, workspace, "check");
    let statement = state
        .sql_to_statement(sql, &datafusion::config::Dialect::Generic)
        .ok()?;
    match crate::write::classify(&statement, grants).ok()?? {
        crate::write::WriteStatement::CreateAs { name, .. } => {
            crate::write::target(&name, workspace).ok()
        }
        _ => None,
    }
}

/// Parses each Python cell (IPython's syntax: magics such as `%sql` are
/// allowed) with the kernels' interpreter, without running any of it; the
/// first cell that does not parse is the job's error.
async fn python_syntax(python: &std::path::Path, pieces: &[Piece]) -> Result<(), TarnError> {
    const PARSE: &str = r#"
import ast, json, sys
from IPython.core.inputtransformer2 import TransformerManager
tm = TransformerManager()
for cell in json.load(sys.stdin):
    try:
        ast.parse(tm.transform_cell(cell["source"]))
    except SyntaxError as e:
        print(json.dumps({"cell": cell["cell"], "line": e.lineno, "error": f"{type(e).__name__}: {e.msg}"}))
        break
"#;
    let cells: Vec<_> = pieces
        .iter()
        .map(|p| serde_json::json!({"cell": p.cell + 1, "source": p.sql}))
        .collect();
    let unchecked = |why: String| {
        // The check is a courtesy: if it cannot run, the run still checks.
        tracing::warn!(error = %why, "could not parse a Python job's cells at submit");
        Ok(())
    };
    let mut child = match tokio::process::Command::new(python)
        .args(["-I", "-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return unchecked(e.to_string()),
    };
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let input = serde_json::to_vec(&cells).unwrap_or_default();
        if let Err(e) = stdin.write_all(&input).await {
            return unchecked(e.to_string());
        }
    }
    let out =
        match tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
            .await
        {
            Ok(Ok(out)) if out.status.success() => out,
            Ok(Ok(out)) => return unchecked(format!("the parser exited with {}", out.status)),
            Ok(Err(e)) => return unchecked(e.to_string()),
            Err(_) => return unchecked("the parser took longer than 30 s".into()),
        };
    let Some(line) = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
    else {
        return Ok(());
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
    Err(TarnError::new(
        ErrorCode::InvalidJob,
        format!(
            "cell {} does not parse: {} (line {})",
            v["cell"],
            v["error"].as_str().unwrap_or("syntax error"),
            v["line"]
        ),
    )
    .with_fix("fix the cell (run it in a tarn-python kernel to see it), then submit the job again; nothing was saved"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> JobSpec {
        JobSpec::from_json(&v).unwrap()
    }

    fn pieces(w: &Work) -> Vec<(usize, Language, String)> {
        w.pieces
            .iter()
            .map(|p| (p.cell, p.language, p.sql.trim().to_string()))
            .collect()
    }

    #[test]
    fn a_kql_script_is_one_kql_piece() {
        let w = work_of(&spec(serde_json::json!({
            "name": "k", "workspace": "demo",
            "kql": "let n = 2;\nSigninLogs | take n; "
        })))
        .unwrap();
        assert_eq!(w.kernel, KernelKind::Kql);
        assert_eq!(
            pieces(&w),
            vec![(0, Language::Kql, "let n = 2;\nSigninLogs | take n;".into())]
        );
    }

    #[test]
    fn notebook_cells_run_in_their_kernel_language_or_their_magic() {
        let cell = |s: &str| serde_json::json!({"cell_type": "code", "metadata": {}, "outputs": [], "source": s});
        let nb = |kernel: &str, cells: Vec<serde_json::Value>| {
            spec(
                serde_json::json!({"name": "n", "workspace": "demo", "notebook": {
                "nbformat": 4, "nbformat_minor": 5,
                "metadata": {"kernelspec": {"name": kernel}}, "cells": cells}}),
            )
        };
        let w = work_of(&nb(
            "tarn-sql",
            vec![
                cell("SELECT 1; SELECT 2"),
                cell("%%kql\nSecurityEvent | count"),
            ],
        ))
        .unwrap();
        assert_eq!(w.kernel, KernelKind::Sql);
        assert_eq!(
            pieces(&w),
            vec![
                (0, Language::Sql, "SELECT 1".into()),
                (0, Language::Sql, "SELECT 2".into()),
                (1, Language::Kql, "SecurityEvent | count".into()),
            ]
        );
        let w = work_of(&nb(
            "tarn-kql",
            vec![cell("SigninLogs\n| take 3"), cell("%%sql\nSELECT 3")],
        ))
        .unwrap();
        assert_eq!(w.kernel, KernelKind::Kql);
        assert_eq!(
            pieces(&w),
            vec![
                (0, Language::Kql, "SigninLogs\n| take 3".into()),
                (1, Language::Sql, "SELECT 3".into()),
            ]
        );
        // A magic jobs cannot run is the job's error, naming the cell.
        let e = work_of(&nb("tarn-kql", vec![cell("%%bash\nls")])).unwrap_err();
        assert!(e.message.starts_with("cell 1: %%bash"), "{e}");
    }
}
