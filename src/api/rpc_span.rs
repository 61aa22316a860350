//! The span of each RegistrationService RPC, the root of registrar's part of
//! the caller's trace: a W3C `traceparent` (and `tracestate`) in the
//! request's metadata becomes its parent, so the caller's trace id runs
//! through the batch, its audit writes and the vendor calls that carry its
//! users (which send a `traceparent` of their own onward). Without one, the
//! span starts a trace of its own. Health and reflection get no span:
//! probes would fill the traces with noise.
//!
//! The span lives as long as the RPC's work: the tasks that feed and answer
//! a batch carry it (`in_current_span`), not only the handler's future.

use std::task::{Context, Poll};

use opentelemetry_http::HeaderExtractor;
use tower::{Layer, Service};
use tracing::{Instrument, instrument::Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::grpc_metrics;

const TRACED_SERVICE: &str = "registrar.v1.RegistrationService";

#[derive(Clone, Copy, Default)]
pub struct RpcSpanLayer;

impl<S> Layer<S> for RpcSpanLayer {
    type Service = RpcSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcSpan { inner }
    }
}

#[derive(Clone)]
pub struct RpcSpan<S> {
    inner: S,
}

impl<S, Body> Service<http::Request<Body>> for RpcSpan<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let span = rpc_span(&request);
        self.inner.call(request).instrument(span)
    }
}

/// The RPC's span, its parent taken from the request's trace context.
fn rpc_span<Body>(request: &http::Request<Body>) -> tracing::Span {
    let (service, method) = grpc_metrics::labels(request.uri().path());
    if service != TRACED_SERVICE {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "grpc_request",
        otel.name = format!("{service}/{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    // fails only when no OpenTelemetry layer is installed (unit tests)
    let _ = span.set_parent(parent);
    span
}
