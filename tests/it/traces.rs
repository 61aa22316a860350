//! Traces follow a request into its vendor calls: a caller's W3C
//! `traceparent` becomes the parent of the RPC's span; the batch, its audit
//! writes and the vendor call that carries its users are in the caller's
//! trace; the vendor HTTP call carries a `traceparent` of its attempt's span
//! (what the simulator recorded); a call coalescing users of two batches
//! links to both batches' spans. Checked against spans exported to an OTLP
//! receiver the test runs, and, with no exporter configured, against the
//! simulator's record alone.

use std::{collections::HashSet, time::Duration};

use opentelemetry_proto::tonic::{common::v1::any_value, trace::v1::Span};
use registrar::{api::pb, domain::VendorKind, sim::RecordedCall};

use crate::common::{
    ZIM, batch_register, otlp::OtlpReceiver, process::ServeProcess, request, start_simulator, users,
};

const BATCH_REGISTER: &str = "registrar.v1.RegistrationService/BatchRegister";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A BatchRegister request carrying `traceparent`.
fn traced(users: Vec<pb::User>, traceparent: &str) -> tonic::Request<pb::BatchRegisterRequest> {
    let mut request = tonic::Request::new(request(&["zim"], users));
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
}

/// (trace id, parent span id) of a `traceparent` header.
fn parse_traceparent(header: &str) -> (String, String) {
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!(parts.len(), 4, "{header}");
    assert_eq!(parts[0], "00", "{header}");
    (parts[1].to_owned(), parts[2].to_owned())
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref())
        .and_then(|value| match &value.value {
            Some(any_value::Value::StringValue(text)) => Some(text.clone()),
            Some(any_value::Value::IntValue(number)) => Some(number.to_string()),
            _ => None,
        })
}

/// The simulator's one ZIM call that carried `user_id`.
fn call_carrying<'a>(calls: &'a [RecordedCall], user_id: &str) -> &'a RecordedCall {
    let carrying: Vec<&RecordedCall> = calls
        .iter()
        .filter(|call| {
            call.vendor == VendorKind::ZegoZim && call.user_ids.iter().any(|id| id == user_id)
        })
        .collect();
    assert_eq!(
        carrying.len(),
        1,
        "one call carried {user_id}: {carrying:?}"
    );
    carrying[0]
}

fn zim_config(simulator_endpoint: &str, telemetry: &str) -> String {
    format!(
        "{telemetry}\n[audit]\ndatabase_url = \"sqlite://audit.db?mode=rwc\"\n\n{}",
        // a linger long enough that two callers' users share one call
        ZIM.target("zim", simulator_endpoint, "qps = 20\nlinger = \"300ms\"\n"),
    )
}

