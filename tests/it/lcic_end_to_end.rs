//! End to end against the built-in LCIC simulator: registrar and the
//! simulator run in-process on loopback; assertions are on what the
//! simulator recorded and what the audit store holds.

use std::collections::{BTreeMap, HashSet};

use crate::common::*;
use registrar::{
    api::pb,
    audit::{RegistrationFilter, entity::registration},
    domain::{Outcome, VendorKind},
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

#[tokio::test]
async fn five_thousand_users_take_exactly_five_full_calls() {
    let (simulator, mut registrar) = start_with_target(LCIC, 20, "lcic", "").await;

    let collected = batch_register(&mut registrar.client, request(&["lcic"], users("u", 5000)))
        .await
        .unwrap();

    // the vendor saw exactly 5 accepted calls of 1000 users, every user once
    let calls = simulator.calls();
    assert_eq!(calls.len(), 5, "{:?}", call_sizes(&calls));
    assert!(
        calls
            .iter()
            .all(|call| call.accepted() && call.user_ids.len() == 1000)
    );
    let sent: HashSet<&str> = calls
        .iter()
        .flat_map(|call| call.user_ids.iter().map(String::as_str))
        .collect();
    assert_eq!(sent.len(), 5000);
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        5000
    );

    // one result per user, each with its index and the vendor's user id
    assert_eq!(collected.results.len(), 5000);
    assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 5000);
    let indexes: HashSet<u64> = collected
        .results
        .iter()
        .map(|result| result.index)
        .collect();
    assert_eq!(indexes, (0..5000).collect());
    let vendor_ids: BTreeMap<String, String> = simulator
        .registered(VendorKind::TencentLcic, LCIC_APP_ID)
        .into_iter()
        .map(|user| (user.origin_id, user.vendor_user_id))
        .collect();
    for result in &collected.results {
        assert_eq!(result.user_id, format!("u{:06}", result.index));
        assert_eq!(vendor_ids[&result.user_id], result.vendor_user_id);
        assert_eq!(result.attempts, 1);
    }
    let summary = collected.summary.as_ref().unwrap();
    assert_eq!(summary.targets[0].registered, 5000);
    assert_eq!(summary.targets[0].total, 5000);

    // 5000 registration rows, all registered, and GetBatch agrees
    let batch_id = collected.batch_id();
    let rows = registration::Entity::find()
        .filter(registration::Column::BatchId.eq(batch_id.as_str()))
        .filter(registration::Column::Outcome.eq(Outcome::Registered.as_str()))
        .count(&registrar.audit.connection())
        .await
        .unwrap();
    assert_eq!(rows, 5000);
    let batch = registrar.get_batch(&batch_id).await;
    assert_eq!(batch.state(), pb::BatchState::Completed);
    assert_eq!(batch.user_count, 5000);
    assert_eq!(batch.counts[0].registered, 5000);
    assert_eq!(batch.counts[0].total, 5000);
    assert!(batch.finish_time.is_some());

    // one vendor-call row per call, with its request id and status
    let vendor_calls = registrar::audit::entity::vendor_call::Entity::find()
        .all(&registrar.audit.connection())
        .await
        .unwrap();
    assert_eq!(vendor_calls.len(), 5);
    for call in &vendor_calls {
        assert_eq!(call.user_count, 1000);
        assert_eq!(call.http_status, Some(200));
        assert!(call.vendor_request_id.is_some());
        assert_eq!(call.action, "BatchRegister");
        assert!(call.finished_at.is_some());
    }
    registrar.stop().await;
}

