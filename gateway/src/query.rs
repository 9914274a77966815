//! Running queries: every protocol (Flight SQL, Jupyter kernels) plans
//! and runs statements here, so the time limit, cancellation and the
//! "is this session busy" answer are the same everywhere.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use dashmap::DashMap;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionState;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Stream, StreamExt, TryStreamExt};
use tarn_common::{ErrorCode, TarnError};
use tokio_util::sync::CancellationToken;

use crate::direct::{Direct, Kind};
use crate::error::from_datafusion;
use crate::session::{bind_parameters, Language, Planned, Session, Sessions};
use crate::write::Effect;
use tarn_common::supervisor::Supervisor;

/// Result batches of a running query, ending with an error if it was
/// cancelled or timed out (never silently cut short).
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, TarnError>> + Send>>;

/// A stream of result parts (batches or Flight messages).
pub type PartStream<T> = Pin<Box<dyn Stream<Item = Result<T, TarnError>> + Send>>;

/// Arrow Flight messages as an executor sent them.
pub type FlightStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, TarnError>> + Send>>;

/// A running query's results: batches, or (a direct run's) the executor's
/// Flight messages, which Flight SQL forwards without decoding them.
pub enum Results {
    /// Decoded batches.
    Batches(BatchStream),
    /// Encoded messages: schema first, then dictionaries and batches.
    Flight(FlightStream),
}

impl Results {
    /// The results as batches, decoding Flight messages if need be.
    pub fn into_batches(self) -> BatchStream {
        match self {
            Results::Batches(b) => b,
            Results::Flight(f) => {
                let decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                    f.map_err(|e| arrow_flight::error::FlightError::ExternalError(Box::new(e))),
                )
                .map_err(|e| match e {
                    arrow_flight::error::FlightError::ExternalError(e) => {
                        match e.downcast::<TarnError>() {
                            Ok(t) => *t,
                            Err(other) => TarnError::internal(format!(
                                "cannot decode an executor's result: {other}"
                            )),
                        }
                    }
                    other => {
                        TarnError::internal(format!("cannot decode an executor's result: {other}"))
                    }
                });
                Box::pin(decoded)
            }
        }
    }

    /// The results as Flight messages, encoding batches if need be.
    pub fn into_flight(self, schema: SchemaRef) -> FlightStream {
        match self {
            Results::Flight(f) => f,
            Results::Batches(b) => {
                let flight = arrow_flight::encode::FlightDataEncoderBuilder::new()
                    .with_schema(schema)
                    .build(b.map_err(|e| {
                        arrow_flight::error::FlightError::Tonic(Box::new(tonic::Status::from(e)))
                    }))
                    .map_err(|e| match e {
                        arrow_flight::error::FlightError::Tonic(s) => from_status(&s),
                        other => TarnError::internal(format!("cannot encode the result: {other}")),
                    });
                Box::pin(flight)
            }
        }
    }
}

/// A status made from a TarnError, back to it.
fn from_status(s: &tonic::Status) -> TarnError {
    from_datafusion(&datafusion::error::DataFusionError::Execution(
        s.message().to_string(),
    ))
}

/// What a result part counts for: rows handed out and bytes.
pub trait ResultPart {
    /// Rows in it.
    fn rows(&self) -> u64;
    /// Its size in memory.
    fn bytes(&self) -> u64;
}

impl ResultPart for RecordBatch {
    fn rows(&self) -> u64 {
        self.num_rows() as u64
    }
    fn bytes(&self) -> u64 {
        self.get_array_memory_size() as u64
    }
}

impl ResultPart for arrow_flight::FlightData {
    fn rows(&self) -> u64 {
        // Read from the IPC header alone: the body is never decoded here.
        arrow::ipc::root_as_message(&self.data_header)
            .ok()
            .and_then(|m| m.header_as_record_batch())
            .map(|b| b.length().max(0) as u64)
            .unwrap_or(0)
    }
    fn bytes(&self) -> u64 {
        (self.data_body.len() + self.data_header.len()) as u64
    }
}

/// A started query.
pub struct Query {
    /// The server-made id of this run (it names the Ballista jobs).
    pub run_id: String,
    /// The result schema.
    pub schema: SchemaRef,
    /// The results as executors produce them.
    pub stream: Results,
}

/// Stages and tasks done so far.
pub type Progress = tarn_proto::QueryProgress;

/// Queries in flight on this gateway.
pub struct Queries {
    sessions: Arc<Sessions>,
    coordinator: String,
    pool: PoolProbe,
    running: Arc<DashMap<String, Run>>,
    timeout: Duration,
    /// One connection for progress polls.
    progress_channel: Option<tonic::transport::Channel>,
    /// Single-stage reads sent straight to an executor.
    direct: Option<Arc<Direct>>,
    /// Timers, job cancels and commits run here.
    tasks: Supervisor,
    /// Queries in flight and by outcome, result bytes.
    metrics: Arc<crate::metrics::GatewayMetrics>,
    /// Commits of job writes, by write id, until their run takes them.
    receipts: Arc<DashMap<String, tarn_lake::write::Committed>>,
}

