//! Tencent CIAM import jobs end to end: registrar packs users into
//! `CreateApiImportUserJob` jobs, runs at most two at once per user store,
//! waits (rather than fails) while the vendor runs its maximum, polls each
//! job with `ListJobs` to its end and maps the job's failed users back.
//! Assertions are on the jobs the simulator ran and the audit store's rows.

use std::collections::{BTreeMap, HashSet};

use crate::common::*;
use registrar::{
    api::pb,
    audit::entity::vendor_call,
    domain::VendorKind,
    sim::{SimAccount, SimJobRecord},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

const APP_ID: u64 = 8_001;
const STORE: &str = "import-store-0001";
const SECRET_ID: &str = "AKIDtestCIAMIMPORT000000000000000000";
const SECRET_KEY: &str = "test-ciam-import-secret-key";
const PASSWORD_HASH: &str = "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8";

const IMPORT: TestAccount = TestAccount::ciam(APP_ID, STORE, SECRET_ID, SECRET_KEY).import();

fn import_account() -> SimAccount {
    IMPORT.sim(20)
}

fn import_target(name: &str, endpoint: &str, max_batch: usize) -> String {
    IMPORT.target(name, endpoint, &format!("max_batch = {max_batch}"))
}

/// A user to import: identified by its UserName, carrying a SHA1 password hash.
fn import_user(prefix: &str, n: usize) -> pb::User {
    pb::User {
        user_id: format!("{prefix}{n:05}"),
        ciam: Some(pb::CiamProfile {
            user_name: format!("{prefix}name{n}"),
            email: format!("{prefix}{n}@example.com"),
            password_hash: PASSWORD_HASH.to_owned(),
            password_hash_type: pb::PasswordHashType::Sha1.into(),
            ..pb::CiamProfile::default()
        }),
        ..pb::User::default()
    }
}

#[tokio::test]
async fn twenty_five_hundred_users_take_three_jobs_never_more_than_two_running() {
    let simulator = start_simulator(vec![import_account()]).await;
    let mut registrar =
        Registrar::start(&import_target("import", &simulator.endpoint(), 1000)).await;
    let batch: Vec<pb::User> = (0..2500).map(|n| import_user("i", n)).collect();

    let collected = batch_register(&mut registrar.client, request(&["import"], batch))
        .await
        .unwrap();

    // three jobs of 1000, 1000 and 500 users, at most two running at once
    let jobs = simulator.jobs(VendorKind::TencentCiamImport, APP_ID);
    let mut sizes: Vec<usize> = jobs.iter().map(|job| job.users.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![500, 1000, 1000]);
    assert!(SimJobRecord::max_running(&jobs) <= 2, "{jobs:?}");

    // one terminal outcome per user, all registered, each in the vendor's store
    assert_eq!(collected.results.len(), 2500);
    let indexes: HashSet<u64> = collected
        .results
        .iter()
        .map(|result| result.index)
        .collect();
    assert_eq!(indexes.len(), 2500);
    assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 2500);
    let stored: HashSet<String> = simulator
        .registered(VendorKind::TencentCiamImport, APP_ID)
        .into_iter()
        .map(|user| user.origin_id)
        .collect();
    for result in &collected.results {
        assert!(
            stored.contains(&format!("iname{}", result.index)),
            "user {} not in the store",
            result.index
        );
    }

    // the job ids are in the audit rows: on the submissions and on every poll
    let calls = vendor_call::Entity::find()
        .all(&registrar.audit.connection())
        .await
        .unwrap();
    let submissions: Vec<&vendor_call::Model> = calls
        .iter()
        .filter(|call| call.action == "CreateApiImportUserJob")
        .collect();
    assert_eq!(submissions.len(), 3);
    let job_ids: HashSet<&str> = jobs.iter().map(|job| job.id.as_str()).collect();
    for submission in &submissions {
        assert!(job_ids.contains(submission.vendor_job_id.as_deref().unwrap_or_default()));
    }
    let polls: Vec<&vendor_call::Model> = calls
        .iter()
        .filter(|call| call.action == "ListJobs")
        .collect();
    assert!(polls.len() >= 3);
    assert!(polls.iter().all(|poll| {
        poll.vendor_job_id
            .as_deref()
            .is_some_and(|id| job_ids.contains(id))
    }));
    // and the password hash in none of them
    let text = format!("{calls:?}");
    assert!(!text.contains(PASSWORD_HASH));
    registrar.stop().await;
}

