//! A real `registrar serve` process crashed (SIGKILL), stopped (SIGTERM)
//! or run beside a second server on one PostgreSQL, then replayed with the
//! same idempotency key: every input gets exactly one result, no user whose
//! outcome was recorded is sent again, and the vendor holds every user. The
//! simulator runs in the test process, so its records are ground truth; the
//! batch and its rows are read back through GetBatch and ListRegistrations.

use std::{collections::BTreeSet, time::Duration};

use crate::common::{postgres::TestPostgres, process::ServeProcess, *};
use registrar::{
    api::pb::{self, registration_service_client::RegistrationServiceClient},
    domain::VendorKind,
    sim::Simulator,
};
use tonic::transport::Channel;

/// Long enough for any single step of these tests on a loaded machine.
const STEP: Duration = Duration::from_secs(60);
const LCIC_USERS: usize = 40_000;

fn numbered(count: usize) -> Vec<pb::User> {
    (0..count)
        .map(|n| pb::User {
            user_id: format!("c{n:07}"),
            display_name: format!("Crash test user {n}"),
            ..pb::User::default()
        })
        .collect()
}

fn sqlite_audit(dir: &std::path::Path) -> String {
    format!(
        "[audit]\ndatabase_url = \"sqlite://{}?mode=rwc\"\n\n",
        dir.join("audit.db").display()
    )
}

fn postgres_audit(postgres: &TestPostgres) -> String {
    format!("[audit]\ndatabase_url = \"{}\"\n\n", postgres.url)
}

/// `[server]` lines: a name of its own and a short lease, so recovery is quick.
fn server(instance: &str) -> String {
    format!("instance_name = \"{instance}\"\nbatch_lease = \"3s\"\nshutdown_grace = \"10s\"")
}

/// Replays `users` under `key` and checks the resume against the rows read
/// after the crash: one result per input, all registered, nothing finished
/// sent again, the vendor holding every user, the batch completed.
async fn replay_resumes(
    simulator: &Simulator,
    client: &mut RegistrationServiceClient<Channel>,
    key: &str,
    users: Vec<pb::User>,
    batch_id: &str,
) {
    let recorded = outcomes_by_user(client, batch_id).await;
    let finished: BTreeSet<String> = recorded
        .iter()
        .filter(|(_, outcome)| {
            matches!(
                outcome,
                pb::Outcome::Registered | pb::Outcome::AlreadyExists
            )
        })
        .map(|(user_id, _)| user_id.clone())
        .collect();
    assert!(!finished.is_empty(), "some users finished before the crash");
    assert!(
        recorded
            .values()
            .all(|outcome| *outcome != pb::Outcome::Pending),
        "no row is left pending: each says what is known"
    );
    let calls_before = simulator.calls().len();
    let count = users.len();
    let replay = tokio::time::timeout(
        STEP * 2,
        stream_register(client, &["lcic"], key, users, 1000),
    )
    .await
    .expect("the replay ends in time")
    .expect("the replay completes");
    assert_one_result_per_index(&replay.results, count);
    assert!(
        replay.results.iter().all(|result| matches!(
            result.outcome(),
            pb::Outcome::Registered | pb::Outcome::AlreadyExists
        )),
        "every user ends registered"
    );
    assert_eq!(replay.batch_id(), batch_id);
    assert_eq!(
        replay.summary.as_ref().unwrap().targets[0].registered,
        count as u64,
        "one summary covers the whole batch"
    );
    assert_eq!(
        sent_again(simulator, calls_before, &finished),
        0,
        "no user whose outcome was recorded is sent again"
    );
    let held: BTreeSet<String> = simulator
        .registered(VendorKind::TencentLcic, LCIC_APP_ID)
        .into_iter()
        .map(|user| user.origin_id)
        .collect();
    assert_eq!(held.len(), count, "the vendor holds every user");
    wait_for_batch_state(client, batch_id, pb::BatchState::Completed, STEP).await;
}

/// A slow LCIC: 300 ms a call at 20 calls a second.
async fn slow_lcic(qps: u32) -> Simulator {
    lcic_with_latency(qps, Duration::from_millis(300)).await
}

async fn killed_mid_stream_then_replayed(audit: &str, dir: &std::path::Path) {
    let simulator = slow_lcic(20).await;
    let config = format!(
        "{audit}{}",
        LCIC.target("lcic", &simulator.endpoint(), "qps = 20")
    );
    let mut first = ServeProcess::start(dir, &server("crash"), &config).await;
    let users = numbered(LCIC_USERS);
    let stream = stream_in_background(&first.client, &["lcic"], "crash-1", users.clone());
    wait_for_calls(&simulator, 12).await;
    first.kill();
    assert!(
        stream.await.unwrap().is_err(),
        "the killed server's stream fails"
    );

    // the same instance restarting takes its batches over at once
    let mut second = ServeProcess::start(dir, &server("crash"), &config).await;
    let batch_id = batch_id_of_user(&second.client, &users[0].user_id).await;
    let batch = get_batch(&second.client, &batch_id).await;
    assert_eq!(batch.state(), pb::BatchState::Interrupted);
    let counts = &batch.counts[0];
    assert!(
        counts.answer_lost > 0,
        "users sent in calls whose answers the crash lost: {counts:?}"
    );
    assert_eq!(counts.pending, 0, "{counts:?}");
    assert_eq!(
        batch.user_count, counts.total,
        "user_count is what the store holds"
    );
    replay_resumes(&simulator, &mut second.client, "crash-1", users, &batch_id).await;
}

