//! ZEGOCLOUD ZIM `UserRegister`: registers up to 100 users per call.
//!
//! The common parameters (AppId, SignatureNonce, Timestamp, SignatureVersion
//! and an md5 Signature) travel in the query string, the users in a JSON body
//! (docs/vendors/zim.md#common-parameters). An existing UserId is never overwritten: the
//! answer lists it in `ErrorList` with SubCode 660700002, reported truthfully
//! as already existing. This module never lets the ServerSecret out except as
//! an md5 digest.

use std::collections::HashMap;

use bytes::Bytes;
use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Rejection, User, VendorKind};
use std::sync::Arc;

use crate::vendor_api::settings::{SettingError, TargetSettings, required};
use crate::vendor_api::{
    AttemptContext, BuildError, CallReport, ErrorClass, ErrorCode, RegistrarCode, SharedVendor,
    VendorApi, VendorOutcome, answer, endpoint_uri,
};

pub const ACTION: &str = "UserRegister";
/// docs/vendors/zim.md#common-parameters: `SignatureVersion` = `2.0`.
pub const SIGNATURE_VERSION: &str = "2.0";
/// docs/vendors/zim.md#common-parameters: business parameters of a POST go in a JSON body.
pub const CONTENT_TYPE: &str = "application/json";
/// ZIM UserRegister (docs/vendors/zim.md#batch-size): "Up to 100 users can be registered at a time".
pub const MAX_USERS_PER_CALL: usize = 100;
/// ZIM UserRegister (docs/vendors/zim.md#field-rules): "The user ID, which cannot exceed 32 bytes in length".
pub const MAX_USER_ID_BYTES: usize = 32;
/// docs/vendors/zim.md#field-rules: UserName ≤256 bytes (current EN+ZH yaml); ZIM UserRegister's 64
/// (docs/vendors/zim.md#field-rules) is outdated.
pub const MAX_USER_NAME_BYTES: usize = 256;
/// ZIM UserRegister (docs/vendors/zim.md#field-rules): "The URL of the user avatar, which cannot
/// exceed 500 bytes in length".
pub const MAX_USER_AVATAR_BYTES: usize = 500;
/// docs/vendors/zim.md#user-id-charset: the symbols a UserId may hold besides digits and English
/// letters. ZIM UserRegister's list (docs/vendors/zim.md#user-id-charset) writes the space as
/// `', '` and lacks `{` and `}`, which the current yaml has; the yaml states the charset for
/// UserIds only (ZIM UserRegister's note (docs/vendors/zim.md#user-id-charset) extends it to
/// UserName and UserAvatar, which no URL could meet).
pub const USER_ID_SYMBOLS: &str = "!#$%&()+-:;<=.>?@[]^_ {}|~";
/// docs/vendors/zim.md#common-parameters: the Timestamp may differ from the server's clock by at
/// most 10 minutes.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 600;

/// The return codes of `UserRegister` and of the API gateway (docs/vendors/zim.md#return-codes;
/// ZEGOCLOUD docs_all `Return codes.mdx`).
pub mod codes {
    pub const SUCCESS: i64 = 0;
    pub const SERVER_BUSY: i64 = 1;
    pub const INPUT_PARAMETER_ERROR: i64 = 2;
    pub const AUTHENTICATION_FAILED: i64 = 3;
    pub const QPS_OVER_SYSTEM_SETTING: i64 = 7;
    /// Return codes.mdx: public code "the length of the UserName exceeds the limit".
    pub const USER_NAME_TOO_LONG_PUBLIC: i64 = 50014;
    pub const INVALID_HOST: i64 = 100_000_000;
    pub const INVALID_APP_ID: i64 = 100_000_001;
    pub const TIMESTAMP_MISSING: i64 = 100_000_002;
    pub const INVALID_TIMESTAMP: i64 = 100_000_003;
    pub const SIGNATURE_EXPIRED: i64 = 100_000_004;
    pub const INVALID_SIGNATURE: i64 = 100_000_005;
    pub const ACTION_MISSING: i64 = 100_000_006;
    pub const UNSUPPORTED_ACTION: i64 = 100_000_007;
    pub const SIGNATURE_NONCE_MISSING: i64 = 100_000_008;
    pub const SIGNATURE_MISSING: i64 = 100_000_009;
    pub const SERVER_SECRET_UNAVAILABLE: i64 = 100_000_010;
    pub const APP_CONFIG_UNAVAILABLE: i64 = 100_000_011;
    pub const REQUEST_BODY_UNAVAILABLE: i64 = 100_000_012;
    pub const SIGNATURE_VERSION_MISSING: i64 = 100_000_013;
    pub const UNSUPPORTED_SIGNATURE_VERSION: i64 = 100_000_014;
    pub const GATEWAY_INTERNAL_ERROR: i64 = 100_000_015;
    pub const NO_PRODUCTION_ENVIRONMENT: i64 = 100_000_016;
    pub const SERVICE_NOT_ACTIVATED: i64 = 100_000_017;
    pub const GENERAL_BUSINESS_ERROR: i64 = 660_000_001;
    pub const INVALID_PARAMETER: i64 = 660_000_002;
    pub const LOGIC_PROCESSING_ERROR: i64 = 660_000_003;
    pub const USER_COUNT_EXCEEDS_LIMIT: i64 = 660_000_011;
    pub const USER_ID_TOO_LONG: i64 = 660_000_012;
    pub const REGISTER_TOO_FREQUENT: i64 = 660_700_001;
    pub const USER_ALREADY_EXISTS: i64 = 660_700_002;
    pub const USER_NAME_TOO_LONG: i64 = 660_700_006;
    pub const USER_AVATAR_TOO_LONG: i64 = 660_700_007;
}

