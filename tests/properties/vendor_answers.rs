//! Vendor answers: every parser registrar has (`parse_response` of the five
//! vendor modules, and the CIAM import's `parse_submission` and
//! `parse_poll`) reads whatever a vendor, a proxy or a broken network hands
//! back, and never panics on it. Whatever the bytes, the report has exactly
//! one outcome per user sent and every failure carries a class and a
//! non-empty code, so the engine can always record, retry or give up. The
//! CIAM parsers also claim no more than an answer proves: CreateUser
//! registers a user only with the answer's UserId, and a finished import job
//! registers or answers a user only where its failure entries name users
//! unambiguously.
//!
//! The inputs go from blind to informed: arbitrary bytes, arbitrary JSON
//! values whose keys are the vendors' field names, then documents shaped like
//! each vendor's real answer with fields of the wrong type, missing, extra or
//! listing more or fewer users than were sent; and the extremes: documents
//! of several megabytes and nesting far beyond serde_json's recursion limit
//! (128), which must be classified as malformed, not overflow the stack.

use bytes::Bytes;
use proptest::{prelude::*, test_runner::TestCaseError};
use registrar::{
    domain::{CiamProfile, User, VendorKind},
    vendor_api::{ErrorClass, JobStatus, RegistrarCode, Submission, VendorOutcome},
};
use serde_json::{Value, json};

use crate::support::{
    arbitrary_json, cases, check_poll, check_report, check_submission, extra_fields,
    field_or_wrong, http_status, json_scalar, object_of, response, unicode_text, user_cap, vendor,
};

/// The job every poll asks about.
const JOB_ID: &str = "job-1";

/// A user id the answers may name back: usually from a small pool the sent
/// users share (so answers match some of them), sometimes anything.
fn pooled_user_id() -> BoxedStrategy<String> {
    prop_oneof![
        4 => (1u32..=24).prop_map(|n| n.to_string()),
        1 => unicode_text(6),
    ]
    .boxed()
}

/// A CIAM identifier (UserName, PhoneNumber or Email) from a pool shared by
/// the users sent and the answers, or empty, or anything.
fn pooled_identifier(prefix: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        4 => (1u32..=24).prop_map(move |n| format!("{prefix}{n}")),
        1 => Just(String::new()),
        1 => unicode_text(6),
    ]
    .boxed()
}

fn sent_user() -> impl Strategy<Value = User> {
    let identity = (
        pooled_identifier("u"),
        pooled_identifier("1320000"),
        pooled_identifier("mail"),
    )
        .prop_map(|(user_name, phone_number, email)| CiamProfile {
            user_name,
            phone_number,
            email,
            ..CiamProfile::default()
        });
    (pooled_user_id(), prop::option::weighted(0.9, identity)).prop_map(|(user_id, ciam)| User {
        user_id,
        ciam,
        ..User::default()
    })
}

/// The users of one call: 1 to `max`, repeats allowed (the parsers must
/// still answer once per user, not once per distinct id).
fn sent_users(max: usize) -> impl Strategy<Value = Vec<User>> {
    prop::collection::vec(sent_user(), 1..=max)
}

/// Runs one parser's answer through the checks, naming the parser on failure.
fn named(parser: &str, checked: Result<(), TestCaseError>) -> Result<(), TestCaseError> {
    checked.map_err(|error| TestCaseError::fail(format!("{parser}: {error}")))
}

/// Every parser of `kind` reads `answer` for the first users (up to the
/// kind's cap); each result passes the checks.
fn check_parsers_of(
    kind: VendorKind,
    users: &[User],
    answer: &http::Response<Bytes>,
) -> Result<(), TestCaseError> {
    let module = vendor(kind);
    let sent: Vec<&User> = users.iter().take(user_cap(kind)).collect();
    named(
        &format!("{kind} parse_response"),
        check_report(&module.parse_response(&sent, answer), sent.len()),
    )?;
    if let Some(jobs) = module.jobs() {
        named(
            &format!("{kind} parse_submission"),
            check_submission(&jobs.parse_submission(&sent, answer), sent.len()),
        )?;
        named(
            &format!("{kind} parse_poll"),
            check_poll(&jobs.parse_poll(&sent, JOB_ID, answer), sent.len()),
        )?;
    }
    Ok(())
}

/// Every parser registrar has reads `answer`.
fn check_every_parser(users: &[User], answer: &http::Response<Bytes>) -> Result<(), TestCaseError> {
    for kind in VendorKind::ALL {
        check_parsers_of(kind, users, answer)?;
    }
    Ok(())
}

