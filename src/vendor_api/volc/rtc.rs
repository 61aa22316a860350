//! Volcengine RTC `RegisterUsers` (2020-12-01).
//!
//! Up to 20 users per call, each identified by an int64 `UserId`; the call is
//! a JSON POST signed with SignerV4 (`volc_sign`). The answer's
//! `ResponseMetadata.Error` applies to the whole call; otherwise
//! `Result.FailedInfos` lists the users that failed and every other user was
//! registered (docs/vendors/volc-rtc.md#partial-failure). A userId that is not an int64
//! is rejected before sending, never sent as a string.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::signing::{self, VolcCredentials};
use crate::domain::{Rejection, User, VendorKind};
use std::sync::Arc;

use crate::vendor_api::settings::{SettingError, TargetSettings, required};
use crate::vendor_api::{
    AttemptContext, BuildError, CallReport, ErrorClass, ErrorCode, RegistrarCode, SharedVendor,
    VendorApi, VendorOutcome, answer, endpoint_uri,
};

pub const ACTION: &str = "RegisterUsers";
pub const VERSION: &str = "2020-12-01";
/// docs/vendors/volc-rtc.md#endpoint: RegisterUsers lives in the SDK's `im` package but signs as
/// service `rtc`.
pub const SERVICE: &str = "rtc";
/// docs/vendors/volc-rtc.md#endpoint: the region of `rtc.volcengineapi.com`.
pub const DEFAULT_REGION: &str = "cn-north-1";
/// RTC RegisterUsers (docs/vendors/volc-rtc.md#batch-size): "一次最多注册 20 个用户".
pub const MAX_USERS_PER_CALL: usize = 20;
/// RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): NickName "长度不能超过 100 字符" (characters);
/// the SDK comment says bytes (docs/vendors/volc-rtc.md#field-rules). The published document is
/// followed: characters.
pub const MAX_NICK_NAME_CHARS: usize = 100;
/// RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): Portrait "长度不能超过500字符" (characters).
pub const MAX_PORTRAIT_CHARS: usize = 500;
/// docs/vendors/volc-rtc.md#field-rules (SDK comment): Ext holds at most 20 keys.
pub const MAX_EXT_KEYS: usize = 20;
/// docs/vendors/volc-rtc.md#field-rules (SDK comment): an Ext key is at most 50 bytes.
pub const MAX_EXT_KEY_BYTES: usize = 50;
/// docs/vendors/volc-rtc.md#field-rules (SDK comment): an Ext value is at most 500 bytes.
pub const MAX_EXT_VALUE_BYTES: usize = 500;
/// docs/vendors/volc-rtc.md#field-rules (SDK comment): Ext keys must not start with `s:` (reserved
/// by the vendor).
pub const RESERVED_EXT_PREFIX: &str = "s:";
/// docs/vendors/volc-rtc.md#headers: JSON APIs send `application/json`.
pub const CONTENT_TYPE: &str = "application/json";

/// The configuration of one Volcengine RTC application.
#[derive(Debug, Clone)]
pub struct VolcConfig {
    pub endpoint: String,
    pub app_id: u64,
    /// Signing region, default `cn-north-1` (docs/vendors/volc-rtc.md#endpoint).
    pub region: String,
    pub credentials: VolcCredentials,
}

/// Builds the module of a `volc-rtc` target.
pub fn from_settings(settings: &dyn TargetSettings) -> Result<SharedVendor, SettingError> {
    Ok(Arc::new(VolcRtc::new(VolcConfig {
        endpoint: settings.endpoint().to_owned(),
        app_id: required(settings.app_id(), "app_id")?,
        // docs/vendors/volc-rtc.md#signing: RTC signs for region cn-north-1 unless overseas
        region: settings.region().unwrap_or(DEFAULT_REGION).to_owned(),
        credentials: VolcCredentials {
            access_key_id: settings.identifier("secret_id")?,
            secret_access_key: settings.secret("secret_key")?,
        },
    })))
}

#[derive(Debug)]
pub struct VolcRtc {
    config: VolcConfig,
}

impl VolcRtc {
    pub fn new(config: VolcConfig) -> Self {
        VolcRtc { config }
    }
}

/// One entry of `Users` (RTC RegisterUsers "Users", docs/vendors/volc-rtc.md#request); empty
/// optional fields are omitted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterUser {
    /// RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): UserId is a Long; sent as a JSON
    /// number, never a string.
    pub user_id: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nick_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub portrait: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ext: BTreeMap<String, String>,
}

/// The `RegisterUsers` request body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterUsersBody {
    /// RTC RegisterUsers (docs/vendors/volc-rtc.md#request): AppId is an Integer, sent as a JSON
    /// number (the SDK types it int32).
    pub app_id: u64,
    pub users: Vec<RegisterUser>,
}

/// Why a userId is not a Volcengine UserId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserIdError {
    NotNumeric,
    OutOfRange,
    NotCanonical,
}

