//! The simulated Tencent CIAM `CreateUser` (2022-03-31): the Tencent gateway
//! checks (TC3 signature for service `ciam`, version, content type) and the
//! region CIAM requires, then the user store's quota, then the body, read
//! strictly against CIAM CreateUser's fields (docs/vendors/ciam.md#request); an accepted call
//! creates one user, keyed by UserName, unless its UserName, PhoneNumber or Email is taken.
//! The password is checked for presence and then dropped: the simulator
//! keeps `PasswordSet`, never the password. Also the CIAM rules the
//! simulated import jobs share (docs/vendors/ciam.md): which user store a
//! body names, the UserStoreId check, CustomizationAttributes and
//! IndexedAttributeN lengths, how fields are kept and ids generated.
//! Sources: CIAM CreateUser (docs/vendors/ciam.md) and docs/vendors/tencent-cloud-api.md.

use serde_json::{Map, Value, json};

use super::{
    state::{AppState, Refusal, RegisteredUser, SimAccount},
    tencent::{self, Product},
};
use crate::{
    domain::VendorKind,
    vendor_api::tencent::ciam::{ACTION, MAX_INDEXED_ATTRIBUTE_CHARS, SERVICE, VERSION},
};

/// CIAM CreateUser "Input Parameters" (docs/vendors/ciam.md#request) besides the common ones, and
/// the SDK's optional UserOrg (docs/vendors/ciam.md#request).
const CREATE_USER_FIELDS: [&str; 16] = [
    "UserStoreId",
    "PhoneNumber",
    "Email",
    "Password",
    "UserName",
    "Nickname",
    "Address",
    "UserGroup",
    "Birthdate",
    "CustomizationAttributes",
    "IndexedAttribute1",
    "IndexedAttribute2",
    "IndexedAttribute3",
    "IndexedAttribute4",
    "IndexedAttribute5",
    "UserOrg",
];

/// CIAM CreateUser (docs/vendors/ciam.md#request): the required user fields and the code each one's
/// absence answers.
const REQUIRED_FIELDS: [(&str, &str); 4] = [
    ("UserName", "FailedOperation.UserNameIsNull"),
    ("PhoneNumber", "FailedOperation.PhoneNumberIsNull"),
    ("Email", "FailedOperation.EmailIsNull"),
    ("Password", "FailedOperation.PasswordIsNull"),
];

/// The optional string fields kept with a user, by their request name.
const KEPT_TEXT_FIELDS: [&str; 7] = [
    "Nickname",
    "Address",
    "IndexedAttribute1",
    "IndexedAttribute2",
    "IndexedAttribute3",
    "IndexedAttribute4",
    "IndexedAttribute5",
];

/// A user a valid CreateUser body describes; the password is not among its fields.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NewUser {
    user_name: String,
    phone_number: String,
    email: String,
    /// Nickname, Address, UserGroup, Birthdate, CustomizationAttributes, IndexedAttributeN.
    fields: Map<String, Value>,
}

/// `CreateUser`, behind the Tencent gateway.
pub(super) struct CreateUser;

impl Product for CreateUser {
    const VENDOR: VendorKind = VendorKind::TencentCiam;
    const ACTION: &'static str = ACTION;
    const SERVICE: &'static str = SERVICE;
    const VERSION: &'static str = VERSION;
    const NEEDS_REGION: bool = true;
    type Valid = NewUser;
    type Accepted = Value;

    fn names(account: &SimAccount, body: &Value) -> bool {
        names_user_store(account, body)
    }

