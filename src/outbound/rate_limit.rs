//! Rate limit: every attempt waits for a permit of its target's limiter.
//!
//! The limiter is GCRA (the governor crate) with a burst of one, so permits
//! are spaced evenly and no window of one second, aligned or not, ever holds
//! more than the quota. When the vendor answers with its throttle signal
//! anyway (its real quota is lower than configured), a second, adaptive GCRA
//! slows the target down for every caller and lets it recover gradually; it
//! never exceeds the configured quota. The limiter sits behind the small
//! `Limiter` trait so that a store shared by several replicas can back it (`shared_limiter`).

use std::{
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
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

    /// The vendor answered a call with its throttle signal: slow down.
    fn throttled(&self) {}

    /// The vendor answered a call without throttling it: recover gradually.
    fn succeeded(&self) {}

    /// The rate permits are currently given at, in calls per second.
    fn current_rate(&self) -> f64;

    /// Resolves when a call may leave now without putting more calls than
    /// the current rate into any one-second window of sends. Permits are
    /// evenly spaced, but the work between a permit and its send (an audit
    /// write, signing) takes a varying time; this guard, right before the
    /// send, keeps calls that bunch up from breaking the vendor's window.
    fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// A shared limiter is a limiter: so that one can be both decorated (see
/// `Metered`) and asked how it paces.
impl<L: Limiter + ?Sized> Limiter for Arc<L> {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.as_ref().acquire()
    }

    fn throttled(&self) {
        self.as_ref().throttled();
    }

    fn succeeded(&self) {
        self.as_ref().succeeded();
    }

    fn current_rate(&self) -> f64 {
        self.as_ref().current_rate()
    }

    fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.as_ref().before_send()
    }
}

/// governor's clock read from tokio's, so that tests can pause and advance time.
///
/// It can also be set back, briefly, to the instant a waiter was due: see
/// `wait_for`. Clones share that setting.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: tokio::time::Instant,
    /// Nanoseconds since `start` plus one while set back; 0 when not.
    set_back: Arc<AtomicU64>,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            start: tokio::time::Instant::now(),
            set_back: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl TokioClock {
    fn real_now(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        match self.set_back.load(Ordering::Acquire) {
            0 => self.real_now(),
            nanos => Duration::from_nanos(nanos - 1),
        }
    }
}

type TokioRateLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// After a throttle answer, the rate falls to this share of what it was.
const DECREASE: f64 = 0.8;
/// Throttle answers within this long of a decrease are the same episode
/// (calls already in flight) and do not lower the rate again.
const DECREASE_DEBOUNCE: Duration = Duration::from_secs(1);
/// Each successful call raises the rate by this share of the quota...
const INCREASE_PER_SUCCESS: f64 = 0.005;
/// ...but not above this share of the rate that was last throttled, for
/// `THROTTLED_RATE_MEMORY`: the vendor's real quota is probably just below it.
const BELOW_THROTTLED_RATE: f64 = 0.95;
const THROTTLED_RATE_MEMORY: Duration = Duration::from_secs(60);
/// The slowest rate the adaptive limiter falls to, in calls per second.
const MIN_RATE: f64 = 0.5;

/// How an adaptive rate moves after throttle answers and successes: the
/// steps above, for a rate kept elsewhere (the quota shared through Redis).
#[derive(Debug, Clone, Copy)]
pub struct Adaptation {
    pub decrease: f64,
    pub debounce: Duration,
    pub increase_per_success: f64,
    pub below_throttled_rate: f64,
    pub memory: Duration,
    pub min_rate: f64,
}

/// The in-process limiter's steps.
pub const ADAPTATION: Adaptation = Adaptation {
    decrease: DECREASE,
    debounce: DECREASE_DEBOUNCE,
    increase_per_success: INCREASE_PER_SUCCESS,
    below_throttled_rate: BELOW_THROTTLED_RATE,
    memory: THROTTLED_RATE_MEMORY,
    min_rate: MIN_RATE,
};

/// An in-process GCRA limiter for one target.
pub struct GcraLimiter {
    /// When the last calls were sent, oldest first (at most the quota's worth).
    sent: Mutex<std::collections::VecDeque<Duration>>,
    /// The configured quota: never exceeded.
    ceiling: TokioRateLimiter,
    /// The configured quota in calls per second.
    quota: f64,
    margin: f64,
    /// The window the send guard counts in: one second stretched by the
    /// margin, for the time between a send and the vendor's decision
    /// (reading the body, checking the signature, its scheduling).
    send_window: Duration,
    clock: TokioClock,
    /// Serializes checks, for the clock's set-back.
    gate: Mutex<()>,
    adaptive: Mutex<Adaptive>,
}

