//! The kernels a job's work runs in. The runner drives any kernel through
//! [`JobKernel`]: it hands over the job's pieces one at a time (a script's
//! statements, or a notebook's code, cell by cell) and records what each
//! did. `tarn-sql` (and `tarn-kql`, with KQL queries) runs each statement
//! on the cluster with the run's
//! application transaction; another kernel kind plugs in by implementing
//! the trait and being named in [`KernelKind`].

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use serde_json::{json, Value};
use tarn_common::{ErrorCode, TarnError};
use tarn_proto::{JobInfo, JobRunInfo};
use tokio_util::sync::CancellationToken;

use super::check::{bind, created_table, Piece};
use super::run::{Current, TableWrite, PROGRESS_EVERY};
use crate::kernel::KernelOptions;
use crate::query::{Queries, TimeLimit};
use crate::session::{Session, Sessions};
use crate::write::Effect;

/// The kernels jobs can run, by kernelspec name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KernelKind {
    /// `tarn-sql`: SQL statements planned on the gateway, run on the
    /// executors.
    Sql,
    /// `tarn-kql`: each cell one KQL query, planned and run as `tarn-sql`
    /// runs a statement.
    Kql,
    /// `tarn-python`: code cells in a hosted IPython process from the
    /// gateway's pool, its `lake` acting as the job's owner.
    Python,
}

impl KernelKind {
    /// Every kind, for messages that list them.
    pub const ALL: &'static [KernelKind] = &[KernelKind::Sql, KernelKind::Kql, KernelKind::Python];

    /// The kernelspec name.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Sql => "tarn-sql",
            KernelKind::Kql => "tarn-kql",
            KernelKind::Python => "tarn-python",
        }
    }

    /// The kind a notebook's kernelspec names; a kernel jobs cannot run
    /// is the job's error, listing those they can.
    pub fn of(name: &str) -> Result<KernelKind, TarnError> {
        // A notebook written in a plain Jupyter says python3.
        if name == "python3" {
            return Ok(KernelKind::Python);
        }
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                TarnError::new(
                    ErrorCode::InvalidJob,
                    format!(
                        "the notebook's kernel is {name:?}; jobs run notebooks of these kernels: {}",
                        known.join(", ")
                    ),
                )
                .with_fix(format!(
                    "set the notebook's metadata.kernelspec.name to one of: {}, or send a SQL script as `sql` or a KQL query as `kql`",
                    known.join(", ")
                ))
            })
    }
}

/// Where a kernel reports the progress of the piece it runs.
#[async_trait::async_trait]
pub(crate) trait Progress: Send {
    /// The running piece got this far.
    async fn current(&mut self, now: Current);
}

/// What one piece did.
pub(crate) struct Done {
    /// `succeeded`, or `already_committed` (a retry found its write landed
    /// by an earlier attempt).
    pub status: &'static str,
    /// Rows it returned (a write: rows written).
    pub rows: u64,
    /// The commits it made.
    pub writes: Vec<TableWrite>,
    /// Its outputs in the executed notebook.
    pub outputs: Vec<Value>,
}

/// A kernel a run's pieces execute in, in order, as the job's owner.
#[async_trait::async_trait]
pub(crate) trait JobKernel: Send {
    /// Runs one piece within `limit`; `stop` ends it early (cancel, lost
    /// lease, shutdown). Its writes commit at most once per run, however
    /// often the run is tried.
    async fn run(
        &mut self,
        piece: &Piece,
        limit: TimeLimit,
        stop: &CancellationToken,
        progress: &mut dyn Progress,
    ) -> Result<Done, TarnError>;
}

/// `tarn-sql`: each statement planned as the owner with the parameters
/// bound as values, run on the executors, its write committed with the
/// run's Delta application transaction.
pub(crate) struct SqlKernel<'a> {
    pub sessions: &'a Sessions,
    pub queries: &'a Queries,
    pub render: &'a KernelOptions,
    pub session: Arc<Session>,
    pub run: &'a JobRunInfo,
    pub job: &'a JobInfo,
    pub values: HashMap<String, ScalarValue>,
}

