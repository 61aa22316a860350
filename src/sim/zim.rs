//! The simulated ZEGOCLOUD ZIM `UserRegister`: the API gateway's checks of the
//! common query parameters and the md5 signature first, then the account's
//! quota, then the body. Every answer is HTTP 200 with `{"Code","Message",
//! "RequestId"}`. An accepted call registers each valid user it carries that
//! does not exist yet; every other user is an `ErrorList` entry with its
//! SubCode, and an existing user is never overwritten (660700002). When no
//! user of a call registers, the call fails as a whole (Code≠0, with the
//! `ErrorList`) and takes no quota slot. Sources: ZIM UserRegister (docs/vendors/zim.md) and
//! ZEGOCLOUD docs_all `Return codes.mdx`.
//!
//! The handler is an `Endpoint` of the shared pipeline (`pipeline`); its
//! hooks keep ZEGO's order: the AppId names the account before the body is
//! read, and a call none of whose users would register is judged before
//! the quota step (docs/vendors/zim.md).

use std::collections::{BTreeMap, HashSet};

use axum::{
    Json,
    http::request::Parts,
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use super::{
    faults::Fault,
    pipeline::{BodyError, Endpoint, carried_ids},
    state::{AppState, Refusal, RegisteredUser, Shared, SimAccount},
};
use crate::{
    domain::VendorKind,
    vendor_api::zego::zim::{
        ACTION, ErrorEntry, MAX_CLOCK_SKEW_SECONDS, MAX_USER_AVATAR_BYTES, MAX_USER_ID_BYTES,
        MAX_USER_NAME_BYTES, MAX_USERS_PER_CALL, SIGNATURE_VERSION, codes, describe,
        is_user_id_char, signature,
    },
};

/// ZEGO documents no body limit; this is far above 100 users at their longest.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `UserRegister`: the API gateway's checks of the common query parameters
/// and the signature, then the quota, then the body.
pub(super) struct UserRegister;

/// What a call's query says, and the `ErrorList` of a call refused as a whole.
pub(super) struct Head {
    query: Query,
    refused_list: Option<Vec<ErrorEntry>>,
}

impl Endpoint for UserRegister {
    const VENDOR: VendorKind = VendorKind::ZegoZim;
    const ACTION: &'static str = ACTION;
    const MAX_BODY_BYTES: usize = MAX_BODY_BYTES;
    type Head = Head;
    type Valid = Vec<Candidate>;
    /// How many users registered, and the `ErrorList` of the others.
    type Accepted = (usize, Vec<ErrorEntry>);

    fn head(parts: &Parts) -> Head {
        Head {
            query: Query::parse(parts.uri.query()),
            refused_list: None,
        }
    }

    fn body_refusal(error: BodyError) -> Refusal {
        match error {
            BodyError::TooLarge => refusal(
                codes::INVALID_PARAMETER,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            ),
            BodyError::Unreadable => refusal(
                codes::REQUEST_BODY_UNAVAILABLE,
                describe(codes::REQUEST_BODY_UNAVAILABLE),
            ),
        }
    }

    /// The account the query's AppId names; the body names none.
    fn pick_account<'a>(
        accounts: &'a [SimAccount],
        head: &Head,
        _body: Option<&Value>,
    ) -> Option<&'a SimAccount> {
        head.query
            .get("AppId")
            .and_then(|app_id| app_id.parse::<u32>().ok())
            .and_then(|app_id| find_account(accounts, u64::from(app_id)))
    }

    fn carried_user_ids(body: Option<&Value>) -> Vec<String> {
        carried_user_ids(body)
    }

    fn authenticate<'a>(
        parts: &Parts,
        head: &Head,
        _body: &[u8],
        _account: Option<&'a SimAccount>,
        accounts: &'a [SimAccount],
    ) -> Result<&'a SimAccount, Refusal> {
        authenticate(parts, &head.query, accounts, unix_now())
    }

    /// A call none of whose users would register fails as a whole (ZIM UserRegister,
    /// docs/vendors/zim.md#partial-failure: "If all user IDs fail to be registered, a corresponding
    /// code is returned"); it is judged before the quota step so that it is recorded
    /// with its code, and judged again under the quota lock.
    fn validate(
        shared: &Shared,
        head: &mut Head,
        account: &SimAccount,
        body: Option<&Value>,
    ) -> Result<Vec<Candidate>, Refusal> {
        validate_body(body).and_then(|candidates| {
            let state = shared.lock();
            let users = state.apps.get(&(VendorKind::ZegoZim, account.app_id));
            let plan = plan(&candidates, |user_id| {
                users.is_some_and(|app| app.users.contains_key(user_id))
            });
            if plan.register.is_empty() {
                let refusal = all_failed(&plan.error_list);
                head.refused_list = Some(plan.error_list);
                return Err(refusal);
            }
            Ok(candidates)
        })
    }

    fn throttled() -> Refusal {
        refusal(
            codes::REGISTER_TOO_FREQUENT,
            "the frequency of calling the UserRegister interface exceeds the limit",
        )
    }

    fn accept(
        app: &mut AppState,
        _account: &SimAccount,
        candidates: Vec<Candidate>,
    ) -> Result<Self::Accepted, Refusal> {
        Ok(register(app, candidates))
    }

    fn accepted(_head: &Head, (registered, error_list): Self::Accepted) -> Response {
        match registered {
            // Another call registered the same users between the two judgements:
            // the answer stays truthful, though the call took its quota slot.
            0 => answer(&all_failed(&error_list), Some(&error_list)),
            _ => success(error_list),
        }
    }

    fn refused(head: &Head, refusal: &Refusal) -> Response {
        answer(refusal, head.refused_list.as_deref())
    }
}

