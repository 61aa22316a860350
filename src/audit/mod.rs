//! The audit store: one row per batch, per vendor call and per (user, target).
//!
//! sea-orm over SQLite (a local file, the default) or PostgreSQL (production,
//! shared by replicas); migrations run at start-up. A user's row is written
//! before any vendor call carries that user, and rows never hold a secret or
//! a password: only ids, outcomes, vendor codes and messages.

mod bulk_rows;
mod connection;
pub mod entity;
pub mod migration;
mod records;
mod writer;

pub use records::{
    AuditError, BatchHead, BatchRecord, BatchState, CarriedUser, Lease, NewBatch, NewVendorCall,
    OutcomeCounts, RegistrationFilter, RegistrationRow, VendorCallEnd,
};
use writer::Write;

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
};

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use secrecy::SecretString;

use crate::domain::Outcome;
use connection::{Connector, SqliteFile};
use entity::{batch, registration};
use records::{caller_key, stored_key};

#[derive(Clone)]
pub struct AuditStore {
    /// The readers' pool and whether writes commit; writes go through `writer`.
    shared: Arc<writer::Shared>,
    writer: tokio::sync::mpsc::Sender<writer::Queued>,
}

/// The span of one audit write, in the trace of whoever writes (a batch's
/// RPC, a vendor call); none for background writes outside any trace
/// (lease renewals), which would each start a trace of their own.
fn audit_span(operation: &'static str) -> tracing::Span {
    if tracing::Span::current().is_none() {
        tracing::Span::none()
    } else {
        tracing::info_span!("audit_write", operation)
    }
}

impl std::fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditStore")
            .field("committing", &self.can_commit())
            .finish_non_exhaustive()
    }
}

