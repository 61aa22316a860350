//! End to end for `volc-rtc` targets: registrar and the built-in Volcengine
//! RTC simulator (or a tiny server of this test) run in-process on loopback;
//! assertions are on what the vendor side recorded and on each user's result.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use crate::common::*;
use axum::{
    Json, Router,
    extract::{Request, State},
    response::{IntoResponse, Response},
    routing::post,
};
use registrar::{api::pb, domain::VendorKind};
use serde_json::{Value, json};

const APP_ID: u64 = VOLC_APP_ID;

/// A numeric user with a NickName, Tags and Ext of its own.
fn rich_user(number: u64) -> pb::User {
    pb::User {
        user_id: (10_000_000 + number).to_string(),
        display_name: format!("用户 {number}"),
        avatar_url: format!("https://img.example.com/{number}.png"),
        tags: vec![format!("cohort-{}", number % 3), "all".to_owned()],
        attributes: HashMap::from([
            ("level".to_owned(), (number % 7).to_string()),
            ("team".to_owned(), format!("t{}", number % 5)),
        ]),
        ..pb::User::default()
    }
}

#[tokio::test]
async fn three_hundred_users_take_fifteen_calls_and_keep_their_fields() {
    let (simulator, mut registrar) = start_with_target(VOLC, 50, "rtc", "").await;
    let users: Vec<pb::User> = (0..300).map(rich_user).collect();

    let collected = batch_register(&mut registrar.client, request(&["rtc"], users.clone()))
        .await
        .unwrap();

    // RTC RegisterUsers (docs/vendors/volc-rtc.md#batch-size): at most 20 users per call, so 300
    // users take 15 accepted calls
    let calls = simulator.calls();
    assert_eq!(calls.len(), 15, "{:?}", call_sizes(&calls));
    assert!(calls.iter().all(|call| call.accepted()
        && call.user_ids.len() <= 20
        && call.action == "RegisterUsers"));
    let sent: HashSet<&str> = calls
        .iter()
        .flat_map(|call| call.user_ids.iter().map(String::as_str))
        .collect();
    assert_eq!(sent.len(), 300);

    // every result registered, one per user
    assert_eq!(collected.results.len(), 300);
    for (index, result) in collected.by_index() {
        assert_eq!(result.outcome(), pb::Outcome::Registered, "{result:?}");
        assert_eq!(result.user_id, users[index as usize].user_id);
        assert_eq!(result.attempts, 1);
    }

    // the simulator holds each user with its NickName, Portrait, Tags and Ext as sent
    let held: BTreeMap<String, _> = simulator
        .registered(VendorKind::VolcRtc, APP_ID)
        .into_iter()
        .map(|user| (user.origin_id.clone(), user))
        .collect();
    assert_eq!(held.len(), 300);
    for user in &users {
        let stored = &held[&user.user_id];
        assert_eq!(stored.name, user.display_name);
        assert_eq!(stored.avatar, user.avatar_url);
        assert_eq!(stored.registrations, 1);
        let mut expected = BTreeMap::from([("Tags".to_owned(), user.tags.join(","))]);
        for (key, value) in &user.attributes {
            expected.insert(format!("Ext.{key}"), value.clone());
        }
        assert_eq!(stored.fields, expected, "{}", user.user_id);
    }
    registrar.stop().await;
}

#[tokio::test]
async fn users_breaking_volcengine_rules_are_rejected_and_never_sent() {
    let (simulator, mut registrar) = start_with_target(VOLC, 50, "rtc", "").await;
    let attributes = |count: usize| -> HashMap<String, String> {
        (0..count)
            .map(|n| (format!("k{n}"), "v".to_owned()))
            .collect()
    };
    let batch = vec![
        user("1001"),
        // RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): UserId is a Long (int64)
        user("abc"),
        user("12345678901234567890123"),
        // RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): NickName at most 100 characters
        pb::User {
            display_name: "名".repeat(101),
            ..user("1002")
        },
        // docs/vendors/volc-rtc.md#field-rules: Ext at most 20 keys, no "s:" keys, values at most 500 bytes
        pb::User {
            attributes: attributes(21),
            ..user("1003")
        },
        pb::User {
            attributes: HashMap::from([("s:role".to_owned(), "admin".to_owned())]),
            ..user("1004")
        },
        pb::User {
            attributes: HashMap::from([("bio".to_owned(), "x".repeat(501))]),
            ..user("1005")
        },
        // exactly at the limits
        pb::User {
            display_name: "名".repeat(100),
            attributes: attributes(20),
            ..user("1006")
        },
    ];

    let collected = batch_register(&mut registrar.client, request(&["rtc"], batch))
        .await
        .unwrap();
    let results = collected.by_index();
    assert_eq!(results.len(), 8);

    let expected_rejections = [
        (
            1,
            "validation.not_integer",
            "userId must be a decimal integer",
        ),
        (2, "validation.not_integer", "userId must be an int64"),
        (
            3,
            "validation.too_long",
            "displayName must be at most 100 characters (got 101)",
        ),
        (
            4,
            "validation.too_many",
            "attributes must have at most 20 keys (got 21)",
        ),
        (
            5,
            "validation.reserved_prefix",
            "attributes keys must not start with \"s:\"",
        ),
        (
            6,
            "validation.too_long",
            "attributes values must be at most 500 bytes (got 501",
        ),
    ];
    for (index, code, message) in expected_rejections {
        assert_rejected_starting(results[&index], code, message);
    }
    for index in [0, 7] {
        assert_eq!(results[&index].outcome(), pb::Outcome::Registered);
    }

    // the vendor saw the two valid users only; the rejected ones are nowhere in its records
    let sent = sent_user_ids(&simulator);
    assert_eq!(
        sent.iter().map(String::as_str).collect::<HashSet<_>>(),
        HashSet::from(["1001", "1006"])
    );
    let held: Vec<String> = simulator
        .registered(VendorKind::VolcRtc, APP_ID)
        .into_iter()
        .map(|user| user.origin_id)
        .collect();
    assert_eq!(held, vec!["1001", "1006"]);
    registrar.stop().await;
}