    fn carried(body: Option<&Value>) -> Vec<String> {
        body.and_then(|body| body.get("UserName"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .into_iter()
            .collect()
    }

    fn check_body(body: Option<&Value>, account: &SimAccount) -> Result<NewUser, Refusal> {
        validate_body(body, &account.user_store_id)
    }

    fn apply(
        app: &mut AppState,
        account: &SimAccount,
        new_user: NewUser,
    ) -> Result<Value, Refusal> {
        create(app, &account.user_store_id, new_user)
    }

    fn answer(user: Value) -> Result<Map<String, Value>, Refusal> {
        // CIAM CreateUser "Output Example" (docs/vendors/ciam.md#examples):
        // {"Response":{"User":{...},"RequestId"}}.
        Ok(Map::from_iter([("User".to_owned(), user)]))
    }
}

/// One SecretId may own several user stores: the body's UserStoreId picks.
pub(super) fn names_user_store(account: &SimAccount, body: &Value) -> bool {
    user_store_id_of(Some(body)) == Some(account.user_store_id.as_str())
}

fn user_store_id_of(body: Option<&Value>) -> Option<&str> {
    body?.get("UserStoreId")?.as_str()
}

/// `CustomizationAttributes` (docs/vendors/ciam.md#membermap MemberMap: Name and Value required,
/// Type optional); `format_code` is the code a malformed attribute answers.
pub(super) fn member_maps_field(
    object: &Map<String, Value>,
    path: &str,
    format_code: &str,
) -> Result<Option<Value>, Refusal> {
    let attributes = match object.get("CustomizationAttributes") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(attributes)) => attributes,
        Some(_) => {
            return Err(tencent::refusal(
                format_code,
                format!("the parameter {path}CustomizationAttributes must be an array"),
            ));
        }
    };
    for (index, attribute) in attributes.iter().enumerate() {
        let malformed = |what: &str| {
            tencent::refusal(
                format_code,
                format!("the parameter {path}CustomizationAttributes.{index} {what}"),
            )
        };
        let Some(attribute) = attribute.as_object() else {
            return Err(malformed("must be an object"));
        };
        tencent::only_known(
            attribute,
            |key| ["Name", "Value", "Type"].contains(&key),
            &format!("{path}CustomizationAttributes.{index}."),
        )?;
        for required in ["Name", "Value"] {
            if !attribute.get(required).is_some_and(Value::is_string) {
                return Err(malformed(&format!("needs a string {required}")));
            }
        }
        if !matches!(
            attribute.get("Type"),
            None | Some(Value::Null | Value::String(_))
        ) {
            return Err(malformed("has a Type that is not a string"));
        }
    }
    Ok(Some(Value::Array(attributes.clone())))
}

/// The first IndexedAttributeN longer than the 512 characters of
/// docs/vendors/ciam.md#indexed-attributes, if any.
pub(super) fn overlong_indexed_attribute(object: &Map<String, Value>) -> Option<String> {
    (1..=5)
        .map(|n| format!("IndexedAttribute{n}"))
        .find(|field| {
            object
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|value| value.chars().count() > MAX_INDEXED_ATTRIBUTE_CHARS)
        })
}

/// Reads a CreateUser body strictly: exactly the documented fields, with their types.
fn validate_body(body: Option<&Value>, user_store_id: &str) -> Result<NewUser, Refusal> {
    let body = tencent::body_object(body)?;
    tencent::only_known(body, |key| CREATE_USER_FIELDS.contains(&key), "")?;
    check_user_store(body, user_store_id)?;
    let mut required = Vec::with_capacity(REQUIRED_FIELDS.len());
    for (field, code) in REQUIRED_FIELDS {
        match tencent::text_field(body, field, "")? {
            Some(value) if !value.is_empty() => required.push(value),
            _ => {
                return Err(tencent::refusal(
                    code,
                    format!("the parameter {field} cannot be empty"),
                ));
            }
        }
    }
    // The password (required[3]) was only checked for presence; it is not kept.
    let [user_name, phone_number, email, _password] = <[String; 4]>::try_from(required)
        .map_err(|_| tencent::refusal("InternalError", "the required fields could not be read"))?;
    let mut fields = Map::new();
    for field in KEPT_TEXT_FIELDS {
        if let Some(value) = tencent::text_field(body, field, "")?.filter(|value| !value.is_empty())
        {
            fields.insert(field.to_owned(), Value::String(value));
        }
    }
    if let Some(field) = overlong_indexed_attribute(body) {
        // docs/vendors/ciam.md#indexed-attributes: "max 512 chars → FailedOperation.IndexedAttributeTooLong".
        return Err(tencent::refusal(
            "FailedOperation.IndexedAttributeTooLong",
            format!("{field} can contain up to {MAX_INDEXED_ATTRIBUTE_CHARS} characters"),
        ));
    }
    let groups = tencent::strings_field(body, "UserGroup", "")?;
    if !groups.is_empty() {
        fields.insert("UserGroup".to_owned(), json!(groups));
    }
    tencent::strings_field(body, "UserOrg", "")?;
    // CIAM CreateUser (docs/vendors/ciam.md#request): "Birthdate No Integer" (milliseconds since the epoch).
    match body.get("Birthdate") {
        None | Some(Value::Null) => {}
        Some(Value::Number(number)) if number.is_i64() => {
            fields.insert("Birthdate".to_owned(), Value::Number(number.clone()));
        }
        Some(_) => {
            return Err(tencent::invalid_value(
                "the parameter Birthdate must be an integer".to_owned(),
            ));
        }
    }
    // CIAM CreateUser (docs/vendors/ciam.md#error-codes): FailedOperation.AttributeFormatError "The
    // user attribute format is abnormal".
    if let Some(attributes) = member_maps_field(body, "", "FailedOperation.AttributeFormatError")? {
        fields.insert("CustomizationAttributes".to_owned(), attributes);
    }
    Ok(NewUser {
        user_name,
        phone_number,
        email,
        fields,
    })
}