/// For an answer that is not JSON at all: every user of every parser fails,
/// as a malformed answer under HTTP 200 and by its status otherwise (429
/// throttled, 5xx retryable, the rest permanent); no job is started, seen
/// running or finished.
fn check_unreadable_answer_fails_everyone(
    users: &[User],
    answer: &http::Response<Bytes>,
) -> Result<(), TestCaseError> {
    let status = answer.status();
    let (expected_code, expected_class) = if status == http::StatusCode::OK {
        (
            RegistrarCode::MalformedResponse.as_str().to_owned(),
            ErrorClass::Permanent,
        )
    } else {
        let class = if status == http::StatusCode::TOO_MANY_REQUESTS {
            ErrorClass::Throttled
        } else if status.is_server_error() {
            ErrorClass::Retryable
        } else {
            ErrorClass::Permanent
        };
        (format!("HTTP{}", status.as_u16()), class)
    };
    for kind in VendorKind::ALL {
        let module = vendor(kind);
        let sent: Vec<&User> = users.iter().take(user_cap(kind)).collect();
        let report = module.parse_response(&sent, answer);
        for outcome in &report.outcomes {
            match outcome {
                VendorOutcome::Failed { class, code, .. } => {
                    prop_assert_eq!(code.as_str(), expected_code.as_str(), "{}", kind);
                    // CIAM imports never resubmit an answer in doubt: permanent unless throttled
                    if kind != VendorKind::TencentCiamImport {
                        prop_assert_eq!(*class, expected_class, "{}", kind);
                    }
                }
                other => prop_assert!(false, "{}: {:?} for an unreadable answer", kind, other),
            }
        }
        if let Some(jobs) = module.jobs() {
            let submission = jobs.parse_submission(&sent, answer);
            prop_assert!(
                matches!(submission, Submission::Answered(_)),
                "{}: {:?}",
                kind,
                submission
            );
            let poll = jobs.parse_poll(&sent, JOB_ID, answer);
            prop_assert!(
                matches!(poll, JobStatus::PollFailed { .. }),
                "{}: {:?}",
                kind,
                poll
            );
        }
    }
    Ok(())
}

/// Whether serde_json (the parsers' reader) can read `body` at all.
fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok()
}

fn to_body(answer: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(answer).expect("a serde_json Value always serializes"))
}

// ---------------------------------------------------------------------------
// The vendors' real answer shapes, with any field wrong, missing or extra.
// ---------------------------------------------------------------------------

/// Text of any kind, or empty.
fn text() -> BoxedStrategy<Value> {
    prop_oneof![Just(String::new()), unicode_text(10)]
        .prop_map(Value::String)
        .boxed()
}

/// The Tencent error codes registrar classifies specially, and anything else.
fn tencent_code() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "InternalError",
            "InvalidParameter",
            "InvalidParameter.SdkAppId",
            "MissingParameter",
            "UnauthorizedOperation",
            "RequestLimitExceeded",
            "RequestLimitExceeded.RepeatRequest",
            "AuthFailure.SignatureExpire",
            "AuthFailure.SignatureFailure",
            "FailedOperation.UserNameAlreadyExists",
            "FailedOperation.ImportUserIsEmpty",
            "FailedOperation.DataFlowTooManyRequests",
            "",
        ])
        .prop_map(Value::from),
        1 => unicode_text(10).prop_map(Value::String),
    ]
    .boxed()
}

/// `Response.Error` (docs/vendors/tencent-cloud-api.md#error-envelope).
fn tencent_error() -> BoxedStrategy<Value> {
    (field_or_wrong(tencent_code()), field_or_wrong(text()))
        .prop_map(|(code, message)| object_of(vec![("Code", code), ("Message", message)], vec![]))
        .boxed()
}

