//! Tencent Cloud CIAM `CreateUser` (2022-03-31): one user per call.
//!
//! Every CIAM call is a TC3-signed POST that must name its region, and its
//! answer is the Tencent `{"Response": ...}` envelope (docs/vendors/tencent-cloud-api.md; CIAM
//! CreateUser, docs/vendors/ciam.md#request). This module also holds what the import module shares
//! with it: the configuration of a user store, the `MemberMap` and indexed-attribute rules, and the
//! classification of CIAM's error codes. The user's password is sent to the vendor and nowhere
//! else: it leaves its `SecretString` only while the request body is serialized, and no `Debug`
//! output, error or report of this module carries it.

use std::fmt;

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::envelope::{self, ApiError, Envelope, TencentAction, TencentCredentials};
use crate::domain::{CiamProfile, Rejection, User, VendorKind};
use std::sync::Arc;

use crate::vendor_api::settings::{SettingError, TargetSettings, required};
use crate::vendor_api::{
    AttemptContext, BuildError, CallReport, ErrorClass, ErrorCode, RegistrarCode, SharedVendor,
    VendorApi, VendorOutcome,
};

pub const ACTION: &str = "CreateUser";
pub const VERSION: &str = "2022-03-31";
/// The TC3 signing service of every CIAM action
/// (docs/vendors/tencent-cloud-api.md#credential-scope: host prefix `ciam`).
pub const SERVICE: &str = "ciam";
/// CIAM CreateUser (docs/vendors/ciam.md#batch-size): CreateUser creates one user; its inputs are
/// one user's fields.
pub const MAX_USERS_PER_CALL: usize = 1;
/// docs/vendors/ciam.md#indexed-attributes: IndexedAttribute1..5.
pub const MAX_INDEXED_ATTRIBUTES: usize = 5;
/// docs/vendors/ciam.md#indexed-attributes: "max 512 chars → FailedOperation.IndexedAttributeTooLong".
pub const MAX_INDEXED_ATTRIBUTE_CHARS: usize = 512;

/// docs/vendors/ciam.md#error-codes: the codes that say an identifier of the user is taken already.
pub const ALREADY_EXISTS_CODES: [&str; 3] = [
    "FailedOperation.UserNameAlreadyExists",
    "FailedOperation.PhoneNumberAlreadyExists",
    "FailedOperation.EmailAlreadyExists",
];

/// docs/vendors/ciam.md#error-codes (and CIAM CreateUser and CreateApiImportUserJob error codes
/// (docs/vendors/ciam.md#error-codes, docs/vendors/ciam-import.md#error-codes)): the
/// `FailedOperation.*` codes that refuse the request's data, so its users are rejected, never retried.
pub const DATA_ERROR_CODES: [&str; 9] = [
    "FailedOperation.AttributeFormatError",
    "FailedOperation.EmailIsNull",
    "FailedOperation.PasswordIsNull",
    "FailedOperation.PhoneNumberIsNull",
    "FailedOperation.UserNameIsNull",
    "FailedOperation.IndexedAttributeTooLong",
    "FailedOperation.UserGroupNotFound",
    "FailedOperation.OrgNotFound",
    "FailedOperation.ImportUserIsEmpty",
];

/// The configuration of one CIAM user store (shared by CreateUser and imports).
#[derive(Debug, Clone)]
pub struct CiamConfig {
    pub endpoint: String,
    pub user_store_id: String,
    /// X-TC-Region, required by CIAM (CIAM CreateUser, docs/vendors/ciam.md#endpoint).
    pub region: String,
    pub credentials: TencentCredentials,
}

impl CiamConfig {
    /// The user store, region and credentials a CIAM target configured.
    pub fn from_settings(settings: &dyn TargetSettings) -> Result<Self, SettingError> {
        Ok(CiamConfig {
            endpoint: settings.endpoint().to_owned(),
            user_store_id: required(settings.user_store_id(), "user_store_id")?.to_owned(),
            region: required(settings.region(), "region")?.to_owned(),
            credentials: TencentCredentials::from_settings(settings)?,
        })
    }

    /// A signed POST of `action` to the store's endpoint.
    pub(crate) fn signed_post(
        &self,
        action: &str,
        body: Vec<u8>,
        attempt: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        envelope::signed_post(
            &self.endpoint,
            TencentAction {
                service: SERVICE,
                action,
                version: VERSION,
                // CIAM CreateUser "Region Yes" (docs/vendors/ciam.md#endpoint): CIAM requires X-TC-Region.
                region: Some(&self.region),
            },
            &self.credentials,
            body,
            attempt.unix_time,
        )
    }
}

