//! One exchange with a vendor and its audit row: the row is written before
//! the request leaves (no row, no call) and completed after the answer; the
//! request is sent under the per-call timeout. Also what an exchange that got
//! no usable answer means for its users (a transport failure, an unbuildable
//! request, an answer that does not account for every user) and what a
//! report says about the target's health.
//!
//! An exchange never retries, never takes a rate permit and never parses a
//! vendor's answer: the attempt and job paths above it do.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tower::{ServiceExt, util::BoxCloneSyncService};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use tokio_util::sync::CancellationToken;

use super::{
    call_log::CallLog,
    commit::until_committed,
    target::{Health, TargetSpec},
};
use crate::{
    audit::{CarriedUser, NewVendorCall, VendorCallEnd},
    outbound::http_client::TransportError,
    vendor_api::{
        BuildError, CallReport, ErrorClass, ErrorCode, RegistrarCode, VendorOutcome, answer,
    },
};

/// The HTTP exchange under the attempt: send guard -> timeout -> client.
pub type HttpService =
    BoxCloneSyncService<http::Request<Bytes>, http::Response<Bytes>, TransportError>;

/// What one HTTP exchange with a vendor produced.
pub(super) enum Sent {
    Answer(http::Response<Bytes>),
    Transport(TransportError),
    Unbuildable(BuildError),
}

impl Sent {
    /// The vendor's answer, or the report for the users of an exchange that
    /// got none. `repeat_is_safe` is the vendor's: whether a request that may
    /// have been processed can be sent again.
    pub fn answer(
        self,
        repeat_is_safe: bool,
        user_count: usize,
    ) -> Result<http::Response<Bytes>, CallReport> {
        match self {
            Sent::Answer(response) => Ok(response),
            Sent::Transport(error) => Err(transport_failure(&error, repeat_is_safe, user_count)),
            Sent::Unbuildable(error) => Err(build_failure(&error, user_count)),
        }
    }
}

/// One vendor call with its audit row.
pub(super) struct Exchange<'a> {
    pub log: &'a dyn CallLog,
    pub http: &'a HttpService,
    pub target: &'a TargetSpec,
    pub span: &'a tracing::Span,
    /// Cancelled when the server exits: a call waiting for its row gives up.
    pub exit: &'a CancellationToken,
}

impl Exchange<'_> {
    /// The same exchange, its calls recorded in `span` instead (a job poll's
    /// own span, so that each poll's answer is recorded once).
    pub fn recorded_in<'s>(&'s self, span: &'s tracing::Span) -> Exchange<'s> {
        Exchange {
            log: self.log,
            http: self.http,
            target: self.target,
            span,
            exit: self.exit,
        }
    }

    /// Writes the call's row, naming it in the rows of the users it
    /// carries. While the store cannot commit, the call waits for it (its
    /// users were never sent, so waiting loses nothing); `None` only when
    /// the server exits first.
    pub async fn open(&self, action: &str, attempt: u32, carried: Vec<CarriedUser>) -> Option<i64> {
        let call = NewVendorCall {
            target: self.target.name.to_string(),
            vendor: self.target.vendor_kind.to_string(),
            action: action.to_owned(),
            attempt,
            user_count: carried.len(),
            carried,
        };
        let opened =
            until_committed("vendor call row", self.exit, || self.log.start_call(&call)).await;
        if opened.is_none() {
            tracing::error!(target = %self.target.name, action, "vendor call not made: its audit row was not written before exit");
        }
        opened
    }

    /// Sends a built request under the call timeout.
    pub async fn send(
        &self,
        request: Result<http::Request<Bytes>, BuildError>,
    ) -> (Sent, Duration) {
        let started = Instant::now();
        let sent = match request {
            Err(error) => Sent::Unbuildable(error),
            Ok(request) => match self.http.clone().oneshot(traced(request)).await {
                Ok(response) => Sent::Answer(response),
                Err(error) => Sent::Transport(error),
            },
        };
        (sent, started.elapsed())
    }

    /// Completes the call's row and the span, and counts the exchange.
    pub async fn close(&self, call_id: i64, action: &str, end: &VendorCallEnd) {
        self.target
            .metrics
            .vendor_call(action, result_class(end), end.latency.as_secs_f64());
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
        if let Err(error) = self.log.finish_call(call_id, end).await {
            tracing::error!(target = %self.target.name, call_id, %error, "could not complete the vendor call's audit row");
        }
    }

    /// Sets the target's health from the report that ends a call.
    pub fn note_health(&self, report: &CallReport) {
        self.target.health.set(health_of(report));
    }
}