/// docs/vendors/ciam.md#error-codes: a request naming another store's id answers
/// FailedOperation.UserStoreNotExist.
pub(super) fn check_user_store(
    body: &Map<String, Value>,
    user_store_id: &str,
) -> Result<(), Refusal> {
    match tencent::text_field(body, "UserStoreId", "")? {
        None => Err(tencent::refusal(
            "MissingParameter",
            "the parameter UserStoreId is required",
        )),
        Some(named) if named == user_store_id => Ok(()),
        Some(_) => Err(tencent::refusal(
            "FailedOperation.UserStoreNotExist",
            "the user store does not exist",
        )),
    }
}

/// The code for the first identifier of a user that the store holds already.
fn taken_identifier(
    app: &AppState,
    user_name: &str,
    phone_number: &str,
    email: &str,
) -> Option<&'static str> {
    let held = |field: &str, value: &str| {
        !value.is_empty()
            && app
                .users
                .values()
                .any(|user| user.fields.get(field).is_some_and(|held| held == value))
    };
    if held("UserName", user_name) || (!user_name.is_empty() && app.users.contains_key(user_name)) {
        return Some("FailedOperation.UserNameAlreadyExists");
    }
    if held("PhoneNumber", phone_number) {
        return Some("FailedOperation.PhoneNumberAlreadyExists");
    }
    if held("Email", email) {
        return Some("FailedOperation.EmailAlreadyExists");
    }
    None
}

/// Creates the user unless one of its identifiers is taken; answers CIAM CreateUser's `User`
/// (docs/vendors/ciam.md#response).
fn create(app: &mut AppState, user_store_id: &str, new_user: NewUser) -> Result<Value, Refusal> {
    if let Some(code) = taken_identifier(
        app,
        &new_user.user_name,
        &new_user.phone_number,
        &new_user.email,
    ) {
        // CIAM CreateUser error codes (docs/vendors/ciam.md#error-codes): "... has already been
        // bound to a user" / "already exists".
        return Err(tencent::refusal(code, "the user already exists"));
    }
    let user_id = generate_id();
    let created_ms = chrono::Utc::now().timestamp_millis();
    let mut fields = stored_fields(&new_user.fields);
    fields.insert("UserName".to_owned(), new_user.user_name.clone());
    fields.insert("PhoneNumber".to_owned(), new_user.phone_number.clone());
    fields.insert("Email".to_owned(), new_user.email.clone());
    fields.insert("PasswordSet".to_owned(), "true".to_owned());
    fields.insert("Status".to_owned(), "NORMAL".to_owned());
    fields.insert("CreatedDate".to_owned(), created_ms.to_string());
    app.users.insert(
        new_user.user_name.clone(),
        RegisteredUser {
            origin_id: new_user.user_name.clone(),
            vendor_user_id: user_id.clone(),
            name: new_user
                .fields
                .get("Nickname")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            avatar: String::new(),
            registrations: 1,
            fields,
        },
    );
    let mut user = Map::new();
    user.insert("UserId".to_owned(), json!(user_id));
    user.insert("UserName".to_owned(), json!(new_user.user_name));
    user.insert("PhoneNumber".to_owned(), json!(new_user.phone_number));
    user.insert("Email".to_owned(), json!(new_user.email));
    for (field, value) in new_user.fields {
        // CIAM CreateUser's output (docs/vendors/ciam.md#response) names these UserGroups and
        // CustomAttributes.
        let name = match field.as_str() {
            "UserGroup" => "UserGroups".to_owned(),
            "CustomizationAttributes" => "CustomAttributes".to_owned(),
            _ => field,
        };
        user.insert(name, value);
    }
    user.insert("Status".to_owned(), json!("NORMAL"));
    user.insert("UserDataSourceEnum".to_owned(), json!("ADMIN"));
    user.insert("CreatedDate".to_owned(), json!(created_ms));
    user.insert("LastModifiedDate".to_owned(), json!(created_ms));
    user.insert("UserStoreId".to_owned(), json!(user_store_id));
    Ok(Value::Object(user))
}