/// Builds the module of a `tencent-ciam` target.
pub fn from_settings(settings: &dyn TargetSettings) -> Result<SharedVendor, SettingError> {
    Ok(Arc::new(CiamCreateUser::new(CiamConfig::from_settings(
        settings,
    )?)))
}

#[derive(Debug)]
pub struct CiamCreateUser {
    config: CiamConfig,
}

impl CiamCreateUser {
    pub fn new(config: CiamConfig) -> Self {
        CiamCreateUser { config }
    }
}

/// A secret's value, written out only when the request body is serialized.
pub(crate) struct Exposed<'a>(pub(crate) &'a SecretString);

impl Serialize for Exposed<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.expose_secret())
    }
}

impl fmt::Debug for Exposed<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

/// `MemberMap` (docs/vendors/ciam.md#membermap): Name and Value required; Type optional (e.g. `STRING`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MemberMap {
    pub name: String,
    pub value: String,
    #[serde(rename = "Type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// The `CreateUser` request body: exactly the fields of CIAM CreateUser (docs/vendors/ciam.md#request).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateUserRequest<'a> {
    user_store_id: &'a str,
    phone_number: &'a str,
    email: &'a str,
    password: Exposed<'a>,
    user_name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    nickname: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    address: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    user_group: &'a [String],
    /// CIAM CreateUser (docs/vendors/ciam.md#request): "Birthdate No Integer" (milliseconds, e.g.
    /// 1706682491339).
    #[serde(skip_serializing_if = "Option::is_none")]
    birthdate: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    customization_attributes: Vec<MemberMap>,
    #[serde(flatten)]
    indexed: IndexedAttributes<'a>,
}

/// `IndexedAttribute1..5`, from `indexed_attributes` in order; empty ones are not sent.
#[derive(Debug, Serialize)]
pub(crate) struct IndexedAttributes<'a> {
    #[serde(rename = "IndexedAttribute1", skip_serializing_if = "Option::is_none")]
    first: Option<&'a str>,
    #[serde(rename = "IndexedAttribute2", skip_serializing_if = "Option::is_none")]
    second: Option<&'a str>,
    #[serde(rename = "IndexedAttribute3", skip_serializing_if = "Option::is_none")]
    third: Option<&'a str>,
    #[serde(rename = "IndexedAttribute4", skip_serializing_if = "Option::is_none")]
    fourth: Option<&'a str>,
    #[serde(rename = "IndexedAttribute5", skip_serializing_if = "Option::is_none")]
    fifth: Option<&'a str>,
}

impl<'a> IndexedAttributes<'a> {
    pub(crate) fn of(profile: &'a CiamProfile) -> Self {
        let at = |index: usize| {
            profile
                .indexed_attributes
                .get(index)
                .map(String::as_str)
                .filter(|value| !value.is_empty())
        };
        IndexedAttributes {
            first: at(0),
            second: at(1),
            third: at(2),
            fourth: at(3),
            fifth: at(4),
        }
    }
}

/// The custom attributes of a profile as `MemberMap`s.
pub(crate) fn member_maps(profile: &CiamProfile) -> Vec<MemberMap> {
    profile
        .customization_attributes
        .iter()
        .map(|attribute| MemberMap {
            name: attribute.name.clone(),
            value: attribute.value.clone(),
            kind: attribute.kind.clone(),
        })
        .collect()
}

/// The rules CreateUser and imports share for the optional fields of a profile.
pub(crate) fn validate_optional_fields(profile: &CiamProfile) -> Result<(), Rejection> {
    let count = profile.indexed_attributes.len();
    if count > MAX_INDEXED_ATTRIBUTES {
        // docs/vendors/ciam.md#indexed-attributes: there are IndexedAttribute1..5 only.
        return Err(Rejection::new(
            "ciam.indexedAttributes",
            "validation.too_many",
            format!("must hold at most {MAX_INDEXED_ATTRIBUTES} values (got {count})"),
        ));
    }
    for (index, value) in profile.indexed_attributes.iter().enumerate() {
        let chars = value.chars().count();
        // docs/vendors/ciam.md#indexed-attributes: "max 512 chars → FailedOperation.IndexedAttributeTooLong".
        if chars > MAX_INDEXED_ATTRIBUTE_CHARS {
            return Err(Rejection::new(
                "ciam.indexedAttributes",
                "validation.too_long",
                format!(
                    "each must be at most {MAX_INDEXED_ATTRIBUTE_CHARS} characters (IndexedAttribute{} has {chars})",
                    index + 1
                ),
            ));
        }
    }
    // docs/vendors/ciam.md#membermap: MemberMap Name is required.
    if let Some(index) = profile
        .customization_attributes
        .iter()
        .position(|attribute| attribute.name.is_empty())
    {
        return Err(Rejection::new(
            "ciam.customizationAttributes",
            "validation.required",
            format!("each needs a name (the attribute at index {index} has none)"),
        ));
    }
    if let Some(index) = profile.user_groups.iter().position(String::is_empty) {
        return Err(Rejection::new(
            "ciam.userGroups",
            "validation.required",
            format!("each must be a non-empty user group id (index {index} is empty)"),
        ));
    }
    Ok(())
}