/// `{"Response": {<output fields>, "RequestId", "Error"?}}`: the Tencent
/// envelope around a product's output fields; an Error a third of the time.
fn tencent_answer(
    output: BoxedStrategy<Vec<(&'static str, Option<Value>)>>,
) -> BoxedStrategy<Value> {
    let error = prop_oneof![
        6 => Just(None),
        3 => tencent_error().prop_map(Some),
        1 => arbitrary_json().prop_map(Some),
    ];
    let response = (output, field_or_wrong(text()), error, extra_fields()).prop_map(
        |(mut fields, request_id, error, extra)| {
            fields.push(("RequestId", request_id));
            fields.push(("Error", error));
            object_of(fields, extra)
        },
    );
    (field_or_wrong(response), extra_fields())
        .prop_map(|(response, extra)| object_of(vec![("Response", response)], extra))
        .boxed()
}

/// A list of `element`s, 0 to 40 long: fewer, as many or more than the users sent.
fn list_of(element: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop::collection::vec(element, 0..=40)
        .prop_map(Value::Array)
        .boxed()
}

/// LCIC `BatchRegister`: `Users[{SdkAppId, UserId, OriginId}]` (docs/vendors/lcic.md#response).
fn lcic_answer() -> BoxedStrategy<Value> {
    let user = (
        field_or_wrong(any::<u64>().prop_map(Value::from)),
        field_or_wrong(text()),
        field_or_wrong(pooled_user_id().prop_map(Value::String)),
        extra_fields(),
    )
        .prop_map(|(sdk_app_id, user_id, origin_id, extra)| {
            object_of(
                vec![
                    ("SdkAppId", sdk_app_id),
                    ("UserId", user_id),
                    ("OriginId", origin_id),
                ],
                extra,
            )
        })
        .boxed();
    tencent_answer(
        field_or_wrong(list_of(user))
            .prop_map(|users| vec![("Users", users)])
            .boxed(),
    )
}

/// A ZIM return code: the documented ones, as integers or digit strings, or any integer.
fn zim_code() -> BoxedStrategy<Value> {
    let documented = prop::sample::select(vec![
        0i64,
        1,
        2,
        3,
        7,
        50014,
        100_000_004,
        100_000_005,
        660_000_002,
        660_700_001,
        660_700_002,
        660_700_007,
    ]);
    prop_oneof![
        4 => documented.clone().prop_map(Value::from),
        1 => documented.prop_map(|code| Value::from(format!(" {code} "))),
        1 => any::<i64>().prop_map(Value::from),
    ]
    .boxed()
}

/// ZIM `UserRegister`: `{Code, Message, RequestId, ErrorList[{UserId, SubCode, SubMessage}]}`
/// (docs/vendors/zim.md#response; the table spells UserID, the example UserId).
fn zim_answer() -> BoxedStrategy<Value> {
    let entry = (
        any::<bool>(),
        field_or_wrong(pooled_user_id().prop_map(Value::String)),
        field_or_wrong(zim_code()),
        field_or_wrong(text()),
        extra_fields(),
    )
        .prop_map(|(spelled_id, user_id, sub_code, sub_message, extra)| {
            let id_key = if spelled_id { "UserID" } else { "UserId" };
            object_of(
                vec![
                    (id_key, user_id),
                    ("SubCode", sub_code),
                    ("SubMessage", sub_message),
                ],
                extra,
            )
        })
        .boxed();
    (
        field_or_wrong(zim_code()),
        field_or_wrong(text()),
        field_or_wrong(prop_oneof![text(), any::<u64>().prop_map(Value::from)]),
        field_or_wrong(list_of(entry)),
        extra_fields(),
    )
        .prop_map(|(code, message, request_id, error_list, extra)| {
            object_of(
                vec![
                    ("Code", code),
                    ("Message", message),
                    ("RequestId", request_id),
                    ("ErrorList", error_list),
                ],
                extra,
            )
        })
        .boxed()
}

/// A Volcengine error code: the ones registrar classifies, or anything.
fn volc_code() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "FlowLimitExceeded",
            "ThrottlingX",
            "InternalError",
            "InvalidTimestamp",
            "SignatureDoesNotMatch",
            "InvalidParam",
            "UserNotFound",
            "",
        ])
        .prop_map(Value::from),
        1 => unicode_text(10).prop_map(Value::String),
    ]
    .boxed()
}

/// Volcengine RTC `RegisterUsers`: `{ResponseMetadata{RequestId, Error?{Code, Message}},
/// Result{FailedInfos[{UserId, Code, Message}]}}` (docs/vendors/volc-rtc.md#response); the
/// UserId a string or an int64.
fn volc_answer() -> BoxedStrategy<Value> {
    let error = (field_or_wrong(volc_code()), field_or_wrong(text()))
        .prop_map(|(code, message)| object_of(vec![("Code", code), ("Message", message)], vec![]));
    let metadata = (
        field_or_wrong(text()),
        prop_oneof![6 => Just(None), 3 => error.prop_map(Some), 1 => Just(Some(Value::Null))],
        extra_fields(),
    )
        .prop_map(|(request_id, error, extra)| {
            object_of(vec![("RequestId", request_id), ("Error", error)], extra)
        });
    let failed_user_id = prop_oneof![
        pooled_user_id().prop_map(Value::String),
        (1i64..=24).prop_map(Value::from),
        (1i64..=24).prop_map(|n| Value::from(format!(" {n} "))),
    ];
    let failed = (
        field_or_wrong(failed_user_id),
        field_or_wrong(volc_code()),
        field_or_wrong(text()),
    )
        .prop_map(|(user_id, code, message)| {
            object_of(
                vec![("UserId", user_id), ("Code", code), ("Message", message)],
                vec![],
            )
        })
        .boxed();
    let result = field_or_wrong(list_of(failed))
        .prop_map(|failed_infos| object_of(vec![("FailedInfos", failed_infos)], vec![]));
    (
        field_or_wrong(metadata),
        field_or_wrong(result),
        extra_fields(),
    )
        .prop_map(|(metadata, result, extra)| {
            object_of(
                vec![("ResponseMetadata", metadata), ("Result", result)],
                extra,
            )
        })
        .boxed()
}

