//! Tencent CIAM end to end. `CreateUser` through registrar: registrar and the
//! built-in simulator run in-process on loopback, and assertions are on what
//! the simulator recorded and what the audit store holds. The simulator's
//! CIAM gateway and import jobs over real HTTP, driven by registrar's own
//! CIAM vendor modules (the engine's job flow is tested with the engine).

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use registrar::{
    api::pb,
    audit::entity::{batch, registration, vendor_call},
    domain::{CiamProfile, PasswordHashType, SaltLocation, User, VendorKind},
    sim::Simulator,
    vendor_api::{
        AttemptContext, JobApi, JobStatus, Submission, VendorApi, VendorOutcome,
        tencent::ciam::{CiamConfig, CiamCreateUser},
        tencent::ciam_import::CiamImport,
        tencent::envelope::{Envelope, TencentCredentials, decode_envelope},
    },
};
use sea_orm::EntityTrait;
use secrecy::SecretString;

const CIAM_APP_ID: u64 = 7_001;
const IMPORT_APP_ID: u64 = 7_002;
const STORE: &str = "5a1e0c3bd2f84e0c9a4b7f2e6d1c8a90";
const IMPORT_STORE: &str = "9b2f1d4ce3a95f1d0b5c8a3f7e2d9b01";
const REGION: &str = "ap-guangzhou";
const SECRET_ID: &str = "AKIDtestCIAM000000000000000000000000";
const SECRET_KEY: &str = "test-ciam-secret-key-never-logged";

const CIAM: TestAccount = TestAccount::ciam(CIAM_APP_ID, STORE, SECRET_ID, SECRET_KEY);
const IMPORT: TestAccount =
    TestAccount::ciam(IMPORT_APP_ID, IMPORT_STORE, SECRET_ID, SECRET_KEY).import();

fn password_of(n: usize) -> String {
    format!("pw-{n:04}-Secret!Horse")
}

/// A caller's user with a full CIAM profile; its UserName is `name{n}`.
fn ciam_user(prefix: &str, n: usize) -> pb::User {
    pb::User {
        user_id: format!("{prefix}{n:04}"),
        display_name: format!("display {n}"),
        ciam: Some(pb::CiamProfile {
            user_name: format!("{prefix}name{n}"),
            phone_number: format!("+86-1320000{n:04}"),
            email: format!("{prefix}{n}@example.com"),
            password: password_of(n),
            nickname: format!("nick {n}"),
            address: "address".to_owned(),
            user_groups: vec!["6cd22e51f0a14c3b9d2e7f8a1b2cf6f7".to_owned()],
            birthdate_unix_ms: 1_706_682_491_339,
            customization_attributes: vec![pb::CiamAttribute {
                name: "k".to_owned(),
                value: "v".to_owned(),
                r#type: "STRING".to_owned(),
            }],
            indexed_attributes: (1..=5).map(|i| format!("value{i}")).collect(),
            ..pb::CiamProfile::default()
        }),
        ..pb::User::default()
    }
}