#[async_trait::async_trait]
impl JobKernel for SqlKernel<'_> {
    async fn run(
        &mut self,
        p: &Piece,
        limit: TimeLimit,
        stop: &CancellationToken,
        progress: &mut dyn Progress,
    ) -> Result<Done, TarnError> {
        let (run, session) = (self.run, &self.session);
        let query_id = crate::query::new_query_id();
        let workspace = session.workspace();
        let app = tarn_lake::write::AppTxn {
            app_id: format!("tarn-job/{}/{}.{}", self.job.job_id, p.cell, p.index),
            version: run.seq as i64,
        };
        let mut planned = match self
            .sessions
            .plan_in(
                session,
                &session.grants,
                &workspace,
                &p.sql,
                p.language,
                &query_id,
            )
            .await
        {
            Ok(p) => p,
            // `CREATE TABLE t AS …` whose table an earlier attempt of this
            // run created: that write is done.
            Err(e) if e.code == ErrorCode::TableAlreadyExists => {
                let target =
                    created_table(self.sessions, session, &session.grants, &workspace, &p.sql)
                        .and_then(|(ws, t)| {
                            let url = self.sessions.lake().table_url(&ws, &t).ok()?;
                            Some((format!("{ws}.{t}"), url.to_string()))
                        });
                match target {
                    Some((table, url)) if landed(&url, &app).await? => {
                        return Ok(already_committed(run, &table))
                    }
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if p.language == crate::session::Language::Sql {
            planned.plan = bind(planned.plan, &self.values)?;
        }
        let mut write = None;
        if let Effect::Commit(spec) = &planned.effect {
            let table = format!("{}.{}", spec.workspace, spec.name);
            if landed(&spec.url, &app).await? {
                return Ok(already_committed(run, &table));
            }
            let mut spec = spec.as_ref().clone();
            if let Some(w) = spec.write.as_mut() {
                w.app_txn = Some(app);
                write = Some((w.txn.clone(), table));
            }
            planned.effect = Effect::Commit(Arc::new(spec));
        }
        let q = self
            .queries
            .start_limited(
                session,
                planned,
                query_id,
                &format!("job-{}", run.run_id),
                limit,
            )
            .await?;
        let mut shown =
            crate::collect::Shown::new(self.render.max_result_rows, self.render.max_output_bytes);
        let mut stream = q.stream.into_batches();
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        let mut stopping = false;
        let outcome = loop {
            tokio::select! {
                next = stream.next() => match next {
                    Some(Ok(batch)) => shown.push(&batch),
                    Some(Err(e)) => break Err(e),
                    None => break Ok(()),
                },
                _ = stop.cancelled(), if !stopping => {
                    stopping = true;
                    self.queries.cancel_run(&q.run_id);
                    // The stream ends with CANCELLED once the jobs stop.
                }
                _ = tick.tick() => {
                    // A statement sent straight to one executor (a direct
                    // run) has no Ballista stages: its rows still count.
                    let pr = self.queries.progress(&q.run_id).await.unwrap_or_default();
                    progress.current(Current {
                        cell: p.cell,
                        index: p.index,
                        stages_done: pr.stages_done,
                        stages_total: pr.stages_total,
                        tasks_done: pr.tasks_done,
                        tasks_total: pr.tasks_total,
                        rows: shown.total() as u64,
                    }).await;
                }
            }
        };
        outcome?;
        let (rows, write) = match write {
            Some((txn, table)) => {
                let c = self.queries.take_receipt(&txn);
                let rows = c.as_ref().map(|c| c.rows).unwrap_or(0);
                (
                    rows,
                    c.map(|c| TableWrite {
                        table,
                        rows: c.rows,
                        version: c.version,
                    }),
                )
            }
            None => (shown.total() as u64, None),
        };
        let output = (!q.schema.fields().is_empty()).then(|| {
            let (data, metadata) = crate::kernel::render_result(
                &q.schema,
                shown.batches(),
                shown.total(),
                self.render,
            );
            json!({"output_type": "display_data", "data": data, "metadata": metadata})
        });
        Ok(Done {
            status: "succeeded",
            rows,
            writes: write.into_iter().collect(),
            outputs: output.into_iter().collect(),
        })
    }
}

/// `tarn-python`: each code cell sent to a hosted IPython process as an
/// `execute_request`; its outputs kept as nbformat outputs; an exception
/// fails the run with the cell and the error (a `TarnError` raised by
/// `lake` keeps its code). The process is the run's alone and ends with
/// it.
///
/// The notebook's `lake` calls run in the run's session, which carries the
/// run's [`JobScope`](crate::session::JobScope): the run's timeout, and
/// each write committed with a Delta application transaction named by the
/// job, the cell and the write's place in it, so a retried run skips the
/// writes an earlier attempt landed.
pub(crate) struct PythonKernel<'a> {
    pub hosted: Arc<tarn_pykernel::HostedKernel>,
    pub events: tokio::sync::mpsc::UnboundedReceiver<tarn_pykernel::Event>,
    pub sessions: &'a Sessions,
    pub queries: &'a Queries,
    pub session: Arc<Session>,
}

impl Drop for PythonKernel<'_> {
    fn drop(&mut self) {
        self.hosted.kill();
        self.sessions.revoke_passes(&self.session.id);
    }
}