/// CIAM `CreateUser`: `{"Response": {"User": {UserId, UserName, ...}, RequestId}}`
/// (docs/vendors/ciam.md#response); User "may return null".
fn ciam_answer() -> BoxedStrategy<Value> {
    let created = (
        field_or_wrong(text()),
        field_or_wrong(pooled_identifier("u").prop_map(Value::String)),
        extra_fields(),
    )
        .prop_map(|(user_id, user_name, extra)| {
            object_of(vec![("UserId", user_id), ("UserName", user_name)], extra)
        });
    tencent_answer(
        field_or_wrong(prop_oneof![4 => created, 1 => Just(Value::Null)])
            .prop_map(|user| vec![("User", user)])
            .boxed(),
    )
}

/// A CIAM import `Job` (docs/vendors/ciam-import.md#job): the job polled or
/// another, any Status, FailedUsers and ErrorDetails naming the users sent
/// (by UserName, PhoneNumber or Email) or others.
fn ciam_job() -> BoxedStrategy<Value> {
    let job_id = prop::sample::select(vec![JOB_ID, "job-2", ""]).prop_map(Value::from);
    let status = prop::sample::select(vec![
        "PENDING",
        "PROCESSING",
        "COMPLETED",
        "FAILED",
        "",
        "DONE",
    ])
    .prop_map(Value::from);
    let identification = prop_oneof![
        pooled_identifier("u"),
        pooled_identifier("1320000"),
        pooled_identifier("mail"),
    ]
    .prop_map(Value::String);
    let reason = prop_oneof![
        prop::sample::select(vec![
            "user already exists",
            "用户名已存在",
            "password format error",
            ""
        ])
        .prop_map(Value::from),
        text(),
    ];
    let failed_user = (
        field_or_wrong(identification.clone()),
        field_or_wrong(reason.clone()),
    )
        .prop_map(|(identification, reason)| {
            object_of(
                vec![
                    ("FailedUserIdentification", identification),
                    ("FailedReason", reason),
                ],
                vec![],
            )
        })
        .boxed();
    let error_detail = (field_or_wrong(identification), field_or_wrong(reason))
        .prop_map(|(user_id, error)| object_of(vec![("UserId", user_id), ("Error", error)], vec![]))
        .boxed();
    (
        field_or_wrong(job_id),
        field_or_wrong(status),
        field_or_wrong(Just(Value::from("IMPORT_USER"))),
        field_or_wrong(any::<i64>().prop_map(Value::from)),
        field_or_wrong(list_of(failed_user)),
        field_or_wrong(list_of(error_detail)),
        extra_fields(),
    )
        .prop_map(
            |(id, status, kind, created, failed_users, error_details, extra)| {
                object_of(
                    vec![
                        ("Id", id),
                        ("Status", status),
                        ("Type", kind),
                        ("CreatedDate", created),
                        ("FailedUsers", failed_users),
                        ("ErrorDetails", error_details),
                    ],
                    extra,
                )
            },
        )
        .boxed()
}

/// CIAM `CreateApiImportUserJob`: `{"Response": {"Job": {...}, RequestId}}`
/// (docs/vendors/ciam-import.md#examples).
fn ciam_submission_answer() -> BoxedStrategy<Value> {
    tencent_answer(
        field_or_wrong(ciam_job())
            .prop_map(|job| vec![("Job", job)])
            .boxed(),
    )
}

/// CIAM `ListJobs`: `{"Response": {"JobSet": [Job...], RequestId}}` (docs/vendors/ciam-import.md#listjobs).
fn ciam_poll_answer() -> BoxedStrategy<Value> {
    let job_set = prop::collection::vec(ciam_job(), 0..=3).prop_map(Value::Array);
    tencent_answer(
        field_or_wrong(job_set)
            .prop_map(|job_set| vec![("JobSet", job_set)])
            .boxed(),
    )
}