#[tokio::test]
async fn two_hundred_users_take_two_hundred_calls_of_one_user_and_register_user_by_user() {
    // a few hundred users at the vendor quota of 20 calls per second: ten seconds
    const USERS: usize = 200;
    let (simulator, mut registrar) = start_with_target(CIAM, 20, "ciam", "").await;
    let batch: Vec<pb::User> = (0..USERS).map(|n| ciam_user("a", n)).collect();

    let collected = batch_register(&mut registrar.client, request(&["ciam"], batch))
        .await
        .unwrap();

    // CIAM CreateUser (docs/vendors/ciam.md#batch-size): one user per CreateUser call
    let calls = simulator.calls();
    assert_eq!(calls.len(), USERS);
    assert!(
        calls
            .iter()
            .all(|call| call.accepted() && call.action == "CreateUser" && call.user_ids.len() == 1)
    );
    let sent: HashSet<String> = calls.iter().map(|call| call.user_ids[0].clone()).collect();
    let expected: HashSet<String> = (0..USERS).map(|n| format!("aname{n}")).collect();
    assert_eq!(sent, expected, "every user once, by its UserName");
    // the vendor's quota was respected (docs/vendors/ciam.md#quota: 20 requests per second)
    assert!(simulator.max_calls_in_any_second(VendorKind::TencentCiam, CIAM_APP_ID) <= 20);

    // each user registered with the UserId the vendor generated for it
    let registered: BTreeMap<String, String> = simulator
        .registered(VendorKind::TencentCiam, CIAM_APP_ID)
        .into_iter()
        .map(|user| (user.origin_id, user.vendor_user_id))
        .collect();
    assert_eq!(registered.len(), USERS);
    assert_eq!(collected.results.len(), USERS);
    for result in &collected.results {
        assert_eq!(result.outcome(), pb::Outcome::Registered, "{result:?}");
        assert_eq!(result.user_id, format!("a{:04}", result.index));
        assert_eq!(
            registered[&format!("aname{}", result.index)],
            result.vendor_user_id
        );
        assert_eq!(result.attempts, 1);
    }
    assert_eq!(
        collected.summary.as_ref().unwrap().targets[0].registered,
        USERS as u64
    );

    // one vendor-call row of one user per call
    let rows = vendor_call::Entity::find()
        .all(&registrar.audit.connection())
        .await
        .unwrap();
    assert_eq!(rows.len(), USERS);
    assert!(rows.iter().all(|row| row.user_count == 1
        && row.action == "CreateUser"
        && row.vendor_request_id.is_some()));
    registrar.stop().await;
}

#[tokio::test]
async fn users_breaking_ciam_rules_are_rejected_by_field_and_never_sent() {
    let (simulator, mut registrar) = start_with_target(CIAM, 20, "ciam", "").await;
    let mut no_ciam = ciam_user("m", 1);
    no_ciam.ciam = None;
    let mut no_email = ciam_user("m", 2);
    no_email.ciam.as_mut().unwrap().email.clear();
    let mut six_indexed = ciam_user("m", 3);
    six_indexed.ciam.as_mut().unwrap().indexed_attributes = vec!["v".to_owned(); 6];
    let mut no_password = ciam_user("m", 4);
    no_password.ciam.as_mut().unwrap().password.clear();
    let batch = vec![
        ciam_user("m", 0),
        no_ciam,
        no_email,
        six_indexed,
        no_password,
        ciam_user("m", 5),
    ];

    let collected = batch_register(&mut registrar.client, request(&["ciam"], batch))
        .await
        .unwrap();

    let results = collected.by_index();
    assert_eq!(results.len(), 6);
    let rejected =
        |index: u64, code: &str, message: &str| assert_rejected(results[&index], code, message);
    rejected(
        1,
        "validation.required",
        "ciam is required and must not be empty",
    );
    rejected(
        2,
        "validation.required",
        "ciam.email is required and must not be empty",
    );
    rejected(
        3,
        "validation.too_many",
        "ciam.indexedAttributes must hold at most 5 values (got 6)",
    );
    rejected(
        4,
        "validation.required",
        "ciam.password is required and must not be empty",
    );
    for index in [0, 5] {
        assert_eq!(results[&index].outcome(), pb::Outcome::Registered);
    }

    // the simulator saw the two valid users only
    let sent = sent_user_ids(&simulator);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent.into_iter().collect::<HashSet<_>>(),
        HashSet::from(["mname0".to_owned(), "mname5".to_owned()])
    );
    registrar.stop().await;
}

