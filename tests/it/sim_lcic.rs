//! The vendor simulator's LCIC `BatchRegister`, over real HTTP: requests are
//! built and signed by registrar's own LCIC vendor module (or by TC3 directly
//! for deliberately broken ones), sent with a plain hyper client to a
//! simulator on 127.0.0.1, and checked against what the simulator recorded.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use registrar::{
    domain::{User, VendorKind},
    sim::{RecordedCall, RegisteredUser, SimAccount, SimConfig, Simulator},
    vendor_api::{
        AttemptContext, VendorApi, VendorOutcome,
        tencent::envelope::{Envelope, TencentCredentials, decode_envelope},
        tencent::lcic::{Lcic, LcicConfig, parse_batch_register},
        tencent::tc3,
    },
};
use secrecy::SecretString;
use serde_json::{Value, json};

const APP_ID: u64 = 1_400_000_001;
const SECRET_ID: &str = "AKIDsimulatorLcicTest000000000000000";
const SECRET_KEY: &str = "simulatorLcicTestSecretKey000000";
const LCIC: VendorKind = VendorKind::TencentLcic;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn start(qps: u32) -> Simulator {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Simulator::start(SimConfig {
        listen,
        accounts: vec![SimAccount {
            vendor: LCIC,
            app_id: APP_ID,
            user_store_id: String::new(),
            secret_id: SECRET_ID.to_owned(),
            secret_key: SecretString::from(SECRET_KEY),
            qps,
        }],
    })
    .await
    .unwrap()
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn lcic(sim: &Simulator, sdk_app_id: u64, secret_key: &str) -> Lcic {
    Lcic::new(LcicConfig {
        endpoint: sim.endpoint(),
        sdk_app_id,
        region: None,
        credentials: TencentCredentials {
            secret_id: SECRET_ID.to_owned(),
            secret_key: SecretString::from(secret_key),
        },
    })
}

fn users(ids: &[&str]) -> Vec<User> {
    ids.iter()
        .map(|id| User {
            user_id: (*id).to_owned(),
            display_name: format!("name of {id}"),
            avatar_url: format!("https://example.com/{id}.png"),
            ..User::default()
        })
        .collect()
}

fn many_users(count: usize) -> Vec<User> {
    (0..count)
        .map(|index| User {
            user_id: format!("user-{index:05}"),
            ..User::default()
        })
        .collect()
}

async fn send(client: &HttpClient, request: http::Request<Bytes>) -> (http::StatusCode, Bytes) {
    let response = client.request(request.map(Full::new)).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// Builds and sends one BatchRegister for `users` with registrar's LCIC module.
async fn register(client: &HttpClient, api: &Lcic, users: &[User]) -> (http::StatusCode, Bytes) {
    let refs: Vec<&User> = users.iter().collect();
    let request = api.build_request(&refs, &AttemptContext::now()).unwrap();
    send(client, request).await
}

/// The `Response.Error.Code` of an answer; `None` for a success.
fn error_code(status: http::StatusCode, body: &[u8]) -> Option<String> {
    match decode_envelope(status, body).expect("a Tencent envelope") {
        Envelope::Failure { error, .. } => Some(error.code),
        Envelope::Success { .. } => None,
    }
}

/// A request signed with TC3 over exactly these headers and body, for requests
/// registrar's module would never build.
struct RawCall<'a> {
    action: &'a str,
    version: &'a str,
    content_type: &'a str,
    service: &'a str,
    secret_key: &'a str,
    timestamp: i64,
    body: Vec<u8>,
}

impl<'a> RawCall<'a> {
    fn batch_register(body: Value) -> Self {
        RawCall {
            action: "BatchRegister",
            version: "2022-08-17",
            content_type: "application/json",
            service: "lcic",
            secret_key: SECRET_KEY,
            timestamp: AttemptContext::now().unix_time,
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    fn request(&self, sim: &Simulator) -> http::Request<Bytes> {
        let host = sim.local_addr().to_string();
        let signature = tc3::sign(
            &tc3::SigningInput {
                method: "POST",
                canonical_query: "",
                headers: &[("content-type", self.content_type), ("host", &host)],
                payload: &self.body,
                service: self.service,
                timestamp: self.timestamp,
            },
            SECRET_ID,
            &SecretString::from(self.secret_key),
        );
        http::Request::post(format!("{}/", sim.endpoint()))
            .header("host", &host)
            .header("content-type", self.content_type)
            .header("x-tc-action", self.action)
            .header("x-tc-version", self.version)
            .header("x-tc-timestamp", self.timestamp.to_string())
            .header("authorization", signature.authorization)
            .body(Bytes::from(self.body.clone()))
            .unwrap()
    }
}

async fn send_raw(client: &HttpClient, sim: &Simulator, call: RawCall<'_>) -> Option<String> {
    let (status, body) = send(client, call.request(sim)).await;
    assert_eq!(
        status,
        http::StatusCode::OK,
        "Tencent answers errors inside HTTP 200"
    );
    error_code(status, &body)
}

fn last_call(sim: &Simulator) -> RecordedCall {
    sim.calls().pop().expect("a recorded call")
}

#[tokio::test]
async fn a_valid_call_registers_its_users_and_answers_the_documented_shape() {
    let sim = start(20).await;
    let client = client();
    let api = lcic(&sim, APP_ID, SECRET_KEY);
    let sent = users(&["bob", "alice", "carol"]);
    let (status, body) = register(&client, &api, &sent).await;
    assert_eq!(status, http::StatusCode::OK);

    // LCIC BatchRegister "Output Example" (docs/vendors/lcic.md#examples): Users[{SdkAppId, UserId,
    // OriginId}] and a RequestId.
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let listed = answer["Response"]["Users"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["SdkAppId"], json!(APP_ID));
    assert_eq!(listed[0]["OriginId"], json!("bob"));
    assert!(answer["Response"]["RequestId"].is_string());

    let refs: Vec<&User> = sent.iter().collect();
    let report = parse_batch_register(&refs, status, &body);
    assert_eq!(report.error_code, None);
    let mut vendor_ids = Vec::new();
    for outcome in &report.outcomes {
        match outcome {
            VendorOutcome::Registered {
                vendor_user_id: Some(vendor_user_id),
            } => {
                assert_eq!(vendor_user_id.len(), 27, "{vendor_user_id}");
                assert!(vendor_user_id.chars().all(|c| c.is_ascii_alphanumeric()));
                vendor_ids.push(vendor_user_id.clone());
            }
            other => panic!("expected a registered user, got {other:?}"),
        }
    }

    let registered = sim.registered(LCIC, APP_ID);
    let origin_ids: Vec<&str> = registered
        .iter()
        .map(|user| user.origin_id.as_str())
        .collect();
    assert_eq!(origin_ids, ["alice", "bob", "carol"], "sorted by origin id");
    let bob = &registered[1];
    assert_eq!(bob.vendor_user_id, vendor_ids[0]);
    assert_eq!(bob.name, "name of bob");
    assert_eq!(bob.avatar, "https://example.com/bob.png");
    assert_eq!(bob.registrations, 1);

    let calls = sim.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(call.accepted());
    assert_eq!(call.vendor, LCIC);
    assert_eq!(call.action, "BatchRegister");
    assert_eq!(call.app_id, Some(APP_ID));
    assert_eq!(call.user_ids, ["bob", "alice", "carol"]);
    assert_eq!(call.http_status, 200);
    assert_eq!(sim.max_calls_in_any_second(LCIC, APP_ID), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn registering_again_overwrites_keeps_the_user_id_and_counts_registrations() {
    let sim = start(20).await;
    let client = client();
    let api = lcic(&sim, APP_ID, SECRET_KEY);
    let (status, first) = register(&client, &api, &users(&["u1", "u2"])).await;
    assert_eq!(error_code(status, &first), None);
    let mut renamed = users(&["u1"]);
    renamed[0].display_name = "renamed".to_owned();
    let (status, second) = register(&client, &api, &renamed).await;
    assert_eq!(error_code(status, &second), None);

    let first: Value = serde_json::from_slice(&first).unwrap();
    let second: Value = serde_json::from_slice(&second).unwrap();
    // LCIC BatchRegister (docs/vendors/lcic.md#repeats): "If a user ID already exists, the existing
    // one will be overwritten."
    assert_eq!(
        first["Response"]["Users"][0]["UserId"],
        second["Response"]["Users"][0]["UserId"]
    );
    let registered = sim.registered(LCIC, APP_ID);
    assert_eq!(registered.len(), 2);
    assert_eq!(registered[0].origin_id, "u1");
    assert_eq!(registered[0].registrations, 2);
    assert_eq!(registered[0].name, "renamed");
    assert_eq!(registered[1].registrations, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_user_without_origin_id_gets_its_user_id_as_origin_id() {
    let sim = start(20).await;
    let client = client();
    let body = json!({"Users": [{"SdkAppId": APP_ID, "Name": "anonymous"}]});
    let (status, answer) = send(&client, RawCall::batch_register(body).request(&sim)).await;
    assert_eq!(error_code(status, &answer), None);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    let listed = &answer["Response"]["Users"][0];
    // docs/vendors/lcic.md#response: OriginId "defaults to UserId if empty".
    assert_eq!(listed["OriginId"], listed["UserId"]);
    let registered = sim.registered(LCIC, APP_ID);
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].origin_id, registered[0].vendor_user_id);
    assert_eq!(last_call(&sim).user_ids, [""]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_key_is_a_signature_failure_and_registers_nobody() {
    let sim = start(20).await;
    let client = client();
    let api = lcic(&sim, APP_ID, "not-the-secret-key-000000000000");
    let sent = users(&["u1", "u2"]);
    let (status, body) = register(&client, &api, &sent).await;
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(
        error_code(status, &body).as_deref(),
        Some("AuthFailure.SignatureFailure")
    );
    let text = String::from_utf8_lossy(&body);
    assert!(
        !text.contains(SECRET_KEY),
        "the answer names the key: {text}"
    );

    let refs: Vec<&User> = sent.iter().collect();
    let report = parse_batch_register(&refs, status, &body);
    assert!(
        report
            .outcomes
            .iter()
            .all(|outcome| matches!(outcome, VendorOutcome::Failed { .. }))
    );
    assert!(sim.registered(LCIC, APP_ID).is_empty());
    let call = last_call(&sim);
    assert!(!call.accepted());
    assert_eq!(
        call.error_code.as_deref(),
        Some("AuthFailure.SignatureFailure")
    );
    assert_eq!(call.user_ids, ["u1", "u2"]);
    assert_eq!(call.app_id, Some(APP_ID));
    assert_eq!(sim.max_calls_in_any_second(LCIC, APP_ID), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn more_than_1000_users_is_invalid_parameter_value() {
    let sim = start(20).await;
    let client = client();
    let api = lcic(&sim, APP_ID, SECRET_KEY);
    let (status, body) = register(&client, &api, &many_users(1001)).await;
    // LCIC BatchRegister (docs/vendors/lcic.md#batch-size): "register multiple users (up to 1,000)
    // at a time".
    assert_eq!(
        error_code(status, &body).as_deref(),
        Some("InvalidParameterValue")
    );
    assert!(sim.registered(LCIC, APP_ID).is_empty());
    assert_eq!(last_call(&sim).user_ids.len(), 1001);

    let (status, body) = register(&client, &api, &many_users(1000)).await;
    assert_eq!(error_code(status, &body), None);
    assert_eq!(sim.registered(LCIC, APP_ID).len(), 1000);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_fields_are_unknown_parameter() {
    let sim = start(20).await;
    let client = client();
    for body in [
        json!({"Users": [{"SdkAppId": APP_ID, "OriginId": "u1"}], "Region": "ap-guangzhou"}),
        json!({"Users": [{"SdkAppId": APP_ID, "OriginId": "u1", "UserId": "x"}]}),
    ] {
        let code = send_raw(&client, &sim, RawCall::batch_register(body)).await;
        assert_eq!(code.as_deref(), Some("UnknownParameter"));
    }
    assert!(sim.registered(LCIC, APP_ID).is_empty());
    assert_eq!(last_call(&sim).user_ids, ["u1"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_sdk_app_id_is_invalid_parameter_sdk_app_id() {
    let sim = start(20).await;
    let client = client();
    let api = lcic(&sim, APP_ID + 1, SECRET_KEY);
    let (status, body) = register(&client, &api, &users(&["u1"])).await;
    assert_eq!(
        error_code(status, &body).as_deref(),
        Some("InvalidParameter.SdkAppId")
    );
    assert!(sim.registered(LCIC, APP_ID).is_empty());
    assert!(sim.registered(LCIC, APP_ID + 1).is_empty());
    let call = last_call(&sim);
    assert_eq!(call.app_id, Some(APP_ID), "the SecretId names the account");
    assert_eq!(
        call.error_code.as_deref(),
        Some("InvalidParameter.SdkAppId")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_burst_gets_exactly_the_quota_and_the_rest_is_throttled() {
    let sim = start(5).await;
    let client = client();
    let api = lcic(&sim, APP_ID, SECRET_KEY);
    let batches: Vec<Vec<User>> = (0..12)
        .map(|index| users(&[&format!("burst-{index:02}")]))
        .collect();
    let answers =
        futures::future::join_all(batches.iter().map(|batch| register(&client, &api, batch))).await;

    let codes: Vec<Option<String>> = answers
        .iter()
        .map(|(status, body)| error_code(*status, body))
        .collect();
    let calls = sim.calls();
    let span = calls.last().unwrap().received_at_ms - calls.first().unwrap().received_at_ms;
    assert!(
        span < 1000,
        "the burst took {span} ms to arrive; it must fit one second"
    );
    assert_eq!(
        codes.iter().filter(|code| code.is_none()).count(),
        5,
        "{codes:?}"
    );
    assert_eq!(
        codes
            .iter()
            .filter(|code| code.as_deref() == Some("RequestLimitExceeded"))
            .count(),
        7,
        "{codes:?}"
    );
    assert_eq!(calls.len(), 12);
    assert_eq!(calls.iter().filter(|call| call.accepted()).count(), 5);
    assert!(
        calls
            .iter()
            .all(|call| call.accepted()
                || call.error_code.as_deref() == Some("RequestLimitExceeded"))
    );
    assert!(sim.max_calls_in_any_second(LCIC, APP_ID) <= 5);
    assert_eq!(
        sim.registered(LCIC, APP_ID).len(),
        5,
        "throttled calls register nobody"
    );

    // A second later the quota is back.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = register(&client, &api, &users(&["after"])).await;
    assert_eq!(error_code(status, &body), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_tencent_errors_and_nothing_panics() {
    let sim = start(1000).await;
    let client = client();
    let valid_body = || json!({"Users": [{"SdkAppId": APP_ID, "OriginId": "u1"}]});

    let expired = RawCall {
        timestamp: AttemptContext::now().unix_time - 600,
        ..RawCall::batch_register(valid_body())
    };
    let other_service = RawCall {
        service: "ciam",
        ..RawCall::batch_register(valid_body())
    };
    let wrong_version = RawCall {
        version: "2020-01-01",
        ..RawCall::batch_register(valid_body())
    };
    let form = RawCall {
        content_type: "application/x-www-form-urlencoded",
        ..RawCall::batch_register(valid_body())
    };
    let charset = RawCall {
        content_type: "application/json; charset=utf-8",
        ..RawCall::batch_register(valid_body())
    };
    let not_json = RawCall {
        body: b"{\"Users\": [".to_vec(),
        ..RawCall::batch_register(valid_body())
    };
    let not_utf8 = RawCall {
        body: vec![0xff, 0xfe, 0x00],
        ..RawCall::batch_register(valid_body())
    };
    let deep = RawCall {
        body: "[".repeat(100_000).into_bytes(),
        ..RawCall::batch_register(valid_body())
    };
    let cases = [
        (expired, Some("AuthFailure.SignatureExpire")),
        (other_service, Some("AuthFailure.SignatureFailure")),
        (wrong_version, Some("NoSuchVersion")),
        (form, Some("InvalidParameter")),
        (charset, None),
        (not_json, Some("InvalidParameter")),
        (not_utf8, Some("InvalidParameter")),
        (deep, Some("InvalidParameter")),
        (RawCall::batch_register(json!({})), Some("MissingParameter")),
        (
            RawCall::batch_register(json!({"Users": []})),
            Some("InvalidParameterValue"),
        ),
    ];
    for (call, expected) in cases {
        let description = format!(
            "{} {} {} {}",
            call.service,
            call.version,
            call.content_type,
            String::from_utf8_lossy(&call.body[..call.body.len().min(40)])
        );
        let code = send_raw(&client, &sim, call).await;
        assert_eq!(code.as_deref(), expected, "{description}");
    }

    // Headers that are missing or garbage.
    let mut unsigned = RawCall::batch_register(valid_body()).request(&sim);
    unsigned.headers_mut().remove("authorization");
    let mut garbage = RawCall::batch_register(valid_body()).request(&sim);
    garbage
        .headers_mut()
        .insert("authorization", "TC3-HMAC-SHA256 ,,,==/".parse().unwrap());
    let mut unknown_id = RawCall::batch_register(valid_body()).request(&sim);
    let authorization = unknown_id.headers()["authorization"]
        .to_str()
        .unwrap()
        .replace(SECRET_ID, "AKIDnobody");
    unknown_id
        .headers_mut()
        .insert("authorization", authorization.parse().unwrap());
    let mut no_timestamp = RawCall::batch_register(valid_body()).request(&sim);
    no_timestamp.headers_mut().remove("x-tc-timestamp");
    let mut binary = RawCall::batch_register(valid_body()).request(&sim);
    binary.headers_mut().insert(
        "authorization",
        http::HeaderValue::from_bytes(b"TC3-HMAC-SHA256 \xff\xfe").unwrap(),
    );
    for (request, expected) in [
        (unsigned, "AuthFailure.InvalidAuthorization"),
        (garbage, "AuthFailure.InvalidAuthorization"),
        (unknown_id, "AuthFailure.SecretIdNotFound"),
        (no_timestamp, "AuthFailure.InvalidAuthorization"),
        (binary, "AuthFailure.InvalidAuthorization"),
    ] {
        let (status, body) = send(&client, request).await;
        assert_eq!(error_code(status, &body).as_deref(), Some(expected));
    }
    let unknown = sim
        .calls()
        .into_iter()
        .find(|call| call.error_code.as_deref() == Some("AuthFailure.SecretIdNotFound"));
    assert_eq!(
        unknown.map(|call| call.app_id),
        Some(None),
        "an unknown SecretId names no account"
    );

    // An unknown action is Tencent's InvalidAction and is not recorded (no vendor to file it under).
    let recorded = sim.calls().len();
    let describe = RawCall {
        action: "DescribeInstances",
        ..RawCall::batch_register(valid_body())
    };
    assert_eq!(
        send_raw(&client, &sim, describe).await.as_deref(),
        Some("InvalidAction")
    );
    assert_eq!(sim.calls().len(), recorded);

    // Only the charset variant was accepted.
    assert_eq!(sim.registered(LCIC, APP_ID).len(), 1);
    assert_eq!(sim.calls().iter().filter(|call| call.accepted()).count(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_body_over_10_mb_is_request_size_limit_exceeded() {
    let sim = start(20).await;
    let client = client();
    let padding = "x".repeat(10 * 1024 * 1024);
    let body = json!({"Users": [{"SdkAppId": APP_ID, "OriginId": "big", "Name": padding}]});
    let code = send_raw(&client, &sim, RawCall::batch_register(body)).await;
    // docs/vendors/tencent-cloud-api.md#size-limits: POST v3 bodies are at most 10 MB.
    assert_eq!(code.as_deref(), Some("RequestSizeLimitExceeded"));
    let call = last_call(&sim);
    assert_eq!(call.error_code.as_deref(), Some("RequestSizeLimitExceeded"));
    assert!(call.user_ids.is_empty());
    assert!(sim.registered(LCIC, APP_ID).is_empty());
    sim.shutdown().await;
}

async fn get_json(client: &HttpClient, url: &str) -> (http::StatusCode, Value) {
    let request = http::Request::get(url).body(Bytes::new()).unwrap();
    let (status, body) = send(client, request).await;
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn the_read_back_api_returns_what_was_recorded_and_reset_clears_it() {
    let sim = start(20).await;
    let client = client();
    let endpoint = sim.endpoint();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    let api = lcic(&sim, APP_ID, SECRET_KEY);
    register(&client, &api, &users(&["zed", "amy"])).await;
    register(
        &client,
        &lcic(&sim, APP_ID, "wrong-key-0000000000000000000000"),
        &users(&["eve"]),
    )
    .await;

    let (status, calls) = get_json(&client, &format!("{endpoint}/_sim/calls")).await;
    assert_eq!(status, http::StatusCode::OK);
    let expected_calls = serde_json::to_value(sim.calls()).unwrap();
    assert_eq!(calls, expected_calls);
    // Out-of-process readers can decode the records with the simulator's own types.
    let decoded: Vec<RecordedCall> = serde_json::from_value(calls.clone()).unwrap();
    assert_eq!(decoded.len(), 2);
    assert!(decoded[0].accepted() && !decoded[1].accepted());
    assert_eq!(calls[0]["vendor"], json!("tencent-lcic"));
    assert_eq!(calls[0]["action"], json!("BatchRegister"));
    assert_eq!(calls[0]["app_id"], json!(APP_ID));
    assert_eq!(calls[0]["user_ids"], json!(["zed", "amy"]));
    assert_eq!(calls[0]["http_status"], json!(200));
    assert_eq!(calls[0]["error_code"], Value::Null);
    assert_eq!(
        calls[1]["error_code"],
        json!("AuthFailure.SignatureFailure")
    );

    let users_url = format!("{endpoint}/_sim/users?vendor=tencent-lcic&app_id={APP_ID}");
    let (status, users) = get_json(&client, &users_url).await;
    assert_eq!(status, http::StatusCode::OK);
    let registered: Vec<RegisteredUser> = sim.registered(LCIC, APP_ID);
    assert_eq!(users, serde_json::to_value(&registered).unwrap());
    assert_eq!(users[0]["origin_id"], json!("amy"));
    assert_eq!(users[1]["origin_id"], json!("zed"));
    assert_eq!(users[1]["registrations"], json!(1));
    assert_eq!(users[1]["name"], json!("name of zed"));

    let (status, users) = get_json(
        &client,
        &format!("{endpoint}/_sim/users?vendor=zego-zim&app_id=1"),
    )
    .await;
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(users, json!([]));
    let (status, error) = get_json(
        &client,
        &format!("{endpoint}/_sim/users?vendor=acme&app_id=1"),
    )
    .await;
    assert_eq!(status, http::StatusCode::BAD_REQUEST);
    assert!(error["error"].as_str().unwrap().contains("acme"));

    let reset = http::Request::post(format!("{endpoint}/_sim/reset"))
        .body(Bytes::new())
        .unwrap();
    let (status, _) = send(&client, reset).await;
    assert_eq!(status, http::StatusCode::NO_CONTENT);
    assert!(sim.calls().is_empty());
    assert!(sim.registered(LCIC, APP_ID).is_empty());
    assert_eq!(sim.max_calls_in_any_second(LCIC, APP_ID), 0);
    let (_, calls) = get_json(&client, &format!("{endpoint}/_sim/calls")).await;
    assert_eq!(calls, json!([]));
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = start(20).await;
    let client = client();
    let endpoint = sim.endpoint();
    register(&client, &lcic(&sim, APP_ID, SECRET_KEY), &users(&["u1"])).await;
    sim.shutdown().await;
    let request = http::Request::get(format!("{endpoint}/_sim/calls"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(
        Client::builder(TokioExecutor::new())
            .build_http::<Full<Bytes>>()
            .request(request)
            .await
            .is_err()
    );
}
