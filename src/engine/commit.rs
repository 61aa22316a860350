//! Writes that must commit: a call's outcomes and a batch's end. They are
//! tried again, backing off, until the audit store commits them, because a
//! result the store does not hold is never reported; they give up only when
//! the server exits, leaving rows that the next recovery marks truthfully
//! (a call carried them, its answer was not recorded).

use std::{future::Future, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::audit::AuditError;

/// The wait before the second attempt; it doubles after each, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Runs `write` until it commits, or until `exit`; `None` when it gave up.
pub(super) async fn until_committed<T, F, Fut>(
    what: &str,
    exit: &CancellationToken,
    mut write: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AuditError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1u32;
    loop {
        match write().await {
            Ok(value) => {
                if attempt > 1 {
                    tracing::info!(
                        what,
                        attempts = attempt,
                        "audit write committed after the store came back"
                    );
                }
                return Some(value);
            }
            Err(error) => {
                if attempt == 1 || attempt.is_power_of_two() {
                    tracing::warn!(what, attempt, %error, "audit write did not commit; trying again");
                }
                tokio::select! {
                    () = exit.cancelled() => {
                        tracing::error!(what, attempts = attempt, %error, "server exiting before the audit write committed: the next recovery marks its rows");
                        return None;
                    }
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_is_tried_until_it_commits() {
        let attempts = AtomicU32::new(0);
        let committed = until_committed("test", &CancellationToken::new(), || async {
            match attempts.fetch_add(1, Ordering::Relaxed) {
                0..=3 => Err(AuditError::Unavailable("down".to_owned())),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(committed, Some(7));
        assert_eq!(attempts.load(Ordering::Relaxed), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_gives_up_only_at_exit() {
        let exit = CancellationToken::new();
        let cancel = exit.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            cancel.cancel();
        });
        let gave_up: Option<()> = until_committed("test", &exit, || async {
            Err(AuditError::Unavailable("down".to_owned()))
        })
        .await;
        assert_eq!(gave_up, None);
    }
}
