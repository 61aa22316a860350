//! The engine: everything between the gRPC edge and the vendors.
//!
//! It owns one dispatcher per target, opens batches (validating targets and
//! idempotency keys against the audit store, resuming the batch a key names),
//! holds its batches under leases, and builds each target's outbound stack.
//! It decides; the edge only converts and maps errors. The engine never
//! calls a vendor without the call's committed audit row, never reports a
//! result the store does not hold, and never lets one caller's slow reading
//! hold back the calls it shares with others.
//!
//! Modules, leaves first: `queue` (queued users), `call` (a call and its
//! retry folding), `call_log` and `exchange` (one vendor exchange with its
//! audit row), `jobs` (import jobs), `attempt` (the bottom of the stack),
//! `stack` (the outbound stack), `commit` (writes retried until they
//! commit), `settle` (results back to batches), `dispatcher` (packing
//! calls), `fingerprint` (what a key's request asked), `ownership` (leases
//! and recovery), `places` (a caller's allowance of unanswered results), `batch` (a caller's batch, new or resumed), `validate`,
//! `queries` (the reads the edge answers GetBatch and ListRegistrations from).

mod attempt;
pub mod batch;
mod call;
mod call_log;
mod commit;
mod dispatcher;
mod error;
mod exchange;
mod fingerprint;
mod jobs;
mod ownership;
pub mod places;
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
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    audit::{AuditError, AuditStore, BatchHead, BatchState, NewBatch},
    outbound::{
        http_client::HttpClient,
        rate_limit::{GcraLimiter, Limiter, Metered},
        shared_limiter::{Pacing, SharedLimiter},
        shared_quota::QuotaStore,
    },
    vendor_api::registry,
};
use batch::{BatchContext, Resume};
pub use batch::{BatchResults, BatchSummary, BatchWriter};
use call_log::SharedCallLog;
pub use error::EngineError;
use ownership::Ownership;
use queue::Group;
pub use target::{Health, TargetSpec};

/// Users a batch may have accepted but not yet answered (per target), beyond one message's worth.
const MAX_OUTSTANDING_PER_BATCH: usize = 16_384;

/// What a caller asks for when opening a batch.
#[derive(Debug, Clone, Default)]
pub struct BatchOptions {
    /// The configured caller; empty for anyone. Keys are scoped to it.
    pub caller: String,
    pub targets: Vec<String>,
    pub idempotency_key: Option<String>,
    pub dry_run: bool,
    /// The caller's deadline: users no vendor call has carried by then are
    /// not sent, and their rows say so.
    pub deadline: Option<tokio::time::Instant>,
    /// The caller's allowance of unanswered results, shared by its batches.
    pub caller_places: Option<Arc<places::SharedPlaces>>,
}

/// How this server holds its batches among the replicas sharing the audit store.
#[derive(Debug, Clone)]
pub struct Durability {
    /// This server's name, unique among the replicas (see `[server] instance_name`).
    pub instance_name: String,
    /// How long a batch stays owned without a renewal.
    pub batch_lease: Duration,
}

/// Both sides of an opened batch: a new one, or one its idempotency key
/// named again (answered from the store where it has final outcomes,
/// resumed where it has none).
pub struct OpenedBatch {
    pub writer: Box<BatchWriter>,
    pub results: BatchResults,
}

struct TargetRuntime {
    spec: Arc<TargetSpec>,
    queue: mpsc::Sender<Group>,
    /// Its limiter on the shared quota, when `[quota]` is configured.
    shared: Option<Arc<SharedLimiter>>,
}