/// The int64 a userId names. Only the canonical decimal form is accepted, so
/// that the id sent, the id the vendor answers in FailedInfos and the
/// caller's userId are the same text (`007` or `+7` would all become 7).
pub fn parse_user_id(user_id: &str) -> Result<i64, UserIdError> {
    let digits = user_id
        .strip_prefix(['-', '+'])
        .unwrap_or(user_id)
        .as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(UserIdError::NotNumeric);
    }
    let value: i64 = user_id.parse().map_err(|_| UserIdError::OutOfRange)?;
    if value.to_string() != user_id {
        return Err(UserIdError::NotCanonical);
    }
    Ok(value)
}

/// Checks one user against the documented field rules (RTC RegisterUsers,
/// docs/vendors/volc-rtc.md#field-rules).
pub fn validate_user(user: &User) -> Result<(), Rejection> {
    const NOT_INTEGER: &str = "validation.not_integer";
    match parse_user_id(&user.user_id) {
        Ok(_) => {}
        // RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): UserId is a Long (int64).
        Err(UserIdError::NotNumeric) => {
            return Err(Rejection::new(
                "userId",
                NOT_INTEGER,
                "must be a decimal integer, as Volcengine RTC UserIds are int64 numbers",
            ));
        }
        Err(UserIdError::OutOfRange) => {
            return Err(Rejection::new(
                "userId",
                NOT_INTEGER,
                format!(
                    "must be an int64 between {} and {} (got a number outside that range)",
                    i64::MIN,
                    i64::MAX
                ),
            ));
        }
        Err(UserIdError::NotCanonical) => {
            return Err(Rejection::new(
                "userId",
                NOT_INTEGER,
                "must be written in canonical decimal form, without '+' or leading zeros",
            ));
        }
    }
    let nick_name_chars = user.display_name.chars().count();
    if nick_name_chars > MAX_NICK_NAME_CHARS {
        return Err(Rejection::new(
            "displayName",
            "validation.too_long",
            format!("must be at most {MAX_NICK_NAME_CHARS} characters (got {nick_name_chars})"),
        ));
    }
    let portrait_chars = user.avatar_url.chars().count();
    if portrait_chars > MAX_PORTRAIT_CHARS {
        return Err(Rejection::new(
            "avatarUrl",
            "validation.too_long",
            format!("must be at most {MAX_PORTRAIT_CHARS} characters (got {portrait_chars})"),
        ));
    }
    validate_ext(&user.attributes)
}