impl Queries {
    /// Queries of `sessions`' sessions, cancelled through the coordinator
    /// at `coordinator` (host:port), each limited to `timeout`.
    pub fn new(
        sessions: Arc<Sessions>,
        coordinator: &str,
        timeout: Duration,
        direct: Option<Arc<Direct>>,
        tasks: Supervisor,
    ) -> Self {
        Self {
            coordinator: format!("http://{coordinator}"),
            pool: PoolProbe::new(format!("http://{coordinator}")),
            running: Arc::new(DashMap::new()),
            receipts: Arc::new(DashMap::new()),
            timeout,
            progress_channel: tarn_common::cluster::endpoint(coordinator)
                .ok()
                .map(|e| e.connect_timeout(Duration::from_secs(1)).connect_lazy()),
            direct,
            tasks,
            metrics: Arc::clone(sessions.metrics()),
            sessions,
        }
    }

    /// The gateway's query counters.
    pub fn metrics(&self) -> &crate::metrics::GatewayMetrics {
        &self.metrics
    }

    /// Where the gateway's background work runs.
    pub fn tasks(&self) -> &Supervisor {
        &self.tasks
    }

    /// The time limit of a query.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a session has a query running (or streaming) right now.
    pub fn is_busy(&self, session_id: &str) -> bool {
        // A stopped query whose client stopped reading does not keep its
        // session alive.
        self.running
            .iter()
            .any(|r| r.session_id == session_id && r.control.stopped().is_none())
    }

    /// Plans `sql` in `session` and starts it. `ticket_id` groups the runs
    /// of one Flight ticket, so a cancel naming the ticket reaches them.
    pub async fn start(
        &self,
        session: &Session,
        workspace: &str,
        sql: &str,
        params: Option<&RecordBatch>,
        ticket_id: &str,
    ) -> Result<Query, TarnError> {
        self.start_as(session, &session.grants, workspace, sql, params, ticket_id)
            .await
    }

    /// Like [`Queries::start`], planned and checked with `grants` (a
    /// kernel cell runs with its sender's grants, never the session's
    /// alone).
    pub async fn start_as(
        &self,
        session: &Session,
        grants: &tarn_common::roles::Grants,
        workspace: &str,
        sql: &str,
        params: Option<&RecordBatch>,
        ticket_id: &str,
    ) -> Result<Query, TarnError> {
        self.start_in(
            session,
            grants,
            workspace,
            sql,
            Language::Sql,
            params,
            ticket_id,
        )
        .await
    }

    /// Like [`Queries::start_as`], for a statement written in `language`
    /// (a KQL query takes no parameters: its planner makes no
    /// placeholders, so `params` must be `None` or empty for it).
    #[allow(clippy::too_many_arguments)]
    pub async fn start_in(
        &self,
        session: &Session,
        grants: &tarn_common::roles::Grants,
        workspace: &str,
        text: &str,
        language: Language,
        params: Option<&RecordBatch>,
        ticket_id: &str,
    ) -> Result<Query, TarnError> {
        let run_id = new_query_id();
        let planned = self
            .sessions
            .plan_in(session, grants, workspace, text, language, &run_id)
            .await?;
        let plan = bind_parameters(planned.plan, params)?;
        self.start_planned(
            session,
            Planned {
                plan,
                state: planned.state,
                effect: planned.effect,
            },
            run_id,
            ticket_id,
        )
        .await
    }

    /// Starts a planned statement under `run_id` (its Ballista job name).
    /// Writes end with their commit: the one result row (`count`) comes
    /// only once the new table version is committed.
    pub async fn start_planned(
        &self,
        session: &Session,
        planned: Planned,
        run_id: String,
        ticket_id: &str,
    ) -> Result<Query, TarnError> {
        // A job run's session (a Python notebook's `lake`) is held to the
        // run's time, not the interactive limit.
        let limit = match &session.job {
            Some(job) => TimeLimit::Job {
                left: job.left(),
                timeout: job.timeout,
            },
            None => TimeLimit::Interactive(self.timeout),
        };
        self.start_limited(session, planned, run_id, ticket_id, limit)
            .await
    }

