//! What the edge reads back: a batch with its counts, pages of per-user
//! registration rows, and whether the audit store answers at all. Every read
//! of the audit store on behalf of a caller goes through here, and answers in
//! registrar's own types, never in the store's rows.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Engine, EngineError};
use crate::{
    audit::entity::registration,
    domain::{Outcome, UserResult},
};

pub use crate::audit::{BatchRecord, BatchState, OutcomeCounts, RegistrationFilter};

/// Where a page of registrations starts: after the row with this id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistrationCursor(pub i64);

/// One (user, target) row as ListRegistrations reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub batch_id: String,
    pub index: u64,
    pub target: String,
    pub user_id: String,
    /// `None` for a stored outcome this build does not know.
    pub outcome: Option<Outcome>,
    pub vendor_user_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<registration::Model> for Registration {
    fn from(row: registration::Model) -> Self {
        Registration {
            outcome: Outcome::parse(&row.outcome),
            batch_id: row.batch_id,
            index: row.idx.max(0) as u64,
            target: row.target,
            user_id: row.user_id,
            vendor_user_id: row.vendor_user_id,
            error_code: row.error_code,
            error_message: row.error_message,
            attempts: row.attempts.max(0) as u32,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl Registration {
    /// The row as the result of a repeated idempotency key; an outcome this
    /// build does not know is reported as still pending.
    pub fn replayed(self) -> UserResult {
        UserResult {
            batch_id: self.batch_id,
            index: self.index,
            target: self.target,
            user_id: self.user_id,
            outcome: self.outcome.unwrap_or(Outcome::Pending),
            vendor_user_id: self.vendor_user_id.unwrap_or_default(),
            error_code: self.error_code.unwrap_or_default(),
            error_message: self.error_message.unwrap_or_default(),
            attempts: self.attempts,
            replayed: true,
        }
    }
}

/// One page of registrations, oldest first, and where the next one starts.
#[derive(Debug, Clone)]
pub struct RegistrationPage {
    pub registrations: Vec<Registration>,
    /// `None` on the last page.
    pub next: Option<RegistrationCursor>,
}

impl Engine {
    /// The caller that opened a batch (empty for anyone); `None` when no such batch exists.
    pub async fn batch_caller(&self, batch_id: Uuid) -> Result<Option<String>, EngineError> {
        Ok(self.audit.batch_caller(&batch_id.to_string()).await?)
    }

    /// The batch with its counts per target and outcome; `None` when no such batch exists.
    pub async fn batch(&self, batch_id: Uuid) -> Result<Option<BatchRecord>, EngineError> {
        Ok(self.audit.batch(&batch_id.to_string()).await?)
    }

    /// One page of at most `page_size` rows matching `filter`, after `after`.
    pub async fn registrations(
        &self,
        filter: &RegistrationFilter,
        page_size: u64,
        after: RegistrationCursor,
    ) -> Result<RegistrationPage, EngineError> {
        let (rows, next) = self
            .audit
            .list_registrations(filter, page_size, after.0)
            .await?;
        Ok(RegistrationPage {
            registrations: rows.into_iter().map(Registration::from).collect(),
            next: next.map(RegistrationCursor),
        })
    }

    /// Whether the audit store answers and its last write committed: no
    /// vendor call may be made without its committed row.
    pub async fn audit_store_ready(&self) -> bool {
        self.audit.can_commit() && self.audit.ping().await.is_ok()
    }
}