#[tokio::test]
async fn registering_the_same_users_again_reports_them_as_existing() {
    let (simulator, mut registrar) = start_with_target(CIAM, 20, "ciam", "").await;
    let batch: Vec<pb::User> = (0..8).map(|n| ciam_user("r", n)).collect();

    let first = batch_register(&mut registrar.client, request(&["ciam"], batch.clone()))
        .await
        .unwrap();
    let second = batch_register(&mut registrar.client, request(&["ciam"], batch))
        .await
        .unwrap();

    assert_eq!(first.with_outcome(pb::Outcome::Registered).len(), 8);
    // CIAM CreateUser (docs/vendors/ciam.md#error-codes): FailedOperation.UserNameAlreadyExists
    // "The user name already exists."
    assert_eq!(second.results.len(), 8);
    for result in &second.results {
        assert_eq!(result.outcome(), pb::Outcome::AlreadyExists, "{result:?}");
        assert_eq!(result.error_code, "FailedOperation.UserNameAlreadyExists");
        assert_eq!(result.attempts, 1, "an existing user is not retried");
    }
    assert_eq!(
        second.summary.as_ref().unwrap().targets[0].already_exists,
        8
    );
    // the vendor holds each user once; the second pass was 8 refused calls
    assert_eq!(
        simulator
            .registered(VendorKind::TencentCiam, CIAM_APP_ID)
            .len(),
        8
    );
    let calls = simulator.calls();
    assert_eq!(calls.len(), 16);
    assert_eq!(
        calls
            .iter()
            .filter(
                |call| call.error_code.as_deref() == Some("FailedOperation.UserNameAlreadyExists")
            )
            .count(),
        8
    );
    registrar.stop().await;
}

#[tokio::test]
async fn passwords_reach_the_vendor_and_no_audit_row_or_simulator_memory() {
    let (simulator, mut registrar) = start_with_target(CIAM, 20, "ciam", "").await;
    let mut batch: Vec<pb::User> = (0..6).map(|n| ciam_user("p", n)).collect();
    // a rejected user with a password, and (on the second pass) existing users
    batch[5].ciam.as_mut().unwrap().email.clear();
    let passwords: Vec<String> = (0..6).map(password_of).collect();

    let first = batch_register(&mut registrar.client, request(&["ciam"], batch.clone()))
        .await
        .unwrap();
    let second = batch_register(&mut registrar.client, request(&["ciam"], batch))
        .await
        .unwrap();
    assert_eq!(first.with_outcome(pb::Outcome::Registered).len(), 5);
    assert_eq!(second.with_outcome(pb::Outcome::AlreadyExists).len(), 5);
    assert_eq!(second.with_outcome(pb::Outcome::Rejected).len(), 1);

    let connection = &registrar.audit.connection();
    let mut audit_text = String::new();
    for row in registration::Entity::find().all(connection).await.unwrap() {
        audit_text.push_str(&format!("{row:?}\n"));
    }
    for row in vendor_call::Entity::find().all(connection).await.unwrap() {
        audit_text.push_str(&format!("{row:?}\n"));
    }
    for row in batch::Entity::find().all(connection).await.unwrap() {
        audit_text.push_str(&format!("{row:?}\n"));
    }
    assert!(
        audit_text.contains("p0000"),
        "the rows were read: {audit_text}"
    );
    let results_text = format!("{:?}{:?}", first.results, second.results);
    let registered = simulator.registered(VendorKind::TencentCiam, CIAM_APP_ID);
    assert_eq!(registered.len(), 5);
    let simulator_text = format!("{registered:?}{:?}", simulator.calls());
    assert!(
        registered
            .iter()
            .all(|user| user.fields["PasswordSet"] == "true")
    );
    for password in &passwords {
        assert!(
            !audit_text.contains(password.as_str()),
            "{password} in an audit row"
        );
        assert!(
            !results_text.contains(password.as_str()),
            "{password} in a result"
        );
        assert!(
            !simulator_text.contains(password.as_str()),
            "{password} kept by the simulator"
        );
    }
    registrar.stop().await;
}

// --- the simulator over HTTP, driven by the vendor modules ---

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(client: &HttpClient, request: http::Request<Bytes>) -> http::Response<Bytes> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(http::Request::from_parts(parts, Full::new(body)))
        .await
        .expect("the simulator answers");
    let (parts, body) = response.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

fn error_code_of(response: &http::Response<Bytes>) -> Option<String> {
    match decode_envelope(response.status(), response.body()).expect("a Tencent envelope") {
        Envelope::Failure { error, .. } => Some(error.code),
        Envelope::Success { .. } => None,
    }
}

