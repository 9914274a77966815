//! Direct runs: single-stage plans sent straight to one executor.
//!
//! Ballista runs every query as a job: the scheduler splits the plan into
//! stages, each task writes its output to shuffle files, the client polls
//! (or is pushed) the job's status and then fetches the final partitions
//! from the executors. For a plan with no shuffle in it that machinery is
//! pure overhead: a point lookup pays for it in milliseconds, and a large
//! `SELECT *` is written to disk whole before its first batch can leave.
//!
//! So a read whose physical plan has no repartitioning is planned here,
//! encoded with datafusion-proto and Tarn's codec, and sent in a Flight
//! `DoGet` ticket to an executor of the session's pool, after the
//! coordinator reserved vCores of the session's lease on that executor.
//! The executor runs it at once and its batches stream back as they are
//! produced. Plans over small inputs are planned with one partition, which
//! turns aggregates and joins into single-stage plans too. Anything else,
//! or any hitch before the run starts (no room in the lease, a plan the
//! codec cannot carry), goes the Ballista way.

use std::sync::Arc;
use std::time::Duration;
use tarn_common::supervisor::Supervisor;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::Ticket;
use dashmap::DashMap;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionState;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tarn_proto::{DirectTicket, ReleaseDirectRequest, ReserveDirectRequest};
use tonic::transport::Channel;

use crate::lease::LeaseClient;
use crate::options::Execution;

/// How direct runs are chosen.
#[derive(Debug, Clone)]
pub struct DirectOptions {
    /// Whether reads may run directly at all.
    pub enabled: bool,
    /// Reads of at most this many input bytes are planned with one
    /// partition (so aggregates and joins need no shuffle) and run
    /// directly on one vCore.
    pub small_input_bytes: u64,
    /// Where reads with a shuffle run.
    pub execution: Execution,
    /// The most input bytes `Execution::Auto` runs on one executor.
    pub local_max_input_bytes: u64,
}

/// How a direct plan runs on its executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No shuffle at the lease's partition count.
    SingleStage,
    /// Small inputs planned with one partition, so no shuffle.
    OnePartition,
    /// The whole multi-stage plan on the lease's executor, its
    /// repartitions in memory.
    LeaseLocal,
}

impl Kind {
    /// The name the query's log line and `EXPLAIN` use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::SingleStage => "direct",
            Kind::OnePartition => "direct-one-partition",
            Kind::LeaseLocal => "lease-local",
        }
    }
}

/// A plan ready to run directly.
pub struct DirectPlan {
    /// One output partition.
    plan: Arc<dyn ExecutionPlan>,
    /// vCores its partitions use at once.
    vcores: u32,
    /// The settings it was planned with.
    settings: std::collections::HashMap<String, String>,
    /// How it runs.
    pub kind: Kind,
    /// Why it runs that way, for `EXPLAIN` and the log.
    pub why: String,
}

/// Where a read runs, and why.
pub enum Choice {
    /// On one executor of the lease, without a Ballista job.
    Direct(DirectPlan),
    /// As a Ballista job (stages over shuffle files).
    Ballista(String),
}

impl Choice {
    /// One line for `EXPLAIN`: where the plan runs and why.
    pub fn describe(&self) -> String {
        match self {
            Choice::Direct(p) => match p.kind {
                Kind::LeaseLocal => format!(
                    "lease-local: the whole plan runs on the executor holding the session's \
                     {} leased vCores, its repartitions in memory ({}); as Ballista stages \
                     if the lease's vCores are not free on one executor when it starts",
                    p.vcores, p.why
                ),
                Kind::SingleStage | Kind::OnePartition => format!(
                    "{}: one executor of the lease runs it without a Ballista job ({}, {} vCore(s))",
                    p.kind.name(),
                    p.why,
                    p.vcores
                ),
            },
            Choice::Ballista(why) => format!("distributed: Ballista stages ({why})"),
        }
    }
}

/// Sends direct runs to executors.
pub struct Direct {
    opts: DirectOptions,
    leases: LeaseClient,
    channels: DashMap<String, Channel>,
    tasks: Supervisor,
}

impl Direct {
    /// Direct runs reserved through `leases`' coordinator; releases run
    /// under `tasks`.
    pub fn new(opts: DirectOptions, leases: LeaseClient, tasks: Supervisor) -> Self {
        Self {
            opts,
            leases,
            channels: DashMap::new(),
            tasks,
        }
    }

    /// Whether a multi-stage read of `bytes` input runs on one executor.
    fn local_allowed(&self, bytes: u64) -> Result<(), String> {
        match self.opts.execution {
            Execution::Distributed => Err("execution = distributed".into()),
            Execution::Local => Ok(()),
            Execution::Auto if bytes <= self.opts.local_max_input_bytes => Ok(()),
            Execution::Auto => Err(format!(
                "inputs of {} exceed local_max_input_bytes = {}",
                human_bytes(bytes),
                human_bytes(self.opts.local_max_input_bytes)
            )),
        }
    }