#[tokio::test]
async fn registering_the_same_users_again_registers_them_again() {
    // RTC RegisterUsers (docs/vendors/volc-rtc.md#repeats): registration stores the users' data; a
    // repeat overwrites it.
    let (simulator, mut registrar) = start_with_target(VOLC, 50, "rtc", "").await;
    for round in 0..2 {
        let users: Vec<pb::User> = (0..30)
            .map(|n| pb::User {
                display_name: format!("round {round}"),
                ..rich_user(n)
            })
            .collect();
        let collected = batch_register(&mut registrar.client, request(&["rtc"], users))
            .await
            .unwrap();
        assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 30);
    }
    let held = simulator.registered(VendorKind::VolcRtc, APP_ID);
    assert_eq!(held.len(), 30);
    assert!(
        held.iter()
            .all(|user| user.registrations == 2 && user.name == "round 1")
    );
    assert_eq!(simulator.calls().len(), 4);
    registrar.stop().await;
}

#[tokio::test]
async fn a_vendor_quota_lower_than_configured_is_retried_until_every_user_registers() {
    // docs/vendors/volc-rtc.md#quota: QPS ≤ 50 per account, shared by all AppIds, so an app can see less.
    let (simulator, mut registrar) =
        start_with_target(VOLC, 3, "rtc", "qps = 50\nmax_attempts = 8").await;

    let users: Vec<pb::User> = (0..120).map(rich_user).collect();
    let collected = batch_register(&mut registrar.client, request(&["rtc"], users))
        .await
        .unwrap();

    assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 120);
    let throttled: Vec<_> = simulator
        .calls()
        .into_iter()
        .filter(|call| call.error_code.as_deref() == Some("FlowLimitExceeded"))
        .collect();
    assert!(!throttled.is_empty(), "the simulator throttled some calls");
    assert!(throttled.iter().all(|call| call.http_status == 429));
    assert!(collected.results.iter().any(|result| result.attempts > 1));
    assert_eq!(simulator.registered(VendorKind::VolcRtc, APP_ID).len(), 120);
    assert!(simulator.max_calls_in_any_second(VendorKind::VolcRtc, APP_ID) <= 3);
    registrar.stop().await;
}