pub struct Engine {
    targets: Vec<TargetRuntime>,
    audit: AuditStore,
    tracker: TaskTracker,
    max_users_per_message: usize,
    ownership: Arc<Ownership>,
    /// Cancelled at shutdown: no new input is taken.
    stop_input: CancellationToken,
    /// Cancelled when the server exits: lease renewal stops, writes give up.
    exit: CancellationToken,
    /// The heartbeat in the shared quota's Redis; it ends (leaving the
    /// heartbeats) once `exit` is cancelled.
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl Engine {
    /// Starts a dispatcher per target and the renewal of this run's leases.
    /// Must run inside a tokio runtime. `max_users_per_message` bounds one
    /// `submit`: a unary batch or one stream chunk. With `quota`, every
    /// target paces on the quota shared through it (and this replica beats
    /// its heartbeat there); without, each paces alone.
    pub fn start(
        specs: Vec<TargetSpec>,
        audit: AuditStore,
        max_users_per_message: usize,
        durability: Durability,
        quota: Option<Arc<QuotaStore>>,
    ) -> Engine {
        let tracker = TaskTracker::new();
        let exit = CancellationToken::new();
        let client = HttpClient::new();
        let log: SharedCallLog = Arc::new(audit.clone());
        let targets = specs
            .into_iter()
            .map(|spec| {
                let spec = Arc::new(spec);
                let shared = quota.as_ref().map(|store| {
                    Arc::new(SharedLimiter::new(
                        spec.name.clone(),
                        store.clone(),
                        spec.quota_key.clone(),
                        f64::from(spec.qps.get()),
                        spec.rate_margin,
                    ))
                });
                let (permit_wait, paced_rate) = (
                    spec.metrics.permit_wait.clone(),
                    spec.metrics.paced_rate.clone(),
                );
                let limiter: Arc<dyn Limiter> = match &shared {
                    Some(shared) => Arc::new(Metered::new(shared.clone(), permit_wait, paced_rate)),
                    None => Arc::new(Metered::new(
                        GcraLimiter::per_second(spec.qps, spec.rate_margin),
                        permit_wait,
                        paced_rate,
                    )),
                };
                // each vendor's answers are read up to its own limit
                let max_response_bytes = registry::spec(spec.vendor_kind).max_response_bytes;
                let service = stack::outbound_stack(
                    &spec,
                    &log,
                    client.limited_to(max_response_bytes),
                    limiter.clone(),
                    exit.clone(),
                );
                let queue = dispatcher::spawn(
                    spec.clone(),
                    service,
                    limiter,
                    log.clone(),
                    tracker.clone(),
                    exit.clone(),
                );
                TargetRuntime {
                    spec,
                    queue,
                    shared,
                }
            })
            .collect();
        let heartbeat = quota.map(|store| tokio::spawn(store.keep_beating(exit.clone())));
        let ownership = Arc::new(Ownership::new(
            &durability.instance_name,
            durability.batch_lease,
        ));
        tokio::spawn(ownership::maintain(
            audit.clone(),
            ownership.clone(),
            exit.clone(),
        ));
        Engine {
            targets,
            audit,
            tracker,
            max_users_per_message,
            ownership,
            stop_input: CancellationToken::new(),
            exit,
            heartbeat,
        }
    }

    /// Interrupts every batch whose owner is gone (run before serving).
    pub async fn recover(&self) -> Result<u64, AuditError> {
        let interrupted = ownership::recover(&self.audit, &self.ownership).await?;
        tracing::info!(
            owner = self.ownership.owner(),
            interrupted,
            "batches of servers that are gone were interrupted; replays with their keys resume them"
        );
        Ok(interrupted)
    }

    pub fn targets(&self) -> impl Iterator<Item = &TargetSpec> {
        self.targets.iter().map(|target| target.spec.as_ref())
    }

    /// How the target named `name` paces: alone, on the shared quota, or at
    /// its fallback share while Redis is away.
    pub fn pacing(&self, name: &str) -> Pacing {
        self.targets
            .iter()
            .find(|target| target.spec.name.as_ref() == name)
            .and_then(|target| target.shared.as_ref())
            .map_or(Pacing::Alone, |shared| shared.pacing())
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

    fn context(&self) -> BatchContext {
        BatchContext {
            audit: self.audit.clone(),
            owner: Arc::from(self.ownership.owner()),
            stop_input: self.stop_input.clone(),
            exit: self.exit.clone(),
        }
    }

    /// Opens a batch: checks the targets, honours the idempotency key (a
    /// new batch, a finished one answered from the store, or an interrupted
    /// one resumed), and records the batch under this run's lease.
    pub async fn open_batch(&self, options: BatchOptions) -> Result<OpenedBatch, EngineError> {
        if self.tracker.is_closed() || self.stop_input.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        if !self.audit.can_commit() {
            return Err(EngineError::StoreCannotCommit);
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
        let (batch_id, resume) = self.batch_for(&options).await?;
        let (writer, results) = batch::open(
            &batch_id,
            chosen,
            self.context(),
            options.dry_run,
            resume,
            options.idempotency_key.is_some(),
            batch::Bounds {
                // one whole message always fits, so a submit can always proceed
                max_outstanding: MAX_OUTSTANDING_PER_BATCH.max(self.max_users_per_message)
                    * options.targets.len(),
                deadline: options.deadline,
                caller_places: options.caller_places.clone(),
            },
        );
        Ok(OpenedBatch {
            writer: Box::new(writer),
            results,
        })
    }

    /// The batch a request goes to: the one its key names, or a new one.
    async fn batch_for(
        &self,
        options: &BatchOptions,
    ) -> Result<(String, Option<Resume>), EngineError> {
        if let Some(key) = &options.idempotency_key
            && let Some(head) = self
                .audit
                .batch_for_key(key, options.dry_run, &options.caller)
                .await?
        {
            return self.reopen(head, options).await;
        }
        let batch_id = uuid::Uuid::now_v7().to_string();
        let created = self
            .audit
            .create_batch(&NewBatch {
                id: batch_id.clone(),
                caller: options.caller.clone(),
                idempotency_key: options.idempotency_key.clone(),
                targets: options.targets.clone(),
                dry_run: options.dry_run,
                lease: self.ownership.lease(),
            })
            .await;
        match created {
            Ok(()) => Ok((batch_id, None)),
            Err(AuditError::DuplicateIdempotencyKey(key)) => {
                // another request with the same key won the race; its
                // batch may not be readable yet
                let head = self
                    .audit
                    .batch_for_key(&key, options.dry_run, &options.caller)
                    .await?
                    .ok_or(EngineError::BatchBeingCreated)?;
                self.reopen(head, options).await
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A batch named again by its key: answered from the store when it is
    /// finished; taken over and resumed when it is interrupted or its owner
    /// is gone; refused while a live server runs it.
    async fn reopen(
        &self,
        head: BatchHead,
        options: &BatchOptions,
    ) -> Result<(String, Option<Resume>), EngineError> {
        if head.targets != options.targets {
            return Err(EngineError::TargetsDiffer {
                batch_id: head.id,
                recorded: head.targets,
            });
        }
        let mut state = head.state;
        if state == BatchState::Running {
            let now = chrono::Utc::now();
            if self.ownership.owner_alive(head.lease.as_ref(), now) {
                return Err(EngineError::BatchInProgress { batch_id: head.id });
            }
            ownership::interrupt_if_ownerless(
                &self.audit,
                &self.ownership,
                &head.id,
                head.lease.as_ref(),
            )
            .await?;
            state = BatchState::Interrupted;
        }
        let recorded = self
            .audit
            .recorded_users(&head.id)
            .await?
            .max(head.user_count);
        if state == BatchState::Completed {
            return Ok((
                head.id,
                Some(Resume {
                    recorded,
                    finished: true,
                }),
            ));
        }
        if !self
            .audit
            .claim(&head.id, state, &self.ownership.lease())
            .await?
        {
            // another request resumed it first, or its owner renewed after all
            return Err(EngineError::BatchInProgress { batch_id: head.id });
        }
        tracing::info!(batch_id = %head.id, recorded, "resuming an interrupted batch");
        Ok((
            head.id,
            Some(Resume {
                recorded,
                finished: false,
            }),
        ))
    }

    /// Stops every open stream taking input (they end telling their callers
    /// to resume with their keys) and refuses new batches.
    pub fn stop_input(&self) {
        self.stop_input.cancel();
    }

    /// Refuses new batches and waits up to `grace` for in-flight vendor calls
    /// and their audit writes to finish; then interrupts whatever this run
    /// still holds, so a replay against another replica resumes at once.
    /// Returns whether everything finished.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.stop_input.cancel();
        self.tracker.close();
        let finished = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        // batch ends still being written get a moment, then give up
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.exit.cancel();
        if let Some(heartbeat) = &self.heartbeat {
            // it leaves the heartbeats, so that the other replicas count it gone at once
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while !heartbeat.is_finished() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
        }
        match ownership::release(&self.audit, &self.ownership).await {
            Ok(0) => {}
            Ok(released) => {
                tracing::warn!(
                    released,
                    "batches still open at exit were interrupted; replays with their keys resume them"
                );
            }
            Err(error) => {
                tracing::error!(%error, "could not interrupt this server's batches at exit: they resume once their lease expires");
            }
        }
        finished
    }
}