/// A ListJobs answer whose job is COMPLETED and well typed, so that it is
/// always read to the end: its FailedUsers and ErrorDetails name identifiers
/// of the pool the users sent draw from (so some name users sent, some
/// others, some several users at once), or nobody.
fn completed_job_answer() -> BoxedStrategy<Value> {
    let identification = prop_oneof![
        3 => prop_oneof![
            pooled_identifier("u"),
            pooled_identifier("1320000"),
            pooled_identifier("mail"),
        ]
        .prop_map(Value::String),
        1 => Just(Value::Null),
    ];
    let reason = prop::sample::select(vec![
        "user already exists",
        "用户名已存在",
        "password format error",
        "",
    ])
    .prop_map(Value::from);
    let failed_user = (identification.clone(), reason.clone())
        .prop_map(|(id, reason)| json!({"FailedUserIdentification": id, "FailedReason": reason}));
    let error_detail =
        (identification, reason).prop_map(|(id, error)| json!({"UserId": id, "Error": error}));
    (
        prop::collection::vec(failed_user, 0..=6),
        prop::collection::vec(error_detail, 0..=2),
    )
        .prop_map(|(failed_users, error_details)| {
            json!({"Response": {"JobSet": [{
                "Id": JOB_ID, "Status": "COMPLETED", "Type": "IMPORT_USER",
                "FailedUsers": failed_users, "ErrorDetails": error_details,
            }], "RequestId": "r"}})
        })
        .boxed()
}

