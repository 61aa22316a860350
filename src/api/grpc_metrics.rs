//! Counts every finished RPC in `grpc_server_handled_total`, by service,
//! method and status code, as grpc-ecosystem's interceptors do. A layer of
//! the server, outside the one that clarifies decode errors, so it counts
//! the status the caller got: from the headers of a trailers-only answer,
//! else from the trailers that end the body; an answer whose body is dropped
//! before its trailers (the caller went away) counts as `Canceled`.
//!
//! Method names come from a fixed list: a request for anything else counts
//! as `unknown`, so no caller can grow the label set.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::{Layer, Service};

/// The services and methods this server answers: the label values.
const KNOWN: &[(&str, &[&str])] = &[
    (
        "registrar.v1.RegistrationService",
        &[
            "BatchRegister",
            "BatchRegisterStream",
            "GetBatch",
            "ListRegistrations",
            "ListTargets",
        ],
    ),
    ("grpc.health.v1.Health", &["Check", "Watch"]),
    (
        "grpc.reflection.v1.ServerReflection",
        &["ServerReflectionInfo"],
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection",
        &["ServerReflectionInfo"],
    ),
];

/// The (service, method) labels of a request path `/service/method`.
pub(super) fn labels(path: &str) -> (&'static str, &'static str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    KNOWN
        .iter()
        .find(|(known, _)| *known == service)
        .map(|(known, methods)| {
            let method = methods.iter().find(|m| **m == method).copied();
            (*known, method.unwrap_or("unknown"))
        })
        .unwrap_or(("unknown", "unknown"))
}

#[derive(Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for GrpcMetrics<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<CountedBody<ResponseBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let (service, method) = labels(request.uri().path());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let mut counted = Counted {
                service,
                method,
                done: false,
            };
            // a trailers-only answer carries its status in the headers
            if let Some(code) = status_code(response.headers()) {
                counted.count(code);
            }
            Ok(response.map(|inner| CountedBody { inner, counted }))
        })
    }
}

/// The `grpc-status` of a header map, if it has one.
fn status_code(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_i32(value.parse().ok()?))
}

struct Counted {
    service: &'static str,
    method: &'static str,
    done: bool,
}

impl Counted {
    fn count(&mut self, code: Code) {
        if !self.done {
            self.done = true;
            crate::metrics::global().grpc_handled(self.service, self.method, code);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // the body went away before its trailers: the caller cancelled
        self.count(Code::Cancelled);
    }
}

/// A response body that counts the RPC when its trailers pass.
pub struct CountedBody<B> {
    inner: B,
    counted: Counted,
}

impl<B> Body for CountedBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_code) {
                    this.counted.count(code);
                }
            }
            // a body that ends without a status: gRPC reads it as UNKNOWN
            Poll::Ready(None) => this.counted.count(Code::Unknown),
            Poll::Ready(Some(Err(_))) => this.counted.count(Code::Internal),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::labels;

    #[test]
    fn only_known_methods_become_labels() {
        assert_eq!(
            labels("/registrar.v1.RegistrationService/BatchRegister"),
            ("registrar.v1.RegistrationService", "BatchRegister")
        );
        assert_eq!(
            labels("/registrar.v1.RegistrationService/Invented"),
            ("registrar.v1.RegistrationService", "unknown")
        );
        assert_eq!(labels("/made.up.Service/X"), ("unknown", "unknown"));
        assert_eq!(labels(""), ("unknown", "unknown"));
    }
}