/// The slowed-down rate after throttle answers; `limiter` is `None` at full quota.
struct Adaptive {
    rate: f64,
    limiter: Option<Arc<TokioRateLimiter>>,
    /// The rate `limiter` was built for.
    built_rate: f64,
    last_decrease: Option<Duration>,
    throttled_rate: Option<(f64, Duration)>,
}

fn gcra(calls_per_second: f64, margin: f64, clock: &TokioClock) -> TokioRateLimiter {
    let spacing = Duration::from_secs(1)
        .div_f64(calls_per_second)
        .mul_f64(1.0 + margin.max(0.0));
    let quota = Quota::with_period(spacing)
        .expect("a positive quota has a positive period")
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct_with_clock(quota, clock.clone())
}

/// How far a woken waiter's permit may be dated back to the instant it was
/// due. Timers fire a tick late; dating the permit back keeps the schedule
/// from drifting by that much on every call (a lost ~2% of the quota). The
/// calls then lag their slots by at most this much, far less than the
/// safety margin leaves in any one-second window (20 ms at the default 2 %).
const MAX_SET_BACK: Duration = Duration::from_millis(2);

/// A change of the slowed-down rate that rebuilds its GCRA, in calls per
/// second, or as a share of the rate when that is smaller.
const REBUILD_CHANGE: f64 = 0.25;
const REBUILD_SHARE: f64 = 0.05;

/// Waits for one permit of `limiter`.
async fn wait_for(limiter: &TokioRateLimiter, clock: &TokioClock, gate: &Mutex<()>) {
    let mut due: Option<Duration> = None;
    loop {
        let decision = {
            // one check at a time, so that a set-back clock is only ever this waiter's
            let _gate = gate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let real = clock.real_now();
            if let Some(due) = due.filter(|due| real >= *due && real - *due <= MAX_SET_BACK) {
                clock.set_back.store(
                    u64::try_from(due.as_nanos()).unwrap_or(u64::MAX - 1) + 1,
                    Ordering::Release,
                );
            }
            let decision = limiter.check();
            clock.set_back.store(0, Ordering::Release);
            decision
        };
        match decision {
            Ok(()) => return,
            Err(not_until) => {
                let at = not_until.earliest_possible();
                due = Some(at);
                tokio::time::sleep(at.saturating_sub(clock.real_now())).await;
            }
        }
    }
}

impl GcraLimiter {
    /// At most `calls_per_second` permits in any one-second window.
    ///
    /// Permits are spaced by `1 s / calls_per_second` plus a safety margin of
    /// `margin` (a fraction, e.g. 0.02), so that jitter between the permit and
    /// the vendor's receipt of the call cannot squeeze one more call into the
    /// vendor's window.
    pub fn per_second(calls_per_second: NonZeroU32, margin: f64) -> Self {
        Self::at_rate(f64::from(calls_per_second.get()), margin)
    }

    /// As `per_second`, at a rate that need not be whole (a replica's share
    /// of a quota); at least `MIN_RATE`.
    pub fn at_rate(calls_per_second: f64, margin: f64) -> Self {
        let quota = calls_per_second.max(MIN_RATE);
        let clock = TokioClock::default();
        GcraLimiter {
            ceiling: gcra(quota, margin, &clock),
            quota,
            margin,
            send_window: Duration::from_secs(1).mul_f64(1.0 + margin.max(0.0)),
            clock,
            sent: Mutex::new(std::collections::VecDeque::new()),
            gate: Mutex::new(()),
            adaptive: Mutex::new(Adaptive {
                rate: quota,
                limiter: None,
                built_rate: quota,
                last_decrease: None,
                throttled_rate: None,
            }),
        }
    }

    fn adaptive(&self) -> std::sync::MutexGuard<'_, Adaptive> {
        self.adaptive
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_rate(&self, adaptive: &mut Adaptive, rate: f64) {
        let rate = rate.clamp(MIN_RATE.min(self.quota), self.quota);
        adaptive.rate = rate;
        if rate >= self.quota {
            adaptive.limiter = None;
            adaptive.built_rate = self.quota;
            return;
        }
        // rebuild only on a real change: a fresh GCRA forgets its spacing; the
        // change is also relative, so that slow rates follow every decrease
        let real_change = REBUILD_CHANGE.min(adaptive.built_rate * REBUILD_SHARE);
        if adaptive.limiter.is_some() && (rate - adaptive.built_rate).abs() < real_change {
            return;
        }
        adaptive.built_rate = rate;
        adaptive.limiter = Some(Arc::new(gcra(rate, self.margin, &self.clock)));
    }
}

