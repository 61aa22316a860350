//! The batched audit writer: one task that takes every write of the audit
//! store, groups the writes waiting at the same moment into one transaction,
//! and acknowledges each only once it is committed. Many small writes
//! (thousands of callers each opening a batch of one user) then cost one
//! commit, not thousands.
//!
//! A group takes the small writes first: every write of a few rows waiting
//! (a batch opened, a vendor call started or finished, a 1-user caller's
//! row), then bulk writes (a stream's chunk of rows, a full call's
//! outcomes) in their order up to about [`BULK_ROWS_PER_GROUP`] rows, at
//! least one. A caller with one user then waits for at most the group being
//! committed and its own, each of about that many rows, however many rows
//! big streams have queued ahead of it; the bulk writes still go in every
//! group, so none waits forever. Writes are reordered only across lanes:
//! every write's sender waits for it to commit before it sends one that
//! depends on it (the batch before its rows, the rows before a call carries
//! them, the call's start before its end).
//!
//! If a grouped transaction fails, each of its writes is applied again on
//! its own, so that a failure is reported to the write that caused it (a
//! repeated idempotency key) and never to its neighbours.
//!
//! The writer has a connection of its own, and any failure of the store
//! itself (disk full, database locked, server gone, the SQLite file removed)
//! throws that connection away: a commit that failed can leave a connection
//! inside a transaction, and a later "commit" on it would only release a
//! savepoint of a transaction that never commits. The next write connects
//! afresh, so the writer recovers by itself once the store is back. Whether
//! the last write committed is published for readiness.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use chrono::Utc;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, TransactionTrait,
    sea_query::OnConflict,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    bulk_rows,
    connection::{Connector, SqliteFile},
    entity::{batch, registration, vendor_call},
    records::{
        AuditError, BatchState, CarriedUser, Lease, NewBatch, NewVendorCall, ROWS_PER_STATEMENT,
        RegistrationRow, VendorCallEnd, active_registration, stored_key,
    },
};
use crate::domain::Outcome;

/// Small writes the writer takes into one group.
const WRITES_PER_GROUP: usize = 256;
/// Rows of bulk writes in one group beyond its small writes: four full LCIC
/// calls' outcomes or four of a stream's chunks of 1000. A group is then
/// some milliseconds of writing, and a small write waits for at most two;
/// 1000 made one big stream 5 % slower on SQLite (more commits).
const BULK_ROWS_PER_GROUP: usize = 4000;
/// A write of at most this many rows is small.
const SMALL_WRITE_ROWS: usize = 8;
/// Writes queued in the channel before writers wait; as many again may be
/// taken out of it and wait in the writer's lanes.
const QUEUE: usize = 1024;

/// One write of the audit store.
#[derive(Debug, Clone)]
pub(super) enum Write {
    CreateBatch(NewBatch),
    /// Ends a running batch held by `owner` (`None`: by nobody), only once
    /// its lease has expired when `expired_only`; `Interrupted` also says of
    /// each unfinished row whether a vendor call carried it. Affects 0 rows
    /// when the batch is not in that state (its owner renewed, or another
    /// server got there first).
    EndBatch {
        batch_id: String,
        state: BatchState,
        owner: Option<String>,
        expired_only: bool,
    },
    /// Rows of users just accepted, and the batch's user count after them.
    InsertRegistrations {
        rows: Vec<RegistrationRow>,
        batch_id: String,
        user_count: u64,
    },
    RecordOutcomes(Vec<RegistrationRow>),
    StartVendorCall(NewVendorCall),
    FinishVendorCall(i64, VendorCallEnd),
    /// Extends the lease of every running batch `owner` holds.
    RenewLeases(Lease),
    /// Takes a batch found in state `from` for a new run, atomically: 0 rows
    /// when another request took it first.
    Claim {
        batch_id: String,
        from: BatchState,
        lease: Lease,
    },
}

impl Write {
    /// Rows the write inserts or updates, about: what it costs to apply.
    fn rows(&self) -> usize {
        match self {
            Write::InsertRegistrations { rows, .. } | Write::RecordOutcomes(rows) => rows.len(),
            _ => 1,
        }
    }

