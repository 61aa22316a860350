//! The simulated Tencent LCIC `BatchRegister` (2022-08-17): authentication
//! first, then the account's quota, then the body, read strictly against the
//! documented fields; an accepted call registers (or overwrites) every user
//! it carries, keyed by (SdkAppId, OriginId). A refused or throttled call
//! registers nobody. Sources: the LCIC BatchRegister document, summarised in docs/vendors/lcic.md.

use serde_json::{Map, Value};

use super::{
    pipeline::carried_ids,
    state::{AppState, Refusal, SimAccount},
    tencent::{self, Product},
};
use crate::{
    domain::VendorKind,
    vendor_api::tencent::lcic::{
        ACTION, BatchUserInfo, BatchUserRequest, MAX_USERS_PER_CALL, SERVICE, VERSION,
    },
};

/// The fields of `BatchUserRequest` (docs/vendors/lcic.md#request); any other key is refused.
const USER_FIELDS: [&str; 4] = ["SdkAppId", "Name", "OriginId", "Avatar"];

/// `BatchRegister`, behind the Tencent gateway.
pub(super) struct BatchRegister;

impl Product for BatchRegister {
    const VENDOR: VendorKind = VendorKind::TencentLcic;
    const ACTION: &'static str = ACTION;
    const SERVICE: &'static str = SERVICE;
    const VERSION: &'static str = VERSION;
    const NEEDS_REGION: bool = false;
    type Valid = Vec<BatchUserRequest>;
    type Accepted = Vec<BatchUserInfo>;

    /// One SecretId may own several apps: the body's (first) SdkAppId picks.
    fn names(account: &SimAccount, body: &Value) -> bool {
        first_sdk_app_id(Some(body)) == Some(account.app_id)
    }

    fn carried(body: Option<&Value>) -> Vec<String> {
        carried_origin_ids(body)
    }

    fn check_body(body: Option<&Value>, account: &SimAccount) -> Result<Self::Valid, Refusal> {
        validate_body(body, account.app_id)
    }

    fn apply(
        app: &mut AppState,
        account: &SimAccount,
        users: Self::Valid,
    ) -> Result<Self::Accepted, Refusal> {
        Ok(register(app, account.app_id, users))
    }

    fn answer(registered: Self::Accepted) -> Result<Map<String, Value>, Refusal> {
        // LCIC BatchRegister "Output Example" (docs/vendors/lcic.md#examples):
        // {"Response":{"Users":[{SdkAppId, UserId, OriginId}],"RequestId"}}.
        let users = serde_json::to_value(registered)
            .map_err(|_| tencent::refusal("InternalError", "the answer could not be encoded"))?;
        Ok(Map::from_iter([("Users".to_owned(), users)]))
    }
}

fn first_sdk_app_id(body: Option<&Value>) -> Option<u64> {
    body?.get("Users")?.get(0)?.get("SdkAppId")?.as_u64()
}

/// The OriginIds a body carries, read leniently for the call's record: a
/// user without one carries "" (its OriginId defaults to the UserId, docs/vendors/lcic.md#request);
/// entries that are not objects or whose OriginId is not a string are skipped.
fn carried_origin_ids(body: Option<&Value>) -> Vec<String> {
    carried_ids(body, "Users", "OriginId")
}

/// Reads the body strictly: exactly the documented fields, with their types.
fn validate_body(body: Option<&Value>, app_id: u64) -> Result<Vec<BatchUserRequest>, Refusal> {
    let body = tencent::body_object(body)?;
    // LCIC BatchRegister "Input Parameters" (docs/vendors/lcic.md#request): Users is the only
    // request field besides the common (header) ones.
    tencent::only_known(body, |key| key == "Users", "")?;
    // LCIC BatchRegister (docs/vendors/lcic.md#request): "Users.N Yes Array of BatchUserRequest".
    let users = tencent::required_array(body, "Users", "an array of users")?;
    if users.is_empty() {
        return Err(tencent::refusal(
            "InvalidParameterValue",
            "the parameter Users must hold at least one user",
        ));
    }
    // LCIC BatchRegister (docs/vendors/lcic.md#batch-size): "register multiple users (up to 1,000)
    // at a time".
    if users.len() > MAX_USERS_PER_CALL {
        return Err(tencent::refusal(
            "InvalidParameterValue",
            format!(
                "the parameter Users holds {} users; up to {MAX_USERS_PER_CALL} are allowed",
                users.len()
            ),
        ));
    }
    users
        .iter()
        .enumerate()
        .map(|(index, user)| validate_user(index, user, app_id))
        .collect()
}

