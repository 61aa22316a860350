//! Users from concurrent callers to one target share vendor calls: fewer,
//! fuller calls than requests, and each result goes back to its own caller.

use std::collections::HashSet;

use crate::common::*;
use registrar::{api::pb, domain::VendorKind};

#[tokio::test]
async fn concurrent_single_user_callers_share_fewer_fuller_calls() {
    // a quota of 5 calls per second: callers arriving while a call waits for its permit join it
    let (simulator, mut registrar) = start_with_target(LCIC, 20, "lcic", "qps = 5").await;

    let callers: Vec<_> = (0..200)
        .map(|caller| {
            let mut client = registrar.client.clone();
            tokio::spawn(async move {
                let collected = batch_register(
                    &mut client,
                    request(&["lcic"], vec![user(format!("c{caller:03}"))]),
                )
                .await
                .unwrap();
                (caller, collected)
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for caller in callers {
        let (caller, collected) = caller.await.unwrap();
        // each caller gets exactly its own user's result back
        assert_eq!(collected.results.len(), 1);
        let result = &collected.results[0];
        assert_eq!(result.user_id, format!("c{caller:03}"));
        assert_eq!(result.index, 0);
        assert_eq!(result.outcome(), pb::Outcome::Registered);
        assert!(seen.insert(result.vendor_user_id.clone()));
    }

    let calls = simulator.calls();
    let carried: usize = calls.iter().map(|call| call.user_ids.len()).sum();
    assert_eq!(carried, 200);
    assert!(calls.iter().all(|call| call.accepted()));
    assert!(
        calls.len() <= 20,
        "200 requests took {} calls: {:?}",
        calls.len(),
        call_sizes(&calls)
    );
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        200
    );
    registrar.stop().await;
}

#[tokio::test]
async fn the_same_user_from_two_callers_never_shares_a_call() {
    let (simulator, mut registrar) = start_with_target(LCIC, 20, "lcic", "qps = 2").await;
    let callers: Vec<_> = (0..6)
        .map(|_| {
            let mut client = registrar.client.clone();
            tokio::spawn(async move {
                batch_register(
                    &mut client,
                    request(&["lcic"], vec![user("same"), user("other")]),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    for caller in callers {
        let collected = caller.await.unwrap();
        assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 2);
    }
    for call in simulator.calls() {
        let unique: HashSet<&String> = call.user_ids.iter().collect();
        assert_eq!(
            unique.len(),
            call.user_ids.len(),
            "a call carried a user twice: {:?}",
            call.user_ids
        );
    }
    registrar.stop().await;
}