impl VendorApi for CiamCreateUser {
    fn kind(&self) -> VendorKind {
        VendorKind::TencentCiam
    }

    fn action(&self) -> &'static str {
        ACTION
    }

    fn repeat_is_safe(&self) -> bool {
        // docs/vendors/ciam.md#repeats: a repeat meets FailedOperation.UserNameAlreadyExists,
        // reported as already existing.
        true
    }

    fn validate(&self, user: &User) -> Result<(), Rejection> {
        let Some(profile) = &user.ciam else {
            return Err(Rejection::required("ciam"));
        };
        // CIAM CreateUser (docs/vendors/ciam.md#request): UserName, PhoneNumber, Email and Password
        // are all required.
        if profile.user_name.is_empty() {
            return Err(Rejection::required("ciam.userName"));
        }
        if profile.phone_number.is_empty() {
            return Err(Rejection::required("ciam.phoneNumber"));
        }
        if profile.email.is_empty() {
            return Err(Rejection::required("ciam.email"));
        }
        let has_password = profile
            .password
            .as_ref()
            .is_some_and(|password| !password.expose_secret().is_empty());
        if !has_password {
            return Err(Rejection::required("ciam.password"));
        }
        validate_optional_fields(profile)
    }

    fn build_request(
        &self,
        users: &[&User],
        attempt: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        let body = create_user_body(&self.config.user_store_id, users)?;
        self.config.signed_post(ACTION, body, attempt)
    }

    fn parse_response(&self, users: &[&User], response: &http::Response<Bytes>) -> CallReport {
        parse_create_user(users, response.status(), response.body())
    }
}

/// The serialized body for exactly one validated user.
fn create_user_body(user_store_id: &str, users: &[&User]) -> Result<Vec<u8>, BuildError> {
    let [user] = users else {
        return Err(BuildError::Unvalidated(format!(
            "CreateUser carries exactly {MAX_USERS_PER_CALL} user, got {}",
            users.len()
        )));
    };
    let (Some(profile), Some(password)) = (
        user.ciam.as_ref(),
        user.ciam.as_ref().and_then(|ciam| ciam.password.as_ref()),
    ) else {
        return Err(BuildError::Unvalidated(
            "CreateUser needs a ciam profile with a password".to_owned(),
        ));
    };
    let body = CreateUserRequest {
        user_store_id,
        phone_number: &profile.phone_number,
        email: &profile.email,
        password: Exposed(password),
        user_name: &profile.user_name,
        nickname: &profile.nickname,
        address: &profile.address,
        user_group: &profile.user_groups,
        birthdate: profile.birthdate_unix_ms,
        customization_attributes: member_maps(profile),
        indexed: IndexedAttributes::of(profile),
    };
    Ok(serde_json::to_vec(&body)?)
}

/// What a CIAM error code means for the users of the call.
pub fn outcome_of_error(error: &ApiError) -> VendorOutcome {
    let code = ErrorCode::from(&error.code);
    let message = error.message.clone();
    if ALREADY_EXISTS_CODES.contains(&error.code.as_str()) {
        return VendorOutcome::AlreadyExists { code, message };
    }
    let class = envelope::classify(&error.code);
    if class != ErrorClass::Permanent {
        return VendorOutcome::Failed {
            class,
            code,
            message,
        };
    }
    if DATA_ERROR_CODES.contains(&error.code.as_str()) || envelope::is_data_error(&error.code) {
        return VendorOutcome::Rejected { code, message };
    }
    VendorOutcome::Failed {
        class: ErrorClass::Permanent,
        code,
        message,
    }
}

/// A report in which the call failed with `error` for each of its users.
pub fn report_of_error(
    user_count: usize,
    vendor_request_id: Option<String>,
    error: &ApiError,
) -> CallReport {
    let outcome = outcome_of_error(error);
    let class = match &outcome {
        VendorOutcome::Failed { class, .. } => *class,
        _ => ErrorClass::Permanent,
    };
    CallReport {
        vendor_request_id,
        error_code: Some(ErrorCode::from(&error.code)),
        error_class: Some(class),
        outcomes: vec![outcome; user_count],
    }
}

