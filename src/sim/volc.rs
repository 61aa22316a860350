//! The simulated Volcengine RTC `RegisterUsers` (2020-12-01): the gateway's
//! SignerV4 check and API version first, then the account's quota, then the
//! body, read strictly against the documented fields. A refused call
//! registers nobody; an accepted one registers (or re-registers) every user
//! within the field limits and lists the others in `Result.FailedInfos`.
//! Every answer is Volcengine's `ResponseMetadata` envelope; nothing in it
//! reveals the expected signature or the account's key (the refusal texts of
//! `volc_verify::VerifyError` are fixed). Sources: RTC RegisterUsers (docs/vendors/volc-rtc.md).
//!
//! The handler is an `Endpoint` of the shared pipeline (`pipeline`); the
//! region an answer names is the one the caller signed for
//! (docs/vendors/volc-rtc.md).

use std::collections::BTreeMap;

use axum::{
    Json,
    http::{header, request::Parts},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use super::{
    faults::Fault,
    pipeline::{BodyError, Endpoint, account_by_app_id, entries},
    state::{AppState, Refusal, Shared, SimAccount},
};
use crate::{
    domain::VendorKind,
    vendor_api::{
        volc::rtc::{
            ACTION, DEFAULT_REGION, MAX_EXT_KEY_BYTES, MAX_EXT_KEYS, MAX_EXT_VALUE_BYTES,
            MAX_NICK_NAME_CHARS, MAX_PORTRAIT_CHARS, MAX_USERS_PER_CALL, RESERVED_EXT_PREFIX,
            SERVICE, VERSION,
        },
        volc::verify as volc_verify,
    },
};

/// Volcengine documents no body limit for RegisterUsers (UNCONFIRMED); 20
/// users with every field at its limit stay far below this.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// RTC RegisterUsers "Users" (docs/vendors/volc-rtc.md#request) plus `IsRobot`
/// (docs/vendors/volc-rtc.md#request: SDK only). Any other key is refused, so that a misspelt field
/// in registrar is caught here; whether Volcengine ignores unknown keys is UNCONFIRMED.
const USER_FIELDS: [&str; 6] = ["UserId", "NickName", "Tags", "Portrait", "Ext", "IsRobot"];

/// `RegisterUsers`: the gateway's SignerV4 check and API version, then the
/// quota, then the body.
pub(super) struct RegisterUsers;

/// What a call's `Authorization` header claims.
pub(super) struct Head {
    access_key_id: Option<String>,
    /// The envelope names the region the caller signed for.
    region: String,
}

impl Endpoint for RegisterUsers {
    const VENDOR: VendorKind = VendorKind::VolcRtc;
    const ACTION: &'static str = ACTION;
    const MAX_BODY_BYTES: usize = MAX_BODY_BYTES;
    type Head = Head;
    type Valid = Vec<Checked>;
    /// The FailedInfos.
    type Accepted = Vec<Value>;

    fn head(parts: &Parts) -> Head {
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| volc_verify::parse_authorization(value).ok());
        Head {
            access_key_id: authorization
                .as_ref()
                .map(|parsed| parsed.access_key_id.clone()),
            region: authorization.map_or_else(|| DEFAULT_REGION.to_owned(), |parsed| parsed.region),
        }
    }

    fn body_refusal(error: BodyError) -> Refusal {
        let message = match error {
            BodyError::TooLarge => "the request body is larger than 1 MB",
            BodyError::Unreadable => "the request body could not be read",
        };
        im_refusal("InvalidParam", message)
    }

    fn pick_account<'a>(
        accounts: &'a [SimAccount],
        head: &Head,
        body: Option<&Value>,
    ) -> Option<&'a SimAccount> {
        // One key may own several apps (docs/vendors/volc-rtc.md#quota: limits are per account,
        // shared by all AppIds): the body's AppId picks among them, else the
        // first configured is used.
        account_by_app_id(
            accounts,
            Self::VENDOR,
            head.access_key_id.as_deref(),
            body_app_id(body),
        )
    }

    fn carried_user_ids(body: Option<&Value>) -> Vec<String> {
        carried_user_ids(body)
    }

    fn authenticate<'a>(
        parts: &Parts,
        _head: &Head,
        body: &[u8],
        account: Option<&'a SimAccount>,
        _accounts: &'a [SimAccount],
    ) -> Result<&'a SimAccount, Refusal> {
        check_request(parts, body, account)?;
        // check_request refuses an access key without an account; kept for totality.
        account.ok_or_else(|| verify_refusal(&volc_verify::VerifyError::InvalidAccessKey))
    }

    fn validate(
        _shared: &Shared,
        _head: &mut Head,
        account: &SimAccount,
        body: Option<&Value>,
    ) -> Result<Vec<Checked>, Refusal> {
        validate_body(body, account.app_id)
    }

    fn throttled() -> Refusal {
        throttled()
    }

    fn accept(
        app: &mut AppState,
        _account: &SimAccount,
        users: Vec<Checked>,
    ) -> Result<Vec<Value>, Refusal> {
        Ok(register(app, users))
    }

    fn accepted(head: &Head, failed: Vec<Value>) -> Response {
        success_response(failed, &head.region)
    }

    fn refused(head: &Head, refusal: &Refusal) -> Response {
        error_response(refusal, &head.region)
    }
}

