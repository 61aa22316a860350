//! The import jobs of a simulated CIAM user store, as data: each job's users,
//! when it was created and when it completes (PENDING for a moment, then
//! PROCESSING for a time that grows with its users, then COMPLETED), and how
//! a job is described in a `ListJobs` or `CreateApiImportUserJob` answer
//! (docs/vendors/ciam-import.md). Running a job — registering its users
//! when it completes — is the import handler's (`ciam_import`).

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::vendor_api::tencent::ciam_import::{
    FailedUser, Job, STATUS_COMPLETED, STATUS_PENDING, STATUS_PROCESSING, TYPE_IMPORT_USER,
};

/// How long a new job stays PENDING.
pub(super) const PENDING_FOR: Duration = Duration::from_millis(100);
/// How long a job stays PROCESSING: a base and a little per user.
pub(super) const PROCESSING_BASE: Duration = Duration::from_millis(200);
pub(super) const PROCESSING_PER_USER: Duration = Duration::from_micros(100);

/// The import jobs of one user store, oldest first.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    pub(super) jobs: Vec<SimJob>,
}

impl Jobs {
    pub(super) fn clear(&mut self) {
        self.jobs.clear();
    }

    /// Every job, oldest first, timed relative to `started`.
    pub(super) fn records(&self, started: Instant) -> Vec<SimJobRecord> {
        let ms = |at: Instant| {
            u64::try_from(at.saturating_duration_since(started).as_millis()).unwrap_or(u64::MAX)
        };
        self.jobs
            .iter()
            .map(|job| SimJobRecord {
                id: job.id.clone(),
                users: job
                    .users
                    .iter()
                    .map(|user| user.identification.clone())
                    .collect(),
                created_at_ms: ms(job.created_at),
                completes_at_ms: ms(job.completes_at()),
            })
            .collect()
    }
}

/// An import job as the simulator ran it: a test's ground truth for how many
/// jobs ran at once.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SimJobRecord {
    pub id: String,
    /// The users' identifications (UserName, else PhoneNumber, else Email).
    pub users: Vec<String>,
    /// When the job was created, ms since the simulator started.
    pub created_at_ms: u64,
    /// When it completes (or completed), ms since the simulator started.
    pub completes_at_ms: u64,
}

impl SimJobRecord {
    /// The most jobs running at one instant.
    pub fn max_running(jobs: &[SimJobRecord]) -> usize {
        let mut edges: Vec<(u64, i32)> = jobs
            .iter()
            .flat_map(|job| [(job.created_at_ms, 1), (job.completes_at_ms, -1)])
            .collect();
        // an end and a start at the same instant do not overlap
        edges.sort_by_key(|&(at, change)| (at, change));
        let (mut running, mut most) = (0i32, 0i32);
        for (_, change) in edges {
            running += change;
            most = most.max(running);
        }
        most.max(0) as usize
    }
}

#[derive(Debug)]
pub(super) struct SimJob {
    pub(super) id: String,
    pub(super) created_at: Instant,
    pub(super) created_date_ms: i64,
    pub(super) users: Vec<ImportedUser>,
    /// Set when the job completed: the users that were not registered.
    pub(super) failed_users: Option<Vec<FailedUser>>,
}

impl SimJob {
    pub(super) fn completes_at(&self) -> Instant {
        let users = u32::try_from(self.users.len()).unwrap_or(u32::MAX);
        self.created_at + PENDING_FOR + PROCESSING_BASE + PROCESSING_PER_USER.saturating_mul(users)
    }

    pub(super) fn status(&self, now: Instant) -> &'static str {
        if self.failed_users.is_some() {
            STATUS_COMPLETED
        } else if now < self.created_at + PENDING_FOR {
            STATUS_PENDING
        } else {
            STATUS_PROCESSING
        }
    }

    /// docs/vendors/ciam-import.md#job `Job`.
    pub(super) fn describe(&self, now: Instant) -> Value {
        let job = Job {
            id: Some(self.id.clone()),
            status: Some(self.status(now).to_owned()),
            r#type: Some(TYPE_IMPORT_USER.to_owned()),
            created_date: Some(self.created_date_ms),
            format: None,
            location: None,
            error_details: Some(Vec::new()),
            failed_users: Some(self.failed_users.clone().unwrap_or_default()),
        };
        serde_json::to_value(job).unwrap_or(Value::Null)
    }
}

/// One user of a job, as the job will register it.
#[derive(Debug, Clone)]
pub(super) struct ImportedUser {
    /// UserName, else PhoneNumber, else Email, else another identifier; empty if none.
    pub(super) identification: String,
    pub(super) user_name: String,
    pub(super) phone_number: String,
    pub(super) email: String,
    /// Kept with the user: every field but Password, Salt and the identifiers above.
    pub(super) fields: Map<String, Value>,
    /// Why the user fails whatever the store holds.
    pub(super) failure: Option<String>,
}
