//! The dispatcher of one target: owns the target's queue, coalesces users
//! from every caller into the fullest calls the vendor accepts, takes each
//! call's first rate permit while it fills, and keeps up to `max_in_flight`
//! calls going; each answered call is settled (see `settle`).
//!
//! Callers share each call fairly: the dispatcher takes groups off the queue
//! as soon as they come, keeps each batch's users in a line of their own,
//! and fills a call round-robin across the batches that have users, a fair
//! share of the room left to each in turn. So a caller with one user gets it
//! into the next call that leaves, however much several huge streams have
//! queued, and a call still leaves full when only one batch has users.
//!
//! It never puts the same user id twice into one call (vendors match answers
//! by user id), nor two users the vendor's answer would name alike (their
//! `answer_keys`), never lets a partly filled call wait longer than `linger`
//! plus the wait for its permit, and never sends a user whose caller's
//! deadline passed before its call left.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, mpsc::error::TryRecvError},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

use super::{
    call::{CallRequest, CallService},
    call_log::SharedCallLog,
    queue::{BatchShared, Group, Pending},
    settle::{settle, settle_unsent_past_deadline},
    target::TargetSpec,
};
use crate::{outbound::rate_limit::Limiter, vendor_api::SharedVendor};

/// Groups handed over before writers wait. The dispatcher takes groups off
/// as they come, also while a call waits for its permit or for room in
/// flight, so no group waits here behind others; what bounds the users it
/// holds is each batch's places (see `Buffered`).
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
        queue_open: true,
        buffered: Buffered::default(),
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
    /// False once every writer is gone and the queue is empty.
    queue_open: bool,
    /// Users taken off the queue but not yet in a call.
    buffered: Buffered,
    in_flight: Arc<Semaphore>,
}

