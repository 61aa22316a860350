//! The engine: everything between the gRPC edge and the vendors.
//!
//! It owns one dispatcher per target, opens batches (validating targets and
//! idempotency keys against the audit store), and builds each target's
//! outbound stack. It decides; the edge only converts and maps errors.

pub mod batch;
pub mod call;
pub mod dispatcher;
pub mod jobs;
pub mod queries;
pub mod target;
pub mod validate;

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tower::{
    Layer, ServiceBuilder,
    util::{BoxCloneService, BoxCloneSyncService},
};

use crate::{
    audit::{AuditError, AuditStore, BatchState, NewBatch, OutcomeCounts},
    domain::{Outcome, UserResult},
    outbound::{
        http_client::HttpClient,
        rate_limit::{GcraLimiter, Limiter, RateLimitLayer, SendWindowLayer},
        retry::{RetryLayer, RetryPolicy},
        timeout::timed_http,
        trace::TraceLayer,
    },
};
use batch::{BatchResults, BatchSummary, BatchWriter};
use call::{AttemptService, HttpService};
use target::TargetSpec;

/// Users a batch may have accepted but not yet answered (per target), beyond one message's worth.
const MAX_OUTSTANDING_PER_BATCH: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no targets given; known targets: {}", known.join(", "))]
    NoTargets { known: Vec<String> },
    #[error("unknown target {name:?}; known targets: {}", known.join(", "))]
    UnknownTarget { name: String, known: Vec<String> },
    #[error("target {0:?} is named more than once")]
    DuplicateTarget(String),
    #[error("batch {batch_id} with this idempotency key is still running")]
    BatchInProgress { batch_id: String },
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("the server is shutting down")]
    ShuttingDown,
}

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
    queue: mpsc::Sender<dispatcher::Group>,
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
        let targets = specs
            .into_iter()
            .map(|spec| {
                let spec = Arc::new(spec);
                let limiter: Arc<dyn Limiter> =
                    Arc::new(GcraLimiter::per_second(spec.qps, spec.rate_margin));
                let service = outbound_stack(&spec, &audit, client.clone(), limiter.clone());
                let queue = dispatcher::spawn(
                    spec.clone(),
                    service,
                    limiter,
                    audit.clone(),
                    tracker.clone(),
                );
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
                // another request with the same key won the race
                let batch_id = self
                    .audit
                    .batch_id_for_idempotency_key(&key)
                    .await?
                    .ok_or_else(|| {
                        AuditError::Unavailable("idempotency key vanished".to_owned())
                    })?;
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
            .map(|row| UserResult {
                batch_id: row.batch_id,
                index: row.idx.max(0) as u64,
                target: row.target,
                user_id: row.user_id,
                outcome: Outcome::parse(&row.outcome).unwrap_or(Outcome::Pending),
                vendor_user_id: row.vendor_user_id.unwrap_or_default(),
                error_code: row.error_code.unwrap_or_default(),
                error_message: row.error_message.unwrap_or_default(),
                attempts: row.attempts.max(0) as u32,
                replayed: true,
            })
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

/// trace -> retry -> rate limit -> attempt (audit row, sign, timeout -> HTTP, parse).
fn outbound_stack(
    spec: &Arc<TargetSpec>,
    audit: &AuditStore,
    client: HttpClient,
    limiter: Arc<dyn Limiter>,
) -> dispatcher::CallService {
    // the send guard sits right above the HTTP exchange, after every other
    // step of an attempt; its wait is not part of the call's timeout, so an
    // attempt held back by it is never reported as a lost answer
    let http = guarded_http(timed_http(client, spec.timeout), limiter.clone());
    let stack = ServiceBuilder::new()
        .layer(TraceLayer)
        .layer(RetryLayer::new(RetryPolicy::new(spec.max_attempts)))
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(AttemptService::new(audit.clone(), http, limiter));
    BoxCloneService::new(stack)
}

/// The HTTP exchange under each attempt: the send guard, then `timed`, the
/// exchange under the per-call timeout.
fn guarded_http(timed: HttpService, limiter: Arc<dyn Limiter>) -> HttpService {
    BoxCloneSyncService::new(SendWindowLayer::new(limiter).layer(timed))
}

#[cfg(test)]
mod tests {
    use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

    use bytes::Bytes;
    use tokio::time::Instant;
    use tower::{ServiceExt, service_fn};

    use super::guarded_http;
    use crate::outbound::{
        rate_limit::Limiter,
        timeout::{
            tests::{answer_after, request},
            timed_http,
        },
    };

    /// A limiter whose send guard holds every call for a second.
    struct SlowSendGuard;

    impl Limiter for SlowSendGuard {
        fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(async {})
        }

        fn current_rate(&self) -> f64 {
            1.0
        }

        fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(tokio::time::sleep(Duration::from_secs(1)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_held_at_the_send_guard_is_not_timed_out_for_it() {
        let timeout = Duration::from_millis(500);
        let prompt = service_fn(|_: http::Request<Bytes>| answer_after(Duration::from_millis(100)));
        let http = guarded_http(timed_http(prompt, timeout), Arc::new(SlowSendGuard));

        let started = Instant::now();
        let answer = http.oneshot(request()).await;

        assert!(answer.is_ok(), "{answer:?}");
        assert_eq!(started.elapsed(), Duration::from_millis(1100));
    }
}