/// Volcengine's answer to an injected internal error or throttle: (status, body).
pub(super) fn fault_answer(fault: Fault) -> (u16, String) {
    let request_id = uuid::Uuid::new_v4().to_string();
    // docs/vendors/volc-rtc.md#error-codes: FlowLimitExceeded (429 assumed), InternalError 100014
    // with HTTP 500
    match fault {
        Fault::Throttle => (
            429,
            json!({"ResponseMetadata": {"RequestId": request_id, "Error": {"Code": "FlowLimitExceeded", "Message": "simulated fault"}}})
                .to_string(),
        ),
        _ => (
            500,
            json!({"ResponseMetadata": {"RequestId": request_id, "Error": {"CodeN": 100014, "Code": "InternalError", "Message": "simulated fault"}}})
                .to_string(),
        ),
    }
}

fn body_app_id(body: Option<&Value>) -> Option<u64> {
    body?.get("AppId")?.as_u64()
}

/// The UserIds a body carries, read leniently for the call's record: numbers
/// as decimal text, strings as sent; entries without either are skipped.
fn carried_user_ids(body: Option<&Value>) -> Vec<String> {
    entries(body, "Users")
        .iter()
        .filter_map(|user| match user.get("UserId")? {
            Value::Number(number) => Some(number.to_string()),
            Value::String(text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// docs/vendors/volc-rtc.md#error-codes CodeN of the common codes; the IM codes have none (IM
/// models omit CodeN).
fn code_n(code: &str) -> Option<u32> {
    Some(match code {
        "MissingParameter" => 100002,
        "MissingRequestInfo" => 100004,
        "InvalidTimestamp" => 100006,
        "ServiceNotFound" => 100007,
        "InvalidActionOrVersion" => 100008,
        "InvalidAccessKey" => 100009,
        "SignatureDoesNotMatch" => 100010,
        "AccessDenied" => 100013,
        "InternalError" => 100014,
        "InternalServiceTimeout" => 100016,
        // docs/vendors/volc-rtc.md#error-codes: UNCONFIRMED, a third-party mapping.
        "FlowLimitExceeded" => 100018,
        _ => return None,
    })
}

/// A refusal with one of the IM error codes of docs/vendors/volc-rtc.md#error-codes (InvalidParam,
/// JsonParsingError, AppNotFound). Their HTTP status is UNCONFIRMED; 400 is
/// this simulator's choice, and registrar classifies them by code, not status.
fn im_refusal(code: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        http_status: 400,
        code: code.to_owned(),
        message: message.into(),
    }
}

/// docs/vendors/volc-rtc.md#error-codes: MissingParameter is HTTP 400.
fn missing_parameter(message: impl Into<String>) -> Refusal {
    Refusal {
        http_status: 400,
        code: "MissingParameter".to_owned(),
        message: message.into(),
    }
}

/// docs/vendors/volc-rtc.md#error-codes: FlowLimitExceeded, HTTP status UNCONFIRMED ("429/503
/// assumed"); 429 here.
fn throttled() -> Refusal {
    Refusal {
        http_status: 429,
        code: "FlowLimitExceeded".to_owned(),
        message: "the request rate exceeds the account's flow limit".to_owned(),
    }
}

fn verify_refusal(error: &volc_verify::VerifyError) -> Refusal {
    // The VerifyError texts are fixed: they never carry the expected signature or the key.
    Refusal {
        http_status: error.http_status(),
        code: error.code().to_owned(),
        message: error.to_string(),
    }
}

/// The gateway's checks, in order: the SignerV4 signature with the key of
/// `account` (the account the access key names, `None` if none), the signed
/// service, then the API version.
fn check_request(
    parts: &http::request::Parts,
    body: &[u8],
    account: Option<&SimAccount>,
) -> Result<(), Refusal> {
    let now = chrono::Utc::now().timestamp();
    let verified = volc_verify::verify(
        parts.method.as_str(),
        &parts.uri,
        &parts.headers,
        body,
        now,
        |access_key_id| {
            account
                .filter(|account| account.secret_id == access_key_id)
                .map(|account| account.secret_key.clone())
        },
    )
    .map_err(|error| verify_refusal(&error))?;
    // docs/vendors/volc-rtc.md#endpoint: RTC signs as service rtc; a key derived for another service
    // is not this API's.
    if verified.service != SERVICE {
        return Err(verify_refusal(
            &volc_verify::VerifyError::SignatureDoesNotMatch(
                "the credential scope does not name service rtc",
            ),
        ));
    }
    let version = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("Version="));
    // RTC RegisterUsers (docs/vendors/volc-rtc.md#endpoint): Version is required and is 2020-12-01;
    // docs/vendors/volc-rtc.md#error-codes: InvalidActionOrVersion is HTTP 404.
    if version != Some(VERSION) {
        return Err(Refusal {
            http_status: 404,
            code: "InvalidActionOrVersion".to_owned(),
            message: format!("RegisterUsers answers to Version {VERSION} only"),
        });
    }
    Ok(())
}

/// One user of an admitted body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Checked {
    Valid(SimUser),
    /// Breaks a field limit: listed in FailedInfos, the rest of the call proceeds.
    Invalid {
        user_id: i64,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SimUser {
    user_id: i64,
    nick_name: String,
    tags: Vec<String>,
    portrait: String,
    ext: BTreeMap<String, String>,
    is_robot: Option<bool>,
}

/// Reads the body strictly: exactly the documented fields, with their types.
fn validate_body(body: Option<&Value>, app_id: u64) -> Result<Vec<Checked>, Refusal> {
    let Some(body) = body else {
        return Err(im_refusal(
            "JsonParsingError",
            "the request body is not valid JSON",
        ));
    };
    let Some(body) = body.as_object() else {
        return Err(im_refusal(
            "JsonParsingError",
            "the request body must be a JSON object",
        ));
    };
    // RTC RegisterUsers "Body" (docs/vendors/volc-rtc.md#request): AppId and Users.
    if let Some(unknown) = body
        .keys()
        .find(|key| !["AppId", "Users"].contains(&key.as_str()))
    {
        return Err(im_refusal(
            "InvalidParam",
            format!("the parameter {unknown:?} is not recognized"),
        ));
    }
    match body.get("AppId") {
        None | Some(Value::Null) => {
            return Err(missing_parameter("the parameter AppId is required"));
        }
        Some(value) => match value.as_u64() {
            Some(sent) if sent == app_id => {}
            // docs/vendors/volc-rtc.md#error-codes: AppNotFound (an app this account does not own).
            Some(_) => {
                return Err(im_refusal(
                    "AppNotFound",
                    "the AppId names no application of this account",
                ));
            }
            None => {
                return Err(im_refusal(
                    "InvalidParam",
                    "the parameter AppId must be an integer",
                ));
            }
        },
    }
    let users = match body.get("Users") {
        None | Some(Value::Null) => {
            return Err(missing_parameter("the parameter Users is required"));
        }
        Some(Value::Array(users)) => users,
        Some(_) => {
            return Err(im_refusal(
                "InvalidParam",
                "the parameter Users must be an array",
            ));
        }
    };
    // RTC RegisterUsers (docs/vendors/volc-rtc.md#batch-size): "一次最多注册 20 个用户" (at most 20 users per call).
    if users.is_empty() || users.len() > MAX_USERS_PER_CALL {
        return Err(im_refusal(
            "InvalidParam",
            format!(
                "the parameter Users holds {} users; 1 to {MAX_USERS_PER_CALL} are allowed",
                users.len()
            ),
        ));
    }
    users
        .iter()
        .enumerate()
        .map(|(index, user)| validate_user(index, user))
        .collect()
}

fn validate_user(index: usize, user: &Value) -> Result<Checked, Refusal> {
    let invalid = |message: String| Err(im_refusal("InvalidParam", message));
    let Some(user) = user.as_object() else {
        return invalid(format!("Users.{index} must be an object"));
    };
    if let Some(unknown) = user.keys().find(|key| !USER_FIELDS.contains(&key.as_str())) {
        return invalid(format!(
            "the parameter Users.{index}.{unknown} is not recognized"
        ));
    }
    // RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): UserId is a required Long; a string
    // is not one.
    let user_id = match user.get("UserId") {
        None | Some(Value::Null) => {
            return Err(missing_parameter(format!(
                "the parameter Users.{index}.UserId is required"
            )));
        }
        Some(Value::Number(number)) => match number.as_i64() {
            Some(user_id) => user_id,
            None => return invalid(format!("Users.{index}.UserId must be an int64")),
        },
        Some(_) => {
            return invalid(format!(
                "Users.{index}.UserId must be an integer number, not a string or other type"
            ));
        }
    };
    let text = |field: &str| -> Result<String, Refusal> {
        match user.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(im_refusal(
                "InvalidParam",
                format!("Users.{index}.{field} must be a string"),
            )),
        }
    };
    let nick_name = text("NickName")?;
    let portrait = text("Portrait")?;
    let tags = match user.get("Tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tags)) => match tags
            .iter()
            .map(|tag| tag.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
        {
            Some(tags) => tags,
            None => return invalid(format!("Users.{index}.Tags must be an array of strings")),
        },
        Some(_) => return invalid(format!("Users.{index}.Tags must be an array of strings")),
    };
    let ext = match user.get("Ext") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(ext)) => match ext
            .iter()
            .map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
            .collect::<Option<BTreeMap<_, _>>>()
        {
            Some(ext) => ext,
            None => return invalid(format!("Users.{index}.Ext values must be strings")),
        },
        Some(_) => return invalid(format!("Users.{index}.Ext must be a JSON map")),
    };
    let is_robot = match user.get("IsRobot") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(is_robot)) => Some(*is_robot),
        Some(_) => return invalid(format!("Users.{index}.IsRobot must be a boolean")),
    };
    let user = SimUser {
        user_id,
        nick_name,
        tags,
        portrait,
        ext,
        is_robot,
    };
    Ok(match field_limit_broken(&user) {
        Some(message) => Checked::Invalid { user_id, message },
        None => Checked::Valid(user),
    })
}

