//! One vendor call as the outbound stack sees it: the users it carries, the
//! answer (one settled outcome per user), and how answers fold across
//! retries (only the users that failed retryably go again, each retry with a
//! permit of its own). Plain data: nothing here sends, sleeps or writes.

use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

use opentelemetry::trace::TraceContextExt;
use tower::util::BoxCloneService;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{queue::Pending, target::TargetSpec};
use crate::{
    audit::CarriedUser,
    domain::User,
    outbound::{rate_limit::PermitHolder, retry::RetryableRequest, trace::Traced},
    vendor_api::{CallReport, ErrorClass, VendorOutcome},
};

/// The whole outbound stack of a target, as one service.
pub type CallService = BoxCloneService<CallRequest, CallResponse, Infallible>;

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
    /// How long the vendor asked to wait before a retry (`Retry-After`).
    pub retry_after: Option<Duration>,
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

    /// The users of this attempt, in its order.
    pub fn users(&self) -> Vec<&User> {
        self.users
            .iter()
            .map(|(_, pending)| pending.user.as_ref())
            .collect()
    }

    /// The rows of this attempt's users, for its vendor call's audit row.
    pub fn carried(&self) -> Vec<CarriedUser> {
        self.users
            .iter()
            .map(|(_, pending)| CarriedUser {
                batch_id: pending.batch.id.clone(),
                index: pending.index,
            })
            .collect()
    }

    /// The response giving each user of this attempt its outcome from `report`.
    pub fn settle(&self, report: CallReport, vendor_call_id: Option<i64>) -> CallResponse {
        CallResponse {
            retry_after: None,
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

impl CallResponse {
    /// Whether the vendor throttled any user of the call.
    pub fn throttled(&self) -> bool {
        self.settled
            .iter()
            .any(|(_, settled)| settled.outcome.retry_class() == Some(ErrorClass::Throttled))
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
        let by_slot: HashMap<usize, &Arc<Pending>> = self
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

    fn retry_after(response: &CallResponse) -> Option<Duration> {
        response.retry_after
    }

    /// The latest deadline of the callers whose users this attempt carries.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.users
            .iter()
            .map(|(_, pending)| pending.batch.deadline)
            .try_fold(None, |latest: Option<tokio::time::Instant>, deadline| {
                // one caller without a deadline waits for as long as it takes
                deadline.map(|deadline| Some(latest.map_or(deadline, |at| at.max(deadline))))
            })
            .flatten()
    }

    fn absorb(answer: &mut CallResponse, retry_answer: CallResponse) {
        answer.retry_after = retry_answer.retry_after;
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

    /// The call's span: a child of the batch of its first user, so a call
    /// is in its caller's trace, and linked to the span of every batch it
    /// carries users of, so every caller's trace shows the call its users
    /// went in (coalesced calls carry users of many batches).
    fn span(&self) -> tracing::Span {
        let span = tracing::info_span!(
            "vendor_call",
            target = %self.target.name,
            vendor = %self.target.vendor_kind,
            action = self.target.vendor.action(),
            batch_size = self.users.len(),
            batches = tracing::field::Empty,
            attempts = tracing::field::Empty,
            registered = tracing::field::Empty,
            failed = tracing::field::Empty,
        );
        let mut batches: Vec<&Arc<str>> = Vec::new();
        for (_, pending) in &self.users {
            let batch = &pending.batch;
            if batches.contains(&&batch.id) {
                continue;
            }
            let context = batch.span.context();
            if batches.is_empty() {
                // fails only without an OpenTelemetry layer (unit tests)
                let _ = span.set_parent(context.clone());
            }
            span.add_link(context.span().span_context().clone());
            batches.push(&batch.id);
        }
        span.record("batches", batches.len());
        span
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
