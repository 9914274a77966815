//! Executing one claimed run: the job's statements in order, as its owner,
//! under the run's job-pool lease and timeout, each write committed with
//! the run's application transaction; progress reported after every
//! statement, the executed notebook and a log kept in the lake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use tarn_common::clock::unix_ms;
use tarn_common::roles::{Grants, Role};
use tarn_common::{ErrorCode, TarnError};
use tarn_jobs::JobSpec;
use tarn_proto::{FinishJobRunRequest, JobInfo, JobRunInfo, ReportJobRunRequest};
use tokio_util::sync::CancellationToken;

use super::check::{located, place, scalars, work_of, Piece};
use super::kernel::{JobKernel, KernelKind, Progress, PythonKernel, SqlKernel};
use super::Jobs;
use crate::query::TimeLimit;
use crate::session::Language;

/// Where a run's executed notebook is kept, under the lake's `_tarn/`.
pub fn output_path(run_id: &str, file: &str) -> String {
    format!("job-runs/{run_id}/{file}")
}

/// What a run reports (and keeps in its record).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Statements run (or skipped) so far, in order.
    pub statements: Vec<StatementReport>,
    /// Statements in the job.
    pub statements_total: usize,
    /// Tables written, with the rows and Delta version each commit made.
    pub tables: Vec<TableWrite>,
    /// The executed notebook, once kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The statement running now: where it is and how far it got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<Current>,
}

/// The running statement's progress.
#[derive(Debug, Clone, Serialize)]
pub struct Current {
    /// Notebook cell (0 for a script).
    pub cell: usize,
    /// Its place in the cell.
    pub index: usize,
    /// Stages of its Ballista jobs done.
    pub stages_done: u32,
    /// Stages in all.
    pub stages_total: u32,
    /// Tasks done.
    pub tasks_done: u32,
    /// Tasks in all.
    pub tasks_total: u32,
    /// Rows so far.
    pub rows: u64,
}

/// How often a running statement's progress is reported.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// One statement's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StatementReport {
    /// Notebook cell (0 for a script).
    pub cell: usize,
    /// Its place in the cell.
    pub index: usize,
    /// `succeeded`, `failed`, or `already_committed` (a retry found its
    /// write landed by an earlier attempt).
    pub status: &'static str,
    /// ms since epoch.
    pub started_unix_ms: u64,
    /// How long it ran.
    pub ms: u64,
    /// Rows it returned (a write: rows written).
    pub rows: u64,
    /// The error's code, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
}

/// One committed write.
#[derive(Debug, Clone, Serialize)]
pub struct TableWrite {
    /// `workspace.table`.
    pub table: String,
    /// Rows written.
    pub rows: u64,
    /// The Delta version the commit made.
    pub version: i64,
}

/// How the run ended.
struct Ended {
    error: Option<TarnError>,
    timed_out: bool,
}

/// Codes a later attempt may not meet: the run is tried again while its
/// job's retry policy allows.
fn retryable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::ExecutionFailed
            | ErrorCode::WriteConflict
            | ErrorCode::PoolNotAvailable
            | ErrorCode::Internal
            | ErrorCode::NotLeader
            | ErrorCode::StateStoreUnavailable
    )
}

/// A run's log: timestamped lines, kept with its output.
#[derive(Default)]
struct Log(Vec<String>);

impl Log {
    fn line(&mut self, text: impl AsRef<str>) {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        self.0.push(format!("{now} {}", text.as_ref()));
    }
}

