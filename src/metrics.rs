//! Prometheus metrics: the process's one registry, the metric families in
//! it, and the handles each target resolves once so that the hot path never
//! builds a label set. Served as text by `metrics_server` (`[metrics]
//! listen`); the list, with what each label means, is in
//! docs/operations.md#metrics.
//!
//! Labels are bounded: target names, vendor kinds, actions, outcomes,
//! result classes, gRPC methods and codes, audit operations. Never a user
//! id, a batch id, a caller's credential or anything a caller sends.
//!
//! A leaf: it knows nothing of the engine, the edge or the audit store; they
//! call into it.

use std::sync::{LazyLock, atomic::AtomicU64};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::{Registry, Unit},
};

use crate::domain::{Outcome, VendorKind};

pub mod server;

/// Buckets of durations from 1 ms to about 33 s, doubling.
fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Buckets of durations from 0.1 ms to about 3.3 s, doubling (permit waits
/// and audit writes are short when all is well, and the tail is the story).
fn short_seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Buckets of users per call, 1 to 1024 doubling: LCIC's 1000, ZIM's 100,
/// RTC's 20, CIAM's 1, and import jobs of up to 1000.
fn users_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistrationLabels {
    pub target: String,
    pub vendor: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub target: String,
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallResultLabels {
    pub target: String,
    pub action: String,
    /// `ok`, `throttled`, `retryable` or `permanent` (docs/operations.md#metrics).
    pub result: String,
}

/// The labels of grpc-ecosystem's `grpc_server_handled_total`, so that
/// existing gRPC dashboards and alerts work unchanged.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub grpc_service: String,
    pub grpc_method: String,
    pub grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric registrar exports.
pub struct Metrics {
    registry: Registry,
    registrations: Family<RegistrationLabels, Counter>,
    vendor_calls: Family<CallResultLabels, Counter>,
    vendor_call_duration: Family<ActionLabels, Histogram>,
    call_users: Family<TargetLabels, Histogram>,
    permit_wait: Family<TargetLabels, Histogram>,
    paced_rate: Family<TargetLabels, FloatGauge>,
    target_qps: Family<TargetLabels, FloatGauge>,
    target_max_batch: Family<TargetLabels, Gauge>,
    throttles: Family<TargetLabels, Counter>,
    queued_users: Family<TargetLabels, Gauge>,
    import_jobs_running: Family<TargetLabels, Gauge>,
    grpc_handled: Family<GrpcLabels, Counter>,
    audit_write_duration: Family<AuditLabels, Histogram>,
    /// The quota shared through Redis (`[quota]`): whether Redis answers.
    pub shared_quota_reachable: Gauge,
    /// The replicas alive at the last heartbeat answered.
    pub shared_quota_replicas: Gauge,
    /// Each Redis script run: a permit, a send, a rate change, a heartbeat.
    shared_quota_request_duration: Family<SharedQuotaLabels, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SharedQuotaLabels {
    /// `reserve`, `send`, `throttled`, `succeeded` or `heartbeat`.
    pub request: String,
    /// `ok` or `error` (a timeout included).
    pub result: String,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let registrations = Family::default();
        registry.register(
            "registrar_registrations",
            "Users answered, by target, vendor kind and outcome (registered, already_exists, rejected, failed, validated, not_sent, answer_lost); replayed results are not counted again",
            registrations.clone(),
        );
        let vendor_calls = Family::default();
        registry.register(
            "registrar_vendor_calls",
            "HTTP exchanges with a vendor (every attempt and every job poll), by target, action and result class: ok, throttled, retryable, permanent",
            vendor_calls.clone(),
        );
        let vendor_call_duration = Family::new_with_constructor(seconds_buckets as fn() -> _);
        registry.register_with_unit(
            "registrar_vendor_call_duration",
            "Time from sending a vendor request to its whole answer (or the transport failure), by target and action",
            Unit::Seconds,
            vendor_call_duration.clone(),
        );
        let call_users = Family::new_with_constructor(users_buckets as fn() -> _);
        registry.register(
            "registrar_vendor_call_users",
            "Users per vendor call as the dispatcher formed it (the fill; compare with registrar_target_max_batch)",
            call_users.clone(),
        );
        let permit_wait = Family::new_with_constructor(short_seconds_buckets as fn() -> _);
        registry.register_with_unit(
            "registrar_rate_permit_wait",
            "Time an attempt waited for its target's rate permit",
            Unit::Seconds,
            permit_wait.clone(),
        );
        let paced_rate = Family::default();
        registry.register(
            "registrar_paced_rate",
            "Calls per second the target's pacer allows now: qps, or less after vendor throttle answers",
            paced_rate.clone(),
        );
        let target_qps = Family::default();
        registry.register(
            "registrar_target_qps",
            "The target's configured quota, in calls per second",
            target_qps.clone(),
        );
        let target_max_batch = Family::default();
        registry.register(
            "registrar_target_max_batch",
            "The most users the target puts in one vendor call",
            target_max_batch.clone(),
        );
        let throttles = Family::default();
        registry.register(
            "registrar_throttle_answers",
            "Vendor answers that said the quota was exceeded, by target",
            throttles.clone(),
        );
        let queued_users = Family::default();
        registry.register(
            "registrar_queued_users",
            "Users accepted for the target and not yet in a vendor call",
            queued_users.clone(),
        );
        let import_jobs_running = Family::default();
        registry.register(
            "registrar_import_jobs_running",
            "Import jobs submitted to the vendor and not yet finished, by target",
            import_jobs_running.clone(),
        );
        let grpc_handled = Family::default();
        registry.register(
            "grpc_server_handled",
            "RPCs finished on the server, by service, method and gRPC status code",
            grpc_handled.clone(),
        );
        let audit_write_duration = Family::new_with_constructor(short_seconds_buckets as fn() -> _);
        registry.register_with_unit(
            "registrar_audit_write_duration",
            "Time from handing an audit write to the writer until it is committed, by operation",
            Unit::Seconds,
            audit_write_duration.clone(),
        );
        registry.register(
            "registrar_build",
            "The registrar build: its version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            }),
        );
        let shared_quota_reachable = Gauge::default();
        registry.register(
            "registrar_shared_quota_reachable",
            "1 while the Redis of the shared quota answers, 0 while the targets pace at their fallback share (always 0 without [quota])",
            shared_quota_reachable.clone(),
        );
        let shared_quota_replicas = Gauge::default();
        registry.register(
            "registrar_shared_quota_replicas",
            "Replicas alive in the shared quota's heartbeats when last answered: the fallback share is qps divided by it",
            shared_quota_replicas.clone(),
        );
        let shared_quota_request_duration =
            Family::new_with_constructor(short_seconds_buckets as fn() -> _);
        registry.register_with_unit(
            "registrar_shared_quota_request_duration",
            "Round trip of each Redis script run for the shared quota, by request (reserve, send, throttled, succeeded, heartbeat) and result (ok, error)",
            Unit::Seconds,
            shared_quota_request_duration.clone(),
        );
        Metrics {
            shared_quota_reachable,
            shared_quota_replicas,
            shared_quota_request_duration,
            registry,
            registrations,
            vendor_calls,
            vendor_call_duration,
            call_users,
            permit_wait,
            paced_rate,
            target_qps,
            target_max_batch,
            throttles,
            queued_users,
            import_jobs_running,
            grpc_handled,
            audit_write_duration,
        }
    }

    /// The metrics in the OpenMetrics text format (which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // writing to a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// One finished RPC.
    pub fn grpc_handled(&self, service: &str, method: &str, code: tonic::Code) {
        self.grpc_handled
            .get_or_create(&GrpcLabels {
                grpc_service: service.to_owned(),
                grpc_method: method.to_owned(),
                grpc_code: grpc_code_name(code).to_owned(),
            })
            .inc();
    }

    /// One Redis script run of the shared quota, and how long it took.
    pub fn shared_quota_request(&self, request: &'static str, ok: bool, seconds: f64) {
        self.shared_quota_request_duration
            .get_or_create(&SharedQuotaLabels {
                request: request.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .observe(seconds);
    }

    /// One audit write, committed or not, and how long it took.
    pub fn audit_write(&self, operation: &'static str, seconds: f64) {
        self.audit_write_duration
            .get_or_create(&AuditLabels {
                operation: operation.to_owned(),
            })
            .observe(seconds);
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The status code's name as grpc-go and grpc-ecosystem spell it (`OK`,
/// `InvalidArgument`, ...), the values `grpc_code` takes everywhere else.
fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// One target's metrics, resolved once when the target is built.
#[derive(Clone)]
pub struct TargetMetrics {
    /// One counter per outcome, in `Outcome::ALL`'s order.
    registrations: [Counter; Outcome::ALL.len()],
    target: String,
    pub call_users: Histogram,
    pub permit_wait: Histogram,
    pub paced_rate: FloatGauge,
    pub throttles: Counter,
    pub queued_users: Gauge,
    pub import_jobs_running: Gauge,
}

impl TargetMetrics {
    pub fn new(target: &str, vendor: VendorKind, qps: u32, max_batch: usize) -> Self {
        let metrics = global();
        let labels = TargetLabels {
            target: target.to_owned(),
        };
        let registrations = Outcome::ALL.map(|outcome| {
            metrics
                .registrations
                .get_or_create_owned(&RegistrationLabels {
                    target: target.to_owned(),
                    vendor: vendor.to_string(),
                    outcome: outcome.as_str().to_owned(),
                })
        });
        metrics
            .target_qps
            .get_or_create(&labels)
            .set(f64::from(qps));
        metrics
            .target_max_batch
            .get_or_create(&labels)
            .set(i64::try_from(max_batch).unwrap_or(i64::MAX));
        let paced_rate = metrics.paced_rate.get_or_create_owned(&labels);
        paced_rate.set(f64::from(qps));
        TargetMetrics {
            registrations,
            target: target.to_owned(),
            call_users: metrics.call_users.get_or_create_owned(&labels),
            permit_wait: metrics.permit_wait.get_or_create_owned(&labels),
            paced_rate,
            throttles: metrics.throttles.get_or_create_owned(&labels),
            queued_users: metrics.queued_users.get_or_create_owned(&labels),
            import_jobs_running: metrics.import_jobs_running.get_or_create_owned(&labels),
        }
    }

    /// `count` users answered with `outcome` (not replays of earlier answers).
    pub fn answered(&self, outcome: Outcome, count: u64) {
        if let Some(position) = Outcome::ALL.iter().position(|known| *known == outcome) {
            self.registrations[position].inc_by(count);
        }
    }

    /// One HTTP exchange with the vendor, its duration and result class.
    pub fn vendor_call(&self, action: &str, result: &'static str, seconds: f64) {
        let metrics = global();
        metrics
            .vendor_call_duration
            .get_or_create(&ActionLabels {
                target: self.target.clone(),
                action: action.to_owned(),
            })
            .observe(seconds);
        metrics
            .vendor_calls
            .get_or_create(&CallResultLabels {
                target: self.target.clone(),
                action: action.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        if result == "throttled" {
            self.throttles.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_s_metrics_are_exported_under_their_names() {
        let target = TargetMetrics::new("metrics-unit-test", VendorKind::ZegoZim, 50, 100);
        target.answered(Outcome::Registered, 3);
        target.vendor_call("BatchRegister", "throttled", 0.05);
        let text = global().encode();
        for line in [
            r#"registrar_registrations_total{target="metrics-unit-test",vendor="zego-zim",outcome="registered"} 3"#,
            r#"registrar_target_qps{target="metrics-unit-test"} 50.0"#,
            r#"registrar_target_max_batch{target="metrics-unit-test"} 100"#,
            r#"registrar_throttle_answers_total{target="metrics-unit-test"} 1"#,
            r#"registrar_vendor_calls_total{target="metrics-unit-test",action="BatchRegister",result="throttled"} 1"#,
            r#"registrar_vendor_call_duration_seconds_count{target="metrics-unit-test",action="BatchRegister"} 1"#,
            "# UNIT registrar_vendor_call_duration_seconds seconds",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.contains(r#"registrar_build_info{version=""#), "{text}");
    }
}