fn validate_user(index: usize, user: &Value, app_id: u64) -> Result<BatchUserRequest, Refusal> {
    let Some(user) = user.as_object() else {
        return Err(tencent::refusal(
            "InvalidParameterValue",
            format!("the parameter Users.{index} must be an object"),
        ));
    };
    // docs/vendors/lcic.md#request: BatchUserRequest has SdkAppId, Name, OriginId and Avatar only.
    let path = format!("Users.{index}.");
    tencent::only_known(user, |key| USER_FIELDS.contains(&key), &path)?;
    let sdk_app_id = match user.get("SdkAppId") {
        // docs/vendors/lcic.md#request: SdkAppId is required.
        None | Some(Value::Null) => {
            return Err(tencent::refusal(
                "MissingParameter",
                format!("the parameter Users.{index}.SdkAppId is required"),
            ));
        }
        Some(value) => value.as_u64(),
    };
    // LCIC BatchRegister error codes (docs/vendors/lcic.md#error-codes): "InvalidParameter.SdkAppId
    // SdkAppId is incorrect".
    let sdk_app_id = match sdk_app_id {
        Some(sdk_app_id) if sdk_app_id == app_id => sdk_app_id,
        Some(_) => {
            return Err(tencent::refusal(
                "InvalidParameter.SdkAppId",
                format!(
                    "the parameter Users.{index}.SdkAppId names an application this account does not own"
                ),
            ));
        }
        None => {
            return Err(tencent::refusal(
                "InvalidParameter.SdkAppId",
                format!("the parameter Users.{index}.SdkAppId must be an unsigned integer"),
            ));
        }
    };
    let text = |field: &str| -> Result<String, Refusal> {
        Ok(tencent::text_field(user, field, &path)?.unwrap_or_default())
    };
    Ok(BatchUserRequest {
        sdk_app_id,
        name: text("Name")?,
        origin_id: text("OriginId")?,
        avatar: text("Avatar")?,
    })
}

/// Registers or overwrites each user, in order; the answer lists every one.
fn register(app: &mut AppState, app_id: u64, users: Vec<BatchUserRequest>) -> Vec<BatchUserInfo> {
    users
        .into_iter()
        .map(|user| {
            let (origin_id, generated) = if user.origin_id.is_empty() {
                // docs/vendors/lcic.md#response: OriginId "defaults to UserId if empty".
                let user_id = generate_user_id();
                (user_id.clone(), Some(user_id))
            } else {
                (user.origin_id, None)
            };
            // LCIC BatchRegister (docs/vendors/lcic.md#repeats): "If a user ID already exists, the
            // existing one will be overwritten."
            let held = app.overwrite(
                &origin_id,
                || generated.unwrap_or_else(generate_user_id),
                user.name,
                user.avatar,
            );
            BatchUserInfo {
                sdk_app_id: app_id,
                user_id: held.vendor_user_id.clone(),
                origin_id,
            }
        })
        .collect()
}

/// A fresh LCIC-like UserId. The documented example `2i5WfUzRRC2Eb2uNmLNv96gzxCv`
/// (docs/vendors/lcic.md#response) has the shape of a KSUID: 27 base62 characters encoding a
/// 4-byte timestamp (seconds since 1400000000) and 16 random bytes.
fn generate_user_id() -> String {
    const KSUID_EPOCH: i64 = 1_400_000_000;
    let seconds = chrono::Utc::now().timestamp().saturating_sub(KSUID_EPOCH);
    let seconds = u32::try_from(seconds.max(0)).unwrap_or(u32::MAX);
    let mut bytes = [0u8; 20];
    bytes[..4].copy_from_slice(&seconds.to_be_bytes());
    bytes[4..].copy_from_slice(&rand::random::<[u8; 16]>());
    base62(bytes)
}