    /// The write's name in `registrar_audit_write_duration_seconds`.
    pub fn operation(&self) -> &'static str {
        match self {
            Write::CreateBatch(_) => "create_batch",
            Write::EndBatch { .. } => "end_batch",
            Write::InsertRegistrations { .. } => "insert_registrations",
            Write::RecordOutcomes(_) => "record_outcomes",
            Write::StartVendorCall(_) => "start_vendor_call",
            Write::FinishVendorCall(..) => "finish_vendor_call",
            Write::RenewLeases(_) => "renew_leases",
            Write::Claim { .. } => "claim",
        }
    }
}

/// A write and where its result goes: the new row's id for
/// `StartVendorCall`, the rows affected for the conditional writes.
pub(super) struct Queued {
    pub write: Write,
    pub done: oneshot::Sender<Result<i64, AuditError>>,
}

/// What the writer shares with the store's readers.
pub(super) struct Shared {
    /// Whether the last write committed.
    pub committing: AtomicBool,
    /// The readers' pool, replaced when the SQLite file had to be reopened.
    pub readers: RwLock<DatabaseConnection>,
}

pub(super) fn spawn(
    connector: Connector,
    connection: DatabaseConnection,
    file: Option<SqliteFile>,
    shared: Arc<Shared>,
) -> mpsc::Sender<Queued> {
    let (sender, mut receiver) = mpsc::channel::<Queued>(QUEUE);
    let mut writer = Writer {
        connector,
        connection: Some(connection),
        file,
        shared,
    };
    tokio::spawn(async move {
        let mut lanes = Lanes::default();
        loop {
            if lanes.is_empty() {
                match receiver.recv().await {
                    Some(queued) => lanes.push(queued),
                    None => break,
                }
            }
            // whatever else is queued, up to a bounded backlog: writers
            // still wait once the writer falls behind
            while lanes.len() < QUEUE {
                match receiver.try_recv() {
                    Ok(queued) => lanes.push(queued),
                    Err(_) => break,
                }
            }
            writer.apply_group(lanes.next_group()).await;
        }
    });
    sender
}

/// The writes taken from the channel and not yet applied, small and bulk
/// apart, each lane in the order the writes came.
#[derive(Default)]
struct Lanes {
    small: VecDeque<Queued>,
    bulk: VecDeque<Queued>,
}

impl Lanes {
    fn push(&mut self, queued: Queued) {
        if queued.write.rows() <= SMALL_WRITE_ROWS {
            self.small.push_back(queued);
        } else {
            self.bulk.push_back(queued);
        }
    }

    fn len(&self) -> usize {
        self.small.len() + self.bulk.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The small writes waiting (up to [`WRITES_PER_GROUP`]), then bulk
    /// writes in their order while their rows stay within
    /// [`BULK_ROWS_PER_GROUP`], and at least one bulk write if any waits.
    fn next_group(&mut self) -> Vec<Queued> {
        let small = self.small.len().min(WRITES_PER_GROUP);
        let mut group: Vec<Queued> = self.small.drain(..small).collect();
        let mut bulk_rows = 0;
        while let Some(next) = self.bulk.front() {
            let rows = next.write.rows();
            if bulk_rows > 0 && bulk_rows + rows > BULK_ROWS_PER_GROUP {
                break;
            }
            bulk_rows += rows;
            group.extend(self.bulk.pop_front());
        }
        group
    }
}

struct Writer {
    connector: Connector,
    /// `None` after a failure of the store: the next write connects afresh.
    connection: Option<DatabaseConnection>,
    /// The SQLite file written to, checked before each group: writes to a
    /// file removed from under the server would succeed and be lost.
    file: Option<SqliteFile>,
    shared: Arc<Shared>,
}

impl Writer {
    async fn apply_group(&mut self, group: Vec<Queued>) {
        let connection = match self.usable_connection().await {
            Ok(connection) => connection,
            Err(error) => {
                self.shared.committing.store(false, Ordering::Relaxed);
                for queued in group {
                    let _ = queued.done.send(Err(error.clone()));
                }
                return;
            }
        };
        if group.len() > 1 {
            match apply_all(&connection, &group).await {
                Ok(results) => {
                    self.shared.committing.store(true, Ordering::Relaxed);
                    for (queued, result) in group.into_iter().zip(results) {
                        let _ = queued.done.send(Ok(result));
                    }
                    return;
                }
                Err(error) => {
                    tracing::debug!(%error, writes = group.len(), "grouped audit write failed; applying each alone");
                    if !is_request_error(&error) {
                        self.discard_connection().await;
                    }
                }
            }
        }
        let mut store_failure: Option<AuditError> = None;
        for queued in group {
            if let Some(error) = &store_failure {
                let _ = queued.done.send(Err(error.clone()));
                continue;
            }
            let result = match self.usable_connection().await {
                Ok(connection) => apply_alone(&connection, &queued.write).await,
                Err(error) => Err(StoreError::Store(error)),
            };
            let result = match result {
                Ok(value) => {
                    self.shared.committing.store(true, Ordering::Relaxed);
                    Ok(value)
                }
                Err(StoreError::Request(error)) => Err(error),
                Err(StoreError::Store(error)) => {
                    tracing::warn!(%error, "audit store write failed: reconnecting for the next write");
                    self.shared.committing.store(false, Ordering::Relaxed);
                    self.discard_connection().await;
                    store_failure = Some(error.clone());
                    Err(error)
                }
            };
            let _ = queued.done.send(result);
        }
    }

