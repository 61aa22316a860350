//! The outbound stack of a target, outermost first: trace -> retry -> rate
//! limit -> attempt (audit row, sign, send guard -> timeout -> HTTP, parse).
//! Only the order and the wiring live here; each layer is its own module
//! in `outbound`, and the stack never looks at what a call carries.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tower::{
    Layer, ServiceBuilder,
    util::{BoxCloneService, BoxCloneSyncService},
};

use super::{
    attempt::AttemptService, call::CallService, call_log::SharedCallLog, exchange::HttpService,
    target::TargetSpec,
};
use crate::outbound::{
    http_client::HttpClient,
    rate_limit::{Limiter, RateLimitLayer, SendWindowLayer},
    retry::{RetryLayer, RetryPolicy},
    timeout::timed_http,
    trace::TraceLayer,
};

/// The stack every call of `spec` goes through.
pub(super) fn outbound_stack(
    spec: &TargetSpec,
    log: &SharedCallLog,
    client: HttpClient,
    limiter: Arc<dyn Limiter>,
    exit: CancellationToken,
) -> CallService {
    // the send guard sits right above the HTTP exchange, after every other
    // step of an attempt; its wait is not part of the call's timeout, so an
    // attempt held back by it is never reported as a lost answer
    let http = guarded_http(timed_http(client, spec.timeout), limiter.clone());
    let stack = ServiceBuilder::new()
        .layer(TraceLayer)
        .layer(RetryLayer::new(RetryPolicy::new(spec.max_attempts)))
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(AttemptService::new(log.clone(), http, limiter, exit));
    BoxCloneService::new(stack)
}

/// The HTTP exchange under each attempt: the send guard, then `timed`, the
/// exchange under the per-call timeout.
fn guarded_http(timed: HttpService, limiter: Arc<dyn Limiter>) -> HttpService {
    BoxCloneSyncService::new(SendWindowLayer::new(limiter).layer(timed))
}

#[cfg(test)]
mod tests {
    use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

    use bytes::Bytes;
    use tokio::time::Instant;
    use tower::{ServiceExt, service_fn};

    use super::guarded_http;
    use crate::outbound::{
        rate_limit::Limiter,
        timeout::{
            tests::{answer_after, request},
            timed_http,
        },
    };

    /// A limiter whose send guard holds every call for a second.
    struct SlowSendGuard;

    impl Limiter for SlowSendGuard {
        fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(async {})
        }

        fn current_rate(&self) -> f64 {
            1.0
        }

        fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(tokio::time::sleep(Duration::from_secs(1)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_held_at_the_send_guard_is_not_timed_out_for_it() {
        let timeout = Duration::from_millis(500);
        let prompt = service_fn(|_: http::Request<Bytes>| answer_after(Duration::from_millis(100)));
        let http = guarded_http(timed_http(prompt, timeout), Arc::new(SlowSendGuard));

        let started = Instant::now();
        let answer = http.oneshot(request()).await;

        assert!(answer.is_ok(), "{answer:?}");
        assert_eq!(started.elapsed(), Duration::from_millis(1100));
    }
}
