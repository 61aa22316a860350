//! What a target's queue carries: users waiting for a vendor call, each with
//! the batch its result goes back to. A leaf: it knows nothing of calls,
//! dispatchers or the audit store, and handing a result back never waits.

use std::sync::Arc;

use tokio::{
    sync::{Semaphore, mpsc},
    time::Instant,
};

use crate::domain::{User, UserResult};

/// One user queued for one target.
pub struct Pending {
    pub batch: Arc<BatchShared>,
    pub index: u64,
    pub user: Arc<User>,
}

/// Users of one message for one target, queued together so that the
/// dispatcher sees them at once and packs full calls.
pub type Group = Vec<Arc<Pending>>;

/// What every queued user of a batch shares: where its result goes.
///
/// Each user holds one of the batch's `outstanding` places from the moment
/// it is submitted until the caller has *read* its result. The results
/// channel therefore never holds more than the places, and handing a result
/// over never waits: a caller that stops reading stops its own input, never
/// the vendor calls it shares with other callers.
pub struct BatchShared {
    pub id: Arc<str>,
    pub(super) results: mpsc::UnboundedSender<UserResult>,
    pub(super) outstanding: Arc<Semaphore>,
    /// The caller's deadline: a user not yet in a call by then is not sent.
    pub(super) deadline: Option<Instant>,
    /// The batch's span, in its caller's trace: the vendor calls carrying
    /// its users are children of it or link to it.
    pub span: tracing::Span,
}

impl BatchShared {
    /// Whether the caller's deadline has passed.
    pub fn deadline_passed(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| deadline <= now)
    }

    /// Hands a result to the caller's stream, without waiting.
    pub fn deliver(&self, result: UserResult) {
        // fails only once the caller's results side is gone: its row is
        // written, and nobody is left to tell
        let _ = self.results.send(result);
    }
}