/// ZEGO's answer to an injected internal error or throttle: (status, body).
pub(super) fn fault_answer(fault: Fault) -> (u16, String) {
    // docs/vendors/zim.md#return-codes: 660700001 UserRegister called too frequently; 660000001 server
    // error, please retry
    let code = match fault {
        Fault::Throttle => codes::REGISTER_TOO_FREQUENT,
        _ => codes::GENERAL_BUSINESS_ERROR,
    };
    let body = json!({"Code": code, "Message": "simulated fault", "RequestId": uuid::Uuid::new_v4().to_string()});
    (200, body.to_string())
}

fn find_account(accounts: &[SimAccount], app_id: u64) -> Option<&SimAccount> {
    accounts
        .iter()
        .find(|account| account.vendor == VendorKind::ZegoZim && account.app_id == app_id)
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A ZEGO refusal: the gateway and the service answer HTTP 200 with a Code.
fn refusal(code: i64, message: impl Into<String>) -> Refusal {
    Refusal {
        http_status: 200,
        code: code.to_string(),
        message: message.into(),
    }
}

/// docs/vendors/zim.md#response: `{"Code","Message","RequestId"}`, plus `ErrorList` when given.
fn answer(refusal: &Refusal, error_list: Option<&[ErrorEntry]>) -> Response {
    let code = refusal
        .code
        .parse::<i64>()
        .unwrap_or(codes::GENERAL_BUSINESS_ERROR);
    respond(code, &refusal.message, error_list)
}

fn success(error_list: Vec<ErrorEntry>) -> Response {
    respond(codes::SUCCESS, "success", Some(&error_list))
}

fn respond(code: i64, message: &str, error_list: Option<&[ErrorEntry]>) -> Response {
    let mut body = Map::new();
    body.insert("Code".to_owned(), json!(code));
    body.insert("Message".to_owned(), json!(message));
    body.insert("RequestId".to_owned(), json!(request_id()));
    if let Some(error_list) = error_list {
        body.insert(
            "ErrorList".to_owned(),
            serde_json::to_value(error_list).unwrap_or_else(|_| json!([])),
        );
    }
    (http::StatusCode::OK, Json(Value::Object(body))).into_response()
}

/// ZIM UserRegister "Sample response" (docs/vendors/zim.md#examples): a decimal RequestId such as
/// "343649807833778782".
fn request_id() -> String {
    (rand::random::<u64>() >> 1).to_string()
}

/// The query parameters, percent-decoded; the first of a repeated name wins.
#[derive(Debug, Default)]
struct Query {
    parameters: BTreeMap<String, String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let mut parameters = BTreeMap::new();
        for pair in query.unwrap_or_default().split('&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            parameters
                .entry(percent_decode(name))
                .or_insert_with(|| percent_decode(value));
        }
        Query { parameters }
    }

    /// A parameter's value; an empty value counts as missing.
    fn get(&self, name: &str) -> Option<&str> {
        self.parameters
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

/// Decodes `%XX`; a malformed escape is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The API gateway's checks (Return codes.mdx 1000000xx), in a fixed order;
/// the account named by AppId on success.
fn authenticate<'a>(
    parts: &http::request::Parts,
    query: &Query,
    accounts: &'a [SimAccount],
    now: i64,
) -> Result<&'a SimAccount, Refusal> {
    let refuse = |code: i64| Err(refusal(code, describe(code)));
    if parts.headers.get(http::header::HOST).is_none() && parts.uri.authority().is_none() {
        return refuse(codes::INVALID_HOST);
    }
    // docs/vendors/zim.md#common-parameters: AppId is a Uint32.
    let Some(app_id) = query
        .get("AppId")
        .and_then(|app_id| app_id.parse::<u32>().ok())
    else {
        return refuse(codes::INVALID_APP_ID);
    };
    let Some(timestamp) = query.get("Timestamp") else {
        return refuse(codes::TIMESTAMP_MISSING);
    };
    let Ok(timestamp) = timestamp.parse::<i64>() else {
        return refuse(codes::INVALID_TIMESTAMP);
    };
    match query.get("Action") {
        None => return refuse(codes::ACTION_MISSING),
        Some(action) if action != ACTION => return refuse(codes::UNSUPPORTED_ACTION),
        Some(_) => {}
    }
    let Some(nonce) = query.get("SignatureNonce") else {
        return refuse(codes::SIGNATURE_NONCE_MISSING);
    };
    let Some(claimed) = query.get("Signature") else {
        return refuse(codes::SIGNATURE_MISSING);
    };
    match query.get("SignatureVersion") {
        None => return refuse(codes::SIGNATURE_VERSION_MISSING),
        Some(version) if version != SIGNATURE_VERSION => {
            return refuse(codes::UNSUPPORTED_SIGNATURE_VERSION);
        }
        Some(_) => {}
    }
    let Some(account) = find_account(accounts, u64::from(app_id)) else {
        return Err(refusal(
            codes::INVALID_APP_ID,
            "invalid AppId: no such application",
        ));
    };
    // docs/vendors/zim.md#common-parameters: the Timestamp may be at most 10 minutes off.
    if now.abs_diff(timestamp) > MAX_CLOCK_SKEW_SECONDS.unsigned_abs() {
        return refuse(codes::SIGNATURE_EXPIRED);
    }
    let expected = signature(
        account.app_id,
        nonce,
        secrecy::ExposeSecret::expose_secret(&account.secret_key),
        timestamp,
    );
    // docs/vendors/zim.md#signing: 32 lower-case hex digits over the very values in the query.
    if !constant_time_eq(claimed.as_bytes(), expected.as_bytes()) {
        return refuse(codes::INVALID_SIGNATURE);
    }
    Ok(account)
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// The UserIds a body carries, read leniently for the call's record: an item
/// without one carries ""; items that are not objects or whose UserId is not
/// a string are skipped.
fn carried_user_ids(body: Option<&Value>) -> Vec<String> {
    carried_ids(body, "UserInfo", "UserId")
}

/// One `UserInfo` item as read, with the field rule it breaks, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    user_id: String,
    name: String,
    avatar: String,
    problem: Option<(i64, &'static str)>,
}

/// Reads the body: a call-level refusal for the list itself, a per-user
/// problem (an `ErrorList` entry to be) for each item breaking a field rule.
fn validate_body(body: Option<&Value>) -> Result<Vec<Candidate>, Refusal> {
    let invalid = |message: &str| Err(refusal(codes::INVALID_PARAMETER, message));
    let Some(body) = body else {
        return invalid("the request body is not valid JSON");
    };
    let Some(body) = body.as_object() else {
        return invalid("the request body must be a JSON object");
    };
    let items = match body.get("UserInfo") {
        // ZIM UserRegister (docs/vendors/zim.md#request): UserInfo "Required: Yes".
        None | Some(Value::Null) => return invalid("UserInfo is required"),
        Some(Value::Array(items)) => items,
        Some(_) => return invalid("UserInfo must be an array of users"),
    };
    if items.is_empty() {
        return invalid("UserInfo must hold at least one user");
    }
    // ZIM UserRegister (docs/vendors/zim.md#batch-size): "Up to 100 users can be registered at a time."
    if items.len() > MAX_USERS_PER_CALL {
        return Err(refusal(
            codes::USER_COUNT_EXCEEDS_LIMIT,
            format!(
                "UserInfo holds {} users; at most {MAX_USERS_PER_CALL} may be registered at a time",
                items.len()
            ),
        ));
    }
    Ok(items.iter().map(read_item).collect())
}

fn read_item(item: &Value) -> Candidate {
    let text = |field: &str| match item.get(field) {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => None,
    };
    let user_id = text("UserId");
    let name = text("UserName");
    let avatar = text("UserAvatar");
    let problem = match (item.is_object(), &user_id, &name, &avatar) {
        (false, ..) => Some((codes::INVALID_PARAMETER, "user info must be an object")),
        (true, Some(user_id), Some(name), Some(avatar)) => field_problem(user_id, name, avatar),
        (true, ..) => Some((
            codes::INVALID_PARAMETER,
            "UserId, UserName and UserAvatar must be strings",
        )),
    };
    Candidate {
        user_id: user_id.unwrap_or_default(),
        name: name.unwrap_or_default(),
        avatar: avatar.unwrap_or_default(),
        problem,
    }
}

/// ZIM UserRegister (docs/vendors/zim.md#field-rules) field rules, each with its SubCode.
fn field_problem(user_id: &str, name: &str, avatar: &str) -> Option<(i64, &'static str)> {
    if user_id.is_empty() {
        return Some((codes::INVALID_PARAMETER, "UserId is required"));
    }
    if user_id.len() > MAX_USER_ID_BYTES {
        // ZIM UserRegister sample response (docs/vendors/zim.md#examples): SubCode 660000012, "user
        // length limit".
        return Some((codes::USER_ID_TOO_LONG, "user length limit"));
    }
    if !user_id.chars().all(is_user_id_char) {
        return Some((
            codes::INVALID_PARAMETER,
            "UserId holds a character outside the allowed set",
        ));
    }
    if name.len() > MAX_USER_NAME_BYTES {
        return Some((
            codes::USER_NAME_TOO_LONG,
            describe(codes::USER_NAME_TOO_LONG),
        ));
    }
    if avatar.len() > MAX_USER_AVATAR_BYTES {
        return Some((
            codes::USER_AVATAR_TOO_LONG,
            describe(codes::USER_AVATAR_TOO_LONG),
        ));
    }
    None
}

/// Who of a call registers, and the `ErrorList` of the others.
struct Plan<'a> {
    register: Vec<&'a Candidate>,
    error_list: Vec<ErrorEntry>,
}

