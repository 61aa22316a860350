//! What the property modules share: the five vendor modules, built the way
//! the server builds them, strategies for arbitrary JSON and Unicode, and
//! the checks every parsed answer must pass whatever the vendor sent.

use std::{collections::HashMap, sync::OnceLock};

use proptest::{prelude::*, test_runner::TestCaseError};
use registrar::{
    config::{CliOverrides, Config},
    domain::VendorKind,
    vendor_api::{CallReport, JobStatus, SharedVendor, Submission, VendorOutcome},
};
use serde_json::Value;

/// A proptest configuration with an explicit case count and no persisted
/// failures (see the crate documentation for why).
pub fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One vendor module of each kind, built from the embedded default's demo
/// targets through `Config::load` and each kind's registry builder, exactly
/// as the server builds its targets. Built once: the modules are pure.
pub fn vendor(kind: VendorKind) -> SharedVendor {
    static VENDORS: OnceLock<HashMap<VendorKind, SharedVendor>> = OnceLock::new();
    VENDORS
        .get_or_init(|| {
            // Port 9 (discard): nothing is ever sent, the modules only build and parse.
            let text = registrar::app::embedded_config_toml("http://127.0.0.1:9");
            let config = Config::load(None, Some(&text), &CliOverrides::default())
                .expect("the embedded default configuration loads");
            config
                .targets
                .iter()
                .map(|target| {
                    let module = (target.vendor_spec().build)(target)
                        .expect("every demo target builds its vendor module");
                    (target.vendor, module)
                })
                .collect()
        })
        .get(&kind)
        .cloned()
        .unwrap_or_else(|| panic!("the embedded default has a {kind} target"))
}

/// The largest number of users the properties send to `kind` in one call:
/// the vendor's cap, bounded to keep a case cheap (outcomes are per user,
/// so 20 users exercise the same paths as 1000).
pub fn user_cap(kind: VendorKind) -> usize {
    (registrar::vendor_api::registry::spec(kind).max_batch as usize).min(20)
}

/// Any Unicode text of up to `max_chars` scalar values, control characters,
/// combining marks and astral planes included (proptest's `String` strategy
/// leaves out some of these).
pub fn unicode_text(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..=max_chars).prop_map(String::from_iter)
}

/// Text made of one-, two-, three- and four-byte characters in any mix, so
/// that its length in bytes and in characters differ by any amount.
pub fn mixed_width_text(max_chars: usize) -> impl Strategy<Value = String> {
    let character = prop_oneof![
        Just('a'),
        Just('é'),
        Just('€'),
        Just('𝄞'),
        Just('\u{301}'),
        any::<char>(),
    ];
    prop::collection::vec(character, 0..=max_chars).prop_map(String::from_iter)
}

/// Text right around a byte limit: `limit - 4 ..= limit + 4` bytes of ASCII
/// followed by one character of one to four bytes, so that a limit counted
/// in characters, or a cut inside the last character, would be caught.
pub fn text_near_byte_limit(limit: usize) -> impl Strategy<Value = String> {
    (
        limit.saturating_sub(4)..=limit + 4,
        prop::sample::select(vec!['x', 'é', '€', '𝄞']),
    )
        .prop_map(|(ascii, last)| {
            let mut text = "a".repeat(ascii);
            text.push(last);
            text
        })
}

/// The field names of the vendors' real answers, so that arbitrary JSON
/// often lands on a key a parser reads, with a value of any type.
pub const VENDOR_KEYS: &[&str] = &[
    "Response",
    "Error",
    "Code",
    "Message",
    "RequestId",
    "Users",
    "SdkAppId",
    "UserId",
    "OriginId",
    "ErrorList",
    "UserID",
    "SubCode",
    "SubMessage",
    "ResponseMetadata",
    "Result",
    "FailedInfos",
    "User",
    "UserName",
    "Job",
    "Id",
    "Status",
    "Type",
    "JobSet",
    "CreatedDate",
    "FailedUsers",
    "FailedUserIdentification",
    "FailedReason",
    "ErrorDetails",
];

/// An object key: usually one the vendors use, sometimes anything.
fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(VENDOR_KEYS).prop_map(str::to_owned),
        1 => unicode_text(8),
    ]
}