/// The configuration of one ZIM application.
#[derive(Debug, Clone)]
pub struct ZimConfig {
    pub endpoint: String,
    /// docs/vendors/zim.md#common-parameters: AppId is a Uint32; kept wide like every other vendor's app id.
    pub app_id: u64,
    pub server_secret: SecretString,
}

/// Builds the module of a `zego-zim` target.
pub fn from_settings(settings: &dyn TargetSettings) -> Result<SharedVendor, SettingError> {
    Ok(Arc::new(Zim::new(ZimConfig {
        endpoint: settings.endpoint().to_owned(),
        app_id: required(settings.app_id(), "app_id")?,
        server_secret: settings.secret("server_secret")?,
    })))
}

#[derive(Debug)]
pub struct Zim {
    config: ZimConfig,
}

impl Zim {
    pub fn new(config: ZimConfig) -> Self {
        Zim { config }
    }
}

/// One item of `UserInfo` (docs/vendors/zim.md#request): UserId required, the others optional.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct UserInfo {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_avatar: String,
}

/// The `UserRegister` request body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct UserRegisterRequest {
    pub user_info: Vec<UserInfo>,
}

/// One entry of `ErrorList`: a user that was not registered, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorEntry {
    pub user_id: String,
    pub sub_code: i64,
    pub sub_message: String,
}

/// `md5(AppId + SignatureNonce + ServerSecret + Timestamp)` as 32 lower-case
/// hex digits, AppId and Timestamp in decimal (docs/vendors/zim.md#signing).
pub fn signature(app_id: u64, nonce: &str, server_secret: &str, timestamp: i64) -> String {
    let mut digest = Md5::new();
    digest.update(app_id.to_string().as_bytes());
    digest.update(nonce.as_bytes());
    digest.update(server_secret.as_bytes());
    digest.update(timestamp.to_string().as_bytes());
    hex::encode(digest.finalize())
}

/// Whether `c` may appear in a UserId (docs/vendors/zim.md#user-id-charset).
pub fn is_user_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || USER_ID_SYMBOLS.contains(c)
}

/// The documented meaning of a return code, for answers that carry no message.
pub fn describe(code: i64) -> &'static str {
    use codes::*;
    match code {
        SUCCESS => "success",
        SERVER_BUSY => "request failed, server busy",
        INPUT_PARAMETER_ERROR => "input parameter error",
        AUTHENTICATION_FAILED => "authentication failed",
        QPS_OVER_SYSTEM_SETTING => "requests per second over the system setting",
        USER_NAME_TOO_LONG_PUBLIC => "UserName length exceeds the limit",
        INVALID_HOST => "incorrect Host",
        INVALID_APP_ID => "invalid AppId",
        TIMESTAMP_MISSING => "Timestamp is null",
        INVALID_TIMESTAMP => "invalid Timestamp format",
        SIGNATURE_EXPIRED => "signature expired",
        INVALID_SIGNATURE => "invalid signature",
        ACTION_MISSING => "Action is null",
        UNSUPPORTED_ACTION => "unsupported Action",
        SIGNATURE_NONCE_MISSING => "SignatureNonce is null",
        SIGNATURE_MISSING => "Signature is null",
        SERVER_SECRET_UNAVAILABLE => "failed to get ServerSecret",
        APP_CONFIG_UNAVAILABLE => "failed to get App configuration",
        REQUEST_BODY_UNAVAILABLE => "failed to get request body",
        SIGNATURE_VERSION_MISSING => "SignatureVersion is null",
        UNSUPPORTED_SIGNATURE_VERSION => "unsupported SignatureVersion",
        GATEWAY_INTERNAL_ERROR => "API gateway internal error",
        NO_PRODUCTION_ENVIRONMENT => "the App has no production environment",
        SERVICE_NOT_ACTIVATED => "the App has not activated this service",
        GENERAL_BUSINESS_ERROR => "general business error",
        INVALID_PARAMETER => "invalid parameter",
        LOGIC_PROCESSING_ERROR => "logic processing error",
        USER_COUNT_EXCEEDS_LIMIT => "user count exceeds the limit",
        USER_ID_TOO_LONG => "UserId length exceeds 32 bytes",
        REGISTER_TOO_FREQUENT => "UserRegister called too frequently",
        USER_ALREADY_EXISTS => "user already exists",
        USER_NAME_TOO_LONG => "UserName length exceeds 256 bytes",
        USER_AVATAR_TOO_LONG => "UserAvatar length exceeds 500 bytes",
        _ => "undocumented return code",
    }
}

