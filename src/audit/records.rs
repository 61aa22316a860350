//! What the audit store takes and gives back, apart from its sea-orm
//! entities: the rows the engine writes, the records it reads, the filters it
//! reads them by, and the store's error (which never carries a connection
//! string or a password).

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};

use super::entity::{batch, registration};
use crate::domain::Outcome;

/// Rows per INSERT statement: well under SQLite's and PostgreSQL's bind limits.
pub(super) const ROWS_PER_STATEMENT: usize = 1000;

#[derive(Debug, Clone, thiserror::Error)]
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

/// A batch as the caller opened it, owned by the server run that opened it.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub id: String,
    /// The configured caller opening it; empty for anyone.
    pub caller: String,
    pub idempotency_key: Option<String>,
    pub targets: Vec<String>,
    pub dry_run: bool,
    pub lease: Lease,
}

/// Who owns a running batch (`INSTANCE/RUN`), and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

/// The idempotency key as stored: a dry run's key lives apart from a real
/// run's, so a dry run never uses up the key of the real run after it.
pub(super) fn stored_key(key: &str, dry_run: bool, caller: &str) -> String {
    let dry_run = if dry_run { DRY_RUN_KEY_PREFIX } else { "" };
    if caller.is_empty() {
        format!("{dry_run}{key}")
    } else {
        format!("{dry_run}caller:{caller}/{key}")
    }
}

/// The caller's key of a stored one.
pub(super) fn caller_key(stored: String, caller: &str) -> String {
    let key = stored.strip_prefix(DRY_RUN_KEY_PREFIX).unwrap_or(&stored);
    if caller.is_empty() {
        return key.to_owned();
    }
    let scope = format!("caller:{caller}/");
    key.strip_prefix(scope.as_str()).unwrap_or(key).to_owned()
}

const DRY_RUN_KEY_PREFIX: &str = "dry-run/";

/// The lifecycle state stored in `batches.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Running,
    Completed,
    /// Written by versions before `Interrupted`; resumes like it.
    Aborted,
    /// Stopped before every user had a final outcome; a replay resumes it.
    Interrupted,
}

impl BatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Running => "running",
            BatchState::Completed => "completed",
            BatchState::Aborted => "aborted",
            BatchState::Interrupted => "interrupted",
        }
    }

    pub fn parse(stored: &str) -> Option<BatchState> {
        [
            BatchState::Running,
            BatchState::Completed,
            BatchState::Aborted,
            BatchState::Interrupted,
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
    /// What the caller asked for this user; `None` keeps the stored one.
    pub fingerprint: Option<String>,
}

/// A vendor call about to be made, and the users it carries: their rows
/// name the call in the same commit, so that after a crash the audit store
/// knows which unanswered users may have reached the vendor.
#[derive(Debug, Clone)]
pub struct NewVendorCall {
    pub target: String,
    pub vendor: String,
    pub action: String,
    pub attempt: u32,
    pub user_count: usize,
    pub carried: Vec<CarriedUser>,
}

/// One user a vendor call carries: its row's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CarriedUser {
    pub batch_id: std::sync::Arc<str>,
    pub index: u64,
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
    /// The configured caller that opened it; empty for anyone.
    pub caller: String,
    pub idempotency_key: Option<String>,
    pub targets: Vec<String>,
    pub dry_run: bool,
    pub state: BatchState,
    pub user_count: u64,
    pub counts: BTreeMap<String, OutcomeCounts>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What opening or recovering a batch needs to know of it, without its counts.
#[derive(Debug, Clone)]
pub struct BatchHead {
    pub id: String,
    pub targets: Vec<String>,
    pub dry_run: bool,
    pub state: BatchState,
    pub user_count: u64,
    pub lease: Option<Lease>,
}

impl From<batch::Model> for BatchHead {
    fn from(row: batch::Model) -> Self {
        BatchHead {
            targets: split_targets(&row.targets),
            id: row.id,
            dry_run: row.dry_run,
            // a state this build does not know is left alone, like a running batch
            state: BatchState::parse(&row.state).unwrap_or(BatchState::Running),
            user_count: row.user_count.max(0) as u64,
            lease: lease_of(row.owner, row.lease_expires_at),
        }
    }
}

/// Target names as stored: comma-separated, in the caller's order.
pub(super) fn split_targets(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn lease_of(owner: Option<String>, expires_at: Option<DateTime<Utc>>) -> Option<Lease> {
    Some(Lease {
        owner: owner?,
        expires_at: expires_at?,
    })
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
        fingerprint: Set(row.fingerprint.clone()),
    }
}
