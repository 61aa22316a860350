//! Retry: re-sends only the users whose failure may be retried.
//!
//! After each attempt the request itself says which part of the answer may be
//! retried (`RetryableRequest::retry_part`): only failures classified
//! retryable or throttled, and only the users they hit. Attempts back off
//! exponentially with jitter (longer after a throttle answer), wait at least
//! as long as the vendor's `Retry-After` asks (up to a cap), stop at a cap of
//! attempts, never start after the last caller's deadline, and draw on a
//! retry budget shared by the target, so that a failing vendor cannot cause
//! a retry storm. Each attempt goes down the stack again, so it
//! takes its own rate permit and gets a fresh signature.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::Instant;
use tower::{
    Layer, Service,
    retry::{
        backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff},
        budget::{Budget, TpsBudget},
    },
    util::rng::HasherRng,
};

use crate::vendor_api::ErrorClass;

/// A request that knows how to retry part of its own answer.
pub trait RetryableRequest: Clone + Send + Sized + 'static {
    type Response: Send + 'static;

    /// The request that retries what `response` says may be retried, and the
    /// class that decided it (throttled wins over retryable); `None` when
    /// every outcome is final.
    fn retry_part(&self, response: &Self::Response) -> Option<(Self, ErrorClass)>;

    /// Folds a retry's answer into the answer so far, replacing the outcomes
    /// of the users it carried.
    fn absorb(answer: &mut Self::Response, retry_answer: Self::Response);

    /// How long the vendor asked to wait before trying again (`Retry-After`).
    fn retry_after(_response: &Self::Response) -> Option<Duration> {
        None
    }

    /// When the last caller waiting for this request stops waiting; a retry
    /// that could only start later is not made. `None`: no deadline.
    fn deadline(&self) -> Option<Instant> {
        None
    }
}

/// The longest wait a vendor's `Retry-After` gets.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How a target retries.
#[derive(Clone)]
pub struct RetryPolicy {
    /// Attempts per user, the first included; at least 1.
    pub max_attempts: u32,
    /// The first backoff after a retryable failure; doubles up to `max_backoff`.
    pub retryable_backoff: Duration,
    /// The first backoff after a throttle answer; doubles up to `max_backoff`.
    pub throttled_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured: a vendor asking for more is retried after this.
    pub max_retry_after: Duration,
    /// Retries allowed beyond `min_retries_per_second`, as a share of first attempts.
    pub budget: Arc<TpsBudget>,
}

impl RetryPolicy {
    pub fn new(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            retryable_backoff: Duration::from_millis(100),
            throttled_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_retry_after: MAX_RETRY_AFTER,
            // finagle's defaults: 10 s window, 10 retries/s floor, 20% of calls
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        }
    }

    fn backoff(&self, first: Duration) -> ExponentialBackoff {
        ExponentialBackoffMaker::new(first, self.max_backoff, 0.5, HasherRng::default())
            .expect("backoff bounds are valid")
            .make_backoff()
    }
}

#[derive(Clone)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    policy: RetryPolicy,
}

async fn call_ready<S, Request>(service: &mut S, request: Request) -> Result<S::Response, S::Error>
where
    S: Service<Request>,
{
    std::future::poll_fn(|context| service.poll_ready(context)).await?;
    service.call(request).await
}