/// What a non-zero return code means for a user it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeClass {
    /// 660700002: the UserId is registered already.
    AlreadyExists,
    /// The user's data (or the request's parameters) was refused; never retried.
    Rejected,
    /// The call failed; the class says whether it may be retried.
    Failed(ErrorClass),
}

/// Classifies a return code per the docs/vendors/zim.md#return-codes table.
pub fn classify(code: i64) -> CodeClass {
    use codes::*;
    match code {
        USER_ALREADY_EXISTS => CodeClass::AlreadyExists,
        // docs/vendors/zim.md#quota: "7 QPS over system setting", "660700001 UserRegister called too
        // frequently".
        QPS_OVER_SYSTEM_SETTING | REGISTER_TOO_FREQUENT => CodeClass::Failed(ErrorClass::Throttled),
        SERVER_BUSY
        | GENERAL_BUSINESS_ERROR
        | LOGIC_PROCESSING_ERROR
        | SERVER_SECRET_UNAVAILABLE
        | APP_CONFIG_UNAVAILABLE
        | REQUEST_BODY_UNAVAILABLE
        | GATEWAY_INTERNAL_ERROR
        // docs/vendors/zim.md#return-codes: "signature expired": the retry signs with a fresh Timestamp.
        | SIGNATURE_EXPIRED => CodeClass::Failed(ErrorClass::Retryable),
        INPUT_PARAMETER_ERROR
        | INVALID_PARAMETER
        | USER_COUNT_EXCEEDS_LIMIT
        | USER_ID_TOO_LONG
        | USER_NAME_TOO_LONG
        | USER_NAME_TOO_LONG_PUBLIC
        | USER_AVATAR_TOO_LONG => CodeClass::Rejected,
        // 3, 100000005, the other gateway codes and anything undocumented.
        _ => CodeClass::Failed(ErrorClass::Permanent),
    }
}

fn outcome_for(code: i64, message: &str) -> VendorOutcome {
    let code_text = ErrorCode::from(code.to_string());
    let message = if message.is_empty() {
        describe(code).to_owned()
    } else {
        message.to_owned()
    };
    match classify(code) {
        CodeClass::AlreadyExists => VendorOutcome::AlreadyExists {
            code: code_text,
            message,
        },
        CodeClass::Rejected => VendorOutcome::Rejected {
            code: code_text,
            message,
        },
        CodeClass::Failed(class) => VendorOutcome::failed(class, code_text, message),
    }
}

fn class_of(code: i64) -> ErrorClass {
    match classify(code) {
        CodeClass::Failed(class) => class,
        CodeClass::AlreadyExists | CodeClass::Rejected => ErrorClass::Permanent,
    }
}

/// Checks one user against the documented field rules of `UserInfo`, in bytes.
pub fn validate_user(user: &User) -> Result<(), Rejection> {
    if user.user_id.is_empty() {
        // ZIM UserRegister (docs/vendors/zim.md#field-rules): UserId "Required: Yes".
        return Err(Rejection::required("userId"));
    }
    if user.user_id.len() > MAX_USER_ID_BYTES {
        return Err(too_long("userId", MAX_USER_ID_BYTES, &user.user_id));
    }
    if let Some((offset, forbidden)) = user
        .user_id
        .char_indices()
        .find(|(_, c)| !is_user_id_char(*c))
    {
        return Err(Rejection::new(
            "userId",
            "validation.charset",
            format!(
                "may contain only digits, English letters, spaces and {} (found {forbidden:?} at byte {offset})",
                USER_ID_SYMBOLS.replace(' ', "")
            ),
        ));
    }
    if user.display_name.len() > MAX_USER_NAME_BYTES {
        return Err(too_long(
            "displayName",
            MAX_USER_NAME_BYTES,
            &user.display_name,
        ));
    }
    if user.avatar_url.len() > MAX_USER_AVATAR_BYTES {
        return Err(too_long(
            "avatarUrl",
            MAX_USER_AVATAR_BYTES,
            &user.avatar_url,
        ));
    }
    Ok(())
}

fn too_long(field: &'static str, limit: usize, value: &str) -> Rejection {
    Rejection::new(
        field,
        "validation.too_long",
        format!("must be at most {limit} bytes (got {})", value.len()),
    )
}

/// The query string of one attempt: the common parameters, signed.
pub fn signed_query(app_id: u64, server_secret: &SecretString, attempt: &AttemptContext) -> String {
    let signature = signature(
        app_id,
        &attempt.nonce,
        server_secret.expose_secret(),
        attempt.unix_time,
    );
    format!(
        "Action={ACTION}&AppId={app_id}&SignatureNonce={}&Timestamp={}&SignatureVersion={SIGNATURE_VERSION}&Signature={signature}",
        encode_query_value(&attempt.nonce),
        attempt.unix_time,
    )
}

/// RFC 3986 percent-encoding of a query value (the nonce is hex, so a no-op in practice).
fn encode_query_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

impl VendorApi for Zim {
    fn kind(&self) -> VendorKind {
        VendorKind::ZegoZim
    }