/// A rate as log lines show it: two decimals, not `13.44000000000001`.
fn rounded_for_logs(rate: f64) -> f64 {
    (rate * 100.0).round() / 100.0
}

impl Limiter for GcraLimiter {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let adaptive = self.adaptive().limiter.clone();
            if let Some(adaptive) = adaptive {
                wait_for(&adaptive, &self.clock, &self.gate).await;
            }
            wait_for(&self.ceiling, &self.clock, &self.gate).await;
        })
    }

    fn throttled(&self) {
        let now = self.clock.now();
        let mut adaptive = self.adaptive();
        if adaptive
            .last_decrease
            .is_some_and(|last| now.saturating_sub(last) < DECREASE_DEBOUNCE)
        {
            return;
        }
        adaptive.last_decrease = Some(now);
        adaptive.throttled_rate = Some((adaptive.rate, now));
        let slower = adaptive.rate * DECREASE;
        self.set_rate(&mut adaptive, slower);
        tracing::warn!(
            rate = rounded_for_logs(adaptive.rate),
            quota = self.quota,
            "vendor throttled: slowing down"
        );
    }

    fn succeeded(&self) {
        let now = self.clock.now();
        let mut adaptive = self.adaptive();
        if adaptive.limiter.is_none() {
            return;
        }
        let mut limit = self.quota;
        if let Some((throttled_rate, at)) = adaptive.throttled_rate {
            if now.saturating_sub(at) < THROTTLED_RATE_MEMORY {
                limit = limit.min(throttled_rate * BELOW_THROTTLED_RATE);
            } else {
                adaptive.throttled_rate = None;
            }
        }
        let faster =
            (adaptive.rate + self.quota * INCREASE_PER_SUCCESS).min(limit.max(adaptive.rate));
        self.set_rate(&mut adaptive, faster);
    }

    fn current_rate(&self) -> f64 {
        self.adaptive().rate
    }

    fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let limit = self.current_rate().floor().max(1.0) as usize;
                let wait = {
                    let mut sent = self
                        .sent
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let now = self.clock.real_now();
                    while sent
                        .front()
                        .is_some_and(|at| now.saturating_sub(*at) >= self.send_window)
                    {
                        sent.pop_front();
                    }
                    if sent.len() < limit {
                        sent.push_back(now);
                        None
                    } else {
                        // the oldest send of a full window must leave it first
                        let oldest = sent[sent.len() - limit];
                        Some((oldest + self.send_window).saturating_sub(now))
                    }
                };
                match wait {
                    None => return,
                    Some(wait) => tokio::time::sleep(wait).await,
                }
            }
        })
    }
}

/// Holds each request until `Limiter::before_send` lets it leave.
#[derive(Clone)]
pub struct SendWindowLayer {
    limiter: Arc<dyn Limiter>,
}

impl SendWindowLayer {
    pub fn new(limiter: Arc<dyn Limiter>) -> Self {
        SendWindowLayer { limiter }
    }
}

impl<S> Layer<S> for SendWindowLayer {
    type Service = SendWindow<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SendWindow {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

#[derive(Clone)]
pub struct SendWindow<S> {
    inner: S,
    limiter: Arc<dyn Limiter>,
}

impl<S, Request> Service<Request> for SendWindow<S>
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
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            limiter.before_send().await;
            std::future::poll_fn(|context| inner.poll_ready(context)).await?;
            inner.call(request).await
        })
    }
}

/// A request that may carry the permit of its call already: a dispatcher
/// that waits for the permit while it fills a batch passes it down, so the
/// call does not take a second one.
pub trait PermitHolder {
    fn holds_permit(&self) -> bool;
}

/// Applies a shared `Limiter` to every call of the inner service that does
/// not hold its permit already.
#[derive(Clone)]
/// A limiter that reports to metrics: how long each permit took, and the
/// rate it paces at after every answer (it drops after a throttle answer).
pub struct Metered<L> {
    inner: L,
    permit_wait: prometheus_client::metrics::histogram::Histogram,
    paced_rate: prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>,
}

impl<L: Limiter> Metered<L> {
    pub fn new(
        inner: L,
        permit_wait: prometheus_client::metrics::histogram::Histogram,
        paced_rate: prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>,
    ) -> Self {
        paced_rate.set(inner.current_rate());
        Metered {
            inner,
            permit_wait,
            paced_rate,
        }
    }
}

