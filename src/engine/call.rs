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
    time::Instant,
};

use bytes::Bytes;
use tower::{Service, ServiceExt, util::BoxCloneService};
use tracing::Instrument;

use super::{
    batch::Pending,
    target::{Health, TargetSpec},
};
use crate::{
    audit::{AuditStore, NewVendorCall, VendorCallEnd},
    domain::User,
    outbound::{http_client::TransportError, retry::RetryableRequest, trace::Traced},
    vendor::{AttemptContext, CallReport, ErrorClass, VendorOutcome},
};

/// The HTTP exchange under the attempt: timeout -> client.
pub type HttpService = BoxCloneService<http::Request<Bytes>, http::Response<Bytes>, TransportError>;

/// One attempt at registering some users at one target.
#[derive(Clone)]
pub struct CallRequest {
    pub target: Arc<TargetSpec>,
    /// The users carried, each with its slot in the first attempt.
    pub users: Vec<(usize, Arc<Pending>)>,
    /// 1 for the first attempt.
    pub attempt: u32,
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
    pub fn first(target: Arc<TargetSpec>, users: Vec<Arc<Pending>>) -> Self {
        CallRequest {
            target,
            users: users.into_iter().enumerate().collect(),
            attempt: 1,
        }
    }

    fn all(&self, outcome: VendorOutcome, vendor_call_id: Option<i64>) -> CallResponse {
        CallResponse {
            settled: self
                .users
                .iter()
                .map(|(slot, _)| {
                    (
                        *slot,
                        Settled {
                            outcome: outcome.clone(),
                            attempts: self.attempt,
                            vendor_call_id,
                        },
                    )
                })
                .collect(),
        }
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
}

impl AttemptService {
    pub fn new(audit: AuditStore, http: HttpService) -> Self {
        AttemptService { audit, http }
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
        let audit = self.audit.clone();
        let http = self.http.clone();
        let span = tracing::info_span!(
            "vendor_attempt",
            attempt = request.attempt,
            users = request.users.len(),
            vendor_request_id = tracing::field::Empty,
            http_status = tracing::field::Empty,
            error_code = tracing::field::Empty,
        );
        Box::pin(
            async move { Ok(attempt(audit, http, request, tracing::Span::current()).await) }
                .instrument(span),
        )
    }
}

async fn attempt(
    audit: AuditStore,
    http: HttpService,
    request: CallRequest,
    span: tracing::Span,
) -> CallResponse {
    let target = &request.target;
    let vendor = &target.vendor;

    let call_id = match audit
        .start_vendor_call(&NewVendorCall {
            target: target.name.to_string(),
            vendor: target.vendor_kind.to_string(),
            action: vendor.action().to_owned(),
            attempt: request.attempt,
            user_count: request.users.len(),
        })
        .await
    {
        Ok(id) => id,
        Err(error) => {
            // no vendor call is made without its audit row
            tracing::error!(target = %target.name, %error, "vendor call not made: audit row could not be written");
            return request.all(
                VendorOutcome::failed(
                    ErrorClass::Permanent,
                    "registrar.AuditUnavailable",
                    "the audit store is unavailable, so the vendor was not called",
                ),
                None,
            );
        }
    };

    let users: Vec<&User> = request
        .users
        .iter()
        .map(|(_, pending)| pending.user.as_ref())
        .collect();
    let started = Instant::now();
    let (report, http_status) = match vendor.build_request(&users, &AttemptContext::now()) {
        Err(error) => (
            CallReport::call_failed(
                users.len(),
                None,
                ErrorClass::Permanent,
                "registrar.RequestBuildFailed",
                &error.to_string(),
            ),
            None,
        ),
        Ok(http_request) => match http.oneshot(http_request).await {
            Ok(response) => {
                let mut report = vendor.parse_response(&users, &response);
                if report.outcomes.len() != users.len() {
                    report = CallReport::call_failed(
                        users.len(),
                        report.vendor_request_id,
                        ErrorClass::Permanent,
                        "registrar.MalformedResponse",
                        "the vendor's answer did not account for every user",
                    );
                }
                (report, Some(response.status().as_u16()))
            }
            Err(error) => (
                transport_failure(&error, vendor.repeat_is_safe(), users.len()),
                None,
            ),
        },
    };
    let latency = started.elapsed();

    if let Some(request_id) = &report.vendor_request_id {
        span.record("vendor_request_id", request_id.as_str());
    }
    if let Some(status) = http_status {
        span.record("http_status", status);
    }
    if let Some(code) = &report.error_code {
        span.record("error_code", code.as_str());
    }
    target.health.set(health_of(&report));
    let end = VendorCallEnd {
        vendor_request_id: report.vendor_request_id.clone(),
        http_status,
        vendor_error_code: report.error_code.clone(),
        error_class: report.error_class.map(|class| class.as_str().to_owned()),
        latency,
    };
    if let Err(error) = audit.finish_vendor_call(call_id, &end).await {
        tracing::error!(target = %target.name, call_id, %error, "could not complete the vendor call's audit row");
    }
    CallResponse {
        settled: request
            .users
            .iter()
            .zip(report.outcomes)
            .map(|((slot, _), outcome)| {
                (
                    *slot,
                    Settled {
                        outcome,
                        attempts: request.attempt,
                        vendor_call_id: Some(call_id),
                    },
                )
            })
            .collect(),
    }
}

fn transport_failure(
    error: &TransportError,
    repeat_is_safe: bool,
    user_count: usize,
) -> CallReport {
    let (code, class) = match error {
        TransportError::Connect(_) => ("registrar.ConnectFailed", ErrorClass::Retryable),
        TransportError::AnswerLost(_) => ("registrar.AnswerLost", ErrorClass::Retryable),
        TransportError::Timeout => ("registrar.Timeout", ErrorClass::Retryable),
    };
    // a request that may have been processed is repeated only where that is harmless
    let class = if error.maybe_processed() && !repeat_is_safe {
        ErrorClass::Permanent
    } else {
        class
    };
    CallReport::call_failed(user_count, None, class, code, &error.to_string())
}

fn health_of(report: &CallReport) -> Health {
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
                .as_deref()
                .is_some_and(|code| code.starts_with("registrar.")) =>
        {
            Health::Failing
        }
        _ => Health::Serving,
    }
}