impl Jobs {
    /// Runs a claimed run to its end and reports it; never fails (what
    /// goes wrong is the run's result).
    pub(crate) async fn execute(&self, run: JobRunInfo, job: JobInfo, shutdown: CancellationToken) {
        let stop = shutdown.child_token();
        let heartbeat = self.keep_lease(&run.lease_id, stop.clone());
        let mut report = RunReport::default();
        let mut log = Log::default();
        log.line(format!(
            "run {} of job {} ({}), attempt {} of {}, trigger {}, as {}",
            run.run_id, job.job_id, run.name, run.attempt, run.max_attempts, run.trigger, job.owner
        ));
        let started = Instant::now();
        let mut outputs = Vec::new();
        let ended = self
            .run_statements(&run, &job, &stop, &mut report, &mut log, &mut outputs)
            .await;
        stop.cancel();
        let _ = heartbeat.await;
        let status = match (&ended.error, ended.timed_out) {
            (None, _) => "succeeded".to_string(),
            (Some(_), true) => "timed out".to_string(),
            (Some(e), false) => format!("failed: {e}"),
        };
        log.line(format!(
            "run {status} after {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        report.output = self.keep_output(&run, &job, outputs, &log).await;
        self.finish(&run, ended, &report).await;
    }

    /// Renews the run's lease until `stop`; a lease that is gone (the run
    /// was cancelled, timed out at the coordinator, or handed to another
    /// worker) stops the run.
    fn keep_lease(&self, lease: &str, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let leases = self.leases().clone();
        let lease = lease.to_string();
        let every = self.opts.renew;
        self.tasks.spawn("renew a job run's lease", async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                match leases.renew(vec![lease.clone()]).await {
                    Ok(gone) if gone.contains(&lease) => {
                        tracing::info!(%lease, "the run's lease is gone; stopping the run");
                        stop.cancel();
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(%lease, error = %e, "cannot renew the run's lease; will retry"),
                }
            }
        })
    }

    async fn run_statements(
        &self,
        run: &JobRunInfo,
        job: &JobInfo,
        stop: &CancellationToken,
        report: &mut RunReport,
        log: &mut Log,
        outputs: &mut Vec<(usize, usize, Value)>,
    ) -> Ended {
        let fail = |e: TarnError| Ended {
            error: Some(e),
            timed_out: false,
        };
        let spec: JobSpec = match serde_json::from_str(&job.spec_json) {
            Ok(s) => s,
            Err(e) => {
                return fail(TarnError::new(
                    ErrorCode::InvalidJob,
                    format!("the stored job is unreadable: {e}"),
                ))
            }
        };
        // Expired or stripped credentials fail the run before it does anything.
        if job.credential_expires_unix_ms <= unix_ms() {
            return fail(
                TarnError::new(
                    ErrorCode::CredentialsExpired,
                    format!(
                        "the credentials job {} holds for '{}' expired {}",
                        job.job_id,
                        job.owner,
                        chrono::DateTime::from_timestamp_millis(job.credential_expires_unix_ms as i64)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    ),
                )
                .with_fix(format!(
                    "the owner renews them: `tarn job renew {}` (POST /v1/jobs/{}/renew); nothing was run",
                    job.job_id, job.job_id
                )),
            );
        }
        let grants: Grants = serde_json::from_str(&job.grants_json).unwrap_or_default();
        let work = match work_of(&spec) {
            Ok(w) => w,
            Err(e) => return fail(e),
        };
        report.statements_total = work.pieces.len();
        let notebook = work.notebook.is_some();
        let preflight = match work.kernel {
            KernelKind::Sql | KernelKind::Kql => {
                self.preflight(&work.pieces, &grants, &spec.workspace, &job.owner, notebook)
            }
            KernelKind::Python => grants
                .require(&spec.workspace, Role::Reader, "run jobs in")
                .map_err(|e| e.with_fix("the owner renews the job with credentials that hold the role (`tarn job renew`)")),
        };
        if let Err(e) = preflight {
            return fail(e);
        }
        let overrides: std::collections::BTreeMap<String, tarn_jobs::ParamValue> =
            serde_json::from_str(&run.parameters_json).unwrap_or_default();
        let values = match tarn_jobs::params::merge(&work.defaults, &overrides) {
            Ok(v) => v,
            Err(e) => return fail(super::check::invalid(e)),
        };
        log.line(format!(
            "parameters: {}",
            serde_json::to_string(&values).unwrap_or_default()
        ));
        let mut pieces = work.pieces.clone();
        if work.kernel == KernelKind::Python {
            // papermill's convention: the run's values in a cell right
            // after the parameters cell (or first, without one).
            let injected = tarn_jobs::notebook::injected_parameters_cell(&values);
            let source =
                tarn_jobs::notebook::source_text(injected.get("source")).unwrap_or_default();
            let params = work
                .notebook
                .as_ref()
                .and_then(|nb| nb.parameters_cell())
                .map(|c| c.index);
            let at = params
                .and_then(|i| pieces.iter().position(|p| p.cell == i).map(|k| k + 1))
                .unwrap_or(0);
            let cell = params.unwrap_or_else(|| pieces.first().map(|p| p.cell).unwrap_or(0));
            pieces.insert(
                at,
                Piece {
                    cell,
                    index: 1,
                    sql: source,
                    language: Language::Sql,
                },
            );
            report.statements_total = pieces.len();
        }
        let values = scalars(&values);
        let timeout = Duration::from_millis(run.timeout_ms.max(1));
        let deadline = Instant::now()
            + timeout.saturating_sub(Duration::from_millis(
                unix_ms().saturating_sub(run.started_unix_ms),
            ));
        // A Python notebook's own statements (its `lake` calls) run in this
        // session: the run's lease and timeout, its writes once per run.
        let (session_grants, scope) = match work.kernel {
            KernelKind::Sql | KernelKind::Kql => (grants.clone(), None),
            KernelKind::Python => (
                Grants {
                    operator: false,
                    ..grants.clone()
                },
                Some(Arc::new(crate::session::JobScope::new(
                    job.job_id.clone(),
                    run.seq as i64,
                    deadline,
                    timeout,
                ))),
            ),
        };
        let session = match self.sessions.detached(
            &job.owner,
            &session_grants,
            &run.lease_id,
            run.vcores,
            &spec.workspace,
            scope,
        ) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let mut kernel: Box<dyn JobKernel + '_> = match work.kernel {
            KernelKind::Sql | KernelKind::Kql => Box::new(SqlKernel {
                sessions: &self.sessions,
                queries: &self.queries,
                render: &self.opts.render,
                session,
                run,
                job,
                values,
            }),
            KernelKind::Python => match self.python_kernel(session, deadline).await {
                Ok(k) => Box::new(k),
                Err(e) => return fail(e),
            },
        };
        for p in &pieces {
            if stop.is_cancelled() {
                return fail(TarnError::new(
                    ErrorCode::Cancelled,
                    "the run was cancelled (or its lease ended) before it finished",
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ended {
                    error: Some(TimeLimit::Job { left, timeout }.exceeded()),
                    timed_out: true,
                };
            }
            let started_ms = unix_ms();
            let t0 = Instant::now();
            let outcome = kernel
                .run(
                    p,
                    TimeLimit::Job { left, timeout },
                    stop,
                    &mut Reporter {
                        jobs: self,
                        run,
                        report,
                    },
                )
                .await;
            report.current = None;
            let ms = t0.elapsed().as_millis() as u64;
            match outcome {
                Ok(done) => {
                    log.line(format!(
                        "{}: {} ({} rows, {ms} ms)",
                        place(p, notebook),
                        done.status,
                        done.rows
                    ));
                    report.tables.extend(done.writes.iter().cloned());
                    report.statements.push(StatementReport {
                        cell: p.cell,
                        index: p.index,
                        status: done.status,
                        started_unix_ms: started_ms,
                        ms,
                        rows: done.rows,
                        error_code: None,
                    });
                    for out in done.outputs {
                        outputs.push((p.cell, p.index, out));
                    }
                }
                Err(e) => {
                    let e = located(e, p, notebook);
                    log.line(format!("{}: failed: {e}", place(p, notebook)));
                    report.statements.push(StatementReport {
                        cell: p.cell,
                        index: p.index,
                        status: "failed",
                        started_unix_ms: started_ms,
                        ms,
                        rows: 0,
                        error_code: Some(e.code.number()),
                    });
                    outputs.push((p.cell, p.index, error_output(&e)));
                    let timed_out = e.code == ErrorCode::JobTimedOut;
                    return Ended {
                        error: Some(e),
                        timed_out,
                    };
                }
            }
            self.report(run, report).await;
        }
        Ended {
            error: None,
            timed_out: false,
        }
    }

    /// A hosted Python kernel for a run: its memory capped at the run's
    /// lease share, `lake` acting in the run's `session` (the job's owner
    /// with the job's roles) until the run's `deadline`.
    async fn python_kernel(
        &self,
        session: Arc<crate::session::Session>,
        deadline: Instant,
    ) -> Result<PythonKernel<'_>, TarnError> {
        let host = self.python.clone().ok_or_else(|| {
            TarnError::new(
                ErrorCode::KernelUnavailable,
                "this gateway cannot run tarn-python notebooks",
            )
        })?;
        // The credential outlives the run a little (its cells are stopped
        // at the deadline) and is revoked when the run's kernel goes.
        let ttl = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(60);
        let (hosted, events) = host
            .prepare(&session, ttl, self.opts.render.max_result_rows)
            .await?;
        Ok(PythonKernel {
            hosted,
            events,
            sessions: &self.sessions,
            queries: &self.queries,
            session,
        })
    }

    /// The owner's roles must still allow every write the job makes: a
    /// job whose owner lost a role fails before it runs anything.
    fn preflight(
        &self,
        pieces: &[Piece],
        grants: &Grants,
        workspace: &str,
        owner: &str,
        notebook: bool,
    ) -> Result<(), TarnError> {
        let fix = "the owner renews the job with credentials that hold the role (`tarn job renew`), or an owner of the workspace grants it";
        grants
            .require(workspace, Role::Reader, "run jobs in")
            .map_err(|e| e.with_fix(fix))?;
        let session = self
            .sessions
            .detached(owner, grants, "", 1, workspace, None)?;
        let state = self.sessions.run_state(&session, workspace, "preflight");
        for p in pieces.iter().filter(|p| p.language == Language::Sql) {
            // KQL only reads: it needs the reader role checked above.
            let Ok(statement) =
                state.sql_to_statement(&p.sql, &datafusion::config::Dialect::Generic)
            else {
                continue; // planned (and refused with its code) when it runs
            };
            let write =
                crate::write::classify(&statement, grants).map_err(|e| located(e, p, notebook))?;
            let (name, role, action) = match write {
                Some(crate::write::WriteStatement::Drop { name, .. }) => {
                    (name, Role::Owner, "delete tables in")
                }
                Some(crate::write::WriteStatement::Insert { name, .. })
                | Some(crate::write::WriteStatement::CreateAs { name, .. }) => {
                    (name, Role::Contributor, "write to")
                }
                None => continue,
            };
            let (ws, _) =
                crate::write::target(&name, workspace).map_err(|e| located(e, p, notebook))?;
            grants
                .require(&ws, role, action)
                .map_err(|e| located(e.with_fix(fix), p, notebook))?;
        }
        Ok(())
    }

    async fn report(&self, run: &JobRunInfo, report: &RunReport) {
        let req = ReportJobRunRequest {
            header: Some(tarn_proto::header()),
            run_id: run.run_id.clone(),
            worker: self.worker_id.clone(),
            result_json: serde_json::to_string(report).unwrap_or_default(),
        };
        if let Err(e) = self.leases().api().report_job_run(req).await {
            tracing::warn!(run = %run.run_id, error = %e.message(), "cannot report the run's progress");
        }
    }

    /// Keeps the executed notebook and the log in the lake; returns the
    /// output's path.
    async fn keep_output(
        &self,
        run: &JobRunInfo,
        job: &JobInfo,
        outputs: Vec<(usize, usize, Value)>,
        log: &Log,
    ) -> Option<String> {
        let lake = self.sessions.lake();
        let mut text = log.0.join("\n");
        text.push('\n');
        if let Err(e) = lake
            .put_system_file(&output_path(&run.run_id, "log.txt"), text.into_bytes())
            .await
        {
            tracing::warn!(run = %run.run_id, error = %e, "cannot keep the run's log");
        }
        let doc = executed_notebook(job, outputs);
        let path = output_path(&run.run_id, "output.ipynb");
        match lake
            .put_system_file(&path, serde_json::to_vec_pretty(&doc).unwrap_or_default())
            .await
        {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::warn!(run = %run.run_id, error = %e, "cannot keep the run's output");
                None
            }
        }
    }