impl PythonKernel<'_> {
    /// What the cell's `lake` calls wrote: their commits for the report,
    /// and a line in the cell's output for each write skipped because an
    /// earlier attempt had made it.
    fn writes(&self, outputs: &mut Vec<Value>) -> (u64, Vec<TableWrite>) {
        let Some(scope) = &self.session.job else {
            return (0, Vec::new());
        };
        let mut done = Vec::new();
        for w in scope.take_writes() {
            match w.txn.and_then(|t| self.queries.take_receipt(&t)) {
                Some(c) => done.push(TableWrite {
                    table: w.table,
                    rows: c.rows,
                    version: c.version,
                }),
                None => outputs.push(json!({"output_type": "stream", "name": "stdout",
                    "text": format!("{}: already written by an earlier attempt of this run; not written again\n", w.table)})),
            }
        }
        (done.iter().map(|w| w.rows).sum(), done)
    }
}

#[async_trait::async_trait]
impl JobKernel for PythonKernel<'_> {
    async fn run(
        &mut self,
        p: &Piece,
        limit: TimeLimit,
        stop: &CancellationToken,
        _progress: &mut dyn Progress,
    ) -> Result<Done, TarnError> {
        use tarn_pykernel::{Channel, Event};
        if let Some(scope) = &self.session.job {
            scope.begin_cell(p.cell);
            scope.take_writes();
        }
        let req = self.hosted.conn.request(
            "execute_request",
            json!({"code": p.sql, "silent": false, "store_history": true,
                   "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}),
        );
        self.hosted
            .conn
            .send(Channel::Shell, &req)
            .await
            .map_err(|e| TarnError::new(ErrorCode::KernelDied, e.to_string()))?;
        let mine = |m: &tarn_pykernel::Message| {
            m.parent_header.get("msg_id").and_then(Value::as_str) == Some(req.msg_id())
        };
        let deadline = tokio::time::sleep(limit.duration());
        tokio::pin!(deadline);
        let mut outputs = Vec::new();
        // The reply (shell) and the outputs (iopub) travel apart: a cell is
        // done when its reply and its idle status have both arrived.
        let mut reply: Option<Value> = None;
        let mut idle = false;
        let interrupt = |hosted: &tarn_pykernel::HostedKernel| {
            let msg = hosted.conn.request("interrupt_request", json!({}));
            let hosted_conn = Arc::clone(&hosted.conn);
            async move {
                let _ = hosted_conn.send(Channel::Control, &msg).await;
            }
        };
        loop {
            if let (Some(content), true) = (&reply, idle) {
                let (rows, writes) = self.writes(&mut outputs);
                if content.get("status").and_then(Value::as_str) == Some("ok") {
                    return Ok(Done {
                        status: "succeeded",
                        rows,
                        writes,
                        outputs,
                    });
                }
                return Err(cell_error(content, outputs));
            }
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(Event::Message(Channel::IoPub, m)) if mine(&m) => {
                        if m.msg_type() == "status" {
                            idle |= m.content.get("execution_state").and_then(Value::as_str) == Some("idle");
                        } else if let Some(out) = nb_output(&m) {
                            outputs.push(out);
                        }
                    }
                    Some(Event::Message(Channel::Shell, m)) if mine(&m) && m.msg_type() == "execute_reply" => {
                        reply = Some(m.content);
                    }
                    Some(Event::Unresponsive(_)) | None => {
                        return Err(TarnError::new(ErrorCode::KernelDied, self.hosted.exited().await));
                    }
                    Some(_) => {}
                },
                why = self.hosted.exited() => {
                    return Err(TarnError::new(ErrorCode::KernelDied, format!("the job's Python kernel died: {why}")));
                }
                _ = stop.cancelled() => {
                    interrupt(&self.hosted).await;
                    return Err(TarnError::new(ErrorCode::Cancelled, "the run was cancelled (or its lease ended) while a cell ran"));
                }
                _ = &mut deadline => {
                    interrupt(&self.hosted).await;
                    return Err(limit.exceeded());
                }
            }
        }
    }
}

