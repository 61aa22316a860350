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
    outbound::rate_limit::Limiter,
    vendor_api::{RegistrarCode, VendorOutcome},
};

/// The whole outbound stack of a target, as one service.
pub type CallService = BoxCloneService<CallRequest, CallResponse, Infallible>;

/// Users of one message for one target, queued together so that the
/// dispatcher sees them at once and packs full calls.
pub type Group = Vec<Arc<Pending>>;

/// Groups queued per target before writers wait; each batch also bounds its own users.
const QUEUED_GROUPS: usize = 64;

/// Starts the dispatcher of a target; users sent on the returned queue get registered.
pub fn spawn(
    target: Arc<TargetSpec>,
    service: CallService,
    limiter: Arc<dyn Limiter>,
    audit: AuditStore,
    tracker: TaskTracker,
) -> mpsc::Sender<Group> {
    let (sender, receiver) = mpsc::channel(QUEUED_GROUPS);
    let dispatcher = Dispatcher {
        in_flight: Arc::new(Semaphore::new(target.max_in_flight)),
        target,
        service,
        limiter,
        audit,
        tracker: tracker.clone(),
        queue: receiver,
        buffered: VecDeque::new(),
    };
    // the dispatcher itself is not tracked: it lives as long as its queue; the calls it starts are
    tokio::spawn(dispatcher.run());
    sender
}

struct Dispatcher {
    target: Arc<TargetSpec>,
    service: CallService,
    /// The target's limiter: a call's first permit is taken here, while its batch fills.
    limiter: Arc<dyn Limiter>,
    audit: AuditStore,
    tracker: TaskTracker,
    queue: mpsc::Receiver<Group>,
    /// Users taken off the queue but not yet in a call, oldest first.
    buffered: VecDeque<Arc<Pending>>,
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

    /// Up to `max_batch` users for one call, with the call's rate permit.
    ///
    /// A partial batch waits at most `linger` for more users; past that, it
    /// goes out as soon as the quota allows, and keeps taking users until
    /// then: a call that could not leave sooner anyway leaves fuller.
    /// `None` once the queue is closed and nothing is buffered.
    async fn next_batch(&mut self) -> Option<Vec<Arc<Pending>>> {
        if self.buffered.is_empty() {
            let group = self.queue.recv().await?;
            self.buffered.extend(group);
        }
        let mut batch = Batch::new(self.target.max_batch);
        batch.fill(&mut self.buffered);
        let deadline = Instant::now() + self.target.linger;
        while !batch.is_full() {
            match tokio::time::timeout_at(deadline, self.queue.recv()).await {
                Ok(Some(group)) => {
                    self.buffered.extend(group);
                    batch.fill(&mut self.buffered);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let limiter = self.limiter.clone();
        let mut permit = limiter.acquire();
        let mut queue_open = true;
        while !batch.is_full() && queue_open {
            tokio::select! {
                biased;
                () = &mut permit => {
                    batch.finish(&mut self.buffered);
                    return Some(batch.users);
                }
                group = self.queue.recv() => match group {
                    Some(group) => {
                        self.buffered.extend(group);
                        batch.fill(&mut self.buffered);
                    }
                    None => queue_open = false,
                },
            }
        }
        permit.await;
        batch.finish(&mut self.buffered);
        Some(batch.users)
    }
}

/// A call being filled: one user id at most once, since vendors match
/// answers by user id; repeats wait for a later call.
struct Batch {
    users: Vec<Arc<Pending>>,
    user_ids: HashSet<String>,
    held_back: VecDeque<Arc<Pending>>,
    max: usize,
}

impl Batch {
    fn new(max: usize) -> Self {
        Batch {
            users: Vec::new(),
            user_ids: HashSet::new(),
            held_back: VecDeque::new(),
            max,
        }
    }

    fn is_full(&self) -> bool {
        self.users.len() >= self.max
    }

    /// Moves users from the buffer until the call is full.
    fn fill(&mut self, buffered: &mut VecDeque<Arc<Pending>>) {
        while !self.is_full() {
            let Some(pending) = buffered.pop_front() else {
                return;
            };
            if self.user_ids.insert(pending.user.user_id.clone()) {
                self.users.push(pending);
            } else {
                self.held_back.push_back(pending);
            }
        }
    }

    /// Puts the users held back in front of the buffer, in their order.
    fn finish(&mut self, buffered: &mut VecDeque<Arc<Pending>>) {
        while let Some(pending) = self.held_back.pop_back() {
            buffered.push_front(pending);
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
                        crate::vendor_api::ErrorClass::Permanent,
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
    record_outcomes(target, audit, &rows).await;
    for (pending, result, _) in results {
        pending.batch.deliver(result);
    }
}

/// Attempts at writing a call's outcomes before the results go out without them.
const OUTCOME_WRITE_ATTEMPTS: u32 = 5;
/// The wait before the second attempt; it doubles after each.
const OUTCOME_WRITE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Writes the outcomes of a call, retrying a store that is briefly away.
/// The vendor has answered, so the caller gets the results either way; a
/// store still away after the attempts leaves those rows `pending`, and the
/// error log says how many.
async fn record_outcomes(target: &TargetSpec, audit: &AuditStore, rows: &[RegistrationRow]) {
    let mut backoff = OUTCOME_WRITE_BACKOFF;
    for attempt in 1..=OUTCOME_WRITE_ATTEMPTS {
        match audit.record_outcomes(rows).await {
            Ok(()) => return,
            Err(error) if attempt < OUTCOME_WRITE_ATTEMPTS => {
                tracing::warn!(target = %target.name, users = rows.len(), attempt, %error, "could not record outcomes; trying again");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(error) => {
                tracing::error!(target = %target.name, users = rows.len(), attempts = attempt, %error, "could not record outcomes: their rows stay pending");
            }
        }
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
