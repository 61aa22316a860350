//! Schema migrations (sea-orm-migration), applied at start-up and by `registrar migrate`.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateAuditTables),
            Box::new(AddVendorJobId),
            Box::new(DurableBatches),
            Box::new(InPlaceOutcomes),
            Box::new(BatchCallers),
        ]
    }
}

#[derive(DeriveIden)]
enum Batches {
    Table,
    Id,
    IdempotencyKey,
    Targets,
    DryRun,
    State,
    UserCount,
    CreatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum VendorCalls {
    Table,
    Id,
    Target,
    Vendor,
    Action,
    Attempt,
    UserCount,
    VendorRequestId,
    HttpStatus,
    VendorErrorCode,
    ErrorClass,
    LatencyMs,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Registrations {
    Table,
    Id,
    BatchId,
    Idx,
    Target,
    UserId,
    Outcome,
    VendorUserId,
    ErrorCode,
    ErrorMessage,
    Attempts,
    VendorCallId,
    CreatedAt,
    UpdatedAt,
}

struct CreateAuditTables;

impl MigrationName for CreateAuditTables {
    fn name(&self) -> &str {
        "m20261121_000001_create_audit_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAuditTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Batches::Table)
                    .if_not_exists()
                    .col(string(Batches::Id).primary_key())
                    .col(string_null(Batches::IdempotencyKey).unique_key())
                    .col(text(Batches::Targets))
                    .col(boolean(Batches::DryRun))
                    .col(string(Batches::State))
                    .col(big_integer(Batches::UserCount))
                    .col(timestamp_with_time_zone(Batches::CreatedAt))
                    .col(timestamp_with_time_zone_null(Batches::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(VendorCalls::Table)
                    .if_not_exists()
                    .col(big_pk_auto(VendorCalls::Id))
                    .col(string(VendorCalls::Target))
                    .col(string(VendorCalls::Vendor))
                    .col(string(VendorCalls::Action))
                    .col(integer(VendorCalls::Attempt))
                    .col(integer(VendorCalls::UserCount))
                    .col(string_null(VendorCalls::VendorRequestId))
                    .col(integer_null(VendorCalls::HttpStatus))
                    .col(string_null(VendorCalls::VendorErrorCode))
                    .col(string_null(VendorCalls::ErrorClass))
                    .col(big_integer_null(VendorCalls::LatencyMs))
                    .col(timestamp_with_time_zone(VendorCalls::StartedAt))
                    .col(timestamp_with_time_zone_null(VendorCalls::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_vendor_calls_target_started")
                    .table(VendorCalls::Table)
                    .col(VendorCalls::Target)
                    .col(VendorCalls::StartedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Registrations::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Registrations::Id))
                    .col(string(Registrations::BatchId))
                    .col(big_integer(Registrations::Idx))
                    .col(string(Registrations::Target))
                    .col(text(Registrations::UserId))
                    .col(string(Registrations::Outcome))
                    .col(text_null(Registrations::VendorUserId))
                    .col(string_null(Registrations::ErrorCode))
                    .col(text_null(Registrations::ErrorMessage))
                    .col(integer(Registrations::Attempts))
                    .col(big_integer_null(Registrations::VendorCallId))
                    .col(timestamp_with_time_zone(Registrations::CreatedAt))
                    .col(timestamp_with_time_zone(Registrations::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_registrations_batch_target_idx")
                    .table(Registrations::Table)
                    .col(Registrations::BatchId)
                    .col(Registrations::Target)
                    .col(Registrations::Idx)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_registrations_user_id")
                    .table(Registrations::Table)
                    .col(Registrations::UserId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_registrations_target_outcome")
                    .table(Registrations::Table)
                    .col(Registrations::Target)
                    .col(Registrations::Outcome)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Registrations::Table.into_iden(),
            VendorCalls::Table.into_iden(),
            Batches::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// CIAM imports: the job a vendor call submitted or polled.
struct AddVendorJobId;

#[derive(DeriveIden)]
enum VendorCallsJob {
    #[sea_orm(iden = "vendor_calls")]
    Table,
    VendorJobId,
}

impl MigrationName for AddVendorJobId {
    fn name(&self) -> &str {
        "m20261122_000002_add_vendor_job_id"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddVendorJobId {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(VendorCallsJob::Table)
                    .add_column(string_null(VendorCallsJob::VendorJobId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(VendorCallsJob::Table)
                    .drop_column(VendorCallsJob::VendorJobId)
                    .to_owned(),
            )
            .await
    }
}

/// Durable batches: the server instance that owns a running batch and until
/// when its lease holds, the users each vendor call carries, and each row's
/// fingerprint of what was asked, so a replay can resume the batch, knowing
/// which users were sent, and tell a changed request from the same one.
struct DurableBatches;

#[derive(DeriveIden)]
enum BatchesLease {
    #[sea_orm(iden = "batches")]
    Table,
    Owner,
    LeaseExpiresAt,
    State,
}

#[derive(DeriveIden)]
enum VendorCallsCarried {
    #[sea_orm(iden = "vendor_calls")]
    Table,
    Carried,
}

#[derive(DeriveIden)]
enum RegistrationsFingerprint {
    #[sea_orm(iden = "registrations")]
    Table,
    Fingerprint,
}

impl MigrationName for DurableBatches {
    fn name(&self) -> &str {
        "m20261202_000003_durable_batches"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DurableBatches {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE
        manager
            .alter_table(
                Table::alter()
                    .table(BatchesLease::Table)
                    .add_column(string_null(BatchesLease::Owner))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(BatchesLease::Table)
                    .add_column(timestamp_with_time_zone_null(BatchesLease::LeaseExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(RegistrationsFingerprint::Table)
                    .add_column(string_null(RegistrationsFingerprint::Fingerprint))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(VendorCallsCarried::Table)
                    .add_column(text_null(VendorCallsCarried::Carried))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_batches_state_lease")
                    .table(BatchesLease::Table)
                    .col(BatchesLease::State)
                    .col(BatchesLease::LeaseExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_batches_state_lease")
                    .table(BatchesLease::Table)
                    .to_owned(),
            )
            .await?;
        for (table, column) in [
            (
                VendorCallsCarried::Table.into_iden(),
                VendorCallsCarried::Carried.into_iden(),
            ),
            (
                RegistrationsFingerprint::Table.into_iden(),
                RegistrationsFingerprint::Fingerprint.into_iden(),
            ),
            (
                BatchesLease::Table.into_iden(),
                BatchesLease::LeaseExpiresAt.into_iden(),
            ),
            (
                BatchesLease::Table.into_iden(),
                BatchesLease::Owner.into_iden(),
            ),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Outcomes written in place. A row's outcome is written twice, `pending`
/// and then final, so an index on `outcome` makes every outcome a new row
/// version with an entry in every index of the table. Without it, and with
/// room left on each page, PostgreSQL updates the row in place (a
/// heap-only tuple): no index is touched. Counting a batch's outcomes and
/// listing a batch's rows use the `(batch_id, target, idx)` index; a listing
/// by target and outcome across batches reads the target's rows in id order.
struct InPlaceOutcomes;

#[derive(DeriveIden)]
enum RegistrationsOutcome {
    #[sea_orm(iden = "registrations")]
    Table,
    Target,
    Outcome,
}

/// Percent of each page that inserts fill, leaving the rest for the final
/// version of the rows just inserted (a little wider than the pending one).
const REGISTRATIONS_FILLFACTOR: u32 = 45;

impl MigrationName for InPlaceOutcomes {
    fn name(&self) -> &str {
        "m20261202_000004_in_place_outcomes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for InPlaceOutcomes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_registrations_target_outcome")
                    .table(RegistrationsOutcome::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(&format!(
                    "ALTER TABLE registrations SET (fillfactor = {REGISTRATIONS_FILLFACTOR})"
                ))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE registrations RESET (fillfactor)")
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_registrations_target_outcome")
                    .table(RegistrationsOutcome::Table)
                    .col(RegistrationsOutcome::Target)
                    .col(RegistrationsOutcome::Outcome)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

/// The configured caller (`[[callers]]`) that opened each batch: GetBatch
/// and ListRegistrations answer a caller only for its own batches.
struct BatchCallers;

#[derive(DeriveIden)]
enum BatchesCaller {
    #[sea_orm(iden = "batches")]
    Table,
    Caller,
}

impl MigrationName for BatchCallers {
    fn name(&self) -> &str {
        "m20261202_000005_batch_callers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for BatchCallers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BatchesCaller::Table)
                    .add_column(string_null(BatchesCaller::Caller))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BatchesCaller::Table)
                    .drop_column(BatchesCaller::Caller)
                    .to_owned(),
            )
            .await
    }
}