fn config(simulator: &Simulator, user_store_id: &str, secret_key: &str) -> CiamConfig {
    CiamConfig {
        endpoint: simulator.endpoint(),
        user_store_id: user_store_id.to_owned(),
        region: REGION.to_owned(),
        credentials: TencentCredentials {
            secret_id: SECRET_ID.to_owned(),
            secret_key: SecretString::from(secret_key),
        },
    }
}

fn domain_user(user_name: &str) -> User {
    User {
        user_id: user_name.to_owned(),
        ciam: Some(CiamProfile {
            user_name: user_name.to_owned(),
            phone_number: format!("tel-{user_name}"),
            email: format!("{user_name}@example.com"),
            password: Some(SecretString::from("plaintext-for-create-user")),
            ..CiamProfile::default()
        }),
        ..User::default()
    }
}

#[tokio::test]
async fn the_simulated_gateway_checks_signature_region_and_store() {
    let simulator = start_simulator(vec![CIAM.sim(100)]).await;
    let client = http_client();
    let create = |user_store_id: &str, secret_key: &str| {
        CiamCreateUser::new(config(&simulator, user_store_id, secret_key))
    };
    let user = domain_user("gate");
    let attempt = AttemptContext::now;

    // CIAM CreateUser "Region Yes" (docs/vendors/ciam.md#endpoint): without X-TC-Region (not a
    // signed header) the call is refused
    let mut no_region = create(STORE, SECRET_KEY)
        .build_request(&[&user], &attempt())
        .unwrap();
    no_region.headers_mut().remove("x-tc-region");
    let answer = send(&client, no_region).await;
    assert_eq!(error_code_of(&answer).as_deref(), Some("MissingParameter"));

    let cases = [
        (create(STORE, "a-wrong-key"), "AuthFailure.SignatureFailure"),
        (
            create("another-store", SECRET_KEY),
            "FailedOperation.UserStoreNotExist",
        ),
    ];
    for (module, code) in cases {
        let answer = send(&client, module.build_request(&[&user], &attempt()).unwrap()).await;
        assert_eq!(error_code_of(&answer).as_deref(), Some(code));
        let report = module.parse_response(&[&user], &answer);
        assert!(
            matches!(&report.outcomes[0], VendorOutcome::Failed { code: failed, .. } if failed == code)
        );
    }

    // the right store, key and region create the user; the module reads the UserId back
    let module = create(STORE, SECRET_KEY);
    let answer = send(&client, module.build_request(&[&user], &attempt()).unwrap()).await;
    let report = module.parse_response(&[&user], &answer);
    let registered = simulator.registered(VendorKind::TencentCiam, CIAM_APP_ID);
    assert_eq!(
        report.outcomes,
        vec![VendorOutcome::Registered {
            vendor_user_id: Some(registered[0].vendor_user_id.clone())
        }]
    );
    // every call was recorded, the refused ones with their codes
    let codes: Vec<Option<String>> = simulator
        .calls()
        .into_iter()
        .map(|call| call.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![
            Some("MissingParameter".to_owned()),
            Some("AuthFailure.SignatureFailure".to_owned()),
            Some("FailedOperation.UserStoreNotExist".to_owned()),
            None,
        ]
    );
    simulator.shutdown().await;
}

fn import_user(user_name: &str, hash_type: Option<PasswordHashType>) -> User {
    let mut user = domain_user(user_name);
    let profile = user.ciam.as_mut().unwrap();
    profile.password = None;
    profile.password_hash = Some(SecretString::from(format!("hash-of-{user_name}")));
    profile.password_hash_type = hash_type;
    profile.salt_value = Some(SecretString::from("salt-value"));
    profile.salt_location = Some(SaltLocation::Head);
    user
}

async fn submit(client: &HttpClient, module: &CiamImport, users: &[&User]) -> Submission {
    let answer = send(
        client,
        module.build_request(users, &AttemptContext::now()).unwrap(),
    )
    .await;
    module.parse_submission(users, &answer)
}