    async fn finish(&self, run: &JobRunInfo, ended: Ended, report: &RunReport) {
        let (code, message, retry) = match &ended.error {
            Some(e) => (e.code.number(), e.to_string(), retryable(e.code)),
            None => (0, String::new(), false),
        };
        // Stopped because this gateway shuts down, not by the run's own
        // doing: another worker takes it, without using up an attempt.
        let handed_back = ended.error.is_some() && self.tasks.token().is_cancelled();
        let req = FinishJobRunRequest {
            handed_back,
            header: Some(tarn_proto::header()),
            run_id: run.run_id.clone(),
            succeeded: ended.error.is_none(),
            message,
            error_code: code,
            retryable: retry,
            timed_out: ended.timed_out,
            result_json: serde_json::to_string(report).unwrap_or_default(),
            worker: self.worker_id.clone(),
        };
        match self.leases().api().finish_job_run(req).await {
            Ok(r) => {
                let r = r.into_inner();
                tracing::info!(run = %run.run_id, status = tarn_proto::JobRunState::try_from(r.status).map(|s| s.label()).unwrap_or("?"), "job run finished");
            }
            // Cancelled or timed out at the coordinator meanwhile: its
            // record already says how it ended.
            Err(e) => {
                tracing::info!(run = %run.run_id, error = %e.message(), "the run's end was not recorded")
            }
        }
    }
}