/// SignerV4 written again from docs/vendors/volc-rtc.md#signing, step by step, sharing no code
/// with `registrar::vendor_api::volc::signing`.
mod independent_signer {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};

    pub fn sha256_hex(data: &[u8]) -> String {
        let digest = Sha256::digest(data);
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256>>::new_from_slice(key).unwrap();
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// docs/vendors/volc-rtc.md#canonical-request: "RFC3986-encoded (unreserved A-Za-z0-9-_.~), space → %20".
    fn encode(text: &[u8]) -> String {
        let mut out = String::new();
        for &byte in text {
            let unreserved = byte.is_ascii_uppercase()
                || byte.is_ascii_lowercase()
                || byte.is_ascii_digit()
                || b"-_.~".contains(&byte);
            if unreserved {
                out.push(byte as char);
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    }

    fn decode(text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%')
                .then(|| bytes.get(i + 1..i + 3))
                .flatten()
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            if let Some(byte) = escaped {
                out.push(byte);
                i += 3;
            } else {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
        out
    }

    /// docs/vendors/volc-rtc.md#canonical-request CanonicalQuery: "params sorted by name, RFC3986-encoded".
    fn canonical_query(raw: &str) -> String {
        let mut params: Vec<(Vec<u8>, Vec<u8>)> = raw
            .split('&')
            .filter(|param| !param.is_empty())
            .map(|param| match param.split_once('=') {
                Some((name, value)) => (decode(name), decode(value)),
                None => (decode(param), Vec::new()),
            })
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        params
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// What a SignerV4 signature is computed over.
    pub struct Signed<'a> {
        pub method: &'a str,
        pub raw_query: &'a str,
        /// (name, value) of each signed header, in any order.
        pub headers: Vec<(String, String)>,
        pub body: &'a [u8],
        pub x_date: &'a str,
        pub region: &'a str,
        pub service: &'a str,
        pub secret_access_key: &'a str,
    }

    /// docs/vendors/volc-rtc.md#signing, one line per step; returns (hash of the canonical request,
    /// signature).
    pub fn signature(input: &Signed<'_>) -> (String, String) {
        let mut headers: Vec<(String, String)> = input
            .headers
            .iter()
            .map(|(name, value)| (name.to_lowercase(), value.trim().to_owned()))
            .collect();
        headers.sort();
        let canonical_headers: String = headers
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        let signed_headers: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
        let canonical_request = [
            input.method.to_owned(),
            "/".to_owned(),
            canonical_query(input.raw_query),
            canonical_headers,
            signed_headers.join(";"),
            sha256_hex(input.body),
        ]
        .join("\n");
        let short_date = &input.x_date[..8];
        let scope = format!("{short_date}/{}/{}/request", input.region, input.service);
        let hashed_request = sha256_hex(canonical_request.as_bytes());
        let string_to_sign = format!("HMAC-SHA256\n{}\n{scope}\n{hashed_request}", input.x_date);
        let k_date = hmac_sha256(input.secret_access_key.as_bytes(), short_date);
        let k_region = hmac_sha256(&k_date, input.region);
        let k_service = hmac_sha256(&k_region, input.service);
        let k_signing = hmac_sha256(&k_service, "request");
        let signature = hmac_sha256(&k_signing, &string_to_sign);
        (
            hashed_request,
            signature.iter().map(|byte| format!("{byte:02x}")).collect(),
        )
    }
}

/// What the tiny server saw of one call.
#[derive(Debug, Clone)]
struct Seen {
    verdict: Result<(), String>,
    user_ids: Vec<i64>,
}

#[derive(Default)]
struct Tiny {
    seen: Mutex<Vec<Seen>>,
}

const TINY_REGION: &str = "ap-southeast-1";
/// The tiny server lists this user in FailedInfos, with a numeric UserId.
const TINY_FAILED_USER: i64 = 7_000_013;

/// Checks one received call with the independent signer; the error says why it is refused.
fn check_signature(parts: &http::request::Parts, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| -> Result<String, String> {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| format!("missing header {name}"))
    };
    let authorization = header("authorization")?;
    let rest = authorization
        .strip_prefix("HMAC-SHA256 Credential=")
        .ok_or("not HMAC-SHA256")?;
    let (credential, rest) = rest
        .split_once(", SignedHeaders=")
        .ok_or("no SignedHeaders")?;
    let (signed_headers, claimed) = rest.split_once(", Signature=").ok_or("no Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let x_date = header("x-date")?;
    // docs/vendors/volc-rtc.md#signing: X-Date is YYYYMMDD'T'HHMMSS'Z' and the scope is
    // ShortDate/region/service/request
    if x_date.len() != 16 || &x_date[8..9] != "T" || !x_date.ends_with('Z') {
        return Err(format!("X-Date {x_date:?} is not in the SDK layout"));
    }
    let expected_scope = [
        VOLC_ACCESS_KEY_ID,
        &x_date[..8],
        TINY_REGION,
        "rtc",
        "request",
    ];
    if scope != expected_scope {
        return Err(format!("credential {credential:?}"));
    }
    // docs/vendors/volc-rtc.md#headers: the SDK signs Content-Type, Host and every X-* header
    if signed_headers != "content-type;host;x-content-sha256;x-date" {
        return Err(format!("SignedHeaders {signed_headers:?}"));
    }
    if header("content-type")? != "application/json" {
        return Err("content type".to_owned());
    }
    if header("x-content-sha256")? != independent_signer::sha256_hex(body) {
        return Err("X-Content-Sha256 is not the body's hash".to_owned());
    }
    let query = parts.uri.query().unwrap_or_default();
    if query != "Action=RegisterUsers&Version=2020-12-01" {
        return Err(format!("query {query:?}"));
    }
    let mut headers = Vec::new();
    for name in signed_headers.split(';') {
        headers.push((name.to_owned(), header(name)?));
    }
    let (_, signature) = independent_signer::signature(&independent_signer::Signed {
        method: parts.method.as_str(),
        raw_query: query,
        headers,
        body,
        x_date: &x_date,
        region: TINY_REGION,
        service: "rtc",
        secret_access_key: VOLC_SECRET_ACCESS_KEY,
    });
    if signature != claimed {
        return Err("signature mismatch".to_owned());
    }
    Ok(())
}

async fn tiny_register_users(State(tiny): State<Arc<Tiny>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let verdict = check_signature(&parts, &body);
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let user_ids: Vec<i64> = parsed["Users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|user| user["UserId"].as_i64())
        .collect();
    tiny.seen.lock().unwrap().push(Seen {
        verdict: verdict.clone(),
        user_ids: user_ids.clone(),
    });
    let metadata = json!({
        "RequestId": "tiny", "Action": "RegisterUsers", "Version": "2020-12-01",
        "Service": "rtc", "Region": TINY_REGION,
    });
    if let Err(reason) = verdict {
        let mut metadata = metadata;
        metadata["Error"] =
            json!({"CodeN": 100010, "Code": "SignatureDoesNotMatch", "Message": reason});
        return (
            http::StatusCode::UNAUTHORIZED,
            Json(json!({ "ResponseMetadata": metadata })),
        )
            .into_response();
    }
    // docs/vendors/volc-rtc.md#response: the SDK types FailedInfos UserId as an int64, so answer a
    // number here
    let failed: Vec<Value> = user_ids
        .iter()
        .filter(|&&user_id| user_id == TINY_FAILED_USER)
        .map(|user_id| json!({"UserId": user_id, "Code": "UserNotFound", "Message": "UserisNotFound"}))
        .collect();
    Json(json!({ "ResponseMetadata": metadata, "Result": { "FailedInfos": failed } }))
        .into_response()
}

#[test]
fn the_independent_signer_reproduces_the_official_vector() {
    // docs/vendors/volc-rtc.md#test-vectors V1 (volcengine.com/docs/6369/67270 "签名过程Demo").
    let (hash, signature) = independent_signer::signature(&independent_signer::Signed {
        method: "GET",
        raw_query: "Action=ListUsers&Version=2018-01-01&Limit=10&Offset=0",
        headers: vec![
            ("Host".to_owned(), "iam.volcengineapi.com".to_owned()),
            ("X-Date".to_owned(), "20240619T071306Z".to_owned()),
        ],
        body: b"",
        x_date: "20240619T071306Z",
        region: "cn-beijing",
        service: "iam",
        secret_access_key: "WkRZeE1EQmxPVGhsWWpWak5HVmtNbUUxTXpZeU9UVXlOMlE1TmpZeVlqTQ==",
    });
    assert_eq!(
        hash,
        "5ed5bca3905e1fcbf789abb56a17c2d819674a3bcfa468ae476bd1ea80d135cb"
    );
    assert_eq!(
        signature,
        "e31c4558bcfe08a286001f59cedbf0791ffd0b2362f10e55ee2627467bcdde93"
    );
}

#[tokio::test]
async fn an_independent_signer_v4_accepts_every_call_registrar_signs() {
    let tiny = Arc::new(Tiny::default());
    let app = Router::new()
        .route("/", post(tiny_register_users))
        .with_state(tiny.clone());
    let (endpoint, server) = serve_vendor(app).await;
    let mut registrar = Registrar::start(&volc_target(
        "rtc-sg",
        &endpoint,
        &format!("region = \"{TINY_REGION}\""),
    ))
    .await;

    let users: Vec<pb::User> = (0..45)
        .map(|n| pb::User {
            user_id: (7_000_000 + n).to_string(),
            display_name: format!("名字 with spaces {n}"),
            ..rich_user(n)
        })
        .collect();
    let collected = batch_register(&mut registrar.client, request(&["rtc-sg"], users))
        .await
        .unwrap();

    let seen = tiny.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "45 users take 3 calls of at most 20");
    for call in &seen {
        assert_eq!(call.verdict, Ok(()), "{call:?}");
        assert!(call.user_ids.len() <= 20);
    }
    let sent: HashSet<i64> = seen.iter().flat_map(|call| call.user_ids.clone()).collect();
    assert_eq!(sent, (7_000_000..7_000_045).collect());
    for result in &collected.results {
        if result.user_id == TINY_FAILED_USER.to_string() {
            // RTC RegisterUsers (docs/vendors/volc-rtc.md#partial-failure): a FailedInfos entry
            // rejects that user only, with the vendor's code
            assert_eq!(result.outcome(), pb::Outcome::Rejected);
            assert_eq!(result.error_code, "UserNotFound");
            assert_eq!(result.error_message, "UserisNotFound");
        } else {
            assert_eq!(result.outcome(), pb::Outcome::Registered, "{result:?}");
        }
    }
    assert_eq!(collected.results.len(), 45);
    registrar.stop().await;
    server.abort();
}
