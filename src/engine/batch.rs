//! A batch in flight: the writer side that validates, records and enqueues
//! users as the caller sends them, and the results side that hands every
//! (user, target) result back to the caller's stream.
//!
//! Both sides are bounded: a batch may have only so many users outstanding
//! (accepted but not yet answered), so a caller that stops reading results
//! stops the server reading its input, and memory does not grow with the
//! length of a stream. No user is queued for a vendor call before its
//! audit row is written.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    commit::until_committed,
    error::EngineError,
    fingerprint::fingerprint,
    places::{HeldPlaces, SharedPlaces},
    queries::Registration,
    queue::{BatchShared, Group, Pending},
    settle::registration_row,
    target::TargetSpec,
    validate::{BatchValidator, check_for_target},
};
use crate::{
    audit::{AuditStore, BatchState, OutcomeCounts, RegistrationRow, entity::registration},
    domain::{Outcome, Rejection, User, UserResult},
    vendor_api::RegistrarCode,
};

/// What a batch shares with the engine that opened it.
#[derive(Clone)]
pub(super) struct BatchContext {
    pub audit: AuditStore,
    /// This server run's owner name, under which the batch is held.
    pub owner: Arc<str>,
    /// Cancelled at shutdown: streams stop taking input.
    pub stop_input: CancellationToken,
    /// Cancelled when the server exits: writes stop being retried.
    pub exit: CancellationToken,
}

/// A batch opened again under its idempotency key: how many users the
/// audit store holds of it, and whether it is finished (answered from the
/// store alone, nothing written) or interrupted (resumed by this run).
#[derive(Debug, Clone, Copy)]
pub(super) struct Resume {
    pub recorded: u64,
    pub finished: bool,
}

/// What bounds a batch: its own places, the caller's deadline, and the
/// allowance of unanswered results it shares with the caller's other batches.
pub(super) struct Bounds {
    /// Results the batch may hold accepted but not yet answered.
    pub max_outstanding: usize,
    pub deadline: Option<tokio::time::Instant>,
    pub caller_places: Option<Arc<SharedPlaces>>,
}

/// The writer side of a batch: call `submit` per chunk, then `close`.
pub struct BatchWriter {
    /// The batch's share of its caller's allowance, taken as users are accepted.
    caller_places: Option<Arc<HeldPlaces>>,
    shared: Arc<BatchShared>,
    input_complete: Arc<AtomicBool>,
    targets: Vec<(Arc<TargetSpec>, mpsc::Sender<Group>)>,
    context: BatchContext,
    validator: BatchValidator,
    dry_run: bool,
    next_index: u64,
    resume: Option<Resume>,
    /// Whether the batch has an idempotency key: only then can it be named
    /// again, so only then are its users' fingerprints worth computing.
    keyed: bool,
}

/// The results side of a batch: `next` until `None`, then `finish`.
pub struct BatchResults {
    batch_id: Arc<str>,
    receiver: mpsc::UnboundedReceiver<UserResult>,
    /// The batch's places, given back as results are read.
    outstanding: Arc<Semaphore>,
    /// Its caller's places, given back with them.
    caller_places: Option<Arc<HeldPlaces>>,
    input_complete: Arc<AtomicBool>,
    context: BatchContext,
    /// False for a finished batch answered from the store: its row is left alone.
    holds_batch: bool,
    /// Set once the batch's end is recorded (or handed to a task that records it).
    ended: bool,
    counts: BTreeMap<String, OutcomeCounts>,
    target_order: Vec<String>,
    dry_run: bool,
    replayed: bool,
    started: Instant,
}

/// The counts that close a batch's stream.
#[derive(Debug, Clone)]
pub struct BatchSummary {
    pub batch_id: String,
    pub counts: Vec<(String, OutcomeCounts)>,
    pub duration: Duration,
    pub dry_run: bool,
    pub replayed: bool,
}

