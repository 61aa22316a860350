//! The quota shared through Redis (`[quota] redis_url`), against a real
//! redis-server from the Debian package: first its reservations alone (two
//! connections, as two replicas would have), then two real `registrar
//! serve` processes on one simulated ZIM account, both fed at once: together
//! they never put more than the quota into any one-second window at the
//! vendor and still use all of it; with Redis killed they go on at their
//! fallback share and return to the shared quota by themselves; and a
//! throttle answer one of them met slows the other.
//!
//! Ground truth is what the simulator recorded: when each call was decided,
//! and whose users it carried (replica A's users are `a-…`, B's `b-…`).

use std::time::{Duration, Instant};

use registrar::{
    api::pb,
    domain::VendorKind,
    outbound::{
        rate_limit::ADAPTATION,
        shared_quota::{QuotaKey, QuotaStore, QuotaStoreSettings, Reservation},
    },
    sim::{RecordedCall, Simulator, faults::SimFaults},
};
use secrecy::SecretString;

use crate::common::{
    Collected, process::ServeProcess, redis_server::TestRedis, start_simulator,
    stream_in_background, users, vendors::ZIM,
};

/// The ZIM account's quota, calls per second (its documented quota).
const QPS: u32 = 20;
/// ZIM's batch cap: users per full call.
const MAX_BATCH: usize = 100;

fn store(url: &str, instance: &str) -> std::sync::Arc<QuotaStore> {
    QuotaStore::new(QuotaStoreSettings {
        redis_url: SecretString::from(url.to_owned()),
        permit_timeout: Duration::from_millis(250),
        heartbeat_interval: Duration::from_secs(1),
        fallback_replicas: 1,
        instance: instance.to_owned(),
    })
    .unwrap()
}

/// The most instants in any half-open one-second window.
fn max_in_one_second(instants: &mut [Duration]) -> usize {
    instants.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..instants.len() {
        while instants[end] - instants[start] >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[tokio::test]
async fn two_replicas_reserving_from_one_key_never_exceed_the_quota_together() {
    let _alone = crate::alone().await;
    let redis = TestRedis::start().await;
    let qps = 50.0;
    let shared = QuotaKey::new("tencent-lcic", "1400000001", "BatchRegister");
    let replicas = [store(&redis.url, "a"), store(&redis.url, "b")];
    let started = Instant::now();
    let mut tasks = Vec::new();
    // each replica runs 4 callers taking 25 permits each: 200 permits in all
    for replica in &replicas {
        for _ in 0..4 {
            let (replica, shared) = (replica.clone(), shared.clone());
            tasks.push(tokio::spawn(async move {
                let mut granted = Vec::new();
                while granted.len() < 25 {
                    match replica
                        .reserve(&shared, qps, 0.02, Duration::from_secs(1))
                        .await
                        .unwrap()
                    {
                        Reservation::Reserved { wait, .. } => {
                            tokio::time::sleep(wait).await;
                            // and the send guard, as every call passes it right before leaving:
                            // a caller woken late cannot squeeze into a full window
                            while let Some(wait) = replica
                                .send(&shared, 50, Duration::from_millis(1020))
                                .await
                                .unwrap()
                            {
                                tokio::time::sleep(wait).await;
                            }
                            granted.push(started.elapsed());
                        }
                        Reservation::Booked { retry_in, .. } => tokio::time::sleep(retry_in).await,
                    }
                }
                granted
            }));
        }
    }
    let mut granted = Vec::new();
    for task in tasks {
        granted.extend(task.await.unwrap());
    }
    assert_eq!(granted.len(), 200);
    let most = max_in_one_second(&mut granted);
    assert!(most <= 50, "{most} permits in one second at a quota of 50");
    // 200 permits at 50/s less the 2% margin: about 4.06 s together, not 2 s each
    let rate = 199.0 / (granted[199] - granted[0]).as_secs_f64();
    assert!(
        (47.0..=50.0).contains(&rate),
        "together {rate:.1} permits/s of 50"
    );

    // another account is another quota: its first permit is immediate
    let other = QuotaKey::new("tencent-lcic", "1400000002", "BatchRegister");
    let first = replicas[0]
        .reserve(&other, qps, 0.02, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        matches!(first, Reservation::Reserved { wait, .. } if wait.is_zero()),
        "{first:?}"
    );

    // a throttle answer lowers the rate every replica's next permit is spaced by
    let rate = replicas[1]
        .throttled(&shared, qps, &ADAPTATION)
        .await
        .unwrap();
    assert!((rate - 40.0).abs() < 0.01, "{rate}");
    let next = replicas[0]
        .reserve(&shared, qps, 0.02, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        matches!(next, Reservation::Reserved { rate, .. } if (rate - 40.0).abs() < 0.01),
        "{next:?}"
    );
}

/// The rate margin of the tests' target: a 40 ms allowance in each window
/// for the time between a call's send and the vendor's decision, since two
/// servers, Redis, the simulator and other tests share a 2-core CI machine;
/// the default 2 % (20 ms) is for a vendor across a network of its own.
const RATE_MARGIN: f64 = 0.04;

/// What every two-process test runs on: a redis-server, the simulator with
/// one ZIM account at `QPS`, and a directory for the replicas.
struct Setup {
    dir: tempfile::TempDir,
    redis: TestRedis,
    simulator: Simulator,
}

impl Setup {
    async fn start() -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
            redis: TestRedis::start().await,
            simulator: start_simulator(vec![ZIM.sim(QPS)]).await,
        }
    }

    /// A `registrar serve` named `name` with the ZIM target on the shared
    /// quota, in its own directory (its own SQLite audit file and log).
    async fn replica(&self, name: &str) -> ServeProcess {
        self.replica_with(name, "").await
    }

    /// As `replica`, with more `[quota]` settings.
    async fn replica_with(&self, name: &str, quota_toml: &str) -> ServeProcess {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "[audit]\ndatabase_url = \"sqlite://{}/audit.db?mode=rwc\"\n\n\
             [quota]\nredis_url = \"{}\"\nheartbeat_interval = \"200ms\"\npermit_timeout = \"250ms\"\n{quota_toml}\n\n{}",
            dir.display(),
            self.redis.url,
            ZIM.target(
                "zim",
                &self.simulator.endpoint(),
                &format!("qps = {QPS}\nrate_margin = {RATE_MARGIN}")
            ),
        );
        ServeProcess::start(&dir, &format!("instance_name = \"{name}\""), &config).await
    }
}