#[tokio::test]
async fn a_server_killed_mid_stream_resumes_where_it_stopped_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    killed_mid_stream_then_replayed(&sqlite_audit(dir.path()), dir.path()).await;
}

#[tokio::test]
async fn a_server_killed_mid_stream_resumes_where_it_stopped_on_postgres() {
    let postgres = TestPostgres::start_async().await;
    let dir = tempfile::tempdir().unwrap();
    killed_mid_stream_then_replayed(&postgres_audit(&postgres), dir.path()).await;
}

#[tokio::test]
async fn two_servers_on_one_postgres_never_steal_a_live_batch_and_recover_a_dead_ones() {
    let postgres = TestPostgres::start_async().await;
    // 5 calls a second: the stream runs for seconds, longer than a lease
    let simulator = slow_lcic(5).await;
    let config = format!(
        "{}{}",
        postgres_audit(&postgres),
        LCIC.target("lcic", &simulator.endpoint(), "qps = 5")
    );
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let mut a = ServeProcess::start(dir_a.path(), &server("replica-a"), &config).await;
    let mut b = ServeProcess::start(dir_b.path(), &server("replica-b"), &config).await;
    let users = numbered(LCIC_USERS);
    let stream = stream_in_background(&a.client, &["lcic"], "shared", users.clone());
    wait_for_calls(&simulator, 2).await;
    let batch_id = batch_id_of_user(&b.client, &users[0].user_id).await;

    // while a lives, b refuses its key and leaves its batch alone, past a lease
    let status = stream_register(&mut b.client, &["lcic"], "shared", users[..10].to_vec(), 10)
        .await
        .unwrap_err()
        .1;
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        get_batch(&b.client, &batch_id).await.state(),
        pb::BatchState::Running,
        "a live owner's batch is never interrupted"
    );

    // a dies: after its lease, b's recovery interrupts the batch
    a.kill();
    assert!(stream.await.unwrap().is_err());
    let batch = wait_for_batch_state(
        &b.client,
        &batch_id,
        pb::BatchState::Interrupted,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(batch.counts[0].pending, 0);
    replay_resumes(&simulator, &mut b.client, "shared", users, &batch_id).await;
}

#[tokio::test]
async fn sigterm_during_a_million_user_stream_exits_within_the_grace_and_a_replay_completes_it() {
    const USERS: usize = 1_000_000;
    let simulator = start_simulator(vec![LCIC.sim(50)]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}",
        sqlite_audit(dir.path()),
        LCIC.target("lcic", &simulator.endpoint(), "qps = 50")
    );
    let mut first = ServeProcess::start(dir.path(), &server("sigterm"), &config).await;
    let users = numbered(USERS);
    let stream = stream_in_background(&first.client, &["lcic"], "million", users.clone());
    wait_for_calls(&simulator, 20).await;
    let signalled = tokio::time::Instant::now();
    first.terminate();
    let (cut, status) = tokio::time::timeout(STEP, stream)
        .await
        .expect("the stream ends within the grace")
        .unwrap()
        .expect_err("the cut stream ends with a status, not a summary");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("idempotencyKey \"million\""),
        "the caller is told how to resume: {}",
        status.message()
    );
    assert!(cut.results.len() < USERS);
    let exit = first
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the server exits within its grace");
    assert!(exit.success(), "{exit}");
    assert!(signalled.elapsed() < Duration::from_secs(15));

    // another server finds the batch interrupted at once (no lease to wait for)
    let mut second = ServeProcess::start(dir.path(), &server("sigterm-other"), &config).await;
    let batch_id = cut.results[0].batch_id.clone();
    let batch = get_batch(&second.client, &batch_id).await;
    assert_eq!(batch.state(), pb::BatchState::Interrupted);
    assert_eq!(batch.counts[0].pending, 0);
    assert_eq!(
        batch.counts[0].answer_lost, 0,
        "in-flight calls finished within the grace"
    );

    let calls_before = simulator.calls().len();
    let replay = tokio::time::timeout(
        STEP * 3,
        stream_register(&mut second.client, &["lcic"], "million", users, 1000),
    )
    .await
    .expect("the replay ends in time")
    .expect("the replay completes");
    assert_one_result_per_index(&replay.results, USERS);
    assert_eq!(replay.with_outcome(pb::Outcome::Registered).len(), USERS);
    let replayed = replay
        .results
        .iter()
        .filter(|result| result.replayed)
        .count();
    assert_eq!(
        replayed,
        cut.results.len(),
        "what the caller got before is answered from the store"
    );
    let sent_after: usize = simulator.calls()[calls_before..]
        .iter()
        .map(|call| call.user_ids.len())
        .sum();
    assert_eq!(sent_after + replayed, USERS, "nothing is sent twice");
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        USERS
    );
    wait_for_batch_state(&second.client, &batch_id, pb::BatchState::Completed, STEP).await;
}