/// Opens both sides of a batch already recorded in the audit store.
pub(super) fn open(
    batch_id: &str,
    targets: Vec<(Arc<TargetSpec>, mpsc::Sender<Group>)>,
    context: BatchContext,
    dry_run: bool,
    resume: Option<Resume>,
    keyed: bool,
    bounds: Bounds,
) -> (BatchWriter, BatchResults) {
    let caller_places = bounds
        .caller_places
        .map(|shared| Arc::new(HeldPlaces::new(shared)));
    let batch_id: Arc<str> = Arc::from(batch_id);
    let (sender, receiver) = mpsc::unbounded_channel();
    let outstanding = Arc::new(Semaphore::new(bounds.max_outstanding));
    let input_complete = Arc::new(AtomicBool::new(false));
    let target_order: Vec<String> = targets
        .iter()
        .map(|(spec, _)| spec.name.to_string())
        .collect();
    let writer = BatchWriter {
        shared: Arc::new(BatchShared {
            id: batch_id.clone(),
            results: sender,
            outstanding: outstanding.clone(),
            deadline: bounds.deadline,
            // a child of the RPC's span, which is current here
            span: tracing::info_span!(
                "batch",
                batch_id = %batch_id,
                targets = target_order.len(),
                resumed = resume.is_some(),
                dry_run,
            ),
        }),
        caller_places: caller_places.clone(),
        input_complete: input_complete.clone(),
        targets,
        context: context.clone(),
        validator: BatchValidator::default(),
        dry_run,
        next_index: 0,
        resume,
        keyed,
    };
    let results = BatchResults {
        batch_id,
        receiver,
        outstanding,
        caller_places,
        input_complete,
        context,
        holds_batch: !resume.is_some_and(|resume| resume.finished),
        ended: false,
        counts: target_order
            .iter()
            .map(|name| (name.clone(), OutcomeCounts::default()))
            .collect(),
        target_order,
        dry_run,
        replayed: false,
        started: Instant::now(),
    };
    (writer, results)
}

/// The rows the audit store holds of some indexes of a resumed batch.
#[derive(Default)]
struct RecordedRows {
    by_index: HashMap<u64, Vec<registration::Model>>,
}

impl RecordedRows {
    async fn load(
        audit: &AuditStore,
        batch_id: &str,
        first: u64,
        last: u64,
    ) -> Result<RecordedRows, EngineError> {
        let mut by_index: HashMap<u64, Vec<registration::Model>> = HashMap::new();
        for row in audit.rows_in_range(batch_id, first, last).await? {
            by_index.entry(row.idx.max(0) as u64).or_default().push(row);
        }
        Ok(RecordedRows { by_index })
    }

    /// Whether the user at `index` is the one recorded there: same
    /// fingerprint (or, for rows written before fingerprints, same id).
    fn matches(&self, index: u64, user_id: &str, fingerprint: Option<&str>) -> bool {
        match self.by_index.get(&index).and_then(|rows| rows.first()) {
            None => true,
            Some(row) => match (row.fingerprint.as_deref(), fingerprint) {
                (Some(recorded), Some(fingerprint)) => recorded == fingerprint,
                _ => row.user_id == user_id,
            },
        }
    }

    fn take(&mut self, index: u64, target: &str) -> Option<registration::Model> {
        let rows = self.by_index.get_mut(&index)?;
        let position = rows.iter().position(|row| row.target == target)?;
        Some(rows.swap_remove(position))
    }
}

/// What a resumed batch does with one recorded row.
enum Recorded {
    /// A final outcome: answered from the store.
    Replay(UserResult),
    /// Never sent, or sent where a repeat is safe: sent now.
    Send,
    /// Sent, the answer lost, and the vendor makes a repeat unsafe.
    Unknown(UserResult),
}

impl BatchWriter {
    pub fn batch_id(&self) -> &str {
        &self.shared.id
    }

    /// Resolves once the server stops taking input (shutdown).
    pub async fn input_stopped(&self) {
        self.context.stop_input.cancelled().await;
    }

    /// What a caller whose input shutdown cut is told: how to resume.
    pub fn input_stopped_error(&self, idempotency_key: &str) -> EngineError {
        let resume = if idempotency_key.is_empty() {
            format!(
                "the stream had no idempotencyKey: send users[{}..] in a new batch",
                self.next_index
            )
        } else {
            format!(
                "re-send the whole stream with idempotencyKey {idempotency_key:?} to resume it on another replica"
            )
        };
        EngineError::InputStopped {
            batch_id: self.shared.id.to_string(),
            next_index: self.next_index,
            resume,
        }
    }

