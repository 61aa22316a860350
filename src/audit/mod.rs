//! The audit store: one row per batch, per vendor call and per (user, target).
//!
//! sea-orm over SQLite (a local file, the default) or PostgreSQL (production,
//! shared by replicas); migrations run at start-up. A user's row is written
//! before any vendor call carries that user, and rows never hold a secret or
//! a password: only ids, outcomes, vendor codes and messages.

pub mod entity;
pub mod migration;
mod records;
mod writer;

pub use records::{
    AuditError, BatchRecord, BatchState, NewBatch, NewVendorCall, OutcomeCounts,
    RegistrationFilter, RegistrationRow, VendorCallEnd,
};
use writer::Write;

use std::{collections::BTreeMap, time::Duration};

use sea_orm::{
    ColumnTrait, ConnectOptions, Database, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use sea_orm_migration::MigratorTrait;
use secrecy::{ExposeSecret, SecretString};

use crate::domain::Outcome;
use entity::{batch, registration};

#[derive(Debug, Clone)]
pub struct AuditStore {
    /// For reads; writes go through `writer`.
    db: DatabaseConnection,
    writer: tokio::sync::mpsc::Sender<writer::Queued>,
}

impl AuditStore {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &SecretString, max_connections: u32) -> Result<Self, AuditError> {
        let mut options = ConnectOptions::new(url.expose_secret().to_owned());
        options
            .max_connections(max_connections)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false);
        let db = Database::connect(options).await?;
        if db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
            // WAL lets readers (GetBatch, ListRegistrations) run beside the writer.
            use sea_orm::ConnectionTrait;
            db.execute_unprepared(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
            )
            .await?;
        }
        migration::Migrator::up(&db, None).await?;
        let writer = writer::spawn(db.clone());
        Ok(AuditStore { db, writer })
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), AuditError> {
        migration::Migrator::up(&self.db, None).await?;
        Ok(())
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), AuditError> {
        Ok(self.db.ping().await?)
    }

    pub async fn create_batch(&self, new: &NewBatch) -> Result<(), AuditError> {
        self.write(Write::CreateBatch(new.clone())).await.map(drop)
    }

    pub async fn batch_id_for_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<String>, AuditError> {
        Ok(batch::Entity::find()
            .filter(batch::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?
            .map(|row| row.id))
    }

    /// Marks a batch finished with its final user count.
    pub async fn finish_batch(
        &self,
        batch_id: &str,
        state: BatchState,
        user_count: u64,
    ) -> Result<(), AuditError> {
        self.write(Write::FinishBatch {
            batch_id: batch_id.to_owned(),
            state,
            user_count,
        })
        .await
        .map(drop)
    }

    /// Writes new (user, target) rows; they are committed before this
    /// returns, so before any vendor call can carry their users.
    pub async fn insert_registrations(&self, rows: &[RegistrationRow]) -> Result<(), AuditError> {
        self.write(Write::InsertRegistrations(rows.to_vec()))
            .await
            .map(drop)
    }

    /// Records outcomes of existing rows, found by (batch, target, index).
    pub async fn record_outcomes(&self, rows: &[RegistrationRow]) -> Result<(), AuditError> {
        self.write(Write::RecordOutcomes(rows.to_vec()))
            .await
            .map(drop)
    }

    /// Writes the row of a vendor call before it is made; returns its id.
    pub async fn start_vendor_call(&self, call: &NewVendorCall) -> Result<i64, AuditError> {
        self.write(Write::StartVendorCall(call.clone())).await
    }

    pub async fn finish_vendor_call(&self, id: i64, end: &VendorCallEnd) -> Result<(), AuditError> {
        self.write(Write::FinishVendorCall(id, end.clone()))
            .await
            .map(drop)
    }

    /// Hands a write to the writer and waits until it is committed.
    async fn write(&self, write: Write) -> Result<i64, AuditError> {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.writer
            .send(writer::Queued { write, done })
            .await
            .map_err(|_| AuditError::Unavailable("the audit writer has stopped".to_owned()))?;
        committed
            .await
            .map_err(|_| AuditError::Unavailable("the audit writer has stopped".to_owned()))?
    }

    /// The batch and its counts per target and outcome.
    pub async fn batch(&self, batch_id: &str) -> Result<Option<BatchRecord>, AuditError> {
        let Some(row) = batch::Entity::find_by_id(batch_id.to_owned())
            .one(&self.db)
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
            .all(&self.db)
            .await?;
        let targets: Vec<String> = row
            .targets
            .split(',')
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();
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
            idempotency_key: row.idempotency_key,
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
            .all(&self.db)
            .await?;
        let next = if rows.len() as u64 > page_size {
            rows.truncate(page_size as usize);
            rows.last().map(|row| row.id)
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Every row of a batch in input order, for replaying a repeated idempotency key.
    pub async fn batch_registrations(
        &self,
        batch_id: &str,
    ) -> Result<Vec<registration::Model>, AuditError> {
        Ok(registration::Entity::find()
            .filter(registration::Column::BatchId.eq(batch_id))
            .order_by_asc(registration::Column::Idx)
            .order_by_asc(registration::Column::Id)
            .all(&self.db)
            .await?)
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
