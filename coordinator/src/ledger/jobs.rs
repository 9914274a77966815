//! Job definitions and their runs: stored with the rest of the book, so a
//! definition, a schedule's cursor and the run a fire creates change in
//! one commit — a fire survives a failover exactly once.

use std::time::Duration;

use tarn_common::clock::unix_ms;
use tarn_common::{ErrorCode, TarnError};
use tarn_proto::Pool;

use super::book::{Draft, JobRun, RunOfJob, RunState, StoredJob};
use super::Ledger;

/// A job definition to store, as the gateway checked it.
#[derive(Debug, Clone)]
pub struct JobPut {
    /// Empty to create a job; else the job to replace.
    pub id: String,
    /// The user the job runs as.
    pub owner: String,
    /// The definition (JSON of the REST API).
    pub spec: serde_json::Value,
    /// The owner's roles, delegated to the job's runs.
    pub grants: serde_json::Value,
    /// When the delegation ends.
    pub credential_expires_ms: u64,
}

/// How a worker says a run ended.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    /// Succeeded, failed, or timed out.
    pub state: Option<RunState>,
    /// Why (empty when it succeeded).
    pub message: String,
    /// The catalogue code of a failure.
    pub error_code: u32,
    /// Whether another try may succeed (an executor lost, a conflict).
    pub retryable: bool,
    /// Statements, tables, output.
    pub result: serde_json::Value,
    /// The worker that claims to hold it.
    pub worker: String,
    /// The worker stops: the run goes back in the queue as it is.
    pub handed_back: bool,
}

fn job_not_found(id: &str) -> TarnError {
    TarnError::new(ErrorCode::JobNotFound, format!("no job {id:?}"))
}

/// Ends a run, or — a job's run with tries left — queues it again after
/// its backoff. The same run (same id, same sequence number) is tried
/// again, so its writes, committed with the sequence number as their
/// Delta application-transaction version, are never applied twice.
pub(super) fn retry_or_end(
    draft: &mut Draft,
    id: &str,
    state: RunState,
    message: &str,
    error_code: u32,
    now: u64,
) -> Option<JobRun> {
    let retry = draft
        .book
        .runs
        .get(id)
        .and_then(|r| r.job.as_ref())
        .is_some_and(|j| j.attempt < j.max_attempts);
    if retry {
        tracing::info!(run = %id, "job run failed ({message}); trying it again after its backoff");
        return draft.requeue(id, &format!("attempt failed: {message}"), now);
    }
    if let Some(j) = draft.book.runs.get_mut(id).and_then(|r| r.job.as_mut()) {
        j.error_code = error_code;
    }
    draft.end_run(id, state, message, now)
}

/// Ends the running job runs past their timeout; returns how many.
pub(super) fn end_timed_out(draft: &mut Draft, now: u64) -> usize {
    let due: Vec<(String, u64)> = draft
        .book
        .runs
        .values()
        .filter(|r| r.state == RunState::Running)
        .filter_map(|r| {
            let j = r.job.as_ref()?;
            (j.timeout_ms > 0 && r.started_ms + j.timeout_ms < now)
                .then(|| (r.id.clone(), j.timeout_ms))
        })
        .collect();
    for (id, timeout) in &due {
        if let Some(j) = draft.book.runs.get_mut(id).and_then(|r| r.job.as_mut()) {
            j.error_code = ErrorCode::JobTimedOut.number();
        }
        draft.end_run(
            id,
            RunState::TimedOut,
            &format!(
                "the run passed its job's timeout of {} and was stopped",
                tarn_common::auth::human(timeout / 1000)
            ),
            now,
        );
        tracing::info!(run = %id, "job run timed out");
    }
    due.len()
}