    /// [`Queries::start_planned`] under another time limit (a job run's).
    pub async fn start_limited(
        &self,
        session: &Session,
        planned: Planned,
        run_id: String,
        ticket_id: &str,
        limit: TimeLimit,
    ) -> Result<Query, TarnError> {
        let schema = Arc::new(planned.plan.schema().as_arrow().clone());
        match self.dispatch(session, planned, &run_id).await? {
            Dispatched::Answered => Ok(count_result(run_id, 0)),
            Dispatched::Stream(stream) => {
                let batches = stream.map(|r| r.map_err(|e| from_datafusion(&e)));
                let (run_id, stream) = self.track(session, run_id, ticket_id, batches, limit);
                Ok(Query {
                    run_id,
                    schema,
                    stream: Results::Batches(stream),
                })
            }
            Dispatched::Flight(flight) => {
                let flight = with_declared_schema(flight, Arc::clone(&schema));
                let (run_id, stream) = self.track(session, run_id, ticket_id, flight, limit);
                Ok(Query {
                    run_id,
                    schema,
                    stream: Results::Flight(stream),
                })
            }
        }
    }

    /// What a job run's write committed, by the write's id; taken once.
    pub fn take_receipt(&self, write_txn: &str) -> Option<tarn_lake::write::Committed> {
        self.receipts.remove(write_txn).map(|(_, c)| c)
    }

    /// Where a planned statement runs: answered here (a skipped create, a
    /// drop), sent straight to an executor (a small read), or submitted as
    /// a Ballista job; a write's stream ends with its commit.
    async fn dispatch(
        &self,
        session: &Session,
        planned: Planned,
        run_id: &str,
    ) -> Result<Dispatched, TarnError> {
        let Planned {
            plan,
            state,
            mut effect,
        } = planned;
        if let (Effect::Commit(spec), Some(job)) = (&effect, &session.job) {
            match once_per_run(spec, job).await? {
                Some(spec) => effect = Effect::Commit(spec),
                None => return Ok(Dispatched::Answered),
            }
        }
        match &effect {
            Effect::Skip => return Ok(Dispatched::Answered),
            Effect::Drop { workspace, table } => {
                self.sessions
                    .lake()
                    .delete_table(workspace, table)
                    .await
                    .map_err(|e| e.to_tarn())?;
                tracing::info!(user = %session.user, %workspace, %table, "table deleted");
                return Ok(Dispatched::Answered);
            }
            _ => {}
        }
        // A job submitted with no executor to run it would wait forever;
        // say so at once instead.
        self.pool.check().await?;
        // EXPLAIN says where the statement it explains would run, and
        // shows the plan made with the settings of that place.
        let (explained, state) = match (&effect, &plan) {
            (Effect::Nothing, LogicalPlan::Explain(e)) => match &self.direct {
                Some(direct) => {
                    let choice = direct.plan(&state, &e.plan).await;
                    let planning = crate::direct::planning_state(&state, &choice);
                    (Some(choice.describe()), planning)
                }
                None => (
                    Some(crate::direct::Choice::Ballista("direct_runs = false".into()).describe()),
                    state,
                ),
            },
            _ => (None, state),
        };
        let choice = match (&effect, &self.direct) {
            (Effect::Nothing, Some(direct)) => Some((direct, direct.plan(&state, &plan).await)),
            _ => None,
        };
        let (stream, execution, why): (Option<crate::direct::DirectStream>, &str, String) =
            match choice {
                Some((direct, crate::direct::Choice::Direct(p))) => {
                    let (kind, why) = (p.kind, p.why.clone());
                    match direct
                        .run(p, &session.lease_id, run_id)
                        .await
                        .map_err(|e| from_datafusion(&e))?
                    {
                        Ok(mut stream) if kind == Kind::LeaseLocal => {
                            stream.flight = distributed_when_out_of_memory(
                                stream.flight,
                                Arc::clone(&stream.schema),
                                state.clone(),
                                plan.clone(),
                                run_id.to_string(),
                            );
                            (Some(stream), kind.name(), why)
                        }
                        Ok(stream) => (Some(stream), kind.name(), why),
                        Err(not_started) => (None, "distributed", not_started),
                    }
                }
                Some((_, crate::direct::Choice::Ballista(why))) => (None, "distributed", why),
                None => (
                    None,
                    "distributed",
                    match effect {
                        Effect::Nothing => "direct_runs = false".to_string(),
                        _ => "a write".to_string(),
                    },
                ),
            };
        tracing::info!(query_id = %run_id, user = %session.user, execution, why = %why, "query dispatched");
        let stream = match stream {
            // Forwarded as the executor encoded it: nothing is appended.
            Some(direct) if explained.is_none() => {
                return Ok(Dispatched::Flight(direct.flight));
            }
            Some(direct) => direct.decoded(),
            None => DataFrame::new(state, plan)
                .execute_stream()
                .await
                .map_err(|e| from_datafusion(&e))?,
        };
        let stream = match explained {
            Some(line) => explain_with_execution(stream, line),
            None => stream,
        };
        Ok(Dispatched::Stream(match effect {
            Effect::Commit(spec) => {
                // Job writes (the ones with an application transaction)
                // leave what they committed for the job's report.
                let receipts = spec
                    .write
                    .as_ref()
                    .and_then(|w| w.app_txn.as_ref())
                    .map(|_| Arc::clone(&self.receipts));
                commit_after(
                    stream,
                    spec,
                    Arc::clone(self.sessions.lake()),
                    session.user.clone(),
                    self.tasks.clone(),
                    receipts,
                )
            }
            _ => stream,
        }))
    }

