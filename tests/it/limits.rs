//! Limits per caller (`[limits]`, `[callers.limits]`): open streams, open
//! unary batches, results accepted but not yet answered, and the size of one
//! message. Going over is RESOURCE_EXHAUSTED naming the limit, nothing of the
//! refused call reaches the vendor, and another caller is served meanwhile.
//! A caller's deadline stops the users no call carried by then: the
//! simulator never sees them, their rows say `not_sent` with
//! `registrar.DeadlineExceeded`, and a replay with the key sends them.

use std::time::Duration;

use crate::common::*;
use registrar::api::pb;
use tokio_stream::wrappers::ReceiverStream;

const SMALL: &str = "token-of-the-small-caller";
const OTHER: &str = "token-of-another-caller";

/// Caller "small" has tight limits of its own; "other" has the defaults.
fn callers_toml() -> String {
    format!(
        "[[callers]]\nname = \"small\"\ntoken_sha256 = \"{}\"\ntargets = [\"*\"]\n\
         [callers.limits]\nmax_streams = 1\nmax_unary_batches = 1\nmax_unanswered_users = 10\nmax_message_bytes = 4096\n\n\
         [[callers]]\nname = \"other\"\ntoken_sha256 = \"{}\"\ntargets = [\"*\"]\n",
        sha256_hex(SMALL),
        sha256_hex(OTHER)
    )
}

/// One LCIC target answering after `latency`, and the two callers.
async fn start(latency: Duration) -> (registrar::sim::Simulator, Registrar) {
    let simulator = lcic_with_latency(1000, latency).await;
    let config = format!(
        "{}\n{}",
        LCIC.target("lcic", &simulator.endpoint(), "qps = 1000"),
        callers_toml()
    );
    (simulator, Registrar::start(&config).await)
}

fn assert_exhausted(status: &tonic::Status, limit: &str) {
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(limit),
        "the message names {limit:?}: {}",
        status.message()
    );
}

/// Opens a stream as `token` that stays open until the returned sender is
/// dropped; the server has taken it once this returns.
async fn open_stream(
    registrar: &Registrar,
    token: &str,
) -> Result<
    (
        tokio::sync::mpsc::Sender<pb::BatchRegisterStreamRequest>,
        tonic::Streaming<pb::BatchRegisterStreamResponse>,
    ),
    tonic::Status,
> {
    let (input, requests) = tokio::sync::mpsc::channel(4);
    input.send(stream_header(&["lcic"], "")).await.unwrap();
    let responses = registrar
        .client
        .clone()
        .batch_register_stream(with_token(ReceiverStream::new(requests), token))
        .await?
        .into_inner();
    Ok((input, responses))
}