    /// What a caller whose input was cut is told: what was accepted, and how to resume.
    pub fn input_cut_advice(&self, idempotency_key: &str) -> String {
        let accepted = format!(
            "batch {} accepted users[0..{}]",
            self.shared.id, self.next_index
        );
        if idempotency_key.is_empty() {
            format!("{accepted}; send the rest in a new batch")
        } else {
            format!(
                "{accepted}; re-send the whole stream with idempotencyKey {idempotency_key:?} to resume"
            )
        }
    }

    /// Validates, records and enqueues one message's users; waits while too
    /// many of the batch's users are outstanding. The rows of all of them are
    /// written before any is enqueued, so the dispatcher sees them together
    /// and packs full vendor calls. In a resumed batch, users the store
    /// already holds are checked against what was recorded, and only those
    /// without a final outcome are sent.
    pub async fn submit(&mut self, users: Vec<User>) -> Result<(), EngineError> {
        if users.is_empty() {
            return Ok(());
        }
        if !self.context.audit.can_commit() {
            return Err(EngineError::StoreCannotCommit);
        }
        self.submit_step(users).await
    }

    async fn submit_step(&mut self, users: Vec<User>) -> Result<(), EngineError> {
        let places = (users.len() * self.targets.len()) as u32;
        self.shared
            .outstanding
            .acquire_many(places)
            .await
            .map_err(|_| EngineError::ShuttingDown)?
            .forget();
        if let Some(caller_places) = &self.caller_places {
            caller_places
                .take(places as usize)
                .await
                .map_err(|_| EngineError::ShuttingDown)?;
        }

        let first = self.next_index;
        let end = first + users.len() as u64;
        let mut recorded = self.recorded_rows(first, end).await?;

        let mut fresh_rows = Vec::new();
        let mut resumed_rows = Vec::new();
        let mut decided = Vec::new();
        let mut groups: Vec<Group> = vec![Vec::new(); self.targets.len()];
        let mut checked = Vec::with_capacity(users.len());
        for user in users {
            let index = self.next_index;
            self.next_index += 1;
            let fingerprint = self.keyed.then(|| fingerprint(&self.shared.id, &user));
            if !recorded.matches(index, &user.user_id, fingerprint.as_deref()) {
                return Err(EngineError::RequestDiffers {
                    batch_id: self.shared.id.to_string(),
                    index,
                    reason: "the user differs from the one recorded at this index".to_owned(),
                });
            }
            let common = self.validator.check_common(&user, index);
            checked.push((index, Arc::new(user), fingerprint, common));
        }
        for (index, user, fingerprint, common) in checked {
            for ((spec, _), group) in self.targets.iter().zip(groups.iter_mut()) {
                let verdict = check_for_target(&common, spec.vendor.as_ref(), &user);
                let pending = || {
                    Arc::new(Pending {
                        batch: self.shared.clone(),
                        index,
                        user: user.clone(),
                    })
                };
                if let Some(row) = recorded.take(index, &spec.name) {
                    let vendor_call_id = row.vendor_call_id;
                    match self.resumed(spec, row, verdict) {
                        Recorded::Replay(result) => decided.push(result),
                        Recorded::Unknown(result) => {
                            resumed_rows.push(stored_row(
                                &result,
                                vendor_call_id,
                                fingerprint.as_deref(),
                            ));
                            decided.push(result);
                        }
                        Recorded::Send => {
                            let result = unsent_result(
                                &self.shared.id,
                                index,
                                &spec.name,
                                &user,
                                Outcome::Pending,
                                None,
                            );
                            resumed_rows.push(stored_row(
                                &result,
                                vendor_call_id,
                                fingerprint.as_deref(),
                            ));
                            group.push(pending());
                        }
                    }
                    continue;
                }
                let outcome = match (&verdict, self.dry_run) {
                    (Err(_), _) => Outcome::Rejected,
                    (Ok(()), true) => Outcome::Validated,
                    (Ok(()), false) => Outcome::Pending,
                };
                let result = unsent_result(
                    &self.shared.id,
                    index,
                    &spec.name,
                    &user,
                    outcome,
                    verdict.err(),
                );
                fresh_rows.push(stored_row(&result, None, fingerprint.as_deref()));
                match outcome {
                    Outcome::Pending => group.push(pending()),
                    _ => decided.push(result),
                }
            }
        }
        // every row exists before any vendor call can carry its user
        if !fresh_rows.is_empty() {
            self.context
                .audit
                .insert_registrations(&self.shared.id, &fresh_rows, self.next_index)
                .await?;
        }
        if !resumed_rows.is_empty() {
            self.context.audit.record_outcomes(&resumed_rows).await?;
        }
        for result in decided {
            if !result.replayed
                && let Some((spec, _)) = self
                    .targets
                    .iter()
                    .find(|(spec, _)| *spec.name == result.target)
            {
                spec.metrics.answered(result.outcome, 1);
            }
            self.shared.deliver(result);
        }
        for ((spec, queue), group) in self.targets.iter().zip(groups) {
            if !group.is_empty() {
                let queued = group.len() as i64;
                queue
                    .send(group)
                    .await
                    .map_err(|_| EngineError::ShuttingDown)?;
                spec.metrics.queued_users.inc_by(queued);
            }
        }
        Ok(())
    }

