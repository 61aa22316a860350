//! `BatchRegisterStream` end to end: results flow back while input still
//! arrives, a caller that stops reading stops the server reading its input,
//! and a caller that goes away loses nothing the server accepted. Registrar
//! and the simulator run in-process on loopback; assertions are on the
//! results, the simulator's records and the audit store.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::common::*;
use futures::StreamExt;
use registrar::{
    api::pb::{
        self, batch_register_stream_request::Message, batch_register_stream_response::Event,
    },
    audit::{BatchState, entity::registration},
    domain::{Outcome, VendorKind},
    sim::{Simulator, faults::SimFaults},
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// Long enough for any single step of these tests on a loaded machine.
const STEP: Duration = Duration::from_secs(20);

fn header(targets: &[&str]) -> pb::BatchRegisterStreamRequest {
    pb::BatchRegisterStreamRequest {
        message: Some(Message::Header(pb::BatchHeader {
            targets: targets.iter().map(|target| target.to_string()).collect(),
            ..pb::BatchHeader::default()
        })),
    }
}

/// The users numbered `first..first + count`, their ids naming their index,
/// with a name and an avatar as real callers send (about 100 bytes a user).
fn numbered(first: usize, count: usize) -> Vec<pb::User> {
    (first..first + count)
        .map(|n| pb::User {
            user_id: user_id(n),
            display_name: format!("Stream user {n:07} of the registrar tests"),
            avatar_url: format!("https://cdn.example.com/avatars/{n:07}.png"),
            ..pb::User::default()
        })
        .collect()
}

fn user_id(n: usize) -> String {
    format!("s{n:07}")
}

fn chunk(users: Vec<pb::User>) -> pb::BatchRegisterStreamRequest {
    pb::BatchRegisterStreamRequest {
        message: Some(Message::Users(pb::UserChunk { users })),
    }
}

/// The next event of a response stream, failing the test if it takes too long.
async fn next_event(responses: &mut Streaming<pb::BatchRegisterStreamResponse>) -> Option<Event> {
    let message = tokio::time::timeout(STEP, responses.message())
        .await
        .expect("the server answers within the step")
        .expect("the stream does not fail");
    message.map(|response| response.event.expect("an event"))
}

/// Opens a `BatchRegisterStream` that sends `input`: its responses.
async fn open_stream(
    registrar: &mut Registrar,
    input: impl futures::Stream<Item = pb::BatchRegisterStreamRequest> + Send + 'static,
) -> Streaming<pb::BatchRegisterStreamResponse> {
    registrar
        .client
        .batch_register_stream(input)
        .await
        .unwrap()
        .into_inner()
}

/// The first event of a response stream, which must be a result.
async fn first_result(
    responses: &mut Streaming<pb::BatchRegisterStreamResponse>,
) -> pb::UserResult {
    let Some(Event::Result(first)) = next_event(responses).await else {
        panic!("the first event is a result");
    };
    first
}

/// Reads the rest of a stream: its results and its summary.
async fn read_to_end(
    responses: &mut Streaming<pb::BatchRegisterStreamResponse>,
    results: &mut Vec<pb::UserResult>,
) -> pb::BatchSummary {
    let mut summary = None;
    while let Some(event) = next_event(responses).await {
        match event {
            Event::Result(result) => {
                assert!(summary.is_none(), "a result after the summary");
                results.push(result);
            }
            Event::Summary(done) => assert!(summary.replace(done).is_none(), "two summaries"),
        }
    }
    summary.expect("the stream ends with a summary")
}

/// Each index once, each naming the user sent at that position.
fn assert_one_result_per_user(results: &[pb::UserResult], users: usize) {
    let mut by_index = BTreeMap::new();
    for result in results {
        assert_eq!(result.user_id, user_id(result.index as usize), "{result:?}");
        assert!(
            by_index.insert(result.index, result).is_none(),
            "two results for index {}",
            result.index
        );
    }
    assert_eq!(by_index.len(), users, "one result per user");
    assert_eq!(by_index.keys().next_back().copied(), Some(users as u64 - 1));
}

/// An LCIC target with a quota far above what these tests send, so the vendor is never the bottleneck.
async fn fast_lcic() -> (Simulator, Registrar) {
    start_with_target(LCIC, 1000, "lcic", "qps = 1000").await
}

#[tokio::test]
async fn results_stream_back_while_the_input_still_arrives() {
    let (simulator, mut registrar) = fast_lcic().await;
    let (input, requests) = mpsc::channel(4);
    input.send(header(&["lcic"])).await.unwrap();
    input.send(chunk(numbered(0, 50))).await.unwrap();

    let mut responses = open_stream(&mut registrar, ReceiverStream::new(requests)).await;
    // the second chunk is sent only once a result of the first is back
    let first = first_result(&mut responses).await;
    assert!(first.index < 50, "{first:?}");
    let calls_before_second_chunk = simulator.calls();
    input.send(chunk(numbered(50, 50))).await.unwrap();
    drop(input);
    let mut results = vec![first];
    let summary = read_to_end(&mut responses, &mut results).await;

    // indexes continue across chunks: the second chunk's users are 50..100
    assert_one_result_per_user(&results, 100);
    assert!(
        results
            .iter()
            .all(|result| result.outcome() == pb::Outcome::Registered)
    );
    assert_eq!(summary.targets[0].total, 100);
    assert_eq!(summary.targets[0].registered, 100);
    // the vendor had a call of the first chunk's users alone before the second chunk was sent
    let first_chunk: BTreeSet<String> = (0..50).map(user_id).collect();
    assert!(!calls_before_second_chunk.is_empty());
    assert!(
        calls_before_second_chunk
            .iter()
            .all(|call| call.user_ids.iter().all(|id| first_chunk.contains(id)))
    );
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        100
    );
    registrar.stop().await;
}

