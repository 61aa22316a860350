//! registrar's `tencent-ciam` and `tencent-ciam-import` targets against a
//! CIAM vendor written in this test, not the built-in simulator: it checks
//! each call's TC3 signature the way tencentcloud-sdk-go computes it (service
//! `ciam`), the X-TC-Region CIAM requires and the action's version, and
//! answers CreateUser, CreateApiImportUserJob and ListJobs with the shapes
//! of CIAM CreateUser and CreateApiImportUserJob (docs/vendors/ciam.md#examples,
//! docs/vendors/ciam-import.md#examples). Assertions are on what that vendor saw.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
};

use crate::common::{tencent_sdk::sdk_authorization, *};
use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use registrar::api::pb;
use serde_json::{Value, json};

const STORE: &str = "contract-store-0001";
const REGION: &str = "ap-singapore";
const SECRET_ID: &str = "AKIDtestCIAMCONTRACT0000000000000000";
const SECRET_KEY: &str = "test-ciam-contract-secret-key";
const PASSWORD_HASH: &str = "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8";

/// What the test vendor saw.
#[derive(Default)]
struct Seen {
    /// Every accepted call's action, in order of arrival.
    actions: Vec<String>,
    /// UserNames created one by one with CreateUser.
    created: Vec<String>,
    /// Import jobs by id: the UserNames each carried.
    jobs: BTreeMap<String, Vec<String>>,
    problems: Vec<String>,
}

type Vendor = Arc<Mutex<Seen>>;