/// The documented limits of one user's fields (RTC RegisterUsers, docs/vendors/volc-rtc.md#field-rules).
fn field_limit_broken(user: &SimUser) -> Option<String> {
    // RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): NickName "长度不能超过 100 字符"; Portrait
    // "长度不能超过500字符".
    if user.nick_name.chars().count() > MAX_NICK_NAME_CHARS {
        return Some(format!(
            "NickName is longer than {MAX_NICK_NAME_CHARS} characters"
        ));
    }
    if user.portrait.chars().count() > MAX_PORTRAIT_CHARS {
        return Some(format!(
            "Portrait is longer than {MAX_PORTRAIT_CHARS} characters"
        ));
    }
    // docs/vendors/volc-rtc.md#field-rules (SDK comment): ≤20 keys; key ≤50 bytes, not starting with
    // "s:"; value ≤500 bytes.
    if user.ext.len() > MAX_EXT_KEYS {
        return Some(format!("Ext has more than {MAX_EXT_KEYS} keys"));
    }
    for (key, value) in &user.ext {
        if key.len() > MAX_EXT_KEY_BYTES {
            return Some(format!(
                "an Ext key is longer than {MAX_EXT_KEY_BYTES} bytes"
            ));
        }
        if key.starts_with(RESERVED_EXT_PREFIX) {
            return Some(format!(
                "Ext keys must not start with {RESERVED_EXT_PREFIX:?}"
            ));
        }
        if value.len() > MAX_EXT_VALUE_BYTES {
            return Some(format!(
                "an Ext value is longer than {MAX_EXT_VALUE_BYTES} bytes"
            ));
        }
    }
    None
}

