//! Idempotency keys mean the same request, and a batch cut short resumes:
//! a changed request under a used key is refused naming the first index
//! that differs, a key whose batch a live server runs is refused ABORTED, a
//! dry run never uses up a real run's key, and a stream cut by its caller
//! (cancelled, or past its deadline) ends INTERRUPTED and is resumed by a
//! replay that sends only what has no final outcome. Registrar and the
//! simulator run in-process on loopback; assertions are on the results, the
//! simulator's records and the audit store.

use std::{collections::BTreeSet, time::Duration};

use crate::common::*;
use registrar::{api::pb, audit::entity::registration, domain::VendorKind};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic_types::StatusExt;

/// Long enough for any single step of these tests on a loaded machine.
const STEP: Duration = Duration::from_secs(30);

fn keyed(targets: &[&str], users: Vec<pb::User>, key: &str) -> pb::BatchRegisterRequest {
    pb::BatchRegisterRequest {
        idempotency_key: key.to_owned(),
        ..request(targets, users)
    }
}

fn named_users(count: usize) -> Vec<pb::User> {
    (0..count)
        .map(|n| pb::User {
            user_id: format!("d{n:06}"),
            display_name: format!("Durable user {n}"),
            ..pb::User::default()
        })
        .collect()
}

/// User ids whose rows hold a final outcome, read from the audit store.
async fn finished_user_ids(registrar: &Registrar, batch_id: &str) -> BTreeSet<String> {
    registration::Entity::find()
        .filter(registration::Column::BatchId.eq(batch_id))
        .all(&registrar.audit.connection())
        .await
        .unwrap()
        .into_iter()
        .filter(|row| {
            registrar::domain::Outcome::parse(&row.outcome)
                .is_some_and(|outcome| outcome.is_final())
        })
        .map(|row| row.user_id)
        .collect()
}

