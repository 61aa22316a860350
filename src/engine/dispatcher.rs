//! The dispatcher of one target: owns the target's queue, coalesces users
//! from every caller into the fullest calls the vendor accepts, takes each
//! call's first rate permit while it fills, and keeps up to `max_in_flight`
//! calls going; each answered call is settled (see `settle`).
//!
//! It never puts the same user id twice into one call (vendors match answers
//! by user id), nor two users the vendor's answer would name alike (their
//! `answer_keys`), never lets a partly filled call wait longer than `linger`
//! plus the wait for its permit, and never sends a user whose caller's
//! deadline passed before its call left.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
};

use tokio::{
    sync::{Semaphore, mpsc},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

use super::{
    call::{CallRequest, CallService},
    call_log::SharedCallLog,
    queue::{Group, Pending},
    settle::{settle, settle_unsent_past_deadline},
    target::TargetSpec,
};
use crate::{outbound::rate_limit::Limiter, vendor_api::SharedVendor};

/// Groups queued per target before writers wait; each batch also bounds its own users.
const QUEUED_GROUPS: usize = 64;

/// Starts the dispatcher of a target; users sent on the returned queue get registered.
pub(super) fn spawn(
    target: Arc<TargetSpec>,
    service: CallService,
    limiter: Arc<dyn Limiter>,
    log: SharedCallLog,
    tracker: TaskTracker,
    exit: CancellationToken,
) -> mpsc::Sender<Group> {
    let (sender, receiver) = mpsc::channel(QUEUED_GROUPS);
    let dispatcher = Dispatcher {
        in_flight: Arc::new(Semaphore::new(target.max_in_flight)),
        target,
        service,
        limiter,
        log,
        tracker: tracker.clone(),
        exit,
        queue: receiver,
        buffered: VecDeque::new(),
    };
    // the dispatcher itself is not tracked: it lives as long as its queue; the calls it starts are
    tokio::spawn(dispatcher.run());
    sender
}

struct Dispatcher {
    target: Arc<TargetSpec>,
    service: CallService,
    /// The target's limiter: a call's first permit is taken here, while its batch fills.
    limiter: Arc<dyn Limiter>,
    log: SharedCallLog,
    tracker: TaskTracker,
    /// Cancelled when the server exits: outcome writes stop being retried.
    exit: CancellationToken,
    queue: mpsc::Receiver<Group>,
    /// Users taken off the queue but not yet in a call, oldest first.
    buffered: VecDeque<Arc<Pending>>,
    in_flight: Arc<Semaphore>,
}

impl Dispatcher {
    async fn run(mut self) {
        loop {
            // wait for room first, so the call is formed from the fullest queue
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                return;
            };
            let Some(users) = self.next_call().await else {
                return;
            };
            self.target.metrics.queued_users.dec_by(users.len() as i64);
            // a caller whose deadline passed is no longer waiting: its users stay unsent
            let now = Instant::now();
            let (expired, users): (Vec<_>, Vec<_>) = users
                .into_iter()
                .partition(|pending| pending.batch.deadline_passed(now));
            if !expired.is_empty() {
                let (target, log, exit) =
                    (self.target.clone(), self.log.clone(), self.exit.clone());
                self.tracker.spawn(async move {
                    settle_unsent_past_deadline(&target, log.as_ref(), &exit, expired).await;
                });
            }
            if users.is_empty() {
                continue;
            }
            self.target.metrics.call_users.observe(users.len() as f64);
            let service = self.service.clone();
            let log = self.log.clone();
            let target = self.target.clone();
            let exit = self.exit.clone();
            self.tracker.spawn(async move {
                let request = CallRequest::first(target.clone(), users.clone());
                let response = match service.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                drop(permit);
                settle(&target, log.as_ref(), &exit, users, response).await;
            });
        }
    }

    /// Up to `max_batch` users for one call, with the call's rate permit.
    ///
    /// A partial call waits at most `linger` for more users; past that, it
    /// goes out as soon as the quota allows, and keeps taking users until
    /// then: a call that could not leave sooner anyway leaves fuller.
    /// `None` once the queue is closed and nothing is buffered.
    async fn next_call(&mut self) -> Option<Vec<Arc<Pending>>> {
        if self.buffered.is_empty() {
            let group = self.queue.recv().await?;
            self.buffered.extend(group);
        }
        let mut call = FillingCall::new(&self.target);
        call.fill(&mut self.buffered);
        let deadline = Instant::now() + self.target.linger;
        while !call.is_full() {
            match tokio::time::timeout_at(deadline, self.queue.recv()).await {
                Ok(Some(group)) => {
                    self.buffered.extend(group);
                    call.fill(&mut self.buffered);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let limiter = self.limiter.clone();
        let mut permit = limiter.acquire();
        let mut queue_open = true;
        while !call.is_full() && queue_open {
            tokio::select! {
                biased;
                () = &mut permit => {
                    call.finish(&mut self.buffered);
                    return Some(call.users);
                }
                group = self.queue.recv() => match group {
                    Some(group) => {
                        self.buffered.extend(group);
                        call.fill(&mut self.buffered);
                    }
                    None => queue_open = false,
                },
            }
        }
        permit.await;
        call.finish(&mut self.buffered);
        Some(call.users)
    }
}

/// A call being filled: one user id at most once, since vendors match
/// answers by user id, and one answer key at most once, since the vendor's
/// answer names users by those too; a user who repeats either waits for a
/// later call.
struct FillingCall {
    users: Vec<Arc<Pending>>,
    user_ids: HashSet<String>,
    answer_keys: HashSet<String>,
    held_back: VecDeque<Arc<Pending>>,
    vendor: SharedVendor,
    max: usize,
}

impl FillingCall {
    fn new(target: &TargetSpec) -> Self {
        FillingCall {
            users: Vec::new(),
            user_ids: HashSet::new(),
            answer_keys: HashSet::new(),
            held_back: VecDeque::new(),
            vendor: target.vendor.clone(),
            max: target.max_batch,
        }
    }

    fn is_full(&self) -> bool {
        self.users.len() >= self.max
    }

    /// Moves users from the buffer until the call is full.
    fn fill(&mut self, buffered: &mut VecDeque<Arc<Pending>>) {
        while !self.is_full() {
            let Some(pending) = buffered.pop_front() else {
                return;
            };
            let keys = self.vendor.answer_keys(&pending.user);
            let repeats = self.user_ids.contains(&pending.user.user_id)
                || keys.iter().any(|key| self.answer_keys.contains(key));
            if repeats {
                self.held_back.push_back(pending);
                continue;
            }
            self.user_ids.insert(pending.user.user_id.clone());
            self.answer_keys.extend(keys);
            self.users.push(pending);
        }
    }

    /// Puts the users held back in front of the buffer, in their order.
    fn finish(&mut self, buffered: &mut VecDeque<Arc<Pending>>) {
        while let Some(pending) = self.held_back.pop_back() {
            buffered.push_front(pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use tokio::{sync::Semaphore, time::Instant};
    use tower::{service_fn, util::BoxCloneService};

    use super::*;
    use crate::{
        domain::Outcome,
        engine::{
            call::CallResponse,
            testing::{
                CountingLimiter, MemoryCallLog, batch, batch_with_deadline, group, named_group,
                registered, target,
            },
        },
    };

    /// A call as the fake vendor stack saw it: when it came, and its user ids.
    type SeenCall = (Duration, Vec<String>);

    /// The fake outbound stack: records each call, waits for a permit of
    /// `gate` (when given) and registers every user.
    struct FakeStack {
        calls: mpsc::UnboundedReceiver<SeenCall>,
        in_flight_peak: Arc<AtomicUsize>,
        gate: Arc<Semaphore>,
    }

    /// Starts a dispatcher for `spec` in front of a fake stack.
    fn start(
        spec: Arc<TargetSpec>,
        gated: bool,
    ) -> (mpsc::Sender<Group>, FakeStack, Arc<MemoryCallLog>) {
        let start = Instant::now();
        let (seen, calls) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(if gated {
            0
        } else {
            Semaphore::MAX_PERMITS
        }));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let in_flight_peak = Arc::new(AtomicUsize::new(0));
        let service = {
            let (gate, in_flight, in_flight_peak) =
                (gate.clone(), in_flight.clone(), in_flight_peak.clone());
            service_fn(move |request: CallRequest| {
                let (gate, in_flight, in_flight_peak, seen) = (
                    gate.clone(),
                    in_flight.clone(),
                    in_flight_peak.clone(),
                    seen.clone(),
                );
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    in_flight_peak.fetch_max(now, Ordering::SeqCst);
                    let user_ids = request
                        .users
                        .iter()
                        .map(|(_, pending)| pending.user.user_id.clone())
                        .collect();
                    seen.send((start.elapsed(), user_ids)).unwrap();
                    gate.acquire().await.unwrap().forget();
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok::<CallResponse, Infallible>(
                        request.settle(registered(request.users.len()), Some(7)),
                    )
                }
            })
        };
        let log = Arc::new(MemoryCallLog::default());
        let queue = spawn(
            spec,
            BoxCloneService::new(service),
            Arc::new(CountingLimiter::default()),
            log.clone(),
            TaskTracker::new(),
            CancellationToken::new(),
        );
        let stack = FakeStack {
            calls,
            in_flight_peak,
            gate,
        };
        (queue, stack, log)
    }

    fn ids(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|n| format!("{prefix}{n}")).collect()
    }

    fn refs(ids: &[String]) -> Vec<&str> {
        ids.iter().map(String::as_str).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn users_of_several_groups_coalesce_into_one_call_up_to_max_batch() {
        let (queue, mut stack, log) = start(target(10, Duration::from_millis(50), 4), false);
        let (a, b, c) = (ids("a", 4), ids("b", 4), ids("c", 4));
        let (batch_a, mut results_a) = batch("batch-a");
        let (batch_b, mut results_b) = batch("batch-b");
        let (batch_c, mut results_c) = batch("batch-c");
        queue.send(group(&batch_a, 0, &refs(&a))).await.unwrap();
        queue.send(group(&batch_b, 0, &refs(&b))).await.unwrap();
        queue.send(group(&batch_c, 0, &refs(&c))).await.unwrap();

        let (at, first) = stack.calls.recv().await.unwrap();
        assert_eq!(at, Duration::ZERO, "a full call goes at once");
        let expected: Vec<String> = a.iter().chain(&b).chain(&c[..2]).cloned().collect();
        assert_eq!(first, expected);
        let (at, second) = stack.calls.recv().await.unwrap();
        assert_eq!(at, Duration::from_millis(50), "the rest waits for linger");
        assert_eq!(second, c[2..].to_vec());

        // each result goes back to the batch its user came from
        for (results, ids, batch_id) in [
            (&mut results_a, &a, "batch-a"),
            (&mut results_b, &b, "batch-b"),
            (&mut results_c, &c, "batch-c"),
        ] {
            let mut got = Vec::new();
            for _ in 0..4 {
                let result = results.recv().await.unwrap();
                assert_eq!(result.batch_id, batch_id);
                assert_eq!(result.outcome, Outcome::Registered);
                assert_eq!(result.attempts, 1);
                got.push(result.user_id);
            }
            got.sort();
            assert_eq!(&got, ids);
        }
        // and every outcome is recorded, with its vendor call
        let rows = log.outcomes.lock().unwrap().clone();
        assert_eq!(rows.len(), 12);
        assert!(
            rows.iter()
                .all(|row| row.vendor_call_id == Some(7) && row.outcome == Outcome::Registered)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn users_whose_callers_deadline_passed_before_their_call_left_are_recorded_not_sent() {
        let (queue, mut stack, log) = start(target(10, Duration::from_millis(50), 4), false);
        // the call waits `linger` (50 ms) for more users: one caller's deadline passes meanwhile
        let (hurried, mut hurried_results) =
            batch_with_deadline("hurried", Some(Instant::now() + Duration::from_millis(20)));
        let (patient, mut patient_results) = batch("patient");
        queue.send(group(&hurried, 0, &["h0", "h1"])).await.unwrap();
        queue.send(group(&patient, 0, &["p0"])).await.unwrap();

        let (_, users) = stack.calls.recv().await.unwrap();
        assert_eq!(
            users,
            ["p0"],
            "only the user whose caller still waits is sent"
        );
        for _ in 0..2 {
            let result = hurried_results.recv().await.unwrap();
            assert_eq!(result.outcome, Outcome::NotSent);
            assert_eq!(result.error_code, "registrar.DeadlineExceeded");
            assert_eq!(result.attempts, 0);
        }
        assert_eq!(
            patient_results.recv().await.unwrap().outcome,
            Outcome::Registered
        );
        let rows = log.outcomes.lock().unwrap().clone();
        let unsent: Vec<_> = rows
            .iter()
            .filter(|row| row.batch_id == "hurried")
            .map(|row| (row.outcome, row.vendor_call_id, row.error_code.clone()))
            .collect();
        assert_eq!(
            unsent,
            vec![
                (
                    Outcome::NotSent,
                    None,
                    Some("registrar.DeadlineExceeded".to_owned())
                );
                2
            ],
            "their rows say they were not sent, and no call carried them"
        );
        assert!(stack.calls.try_recv().is_err(), "one call only");
    }

    #[tokio::test(start_paused = true)]
    async fn a_partly_filled_call_goes_after_linger_with_the_users_that_came_meanwhile() {
        let (queue, mut stack, _log) = start(target(10, Duration::from_millis(50), 4), false);
        let (shared, _results) = batch("batch");
        queue
            .send(group(&shared, 0, &["u0", "u1", "u2"]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        queue.send(group(&shared, 3, &["u3", "u4"])).await.unwrap();

        let (at, users) = stack.calls.recv().await.unwrap();
        assert_eq!(at, Duration::from_millis(50));
        assert_eq!(users, ["u0", "u1", "u2", "u3", "u4"]);
        assert!(stack.calls.try_recv().is_err(), "one call only");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_call_goes_at_once_and_the_remainder_after_linger() {
        let (queue, mut stack, _log) = start(target(5, Duration::from_secs(1), 4), false);
        let (shared, _results) = batch("batch");
        let users = ids("u", 7);
        queue.send(group(&shared, 0, &refs(&users))).await.unwrap();

        let (at, first) = stack.calls.recv().await.unwrap();
        assert_eq!(at, Duration::ZERO);
        assert_eq!(first, users[..5].to_vec());
        let (at, second) = stack.calls.recv().await.unwrap();
        assert_eq!(at, Duration::from_secs(1));
        assert_eq!(second, users[5..].to_vec());
    }

    #[tokio::test(start_paused = true)]
    async fn max_in_flight_bounds_the_calls_in_flight() {
        let (queue, mut stack, _log) = start(target(1, Duration::ZERO, 2), true);
        let (shared, mut results) = batch("batch");
        let users = ids("u", 5);
        queue.send(group(&shared, 0, &refs(&users))).await.unwrap();

        tokio::time::sleep(Duration::from_secs(10)).await;
        let mut seen = Vec::new();
        while let Ok((_, users)) = stack.calls.try_recv() {
            seen.extend(users);
        }
        assert_eq!(seen, ["u0", "u1"], "two calls in flight, no more");

        // one call answered makes room for exactly one more
        stack.gate.add_permits(1);
        let (_, third) = stack.calls.recv().await.unwrap();
        assert_eq!(third, ["u2"]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(stack.calls.try_recv().is_err());

        stack.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        let mut answered = Vec::new();
        for _ in 0..5 {
            answered.push(results.recv().await.unwrap().user_id);
        }
        answered.sort();
        assert_eq!(answered, users);
        assert_eq!(stack.in_flight_peak.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_user_id_waits_for_a_later_call() {
        let (queue, mut stack, _log) = start(target(10, Duration::from_millis(50), 4), false);
        let (first_batch, _first_results) = batch("first");
        let (second_batch, _second_results) = batch("second");
        queue
            .send(group(&first_batch, 0, &["u0", "u1"]))
            .await
            .unwrap();
        queue
            .send(group(&second_batch, 0, &["u1", "u2"]))
            .await
            .unwrap();

        let (_, first) = stack.calls.recv().await.unwrap();
        assert_eq!(first, ["u0", "u1", "u2"]);
        let (_, second) = stack.calls.recv().await.unwrap();
        assert_eq!(second, ["u1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn users_the_answer_would_name_alike_wait_for_a_later_call_in_order() {
        // the scripted vendor's answer names users by their CIAM UserName, as CIAM imports do
        let (queue, mut stack, _log) = start(target(10, Duration::from_millis(50), 4), false);
        let (shared, mut results) = batch("batch");
        queue
            .send(named_group(
                &shared,
                &[
                    ("u0", "same"),
                    ("u1", "same"),
                    ("u2", "other"),
                    ("u3", "same"),
                    ("u4", ""),
                    ("u5", ""),
                ],
            ))
            .await
            .unwrap();

        let (at, first) = stack.calls.recv().await.unwrap();
        assert_eq!(
            at,
            Duration::from_millis(50),
            "a partial call waits for linger"
        );
        assert_eq!(
            first,
            ["u0", "u2", "u4", "u5"],
            "users without a key never collide"
        );
        let (_, second) = stack.calls.recv().await.unwrap();
        assert_eq!(second, ["u1"]);
        let (_, third) = stack.calls.recv().await.unwrap();
        assert_eq!(third, ["u3"]);
        let mut answered = Vec::new();
        for _ in 0..6 {
            let result = results.recv().await.unwrap();
            assert_eq!(result.outcome, Outcome::Registered);
            answered.push(result.user_id);
        }
        answered.sort();
        assert_eq!(answered, ["u0", "u1", "u2", "u3", "u4", "u5"]);
        assert!(stack.calls.try_recv().is_err(), "three calls only");
    }
}