/// Registers (or re-registers) each valid user, in order; answers the FailedInfos.
fn register(app: &mut AppState, users: Vec<Checked>) -> Vec<Value> {
    let mut failed = Vec::new();
    for user in users {
        let user = match user {
            Checked::Valid(user) => user,
            Checked::Invalid { user_id, message } => {
                // RTC RegisterUsers "返回示例" (docs/vendors/volc-rtc.md#examples): FailedInfos UserId
                // is a string.
                failed.push(json!({
                    "UserId": user_id.to_string(),
                    "Code": "InvalidParam",
                    "Message": message,
                }));
                continue;
            }
        };
        let user_id = user.user_id.to_string();
        let mut fields = BTreeMap::new();
        if !user.tags.is_empty() {
            fields.insert("Tags".to_owned(), user.tags.join(","));
        }
        for (key, value) in user.ext {
            fields.insert(format!("Ext.{key}"), value);
        }
        if let Some(is_robot) = user.is_robot {
            fields.insert("IsRobot".to_owned(), is_robot.to_string());
        }
        // RTC RegisterUsers (docs/vendors/volc-rtc.md#repeats): registering again stores the user's
        // data anew (it is overwritten).
        // Volcengine keeps the caller's UserId; it assigns no id of its own.
        let held = app.overwrite(&user_id, || user_id.clone(), user.nick_name, user.portrait);
        held.fields = fields;
    }
    failed
}