    /// The writer's connection, connecting afresh after a failure; fails
    /// while the SQLite file is gone or the store does not answer.
    async fn usable_connection(&mut self) -> Result<DatabaseConnection, AuditError> {
        if let Some(file) = &self.file
            && !file.is_in_place()
        {
            if self.connection.is_some() {
                tracing::error!(path = %file.path().display(), "the SQLite audit file was removed or replaced: refusing writes until it can be opened again");
            }
            self.discard_connection().await;
        }
        if let Some(connection) = &self.connection {
            return Ok(connection.clone());
        }
        let replaced_file = self.file.as_ref().is_some_and(|file| !file.is_in_place());
        let connection = self.connector.connect_writer().await?;
        if replaced_file {
            // a new file: its schema, and readers that read it rather than the removed one
            let readers = self.connector.connect_readers().await?;
            if let Some(file) = &mut self.file {
                *file = SqliteFile::at(PathBuf::from(file.path()))?;
            }
            *self
                .shared
                .readers
                .write()
                .unwrap_or_else(|e| e.into_inner()) = readers;
            tracing::warn!("the SQLite audit file was opened again");
        }
        self.connection = Some(connection.clone());
        Ok(connection)
    }

    async fn discard_connection(&mut self) {
        if self.connector.is_memory() {
            // reconnecting would open a new, empty database
            return;
        }
        if let Some(connection) = self.connection.take() {
            let _ = connection.close().await;
        }
    }
}

/// A write's failure: the request's own (a repeated idempotency key) or the store's.
enum StoreError {
    Request(AuditError),
    Store(AuditError),
}

/// A failure caused by the write itself rather than by the store.
fn is_request_error(error: &DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

async fn apply_all(db: &DatabaseConnection, group: &[Queued]) -> Result<Vec<i64>, DbErr> {
    let transaction = db.begin().await?;
    let mut results = Vec::with_capacity(group.len());
    for queued in group {
        results.push(apply(&transaction, &queued.write).await?);
    }
    transaction.commit().await?;
    Ok(results)
}

async fn apply_alone(db: &DatabaseConnection, write: &Write) -> Result<i64, StoreError> {
    let applied = async {
        let transaction = db.begin().await?;
        let result = apply(&transaction, write).await?;
        transaction.commit().await?;
        Ok::<_, DbErr>(result)
    }
    .await;
    applied.map_err(|error| match write {
        Write::CreateBatch(new) if new.idempotency_key.is_some() && is_request_error(&error) => {
            StoreError::Request(AuditError::DuplicateIdempotencyKey(
                new.idempotency_key.clone().unwrap_or_default(),
            ))
        }
        _ => StoreError::Store(error.into()),
    })
}

async fn apply<C: ConnectionTrait>(connection: &C, write: &Write) -> Result<i64, DbErr> {
    let now = Utc::now();
    match write {
        Write::CreateBatch(new) => {
            let row = batch::ActiveModel {
                id: Set(new.id.clone()),
                idempotency_key: Set(new
                    .idempotency_key
                    .as_deref()
                    .map(|key| stored_key(key, new.dry_run, &new.caller))),
                targets: Set(new.targets.join(",")),
                dry_run: Set(new.dry_run),
                state: Set(BatchState::Running.as_str().to_owned()),
                user_count: Set(0),
                created_at: Set(now),
                finished_at: Set(None),
                owner: Set(Some(new.lease.owner.clone())),
                lease_expires_at: Set(Some(new.lease.expires_at)),
                caller: Set((!new.caller.is_empty()).then(|| new.caller.clone())),
            };
            batch::Entity::insert(row)
                .exec_without_returning(connection)
                .await?;
        }
        Write::InsertRegistrations {
            rows,
            batch_id,
            user_count,
        } => {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                if connection.get_database_backend() == DbBackend::Postgres {
                    connection
                        .execute_raw(bulk_rows::insert(chunk, now))
                        .await?;
                    continue;
                }
                let models = chunk.iter().map(|row| active_registration(row, now));
                registration::Entity::insert_many(models)
                    .exec_without_returning(connection)
                    .await?;
            }
            batch::Entity::update_many()
                // one writer per batch, in input order: the count only grows
                .col_expr(batch::Column::UserCount, (*user_count as i64).into())
                .filter(batch::Column::Id.eq(batch_id.as_str()))
                .exec(connection)
                .await?;
        }
        Write::RecordOutcomes(rows) => {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                if connection.get_database_backend() == DbBackend::Postgres {
                    connection
                        .execute_raw(bulk_rows::upsert_outcomes(chunk, now))
                        .await?;
                    continue;
                }
                let models = chunk.iter().map(|row| active_registration(row, now));
                registration::Entity::insert_many(models)
                    .on_conflict(
                        OnConflict::columns([
                            registration::Column::BatchId,
                            registration::Column::Target,
                            registration::Column::Idx,
                        ])
                        .update_columns([
                            registration::Column::Outcome,
                            registration::Column::VendorUserId,
                            registration::Column::ErrorCode,
                            registration::Column::ErrorMessage,
                            registration::Column::Attempts,
                            registration::Column::VendorCallId,
                            registration::Column::UpdatedAt,
                        ])
                        .to_owned(),
                    )
                    .exec_without_returning(connection)
                    .await?;
            }
        }
        Write::StartVendorCall(call) => {
            let row = vendor_call::ActiveModel {
                id: NotSet,
                target: Set(call.target.clone()),
                vendor: Set(call.vendor.clone()),
                action: Set(call.action.clone()),
                attempt: Set(call.attempt as i32),
                user_count: Set(call.user_count as i32),
                vendor_request_id: Set(None),
                http_status: Set(None),
                vendor_error_code: Set(None),
                error_class: Set(None),
                vendor_job_id: Set(None),
                latency_ms: Set(None),
                started_at: Set(now),
                finished_at: Set(None),
                carried: Set(Some(carried_ranges(&call.carried))),
            };
            return Ok(vendor_call::Entity::insert(row)
                .exec(connection)
                .await?
                .last_insert_id);
        }
        Write::FinishVendorCall(id, end) => {
            vendor_call::Entity::update_many()
                .col_expr(
                    vendor_call::Column::VendorRequestId,
                    end.vendor_request_id.clone().into(),
                )
                .col_expr(
                    vendor_call::Column::HttpStatus,
                    end.http_status.map(i32::from).into(),
                )
                .col_expr(
                    vendor_call::Column::VendorErrorCode,
                    end.vendor_error_code.clone().into(),
                )
                .col_expr(
                    vendor_call::Column::ErrorClass,
                    end.error_class.clone().into(),
                )
                .col_expr(
                    vendor_call::Column::VendorJobId,
                    end.vendor_job_id.clone().into(),
                )
                .col_expr(
                    vendor_call::Column::LatencyMs,
                    Some(end.latency.as_millis() as i64).into(),
                )
                .col_expr(vendor_call::Column::FinishedAt, Some(now).into())
                .filter(vendor_call::Column::Id.eq(*id))
                .exec(connection)
                .await?;
        }
        Write::RenewLeases(lease) => {
            return Ok(batch::Entity::update_many()
                .col_expr(batch::Column::LeaseExpiresAt, Some(lease.expires_at).into())
                .filter(batch::Column::State.eq(BatchState::Running.as_str()))
                .filter(batch::Column::Owner.eq(lease.owner.as_str()))
                .exec(connection)
                .await?
                .rows_affected as i64);
        }
        Write::EndBatch {
            batch_id,
            state,
            owner,
            expired_only,
        } => {
            let mut update = batch::Entity::update_many()
                .col_expr(batch::Column::State, state.as_str().into())
                .col_expr(batch::Column::FinishedAt, Some(now).into())
                .col_expr(batch::Column::Owner, Option::<String>::None.into())
                .col_expr(
                    batch::Column::LeaseExpiresAt,
                    Option::<chrono::DateTime<Utc>>::None.into(),
                )
                .filter(batch::Column::Id.eq(batch_id.as_str()))
                .filter(batch::Column::State.eq(BatchState::Running.as_str()));
            update = match owner {
                Some(owner) => update.filter(batch::Column::Owner.eq(owner.as_str())),
                None => update.filter(batch::Column::Owner.is_null()),
            };
            if *expired_only {
                update = update.filter(
                    Condition::any()
                        .add(batch::Column::LeaseExpiresAt.is_null())
                        .add(batch::Column::LeaseExpiresAt.lt(now)),
                );
            }
            let ended = update.exec(connection).await?.rows_affected;
            if ended > 0 && *state == BatchState::Interrupted {
                mark_unfinished(connection, batch_id, now).await?;
            }
            return Ok(ended as i64);
        }
        Write::Claim {
            batch_id,
            from,
            lease,
        } => {
            return Ok(batch::Entity::update_many()
                .col_expr(batch::Column::State, BatchState::Running.as_str().into())
                .col_expr(
                    batch::Column::FinishedAt,
                    Option::<chrono::DateTime<Utc>>::None.into(),
                )
                .col_expr(batch::Column::Owner, Some(lease.owner.clone()).into())
                .col_expr(batch::Column::LeaseExpiresAt, Some(lease.expires_at).into())
                .filter(batch::Column::Id.eq(batch_id.as_str()))
                .filter(batch::Column::State.eq(from.as_str()))
                .exec(connection)
                .await?
                .rows_affected as i64);
        }
    }
    Ok(0)
}