#[tokio::test]
async fn users_that_already_exist_come_back_from_the_job_as_already_exists() {
    let simulator = start_simulator(vec![import_account()]).await;
    let mut registrar =
        Registrar::start(&import_target("import", &simulator.endpoint(), 1000)).await;
    let first: Vec<pb::User> = (0..10).map(|n| import_user("e", n)).collect();
    batch_register(&mut registrar.client, request(&["import"], first))
        .await
        .unwrap();

    // docs/vendors/ciam-import.md#matching-failed-users: a COMPLETED job names its FailedUsers;
    // everyone else is registered
    let second: Vec<pb::User> = (5..15).map(|n| import_user("e", n)).collect();
    let collected = batch_register(&mut registrar.client, request(&["import"], second))
        .await
        .unwrap();

    let by_user: BTreeMap<&str, &pb::UserResult> = collected
        .results
        .iter()
        .map(|result| (result.user_id.as_str(), result))
        .collect();
    for n in 5..10 {
        let result = by_user[format!("e{n:05}").as_str()];
        assert_eq!(result.outcome(), pb::Outcome::AlreadyExists, "{result:?}");
    }
    for n in 10..15 {
        assert_eq!(
            by_user[format!("e{n:05}").as_str()].outcome(),
            pb::Outcome::Registered
        );
    }
    assert_eq!(
        simulator
            .registered(VendorKind::TencentCiamImport, APP_ID)
            .len(),
        15
    );
    registrar.stop().await;
}