#[tokio::test]
async fn the_same_key_with_a_changed_request_is_refused_naming_the_first_index_that_differs() {
    let (simulator, mut registrar) = start_with_target(LCIC, 1000, "lcic", "qps = 1000").await;
    let users = named_users(5);
    let first = batch_register(
        &mut registrar.client,
        keyed(&["lcic"], users.clone(), "k-1"),
    )
    .await
    .unwrap();
    assert_eq!(first.with_outcome(pb::Outcome::Registered).len(), 5);
    let calls = simulator.calls().len();

    let mut changed = users.clone();
    changed[3].display_name = "Someone else".to_owned();
    let status = batch_register(&mut registrar.client, keyed(&["lcic"], changed, "k-1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("users[3]"),
        "{}",
        status.message()
    );
    let violation = status
        .get_details_precondition_failure()
        .expect("a PreconditionFailure detail");
    assert_eq!(violation.violations[0].subject, "users[3]");

    // a request longer than the finished batch differs where the batch ended
    let mut longer = users.clone();
    longer.push(user("d-extra"));
    let status = batch_register(&mut registrar.client, keyed(&["lcic"], longer, "k-1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("users[5]"),
        "{}",
        status.message()
    );

    // other targets are another request
    let status = batch_register(
        &mut registrar.client,
        keyed(&["lcic", "lcic"], users.clone(), "k-1"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "a repeated target is bad input"
    );

    // the same request is answered from the store, with no vendor call
    let replay = batch_register(&mut registrar.client, keyed(&["lcic"], users, "k-1"))
        .await
        .unwrap();
    assert_eq!(replay.results.len(), 5);
    assert!(replay.results.iter().all(|result| result.replayed));
    assert_eq!(replay.batch_id(), first.batch_id());
    assert!(replay.summary.as_ref().unwrap().replayed);
    assert_eq!(replay.summary.as_ref().unwrap().targets[0].registered, 5);
    assert_eq!(simulator.calls().len(), calls, "a replay calls no vendor");
    registrar.stop().await;
}

#[tokio::test]
async fn a_key_whose_batch_a_live_server_runs_is_aborted() {
    // calls take 2 s, so the first request is still running when the second comes
    let simulator = lcic_with_latency(20, Duration::from_secs(2)).await;
    let mut registrar = Registrar::start(&LCIC.target("lcic", &simulator.endpoint(), "")).await;
    let mut client = registrar.client.clone();
    let users = named_users(3);
    let running = tokio::spawn({
        let users = users.clone();
        async move { batch_register(&mut client, keyed(&["lcic"], users, "live")).await }
    });
    let deadline = tokio::time::Instant::now() + STEP;
    while simulator.calls().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first call never left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = batch_register(
        &mut registrar.client,
        keyed(&["lcic"], users.clone(), "live"),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("still running"),
        "{}",
        status.message()
    );

    let first = running.await.unwrap().unwrap();
    assert_eq!(first.with_outcome(pb::Outcome::Registered).len(), 3);
    assert_eq!(
        simulator.calls().len(),
        1,
        "the refused request sent nothing"
    );
    registrar.stop().await;
}

#[tokio::test]
async fn a_dry_runs_key_does_not_block_a_real_run_with_the_same_key() {
    let (simulator, mut registrar) = start_with_target(LCIC, 1000, "lcic", "qps = 1000").await;
    let users = named_users(4);
    let dry = batch_register(
        &mut registrar.client,
        pb::BatchRegisterRequest {
            dry_run: true,
            ..keyed(&["lcic"], users.clone(), "shared-key")
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.with_outcome(pb::Outcome::Validated).len(), 4);
    assert!(simulator.calls().is_empty());

    let real = batch_register(
        &mut registrar.client,
        keyed(&["lcic"], users.clone(), "shared-key"),
    )
    .await
    .unwrap();
    assert_eq!(
        real.with_outcome(pb::Outcome::Registered).len(),
        4,
        "{real:?}"
    );
    assert!(real.results.iter().all(|result| !result.replayed));
    assert_ne!(real.batch_id(), dry.batch_id());
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        4
    );

    // each key answers its own run again
    let dry_again = batch_register(
        &mut registrar.client,
        pb::BatchRegisterRequest {
            dry_run: true,
            ..keyed(&["lcic"], users.clone(), "shared-key")
        },
    )
    .await
    .unwrap();
    assert_eq!(dry_again.batch_id(), dry.batch_id());
    assert!(
        dry_again
            .results
            .iter()
            .all(|result| result.replayed && result.outcome() == pb::Outcome::Validated)
    );
    let batch = registrar.get_batch(&dry.batch_id()).await;
    assert_eq!(
        batch.idempotency_key, "shared-key",
        "the key reads back as the caller gave it"
    );
    registrar.stop().await;
}

/// A slow LCIC (300 ms a call, 20 calls a second): a stream of thousands
/// of users is still running seconds after it starts.
async fn slow_lcic() -> (registrar::sim::Simulator, Registrar) {
    let simulator = lcic_with_latency(20, Duration::from_millis(300)).await;
    let registrar = Registrar::start(&LCIC.target("lcic", &simulator.endpoint(), "qps = 20")).await;
    (simulator, registrar)
}

/// A stream's input under `key` holding the first half of `users` and
/// left open: the sender (drop it to close the input) and the stream to send.
async fn half_sent_stream(
    key: &str,
    users: &[pb::User],
) -> (
    mpsc::Sender<pb::BatchRegisterStreamRequest>,
    ReceiverStream<pb::BatchRegisterStreamRequest>,
) {
    let (input, requests) = mpsc::channel(8);
    input.send(stream_header(&["lcic"], key)).await.unwrap();
    for part in users[..users.len() / 2].chunks(500) {
        input.send(stream_chunk(part.to_vec())).await.unwrap();
    }
    (input, ReceiverStream::new(requests))
}

/// Replays the whole stream under `key` and checks the resume: one result
/// per user, every user registered, the users finished before it not sent
/// again, the batch completed, and the vendor holding every user.
async fn replay_and_check_resume(
    simulator: &registrar::sim::Simulator,
    registrar: &mut Registrar,
    key: &str,
    users: Vec<pb::User>,
    batch_id: &str,
) {
    let finished_before = finished_user_ids(registrar, batch_id).await;
    assert!(
        !finished_before.is_empty(),
        "some users finished before the cut"
    );
    assert!(
        finished_before.len() < users.len(),
        "the cut left users to resume"
    );
    let calls_before = simulator.calls().len();
    let count = users.len();
    let replay = tokio::time::timeout(
        STEP * 2,
        stream_register(&mut registrar.client, &["lcic"], key, users, 500),
    )
    .await
    .expect("the replay ends in time")
    .expect("the replay completes");
    assert_one_result_per_index(&replay.results, count);
    assert_eq!(replay.with_outcome(pb::Outcome::Registered).len(), count);
    assert_eq!(replay.batch_id(), batch_id);
    let summary = replay.summary.as_ref().unwrap();
    assert_eq!(
        summary.targets[0].registered, count as u64,
        "one summary for the whole batch"
    );
    assert!(summary.replayed);
    let replayed: BTreeSet<String> = replay
        .results
        .iter()
        .filter(|result| result.replayed)
        .map(|result| result.user_id.clone())
        .collect();
    assert_eq!(
        replayed, finished_before,
        "users with a final outcome are answered from the store"
    );
    let sent_again: Vec<String> = simulator.calls()[calls_before..]
        .iter()
        .flat_map(|call| call.user_ids.clone())
        .filter(|user_id| finished_before.contains(user_id))
        .collect();
    assert!(
        sent_again.is_empty(),
        "finished users sent again: {sent_again:?}"
    );
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        count,
        "the vendor holds every user"
    );
    wait_for_batch_state(&registrar.client, batch_id, pb::BatchState::Completed, STEP).await;
}

#[tokio::test]
async fn a_cancelled_stream_ends_interrupted_and_a_replay_resumes_it() {
    let (simulator, mut registrar) = slow_lcic().await;
    let users = named_users(6000);
    // 3,000 of the 6,000 users, then the caller cancels the call
    let (input, requests) = half_sent_stream("cancelled", &users).await;
    let mut responses = registrar
        .client
        .batch_register_stream(requests)
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(STEP, responses.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(pb::batch_register_stream_response::Event::Result(first)) = first.event else {
        panic!("a result first");
    };
    drop(responses);
    drop(input);
    let batch = wait_for_batch_state(
        &registrar.client,
        &first.batch_id,
        pb::BatchState::Interrupted,
        STEP,
    )
    .await;
    assert_eq!(batch.state(), pb::BatchState::Interrupted);
    assert_eq!(batch.user_count, 3000, "the users accepted before the cut");

    replay_and_check_resume(
        &simulator,
        &mut registrar,
        "cancelled",
        users,
        &first.batch_id,
    )
    .await;
    registrar.stop().await;
}

#[tokio::test]
async fn a_stream_cut_by_its_deadline_ends_interrupted_and_a_replay_resumes_it() {
    let (simulator, mut registrar) = slow_lcic().await;
    let users = named_users(6000);
    let (input, requests) = half_sent_stream("deadline", &users).await;
    // the caller's deadline passes while its input is still open
    let mut call = tonic::Request::new(requests);
    call.set_timeout(Duration::from_millis(1500));
    let responses = registrar
        .client
        .batch_register_stream(call)
        .await
        .unwrap()
        .into_inner();
    let (cut, status) = tokio::time::timeout(STEP, collect_stream(responses))
        .await
        .expect("the deadline ends the call")
        .expect_err("the call ends in its deadline, not a summary");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    drop(input);
    let batch_id = cut.results[0].batch_id.clone();
    wait_for_batch_state(
        &registrar.client,
        &batch_id,
        pb::BatchState::Interrupted,
        STEP,
    )
    .await;

    replay_and_check_resume(&simulator, &mut registrar, "deadline", users, &batch_id).await;
    registrar.stop().await;
}
