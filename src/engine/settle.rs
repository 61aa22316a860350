//! Settling an answered call: each user's outcome becomes its result, the
//! results are recorded in the audit store, then each is handed to the batch
//! its user came from. Also the audit row of a result, shared with the batch
//! writer that records users as they arrive.
//!
//! Settling never waits on a caller: results are handed over without
//! blocking. It does wait on the store: a result is handed over only once
//! its outcome is committed, so a caller is never told what the store does
//! not hold; a store that stays away until the server exits leaves the rows
//! carrying the call, for recovery to mark `answer_lost`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    call::CallResponse, call_log::CallLog, commit::until_committed, queue::Pending,
    target::TargetSpec,
};
use crate::{
    audit::RegistrationRow,
    domain::{Outcome, UserResult},
    vendor_api::{ErrorClass, RegistrarCode, VendorOutcome},
};

/// Records the outcomes of a call, then hands each result to its batch.
pub(super) async fn settle(
    target: &TargetSpec,
    log: &dyn CallLog,
    exit: &CancellationToken,
    users: Vec<Arc<Pending>>,
    response: CallResponse,
) {
    let mut settled: Vec<Option<_>> = vec![None; users.len()];
    for (slot, outcome) in response.settled {
        if let Some(entry) = settled.get_mut(slot) {
            *entry = Some(outcome);
        }
    }
    let results: Vec<(Arc<Pending>, UserResult, Option<i64>)> = users
        .into_iter()
        .zip(settled)
        .map(|(pending, settled)| {
            let (outcome, attempts, vendor_call_id) = match settled {
                Some(settled) => (settled.outcome, settled.attempts, settled.vendor_call_id),
                None => (
                    VendorOutcome::failed(
                        ErrorClass::Permanent,
                        RegistrarCode::Lost,
                        "the call ended without an outcome for this user",
                    ),
                    0,
                    None,
                ),
            };
            let result = user_result(target, &pending, outcome, attempts);
            (pending, result, vendor_call_id)
        })
        .collect();
    let rows: Vec<RegistrationRow> = results
        .iter()
        .map(|(_, result, vendor_call_id)| registration_row(result, *vendor_call_id))
        .collect();
    // in the trace of the call's first batch, as the call's span is
    let span = results
        .first()
        .map_or_else(tracing::Span::none, |(pending, _, _)| {
            pending.batch.span.clone()
        });
    let committed = until_committed("call outcomes", exit, || log.record_outcomes(&rows))
        .instrument(span)
        .await;
    if committed.is_none() {
        tracing::error!(target = %target.name, users = rows.len(), "outcomes not recorded before exit: their results are not reported");
        return;
    }
    for (pending, result, _) in results {
        target.metrics.answered(result.outcome, 1);
        pending.batch.deliver(result);
    }
}

/// Records as not sent the users whose caller's deadline passed before a
/// call carried them, then hands each result to its batch. The rows stay
/// resumable: a replay with the batch's key sends them.
pub(super) async fn settle_unsent_past_deadline(
    target: &TargetSpec,
    log: &dyn CallLog,
    exit: &CancellationToken,
    users: Vec<Arc<Pending>>,
) {
    let results: Vec<(Arc<Pending>, UserResult)> = users
        .into_iter()
        .map(|pending| {
            let result = UserResult {
                batch_id: pending.batch.id.to_string(),
                index: pending.index,
                target: target.name.to_string(),
                user_id: pending.user.user_id.clone(),
                outcome: Outcome::NotSent,
                vendor_user_id: String::new(),
                error_code: RegistrarCode::DeadlineExceeded.as_str().to_owned(),
                error_message: "the caller's deadline passed before a vendor call carried this user, so it was not sent; \
                                re-send the batch with its idempotencyKey to send it"
                    .to_owned(),
                attempts: 0,
                replayed: false,
            };
            (pending, result)
        })
        .collect();
    let rows: Vec<RegistrationRow> = results
        .iter()
        .map(|(_, result)| registration_row(result, None))
        .collect();
    let committed = until_committed("unsent users' outcomes", exit, || {
        log.record_outcomes(&rows)
    })
    .await;
    if committed.is_none() {
        tracing::error!(target = %target.name, users = rows.len(), "unsent users not recorded before exit: recovery marks them not sent");
        return;
    }
    tracing::info!(target = %target.name, users = rows.len(), "the caller's deadline passed before these users were sent: recorded not sent");
    target
        .metrics
        .answered(Outcome::NotSent, results.len() as u64);
    for (pending, result) in results {
        pending.batch.deliver(result);
    }
}

/// The audit row of a user's result; empty texts are stored as none.
pub(super) fn registration_row(
    result: &UserResult,
    vendor_call_id: Option<i64>,
) -> RegistrationRow {
    let text = |text: &str| Some(text.to_owned()).filter(|text| !text.is_empty());
    RegistrationRow {
        batch_id: result.batch_id.clone(),
        index: result.index,
        target: result.target.clone(),
        user_id: result.user_id.clone(),
        outcome: result.outcome,
        vendor_user_id: text(&result.vendor_user_id),
        error_code: text(&result.error_code),
        error_message: text(&result.error_message),
        attempts: result.attempts,
        vendor_call_id,
        fingerprint: None,
    }
}

fn user_result(
    target: &TargetSpec,
    pending: &Pending,
    outcome: VendorOutcome,
    attempts: u32,
) -> UserResult {
    let mut result = UserResult {
        batch_id: pending.batch.id.to_string(),
        index: pending.index,
        target: target.name.to_string(),
        user_id: pending.user.user_id.clone(),
        outcome: Outcome::Registered,
        vendor_user_id: String::new(),
        error_code: String::new(),
        error_message: String::new(),
        attempts,
        replayed: false,
    };
    match outcome {
        VendorOutcome::Registered { vendor_user_id } => {
            result.vendor_user_id = vendor_user_id.unwrap_or_default();
        }
        VendorOutcome::AlreadyExists { code, message } => {
            result.outcome = Outcome::AlreadyExists;
            result.error_code = code.to_string();
            result.error_message = message;
        }
        VendorOutcome::Rejected { code, message } => {
            result.outcome = Outcome::Rejected;
            result.error_code = code.to_string();
            result.error_message = message;
        }
        VendorOutcome::Failed { code, message, .. } => {
            result.outcome = Outcome::Failed;
            result.error_code = code.to_string();
            result.error_message = message;
        }
    }
    result
}