/// Reports a running piece's progress with the run's record.
struct Reporter<'a> {
    jobs: &'a Jobs,
    run: &'a JobRunInfo,
    report: &'a mut RunReport,
}

#[async_trait::async_trait]
impl Progress for Reporter<'_> {
    async fn current(&mut self, now: Current) {
        self.report.current = Some(now);
        self.jobs.report(self.run, self.report).await;
    }
}

/// A Jupyter `error` output for a failed statement.
fn error_output(e: &TarnError) -> Value {
    json!({
        "output_type": "error",
        "ename": format!("TARN-{} {}", e.code.number(), e.code.name()),
        "evalue": e.to_string(),
        "traceback": [e.to_string()],
    })
}

/// The job's notebook with each cell's outputs (a SQL script becomes a
/// notebook with one cell per statement).
fn executed_notebook(job: &JobInfo, outputs: Vec<(usize, usize, Value)>) -> Value {
    let spec: Option<JobSpec> = serde_json::from_str(&job.spec_json).ok();
    let nb = spec
        .as_ref()
        .and_then(|s| s.notebook.as_ref())
        .and_then(|d| tarn_jobs::Notebook::parse(d).ok());
    if let Some(nb) = nb {
        let mut by_cell: std::collections::BTreeMap<usize, Vec<Value>> = Default::default();
        for (cell, _, out) in outputs {
            by_cell.entry(cell).or_default().push(out);
        }
        let cells: Vec<(usize, Vec<Value>, Option<u64>)> = by_cell
            .into_iter()
            .enumerate()
            .map(|(n, (cell, out))| (cell, out, Some(n as u64 + 1)))
            .collect();
        return nb.with_outputs(&cells);
    }
    // A KQL query: one cell, its output under it.
    if let Some(kql) = spec.as_ref().and_then(|s| s.kql.clone()) {
        let out: Vec<Value> = outputs.into_iter().map(|(_, _, o)| o).collect();
        return json!({
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "tarn-kql", "display_name": "Tarn KQL", "language": "kql"}},
            "cells": [{
                "cell_type": "code",
                "execution_count": if out.is_empty() { Value::Null } else { json!(1) },
                "metadata": {},
                "source": kql,
                "outputs": out,
            }],
        });
    }
    // A script: one cell per statement, its output under it.
    let sql = spec.and_then(|s| s.sql).unwrap_or_default();
    let mut by_statement: std::collections::BTreeMap<usize, Vec<Value>> = Default::default();
    for (_, index, out) in outputs {
        by_statement.entry(index).or_default().push(out);
    }
    let cells: Vec<Value> = crate::kernel::split_statements(&sql)
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let out = by_statement.remove(&i);
            json!({
                "cell_type": "code",
                "execution_count": if out.is_some() { json!(i + 1) } else { Value::Null },
                "metadata": {},
                "source": s,
                "outputs": out.unwrap_or_default(),
            })
        })
        .collect();
    json!({
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "tarn-sql", "display_name": "Tarn SQL", "language": "sql"}},
        "cells": cells,
    })
}
