//! Registrar stays truthful while vendors misbehave: the built-in simulator
//! injects HTTP 503s, the vendor's internal error and throttle answers,
//! connections dropped after the work, and calls it never answers; every
//! user still gets exactly one result, every success is one the vendor
//! holds, and every audit row ends with a final outcome.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use crate::common::*;
use registrar::{
    api::{convert::outcome_from_proto, pb},
    audit::entity::{registration, vendor_call},
    domain::{Outcome, VendorKind},
    sim::faults::SimFaults,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

/// Users every vendor accepts: Volcengine wants numeric ids.
fn numeric_users(count: u64) -> Vec<pb::User> {
    (0..count)
        .map(|n| user((10_000_000 + n).to_string()))
        .collect()
}

/// The batch's registration rows, by (target, user id); panics on a second row for one pair.
async fn rows_by_target_and_user(
    registrar: &Registrar,
    batch_id: &str,
) -> BTreeMap<(String, String), registration::Model> {
    let rows = registration::Entity::find()
        .filter(registration::Column::BatchId.eq(batch_id))
        .all(&registrar.audit.connection())
        .await
        .unwrap();
    let mut keyed = BTreeMap::new();
    for row in rows {
        let key = (row.target.clone(), row.user_id.clone());
        if let Some(earlier) = keyed.insert(key, row) {
            panic!("two registration rows for one (target, user): {earlier:?}");
        }
    }
    keyed
}

/// The results of one target by index, each index once.
fn results_of<'a>(
    collected: &'a Collected,
    target: &str,
    users: &[pb::User],
) -> BTreeMap<u64, &'a pb::UserResult> {
    let mut by_index = BTreeMap::new();
    for result in collected.results.iter().filter(|r| r.target == target) {
        assert!(
            by_index.insert(result.index, result).is_none(),
            "{target}: two results for index {}",
            result.index
        );
        assert_eq!(
            result.user_id, users[result.index as usize].user_id,
            "{target}: the result of index {} names another user",
            result.index
        );
    }
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        (0..users.len() as u64).collect::<Vec<_>>(),
        "{target}: every input needs exactly one result"
    );
    by_index
}