    /// Where a read runs: its physical plan when it can run directly.
    pub async fn plan(&self, state: &SessionState, logical: &LogicalPlan) -> Choice {
        if !self.opts.enabled {
            return Choice::Ballista("direct_runs = false".into());
        }
        let partitions = state.config().target_partitions();
        // A join, grouping or window over an input too large for one
        // executor needs Ballista's stages: skip planning it twice.
        let (bytes, needs_shuffle) = logical_shape(logical);
        if needs_shuffle && bytes > self.opts.small_input_bytes && partitions > 1 {
            if let Err(why) = self.local_allowed(bytes) {
                return Choice::Ballista(why);
            }
        }
        let optimized = match state.optimize(logical) {
            Ok(p) => p,
            Err(e) => return Choice::Ballista(format!("not planned for one executor: {e}")),
        };
        let planner = DefaultPhysicalPlanner::default();
        let plan = match planner.create_physical_plan(&optimized, state).await {
            Ok(p) => p,
            Err(e) => return Choice::Ballista(format!("not planned for one executor: {e}")),
        };
        if !has_shuffle(&plan) {
            let why = format!("no shuffle at {partitions} partition(s)");
            return Choice::Direct(DirectPlan::new(plan, state, Kind::SingleStage, why));
        }
        let bytes = input_bytes(&plan);
        if bytes <= self.opts.small_input_bytes && partitions > 1 {
            let config = state.config().clone().with_target_partitions(1);
            let one = crate::session::with_config(state, config);
            if let Ok(p) = planner.create_physical_plan(&optimized, &one).await {
                if !has_shuffle(&p) {
                    let why = format!(
                        "inputs of {} are at most direct_small_input_bytes = {}",
                        human_bytes(bytes),
                        human_bytes(self.opts.small_input_bytes)
                    );
                    return Choice::Direct(DirectPlan::new(p, &one, Kind::OnePartition, why));
                }
            }
        }
        match self.local_allowed(bytes) {
            Ok(()) => {
                // Planned again with DataFusion's own join and repartition
                // choices: Ballista's (sort-merge joins, no round-robin
                // repartitioning) are made for stages that exchange
                // shuffle files, not for one plan in one process.
                let local = local_state(state);
                let plan = match planner.create_physical_plan(&optimized, &local).await {
                    Ok(p) => p,
                    Err(_) => plan,
                };
                let why = match self.opts.execution {
                    Execution::Local => {
                        format!("execution = local, inputs of {}", human_bytes(bytes))
                    }
                    _ => format!(
                        "inputs of {} are at most local_max_input_bytes = {}",
                        human_bytes(bytes),
                        human_bytes(self.opts.local_max_input_bytes)
                    ),
                };
                Choice::Direct(DirectPlan::new(plan, &local, Kind::LeaseLocal, why))
            }
            Err(why) => Choice::Ballista(why),
        }
    }

