//! The quota shared through Redis (src/outbound/shared_quota.rs) against a
//! real redis-server: two "replicas" (two connections, as two processes
//! would have) reserving from one key at once never put more than the quota
//! into any one-second window, and together get the whole quota; keys for
//! another account or API are another quota.

use std::time::{Duration, Instant};

use registrar::outbound::shared_quota::{QuotaKey, SharedQuota};

use crate::common::redis_server::TestRedis;

fn key(account: &str) -> QuotaKey {
    QuotaKey {
        vendor: "tencent-lcic".to_owned(),
        account: account.to_owned(),
        api: "BatchRegister".to_owned(),
    }
}

async fn replica(url: &str, key: &QuotaKey, qps: f64) -> SharedQuota {
    let client = redis::Client::open(url).unwrap();
    let connection = client.get_connection_manager().await.unwrap();
    SharedQuota::new(connection, key, qps, 0.02)
}

/// The most instants in any half-open one-second window.
fn max_in_one_second(instants: &mut [Duration]) -> usize {
    instants.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..instants.len() {
        while instants[end] - instants[start] >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[tokio::test]
async fn two_replicas_share_one_schedule_and_never_exceed_the_quota_together() {
    let redis = TestRedis::start().await;
    let qps = 50.0;
    let shared = key("1400000001");
    let replicas = [
        replica(&redis.url, &shared, qps).await,
        replica(&redis.url, &shared, qps).await,
    ];
    let started = Instant::now();
    let mut tasks = Vec::new();
    // each replica runs 4 callers taking 25 permits each: 200 permits in all
    for replica in &replicas {
        for _ in 0..4 {
            let replica = replica.clone();
            tasks.push(tokio::spawn(async move {
                let mut granted = Vec::new();
                for _ in 0..25 {
                    replica.acquire().await.unwrap();
                    granted.push(started.elapsed());
                }
                granted
            }));
        }
    }
    let mut granted = Vec::new();
    for task in tasks {
        granted.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    assert_eq!(granted.len(), 200);
    let most = max_in_one_second(&mut granted);
    assert!(most <= 50, "{most} permits in one second at a quota of 50");
    // 200 permits at 50/s less the 2% margin: about 4.06 s together, not 2 s each
    let rate = 199.0 / (granted[199] - granted[0]).as_secs_f64();
    assert!(
        (47.0..=50.0).contains(&rate),
        "together {rate:.1} permits/s of 50 ({elapsed:?})"
    );

    // another account is another quota: its first permit is immediate
    let other = replica(&redis.url, &key("1400000002"), qps).await;
    assert_eq!(other.reserve().await.unwrap(), Duration::ZERO);
}