/// Faults spread over a fifth of all calls, at each vendor: every user of
/// every target ends with one truthful result and one final audit row.
#[tokio::test]
async fn a_fifth_of_calls_faulted_at_three_vendors_every_user_still_gets_one_truthful_result() {
    let faults = SimFaults {
        latency: Duration::from_millis(5),
        no_answer_for: Duration::from_secs(2),
        ..SimFaults::spread(0.2)
    };
    let simulator = start_simulator_with_faults(
        vec![lcic_account(20), zim_account(20), volc_account(50)],
        faults,
    )
    .await;
    let endpoint = simulator.endpoint();
    let retries = "timeout = \"500ms\"\nmax_attempts = 10";
    // LCIC calls of 100 (not 1000), so that its 300 users meet faults in several calls
    let targets = [
        lcic_target("lcic", &endpoint, &format!("{retries}\nmax_batch = 100")),
        zim_target("zim", &endpoint, retries),
        volc_target("rtc", &endpoint, retries),
    ]
    .concat();
    let mut registrar = Registrar::start(&targets).await;
    let users = numeric_users(300);

    let collected = batch_register(
        &mut registrar.client,
        request(&["lcic", "zim", "rtc"], users.clone()),
    )
    .await
    .unwrap();

    let batch_id = collected.batch_id();
    let rows = rows_by_target_and_user(&registrar, &batch_id).await;
    assert_eq!(rows.len(), 3 * users.len(), "one row per (user, target)");
    let summary = collected.summary.as_ref().unwrap();
    for (target, vendor, app_id) in [
        ("lcic", VendorKind::TencentLcic, LCIC_APP_ID),
        ("zim", VendorKind::ZegoZim, ZIM_APP_ID),
        ("rtc", VendorKind::VolcRtc, VOLC_APP_ID),
    ] {
        let results = results_of(&collected, target, &users);
        let held: BTreeSet<String> = simulator
            .registered(vendor, app_id)
            .into_iter()
            .map(|user| user.origin_id)
            .collect();
        let mut outcomes: HashMap<pb::Outcome, usize> = HashMap::new();
        for result in results.values() {
            *outcomes.entry(result.outcome()).or_default() += 1;
            match result.outcome() {
                pb::Outcome::Registered | pb::Outcome::AlreadyExists => assert!(
                    held.contains(&result.user_id),
                    "{target}: {result:?} but the vendor does not hold the user"
                ),
                pb::Outcome::Failed => {
                    assert!(!result.error_code.is_empty(), "{target}: {result:?}");
                    assert!(result.attempts >= 1, "{target}: {result:?}");
                }
                other => panic!("{target}: unexpected {other:?}: {result:?}"),
            }
            // the audit row holds the same final outcome as the result
            let row = &rows[&(target.to_owned(), result.user_id.clone())];
            assert_eq!(row.idx, result.index as i64);
            assert_eq!(
                Some(row.outcome.as_str()),
                outcome_from_proto(result.outcome()).map(Outcome::as_str),
                "{target}: {row:?} against {result:?}"
            );
            assert_eq!(row.attempts, result.attempts as i32, "{row:?}");
        }
        // LCIC and Volcengine overwrite a repeated user, so a resent call never meets "already exists"
        if vendor != VendorKind::ZegoZim {
            assert_eq!(outcomes.get(&pb::Outcome::AlreadyExists), None, "{target}");
        }
        let succeeded = outcomes.get(&pb::Outcome::Registered).unwrap_or(&0)
            + outcomes.get(&pb::Outcome::AlreadyExists).unwrap_or(&0);
        assert!(
            succeeded * 100 >= users.len() * 99,
            "{target}: only {succeeded} of {} registered: {outcomes:?}",
            users.len()
        );
        let counts = summary
            .targets
            .iter()
            .find(|counts| counts.target == target)
            .unwrap();
        assert_eq!(counts.total, users.len() as u64);
        assert_eq!(counts.pending, 0);
    }
    let pending: Vec<_> = rows
        .values()
        .filter(|row| row.outcome == Outcome::Pending.as_str())
        .collect();
    assert!(pending.is_empty(), "rows left pending: {pending:?}");
    // every faulted call was retried: each retry is one more vendor call row
    // (attempt 2 and up), and here every call is far below the quota, so the
    // simulator refused nothing but the injected faults
    let calls = simulator.calls();
    let vendor_calls = vendor_call::Entity::find()
        .all(&registrar.audit.connection())
        .await
        .unwrap();
    for (target, vendor) in [
        ("lcic", VendorKind::TencentLcic),
        ("zim", VendorKind::ZegoZim),
        ("rtc", VendorKind::VolcRtc),
    ] {
        let faulted = calls
            .iter()
            .filter(|call| call.vendor == vendor && call.action == "fault")
            .count();
        let retries = vendor_calls
            .iter()
            .filter(|call| call.target == target && call.attempt > 1)
            .count();
        let failed = collected
            .results
            .iter()
            .any(|result| result.target == target && result.outcome() == pb::Outcome::Failed);
        if failed {
            // a call whose last attempt was faulted has no retry
            assert!(
                retries < faulted,
                "{target}: {retries} retries of {faulted} faults"
            );
        } else {
            assert_eq!(retries, faulted, "{target}: one retry per faulted call");
        }
    }
    registrar.stop().await;
}