    /// The rows the store holds of indexes `first..end` of a resumed batch.
    async fn recorded_rows(&self, first: u64, end: u64) -> Result<RecordedRows, EngineError> {
        let Some(resume) = self.resume else {
            return Ok(RecordedRows::default());
        };
        if resume.finished && end > resume.recorded {
            return Err(EngineError::RequestDiffers {
                batch_id: self.shared.id.to_string(),
                index: first.max(resume.recorded),
                reason: format!(
                    "the finished batch recorded {} users; this request has more",
                    resume.recorded
                ),
            });
        }
        if first >= resume.recorded {
            return Ok(RecordedRows::default());
        }
        RecordedRows::load(
            &self.context.audit,
            &self.shared.id,
            first,
            end.min(resume.recorded) - 1,
        )
        .await
    }

    /// What becomes of a recorded row in a resumed batch.
    fn resumed(
        &self,
        spec: &TargetSpec,
        row: registration::Model,
        verdict: Result<(), Rejection>,
    ) -> Recorded {
        let finished_batch = self.resume.is_some_and(|resume| resume.finished);
        let stored = Outcome::parse(&row.outcome);
        match stored {
            // an outcome this build does not know is left as it is
            None => Recorded::Replay(Registration::from(row).replayed()),
            Some(outcome) if outcome.is_final() || finished_batch => {
                Recorded::Replay(Registration::from(row).replayed())
            }
            Some(_) if verdict.is_err() => {
                let mut result = Registration::from(row).replayed();
                let rejection = verdict.err();
                result.outcome = Outcome::Rejected;
                result.error_code = rejection
                    .as_ref()
                    .map(|r| r.code.to_owned())
                    .unwrap_or_default();
                result.error_message = rejection
                    .as_ref()
                    .map(Rejection::message)
                    .unwrap_or_default();
                result.replayed = false;
                Recorded::Unknown(result)
            }
            Some(Outcome::AnswerLost) if !spec.vendor.repeat_is_safe() => {
                let call = row
                    .vendor_call_id
                    .map(|id| format!("vendor call {id}"))
                    .unwrap_or_else(|| "a vendor call".to_owned());
                let mut result = Registration::from(row).replayed();
                result.outcome = Outcome::Failed;
                result.error_code = RegistrarCode::OutcomeUnknown.as_str().to_owned();
                result.error_message = format!(
                    "{call} carried this user before the batch was interrupted and its answer was lost; \
                     {} cannot take a repeat safely, so the user was not sent again: check the user at the vendor",
                    spec.vendor_kind
                );
                result.replayed = false;
                Recorded::Unknown(result)
            }
            Some(_) => Recorded::Send,
        }
    }