impl AuditStore {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &SecretString, max_connections: u32) -> Result<Self, AuditError> {
        let connector = Connector::new(url, max_connections);
        let writer_connection = connector.connect_writer().await?;
        let readers = if connector.is_memory() {
            writer_connection.clone()
        } else {
            connector.connect_readers().await?
        };
        let file = connector.sqlite_path().map(SqliteFile::at).transpose()?;
        let shared = Arc::new(writer::Shared {
            committing: true.into(),
            readers: readers.into(),
        });
        let writer = writer::spawn(connector, writer_connection, file, shared.clone());
        Ok(AuditStore { shared, writer })
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), AuditError> {
        use sea_orm_migration::MigratorTrait;
        migration::Migrator::up(&self.connection(), None).await?;
        Ok(())
    }

    /// The readers' pool.
    pub fn connection(&self) -> DatabaseConnection {
        self.shared
            .readers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), AuditError> {
        Ok(self.connection().ping().await?)
    }

    /// Whether the last write committed: while it did not, no new work is
    /// taken and readiness says NOT_SERVING.
    pub fn can_commit(&self) -> bool {
        self.shared.committing.load(Ordering::Relaxed)
    }

    pub async fn create_batch(&self, new: &NewBatch) -> Result<(), AuditError> {
        self.write(Write::CreateBatch(new.clone())).await.map(drop)
    }

    /// The batch a caller's idempotency key names (a dry run's keys apart).
    pub async fn batch_for_key(
        &self,
        key: &str,
        dry_run: bool,
        caller: &str,
    ) -> Result<Option<BatchHead>, AuditError> {
        Ok(batch::Entity::find()
            .filter(batch::Column::IdempotencyKey.eq(stored_key(key, dry_run, caller)))
            .one(&self.connection())
            .await?
            .map(BatchHead::from))
    }

    /// Every running batch, with its owner's lease.
    pub async fn running_batches(&self) -> Result<Vec<BatchHead>, AuditError> {
        Ok(batch::Entity::find()
            .filter(batch::Column::State.eq(BatchState::Running.as_str()))
            .all(&self.connection())
            .await?
            .into_iter()
            .map(BatchHead::from)
            .collect())
    }

    /// Ends a batch `owner` holds; false when it is no longer the owner's.
    /// An interrupted batch's unfinished rows say whether a call carried them.
    pub async fn finish_batch(
        &self,
        batch_id: &str,
        state: BatchState,
        owner: &str,
    ) -> Result<bool, AuditError> {
        self.write(Write::EndBatch {
            batch_id: batch_id.to_owned(),
            state,
            owner: Some(owner.to_owned()),
            expired_only: false,
        })
        .await
        .map(|ended| ended > 0)
    }

    /// Writes new (user, target) rows and the batch's user count after them;
    /// they are committed before this returns, so before any vendor call can
    /// carry their users.
    pub async fn insert_registrations(
        &self,
        batch_id: &str,
        rows: &[RegistrationRow],
        user_count: u64,
    ) -> Result<(), AuditError> {
        self.write(Write::InsertRegistrations {
            rows: rows.to_vec(),
            batch_id: batch_id.to_owned(),
            user_count,
        })
        .await
        .map(drop)
    }

    /// Records outcomes of existing rows, found by (batch, target, index).
    pub async fn record_outcomes(&self, rows: &[RegistrationRow]) -> Result<(), AuditError> {
        self.write(Write::RecordOutcomes(rows.to_vec()))
            .await
            .map(drop)
    }

    /// Writes the row of a vendor call before it is made, naming it in the
    /// rows of the users it carries; returns its id.
    pub async fn start_vendor_call(&self, call: &NewVendorCall) -> Result<i64, AuditError> {
        self.write(Write::StartVendorCall(call.clone())).await
    }

    pub async fn finish_vendor_call(&self, id: i64, end: &VendorCallEnd) -> Result<(), AuditError> {
        self.write(Write::FinishVendorCall(id, end.clone()))
            .await
            .map(drop)
    }

    /// Extends the lease of every running batch the lease's owner holds;
    /// how many it holds.
    pub async fn renew_leases(&self, lease: &Lease) -> Result<u64, AuditError> {
        self.write(Write::RenewLeases(lease.clone()))
            .await
            .map(|renewed| renewed as u64)
    }

    /// Interrupts a running batch held by `owner` (`None`: by nobody), only
    /// once its lease has expired when `expired_only`; false when the batch
    /// was not in that state (its owner renewed, or someone else got there first).
    pub async fn interrupt(
        &self,
        batch_id: &str,
        owner: Option<&str>,
        expired_only: bool,
    ) -> Result<bool, AuditError> {
        self.write(Write::EndBatch {
            batch_id: batch_id.to_owned(),
            state: BatchState::Interrupted,
            owner: owner.map(str::to_owned),
            expired_only,
        })
        .await
        .map(|interrupted| interrupted > 0)
    }

    /// Takes a batch in state `from` for the run that holds `lease`; false
    /// when another request took it first.
    pub async fn claim(
        &self,
        batch_id: &str,
        from: BatchState,
        lease: &Lease,
    ) -> Result<bool, AuditError> {
        self.write(Write::Claim {
            batch_id: batch_id.to_owned(),
            from,
            lease: lease.clone(),
        })
        .await
        .map(|claimed| claimed > 0)
    }

    /// Hands a write to the writer and waits until it is committed.
    async fn write(&self, write: Write) -> Result<i64, AuditError> {
        use tracing::Instrument;
        let operation = write.operation();
        let started = std::time::Instant::now();
        let (done, committed) = tokio::sync::oneshot::channel();
        let committed = async {
            self.writer
                .send(writer::Queued { write, done })
                .await
                .map_err(|_| AuditError::Unavailable("the audit writer has stopped".to_owned()))?;
            committed
                .await
                .map_err(|_| AuditError::Unavailable("the audit writer has stopped".to_owned()))?
        }
        .instrument(audit_span(operation))
        .await;
        crate::metrics::global().audit_write(operation, started.elapsed().as_secs_f64());
        committed
    }

    /// How many users of a batch's input have rows: one past the highest index.
    pub async fn recorded_users(&self, batch_id: &str) -> Result<u64, AuditError> {
        let highest: Option<Option<i64>> = registration::Entity::find()
            .select_only()
            .column_as(registration::Column::Idx.max(), "highest")
            .filter(registration::Column::BatchId.eq(batch_id))
            .into_tuple()
            .one(&self.connection())
            .await?;
        Ok(highest
            .flatten()
            .map_or(0, |highest| highest.max(0) as u64 + 1))
    }

    /// The rows of a batch at indexes `first..=last`, every target's, in index order.
    pub async fn rows_in_range(
        &self,
        batch_id: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<registration::Model>, AuditError> {
        Ok(registration::Entity::find()
            .filter(registration::Column::BatchId.eq(batch_id))
            .filter(registration::Column::Idx.between(first as i64, last as i64))
            .order_by_asc(registration::Column::Idx)
            .order_by_asc(registration::Column::Id)
            .all(&self.connection())
            .await?)
    }

    /// The caller that opened a batch (empty for anyone); `None` when no
    /// such batch exists. One row by its key, without the batch's counts.
    pub async fn batch_caller(&self, batch_id: &str) -> Result<Option<String>, AuditError> {
        Ok(batch::Entity::find_by_id(batch_id.to_owned())
            .one(&self.connection())
            .await?
            .map(|row| row.caller.unwrap_or_default()))
    }

    /// The batch and its counts per target and outcome.
    pub async fn batch(&self, batch_id: &str) -> Result<Option<BatchRecord>, AuditError> {
        let Some(row) = batch::Entity::find_by_id(batch_id.to_owned())
            .one(&self.connection())
            .await?
        else {
            return Ok(None);
        };
        let grouped: Vec<(String, String, i64)> = registration::Entity::find()
            .select_only()
            .column(registration::Column::Target)
            .column(registration::Column::Outcome)
            .column_as(registration::Column::Id.count(), "count")
            .filter(registration::Column::BatchId.eq(batch_id))
            .group_by(registration::Column::Target)
            .group_by(registration::Column::Outcome)
            .into_tuple()
            .all(&self.connection())
            .await?;
        let targets = records::split_targets(&row.targets);
        let mut counts: BTreeMap<String, OutcomeCounts> = targets
            .iter()
            .map(|name| (name.clone(), OutcomeCounts::default()))
            .collect();
        for (target, outcome, count) in grouped {
            if let Some(outcome) = Outcome::parse(&outcome) {
                counts.entry(target).or_default().add(outcome, count as u64);
            }
        }
        Ok(Some(BatchRecord {
            id: row.id,
            idempotency_key: row
                .idempotency_key
                .map(|key| caller_key(key, row.caller.as_deref().unwrap_or_default())),
            caller: row.caller.clone().unwrap_or_default(),
            targets,
            dry_run: row.dry_run,
            state: BatchState::parse(&row.state).unwrap_or(BatchState::Running),
            user_count: row.user_count.max(0) as u64,
            counts,
            created_at: row.created_at,
            finished_at: row.finished_at,
        }))
    }

    /// One page of rows after `after_id`, oldest first; the id to continue from, if any.
    pub async fn list_registrations(
        &self,
        filter: &RegistrationFilter,
        page_size: u64,
        after_id: i64,
    ) -> Result<(Vec<registration::Model>, Option<i64>), AuditError> {
        let mut query = registration::Entity::find().filter(registration::Column::Id.gt(after_id));
        if let Some(batch_id) = &filter.batch_id {
            query = query.filter(registration::Column::BatchId.eq(batch_id.as_str()));
        }
        if let Some(target) = &filter.target {
            query = query.filter(registration::Column::Target.eq(target.as_str()));
        }
        if let Some(user_id) = &filter.user_id {
            query = query.filter(registration::Column::UserId.eq(user_id.as_str()));
        }
        if let Some(outcome) = filter.outcome {
            query = query.filter(registration::Column::Outcome.eq(outcome.as_str()));
        }
        let mut rows = query
            .order_by_asc(registration::Column::Id)
            .limit(page_size + 1)
            .all(&self.connection())
            .await?;
        let next = if rows.len() as u64 > page_size {
            rows.truncate(page_size as usize);
            rows.last().map(|row| row.id)
        } else {
            None
        };
        Ok((rows, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use records::redact_database_error;

    #[test]
    fn database_errors_lose_their_passwords() {
        let message = "error connecting to postgres://registrar:hunter2@db:5432/audit refused";
        let redacted = redact_database_error(message);
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(redacted.contains("db:5432/audit"));
    }
}
