//! "Sent, answer lost" through a crash and a replay, for every vendor kind:
//! the simulator does the work of a call and then drops its connection
//! (after holding it, so the server is killed while it waits). After the
//! restart the rows say `ANSWER_LOST`; the replay sends them again where the
//! vendor makes a repeat safe and reports what the vendor answered
//! (docs/operations.md#resuming-a-batch has the table), and where it is not
//! safe ends them FAILED with `registrar.OutcomeUnknown` and sends nothing.

use std::time::Duration;

use crate::common::{process::ServeProcess, *};
use registrar::{
    api::pb,
    domain::VendorKind,
    sim::{SimAccount, Simulator, faults::SimFaults},
};

const STEP: Duration = Duration::from_secs(60);
const USERS: usize = 3;

const CIAM: TestAccount = TestAccount::ciam(
    7_100_001,
    "store-answer-lost",
    "AKIDtestCIAManswerlost00000000000000",
    "test-ciam-answer-lost-secret",
);
const IMPORT: TestAccount = TestAccount::ciam(
    7_100_002,
    "store-answer-lost-import",
    "AKIDtestCIAManswerlost00000000000000",
    "test-ciam-answer-lost-secret",
)
.import();

fn user_of(vendor: VendorKind, n: usize) -> pb::User {
    let ciam = match vendor {
        VendorKind::TencentCiam => Some(pb::CiamProfile {
            user_name: format!("lostname{n}"),
            phone_number: format!("+86-1320000{n:04}"),
            email: format!("lost{n}@example.com"),
            password: format!("Secret-{n}-password"),
            ..pb::CiamProfile::default()
        }),
        VendorKind::TencentCiamImport => Some(pb::CiamProfile {
            user_name: format!("lostname{n}"),
            email: format!("lost{n}@example.com"),
            // SHA1 of "password"
            password_hash: "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8".to_owned(),
            password_hash_type: pb::PasswordHashType::Sha1.into(),
            ..pb::CiamProfile::default()
        }),
        _ => None,
    };
    pb::User {
        // numeric: Volcengine targets here take integer user ids
        user_id: format!("{}", 7_000_000 + n),
        display_name: format!("Lost answer {n}"),
        ciam,
        ..pb::User::default()
    }
}

/// What a replay reports for a user whose answer was lost, per the
/// vendor's documented repeat behaviour.
fn expected_after_repeat(vendor: VendorKind) -> (pb::Outcome, &'static str) {
    match vendor {
        // docs/vendors/lcic.md#repeats: "the existing one will be overwritten"
        VendorKind::TencentLcic => (pb::Outcome::Registered, ""),
        // docs/vendors/volc-rtc.md#repeats: registering a UserId again re-registers it
        VendorKind::VolcRtc => (pb::Outcome::Registered, ""),
        // docs/vendors/zim.md#repeats: a repeat meets 660700002 "user already exists"
        VendorKind::ZegoZim => (pb::Outcome::AlreadyExists, "660700002"),
        // docs/vendors/ciam.md#repeats: a repeat meets FailedOperation.UserNameAlreadyExists
        VendorKind::TencentCiam => (
            pb::Outcome::AlreadyExists,
            "FailedOperation.UserNameAlreadyExists",
        ),
        // docs/vendors/ciam-import.md#repeats: a repeated CreateApiImportUserJob creates a second job
        VendorKind::TencentCiamImport => (pb::Outcome::Failed, "registrar.OutcomeUnknown"),
    }
}

