//! Tracing: one span per vendor call (all its attempts), carrying the target,
//! vendor, action and batch size, with the outcome recorded when it ends.
//! Fields are ids and counts only: never a credential or a user's data.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower::{Layer, Service};
use tracing::Instrument;

/// A request that can open its own span, and a response that can close it.
pub trait Traced {
    type Response;
    fn span(&self) -> tracing::Span;
    fn record(span: &tracing::Span, response: &Self::Response);
}

#[derive(Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner }
    }
}

#[derive(Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S, Request> Service<Request> for Trace<S>
where
    Request: Traced<Response = S::Response>,
    S: Service<Request>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let span = request.span();
        let future = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let result = future.await;
            if let Ok(response) = &result {
                Request::record(&span, response);
            }
            result
        })
    }
}
