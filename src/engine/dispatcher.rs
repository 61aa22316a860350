//! The dispatcher of one target: owns the target's queue, coalesces users
//! from every caller into the fullest batches the vendor accepts, keeps up to
//! `max_in_flight` calls going, and routes each result back to the batch its
//! user came from, after recording it in the audit store.

use std::{
    collections::{HashSet, VecDeque},
    convert::Infallible,
    sync::Arc,
};

use tokio::{
    sync::{Semaphore, mpsc},
    time::Instant,
};
use tokio_util::task::TaskTracker;
use tower::{ServiceExt, util::BoxCloneService};

use super::{
    batch::Pending,
    call::{CallRequest, CallResponse},
    target::TargetSpec,
};
use crate::{
    audit::{AuditStore, RegistrationRow},
    domain::{Outcome, UserResult},
    vendor::VendorOutcome,
};

/// The whole outbound stack of a target, as one service.
pub type CallService = BoxCloneService<CallRequest, CallResponse, Infallible>;

/// Starts the dispatcher of a target; users sent on the returned queue get registered.
pub fn spawn(
    target: Arc<TargetSpec>,
    service: CallService,
    audit: AuditStore,
    tracker: TaskTracker,
) -> mpsc::Sender<Arc<Pending>> {
    let (sender, receiver) = mpsc::channel(target.max_batch * 2);
    let dispatcher = Dispatcher {
        in_flight: Arc::new(Semaphore::new(target.max_in_flight)),
        target,
        service,
        audit,
        tracker: tracker.clone(),
        queue: receiver,
        carried: VecDeque::new(),
    };
    tracker.spawn(dispatcher.run());
    sender
}

struct Dispatcher {
    target: Arc<TargetSpec>,
    service: CallService,
    audit: AuditStore,
    tracker: TaskTracker,
    queue: mpsc::Receiver<Arc<Pending>>,
    /// Users held back from a call that already carried their user id.
    carried: VecDeque<Arc<Pending>>,
    in_flight: Arc<Semaphore>,
}

impl Dispatcher {
    async fn run(mut self) {
        loop {
            // wait for room first, so the batch is formed from the fullest queue
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                return;
            };
            let Some(users) = self.next_batch().await else {
                return;
            };
            let service = self.service.clone();
            let audit = self.audit.clone();
            let target = self.target.clone();
            self.tracker.spawn(async move {
                let request = CallRequest::first(target.clone(), users.clone());
                let response = match service.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                drop(permit);
                settle(&target, &audit, users, response).await;
            });
        }
    }

    /// Up to `max_batch` users, waiting at most `linger` for a partial batch
    /// to fill; `None` once the queue is closed and empty.
    async fn next_batch(&mut self) -> Option<Vec<Arc<Pending>>> {
        let first = match self.carried.pop_front() {
            Some(pending) => pending,
            None => self.queue.recv().await?,
        };
        let mut batch = Vec::with_capacity(self.target.max_batch);
        let mut user_ids = HashSet::new();
        user_ids.insert(first.user.user_id.clone());
        batch.push(first);
        let mut held_back = VecDeque::new();
        while batch.len() < self.target.max_batch {
            let Some(pending) = self.carried.pop_front() else {
                break;
            };
            Self::add_unique(&mut batch, &mut user_ids, &mut held_back, pending);
        }
        let deadline = Instant::now() + self.target.linger;
        while batch.len() < self.target.max_batch {
            let pending = match self.queue.try_recv() {
                Ok(pending) => pending,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, self.queue.recv()).await {
                        Ok(Some(pending)) => pending,
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            Self::add_unique(&mut batch, &mut user_ids, &mut held_back, pending);
        }
        held_back.append(&mut self.carried);
        self.carried = held_back;
        Some(batch)
    }

    /// One call carries a user id once: a vendor matches answers by user id.
    fn add_unique(
        batch: &mut Vec<Arc<Pending>>,
        user_ids: &mut HashSet<String>,
        held_back: &mut VecDeque<Arc<Pending>>,
        pending: Arc<Pending>,
    ) {
        if user_ids.insert(pending.user.user_id.clone()) {
            batch.push(pending);
        } else {
            held_back.push_back(pending);
        }
    }
}

/// Records the outcomes of a call, then hands each result to its batch.
async fn settle(
    target: &TargetSpec,
    audit: &AuditStore,
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
                        crate::vendor::ErrorClass::Permanent,
                        "registrar.Lost",
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
        .map(|(_, result, vendor_call_id)| RegistrationRow {
            batch_id: result.batch_id.clone(),
            index: result.index,
            target: result.target.clone(),
            user_id: result.user_id.clone(),
            outcome: result.outcome,
            vendor_user_id: Some(result.vendor_user_id.clone()).filter(|id| !id.is_empty()),
            error_code: Some(result.error_code.clone()).filter(|code| !code.is_empty()),
            error_message: Some(result.error_message.clone()).filter(|message| !message.is_empty()),
            attempts: result.attempts,
            vendor_call_id: *vendor_call_id,
        })
        .collect();
    if let Err(error) = audit.record_outcomes(&rows).await {
        tracing::error!(target = %target.name, users = rows.len(), %error, "could not record outcomes");
    }
    for (pending, result, _) in results {
        pending.batch.deliver(result).await;
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
            result.error_code = code;
            result.error_message = message;
        }
        VendorOutcome::Rejected { code, message } => {
            result.outcome = Outcome::Rejected;
            result.error_code = code;
            result.error_message = message;
        }
        VendorOutcome::Failed { code, message, .. } => {
            result.outcome = Outcome::Failed;
            result.error_code = code;
            result.error_message = message;
        }
    }
    result
}
