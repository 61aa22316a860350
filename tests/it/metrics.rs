//! `[metrics] listen`: a real `registrar serve` process (its own metrics,
//! no other test's) scraped over HTTP and parsed as Prometheus text. The
//! registrations counter matches the results the callers got and what the
//! simulator holds, per target and outcome; the throttle counter matches the
//! throttle answers the simulator gave; the paced-rate gauge drops after them.

use std::{collections::BTreeMap, time::Duration};

use prometheus_parse::{Scrape, Value};
use registrar::{api::pb, domain::VendorKind};

use crate::common::{
    LCIC, ZIM, batch_register, postgres::free_loopback_port, process::ServeProcess, request,
    start_simulator, user, users,
};

/// GET /metrics, parsed.
async fn scrape(port: u16) -> Scrape {
    let response = reqwest_get(&format!("http://127.0.0.1:{port}/metrics")).await;
    Scrape::parse(response.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text")
}

/// A plain HTTP GET with hyper, answering the body as text.
async fn reqwest_get(url: &str) -> String {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .get(url.parse().unwrap())
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn number(value: &Value) -> f64 {
    match value {
        Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => *value,
        other => panic!("not a number: {other:?}"),
    }
}

/// The value of `metric` whose labels include every one of `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|sample| {
            sample.metric == metric
                && labels
                    .iter()
                    .all(|(name, value)| sample.labels.get(name) == Some(*value))
        })
        .map(|sample| number(&sample.value))
}

/// Results per outcome name, as the metric spells them.
fn counted(results: &[pb::UserResult]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for result in results {
        let name = match result.outcome() {
            pb::Outcome::Registered => "registered",
            pb::Outcome::AlreadyExists => "already_exists",
            pb::Outcome::Rejected => "rejected",
            pb::Outcome::Failed => "failed",
            other => panic!("unexpected outcome {other:?}"),
        };
        *counts.entry(name).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn the_registrations_counter_matches_the_answers_and_the_paced_rate_drops_after_throttles() {
    // ZIM's account really takes 5 calls a second, its target is set to 20:
    // the vendor throttles, and registrar slows down
    let simulator = start_simulator(vec![LCIC.sim(20), ZIM.sim(5)]).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_loopback_port();
    let config = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n[audit]\ndatabase_url = \"sqlite://{}?mode=rwc\"\n\n{}{}",
        dir.path().join("audit.db").display(),
        LCIC.target("lcic", &simulator.endpoint(), "qps = 20\n"),
        ZIM.target("zim", &simulator.endpoint(), "qps = 20\nmax_attempts = 6\n"),
    );
    let mut server = ServeProcess::start(dir.path(), "", &config).await;

    let before = scrape(metrics_port).await;
    assert_eq!(
        value(&before, "registrar_paced_rate", &[("target", "zim")]),
        Some(20.0)
    );
    assert_eq!(
        value(&before, "registrar_target_qps", &[("target", "zim")]),
        Some(20.0)
    );

    // LCIC: 30 valid users and 2 it rejects before any call (an empty user id)
    let mut lcic_users = users("lcic-m-", 30);
    lcic_users.extend([user(""), user("")]);
    let lcic = batch_register(&mut server.client, request(&["lcic"], lcic_users))
        .await
        .unwrap();
    // ZIM: 1500 users in 15 calls, sent faster than the account takes them
    let zim = batch_register(&mut server.client, request(&["zim"], users("zim-m-", 1500)))
        .await
        .unwrap();

    let after = scrape(metrics_port).await;
    let lcic_results = lcic.results.clone();
    for (target, vendor, results) in [
        ("lcic", "tencent-lcic", &lcic_results),
        ("zim", "zego-zim", &zim.results),
    ] {
        let expected = counted(results);
        for outcome in ["registered", "already_exists", "rejected", "failed"] {
            let metric = value(
                &after,
                "registrar_registrations_total",
                &[("target", target), ("vendor", vendor), ("outcome", outcome)],
            )
            .unwrap_or(0.0);
            assert_eq!(
                metric,
                expected.get(outcome).copied().unwrap_or(0) as f64,
                "{target} {outcome}: {expected:?}"
            );
        }
    }
    let lcic_counts = counted(&lcic_results);
    assert_eq!(lcic_counts.get("registered"), Some(&30));
    assert_eq!(lcic_counts.get("rejected"), Some(&2));
    // what the vendor holds is what the counter says was registered
    for (vendor, app_id, target, results) in [
        (VendorKind::TencentLcic, LCIC.app_id, "lcic", &lcic_results),
        (VendorKind::ZegoZim, ZIM.app_id, "zim", &zim.results),
    ] {
        let held = simulator.registered(vendor, app_id).len();
        let registered = counted(results).get("registered").copied().unwrap_or(0);
        assert_eq!(held, registered, "{target}");
    }

    // every throttle answer the simulator gave was counted, and slowed the target down
    let calls = simulator.calls();
    let throttle_answers = calls
        .iter()
        .filter(|call| call.vendor == VendorKind::ZegoZim && !call.accepted())
        .filter(|call| call.error_code.as_deref() == Some("660700001"))
        .count();
    assert!(
        throttle_answers > 0,
        "the account's 5 calls a second throttled some"
    );
    assert_eq!(
        value(
            &after,
            "registrar_throttle_answers_total",
            &[("target", "zim")]
        ),
        Some(throttle_answers as f64)
    );
    assert_eq!(
        value(
            &after,
            "registrar_vendor_calls_total",
            &[("target", "zim"), ("result", "throttled")]
        ),
        Some(throttle_answers as f64)
    );
    let paced = value(&after, "registrar_paced_rate", &[("target", "zim")]).unwrap();
    assert!(
        paced < 20.0,
        "the paced rate dropped after throttles: {paced}"
    );
    assert_eq!(
        value(
            &after,
            "registrar_throttle_answers_total",
            &[("target", "lcic")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&after, "registrar_paced_rate", &[("target", "lcic")]),
        Some(20.0)
    );

    // one vendor call per accepted ZIM call at the simulator, by result class
    let accepted = calls
        .iter()
        .filter(|call| call.vendor == VendorKind::ZegoZim && call.accepted())
        .count();
    assert_eq!(
        value(
            &after,
            "registrar_vendor_calls_total",
            &[("target", "zim"), ("result", "ok")]
        ),
        Some(accepted as f64)
    );
    // the fill: users per call, as formed
    let fill_count = value(
        &after,
        "registrar_vendor_call_users_count",
        &[("target", "zim")],
    )
    .unwrap();
    let fill_sum = value(
        &after,
        "registrar_vendor_call_users_sum",
        &[("target", "zim")],
    )
    .unwrap();
    assert_eq!((fill_count, fill_sum), (15.0, 1500.0));
    assert_eq!(
        value(&after, "registrar_queued_users", &[("target", "zim")]),
        Some(0.0)
    );
    // the RPCs, by method and code
    assert_eq!(
        value(
            &after,
            "grpc_server_handled_total",
            &[("grpc_method", "BatchRegister"), ("grpc_code", "OK")]
        ),
        Some(2.0)
    );

    server.terminate();
    server.wait_exit(Duration::from_secs(30)).await;
}