/// Registration rows in the audit store: the users the server has accepted.
async fn accepted_rows(registrar: &Registrar) -> usize {
    registration::Entity::find()
        .count(&registrar.audit.connection())
        .await
        .unwrap() as usize
}

// several threads, so that the 300,000 users go through in seconds once read
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_that_stops_reading_stops_the_server_reading_its_input() {
    const CHUNKS: usize = 300;
    const CHUNK: usize = 1000;
    let (simulator, mut registrar) = fast_lcic().await;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let chunks = futures::stream::iter(0..CHUNKS).map(move |n| {
        counter.fetch_add(1, Ordering::SeqCst);
        chunk(numbered(n * CHUNK, CHUNK))
    });
    let input = futures::stream::iter([header(&["lcic"])]).chain(chunks);

    let mut responses = open_stream(&mut registrar, input).await;
    // read nothing: the input stalls once the batch's outstanding users, the
    // result buffers and the HTTP/2 windows are full (a busy machine may need
    // more than the first two seconds to get there)
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut stalled_at = (
        pulled.load(Ordering::SeqCst),
        accepted_rows(&registrar).await,
    );
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = (
            pulled.load(Ordering::SeqCst),
            accepted_rows(&registrar).await,
        );
        if now == stalled_at {
            break;
        }
        stalled_at = now;
    }
    // ...and stays there
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (chunks_pulled, users_accepted) = stalled_at;
    assert_eq!(
        (
            pulled.load(Ordering::SeqCst),
            accepted_rows(&registrar).await
        ),
        stalled_at,
        "the server kept reading input nobody answers"
    );
    assert!(
        chunks_pulled < 100,
        "{chunks_pulled} of {CHUNKS} chunks pulled by a server nobody reads"
    );
    assert!(users_accepted <= chunks_pulled * CHUNK);

    // reading again resumes the input; every user gets exactly one result
    let mut results = Vec::with_capacity(CHUNKS * CHUNK);
    let summary = read_to_end(&mut responses, &mut results).await;
    assert_eq!(pulled.load(Ordering::SeqCst), CHUNKS);
    assert_one_result_per_user(&results, CHUNKS * CHUNK);
    assert!(
        results
            .iter()
            .all(|result| result.outcome() == pb::Outcome::Registered)
    );
    assert_eq!(summary.targets[0].total, (CHUNKS * CHUNK) as u64);
    assert_eq!(summary.targets[0].registered, (CHUNKS * CHUNK) as u64);
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        CHUNKS * CHUNK
    );
    registrar.stop().await;
}