#[tokio::test]
async fn a_caller_over_its_stream_limit_is_resource_exhausted_and_another_caller_is_served() {
    let (simulator, registrar) = start(Duration::ZERO).await;
    let (held_input, held_responses) = open_stream(&registrar, SMALL).await.unwrap();
    let refused = open_stream(&registrar, SMALL).await.unwrap_err();
    assert_exhausted(&refused, "max_streams = 1");
    assert!(
        refused.message().contains("caller \"small\""),
        "{refused:?}"
    );

    // "other" has streams of its own: two at once, both served
    let mut client = registrar.client.clone();
    let mut streams = Vec::new();
    for prefix in ["o1-", "o2-"] {
        let messages = vec![stream_header(&["lcic"], ""), stream_chunk(users(prefix, 3))];
        streams.push(
            client
                .batch_register_stream(with_token(tokio_stream::iter(messages), OTHER))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    for responses in streams {
        let collected = collect_stream(responses).await.unwrap();
        assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 3);
    }
    let mut sent = sent_user_ids(&simulator);
    sent.sort();
    assert_eq!(
        sent.len(),
        6,
        "only the other caller's users were sent: {sent:?}"
    );
    assert!(sent.iter().all(|id| id.starts_with('o')));

    // once the open stream ends, its place is free again
    held_input.send(stream_chunk(users("s-", 2))).await.unwrap();
    drop(held_input);
    let held = collect_stream(held_responses).await.unwrap();
    assert_eq!(held.with_outcome(pb::Outcome::Registered).len(), 2);
    let (again, responses) = open_stream(&registrar, SMALL).await.unwrap();
    drop(again);
    collect_stream(responses).await.unwrap();
}

#[tokio::test]
async fn a_caller_over_its_unary_batch_limit_is_resource_exhausted_and_another_caller_is_served() {
    let (simulator, registrar) = start(Duration::from_millis(800)).await;
    let mut client = registrar.client.clone();
    let in_flight = tokio::spawn(async move {
        batch_register(
            &mut client,
            with_token(request(&["lcic"], users("slow-", 2)), SMALL),
        )
        .await
    });
    wait_for_calls(&simulator, 1).await;
    let mut client = registrar.client.clone();
    let refused = batch_register(
        &mut client,
        with_token(request(&["lcic"], users("refused-", 1)), SMALL),
    )
    .await
    .unwrap_err();
    assert_exhausted(&refused, "max_unary_batches = 1");
    let other = batch_register(
        &mut client,
        with_token(request(&["lcic"], users("other-", 1)), OTHER),
    )
    .await
    .unwrap();
    assert_eq!(other.with_outcome(pb::Outcome::Registered).len(), 1);
    let slow = in_flight.await.unwrap().unwrap();
    assert_eq!(slow.with_outcome(pb::Outcome::Registered).len(), 2);
    let sent = sent_user_ids(&simulator);
    assert!(
        !sent.iter().any(|id| id.starts_with("refused-")),
        "the refused batch's user never reached the vendor: {sent:?}"
    );
    let again = batch_register(
        &mut client,
        with_token(request(&["lcic"], users("after-", 1)), SMALL),
    )
    .await
    .unwrap();
    assert_eq!(again.results.len(), 1, "the ended batch freed its place");
}

#[tokio::test]
async fn unanswered_users_over_the_limit_are_refused_and_a_stream_waits_for_its_answers() {
    let (simulator, registrar) = start(Duration::from_millis(300)).await;
    let mut client = registrar.client.clone();
    // 11 users at once can never fit 10 places
    let too_many = batch_register(
        &mut client,
        with_token(request(&["lcic"], users("many-", 11)), SMALL),
    )
    .await
    .unwrap_err();
    assert_exhausted(&too_many, "max_unanswered_users = 10");
    let messages = vec![
        stream_header(&["lcic"], ""),
        stream_chunk(users("chunk-", 11)),
    ];
    let responses = client
        .batch_register_stream(with_token(tokio_stream::iter(messages), SMALL))
        .await
        .unwrap()
        .into_inner();
    let (_, chunk_refused) = collect_stream(responses).await.unwrap_err();
    assert_exhausted(&chunk_refused, "max_unanswered_users = 10");
    assert!(simulator.calls().is_empty(), "nothing refused was sent");

    // a stream of 30 in chunks of 10: each chunk waits for the last one's answers
    let mut messages = vec![stream_header(&["lcic"], "")];
    messages.extend(
        users("st-", 30)
            .chunks(10)
            .map(|part| stream_chunk(part.to_vec())),
    );
    let responses = client
        .batch_register_stream(with_token(tokio_stream::iter(messages), SMALL))
        .await
        .unwrap()
        .into_inner();
    let stream = tokio::spawn(collect_stream(responses));
    wait_for_calls(&simulator, 1).await;
    // meanwhile a unary batch of the same caller finds no room
    let no_room = batch_register(
        &mut client,
        with_token(request(&["lcic"], users("room-", 1)), SMALL),
    )
    .await
    .unwrap_err();
    assert_exhausted(&no_room, "not yet answered");
    // and another caller's user goes straight in
    let other = batch_register(
        &mut client,
        with_token(request(&["lcic"], users("other-", 1)), OTHER),
    )
    .await
    .unwrap();
    assert_eq!(other.with_outcome(pb::Outcome::Registered).len(), 1);

    let collected = stream.await.unwrap().unwrap();
    assert_one_result_per_index(&collected.results, 30);
    assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 30);
    let stream_calls: Vec<usize> = simulator
        .calls()
        .iter()
        .filter(|call| call.user_ids.iter().any(|id| id.starts_with("st-")))
        .map(|call| call.user_ids.len())
        .collect();
    assert!(
        stream_calls.iter().all(|&size| size <= 10) && stream_calls.len() >= 3,
        "never more than 10 of the caller's users unanswered: calls of {stream_calls:?}"
    );
    assert!(
        !sent_user_ids(&simulator)
            .iter()
            .any(|id| id.starts_with("room-"))
    );
}