    fn action(&self) -> &'static str {
        ACTION
    }

    fn repeat_is_safe(&self) -> bool {
        // docs/vendors/zim.md#repeats: a repeat meets 660700002 "user already exists", reported as such.
        true
    }

    fn validate(&self, user: &User) -> Result<(), Rejection> {
        // ZIM keeps no tags, attributes or CIAM fields; they are not sent.
        validate_user(user)
    }

    fn build_request(
        &self,
        users: &[&User],
        attempt: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        let (base, host) = endpoint_uri(&self.config.endpoint)?;
        let query = signed_query(self.config.app_id, &self.config.server_secret, attempt);
        let uri = http::Uri::builder()
            .scheme(base.scheme_str().unwrap_or("https"))
            .authority(host.as_str())
            .path_and_query(format!("{}?{query}", base.path()))
            .build()?;
        let body = UserRegisterRequest {
            user_info: users
                .iter()
                .map(|user| UserInfo {
                    user_id: user.user_id.clone(),
                    user_name: user.display_name.clone(),
                    user_avatar: user.avatar_url.clone(),
                })
                .collect(),
        };
        let request = http::Request::post(uri)
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Bytes::from(serde_json::to_vec(&body)?))?;
        Ok(request)
    }

    fn parse_response(&self, users: &[&User], response: &http::Response<Bytes>) -> CallReport {
        parse_user_register(users, response.status(), response.body())
    }
}