/// Adds the current span's W3C `traceparent` to a request about to leave
/// (the attempt's or the poll's span, so the vendor's side of the trace
/// hangs under it); nothing when the span is not sampled or not traced.
/// The signing schemes sign named headers only, so the signature holds.
fn traced(mut request: http::Request<Bytes>) -> http::Request<Bytes> {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(
            &context,
            &mut opentelemetry_http::HeaderInjector(request.headers_mut()),
        );
    });
    request
}

/// The result class an exchange is counted under in
/// `registrar_vendor_calls_total`: the class of its call-level failure,
/// `retryable` when no answer came, else `ok` (users the vendor refused one
/// by one show in `registrar_registrations_total`).
fn result_class(end: &VendorCallEnd) -> &'static str {
    match end.error_class.as_deref() {
        Some("throttled") => "throttled",
        Some("retryable") => "retryable",
        Some(_) => "permanent",
        None if end.http_status.is_none() => "retryable",
        None => "ok",
    }
}

/// Fills a call's row end from the report that answers the call.
pub(super) fn record_report(end: &mut VendorCallEnd, report: &CallReport) {
    end.vendor_request_id = report.vendor_request_id.clone();
    end.vendor_error_code = report.error_code().map(str::to_owned);
    end.error_class = report.error_class.map(|class| class.as_str().to_owned());
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

/// A report that accounts for every user, or a failure saying it did not.
/// An answer registrar could not read is retried where the vendor makes a
/// repeat safe (a repeat of users it registered reports them existing), and
/// left final where it does not.
pub(super) fn checked(report: CallReport, user_count: usize, repeat_is_safe: bool) -> CallReport {
    let mut report = if report.outcomes.len() == user_count {
        report
    } else {
        answer::malformed(
            user_count,
            report.vendor_request_id,
            "the vendor's answer did not account for every user",
        )
    };
    if repeat_is_safe {
        retry_unreadable(&mut report);
    }
    report
}

/// Makes the unreadable parts of a report retryable.
fn retry_unreadable(report: &mut CallReport) {
    let unreadable = |code: &ErrorCode| *code == RegistrarCode::MalformedResponse;
    for outcome in &mut report.outcomes {
        if let VendorOutcome::Failed { class, code, .. } = outcome
            && unreadable(code)
        {
            *class = ErrorClass::Retryable;
        }
    }
    if report.error_code.as_ref().is_some_and(unreadable) {
        report.error_class = Some(ErrorClass::Retryable);
    }
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

/// A connection that never opened is always safe to retry; an answer lost
/// after the request left is retried only where the vendor makes a repeat
/// harmless.
fn transport_failure(
    error: &TransportError,
    repeat_is_safe: bool,
    user_count: usize,
) -> CallReport {
    let (code, class) = match error {
        TransportError::Connect(_) => (RegistrarCode::ConnectFailed, ErrorClass::Retryable),
        TransportError::AnswerLost(_) => (RegistrarCode::AnswerLost, ErrorClass::Retryable),
        TransportError::Timeout => (RegistrarCode::Timeout, ErrorClass::Retryable),
        // a repeat would get the same answer: the users' fate is the vendor's to tell
        TransportError::TooLarge { .. } => (RegistrarCode::ResponseTooLarge, ErrorClass::Permanent),
    };
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
                .as_ref()
                .is_some_and(ErrorCode::is_registrar) =>
        {
            Health::Failing
        }
        _ => Health::Serving,
    }
}
