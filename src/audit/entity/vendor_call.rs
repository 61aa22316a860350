//! One row per vendor call attempt, written before the call is made and
//! completed when its answer (or its failure) is known.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "vendor_calls")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub target: String,
    pub vendor: String,
    pub action: String,
    /// 1 for the first attempt of these users, 2 for the first retry, ...
    pub attempt: i32,
    pub user_count: i32,
    pub vendor_request_id: Option<String>,
    pub http_status: Option<i32>,
    pub vendor_error_code: Option<String>,
    /// `retryable`, `throttled` or `permanent` when the call failed as a whole.
    pub error_class: Option<String>,
    /// The vendor job the call submitted or polled (CIAM imports).
    pub vendor_job_id: Option<String>,
    pub latency_ms: Option<i64>,
    pub started_at: ChronoDateTimeUtc,
    pub finished_at: Option<ChronoDateTimeUtc>,
    /// The users the call carries, as index ranges per batch:
    /// `BATCH:FIRST-LAST;...`. Written with the row, before the call is
    /// made; recovery reads it to tell a user sent from one never sent.
    pub carried: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