    /// Makes a running statement cancellable (by run or ticket) and bound
    /// by the time limit; its stream ends with the reason it was stopped,
    /// and a stream dropped before its end (client gone) cancels its jobs.
    fn track<T, S>(
        &self,
        session: &Session,
        run_id: String,
        ticket_id: &str,
        stream: S,
        limit: TimeLimit,
    ) -> (String, PartStream<T>)
    where
        T: ResultPart + Send + 'static,
        S: Stream<Item = Result<T, TarnError>> + Send + 'static,
    {
        let control = Arc::new(RunControl::default());
        self.running.insert(
            run_id.clone(),
            Run {
                ticket_id: ticket_id.to_string(),
                session_id: session.id.clone(),
                control: Arc::clone(&control),
            },
        );
        let done = CancellationToken::new();
        let returned = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut guard = Some(RunningGuard {
            running: Arc::clone(&self.running),
            run_id: run_id.clone(),
            user: session.user.clone(),
            returned: Arc::clone(&returned),
            coordinator: self.coordinator.clone(),
            finished: false,
            done: done.clone(),
            tasks: self.tasks.clone(),
        });
        // The time limit runs on its own, so it fires even while nobody
        // reads the result: the executors stop and the lease is free.
        {
            let (control, coordinator, run) = (
                Arc::clone(&control),
                self.coordinator.clone(),
                run_id.clone(),
            );
            let limit = limit.duration();
            self.tasks.spawn("query time limit", async move {
                tokio::select! {
                    _ = done.cancelled() => {}
                    _ = control.token.cancelled() => {}
                    _ = tokio::time::sleep(limit) => {
                        if control.stop(Stop::TimedOut) {
                            cancel_jobs(coordinator, run).await;
                        }
                    }
                }
            });
        }
        let tail = {
            let control = Arc::clone(&control);
            futures::stream::once(async move {
                match control.stopped() {
                    Some(Stop::TimedOut) => Some(Err(limit.exceeded())),
                    Some(Stop::Cancelled) => Some(Err(TarnError::new(
                        ErrorCode::Cancelled,
                        "the query was cancelled by the client",
                    ))),
                    None => None,
                }
            })
            .filter_map(futures::future::ready)
        };
        let stop = control.token.clone().cancelled_owned();
        let batches = stream
            .map(move |r| {
                if let Ok(b) = &r {
                    returned.fetch_add(b.rows(), std::sync::atomic::Ordering::Relaxed);
                }
                r
            })
            .take_until(Box::pin(stop))
            .chain(tail)
            .chain(futures::stream::poll_fn(move |_| {
                // Reached only when the stream ran to its end; a stream
                // dropped before (client gone) leaves `finished` false and
                // the guard cancels the job.
                if let Some(g) = guard.as_mut() {
                    g.finished = true;
                }
                std::task::Poll::Ready(None)
            }));
        (run_id, Box::pin(self.metrics.count(Box::pin(batches))))
    }

    /// Cancels one run: its stream ends with CANCELLED and its Ballista
    /// jobs are cancelled on the executors at once.
    pub fn cancel_run(&self, run_id: &str) -> bool {
        let Some(control) = self.running.get(run_id).map(|r| Arc::clone(&r.control)) else {
            return false;
        };
        if control.stop(Stop::Cancelled) {
            self.tasks.spawn(
                "cancel a query's jobs",
                cancel_jobs(self.coordinator.clone(), run_id.to_string()),
            );
        }
        true
    }

    /// Cancels a session's runs of a ticket; returns whether any ran.
    pub fn cancel_ticket(&self, ticket_id: &str, session_id: &str) -> bool {
        let runs: Vec<String> = self
            .running
            .iter()
            .filter(|r| r.ticket_id == ticket_id && r.session_id == session_id)
            .map(|r| r.key().clone())
            .collect();
        for run in &runs {
            self.cancel_run(run);
        }
        !runs.is_empty()
    }

    /// How far a run's jobs are, as the coordinator sees them. Quick or
    /// not at all: a progress display must never hold up the result.
    pub async fn progress(&self, run_id: &str) -> Result<Progress, String> {
        let channel = self
            .progress_channel
            .clone()
            .ok_or("bad coordinator address")?;
        let mut c = tarn_proto::coordinator_client::CoordinatorClient::new(channel);
        let call = c.get_query_progress(tarn_proto::GetQueryProgressRequest {
            header: Some(tarn_proto::header()),
            query_id: run_id.to_string(),
        });
        match tokio::time::timeout(Duration::from_millis(400), call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(e)) => Err(e.message().to_string()),
            Err(_) => Err("the coordinator did not answer in time".into()),
        }
    }
}