/// The calls that carried `prefix`'s users, in the order decided.
fn calls_of(calls: &[RecordedCall], prefix: &str) -> Vec<RecordedCall> {
    calls
        .iter()
        .filter(|call| {
            call.user_ids
                .first()
                .is_some_and(|id| id.starts_with(prefix))
        })
        .cloned()
        .collect()
}

/// Calls per second from the first call to the last.
fn call_rate(calls: &[RecordedCall]) -> f64 {
    let (Some(first), Some(last)) = (calls.first(), calls.last()) else {
        return 0.0;
    };
    let span = (last.received_at_ms - first.received_at_ms) as f64 / 1000.0;
    (calls.len() - 1) as f64 / span.max(0.001)
}

fn all_registered(collected: &Collected, count: usize) {
    assert_eq!(collected.results.len(), count, "one result per user");
    let registered = collected
        .results
        .iter()
        .filter(|result| result.outcome() == pb::Outcome::Registered)
        .count();
    assert_eq!(registered, count, "every user registered");
}

fn no_throttle_answers(calls: &[RecordedCall]) {
    let refused: Vec<_> = calls
        .iter()
        .filter(|call| !call.accepted())
        .map(|call| (call.received_at_ms, call.user_ids.first().cloned()))
        .collect();
    let timeline: Vec<_> = calls
        .iter()
        .map(|call| {
            format!(
                "{}{}{}",
                call.received_at_ms,
                &call.user_ids.first().map_or("?", |id| &id[..1]),
                if call.accepted() { "" } else { "!" }
            )
        })
        .collect();
    assert!(
        refused.is_empty(),
        "the vendor refused calls: {refused:?}; calls: {}",
        timeline.join(" ")
    );
}

/// Every call the simulator recorded, after checking that the vendor
/// refused none and never saw more than `QPS` in any one-second window.
fn within_the_quota(simulator: &Simulator) -> Vec<RecordedCall> {
    let calls = simulator.calls();
    no_throttle_answers(&calls);
    let most = simulator.max_calls_in_any_second(VendorKind::ZegoZim, ZIM.app_id);
    assert!(
        most <= QPS as usize,
        "{most} calls in one second at a quota of {QPS}"
    );
    calls
}

