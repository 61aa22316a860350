//! End to end against ZEGOCLOUD ZIM `UserRegister`: registrar and the
//! built-in simulator (or a vendor written in the test that checks the md5
//! signature as ZEGO publishes it) run in-process on loopback; assertions are
//! on what the vendor recorded and on each user's result.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
};

use crate::common::*;
use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Uri},
    routing::post,
};
use md5::{Digest, Md5};
use registrar::{api::pb, domain::VendorKind, sim::RegisteredUser};
use serde_json::{Value, json};

const APP_ID: u64 = ZIM_APP_ID;

fn described(user_id: &str, display_name: &str, avatar_url: &str) -> pb::User {
    pb::User {
        user_id: user_id.to_owned(),
        display_name: display_name.to_owned(),
        avatar_url: avatar_url.to_owned(),
        ..pb::User::default()
    }
}

fn held_by_id(users: Vec<RegisteredUser>) -> BTreeMap<String, RegisteredUser> {
    users
        .into_iter()
        .map(|user| (user.origin_id.clone(), user))
        .collect()
}

#[tokio::test]
async fn three_hundred_fifty_users_take_four_calls_of_at_most_one_hundred() {
    let (simulator, mut registrar) = start_with_target(ZIM, 20, "zim", "").await;
    // names of up to 80 Chinese characters (240 bytes) are within ZIM's 256-byte limit
    let sent: Vec<pb::User> = (0..350)
        .map(|n| {
            described(
                &format!("zim-{n:04}"),
                &"名".repeat(n % 81),
                &format!("https://cdn.example.com/avatars/{n}.png"),
            )
        })
        .collect();

    let collected = batch_register(&mut registrar.client, request(&["zim"], sent.clone()))
        .await
        .unwrap();

    // ZIM UserRegister (docs/vendors/zim.md#batch-size): "Up to 100 users can be registered at a time"
    let calls = simulator.calls();
    let mut sizes = call_sizes(&calls);
    sizes.sort_unstable();
    assert_eq!(sizes, vec![50, 100, 100, 100]);
    assert!(calls.iter().all(|call| call.accepted()
        && call.vendor == VendorKind::ZegoZim
        && call.action == "UserRegister"
        && call.app_id == Some(APP_ID)));

    assert_eq!(collected.results.len(), 350);
    assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 350);
    let held = held_by_id(simulator.registered(VendorKind::ZegoZim, APP_ID));
    assert_eq!(held.len(), 350);
    for (index, result) in collected.by_index() {
        let user = &sent[index as usize];
        assert_eq!(result.user_id, user.user_id);
        assert_eq!(result.outcome(), pb::Outcome::Registered);
        assert_eq!(result.error_code, "");
        assert_eq!(result.attempts, 1);
        let kept = &held[&user.user_id];
        assert_eq!(kept.name, user.display_name, "{}", user.user_id);
        assert_eq!(kept.avatar, user.avatar_url, "{}", user.user_id);
        assert_eq!(kept.registrations, 1);
    }
    assert_eq!(
        collected.summary.as_ref().unwrap().targets[0].registered,
        350
    );
    registrar.stop().await;
}

