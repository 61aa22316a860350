//! The engine's errors: what can stop a batch from opening or a caller's
//! users from being accepted. The edge maps each variant to a gRPC status;
//! a variant never carries a secret or a user's data.

use crate::audit::AuditError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no targets given; known targets: {}", known.join(", "))]
    NoTargets { known: Vec<String> },
    #[error("unknown target {name:?}; known targets: {}", known.join(", "))]
    UnknownTarget { name: String, known: Vec<String> },
    #[error("target {0:?} is named more than once")]
    DuplicateTarget(String),
    #[error(
        "batch {batch_id} with this idempotency key is still running on a live server; \
         try again once it ends (a batch whose server is gone resumes after its lease)"
    )]
    BatchInProgress { batch_id: String },
    /// The same key with a different request: the first index that differs.
    #[error(
        "idempotencyKey names batch {batch_id}, recorded for a different request: \
         users[{index}]: {reason}; use a new key for a new request"
    )]
    RequestDiffers {
        batch_id: String,
        index: u64,
        reason: String,
    },
    #[error(
        "idempotencyKey names batch {batch_id}, recorded for targets [{}]: \
         a replay must name the same targets in the same order; use a new key for a new request",
        recorded.join(", ")
    )]
    TargetsDiffer {
        batch_id: String,
        recorded: Vec<String>,
    },
    #[error(
        "the audit store cannot commit writes right now, so no new work is taken; \
         try again shortly or on another replica"
    )]
    StoreCannotCommit,
    /// Shutdown cut a stream's input: what the caller does to resume.
    #[error(
        "the server is shutting down: batch {batch_id} accepted users[0..{next_index}] and takes no more; {resume}"
    )]
    InputStopped {
        batch_id: String,
        next_index: u64,
        resume: String,
    },
    /// Another request with the same idempotency key won the race to create
    /// its batch, but that batch is not readable yet (still being created, or
    /// its creation was undone). Trying again shortly gets a definite answer.
    #[error("another request with this idempotency key is still creating its batch; try again")]
    BatchBeingCreated,
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("the server is shutting down")]
    ShuttingDown,
}
