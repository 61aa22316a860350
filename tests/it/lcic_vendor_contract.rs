//! registrar against vendor servers written in the test, not the built-in
//! simulator: one that checks TC3 signatures the way tencentcloud-sdk-go
//! computes them, and checks that every user's audit row exists before the
//! call that carries it; one that fails calls, for retries; one that is slow,
//! for graceful shutdown.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::common::{
    tencent_sdk::{self, sdk_authorization},
    *,
};
use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use registrar::{
    api::pb,
    audit::{
        AuditStore, RegistrationFilter,
        entity::{registration, vendor_call},
    },
    domain::Outcome,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

/// What a test vendor saw.
#[derive(Default)]
struct Seen {
    calls: Vec<Vec<String>>,
    problems: Vec<String>,
}

#[derive(Clone)]
struct Vendor {
    seen: Arc<Mutex<Seen>>,
    audit: Arc<Mutex<Option<AuditStore>>>,
    /// Calls to answer with InternalError before answering normally.
    failures_left: Arc<Mutex<u32>>,
    delay: Duration,
}

impl Vendor {
    fn new(failures: u32, delay: Duration) -> Self {
        Vendor {
            seen: Arc::default(),
            audit: Arc::default(),
            failures_left: Arc::new(Mutex::new(failures)),
            delay,
        }
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.seen.lock().unwrap().calls.clone()
    }

    fn problems(&self) -> Vec<String> {
        self.seen.lock().unwrap().problems.clone()
    }
}

async fn answer(State(vendor): State<Vendor>, headers: HeaderMap, body: Bytes) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let timestamp: i64 = header("x-tc-timestamp").parse().unwrap_or(0);
    let expected = sdk_authorization(
        "lcic",
        LCIC_SECRET_ID,
        LCIC_SECRET_KEY,
        &header("content-type"),
        &header("host"),
        timestamp,
        &body,
    );
    let mut problems = Vec::new();
    if header("authorization") != expected {
        problems.push(format!(
            "signature differs from the SDK's: {}",
            header("authorization")
        ));
    }
    if header("x-tc-action") != "BatchRegister" || header("x-tc-version") != "2022-08-17" {
        problems.push("wrong action or version".to_owned());
    }
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let origin_ids: Vec<String> = parsed["Users"]
        .as_array()
        .map(|users| {
            users
                .iter()
                .map(|user| user["OriginId"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();

    // ground truth for "a user's row exists before the vendor call that carries it"
    let audit = vendor.audit.lock().unwrap().clone();
    if let Some(audit) = audit {
        let rows = registration::Entity::find()
            .filter(registration::Column::UserId.is_in(origin_ids.clone()))
            .all(&audit.connection())
            .await
            .unwrap();
        let recorded: HashSet<&str> = rows.iter().map(|row| row.user_id.as_str()).collect();
        for origin_id in &origin_ids {
            if !recorded.contains(origin_id.as_str()) {
                problems.push(format!("no audit row for {origin_id} before its call"));
            }
        }
        let open_calls = vendor_call::Entity::find()
            .filter(vendor_call::Column::FinishedAt.is_null())
            .all(&audit.connection())
            .await
            .unwrap();
        if !open_calls
            .iter()
            .any(|call| call.user_count as usize == origin_ids.len())
        {
            problems.push("no vendor-call row was written before the call".to_owned());
        }
    }
    {
        let mut seen = vendor.seen.lock().unwrap();
        seen.calls.push(origin_ids.clone());
        seen.problems.extend(problems);
    }
    tokio::time::sleep(vendor.delay).await;
    {
        let mut failures_left = vendor.failures_left.lock().unwrap();
        if *failures_left > 0 {
            *failures_left -= 1;
            return r#"{"Response":{"Error":{"Code":"InternalError","Message":"try again"},"RequestId":"fail"}}"#.to_owned();
        }
    }
    let users: Vec<serde_json::Value> = origin_ids
        .iter()
        .map(|origin_id| serde_json::json!({"SdkAppId": LCIC_APP_ID, "UserId": format!("lcic-{origin_id}"), "OriginId": origin_id}))
        .collect();
    serde_json::json!({"Response": {"Users": users, "RequestId": "req-ok"}}).to_string()
}

async fn start_vendor(vendor: Vendor) -> String {
    let app = Router::new().route("/", post(answer)).with_state(vendor);
    serve_vendor(app).await.0
}

#[test]
fn the_sdk_signer_of_these_tests_reproduces_the_published_example() {
    tencent_sdk::assert_reproduces_t3();
}

#[tokio::test]
async fn calls_signed_the_sdk_way_are_accepted_and_rows_precede_calls() {
    let vendor = Vendor::new(0, Duration::ZERO);
    let endpoint = start_vendor(vendor.clone()).await;
    let mut registrar = Registrar::start(&lcic_target("lcic", &endpoint, "")).await;
    *vendor.audit.lock().unwrap() = Some(registrar.audit.clone());

    let collected = batch_register(
        &mut registrar.client,
        request(&["lcic"], users("sdk", 1500)),
    )
    .await
    .unwrap();

    assert_eq!(vendor.problems(), Vec::<String>::new());
    // one full call and the remainder; the two run at once, so the order in
    // which this vendor records them is not part of the contract
    let mut sizes: Vec<usize> = vendor.calls().iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![500, 1000]);
    assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 1500);
    for result in &collected.results {
        assert_eq!(result.vendor_user_id, format!("lcic-{}", result.user_id));
    }
    registrar.stop().await;
}

#[tokio::test]
async fn a_retryable_vendor_error_is_retried_with_a_fresh_signature() {
    // docs/vendors/tencent-cloud-api.md#error-codes: InternalError is retryable (policy).
    let vendor = Vendor::new(2, Duration::ZERO);
    let endpoint = start_vendor(vendor.clone()).await;
    let mut registrar = Registrar::start(&lcic_target("lcic", &endpoint, "max_attempts = 4")).await;

    let collected = batch_register(
        &mut registrar.client,
        request(&["lcic"], users("retry", 20)),
    )
    .await
    .unwrap();

    assert_eq!(
        vendor.problems(),
        Vec::<String>::new(),
        "every attempt is signed anew and correctly"
    );
    assert_eq!(vendor.calls().len(), 3);
    assert!(
        collected
            .results
            .iter()
            .all(|result| result.outcome() == pb::Outcome::Registered && result.attempts == 3)
    );
    let calls = vendor_call::Entity::find()
        .all(&registrar.audit.connection())
        .await
        .unwrap();
    let mut attempts: Vec<i32> = calls.iter().map(|call| call.attempt).collect();
    attempts.sort();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert_eq!(
        calls
            .iter()
            .filter(|call| call.vendor_error_code.as_deref() == Some("InternalError"))
            .count(),
        2
    );
    registrar.stop().await;
}

#[tokio::test]
async fn retries_stop_at_the_attempt_cap_with_a_truthful_failure() {
    let vendor = Vendor::new(100, Duration::ZERO);
    let endpoint = start_vendor(vendor.clone()).await;
    let mut registrar = Registrar::start(&lcic_target("lcic", &endpoint, "max_attempts = 2")).await;

    let collected = batch_register(&mut registrar.client, request(&["lcic"], users("cap", 5)))
        .await
        .unwrap();

    assert_eq!(vendor.calls().len(), 2);
    for result in &collected.results {
        assert_eq!(result.outcome(), pb::Outcome::Failed);
        assert_eq!(result.error_code, "InternalError");
        assert_eq!(result.attempts, 2);
    }
    registrar.stop().await;
}

#[tokio::test]
async fn an_unreachable_vendor_fails_users_without_losing_them() {
    // nothing listens on this port: every attempt fails to connect
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut registrar = Registrar::start(&lcic_target("lcic", &endpoint, "max_attempts = 2")).await;

    let collected = batch_register(&mut registrar.client, request(&["lcic"], users("down", 3)))
        .await
        .unwrap();

    assert_eq!(collected.results.len(), 3);
    assert!(
        collected
            .results
            .iter()
            .all(|result| result.outcome() == pb::Outcome::Failed
                && result.error_code == "registrar.ConnectFailed")
    );
    let targets = registrar.list_targets().await;
    assert_eq!(targets[0].health(), pb::TargetHealth::Failing);
    registrar.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_and_audit_writes_finish() {
    let vendor = Vendor::new(0, Duration::from_millis(800));
    let endpoint = start_vendor(vendor.clone()).await;
    let mut registrar = Registrar::start(&lcic_target("lcic", &endpoint, "")).await;
    let mut client = registrar.client.clone();
    let in_flight = tokio::spawn(async move {
        batch_register(&mut client, request(&["lcic"], users("drain", 50))).await
    });
    for _ in 0..100 {
        if !vendor.calls().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(vendor.calls().len(), 1, "the call is in flight");

    registrar.stop().await;

    let collected = in_flight.await.unwrap().expect("the stream ends normally");
    assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 50);
    let (rows, _) = registrar
        .audit
        .list_registrations(
            &RegistrationFilter {
                outcome: Some(Outcome::Registered),
                ..RegistrationFilter::default()
            },
            100,
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        50,
        "every outcome was recorded before the server stopped"
    );
    let batch = registrar
        .audit
        .batch(&collected.batch_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.state, registrar::audit::BatchState::Completed);
}
