//! The vendor quota as the simulator enforces it: at most `limit` accepted
//! calls in any one-second window, judged over the arrival instants of the
//! calls accepted so far. The window is half-open, so a call arriving exactly
//! one second after an accepted call no longer sees it. Throttled and refused
//! calls never enter the window. Time is `tokio::time::Instant`, so tests can
//! drive it with a paused clock; nothing here sleeps or reads the wall clock.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

/// The width of the quota window: vendors state their quotas per second.
pub(super) const ONE_SECOND: Duration = Duration::from_secs(1);

/// The accepted calls of the last second of one account.
#[derive(Debug)]
pub(super) struct SlidingWindow {
    /// At most this many accepted calls in any window; 0 throttles every call.
    limit: usize,
    width: Duration,
    /// Arrival instants of the accepted calls still inside the window, oldest first.
    recent: VecDeque<Instant>,
}

impl SlidingWindow {
    pub(super) fn per_second(limit: u32) -> Self {
        SlidingWindow {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            width: ONE_SECOND,
            recent: VecDeque::new(),
        }
    }

    /// Whether a call arriving at `now` fits the quota. It does not take a
    /// slot: call [`SlidingWindow::record`] once the call is accepted.
    pub(super) fn admits(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|&arrived| now.saturating_duration_since(arrived) >= self.width)
        {
            self.recent.pop_front();
        }
        self.recent.len() < self.limit
    }

    /// Counts an accepted call that arrived at `now` (instants must not go backwards).
    pub(super) fn record(&mut self, now: Instant) {
        self.recent.push_back(now);
    }
}

/// The largest number of instants inside any half-open window `[t, t + width)`.
/// `instants` must be sorted, oldest first.
pub(super) fn max_in_any_window(instants: &[Instant], width: Duration) -> usize {
    let mut start = 0;
    let mut best = 0;
    for (end, &instant) in instants.iter().enumerate() {
        while start < end && instant.saturating_duration_since(instants[start]) >= width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use tokio::time::advance;

    use super::*;

    fn try_acquire(window: &mut SlidingWindow) -> bool {
        let now = Instant::now();
        let admitted = window.admits(now);
        if admitted {
            window.record(now);
        }
        admitted
    }

    #[tokio::test(start_paused = true)]
    async fn admits_the_limit_then_throttles_until_the_oldest_call_is_a_second_old() {
        let mut window = SlidingWindow::per_second(3);
        assert!(try_acquire(&mut window));
        advance(Duration::from_millis(100)).await;
        assert!(try_acquire(&mut window));
        assert!(try_acquire(&mut window));
        assert!(!try_acquire(&mut window));

        // 999 ms after the first call it is still inside the window.
        advance(Duration::from_millis(899)).await;
        assert!(!try_acquire(&mut window));

        // Exactly 1000 ms after it, the half-open window no longer holds it.
        advance(Duration::from_millis(1)).await;
        assert!(try_acquire(&mut window));
        assert!(!try_acquire(&mut window));

        // The two calls at +100 ms leave together.
        advance(Duration::from_millis(100)).await;
        assert!(try_acquire(&mut window));
        assert!(try_acquire(&mut window));
        assert!(!try_acquire(&mut window));
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_and_refused_calls_take_no_slot() {
        let mut window = SlidingWindow::per_second(1);
        assert!(try_acquire(&mut window));
        for _ in 0..10 {
            advance(Duration::from_millis(50)).await;
            assert!(!try_acquire(&mut window));
        }
        // A call that was admitted but then refused is never recorded.
        advance(Duration::from_millis(500)).await;
        assert!(window.admits(Instant::now()));
        assert!(try_acquire(&mut window));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_quota_throttles_everything() {
        let mut window = SlidingWindow::per_second(0);
        assert!(!try_acquire(&mut window));
        advance(Duration::from_secs(5)).await;
        assert!(!try_acquire(&mut window));
    }

    #[tokio::test(start_paused = true)]
    async fn max_in_any_window_uses_half_open_windows() {
        let start = Instant::now();
        let at = |millis: u64| start + Duration::from_millis(millis);
        assert_eq!(max_in_any_window(&[], ONE_SECOND), 0);
        assert_eq!(max_in_any_window(&[at(0)], ONE_SECOND), 1);
        // 0 and 1000 are a full second apart: never in the same window.
        assert_eq!(max_in_any_window(&[at(0), at(1000)], ONE_SECOND), 1);
        assert_eq!(max_in_any_window(&[at(0), at(999)], ONE_SECOND), 2);
        assert_eq!(
            max_in_any_window(
                &[
                    at(0),
                    at(10),
                    at(500),
                    at(990),
                    at(1005),
                    at(1400),
                    at(1450)
                ],
                ONE_SECOND
            ),
            5
        );
        assert_eq!(max_in_any_window(&[at(7); 4], ONE_SECOND), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_never_holds_more_than_its_limit() {
        // Calls every 70 ms against a limit of 4: the accepted ones never exceed 4 per second.
        let mut window = SlidingWindow::per_second(4);
        let mut accepted = Vec::new();
        for _ in 0..200 {
            if try_acquire(&mut window) {
                accepted.push(Instant::now());
            }
            advance(Duration::from_millis(70)).await;
        }
        assert_eq!(max_in_any_window(&accepted, ONE_SECOND), 4);
        // 14 s of calls at a limit of 4/s cannot accept more than 4 per started second.
        assert!(accepted.len() <= 4 * 15, "{}", accepted.len());
    }
}