/// Knows, to within a second, whether the interactive pool has executors.
struct PoolProbe {
    coordinator: String,
    last: parking_lot::Mutex<Option<(std::time::Instant, Result<u32, String>)>>,
}

impl PoolProbe {
    const FRESH: Duration = Duration::from_secs(1);

    fn new(coordinator: String) -> Self {
        Self {
            coordinator,
            last: parking_lot::Mutex::new(None),
        }
    }

    async fn check(&self) -> Result<(), TarnError> {
        let cached = self
            .last
            .lock()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < Self::FRESH)
            .map(|(_, r)| r.clone());
        let result = match cached {
            Some(r) => r,
            None => {
                let r = self.ask().await;
                *self.last.lock() = Some((std::time::Instant::now(), r.clone()));
                r
            }
        };
        match result {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => Err(TarnError::new(
                ErrorCode::PoolNotAvailable,
                "no executor of the interactive pool is running",
            )),
            Err(e) => Err(TarnError::new(
                ErrorCode::PoolNotAvailable,
                format!("the coordinator is unreachable: {e}"),
            )
            .with_fix("retry shortly; if it persists, ask an operator to check the coordinator")),
        }
    }

    async fn ask(&self) -> Result<u32, String> {
        let mut c = tarn_proto::connect_coordinator(&self.coordinator)
            .await
            .map_err(|e| e.to_string())?;
        c.health(tarn_proto::HealthRequest {
            header: Some(tarn_proto::header()),
        })
        .await
        .map(|r| r.into_inner().interactive_executors)
        .map_err(|e| e.message().to_string())
    }
}

/// One query in flight.
struct Run {
    /// The ticket it came from (what Flight cancel requests name).
    ticket_id: String,
    /// Only its own session may cancel it by ticket.
    session_id: String,
    control: Arc<RunControl>,
}

/// How long a statement may run.
#[derive(Debug, Clone, Copy)]
pub enum TimeLimit {
    /// The interactive query limit.
    Interactive(Duration),
    /// What is left of a job run's timeout (the whole timeout, for the
    /// message).
    Job {
        /// Left for this statement.
        left: Duration,
        /// The job's timeout.
        timeout: Duration,
    },
}

impl TimeLimit {
    /// How long is left under this limit.
    pub fn duration(self) -> Duration {
        match self {
            TimeLimit::Interactive(d) => d,
            TimeLimit::Job { left, .. } => left,
        }
    }

    /// The error a statement stopped at this limit ends with.
    pub fn exceeded(self) -> TarnError {
        match self {
            TimeLimit::Interactive(d) => TarnError::new(
                ErrorCode::QueryTimeout,
                format!(
                    "the query ran longer than the interactive query limit of {} and was cancelled",
                    tarn_common::auth::human(d.as_secs())
                ),
            ),
            TimeLimit::Job { timeout, .. } => TarnError::new(
                ErrorCode::JobTimedOut,
                format!(
                    "the job run passed its timeout of {} and its statement was cancelled",
                    tarn_common::auth::human(timeout.as_secs())
                ),
            ),
        }
    }
}

/// What a planned statement became.
enum Dispatched {
    /// Answered here without running anything: no rows changed.
    Answered,
    /// Running: its batches.
    Stream(SendableRecordBatchStream),
    /// Running directly: the executor's Flight messages.
    Flight(FlightStream),
}

/// Why a run was stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// By the client (a cancel request, an interrupt).
    Cancelled,
    /// By the interactive time limit.
    TimedOut,
}

/// A run's one stop: the first of cancel and time limit wins, and its
/// reason is what the stream ends with. The token is cancelled only here,
/// so a cancelled token always has a recorded reason.
#[derive(Debug, Default)]
struct RunControl {
    stopped: parking_lot::Mutex<Option<Stop>>,
    token: CancellationToken,
}

impl RunControl {
    /// Stops the run for `why`; false if it was already stopped.
    fn stop(&self, why: Stop) -> bool {
        let mut stopped = self.stopped.lock();
        if stopped.is_some() {
            return false;
        }
        *stopped = Some(why);
        self.token.cancel();
        true
    }

    /// Why the run was stopped, if it was.
    fn stopped(&self) -> Option<Stop> {
        *self.stopped.lock()
    }
}

/// Removes a run from the running set when its stream ends or is dropped,
/// and cancels its Ballista job if it did not run to completion (client
/// gone). An explicit cancel already cancelled the job.
struct RunningGuard {
    running: Arc<DashMap<String, Run>>,
    run_id: String,
    user: String,
    /// Rows handed to the client so far. Logged when the run ends, so an
    /// operator (and a test) can see how much left the cluster: a frame
    /// aggregated on the cluster returns its groups, not the table.
    returned: Arc<std::sync::atomic::AtomicU64>,
    coordinator: String,
    finished: bool,
    /// Stops the run's timer.
    done: CancellationToken,
    tasks: Supervisor,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.done.cancel();
        let cancelled = self
            .running
            .remove(&self.run_id)
            .map(|(_, r)| r.control.stopped().is_some())
            .unwrap_or(false);
        tracing::info!(
            run_id = %self.run_id,
            user = %self.user,
            rows_returned = self.returned.load(std::sync::atomic::Ordering::Relaxed),
            finished = self.finished,
            cancelled,
            "query stream closed"
        );
        if !self.finished && !cancelled {
            let coordinator = self.coordinator.clone();
            let query_id = self.run_id.clone();
            self.tasks.spawn(
                "cancel an abandoned query's jobs",
                cancel_jobs(coordinator, query_id),
            );
        }
    }
}

