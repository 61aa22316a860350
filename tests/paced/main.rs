//! The integration tests that hold registrar to the wall clock: the quota
//! several replicas share through Redis (`shared_quota`) and a small
//! caller's wait behind big streams (`fairness`). They assert on rates,
//! one-second windows and waits of a few call intervals, which a
//! neighbouring test's load on a two-core machine would move; so they are a
//! binary of their own, which cargo runs after `tests/it/` has finished, and
//! each takes [`alone`] first, so that they also run one at a time. They use
//! the harness of `tests/it/`.

#[path = "../it/common/mod.rs"]
mod common;

mod fairness;
mod shared_quota;

/// Held for the whole of a test: the tests of this binary run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until no other test of this binary runs; the guard keeps it so.
pub async fn alone() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}