/// A return code: a JSON integer (docs/vendors/zim.md#return-codes), or leniently a string of digits.
fn code_value(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn text_value(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// What `ErrorList` says about one user.
enum Listed {
    Code { code: i64, message: String },
    Unreadable(String),
}

/// Maps a `UserRegister` answer to one outcome per user sent (docs/vendors/zim.md#partial-failure):
/// Code 0 registers everyone not in `ErrorList`; a non-zero Code applies to
/// everyone `ErrorList` does not name; each `ErrorList` entry decides its own user.
pub fn parse_user_register(users: &[&User], status: http::StatusCode, body: &[u8]) -> CallReport {
    if status != http::StatusCode::OK {
        return answer::status_failure(users.len(), status);
    }
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
        return answer::malformed(
            users.len(),
            None,
            &format!(
                "vendor answered HTTP 200 without a JSON object ({} bytes)",
                body.len()
            ),
        );
    };
    let request_id = text_value(answer.get("RequestId"));
    let Some(code) = answer.get("Code").and_then(code_value) else {
        return answer::malformed(
            users.len(),
            request_id,
            "vendor answered without an integer Code",
        );
    };
    let message = text_value(answer.get("Message")).unwrap_or_default();
    let entries: &[Value] = match answer.get("ErrorList") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return answer::malformed(
                users.len(),
                request_id,
                "vendor answered an ErrorList that is not a list",
            );
        }
    };
    let mut listed: HashMap<String, Listed> = HashMap::new();
    for entry in entries {
        // ZIM UserRegister's table (docs/vendors/zim.md#response) names the field UserID, its
        // example UserId: accept both.
        let user_id = entry
            .get("UserId")
            .or_else(|| entry.get("UserID"))
            .and_then(Value::as_str);
        let Some(user_id) = user_id else {
            return answer::malformed(
                users.len(),
                request_id,
                "vendor answered an ErrorList entry without a UserId",
            );
        };
        let sub_message = text_value(entry.get("SubMessage")).unwrap_or_default();
        let verdict = match entry.get("SubCode").and_then(code_value) {
            Some(sub_code) => Listed::Code {
                code: sub_code,
                message: sub_message,
            },
            None => Listed::Unreadable(format!(
                "vendor listed this user in ErrorList without an integer SubCode ({sub_message})"
            )),
        };
        listed.entry(user_id.to_owned()).or_insert(verdict);
    }
    let unlisted = || {
        if code == codes::SUCCESS {
            VendorOutcome::Registered {
                vendor_user_id: None,
            }
        } else {
            outcome_for(code, &message)
        }
    };
    let outcomes = users
        .iter()
        .map(|user| match listed.get(user.user_id.as_str()) {
            None => unlisted(),
            Some(Listed::Code { code: 0, .. }) => VendorOutcome::Registered {
                vendor_user_id: None,
            },
            Some(Listed::Code { code, message }) => outcome_for(*code, message),
            Some(Listed::Unreadable(message)) => VendorOutcome::failed(
                ErrorClass::Permanent,
                RegistrarCode::MalformedResponse,
                message.clone(),
            ),
        })
        .collect();
    let (error_code, error_class) = if code == codes::SUCCESS {
        (None, None)
    } else {
        (
            Some(ErrorCode::from(code.to_string())),
            Some(class_of(code)),
        )
    };
    CallReport {
        vendor_request_id: request_id,
        error_code,
        error_class,
        outcomes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "9193cc662a4c0ec135ec71fb57194b38";

    fn zim(endpoint: &str) -> Zim {
        Zim::new(ZimConfig {
            endpoint: endpoint.to_owned(),
            app_id: 12345,
            server_secret: SecretString::from(SECRET),
        })
    }

    fn user(user_id: &str) -> User {
        User {
            user_id: user_id.to_owned(),
            ..User::default()
        }
    }

    fn parse(users: &[User], status: u16, body: &str) -> CallReport {
        let refs: Vec<&User> = users.iter().collect();
        parse_user_register(
            &refs,
            http::StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        )
    }

    fn rejected(code: &str, message: &str) -> VendorOutcome {
        VendorOutcome::Rejected {
            code: code.into(),
            message: message.to_owned(),
        }
    }

    fn registered() -> VendorOutcome {
        VendorOutcome::Registered {
            vendor_user_id: None,
        }
    }

    #[test]
    fn the_official_signature_vector_reproduces() {
        // docs/vendors/zim.md#test-vector: the official Go sample's vector.
        assert_eq!(
            signature(12345, "4fd24687296dd9f3", SECRET, 1615186943),
            "43e5cfcca828314675f91b001390566a"
        );
    }

    #[test]
    fn the_request_carries_the_signed_common_parameters_in_the_query() {
        let attempt = AttemptContext {
            unix_time: 1615186943,
            nonce: "4fd24687296dd9f3".to_owned(),
        };
        let request = zim("https://zim-api.zego.im")
            .build_request(&[&user("aaa")], &attempt)
            .unwrap();
        assert_eq!(request.method(), http::Method::POST);
        // docs/vendors/zim.md#common-parameters: common parameters in the query string; same nonce
        // and timestamp as signed.
        assert_eq!(
            request.uri().to_string(),
            "https://zim-api.zego.im/?Action=UserRegister&AppId=12345&SignatureNonce=4fd24687296dd9f3\
             &Timestamp=1615186943&SignatureVersion=2.0&Signature=43e5cfcca828314675f91b001390566a"
        );
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(request.headers()["host"], "zim-api.zego.im");
    }

    #[test]
    fn an_endpoint_with_a_port_and_path_keeps_them() {
        let request = zim("http://127.0.0.1:4000/zim")
            .build_request(&[&user("a")], &AttemptContext::now())
            .unwrap();
        assert_eq!(
            request.uri().authority().unwrap().as_str(),
            "127.0.0.1:4000"
        );
        assert_eq!(request.uri().path(), "/zim");
        assert!(
            request
                .uri()
                .query()
                .unwrap()
                .starts_with("Action=UserRegister&")
        );
        assert!(
            zim("zim-api.zego.im")
                .build_request(&[], &AttemptContext::now())
                .is_err()
        );
    }

    #[test]
    fn each_attempt_is_signed_with_its_own_nonce_and_time() {
        let vendor = zim("https://zim-api.zego.im");
        let first = AttemptContext::now();
        let second = AttemptContext {
            unix_time: first.unix_time + 30,
            nonce: "0123456789abcdef".to_owned(),
        };
        let query = |attempt: &AttemptContext| {
            vendor
                .build_request(&[&user("a")], attempt)
                .unwrap()
                .uri()
                .query()
                .unwrap()
                .to_owned()
        };
        let (one, two) = (query(&first), query(&second));
        assert_ne!(one, two);
        let expected = signature(12345, "0123456789abcdef", SECRET, second.unix_time);
        assert!(two.ends_with(&format!("&Signature={expected}")), "{two}");
        assert!(!two.contains(SECRET));
    }

    #[test]
    fn the_request_body_is_the_documented_example() {
        // ZIM UserRegister "Sample request" (docs/vendors/zim.md#examples) body.
        let users = [
            User {
                user_id: "aaa".to_owned(),
                display_name: "userNamea".to_owned(),
                avatar_url: "http".to_owned(),
                ..User::default()
            },
            User {
                user_id: "bbb".to_owned(),
                display_name: "userNameb".to_owned(),
                avatar_url: "http".to_owned(),
                ..User::default()
            },
        ];
        let request = zim("https://zim-api.zego.im")
            .build_request(&[&users[0], &users[1]], &AttemptContext::now())
            .unwrap();
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        let documented: Value = serde_json::from_str(
            r#"{"UserInfo":[{"UserId":"aaa","UserName":"userNamea","UserAvatar":"http"},
                            {"UserId":"bbb","UserName":"userNameb","UserAvatar":"http"}]}"#,
        )
        .unwrap();
        assert_eq!(body, documented);
    }

    #[test]
    fn empty_optional_fields_are_omitted() {
        // ZIM UserRegister (docs/vendors/zim.md#field-rules): UserName and UserAvatar "Required: No".
        let request = zim("https://zim-api.zego.im")
            .build_request(&[&user("u1")], &AttemptContext::now())
            .unwrap();
        assert_eq!(
            std::str::from_utf8(request.body()).unwrap(),
            r#"{"UserInfo":[{"UserId":"u1"}]}"#
        );
    }

    #[test]
    fn the_server_secret_never_appears_in_debug_output() {
        let vendor = zim("https://zim-api.zego.im");
        assert!(!format!("{vendor:?}").contains(SECRET));
    }

    #[test]
    fn user_ids_are_checked_in_bytes_against_the_documented_charset() {
        // docs/vendors/zim.md#user-id-charset: UserId ≤32 bytes; digits, English letters and ! # $ % & ( ) + - : ; < = . > ? @
        // [ ] ^ _ space { } | ~.
        let check =
            |user_id: &str| validate_user(&user(user_id)).map_err(|rejection| rejection.code);
        assert_eq!(check(""), Err("validation.required"));
        assert_eq!(check(&"a".repeat(32)), Ok(()));
        assert_eq!(check(&"a".repeat(33)), Err("validation.too_long"));
        assert_eq!(check("!#$%&()+-:;<=.>?@[]^_ {}|~"), Ok(()));
        assert_eq!(check("Az09 user"), Ok(()));
        for forbidden in [
            "a*b", "a/b", "a,b", "a\"b", "a'b", "a\\b", "a`b", "a\nb", "用户", "é",
        ] {
            assert_eq!(check(forbidden), Err("validation.charset"), "{forbidden:?}");
        }
        let rejection = validate_user(&user(&"x".repeat(40))).unwrap_err();
        assert_eq!(rejection.field, "userId");
        assert_eq!(
            rejection.message(),
            "userId must be at most 32 bytes (got 40)"
        );
        let rejection = validate_user(&user("ab*c")).unwrap_err();
        assert!(
            rejection
                .message()
                .starts_with("userId may contain only digits, English letters")
                && rejection.message().contains("'*' at byte 2"),
            "{}",
            rejection.message()
        );
    }

    #[test]
    fn names_and_avatars_are_limited_in_bytes_not_characters() {
        // docs/vendors/zim.md#field-rules: UserName ≤256 bytes (current yaml; ZIM UserRegister's 64
        // (docs/vendors/zim.md#field-rules) is outdated), UserAvatar ≤500 bytes.
        let named = |name: &str, avatar: &str| User {
            user_id: "u1".to_owned(),
            display_name: name.to_owned(),
            avatar_url: avatar.to_owned(),
            ..User::default()
        };
        // 80 Chinese characters are 240 bytes: accepted; 100 are 300 bytes: rejected.
        assert_eq!(validate_user(&named(&"名".repeat(80), "")), Ok(()));
        let rejection = validate_user(&named(&"名".repeat(100), "")).unwrap_err();
        assert_eq!(rejection.field, "displayName");
        assert_eq!(rejection.code, "validation.too_long");
        assert_eq!(rejection.rule, "must be at most 256 bytes (got 300)");
        assert_eq!(validate_user(&named(&"a".repeat(256), "")), Ok(()));
        assert!(validate_user(&named(&"a".repeat(257), "")).is_err());
        // names are not held to the UserId charset (docs/vendors/zim.md#user-id-charset states it
        // for UserIds only)
        assert_eq!(validate_user(&named("Zoë / 张三 *", "")), Ok(()));
        let avatar = format!("https://cdn.example.com/{}", "a".repeat(476));
        assert_eq!(avatar.len(), 500);
        assert_eq!(validate_user(&named("", &avatar)), Ok(()));
        let rejection = validate_user(&named("", &format!("{avatar}x"))).unwrap_err();
        assert_eq!(rejection.field, "avatarUrl");
        assert_eq!(rejection.rule, "must be at most 500 bytes (got 501)");
        let rejection = validate_user(&named("", &"图".repeat(167))).unwrap_err();
        assert_eq!(rejection.rule, "must be at most 500 bytes (got 501)");
    }

    #[test]
    fn code_zero_without_error_list_registers_everyone() {
        // ZIM UserRegister (docs/vendors/zim.md#partial-failure): "If ErrorList is empty, all user
        // IDs are successfully registered."
        let users = [user("aaa"), user("bbb")];
        for body in [
            r#"{"Code":0,"Message":"success","RequestId":"343649807833778782"}"#,
            r#"{"Code":0,"Message":"success","RequestId":"343649807833778782","ErrorList":[]}"#,
            r#"{"Code":0,"Message":"success","RequestId":"343649807833778782","ErrorList":null}"#,
        ] {
            let report = parse(&users, 200, body);
            assert_eq!(
                report.vendor_request_id.as_deref(),
                Some("343649807833778782")
            );
            assert_eq!(report.error_code, None);
            assert_eq!(report.error_class, None);
            assert_eq!(report.outcomes, vec![registered(), registered()]);
        }
    }

    #[test]
    fn the_documented_sample_response_fails_only_the_listed_user() {
        // ZIM UserRegister "Sample response" (docs/vendors/zim.md#examples): Code 0, ErrorList
        // [{UserId, SubCode 660000012, SubMessage}].
        let long_id = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        let users = [user("ok"), user(long_id)];
        let body = format!(
            r#"{{"Code":0,"Message":"success","RequestId":"343649807833778782",
                "ErrorList":[{{"UserId":"{long_id}","SubCode":660000012,"SubMessage":"user length limit"}}]}}"#
        );
        let report = parse(&users, 200, &body);
        assert_eq!(report.error_code, None);
        assert_eq!(
            report.outcomes,
            vec![registered(), rejected("660000012", "user length limit")]
        );
    }

    #[test]
    fn every_sub_code_decides_its_own_user() {
        // docs/vendors/zim.md#return-codes table, per ErrorList entry.
        let cases: [(i64, VendorOutcome); 15] = [
            (
                660700002,
                VendorOutcome::AlreadyExists {
                    code: "660700002".into(),
                    message: "m".to_owned(),
                },
            ),
            (660000012, rejected("660000012", "m")),
            (660700006, rejected("660700006", "m")),
            (660700007, rejected("660700007", "m")),
            (2, rejected("2", "m")),
            (660000002, rejected("660000002", "m")),
            (660000011, rejected("660000011", "m")),
            (1, VendorOutcome::failed(ErrorClass::Retryable, "1", "m")),
            (
                660000001,
                VendorOutcome::failed(ErrorClass::Retryable, "660000001", "m"),
            ),
            (
                660000003,
                VendorOutcome::failed(ErrorClass::Retryable, "660000003", "m"),
            ),
            (
                100000015,
                VendorOutcome::failed(ErrorClass::Retryable, "100000015", "m"),
            ),
            (7, VendorOutcome::failed(ErrorClass::Throttled, "7", "m")),
            (
                660700001,
                VendorOutcome::failed(ErrorClass::Throttled, "660700001", "m"),
            ),
            (3, VendorOutcome::failed(ErrorClass::Permanent, "3", "m")),
            (
                999,
                VendorOutcome::failed(ErrorClass::Permanent, "999", "m"),
            ),
        ];
        let users = [user("listed"), user("fine")];
        for (sub_code, expected) in cases {
            let body = format!(
                r#"{{"Code":0,"Message":"success","RequestId":"r",
                    "ErrorList":[{{"UserId":"listed","SubCode":{sub_code},"SubMessage":"m"}}]}}"#
            );
            let report = parse(&users, 200, &body);
            assert_eq!(report.outcomes, vec![expected, registered()], "{sub_code}");
            assert_eq!(report.error_code, None);
        }
    }

    #[test]
    fn a_failed_call_listing_everyone_as_existing_reports_each_as_already_existing() {
        // docs/vendors/zim.md#partial-failure: Code≠0 with ErrorList non-empty ⇒ all already existed.
        let users = [user("a"), user("b")];
        let report = parse(
            &users,
            200,
            r#"{"Code":660700002,"Message":"user already exists","RequestId":"r","ErrorList":[
                {"UserId":"a","SubCode":660700002,"SubMessage":"user exist"},
                {"UserID":"b","SubCode":660700002,"SubMessage":""}]}"#,
        );
        assert_eq!(report.error_code(), Some("660700002"));
        assert_eq!(report.error_class, Some(ErrorClass::Permanent));
        assert_eq!(
            report.outcomes,
            vec![
                VendorOutcome::AlreadyExists {
                    code: "660700002".into(),
                    message: "user exist".to_owned()
                },
                VendorOutcome::AlreadyExists {
                    code: "660700002".into(),
                    message: "user already exists".to_owned()
                },
            ]
        );
    }

    #[test]
    fn users_a_failed_call_does_not_list_get_the_call_level_code() {
        let users = [user("a"), user("b")];
        let report = parse(
            &users,
            200,
            r#"{"Code":660000002,"Message":"input parameter error","RequestId":"r","ErrorList":[
                {"UserId":"a","SubCode":660700002,"SubMessage":"exists"}]}"#,
        );
        assert!(matches!(
            report.outcomes[0],
            VendorOutcome::AlreadyExists { .. }
        ));
        assert_eq!(
            report.outcomes[1],
            rejected("660000002", "input parameter error")
        );
    }

    #[test]
    fn every_call_level_code_applies_to_each_user_of_the_call() {
        // docs/vendors/zim.md#partial-failure: Code≠0 with an empty ErrorList ⇒ parameter, rate or
        // system error.
        enum Expect {
            Failed(ErrorClass),
            Rejected,
            AlreadyExists,
        }
        use Expect::*;
        let cases = [
            (1, Failed(ErrorClass::Retryable)),
            (7, Failed(ErrorClass::Throttled)),
            (660700001, Failed(ErrorClass::Throttled)),
            (660000001, Failed(ErrorClass::Retryable)),
            (660000003, Failed(ErrorClass::Retryable)),
            (100000010, Failed(ErrorClass::Retryable)),
            (100000011, Failed(ErrorClass::Retryable)),
            (100000012, Failed(ErrorClass::Retryable)),
            (100000015, Failed(ErrorClass::Retryable)),
            // re-signed with a fresh Timestamp on the retry
            (100000004, Failed(ErrorClass::Retryable)),
            (100000005, Failed(ErrorClass::Permanent)),
            (100000000, Failed(ErrorClass::Permanent)),
            (100000001, Failed(ErrorClass::Permanent)),
            (100000002, Failed(ErrorClass::Permanent)),
            (100000003, Failed(ErrorClass::Permanent)),
            (100000006, Failed(ErrorClass::Permanent)),
            (100000007, Failed(ErrorClass::Permanent)),
            (100000008, Failed(ErrorClass::Permanent)),
            (100000009, Failed(ErrorClass::Permanent)),
            (100000013, Failed(ErrorClass::Permanent)),
            (100000014, Failed(ErrorClass::Permanent)),
            (100000016, Failed(ErrorClass::Permanent)),
            (100000017, Failed(ErrorClass::Permanent)),
            (3, Failed(ErrorClass::Permanent)),
            (2, Rejected),
            (660000002, Rejected),
            (660000011, Rejected),
            (660000012, Rejected),
            (660700006, Rejected),
            (660700007, Rejected),
            (50014, Rejected),
            (660700002, AlreadyExists),
        ];
        let users = [user("a"), user("b")];
        for (code, expect) in cases {
            for error_list in ["", r#","ErrorList":[]"#] {
                let body =
                    format!(r#"{{"Code":{code},"Message":"m","RequestId":"r"{error_list}}}"#);
                let report = parse(&users, 200, &body);
                let code_text = code.to_string();
                assert_eq!(report.error_code(), Some(code_text.as_str()));
                assert_eq!(report.outcomes.len(), 2);
                let (expected, class) = match expect {
                    Failed(class) => (VendorOutcome::failed(class, &code_text, "m"), class),
                    Rejected => (rejected(&code_text, "m"), ErrorClass::Permanent),
                    AlreadyExists => (
                        VendorOutcome::AlreadyExists {
                            code: code_text.clone().into(),
                            message: "m".to_owned(),
                        },
                        ErrorClass::Permanent,
                    ),
                };
                assert_eq!(report.error_class, Some(class), "{code}");
                for outcome in &report.outcomes {
                    assert_eq!(outcome, &expected, "{code}");
                }
            }
        }
    }

    #[test]
    fn an_empty_message_is_replaced_by_the_documented_meaning() {
        let report = parse(&[user("a")], 200, r#"{"Code":660700001,"RequestId":"r"}"#);
        assert_eq!(
            report.outcomes[0],
            VendorOutcome::failed(
                ErrorClass::Throttled,
                "660700001",
                "UserRegister called too frequently"
            )
        );
    }

    #[test]
    fn http_failures_are_classified_by_status() {
        let users = [user("a")];
        for (status, class) in [
            (429, ErrorClass::Throttled),
            (500, ErrorClass::Retryable),
            (502, ErrorClass::Retryable),
            (503, ErrorClass::Retryable),
            (400, ErrorClass::Permanent),
            (403, ErrorClass::Permanent),
            (404, ErrorClass::Permanent),
        ] {
            let report = parse(&users, status, r#"{"Code":0}"#);
            let code = format!("HTTP{status}");
            assert_eq!(report.error_code(), Some(code.as_str()));
            assert_eq!(
                report.outcomes[0].retry_class(),
                Some(class).filter(|c| c.is_retryable())
            );
            assert!(matches!(
                &report.outcomes[0],
                VendorOutcome::Failed { class: got, .. } if *got == class
            ));
        }
    }

    #[test]
    fn malformed_answers_fail_every_user_without_panicking() {
        let users = [user("a"), user("b")];
        for body in [
            "",
            "not json",
            "[]",
            "{}",
            r#"{"Code":"zero"}"#,
            r#"{"Code":1.5}"#,
            r#"{"Code":null}"#,
            r#"{"Code":0,"ErrorList":"a"}"#,
            r#"{"Code":0,"ErrorList":[5]}"#,
            r#"{"Code":0,"ErrorList":[{"SubCode":1}]}"#,
            r#"{"Code":0,"ErrorList":[{"UserId":7,"SubCode":1}]}"#,
        ] {
            let report = parse(&users, 200, body);
            assert_eq!(report.outcomes.len(), 2, "{body}");
            for outcome in &report.outcomes {
                assert!(
                    matches!(
                        outcome,
                        VendorOutcome::Failed { class: ErrorClass::Permanent, code, .. }
                            if *code == RegistrarCode::MalformedResponse
                    ),
                    "{body}: {outcome:?}"
                );
            }
        }
        // an entry without a readable SubCode fails only its own user
        let report = parse(
            &users,
            200,
            r#"{"Code":0,"RequestId":7,"ErrorList":[{"UserId":"a","SubCode":"x"},{"UserId":"zzz","SubCode":1}]}"#,
        );
        assert_eq!(report.vendor_request_id.as_deref(), Some("7"));
        assert!(
            matches!(&report.outcomes[0], VendorOutcome::Failed { code, .. } if *code == RegistrarCode::MalformedResponse)
        );
        assert_eq!(report.outcomes[1], registered());
        // a numeric code written as a string is read leniently
        let report = parse(&users, 200, r#"{"Code":"0"}"#);
        assert_eq!(report.outcomes, vec![registered(), registered()]);
    }

    #[test]
    fn classification_matches_the_table() {
        assert_eq!(classify(660700002), CodeClass::AlreadyExists);
        assert_eq!(
            classify(codes::SIGNATURE_EXPIRED),
            CodeClass::Failed(ErrorClass::Retryable)
        );
        assert_eq!(
            classify(codes::INVALID_SIGNATURE),
            CodeClass::Failed(ErrorClass::Permanent)
        );
        assert_eq!(describe(123), "undocumented return code");
    }
}
