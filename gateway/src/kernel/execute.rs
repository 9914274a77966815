//! Running cells. A cell is split into statements (SQL statements, KQL
//! queries: see [`super::cell_queries`]), each run as a query
//! with the credential that sent the cell, under a progress display; the
//! last statement's result is the cell's, and an error stops the cell.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tarn_common::{ErrorCode, TarnError};
use tokio_util::sync::CancellationToken;

use super::render::{group, render};
use super::{error_content, Kernel, Kernels};
use crate::kernel_auth::Sender;

/// How often a running cell's progress display is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

impl Kernels {
    /// Runs one cell; returns whether the cells queued behind it should
    /// be aborted (it failed and asked to stop on error).
    pub(super) async fn execute(&self, kernel: &Kernel, parent: Value, sender: &Sender) -> bool {
        let content = parent.get("content").cloned().unwrap_or_else(|| json!({}));
        let code = content
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let silent = content
            .get("silent")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let store = content
            .get("store_history")
            .and_then(Value::as_bool)
            .unwrap_or(!silent);
        let stop_on_error = content
            .get("stop_on_error")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let token = CancellationToken::new();
        let count = if store && !silent {
            kernel.execution_count.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            kernel.execution_count.load(Ordering::SeqCst)
        };
        kernel.busy.store(true, Ordering::SeqCst);
        *kernel.current.lock() = Some((token.clone(), None));
        kernel.status(&parent, "busy");
        if !silent {
            kernel.emit(
                "iopub",
                "execute_input",
                &parent,
                json!({"code": code, "execution_count": count}),
            );
        }
        let (statements, mut failure) = match super::cell_queries(&code, kernel.language()) {
            Ok(s) => (s, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let last = statements.len().saturating_sub(1);
        for (i, q) in statements.iter().enumerate() {
            if token.is_cancelled() {
                failure = Some(TarnError::new(
                    ErrorCode::Cancelled,
                    "the cell was interrupted",
                ));
                break;
            }
            // The sender's credential may have expired while the cell
            // waited in the queue or ran its earlier statements.
            if let Err(e) = sender.check(tarn_common::clock::unix_ms()) {
                failure = Some(e);
                break;
            }
            match self
                .run_statement(kernel, &parent, q, &token, &sender.grants)
                .await
            {
                Ok(Some(data)) if !silent => {
                    if i == last {
                        kernel.emit(
                            "iopub",
                            "execute_result",
                            &parent,
                            json!({"execution_count": count, "data": data.0, "metadata": data.1}),
                        );
                    } else {
                        kernel.emit(
                            "iopub",
                            "display_data",
                            &parent,
                            json!({"data": data.0, "metadata": data.1}),
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            kernel.touch();
        }
        *kernel.current.lock() = None;
        let stop = failure.is_some() && stop_on_error;
        match failure {
            None => kernel.emit(
                "shell",
                "execute_reply",
                &parent,
                json!({"status": "ok", "execution_count": count, "payload": [], "user_expressions": {}}),
            ),
            Some(e) => {
                let mut c = error_content(&e);
                kernel.emit("iopub", "error", &parent, c.clone());
                c["status"] = json!("error");
                c["execution_count"] = json!(count);
                kernel.emit("shell", "execute_reply", &parent, c);
            }
        }
        kernel.busy.store(false, Ordering::SeqCst);
        kernel.touch();
        kernel.status(&parent, "idle");
        stop
    }

    /// Runs one statement, updating a progress display meanwhile; returns
    /// the result's mime bundle and metadata (none for empty results).
    async fn run_statement(
        &self,
        kernel: &Kernel,
        parent: &Value,
        query: &super::CellQuery,
        interrupt: &CancellationToken,
        grants: &tarn_common::roles::Grants,
    ) -> Result<Option<(Value, Value)>, TarnError> {
        let started = Instant::now();
        let workspace = kernel.session.workspace();
        let q = self
            .queries
            .start_in(
                &kernel.session,
                grants,
                &workspace,
                &query.text,
                query.language,
                None,
                &format!("kernel-{}", kernel.id),
            )
            .await?;
        if let Some(cur) = kernel.current.lock().as_mut() {
            cur.1 = Some(q.run_id.clone());
        }
        // An interrupt that landed while planning stops the query now.
        if interrupt.is_cancelled() {
            self.queries.cancel_run(&q.run_id);
        }
        let display_id = format!("tarn-progress-{}", uuid::Uuid::new_v4().simple());
        let progress_text = |p: Option<&crate::query::Progress>, rows: usize, done: bool| {
            let secs = started.elapsed().as_secs_f64();
            let stages = p
                .map(|p| {
                    format!(
                        "stages {}/{} · tasks {}/{}",
                        p.stages_done, p.stages_total, p.tasks_done, p.tasks_total
                    )
                })
                .unwrap_or_else(|| "planning".into());
            if done {
                format!("Done in {secs:.1} s: {stages} · {} rows", group(rows))
            } else {
                format!(
                    "Running {secs:.1} s: {stages} · {} rows so far",
                    group(rows)
                )
            }
        };
        kernel.emit(
            "iopub",
            "display_data",
            parent,
            json!({"data": {"text/plain": progress_text(None, 0, false)}, "metadata": {}, "transient": {"display_id": display_id}}),
        );
        let mut shown =
            crate::collect::Shown::new(self.opts.max_result_rows, self.opts.max_output_bytes);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        let mut stream = q.stream.into_batches();
        let mut last_progress = None;
        let outcome = loop {
            tokio::select! {
                next = stream.next() => match next {
                    Some(Ok(batch)) => shown.push(&batch),
                    Some(Err(e)) => break Err(e),
                    None => break Ok(()),
                },
                _ = tick.tick() => {
                    if let Ok(p) = self.queries.progress(&q.run_id).await {
                        last_progress = Some(p);
                    }
                    kernel.emit("iopub", "update_display_data", parent, json!({
                        "data": {"text/plain": progress_text(last_progress.as_ref(), shown.total(), false)},
                        "metadata": {}, "transient": {"display_id": display_id}}));
                }
            }
        };
        if let Ok(p) = self.queries.progress(&q.run_id).await {
            last_progress = Some(p);
        }
        kernel.emit(
            "iopub",
            "update_display_data",
            parent,
            json!({
            "data": {"text/plain": progress_text(last_progress.as_ref(), shown.total(), true)},
            "metadata": {}, "transient": {"display_id": display_id}}),
        );
        outcome?;
        if q.schema.fields().is_empty() {
            return Ok(None);
        }
        Ok(Some(render(
            &q.schema,
            shown.batches(),
            shown.total(),
            &self.opts,
        )))
    }
}

/// Splits a cell into statements at top-level semicolons (never one in a
/// string, quoted name or comment); empty statements are dropped.
pub fn split_statements(sql: &str) -> Vec<String> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        // Let the planner report the error on the whole text.
        return vec![sql.trim().to_string()];
    };
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut cuts = Vec::new();
    for t in &tokens {
        if t.token == Token::SemiColon {
            let Some(line) = line_starts.get((t.span.start.line as usize).saturating_sub(1)) else {
                continue;
            };
            let col = (t.span.start.column as usize).saturating_sub(1);
            if let Some((off, ';')) = sql[*line..].char_indices().nth(col) {
                cuts.push(line + off);
            }
        }
    }
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts.into_iter().chain(std::iter::once(sql.len())) {
        let piece = sql[last..c].trim();
        let only_comments = piece
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"));
        if !piece.is_empty() && !only_comments {
            out.push(piece.to_string());
        }
        last = (c + 1).min(sql.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_split_at_top_level_semicolons_only() {
        assert_eq!(
            split_statements("SELECT 1; SELECT ';' AS \"a;b\";\n-- done;\n"),
            vec!["SELECT 1".to_string(), "SELECT ';' AS \"a;b\"".to_string()]
        );
        assert_eq!(split_statements("  "), Vec::<String>::new());
        assert_eq!(split_statements("SELECT 2"), vec!["SELECT 2".to_string()]);
    }
}