fn validate_ext(attributes: &BTreeMap<String, String>) -> Result<(), Rejection> {
    if attributes.len() > MAX_EXT_KEYS {
        return Err(Rejection::new(
            "attributes",
            "validation.too_many",
            format!(
                "must have at most {MAX_EXT_KEYS} keys (got {})",
                attributes.len()
            ),
        ));
    }
    for (key, value) in attributes {
        // The key is echoed in a rule only once it is known to be short.
        if key.len() > MAX_EXT_KEY_BYTES {
            return Err(Rejection::new(
                "attributes",
                "validation.too_long",
                format!(
                    "keys must be at most {MAX_EXT_KEY_BYTES} bytes (got a key of {} bytes)",
                    key.len()
                ),
            ));
        }
        if key.starts_with(RESERVED_EXT_PREFIX) {
            return Err(Rejection::new(
                "attributes",
                "validation.reserved_prefix",
                format!("keys must not start with {RESERVED_EXT_PREFIX:?} (got key {key:?})"),
            ));
        }
        if value.len() > MAX_EXT_VALUE_BYTES {
            return Err(Rejection::new(
                "attributes",
                "validation.too_long",
                format!(
                    "values must be at most {MAX_EXT_VALUE_BYTES} bytes (got {} bytes for key {key:?})",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

impl VendorApi for VolcRtc {
    fn kind(&self) -> VendorKind {
        VendorKind::VolcRtc
    }

    fn action(&self) -> &'static str {
        ACTION
    }

    fn repeat_is_safe(&self) -> bool {
        // RTC RegisterUsers (docs/vendors/volc-rtc.md#repeats): registration only records the users
        // (and their tags) used for all-member broadcast; registering a UserId again re-registers
        // it with the data sent, and no "already exists" failure is documented.
        // Resending a call whose answer was lost therefore changes nothing.
        true
    }

    fn validate(&self, user: &User) -> Result<(), Rejection> {
        validate_user(user)
    }

    fn build_request(
        &self,
        users: &[&User],
        attempt: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        let users = users
            .iter()
            .enumerate()
            .map(|(position, user)| {
                let user_id = parse_user_id(&user.user_id).map_err(|_| {
                    BuildError::Unvalidated(format!(
                        "the userId at position {position} is not an int64"
                    ))
                })?;
                Ok(RegisterUser {
                    user_id,
                    nick_name: user.display_name.clone(),
                    tags: user.tags.clone(),
                    portrait: user.avatar_url.clone(),
                    ext: user.attributes.clone(),
                })
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        let body = serde_json::to_vec(&RegisterUsersBody {
            app_id: self.config.app_id,
            users,
        })?;
        let (base, host) = endpoint_uri(&self.config.endpoint)?;
        // RTC RegisterUsers (docs/vendors/volc-rtc.md#endpoint): POST
        // https://rtc.volcengineapi.com?Action=RegisterUsers&Version=2020-12-01.
        let query = signing::canonical_query(&[("Action", ACTION), ("Version", VERSION)]);
        let uri: http::Uri =
            format!("{base}?{query}")
                .parse()
                .map_err(|_| BuildError::Endpoint {
                    endpoint: self.config.endpoint.clone(),
                    reason: "not a valid URL once the query is added".to_owned(),
                })?;
        let mut request = http::Request::post(uri)
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Bytes::from(body))?;
        // docs/vendors/volc-rtc.md#headers: SignedHeaders content-type;host;x-content-sha256;x-date,
        // as the SDK signs.
        signing::sign_request(
            &mut request,
            &self.config.credentials,
            &self.config.region,
            SERVICE,
            attempt.unix_time,
        )?;
        Ok(request)
    }

    fn parse_response(&self, users: &[&User], response: &http::Response<Bytes>) -> CallReport {
        parse_register_users(users, response.status(), response.body())
    }
}

/// What a call-level error code means for every user of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallErrorKind {
    /// The call failed; the class says whether it may be retried.
    Failed(ErrorClass),
    /// The vendor refused the request's data: every user is rejected.
    Rejected,
}

/// Classifies a `ResponseMetadata.Error.Code` (docs/vendors/volc-rtc.md#error-codes, common and IM
/// codes); an unknown code is classified by the HTTP status it came with.
pub fn classify_call_error(code: &str, status: http::StatusCode) -> CallErrorKind {
    match code {
        // docs/vendors/volc-rtc.md#error-codes: FlowLimitExceeded is the quota answer; the
        // volcengine-go-sdk retryer also treats RequestLimitExceeded, RequestThrottled and
        // Throttling* as throttling.
        "FlowLimitExceeded" | "RequestLimitExceeded" | "RequestThrottled" => {
            CallErrorKind::Failed(ErrorClass::Throttled)
        }
        code if code.starts_with("Throttling") => CallErrorKind::Failed(ErrorClass::Throttled),
        // docs/vendors/volc-rtc.md#error-codes: transient server-side failures.
        "InternalError" | "InternalServiceTimeout" | "ServiceUnavailableTemp" => {
            CallErrorKind::Failed(ErrorClass::Retryable)
        }
        // docs/vendors/volc-rtc.md#error-codes: "re-sign once (clock)"; every attempt is signed
        // anew with a fresh X-Date.
        "InvalidTimestamp" => CallErrorKind::Failed(ErrorClass::Retryable),
        // docs/vendors/volc-rtc.md#error-codes: credentials, routing and application problems.
        "SignatureDoesNotMatch"
        | "InvalidAccessKey"
        | "AccessDenied"
        | "ServiceNotFound"
        | "InvalidActionOrVersion"
        | "MissingRequestInfo"
        | "AppNotFound"
        | "AppStatusException"
        | "NoAuth" => CallErrorKind::Failed(ErrorClass::Permanent),
        // docs/vendors/volc-rtc.md#error-codes: the request's data was refused.
        "MissingParameter" | "InvalidParam" | "JsonParsingError" => CallErrorKind::Rejected,
        _ => CallErrorKind::Failed(answer::status_class(status)),
    }
}

/// A `FailedInfos` code for one user: transient and throttle codes may be
/// retried, any other is the vendor refusing that user's data.
pub fn classify_user_error(code: &str) -> Option<ErrorClass> {
    match classify_call_error(code, http::StatusCode::OK) {
        CallErrorKind::Failed(class) if class.is_retryable() => Some(class),
        _ => None,
    }
}

/// A `FailedInfos` UserId as decimal text: the document types it String, the
/// SDK int64 (docs/vendors/volc-rtc.md#response), so both are accepted.
fn failed_user_id(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(
            parse_user_id(text.trim())
                .map(|user_id| user_id.to_string())
                .unwrap_or_else(|_| text.clone()),
        ),
        Value::Number(number) => number
            .as_i64()
            .map(|user_id| user_id.to_string())
            .or_else(|| number.as_u64().map(|user_id| user_id.to_string())),
        _ => None,
    }
}

/// The per-user failures of `Result.FailedInfos`, by decimal UserId.
fn failed_infos(result: Option<&Value>) -> Result<HashMap<String, (ErrorCode, String)>, String> {
    let result = match result {
        None | Some(Value::Null) => return Ok(HashMap::new()),
        Some(Value::Object(result)) => result,
        Some(_) => return Err("vendor answered a Result that is not an object".to_owned()),
    };
    let entries = match result.get("FailedInfos") {
        None | Some(Value::Null) => return Ok(HashMap::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err("vendor answered FailedInfos that is not an array".to_owned()),
    };
    let mut failures = HashMap::with_capacity(entries.len());
    for entry in entries {
        // A failure that cannot be tied to a user makes every "registered" unsure.
        let user_id = entry
            .get("UserId")
            .and_then(failed_user_id)
            .ok_or_else(|| {
                "vendor answered a FailedInfos entry without a string or integer UserId".to_owned()
            })?;
        let text = |field: &str| {
            entry
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let code = Some(text("Code"))
            .filter(|code| !code.is_empty())
            .map_or(RegistrarCode::UnspecifiedFailure.into(), ErrorCode::from);
        failures.insert(user_id, (code, text("Message")));
    }
    Ok(failures)
}

/// Maps a `RegisterUsers` answer to one outcome per user sent.
pub fn parse_register_users(users: &[&User], status: http::StatusCode, body: &[u8]) -> CallReport {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let metadata = parsed
        .as_ref()
        .and_then(|parsed| parsed.get("ResponseMetadata"))
        .filter(|metadata| metadata.is_object());
    let Some(metadata) = metadata else {
        if status != http::StatusCode::OK {
            let class = answer::status_class(status);
            return CallReport::call_failed(
                users.len(),
                None,
                class,
                answer::status_code(status),
                &format!("vendor answered HTTP {status}"),
            );
        }
        return answer::malformed(
            users.len(),
            None,
            &format!(
                "vendor answered HTTP 200 without a JSON ResponseMetadata object ({} bytes)",
                body.len()
            ),
        );
    };
    let request_id = metadata
        .get("RequestId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // docs/vendors/volc-rtc.md#response-envelope: "if 200 still check ResponseMetadata.Error"; it
    // applies to the whole call.
    if let Some(error) = metadata.get("Error").filter(|error| !error.is_null()) {
        // An empty Code names no failure either: passed on as the vendor's, it
        // would be a failure with an empty code (found by tests/properties).
        let code = error
            .get("Code")
            .and_then(Value::as_str)
            .filter(|code| !code.is_empty());
        let Some(code) = code else {
            return answer::malformed(
                users.len(),
                request_id,
                "vendor answered an Error without a Code",
            );
        };
        let message = error
            .get("Message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return match classify_call_error(code, status) {
            CallErrorKind::Rejected => {
                CallReport::call_rejected(users.len(), request_id, code, message)
            }
            CallErrorKind::Failed(class) => {
                CallReport::call_failed(users.len(), request_id, class, code, message)
            }
        };
    }
    // docs/vendors/volc-rtc.md#response-envelope: "Failure if HTTP ≠200", even without an Error.
    if status != http::StatusCode::OK {
        return CallReport::call_failed(
            users.len(),
            request_id,
            answer::status_class(status),
            answer::status_code(status),
            &format!("vendor answered HTTP {status}"),
        );
    }
    let failures = match failed_infos(parsed.as_ref().and_then(|parsed| parsed.get("Result"))) {
        Ok(failures) => failures,
        Err(message) => return answer::malformed(users.len(), request_id, &message),
    };
    let outcomes = users
        .iter()
        .map(|user| {
            let user_id = parse_user_id(&user.user_id)
                .map(|user_id| user_id.to_string())
                .unwrap_or_else(|_| user.user_id.clone());
            match failures.get(&user_id) {
                // RTC RegisterUsers (docs/vendors/volc-rtc.md#partial-failure): FailedInfos lists
                // the users whose registration failed.
                None => VendorOutcome::Registered {
                    vendor_user_id: None,
                },
                Some((code, message)) => match classify_user_error(code.as_str()) {
                    Some(class) => VendorOutcome::failed(class, code, message),
                    None => VendorOutcome::Rejected {
                        code: code.clone(),
                        message: message.clone(),
                    },
                },
            }
        })
        .collect();
    CallReport {
        vendor_request_id: request_id,
        error_code: None,
        error_class: None,
        outcomes,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;

    // docs/vendors/volc-rtc.md#test-vectors: the AK/SK of the official signing demo.
    const AK: &str = "AKLTYWViMTVmZGYzM2E0NDI5Mzk2MDZjNjFmMjc2MjRjMzg";
    const SK: &str = "WkRZeE1EQmxPVGhsWWpWak5HVmtNbUUxTXpZeU9UVXlOMlE1TmpZeVlqTQ==";
    /// docs/vendors/volc-rtc.md#test-vectors: X-Date 20240619T071306Z.
    const V2_TIME: i64 = 1_718_781_186;

    fn volc(app_id: u64) -> VolcRtc {
        VolcRtc::new(VolcConfig {
            endpoint: "https://rtc.volcengineapi.com".to_owned(),
            app_id,
            region: DEFAULT_REGION.to_owned(),
            credentials: VolcCredentials {
                access_key_id: AK.to_owned(),
                secret_access_key: SecretString::from(SK),
            },
        })
    }

    fn user(user_id: &str) -> User {
        User {
            user_id: user_id.to_owned(),
            ..User::default()
        }
    }

    fn at(unix_time: i64) -> AttemptContext {
        AttemptContext {
            unix_time,
            nonce: "0123456789abcdef".to_owned(),
        }
    }

    fn parse(users: &[User], status: u16, body: &str) -> CallReport {
        let refs: Vec<&User> = users.iter().collect();
        parse_register_users(
            &refs,
            http::StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        )
    }

    fn rejected(code: impl Into<ErrorCode>, message: &str) -> VendorOutcome {
        VendorOutcome::Rejected {
            code: code.into(),
            message: message.to_owned(),
        }
    }

    const REGISTERED: VendorOutcome = VendorOutcome::Registered {
        vendor_user_id: None,
    };

    #[test]
    fn the_request_reproduces_vector_v2_byte_for_byte() {
        // docs/vendors/volc-rtc.md#test-vectors V2: the body, its hash and the signature 22d0292a....
        let alice = User {
            user_id: "10001".to_owned(),
            display_name: "alice".to_owned(),
            ..User::default()
        };
        let request = volc(123456).build_request(&[&alice], &at(V2_TIME)).unwrap();
        assert_eq!(
            request.body().as_ref(),
            br#"{"AppId":123456,"Users":[{"UserId":10001,"NickName":"alice"}]}"#
        );
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "https://rtc.volcengineapi.com/?Action=RegisterUsers&Version=2020-12-01"
        );
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("host"), "rtc.volcengineapi.com");
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("x-date"), "20240619T071306Z");
        assert_eq!(
            header("x-content-sha256"),
            "73b1dbd4d92c41fb9ffc5bc8ddfe5ceb7fce4c759a500cb4d2363f2b35871e91"
        );
        assert_eq!(
            header("authorization"),
            "HMAC-SHA256 Credential=AKLTYWViMTVmZGYzM2E0NDI5Mzk2MDZjNjFmMjc2MjRjMzg/20240619/cn-north-1/rtc/request, \
             SignedHeaders=content-type;host;x-content-sha256;x-date, \
             Signature=22d0292ad03100aa0cf1114068a362ffc50dda1d4c0c461b57337883ada8d690"
        );
    }

    #[test]
    fn request_body_carries_every_documented_field() {
        // RTC RegisterUsers "请求示例" (docs/vendors/volc-rtc.md#examples): UserId, NickName, Portrait,
        // Tags and Ext (AppId replaced).
        let user = User {
            user_id: "10004".to_owned(),
            display_name: "Your_NickName".to_owned(),
            avatar_url: "http://xxxxx".to_owned(),
            tags: vec!["标签值".to_owned()],
            attributes: BTreeMap::from([("key".to_owned(), "value".to_owned())]),
            ciam: None,
        };
        let request = volc(7).build_request(&[&user], &at(V2_TIME)).unwrap();
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(
            body,
            json!({"AppId": 7, "Users": [{
                "UserId": 10004, "NickName": "Your_NickName", "Portrait": "http://xxxxx",
                "Tags": ["标签值"], "Ext": {"key": "value"}
            }]})
        );
        // AppId and UserId are JSON numbers, never strings.
        assert!(body["AppId"].is_u64() && body["Users"][0]["UserId"].is_i64());
    }

    #[test]
    fn optional_fields_are_omitted_when_empty_and_ids_stay_exact() {
        // RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): only UserId is required; i64
        // extremes are sent exactly.
        let users = [user("-9223372036854775808"), user("9223372036854775807")];
        let refs: Vec<&User> = users.iter().collect();
        let request = volc(1).build_request(&refs, &at(V2_TIME)).unwrap();
        assert_eq!(
            std::str::from_utf8(request.body()).unwrap(),
            r#"{"AppId":1,"Users":[{"UserId":-9223372036854775808},{"UserId":9223372036854775807}]}"#
        );
    }

    #[test]
    fn an_unvalidated_user_id_fails_the_build_instead_of_being_sent() {
        let error = volc(1)
            .build_request(&[&user("abc")], &at(V2_TIME))
            .unwrap_err();
        assert!(matches!(error, BuildError::Unvalidated(_)), "{error}");
        assert!(error.to_string().contains("position 0"), "{error}");
    }

    #[test]
    fn the_signature_verifies_against_the_sent_headers_at_another_endpoint() {
        let target = VolcRtc::new(VolcConfig {
            endpoint: "http://127.0.0.1:8123".to_owned(),
            app_id: 1,
            region: "ap-southeast-1".to_owned(),
            credentials: VolcCredentials {
                access_key_id: AK.to_owned(),
                secret_access_key: SecretString::from(SK),
            },
        });
        let attempt = AttemptContext::now();
        let request = target.build_request(&[&user("1")], &attempt).unwrap();
        let verified = super::super::verify::verify(
            "POST",
            request.uri(),
            request.headers(),
            request.body(),
            attempt.unix_time,
            |_| Some(SecretString::from(SK)),
        )
        .unwrap();
        assert_eq!(verified.region, "ap-southeast-1");
        assert_eq!(verified.service, SERVICE);
        assert!(
            request.headers()["authorization"]
                .to_str()
                .unwrap()
                .contains("SignedHeaders=content-type;host;x-content-sha256;x-date,")
        );
    }

    type Change<'a> = &'a dyn Fn(&mut User);

    #[test]
    fn validation_follows_the_documented_limits() {
        let with = |change: &dyn Fn(&mut User)| {
            let mut user = user("10001");
            change(&mut user);
            validate_user(&user)
                .err()
                .map(|rejection| (rejection.field, rejection.code, rejection.rule))
        };
        let attributes = |count: usize| -> BTreeMap<String, String> {
            (0..count)
                .map(|index| (format!("k{index}"), "v".to_owned()))
                .collect()
        };
        // accepted at each limit (RTC RegisterUsers, docs/vendors/volc-rtc.md#field-rules)
        for accepted in [
            with(&|_| {}),
            with(&|user| user.user_id = "-42".to_owned()),
            with(&|user| user.user_id = "0".to_owned()),
            with(&|user| user.display_name = "名".repeat(100)),
            with(&|user| user.avatar_url = "é".repeat(500)),
            with(&|user| user.attributes = attributes(20)),
            with(&|user| user.attributes = BTreeMap::from([("k".repeat(50), "v".repeat(500))])),
            with(&|user| user.attributes = BTreeMap::from([("xs:".to_owned(), String::new())])),
            with(&|user| user.tags = vec!["age".to_owned(), "old".to_owned()]),
        ] {
            assert_eq!(accepted, None);
        }
        let cases: [(Change<'_>, &str, &str, &str); 12] = [
            (
                &|user| user.user_id = "abc".to_owned(),
                "userId",
                "validation.not_integer",
                "decimal integer",
            ),
            (
                &|user| user.user_id = "12a".to_owned(),
                "userId",
                "validation.not_integer",
                "decimal integer",
            ),
            (
                &|user| user.user_id = "1.5".to_owned(),
                "userId",
                "validation.not_integer",
                "decimal integer",
            ),
            (
                &|user| user.user_id = "-".to_owned(),
                "userId",
                "validation.not_integer",
                "decimal integer",
            ),
            (
                &|user| user.user_id = "12345678901234567890123".to_owned(),
                "userId",
                "validation.not_integer",
                "int64",
            ),
            (
                &|user| user.user_id = "9223372036854775808".to_owned(),
                "userId",
                "validation.not_integer",
                "int64",
            ),
            (
                &|user| user.user_id = "007".to_owned(),
                "userId",
                "validation.not_integer",
                "leading zeros",
            ),
            (
                &|user| user.user_id = "+7".to_owned(),
                "userId",
                "validation.not_integer",
                "canonical",
            ),
            // RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): NickName at most 100 characters.
            (
                &|user| user.display_name = "名".repeat(101),
                "displayName",
                "validation.too_long",
                "at most 100 characters (got 101)",
            ),
            // RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): Portrait at most 500 characters.
            (
                &|user| user.avatar_url = "a".repeat(501),
                "avatarUrl",
                "validation.too_long",
                "at most 500 characters (got 501)",
            ),
            // docs/vendors/volc-rtc.md#field-rules: at most 20 Ext keys.
            (
                &|user| user.attributes = attributes(21),
                "attributes",
                "validation.too_many",
                "at most 20 keys (got 21)",
            ),
            // docs/vendors/volc-rtc.md#field-rules: keys must not start with "s:".
            (
                &|user| user.attributes = BTreeMap::from([("s:role".to_owned(), "x".to_owned())]),
                "attributes",
                "validation.reserved_prefix",
                "\"s:\"",
            ),
        ];
        for (change, field, code, rule) in cases {
            let (got_field, got_code, got_rule) = with(change).expect("rejected");
            assert_eq!((got_field, got_code), (field, code), "{got_rule}");
            assert!(
                got_rule.contains(rule),
                "{got_rule:?} should contain {rule:?}"
            );
        }
        // docs/vendors/volc-rtc.md#field-rules: key at most 50 bytes, value at most 500 bytes
        // (bytes, not characters).
        let (field, code, rule) =
            with(&|user| user.attributes = BTreeMap::from([("é".repeat(26), "v".to_owned())]))
                .unwrap();
        assert_eq!((field, code), ("attributes", "validation.too_long"));
        assert!(
            rule.contains("at most 50 bytes (got a key of 52 bytes)"),
            "{rule}"
        );
        let (field, code, rule) =
            with(&|user| user.attributes = BTreeMap::from([("bio".to_owned(), "x".repeat(501))]))
                .unwrap();
        assert_eq!((field, code), ("attributes", "validation.too_long"));
        assert!(
            rule.contains("at most 500 bytes (got 501 bytes for key \"bio\")"),
            "{rule}"
        );
    }

    #[test]
    fn documented_answer_example_fails_the_listed_user_only() {
        // RTC RegisterUsers "返回示例" (docs/vendors/volc-rtc.md#examples):
        // FailedInfos[{"UserId":"10004","Code":"UserNotFound"}] (UserId a string).
        let report = parse(
            &[user("10003"), user("10004")],
            200,
            r#"{"ResponseMetadata":{"RequestId":"Your_RequestId","Action":"RegisterUsers",
                 "Version":"2020-12-01","Service":"rtc","Region":"cn-north-1"},
               "Result":{"FailedInfos":[{"UserId":"10004","Message":"UserisNotFound","Code":"UserNotFound"}]}}"#,
        );
        assert_eq!(report.vendor_request_id.as_deref(), Some("Your_RequestId"));
        assert_eq!(report.error_code, None);
        assert_eq!(
            report.outcomes,
            vec![REGISTERED, rejected("UserNotFound", "UserisNotFound")]
        );
    }

    #[test]
    fn failed_infos_user_ids_may_be_numbers() {
        // docs/vendors/volc-rtc.md#response: FailedInfos UserId is a String in the doc, an int64 in the SDK.
        let users = [
            user("1"),
            user("9223372036854775807"),
            user("-3"),
            user("4"),
        ];
        let report = parse(
            &users,
            200,
            r#"{"ResponseMetadata":{"RequestId":"r"},"Result":{"FailedInfos":[
                {"UserId":9223372036854775807,"Code":"InvalidParam","Message":"too long"},
                {"UserId":-3,"Code":"FlowLimitExceeded","Message":"slow down"},
                {"UserId":" 4 ","Code":"InternalError","Message":"oops"},
                {"UserId":"999","Code":"InvalidParam","Message":"not ours"}]}}"#,
        );
        assert_eq!(
            report.outcomes,
            vec![
                REGISTERED,
                rejected("InvalidParam", "too long"),
                VendorOutcome::failed(ErrorClass::Throttled, "FlowLimitExceeded", "slow down"),
                VendorOutcome::failed(ErrorClass::Retryable, "InternalError", "oops"),
            ]
        );
    }

    #[test]
    fn an_answer_without_failures_registers_everyone() {
        for body in [
            r#"{"ResponseMetadata":{"RequestId":"r"},"Result":{"FailedInfos":[]}}"#,
            r#"{"ResponseMetadata":{"RequestId":"r"},"Result":{"FailedInfos":null}}"#,
            r#"{"ResponseMetadata":{"RequestId":"r"},"Result":{}}"#,
            r#"{"ResponseMetadata":{"RequestId":"r","Error":null}}"#,
        ] {
            let report = parse(&[user("1"), user("2")], 200, body);
            assert_eq!(report.outcomes, vec![REGISTERED, REGISTERED], "{body}");
        }
    }

    #[test]
    fn every_call_level_code_applies_to_each_user_of_the_call() {
        // docs/vendors/volc-rtc.md#error-codes (common codes, with their HTTP statuses) and
        // docs/vendors/volc-rtc.md#error-codes (IM codes).
        let failed = |class| Some(class);
        let cases: [(&str, u16, Option<ErrorClass>); 21] = [
            ("FlowLimitExceeded", 429, failed(ErrorClass::Throttled)),
            ("FlowLimitExceeded", 200, failed(ErrorClass::Throttled)),
            ("RequestLimitExceeded", 200, failed(ErrorClass::Throttled)),
            ("ThrottlingException", 400, failed(ErrorClass::Throttled)),
            ("InternalError", 500, failed(ErrorClass::Retryable)),
            ("InternalServiceTimeout", 504, failed(ErrorClass::Retryable)),
            ("ServiceUnavailableTemp", 503, failed(ErrorClass::Retryable)),
            ("InvalidTimestamp", 400, failed(ErrorClass::Retryable)),
            ("SignatureDoesNotMatch", 401, failed(ErrorClass::Permanent)),
            ("InvalidAccessKey", 401, failed(ErrorClass::Permanent)),
            ("AccessDenied", 403, failed(ErrorClass::Permanent)),
            ("ServiceNotFound", 404, failed(ErrorClass::Permanent)),
            ("InvalidActionOrVersion", 404, failed(ErrorClass::Permanent)),
            ("MissingRequestInfo", 400, failed(ErrorClass::Permanent)),
            ("AppNotFound", 200, failed(ErrorClass::Permanent)),
            ("AppStatusException", 200, failed(ErrorClass::Permanent)),
            ("NoAuth", 200, failed(ErrorClass::Permanent)),
            ("MissingParameter", 400, None),
            ("InvalidParam", 400, None),
            ("JsonParsingError", 400, None),
            ("SomethingNew", 400, failed(ErrorClass::Permanent)),
        ];
        let users = [user("1"), user("2")];
        for (code, status, class) in cases {
            let body = format!(
                r#"{{"ResponseMetadata":{{"RequestId":"r","Action":"RegisterUsers","Version":"2020-12-01",
                    "Service":"rtc","Region":"cn-north-1","Error":{{"CodeN":100000,"Code":"{code}","Message":"m"}}}}}}"#
            );
            let report = parse(&users, status, &body);
            assert_eq!(report.error_code(), Some(code));
            assert_eq!(report.vendor_request_id.as_deref(), Some("r"));
            let expected = match class {
                Some(class) => VendorOutcome::failed(class, code, "m"),
                None => rejected(code, "m"),
            };
            assert_eq!(report.outcomes, vec![expected.clone(), expected], "{code}");
            assert_eq!(
                report.error_class,
                Some(class.unwrap_or(ErrorClass::Permanent)),
                "{code}"
            );
        }
        // An unknown code is classified by its status.
        let unknown = r#"{"ResponseMetadata":{"Error":{"Code":"New","Message":"m"}}}"#;
        assert_eq!(
            parse(&users, 503, unknown).outcomes[0].retry_class(),
            Some(ErrorClass::Retryable)
        );
        assert_eq!(
            parse(&users, 429, unknown).outcomes[0].retry_class(),
            Some(ErrorClass::Throttled)
        );
    }

    #[test]
    fn statuses_without_an_envelope_are_classified_by_status() {
        // docs/vendors/volc-rtc.md#response-envelope: "Failure if HTTP ≠200".
        let users = [user("1")];
        let cases = [
            (429, "", ErrorClass::Throttled, "HTTP429"),
            (503, "<html>busy</html>", ErrorClass::Retryable, "HTTP503"),
            (500, "{}", ErrorClass::Retryable, "HTTP500"),
            (
                502,
                r#"{"ResponseMetadata":{"RequestId":"r"}}"#,
                ErrorClass::Retryable,
                "HTTP502",
            ),
            (400, "bad request", ErrorClass::Permanent, "HTTP400"),
            (404, "", ErrorClass::Permanent, "HTTP404"),
        ];
        for (status, body, class, code) in cases {
            let report = parse(&users, status, body);
            assert_eq!(report.error_code(), Some(code), "{status} {body}");
            assert_eq!(report.error_class, Some(class), "{status} {body}");
            assert!(
                matches!(&report.outcomes[0], VendorOutcome::Failed { class: got, .. } if *got == class)
            );
        }
    }

    #[test]
    fn malformed_answers_fail_every_user_without_panicking() {
        let users = [user("1"), user("2")];
        for body in [
            "not json",
            "\u{feff}",
            "{}",
            r#"{"ResponseMetadata":3}"#,
            r#"{"ResponseMetadata":{"Error":{"Message":"no code"}}}"#,
            r#"{"ResponseMetadata":{"Error":{"Code":7}}}"#,
            r#"{"ResponseMetadata":{},"Result":"x"}"#,
            r#"{"ResponseMetadata":{},"Result":{"FailedInfos":{"UserId":"1"}}}"#,
            r#"{"ResponseMetadata":{},"Result":{"FailedInfos":[5]}}"#,
            r#"{"ResponseMetadata":{},"Result":{"FailedInfos":[{"Code":"InvalidParam"}]}}"#,
            r#"{"ResponseMetadata":{},"Result":{"FailedInfos":[{"UserId":1.5}]}}"#,
            r#"{"ResponseMetadata":{},"Result":{"FailedInfos":[{"UserId":[1]}]}}"#,
        ] {
            let report = parse(&users, 200, body);
            assert_eq!(report.outcomes.len(), 2, "{body}");
            assert_eq!(
                report.error_code(),
                Some(RegistrarCode::MalformedResponse.as_str()),
                "{body}"
            );
            assert_eq!(report.error_class, Some(ErrorClass::Permanent), "{body}");
        }
        let refs: Vec<&User> = users.iter().collect();
        let report = parse_register_users(&refs, http::StatusCode::OK, b"\xff\xfe");
        assert_eq!(
            report.error_code(),
            Some(RegistrarCode::MalformedResponse.as_str())
        );
    }

    #[test]
    fn an_error_with_an_empty_code_is_malformed_not_a_vendor_code() {
        // Found by tests/properties: `"Code": ""` became a call failure whose code was empty.
        let report = parse(
            &[user("1")],
            200,
            r#"{"ResponseMetadata":{"RequestId":"r","Error":{"Code":"","Message":""}}}"#,
        );
        assert_eq!(
            report.error_code(),
            Some(RegistrarCode::MalformedResponse.as_str())
        );
        assert_eq!(report.error_class, Some(ErrorClass::Permanent));
        assert_eq!(report.vendor_request_id.as_deref(), Some("r"));
    }

    #[test]
    fn a_failed_info_without_a_code_is_still_a_rejection() {
        let report = parse(
            &[user("1")],
            200,
            r#"{"ResponseMetadata":{},"Result":{"FailedInfos":[{"UserId":"1"}]}}"#,
        );
        assert_eq!(
            report.outcomes,
            vec![rejected(RegistrarCode::UnspecifiedFailure, "")]
        );
    }

    #[test]
    fn repeating_a_call_is_safe() {
        // RTC RegisterUsers (docs/vendors/volc-rtc.md#repeats): registration records users for
        // broadcast; a repeat re-registers.
        assert!(volc(1).repeat_is_safe());
        assert_eq!(volc(1).action(), "RegisterUsers");
        assert_eq!(volc(1).kind(), VendorKind::VolcRtc);
    }
}
