//! The executor's Arrow Flight port: Ballista's shuffle service, plus
//! direct runs.
//!
//! A direct run is a single-stage plan (no shuffle) that the gateway sends
//! here in a `DoGet` ticket, after reserving vCores of its session's lease
//! on this executor through the coordinator. The plan runs at once and its
//! batches stream back as they are produced: no Ballista job, no status
//! round trips, no shuffle files. Every other request goes to Ballista's
//! own Flight service unchanged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use ballista_core::error::BallistaError;
use ballista_core::utils::{create_grpc_server, GrpcServerConfig};
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::shutdown::Shutdown;
use datafusion::execution::context::SessionState;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::prelude::SessionConfig;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tarn_common::reservation::GrantChecker;
use tarn_common::{ErrorCode, TarnError};
use tarn_proto::{DirectTicket, DIRECT_TICKET_MAGIC};
use tonic::{Request, Response, Status, Streaming};
use url::Url;

type BoxedFlightStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Runs direct plans and delegates everything else to Ballista.
pub struct TarnFlightService {
    ballista: BallistaFlightService,
    /// Functions, codecs and the runtime (object stores) plans run with.
    base: SessionState,
    executor_id: String,
    /// Where direct plans run (not the Flight server's runtime).
    compute: Compute,
    /// The lake plans may read and write.
    lake_root: Url,
    /// The coordinator's signed reservations, each admitted once.
    grants: Arc<GrantChecker>,
    memory: MemoryBudget,
}

/// Where direct runs compute: a runtime of their own, their tasks tracked
/// by the executor's supervisor.
#[derive(Clone)]
pub struct Compute {
    /// The compute runtime.
    pub handle: tokio::runtime::Handle,
    /// The executor's tasks.
    pub tasks: tarn_common::supervisor::Supervisor,
    /// The executor's counters.
    pub metrics: Arc<crate::metrics::ExecutorMetrics>,
}

/// Where a direct run's memory comes from: its lease's share (its granted
/// vCores times `per_vcore`) of the executor's pool.
#[derive(Clone)]
pub struct MemoryBudget {
    /// The executor's pool.
    pub process: Arc<dyn datafusion::execution::memory_pool::MemoryPool>,
    /// Bytes per granted vCore.
    pub per_vcore: usize,
}

/// Aborts a direct run's task when its response stream is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.0.is_finished() {
            tracing::debug!("direct run's response dropped; aborting it");
        }
        self.0.abort();
    }
}

impl TarnFlightService {
    /// A service whose shuffle files live in `work_dir` and whose direct
    /// runs use `runtime` (with the lake's object store registered).
    pub fn new(
        work_dir: String,
        runtime: Arc<RuntimeEnv>,
        executor_id: String,
        compute: Compute,
        lake_root: Url,
        grants: Arc<GrantChecker>,
        memory: MemoryBudget,
    ) -> Self {
        let base = SessionStateBuilder::new()
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        Self {
            ballista: BallistaFlightService::new(work_dir),
            base,
            executor_id,
            compute,
            lake_root,
            grants,
            memory,
        }
    }

