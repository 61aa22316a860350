//! Engine and audit errors as gRPC statuses, with machine-readable details
//! (google.rpc.BadRequest) where the caller's request was at fault.

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
            EngineError::BatchInProgress { .. } => Status::aborted(error.to_string()),
            EngineError::BatchBeingCreated => Status::aborted(error.to_string()),
            EngineError::Audit(audit) => audit_status(audit),
            EngineError::ShuttingDown => Status::unavailable(error.to_string()),
        }
    }
}

pub fn audit_status(error: &AuditError) -> Status {
    match error {
        AuditError::Unavailable(_) => Status::unavailable(error.to_string()),
        AuditError::DuplicateIdempotencyKey(_) => Status::already_exists(error.to_string()),
    }
}

impl From<AuditError> for Status {
    fn from(error: AuditError) -> Status {
        audit_status(&error)
    }
}