#[tokio::test]
async fn invalid_users_are_rejected_with_the_rule_and_never_reach_the_vendor() {
    let (simulator, mut registrar) = start_with_target(LCIC, 20, "lcic", "").await;

    let batch = vec![
        user("ok-1"),
        user(""),
        user("ok-2"),
        user("ok-1"),
        user("ok-3"),
    ];
    let collected = batch_register(&mut registrar.client, request(&["lcic"], batch))
        .await
        .unwrap();

    let by_index = collected.by_index();
    assert_eq!(by_index.len(), 5);
    assert_eq!(by_index[&1].outcome(), pb::Outcome::Rejected);
    assert_eq!(by_index[&1].error_code, "validation.required");
    assert_eq!(
        by_index[&1].error_message,
        "userId is required and must not be empty"
    );
    assert_eq!(by_index[&3].outcome(), pb::Outcome::Rejected);
    assert_eq!(by_index[&3].error_code, "validation.duplicate");
    assert!(by_index[&3].error_message.contains("index 0"));
    assert_eq!(by_index[&3].attempts, 0);
    for index in [0, 2, 4] {
        assert_eq!(by_index[&index].outcome(), pb::Outcome::Registered);
    }

    // the vendor saw the three valid users only, once each
    let sent = sent_user_ids(&simulator);
    assert_eq!(sent.len(), 3);
    assert_eq!(
        sent.iter().collect::<HashSet<_>>(),
        ["ok-1", "ok-2", "ok-3"]
            .iter()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect()
    );

    // and the audit store holds the rejections with their reasons
    let (rows, _) = registrar
        .audit
        .list_registrations(
            &RegistrationFilter {
                batch_id: Some(collected.batch_id()),
                outcome: Some(Outcome::Rejected),
                ..RegistrationFilter::default()
            },
            100,
            0,
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|row| row.error_message.is_some() && row.attempts == 0)
    );
    registrar.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_invalid_argument_naming_the_problem() {
    let simulator = start_simulator(vec![lcic_account(20)]).await;
    let mut registrar = Registrar::start_with_database(
        &lcic_target("lcic", &simulator.endpoint(), ""),
        "sqlite::memory:",
        "max_unary_users = 10",
    )
    .await;
    let client = &mut registrar.client;

    let status = batch_register(client, request(&["nope"], users("u", 1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("\"nope\"") && status.message().contains("known targets: lcic"),
        "{}",
        status.message()
    );

    let status = batch_register(client, request(&[], users("u", 1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("no targets"),
        "{}",
        status.message()
    );

    let status = batch_register(client, request(&["lcic"], vec![]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("users"), "{}", status.message());

    let status = batch_register(client, request(&["lcic"], users("u", 11)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("BatchRegisterStream"),
        "{}",
        status.message()
    );

    // a stream must open with its header
    let chunk = pb::BatchRegisterStreamRequest {
        message: Some(pb::batch_register_stream_request::Message::Users(
            pb::UserChunk {
                users: users("u", 2),
            },
        )),
    };
    let status = client
        .batch_register_stream(tokio_stream::iter(vec![chunk]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("header"), "{}", status.message());

    // nothing reached the vendor
    assert!(simulator.calls().is_empty());
    registrar.stop().await;
}

#[tokio::test]
async fn a_stream_registers_chunks_and_pages_through_the_audit_rows() {
    use pb::batch_register_stream_request::Message;
    let (simulator, mut registrar) = start_with_target(LCIC, 20, "lcic", "").await;

    let mut messages = vec![pb::BatchRegisterStreamRequest {
        message: Some(Message::Header(pb::BatchHeader {
            targets: vec!["lcic".to_owned()],
            ..pb::BatchHeader::default()
        })),
    }];
    for chunk in 0..5 {
        messages.push(pb::BatchRegisterStreamRequest {
            message: Some(Message::Users(pb::UserChunk {
                users: users(&format!("s{chunk}-"), 300),
            })),
        });
    }
    let mut stream = registrar
        .client
        .batch_register_stream(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let mut results = Vec::new();
    let mut summary = None;
    while let Some(response) = stream.message().await.unwrap() {
        match response.event.unwrap() {
            pb::batch_register_stream_response::Event::Result(result) => results.push(result),
            pb::batch_register_stream_response::Event::Summary(done) => summary = Some(done),
        }
    }
    let summary = summary.expect("a summary");
    assert_eq!(results.len(), 1500);
    assert!(
        results
            .iter()
            .all(|result| result.outcome() == pb::Outcome::Registered)
    );
    let indexes: HashSet<u64> = results.iter().map(|result| result.index).collect();
    assert_eq!(indexes, (0..1500).collect());
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        1500
    );
    assert!(
        simulator
            .calls()
            .iter()
            .all(|call| call.user_ids.len() <= 1000)
    );

    // ListRegistrations pages through all 1500 rows exactly once
    let pages = registrar
        .list_registration_pages(&summary.batch_id, 400)
        .await;
    let mut seen = HashSet::new();
    for row in pages.iter().flatten() {
        assert!(seen.insert(row.index), "index {} twice", row.index);
        assert_eq!(row.outcome(), pb::Outcome::Registered);
    }
    assert_eq!(seen.len(), 1500);
    assert_eq!(pages.len(), 4);

    // and filters by user id and outcome
    let one = registrar
        .client
        .list_registrations(pb::ListRegistrationsRequest {
            user_id: "s2-000007".to_owned(),
            outcome: pb::Outcome::Registered.into(),
            ..pb::ListRegistrationsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.registrations.len(), 1);
    registrar.stop().await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_replays_from_the_audit_store() {
    let (simulator, mut registrar) = start_with_target(LCIC, 20, "lcic", "").await;
    let mut first = request(&["lcic"], users("k", 30));
    first.idempotency_key = "import-2026-11-21".to_owned();

    let original = batch_register(&mut registrar.client, first.clone())
        .await
        .unwrap();
    let replayed = batch_register(&mut registrar.client, first).await.unwrap();

    assert_eq!(simulator.calls().len(), 1, "the repeat called no vendor");
    assert_eq!(replayed.batch_id(), original.batch_id());
    assert!(replayed.summary.as_ref().unwrap().replayed);
    assert_eq!(replayed.results.len(), 30);
    assert!(
        replayed
            .results
            .iter()
            .all(|result| result.replayed && result.outcome() == pb::Outcome::Registered)
    );
    let vendor_ids = |collected: &Collected| -> BTreeMap<u64, String> {
        collected
            .results
            .iter()
            .map(|result| (result.index, result.vendor_user_id.clone()))
            .collect()
    };
    assert_eq!(vendor_ids(&original), vendor_ids(&replayed));
    registrar.stop().await;
}

#[tokio::test]
async fn registering_the_same_users_again_registers_them_again() {
    // LCIC BatchRegister (docs/vendors/lcic.md#repeats): "If a user ID already exists, the existing
    // one will be overwritten."
    let (simulator, mut registrar) = start_with_target(LCIC, 20, "lcic", "").await;
    for _ in 0..2 {
        let collected = batch_register(
            &mut registrar.client,
            request(&["lcic"], users("again", 10)),
        )
        .await
        .unwrap();
        assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 10);
    }
    let registered = simulator.registered(VendorKind::TencentLcic, LCIC_APP_ID);
    assert_eq!(registered.len(), 10);
    assert!(registered.iter().all(|user| user.registrations == 2));
    registrar.stop().await;
}

#[tokio::test]
async fn a_vendor_quota_lower_than_configured_is_retried_until_every_user_registers() {
    // docs/vendors/lcic.md#quota: LCIC's SDK text says 10 req/s where the page says 20.
    let (simulator, mut registrar) = start_with_target(
        LCIC,
        3,
        "lcic",
        "qps = 20\nmax_batch = 10\nmax_attempts = 8",
    )
    .await;

    let collected = batch_register(&mut registrar.client, request(&["lcic"], users("q", 60)))
        .await
        .unwrap();

    assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 60);
    let throttled = simulator
        .calls()
        .iter()
        .filter(|call| call.error_code.as_deref() == Some("RequestLimitExceeded"))
        .count();
    assert!(throttled > 0, "the simulator throttled some calls");
    assert!(collected.results.iter().any(|result| result.attempts > 1));
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        60
    );
    assert!(simulator.max_calls_in_any_second(VendorKind::TencentLcic, LCIC_APP_ID) <= 3);
    registrar.stop().await;
}

#[tokio::test]
async fn list_targets_reports_kind_cap_and_quota() {
    let mut registrar = Registrar::start(&lcic_target(
        "classrooms",
        "http://127.0.0.1:9",
        "qps = 10\nmax_batch = 500",
    ))
    .await;
    let targets = registrar.list_targets().await;
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].name, "classrooms");
    assert_eq!(targets[0].vendor(), pb::VendorKind::TencentLcic);
    assert_eq!(targets[0].max_batch, 500);
    assert_eq!(targets[0].qps, 10);
    assert_eq!(targets[0].health(), pb::TargetHealth::Unspecified);
    registrar.stop().await;
}

/// The field a status's BadRequest detail names, and its message.
fn violation(status: &tonic::Status) -> (String, String) {
    use tonic_types::StatusExt;
    let bad_request = status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries a BadRequest detail");
    (
        bad_request.field_violations[0].field.clone(),
        status.message().to_owned(),
    )
}

#[tokio::test]
async fn batch_ids_and_page_tokens_are_checked_and_named_as_callers_type_them() {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let simulator = start_simulator(vec![lcic_account(20)]).await;
    let mut registrar = Registrar::start_with_database(
        &lcic_target("lcic", &simulator.endpoint(), ""),
        "sqlite::memory:",
        "",
    )
    .await;
    let client = &mut registrar.client;
    let collected = batch_register(client, request(&["lcic"], users("p-", 3)))
        .await
        .unwrap();
    let batch_id = collected.summary.unwrap().batch_id;

    // a batch id that is not a UUID is the caller's mistake, not a missing batch
    let status = client
        .get_batch(pb::GetBatchRequest {
            batch_id: "batch-1".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let (field, message) = violation(&status);
    assert_eq!(field, "batchId");
    assert!(message.starts_with("batchId: "), "{message}");
    let status = client
        .get_batch(pb::GetBatchRequest {
            batch_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violation(&status).0, "batchId");
    let status = client
        .get_batch(pb::GetBatchRequest {
            batch_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    let status = client
        .list_registrations(pb::ListRegistrationsRequest {
            batch_id: "batch-1".to_owned(),
            ..pb::ListRegistrationsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(violation(&status).0, "batchId");

    // a real token pages on, for its own filters only
    let first = client
        .list_registrations(pb::ListRegistrationsRequest {
            batch_id: batch_id.clone(),
            page_size: 1,
            ..pb::ListRegistrationsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.registrations[0].user_id, "p-000000");
    let token = first.next_page_token;
    let second = client
        .list_registrations(pb::ListRegistrationsRequest {
            batch_id: batch_id.clone(),
            page_size: 1,
            page_token: token.clone(),
            ..pb::ListRegistrationsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.registrations[0].user_id, "p-000001");
    let other_filter = client
        .list_registrations(pb::ListRegistrationsRequest {
            target: "lcic".to_owned(),
            page_size: 1,
            page_token: token,
            ..pb::ListRegistrationsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(other_filter.code(), tonic::Code::InvalidArgument);
    assert_eq!(violation(&other_filter).0, "pageToken");

    // hand-made tokens are refused
    for forged in ["after:0", "after:-5"] {
        let status = client
            .list_registrations(pb::ListRegistrationsRequest {
                batch_id: batch_id.clone(),
                page_token: URL_SAFE_NO_PAD.encode(forged),
                ..pb::ListRegistrationsRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{forged}");
        let (field, message) = violation(&status);
        assert_eq!(field, "pageToken", "{forged}");
        assert!(message.starts_with("pageToken: "), "{message}");
    }
    registrar.stop().await;
}