/// Asks the coordinator to cancel the Ballista jobs of a query, so an
/// abandoned query stops using executors.
async fn cancel_jobs(coordinator: String, query_id: String) {
    let result = async {
        let mut c = tarn_proto::connect_coordinator(&coordinator).await?;
        c.cancel_query(tarn_proto::CancelQueryRequest {
            header: Some(tarn_proto::header()),
            query_id: query_id.clone(),
        })
        .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(%query_id, "query's jobs cancelled"),
        Err(e) => tracing::warn!(%query_id, error = %e, "could not cancel the query's jobs"),
    }
}

/// A job run's write sent by the notebook itself: committed with the
/// run's application transaction, or — when an earlier attempt of the run
/// already committed it — not at all (`None`). Either way the job's
/// report hears of it.
async fn once_per_run(
    spec: &Arc<tarn_lake::table::LakeTableSpec>,
    job: &crate::session::JobScope,
) -> Result<Option<Arc<tarn_lake::table::LakeTableSpec>>, TarnError> {
    let Some(write) = &spec.write else {
        return Ok(Some(Arc::clone(spec)));
    };
    if write.app_txn.is_some() {
        return Ok(Some(Arc::clone(spec)));
    }
    let table = format!("{}.{}", spec.workspace, spec.name);
    let app = tarn_lake::write::AppTxn {
        app_id: job.next_app_id(),
        version: job.seq,
    };
    let landed = tarn_lake::write::app_txn_version(&spec.url, &app.app_id).await?;
    if landed.is_some_and(|v| v >= app.version) {
        tracing::info!(app_id = %app.app_id, %table, "write already committed by an earlier attempt of the run; skipped");
        job.record(crate::session::ScopedWrite { table, txn: None });
        return Ok(None);
    }
    let mut spec = spec.as_ref().clone();
    if let Some(w) = spec.write.as_mut() {
        job.record(crate::session::ScopedWrite {
            table,
            txn: Some(w.txn.clone()),
        });
        w.app_txn = Some(app);
    }
    Ok(Some(Arc::new(spec)))
}

/// A fresh query id (also the prefix of its Ballista job names).
pub fn new_query_id() -> String {
    format!("tarn-{}", uuid::Uuid::new_v4().simple())
}

/// One `count` row.
fn count_result(run_id: String, n: u64) -> Query {
    let schema = count_schema();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(arrow::array::UInt64Array::from(vec![n])) as arrow::array::ArrayRef],
    );
    Query {
        run_id,
        schema,
        stream: Results::Batches(Box::pin(futures::stream::once(async move {
            batch.map_err(|e| TarnError::new(ErrorCode::Internal, e.to_string()))
        }))),
    }
}

fn count_schema() -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("count", arrow::datatypes::DataType::UInt64, false),
    ]))
}

/// Undoes a write's files if its run is dropped before every task
/// finished (client gone, cancelled, timed out).
struct AbortOnDrop(Option<Arc<tarn_lake::table::LakeTableSpec>>, Supervisor);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(spec) = self.0.take() {
            self.1.spawn("undo an unfinished write", async move {
                tarn_lake::write::abort(&spec).await
            });
        }
    }
}

