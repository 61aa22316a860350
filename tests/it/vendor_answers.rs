//! Answers a misbehaving vendor gives, against a fake LCIC that answers each
//! call as the test scripts it: an answer over the vendor's size limit is
//! refused unread and not retried (`registrar.ResponseTooLarge`, whether or
//! not it declares its length), and an answer registrar cannot read is
//! retried, since LCIC makes a repeat safe (a user registered twice is
//! reported with its existing id).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use axum::{Router, body::Body, extract::State, response::Response, routing::post};
use bytes::Bytes;

use crate::common::*;
use registrar::api::pb;

/// How the fake answers one call.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// 50 MB of JSON whitespace in 64 KiB chunks, with no Content-Length.
    HugeStreamed,
    /// A body declared 50 MB long (Content-Length) that never comes.
    HugeDeclared,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// LCIC's documented success: every user with its UserId.
    Registered,
}

const HUGE: usize = 50 * 1024 * 1024;

#[derive(Clone, Default)]
struct Fake {
    script: Arc<Mutex<VecDeque<Answer>>>,
    calls: Arc<Mutex<Vec<Answer>>>,
}

async fn answer(State(fake): State<Fake>, body: Bytes) -> Response {
    let next = fake
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Answer::Registered);
    fake.calls.lock().unwrap().push(next);
    match next {
        Answer::HugeStreamed => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let chunks = futures::stream::iter(
                (0..HUGE / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            Response::new(Body::from_stream(chunks))
        }
        Answer::HugeDeclared => Response::builder()
            .header("content-length", HUGE.to_string())
            .body(Body::from_stream(futures::stream::pending::<
                Result<Bytes, std::io::Error>,
            >()))
            .unwrap(),
        Answer::Garbage => Response::new(Body::from("<html>502 bad gateway</html>")),
        Answer::Registered => {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let users: Vec<serde_json::Value> = request["Users"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|user| {
                    let origin_id = user["OriginId"].as_str().unwrap_or_default();
                    serde_json::json!({"SdkAppId": LCIC_APP_ID, "UserId": format!("lcic-{origin_id}"), "OriginId": origin_id})
                })
                .collect();
            let body = serde_json::json!({"Response": {"Users": users, "RequestId": "req-ok"}});
            Response::new(Body::from(body.to_string()))
        }
    }
}

async fn start(script: &[Answer]) -> (Fake, Registrar) {
    let fake = Fake::default();
    fake.script.lock().unwrap().extend(script.iter().copied());
    let app = Router::new()
        .route("/", post(answer))
        .with_state(fake.clone());
    let (endpoint, _server) = serve_vendor(app).await;
    let registrar = Registrar::start(&lcic_target("lcic", &endpoint, "")).await;
    (fake, registrar)
}

#[tokio::test]
async fn an_answer_over_the_vendors_size_limit_is_refused_unread_and_not_retried() {
    for huge in [Answer::HugeStreamed, Answer::HugeDeclared] {
        let (fake, mut registrar) = start(&[huge]).await;
        let collected = batch_register(
            &mut registrar.client,
            request(&["lcic"], users("big-", 100)),
        )
        .await
        .unwrap();
        assert_eq!(collected.results.len(), 100, "{huge:?}");
        for result in &collected.results {
            assert_eq!(
                result.outcome(),
                pb::Outcome::Failed,
                "{huge:?}: {result:?}"
            );
            assert_eq!(result.error_code, "registrar.ResponseTooLarge");
            assert_eq!(
                result.attempts, 1,
                "{huge:?}: a repeat would get the same answer"
            );
            assert!(
                result.error_message.contains("4194304 bytes"),
                "the message names the limit: {}",
                result.error_message
            );
        }
        assert_eq!(
            fake.calls.lock().unwrap().len(),
            1,
            "{huge:?}: one call only"
        );
        registrar.stop().await;
    }
}

#[tokio::test]
async fn an_unreadable_answer_is_retried_where_the_vendor_makes_a_repeat_safe() {
    let (fake, mut registrar) = start(&[Answer::Garbage]).await;
    let collected = batch_register(&mut registrar.client, request(&["lcic"], users("g-", 3)))
        .await
        .unwrap();
    for result in &collected.results {
        assert_eq!(result.outcome(), pb::Outcome::Registered, "{result:?}");
        assert_eq!(result.attempts, 2);
        assert_eq!(result.vendor_user_id, format!("lcic-{}", result.user_id));
    }
    let calls = fake.calls.lock().unwrap().clone();
    assert!(
        matches!(calls[..], [Answer::Garbage, Answer::Registered]),
        "{calls:?}"
    );
    registrar.stop().await;
}
