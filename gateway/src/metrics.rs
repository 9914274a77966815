//! Prometheus `/metrics` of a gateway: sessions, kernels, queries in
//! flight and by outcome, and the result bytes sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tarn_common::metrics::{Counter, Exposition, Gauge, LabeledCounter};
use tarn_common::TarnError;

/// What a gateway counts.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    /// Queries streaming results now.
    pub queries_running: Gauge,
    /// Queries ended, by outcome: `ok`, `abandoned` (the client stopped
    /// reading), or the error's catalogue name (`CANCELLED`,
    /// `TABLE_NOT_FOUND`, …).
    pub queries: LabeledCounter,
    /// Bytes of result batches handed to clients (Arrow in memory).
    pub result_bytes: Counter,
}

impl GatewayMetrics {
    /// The exposition text; `sessions` and `kernels` are read at scrape
    /// time from their registries.
    pub fn render(&self, sessions: usize, kernels: usize) -> String {
        let mut e = Exposition::default();
        e.gauge("tarn_gateway_sessions", "Open sessions", sessions as i64)
            .gauge("tarn_gateway_kernels", "Running kernels", kernels as i64)
            .gauge(
                "tarn_gateway_queries_running",
                "Queries streaming results",
                self.queries_running.get(),
            )
            .labeled(
                "tarn_gateway_queries_total",
                "Queries ended, by outcome",
                "outcome",
                &self.queries,
            )
            .counter(
                "tarn_gateway_result_bytes_total",
                "Bytes of result batches sent to clients",
                self.result_bytes.get(),
            );
        e.finish()
    }

    /// Counts a query's result stream: in flight until dropped, its bytes,
    /// and how it ended.
    pub fn count<S>(self: &Arc<Self>, inner: S) -> Counted<S> {
        self.queries_running.inc();
        Counted {
            inner,
            metrics: Arc::clone(self),
            outcome: "abandoned",
        }
    }
}

/// A result stream being counted (see [`GatewayMetrics::count`]).
pub struct Counted<S> {
    inner: S,
    metrics: Arc<GatewayMetrics>,
    outcome: &'static str,
}

impl<S, T> Stream for Counted<S>
where
    S: Stream<Item = Result<T, TarnError>> + Unpin,
    T: crate::query::ResultPart,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(b))) => self.metrics.result_bytes.add(b.bytes()),
            Poll::Ready(Some(Err(e))) => self.outcome = e.code.name(),
            Poll::Ready(None) if self.outcome == "abandoned" => self.outcome = "ok",
            _ => {}
        }
        next
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        self.metrics.queries_running.dec();
        self.metrics.queries.inc(self.outcome);
    }
}