impl Ledger {
    /// Stores a new job or replaces one's definition. Names are unique in
    /// a workspace; quotas per workspace and per owner hold.
    pub async fn put_job(&self, put: JobPut) -> Result<StoredJob, TarnError> {
        let name = put
            .spec
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let name = name.as_str();
        let workspace: String = put
            .spec
            .get("workspace")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let workspace = workspace.as_str();
        if name.is_empty() || workspace.is_empty() || put.owner.is_empty() {
            return Err(TarnError::new(
                ErrorCode::InvalidJob,
                "a job needs a name, a workspace and an owner",
            ));
        }
        let scheduled = match put.spec.get("schedule").filter(|s| !s.is_null()) {
            Some(s) => {
                let invalid = |e: String| TarnError::new(ErrorCode::InvalidJob, e);
                let sched =
                    tarn_jobs::Schedule::from_json(s).map_err(|e| invalid(e.to_string()))?;
                // The operator's floor, which the gateway's check does not know.
                sched
                    .validate(self.limits.min_schedule_interval)
                    .map_err(|e| invalid(e.to_string()))?;
                true
            }
            None => false,
        };
        let _w = self.writer.lock().await;
        let mut draft = Draft::new(&self.book.read());
        let now = unix_ms();
        let previous = if put.id.is_empty() {
            None
        } else {
            Some(
                draft
                    .book
                    .jobs
                    .get(&put.id)
                    .cloned()
                    .ok_or_else(|| job_not_found(&put.id))?,
            )
        };
        let others = || {
            draft
                .book
                .jobs
                .values()
                .filter(|j| previous.as_ref().is_none_or(|p| p.id != j.id))
        };
        if let Some(same) =
            others().find(|j| j.field("workspace") == workspace && j.field("name") == name)
        {
            return Err(TarnError::new(
                ErrorCode::JobAlreadyExists,
                format!(
                    "workspace '{workspace}' already has a job named {name:?} ({})",
                    same.id
                ),
            ));
        }
        let l = &self.limits;
        let in_ws = |j: &&StoredJob| j.field("workspace") == workspace;
        let mine = |j: &&StoredJob| j.owner == put.owner;
        let has_schedule = |j: &&StoredJob| j.spec.get("schedule").is_some_and(|s| !s.is_null());
        let quota = |what: String, limit: u32| {
            TarnError::new(
                ErrorCode::JobQuotaExceeded,
                format!("{what} already reached its limit of {limit}; the job was not saved"),
            )
            .with_fix("delete jobs you no longer need (`tarn job delete`), or ask an operator to raise the limit")
        };
        if others().filter(in_ws).count() as u32 >= l.max_jobs.0 {
            return Err(quota(
                format!("workspace '{workspace}' (max_jobs_per_workspace)"),
                l.max_jobs.0,
            ));
        }
        if others().filter(mine).count() as u32 >= l.max_jobs.1 {
            return Err(quota(
                format!("user '{}' (max_jobs_per_user)", put.owner),
                l.max_jobs.1,
            ));
        }
        if scheduled {
            if others().filter(in_ws).filter(has_schedule).count() as u32 >= l.max_scheduled_jobs.0
            {
                return Err(quota(
                    format!("the scheduled jobs of workspace '{workspace}' (max_scheduled_jobs_per_workspace)"),
                    l.max_scheduled_jobs.0,
                ));
            }
            if others().filter(mine).filter(has_schedule).count() as u32 >= l.max_scheduled_jobs.1 {
                return Err(quota(
                    format!(
                        "the scheduled jobs of user '{}' (max_scheduled_jobs_per_user)",
                        put.owner
                    ),
                    l.max_scheduled_jobs.1,
                ));
            }
        }
        let job = StoredJob {
            id: previous
                .as_ref()
                .map(|p| p.id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            owner: put.owner,
            spec: put.spec,
            grants: put.grants,
            credential_expires_ms: put.credential_expires_ms,
            created_ms: previous.as_ref().map(|p| p.created_ms).unwrap_or(now),
            updated_ms: now,
            revision: previous.as_ref().map(|p| p.revision + 1).unwrap_or(1),
            // A new or changed schedule starts from now: fires before it
            // was saved are not owed.
            last_fire_ms: now,
        };
        draft.put_job(job.clone());
        self.commit(draft).await?;
        tracing::info!(job = %job.id, %workspace, name, revision = job.revision, "job saved");
        Ok(job)
    }

    /// A job by id.
    pub fn job(&self, id: &str) -> Result<StoredJob, TarnError> {
        self.book
            .read()
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| job_not_found(id))
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<StoredJob> {
        let mut v: Vec<StoredJob> = self.book.read().jobs.values().cloned().collect();
        v.sort_by_key(|j| j.created_ms);
        v
    }

    /// Deletes a job with its history; its queued and running runs are
    /// cancelled.
    pub async fn delete_job(&self, id: &str) -> Result<bool, TarnError> {
        let _w = self.writer.lock().await;
        let mut draft = Draft::new(&self.book.read());
        let active: Vec<String> = draft
            .book
            .runs
            .values()
            .filter(|r| r.job.as_ref().is_some_and(|j| j.job_id == id))
            .map(|r| r.id.clone())
            .collect();
        for run in active {
            draft.end_run(&run, RunState::Cancelled, "its job was deleted", unix_ms());
        }
        let deleted = draft.del_job(id);
        self.admit(&mut draft);
        self.commit(draft).await?;
        Ok(deleted)
    }

    /// What a new run of `job` carries.
    fn run_of(
        &self,
        job: &StoredJob,
        trigger: &str,
        parameters: serde_json::Value,
        fire_ms: u64,
    ) -> RunOfJob {
        let retry = job.spec.get("retry");
        let attempts = retry
            .and_then(|r| r.get("attempts"))
            .and_then(|v| v.as_u64())
            .unwrap_or(1)
            .clamp(1, 10) as u32;
        let backoff = retry
            .and_then(|r| r.get("backoff"))
            .and_then(|v| v.as_str())
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(Duration::from_secs(30));
        let timeout = job
            .spec
            .get("timeout")
            .and_then(|v| v.as_str())
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(self.limits.max_job_timeout)
            .min(self.limits.max_job_timeout);
        RunOfJob {
            job_id: job.id.clone(),
            trigger: trigger.to_string(),
            attempt: 1,
            max_attempts: attempts,
            backoff_ms: backoff.as_millis() as u64,
            not_before_ms: 0,
            timeout_ms: timeout.as_millis() as u64,
            fire_ms,
            parameters,
            worker: String::new(),
            result: serde_json::Value::Null,
            error_code: 0,
        }
    }

    /// Queues a run of a job now.
    pub async fn run_job(
        &self,
        id: &str,
        trigger: &str,
        parameters: serde_json::Value,
    ) -> Result<JobRun, TarnError> {
        let job = self.job(id)?;
        let of = self.run_of(&job, trigger, parameters, 0);
        self.submit_run(
            job.field("name").to_string(),
            job.owner.clone(),
            job.field("workspace").to_string(),
            job.spec.get("vcores").and_then(|v| v.as_u64()).unwrap_or(0) as u32,
            job.field("size"),
            Some(of),
        )
        .await
    }

    /// Tries an ended run of a job again: the same run (id and sequence
    /// number) goes back in the queue as its next attempt, so the writes
    /// an earlier attempt committed are recognised and not made twice.
    pub async fn retry_run(&self, job_id: &str, run_id: &str) -> Result<JobRun, TarnError> {
        let _w = self.writer.lock().await;
        let mut draft = Draft::new(&self.book.read());
        if draft.book.runs.contains_key(run_id) {
            return Err(TarnError::new(
                ErrorCode::InvalidArgument,
                format!("job run {run_id:?} has not ended; only an ended run can be tried again"),
            ));
        }
        let history = draft
            .book
            .history
            .get_mut(job_id)
            .ok_or_else(|| job_not_found(job_id))?;
        let pos = history
            .iter()
            .position(|r| r.id == run_id && r.state != RunState::Skipped)
            .ok_or_else(|| super::run_not_found(run_id))?;
        let Some(mut run) = history.remove(pos) else {
            return Err(super::run_not_found(run_id));
        };
        draft
            .ops
            .push(tarn_state::Op::Delete(super::book::history_key(
                job_id, run.seq,
            )));
        let Some(j) = run.job.as_mut() else {
            return Err(super::run_not_found(run_id));
        };
        j.attempt += 1;
        j.max_attempts = j.max_attempts.max(j.attempt);
        j.trigger = "retry".into();
        j.worker.clear();
        j.not_before_ms = 0;
        j.error_code = 0;
        j.result = serde_json::Value::Null;
        run.state = RunState::Queued;
        run.started_ms = 0;
        run.ended_ms = 0;
        run.message = String::new();
        run.submitted_ms = unix_ms();
        let id = run.id.clone();
        draft.put_run(run);
        self.admit(&mut draft);
        let run = draft.book.runs.get(&id).cloned();
        self.commit(draft).await?;
        run.ok_or_else(|| super::run_not_found(&id))
    }

    /// Handles a schedule's fire at `fire_ms` (the latest one due): in the
    /// same commit the job's cursor moves to it and the run is queued — or
    /// recorded as skipped when the job's previous run is still active and
    /// `queue_overlap` is false, or when `run` is false (a missed fire the
    /// job's catch-up policy skips). A fire at or before the cursor was
    /// handled already and does nothing.
    pub async fn fire(
        &self,
        id: &str,
        fire_ms: u64,
        run: bool,
        queue_overlap: bool,
    ) -> Result<Option<JobRun>, TarnError> {
        let _w = self.writer.lock().await;
        let mut draft = Draft::new(&self.book.read());
        let Some(mut job) = draft.book.jobs.get(id).cloned() else {
            return Ok(None);
        };
        if fire_ms <= job.last_fire_ms {
            return Ok(None);
        }
        job.last_fire_ms = fire_ms;
        draft.put_job(job.clone());
        let now = unix_ms();
        let active = draft
            .book
            .runs
            .values()
            .any(|r| r.job.as_ref().is_some_and(|j| j.job_id == id));
        let seq = draft.next_seq();
        let mut of = self.run_of(&job, "schedule", serde_json::json!({}), fire_ms);
        let vcores = self
            .resolve_vcores(
                Pool::Job,
                job.spec.get("vcores").and_then(|v| v.as_u64()).unwrap_or(0) as u32,
                job.field("size"),
            )
            .unwrap_or(0);
        let skip_why = if !run {
            Some("a fire missed while no coordinator led; the job's catch_up policy is 'skip'")
        } else if active && !queue_overlap {
            Some("the job's previous run was still queued or running; its overlap policy is 'skip'")
        } else if draft.book.queued().len() as u32 >= self.limits.max_queued_jobs {
            Some("the job queue was full (max_queued_jobs)")
        } else {
            None
        };
        let mut record = JobRun {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: job.field("name").to_string(),
            user: job.owner.clone(),
            workspace: job.field("workspace").to_string(),
            vcores,
            seq,
            state: RunState::Queued,
            submitted_ms: now,
            started_ms: 0,
            ended_ms: 0,
            message: String::new(),
            job: None,
        };
        let out = if let Some(why) = skip_why {
            of.max_attempts = 1;
            record.job = Some(of);
            record.state = RunState::Skipped;
            record.ended_ms = now;
            record.message = why.to_string();
            draft.keep_in_history(record.clone());
            tracing::info!(job = %id, fire_ms, "scheduled fire skipped: {why}");
            record
        } else {
            record.job = Some(of);
            draft.put_run(record.clone());
            self.admit(&mut draft);
            tracing::info!(job = %id, fire_ms, run = %record.id, "schedule fired");
            draft.book.runs.get(&record.id).cloned().unwrap_or(record)
        };
        self.commit(draft).await?;
        Ok(Some(out))
    }

    /// Takes a started run of a job that no worker holds, for `worker`;
    /// waits up to `wait` for one.
    pub async fn claim(
        &self,
        worker: &str,
        wait: Duration,
    ) -> Result<Option<(JobRun, StoredJob)>, TarnError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(got) = self.try_claim(worker).await? {
                return Ok(Some(got));
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn try_claim(&self, worker: &str) -> Result<Option<(JobRun, StoredJob)>, TarnError> {
        let waiting = |r: &JobRun| {
            r.state == RunState::Running && r.job.as_ref().is_some_and(|j| j.worker.is_empty())
        };
        if !self.book.read().runs.values().any(waiting) {
            return Ok(None);
        }
        let _w = self.writer.lock().await;
        let mut draft = Draft::new(&self.book.read());
        let mut open: Vec<&JobRun> = draft.book.runs.values().filter(|r| waiting(r)).collect();
        open.sort_by_key(|r| r.seq);
        let Some(mut run) = open.first().map(|r| (*r).clone()) else {
            return Ok(None);
        };
        let Some(job) = run
            .job
            .as_ref()
            .and_then(|j| draft.book.jobs.get(&j.job_id))
            .cloned()
        else {
            // Its job was deleted meanwhile.
            draft.end_run(
                &run.id,
                RunState::Cancelled,
                "its job was deleted",
                unix_ms(),
            );
            self.admit(&mut draft);
            self.commit(draft).await?;
            return Ok(None);
        };
        if let Some(j) = run.job.as_mut() {
            j.worker = worker.to_string();
            if j.fire_ms > 0 && j.attempt == 1 {
                let late = unix_ms().saturating_sub(j.fire_ms) as f64 / 1000.0;
                self.stats.lock().lateness.observe(late);
            }
        }
        draft.put_run(run.clone());
        self.commit(draft).await?;
        tracing::info!(run = %run.id, job = %job.id, worker, "job run claimed");
        Ok(Some((run, job)))
    }

    /// The worker of a running run records its progress.
    pub async fn report(
        &self,
        id: &str,
        worker: &str,
        result: serde_json::Value,
    ) -> Result<JobRun, TarnError> {
        let _w = self.writer.lock().await;
        let mut draft = Draft::new(&self.book.read());
        let mut run = draft
            .book
            .runs
            .get(id)
            .cloned()
            .ok_or_else(|| super::run_not_found(id))?;
        let Some(j) = run.job.as_mut().filter(|j| j.worker == worker) else {
            return Err(not_holder(id, worker));
        };
        j.result = result;
        draft.put_run(run.clone());
        self.commit(draft).await?;
        Ok(run)
    }

    /// The worker of a running run of a job reports its end; a retryable
    /// failure with tries left queues the run again.
    pub async fn finish_job_run(&self, id: &str, f: Finish) -> Result<JobRun, TarnError> {
        let _w = self.writer.lock().await;
        let mut draft = Draft::new(&self.book.read());
        let Some(mut run) = draft.book.runs.get(id).cloned() else {
            return self.run(id).map(|(r, _)| r);
        };
        let Some(j) = run.job.as_mut().filter(|j| j.worker == f.worker) else {
            return Err(not_holder(id, &f.worker));
        };
        j.result = f.result;
        draft.put_run(run);
        let now = unix_ms();
        let state = f.state.unwrap_or(RunState::Failed);
        let ended = if f.handed_back {
            tracing::info!(run = %id, worker = %f.worker, "job run handed back by its stopping worker");
            draft.back_in_line(id, "its worker stopped; waiting for another", now, false)
        } else if state == RunState::Failed && f.retryable {
            retry_or_end(&mut draft, id, state, &f.message, f.error_code, now)
        } else {
            if let Some(j) = draft.book.runs.get_mut(id).and_then(|r| r.job.as_mut()) {
                j.error_code = f.error_code;
            }
            draft.end_run(id, state, &f.message, now)
        };
        self.admit(&mut draft);
        // Back in line, it may have started again at once.
        let ended = draft.book.runs.get(id).cloned().or(ended);
        self.commit(draft).await?;
        ended.ok_or_else(|| super::run_not_found(id))
    }

    /// The runs of a job: active ones, then its history, newest first.
    pub fn job_runs(&self, job_id: &str) -> Vec<(JobRun, u32)> {
        let mut out: Vec<(JobRun, u32)> = self
            .runs()
            .into_iter()
            .filter(|(r, _)| r.state == RunState::Queued || r.state == RunState::Running)
            .filter(|(r, _)| r.job.as_ref().is_some_and(|j| j.job_id == job_id))
            .collect();
        let book = self.book.read();
        if let Some(h) = book.history.get(job_id) {
            out.extend(h.iter().rev().map(|r| (r.clone(), 0)));
        }
        out
    }

    /// An ended run of a job, from the histories.
    pub(super) fn run_in_history(&self, id: &str) -> Option<JobRun> {
        self.book
            .read()
            .history
            .values()
            .flat_map(|h| h.iter())
            .find(|r| r.id == id)
            .cloned()
    }
}

fn not_holder(id: &str, worker: &str) -> TarnError {
    TarnError::new(
        ErrorCode::JobRunNotFound,
        format!(
            "job run {id:?} is not held by worker {worker:?} (it was retried, cancelled or ended)"
        ),
    )
    .with_fix("stop working on it; the run's current state is at GET /v1/job-runs/{id}")
}
