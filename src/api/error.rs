//! Engine errors as gRPC statuses, with machine-readable details
//! (google.rpc.BadRequest) where the caller's request was at fault. Field
//! names are the JSON names callers type (`batchId`, `pageToken`).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{audit::AuditError, engine::EngineError};

/// INVALID_ARGUMENT naming the field at fault.
pub fn invalid_argument(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

impl From<EngineError> for Status {
    fn from(error: EngineError) -> Status {
        match &error {
            EngineError::NoTargets { .. }
            | EngineError::UnknownTarget { .. }
            | EngineError::DuplicateTarget(_) => invalid_argument("targets", error.to_string()),
            EngineError::BatchInProgress { .. } | EngineError::BatchBeingCreated => {
                Status::aborted(error.to_string())
            }
            EngineError::RequestDiffers { index, .. } => Status::with_error_details(
                Code::FailedPrecondition,
                error.to_string(),
                ErrorDetails::with_precondition_failure_violation(
                    "IDEMPOTENCY_KEY_REUSED",
                    format!("users[{index}]"),
                    error.to_string(),
                ),
            ),
            EngineError::TargetsDiffer { .. } => Status::with_error_details(
                Code::FailedPrecondition,
                error.to_string(),
                ErrorDetails::with_precondition_failure_violation(
                    "IDEMPOTENCY_KEY_REUSED",
                    "targets",
                    error.to_string(),
                ),
            ),
            EngineError::Audit(AuditError::Unavailable(_))
            | EngineError::ShuttingDown
            | EngineError::StoreCannotCommit
            | EngineError::InputStopped { .. } => Status::unavailable(error.to_string()),
            EngineError::Audit(AuditError::DuplicateIdempotencyKey(_)) => {
                Status::already_exists(error.to_string())
            }
        }
    }
}