#[tokio::test]
async fn invalid_users_are_rejected_with_the_field_and_rule_and_never_sent() {
    let (simulator, mut registrar) = start_with_target(ZIM, 20, "zim", "").await;
    let long_avatar = format!("https://cdn.example.com/{}", "a".repeat(477));
    assert_eq!(long_avatar.len(), 501);
    let batch = vec![
        described("ok-1", "Alice", ""),
        // docs/vendors/zim.md#field-rules: UserId required
        described("", "nobody", ""),
        // docs/vendors/zim.md#field-rules: UserId ≤32 bytes
        described(&"x".repeat(33), "", ""),
        // docs/vendors/zim.md#user-id-charset: UserId charset has neither '*' nor '/'
        described("star*id", "", ""),
        described("slash/id", "", ""),
        // docs/vendors/zim.md#field-rules: UserName ≤256 bytes: 86 Chinese characters are 258 bytes
        described("long-name", &"名".repeat(86), ""),
        // ZIM UserRegister (docs/vendors/zim.md#field-rules): UserAvatar ≤500 bytes
        described("long-avatar", "", &long_avatar),
        described("ok-2", &"名".repeat(85), &long_avatar[..500]),
        described("!#$%&()+-:;<=.>?@[]^_ {}|~", "", ""),
    ];

    let collected = batch_register(&mut registrar.client, request(&["zim"], batch))
        .await
        .unwrap();

    let results = collected.by_index();
    assert_eq!(results.len(), 9);
    let expected_rejections: [(u64, &str, &str); 6] = [
        (
            1,
            "validation.required",
            "userId is required and must not be empty",
        ),
        (
            2,
            "validation.too_long",
            "userId must be at most 32 bytes (got 33)",
        ),
        (
            3,
            "validation.charset",
            "userId may contain only digits, English letters",
        ),
        (
            4,
            "validation.charset",
            "userId may contain only digits, English letters",
        ),
        (
            5,
            "validation.too_long",
            "displayName must be at most 256 bytes (got 258)",
        ),
        (
            6,
            "validation.too_long",
            "avatarUrl must be at most 500 bytes (got 501)",
        ),
    ];
    for (index, code, message) in expected_rejections {
        assert_rejected_starting(results[&index], code, message);
    }
    assert!(results[&3].error_message.contains("'*'"));
    assert!(results[&4].error_message.contains("'/'"));
    for index in [0, 7, 8] {
        assert_eq!(
            results[&index].outcome(),
            pb::Outcome::Registered,
            "{index}"
        );
    }

    // the vendor saw the three valid users only, once each
    let sent = sent_user_ids(&simulator);
    let valid = ["ok-1", "ok-2", "!#$%&()+-:;<=.>?@[]^_ {}|~"];
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(
        sent.iter().map(String::as_str).collect::<HashSet<_>>(),
        valid.into_iter().collect()
    );
    let held = held_by_id(simulator.registered(VendorKind::ZegoZim, APP_ID));
    assert_eq!(
        held.keys().map(String::as_str).collect::<HashSet<_>>(),
        valid.into_iter().collect()
    );
    assert_eq!(held["ok-2"].name, "名".repeat(85));
    registrar.stop().await;
}

#[tokio::test]
async fn registering_the_same_users_again_reports_them_as_already_existing() {
    let (simulator, mut registrar) = start_with_target(ZIM, 20, "zim", "").await;
    let first_names = |n: usize| described(&format!("again-{n}"), &format!("first {n}"), "");

    let first = batch_register(
        &mut registrar.client,
        request(&["zim"], (0..10).map(first_names).collect()),
    )
    .await
    .unwrap();
    assert_eq!(first.with_outcome(pb::Outcome::Registered).len(), 10);

    // docs/vendors/zim.md#repeats: a repeat meets 660700002 "user already exists"; nothing is overwritten
    let renamed: Vec<pb::User> = (0..10)
        .map(|n| described(&format!("again-{n}"), "renamed", ""))
        .collect();
    let second = batch_register(&mut registrar.client, request(&["zim"], renamed))
        .await
        .unwrap();
    assert_eq!(second.results.len(), 10);
    for result in &second.results {
        assert_eq!(
            result.outcome(),
            pb::Outcome::AlreadyExists,
            "{}",
            result.user_id
        );
        assert_eq!(result.error_code, "660700002");
        assert_eq!(result.attempts, 1);
    }

    // a mix of known and new users: the new register, the known are reported existing
    let mixed = vec![first_names(3), described("fresh-1", "", ""), first_names(7)];
    let third = batch_register(&mut registrar.client, request(&["zim"], mixed))
        .await
        .unwrap();
    let results = third.by_index();
    assert_eq!(results[&0].outcome(), pb::Outcome::AlreadyExists);
    assert_eq!(results[&1].outcome(), pb::Outcome::Registered);
    assert_eq!(results[&2].outcome(), pb::Outcome::AlreadyExists);
    assert_eq!(results[&2].error_code, "660700002");

    let held = held_by_id(simulator.registered(VendorKind::ZegoZim, APP_ID));
    assert_eq!(held.len(), 11);
    for n in 0..10 {
        let kept = &held[&format!("again-{n}")];
        assert_eq!(kept.registrations, 1);
        assert_eq!(kept.name, format!("first {n}"));
    }
    // the all-existing call failed as a whole with the vendor's code
    let codes: Vec<Option<String>> = simulator
        .calls()
        .into_iter()
        .map(|call| call.error_code)
        .collect();
    assert_eq!(codes, vec![None, Some("660700002".to_owned()), None]);
    registrar.stop().await;
}

