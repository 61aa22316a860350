//! Tencent CIAM answers that could make registrar claim more than the vendor
//! said: two users of one import batch sharing a UserName (a job names a
//! failed user by one bare identifier, so one job's answer could not tell
//! them apart), and a CreateUser success without the created user. The
//! simulator's jobs, store and recorded calls are the ground truth.

use std::collections::BTreeMap;

use axum::{Router, routing::post};

use crate::common::*;
use registrar::{api::pb, domain::VendorKind, sim::faults::SimFaults};

const CIAM_APP_ID: u64 = 9_001;
const IMPORT_APP_ID: u64 = 9_002;
const STORE: &str = "7c4e2a1bf3d94b6e8a0c5d2f1e3b7a64";
const IMPORT_STORE: &str = "3d8f6b2ae1c74f5d9b0a6e3c2f1d8b75";
const SECRET_ID: &str = "AKIDtestCIAMTRUTH0000000000000000000";
const SECRET_KEY: &str = "test-ciam-truth-secret-key";
const PASSWORD_HASH: &str = "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8";

const CIAM: TestAccount = TestAccount::ciam(CIAM_APP_ID, STORE, SECRET_ID, SECRET_KEY);
const IMPORT: TestAccount =
    TestAccount::ciam(IMPORT_APP_ID, IMPORT_STORE, SECRET_ID, SECRET_KEY).import();

/// A user to import under `user_name`, with its own id and email.
fn import_user(user_id: &str, user_name: &str) -> pb::User {
    pb::User {
        user_id: user_id.to_owned(),
        ciam: Some(pb::CiamProfile {
            user_name: user_name.to_owned(),
            email: format!("{user_id}@example.com"),
            password_hash: PASSWORD_HASH.to_owned(),
            password_hash_type: pb::PasswordHashType::Sha1.into(),
            ..pb::CiamProfile::default()
        }),
        ..pb::User::default()
    }
}

/// A user CreateUser accepts.
fn create_user(user_id: &str) -> pb::User {
    pb::User {
        user_id: user_id.to_owned(),
        ciam: Some(pb::CiamProfile {
            user_name: format!("{user_id}-name"),
            phone_number: "+86-13200000001".to_owned(),
            email: format!("{user_id}@example.com"),
            password: "pw-Secret!Horse".to_owned(),
            ..pb::CiamProfile::default()
        }),
        ..pb::User::default()
    }
}

#[tokio::test]
async fn two_users_of_one_import_batch_sharing_a_user_name_go_in_different_jobs_and_are_reported_as_each_job_says()
 {
    let simulator = start_simulator(vec![IMPORT.sim(20)]).await;
    let mut registrar =
        Registrar::start(&IMPORT.target("import", &simulator.endpoint(), "max_batch = 1000")).await;
    let batch = vec![
        import_user("first", "shared-name"),
        import_user("other-a", "name-a"),
        import_user("second", "shared-name"),
        import_user("other-b", "name-b"),
    ];

    let collected = batch_register(&mut registrar.client, request(&["import"], batch))
        .await
        .unwrap();

    // the simulator ran two jobs, and no job carried the shared UserName twice
    let jobs = simulator.jobs(VendorKind::TencentCiamImport, IMPORT_APP_ID);
    let carried: Vec<Vec<String>> = jobs.iter().map(|job| job.users.clone()).collect();
    assert_eq!(
        carried,
        vec![
            vec![
                "shared-name".to_owned(),
                "name-a".to_owned(),
                "name-b".to_owned()
            ],
            vec!["shared-name".to_owned()],
        ],
        "{jobs:?}"
    );
    // the first job created the user; the second was told it exists
    let by_user: BTreeMap<&str, &pb::UserResult> = collected
        .results
        .iter()
        .map(|result| (result.user_id.as_str(), result))
        .collect();
    assert_eq!(by_user.len(), 4);
    for user_id in ["first", "other-a", "other-b"] {
        assert_eq!(
            by_user[user_id].outcome(),
            pb::Outcome::Registered,
            "{:?}",
            by_user[user_id]
        );
    }
    let second = by_user["second"];
    assert_eq!(second.outcome(), pb::Outcome::AlreadyExists, "{second:?}");
    assert_eq!(second.error_code, "FailedOperation.ImportUserAlreadyExists");
    // and the user the vendor holds under the shared name is the one reported registered
    let stored = simulator.registered(VendorKind::TencentCiamImport, IMPORT_APP_ID);
    let shared = stored
        .iter()
        .find(|user| user.origin_id == "shared-name")
        .expect("the vendor holds the shared name");
    assert_eq!(
        shared.fields.get("Email").map(String::as_str),
        Some("first@example.com")
    );
    assert_eq!(stored.len(), 3);
    registrar.stop().await;
}

#[tokio::test]
async fn a_create_user_success_with_a_null_user_is_retried_not_counted_registered() {
    // docs/vendors/ciam.md#response: User "may return null"; the simulator creates the user and
    // answers {"User": null} to every call
    let simulator = start_simulator_with_faults(
        vec![CIAM.sim(20)],
        SimFaults {
            null_output: 1.0,
            ..SimFaults::default()
        },
    )
    .await;
    let mut registrar = Registrar::start(&CIAM.target("ciam", &simulator.endpoint(), "")).await;

    let collected = batch_register(
        &mut registrar.client,
        request(&["ciam"], vec![create_user("nulled")]),
    )
    .await
    .unwrap();

    // the repeat met the user the first call created: docs/vendors/ciam.md#repeats
    let [result] = collected.results.as_slice() else {
        panic!("{:?}", collected.results);
    };
    assert_eq!(result.outcome(), pb::Outcome::AlreadyExists, "{result:?}");
    assert_eq!(result.error_code, "FailedOperation.UserNameAlreadyExists");
    assert_eq!(
        result.attempts, 2,
        "the answer without the user was retried"
    );
    let create_calls: Vec<_> = simulator
        .calls()
        .into_iter()
        .filter(|call| call.action == "CreateUser")
        .collect();
    assert_eq!(create_calls.len(), 2, "{create_calls:?}");
    assert_eq!(
        simulator.registered(VendorKind::TencentCiam, CIAM_APP_ID)[0].origin_id,
        "nulled-name"
    );
    registrar.stop().await;
}

#[tokio::test]
async fn a_vendor_answering_every_create_user_without_the_user_leaves_it_failed_after_the_retries()
{
    let app = Router::new().route(
        "/",
        post(|| async { r#"{"Response":{"User":null,"RequestId":"req-null"}}"# }),
    );
    let (endpoint, vendor) = serve_vendor(app).await;
    let mut registrar = Registrar::start(&CIAM.target("ciam", &endpoint, "max_attempts = 3")).await;

    let collected = batch_register(
        &mut registrar.client,
        request(&["ciam"], vec![create_user("never-proven")]),
    )
    .await
    .unwrap();

    let [result] = collected.results.as_slice() else {
        panic!("{:?}", collected.results);
    };
    assert_eq!(result.outcome(), pb::Outcome::Failed, "{result:?}");
    assert_eq!(result.error_code, "registrar.MalformedResponse");
    assert_eq!(result.attempts, 3, "every attempt allowed was made");
    registrar.stop().await;
    vendor.abort();
}
