//! The interface every vendor module implements: validate a user, build the
//! signed request of one call, read its answer (and, for vendors that
//! register through jobs, submit and poll a job). The engine drives vendor
//! modules only through it; the time and nonce of an attempt are handed in,
//! so an implementation never reads the clock or a random source.

use std::sync::Arc;

use bytes::Bytes;

use super::outcome::{CallReport, ErrorClass, ErrorCode};
use crate::domain::{Rejection, User, VendorKind};

/// What one attempt needs from outside a pure module: the time and a nonce.
#[derive(Debug, Clone)]
pub struct AttemptContext {
    /// Seconds since the Unix epoch at which the attempt is signed.
    pub unix_time: i64,
    /// A fresh random nonce (hex), for vendors that sign one.
    pub nonce: String,
}

impl AttemptContext {
    /// The current time and a fresh random 16-hex-digit nonce.
    pub fn now() -> Self {
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs() as i64)
            .unwrap_or_default();
        AttemptContext {
            unix_time,
            nonce: hex::encode(rand::random::<[u8; 8]>()),
        }
    }
}

/// A request could not be built (a configuration problem, never user input).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    /// The engine handed over a user that did not pass the vendor's
    /// validation: a bug in registrar, never the caller's input.
    #[error("a user reached the request unvalidated: {0}")]
    Unvalidated(String),
    #[error("could not encode the request body: {0}")]
    Body(#[from] serde_json::Error),
    #[error("could not build the http request: {0}")]
    Http(#[from] http::Error),
}

/// One vendor API, configured for one target.
pub trait VendorApi: Send + Sync + 'static {
    /// The vendor kind this module speaks.
    fn kind(&self) -> VendorKind;

    /// The vendor action a call performs, e.g. `BatchRegister` (for audit rows and spans).
    fn action(&self) -> &'static str;

    /// Whether sending the same users again is harmless when an attempt's
    /// answer was lost after the request left (the vendor overwrites, or
    /// reports "already exists" on a repeat).
    fn repeat_is_safe(&self) -> bool;

    /// Checks one user against the vendor's documented field rules.
    fn validate(&self, user: &User) -> Result<(), Rejection>;

    /// Builds the signed request that registers `users` in one call.
    fn build_request(
        &self,
        users: &[&User],
        attempt: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError>;

    /// Maps the vendor's answer to one outcome per user of the call.
    fn parse_response(&self, users: &[&User], response: &http::Response<Bytes>) -> CallReport;

    /// The keys by which the vendor's answer names `user`, besides its user
    /// id: two users sharing a key are never sent in one call, since the
    /// answer could not tell their outcomes apart. Empty (the default) for
    /// vendors that answer per position or per user id.
    fn answer_keys(&self, _user: &User) -> Vec<String> {
        Vec::new()
    }

    /// For vendors whose call starts a job that must be polled to its end
    /// (CIAM imports): the job protocol. `None` for one-call vendors.
    fn jobs(&self) -> Option<&dyn JobApi> {
        None
    }
}

/// What the call that submits a job answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// The vendor accepted the job; its users' outcomes come from polling it.
    Started {
        job_id: String,
        vendor_request_id: Option<String>,
    },
    /// The vendor answered at once: the call failed (or was refused) for these users.
    Answered(CallReport),
    /// The vendor runs too many jobs for this account already: wait for one to
    /// end, then submit again (CIAM `FailedOperation.DataFlowTooManyRequests`).
    Busy {
        code: String,
        message: String,
        vendor_request_id: Option<String>,
    },
}

/// What one poll of a job answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Still pending or processing.
    Running { vendor_request_id: Option<String> },
    /// Ended: one outcome per user of the job, in the order submitted.
    Finished(CallReport),
    /// The poll itself failed (throttled, transient or permanent); the job's fate is unknown.
    PollFailed {
        class: ErrorClass,
        code: ErrorCode,
        message: String,
        vendor_request_id: Option<String>,
    },
}

/// The job protocol of a vendor that registers users through jobs.
pub trait JobApi: Send + Sync {
    /// The action that polls a job, for audit rows and spans (e.g. `ListJobs`).
    fn poll_action(&self) -> &'static str;

    /// Reads the answer to the submitting call (`build_request`'s request).
    fn parse_submission(&self, users: &[&User], response: &http::Response<Bytes>) -> Submission;

    /// Builds the signed request that asks for the job's state.
    fn build_poll_request(
        &self,
        job_id: &str,
        attempt: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError>;

    /// Reads a poll's answer; `users` are the job's users in the order submitted.
    fn parse_poll(
        &self,
        users: &[&User],
        job_id: &str,
        response: &http::Response<Bytes>,
    ) -> JobStatus;
}

pub type SharedVendor = Arc<dyn VendorApi>;