/// Maps a `CreateUser` answer to one outcome per user sent (one, normally).
pub fn parse_create_user(users: &[&User], status: http::StatusCode, body: &[u8]) -> CallReport {
    let (request_id, response) = match envelope::decode_envelope(status, body) {
        Err(failure) => {
            return CallReport::call_failed(
                users.len(),
                None,
                failure.class,
                &failure.code,
                &failure.message,
            );
        }
        Ok(Envelope::Failure { request_id, error }) => {
            return report_of_error(users.len(), request_id, &error);
        }
        Ok(Envelope::Success {
            request_id,
            response,
        }) => (request_id, response),
    };
    let malformed = |what: &str| {
        CallReport::call_failed(
            users.len(),
            request_id.clone(),
            ErrorClass::Permanent,
            RegistrarCode::MalformedResponse,
            &format!("vendor answered CreateUser with {what}"),
        )
    };
    // CIAM CreateUser (docs/vendors/ciam.md#response): "User ... may return null"; without its
    // UserId nothing proves the user exists, and a repeat is safe (docs/vendors/ciam.md#repeats).
    let created = match response.get("User") {
        None | Some(Value::Null) => return malformed("a success without the User it created"),
        Some(Value::Object(created)) => created,
        Some(_) => return malformed("a User that is not an object"),
    };
    let text = |field: &str| match created.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone()).filter(|text| !text.is_empty())),
        Some(_) => Err(()),
    };
    let (vendor_user_id, user_name) = match (text("UserId"), text("UserName")) {
        (Ok(Some(user_id)), Ok(user_name)) => (user_id, user_name),
        (Ok(None), Ok(_)) => return malformed("a User without its UserId"),
        _ => return malformed("a User whose UserId or UserName is not a string"),
    };
    let outcomes = users
        .iter()
        .map(|user| {
            let named = user
                .ciam
                .as_ref()
                .is_some_and(|ciam| Some(&ciam.user_name) == user_name.as_ref());
            // One user per call: the answer is that user's. Were several sent,
            // only the one the answer names by UserName is known to exist.
            if users.len() == MAX_USERS_PER_CALL || named {
                VendorOutcome::Registered {
                    vendor_user_id: Some(vendor_user_id.clone()),
                }
            } else {
                VendorOutcome::failed(
                    ErrorClass::Permanent,
                    RegistrarCode::UserNotRegistered,
                    "CIAM answered CreateUser for another user",
                )
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
    use super::*;
    use crate::domain::CiamAttribute;

    const SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
    const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
    const PASSWORD: &str = "correct-horse-battery-staple";

    fn config() -> CiamConfig {
        CiamConfig {
            endpoint: "https://ciam.intl.tencentcloudapi.com".to_owned(),
            user_store_id: "2c3aca3b****************a7efe88e".to_owned(),
            region: "ap-guangzhou".to_owned(),
            credentials: TencentCredentials {
                secret_id: SECRET_ID.to_owned(),
                secret_key: SecretString::from(SECRET_KEY),
            },
        }
    }

    fn ciam() -> CiamCreateUser {
        CiamCreateUser::new(config())
    }

    /// The user of CIAM CreateUser's "Input Example" (docs/vendors/ciam.md#examples).
    fn documented_user() -> User {
        User {
            user_id: "zhangsan".to_owned(),
            ciam: Some(CiamProfile {
                user_name: "zhangsan".to_owned(),
                phone_number: "132****0000".to_owned(),
                email: "132****@qq.com".to_owned(),
                password: Some(SecretString::from("password")),
                nickname: "nick name".to_owned(),
                address: "address".to_owned(),
                user_groups: vec!["6cd22e51****************f6f7cb81".to_owned()],
                birthdate_unix_ms: Some(1_706_682_491_339),
                customization_attributes: vec![CiamAttribute {
                    name: "k".to_owned(),
                    value: "v".to_owned(),
                    kind: "STRING".to_owned(),
                }],
                indexed_attributes: (1..=5).map(|n| format!("value{n}")).collect(),
                ..CiamProfile::default()
            }),
            ..User::default()
        }
    }

    fn minimal_user(user_name: &str) -> User {
        User {
            user_id: user_name.to_owned(),
            ciam: Some(CiamProfile {
                user_name: user_name.to_owned(),
                phone_number: "13200000000".to_owned(),
                email: format!("{user_name}@example.com"),
                password: Some(SecretString::from(PASSWORD)),
                ..CiamProfile::default()
            }),
            ..User::default()
        }
    }

    fn attempt() -> AttemptContext {
        AttemptContext {
            unix_time: 1_700_000_000,
            nonce: String::new(),
        }
    }

    fn parse(users: &[User], status: u16, body: &str) -> CallReport {
        let refs: Vec<&User> = users.iter().collect();
        parse_create_user(
            &refs,
            http::StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        )
    }

    fn error_body(code: &str) -> String {
        format!(r#"{{"Response":{{"Error":{{"Code":"{code}","Message":"m"}},"RequestId":"r"}}}}"#)
    }

    #[test]
    fn request_body_is_the_documented_example() {
        // CIAM CreateUser "Input Example" (docs/vendors/ciam.md#examples), field for field.
        let request = ciam()
            .build_request(&[&documented_user()], &attempt())
            .unwrap();
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        let documented: Value = serde_json::from_str(
            r#"{
                "UserStoreId": "2c3aca3b****************a7efe88e",
                "PhoneNumber": "132****0000",
                "Email": "132****@qq.com",
                "Password": "password",
                "Nickname": "nick name",
                "Address": "address",
                "UserGroup": ["6cd22e51****************f6f7cb81"],
                "Birthdate": 1706682491339,
                "CustomizationAttributes": [{"Name": "k", "Value": "v", "Type": "STRING"}],
                "UserName": "zhangsan",
                "IndexedAttribute1": "value1",
                "IndexedAttribute2": "value2",
                "IndexedAttribute3": "value3",
                "IndexedAttribute4": "value4",
                "IndexedAttribute5": "value5"
            }"#,
        )
        .unwrap();
        assert_eq!(body, documented);
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "https://ciam.intl.tencentcloudapi.com/"
        );
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("x-tc-action"), "CreateUser");
        assert_eq!(header("x-tc-version"), "2022-03-31");
        // CIAM CreateUser (docs/vendors/ciam.md#endpoint): "Region Yes".
        assert_eq!(header("x-tc-region"), "ap-guangzhou");
        assert_eq!(header("x-tc-timestamp"), "1700000000");
        assert_eq!(header("host"), "ciam.intl.tencentcloudapi.com");
        assert_eq!(header("content-type"), "application/json");
        assert!(header("authorization").starts_with(
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2023-11-14/ciam/tc3_request, SignedHeaders=content-type;host, Signature="
        ));
    }

    #[test]
    fn optional_fields_are_omitted_and_type_only_when_given() {
        // CIAM CreateUser (docs/vendors/ciam.md#request): only UserStoreId, PhoneNumber, Email,
        // Password and UserName are required.
        let mut user = minimal_user("lisi");
        if let Some(profile) = user.ciam.as_mut() {
            profile.customization_attributes = vec![CiamAttribute {
                name: "team".to_owned(),
                value: "blue".to_owned(),
                kind: String::new(),
            }];
            profile.indexed_attributes = vec!["a".to_owned(), String::new(), "c".to_owned()];
        }
        let request = ciam().build_request(&[&user], &attempt()).unwrap();
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "UserStoreId": "2c3aca3b****************a7efe88e",
                "PhoneNumber": "13200000000",
                "Email": "lisi@example.com",
                "Password": PASSWORD,
                "UserName": "lisi",
                "CustomizationAttributes": [{"Name": "team", "Value": "blue"}],
                "IndexedAttribute1": "a",
                "IndexedAttribute3": "c"
            })
        );
    }

    #[test]
    fn the_signature_verifies_against_the_sent_headers() {
        let attempt = AttemptContext::now();
        let request = ciam()
            .build_request(&[&minimal_user("u1")], &attempt)
            .unwrap();
        let verified = super::super::tc3_verify::verify(
            "POST",
            request.headers(),
            request.body(),
            attempt.unix_time,
            |_| Some(SecretString::from(SECRET_KEY)),
        );
        assert_eq!(verified.as_deref(), Ok(SECRET_ID));
    }

    #[test]
    fn one_user_per_call_and_unvalidated_users_are_build_errors() {
        let (first, second) = (minimal_user("a"), minimal_user("b"));
        let error = ciam()
            .build_request(&[&first, &second], &attempt())
            .unwrap_err();
        assert!(error.to_string().contains("exactly 1 user"), "{error}");
        assert!(ciam().build_request(&[], &attempt()).is_err());
        let error = ciam()
            .build_request(&[&User::default()], &attempt())
            .unwrap_err();
        assert!(!format!("{error:?}").contains(PASSWORD));
    }

    #[test]
    fn the_password_is_in_the_body_and_in_no_debug_output_or_error() {
        let user = minimal_user("secretive");
        let request = ciam().build_request(&[&user], &attempt()).unwrap();
        // CIAM CreateUser (docs/vendors/ciam.md#request): "Password Yes String": the vendor gets it.
        assert!(
            std::str::from_utf8(request.body())
                .unwrap()
                .contains(&format!(r#""Password":"{PASSWORD}""#))
        );
        assert!(!format!("{:?}", config()).contains(SECRET_KEY));
        assert!(!format!("{:?}", ciam()).contains(SECRET_KEY));
        assert!(!format!("{user:?}").contains(PASSWORD));
        assert!(!format!("{:?}", user.ciam).contains(PASSWORD));
        let profile = user.ciam.as_ref().unwrap();
        let body = CreateUserRequest {
            user_store_id: "s",
            phone_number: "p",
            email: "e",
            password: Exposed(profile.password.as_ref().unwrap()),
            user_name: "u",
            nickname: "",
            address: "",
            user_group: &[],
            birthdate: None,
            customization_attributes: Vec::new(),
            indexed: IndexedAttributes::of(profile),
        };
        assert!(!format!("{body:?}").contains(PASSWORD));
        let mut too_many = minimal_user("too-many");
        too_many.ciam.as_mut().unwrap().indexed_attributes = vec!["i".to_owned(); 6];
        let rejection = ciam().validate(&too_many).unwrap_err();
        assert!(!format!("{rejection:?}").contains(PASSWORD));
        assert!(!rejection.message().contains(PASSWORD));
        let unbuildable = ciam()
            .build_request(&[&user, &user], &attempt())
            .unwrap_err();
        assert!(!format!("{unbuildable:?}").contains(PASSWORD));
        assert!(!unbuildable.to_string().contains(PASSWORD));
        let mut bad_endpoint = config();
        bad_endpoint.endpoint = "not a url".to_owned();
        let unbuildable = CiamCreateUser::new(bad_endpoint)
            .build_request(&[&user], &attempt())
            .unwrap_err();
        assert!(!format!("{unbuildable:?}").contains(PASSWORD));
        // and the report of any answer never quotes the request
        let report = parse(
            &[user],
            200,
            &error_body("FailedOperation.UserNameAlreadyExists"),
        );
        assert!(!format!("{report:?}").contains(PASSWORD));
    }

    #[test]
    fn the_four_required_fields_and_the_profile_are_required() {
        // CIAM CreateUser (docs/vendors/ciam.md#request): UserStoreId, PhoneNumber, Email,
        // Password, UserName "Required Yes".
        let rejection = ciam().validate(&User::default()).unwrap_err();
        assert_eq!(
            (rejection.field, rejection.code),
            ("ciam", "validation.required")
        );
        type Clear = fn(&mut CiamProfile);
        let cases: [(&str, Clear); 4] = [
            ("ciam.userName", |profile| profile.user_name.clear()),
            ("ciam.phoneNumber", |profile| profile.phone_number.clear()),
            ("ciam.email", |profile| profile.email.clear()),
            ("ciam.password", |profile| profile.password = None),
        ];
        for (field, clear) in cases {
            let mut user = minimal_user("u");
            clear(user.ciam.as_mut().unwrap());
            let rejection = ciam().validate(&user).unwrap_err();
            assert_eq!(rejection.field, field);
            assert_eq!(rejection.code, "validation.required");
            assert_eq!(
                rejection.message(),
                format!("{field} is required and must not be empty")
            );
        }
        let mut empty_password = minimal_user("u");
        empty_password.ciam.as_mut().unwrap().password = Some(SecretString::from(""));
        assert_eq!(
            ciam().validate(&empty_password).unwrap_err().field,
            "ciam.password"
        );
        assert_eq!(ciam().validate(&minimal_user("u")), Ok(()));
        assert_eq!(ciam().validate(&documented_user()), Ok(()));
    }

    #[test]
    fn indexed_attributes_are_at_most_five_of_at_most_512_characters() {
        // docs/vendors/ciam.md#indexed-attributes: IndexedAttribute1..5, "max 512 chars →
        // FailedOperation.IndexedAttributeTooLong".
        let with = |values: Vec<String>| {
            let mut user = minimal_user("u");
            user.ciam.as_mut().unwrap().indexed_attributes = values;
            ciam().validate(&user)
        };
        assert_eq!(with(vec!["v".to_owned(); 5]), Ok(()));
        let rejection = with(vec!["v".to_owned(); 6]).unwrap_err();
        assert_eq!(
            (rejection.field, rejection.code),
            ("ciam.indexedAttributes", "validation.too_many")
        );
        assert_eq!(rejection.rule, "must hold at most 5 values (got 6)");
        // characters, not bytes: 512 CJK characters are 1536 bytes
        assert_eq!(with(vec!["值".repeat(512)]), Ok(()));
        let rejection = with(vec![String::new(), "x".repeat(513)]).unwrap_err();
        assert_eq!(rejection.code, "validation.too_long");
        assert_eq!(
            rejection.rule,
            "each must be at most 512 characters (IndexedAttribute2 has 513)"
        );
    }

    #[test]
    fn attributes_need_names_and_groups_need_ids() {
        // docs/vendors/ciam.md#membermap: MemberMap "Name String req".
        let mut user = minimal_user("u");
        user.ciam.as_mut().unwrap().customization_attributes = vec![CiamAttribute::default()];
        let rejection = ciam().validate(&user).unwrap_err();
        assert_eq!(rejection.field, "ciam.customizationAttributes");
        let mut user = minimal_user("u");
        user.ciam.as_mut().unwrap().user_groups = vec!["g".to_owned(), String::new()];
        assert_eq!(ciam().validate(&user).unwrap_err().field, "ciam.userGroups");
    }

    #[test]
    fn documented_output_example_registers_with_the_user_id() {
        // CIAM CreateUser "Output Example" (docs/vendors/ciam.md#examples) (abridged to the fields
        // read, plus a few others).
        let report = parse(
            &[documented_user()],
            200,
            r#"{"Response":{"User":{"UserId":"53e25c3****************e4eb5bd1","UserName":"zhangsan",
                "PhoneNumber":"132****0000","Email":"132****@qq.com","LastSignOn":1711002933442,
                "CreatedDate":1718332940956,"Status":"NORMAL","UserDataSourceEnum":"ADMIN",
                "UserGroups":["6cd22e51****************f6f7cb81"],"IdentityVerified":true,"Version":0},
                "RequestId":"e2e9e8aa********************9ab34c6e"}}"#,
        );
        assert_eq!(
            report.vendor_request_id.as_deref(),
            Some("e2e9e8aa********************9ab34c6e")
        );
        assert_eq!(report.error_code, None);
        assert_eq!(
            report.outcomes,
            vec![VendorOutcome::Registered {
                vendor_user_id: Some("53e25c3****************e4eb5bd1".to_owned())
            }]
        );
    }

    #[test]
    fn a_success_without_the_user_id_is_malformed_not_created() {
        // CIAM CreateUser (docs/vendors/ciam.md#response): User "may return null"; registrar still needs its UserId.
        for body in [
            r#"{"Response":{"User":null,"RequestId":"r"}}"#,
            r#"{"Response":{"RequestId":"r"}}"#,
            r#"{"Response":{"User":{},"RequestId":"r"}}"#,
            r#"{"Response":{"User":{"UserId":null,"UserName":"u"},"RequestId":"r"}}"#,
            r#"{"Response":{"User":{"UserId":"","UserName":"u"},"RequestId":"r"}}"#,
        ] {
            let report = parse(&[minimal_user("u")], 200, body);
            assert_eq!(report.vendor_request_id.as_deref(), Some("r"), "{body}");
            assert_eq!(
                report.error_code,
                Some(RegistrarCode::MalformedResponse.into())
            );
            let [VendorOutcome::Failed { class, code, .. }] = report.outcomes.as_slice() else {
                panic!("{body}: {report:?}");
            };
            assert_eq!(*code, RegistrarCode::MalformedResponse, "{body}");
            // permanent here; the engine retries it because a CreateUser repeat is safe
            assert_eq!(*class, ErrorClass::Permanent, "{body}");
        }
    }

    #[test]
    fn every_documented_error_code_has_its_outcome() {
        // CIAM CreateUser error codes (docs/vendors/ciam.md#error-codes) and
        // docs/vendors/tencent-cloud-api.md#error-codes: code -> outcome.
        enum Expected {
            Exists,
            Rejected,
            Failed(ErrorClass),
        }
        use Expected::*;
        let cases = [
            ("FailedOperation.UserNameAlreadyExists", Exists),
            ("FailedOperation.PhoneNumberAlreadyExists", Exists),
            ("FailedOperation.EmailAlreadyExists", Exists),
            ("RequestLimitExceeded", Failed(ErrorClass::Throttled)),
            (
                "RequestLimitExceeded.FrequentRequest",
                Failed(ErrorClass::Throttled),
            ),
            (
                "RequestLimitExceeded.RepeatRequest",
                Failed(ErrorClass::Retryable),
            ),
            ("InternalError", Failed(ErrorClass::Retryable)),
            ("InternalError.UnknownError", Failed(ErrorClass::Retryable)),
            (
                "InternalError.JudgeUserExistException",
                Failed(ErrorClass::Retryable),
            ),
            // docs/vendors/tencent-cloud-api.md#error-codes: transient resource states are retried (policy).
            ("ResourceInUse", Failed(ErrorClass::Retryable)),
            ("ResourceInsufficient", Failed(ErrorClass::Retryable)),
            ("ResourceUnavailable", Failed(ErrorClass::Retryable)),
            // docs/vendors/tencent-cloud-api.md#error-codes: a stale timestamp is re-signed by the retry.
            ("AuthFailure.SignatureExpire", Failed(ErrorClass::Retryable)),
            ("FailedOperation.AttributeFormatError", Rejected),
            ("FailedOperation.EmailIsNull", Rejected),
            ("FailedOperation.PasswordIsNull", Rejected),
            ("FailedOperation.PhoneNumberIsNull", Rejected),
            ("FailedOperation.UserNameIsNull", Rejected),
            ("FailedOperation.IndexedAttributeTooLong", Rejected),
            ("FailedOperation.UserGroupNotFound", Rejected),
            ("FailedOperation.OrgNotFound", Rejected),
            ("FailedOperation.ImportUserIsEmpty", Rejected),
            ("InvalidParameter", Rejected),
            ("InvalidParameter.ParameterIllegal", Rejected),
            ("InvalidParameterValue", Rejected),
            ("MissingParameter", Rejected),
            ("UnknownParameter", Rejected),
            (
                "FailedOperation.InvalidTenant",
                Failed(ErrorClass::Permanent),
            ),
            (
                "FailedOperation.InvalidUserStore",
                Failed(ErrorClass::Permanent),
            ),
            (
                "FailedOperation.UserStoreNotExist",
                Failed(ErrorClass::Permanent),
            ),
            (
                "FailedOperation.QuotaLimitExceeded",
                Failed(ErrorClass::Permanent),
            ),
            ("FailedOperation", Failed(ErrorClass::Permanent)),
            ("OperationDenied", Failed(ErrorClass::Permanent)),
            ("LimitExceeded", Failed(ErrorClass::Permanent)),
            ("UnauthorizedOperation", Failed(ErrorClass::Permanent)),
            (
                "UnauthorizedOperation.TenantNotActivated",
                Failed(ErrorClass::Permanent),
            ),
            ("UnsupportedOperation", Failed(ErrorClass::Permanent)),
            ("ResourcesSoldOut", Failed(ErrorClass::Permanent)),
            ("ResourceNotFound", Failed(ErrorClass::Permanent)),
            ("DryRunOperation", Failed(ErrorClass::Permanent)),
            ("AuthFailure", Failed(ErrorClass::Permanent)),
            (
                "AuthFailure.SignatureFailure",
                Failed(ErrorClass::Permanent),
            ),
            (
                "AuthFailure.SecretIdNotFound",
                Failed(ErrorClass::Permanent),
            ),
            ("AuthFailure.InvalidSecretId", Failed(ErrorClass::Permanent)),
            (
                "AuthFailure.UnauthorizedOperation",
                Failed(ErrorClass::Permanent),
            ),
        ];
        for (code, expected) in cases {
            let report = parse(&[minimal_user("u")], 200, &error_body(code));
            assert_eq!(report.error_code(), Some(code));
            assert_eq!(report.vendor_request_id.as_deref(), Some("r"));
            let (outcome, class) = match expected {
                Exists => (
                    VendorOutcome::AlreadyExists {
                        code: code.into(),
                        message: "m".to_owned(),
                    },
                    ErrorClass::Permanent,
                ),
                Rejected => (
                    VendorOutcome::Rejected {
                        code: code.into(),
                        message: "m".to_owned(),
                    },
                    ErrorClass::Permanent,
                ),
                Failed(class) => (VendorOutcome::failed(class, code, "m"), class),
            };
            assert_eq!(report.outcomes, vec![outcome], "{code}");
            assert_eq!(report.error_class, Some(class), "{code}");
        }
    }

    #[test]
    fn malformed_answers_fail_without_panicking() {
        let users = [minimal_user("u")];
        for (status, body) in [
            (200, "not json"),
            (200, "{}"),
            (200, r#"{"Response":{"User":"u","RequestId":"r"}}"#),
            (200, r#"{"Response":{"User":{"UserId":5},"RequestId":"r"}}"#),
            (200, r#"{"Response":{"Error":{"Message":"no code"}}}"#),
            (500, "upstream exploded"),
        ] {
            let report = parse(&users, status, body);
            assert_eq!(report.outcomes.len(), 1);
            assert!(
                matches!(report.outcomes[0], VendorOutcome::Failed { .. }),
                "{body}"
            );
        }
        let report = parse(&users, 503, "");
        assert_eq!(
            report.outcomes[0].retry_class(),
            Some(ErrorClass::Retryable)
        );
    }

    #[test]
    fn several_users_are_matched_by_user_name() {
        let users = [minimal_user("a"), minimal_user("b")];
        let report = parse(
            &users,
            200,
            r#"{"Response":{"User":{"UserId":"id-b","UserName":"b"},"RequestId":"r"}}"#,
        );
        assert!(matches!(report.outcomes[0], VendorOutcome::Failed { .. }));
        assert_eq!(
            report.outcomes[1],
            VendorOutcome::Registered {
                vendor_user_id: Some("id-b".to_owned())
            }
        );
    }
}