#[tokio::test]
async fn a_vendor_quota_lower_than_configured_is_retried_until_every_user_registers() {
    // docs/vendors/zim.md#return-codes: 660700001 "UserRegister called too frequently", inside HTTP 200
    let (simulator, mut registrar) =
        start_with_target(ZIM, 3, "zim", "qps = 20\nmax_batch = 10\nmax_attempts = 8").await;

    let collected = batch_register(&mut registrar.client, request(&["zim"], users("q", 60)))
        .await
        .unwrap();

    assert_eq!(
        collected.with_outcome(pb::Outcome::Registered).len(),
        60,
        "{:?}",
        collected
            .results
            .iter()
            .filter(|result| result.outcome() != pb::Outcome::Registered)
            .collect::<Vec<_>>()
    );
    let calls = simulator.calls();
    let throttled = calls
        .iter()
        .filter(|call| call.error_code.as_deref() == Some("660700001"))
        .count();
    assert!(throttled > 0, "the simulator throttled some calls");
    assert!(collected.results.iter().any(|result| result.attempts > 1));
    let held = held_by_id(simulator.registered(VendorKind::ZegoZim, APP_ID));
    assert_eq!(held.len(), 60);
    assert!(held.values().all(|user| user.registrations == 1));
    assert!(simulator.max_calls_in_any_second(VendorKind::ZegoZim, APP_ID) <= 3);
    // a throttled call registered nobody: each user was accepted in exactly one call
    let accepted: Vec<String> = calls
        .iter()
        .filter(|call| call.accepted())
        .flat_map(|call| call.user_ids.clone())
        .collect();
    assert_eq!(accepted.len(), 60);
    registrar.stop().await;
}

/// What the test vendor saw: the UserIds of each call, and what was wrong.
#[derive(Clone, Default)]
struct Seen {
    calls: Arc<Mutex<Vec<Vec<String>>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

/// ZEGO's published algorithm (docs/vendors/zim.md#signing), computed here independently:
/// md5 of AppId + SignatureNonce + ServerSecret + Timestamp, lower-case hex.
fn published_signature(app_id: &str, nonce: &str, secret: &str, timestamp: &str) -> String {
    let digest = Md5::digest(format!("{app_id}{nonce}{secret}{timestamp}").as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn zego_gateway(
    State(seen): State<Seen>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let params: BTreeMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    if param("Action") != "UserRegister" || param("SignatureVersion") != "2.0" {
        problems.push(format!("wrong Action or SignatureVersion: {uri}"));
    }
    if param("AppId") != APP_ID.to_string() {
        problems.push(format!("wrong AppId: {}", param("AppId")));
    }
    let nonce = param("SignatureNonce");
    if nonce.len() != 16 || !nonce.chars().all(|c| c.is_ascii_hexdigit()) {
        problems.push(format!("the nonce is not 16 hex digits: {nonce}"));
    }
    let timestamp: i64 = param("Timestamp").parse().unwrap_or(0);
    if (chrono::Utc::now().timestamp() - timestamp).abs() > 600 {
        problems.push(format!("the timestamp is off: {timestamp}"));
    }
    let expected = published_signature(
        &param("AppId"),
        &nonce,
        ZIM_SERVER_SECRET,
        &param("Timestamp"),
    );
    let signed = param("Signature") == expected;
    if !signed {
        problems.push(format!(
            "signature differs from ZEGO's: {}",
            param("Signature")
        ));
    }
    if headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        != Some("application/json")
    {
        problems.push("the body is not declared application/json".to_owned());
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let user_ids: Vec<String> = parsed["UserInfo"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item["UserId"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    if user_ids.is_empty() || user_ids.iter().any(String::is_empty) {
        problems.push(format!("the body has no UserInfo with UserIds: {parsed}"));
    }
    seen.calls.lock().unwrap().push(user_ids);
    seen.problems.lock().unwrap().extend(problems);
    if signed {
        Json(json!({"Code": 0, "Message": "success", "RequestId": "343649807833778782"}))
    } else {
        Json(json!({"Code": 100000005, "Message": "invalid signature", "RequestId": "1"}))
    }
}

#[tokio::test]
async fn calls_are_signed_exactly_as_zego_publishes_the_algorithm() {
    // the algorithm itself, on the official vector (docs/vendors/zim.md#test-vector)
    assert_eq!(
        published_signature(
            "12345",
            "4fd24687296dd9f3",
            "9193cc662a4c0ec135ec71fb57194b38",
            "1615186943"
        ),
        "43e5cfcca828314675f91b001390566a"
    );
    let seen = Seen::default();
    let app = Router::new()
        .route("/", post(zego_gateway))
        .with_state(seen.clone());
    let (endpoint, server) = serve_vendor(app).await;
    let mut registrar = Registrar::start(&zim_target("zim", &endpoint, "max_batch = 20")).await;

    let collected = batch_register(
        &mut registrar.client,
        request(&["zim"], users("signed", 50)),
    )
    .await
    .unwrap();

    assert_eq!(seen.problems.lock().unwrap().clone(), Vec::<String>::new());
    assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 50);
    let calls = seen.calls.lock().unwrap().clone();
    let mut sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![10, 20, 20]);
    let carried: HashSet<String> = calls.into_iter().flatten().collect();
    assert_eq!(carried.len(), 50);
    registrar.stop().await;
    server.abort();
}
