//! The engine: everything between the gRPC edge and the vendors.
//!
//! It owns one dispatcher per target, opens batches (validating targets and
//! idempotency keys against the audit store), and builds each target's
//! outbound stack. It decides; the edge only converts and maps errors.
//! The engine never calls a vendor without the call's audit row, and never
//! lets one caller's slow reading hold back the calls it shares with others.
//!
//! Modules, leaves first: `queue` (queued users), `call` (a call and its
//! retry folding), `call_log` and `exchange` (one vendor exchange with its
//! audit row), `jobs` (import jobs), `attempt` (the bottom of the stack),
//! `stack` (the outbound stack), `settle` (results back to batches),
//! `dispatcher` (packing calls), `batch` (a caller's batch), `validate`,
//! `queries` (the reads the edge answers GetBatch and ListRegistrations from).

mod attempt;
pub mod batch;
mod call;
mod call_log;
mod dispatcher;
mod error;
mod exchange;
mod jobs;
pub mod queries;
mod queue;
mod settle;
mod stack;
pub mod target;
#[cfg(test)]
mod testing;
mod validate;

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::{
    audit::{AuditError, AuditStore, BatchState, NewBatch, OutcomeCounts},
    domain::UserResult,
    outbound::{
        http_client::HttpClient,
        rate_limit::{GcraLimiter, Limiter},
    },
};
pub use batch::{BatchResults, BatchSummary, BatchWriter};
use call_log::SharedCallLog;
pub use error::EngineError;
use queue::Group;
pub use target::{Health, TargetSpec};

/// Users a batch may have accepted but not yet answered (per target), beyond one message's worth.
const MAX_OUTSTANDING_PER_BATCH: usize = 16_384;

/// What a caller asks for when opening a batch.
#[derive(Debug, Clone, Default)]
pub struct BatchOptions {
    pub targets: Vec<String>,
    pub idempotency_key: Option<String>,
    pub dry_run: bool,
}

/// A newly opened batch, or the recorded answer to a repeated idempotency key.
pub enum OpenedBatch {
    Fresh {
        writer: Box<BatchWriter>,
        results: BatchResults,
    },
    Replay {
        results: Vec<UserResult>,
        summary: BatchSummary,
    },
}

struct TargetRuntime {
    spec: Arc<TargetSpec>,
    queue: mpsc::Sender<Group>,
}

pub struct Engine {
    targets: Vec<TargetRuntime>,
    audit: AuditStore,
    tracker: TaskTracker,
    max_users_per_message: usize,
}

impl Engine {
    /// Starts a dispatcher per target. Must run inside a tokio runtime.
    /// `max_users_per_message` bounds one `submit`: a unary batch or one stream chunk.
    pub fn start(
        specs: Vec<TargetSpec>,
        audit: AuditStore,
        max_users_per_message: usize,
    ) -> Engine {
        let tracker = TaskTracker::new();
        let client = HttpClient::new();
        let log: SharedCallLog = Arc::new(audit.clone());
        let targets = specs
            .into_iter()
            .map(|spec| {
                let spec = Arc::new(spec);
                let limiter: Arc<dyn Limiter> =
                    Arc::new(GcraLimiter::per_second(spec.qps, spec.rate_margin));
                let service = stack::outbound_stack(&spec, &log, client.clone(), limiter.clone());
                let queue =
                    dispatcher::spawn(spec.clone(), service, limiter, log.clone(), tracker.clone());
                TargetRuntime { spec, queue }
            })
            .collect();
        Engine {
            targets,
            audit,
            tracker,
            max_users_per_message,
        }
    }

    pub fn targets(&self) -> impl Iterator<Item = &TargetSpec> {
        self.targets.iter().map(|target| target.spec.as_ref())
    }

    pub fn max_users_per_message(&self) -> usize {
        self.max_users_per_message
    }

    pub fn audit(&self) -> &AuditStore {
        &self.audit
    }

    fn known_targets(&self) -> Vec<String> {
        self.targets
            .iter()
            .map(|target| target.spec.name.to_string())
            .collect()
    }

    /// Opens a batch: checks the targets, honours the idempotency key, records the batch.
    pub async fn open_batch(&self, options: BatchOptions) -> Result<OpenedBatch, EngineError> {
        if self.tracker.is_closed() {
            return Err(EngineError::ShuttingDown);
        }
        if options.targets.is_empty() {
            return Err(EngineError::NoTargets {
                known: self.known_targets(),
            });
        }
        let mut chosen = Vec::with_capacity(options.targets.len());
        let mut seen = HashSet::new();
        for name in &options.targets {
            if !seen.insert(name.as_str()) {
                return Err(EngineError::DuplicateTarget(name.clone()));
            }
            let target = self
                .targets
                .iter()
                .find(|target| *target.spec.name == **name)
                .ok_or_else(|| EngineError::UnknownTarget {
                    name: name.clone(),
                    known: self.known_targets(),
                })?;
            chosen.push((target.spec.clone(), target.queue.clone()));
        }
        if let Some(key) = &options.idempotency_key
            && let Some(batch_id) = self.audit.batch_id_for_idempotency_key(key).await?
        {
            return self.replay(&batch_id).await;
        }
        let batch_id = uuid::Uuid::now_v7().to_string();
        let created = self
            .audit
            .create_batch(&NewBatch {
                id: batch_id.clone(),
                idempotency_key: options.idempotency_key.clone(),
                targets: options.targets.clone(),
                dry_run: options.dry_run,
            })
            .await;
        match created {
            Ok(()) => {}
            Err(AuditError::DuplicateIdempotencyKey(key)) => {
                // another request with the same key won the race; its
                // batch may not be readable yet
                let batch_id = self
                    .audit
                    .batch_id_for_idempotency_key(&key)
                    .await?
                    .ok_or(EngineError::BatchBeingCreated)?;
                return self.replay(&batch_id).await;
            }
            Err(error) => return Err(error.into()),
        }
        let (writer, results) = batch::open(
            &batch_id,
            chosen,
            self.audit.clone(),
            options.dry_run,
            // one whole message always fits, so a submit can always proceed
            MAX_OUTSTANDING_PER_BATCH.max(self.max_users_per_message) * options.targets.len(),
        );
        Ok(OpenedBatch::Fresh {
            writer: Box::new(writer),
            results,
        })
    }

    /// The recorded results of a finished batch, marked replayed.
    async fn replay(&self, batch_id: &str) -> Result<OpenedBatch, EngineError> {
        let record = self
            .audit
            .batch(batch_id)
            .await?
            .ok_or_else(|| AuditError::Unavailable(format!("batch {batch_id} vanished")))?;
        if record.state == BatchState::Running {
            return Err(EngineError::BatchInProgress {
                batch_id: batch_id.to_owned(),
            });
        }
        let rows = self.audit.batch_registrations(batch_id).await?;
        let results: Vec<UserResult> = rows
            .into_iter()
            .map(|row| queries::Registration::from(row).replayed())
            .collect();
        let counts: Vec<(String, OutcomeCounts)> = record
            .targets
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    record.counts.get(name).cloned().unwrap_or_default(),
                )
            })
            .collect();
        let duration = record
            .finished_at
            .map(|finished| (finished - record.created_at).to_std().unwrap_or_default())
            .unwrap_or_default();
        Ok(OpenedBatch::Replay {
            results,
            summary: BatchSummary {
                batch_id: record.id,
                counts,
                duration,
                dry_run: record.dry_run,
                replayed: true,
            },
        })
    }

    /// Refuses new batches and waits up to `grace` for in-flight vendor calls
    /// and their audit writes to finish. Returns whether everything finished.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}