async fn poll_until_finished(
    client: &HttpClient,
    module: &CiamImport,
    users: &[&User],
    job_id: &str,
) -> Vec<VendorOutcome> {
    for _ in 0..100 {
        let request = module
            .build_poll_request(job_id, &AttemptContext::now())
            .unwrap();
        match module.parse_poll(users, job_id, &send(client, request).await) {
            JobStatus::Running { .. } => tokio::time::sleep(Duration::from_millis(50)).await,
            JobStatus::Finished(report) => return report.outcomes,
            other => panic!("polling job {job_id} failed: {other:?}"),
        }
    }
    panic!("job {job_id} did not finish within 5 s");
}

#[tokio::test]
async fn simulated_import_jobs_run_to_completion_two_at_a_time() {
    let simulator = start_simulator(vec![IMPORT.sim(100)]).await;
    let client = http_client();
    let module = CiamImport::new(config(&simulator, IMPORT_STORE, SECRET_KEY));
    let (one, two) = (
        import_user("one", Some(PasswordHashType::Sha1)),
        import_user("two", Some(PasswordHashType::Bcrypt)),
    );
    // docs/vendors/ciam-import.md#password-hash-and-salt: Password without PasswordEncryptTypeEnum
    // reads as plaintext; the job fails that user
    let untyped = import_user("untyped", None);
    let first_users = [&one, &two];
    let second_users = [&two, &untyped];

    let Submission::Started { job_id: first, .. } = submit(&client, &module, &first_users).await
    else {
        panic!("the first job starts");
    };
    let Submission::Started { job_id: second, .. } = submit(&client, &module, &second_users).await
    else {
        panic!("the second job starts");
    };
    // docs/vendors/ciam-import.md#concurrent-job-limit: at most two jobs PENDING or PROCESSING per user store
    let busy = submit(&client, &module, &[&one]).await;
    assert!(
        matches!(&busy, Submission::Busy { code, .. } if code == "FailedOperation.DataFlowTooManyRequests"),
        "{busy:?}"
    );

    let first_outcomes = poll_until_finished(&client, &module, &first_users, &first).await;
    assert!(
        first_outcomes
            .iter()
            .all(|outcome| matches!(outcome, VendorOutcome::Registered { .. })),
        "{first_outcomes:?}"
    );
    let second_outcomes = poll_until_finished(&client, &module, &second_users, &second).await;
    assert!(
        matches!(&second_outcomes[0], VendorOutcome::AlreadyExists { message, .. } if message == "user already exists"),
        "{second_outcomes:?}"
    );
    assert!(
        matches!(&second_outcomes[1], VendorOutcome::Rejected { message, .. } if message.contains("PasswordEncryptTypeEnum")),
        "{second_outcomes:?}"
    );
    // with both jobs ended, a new one starts
    assert!(matches!(
        submit(
            &client,
            &module,
            &[&import_user("three", Some(PasswordHashType::Sha1))]
        )
        .await,
        Submission::Started { .. }
    ));

    // the store holds the imported users with their hash type, never the hash or salt
    let registered = simulator.registered(VendorKind::TencentCiamImport, IMPORT_APP_ID);
    let names: Vec<&str> = registered
        .iter()
        .map(|user| user.origin_id.as_str())
        .collect();
    assert_eq!(names, vec!["one", "two"]);
    assert_eq!(registered[0].fields["PasswordHashType"], "SHA1");
    assert_eq!(registered[1].fields["PasswordHashType"], "BCRYPT");
    let kept = format!("{registered:?}");
    assert!(
        !kept.contains("hash-of-") && !kept.contains("salt-value"),
        "{kept}"
    );

    // the calls: three submissions (one refused as busy), polls, one more submission
    let calls = simulator.calls();
    let submissions: Vec<_> = calls
        .iter()
        .filter(|call| call.action == "CreateApiImportUserJob")
        .collect();
    assert_eq!(submissions.len(), 4);
    assert_eq!(submissions[0].user_ids, vec!["one", "two"]);
    assert_eq!(submissions[1].user_ids, vec!["two", "untyped"]);
    assert_eq!(
        submissions[2].error_code.as_deref(),
        Some("FailedOperation.DataFlowTooManyRequests")
    );
    assert!(
        calls
            .iter()
            .filter(|call| call.action == "ListJobs")
            .all(|call| call.accepted() && call.user_ids.is_empty())
    );
    simulator.shutdown().await;
}
