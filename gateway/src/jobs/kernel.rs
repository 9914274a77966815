//! The kernels a job's work runs in. The runner drives any kernel through
//! [`JobKernel`]: it hands over the job's pieces one at a time (a script's
//! statements, or a notebook's code, cell by cell) and records what each
//! did. `tarn-sql` runs each statement on the cluster with the run's
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
}

impl KernelKind {
    /// Every kind, for messages that list them.
    pub const ALL: &'static [KernelKind] = &[KernelKind::Sql];

    /// The kernelspec name.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Sql => "tarn-sql",
        }
    }

    /// The kind a notebook's kernelspec names; a kernel jobs cannot run
    /// is the job's error, listing those they can.
    pub fn of(name: &str) -> Result<KernelKind, TarnError> {
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
                    "set the notebook's metadata.kernelspec.name to one of: {}, or send a SQL script as `sql`",
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
    /// The commit it made.
    pub write: Option<TableWrite>,
    /// Its output in the executed notebook.
    pub output: Option<Value>,
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
            .plan_as(session, &session.grants, &workspace, &p.sql, &query_id)
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
        planned.plan = bind(planned.plan, &self.values)?;
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
        let mut stream = q.stream;
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
            write,
            output,
        })
    }
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
        write: None,
        output: Some(json!({"output_type": "stream", "name": "stdout",
            "text": format!("{table}: already written by an earlier attempt of this run; not written again\n")})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_found_by_name_and_strangers_are_refused_with_the_list() {
        assert_eq!(KernelKind::of("tarn-sql").unwrap(), KernelKind::Sql);
        let e = KernelKind::of("python3").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJob);
        assert!(e.message.contains("\"python3\""), "{e}");
        assert!(e.fix.as_deref().unwrap_or("").contains("tarn-sql"), "{e:?}");
    }
}
