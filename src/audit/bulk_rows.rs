//! PostgreSQL's form of the two writes that carry every user, the rows of
//! users just accepted and the rows of their outcomes. Each column's values
//! travel as one array parameter and `UNNEST` turns the arrays back into
//! rows, so a statement of 1000 rows has 17 parameters instead of 13,000:
//! the server parses and plans a short statement once, however many rows
//! it carries.
//!
//! An array bound through sea-query cannot hold a NULL, so each nullable
//! column travels as two arrays: its values (empty where NULL) and whether
//! each row's value is NULL.

use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, Statement, Value};

use super::records::RegistrationRow;

/// The rows as new registrations.
pub(super) fn insert(rows: &[RegistrationRow], now: DateTime<Utc>) -> Statement {
    statement(rows, now, "")
}

/// The rows' outcomes, over the rows already there (an outcome's row is
/// inserted when it is not); a stored fingerprint is kept.
pub(super) fn upsert_outcomes(rows: &[RegistrationRow], now: DateTime<Utc>) -> Statement {
    statement(
        rows,
        now,
        " ON CONFLICT (batch_id, target, idx) DO UPDATE SET \
         outcome = EXCLUDED.outcome, vendor_user_id = EXCLUDED.vendor_user_id, \
         error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message, \
         attempts = EXCLUDED.attempts, vendor_call_id = EXCLUDED.vendor_call_id, \
         updated_at = EXCLUDED.updated_at",
    )
}

fn statement(rows: &[RegistrationRow], now: DateTime<Utc>, on_conflict: &str) -> Statement {
    let sql = format!(
        "INSERT INTO registrations (batch_id, idx, target, user_id, outcome, vendor_user_id, \
         error_code, error_message, attempts, vendor_call_id, fingerprint, created_at, updated_at) \
         SELECT r.batch_id, r.idx, r.target, r.user_id, r.outcome, \
         CASE WHEN r.no_vendor_user_id THEN NULL ELSE r.vendor_user_id END, \
         CASE WHEN r.no_error_code THEN NULL ELSE r.error_code END, \
         CASE WHEN r.no_error_message THEN NULL ELSE r.error_message END, \
         r.attempts, \
         CASE WHEN r.no_vendor_call_id THEN NULL ELSE r.vendor_call_id END, \
         CASE WHEN r.no_fingerprint THEN NULL ELSE r.fingerprint END, \
         $17, $17 \
         FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::bool[], $8::text[], $9::bool[], $10::text[], $11::bool[], \
         $12::int4[], $13::int8[], $14::bool[], $15::text[], $16::bool[]) \
         AS r(batch_id, idx, target, user_id, outcome, vendor_user_id, no_vendor_user_id, \
         error_code, no_error_code, error_message, no_error_message, attempts, \
         vendor_call_id, no_vendor_call_id, fingerprint, no_fingerprint){on_conflict}"
    );
    let (vendor_user_id, no_vendor_user_id) = nullable(rows, |row| row.vendor_user_id.clone());
    let (error_code, no_error_code) = nullable(rows, |row| row.error_code.clone());
    let (error_message, no_error_message) = nullable(rows, |row| row.error_message.clone());
    let (vendor_call_id, no_vendor_call_id) = nullable(rows, |row| row.vendor_call_id);
    let (fingerprint, no_fingerprint) = nullable(rows, |row| row.fingerprint.clone());
    let values: Vec<Value> = vec![
        column(rows, |row| row.batch_id.clone()),
        column(rows, |row| row.index as i64),
        column(rows, |row| row.target.clone()),
        column(rows, |row| row.user_id.clone()),
        column(rows, |row| row.outcome.as_str().to_owned()),
        vendor_user_id,
        no_vendor_user_id,
        error_code,
        no_error_code,
        error_message,
        no_error_message,
        column(rows, |row| row.attempts as i32),
        vendor_call_id,
        no_vendor_call_id,
        fingerprint,
        no_fingerprint,
        now.into(),
    ];
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn column<T>(rows: &[RegistrationRow], value: impl Fn(&RegistrationRow) -> T) -> Value
where
    Vec<T>: Into<Value>,
{
    rows.iter().map(value).collect::<Vec<T>>().into()
}

/// A nullable column's values, the default where NULL, and its NULL flags.
fn nullable<T: Default>(
    rows: &[RegistrationRow],
    value: impl Fn(&RegistrationRow) -> Option<T>,
) -> (Value, Value)
where
    Vec<T>: Into<Value>,
{
    let (values, nulls): (Vec<T>, Vec<bool>) = rows
        .iter()
        .map(|row| match value(row) {
            Some(value) => (value, false),
            None => (T::default(), true),
        })
        .unzip();
    (values.into(), nulls.into())
}