#[tokio::test]
async fn a_busy_vendor_makes_registrar_wait_for_a_running_job_not_fail() {
    // two registrars share one user store: together they want four jobs at once
    let simulator = start_simulator(vec![import_account()]).await;
    let mut first = Registrar::start(&import_target("import", &simulator.endpoint(), 500)).await;
    let mut second = Registrar::start(&import_target("import", &simulator.endpoint(), 500)).await;
    let (mut client_a, mut client_b) = (first.client.clone(), second.client.clone());
    let a = tokio::spawn(async move {
        batch_register(
            &mut client_a,
            request(
                &["import"],
                (0..1500).map(|n| import_user("a", n)).collect(),
            ),
        )
        .await
        .unwrap()
    });
    let b = tokio::spawn(async move {
        batch_register(
            &mut client_b,
            request(
                &["import"],
                (0..1500).map(|n| import_user("b", n)).collect(),
            ),
        )
        .await
        .unwrap()
    });
    let (a, b) = (a.await.unwrap(), b.await.unwrap());

    assert_eq!(a.with_outcome(pb::Outcome::Registered).len(), 1500);
    assert_eq!(b.with_outcome(pb::Outcome::Registered).len(), 1500);
    let jobs = simulator.jobs(VendorKind::TencentCiamImport, APP_ID);
    assert_eq!(jobs.len(), 6);
    assert!(SimJobRecord::max_running(&jobs) <= 2);
    // docs/vendors/ciam-import.md#concurrent-job-limit: FailedOperation.DataFlowTooManyRequests was
    // answered and waited out
    let busy = simulator
        .calls()
        .iter()
        .filter(|call| {
            call.error_code.as_deref() == Some("FailedOperation.DataFlowTooManyRequests")
        })
        .count();
    assert!(
        busy > 0,
        "the vendor was never busy: the test did not exercise waiting"
    );
    let busy_rows = vendor_call::Entity::find()
        .filter(vendor_call::Column::VendorErrorCode.eq("FailedOperation.DataFlowTooManyRequests"))
        .all(&first.audit.connection())
        .await
        .unwrap()
        .len()
        + vendor_call::Entity::find()
            .filter(
                vendor_call::Column::VendorErrorCode.eq("FailedOperation.DataFlowTooManyRequests"),
            )
            .all(&second.audit.connection())
            .await
            .unwrap()
            .len();
    assert_eq!(busy_rows, busy, "every busy answer has its audit row");
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn users_breaking_import_rules_are_rejected_by_field_and_never_reach_a_job() {
    let simulator = start_simulator(vec![import_account()]).await;
    let mut registrar =
        Registrar::start(&import_target("import", &simulator.endpoint(), 1000)).await;
    let mut no_profile = import_user("r", 1);
    no_profile.ciam = None;
    // docs/vendors/ciam-import.md#identifiers ImportUser: at least one of UserName, PhoneNumber,
    // Email is required
    let mut no_identifier = import_user("r", 2);
    let profile = no_identifier.ciam.as_mut().unwrap();
    profile.user_name.clear();
    profile.email.clear();
    // docs/vendors/ciam-import.md#password-hash-and-salt: an import carries a password hash with
    // its type, never plaintext
    let mut plaintext = import_user("r", 3);
    let profile = plaintext.ciam.as_mut().unwrap();
    profile.password_hash.clear();
    profile.password_hash_type = pb::PasswordHashType::Unspecified.into();
    profile.password = "plain-Secret!Horse".to_owned();
    let mut untyped_hash = import_user("r", 4);
    untyped_hash.ciam.as_mut().unwrap().password_hash_type =
        pb::PasswordHashType::Unspecified.into();
    // docs/vendors/ciam-import.md#password-hash-and-salt SaltLocationRule: a salt needs its location
    let mut unplaced_salt = import_user("r", 5);
    unplaced_salt.ciam.as_mut().unwrap().salt_value = "pepper".to_owned();
    let duplicate = import_user("r", 0);
    let batch = vec![
        import_user("r", 0),
        no_profile,
        no_identifier,
        plaintext,
        untyped_hash,
        unplaced_salt,
        duplicate,
        import_user("r", 7),
    ];

    let collected = batch_register(&mut registrar.client, request(&["import"], batch))
        .await
        .unwrap();

    let results = collected.by_index();
    assert_eq!(results.len(), 8);
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
        "ciam.userName or ciam.phoneNumber or ciam.email is required: an imported user needs at least one identifier",
    );
    rejected(
        3,
        "validation.unsupported",
        "ciam.password imports carry password hashes, not plaintext; set ciam.passwordHash and ciam.passwordHashType",
    );
    rejected(
        4,
        "validation.required",
        "ciam.passwordHashType is required with ciam.passwordHash (SHA1 or BCRYPT)",
    );
    rejected(
        5,
        "validation.required",
        "ciam.saltLocation is required with ciam.saltValue (HEAD, TAIL or OTHER)",
    );
    rejected(
        6,
        "validation.duplicate",
        "userId duplicates the user at index 0 of this batch",
    );
    for index in [0, 7] {
        assert_eq!(results[&index].outcome(), pb::Outcome::Registered);
    }

    // the one job the simulator ran carried the two valid users only
    let jobs = simulator.jobs(VendorKind::TencentCiamImport, APP_ID);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let mut carried = jobs[0].users.clone();
    carried.sort();
    assert_eq!(carried, vec!["rname0".to_owned(), "rname7".to_owned()]);
    // and the plaintext password of the rejected user reached no vendor and no audit row
    let calls = vendor_call::Entity::find()
        .all(&registrar.audit.connection())
        .await
        .unwrap();
    assert!(!format!("{calls:?}").contains("plain-Secret!Horse"));
    assert!(!format!("{:?}", simulator.calls()).contains("plain-Secret!Horse"));
    registrar.stop().await;
}
