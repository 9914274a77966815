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
use tarn_proto::{DirectTicket, DIRECT_TICKET_MAGIC};
use tonic::{Request, Response, Status, Streaming};

type BoxedFlightStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Runs direct plans and delegates everything else to Ballista.
pub struct TarnFlightService {
    ballista: BallistaFlightService,
    /// Functions, codecs and the runtime (object stores) plans run with.
    base: SessionState,
    executor_id: String,
    /// Where direct plans run (not the Flight server's runtime).
    compute: tokio::runtime::Handle,
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
        compute: tokio::runtime::Handle,
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
        }
    }

    fn direct(&self, body: &[u8]) -> Result<BoxedFlightStream<FlightData>, Status> {
        let t = DirectTicket::decode(body)
            .map_err(|e| Status::invalid_argument(format!("corrupt direct ticket: {e}")))?;
        let settings: HashMap<String, String> = t.settings.into_iter().collect();
        let config = SessionConfig::from_string_hash_map(&settings)
            .map_err(|e| Status::invalid_argument(format!("direct run settings: {e}")))?;
        let ctx = Arc::new(
            TaskContext::from(&self.base)
                .with_session_config(config)
                .with_task_id(t.query_id.clone()),
        );
        let codec = tarn_lake::LakePhysicalCodec::default();
        let plan = datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(
            &t.plan, &ctx, &codec,
        )
        .map_err(|e| Status::invalid_argument(format!("cannot decode the direct plan: {e}")))?;
        let partitions = plan.properties().output_partitioning().partition_count();
        if partitions != 1 {
            return Err(Status::invalid_argument(format!(
                "a direct plan must have one output partition, not {partitions}"
            )));
        }
        let span = tracing::info_span!("direct_run", query_id = %t.query_id,
            reservation = %t.reservation_id, executor = %self.executor_id);
        tracing::debug!(parent: &span, "direct run started");
        let schema = plan.schema();
        // The plan runs on the executor's own compute runtime, as Ballista's
        // tasks do: operators spawn their work where `execute` is called,
        // so it is called there too, and a long operator can never stall
        // this Flight server's threads, the executor's announcements or its
        // shutdown. Dropping the response (client gone, query cancelled)
        // aborts the run at its next yield.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let task = self.compute.spawn(async move {
            let mut stream = match plan.execute(0, ctx) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            while let Some(item) = stream.next().await {
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        });
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

/// Serves [`TarnFlightService`] on Ballista's Flight address until the
/// executor shuts down (the shape Ballista's flight-service override takes).
pub fn serve(
    service: TarnFlightService,
    address: SocketAddr,
    mut shutdown: Shutdown,
    config: GrpcServerConfig,
    max_message_size: usize,
) -> tokio::task::JoinHandle<Result<(), BallistaError>> {
    tokio::spawn(async move {
        tracing::info!(%address, "Flight service (shuffle and direct runs) listening");
        create_grpc_server(&config)
            .add_service(
                FlightServiceServer::new(service)
                    .max_decoding_message_size(max_message_size)
                    .max_encoding_message_size(max_message_size),
            )
            .serve_with_shutdown(address, shutdown.recv())
            .await
            .map_err(BallistaError::TonicError)
    })
}