/// A vendor's real answer shape with fields wrong, for the parser of `kind`.
fn shaped_answer(kind: VendorKind) -> BoxedStrategy<Value> {
    match kind {
        VendorKind::TencentLcic => lcic_answer(),
        VendorKind::ZegoZim => zim_answer(),
        VendorKind::VolcRtc => volc_answer(),
        VendorKind::TencentCiam => ciam_answer(),
        VendorKind::TencentCiamImport => {
            prop_oneof![ciam_submission_answer(), ciam_poll_answer()].boxed()
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// 256 cases, each through all seven parsers.
    #[test]
    fn arbitrary_bytes_never_panic_and_answer_once_per_user(
        users in sent_users(20),
        status in http_status(),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let answer = response(status, body);
        check_every_parser(&users, &answer)?;
        if !is_json(answer.body()) {
            check_unreadable_answer_fails_everyone(&users, &answer)?;
        }
    }

    /// 256 cases: bytes that almost parse (JSON text cut short or with one
    /// byte changed), which reach deeper into serde_json than random bytes.
    #[test]
    fn damaged_json_never_panics_and_fails_everyone_when_unreadable(
        users in sent_users(20),
        status in http_status(),
        answer in arbitrary_json(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut body = serde_json::to_vec(&answer).expect("a Value serializes");
        let flip_at = flip.index(body.len());
        body[flip_at] = byte;
        body.truncate(cut.index(body.len() + 1));
        let answer = response(status, body);
        check_every_parser(&users, &answer)?;
        if !is_json(answer.body()) {
            check_unreadable_answer_fails_everyone(&users, &answer)?;
        }
    }

    /// 256 cases, each through all seven parsers.
    #[test]
    fn arbitrary_json_values_never_panic_and_answer_once_per_user(
        users in sent_users(20),
        status in http_status(),
        answer in arbitrary_json(),
    ) {
        check_every_parser(&users, &response(status, to_body(&answer)))?;
    }

    /// 256 cases: an answer that is not HTTP 200 never registers anyone, and
    /// never starts, runs or finishes an import job, whatever its body says.
    #[test]
    fn answers_other_than_http_200_never_register_a_user(
        users in sent_users(20),
        status in http_status().prop_filter("not 200", |status| *status != http::StatusCode::OK),
        answer in prop_oneof![
            arbitrary_json(),
            lcic_answer(),
            zim_answer(),
            volc_answer(),
            ciam_answer(),
            ciam_submission_answer(),
            ciam_poll_answer(),
        ],
    ) {
        let answer = response(status, to_body(&answer));
        check_every_parser(&users, &answer)?;
        for kind in VendorKind::ALL {
            let module = vendor(kind);
            let sent: Vec<&User> = users.iter().take(user_cap(kind)).collect();
            let report = module.parse_response(&sent, &answer);
            prop_assert!(
                report.outcomes.iter().all(|outcome| !matches!(outcome, VendorOutcome::Registered { .. })),
                "{} registered a user under HTTP {}: {:?}", kind, status, report
            );
            if let Some(jobs) = module.jobs() {
                let submission = jobs.parse_submission(&sent, &answer);
                prop_assert!(!matches!(submission, Submission::Started { .. }), "{:?}", submission);
                let poll = jobs.parse_poll(&sent, JOB_ID, &answer);
                prop_assert!(matches!(poll, JobStatus::PollFailed { .. }), "{:?}", poll);
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// 256 cases per vendor: the LCIC answer shape with fields wrong.
    #[test]
    fn lcic_answers_with_wrong_fields_are_classified_for_each_user(
        users in sent_users(user_cap(VendorKind::TencentLcic)),
        status in http_status(),
        answer in shaped_answer(VendorKind::TencentLcic),
    ) {
        check_parsers_of(VendorKind::TencentLcic, &users, &response(status, to_body(&answer)))?;
    }

    /// 256 cases: the ZIM answer shape with fields wrong.
    #[test]
    fn zim_answers_with_wrong_fields_are_classified_for_each_user(
        users in sent_users(user_cap(VendorKind::ZegoZim)),
        status in http_status(),
        answer in shaped_answer(VendorKind::ZegoZim),
    ) {
        check_parsers_of(VendorKind::ZegoZim, &users, &response(status, to_body(&answer)))?;
    }

    /// 256 cases: the Volcengine RTC answer shape with fields wrong.
    #[test]
    fn volc_answers_with_wrong_fields_are_classified_for_each_user(
        users in sent_users(user_cap(VendorKind::VolcRtc)),
        status in http_status(),
        answer in shaped_answer(VendorKind::VolcRtc),
    ) {
        check_parsers_of(VendorKind::VolcRtc, &users, &response(status, to_body(&answer)))?;
    }

    /// 256 cases: the CIAM CreateUser answer shape with fields wrong; a
    /// user is registered only with the UserId the answer gives.
    #[test]
    fn ciam_answers_with_wrong_fields_are_classified_for_each_user(
        users in sent_users(user_cap(VendorKind::TencentCiam)),
        status in http_status(),
        answer in shaped_answer(VendorKind::TencentCiam),
    ) {
        let response = response(status, to_body(&answer));
        check_parsers_of(VendorKind::TencentCiam, &users, &response)?;
        check_create_user_claims(&users, &answer, &response)?;
    }

    /// 256 cases: the CIAM import submission and ListJobs shapes with fields
    /// wrong, through parse_response, parse_submission and parse_poll; a
    /// finished job claims only what its failure entries prove.
    #[test]
    fn ciam_import_answers_with_wrong_fields_are_classified_for_each_user(
        users in sent_users(user_cap(VendorKind::TencentCiamImport)),
        status in http_status(),
        answer in shaped_answer(VendorKind::TencentCiamImport),
    ) {
        let response = response(status, to_body(&answer));
        check_parsers_of(VendorKind::TencentCiamImport, &users, &response)?;
        check_import_job_claims(&users, &answer, &response)?;
    }

    /// 256 cases: finished jobs whose entries name users sent, others, several
    /// users at once or nobody; each user is claimed only as the entries prove.
    #[test]
    fn ciam_import_finished_jobs_claim_only_what_their_entries_prove(
        users in sent_users(user_cap(VendorKind::TencentCiamImport)),
        answer in completed_job_answer(),
    ) {
        let response = response(http::StatusCode::OK, to_body(&answer));
        check_parsers_of(VendorKind::TencentCiamImport, &users, &response)?;
        let sent: Vec<&User> = users.iter().take(user_cap(VendorKind::TencentCiamImport)).collect();
        let jobs = vendor(VendorKind::TencentCiamImport);
        let poll = jobs.jobs().map(|jobs| jobs.parse_poll(&sent, JOB_ID, &response));
        prop_assert!(matches!(poll, Some(JobStatus::Finished(_))), "{:?}", poll);
        check_import_job_claims(&users, &answer, &response)?;
    }
}

/// CIAM CreateUser (docs/vendors/ciam.md#response): a user is registered
/// only with the answer's non-empty `User.UserId`, never on a `User` that is
/// null, absent or without it.
fn check_create_user_claims(
    users: &[User],
    answer: &Value,
    response: &http::Response<Bytes>,
) -> Result<(), TestCaseError> {
    let sent: Vec<&User> = users
        .iter()
        .take(user_cap(VendorKind::TencentCiam))
        .collect();
    let report = vendor(VendorKind::TencentCiam).parse_response(&sent, response);
    let user_id = answer
        .pointer("/Response/User/UserId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty());
    for outcome in &report.outcomes {
        if let VendorOutcome::Registered { vendor_user_id } = outcome {
            prop_assert!(
                user_id.is_some() && vendor_user_id.as_deref() == user_id,
                "registered without the answer's UserId: {:?} for {}",
                report,
                answer
            );
        }
    }
    Ok(())
}

/// The identifiers a CIAM import names a failed user by (UserName,
/// PhoneNumber, Email), the empty ones left out.
fn identifiers_of(user: &User) -> Vec<&str> {
    user.ciam
        .iter()
        .flat_map(|profile| [&profile.user_name, &profile.phone_number, &profile.email])
        .map(String::as_str)
        .filter(|identifier| !identifier.is_empty())
        .collect()
}

/// CIAM ListJobs (docs/vendors/ciam-import.md#matching-failed-users): in a
/// finished job, a user is registered only if every failure entry names
/// some user sent and none names this one; a user is reported existing or
/// rejected only if an entry names an identifier of it no other user sent has.
fn check_import_job_claims(
    users: &[User],
    answer: &Value,
    response: &http::Response<Bytes>,
) -> Result<(), TestCaseError> {
    let module = vendor(VendorKind::TencentCiamImport);
    let Some(jobs) = module.jobs() else {
        return Ok(());
    };
    let sent: Vec<&User> = users
        .iter()
        .take(user_cap(VendorKind::TencentCiamImport))
        .collect();
    let JobStatus::Finished(report) = jobs.parse_poll(&sent, JOB_ID, response) else {
        return Ok(());
    };
    // the job the poll read: the first the JobSet lists under the id asked about
    let job = answer
        .pointer("/Response/JobSet")
        .and_then(Value::as_array)
        .and_then(|jobs| jobs.iter().find(|job| job["Id"] == JOB_ID));
    let entries = |list: &str, field: &str| -> Vec<Option<String>> {
        job.and_then(|job| job.get(list))
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .map(|entry| {
                        entry
                            .get(field)
                            .and_then(Value::as_str)
                            .filter(|id| !id.is_empty())
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let named: Vec<Option<String>> = entries("FailedUsers", "FailedUserIdentification")
        .into_iter()
        .chain(entries("ErrorDetails", "UserId"))
        .collect();
    let every_entry_names_a_user_sent = named.iter().all(|identification| {
        identification.as_deref().is_some_and(|identification| {
            sent.iter()
                .any(|user| identifiers_of(user).contains(&identification))
        })
    });
    for (index, (user, outcome)) in sent.iter().zip(&report.outcomes).enumerate() {
        let own = identifiers_of(user);
        let named_here = |identifier: &str| named.iter().flatten().any(|id| id == identifier);
        match outcome {
            VendorOutcome::Registered { .. } => prop_assert!(
                every_entry_names_a_user_sent
                    && !own.iter().any(|identifier| named_here(identifier)),
                "user {} registered though the job's entries do not prove it: {:?} for {}",
                index,
                report,
                answer
            ),
            VendorOutcome::AlreadyExists { .. } | VendorOutcome::Rejected { .. } => {
                let named_alone =
                    own.iter()
                        .filter(|identifier| named_here(identifier))
                        .any(|identifier| {
                            sent.iter()
                                .enumerate()
                                .filter(|(other, _)| *other != index)
                                .all(|(_, other)| !identifiers_of(other).contains(identifier))
                        });
                prop_assert!(
                    named_alone,
                    "user {} answered by an entry that does not name it alone: {:?} for {}",
                    index,
                    report,
                    answer
                );
            }
            VendorOutcome::Failed { .. } => {}
        }
    }
    Ok(())
}

/// A document of several megabytes in the real shape of `kind`'s answer:
/// `entries` list entries (far more than the users sent) and a message of
/// `message_bytes` bytes.
fn huge_answer(kind: VendorKind, entries: usize, message_bytes: usize) -> Value {
    let message = "m".repeat(message_bytes);
    let ids = (0..entries).map(|n| (n % 40).to_string());
    match kind {
        VendorKind::TencentLcic => json!({"Response": {
            "Users": ids.map(|id| json!({"SdkAppId": 1, "UserId": format!("v{id}"), "OriginId": id}))
                .collect::<Vec<_>>(),
            "RequestId": message,
        }}),
        VendorKind::ZegoZim => json!({
            "Code": 0, "Message": message, "RequestId": "r",
            "ErrorList": ids.map(|id| json!({"UserId": id, "SubCode": 660_700_002, "SubMessage": "exists"}))
                .collect::<Vec<_>>(),
        }),
        VendorKind::VolcRtc => json!({
            "ResponseMetadata": {"RequestId": message},
            "Result": {"FailedInfos": ids.map(|id| json!({"UserId": id, "Code": "InvalidParam", "Message": "m"}))
                .collect::<Vec<_>>()},
        }),
        VendorKind::TencentCiam => json!({"Response": {
            "User": {"UserId": message, "UserName": "u1"},
            "RequestId": "r",
            "Padding": ids.map(|id| format!("padding-{id}")).collect::<Vec<_>>(),
        }}),
        VendorKind::TencentCiamImport => json!({"Response": {
            "JobSet": [{
                "Id": JOB_ID, "Status": "COMPLETED",
                "FailedUsers": ids.map(|id| json!({"FailedUserIdentification": format!("u{id}"), "FailedReason": message.len().to_string()}))
                    .collect::<Vec<_>>(),
                "ErrorDetails": [{"UserId": "u1", "Error": message}],
            }],
            "RequestId": "r",
        }}),
    }
}

proptest! {
    #![proptest_config(cases(10))]

    /// 10 cases, 1.5 to 7 MB each: huge answers are read (or refused) without
    /// panicking, and still answer once per user sent, not once per entry.
    #[test]
    fn huge_answers_are_read_once_per_user_sent(
        kind in prop::sample::select(VendorKind::ALL.to_vec()),
        users in sent_users(20),
        entries in 50_000usize..=100_000,
        message_bytes in 1_000_000usize..=2_000_000,
    ) {
        let body = to_body(&huge_answer(kind, entries, message_bytes));
        prop_assert!(body.len() >= 1_000_000, "a huge answer is megabytes: {}", body.len());
        check_parsers_of(kind, &users, &response(http::StatusCode::OK, body))?;
    }
}

/// `depth` opening brackets of `opening`, then as many closing ones if
/// `balanced`, inside one of the vendors' envelopes (or bare).
fn deeply_nested(envelope: usize, depth: usize, object: bool, balanced: bool) -> Vec<u8> {
    const ENVELOPES: [(&str, &str); 7] = [
        ("", ""),
        (r#"{"Response":"#, "}"),
        (r#"{"Response":{"RequestId":"r","Users":"#, "}}"),
        (r#"{"Code":0,"ErrorList":"#, "}"),
        (r#"{"ResponseMetadata":{},"Result":{"FailedInfos":"#, "}}"),
        (r#"{"Response":{"User":"#, "}}"),
        (r#"{"Response":{"JobSet":"#, "}}"),
    ];
    let (prefix, suffix) = ENVELOPES[envelope % ENVELOPES.len()];
    let (open, close): (&[u8], &[u8]) = if object {
        (br#"{"a":"#, b"}")
    } else {
        (b"[", b"]")
    };
    let mut body = Vec::with_capacity(prefix.len() + depth * (open.len() + 1) + suffix.len());
    body.extend_from_slice(prefix.as_bytes());
    for _ in 0..depth {
        body.extend_from_slice(open);
    }
    if balanced {
        // an object's innermost value, so the text is valid JSON below the limit
        if object {
            body.extend_from_slice(b"0");
        }
        for _ in 0..depth {
            body.extend_from_slice(close);
        }
        body.extend_from_slice(suffix.as_bytes());
    }
    body
}

proptest! {
    #![proptest_config(cases(64))]

    /// 64 cases, nesting up to 20,000 deep: serde_json stops at its recursion
    /// limit of 128, so the answer is classified as malformed (or by its
    /// status) for every user, and no stack overflows.
    #[test]
    fn deeply_nested_answers_are_classified_not_a_stack_overflow(
        users in sent_users(20),
        status in prop_oneof![3 => Just(http::StatusCode::OK), 1 => http_status()],
        envelope in 0usize..7,
        depth in prop_oneof![1 => 1usize..=200, 3 => 129usize..=20_000],
        object in any::<bool>(),
        balanced in prop::bool::weighted(0.8),
    ) {
        let answer = response(status, deeply_nested(envelope, depth, object, balanced));
        check_every_parser(&users, &answer)?;
        if !is_json(answer.body()) {
            check_unreadable_answer_fails_everyone(&users, &answer)?;
        }
    }
}

/// The deepest document the brief names, always: 10,000 nested arrays bare
/// and inside every envelope, at HTTP 200.
#[test]
fn ten_thousand_nested_arrays_are_a_malformed_answer_for_every_parser() {
    let users: Vec<User> = (1..=3)
        .map(|n| User {
            user_id: n.to_string(),
            ciam: Some(CiamProfile {
                user_name: format!("u{n}"),
                ..CiamProfile::default()
            }),
            ..User::default()
        })
        .collect();
    for envelope in 0..7 {
        let answer = response(
            http::StatusCode::OK,
            deeply_nested(envelope, 10_000, false, true),
        );
        assert!(!is_json(answer.body()));
        check_every_parser(&users, &answer).unwrap();
        check_unreadable_answer_fails_everyone(&users, &answer).unwrap();
    }
}

/// A scalar where the parsers expect an object, at the top level: the
/// cheapest wrong type, for every parser and every scalar type.
#[test]
fn a_scalar_answer_is_malformed_for_every_parser() {
    let users = vec![User {
        user_id: "1".to_owned(),
        ..User::default()
    }];
    let mut runner = proptest::test_runner::TestRunner::new(cases(64));
    runner
        .run(&json_scalar(), |scalar| {
            let answer = response(http::StatusCode::OK, to_body(&scalar));
            check_every_parser(&users, &answer)?;
            check_unreadable_answer_fails_everyone(&users, &answer)
        })
        .unwrap();
}
