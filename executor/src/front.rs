//! The mutual-TLS front of Ballista's task port.
//!
//! Ballista's executor serves its task API (launch, cancel, stop, remove
//! job data) on a plain gRPC server it builds itself, with no hook for TLS
//! or for checking callers. So it listens on a loopback alias of the port
//! it advertises, and this front takes the advertised address: it speaks
//! mutual TLS with the cluster CA, lets only the coordinator's certificate
//! through ([`RoleGuard`]), and forwards each call to Ballista's server
//! unchanged. A caller without a cluster certificate never gets past the
//! handshake; another role gets `TARN-2207`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tarn_common::supervisor::Supervisor;

use tarn_common::cluster::{ClusterTls, Role, RoleGuard};
use tarn_common::{ErrorCode, TarnError};
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::Channel;

/// The address Ballista's own task server binds: a loopback alias, so the
/// advertised address (loopback or the host's) stays free for the front.
pub const INNER_HOST: &str = "127.0.0.2";

/// Forwards every request to Ballista's task server.
#[derive(Clone)]
struct Forward(Channel);

impl tonic::server::NamedService for Forward {
    const NAME: &'static str = "ballista.protobuf.ExecutorGrpc";
}

impl tonic::codegen::Service<http::Request<Body>> for Forward {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The channel is polled when called; a broken one answers below.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let mut channel = self.0.clone();
        Box::pin(async move {
            let ready = futures::future::poll_fn(|cx| {
                tonic::codegen::Service::poll_ready(&mut channel, cx)
            })
            .await;
            let result = match ready {
                Ok(()) => tonic::codegen::Service::call(&mut channel, req).await,
                Err(e) => Err(e),
            };
            Ok(result.unwrap_or_else(|e| {
                TarnError::new(
                    ErrorCode::Internal,
                    format!("the executor's task server is not answering: {e}"),
                )
                .to_status()
                .into_http()
            }))
        })
    }
}

/// Only the coordinator's scheduler launches, cancels and stops tasks.
fn callers(_path: &str) -> &'static [Role] {
    &[Role::Coordinator]
}

/// Serves the front on `listen`, forwarding to Ballista's server on
/// `inner`, until `shutdown`: a service of `tasks`. The port is bound
/// here, so a port in use is reported as such, at once.
pub fn serve(
    listen: SocketAddr,
    inner: SocketAddr,
    tls: Arc<ClusterTls>,
    shutdown: CancellationToken,
    tasks: &Supervisor,
) -> Result<(), crate::Error> {
    let front = |e: tonic::transport::Error| crate::Error::TaskFront {
        addr: listen.to_string(),
        source: e.into(),
    };
    let bind = |e| tarn_common::net::BindError::new(listen.to_string(), e);
    let listener = std::net::TcpListener::bind(listen).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind)?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{inner}"))
        .map_err(front)?
        .tcp_nodelay(true)
        .connect_lazy();
    let mut server = tonic::transport::Server::builder()
        .tls_config(tls.server_config())
        .map_err(front)?;
    let router = server.add_service(RoleGuard::new(Forward(channel), callers));
    tracing::info!(%listen, %inner, "task port (mutual TLS, coordinator only)");
    tasks.service("task port front", async move {
        router
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown.cancelled_owned(),
            )
            .await
    });
    Ok(())
}