async fn answer(State(vendor): State<Vendor>, headers: HeaderMap, body: Bytes) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let action = header("x-tc-action");
    let expected = sdk_authorization(
        "ciam",
        SECRET_ID,
        SECRET_KEY,
        &header("content-type"),
        &header("host"),
        header("x-tc-timestamp").parse().unwrap_or(0),
        &body,
    );
    let mut seen = vendor.lock().unwrap();
    let mut problems = Vec::new();
    if header("authorization") != expected {
        problems.push(format!("{action}: signature differs from the SDK's"));
    }
    // CIAM CreateUser "Region Yes" (docs/vendors/ciam.md#endpoint); docs/vendors/ciam.md#endpoint:
    // version 2022-03-31
    if header("x-tc-region") != REGION {
        problems.push(format!("{action}: X-TC-Region {:?}", header("x-tc-region")));
    }
    if header("x-tc-version") != "2022-03-31" {
        problems.push(format!(
            "{action}: X-TC-Version {:?}",
            header("x-tc-version")
        ));
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    if request["UserStoreId"] != STORE {
        problems.push(format!("{action}: UserStoreId {}", request["UserStoreId"]));
    }
    if !problems.is_empty() {
        seen.problems.extend(problems);
        return json!({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "refused"}, "RequestId": "refused"}}).to_string();
    }
    seen.actions.push(action.clone());
    let request_id = format!("req-{}", seen.actions.len());
    match action.as_str() {
        // CIAM CreateUser output example (docs/vendors/ciam.md#examples):
        // {"Response":{"User":{"UserId":..,"UserName":..},"RequestId":..}}
        "CreateUser" => {
            let user_name = request["UserName"].as_str().unwrap_or_default().to_owned();
            seen.created.push(user_name.clone());
            json!({"Response": {"User": {"UserId": format!("ciam-{user_name}"), "UserName": user_name}, "RequestId": request_id}})
        }
        // CIAM CreateApiImportUserJob output example (docs/vendors/ciam-import.md#examples):
        // {"Response":{"Job":{"Id":..,"Status":"PENDING",..},"RequestId":..}}
        "CreateApiImportUserJob" => {
            let user_names = request["DataFlowUserCreateList"]
                .as_array()
                .map(|users| {
                    users
                        .iter()
                        .map(|user| user["UserName"].as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            let job_id = format!("job-{}", seen.jobs.len() + 1);
            seen.jobs.insert(job_id.clone(), user_names);
            json!({"Response": {"Job": {"Id": job_id, "Status": "PENDING", "Type": "IMPORT_USER"}, "RequestId": request_id}})
        }
        // docs/vendors/ciam-import.md#listjobs ListJobs: JobSet []Job; every job listed has
        // finished without failed users
        "ListJobs" => {
            let job_set: Vec<Value> = request["JobIds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|job_id| seen.jobs.contains_key(*job_id))
                .map(|job_id| json!({"Id": job_id, "Status": "COMPLETED", "Type": "IMPORT_USER", "FailedUsers": [], "ErrorDetails": []}))
                .collect();
            json!({"Response": {"JobSet": job_set, "Total": job_set.len(), "RequestId": request_id}})
        }
        other => {
            seen.problems.push(format!("unexpected action {other}"));
            json!({"Response": {"Error": {"Code": "InvalidAction", "Message": other}, "RequestId": request_id}})
        }
    }
    .to_string()
}

async fn start_vendor() -> (Vendor, String) {
    let vendor = Vendor::default();
    let app = Router::new()
        .route("/", post(answer))
        .with_state(vendor.clone());
    let (endpoint, _server) = serve_vendor(app).await;
    (vendor, endpoint)
}

/// The vendor's user store in its region; the vendor ignores the app id.
const CIAM: TestAccount = TestAccount {
    region: REGION,
    ..TestAccount::ciam(0, STORE, SECRET_ID, SECRET_KEY)
};
const IMPORT: TestAccount = CIAM.import();

fn user_with(n: usize, ciam: pb::CiamProfile) -> pb::User {
    pb::User {
        user_id: format!("c{n:05}"),
        ciam: Some(pb::CiamProfile {
            user_name: format!("name{n}"),
            email: format!("c{n}@example.com"),
            ..ciam
        }),
        ..pb::User::default()
    }
}

#[test]
fn the_sdk_signer_of_these_tests_reproduces_the_published_example() {
    crate::common::tencent_sdk::assert_reproduces_t3();
}

#[tokio::test]
async fn create_user_calls_signed_the_sdk_way_are_accepted() {
    let (vendor, endpoint) = start_vendor().await;
    let mut registrar = Registrar::start(&CIAM.target("ciam", &endpoint, "")).await;
    let batch = (0..20)
        .map(|n| {
            user_with(
                n,
                pb::CiamProfile {
                    phone_number: format!("+86-1320000{n:04}"),
                    password: format!("pw-{n}-Secret!"),
                    ..pb::CiamProfile::default()
                },
            )
        })
        .collect();

    let collected = batch_register(&mut registrar.client, request(&["ciam"], batch))
        .await
        .unwrap();

    {
        let seen = vendor.lock().unwrap();
        assert_eq!(seen.problems, Vec::<String>::new());
        assert_eq!(seen.created.len(), 20);
        assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 20);
        for result in &collected.results {
            assert_eq!(result.vendor_user_id, format!("ciam-name{}", result.index));
        }
    }
    registrar.stop().await;
}

#[tokio::test]
async fn import_jobs_signed_the_sdk_way_are_accepted_and_followed_to_their_end() {
    let (vendor, endpoint) = start_vendor().await;
    let mut registrar =
        Registrar::start(&IMPORT.target("import", &endpoint, "max_batch = 1000")).await;
    let batch = (0..1500)
        .map(|n| {
            user_with(
                n,
                pb::CiamProfile {
                    password_hash: PASSWORD_HASH.to_owned(),
                    password_hash_type: pb::PasswordHashType::Sha1.into(),
                    ..pb::CiamProfile::default()
                },
            )
        })
        .collect();

    let collected = batch_register(&mut registrar.client, request(&["import"], batch))
        .await
        .unwrap();

    {
        let seen = vendor.lock().unwrap();
        assert_eq!(seen.problems, Vec::<String>::new());
        let sizes: Vec<usize> = seen.jobs.values().map(Vec::len).collect();
        assert_eq!(sizes, vec![1000, 500]);
        assert!(seen.actions.iter().any(|action| action == "ListJobs"));
        let imported: HashSet<&String> = seen.jobs.values().flatten().collect();
        assert_eq!(imported.len(), 1500);
        assert_eq!(collected.results.len(), 1500);
        assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 1500);
    }
    registrar.stop().await;
}
