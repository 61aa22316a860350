//! What the audit store takes and gives back, apart from its sea-orm
//! entities: the rows the engine writes, the records it reads, the filters it
//! reads them by, and the store's error (which never carries a connection
//! string or a password).

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};

use super::entity::registration;
use crate::domain::Outcome;

/// Rows per INSERT statement: well under SQLite's and PostgreSQL's bind limits.
pub(super) const ROWS_PER_STATEMENT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store unavailable: {0}")]
    Unavailable(String),
    #[error("a batch with idempotency key {0:?} already exists")]
    DuplicateIdempotencyKey(String),
}

impl From<sea_orm::DbErr> for AuditError {
    fn from(error: sea_orm::DbErr) -> Self {
        AuditError::Unavailable(redact_database_error(&error.to_string()))
    }
}

/// Database errors can echo a connection URL; drop anything that looks like `user:password@`.
pub(super) fn redact_database_error(message: &str) -> String {
    message
        .split_whitespace()
        .map(|word| match (word.find("://"), word.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}://[redacted]@{}", &word[..scheme_end], &word[at + 1..])
            }
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A batch as the caller opened it.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub id: String,
    pub idempotency_key: Option<String>,
    pub targets: Vec<String>,
    pub dry_run: bool,
}

/// The lifecycle state stored in `batches.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Running,
    Completed,
    Aborted,
}

impl BatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Running => "running",
            BatchState::Completed => "completed",
            BatchState::Aborted => "aborted",
        }
    }

    pub fn parse(stored: &str) -> Option<BatchState> {
        [
            BatchState::Running,
            BatchState::Completed,
            BatchState::Aborted,
        ]
        .into_iter()
        .find(|state| state.as_str() == stored)
    }
}

/// One (user, target) row: the key, the user, and the outcome so far.
#[derive(Debug, Clone)]
pub struct RegistrationRow {
    pub batch_id: String,
    pub index: u64,
    pub target: String,
    pub user_id: String,
    pub outcome: Outcome,
    pub vendor_user_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: u32,
    pub vendor_call_id: Option<i64>,
}

/// A vendor call about to be made.
#[derive(Debug, Clone)]
pub struct NewVendorCall {
    pub target: String,
    pub vendor: String,
    pub action: String,
    pub attempt: u32,
    pub user_count: usize,
}

/// How a vendor call ended.
#[derive(Debug, Clone, Default)]
pub struct VendorCallEnd {
    pub vendor_request_id: Option<String>,
    pub http_status: Option<u16>,
    pub vendor_error_code: Option<String>,
    pub error_class: Option<String>,
    /// The job a call submitted or polled (CIAM imports).
    pub vendor_job_id: Option<String>,
    pub latency: Duration,
}

/// Counts per outcome of one target in one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    pub by_outcome: BTreeMap<&'static str, u64>,
}

impl OutcomeCounts {
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.by_outcome.get(outcome.as_str()).copied().unwrap_or(0)
    }

    pub fn add(&mut self, outcome: Outcome, count: u64) {
        *self.by_outcome.entry(outcome.as_str()).or_default() += count;
    }

    pub fn total(&self) -> u64 {
        self.by_outcome.values().sum()
    }
}

/// A batch with its counts per target, as GetBatch reports it.
#[derive(Debug, Clone)]
pub struct BatchRecord {
    pub id: String,
    pub idempotency_key: Option<String>,
    pub targets: Vec<String>,
    pub dry_run: bool,
    pub state: BatchState,
    pub user_count: u64,
    pub counts: BTreeMap<String, OutcomeCounts>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Filters of ListRegistrations; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct RegistrationFilter {
    pub batch_id: Option<String>,
    pub target: Option<String>,
    pub user_id: Option<String>,
    pub outcome: Option<Outcome>,
}

pub(super) fn active_registration(
    row: &RegistrationRow,
    now: DateTime<Utc>,
) -> registration::ActiveModel {
    registration::ActiveModel {
        id: NotSet,
        batch_id: Set(row.batch_id.clone()),
        idx: Set(row.index as i64),
        target: Set(row.target.clone()),
        user_id: Set(row.user_id.clone()),
        outcome: Set(row.outcome.as_str().to_owned()),
        vendor_user_id: Set(row.vendor_user_id.clone()),
        error_code: Set(row.error_code.clone()),
        error_message: Set(row.error_message.clone()),
        attempts: Set(row.attempts as i32),
        vendor_call_id: Set(row.vendor_call_id),
        created_at: Set(now),
        updated_at: Set(now),
    }
}