#[tokio::test]
async fn a_callers_trace_runs_through_the_rpc_the_batch_its_audit_writes_and_the_vendor_call() {
    let simulator = start_simulator(vec![ZIM.sim(20)]).await;
    let otlp = OtlpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let telemetry = format!("[telemetry]\notlp_endpoint = \"{}\"\n", otlp.endpoint);
    let mut server = ServeProcess::start(
        dir.path(),
        "",
        &zim_config(&simulator.endpoint(), &telemetry),
    )
    .await;

    // one caller's batch of three users, in trace A
    let trace_a = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_a = "00f067aa0ba902b7";
    let answered = batch_register(
        &mut server.client,
        traced(users("trace-a-", 3), &format!("00-{trace_a}-{parent_a}-01")),
    )
    .await
    .unwrap();
    assert_eq!(answered.with_outcome(pb::Outcome::Registered).len(), 3);

    // two callers at once, one user each, in traces B and C: one call carries both
    let trace_b = "0af7651916cd43dd8448eb211c80319c";
    let trace_c = "11112222333344445555666677778888";
    let (mut client_b, mut client_c) = (server.client.clone(), server.client.clone());
    let (b, c) = tokio::join!(
        batch_register(
            &mut client_b,
            traced(
                users("trace-b-", 1),
                &format!("00-{trace_b}-b7ad6b7169203331-01")
            ),
        ),
        batch_register(
            &mut client_c,
            traced(
                users("trace-c-", 1),
                &format!("00-{trace_c}-c7ad6b7169203332-01")
            ),
        ),
    );
    let (b, c) = (b.unwrap(), c.unwrap());
    assert_eq!(b.with_outcome(pb::Outcome::Registered).len(), 1);
    assert_eq!(c.with_outcome(pb::Outcome::Registered).len(), 1);

    // the exporter flushes at shutdown
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).await.is_some());
    let spans = otlp.spans();
    let in_trace = |trace: &str| -> Vec<&Span> {
        spans
            .iter()
            .filter(|span| hex(&span.trace_id) == trace)
            .collect()
    };

    // the RPC's span: the caller's span is its parent
    let trace_a_spans = in_trace(trace_a);
    let rpc = trace_a_spans
        .iter()
        .find(|span| span.name == BATCH_REGISTER)
        .unwrap_or_else(|| panic!("the RPC span in trace A: {trace_a_spans:#?}"));
    assert_eq!(hex(&rpc.parent_span_id), parent_a);
    // the batch under it, the vendor call and its attempt, the audit writes
    let named = |name: &str| -> Vec<&Span> {
        trace_a_spans
            .iter()
            .copied()
            .filter(|span| span.name == name)
            .collect()
    };
    let batch = named("batch");
    assert_eq!(batch.len(), 1, "{trace_a_spans:#?}");
    assert_eq!(batch[0].parent_span_id, rpc.span_id);
    let vendor_call = named("vendor_call");
    assert_eq!(vendor_call.len(), 1, "{trace_a_spans:#?}");
    assert_eq!(vendor_call[0].parent_span_id, batch[0].span_id);
    let attempts = named("vendor_attempt");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].parent_span_id, vendor_call[0].span_id);
    let audit_operations: HashSet<String> = named("audit_write")
        .iter()
        .filter_map(|span| attribute(span, "operation"))
        .collect();
    for operation in [
        "create_batch",
        "insert_registrations",
        "start_vendor_call",
        "finish_vendor_call",
        "record_outcomes",
    ] {
        assert!(
            audit_operations.contains(operation),
            "an audit_write span for {operation} in trace A: {audit_operations:?}"
        );
    }

    // the vendor saw a traceparent in the caller's trace, naming the attempt's span
    let calls = simulator.calls();
    let call_a = call_carrying(&calls, "trace-a-000000");
    assert_eq!(call_a.user_ids.len(), 3);
    let (seen_trace, seen_parent) =
        parse_traceparent(call_a.traceparent.as_deref().expect("a traceparent header"));
    assert_eq!(seen_trace, trace_a);
    assert_eq!(seen_parent, hex(&attempts[0].span_id));

    // one call carried B's and C's users, and links to both batches' spans
    let call_b = call_carrying(&calls, "trace-b-000000");
    assert!(
        call_b.user_ids.iter().any(|id| id == "trace-c-000000"),
        "B and C shared a call: {call_b:?}"
    );
    let batch_span = |trace: &str| -> Vec<u8> {
        let batches: Vec<&Span> = in_trace(trace)
            .into_iter()
            .filter(|span| span.name == "batch")
            .collect();
        assert_eq!(batches.len(), 1, "one batch span in trace {trace}");
        batches[0].span_id.clone()
    };
    let (batch_b, batch_c) = (batch_span(trace_b), batch_span(trace_c));
    let coalesced: Vec<&Span> = spans
        .iter()
        .filter(|span| span.name == "vendor_call")
        .filter(|span| [trace_b, trace_c].contains(&hex(&span.trace_id).as_str()))
        .collect();
    assert_eq!(coalesced.len(), 1, "one vendor call for B and C");
    let links: HashSet<(String, Vec<u8>)> = coalesced[0]
        .links
        .iter()
        .map(|link| (hex(&link.trace_id), link.span_id.clone()))
        .collect();
    assert!(links.contains(&(trace_b.to_owned(), batch_b)), "{links:?}");
    assert!(links.contains(&(trace_c.to_owned(), batch_c)), "{links:?}");
    assert_eq!(attribute(coalesced[0], "batches").as_deref(), Some("2"));
    // and its HTTP call went out in the trace it belongs to
    let (seen_trace, _) = parse_traceparent(call_b.traceparent.as_deref().unwrap());
    assert_eq!(seen_trace, hex(&coalesced[0].trace_id));
}

#[tokio::test]
async fn the_callers_trace_reaches_the_vendor_with_no_exporter_configured() {
    let simulator = start_simulator(vec![ZIM.sim(20)]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        ServeProcess::start(dir.path(), "", &zim_config(&simulator.endpoint(), "")).await;

    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    batch_register(
        &mut server.client,
        traced(
            users("untraced-", 2),
            &format!("00-{trace}-00f067aa0ba902b8-01"),
        ),
    )
    .await
    .unwrap();

    let calls = simulator.calls();
    let call = call_carrying(&calls, "untraced-000000");
    let (seen_trace, seen_parent) =
        parse_traceparent(call.traceparent.as_deref().expect("a traceparent header"));
    assert_eq!(seen_trace, trace);
    assert_ne!(
        seen_parent, "00f067aa0ba902b8",
        "the vendor call has a span of its own"
    );
    server.terminate();
    server.wait_exit(Duration::from_secs(30)).await;
}
