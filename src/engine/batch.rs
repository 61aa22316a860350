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
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Semaphore, mpsc};

use super::{
    error::EngineError,
    queue::{BatchShared, Group, Pending},
    settle::registration_row,
    target::TargetSpec,
    validate::{BatchValidator, check_for_target},
};
use crate::{
    audit::{AuditStore, BatchState, OutcomeCounts},
    domain::{Outcome, Rejection, User, UserResult},
};

/// Progress the writer reports to the results side.
#[derive(Debug, Default)]
struct Progress {
    users: AtomicU64,
    input_complete: AtomicBool,
}

/// The writer side of a batch: call `submit` per chunk, then `close`.
pub struct BatchWriter {
    shared: Arc<BatchShared>,
    progress: Arc<Progress>,
    targets: Vec<(Arc<TargetSpec>, mpsc::Sender<Group>)>,
    audit: AuditStore,
    validator: BatchValidator,
    dry_run: bool,
    next_index: u64,
}

/// The results side of a batch: `next` until `None`, then `finish`.
pub struct BatchResults {
    batch_id: Arc<str>,
    receiver: mpsc::UnboundedReceiver<UserResult>,
    /// The batch's places, given back as results are read.
    outstanding: Arc<Semaphore>,
    progress: Arc<Progress>,
    audit: AuditStore,
    counts: BTreeMap<String, OutcomeCounts>,
    target_order: Vec<String>,
    dry_run: bool,
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
    audit: AuditStore,
    dry_run: bool,
    max_outstanding: usize,
) -> (BatchWriter, BatchResults) {
    let batch_id: Arc<str> = Arc::from(batch_id);
    let (sender, receiver) = mpsc::unbounded_channel();
    let outstanding = Arc::new(Semaphore::new(max_outstanding));
    let progress = Arc::new(Progress::default());
    let target_order: Vec<String> = targets
        .iter()
        .map(|(spec, _)| spec.name.to_string())
        .collect();
    let writer = BatchWriter {
        shared: Arc::new(BatchShared {
            id: batch_id.clone(),
            results: sender,
            outstanding: outstanding.clone(),
        }),
        progress: progress.clone(),
        targets,
        audit: audit.clone(),
        validator: BatchValidator::default(),
        dry_run,
        next_index: 0,
    };
    let results = BatchResults {
        batch_id,
        receiver,
        outstanding,
        progress,
        audit,
        counts: target_order
            .iter()
            .map(|name| (name.clone(), OutcomeCounts::default()))
            .collect(),
        target_order,
        dry_run,
        started: Instant::now(),
    };
    (writer, results)
}

impl BatchWriter {
    pub fn batch_id(&self) -> &str {
        &self.shared.id
    }

    /// Validates, records and enqueues one message's users; waits while too
    /// many of the batch's users are outstanding. The rows of all of them are
    /// written before any is enqueued, so the dispatcher sees them together
    /// and packs full vendor calls.
    pub async fn submit(&mut self, users: Vec<User>) -> Result<(), EngineError> {
        if users.is_empty() {
            return Ok(());
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

        let mut rows = Vec::with_capacity(places as usize);
        let mut decided = Vec::new();
        let mut groups: Vec<Group> = vec![Vec::new(); self.targets.len()];
        for user in users {
            let index = self.next_index;
            self.next_index += 1;
            let common = self.validator.check_common(&user, index);
            let user = Arc::new(user);
            for ((spec, _), group) in self.targets.iter().zip(groups.iter_mut()) {
                let verdict = check_for_target(&common, spec.vendor.as_ref(), &user);
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
                rows.push(registration_row(&result, None));
                match outcome {
                    Outcome::Pending => group.push(Arc::new(Pending {
                        batch: self.shared.clone(),
                        index,
                        user: user.clone(),
                    })),
                    _ => decided.push(result),
                }
            }
        }
        // every row exists before any vendor call can carry its user
        self.audit.insert_registrations(&rows).await?;
        self.progress
            .users
            .store(self.next_index, Ordering::Relaxed);
        for result in decided {
            self.shared.deliver(result);
        }
        for ((_, queue), group) in self.targets.iter().zip(groups) {
            if !group.is_empty() {
                queue
                    .send(group)
                    .await
                    .map_err(|_| EngineError::ShuttingDown)?;
            }
        }
        Ok(())
    }

    /// Marks the input complete; results end once every queued user is answered.
    pub fn close(self) {
        self.progress.input_complete.store(true, Ordering::Relaxed);
    }
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
        self.counts
            .entry(result.target.clone())
            .or_default()
            .add(result.outcome, 1);
        Some(result)
    }

    /// Records the batch's end and returns its summary.
    pub async fn finish(mut self) -> BatchSummary {
        let complete = self.progress.input_complete.load(Ordering::Relaxed);
        let state = if complete {
            BatchState::Completed
        } else {
            BatchState::Aborted
        };
        let users = self.progress.users.load(Ordering::Relaxed);
        if let Err(error) = self.audit.finish_batch(&self.batch_id, state, users).await {
            tracing::error!(batch_id = %self.batch_id, %error, "could not record the end of the batch");
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
            replayed: false,
        }
    }
}

impl Drop for BatchResults {
    /// A caller gone before its results: the places of unread results will
    /// never come back, so a writer waiting for them stops instead of hanging.
    fn drop(&mut self) {
        self.outstanding.close();
    }
}
