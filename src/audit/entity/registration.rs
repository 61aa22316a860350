//! One row per (batch, user, target): written as `pending` (or `rejected`)
//! before any vendor call carries the user, then updated with the outcome.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "registrations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub batch_id: String,
    /// The user's 0-based position in the caller's input.
    pub idx: i64,
    pub target: String,
    pub user_id: String,
    /// `pending`, `registered`, `already_exists`, `rejected`, `failed`,
    /// `validated`, or for an interrupted batch `not_sent` or `answer_lost`.
    pub outcome: String,
    pub vendor_user_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i32,
    /// The last vendor call that carried the user, written before the call is made.
    pub vendor_call_id: Option<i64>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
    /// A keyed hash of what the caller asked for this user, in a batch
    /// opened with an idempotency key (see docs/outcomes-and-errors.md#idempotencykey).
    pub fingerprint: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
