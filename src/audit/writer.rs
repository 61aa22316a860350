//! The batched audit writer: one task that takes every write of the audit
//! store, groups the writes waiting at the same moment into one transaction,
//! and acknowledges each only once it is committed. Many small writes
//! (thousands of callers each opening a batch of one user) then cost one
//! commit, not thousands.
//!
//! If a grouped transaction fails, each of its writes is applied again on
//! its own, so that a failure is reported to the write that caused it (a
//! repeated idempotency key) and never to its neighbours.

use chrono::Utc;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    TransactionTrait,
    sea_query::OnConflict,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    entity::{batch, registration, vendor_call},
    records::{
        AuditError, BatchState, NewBatch, NewVendorCall, ROWS_PER_STATEMENT, RegistrationRow,
        VendorCallEnd, active_registration,
    },
};

/// Writes waiting to be applied before the writer stops taking more into a group.
const WRITES_PER_GROUP: usize = 256;
/// Writes queued before writers wait.
const QUEUE: usize = 1024;

/// One write of the audit store.
#[derive(Debug, Clone)]
pub(super) enum Write {
    CreateBatch(NewBatch),
    FinishBatch {
        batch_id: String,
        state: BatchState,
        user_count: u64,
    },
    InsertRegistrations(Vec<RegistrationRow>),
    RecordOutcomes(Vec<RegistrationRow>),
    StartVendorCall(NewVendorCall),
    FinishVendorCall(i64, VendorCallEnd),
}

/// A write and where its result goes (the new row's id for `StartVendorCall`).
pub(super) struct Queued {
    pub write: Write,
    pub done: oneshot::Sender<Result<i64, AuditError>>,
}

pub(super) fn spawn(db: DatabaseConnection) -> mpsc::Sender<Queued> {
    let (sender, mut receiver) = mpsc::channel::<Queued>(QUEUE);
    tokio::spawn(async move {
        let mut group = Vec::with_capacity(WRITES_PER_GROUP);
        while receiver.recv_many(&mut group, WRITES_PER_GROUP).await > 0 {
            apply_group(&db, std::mem::take(&mut group)).await;
        }
    });
    sender
}

async fn apply_group(db: &DatabaseConnection, group: Vec<Queued>) {
    if group.len() > 1 {
        match apply_all(db, &group).await {
            Ok(results) => {
                for (queued, result) in group.into_iter().zip(results) {
                    let _ = queued.done.send(Ok(result));
                }
                return;
            }
            Err(error) => {
                tracing::debug!(%error, writes = group.len(), "grouped audit write failed; applying each alone");
            }
        }
    }
    for queued in group {
        let result = apply_alone(db, &queued.write).await;
        let _ = queued.done.send(result);
    }
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

async fn apply_alone(db: &DatabaseConnection, write: &Write) -> Result<i64, AuditError> {
    let applied = async {
        let transaction = db.begin().await?;
        let result = apply(&transaction, write).await?;
        transaction.commit().await?;
        Ok::<_, DbErr>(result)
    }
    .await;
    applied.map_err(|error| match write {
        Write::CreateBatch(new)
            if new.idempotency_key.is_some()
                && matches!(
                    error.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
        {
            AuditError::DuplicateIdempotencyKey(new.idempotency_key.clone().unwrap_or_default())
        }
        _ => error.into(),
    })
}

async fn apply<C: ConnectionTrait>(connection: &C, write: &Write) -> Result<i64, DbErr> {
    let now = Utc::now();
    match write {
        Write::CreateBatch(new) => {
            let row = batch::ActiveModel {
                id: Set(new.id.clone()),
                idempotency_key: Set(new.idempotency_key.clone()),
                targets: Set(new.targets.join(",")),
                dry_run: Set(new.dry_run),
                state: Set(BatchState::Running.as_str().to_owned()),
                user_count: Set(0),
                created_at: Set(now),
                finished_at: Set(None),
            };
            batch::Entity::insert(row)
                .exec_without_returning(connection)
                .await?;
        }
        Write::FinishBatch {
            batch_id,
            state,
            user_count,
        } => {
            batch::Entity::update_many()
                .col_expr(batch::Column::State, state.as_str().into())
                .col_expr(batch::Column::UserCount, (*user_count as i64).into())
                .col_expr(batch::Column::FinishedAt, Some(now).into())
                .filter(batch::Column::Id.eq(batch_id.as_str()))
                .exec(connection)
                .await?;
        }
        Write::InsertRegistrations(rows) => {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let models = chunk.iter().map(|row| active_registration(row, now));
                registration::Entity::insert_many(models)
                    .exec_without_returning(connection)
                    .await?;
            }
        }
        Write::RecordOutcomes(rows) => {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
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
    }
    Ok(0)
}