#[tokio::test]
async fn a_caller_that_reads_nothing_never_holds_back_a_caller_sharing_its_vendor_call() {
    const CHUNKS: usize = 3;
    const CHUNK: usize = 700;
    // one call a second: the last call forms two seconds in, from the first
    // caller's last users and the second caller's users queued by then
    let (simulator, mut registrar) = start_with_target(LCIC, 1000, "lcic", "qps = 1").await;
    let chunks = (0..CHUNKS).map(|n| chunk(numbered(n * CHUNK, CHUNK)));
    let input = futures::stream::iter([header(&["lcic"])]).chain(futures::stream::iter(chunks));
    let mut silent = open_stream(&mut registrar, input).await;
    // the first caller reads nothing; once its first call has left...
    tokio::time::timeout(STEP, async {
        while simulator.calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the first caller's users reach the vendor");

    // ...a second caller registers a hundred users of its own
    let mut other_client = registrar.client.clone();
    let other_users = (0..100).map(|n| user(format!("other-{n:03}"))).collect();
    let other = tokio::time::timeout(
        STEP,
        batch_register(&mut other_client, request(&["lcic"], other_users)),
    )
    .await
    .expect("the second caller's results are not held back by the first")
    .unwrap();
    assert_eq!(other.with_outcome(pb::Outcome::Registered).len(), 100);

    // the two callers shared a vendor call
    let calls = simulator.calls();
    let shared = calls
        .iter()
        .find(|call| call.user_ids.iter().any(|id| id.starts_with("other-")))
        .expect("a call carried the second caller's users");
    let of_second = shared.user_ids.iter().filter(|id| id.starts_with("other-"));
    assert_eq!(of_second.count(), 100);
    assert!(
        shared.user_ids.iter().any(|id| id.starts_with('s')),
        "the second caller's users went in a call of their own"
    );

    // the first caller reads at last and gets every result
    let mut results = Vec::with_capacity(CHUNKS * CHUNK);
    let summary = read_to_end(&mut silent, &mut results).await;
    assert_one_result_per_user(&results, CHUNKS * CHUNK);
    assert_eq!(summary.targets[0].registered, (CHUNKS * CHUNK) as u64);
    registrar.stop().await;
}

#[tokio::test]
async fn a_caller_that_goes_away_loses_nothing_the_server_accepted() {
    // a slow vendor: calls take 300 ms and the quota is 20 calls a second
    let simulator = start_simulator_with_faults(
        vec![lcic_account(20)],
        SimFaults {
            latency: Duration::from_millis(300),
            ..SimFaults::default()
        },
    )
    .await;
    let mut registrar =
        Registrar::start(&lcic_target("lcic", &simulator.endpoint(), "qps = 20")).await;
    let (input, requests) = mpsc::channel(8);
    input.send(header(&["lcic"])).await.unwrap();
    for n in 0..5 {
        input.send(chunk(numbered(n * 1000, 1000))).await.unwrap();
    }
    let mut responses = open_stream(&mut registrar, ReceiverStream::new(requests)).await;
    let first = first_result(&mut responses).await;
    let batch_id = first.batch_id.clone();
    // the caller goes away: it reads no more and sends no more
    drop(responses);
    drop(input);

    // every user the server accepted reaches a final outcome, and the batch ends
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let batch = loop {
        let batch = registrar.audit.batch(&batch_id).await.unwrap().unwrap();
        let pending = registration::Entity::find()
            .filter(registration::Column::BatchId.eq(batch_id.as_str()))
            .filter(registration::Column::Outcome.eq(Outcome::Pending.as_str()))
            .count(&registrar.audit.connection())
            .await
            .unwrap();
        if pending == 0 && batch.state != BatchState::Running {
            break batch;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} rows still pending, batch {:?}",
            batch.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // its input was cut: the batch is interrupted, never completed, so a replay resumes it
    assert_eq!(batch.state, BatchState::Interrupted);

    // one final row per accepted user, at its index; the vendor holds exactly the registered ones
    let rows = registration::Entity::find()
        .filter(registration::Column::BatchId.eq(batch_id.as_str()))
        .all(&registrar.audit.connection())
        .await
        .unwrap();
    let accepted = batch.user_count as usize;
    assert!(
        accepted >= 1000,
        "a result came back, so a chunk was accepted: {accepted}"
    );
    assert_eq!(rows.len(), accepted, "one row per accepted user");
    let indexes: BTreeSet<i64> = rows.iter().map(|row| row.idx).collect();
    assert_eq!(indexes, (0..accepted as i64).collect());
    for row in &rows {
        assert_eq!(row.user_id, user_id(row.idx as usize));
        assert_ne!(row.outcome, Outcome::Pending.as_str(), "{row:?}");
    }
    let registered: BTreeSet<String> = rows
        .iter()
        .filter(|row| row.outcome == Outcome::Registered.as_str())
        .map(|row| row.user_id.clone())
        .collect();
    let held: BTreeSet<String> = simulator
        .registered(VendorKind::TencentLcic, LCIC_APP_ID)
        .into_iter()
        .map(|user| user.origin_id)
        .collect();
    assert_eq!(
        registered, held,
        "registered rows are exactly the users the vendor holds"
    );
    registrar.stop().await;
}

/// Sends `messages` as one stream; the results that came back, and how the call ended.
async fn stream_until_its_error(
    registrar: &mut Registrar,
    messages: Vec<pb::BatchRegisterStreamRequest>,
) -> (Vec<pb::UserResult>, tonic::Status) {
    let mut responses = registrar
        .client
        .batch_register_stream(tokio_stream::iter(messages))
        .await
        .expect("the header opens the batch")
        .into_inner();
    let mut results = Vec::new();
    loop {
        let message = tokio::time::timeout(STEP, responses.message())
            .await
            .expect("the server answers within the step");
        match message {
            Ok(Some(response)) => match response.event.expect("an event") {
                Event::Result(result) => results.push(result),
                Event::Summary(summary) => panic!("a summary after a bad message: {summary:?}"),
            },
            Ok(None) => panic!("the call ended without an error"),
            Err(status) => return (results, status),
        }
    }
}

#[tokio::test]
async fn a_second_header_ends_the_call_like_every_bad_message_after_the_header() {
    use tonic_types::StatusExt;

    let simulator = start_simulator(vec![lcic_account(1000)]).await;
    let mut registrar = Registrar::start_with_database(
        &lcic_target("lcic", &simulator.endpoint(), "qps = 1000"),
        "sqlite::memory:",
        "max_unary_users = 3",
    )
    .await;

    let second_header = vec![
        header(&["lcic"]),
        chunk(numbered(0, 2)),
        header(&["lcic"]),
        chunk(numbered(2, 1)),
    ];
    let oversized_chunk = vec![
        header(&["lcic"]),
        chunk(numbered(10, 2)),
        chunk(numbered(12, 4)),
        chunk(numbered(16, 1)),
    ];
    for (messages, field, first, accepted) in [
        (second_header, "header", 0, 2),
        (oversized_chunk, "users", 10, 2),
    ] {
        let (results, status) = stream_until_its_error(&mut registrar, messages).await;

        // the users before the bad message are answered, then INVALID_ARGUMENT, no summary
        let indexes: BTreeSet<u64> = results.iter().map(|result| result.index).collect();
        assert_eq!(indexes, (0..accepted).collect(), "{field}: {results:?}");
        for result in &results {
            assert_eq!(result.user_id, user_id(first + result.index as usize));
            assert_eq!(result.outcome(), pb::Outcome::Registered, "{result:?}");
        }
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{}",
            status.message()
        );
        let violations = status
            .get_details_bad_request()
            .expect("a BadRequest detail");
        assert_eq!(violations.field_violations[0].field, field);

        // the batch is recorded as interrupted with the users it accepted
        let batch = registrar
            .client
            .get_batch(pb::GetBatchRequest {
                batch_id: results[0].batch_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .batch
            .unwrap();
        assert_eq!(batch.state(), pb::BatchState::Interrupted, "{field}");
        assert_eq!(batch.user_count, accepted, "{field}");
    }

    // nothing after a bad message was read: the vendor holds only the accepted users
    let held: BTreeSet<String> = simulator
        .registered(VendorKind::TencentLcic, LCIC_APP_ID)
        .into_iter()
        .map(|user| user.origin_id)
        .collect();
    let expected: BTreeSet<String> = [0, 1, 10, 11].into_iter().map(user_id).collect();
    assert_eq!(held, expected);
    registrar.stop().await;
}