/// Big-endian base62 of 20 bytes, zero-padded to 27 digits (62^27 > 2^160).
fn base62(bytes: [u8; 20]) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut number = bytes;
    let mut digits = [b'0'; 27];
    for digit in digits.iter_mut().rev() {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let accumulator = remainder * 256 + u32::from(*byte);
            *byte = (accumulator / 62) as u8;
            remainder = accumulator % 62;
        }
        *digit = ALPHABET[remainder as usize];
    }
    digits.iter().map(|&digit| char::from(digit)).collect()
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use serde_json::json;

    use super::super::pipeline::Endpoint;
    use super::*;

    const APP_ID: u64 = 1_400_000_001;

    fn code_of(body: Value) -> Option<String> {
        validate_body(Some(&body), APP_ID)
            .err()
            .map(|refusal| refusal.code)
    }

    #[test]
    fn the_documented_input_example_is_accepted() {
        // LCIC BatchRegister "Input Example" (docs/vendors/lcic.md#examples) (with the example
        // SdkAppId replaced by the account's).
        let users = validate_body(
            Some(
                &json!({"Users":[{"SdkAppId": APP_ID, "Name":"xx","OriginId":"xx","Avatar":"xx"}]}),
            ),
            APP_ID,
        )
        .unwrap();
        assert_eq!(
            users,
            vec![BatchUserRequest {
                sdk_app_id: APP_ID,
                name: "xx".to_owned(),
                origin_id: "xx".to_owned(),
                avatar: "xx".to_owned(),
            }]
        );
        // Name, OriginId and Avatar are optional; null counts as absent.
        let users = validate_body(
            Some(&json!({"Users":[{"SdkAppId": APP_ID, "Name": null}]})),
            APP_ID,
        )
        .unwrap();
        assert_eq!(users[0].origin_id, "");
    }

    #[test]
    fn every_rule_of_the_body_has_its_code() {
        let user = json!({"SdkAppId": APP_ID, "OriginId": "u1"});
        let cases = [
            (json!([user]), "InvalidParameter"),
            (json!("Users"), "InvalidParameter"),
            (json!({"Users":[user], "Extra": 1}), "UnknownParameter"),
            (json!({"users":[user]}), "UnknownParameter"),
            (json!({}), "MissingParameter"),
            (json!({"Users": null}), "MissingParameter"),
            (json!({"Users": {}}), "InvalidParameterValue"),
            (json!({"Users": "u1"}), "InvalidParameterValue"),
            (json!({"Users": []}), "InvalidParameterValue"),
            (json!({"Users": [user, 5]}), "InvalidParameterValue"),
            (
                json!({"Users": [{"SdkAppId": APP_ID, "Role": "x"}]}),
                "UnknownParameter",
            ),
            (json!({"Users": [{"OriginId": "u1"}]}), "MissingParameter"),
            (
                json!({"Users": [{"SdkAppId": 1, "OriginId": "u1"}]}),
                "InvalidParameter.SdkAppId",
            ),
            (
                json!({"Users": [{"SdkAppId": APP_ID.to_string()}]}),
                "InvalidParameter.SdkAppId",
            ),
            (
                json!({"Users": [{"SdkAppId": -1}]}),
                "InvalidParameter.SdkAppId",
            ),
            (
                json!({"Users": [{"SdkAppId": 1.5}]}),
                "InvalidParameter.SdkAppId",
            ),
            (
                json!({"Users": [{"SdkAppId": APP_ID, "Name": 7}]}),
                "InvalidParameterValue",
            ),
            (
                json!({"Users": [{"SdkAppId": APP_ID, "OriginId": ["a"]}]}),
                "InvalidParameterValue",
            ),
            (
                json!({"Users": [{"SdkAppId": APP_ID, "Avatar": {}}]}),
                "InvalidParameterValue",
            ),
        ];
        for (body, code) in cases {
            assert_eq!(code_of(body.clone()).as_deref(), Some(code), "{body}");
        }
        assert_eq!(
            validate_body(None, APP_ID)
                .err()
                .map(|refusal| refusal.code)
                .as_deref(),
            Some("InvalidParameter")
        );
    }

    #[test]
    fn at_most_1000_users_per_call() {
        // LCIC BatchRegister (docs/vendors/lcic.md#batch-size): "register multiple users (up to
        // 1,000) at a time".
        let users = |count: usize| {
            let users: Vec<Value> = (0..count)
                .map(|index| json!({"SdkAppId": APP_ID, "OriginId": format!("u{index}")}))
                .collect();
            json!({ "Users": users })
        };
        assert_eq!(code_of(users(1000)), None);
        assert_eq!(
            code_of(users(1001)).as_deref(),
            Some("InvalidParameterValue")
        );
    }

    #[test]
    fn carried_origin_ids_are_read_leniently() {
        let body = json!({"Users": [
            {"OriginId": "a"}, {"SdkAppId": 1}, 5, {"OriginId": 9}, {"OriginId": "b", "Bad": true}
        ], "Extra": 1});
        assert_eq!(carried_origin_ids(Some(&body)), vec!["a", "", "b"]);
        assert!(carried_origin_ids(None).is_empty());
        assert!(carried_origin_ids(Some(&json!({"Users": "a"}))).is_empty());
    }

    #[test]
    fn a_secret_id_owning_several_apps_is_resolved_by_the_sdk_app_id() {
        let account = |vendor, app_id, secret_id: &str| SimAccount {
            vendor,
            app_id,
            user_store_id: String::new(),
            secret_id: secret_id.to_owned(),
            secret_key: SecretString::from("key"),
            qps: 1,
        };
        let accounts = [
            account(VendorKind::TencentCiam, 9, "id"),
            account(VendorKind::TencentLcic, 1, "id"),
            account(VendorKind::TencentLcic, 2, "id"),
            account(VendorKind::TencentLcic, 3, "other"),
        ];
        let app_of = |secret_id: Option<&str>, sdk_app_id: Option<u64>| {
            let secret_id = secret_id.map(str::to_owned);
            let body = sdk_app_id.map(|sdk_app_id| json!({"Users": [{"SdkAppId": sdk_app_id}]}));
            <BatchRegister as Endpoint>::pick_account(&accounts, &secret_id, body.as_ref())
                .map(|account| account.app_id)
        };
        assert_eq!(app_of(Some("id"), Some(2)), Some(2));
        assert_eq!(app_of(Some("id"), Some(1)), Some(1));
        assert_eq!(app_of(Some("id"), None), Some(1));
        assert_eq!(app_of(Some("id"), Some(3)), Some(1));
        assert_eq!(app_of(Some("other"), Some(1)), Some(3));
        assert_eq!(app_of(Some("nobody"), Some(1)), None);
        assert_eq!(app_of(None, Some(1)), None);
    }

    #[test]
    fn overwriting_keeps_the_user_id_and_counts_registrations() {
        let mut app = AppState::new(10);
        let user = |origin_id: &str, name: &str| BatchUserRequest {
            sdk_app_id: APP_ID,
            name: name.to_owned(),
            origin_id: origin_id.to_owned(),
            avatar: String::new(),
        };
        let first = register(
            &mut app,
            APP_ID,
            vec![user("u1", "one"), user("", "anonymous")],
        );
        let second = register(&mut app, APP_ID, vec![user("u1", "uno")]);
        assert_eq!(first[0].user_id, second[0].user_id);
        assert_eq!(first[0].origin_id, "u1");
        // docs/vendors/lcic.md#response: OriginId = UserId when registered without one.
        assert_eq!(first[1].origin_id, first[1].user_id);
        let held = &app.users["u1"];
        assert_eq!(held.registrations, 2);
        assert_eq!(held.name, "uno");
        assert_eq!(app.users.len(), 2);
    }

    #[test]
    fn user_ids_look_like_the_documented_example() {
        // docs/vendors/lcic.md#response: UserId e.g. 2i5WfUzRRC2Eb2uNmLNv96gzxCv (27 base62 characters).
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| generate_user_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), "2i5WfUzRRC2Eb2uNmLNv96gzxCv".len(), "{id}");
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
        }
    }

    #[test]
    fn base62_matches_the_ksuid_bounds() {
        // The KSUID reference implementation's minimum and maximum string forms.
        assert_eq!(base62([0; 20]), "000000000000000000000000000");
        assert_eq!(base62([0xff; 20]), "aWgEPTl1tmebfsQzFP4bxwgy80V");
    }
}