/// Decides each candidate in order: a field problem, an existing UserId (or
/// one earlier in the same call) is an `ErrorList` entry; the rest register.
fn plan<'a>(candidates: &'a [Candidate], exists: impl Fn(&str) -> bool) -> Plan<'a> {
    let mut taken: HashSet<&str> = HashSet::new();
    let mut plan = Plan {
        register: Vec::new(),
        error_list: Vec::new(),
    };
    for candidate in candidates {
        let problem = candidate.problem.or_else(|| {
            let exists = exists(&candidate.user_id) || !taken.insert(&candidate.user_id);
            // ZIM UserRegister (docs/vendors/zim.md#repeats): 660700002 "The user already exists".
            exists.then_some((codes::USER_ALREADY_EXISTS, "user already exists"))
        });
        match problem {
            Some((sub_code, sub_message)) => plan.error_list.push(ErrorEntry {
                user_id: candidate.user_id.clone(),
                sub_code,
                sub_message: sub_message.to_owned(),
            }),
            None => plan.register.push(candidate),
        }
    }
    plan
}

/// The refusal of a call none of whose users registered: 660700002 when every
/// one existed already (docs/vendors/zim.md#partial-failure), else 660000002.
fn all_failed(error_list: &[ErrorEntry]) -> Refusal {
    let all_existed = error_list
        .iter()
        .all(|entry| entry.sub_code == codes::USER_ALREADY_EXISTS);
    if all_existed {
        refusal(
            codes::USER_ALREADY_EXISTS,
            describe(codes::USER_ALREADY_EXISTS),
        )
    } else {
        refusal(codes::INVALID_PARAMETER, describe(codes::INVALID_PARAMETER))
    }
}