fn metadata(region: &str) -> Map<String, Value> {
    // RTC RegisterUsers "返回示例" (docs/vendors/volc-rtc.md#examples): RequestId, Action, Version,
    // Service, Region.
    Map::from_iter([
        (
            "RequestId".to_owned(),
            Value::String(uuid::Uuid::new_v4().simple().to_string()),
        ),
        ("Action".to_owned(), Value::String(ACTION.to_owned())),
        ("Version".to_owned(), Value::String(VERSION.to_owned())),
        ("Service".to_owned(), Value::String(SERVICE.to_owned())),
        ("Region".to_owned(), Value::String(region.to_owned())),
    ])
}

/// docs/vendors/volc-rtc.md#response-envelope:
/// `{"ResponseMetadata":{...,"Error":{"CodeN","Code","Message"}}}` with the refusal's status.
fn error_response(refusal: &Refusal, region: &str) -> Response {
    let mut error = Map::new();
    if let Some(code_n) = code_n(&refusal.code) {
        error.insert("CodeN".to_owned(), json!(code_n));
    }
    error.insert("Code".to_owned(), Value::String(refusal.code.clone()));
    error.insert("Message".to_owned(), Value::String(refusal.message.clone()));
    let mut metadata = metadata(region);
    metadata.insert("Error".to_owned(), Value::Object(error));
    let status =
        http::StatusCode::from_u16(refusal.http_status).unwrap_or(http::StatusCode::BAD_REQUEST);
    (status, Json(json!({ "ResponseMetadata": metadata }))).into_response()
}

