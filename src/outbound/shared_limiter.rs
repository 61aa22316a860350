//! The limiter of a target whose quota is shared through Redis
//! (`shared_quota`), with the fallback for when Redis is away.
//!
//! While Redis answers, every permit is a slot of the quota's one schedule
//! in Redis, and every send passes the shared send guard there, so the
//! calls of all replicas together never put more than the quota into any
//! one-second window; a throttle answer lowers the shared rate for all.
//! When Redis does not answer within `permit_timeout`, the target paces
//! alone at its share, the quota divided by the replicas last seen alive
//! (rounded down to whole calls, so that the shares add up to no more than
//! the quota in any window), never the whole quota; it goes back to the
//! shared schedule by itself once the heartbeat is answered again.
//!
//! Both changes of mode keep the window: entering the fallback, the first
//! fallback permit, and every call still holding a shared slot, waits until
//! every shared slot already handed out (at most `RESERVE_AHEAD` ahead) has
//! left a window behind it; coming back,
//! a replica takes its fallback permit too for a grace period, until every
//! other replica must have come back as well, so that the sends of replicas
//! still in the fallback (which the shared send log does not hold) and of
//! those already back never add up to more than the quota.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use super::{
    rate_limit::{ADAPTATION, GcraLimiter, Limiter},
    shared_quota::{QuotaKey, QuotaStore, Reservation},
};

/// How far ahead of now a slot may be reserved: bounds how long the shared
/// calls already granted go on after Redis is lost.
pub const RESERVE_AHEAD: Duration = Duration::from_secs(1);

/// How a target paces, as ListTargets and the logs say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Alone: no shared quota is configured.
    Alone,
    /// On the quota shared through Redis.
    Shared,
    /// Redis is away: at this replica's share of the quota.
    Fallback { share: f64 },
}

/// A replica's share of `quota` among `replicas`: whole calls per second
/// when there are at least as many calls as replicas, so that the shares'
/// windows add up to no more than the quota.
pub fn fallback_share(quota: f64, replicas: u32) -> f64 {
    let replicas = f64::from(replicas.max(1));
    if quota >= replicas {
        (quota / replicas).floor()
    } else {
        quota / replicas
    }
}

/// The mode's fields a permit or a send acts on, copied out of the lock.
struct Now {
    up: bool,
    fallback: Arc<GcraLimiter>,
    fallback_from: Instant,
    grace_until: Instant,
}

/// A target's limiter on the shared quota.
pub struct SharedLimiter {
    target: Arc<str>,
    store: Arc<QuotaStore>,
    key: QuotaKey,
    quota: f64,
    margin: f64,
    /// The shared rate Redis last answered (f64 bits): below the quota after
    /// a throttle answer of any replica.
    shared_rate: Arc<AtomicU64>,
    mode: Mutex<Mode>,
}

/// Which of Redis's changes this limiter has followed, and its fallback.
struct Mode {
    /// The store's epoch last followed; `None` before the first.
    epoch: Option<u64>,
    up: bool,
    /// This replica's pacing alone, at its share of the quota.
    fallback: Arc<GcraLimiter>,
    share: f64,
    /// No fallback permit before this.
    fallback_from: Instant,
    /// Back on the shared quota: fallback permits are taken too until then.
    grace_until: Instant,
}

impl SharedLimiter {
    pub fn new(
        target: Arc<str>,
        store: Arc<QuotaStore>,
        key: QuotaKey,
        quota: f64,
        margin: f64,
    ) -> SharedLimiter {
        let replicas = store.settings().fallback_replicas;
        let share = fallback_share(quota, replicas);
        let now = Instant::now();
        SharedLimiter {
            target,
            store,
            key,
            quota,
            margin,
            shared_rate: Arc::new(AtomicU64::new(quota.to_bits())),
            mode: Mutex::new(Mode {
                epoch: None,
                up: false,
                fallback: Arc::new(GcraLimiter::at_rate(share, margin)),
                share,
                fallback_from: now,
                grace_until: now,
            }),
        }
    }

    /// The window a send counts in: one second stretched by the margin.
    fn window(&self) -> Duration {
        Duration::from_secs(1).mul_f64(1.0 + self.margin)
    }

    /// Entering the fallback: the shared slots already granted leave first.
    fn hold(&self) -> Duration {
        RESERVE_AHEAD + self.window()
    }

    /// Coming back: until every other replica's heartbeat must have been
    /// answered too (two intervals, each beat within the permit timeout),
    /// and their last fallback sends have left the window.
    fn grace(&self) -> Duration {
        let settings = self.store.settings();
        settings.heartbeat_interval * 2 + settings.permit_timeout + self.window()
    }