/// A JSON scalar of any type, numbers at their extremes included.
pub fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // non-finite floats become null, as serde_json would write them
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![0i64, 1, -1, 2, 3, 7, 660_700_002, 100_000_005])
            .prop_map(Value::from),
        unicode_text(12).prop_map(Value::String),
        prop::sample::select(vec![
            "",
            "0",
            "1",
            " 4 ",
            "PENDING",
            "COMPLETED",
            "FAILED",
            "PROCESSING",
        ])
        .prop_map(Value::from),
    ]
}

/// Any JSON value: scalars, arrays and objects nested up to 6 levels, with
/// vendor field names as keys most of the time.
pub fn arbitrary_json() -> impl Strategy<Value = Value> {
    json_scalar().prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A field of a real answer's shape: the right value most of the time, else
/// a value of any type, else absent (`None`).
pub fn field_or_wrong(right: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => right.prop_map(Some),
        2 => arbitrary_json().prop_map(Some),
        1 => Just(None),
    ]
}

/// An object built from optional fields, plus up to two extra fields of any
/// name and value that a parser must ignore.
pub fn object_of(fields: Vec<(&'static str, Option<Value>)>, extra: Vec<(String, Value)>) -> Value {
    let mut object = serde_json::Map::new();
    for (name, value) in extra {
        object.insert(name, value);
    }
    for (name, value) in fields {
        if let Some(value) = value {
            object.insert(name.to_owned(), value);
        }
    }
    Value::Object(object)
}

/// Up to two fields no vendor documents.
pub fn extra_fields() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec(
        (
            "[A-Za-z]{1,10}".prop_map(|name| format!("Extra{name}")),
            json_scalar(),
        ),
        0..=2,
    )
}

/// Any status the `http` crate can carry, 200 half of the time.
pub fn http_status() -> impl Strategy<Value = http::StatusCode> {
    prop_oneof![
        1 => Just(200u16),
        1 => prop::sample::select(vec![400u16, 401, 403, 404, 429, 500, 502, 503, 504]),
        1 => 100u16..=999,
    ]
    .prop_map(|code| http::StatusCode::from_u16(code).expect("100..=999 is a valid status"))
}

pub fn response(
    status: http::StatusCode,
    body: impl Into<bytes::Bytes>,
) -> http::Response<bytes::Bytes> {
    let mut response = http::Response::new(body.into());
    *response.status_mut() = status;
    response
}

/// The report accounts for each user sent exactly once, and every failure in
/// it (per user, or of the whole call) carries a class and a non-empty code.
pub fn check_report(report: &CallReport, users_sent: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        report.outcomes.len(),
        users_sent,
        "one outcome per user sent: {:?}",
        report
    );
    for outcome in &report.outcomes {
        match outcome {
            VendorOutcome::Registered { vendor_user_id } => {
                // an empty vendor id is "no id", never an id
                prop_assert_ne!(vendor_user_id.as_deref(), Some(""));
            }
            // A Failed outcome's class is part of its type; its code must say something.
            VendorOutcome::Failed { code, .. }
            | VendorOutcome::Rejected { code, .. }
            | VendorOutcome::AlreadyExists { code, .. } => {
                prop_assert!(
                    !code.as_str().is_empty(),
                    "a failure without a code: {:?}",
                    report
                );
            }
        }
    }
    prop_assert_eq!(
        report.error_code.is_some(),
        report.error_class.is_some(),
        "a call-level failure has both a class and a code: {:?}",
        report
    );
    if let Some(code) = &report.error_code {
        prop_assert!(
            !code.as_str().is_empty(),
            "a call-level failure without a code: {:?}",
            report
        );
    }
    Ok(())
}

/// A submission either started a job with an id, or answers for each user,
/// or says the vendor is busy with a code.
pub fn check_submission(submission: &Submission, users_sent: usize) -> Result<(), TestCaseError> {
    match submission {
        Submission::Started { job_id, .. } => prop_assert!(!job_id.is_empty()),
        Submission::Answered(report) => check_report(report, users_sent)?,
        Submission::Busy { code, .. } => prop_assert!(!code.is_empty()),
    }
    Ok(())
}

/// A poll either sees the job running, or finished with one outcome per user,
/// or failed with a class and a non-empty code.
pub fn check_poll(status: &JobStatus, users_sent: usize) -> Result<(), TestCaseError> {
    match status {
        JobStatus::Running { .. } => {}
        JobStatus::Finished(report) => check_report(report, users_sent)?,
        JobStatus::PollFailed { code, .. } => prop_assert!(
            !code.as_str().is_empty(),
            "a failed poll without a code: {:?}",
            status
        ),
    }
    Ok(())
}