impl Dispatcher {
    async fn run(mut self) {
        loop {
            // wait for room first, so the call is formed from the fullest queue
            let Some(permit) = self.room_in_flight().await else {
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

    /// Waits for room for one more call in flight, taking groups off the
    /// queue meanwhile. `None` only if the semaphore is closed.
    async fn room_in_flight(&mut self) -> Option<OwnedSemaphorePermit> {
        let room = self.in_flight.clone().acquire_owned();
        tokio::pin!(room);
        loop {
            tokio::select! {
                biased;
                permit = &mut room => return permit.ok(),
                group = self.queue.recv(), if self.queue_open => {
                    self.received(group);
                }
            }
        }
    }

    /// Up to `max_batch` users for one call, with the call's rate permit.
    ///
    /// A partial call waits at most `linger` for more users; past that, it
    /// goes out as soon as the quota allows, and keeps taking users until
    /// then: a call that could not leave sooner anyway leaves fuller. Users
    /// who come once it is full get their fair share of it when it leaves.
    /// `None` once the queue is closed and nothing is buffered.
    async fn next_call(&mut self) -> Option<Vec<Arc<Pending>>> {
        while self.buffered.is_empty() {
            if !self.queue_open {
                return None;
            }
            let group = self.queue.recv().await;
            self.received(group);
        }
        self.take_ready_groups();
        let mut call = FillingCall::new(&self.target);
        call.fill(&mut self.buffered);
        let deadline = Instant::now() + self.target.linger;
        while !call.is_full() && self.queue_open {
            match tokio::time::timeout_at(deadline, self.queue.recv()).await {
                Ok(group) => {
                    if self.received(group) {
                        call.users_came(&mut self.buffered);
                    }
                }
                Err(_) => break,
            }
        }
        let limiter = self.limiter.clone();
        let mut permit = limiter.acquire();
        loop {
            tokio::select! {
                biased;
                () = &mut permit => break,
                group = self.queue.recv(), if self.queue_open => {
                    if self.received(group) {
                        call.users_came(&mut self.buffered);
                    }
                }
            }
        }
        if self.take_ready_groups() {
            call.users_came(&mut self.buffered);
        }
        Some(call.leave(&mut self.buffered))
    }

    /// Buffers a group received from the queue, and every group ready after
    /// it; `None` marks the queue closed. Whether users were buffered.
    fn received(&mut self, group: Option<Group>) -> bool {
        match group {
            Some(group) => {
                self.buffered.extend(group);
                self.take_ready_groups();
                true
            }
            None => {
                self.queue_open = false;
                false
            }
        }
    }

    /// Buffers every group the queue holds now, without waiting, so that
    /// none waits in the queue behind others. Whether any was there.
    fn take_ready_groups(&mut self) -> bool {
        let mut took = false;
        while self.queue_open {
            match self.queue.try_recv() {
                Ok(group) => {
                    self.buffered.extend(group);
                    took = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.queue_open = false,
            }
        }
        took
    }
}

/// Which batch a buffered user belongs to: its shared side's address, the
/// same for all its users and no other batch's while any of them is held
/// (each holds the batch), and cheaper to hash than its id.
type BatchKey = usize;

fn batch_key(batch: &Arc<BatchShared>) -> BatchKey {
    Arc::as_ptr(batch) as BatchKey
}

/// Users taken off the queue but not yet in a call: a line per batch,
/// oldest first, and the batches with users in the order of their turns.
///
/// Its size is bounded without a bound of its own: each queued user holds
/// one of its batch's places from submission until its result is read
/// (`BatchShared::outstanding`), so the lines hold at most the places of
/// the open batches, whose number the server's limits bound.
#[derive(Default)]
struct Buffered {
    lines: HashMap<BatchKey, VecDeque<Arc<Pending>>>,
    /// Each batch of `lines` exactly once; the next to be served first.
    turns: VecDeque<BatchKey>,
}

impl Buffered {
    fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Queues users at the back of their batch's line; a batch new to the
    /// buffer takes its turn after the others.
    fn extend(&mut self, group: Group) {
        for pending in group {
            let key = batch_key(&pending.batch);
            let line = self.lines.entry(key).or_insert_with(|| {
                self.turns.push_back(key);
                VecDeque::new()
            });
            line.push_back(pending);
        }
    }

    /// Puts a user back at the front of its batch's line; a batch that had
    /// no line left takes its turn `first` or after the others.
    fn put_back(&mut self, pending: Arc<Pending>, first: bool) {
        let key = batch_key(&pending.batch);
        let line = self.lines.entry(key).or_insert_with(|| {
            if first {
                self.turns.push_front(key);
            } else {
                self.turns.push_back(key);
            }
            VecDeque::new()
        });
        line.push_front(pending);
    }
}

/// A call being filled: one user id at most once, since vendors match
/// answers by user id, and one answer key at most once, since the vendor's
/// answer names users by those too; a user who repeats either waits for a
/// later call, first in its batch's line.
///
/// It fills round-robin: each batch with users in turn gets a fair share of
/// the room left (the room over the number of such batches, at least one
/// user), and rounds go on until the call is full or no one is left. A
/// batch that used its share goes to the back of the turns, so the next
/// call starts with the one after it.
struct FillingCall {
    /// Every user taken off the buffer for this call, in the order taken,
    /// and whether it is in the call or held back: so that all can go back
    /// where they were.
    taken: Vec<(Arc<Pending>, Place)>,
    in_call: usize,
    user_ids: HashSet<String>,
    answer_keys: HashSet<String>,
    /// Users came after the call was full: it is dealt again when it leaves.
    users_came_when_full: bool,
    vendor: SharedVendor,
    max: usize,
}

/// Where a user taken for a call went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    InCall,
    HeldBack,
}

impl FillingCall {
    fn new(target: &TargetSpec) -> Self {
        FillingCall {
            taken: Vec::new(),
            in_call: 0,
            user_ids: HashSet::new(),
            answer_keys: HashSet::new(),
            users_came_when_full: false,
            vendor: target.vendor.clone(),
            max: target.max_batch,
        }
    }

    fn is_full(&self) -> bool {
        self.in_call >= self.max
    }

    /// Moves users from the buffer, round-robin across batches, until the
    /// call is full or the buffer has no one left.
    fn fill(&mut self, buffered: &mut Buffered) {
        while !self.is_full() && !buffered.turns.is_empty() {
            let batches = buffered.turns.len();
            let share = ((self.max - self.in_call) / batches).max(1);
            for _ in 0..batches {
                if self.is_full() {
                    return;
                }
                let Some(key) = buffered.turns.pop_front() else {
                    return;
                };
                let Some(line) = buffered.lines.get_mut(&key) else {
                    continue;
                };
                let mut took = 0;
                while took < share && !self.is_full() {
                    let Some(pending) = line.pop_front() else {
                        break;
                    };
                    if self.take(pending) == Place::InCall {
                        took += 1;
                    }
                }
                if line.is_empty() {
                    buffered.lines.remove(&key);
                } else {
                    buffered.turns.push_back(key);
                }
            }
        }
    }

    /// Takes one user into the call, or holds it back if it repeats a user
    /// id or an answer key already in the call.
    fn take(&mut self, pending: Arc<Pending>) -> Place {
        let keys = self.vendor.answer_keys(&pending.user);
        let repeats = self.user_ids.contains(&pending.user.user_id)
            || keys.iter().any(|key| self.answer_keys.contains(key));
        let place = if repeats {
            Place::HeldBack
        } else {
            self.user_ids.insert(pending.user.user_id.clone());
            self.answer_keys.extend(keys);
            self.in_call += 1;
            Place::InCall
        };
        self.taken.push((pending, place));
        place
    }

    /// Users came while the call waits: taken while there is room; once it
    /// is full, they get their fair share of it when it leaves.
    fn users_came(&mut self, buffered: &mut Buffered) {
        if self.is_full() {
            self.users_came_when_full = true;
        } else {
            self.fill(buffered);
        }
    }

    /// The call's users as it leaves. If users came after it was full, it
    /// is dealt again from everyone buffered, so that they get their share.
    /// Users held back go back to the front of their batch's line, in their
    /// order.
    fn leave(mut self, buffered: &mut Buffered) -> Vec<Arc<Pending>> {
        if self.users_came_when_full {
            self.put_everyone_back(buffered);
            self.fill(buffered);
        }
        let mut users = Vec::with_capacity(self.in_call);
        for (pending, place) in self.taken.into_iter().rev() {
            match place {
                Place::InCall => users.push(pending),
                // a batch whose line it emptied has had its turn
                Place::HeldBack => buffered.put_back(pending, false),
            }
        }
        users.reverse();
        users
    }

    /// Undoes the filling: every user taken goes back where it was.
    fn put_everyone_back(&mut self, buffered: &mut Buffered) {
        for (pending, _) in self.taken.drain(..).rev() {
            buffered.put_back(pending, true);
        }
        self.in_call = 0;
        self.user_ids.clear();
        self.answer_keys.clear();
        self.users_came_when_full = false;
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

    /// A limiter that gives a permit only when the test lets one through.
    struct GatedLimiter {
        permits: Semaphore,
    }

    impl Limiter for GatedLimiter {
        fn acquire(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(async { self.permits.acquire().await.unwrap().forget() })
        }

        fn current_rate(&self) -> f64 {
            f64::INFINITY
        }

        fn before_send(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(async {})
        }
    }

    /// Starts a dispatcher for `spec` in front of a fake stack.
    fn start(
        spec: Arc<TargetSpec>,
        gated: bool,
    ) -> (mpsc::Sender<Group>, FakeStack, Arc<MemoryCallLog>) {
        start_with_limiter(spec, gated, Arc::new(CountingLimiter::default()))
    }

    /// As `start`, with the target's limiter `limiter`.
    fn start_with_limiter(
        spec: Arc<TargetSpec>,
        gated: bool,
        limiter: Arc<dyn Limiter>,
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
            limiter,
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
        // a fair share of the 10 places to each batch in turn: 3 each, then the last to a
        let expected: Vec<String> = a[..3]
            .iter()
            .chain(&b[..3])
            .chain(&c[..3])
            .chain(&a[3..])
            .cloned()
            .collect();
        assert_eq!(first, expected);
        let (at, second) = stack.calls.recv().await.unwrap();
        assert_eq!(at, Duration::from_millis(50), "the rest waits for linger");
        assert_eq!(second, [b[3].clone(), c[3].clone()]);

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

    /// How many of `users` have an id starting with `prefix`.
    fn count_of(users: &[String], prefix: &str) -> usize {
        users.iter().filter(|id| id.starts_with(prefix)).count()
    }

    #[tokio::test(start_paused = true)]
    async fn each_batch_in_turn_gets_a_fair_share_of_a_call_and_the_remainder_rotates() {
        let (queue, mut stack, _log) = start(target(4, Duration::from_millis(50), 4), false);
        let mut keep = Vec::new();
        for name in ["a", "b", "c"] {
            let (shared, results) = batch(name);
            keep.push(results);
            queue
                .send(group(&shared, 0, &refs(&ids(name, 4))))
                .await
                .unwrap();
        }

        let mut calls = Vec::new();
        for _ in 0..3 {
            let (at, users) = stack.calls.recv().await.unwrap();
            assert_eq!(at, Duration::ZERO, "full calls go at once");
            calls.push(users);
        }
        // one place to each batch in turn; the fourth to the batch whose turn
        // came next, and the next call starts with the batch after it
        assert_eq!(
            calls,
            [
                ["a0", "b0", "c0", "a1"],
                ["b1", "c1", "a2", "b2"],
                ["c2", "a3", "b3", "c3"],
            ]
        );
        assert!(stack.calls.try_recv().is_err(), "three calls only");
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_user_batch_queued_behind_three_big_batches_goes_in_the_next_call() {
        // one call in flight at a time, answered when the test says
        let (queue, mut stack, _log) = start(target(10, Duration::from_millis(50), 1), true);
        let mut keep = Vec::new();
        for name in ["a", "b", "c"] {
            let (shared, results) = batch(name);
            keep.push(results);
            let users = ids(name, 100);
            for (n, part) in users.chunks(10).enumerate() {
                queue
                    .send(group(&shared, n as u64 * 10, &refs(part)))
                    .await
                    .unwrap();
            }
        }
        let (_, first) = stack.calls.recv().await.unwrap();
        assert_eq!(first.len(), 10);
        // 290 users of the big batches wait; then the small caller comes
        let (solo, mut solo_results) = batch("solo");
        queue.send(group(&solo, 0, &["solo"])).await.unwrap();
        stack.gate.add_permits(1);

        let (_, second) = stack.calls.recv().await.unwrap();
        assert!(
            second.contains(&"solo".to_owned()),
            "the small caller's user goes in the very next call: {second:?}"
        );
        assert_eq!(second.len(), 10, "the call is still full");
        for name in ["a", "b", "c"] {
            assert_eq!(count_of(&second, name), 3, "{name}'s share of {second:?}");
        }
        stack.gate.add_permits(1);
        let result = solo_results.recv().await.unwrap();
        assert_eq!(result.outcome, Outcome::Registered);
        assert_eq!(result.user_id, "solo");
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_who_comes_while_a_full_call_waits_for_its_permit_gets_a_share_of_it() {
        let limiter = Arc::new(GatedLimiter {
            permits: Semaphore::new(0),
        });
        let (queue, mut stack, _log) = start_with_limiter(
            target(10, Duration::from_millis(50), 4),
            false,
            limiter.clone(),
        );
        let (big, _big_results) = batch("big");
        let users = ids("u", 30);
        queue.send(group(&big, 0, &refs(&users))).await.unwrap();
        // the dispatcher fills a call of u0..u9, which waits for its permit
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (solo, _solo_results) = batch("solo");
        queue.send(group(&solo, 0, &["solo"])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(stack.calls.try_recv().is_err(), "no call without a permit");

        limiter.permits.add_permits(1);
        let (_, first) = stack.calls.recv().await.unwrap();
        let mut expected = refs(&users[..5]);
        expected.push("solo");
        expected.extend(refs(&users[5..9]));
        assert_eq!(first, expected, "dealt again as it left");
        limiter.permits.add_permits(1);
        let (_, second) = stack.calls.recv().await.unwrap();
        assert_eq!(second, users[9..19].to_vec(), "u9 first: it kept its place");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_that_alone_has_users_fills_every_call() {
        let (queue, mut stack, _log) = start(target(10, Duration::from_millis(50), 4), false);
        let (big, _big_results) = batch("big");
        let (solo, _solo_results) = batch("solo");
        let users = ids("u", 25);
        queue.send(group(&big, 0, &refs(&users))).await.unwrap();
        queue.send(group(&solo, 0, &["solo"])).await.unwrap();

        let mut calls = Vec::new();
        for _ in 0..3 {
            calls.push(stack.calls.recv().await.unwrap());
        }
        let mut first = refs(&users[..5]);
        first.push("solo");
        first.extend(refs(&users[5..9]));
        assert_eq!(
            calls[0],
            (
                Duration::ZERO,
                first.iter().map(|id| id.to_string()).collect()
            )
        );
        assert_eq!(
            calls[1],
            (Duration::ZERO, users[9..19].to_vec()),
            "the rest of the share goes to the batch with users"
        );
        assert_eq!(calls[2], (Duration::from_millis(50), users[19..].to_vec()));
        assert!(stack.calls.try_recv().is_err(), "three calls only");
    }

    #[tokio::test(start_paused = true)]
    async fn held_back_users_keep_their_order_in_their_batch_while_other_batches_go() {
        // every user named "same" collides with every other: one of them a call
        let (queue, mut stack, _log) = start(target(10, Duration::from_millis(50), 4), false);
        let (first_batch, _first_results) = batch("first");
        let (second_batch, _second_results) = batch("second");
        queue
            .send(named_group(
                &first_batch,
                &[("a0", "same"), ("a1", "same"), ("a2", "same")],
            ))
            .await
            .unwrap();
        queue
            .send(named_group(
                &second_batch,
                &[("b0", "same"), ("b1", "other")],
            ))
            .await
            .unwrap();

        let mut calls = Vec::new();
        for _ in 0..4 {
            let (at, users) = stack.calls.recv().await.unwrap();
            calls.push((at.as_millis(), users));
        }
        let expected: Vec<(u128, Vec<String>)> = vec![
            (50, vec!["a0".into(), "b1".into()]),
            // the second batch's held-back user has its turn before the first's go again
            (100, vec!["b0".into()]),
            (150, vec!["a1".into()]),
            (200, vec!["a2".into()]),
        ];
        assert_eq!(calls, expected);
        assert!(stack.calls.try_recv().is_err(), "four calls only");
    }
}
