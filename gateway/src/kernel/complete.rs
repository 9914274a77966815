//! Completion in cells: workspace, table and column names from the lake,
//! offered only where the caller's grants see them, and SQL or KQL
//! keywords (by the cell's language).

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Kernel, Kernels};
use crate::session::Language;

impl Kernels {
    /// Completions for the word before the cursor: workspaces, tables of
    /// the session's workspace, `workspace.table`, `table.column`, and
    /// columns of the tables the cell names.
    ///
    /// Only what `grants` sees is offered, exactly as `information_schema`
    /// shows it: no workspace, table or column of a workspace the caller
    /// holds no role in.
    pub(super) async fn complete(
        &self,
        kernel: &Kernel,
        content: &Value,
        grants: &tarn_common::roles::Grants,
    ) -> Value {
        let code = content.get("code").and_then(Value::as_str).unwrap_or("");
        let chars: Vec<char> = code.chars().collect();
        let cursor = content
            .get("cursor_pos")
            .and_then(Value::as_u64)
            .map(|c| (c as usize).min(chars.len()))
            .unwrap_or(chars.len());
        let mut start = cursor;
        while start > 0
            && (chars[start - 1].is_alphanumeric()
                || chars[start - 1] == '_'
                || chars[start - 1] == '.')
        {
            start -= 1;
        }
        let word: String = chars[start..cursor].iter().collect();
        let lake = self.sessions.lake();
        if lake.workspace_names().is_empty() {
            let _ = self.sessions.refresh_all().await;
        }
        let default_ws = kernel.session.workspace();
        let mut candidates: Vec<String> = Vec::new();
        let (qualifier, stem) = match word.rsplit_once('.') {
            Some((q, s)) => (Some(q.to_string()), s.to_string()),
            None => (None, word.clone()),
        };
        let replace_from = match &qualifier {
            Some(q) => start + q.chars().count() + 1,
            None => start,
        };
        let default_visible = grants.sees(&default_ws);
        match &qualifier {
            Some(q) => {
                if let Some(ws) = visible_workspace(lake, grants, q).await {
                    // A workspace first named here has not been listed yet.
                    if ws.cached_table_names().is_empty() {
                        let _ = ws.refresh().await;
                    }
                    candidates.extend(ws.cached_table_names());
                } else if !default_visible || lake.workspace_names().iter().any(|w| w == q) {
                    // `hidden_ws.` offers nothing, as if it did not exist.
                } else if let Ok(ws) = lake.workspace(&default_ws).await {
                    if let Ok(t) = ws.table(q).await {
                        let schema = datafusion::catalog::TableProvider::schema(t.as_ref());
                        candidates.extend(schema.fields().iter().map(|f| f.name().clone()));
                    }
                }
            }
            None => {
                candidates.extend(
                    lake.workspace_names()
                        .into_iter()
                        .filter(|w| grants.sees(w)),
                );
                if let Some(ws) = visible_workspace(lake, grants, &default_ws).await {
                    let tables = ws.cached_table_names();
                    for t in &tables {
                        let mentioned = code
                            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .any(|w| w == t);
                        if mentioned {
                            if let Ok(table) = ws.table(t).await {
                                let schema =
                                    datafusion::catalog::TableProvider::schema(table.as_ref());
                                candidates.extend(schema.fields().iter().map(|f| f.name().clone()));
                            }
                        }
                    }
                    candidates.extend(tables);
                }
                let keywords = match cell_language(code, kernel.language()) {
                    Language::Sql => SQL_KEYWORDS,
                    Language::Kql => KQL_KEYWORDS,
                };
                candidates.extend(keywords.iter().map(|k| k.to_string()));
            }
        }
        let lower = stem.to_lowercase();
        let mut matches: Vec<String> = candidates
            .into_iter()
            .filter(|c| c.to_lowercase().starts_with(&lower))
            .collect();
        matches.sort();
        matches.dedup();
        json!({
            "status": "ok",
            "matches": matches,
            "cursor_start": replace_from,
            "cursor_end": cursor,
            "metadata": {},
        })
    }
}

/// A workspace the caller may see; others are not offered at all.
async fn visible_workspace(
    lake: &Arc<tarn_lake::Lake>,
    grants: &tarn_common::roles::Grants,
    name: &str,
) -> Option<Arc<tarn_lake::Workspace>> {
    if !grants.sees(name) {
        return None;
    }
    lake.workspace(name).await.ok()
}

/// The language a cell is in: its `%%kql` / `%%sql` first line, or the
/// kernel's.
fn cell_language(code: &str, kernel: Language) -> Language {
    let first = code.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let words: Vec<&str> = first.split_whitespace().collect();
    match words.first().copied() {
        Some("%%kql") => Language::Kql,
        Some("%%sql") => Language::Sql,
        _ => kernel,
    }
}

/// KQL's tabular operators and common words, offered in KQL cells.
const KQL_KEYWORDS: &[&str] = &[
    "where",
    "project",
    "project-away",
    "project-rename",
    "extend",
    "summarize",
    "count",
    "take",
    "top",
    "sort by",
    "order by",
    "distinct",
    "join",
    "lookup",
    "union",
    "mv-expand",
    "parse",
    "datatable",
    "range",
    "print",
    "getschema",
    "let",
    "by",
    "and",
    "or",
    "not",
    "in",
    "has",
    "contains",
    "startswith",
    "endswith",
    "between",
    "ago",
    "now",
    "datetime",
    "bin",
    "dcount",
    "countif",
];

const SQL_KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "AS",
    "COUNT",
    "DISTINCT",
    "HAVING",
    "WITH",
    "UNION ALL",
    "DESCRIBE",
    "SHOW TABLES",
    "EXPLAIN",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "BETWEEN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
];
