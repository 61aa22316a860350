//! The bottom of a target's outbound stack: one attempt of a call. It writes
//! the call's audit row first (no row, no call), signs a fresh request (new
//! timestamp and nonce), sends it under the per-call timeout, parses the
//! answer and completes the row; a vendor that registers through jobs takes
//! the job path instead. Every answer tells the target's limiter whether the
//! vendor throttled, so that one caller's throttle slows the target for all.
//!
//! An attempt never retries and never waits for a rate permit: the layers
//! above it do.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio_util::sync::CancellationToken;
use tower::Service;
use tracing::Instrument;

use super::{
    call::{CallRequest, CallResponse},
    call_log::SharedCallLog,
    exchange::{Exchange, HttpService, audit_unavailable, checked, record_report},
    jobs,
};
use crate::{
    audit::VendorCallEnd,
    outbound::rate_limit::Limiter,
    vendor_api::{AttemptContext, answer},
};

/// One attempt at a call: audit row, sign, send, parse.
#[derive(Clone)]
pub struct AttemptService {
    log: SharedCallLog,
    http: HttpService,
    /// The target's limiter, for the extra calls of a job (its polls).
    limiter: Arc<dyn Limiter>,
    exit: CancellationToken,
}

impl AttemptService {
    pub(super) fn new(
        log: SharedCallLog,
        http: HttpService,
        limiter: Arc<dyn Limiter>,
        exit: CancellationToken,
    ) -> Self {
        AttemptService {
            log,
            http,
            limiter,
            exit,
        }
    }
}

impl Service<CallRequest> for AttemptService {
    type Response = CallResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<CallResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: CallRequest) -> Self::Future {
        let service = self.clone();
        let span = tracing::info_span!(
            "vendor_attempt",
            attempt = request.attempt,
            users = request.users.len(),
            vendor_request_id = tracing::field::Empty,
            http_status = tracing::field::Empty,
            error_code = tracing::field::Empty,
            vendor_job_id = tracing::field::Empty,
        );
        Box::pin(
            async move {
                let span = tracing::Span::current();
                let exchange = Exchange {
                    log: service.log.as_ref(),
                    http: &service.http,
                    target: &request.target,
                    span: &span,
                    exit: &service.exit,
                };
                let response = match request.target.vendor.jobs() {
                    Some(jobs) => {
                        jobs::run(&exchange, jobs, service.limiter.as_ref(), &request).await
                    }
                    None => one_call(&exchange, &request).await,
                };
                if response.throttled() {
                    service.limiter.throttled();
                } else {
                    service.limiter.succeeded();
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// One call of a one-call vendor: build, send, parse.
async fn one_call(exchange: &Exchange<'_>, request: &CallRequest) -> CallResponse {
    let vendor = &exchange.target.vendor;
    let users = request.users();
    let Some(call_id) = exchange
        .open(vendor.action(), request.attempt, request.carried())
        .await
    else {
        return request.settle(audit_unavailable(users.len()), None);
    };
    let (sent, latency) = exchange
        .send(vendor.build_request(&users, &AttemptContext::now()))
        .await;
    let mut end = VendorCallEnd {
        latency,
        ..VendorCallEnd::default()
    };
    let mut retry_after = None;
    let report = match sent.answer(vendor.repeat_is_safe(), users.len()) {
        Ok(response) => {
            end.http_status = Some(response.status().as_u16());
            retry_after = answer::retry_after(&response, std::time::SystemTime::now());
            checked(
                vendor.parse_response(&users, &response),
                users.len(),
                vendor.repeat_is_safe(),
            )
        }
        Err(report) => report,
    };
    exchange.note_health(&report);
    record_report(&mut end, &report);
    exchange.close(call_id, vendor.action(), &end).await;
    let mut response = request.settle(report, Some(call_id));
    response.retry_after = retry_after;
    response
}
