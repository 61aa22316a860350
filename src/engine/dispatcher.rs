//! The dispatcher of one target: owns the target's queue, coalesces users
//! from every caller into the fullest calls the vendor accepts, takes each
//! call's first rate permit while it fills, and keeps up to `max_in_flight`
//! calls going; each answered call is settled (see `settle`).
//!
//! It never puts the same user id twice into one call (vendors match answers
//! by user id), and never lets a partly filled call wait longer than
//! `linger` plus the wait for its permit.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
};

use tokio::{
    sync::{Semaphore, mpsc},
    time::Instant,
};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::{
    call::{CallRequest, CallService},
    call_log::SharedCallLog,
    queue::{Group, Pending},
    settle::settle,
    target::TargetSpec,
};
use crate::outbound::rate_limit::Limiter;

/// Groups queued per target before writers wait; each batch also bounds its own users.
const QUEUED_GROUPS: usize = 64;

/// Starts the dispatcher of a target; users sent on the returned queue get registered.
pub(super) fn spawn(
    target: Arc<TargetSpec>,
    service: CallService,
    limiter: Arc<dyn Limiter>,
    log: SharedCallLog,
    tracker: TaskTracker,
) -> mpsc::Sender<Group> {
    let (sender, receiver) = mpsc::channel(QUEUED_GROUPS);
    let dispatcher = Dispatcher {
        in_flight: Arc::new(Semaphore::new(target.max_in_flight)),
        target,
        service,
        limiter,
        log,
        tracker: tracker.clone(),
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
            let service = self.service.clone();
            let log = self.log.clone();
            let target = self.target.clone();
            self.tracker.spawn(async move {
                let request = CallRequest::first(target.clone(), users.clone());
                let response = match service.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                drop(permit);
                settle(&target, log.as_ref(), users, response).await;
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
        let mut call = FillingCall::new(self.target.max_batch);
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
/// answers by user id; repeats wait for a later call.
struct FillingCall {
    users: Vec<Arc<Pending>>,
    user_ids: HashSet<String>,
    held_back: VecDeque<Arc<Pending>>,
    max: usize,
}

impl FillingCall {
    fn new(max: usize) -> Self {
        FillingCall {
            users: Vec::new(),
            user_ids: HashSet::new(),
            held_back: VecDeque::new(),
            max,
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
            if self.user_ids.insert(pending.user.user_id.clone()) {
                self.users.push(pending);
            } else {
                self.held_back.push_back(pending);
            }
        }
    }

    /// Puts the users held back in front of the buffer, in their order.
    fn finish(&mut self, buffered: &mut VecDeque<Arc<Pending>>) {
        while let Some(pending) = self.held_back.pop_back() {
            buffered.push_front(pending);
        }
    }
}