/// Request fields as the strings `RegisteredUser.fields` holds (JSON for non-strings).
pub(super) fn stored_fields(
    fields: &Map<String, Value>,
) -> std::collections::BTreeMap<String, String> {
    fields
        .iter()
        .map(|(field, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (field.clone(), text)
        })
        .collect()
}

/// A CIAM id shaped like CIAM CreateApiImportUserJob's `c29f2c0f****************405ec698`
/// (docs/vendors/ciam-import.md#job): 32 hex digits.
pub(super) fn generate_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "2c3aca3b****************a7efe88e";

    fn documented_body() -> Value {
        // CIAM CreateUser "Input Example" (docs/vendors/ciam.md#examples).
        json!({
            "UserStoreId": STORE,
            "PhoneNumber": "132****0000",
            "Email": "132****@qq.com",
            "Password": "password",
            "Nickname": "nick name",
            "Address": "address",
            "UserGroup": ["6cd22e51****************f6f7cb81"],
            "Birthdate": 1706682491339i64,
            "CustomizationAttributes": [{"Name": "k", "Value": "v", "Type": "STRING"}],
            "UserName": "zhangsan",
            "IndexedAttribute1": "value1",
            "IndexedAttribute2": "value2",
            "IndexedAttribute3": "value3",
            "IndexedAttribute4": "value4",
            "IndexedAttribute5": "value5"
        })
    }

    fn code_of(body: Value) -> Option<String> {
        validate_body(Some(&body), STORE)
            .err()
            .map(|refusal| refusal.code)
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = documented_body();
        body[field] = value;
        body
    }

    fn without(field: &str) -> Value {
        let mut body = documented_body();
        body.as_object_mut().unwrap().remove(field);
        body
    }

    #[test]
    fn the_documented_input_example_is_accepted_and_the_password_is_not_kept() {
        let user = validate_body(Some(&documented_body()), STORE).unwrap();
        assert_eq!(user.user_name, "zhangsan");
        assert_eq!(user.phone_number, "132****0000");
        assert_eq!(user.email, "132****@qq.com");
        assert!(!format!("{user:?}").contains("password"));
        assert_eq!(user.fields["Birthdate"], json!(1706682491339i64));
        let mut app = AppState::new(10);
        let answer = create(&mut app, STORE, user).unwrap();
        // CIAM CreateUser "Output Example" (docs/vendors/ciam.md#examples) shape
        assert_eq!(answer["UserName"], "zhangsan");
        assert_eq!(answer["Status"], "NORMAL");
        assert_eq!(
            answer["UserGroups"],
            json!(["6cd22e51****************f6f7cb81"])
        );
        assert_eq!(answer["CustomAttributes"][0]["Name"], "k");
        assert_eq!(answer["UserId"].as_str().unwrap().len(), 32);
        let held = &app.users["zhangsan"];
        assert_eq!(held.vendor_user_id, answer["UserId"]);
        assert_eq!(held.fields["PasswordSet"], "true");
        assert_eq!(held.fields["Email"], "132****@qq.com");
        assert!(
            held.fields
                .values()
                .all(|value| !value.contains("\"password\"") && value != "password")
        );
    }

    #[test]
    fn every_rule_of_the_body_has_its_code() {
        let cases = [
            (json!([1]), "InvalidParameter"),
            (with("Extra", json!(1)), "UnknownParameter"),
            (without("UserStoreId"), "MissingParameter"),
            (
                with("UserStoreId", json!("other")),
                "FailedOperation.UserStoreNotExist",
            ),
            (with("UserStoreId", json!(5)), "InvalidParameterValue"),
            (without("UserName"), "FailedOperation.UserNameIsNull"),
            (
                with("UserName", json!("")),
                "FailedOperation.UserNameIsNull",
            ),
            (without("PhoneNumber"), "FailedOperation.PhoneNumberIsNull"),
            (without("Email"), "FailedOperation.EmailIsNull"),
            (
                with("Password", json!(null)),
                "FailedOperation.PasswordIsNull",
            ),
            (with("Password", json!(12345)), "InvalidParameterValue"),
            (with("Nickname", json!(7)), "InvalidParameterValue"),
            (with("UserGroup", json!("g")), "InvalidParameterValue"),
            (with("UserGroup", json!([1])), "InvalidParameterValue"),
            (
                with("Birthdate", json!("1706682491339")),
                "InvalidParameterValue",
            ),
            (with("Birthdate", json!(1.5)), "InvalidParameterValue"),
            (
                with("IndexedAttribute3", json!("x".repeat(513))),
                "FailedOperation.IndexedAttributeTooLong",
            ),
            (
                with("CustomizationAttributes", json!({})),
                "FailedOperation.AttributeFormatError",
            ),
            (
                with("CustomizationAttributes", json!([{"Name": "k"}])),
                "FailedOperation.AttributeFormatError",
            ),
            (
                with(
                    "CustomizationAttributes",
                    json!([{"Name": "k", "Value": "v", "Type": 1}]),
                ),
                "FailedOperation.AttributeFormatError",
            ),
            (
                with(
                    "CustomizationAttributes",
                    json!([{"Name": "k", "Value": "v", "Kind": "x"}]),
                ),
                "UnknownParameter",
            ),
        ];
        for (body, code) in cases {
            assert_eq!(code_of(body.clone()).as_deref(), Some(code), "{body}");
        }
        assert_eq!(
            validate_body(None, STORE)
                .err()
                .map(|refusal| refusal.code)
                .as_deref(),
            Some("InvalidParameter")
        );
        // 512 characters are fine, whatever their bytes
        assert_eq!(
            code_of(with("IndexedAttribute1", json!("值".repeat(512)))),
            None
        );
        assert_eq!(code_of(with("UserOrg", json!(["org"]))), None);
    }

    #[test]
    fn taken_identifiers_answer_their_own_code() {
        // CIAM CreateUser error codes (docs/vendors/ciam.md#error-codes):
        // UserName/PhoneNumber/EmailAlreadyExists.
        let mut app = AppState::new(10);
        let user = |name: &str, phone: &str, email: &str| {
            let mut body = documented_body();
            body["UserName"] = json!(name);
            body["PhoneNumber"] = json!(phone);
            body["Email"] = json!(email);
            validate_body(Some(&body), STORE).unwrap()
        };
        create(&mut app, STORE, user("a", "1", "a@x")).unwrap();
        let mut code = |new_user| {
            create(&mut app, STORE, new_user)
                .err()
                .map(|refusal| refusal.code)
        };
        assert_eq!(
            code(user("a", "2", "b@x")).as_deref(),
            Some("FailedOperation.UserNameAlreadyExists")
        );
        assert_eq!(
            code(user("b", "1", "b@x")).as_deref(),
            Some("FailedOperation.PhoneNumberAlreadyExists")
        );
        assert_eq!(
            code(user("b", "2", "a@x")).as_deref(),
            Some("FailedOperation.EmailAlreadyExists")
        );
        assert_eq!(code(user("b", "2", "b@x")), None);
        assert_eq!(app.users.len(), 2);
    }

    #[test]
    fn ids_look_like_the_documented_example() {
        // CIAM CreateUser and CreateApiImportUserJob (docs/vendors/ciam.md#request,
        // docs/vendors/ciam-import.md#createapiimportuserjob): masked ids such as
        // "2c3aca3b****************a7efe88e" are 32 characters.
        let id = generate_id();
        assert_eq!(id.len(), "2c3aca3b****************a7efe88e".len());
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
