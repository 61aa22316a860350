//! One vendor call of the engine: the users it carries, the attempt service
//! at the bottom of the outbound stack, and how answers fold across retries.
//!
//! An attempt writes its vendor-call audit row first (no row, no call), signs
//! a fresh request (new timestamp and nonce), sends it under the per-call
//! timeout, parses the answer, and completes the row. Transport failures are
//! classified here: a connection that never opened is always safe to retry;
//! an answer lost after the request left is retried only where the vendor
//! makes a repeat harmless.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tower::{Service, ServiceExt, util::BoxCloneSyncService};
use tracing::Instrument;

use super::{
    batch::Pending,
    target::{Health, TargetSpec},
};
use crate::{
    audit::{AuditStore, NewVendorCall, VendorCallEnd},
    domain::User,
    outbound::{
        http_client::TransportError,
        rate_limit::{Limiter, PermitHolder},
        retry::RetryableRequest,
        trace::Traced,
    },
    vendor_api::{
        AttemptContext, BuildError, CallReport, ErrorClass, ErrorCode, RegistrarCode,
        VendorOutcome, answer,
    },
};

/// The HTTP exchange under the attempt: timeout -> client.
pub type HttpService =
    BoxCloneSyncService<http::Request<Bytes>, http::Response<Bytes>, TransportError>;

/// One attempt at registering some users at one target.
#[derive(Clone)]
pub struct CallRequest {
    pub target: Arc<TargetSpec>,
    /// The users carried, each with its slot in the first attempt.
    pub users: Vec<(usize, Arc<Pending>)>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The dispatcher took this attempt's rate permit already.
    pub permit_taken: bool,
}

/// What happened to one user of a call.
#[derive(Debug, Clone)]
pub struct Settled {
    pub outcome: VendorOutcome,
    pub attempts: u32,
    pub vendor_call_id: Option<i64>,
}

/// The answer to a call, one entry per slot of the first attempt.
#[derive(Debug, Clone)]
pub struct CallResponse {
    pub settled: Vec<(usize, Settled)>,
}

impl CallRequest {
    /// The first attempt of a call, whose rate permit the dispatcher holds.
    pub fn first(target: Arc<TargetSpec>, users: Vec<Arc<Pending>>) -> Self {
        CallRequest {
            target,
            users: users.into_iter().enumerate().collect(),
            attempt: 1,
            permit_taken: true,
        }
    }
}

impl PermitHolder for CallRequest {
    fn holds_permit(&self) -> bool {
        self.permit_taken
    }
}

impl RetryableRequest for CallRequest {
    type Response = CallResponse;

    fn retry_part(&self, response: &CallResponse) -> Option<(Self, ErrorClass)> {
        let mut class = ErrorClass::Retryable;
        let by_slot: std::collections::HashMap<usize, &Arc<Pending>> = self
            .users
            .iter()
            .map(|(slot, pending)| (*slot, pending))
            .collect();
        let users: Vec<(usize, Arc<Pending>)> = response
            .settled
            .iter()
            .filter_map(|(slot, settled)| {
                let retry_class = settled.outcome.retry_class()?;
                if retry_class == ErrorClass::Throttled {
                    class = ErrorClass::Throttled;
                }
                by_slot
                    .get(slot)
                    .map(|pending| (*slot, Arc::clone(pending)))
            })
            .collect();
        (!users.is_empty()).then(|| {
            (
                CallRequest {
                    target: self.target.clone(),
                    users,
                    attempt: self.attempt + 1,
                    // every retry takes a permit of its own
                    permit_taken: false,
                },
                class,
            )
        })
    }

    fn absorb(answer: &mut CallResponse, retry_answer: CallResponse) {
        for (slot, settled) in retry_answer.settled {
            match answer.settled.iter_mut().find(|(known, _)| *known == slot) {
                Some(entry) => entry.1 = settled,
                None => answer.settled.push((slot, settled)),
            }
        }
    }
}