/// An iopub message as an nbformat output, if it is one.
fn nb_output(m: &tarn_pykernel::Message) -> Option<Value> {
    let c = &m.content;
    Some(match m.msg_type() {
        "stream" => json!({"output_type": "stream", "name": c["name"], "text": c["text"]}),
        "display_data" => {
            json!({"output_type": "display_data", "data": c["data"], "metadata": c.get("metadata").cloned().unwrap_or(json!({}))})
        }
        "execute_result" => json!({"output_type": "execute_result", "data": c["data"],
            "metadata": c.get("metadata").cloned().unwrap_or(json!({})), "execution_count": c["execution_count"]}),
        "error" => {
            json!({"output_type": "error", "ename": c["ename"], "evalue": c["evalue"], "traceback": c["traceback"]})
        }
        _ => return None,
    })
}

/// A cell's exception as the run's error: a Tarn refusal raised by `lake`
/// keeps its code; anything else is the notebook's own failure.
fn cell_error(content: &Value, _outputs: Vec<Value>) -> TarnError {
    let ename = content
        .get("ename")
        .and_then(Value::as_str)
        .unwrap_or("error");
    let evalue = content.get("evalue").and_then(Value::as_str).unwrap_or("");
    if let Some(e) = parse_tarn(evalue) {
        return e;
    }
    TarnError::new(
        ErrorCode::ExecutionFailed,
        format!("the cell raised {ename}: {evalue}"),
    )
    .with_fix("fix the notebook (run it in a tarn-python kernel to see the traceback), then run the job again")
}

/// `TARN-<n> <NAME>: <message>. Fix: <fix>` (how a TarnError prints in
/// Python) back into the error.
fn parse_tarn(text: &str) -> Option<TarnError> {
    let rest = text.trim().strip_prefix("TARN-")?;
    let (num, rest) = rest.split_once(' ')?;
    let code = ErrorCode::from_number(num.parse().ok()?)?;
    let (_, rest) = rest.split_once(": ")?;
    let (message, fix) = match rest.rsplit_once(". Fix: ") {
        Some((m, f)) => (m, Some(f)),
        None => (rest, None),
    };
    let e = TarnError::new(code, message.to_string());
    Some(match fix {
        Some(f) => e.with_fix(f.to_string()),
        None => e,
    })
}

/// Whether this statement's write landed in an earlier attempt of the run
/// (Delta keeps the last version each app id committed).
async fn landed(url: &str, app: &tarn_lake::write::AppTxn) -> Result<bool, TarnError> {
    let done = tarn_lake::write::app_txn_version(url, &app.app_id).await?;
    Ok(done.is_some_and(|v| v >= app.version))
}

/// A statement whose write an earlier attempt of the run committed.
fn already_committed(run: &JobRunInfo, table: &str) -> Done {
    tracing::info!(run = %run.run_id, %table, "write already committed by an earlier attempt; skipped");
    Done {
        status: "already_committed",
        rows: 0,
        writes: Vec::new(),
        outputs: vec![json!({"output_type": "stream", "name": "stdout",
            "text": format!("{table}: already written by an earlier attempt of this run; not written again\n")})],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_raised_in_python_keep_their_code() {
        let e = parse_tarn(
            "TARN-2001 WORKSPACE_NOT_FOUND: workspace 'hr' does not exist. Fix: ask its owner",
        )
        .unwrap();
        assert_eq!(e.code, ErrorCode::WorkspaceNotFound);
        assert_eq!(e.message, "workspace 'hr' does not exist");
        assert_eq!(e.fix(), "ask its owner");
        assert!(parse_tarn("NameError: x").is_none());
        assert!(parse_tarn("TARN-9999 NOPE: x").is_none());
    }

    #[test]
    fn kernels_are_found_by_name_and_strangers_are_refused_with_the_list() {
        assert_eq!(KernelKind::of("tarn-sql").unwrap(), KernelKind::Sql);
        assert_eq!(KernelKind::of("tarn-kql").unwrap(), KernelKind::Kql);
        assert_eq!(KernelKind::of("tarn-python").unwrap(), KernelKind::Python);
        assert_eq!(KernelKind::of("python3").unwrap(), KernelKind::Python);
        let e = KernelKind::of("ir").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJob);
        assert!(e.message.contains("\"ir\""), "{e}");
        assert!(e.fix.as_deref().unwrap_or("").contains("tarn-sql"), "{e:?}");
    }
}