async fn answer_lost_through_a_crash(account: TestAccount, sim_account: SimAccount) {
    let vendor = account.vendor;
    let simulator: Simulator = start_simulator_with_faults(
        vec![sim_account],
        SimFaults {
            // the vendor does the work, holds the answer 30 s, then drops the connection
            drop_after_work: 1.0,
            latency: Duration::from_secs(30),
            ..SimFaults::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[audit]\ndatabase_url = \"sqlite://{}?mode=rwc\"\n\n{}",
        dir.path().join("audit.db").display(),
        account.target("t", &simulator.endpoint(), "timeout = \"60s\"")
    );
    let server = "instance_name = \"answer-lost\"\nbatch_lease = \"3s\"";
    let users: Vec<pb::User> = (0..USERS).map(|n| user_of(vendor, n)).collect();
    let mut first = ServeProcess::start(dir.path(), server, &config).await;
    let mut client = first.client.clone();
    let request = pb::BatchRegisterRequest {
        idempotency_key: "lost".to_owned(),
        ..request(&["t"], users.clone())
    };
    let call = tokio::spawn({
        let request = request.clone();
        async move { batch_register(&mut client, request).await }
    });
    let deadline = tokio::time::Instant::now() + STEP;
    while simulator.calls().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{vendor}: no call reached the vendor"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // the call did its work at the vendor; the server dies waiting for the answer
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.kill();
    assert!(call.await.unwrap().is_err());
    simulator.set_faults(SimFaults::default());
    let calls_before = simulator.calls().len();
    let jobs_before = simulator.jobs(vendor, account.app_id).len();

    let mut second = ServeProcess::start(dir.path(), server, &config).await;
    let batch_id = batch_id_of_user(&second.client, &users[0].user_id).await;
    let before = outcomes_by_user(&second.client, &batch_id).await;
    assert!(
        before
            .values()
            .any(|outcome| *outcome == pb::Outcome::AnswerLost),
        "{vendor}: a sent user's row says its answer was lost: {before:?}"
    );
    assert!(
        before
            .values()
            .all(|outcome| matches!(outcome, pb::Outcome::AnswerLost | pb::Outcome::NotSent)),
        "{vendor}: {before:?}"
    );

    let replay = tokio::time::timeout(STEP, batch_register(&mut second.client, request))
        .await
        .expect("the replay ends in time")
        .unwrap();
    assert_eq!(replay.results.len(), USERS, "{vendor}");
    let (lost_outcome, lost_code) = expected_after_repeat(vendor);
    for result in &replay.results {
        match before[&result.user_id] {
            pb::Outcome::AnswerLost => {
                assert_eq!(result.outcome(), lost_outcome, "{vendor}: {result:?}");
                assert_eq!(result.error_code, lost_code, "{vendor}: {result:?}");
            }
            _ => assert_eq!(
                result.outcome(),
                pb::Outcome::Registered,
                "{vendor}: {result:?}"
            ),
        }
        assert!(
            !result.replayed,
            "{vendor}: resolved now, not answered from the store"
        );
    }
    let resent: Vec<String> = simulator.calls()[calls_before..]
        .iter()
        .flat_map(|call| call.user_ids.clone())
        .filter(|id| {
            users
                .iter()
                .position(|user| user_ids_match(vendor, user, id))
                .is_some_and(|n| before[&users[n].user_id] == pb::Outcome::AnswerLost)
        })
        .collect();
    if vendor == VendorKind::TencentCiamImport {
        assert!(
            resent.is_empty(),
            "an unsafe repeat is never sent: {resent:?}"
        );
        let lost = before
            .values()
            .filter(|outcome| **outcome == pb::Outcome::AnswerLost)
            .count();
        let new_jobs = simulator.jobs(vendor, account.app_id).len() - jobs_before;
        assert_eq!(
            new_jobs,
            usize::from(lost < USERS),
            "only users never sent make a new job"
        );
    } else {
        assert!(!resent.is_empty(), "{vendor}: a safe repeat is sent again");
    }
    let batch = get_batch(&second.client, &batch_id).await;
    assert_eq!(batch.state(), pb::BatchState::Completed, "{vendor}");
}

/// Whether a simulator record's user id names `user` (CIAM records its UserName).
fn user_ids_match(vendor: VendorKind, user: &pb::User, recorded: &str) -> bool {
    match vendor {
        VendorKind::TencentCiam | VendorKind::TencentCiamImport => user
            .ciam
            .as_ref()
            .is_some_and(|ciam| ciam.user_name == recorded || user.user_id == recorded),
        _ => user.user_id == recorded,
    }
}

#[tokio::test]
async fn lcic_answer_lost_through_a_crash_is_sent_again_and_registered() {
    answer_lost_through_a_crash(LCIC, LCIC.sim(20)).await;
}

#[tokio::test]
async fn zim_answer_lost_through_a_crash_is_sent_again_and_already_exists() {
    answer_lost_through_a_crash(ZIM, ZIM.sim(20)).await;
}

#[tokio::test]
async fn volc_answer_lost_through_a_crash_is_sent_again_and_registered() {
    answer_lost_through_a_crash(VOLC, VOLC.sim(20)).await;
}

#[tokio::test]
async fn ciam_answer_lost_through_a_crash_is_sent_again_and_already_exists() {
    answer_lost_through_a_crash(CIAM, CIAM.sim(20)).await;
}

#[tokio::test]
async fn ciam_import_answer_lost_through_a_crash_is_outcome_unknown_and_not_resubmitted() {
    answer_lost_through_a_crash(IMPORT, IMPORT.sim(20)).await;
}