/// The users a call carries as index ranges per batch, `BATCH:FIRST-LAST;...`:
/// consecutive indexes of one batch become one range, so a call of 1000
/// users of one stream is one short text.
pub(super) fn carried_ranges(carried: &[CarriedUser]) -> String {
    let mut sorted: Vec<&CarriedUser> = carried.iter().collect();
    sorted.sort();
    let mut ranges: Vec<(&str, u64, u64)> = Vec::new();
    for user in sorted {
        match ranges.last_mut() {
            Some((batch_id, _, last))
                if *batch_id == &*user.batch_id && *last + 1 == user.index =>
            {
                *last = user.index;
            }
            _ => ranges.push((&user.batch_id, user.index, user.index)),
        }
    }
    ranges
        .iter()
        .map(|(batch_id, first, last)| format!("{batch_id}:{first}-{last}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The index ranges of `batch_id` in a call's `carried` text.
fn ranges_of<'a>(carried: &'a str, batch_id: &'a str) -> impl Iterator<Item = (u64, u64)> + 'a {
    carried.split(';').filter_map(move |range| {
        let (batch, indexes) = range.rsplit_once(':')?;
        let (first, last) = indexes.split_once('-')?;
        (batch == batch_id).then_some((first.parse().ok()?, last.parse().ok()?))
    })
}

/// Says of each unfinished row of an interrupted batch what is known: no
/// vendor call carried it (`not_sent`), or one did and its answer was never
/// recorded (`answer_lost`).
async fn mark_unfinished<C: ConnectionTrait>(
    connection: &C,
    batch_id: &str,
    now: chrono::DateTime<Utc>,
) -> Result<(), DbErr> {
    let unfinished = [
        Outcome::Pending.as_str(),
        Outcome::NotSent.as_str(),
        Outcome::AnswerLost.as_str(),
    ];
    registration::Entity::update_many()
        .col_expr(
            registration::Column::Outcome,
            Outcome::NotSent.as_str().into(),
        )
        .col_expr(registration::Column::UpdatedAt, now.into())
        .filter(registration::Column::BatchId.eq(batch_id))
        .filter(registration::Column::Outcome.is_in(unfinished))
        .exec(connection)
        .await?;
    let Some(batch) = batch::Entity::find_by_id(batch_id.to_owned())
        .one(connection)
        .await?
    else {
        return Ok(());
    };
    // the calls of the batch's targets since it was created that carried its users, oldest first
    let calls = vendor_call::Entity::find()
        .filter(vendor_call::Column::Target.is_in(super::records::split_targets(&batch.targets)))
        .filter(vendor_call::Column::StartedAt.gte(batch.created_at))
        .filter(vendor_call::Column::Carried.contains(batch_id))
        .order_by_asc(vendor_call::Column::Id)
        .all(connection)
        .await?;
    for call in calls {
        let carried = call.carried.as_deref().unwrap_or_default();
        for (first, last) in ranges_of(carried, batch_id) {
            registration::Entity::update_many()
                .col_expr(
                    registration::Column::Outcome,
                    Outcome::AnswerLost.as_str().into(),
                )
                .col_expr(registration::Column::VendorCallId, Some(call.id).into())
                .filter(registration::Column::BatchId.eq(batch_id))
                .filter(registration::Column::Target.eq(call.target.as_str()))
                .filter(registration::Column::Idx.between(first as i64, last as i64))
                .filter(registration::Column::Outcome.is_in(unfinished))
                .exec(connection)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn carried_users_are_kept_as_ranges_per_batch() {
        let user = |batch: &str, index| CarriedUser {
            batch_id: Arc::from(batch),
            index,
        };
        let carried = carried_ranges(&[
            user("b", 7),
            user("a", 1),
            user("a", 2),
            user("a", 3),
            user("a", 5),
        ]);
        assert_eq!(carried, "a:1-3;a:5-5;b:7-7");
        assert_eq!(
            ranges_of(&carried, "a").collect::<Vec<_>>(),
            [(1, 3), (5, 5)]
        );
        assert_eq!(ranges_of(&carried, "b").collect::<Vec<_>>(), [(7, 7)]);
        assert_eq!(ranges_of(&carried, "c").count(), 0);
    }

    /// A write of `rows` outcome rows, told apart by its batch id.
    fn outcomes(batch: &str, rows: usize) -> Queued {
        let row = RegistrationRow {
            batch_id: batch.to_owned(),
            index: 0,
            target: "t".to_owned(),
            user_id: "u".to_owned(),
            outcome: Outcome::Registered,
            vendor_user_id: None,
            error_code: None,
            error_message: None,
            attempts: 1,
            vendor_call_id: None,
            fingerprint: None,
        };
        Queued {
            write: Write::RecordOutcomes(vec![row; rows]),
            done: oneshot::channel().0,
        }
    }

    fn batches(group: &[Queued]) -> Vec<&str> {
        group
            .iter()
            .map(|queued| match &queued.write {
                Write::RecordOutcomes(rows) => rows[0].batch_id.as_str(),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn a_small_write_goes_in_the_next_group_ahead_of_the_bulk_queued_before_it() {
        let full = BULK_ROWS_PER_GROUP;
        let mut lanes = Lanes::default();
        for stream in ["a", "b", "c", "d"] {
            lanes.push(outcomes(stream, full));
        }
        lanes.push(outcomes("single", 1));
        lanes.push(outcomes("e", full * 4 / 10));
        assert_eq!(batches(&lanes.next_group()), ["single", "a"]);
        assert_eq!(batches(&lanes.next_group()), ["b"]);
        lanes.push(outcomes("single-2", 1));
        assert_eq!(batches(&lanes.next_group()), ["single-2", "c"]);
        // bulk writes share a group up to the rows of a group, in their order
        assert_eq!(batches(&lanes.next_group()), ["d"]);
        lanes.push(outcomes("f", full * 3 / 10));
        lanes.push(outcomes("g", full * 4 / 10));
        assert_eq!(batches(&lanes.next_group()), ["e", "f"]);
        assert_eq!(batches(&lanes.next_group()), ["g"]);
        assert!(lanes.is_empty());
    }

    #[test]
    fn a_bulk_write_over_the_rows_of_a_group_still_goes_alone() {
        let mut lanes = Lanes::default();
        lanes.push(outcomes("huge", 5 * BULK_ROWS_PER_GROUP));
        lanes.push(outcomes("next", 10));
        assert_eq!(batches(&lanes.next_group()), ["huge"]);
        assert_eq!(batches(&lanes.next_group()), ["next"]);
    }

    #[test]
    fn small_writes_past_a_groups_share_wait_for_the_next_group_in_their_order() {
        let mut lanes = Lanes::default();
        let names: Vec<String> = (0..WRITES_PER_GROUP + 3).map(|n| format!("s{n}")).collect();
        for name in &names {
            lanes.push(outcomes(name, 1));
        }
        assert_eq!(lanes.next_group().len(), WRITES_PER_GROUP);
        assert_eq!(batches(&lanes.next_group()), names[WRITES_PER_GROUP..]);
    }
}