/// Drains a write's task results (one manifest id per partition of the
/// writer, see `tarn_lake::write`), then commits exactly those manifests;
/// yields one `count` row with the rows committed. The commit runs in its
/// own task, so a client leaving mid-commit can neither interrupt it nor
/// make it be undone.
pub(crate) fn commit_after(
    stream: SendableRecordBatchStream,
    spec: Arc<tarn_lake::table::LakeTableSpec>,
    lake: Arc<tarn_lake::Lake>,
    user: String,
    tasks: Supervisor,
    receipts: Option<Arc<DashMap<String, tarn_lake::write::Committed>>>,
) -> SendableRecordBatchStream {
    use datafusion::error::DataFusionError;
    let fut = async move {
        let mut guard = AbortOnDrop(Some(Arc::clone(&spec)), tasks.clone());
        let mut stream = stream;
        let mut ids = Vec::new();
        while let Some(item) = stream.next().await {
            let batch = match item {
                Ok(b) => b,
                Err(e) => {
                    guard.0 = None;
                    tarn_lake::write::abort(&spec).await;
                    return Err(e);
                }
            };
            match tarn_lake::write::manifest_ids(&batch) {
                Ok(more) => ids.extend(more),
                Err(e) => {
                    guard.0 = None;
                    tarn_lake::write::abort(&spec).await;
                    return Err(DataFusionError::External(Box::new(e)));
                }
            }
        }
        guard.0 = None;
        let committed = tasks
            .spawn("commit a write", async move {
                let r = tarn_lake::write::commit(&spec, &ids).await;
                match &r {
                    Ok(c) => {
                        tracing::info!(%user, table = %format!("{}.{}", spec.workspace, spec.name),
                        version = c.version, rows = c.rows, files = c.files, "write committed");
                        if let (Some(receipts), Some(w)) = (receipts, spec.write.as_ref()) {
                            receipts.insert(w.txn.clone(), c.clone());
                        }
                        if let Ok(ws) = lake.workspace(&spec.workspace).await {
                            let _ = ws.refresh().await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%user, error = %e, "write not committed");
                        tarn_lake::write::abort(&spec).await;
                    }
                }
                r
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let c = committed.map_err(|t| DataFusionError::External(Box::new(t)))?;
        Ok(RecordBatch::try_new(
            count_schema(),
            vec![Arc::new(arrow::array::UInt64Array::from(vec![c.rows])) as arrow::array::ArrayRef],
        )?)
    };
    Box::pin(RecordBatchStreamAdapter::new(
        count_schema(),
        futures::stream::once(fut),
    ))
}

/// Reads a write's result to its end: the one `count` row.
pub(crate) async fn drain_count(mut stream: BatchStream) -> Result<i64, TarnError> {
    let mut n: i64 = 0;
    while let Some(b) = stream.next().await {
        let b = b?;
        if let Some(c) = b
            .columns()
            .first()
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
        {
            n += c.iter().flatten().sum::<u64>() as i64;
        }
    }
    Ok(n)
}

/// A lease-local run that ran out of its memory share before its first
/// batch left the executor has produced nothing yet: it runs again as
/// Ballista stages, whose tasks each hold only their stage's share. Once a
/// batch has reached the client the error stands (MEMORY_LIMIT_EXCEEDED).
fn distributed_when_out_of_memory(
    mut flight: FlightStream,
    schema: SchemaRef,
    state: SessionState,
    plan: LogicalPlan,
    run_id: String,
) -> FlightStream {
    let s = futures::stream::once(async move {
        // The schema and dictionary messages come first; they are held
        // back until a batch (or the end) shows the run got going.
        let mut head = Vec::new();
        loop {
            match flight.next().await {
                Some(Ok(m)) => {
                    let batch = is_batch_message(&m);
                    head.push(Ok(m));
                    if batch {
                        break;
                    }
                }
                Some(Err(e)) if e.code == ErrorCode::MemoryLimitExceeded => {
                    tracing::info!(query_id = %run_id, error = %e,
                        "lease-local run out of memory before its first batch; running it as Ballista stages");
                    let batches: BatchStream = match DataFrame::new(state, plan).execute_stream().await {
                        Ok(s) => Box::pin(s.map(|r| r.map_err(|e| from_datafusion(&e)))),
                        Err(e) => Box::pin(futures::stream::once(async move {
                            Err(from_datafusion(&e))
                        })),
                    };
                    return Results::Batches(batches).into_flight(schema);
                }
                Some(Err(e)) => {
                    head.push(Err(e));
                    break;
                }
                None => break,
            }
        }
        Box::pin(futures::stream::iter(head).chain(flight)) as FlightStream
    })
    .flatten();
    Box::pin(s)
}

/// The executor's schema message, made to say what `GetFlightInfo`
/// declared: the physical plan's schema can differ from the statement's
/// in nullability, names' metadata or schema metadata, and clients check
/// that the two agree. The column types stay the executor's, which its
/// batches are encoded in.
fn with_declared_schema(flight: FlightStream, declared: SchemaRef) -> FlightStream {
    let mut first = true;
    Box::pin(flight.map(move |m| {
        if !std::mem::take(&mut first) {
            return m;
        }
        let m = m?;
        let Ok(sent) = arrow::datatypes::Schema::try_from(&m) else {
            return Ok(m);
        };
        if sent.fields().len() != declared.fields().len() {
            return Ok(m);
        }
        let fields: Vec<arrow::datatypes::Field> = declared
            .fields()
            .iter()
            .zip(sent.fields())
            .map(|(d, s)| d.as_ref().clone().with_data_type(s.data_type().clone()))
            .collect();
        let schema =
            arrow::datatypes::Schema::new_with_metadata(fields, declared.metadata().clone());
        if schema == sent {
            return Ok(m);
        }
        Ok(arrow_flight::FlightData::from(
            arrow_flight::SchemaAsIpc::new(
                &schema,
                &arrow::ipc::writer::IpcWriteOptions::default(),
            ),
        ))
    }))
}

/// Whether a Flight message carries a record batch (not a schema or a
/// dictionary).
fn is_batch_message(m: &arrow_flight::FlightData) -> bool {
    arrow::ipc::root_as_message(&m.data_header)
        .map(|h| h.header_type() == arrow::ipc::MessageHeader::RecordBatch)
        .unwrap_or(false)
}

/// An `EXPLAIN`'s rows, and one more (`tarn_execution`) saying where the
/// explained statement runs.
fn explain_with_execution(
    stream: SendableRecordBatchStream,
    line: String,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let extra = {
        let schema = Arc::clone(&schema);
        futures::stream::once(async move {
            let columns = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let text = if i == 0 {
                        "tarn_execution"
                    } else {
                        line.as_str()
                    };
                    arrow::compute::cast(
                        &(Arc::new(arrow::array::StringArray::from(vec![text]))
                            as arrow::array::ArrayRef),
                        f.data_type(),
                    )
                })
                .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
            Ok::<_, datafusion::error::DataFusionError>(RecordBatch::try_new(schema, columns)?)
        })
    };
    Box::pin(RecordBatchStreamAdapter::new(schema, stream.chain(extra)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};

    fn batch(n: i64) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "x",
                Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("row {i}")),
                )) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    /// Batches encoded as a result's Flight messages.
    async fn encoded(
        batches: Vec<RecordBatch>,
        schema: SchemaRef,
    ) -> Vec<Result<arrow_flight::FlightData, TarnError>> {
        let source: BatchStream = Box::pin(futures::stream::iter(batches.into_iter().map(Ok)));
        Results::Batches(source).into_flight(schema).collect().await
    }

    /// Flight messages decoded as a kernel or REST consumer sees them.
    async fn decoded(
        messages: Vec<Result<arrow_flight::FlightData, TarnError>>,
    ) -> Vec<Result<RecordBatch, TarnError>> {
        Results::Flight(Box::pin(futures::stream::iter(messages)))
            .into_batches()
            .collect()
            .await
    }

    /// Forwarded messages are counted by the rows their headers declare,
    /// and decode back to the very batches that were encoded.
    #[tokio::test]
    async fn flight_messages_count_their_rows_and_decode_to_the_batches() {
        let batches = vec![batch(3), batch(1000), batch(0)];
        let schema = batches[0].schema();
        let messages: Vec<arrow_flight::FlightData> = encoded(batches.clone(), Arc::clone(&schema))
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        // The schema message first, which holds no rows.
        assert_eq!(messages[0].rows(), 0);
        assert_eq!(messages.iter().map(ResultPart::rows).sum::<u64>(), 1003);
        let again: Vec<RecordBatch> = decoded(messages.into_iter().map(Ok).collect())
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        let rows: usize = again.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1003);
        assert_eq!(
            arrow::compute::concat_batches(&schema, &again).unwrap(),
            arrow::compute::concat_batches(&schema, &batches).unwrap()
        );
    }

    /// A forwarded schema message says what the statement declared (here
    /// a nullable column the executor's plan calls non-nullable), and the
    /// batches still decode against it.
    #[tokio::test]
    async fn the_forwarded_schema_is_the_declared_one() {
        use arrow::datatypes::{DataType, Field, Schema};
        let sent = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        let declared = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, true)]));
        let b = RecordBatch::try_new(
            Arc::clone(&sent),
            vec![Arc::new(arrow::array::Int32Array::from(vec![1, 2])) as ArrayRef],
        )
        .unwrap();
        let source: BatchStream = Box::pin(futures::stream::iter(vec![Ok(b)]));
        let messages = Results::Batches(source).into_flight(Arc::clone(&sent));
        let messages: Vec<arrow_flight::FlightData> =
            with_declared_schema(messages, Arc::clone(&declared))
                .try_collect()
                .await
                .unwrap();
        assert_eq!(Schema::try_from(&messages[0]).unwrap(), *declared);
        assert_eq!(messages.iter().map(ResultPart::rows).sum::<u64>(), 2);
        let again: Vec<RecordBatch> = decoded(messages.into_iter().map(Ok).collect())
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(again[0].schema(), declared);
        assert_eq!(again[0].num_rows(), 2);
    }

    /// An executor's coded error among forwarded messages reaches a
    /// decoding consumer (a kernel, REST) with its code.
    #[tokio::test]
    async fn a_coded_error_among_flight_messages_keeps_its_code() {
        let schema = batch(1).schema();
        let mut messages = encoded(vec![batch(2)], schema).await;
        messages.push(Err(TarnError::new(
            ErrorCode::MemoryLimitExceeded,
            "out of its share",
        )));
        let got = decoded(messages).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().num_rows(), 2);
        let e = got[1].as_ref().unwrap_err();
        assert_eq!(e.code, ErrorCode::MemoryLimitExceeded, "{e}");
    }
}