/// Registers the call's new users (never overwriting one); returns how many
/// registered and the `ErrorList`.
fn register(app: &mut AppState, candidates: Vec<Candidate>) -> (usize, Vec<ErrorEntry>) {
    let plan = plan(&candidates, |user_id| app.users.contains_key(user_id));
    let registered = plan.register.len();
    for candidate in plan.register {
        app.users.insert(
            candidate.user_id.clone(),
            RegisteredUser {
                origin_id: candidate.user_id.clone(),
                // ZIM knows a user by the UserId it was registered with.
                vendor_user_id: candidate.user_id.clone(),
                name: candidate.name.clone(),
                avatar: candidate.avatar.clone(),
                registrations: 1,
                fields: Default::default(),
            },
        );
    }
    (registered, plan.error_list)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::super::pipeline::serve;
    use http_body_util::BodyExt;
    use secrecy::SecretString;

    use super::*;
    use crate::{
        domain::User,
        vendor_api::{
            AttemptContext, VendorApi, VendorOutcome,
            zego::zim::{Zim, ZimConfig},
        },
    };

    const APP_ID: u64 = 1_234_567_890;
    const SECRET: &str = "9193cc662a4c0ec135ec71fb57194b38";

    fn account(qps: u32) -> SimAccount {
        SimAccount {
            vendor: VendorKind::ZegoZim,
            app_id: APP_ID,
            user_store_id: String::new(),
            secret_id: String::new(),
            secret_key: SecretString::from(SECRET),
            qps,
        }
    }

    fn parts(uri: &str) -> http::request::Parts {
        http::Request::post(uri)
            .header("host", "zim-api.zego.im")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn signed_uri(app_id: u64, nonce: &str, timestamp: i64) -> String {
        let signature = signature(app_id, nonce, SECRET, timestamp);
        format!(
            "/?Action=UserRegister&AppId={app_id}&SignatureNonce={nonce}&Timestamp={timestamp}\
             &SignatureVersion=2.0&Signature={signature}"
        )
    }

    fn code_of_authentication(uri: &str, now: i64) -> Option<String> {
        let accounts = [account(20)];
        let uri = uri.to_owned();
        let query = Query::parse(uri.split_once('?').map(|(_, query)| query));
        authenticate(&parts(&uri), &query, &accounts, now)
            .err()
            .map(|refusal| refusal.code)
    }

    #[test]
    fn the_official_vector_authenticates() {
        // docs/vendors/zim.md#test-vector: AppId 12345, nonce 4fd24687296dd9f3, ts 1615186943 -> 43e5cfcc...
        let mut official = account(20);
        official.app_id = 12345;
        let uri = "/?Action=UserRegister&AppId=12345&SignatureNonce=4fd24687296dd9f3\
                   &Timestamp=1615186943&SignatureVersion=2.0&Signature=43e5cfcca828314675f91b001390566a";
        let query = Query::parse(uri.split_once('?').map(|(_, query)| query));
        let accounts = [official];
        let found = authenticate(&parts(uri), &query, &accounts, 1615186943).unwrap();
        assert_eq!(found.app_id, 12345);
    }

    #[test]
    fn every_gateway_check_answers_its_documented_code() {
        // Return codes.mdx: 100000001-100000014 for missing or invalid common parameters.
        let now = 1_700_000_000;
        let good = signed_uri(APP_ID, "0011223344556677", now);
        assert_eq!(code_of_authentication(&good, now), None);
        assert_eq!(code_of_authentication(&good, now + 600), None);
        let drop_param = |name: &str| {
            let (path, query) = good.split_once('?').unwrap();
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !pair.starts_with(&format!("{name}=")))
                .collect();
            format!("{path}?{}", kept.join("&"))
        };
        let replace = |from: &str, to: &str| good.replace(from, to);
        let cases = [
            (drop_param("AppId"), "100000001"),
            (
                replace(&format!("AppId={APP_ID}"), "AppId=abc"),
                "100000001",
            ),
            (
                replace(&format!("AppId={APP_ID}"), "AppId=99999999999"),
                "100000001",
            ),
            (replace(&format!("AppId={APP_ID}"), "AppId=42"), "100000001"),
            (drop_param("Timestamp"), "100000002"),
            (
                replace(&format!("Timestamp={now}"), "Timestamp="),
                "100000002",
            ),
            (
                replace(&format!("Timestamp={now}"), "Timestamp=soon"),
                "100000003",
            ),
            (drop_param("Action"), "100000006"),
            (
                replace("Action=UserRegister", "Action=UserDelete"),
                "100000007",
            ),
            (drop_param("SignatureNonce"), "100000008"),
            (drop_param("Signature"), "100000009"),
            (drop_param("SignatureVersion"), "100000013"),
            (
                replace("SignatureVersion=2.0", "SignatureVersion=1.0"),
                "100000014",
            ),
            (
                replace(
                    "SignatureNonce=0011223344556677",
                    "SignatureNonce=0011223344556678",
                ),
                "100000005",
            ),
        ];
        for (uri, code) in cases {
            assert_eq!(
                code_of_authentication(&uri, now).as_deref(),
                Some(code),
                "{uri}"
            );
        }
        // docs/vendors/zim.md#common-parameters: a Timestamp more than 10 minutes off is expired.
        assert_eq!(
            code_of_authentication(&good, now + 601).as_deref(),
            Some("100000004")
        );
        assert_eq!(
            code_of_authentication(&good, now - 601).as_deref(),
            Some("100000004")
        );
        // the signature is 32 lower-case hex digits: upper case does not match
        let upper = signature(APP_ID, "0011223344556677", SECRET, now).to_uppercase();
        let uri = replace(&signature(APP_ID, "0011223344556677", SECRET, now), &upper);
        assert_eq!(
            code_of_authentication(&uri, now).as_deref(),
            Some("100000005")
        );
    }

    #[test]
    fn query_values_are_percent_decoded_first_one_winning() {
        let query = Query::parse(Some("a=1%202&a=3&b=&c&d=%zz%4"));
        assert_eq!(query.get("a"), Some("1 2"));
        assert_eq!(query.get("b"), None);
        assert_eq!(query.get("c"), None);
        assert_eq!(query.get("d"), Some("%zz%4"));
        assert_eq!(percent_decode("%E5%90%8D"), "名");
    }

    fn refusal_code(body: Value) -> Option<String> {
        validate_body(Some(&body)).err().map(|refusal| refusal.code)
    }

    #[test]
    fn the_user_list_itself_is_checked_before_any_user() {
        let user = json!({"UserId": "aaa"});
        assert_eq!(refusal_code(json!({"UserInfo": [user]})), None);
        for body in [
            json!([user]),
            json!("UserInfo"),
            json!({}),
            json!({"UserInfo": null}),
            json!({"UserInfo": {}}),
            json!({"UserInfo": []}),
        ] {
            assert_eq!(
                refusal_code(body.clone()).as_deref(),
                Some("660000002"),
                "{body}"
            );
        }
        assert_eq!(
            validate_body(None)
                .err()
                .map(|refusal| refusal.code)
                .as_deref(),
            Some("660000002")
        );
        // ZIM UserRegister (docs/vendors/zim.md#batch-size): up to 100 users at a time; Return
        // codes.mdx 660000011.
        let users = |count: usize| {
            let items: Vec<Value> = (0..count)
                .map(|n| json!({"UserId": format!("u{n}")}))
                .collect();
            json!({ "UserInfo": items })
        };
        assert_eq!(refusal_code(users(100)), None);
        assert_eq!(refusal_code(users(101)).as_deref(), Some("660000011"));
    }

    #[test]
    fn every_field_rule_has_its_sub_code() {
        // ZIM UserRegister (docs/vendors/zim.md#field-rules): 660000012 UserId >32 B, 660700006
        // UserName >256 B, 660700007 UserAvatar >500 B; missing, mistyped or forbidden characters 660000002.
        let problem = |item: Value| read_item(&item).problem.map(|(code, _)| code);
        assert_eq!(
            problem(json!({"UserId": "aaa", "UserName": "userNamea", "UserAvatar": "http"})),
            None
        );
        assert_eq!(
            problem(json!({"UserId": "a".repeat(32), "UserName": "名".repeat(85)})),
            None
        );
        assert_eq!(
            problem(json!({"UserId": "!#$%&()+-:;<=.>?@[]^_ {}|~"})),
            None
        );
        let cases = [
            (json!({}), 660000002),
            (json!({"UserId": ""}), 660000002),
            (json!({"UserId": null}), 660000002),
            (json!({"UserId": 5}), 660000002),
            (json!({"UserId": "a*b"}), 660000002),
            (json!({"UserId": "a/b"}), 660000002),
            (json!({"UserId": "用户"}), 660000002),
            (json!({"UserId": "a".repeat(33)}), 660000012),
            (json!({"UserId": "a", "UserName": 1}), 660000002),
            (json!({"UserId": "a", "UserAvatar": []}), 660000002),
            (
                json!({"UserId": "a", "UserName": "名".repeat(86)}),
                660700006,
            ),
            (
                json!({"UserId": "a", "UserAvatar": "h".repeat(501)}),
                660700007,
            ),
            (json!("a"), 660000002),
        ];
        for (item, code) in cases {
            assert_eq!(problem(item.clone()), Some(code), "{item}");
        }
    }

    fn candidate(user_id: &str) -> Candidate {
        read_item(&json!({ "UserId": user_id, "UserName": format!("name of {user_id}") }))
    }

    #[test]
    fn existing_users_are_listed_and_never_overwritten() {
        let mut app = AppState::new(20);
        let (registered, first) = register(&mut app, vec![candidate("a"), candidate("b")]);
        assert_eq!(registered, 2);
        assert!(first.is_empty());
        let mut renamed = candidate("a");
        renamed.name = "other".to_owned();
        let (registered, second) =
            register(&mut app, vec![renamed, candidate("c"), candidate("c")]);
        assert_eq!(registered, 1);
        assert_eq!(
            second,
            vec![
                ErrorEntry {
                    user_id: "a".to_owned(),
                    sub_code: 660700002,
                    sub_message: "user already exists".to_owned()
                },
                ErrorEntry {
                    user_id: "c".to_owned(),
                    sub_code: 660700002,
                    sub_message: "user already exists".to_owned()
                },
            ]
        );
        assert_eq!(app.users.len(), 3);
        assert_eq!(app.users["a"].name, "name of a");
        assert_eq!(app.users["a"].registrations, 1);
    }

    #[test]
    fn a_call_where_nobody_registers_fails_with_the_fitting_code() {
        let existing = [candidate("a"), candidate("b")];
        let plan_all_exist = plan(&existing, |_| true);
        assert!(plan_all_exist.register.is_empty());
        assert_eq!(all_failed(&plan_all_exist.error_list).code, "660700002");
        let mixed = [candidate("a"), candidate("a*")];
        let plan_mixed = plan(&mixed, |user_id| user_id == "a");
        assert_eq!(all_failed(&plan_mixed.error_list).code, "660000002");
    }

    /// Sends what the vendor module builds through the simulator, and parses the answer with it.
    async fn round_trip(
        shared: &Shared,
        vendor: &Zim,
        users: &[User],
        attempt: &AttemptContext,
    ) -> (Value, Vec<VendorOutcome>) {
        let refs: Vec<&User> = users.iter().collect();
        let request = vendor.build_request(&refs, attempt).unwrap();
        let (parts, body) = request.into_parts();
        let answer = serve::<UserRegister>(shared, &parts, Body::from(body)).await;
        let status = answer.status();
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        let response = http::Response::builder()
            .status(status)
            .body(body.clone())
            .unwrap();
        let outcomes = vendor.parse_response(&refs, &response).outcomes;
        (serde_json::from_slice(&body).unwrap(), outcomes)
    }

    fn named(user_id: &str) -> User {
        User {
            user_id: user_id.to_owned(),
            display_name: format!("{user_id} name"),
            avatar_url: format!("https://cdn.example.com/{user_id}.png"),
            ..User::default()
        }
    }

    #[tokio::test]
    async fn the_vendor_module_and_the_simulator_agree() {
        let shared = Shared::new(vec![account(20)]).unwrap();
        let vendor = Zim::new(ZimConfig {
            endpoint: "http://127.0.0.1:1".to_owned(),
            app_id: APP_ID,
            server_secret: SecretString::from(SECRET),
        });
        let users = [named("a"), named("b")];
        let (answer, outcomes) = round_trip(&shared, &vendor, &users, &AttemptContext::now()).await;
        assert_eq!(answer["Code"], 0, "{answer}");
        assert_eq!(answer["Message"], "success");
        assert!(
            answer["RequestId"]
                .as_str()
                .is_some_and(|id| id.parse::<u64>().is_ok())
        );
        assert!(
            outcomes
                .iter()
                .all(|outcome| matches!(outcome, VendorOutcome::Registered { .. }))
        );
        let held = shared.registered(VendorKind::ZegoZim, APP_ID);
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].name, "a name");
        assert_eq!(held[0].avatar, "https://cdn.example.com/a.png");

        // one new, one existing: Code 0 with an ErrorList entry
        let (answer, outcomes) = round_trip(
            &shared,
            &vendor,
            &[named("a"), named("c")],
            &AttemptContext::now(),
        )
        .await;
        assert_eq!(answer["Code"], 0);
        assert_eq!(answer["ErrorList"][0]["UserId"], "a");
        assert_eq!(answer["ErrorList"][0]["SubCode"], 660700002);
        assert!(
            matches!(&outcomes[0], VendorOutcome::AlreadyExists { code, .. } if code == "660700002")
        );
        assert!(matches!(outcomes[1], VendorOutcome::Registered { .. }));

        // all existing: Code 660700002 with every user listed, recorded with that code
        let (answer, outcomes) = round_trip(&shared, &vendor, &users, &AttemptContext::now()).await;
        assert_eq!(answer["Code"], 660700002);
        assert_eq!(answer["ErrorList"].as_array().unwrap().len(), 2);
        assert!(
            outcomes
                .iter()
                .all(|outcome| matches!(outcome, VendorOutcome::AlreadyExists { .. }))
        );
        let calls = shared.lock().calls.clone();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[2].error_code.as_deref(), Some("660700002"));
        assert_eq!(calls[2].user_ids, vec!["a", "b"]);
        assert!(
            calls[..2]
                .iter()
                .all(|call| call.accepted() && call.app_id == Some(APP_ID))
        );

        // an old timestamp is refused as expired and registers nobody
        let stale = AttemptContext {
            unix_time: unix_now() - 3600,
            nonce: "0011223344556677".to_owned(),
        };
        let (answer, outcomes) = round_trip(&shared, &vendor, &[named("late")], &stale).await;
        assert_eq!(answer["Code"], 100000004);
        assert!(answer.get("ErrorList").is_none());
        assert_eq!(
            outcomes[0].retry_class(),
            Some(crate::vendor_api::ErrorClass::Retryable)
        );
        assert_eq!(shared.registered(VendorKind::ZegoZim, APP_ID).len(), 3);

        // a wrong secret fails the signature check, without revealing the expected one
        let impostor = Zim::new(ZimConfig {
            endpoint: "http://127.0.0.1:1".to_owned(),
            app_id: APP_ID,
            server_secret: SecretString::from("not-the-secret"),
        });
        let attempt = AttemptContext::now();
        let (answer, outcomes) = round_trip(&shared, &impostor, &[named("x")], &attempt).await;
        assert_eq!(answer["Code"], 100000005);
        let expected = signature(APP_ID, &attempt.nonce, SECRET, attempt.unix_time);
        assert!(!answer.to_string().contains(&expected) && !answer.to_string().contains(SECRET));
        assert!(matches!(
            outcomes[0],
            VendorOutcome::Failed {
                class: crate::vendor_api::ErrorClass::Permanent,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn the_quota_answers_660700001_inside_http_200() {
        // docs/vendors/zim.md#return-codes: 660700001 "UserRegister called too frequently".
        let shared = Shared::new(vec![account(2)]).unwrap();
        let vendor = Zim::new(ZimConfig {
            endpoint: "http://127.0.0.1:1".to_owned(),
            app_id: APP_ID,
            server_secret: SecretString::from(SECRET),
        });
        let mut codes_seen = Vec::new();
        for index in 0..4 {
            let (answer, outcomes) = round_trip(
                &shared,
                &vendor,
                &[named(&format!("q{index}"))],
                &AttemptContext::now(),
            )
            .await;
            codes_seen.push(answer["Code"].as_i64().unwrap());
            if answer["Code"] == 660700001 {
                assert_eq!(
                    outcomes[0].retry_class(),
                    Some(crate::vendor_api::ErrorClass::Throttled)
                );
            }
        }
        assert_eq!(codes_seen, vec![0, 0, 660700001, 660700001]);
        assert_eq!(shared.registered(VendorKind::ZegoZim, APP_ID).len(), 2);
    }

    #[test]
    fn carried_user_ids_are_read_leniently() {
        let body = json!({"UserInfo": [{"UserId": "a"}, {"UserName": "n"}, 5, {"UserId": 9}, {"UserId": "b"}]});
        assert_eq!(carried_user_ids(Some(&body)), vec!["a", "", "b"]);
        assert!(carried_user_ids(None).is_empty());
        assert!(carried_user_ids(Some(&json!({"UserInfo": "a"}))).is_empty());
    }
}
