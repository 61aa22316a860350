//! One request naming targets of four vendors: every user goes to each, with
//! one result per (user, target) and counts per target; and the same request
//! as a dry run, which validates exactly as the real path does and calls no
//! vendor.

use std::collections::{BTreeMap, HashSet};

use crate::common::*;
use registrar::{api::pb, domain::VendorKind, sim::SimAccount};

const ZIM_APP_ID: u64 = 5_001;
const VOLC_APP_ID: u64 = 6_001;
const CIAM_APP_ID: u64 = 7_001;
const CIAM_STORE: &str = "fan-out-store";

const CHAT: TestAccount = TestAccount {
    app_id: ZIM_APP_ID,
    secret_key: "zim-server-secret",
    ..ZIM
};
const RTC: TestAccount = TestAccount {
    app_id: VOLC_APP_ID,
    secret_id: "AKLTfanout",
    secret_key: "volc-secret",
    ..VOLC
};
const IDENTITY: TestAccount =
    TestAccount::ciam(CIAM_APP_ID, CIAM_STORE, "AKIDfanoutCIAM", "ciam-secret");

fn accounts() -> Vec<SimAccount> {
    vec![
        lcic_account(20),
        CHAT.sim(50),
        RTC.sim(50),
        IDENTITY.sim(50),
    ]
}

fn targets(endpoint: &str) -> String {
    [
        LCIC.target("classroom", endpoint, ""),
        CHAT.target("chat", endpoint, ""),
        RTC.target("rtc", endpoint, ""),
        IDENTITY.target("identity", endpoint, "qps = 50"),
    ]
    .join("\n")
}

/// Numeric ids (Volcengine needs them) and a CIAM profile (CIAM needs one).
fn full_user(n: u64) -> pb::User {
    pb::User {
        user_id: format!("{}", 10_000 + n),
        display_name: format!("user {n}"),
        ciam: Some(pb::CiamProfile {
            user_name: format!("fan{n}"),
            phone_number: format!("+86-1390000{n:04}"),
            email: format!("fan{n}@example.com"),
            password: format!("pw-{n}-correct-horse"),
            ..pb::CiamProfile::default()
        }),
        ..pb::User::default()
    }
}

const TARGETS: [&str; 4] = ["classroom", "chat", "rtc", "identity"];

/// 30 good users, one whose id is not a number (Volcengine refuses it),
/// and one without a CIAM profile (CIAM refuses it).
fn batch() -> Vec<pb::User> {
    let mut users: Vec<pb::User> = (0..30).map(full_user).collect();
    let mut not_numeric = full_user(30);
    not_numeric.user_id = "not-a-number".to_owned();
    users.push(not_numeric);
    let mut no_ciam = full_user(31);
    no_ciam.ciam = None;
    users.push(no_ciam);
    users
}

fn outcomes(collected: &Collected) -> BTreeMap<(u64, String), pb::Outcome> {
    collected
        .results
        .iter()
        .map(|result| ((result.index, result.target.clone()), result.outcome()))
        .collect()
}

#[tokio::test]
async fn every_user_goes_to_every_target_with_one_result_each() {
    let simulator = start_simulator(accounts()).await;
    let mut registrar = Registrar::start(&targets(&simulator.endpoint())).await;

    let collected = batch_register(&mut registrar.client, request(&TARGETS, batch()))
        .await
        .unwrap();

    // one result per (user, target)
    assert_eq!(collected.results.len(), 32 * 4);
    let outcomes = outcomes(&collected);
    assert_eq!(outcomes.len(), 32 * 4);
    for index in 0..30 {
        for target in TARGETS {
            assert_eq!(
                outcomes[&(index, target.to_owned())],
                pb::Outcome::Registered,
                "{index} at {target}"
            );
        }
    }
    assert_eq!(outcomes[&(30, "rtc".to_owned())], pb::Outcome::Rejected);
    assert_eq!(outcomes[&(30, "chat".to_owned())], pb::Outcome::Registered);
    assert_eq!(
        outcomes[&(31, "identity".to_owned())],
        pb::Outcome::Rejected
    );
    assert_eq!(
        outcomes[&(31, "classroom".to_owned())],
        pb::Outcome::Registered
    );

    // the summary counts per target
    let counts: BTreeMap<&str, &pb::TargetCounts> = collected
        .summary
        .as_ref()
        .unwrap()
        .targets
        .iter()
        .map(|counts| (counts.target.as_str(), counts))
        .collect();
    assert_eq!(counts["classroom"].registered, 32);
    assert_eq!(counts["chat"].registered, 32);
    assert_eq!((counts["rtc"].registered, counts["rtc"].rejected), (31, 1));
    assert_eq!(
        (counts["identity"].registered, counts["identity"].rejected),
        (31, 1)
    );

    // and each vendor holds exactly the users it accepted
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        32
    );
    assert_eq!(
        simulator.registered(VendorKind::ZegoZim, ZIM_APP_ID).len(),
        32
    );
    let rtc: HashSet<String> = simulator
        .registered(VendorKind::VolcRtc, VOLC_APP_ID)
        .into_iter()
        .map(|user| user.origin_id)
        .collect();
    assert_eq!(rtc.len(), 31);
    assert!(!rtc.contains("not-a-number"));
    assert_eq!(
        simulator
            .registered(VendorKind::TencentCiam, CIAM_APP_ID)
            .len(),
        31
    );
    registrar.stop().await;
}

#[tokio::test]
async fn a_dry_run_validates_like_the_real_path_and_calls_no_vendor() {
    let simulator = start_simulator(accounts()).await;
    let mut registrar = Registrar::start(&targets(&simulator.endpoint())).await;

    let mut dry = request(&TARGETS, batch());
    dry.dry_run = true;
    let dry = batch_register(&mut registrar.client, dry).await.unwrap();

    assert!(simulator.calls().is_empty(), "a dry run called a vendor");
    let summary = dry.summary.as_ref().unwrap();
    assert!(summary.dry_run);
    assert!(dry.results.iter().all(|result| result.attempts == 0));

    // exactly the real run's verdicts: validated where it registered, rejected where it rejected
    let real = batch_register(&mut registrar.client, request(&TARGETS, batch()))
        .await
        .unwrap();
    let (dry_outcomes, real_outcomes) = (outcomes(&dry), outcomes(&real));
    assert_eq!(dry_outcomes.len(), real_outcomes.len());
    for (key, real_outcome) in &real_outcomes {
        let expected = match real_outcome {
            pb::Outcome::Rejected => pb::Outcome::Rejected,
            _ => pb::Outcome::Validated,
        };
        assert_eq!(dry_outcomes[key], expected, "{key:?}");
    }
    let rejections = |collected: &Collected| -> BTreeMap<(u64, String), String> {
        collected
            .with_outcome(pb::Outcome::Rejected)
            .into_iter()
            .map(|result| {
                (
                    (result.index, result.target.clone()),
                    result.error_message.clone(),
                )
            })
            .collect()
    };
    assert_eq!(rejections(&dry), rejections(&real));

    // the audit store keeps the dry run, marked as one
    let batch = registrar.get_batch(&summary.batch_id).await;
    assert!(batch.dry_run);
    assert_eq!(batch.state(), pb::BatchState::Completed);
    let validated: u64 = batch.counts.iter().map(|counts| counts.validated).sum();
    assert_eq!(validated, 32 * 4 - 2);
    registrar.stop().await;
}
