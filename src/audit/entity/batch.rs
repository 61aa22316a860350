//! One row per batch (one `BatchRegister` call or one `BatchRegisterStream`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "batches")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The caller's key; a dry run's is stored with a `dry-run/` prefix, so
    /// that it never blocks a real run with the same key, and a configured
    /// caller's with `caller:NAME/`, so that callers never share a key.
    #[sea_orm(unique)]
    pub idempotency_key: Option<String>,
    /// Target names, comma-separated, in the caller's order.
    pub targets: String,
    pub dry_run: bool,
    /// `running`, `completed`, `interrupted` or (older versions) `aborted`.
    pub state: String,
    /// Users of the caller's input recorded so far.
    pub user_count: i64,
    pub created_at: ChronoDateTimeUtc,
    pub finished_at: Option<ChronoDateTimeUtc>,
    /// The server run that owns the batch while it runs: `INSTANCE/RUN`.
    pub owner: Option<String>,
    /// Until when the owner's lease holds; renewed while the owner lives.
    pub lease_expires_at: Option<ChronoDateTimeUtc>,
    /// The configured caller that opened the batch; `None` for anyone (a
    /// server without `[[callers]]`).
    pub caller: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