    /// Starts `plan` on an executor for `lease`'s session. `Ok(Err(why))`
    /// means it could not start directly (nothing ran): submit it to
    /// Ballista.
    pub async fn run(
        &self,
        plan: DirectPlan,
        lease_id: &str,
        query_id: &str,
    ) -> Result<Result<DirectStream, String>, DataFusionError> {
        let codec = tarn_lake::LakePhysicalCodec::default();
        let bytes = match datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(
            Arc::clone(&plan.plan),
            &codec,
        ) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(%query_id, error = %e, "plan cannot travel; running it through Ballista");
                return Ok(Err(format!("the plan cannot be sent to an executor: {e}")));
            }
        };
        let mut api = self.leases.api();
        let reply = match api
            .reserve_direct(ReserveDirectRequest {
                header: Some(tarn_proto::header()),
                lease_id: lease_id.to_string(),
                vcores: plan.vcores,
                query_id: query_id.to_string(),
                plan_sha256: tarn_common::reservation::sha256_hex(&bytes),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(e) => {
                tracing::debug!(%query_id, error = %e.message(), "no direct reservation");
                return Ok(Err(format!("no reservation: {}", e.message())));
            }
        };
        if !reply.granted {
            tracing::debug!(%query_id, reason = %reply.reason, "no direct reservation");
            return Ok(Err(format!("no reservation: {}", reply.reason)));
        }
        let guard = Reservation {
            leases: self.leases.clone(),
            id: reply.reservation_id.clone(),
            tasks: self.tasks.clone(),
        };
        // A plan with more partitions than the lease has free on one
        // executor would run them all at once there: the lease's cap must
        // hold, so it goes to Ballista, whose binding queues its tasks
        // (or spreads them over the lease's executors) instead.
        if reply.vcores < plan.vcores {
            tracing::debug!(%query_id, granted = reply.vcores, needed = plan.vcores, "lease too small for a direct run");
            return Ok(Err(format!(
                "{} of the lease's vCores are free on one executor, the plan runs {} partitions",
                reply.vcores, plan.vcores
            )));
        }
        let mut ticket = tarn_proto::DIRECT_TICKET_MAGIC.to_vec();
        DirectTicket {
            plan: bytes.to_vec(),
            settings: plan.settings,
            query_id: query_id.to_string(),
            reservation_id: reply.reservation_id.clone(),
            grant: reply.grant.clone(),
        }
        .encode(&mut ticket)
        .map_err(|e| DataFusionError::Internal(format!("cannot encode a direct ticket: {e}")))?;
        let address = format!("http://{}:{}", reply.host, reply.flight_port);
        let channel = match self.channel(&address) {
            Some(c) => c,
            None => return Ok(Err(format!("bad executor address {address}"))),
        };
        let mut client = FlightServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let response = match client
            .do_get(Ticket {
                ticket: ticket.into(),
            })
            .await
        {
            Ok(r) => r,
            // The executor is unreachable, or refused the plan before it
            // ran (another version, a plan it cannot decode): nothing
            // happened, so Ballista may still run it.
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tracing::warn!(%query_id, %address, error = %s.message(), "executor unreachable for a direct run; running it through Ballista");
                self.channels.remove(&address);
                return Ok(Err(format!("executor {address} unreachable")));
            }
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::InvalidArgument | tonic::Code::Unimplemented
                ) =>
            {
                tracing::warn!(%query_id, %address, error = %s.message(), "executor refused a direct run; running it through Ballista");
                return Ok(Err(format!("executor {address} refused the plan")));
            }
            Err(s) => return Err(DataFusionError::Execution(s.message().to_string())),
        };
        tracing::debug!(%query_id, executor = %reply.executor_id, vcores = reply.vcores, "direct run");
        let schema = plan.plan.schema();
        let flight = response
            .into_inner()
            .map_err(|s| {
                crate::error::from_datafusion(&DataFusionError::Execution(s.message().to_string()))
            })
            // The reservation lasts as long as the stream is read.
            .map(move |m| {
                let _ = &guard;
                m
            });
        Ok(Ok(DirectStream {
            schema,
            flight: Box::pin(flight),
        }))
    }

    fn channel(&self, address: &str) -> Option<Channel> {
        if let Some(c) = self.channels.get(address) {
            return Some(c.clone());
        }
        let c = tarn_common::cluster::endpoint(address)
            .ok()?
            .connect_timeout(Duration::from_secs(3))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(8 * 1024 * 1024))
            .initial_connection_window_size(Some(16 * 1024 * 1024))
            .connect_lazy();
        self.channels.insert(address.to_string(), c.clone());
        Some(c)
    }
}

impl DirectPlan {
    fn new(plan: Arc<dyn ExecutionPlan>, state: &SessionState, kind: Kind, why: String) -> Self {
        let vcores = max_partitions(&plan).max(1) as u32;
        let plan: Arc<dyn ExecutionPlan> =
            if plan.properties().output_partitioning().partition_count() > 1 {
                Arc::new(CoalescePartitionsExec::new(plan))
            } else {
                plan
            };
        let settings = state
            .config()
            .options()
            .entries()
            .into_iter()
            .filter(|e| e.key.starts_with("datafusion."))
            .filter_map(|e| e.value.map(|v| (e.key, v)))
            .collect();
        Self {
            plan,
            vcores,
            settings,
            kind,
            why,
        }
    }
}

/// A direct run's result: the executor's Flight messages as they arrive.
pub struct DirectStream {
    /// The plan's output schema.
    pub schema: arrow::datatypes::SchemaRef,
    /// The executor's messages (schema, dictionaries, batches), undecoded.
    pub flight: crate::query::FlightStream,
}

impl DirectStream {
    /// The batches, decoded here (for every consumer but Flight SQL's
    /// `DoGet`, which forwards the messages as they are).
    pub fn decoded(self) -> SendableRecordBatchStream {
        let batches = crate::query::Results::Flight(self.flight)
            .into_batches()
            .map_err(|e| DataFusionError::External(Box::new(e)));
        Box::pin(RecordBatchStreamAdapter::new(self.schema, batches))
    }
}

/// Gives a reservation back when its stream ends or is dropped.
struct Reservation {
    leases: LeaseClient,
    id: String,
    tasks: Supervisor,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut api = self.leases.api();
        let id = std::mem::take(&mut self.id);
        self.tasks.spawn("release a direct reservation", async move {
            if let Err(e) = api
                .release_direct(ReleaseDirectRequest {
                    header: Some(tarn_proto::header()),
                    reservation_id: id.clone(),
                })
                .await
            {
                tracing::warn!(reservation = %id, error = %e.message(), "could not release a direct reservation");
            }
        });
    }
}