impl Traced for CallRequest {
    type Response = CallResponse;

    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "vendor_call",
            target = %self.target.name,
            vendor = %self.target.vendor_kind,
            action = self.target.vendor.action(),
            batch_size = self.users.len(),
            attempts = tracing::field::Empty,
            registered = tracing::field::Empty,
            failed = tracing::field::Empty,
        )
    }

    fn record(span: &tracing::Span, response: &CallResponse) {
        let attempts = response
            .settled
            .iter()
            .map(|(_, settled)| settled.attempts)
            .max()
            .unwrap_or(0);
        let registered = response
            .settled
            .iter()
            .filter(|(_, settled)| {
                matches!(
                    settled.outcome,
                    VendorOutcome::Registered { .. } | VendorOutcome::AlreadyExists { .. }
                )
            })
            .count();
        span.record("attempts", attempts);
        span.record("registered", registered);
        span.record("failed", response.settled.len() - registered);
    }
}

/// The bottom of the outbound stack for one target: audit row, sign, send, parse.
#[derive(Clone)]
pub struct AttemptService {
    audit: AuditStore,
    http: HttpService,
    /// The target's limiter, for the extra calls of a job (its polls).
    limiter: Arc<dyn Limiter>,
}

impl AttemptService {
    pub fn new(audit: AuditStore, http: HttpService, limiter: Arc<dyn Limiter>) -> Self {
        AttemptService {
            audit,
            http,
            limiter,
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
                    audit: &service.audit,
                    http: &service.http,
                    target: &request.target,
                    span: &span,
                };
                let response = match request.target.vendor.jobs() {
                    Some(jobs) => {
                        super::jobs::run(&exchange, jobs, service.limiter.as_ref(), &request).await
                    }
                    None => attempt(&exchange, &request).await,
                };
                // the vendor's throttle answer slows the target down for every caller
                let throttled = response.settled.iter().any(|(_, settled)| {
                    settled.outcome.retry_class() == Some(ErrorClass::Throttled)
                });
                if throttled {
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

/// What one HTTP exchange with a vendor produced.
pub(super) enum Sent {
    Answer(http::Response<Bytes>),
    Transport(TransportError),
    Unbuildable(BuildError),
}

/// One vendor call with its audit row: the row is written before the call
/// (no row, no call) and completed after it.
pub(super) struct Exchange<'a> {
    pub audit: &'a AuditStore,
    pub http: &'a HttpService,
    pub target: &'a TargetSpec,
    pub span: &'a tracing::Span,
}

impl Exchange<'_> {
    /// The same exchange, its calls recorded in `span` instead (a job poll's
    /// own span, so that each poll's answer is recorded once).
    pub fn recorded_in<'s>(&'s self, span: &'s tracing::Span) -> Exchange<'s> {
        Exchange {
            audit: self.audit,
            http: self.http,
            target: self.target,
            span,
        }
    }

    /// Writes the call's row; `None` when the audit store is unavailable.
    pub async fn open(&self, action: &str, attempt: u32, user_count: usize) -> Option<i64> {
        let call = NewVendorCall {
            target: self.target.name.to_string(),
            vendor: self.target.vendor_kind.to_string(),
            action: action.to_owned(),
            attempt,
            user_count,
        };
        match self.audit.start_vendor_call(&call).await {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::error!(target = %self.target.name, action, %error, "vendor call not made: its audit row could not be written");
                None
            }
        }
    }

    /// Sends a built request under the call timeout.
    pub async fn send(
        &self,
        request: Result<http::Request<Bytes>, BuildError>,
    ) -> (Sent, Duration) {
        let started = Instant::now();
        let sent = match request {
            Err(error) => Sent::Unbuildable(error),
            Ok(request) => match self.http.clone().oneshot(request).await {
                Ok(response) => Sent::Answer(response),
                Err(error) => Sent::Transport(error),
            },
        };
        (sent, started.elapsed())
    }

    /// Completes the call's row and the span.
    pub async fn close(&self, call_id: i64, end: &VendorCallEnd) {
        if let Some(request_id) = &end.vendor_request_id {
            self.span.record("vendor_request_id", request_id.as_str());
        }
        if let Some(status) = end.http_status {
            self.span.record("http_status", status);
        }
        if let Some(code) = &end.vendor_error_code {
            self.span.record("error_code", code.as_str());
        }
        if let Some(job_id) = &end.vendor_job_id {
            self.span.record("vendor_job_id", job_id.as_str());
        }
        if let Err(error) = self.audit.finish_vendor_call(call_id, end).await {
            tracing::error!(target = %self.target.name, call_id, %error, "could not complete the vendor call's audit row");
        }
    }
}