#[tokio::test]
async fn a_message_over_the_callers_size_limit_is_resource_exhausted_and_another_caller_may_send_it()
 {
    let (simulator, registrar) = start(Duration::ZERO).await;
    let mut client = registrar.client.clone();
    // 9 users with 600-byte display names: about 5.5 kB, over "small"'s 4096 bytes
    let big = || {
        let mut users = users("big-", 9);
        for user in &mut users {
            user.display_name = "n".repeat(600);
        }
        users
    };
    let refused = batch_register(&mut client, with_token(request(&["lcic"], big()), SMALL))
        .await
        .unwrap_err();
    assert_exhausted(&refused, "max_message_bytes = 4096");
    assert!(
        refused.message().contains("BatchRegisterStream"),
        "{refused:?}"
    );
    let messages = vec![stream_header(&["lcic"], ""), stream_chunk(big())];
    let responses = client
        .batch_register_stream(with_token(tokio_stream::iter(messages), SMALL))
        .await
        .unwrap()
        .into_inner();
    let (_, chunk_refused) = collect_stream(responses).await.unwrap_err();
    assert_exhausted(&chunk_refused, "max_message_bytes = 4096");
    assert!(simulator.calls().is_empty(), "nothing refused was sent");

    let other = batch_register(&mut client, with_token(request(&["lcic"], big()), OTHER))
        .await
        .unwrap();
    assert_eq!(
        other.results.len(),
        9,
        "the other caller's limit is the default 4 MiB"
    );
}

#[tokio::test]
async fn users_no_call_carried_by_the_callers_deadline_are_not_sent_and_a_replay_sends_them() {
    // 2 calls a second of 10 users: 50 users take about 2.5 s, the deadline is 1.2 s
    let simulator = lcic_with_latency(1000, Duration::ZERO).await;
    let registrar = Registrar::start(&LCIC.target(
        "lcic",
        &simulator.endpoint(),
        "qps = 2\nmax_batch = 10\nrate_margin = 0.0",
    ))
    .await;
    let mut client = registrar.client.clone();
    let mut asked = request(&["lcic"], users("d-", 50));
    asked.idempotency_key = "deadline-1".to_owned();
    let mut timed = tonic::Request::new(asked.clone());
    timed.set_timeout(Duration::from_millis(1200));
    let cut = batch_register(&mut client, timed).await.unwrap_err();
    assert_eq!(cut.code(), tonic::Code::DeadlineExceeded, "{cut:?}");

    let batch_id = batch_id_of_user(&client, "d-000000").await;
    wait_for_batch_state(
        &client,
        &batch_id,
        pb::BatchState::Interrupted,
        Duration::from_secs(20),
    )
    .await;
    let rows: Vec<pb::Registration> = list_registration_pages(&client, &batch_id, 1000)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(rows.len(), 50, "every user has its row");
    let mut sent = sent_user_ids(&simulator);
    sent.sort();
    let mut registered: Vec<String> = rows
        .iter()
        .filter(|row| row.outcome() == pb::Outcome::Registered)
        .map(|row| row.user_id.clone())
        .collect();
    registered.sort();
    assert_eq!(sent, registered, "exactly the users sent are registered");
    let not_sent: Vec<&pb::Registration> = rows
        .iter()
        .filter(|row| row.outcome() == pb::Outcome::NotSent)
        .collect();
    assert!(
        (10..=40).contains(&not_sent.len()),
        "the deadline cut the batch midway: {} sent, {} not sent",
        sent.len(),
        not_sent.len()
    );
    assert_eq!(sent.len() + not_sent.len(), 50);
    for row in &not_sent {
        assert_eq!(row.error_code, "registrar.DeadlineExceeded", "{row:?}");
        assert!(row.error_message.contains("deadline"), "{row:?}");
    }

    // the same request again, with time enough: the unsent users go, nobody twice
    let calls_before = simulator.calls().len();
    let replay = batch_register(&mut client, asked).await.unwrap();
    assert_one_result_per_index(&replay.results, 50);
    assert!(
        replay
            .results
            .iter()
            .all(|result| result.outcome() == pb::Outcome::Registered),
        "{:?}",
        replay.results
    );
    let mut all = sent_user_ids(&simulator);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 50);
    let finished = registered.into_iter().collect();
    assert_eq!(sent_again(&simulator, calls_before, &finished), 0);
}
