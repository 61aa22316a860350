//! Rate limit: every attempt waits for a permit of its target's limiter.
//!
//! The limiter is GCRA (the governor crate) with a burst of one, so permits
//! are spaced evenly and no window of one second, aligned or not, ever holds
//! more than the quota. It sits behind the small `Limiter` trait so that a
//! store shared by several replicas can back it later.

use std::{
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::Clock,
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed},
};
use tower::{Layer, Service};

/// A source of permits, one per vendor call attempt.
pub trait Limiter: Send + Sync + 'static {
    /// Resolves when the caller may make one call.
    fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// governor's clock read from tokio's, so that tests can pause and advance time.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

type TokioRateLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// An in-process GCRA limiter for one target.
pub struct GcraLimiter {
    limiter: TokioRateLimiter,
    clock: TokioClock,
}

impl GcraLimiter {
    /// At most `calls_per_second` permits in any one-second window.
    ///
    /// Permits are spaced by `1 s / calls_per_second` plus a safety margin of
    /// `margin` (a fraction, e.g. 0.01), so that jitter between the permit and
    /// the vendor's receipt of the call cannot squeeze one more call into the
    /// vendor's window.
    pub fn per_second(calls_per_second: NonZeroU32, margin: f64) -> Self {
        let spacing = Duration::from_secs(1)
            .div_f64(f64::from(calls_per_second.get()))
            .mul_f64(1.0 + margin.max(0.0));
        let quota = Quota::with_period(spacing)
            .expect("a positive quota has a positive period")
            .allow_burst(NonZeroU32::MIN);
        let clock = TokioClock::default();
        GcraLimiter {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        }
    }
}

impl Limiter for GcraLimiter {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            while let Err(not_until) = self.limiter.check() {
                tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
            }
        })
    }
}

/// Applies a shared `Limiter` to every call of the inner service.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<dyn Limiter>,
}

impl RateLimitLayer {
    pub fn new(limiter: Arc<dyn Limiter>) -> Self {
        RateLimitLayer { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<dyn Limiter>,
}

impl<S, Request> Service<Request> for RateLimit<S>
where
    S: Service<Request> + Clone + Send + 'static,
    S::Future: Send,
    Request: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let limiter = self.limiter.clone();
        // take the service that was driven to readiness, leave a fresh clone behind
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            limiter.acquire().await;
            std::future::poll_fn(|context| inner.poll_ready(context)).await?;
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_quota_in_any_one_second_window() {
        let limiter = Arc::new(GcraLimiter::per_second(NonZeroU32::new(20).unwrap(), 0.0));
        let admitted = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let mut callers = Vec::new();
        for _ in 0..8 {
            let limiter = limiter.clone();
            let admitted = admitted.clone();
            callers.push(tokio::spawn(async move {
                for _ in 0..15 {
                    limiter.acquire().await;
                    admitted.lock().unwrap().push(start.elapsed());
                }
            }));
        }
        for caller in callers {
            caller.await.unwrap();
        }
        let mut admitted = admitted.lock().unwrap().clone();
        admitted.sort();
        assert_eq!(admitted.len(), 120);
        for (position, at) in admitted.iter().enumerate() {
            let in_window = admitted[position..]
                .iter()
                .take_while(|later| **later - *at < Duration::from_secs(1))
                .count();
            assert!(in_window <= 20, "{in_window} permits within 1 s of {at:?}");
        }
        // and the quota is used: 120 permits at 20/s take about 6 s, not more
        assert!(*admitted.last().unwrap() <= Duration::from_millis(6000));
    }
}
