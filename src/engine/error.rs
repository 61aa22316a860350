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
    #[error("batch {batch_id} with this idempotency key is still running")]
    BatchInProgress { batch_id: String },
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