async fn pacing_of(replica: &ServeProcess) -> (pb::QuotaPacing, f64) {
    let targets = replica
        .client
        .clone()
        .list_targets(pb::ListTargetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .targets;
    (targets[0].quota_pacing(), targets[0].paced_rate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_one_redis_share_the_quota_and_use_all_of_it() {
    let _alone = crate::alone().await;
    let setup = Setup::start().await;
    let simulator = &setup.simulator;
    let a = setup.replica("a").await;
    let b = setup.replica("b").await;
    assert_eq!(pacing_of(&a).await.0, pb::QuotaPacing::Shared);

    // 80 full calls each: about 8 s at the quota together, 4 s each alone
    let per_replica = 80 * MAX_BATCH;
    let streams = [
        stream_in_background(&a.client, &["zim"], "a-key", users("a-", per_replica)),
        stream_in_background(&b.client, &["zim"], "b-key", users("b-", per_replica)),
    ];
    for stream in streams {
        all_registered(&stream.await.unwrap().unwrap(), per_replica);
    }

    let calls = within_the_quota(simulator);
    assert_eq!(calls.len(), 160, "full calls only");
    // both replicas sent all along, not one after the other
    let (of_a, of_b) = (calls_of(&calls, "a-"), calls_of(&calls, "b-"));
    assert_eq!((of_a.len(), of_b.len()), (80, 80));
    assert!(call_rate(&of_a) < f64::from(QPS) * 0.6, "A took B's share");
    // together: users per second from the first call to the last, of the ceiling
    let ceiling = f64::from(QPS) * MAX_BATCH as f64;
    let utilization = call_rate(&calls) * MAX_BATCH as f64 / ceiling;
    assert!(
        utilization >= 0.95,
        "together {:.1}% of the ceiling",
        utilization * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_killed_replicas_go_on_at_their_share_and_come_back_to_the_shared_quota() {
    let _alone = crate::alone().await;
    let mut setup = Setup::start().await;
    let a = setup.replica("a").await;
    let b = setup.replica("b").await;
    let (redis, simulator) = (&mut setup.redis, &setup.simulator);
    // both heartbeats are in: each knows there are two replicas
    tokio::time::sleep(Duration::from_millis(600)).await;

    // B has users for ~3 s shared and ~3 s of fallback; A for the whole run
    let (users_a, users_b) = (170 * MAX_BATCH, 60 * MAX_BATCH);
    let stream_a = stream_in_background(&a.client, &["zim"], "a-key", users("a-", users_a));
    let stream_b = stream_in_background(&b.client, &["zim"], "b-key", users("b-", users_b));
    crate::common::wait_for_calls(simulator, 60).await;

    redis.kill();
    let killed_at = simulator.calls().last().unwrap().received_at_ms;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        matches!(pacing_of(&a).await, (pb::QuotaPacing::Fallback, rate) if rate <= 10.0),
        "A paces at its share: {:?}",
        pacing_of(&a).await
    );
    all_registered(&stream_b.await.unwrap().unwrap(), users_b);
    tokio::time::sleep(Duration::from_secs(1)).await;

    redis.restart().await;
    let restarted_at = simulator.calls().last().unwrap().received_at_ms;
    all_registered(&stream_a.await.unwrap().unwrap(), users_a);
    assert_eq!(pacing_of(&a).await.0, pb::QuotaPacing::Shared);

    let calls = within_the_quota(simulator);

    // Redis away: each replica at its share, 20 / 2 replicas = 10 calls/s
    // (after the hold for the shared slots already granted, ~2 s)
    let away = |call: &&RecordedCall| {
        call.received_at_ms > killed_at + 2_500 && call.received_at_ms <= restarted_at
    };
    let seconds_away = (restarted_at - killed_at - 2_500) as f64 / 1000.0;
    let a_away = calls_of(&calls, "a-").iter().filter(away).count();
    assert!(
        a_away as f64 <= 10.0 * seconds_away + 1.0,
        "A sent {a_away} calls in {seconds_away:.1} s without Redis: more than its share"
    );
    assert!(
        a_away as f64 >= 0.75 * 10.0 * seconds_away,
        "A sent only {a_away} calls in {seconds_away:.1} s without Redis: it stopped"
    );
    let b_calls = calls_of(&calls, "b-");
    assert!(
        b_calls.last().unwrap().received_at_ms < restarted_at,
        "B finished before Redis came back"
    );
    let b_away: Vec<_> = b_calls
        .iter()
        .filter(|call| call.received_at_ms > killed_at + 2_500)
        .cloned()
        .collect();
    assert!(
        call_rate(&b_away) <= 10.5,
        "B at {:.1} calls/s without Redis",
        call_rate(&b_away)
    );

    // Redis back (and the grace for replicas still on their share passed):
    // A alone takes the whole shared quota again, not its 10 calls/s share
    let back: Vec<_> = calls_of(&calls, "a-")
        .into_iter()
        .filter(|call| call.received_at_ms > restarted_at + 2_500)
        .collect();
    assert!(
        back.len() >= 20,
        "A sent {} calls after Redis came back",
        back.len()
    );
    assert!(
        call_rate(&back) >= 17.0,
        "A at {:.1} calls/s after Redis came back",
        call_rate(&back)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_answer_one_replica_met_slows_the_other() {
    let _alone = crate::alone().await;
    let setup = Setup::start().await;
    let simulator = &setup.simulator;
    let a = setup.replica("a").await;
    let b = setup.replica("b").await;

    // the vendor throttles A's calls for a while (its quota lowered, as the
    // ZIM account really can be); A's retries meet it more than once
    simulator.set_faults(SimFaults {
        throttle: 1.0,
        ..SimFaults::default()
    });
    let stream_a = stream_in_background(&a.client, &["zim"], "a-key", users("a-", 300));
    crate::common::wait_for_calls(simulator, 3).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    simulator.set_faults(SimFaults::default());
    let collected = stream_a.await.unwrap().unwrap();
    assert_eq!(collected.results.len(), 300, "one result per user of A");
    let throttled = simulator
        .calls()
        .iter()
        .filter(|call| !call.accepted())
        .count();
    assert!(throttled >= 3, "the vendor throttled A {throttled} times");

    // B never met a throttle answer, yet goes slower than the quota
    let calls_before = simulator.calls().len();
    let stream_b = stream_in_background(&b.client, &["zim"], "b-key", users("b-", 40 * MAX_BATCH));
    all_registered(&stream_b.await.unwrap().unwrap(), 40 * MAX_BATCH);
    let b_calls = calls_of(&simulator.calls()[calls_before..], "b-");
    no_throttle_answers(&b_calls);
    assert_eq!(b_calls.len(), 40);
    // at the quota B would go at 19.6 calls/s; after A's throttle answers
    // the shared rate is at most 16, and B's own successes raise it by 0.1
    // each: its first 15 calls average well below the quota
    let rate = call_rate(&b_calls[..15]);
    assert!(
        rate <= 17.0,
        "B at {rate:.1} calls/s: A's throttle answers did not slow it"
    );
    let (pacing, paced_rate) = pacing_of(&b).await;
    assert_eq!(pacing, pb::QuotaPacing::Shared);
    assert!(paced_rate < f64::from(QPS), "B paces at {paced_rate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_redis_is_down_paces_at_its_assumed_share_until_redis_answers() {
    let _alone = crate::alone().await;
    let mut setup = Setup::start().await;
    setup.redis.kill();
    // it has never seen a heartbeat: it assumes the replicas it is told
    let a = setup.replica_with("a", "fallback_replicas = 4").await;
    let (redis, simulator) = (&mut setup.redis, &setup.simulator);
    let (pacing, paced_rate) = pacing_of(&a).await;
    assert_eq!(pacing, pb::QuotaPacing::Fallback);
    assert_eq!(paced_rate, 5.0, "20 calls/s shared by 4");

    let count = 15 * MAX_BATCH;
    let stream = stream_in_background(&a.client, &["zim"], "a-key", users("a-", count));
    all_registered(&stream.await.unwrap().unwrap(), count);
    let calls = simulator.calls();
    no_throttle_answers(&calls);
    assert!(
        call_rate(&calls) <= 5.0,
        "{:.1} calls/s at a share of 5",
        call_rate(&calls)
    );

    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pacing_of(&a).await.0 != pb::QuotaPacing::Shared {
        assert!(
            Instant::now() < deadline,
            "still on its share with Redis back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_too_slow_to_answer_within_the_permit_timeout_counts_as_down() {
    let _alone = crate::alone().await;
    let setup = Setup::start().await;
    let (redis, simulator) = (&setup.redis, &setup.simulator);
    let a = setup.replica_with("a", "fallback_replicas = 2").await;
    let count = 60 * MAX_BATCH;
    let stream = stream_in_background(&a.client, &["zim"], "a-key", users("a-", count));
    crate::common::wait_for_calls(simulator, 10).await;

    // Redis stops answering for 3 s (it is busy, not gone): past the 250 ms
    // permit timeout, the target paces at its share of the replicas last
    // seen alive (itself only: the whole quota, alone) and goes on
    let blocked = tokio::spawn({
        let url = redis.url.clone();
        async move {
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            let _: redis::RedisResult<String> = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(3)
                .query_async(&mut connection)
                .await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls_while_slow = simulator.calls().len();
    assert_eq!(pacing_of(&a).await.0, pb::QuotaPacing::Fallback);
    blocked.await.unwrap();
    all_registered(&stream.await.unwrap().unwrap(), count);
    assert_eq!(pacing_of(&a).await.0, pb::QuotaPacing::Shared);

    let calls = within_the_quota(simulator);
    assert!(
        calls.len() > calls_while_slow,
        "calls went on while Redis was slow"
    );
}