    fn direct(&self, body: &[u8]) -> Result<BoxedFlightStream<FlightData>, Status> {
        let invalid = |what: String| TarnError::new(ErrorCode::InvalidArgument, what).to_status();
        let t = DirectTicket::decode(body)
            .map_err(|e| invalid(format!("corrupt direct ticket: {e}")))?;
        // The reservation first: nothing of an unreserved plan is decoded.
        let grant = self
            .grants
            .admit(
                &t.grant,
                &t.reservation_id,
                &t.plan,
                tarn_common::clock::unix_ms(),
            )
            .map_err(|e| {
                tracing::warn!(query_id = %t.query_id, error = %e, "refused a direct run");
                e.to_status()
            })?;
        let settings: HashMap<String, String> = t.settings.into_iter().collect();
        let config = SessionConfig::from_string_hash_map(&settings)
            .map_err(|e| invalid(format!("direct run settings: {e}")))?;
        let share = crate::memory::LeaseShare::new(
            Arc::clone(&self.memory.process),
            self.memory.per_vcore * grant.vcores.max(1) as usize,
            format!("lease {}", grant.lease_id),
        );
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::from_runtime_env(
            self.base.runtime_env(),
        )
        .with_memory_pool(Arc::new(share))
        .build_arc()
        .map_err(|e| TarnError::new(ErrorCode::Internal, e.to_string()).to_status())?;
        let ctx = Arc::new(
            TaskContext::from(&self.base)
                .with_session_config(config)
                .with_runtime(runtime)
                .with_task_id(t.query_id.clone()),
        );
        let plan = decode_plan(&t.plan, &ctx, &self.lake_root).map_err(|e| {
            tracing::warn!(query_id = %t.query_id, lease = %grant.lease_id, error = %e, "refused a direct plan");
            e.to_status()
        })?;
        let partitions = plan.properties().output_partitioning().partition_count();
        if partitions != 1 {
            return Err(invalid(format!(
                "a direct plan must have one output partition, not {partitions}"
            )));
        }
        let span = tracing::info_span!("direct_run", query_id = %t.query_id,
            reservation = %t.reservation_id, executor = %self.executor_id);
        tracing::info!(parent: &span, "direct run started");
        let schema = plan.schema();
        // The plan runs on the executor's own compute runtime, as Ballista's
        // tasks do: operators spawn their work where `execute` is called,
        // so it is called there too, and a long operator can never stall
        // this Flight server's threads, the executor's announcements or its
        // shutdown. Dropping the response (client gone, query cancelled)
        // aborts the run at its next yield.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let run_span = span.clone();
        let counted = Arc::clone(&self.compute.metrics);
        let task = self.compute.tasks.spawn_on(
            "direct run",
            tracing::Instrument::instrument(
                async move {
                    let _running = counted.direct_running.track();
                    // A run dropped mid-way (client gone, cancelled) keeps
                    // the default.
                    let mut outcome = counted.direct_runs.outcome("cancelled");
                    let mut stream = match plan.execute(0, ctx) {
                        Ok(s) => s,
                        Err(e) => {
                            outcome.set("failed");
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    while let Some(item) = stream.next().await {
                        let item = item.map_err(tarn_lake::error::with_value_code);
                        let failed = item.is_err();
                        if tx.send(item).await.is_err() {
                            return;
                        }
                        if failed {
                            outcome.set("failed");
                            return;
                        }
                    }
                    outcome.set("ok");
                },
                run_span,
            ),
            &self.compute.handle,
        );
        let guard = AbortOnDrop(task);
        let batches = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(move |item| {
                let _ = &guard;
                item
            })
            .map_err(|e| FlightError::ExternalError(Box::new(e)));
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Box::pin(flight))
    }
}

#[tonic::async_trait]
impl FlightService for TarnFlightService {
    type HandshakeStream = BoxedFlightStream<HandshakeResponse>;
    type ListFlightsStream = BoxedFlightStream<FlightInfo>;
    type DoGetStream = BoxedFlightStream<FlightData>;
    type DoPutStream = BoxedFlightStream<PutResult>;
    type DoActionStream = BoxedFlightStream<arrow_flight::Result>;
    type ListActionsStream = BoxedFlightStream<ActionType>;
    type DoExchangeStream = BoxedFlightStream<FlightData>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        if let Some(body) = request.get_ref().ticket.strip_prefix(DIRECT_TICKET_MAGIC) {
            return self.direct(body).map(Response::new);
        }
        check_fetch(&request.get_ref().ticket)?;
        self.ballista.do_get(request).await
    }

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.ballista.handshake(request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.ballista.list_flights(request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.ballista.get_flight_info(request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        self.ballista.poll_flight_info(request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.ballista.get_schema(request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.ballista.do_put(request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        check_fetch(&request.get_ref().body)?;
        self.ballista.do_action(request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.ballista.list_actions(request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.ballista.do_exchange(request).await
    }
}

/// Decodes a direct run's plan and checks it is one Tarn makes over the
/// lake at `lake_root`. Whatever the bytes, the answer is a plan or a coded
/// error: a decoder panic on hostile input is caught and refused too.
pub fn decode_plan(
    bytes: &[u8],
    ctx: &TaskContext,
    lake_root: &Url,
) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>, TarnError> {
    let codec = tarn_lake::LakePhysicalCodec::default();
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(bytes, ctx, &codec)
    }))
    .map_err(|_| {
        TarnError::new(
            ErrorCode::InvalidArgument,
            "cannot decode the direct plan: the decoder failed on it",
        )
    })?
    .map_err(|e| {
        TarnError::new(
            ErrorCode::InvalidArgument,
            format!("cannot decode the direct plan: {e}"),
        )
    })?;
    tarn_lake::guard::check_plan(&decoded, lake_root)?;
    Ok(decoded)
}

/// Gateways fetch results and run direct plans; executors fetch shuffle
/// data from each other.
fn flight_callers(_path: &str) -> &'static [tarn_common::cluster::Role] {
    use tarn_common::cluster::Role;
    &[Role::Gateway, Role::Executor]
}

/// Ballista builds the path of a shuffle file from the fetch's job id, so a
/// job id that is not a plain name would read outside the work directory.
fn check_fetch(body: &[u8]) -> Result<(), Status> {
    use ballista_core::serde::scheduler::Action as BallistaAction;
    let Ok(action) = ballista_core::serde::decode_protobuf(body) else {
        // Ballista answers what it cannot decode itself.
        return Ok(());
    };
    match &action {
        BallistaAction::FetchPartition { job_id, .. } => {
            tarn_lake::guard::check_job_id(job_id.as_str()).map_err(|e| {
                tracing::warn!(error = %e, "refused a shuffle fetch");
                e.to_status()
            })
        }
        #[allow(unreachable_patterns)]
        _ => Ok(()),
    }
}

/// Serves [`TarnFlightService`] on Ballista's Flight address until the
/// executor shuts down (the shape Ballista's flight-service override takes).
pub fn serve(
    service: TarnFlightService,
    address: SocketAddr,
    mut shutdown: Shutdown,
    config: GrpcServerConfig,
    max_message_size: usize,
    tls: Arc<tarn_common::cluster::ClusterTls>,
    tasks: &tarn_common::supervisor::Supervisor,
) -> tokio::task::JoinHandle<Result<(), BallistaError>> {
    // Ballista awaits this handle itself; the task is still tracked.
    tasks.spawn("Flight service", async move {
        tracing::info!(%address, "Flight service (shuffle and direct runs, mutual TLS) listening");
        create_grpc_server(&config)
            .tls_config(tls.server_config())
            .map_err(BallistaError::TonicError)?
            .add_service(tarn_common::cluster::RoleGuard::new(
                FlightServiceServer::new(service)
                    .max_decoding_message_size(max_message_size)
                    .max_encoding_message_size(max_message_size),
                flight_callers,
            ))
            .serve_with_shutdown(address, shutdown.recv())
            .await
            .map_err(BallistaError::TonicError)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;
    use proptest::prelude::*;

    fn lake() -> Url {
        Url::parse("file:///srv/lake/").unwrap()
    }

    fn ctx() -> TaskContext {
        TaskContext::default()
    }

    fn encoded(sql: &str) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let ctx = SessionContext::new();
            let plan = ctx
                .sql(sql)
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap();
            datafusion_proto::bytes::physical_plan_to_bytes(plan)
                .unwrap()
                .to_vec()
        })
    }

    #[test]
    fn a_plan_of_tarn_shape_decodes_and_a_file_sink_does_not() {
        let ok = encoded("SELECT 1 AS x UNION ALL SELECT 2");
        assert!(decode_plan(&ok, &ctx(), &lake()).is_ok());
        let sink = encoded("COPY (SELECT 1 AS x) TO '/tmp/tarn-never-written.csv' STORED AS CSV");
        let e = decode_plan(&sink, &ctx(), &lake()).unwrap_err();
        assert_eq!(e.code, ErrorCode::PlanRefused, "{e}");
    }

    #[test]
    fn shuffle_fetches_must_name_plain_job_ids() {
        use ballista_core::serde::protobuf::{action, Action, FetchPartition};
        let fetch = |job_id: &str| {
            Action {
                action_type: Some(action::ActionType::FetchPartition(FetchPartition {
                    job_id: job_id.into(),
                    stage_id: 1,
                    partition_id: 0,
                    host: "127.0.0.1".into(),
                    port: 1,
                    ..Default::default()
                })),
                settings: vec![],
            }
            .encode_to_vec()
        };
        assert!(check_fetch(&fetch("aBc123")).is_ok());
        let s = check_fetch(&fetch("../../etc")).unwrap_err();
        assert_eq!(
            s.metadata()
                .get(tarn_common::error::ERROR_CODE_HEADER)
                .unwrap(),
            "2208"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary bytes never crash the decoder: a plan or a coded error.
        #[test]
        fn arbitrary_bytes_decode_to_a_plan_or_a_coded_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = decode_plan(&bytes, &ctx(), &lake()) {
                prop_assert!(matches!(e.code, ErrorCode::InvalidArgument | ErrorCode::PlanRefused), "{e}");
            }
        }

        /// Nor do valid plans with bytes changed here and there.
        #[test]
        fn corrupted_plans_decode_to_a_plan_or_a_coded_error(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
        ) {
            let mut bytes = encoded("SELECT 1 AS x UNION ALL SELECT 2");
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] = b;
            }
            if let Err(e) = decode_plan(&bytes, &ctx(), &lake()) {
                prop_assert!(matches!(e.code, ErrorCode::InvalidArgument | ErrorCode::PlanRefused), "{e}");
            }
        }

        /// Ticket bodies: arbitrary bytes are a corrupt ticket or a ticket
        /// whose grant does not verify.
        #[test]
        fn arbitrary_tickets_are_refused_with_a_code(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let checker = GrantChecker::new(tarn_common::auth::TokenKey::from_secret(&[3u8; 32]), "e");
            match DirectTicket::decode(bytes.as_slice()) {
                Err(_) => {}
                Ok(t) => {
                    let e = checker.admit(&t.grant, &t.reservation_id, &t.plan, 0).unwrap_err();
                    prop_assert_eq!(e.code, ErrorCode::ReservationInvalid);
                }
            }
        }
    }
}