impl<L: Limiter> Limiter for Metered<L> {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let asked = tokio::time::Instant::now();
            self.inner.acquire().await;
            self.permit_wait.observe(asked.elapsed().as_secs_f64());
        })
    }

    fn throttled(&self) {
        self.inner.throttled();
        self.paced_rate.set(self.inner.current_rate());
    }

    fn succeeded(&self) {
        self.inner.succeeded();
        self.paced_rate.set(self.inner.current_rate());
    }

    fn current_rate(&self) -> f64 {
        self.inner.current_rate()
    }

    fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.inner.before_send()
    }
}

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
    Request: PermitHolder + Send + 'static,
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
            if !request.holds_permit() {
                limiter.acquire().await;
            }
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

    #[tokio::test(start_paused = true)]
    async fn a_throttle_answer_slows_every_caller_and_the_rate_recovers_gradually() {
        let limiter = GcraLimiter::per_second(NonZeroU32::new(20).unwrap(), 0.0);
        assert_eq!(limiter.current_rate(), 20.0);
        limiter.throttled();
        // the answers of calls already in flight are the same episode
        limiter.throttled();
        assert!((limiter.current_rate() - 16.0).abs() < 1e-9);

        // at 16/s, 32 permits take about 2 s, not 1.6 s
        let start = tokio::time::Instant::now();
        for _ in 0..33 {
            limiter.acquire().await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(1990),
            "{:?}",
            start.elapsed()
        );

        // recovery is gradual, and stays below the throttled rate for a while
        for _ in 0..40 {
            limiter.succeeded();
        }
        assert!(limiter.current_rate() <= 20.0 * 0.95 + 1e-9);
        assert!(limiter.current_rate() > 16.0);
        tokio::time::advance(THROTTLED_RATE_MEMORY + Duration::from_secs(1)).await;
        for _ in 0..400 {
            limiter.succeeded();
        }
        assert_eq!(limiter.current_rate(), 20.0);
    }

    /// Everything the fmt layer writes, for asserting on a log line.
    #[derive(Clone, Default)]
    struct CapturedLog(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for CapturedLog {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_throttle_log_line_shows_the_rate_rounded() {
        let log = CapturedLog::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let limiter = GcraLimiter::per_second(NonZeroU32::new(20).unwrap(), 0.0);
        limiter.throttled();
        tokio::time::advance(DECREASE_DEBOUNCE).await;
        // 16 + 8 * 0.1 is 16.800000000000008 in f64: 80 % of it is not 13.44
        for _ in 0..8 {
            limiter.succeeded();
        }
        let unrounded = limiter.current_rate() * DECREASE;
        assert_ne!(unrounded, 13.44, "the case needs an unrounded rate");
        tracing::subscriber::with_default(subscriber, || limiter.throttled());

        let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(
            log.contains("vendor throttled: slowing down rate=13.44 quota=20.0"),
            "{log}"
        );
        assert_eq!(rounded_for_logs(13.44000000000001), 13.44);
        assert_eq!(rounded_for_logs(0.5), 0.5);
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_throttling_slows_to_the_floor_and_never_stops_the_target() {
        let limiter = GcraLimiter::per_second(NonZeroU32::new(20).unwrap(), 0.0);
        for _ in 0..100 {
            limiter.throttled();
            tokio::time::advance(DECREASE_DEBOUNCE).await;
        }
        assert_eq!(limiter.current_rate(), MIN_RATE);
        let start = tokio::time::Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        // permits at the floor are 1 / MIN_RATE apart (less the set-back), not stopped
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs_f64(1.0 / MIN_RATE) - MAX_SET_BACK
                && elapsed <= Duration::from_secs(3),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_send_guard_spreads_calls_that_bunch_up_after_their_permits() {
        let limiter = Arc::new(GcraLimiter::per_second(NonZeroU32::new(10).unwrap(), 0.0));
        let start = tokio::time::Instant::now();
        // 25 calls arrive at the send point at once, as after a stalled audit write
        let mut sends = Vec::new();
        for _ in 0..25 {
            limiter.before_send().await;
            sends.push(start.elapsed());
        }
        for (position, at) in sends.iter().enumerate() {
            let in_window = sends[position..]
                .iter()
                .take_while(|later| **later - *at < Duration::from_secs(1))
                .count();
            assert!(in_window <= 10, "{in_window} sends within 1 s of {at:?}");
        }
        assert!(sends[24] >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_send_guard_follows_the_slowed_down_rate() {
        let limiter = GcraLimiter::per_second(NonZeroU32::new(20).unwrap(), 0.0);
        limiter.throttled();
        limiter.throttled();
        let start = tokio::time::Instant::now();
        for _ in 0..17 {
            limiter.before_send().await;
        }
        // 16 fit the slowed rate's first window; the 17th waits for it to pass
        assert!(start.elapsed() >= Duration::from_secs(1));
    }
}