/// RTC RegisterUsers "返回示例" (docs/vendors/volc-rtc.md#examples):
/// `{"ResponseMetadata":{...},"Result":{"FailedInfos":[...]}}`.
fn success_response(failed: Vec<Value>, region: &str) -> Response {
    Json(json!({
        "ResponseMetadata": metadata(region),
        "Result": { "FailedInfos": failed },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::super::pipeline::serve;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use secrecy::SecretString;

    use super::*;
    use crate::{
        domain::User,
        vendor_api::{
            AttemptContext, ErrorClass, VendorApi, VendorOutcome,
            volc::rtc::{VolcConfig, VolcRtc, parse_register_users},
            volc::signing::VolcCredentials,
        },
    };

    const APP_ID: u64 = 880_001;
    const AK: &str = "AKLTsimulatortest0000000000000000";
    const SK: &str = "sim-volc-secret-never-answered";

    fn account(qps: u32) -> SimAccount {
        SimAccount {
            vendor: VendorKind::VolcRtc,
            app_id: APP_ID,
            user_store_id: String::new(),
            secret_id: AK.to_owned(),
            secret_key: SecretString::from(SK),
            qps,
        }
    }

    fn credentials(secret: &str) -> VolcCredentials {
        VolcCredentials {
            access_key_id: AK.to_owned(),
            secret_access_key: SecretString::from(secret),
        }
    }

    fn vendor() -> VolcRtc {
        VolcRtc::new(VolcConfig {
            endpoint: "http://127.0.0.1:9".to_owned(),
            app_id: APP_ID,
            region: DEFAULT_REGION.to_owned(),
            credentials: credentials(SK),
        })
    }

    fn user(user_id: &str) -> User {
        User {
            user_id: user_id.to_owned(),
            ..User::default()
        }
    }

    /// A body signed like the SDK, with free choice of query, service, key and time.
    fn signed(
        body: &Value,
        query: &str,
        service: &str,
        secret: &str,
        unix_time: i64,
    ) -> http::Request<Bytes> {
        let mut request = http::Request::post(format!("http://127.0.0.1:9/?{query}"))
            .header("content-type", "application/json")
            .body(Bytes::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        crate::vendor_api::volc::signing::sign_request(
            &mut request,
            &credentials(secret),
            DEFAULT_REGION,
            service,
            unix_time,
        )
        .unwrap();
        request
    }

    const QUERY: &str = "Action=RegisterUsers&Version=2020-12-01";

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    async fn call(shared: &Shared, request: http::Request<Bytes>) -> (u16, Value, Bytes) {
        let (parts, body) = request.into_parts();
        let answer = serve::<RegisterUsers>(shared, &parts, Body::from(body)).await;
        let status = answer.status().as_u16();
        let bytes = answer.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap();
        (status, json, bytes)
    }

    fn error_code(answer: &Value) -> Option<&str> {
        answer["ResponseMetadata"]["Error"]["Code"].as_str()
    }

    #[tokio::test]
    async fn a_signed_call_registers_every_user_with_its_fields() {
        let shared = Shared::new(vec![account(10)]).unwrap();
        let alice = User {
            user_id: "10001".to_owned(),
            display_name: "alice".to_owned(),
            avatar_url: "http://img/a.png".to_owned(),
            tags: vec!["age".to_owned(), "old".to_owned()],
            attributes: BTreeMap::from([("level".to_owned(), "3".to_owned())]),
            ciam: None,
        };
        let bob = user("-7");
        let users = [&alice, &bob];
        let request = vendor()
            .build_request(&users, &AttemptContext::now())
            .unwrap();
        let (status, answer, bytes) = call(&shared, request).await;
        assert_eq!(status, 200);
        // RTC RegisterUsers "返回示例" (docs/vendors/volc-rtc.md#examples): the envelope and an (empty)
        // FailedInfos.
        assert_eq!(answer["ResponseMetadata"]["Action"], "RegisterUsers");
        assert_eq!(answer["ResponseMetadata"]["Version"], "2020-12-01");
        assert_eq!(answer["ResponseMetadata"]["Service"], "rtc");
        assert_eq!(answer["ResponseMetadata"]["Region"], "cn-north-1");
        assert_eq!(answer["Result"]["FailedInfos"], json!([]));
        let report = parse_register_users(&users, http::StatusCode::OK, &bytes);
        assert!(
            report
                .outcomes
                .iter()
                .all(|outcome| matches!(outcome, VendorOutcome::Registered { .. }))
        );
        let held = shared.registered(VendorKind::VolcRtc, APP_ID);
        assert_eq!(held.len(), 2);
        let alice = held.iter().find(|user| user.origin_id == "10001").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.avatar, "http://img/a.png");
        assert_eq!(alice.fields["Tags"], "age,old");
        assert_eq!(alice.fields["Ext.level"], "3");
        let calls = shared.lock().calls.clone();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].user_ids, vec!["10001", "-7"]);
        assert_eq!(calls[0].app_id, Some(APP_ID));
        assert!(calls[0].accepted());
    }

    #[tokio::test]
    async fn a_user_over_a_field_limit_fails_alone_in_failed_infos() {
        // RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules) limits; registrar validates
        // first, so this is sent on purpose.
        let shared = Shared::new(vec![account(10)]).unwrap();
        let long_name = User {
            display_name: "n".repeat(101),
            ..user("2")
        };
        let reserved = User {
            attributes: BTreeMap::from([("s:x".to_owned(), "v".to_owned())]),
            ..user("3")
        };
        let long_value = User {
            attributes: BTreeMap::from([("k".to_owned(), "v".repeat(501))]),
            ..user("4")
        };
        let many = User {
            attributes: (0..21).map(|n| (format!("k{n}"), String::new())).collect(),
            ..user("5")
        };
        let long_portrait = User {
            avatar_url: "p".repeat(501),
            ..user("6")
        };
        let ok = user("1");
        let users = [
            &ok,
            &long_name,
            &reserved,
            &long_value,
            &many,
            &long_portrait,
        ];
        let request = vendor()
            .build_request(&users, &AttemptContext::now())
            .unwrap();
        let (status, answer, bytes) = call(&shared, request).await;
        assert_eq!(status, 200);
        let failed: Vec<&str> = answer["Result"]["FailedInfos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|info| {
                assert_eq!(info["Code"], "InvalidParam");
                info["UserId"].as_str().unwrap()
            })
            .collect();
        assert_eq!(failed, vec!["2", "3", "4", "5", "6"]);
        let report = parse_register_users(&users, http::StatusCode::OK, &bytes);
        assert!(matches!(
            report.outcomes[0],
            VendorOutcome::Registered { .. }
        ));
        for outcome in &report.outcomes[1..] {
            assert!(
                matches!(outcome, VendorOutcome::Rejected { code, .. } if code == "InvalidParam"),
                "{outcome:?}"
            );
        }
        let held: Vec<String> = shared
            .registered(VendorKind::VolcRtc, APP_ID)
            .into_iter()
            .map(|user| user.origin_id)
            .collect();
        assert_eq!(held, vec!["1"]);
    }

    #[tokio::test]
    async fn bodies_breaking_the_call_rules_are_refused_and_register_nobody() {
        let shared = Shared::new(vec![account(100)]).unwrap();
        let twenty_one: Vec<Value> = (0..21).map(|n| json!({ "UserId": n })).collect();
        let cases = [
            (json!([1]), "JsonParsingError"),
            (json!({"Users": [{"UserId": 1}]}), "MissingParameter"),
            (json!({"AppId": 1, "Users": [{"UserId": 1}]}), "AppNotFound"),
            (
                json!({"AppId": APP_ID.to_string(), "Users": [{"UserId": 1}]}),
                "InvalidParam",
            ),
            (json!({"AppId": APP_ID}), "MissingParameter"),
            (json!({"AppId": APP_ID, "Users": {}}), "InvalidParam"),
            // RTC RegisterUsers (docs/vendors/volc-rtc.md#batch-size): at most 20 users per call.
            (json!({"AppId": APP_ID, "Users": []}), "InvalidParam"),
            (
                json!({"AppId": APP_ID, "Users": twenty_one}),
                "InvalidParam",
            ),
            // RTC RegisterUsers (docs/vendors/volc-rtc.md#field-rules): UserId is a Long; a string
            // UserId is refused.
            (
                json!({"AppId": APP_ID, "Users": [{"UserId": 1}, {"UserId": "2"}]}),
                "InvalidParam",
            ),
            (
                json!({"AppId": APP_ID, "Users": [{"UserId": 1.5}]}),
                "InvalidParam",
            ),
            (
                json!({"AppId": APP_ID, "Users": [{"UserId": 18446744073709551615u64}]}),
                "InvalidParam",
            ),
            (
                json!({"AppId": APP_ID, "Users": [{"NickName": "x"}]}),
                "MissingParameter",
            ),
            (
                json!({"AppId": APP_ID, "Users": [{"UserId": 1, "Nickname": "x"}]}),
                "InvalidParam",
            ),
            (
                json!({"AppId": APP_ID, "Users": [{"UserId": 1, "Tags": "a"}]}),
                "InvalidParam",
            ),
            (
                json!({"AppId": APP_ID, "Users": [{"UserId": 1, "Ext": {"k": 1}}]}),
                "InvalidParam",
            ),
            (
                json!({"AppId": APP_ID, "Users": [{"UserId": 1, "IsRobot": "no"}]}),
                "InvalidParam",
            ),
            (
                json!({"AppId": APP_ID, "Users": [{"UserId": 1}], "Extra": 1}),
                "InvalidParam",
            ),
        ];
        for (body, code) in &cases {
            let (status, answer, _) = call(&shared, signed(body, QUERY, "rtc", SK, now())).await;
            assert_eq!(error_code(&answer), Some(*code), "{body}");
            assert_eq!(status, 400, "{body}");
        }
        assert!(shared.registered(VendorKind::VolcRtc, APP_ID).is_empty());
        let calls = shared.lock().calls.clone();
        assert_eq!(calls.len(), cases.len());
        assert!(calls.iter().all(|call| !call.accepted()));
        // the string UserId is recorded as carried
        assert_eq!(calls[8].user_ids, vec!["1", "2"]);
    }

    #[tokio::test]
    async fn gateway_refusals_use_the_documented_codes_and_statuses() {
        // docs/vendors/volc-rtc.md#error-codes: InvalidAccessKey / SignatureDoesNotMatch 401,
        // InvalidTimestamp 400, MissingRequestInfo 400, InvalidActionOrVersion 404.
        let shared = Shared::new(vec![account(100)]).unwrap();
        let body = json!({"AppId": APP_ID, "Users": [{"UserId": 1}]});
        let wrong_key = signed(&body, QUERY, "rtc", "not-the-key", now());
        let other_service = signed(&body, QUERY, "iam", SK, now());
        let stale = signed(&body, QUERY, "rtc", SK, now() - 16 * 60);
        let other_version = signed(
            &body,
            "Action=RegisterUsers&Version=2023-11-01",
            "rtc",
            SK,
            now(),
        );
        let mut unsigned = signed(&body, QUERY, "rtc", SK, now());
        unsigned.headers_mut().remove("authorization");
        let mut unknown_key = signed(&body, QUERY, "rtc", SK, now());
        let authorization = unknown_key.headers()["authorization"]
            .to_str()
            .unwrap()
            .replace(AK, "AKLTnobody");
        unknown_key
            .headers_mut()
            .insert("authorization", authorization.parse().unwrap());
        let cases = [
            (wrong_key, 401, "SignatureDoesNotMatch"),
            (other_service, 401, "SignatureDoesNotMatch"),
            (stale, 400, "InvalidTimestamp"),
            (other_version, 404, "InvalidActionOrVersion"),
            (unsigned, 400, "MissingRequestInfo"),
            (unknown_key, 401, "InvalidAccessKey"),
        ];
        for (request, status, code) in cases {
            let (got_status, answer, bytes) = call(&shared, request).await;
            assert_eq!((got_status, error_code(&answer)), (status, Some(code)));
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(SK), "{text}");
        }
        let answer = call(&shared, signed(&body, QUERY, "rtc", "x", now()))
            .await
            .1;
        assert_eq!(answer["ResponseMetadata"]["Error"]["CodeN"], 100010);
        assert!(shared.registered(VendorKind::VolcRtc, APP_ID).is_empty());
        let calls = shared.lock().calls.clone();
        assert_eq!(calls.len(), 7);
        assert!(calls.iter().all(|call| !call.accepted()));
        assert_eq!(calls[5].app_id, None, "an unknown key names no account");
        assert_eq!(calls[0].app_id, Some(APP_ID));
    }

    #[tokio::test]
    async fn over_the_quota_answers_flow_limit_exceeded_with_429() {
        let shared = Shared::new(vec![account(2)]).unwrap();
        let mut statuses = Vec::new();
        for id in 1..=3 {
            let users = [user(&id.to_string())];
            let refs: Vec<&User> = users.iter().collect();
            let request = vendor()
                .build_request(&refs, &AttemptContext::now())
                .unwrap();
            let (status, answer, bytes) = call(&shared, request).await;
            statuses.push((status, error_code(&answer).map(str::to_owned)));
            if status == 429 {
                let report =
                    parse_register_users(&refs, http::StatusCode::TOO_MANY_REQUESTS, &bytes);
                assert_eq!(
                    report.outcomes[0].retry_class(),
                    Some(ErrorClass::Throttled)
                );
            }
        }
        assert_eq!(
            statuses,
            vec![
                (200, None),
                (200, None),
                (429, Some("FlowLimitExceeded".to_owned()))
            ]
        );
        assert_eq!(shared.registered(VendorKind::VolcRtc, APP_ID).len(), 2);
    }

    #[tokio::test]
    async fn registering_again_overwrites_and_counts() {
        let shared = Shared::new(vec![account(10)]).unwrap();
        for (name, tags) in [("first", vec!["a".to_owned()]), ("second", vec![])] {
            let user = User {
                display_name: name.to_owned(),
                tags,
                ..user("42")
            };
            let request = vendor()
                .build_request(&[&user], &AttemptContext::now())
                .unwrap();
            assert_eq!(call(&shared, request).await.0, 200);
        }
        let held = shared.registered(VendorKind::VolcRtc, APP_ID);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].registrations, 2);
        assert_eq!(held[0].name, "second");
        assert!(held[0].fields.is_empty(), "{:?}", held[0].fields);
    }

    #[test]
    fn an_access_key_owning_several_apps_is_resolved_by_the_app_id() {
        let with_app = |app_id| SimAccount {
            app_id,
            ..account(1)
        };
        let accounts = [with_app(1), with_app(2)];
        let app_of = |app_id| {
            account_by_app_id(&accounts, VendorKind::VolcRtc, Some(AK), app_id)
                .map(|account| account.app_id)
        };
        assert_eq!(app_of(Some(2)), Some(2));
        assert_eq!(app_of(Some(1)), Some(1));
        assert_eq!(app_of(None), Some(1));
        assert_eq!(app_of(Some(3)), Some(1));
        assert!(
            account_by_app_id(&accounts, VendorKind::VolcRtc, Some("other"), Some(1)).is_none()
        );
        assert!(account_by_app_id(&accounts, VendorKind::VolcRtc, None, Some(1)).is_none());
    }
}