/// The answer for every user of a call that was not made for want of its audit row.
pub(super) fn audit_unavailable(user_count: usize) -> CallReport {
    CallReport::call_failed(
        user_count,
        None,
        ErrorClass::Permanent,
        RegistrarCode::AuditUnavailable,
        "the audit store is unavailable, so the vendor was not called",
    )
}

/// The users of a request, in its order.
pub(super) fn users_of(request: &CallRequest) -> Vec<&User> {
    request
        .users
        .iter()
        .map(|(_, pending)| pending.user.as_ref())
        .collect()
}

/// One call of a one-call vendor: build, send, parse.
async fn attempt(exchange: &Exchange<'_>, request: &CallRequest) -> CallResponse {
    let target = exchange.target;
    let vendor = &target.vendor;
    let users = users_of(request);
    let Some(call_id) = exchange
        .open(vendor.action(), request.attempt, users.len())
        .await
    else {
        return request.settle(audit_unavailable(users.len()), None);
    };
    let (sent, latency) = exchange
        .send(vendor.build_request(&users, &AttemptContext::now()))
        .await;
    let (report, http_status) = match sent {
        Sent::Answer(response) => {
            let report = vendor.parse_response(&users, &response);
            (
                checked(report, users.len()),
                Some(response.status().as_u16()),
            )
        }
        Sent::Transport(error) => (
            transport_failure(&error, vendor.repeat_is_safe(), users.len()),
            None,
        ),
        Sent::Unbuildable(error) => (build_failure(&error, users.len()), None),
    };
    target.health.set(health_of(&report));
    let end = VendorCallEnd {
        vendor_request_id: report.vendor_request_id.clone(),
        http_status,
        vendor_error_code: report.error_code().map(str::to_owned),
        error_class: report.error_class.map(|class| class.as_str().to_owned()),
        vendor_job_id: None,
        latency,
    };
    exchange.close(call_id, &end).await;
    request.settle(report, Some(call_id))
}

/// A report that accounts for every user, or a failure saying it did not.
pub(super) fn checked(report: CallReport, user_count: usize) -> CallReport {
    if report.outcomes.len() == user_count {
        return report;
    }
    answer::malformed(
        user_count,
        report.vendor_request_id,
        "the vendor's answer did not account for every user",
    )
}

pub(super) fn build_failure(error: &BuildError, user_count: usize) -> CallReport {
    CallReport::call_failed(
        user_count,
        None,
        ErrorClass::Permanent,
        RegistrarCode::RequestBuildFailed,
        &error.to_string(),
    )
}

impl CallRequest {
    /// The response giving each user of this attempt its outcome from `report`.
    pub(super) fn settle(&self, report: CallReport, vendor_call_id: Option<i64>) -> CallResponse {
        CallResponse {
            settled: self
                .users
                .iter()
                .zip(report.outcomes)
                .map(|((slot, _), outcome)| {
                    (
                        *slot,
                        Settled {
                            outcome,
                            attempts: self.attempt,
                            vendor_call_id,
                        },
                    )
                })
                .collect(),
        }
    }
}

pub(super) fn transport_failure(
    error: &TransportError,
    repeat_is_safe: bool,
    user_count: usize,
) -> CallReport {
    let (code, class) = match error {
        TransportError::Connect(_) => (RegistrarCode::ConnectFailed, ErrorClass::Retryable),
        TransportError::AnswerLost(_) => (RegistrarCode::AnswerLost, ErrorClass::Retryable),
        TransportError::Timeout => (RegistrarCode::Timeout, ErrorClass::Retryable),
    };
    // a request that may have been processed is repeated only where that is harmless
    let class = if error.maybe_processed() && !repeat_is_safe {
        ErrorClass::Permanent
    } else {
        class
    };
    CallReport::call_failed(user_count, None, class, code, &error.to_string())
}

pub(super) fn health_of(report: &CallReport) -> Health {
    let throttled = report.error_class == Some(ErrorClass::Throttled)
        || report
            .outcomes
            .iter()
            .any(|outcome| outcome.retry_class() == Some(ErrorClass::Throttled));
    if throttled {
        return Health::Throttled;
    }
    match report.error_class {
        Some(ErrorClass::Retryable) => Health::Failing,
        Some(_)
            if report
                .error_code
                .as_ref()
                .is_some_and(ErrorCode::is_registrar) =>
        {
            Health::Failing
        }
        _ => Health::Serving,
    }
}