    /// The mode, brought up to the store's last change.
    fn mode(&self) -> MutexGuard<'_, Mode> {
        let mut mode = self
            .mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reach = self.store.reach();
        if mode.epoch == Some(reach.epoch) {
            return mode;
        }
        let first = mode.epoch.is_none();
        let was_up = mode.up;
        mode.epoch = Some(reach.epoch);
        mode.up = reach.up;
        if reach.up {
            if !first && !was_up {
                mode.grace_until = reach.since + self.grace();
                tracing::info!(target = %self.target, "target paces on the shared quota again");
            }
        } else {
            let share = fallback_share(self.quota, reach.replicas);
            mode.fallback = Arc::new(GcraLimiter::at_rate(share, self.margin));
            mode.share = share;
            mode.fallback_from = if first {
                Instant::now()
            } else {
                reach.since + self.hold()
            };
            tracing::warn!(
                target = %self.target,
                share,
                replicas = reach.replicas,
                quota = self.quota,
                "shared quota unreachable: target paces at its share of the quota"
            );
        }
        mode
    }

    /// What a permit or a send acts on, read once so that no lock is held
    /// while it waits.
    fn now(&self) -> Now {
        let mode = self.mode();
        Now {
            up: mode.up,
            fallback: mode.fallback.clone(),
            fallback_from: mode.fallback_from,
            grace_until: mode.grace_until,
        }
    }

    /// How the target paces now.
    pub fn pacing(&self) -> Pacing {
        let mode = self.mode();
        if mode.up {
            Pacing::Shared
        } else {
            Pacing::Fallback { share: mode.share }
        }
    }

    fn set_shared_rate(&self, rate: f64) {
        if rate.is_finite() && rate > 0.0 {
            self.shared_rate.store(rate.to_bits(), Ordering::Relaxed);
        }
    }

    fn shared_rate(&self) -> f64 {
        f64::from_bits(self.shared_rate.load(Ordering::Relaxed))
    }

    /// Tells Redis how a call was answered, without waiting: the shared
    /// rate it answers is this limiter's from then on.
    fn report(&self, answer: Answer) {
        let (store, key, quota, shared_rate) = (
            self.store.clone(),
            self.key.clone(),
            self.quota,
            self.shared_rate.clone(),
        );
        tokio::spawn(async move {
            let rate = match answer {
                Answer::Throttled => store.throttled(&key, quota, &ADAPTATION).await,
                Answer::Succeeded => store.succeeded(&key, quota, &ADAPTATION).await,
            };
            match rate {
                Ok(rate) => shared_rate.store(rate.to_bits(), Ordering::Relaxed),
                Err(error) => store.mark_down(&error),
            }
        });
    }
}

/// How the vendor answered a call, as the shared rate hears of it.
#[derive(Clone, Copy)]
enum Answer {
    Throttled,
    Succeeded,
}

impl Limiter for SharedLimiter {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let mut fallback_taken = false;
            loop {
                let Now {
                    up,
                    fallback,
                    fallback_from,
                    grace_until,
                } = self.now();
                if !up {
                    tokio::time::sleep_until(fallback_from).await;
                    fallback.acquire().await;
                    return;
                }
                if !fallback_taken && Instant::now() < grace_until {
                    fallback.acquire().await;
                    fallback_taken = true;
                }
                match self
                    .store
                    .reserve(&self.key, self.quota, self.margin, RESERVE_AHEAD)
                    .await
                {
                    Ok(Reservation::Reserved { wait, rate }) => {
                        self.set_shared_rate(rate);
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                        return;
                    }
                    Ok(Reservation::Booked { retry_in, rate }) => {
                        self.set_shared_rate(rate);
                        tokio::time::sleep(retry_in).await;
                    }
                    Err(error) => self.store.mark_down(&error),
                }
            }
        })
    }

    fn throttled(&self) {
        let mode = self.mode();
        mode.fallback.throttled();
        if !mode.up {
            return;
        }
        drop(mode);
        self.report(Answer::Throttled);
    }

    fn succeeded(&self) {
        let mode = self.mode();
        mode.fallback.succeeded();
        // at the quota there is nothing to recover (another replica's
        // slowdown reaches this one with its next permit)
        if !mode.up || self.shared_rate() >= self.quota {
            return;
        }
        drop(mode);
        self.report(Answer::Succeeded);
    }

    fn current_rate(&self) -> f64 {
        let mode = self.mode();
        if mode.up {
            self.shared_rate()
        } else {
            mode.fallback.current_rate()
        }
    }

    fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let mut local_passed = false;
            loop {
                let Now {
                    up,
                    fallback,
                    fallback_from,
                    grace_until,
                } = self.now();
                if !up {
                    // a call whose permit was a shared slot (Redis was lost
                    // since, maybe while the shared window held it) waits
                    // out the hold as the first fallback permit does, so
                    // the shared sends already made leave the window first;
                    // then it passes this replica's own send guard
                    tokio::time::sleep_until(fallback_from).await;
                    fallback.before_send().await;
                    return;
                }
                if !local_passed && Instant::now() < grace_until {
                    fallback.before_send().await;
                    local_passed = true;
                }
                let limit = self.shared_rate().floor().max(1.0) as u32;
                match self.store.send(&self.key, limit, self.window()).await {
                    Ok(None) => return,
                    Ok(Some(wait)) => tokio::time::sleep(wait).await,
                    Err(error) => self.store.mark_down(&error),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_shares_add_up_to_no_more_than_the_quota() {
        assert_eq!(fallback_share(20.0, 1), 20.0);
        assert_eq!(fallback_share(20.0, 2), 10.0);
        // 3 × 16 in a window, not 3 × 17 = 51 > 50
        assert_eq!(fallback_share(50.0, 3), 16.0);
        assert_eq!(fallback_share(20.0, 0), 20.0);
        assert!((fallback_share(1.0, 4) - 0.25).abs() < 1e-12);
        for quota in [1.0, 20.0, 50.0] {
            for replicas in 1..=12 {
                let share = fallback_share(quota, replicas);
                // whole shares: a window holds at most `share` permits of each
                if share >= 1.0 {
                    assert!(share * f64::from(replicas) <= quota, "{quota} {replicas}");
                }
            }
        }
    }
}