/// A vendor that never answers: every user fails as a timeout after its
/// two attempts, within a second or so, and no user is lost.
#[tokio::test]
async fn a_vendor_that_never_answers_fails_every_user_as_a_timeout_after_its_attempts() {
    let no_answer_for = Duration::from_secs(20);
    let simulator = start_simulator_with_faults(
        vec![lcic_account(20)],
        SimFaults {
            no_answer: 1.0,
            no_answer_for,
            ..SimFaults::default()
        },
    )
    .await;
    let mut registrar = Registrar::start(&lcic_target(
        "lcic",
        &simulator.endpoint(),
        "timeout = \"300ms\"\nmax_attempts = 2",
    ))
    .await;
    let users = users("silent-", 50);

    let started = Instant::now();
    let collected = batch_register(&mut registrar.client, request(&["lcic"], users.clone()))
        .await
        .unwrap();
    let took = started.elapsed();

    // two timeouts of 300 ms and one backoff of at most 150 ms
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} with a vendor silent for {no_answer_for:?}"
    );
    let results = results_of(&collected, "lcic", &users);
    for result in results.values() {
        assert_eq!(result.outcome(), pb::Outcome::Failed, "{result:?}");
        assert_eq!(result.error_code, "registrar.Timeout", "{result:?}");
        assert_eq!(result.attempts, 2, "{result:?}");
    }
    let counts = &collected.summary.as_ref().unwrap().targets[0];
    assert_eq!((counts.total, counts.failed), (50, 50));

    // the vendor saw exactly two calls, answered neither, and holds nobody
    let calls = simulator.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|call| call.error_code.as_deref() == Some("sim.NoAnswer"))
    );
    assert!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .is_empty()
    );

    // the audit store: every user failed as a timeout after two attempts; two calls without an answer
    let rows = rows_by_target_and_user(&registrar, &collected.batch_id()).await;
    assert_eq!(rows.len(), users.len());
    for row in rows.values() {
        assert_eq!(row.outcome, Outcome::Failed.as_str(), "{row:?}");
        assert_eq!(row.error_code.as_deref(), Some("registrar.Timeout"));
        assert_eq!(row.attempts, 2);
    }
    let vendor_calls = vendor_call::Entity::find()
        .all(&registrar.audit.connection())
        .await
        .unwrap();
    let attempts: Vec<i32> = vendor_calls.iter().map(|call| call.attempt).collect();
    assert_eq!(attempts, vec![1, 2]);
    assert!(
        vendor_calls
            .iter()
            .all(|call| call.http_status.is_none() && call.finished_at.is_some()),
        "{vendor_calls:?}"
    );
    registrar.stop().await;
}

#[tokio::test]
async fn a_retry_after_on_a_503_is_honoured_and_no_retry_starts_after_the_callers_deadline() {
    // RFC 9110 section 10.2.3 Retry-After: a 503 asks the client to wait 2 s
    let simulator = start_simulator_with_faults(
        vec![LCIC.sim(1000)],
        SimFaults {
            http_5xx: 1.0,
            retry_after: Some(Duration::from_secs(2)),
            ..SimFaults::default()
        },
    )
    .await;
    let registrar =
        Registrar::start(&LCIC.target("lcic", &simulator.endpoint(), "qps = 1000")).await;
    let mut client = registrar.client.clone();
    let answered = tokio::spawn(async move {
        batch_register(&mut client, request(&["lcic"], users("ra-", 1))).await
    });
    wait_for_calls(&simulator, 1).await;
    simulator.set_faults(SimFaults::default());
    let collected = answered.await.unwrap().unwrap();
    assert_eq!(collected.results[0].outcome(), pb::Outcome::Registered);
    assert_eq!(collected.results[0].attempts, 2);
    let calls = simulator.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let waited = calls[1].received_at_ms - calls[0].received_at_ms;
    assert!(
        (2000..4000).contains(&waited),
        "the retry came {waited} ms after the 503 that asked for 2 s"
    );

    // a caller whose deadline comes before the wait ends gets no retry
    simulator.set_faults(SimFaults {
        http_5xx: 1.0,
        retry_after: Some(Duration::from_secs(5)),
        ..SimFaults::default()
    });
    let calls_before = simulator.calls().len();
    let started = Instant::now();
    let mut client = registrar.client.clone();
    let mut timed = tonic::Request::new(request(&["lcic"], users("dl-", 1)));
    timed.set_timeout(Duration::from_millis(1500));
    let collected = batch_register(&mut client, timed).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the user was answered without waiting out the 5 s: {:?}",
        started.elapsed()
    );
    let result = &collected.results[0];
    assert_eq!(result.outcome(), pb::Outcome::Failed, "{result:?}");
    assert_eq!(result.attempts, 1);
    assert_eq!(result.error_code, "HTTP503");
    assert_eq!(
        simulator.calls().len() - calls_before,
        1,
        "one attempt only"
    );
}