    /// Marks the input complete; results end once every queued user is
    /// answered. A resumed batch's input must cover every user recorded.
    pub fn close(self) -> Result<(), EngineError> {
        if let Some(resume) = self.resume
            && self.next_index < resume.recorded
        {
            return Err(EngineError::RequestDiffers {
                batch_id: self.shared.id.to_string(),
                index: self.next_index,
                reason: format!(
                    "the request ends here, but the batch recorded {} users",
                    resume.recorded
                ),
            });
        }
        self.input_complete.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// A result's row, with the call that last carried the user and the fingerprint.
fn stored_row(
    result: &UserResult,
    vendor_call_id: Option<i64>,
    fingerprint: Option<&str>,
) -> RegistrationRow {
    let mut row = registration_row(result, vendor_call_id);
    row.fingerprint = fingerprint.map(str::to_owned);
    row
}

/// The result of a user before any vendor call: rejected, validated (a
/// dry run) or pending.
fn unsent_result(
    batch_id: &str,
    index: u64,
    target: &str,
    user: &User,
    outcome: Outcome,
    rejection: Option<Rejection>,
) -> UserResult {
    UserResult {
        batch_id: batch_id.to_owned(),
        index,
        target: target.to_owned(),
        user_id: user.user_id.clone(),
        outcome,
        vendor_user_id: String::new(),
        error_code: rejection
            .as_ref()
            .map(|rejection| rejection.code.to_owned())
            .unwrap_or_default(),
        error_message: rejection
            .as_ref()
            .map(Rejection::message)
            .unwrap_or_default(),
        attempts: 0,
        replayed: false,
    }
}

impl BatchResults {
    pub fn batch_id(&self) -> &str {
        &self.batch_id
    }

    /// The next result; `None` once the input is closed and every user answered.
    pub async fn next(&mut self) -> Option<UserResult> {
        let result = self.receiver.recv().await?;
        self.outstanding.add_permits(1);
        if let Some(caller_places) = &self.caller_places {
            caller_places.give_back_one();
        }
        self.replayed |= result.replayed;
        self.counts
            .entry(result.target.clone())
            .or_default()
            .add(result.outcome, 1);
        Some(result)
    }

    /// Records the batch's end and returns its summary. The batch is
    /// completed only when its input was complete and `delivered` (every
    /// result reached the caller); otherwise it is interrupted, so that a
    /// replay with its key resumes it.
    pub async fn finish(mut self, delivered: bool) -> BatchSummary {
        let complete = self.input_complete.load(Ordering::Relaxed) && delivered;
        let state = if complete {
            BatchState::Completed
        } else {
            BatchState::Interrupted
        };
        self.ended = true;
        if self.holds_batch {
            record_end(&self.context, &self.batch_id, state).await;
        }
        let mut counts = std::mem::take(&mut self.counts);
        BatchSummary {
            batch_id: self.batch_id.to_string(),
            counts: self
                .target_order
                .iter()
                .map(|name| (name.clone(), counts.remove(name).unwrap_or_default()))
                .collect(),
            duration: self.started.elapsed(),
            dry_run: self.dry_run,
            replayed: self.replayed,
        }
    }
}

/// Records a batch's end, trying until the store commits it.
async fn record_end(context: &BatchContext, batch_id: &str, state: BatchState) {
    let held = until_committed("batch end", &context.exit, || {
        context.audit.finish_batch(batch_id, state, &context.owner)
    })
    .await;
    if held == Some(false) {
        tracing::warn!(
            batch_id,
            state = state.as_str(),
            "batch end not recorded: another server took the batch over after this one's lease lapsed"
        );
    }
}

impl Drop for BatchResults {
    /// A caller gone before its results: the places of unread results will
    /// never come back, so a writer waiting for them stops instead of hanging.
    /// A batch dropped before its end was recorded is recorded interrupted.
    fn drop(&mut self) {
        self.outstanding.close();
        if self.ended || !self.holds_batch {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let context = self.context.clone();
            let batch_id = self.batch_id.clone();
            runtime.spawn(async move {
                record_end(&context, &batch_id, BatchState::Interrupted).await;
            });
        }
    }
}
