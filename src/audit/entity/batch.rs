//! One row per batch (one `BatchRegister` call or one `BatchRegisterStream`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "batches")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub idempotency_key: Option<String>,
    /// Target names, comma-separated, in the caller's order.
    pub targets: String,
    pub dry_run: bool,
    /// `running`, `completed` or `aborted`.
    pub state: String,
    pub user_count: i64,
    pub created_at: ChronoDateTimeUtc,
    pub finished_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
