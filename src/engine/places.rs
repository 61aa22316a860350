//! Places shared by every batch of one caller: results accepted but not yet
//! answered. A batch takes one place per (user, target) as it accepts a
//! message and gives it back as the caller reads the result, as each batch
//! already does with its own places; a caller's streams together wait for
//! this allowance, so a caller at its limit waits on its own answers and
//! never takes the room other callers' users need.
//!
//! A leaf: it knows nothing of callers' names or configuration.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::Semaphore;

/// One caller's allowance of unanswered results.
#[derive(Debug)]
pub struct SharedPlaces {
    semaphore: Semaphore,
    limit: usize,
}

impl SharedPlaces {
    pub fn new(limit: usize) -> Arc<SharedPlaces> {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(SharedPlaces {
            semaphore: Semaphore::new(limit),
            limit,
        })
    }

    /// The most places the caller may hold at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Places free right now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }
}

/// The places one batch holds of its caller's allowance; what it still holds
/// when it is dropped goes back, so a batch cut short never shrinks it.
#[derive(Debug)]
pub(super) struct HeldPlaces {
    shared: Arc<SharedPlaces>,
    held: AtomicUsize,
}

impl HeldPlaces {
    pub fn new(shared: Arc<SharedPlaces>) -> HeldPlaces {
        HeldPlaces {
            shared,
            held: AtomicUsize::new(0),
        }
    }

    /// Waits for `count` places (at most the whole allowance, so it always ends).
    pub async fn take(&self, count: usize) -> Result<(), tokio::sync::AcquireError> {
        let count = count.min(self.shared.limit);
        let permits = u32::try_from(count).unwrap_or(u32::MAX);
        self.shared.semaphore.acquire_many(permits).await?.forget();
        self.held.fetch_add(permits as usize, Ordering::Relaxed);
        Ok(())
    }

    /// Gives one place back, if the batch still holds one.
    pub fn give_back_one(&self) {
        let gave = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_sub(1)
            })
            .is_ok();
        if gave {
            self.shared.semaphore.add_permits(1);
        }
    }
}

impl Drop for HeldPlaces {
    fn drop(&mut self) {
        let held = *self.held.get_mut();
        if held > 0 {
            self.shared.semaphore.add_permits(held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_go_back_one_by_one_and_all_at_once_when_the_batch_is_dropped() {
        let shared = SharedPlaces::new(10);
        let first = HeldPlaces::new(shared.clone());
        first.take(6).await.unwrap();
        assert_eq!(shared.available(), 4);
        first.give_back_one();
        assert_eq!(shared.available(), 5);
        let second = HeldPlaces::new(shared.clone());
        second.take(5).await.unwrap();
        assert_eq!(shared.available(), 0);
        drop(first);
        assert_eq!(
            shared.available(),
            5,
            "the dropped batch's 5 places came back"
        );
        second.give_back_one();
        drop(second);
        assert_eq!(shared.available(), 10);
    }

    #[tokio::test]
    async fn a_take_larger_than_the_allowance_takes_the_whole_allowance() {
        let shared = SharedPlaces::new(3);
        let held = HeldPlaces::new(shared.clone());
        held.take(100).await.unwrap();
        assert_eq!(shared.available(), 0);
        for _ in 0..100 {
            held.give_back_one();
        }
        assert_eq!(shared.available(), 3, "never more than were taken");
    }
}