impl<S, Request> Service<Request> for Retry<S>
where
    Request: RetryableRequest,
    S: Service<Request, Response = Request::Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    type Response = Request::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Request::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Box::pin(async move {
            policy.budget.deposit();
            let mut retryable_backoff = policy.backoff(policy.retryable_backoff);
            let mut throttled_backoff = policy.backoff(policy.throttled_backoff);
            let mut answer = call_ready(&mut inner, request.clone()).await?;
            let mut next = request.retry_part(&answer);
            let mut asked_wait = Request::retry_after(&answer);
            let mut attempts = 1;
            while let Some((retry, class)) = next {
                if attempts >= policy.max_attempts {
                    break;
                }
                let backoff = match class {
                    ErrorClass::Throttled => throttled_backoff.next_backoff(),
                    _ => retryable_backoff.next_backoff(),
                };
                let mut resume_at = backoff.deadline();
                if let Some(asked) = asked_wait {
                    resume_at = resume_at.max(Instant::now() + asked.min(policy.max_retry_after));
                }
                // nobody would be waiting for its answer
                if retry
                    .deadline()
                    .is_some_and(|deadline| resume_at >= deadline)
                {
                    break;
                }
                if !policy.budget.withdraw() {
                    break;
                }
                tokio::time::sleep_until(resume_at).await;
                attempts += 1;
                let retry_answer = call_ready(&mut inner, retry.clone()).await?;
                next = retry.retry_part(&retry_answer);
                asked_wait = Request::retry_after(&retry_answer);
                Request::absorb(&mut answer, retry_answer);
            }
            Ok(answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        convert::Infallible,
        sync::{Arc, Mutex},
    };

    use tower::ServiceExt;

    use super::*;

    /// Users by id; the fake vendor fails some of them for a number of attempts.
    #[derive(Clone, Debug)]
    struct Call {
        users: Vec<u32>,
        attempt: u32,
        deadline: Option<Instant>,
    }

    fn call(users: Vec<u32>) -> Call {
        Call {
            users,
            attempt: 1,
            deadline: None,
        }
    }

    type Answer = BTreeMap<u32, (Result<(), ErrorClass>, u32)>;

    /// The fake vendor's `Retry-After`, as a user id no call carries.
    const RETRY_AFTER_MS: u32 = u32::MAX;

    impl RetryableRequest for Call {
        type Response = Answer;

        fn retry_after(answer: &Answer) -> Option<Duration> {
            answer
                .get(&RETRY_AFTER_MS)
                .map(|(_, ms)| Duration::from_millis(u64::from(*ms)))
        }

        fn deadline(&self) -> Option<Instant> {
            self.deadline
        }

        fn retry_part(&self, answer: &Answer) -> Option<(Self, ErrorClass)> {
            let failed: Vec<(u32, ErrorClass)> = answer
                .iter()
                .filter_map(|(user, (result, _))| match result {
                    Err(class) if class.is_retryable() && *user != RETRY_AFTER_MS => {
                        Some((*user, *class))
                    }
                    _ => None,
                })
                .collect();
            let class = if failed
                .iter()
                .any(|(_, class)| *class == ErrorClass::Throttled)
            {
                ErrorClass::Throttled
            } else {
                ErrorClass::Retryable
            };
            (!failed.is_empty()).then(|| {
                (
                    Call {
                        users: failed.iter().map(|(user, _)| *user).collect(),
                        attempt: self.attempt + 1,
                        deadline: self.deadline,
                    },
                    class,
                )
            })
        }

        fn absorb(answer: &mut Answer, retry_answer: Answer) {
            answer.extend(retry_answer);
        }
    }

    /// Fails each user with `class` for the given number of attempts, and records every call.
    #[derive(Clone)]
    struct FakeVendor {
        failures: Arc<BTreeMap<u32, (ErrorClass, u32)>>,
        seen: Arc<Mutex<Vec<Vec<u32>>>>,
        /// Sent with every failing answer.
        retry_after_ms: Option<u32>,
        /// When each call came.
        seen_at: Arc<Mutex<Vec<Instant>>>,
    }

    impl Service<Call> for FakeVendor {
        type Response = Answer;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Answer, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, call: Call) -> Self::Future {
            self.seen.lock().unwrap().push(call.users.clone());
            self.seen_at.lock().unwrap().push(Instant::now());
            let mut answer: Answer = call
                .users
                .iter()
                .map(|user| {
                    let result = match self.failures.get(user) {
                        Some((class, failing_attempts)) if call.attempt <= *failing_attempts => {
                            Err(*class)
                        }
                        _ => Ok(()),
                    };
                    (*user, (result, call.attempt))
                })
                .collect();
            if let Some(ms) = self.retry_after_ms
                && answer.values().any(|(result, _)| result.is_err())
            {
                answer.insert(RETRY_AFTER_MS, (Err(ErrorClass::Permanent), ms));
            }
            std::future::ready(Ok(answer))
        }
    }

    fn vendor(failures: &[(u32, ErrorClass, u32)]) -> FakeVendor {
        FakeVendor {
            failures: Arc::new(
                failures
                    .iter()
                    .map(|(user, class, attempts)| (*user, (*class, *attempts)))
                    .collect(),
            ),
            seen: Arc::default(),
            retry_after_ms: None,
            seen_at: Arc::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn resends_only_the_users_that_failed_retryably() {
        let fake = vendor(&[
            (2, ErrorClass::Retryable, 1),
            (3, ErrorClass::Throttled, 2),
            (4, ErrorClass::Permanent, 9),
        ]);
        let service = RetryLayer::new(RetryPolicy::new(4)).layer(fake.clone());
        let answer = service.oneshot(call(vec![1, 2, 3, 4])).await.unwrap();
        assert_eq!(
            *fake.seen.lock().unwrap(),
            vec![vec![1, 2, 3, 4], vec![2, 3], vec![3]]
        );
        assert_eq!(answer[&1], (Ok(()), 1));
        assert_eq!(answer[&2], (Ok(()), 2));
        assert_eq!(answer[&3], (Ok(()), 3));
        assert_eq!(answer[&4], (Err(ErrorClass::Permanent), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_attempt_cap_with_the_last_failure() {
        let fake = vendor(&[(1, ErrorClass::Retryable, 100)]);
        let service = RetryLayer::new(RetryPolicy::new(3)).layer(fake.clone());
        let answer = service.oneshot(call(vec![1])).await.unwrap();
        assert_eq!(fake.seen.lock().unwrap().len(), 3);
        assert_eq!(answer[&1], (Err(ErrorClass::Retryable), 3));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_the_retry_budget_is_spent() {
        let fake = vendor(&[(1, ErrorClass::Retryable, 1_000)]);
        let mut policy = RetryPolicy::new(1_000);
        // no floor, and each first attempt earns a tenth of a retry
        policy.budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.1));
        let service = RetryLayer::new(policy).layer(fake.clone());
        let mut retries = 0;
        for _ in 0..20 {
            let before = fake.seen.lock().unwrap().len();
            service.clone().oneshot(call(vec![1])).await.unwrap();
            retries += fake.seen.lock().unwrap().len() - before - 1;
        }
        // 20 first attempts at 10% buy about 2 retries, never hundreds
        assert!(retries <= 3, "{retries} retries");
    }

    #[tokio::test(start_paused = true)]
    async fn backs_off_longer_after_a_throttle_answer() {
        for (class, at_least) in [
            (ErrorClass::Retryable, Duration::from_millis(50)),
            (ErrorClass::Throttled, Duration::from_millis(250)),
        ] {
            let fake = vendor(&[(1, class, 1)]);
            let service = RetryLayer::new(RetryPolicy::new(2)).layer(fake);
            let start = tokio::time::Instant::now();
            service.oneshot(call(vec![1])).await.unwrap();
            assert!(
                start.elapsed() >= at_least,
                "{class:?}: {:?}",
                start.elapsed()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_as_long_as_retry_after_asks_up_to_the_cap() {
        for (asked_ms, waited) in [
            // RFC 9110 section 10.2.3 Retry-After: the client waits at least this long
            (5_000, Duration::from_secs(5)),
            // a vendor asking for an hour is retried after the cap
            (3_600_000, MAX_RETRY_AFTER),
        ] {
            let mut fake = vendor(&[(1, ErrorClass::Throttled, 1)]);
            fake.retry_after_ms = Some(asked_ms);
            let service = RetryLayer::new(RetryPolicy::new(4)).layer(fake.clone());
            let answer = service.oneshot(call(vec![1])).await.unwrap();
            assert_eq!(answer[&1], (Ok(()), 2));
            let seen_at = fake.seen_at.lock().unwrap().clone();
            assert_eq!(seen_at.len(), 2);
            let gap = seen_at[1] - seen_at[0];
            assert!(
                gap >= waited && gap < waited + Duration::from_secs(1),
                "asked {asked_ms} ms, waited {gap:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_after_the_callers_deadline() {
        let mut fake = vendor(&[(1, ErrorClass::Retryable, 1)]);
        fake.retry_after_ms = Some(5_000);
        let service = RetryLayer::new(RetryPolicy::new(4)).layer(fake.clone());
        let start = Instant::now();
        let mut request = call(vec![1]);
        request.deadline = Some(start + Duration::from_secs(2));
        let answer = service.oneshot(request).await.unwrap();
        assert_eq!(
            fake.seen.lock().unwrap().len(),
            1,
            "the retry would come too late"
        );
        assert_eq!(answer[&1], (Err(ErrorClass::Retryable), 1));
        assert!(
            start.elapsed() < Duration::from_millis(10),
            "and nothing waited for it"
        );
    }
}