/// Bytes of the lake tables a logical plan (with its subqueries) reads,
/// and whether it has an operator that repartitions its input when run
/// with more than one partition.
fn logical_shape(plan: &LogicalPlan) -> (u64, bool) {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut bytes = 0u64;
    let mut needs_shuffle = false;
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                if let Ok(provider) =
                    datafusion::catalog::default_table_source::source_as_provider(&scan.source)
                {
                    if let Some(t) = provider.downcast_ref::<tarn_lake::LakeTable>() {
                        bytes += t.spec().files.iter().map(|f| f.size).sum::<u64>();
                    }
                }
            }
            LogicalPlan::Aggregate(a) if !a.group_expr.is_empty() => needs_shuffle = true,
            LogicalPlan::Join(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Repartition(_) => needs_shuffle = true,
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    (bytes, needs_shuffle)
}

/// Whether a plan repartitions (a stage boundary for Ballista).
fn has_shuffle(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<RepartitionExec>().is_some() || plan.children().into_iter().any(has_shuffle)
}

/// The most partitions any operator of the plan runs at once.
fn max_partitions(plan: &Arc<dyn ExecutionPlan>) -> usize {
    plan.children()
        .into_iter()
        .map(max_partitions)
        .chain(std::iter::once(
            plan.properties().output_partitioning().partition_count(),
        ))
        .max()
        .unwrap_or(1)
}

/// A session's planning state with DataFusion's defaults for the choices
/// Ballista overrides for staged plans: hash joins (Ballista prefers
/// sort-merge joins, which spill, because each of its tasks holds a whole
/// build side), DataFusion's broadcast thresholds and round-robin
/// repartitioning. Dynamic filters stay off: they link operators through
/// shared state a plan sent to an executor cannot carry.
fn local_state(state: &SessionState) -> SessionState {
    let mut config = state.config().clone();
    let defaults = datafusion::config::OptimizerOptions::default();
    let o = &mut config.options_mut().optimizer;
    o.prefer_hash_join = defaults.prefer_hash_join;
    o.hash_join_single_partition_threshold = defaults.hash_join_single_partition_threshold;
    o.hash_join_single_partition_threshold_rows =
        defaults.hash_join_single_partition_threshold_rows;
    o.enable_round_robin_repartition = defaults.enable_round_robin_repartition;
    crate::session::with_config(state, config)
}

/// The state a plan with this `choice` is made in: lease-local plans with
/// DataFusion's join settings, one-partition plans at one partition, others
/// with `state` as it is. `EXPLAIN` plans the statement it explains here,
/// so its `physical_plan` row shows the plan that runs.
pub fn planning_state(state: &SessionState, choice: &Choice) -> SessionState {
    match choice {
        Choice::Direct(p) if p.kind == Kind::LeaseLocal => local_state(state),
        Choice::Direct(p) if p.kind == Kind::OnePartition => {
            crate::session::with_config(state, state.config().clone().with_target_partitions(1))
        }
        _ => state.clone(),
    }
}

/// Bytes in the units the options are written in.
fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if n >= size {
            return format!("{:.1} {unit}", n as f64 / size as f64);
        }
    }
    format!("{n} B")
}

/// Bytes of the files the plan scans.
fn input_bytes(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let own = plan
        .downcast_ref::<DataSourceExec>()
        .and_then(|d| d.data_source().downcast_ref::<FileScanConfig>())
        .map(|c| {
            c.file_groups
                .iter()
                .flat_map(|g| g.files())
                .map(|f| f.object_meta.size)
                .sum::<u64>()
        })
        .unwrap_or(0);
    own + plan.children().into_iter().map(input_bytes).sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn physical(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn aggregates_shuffle_unless_planned_with_one_partition() {
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_target_partitions(4),
        );
        ctx.sql("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'a')) AS v(x, y)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let scan = physical(&ctx, "SELECT x FROM t WHERE x > 1").await;
        assert!(!has_shuffle(&scan));
        let grouped = physical(&ctx, "SELECT y, count(*) FROM t GROUP BY y").await;
        assert!(has_shuffle(&grouped));
        assert!(max_partitions(&grouped) >= 1);

        let one = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_target_partitions(1),
        );
        one.register_table("t", ctx.table_provider("t").await.unwrap())
            .unwrap();
        let grouped = physical(&one, "SELECT y, count(*) FROM t GROUP BY y").await;
        assert!(!has_shuffle(&grouped));
        assert_eq!(max_partitions(&grouped), 1);
    }
}
