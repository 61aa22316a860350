//! The simulated Tencent CIAM import jobs (2022-03-31):
//! `CreateApiImportUserJob` keeps a job with its users, and the job moves
//! PENDING -> PROCESSING -> COMPLETED as time passes; `ListJobs` reads jobs.
//! A job registers its users when it completes: a user whose UserName,
//! PhoneNumber or Email is taken, who has no identifier, or whose password
//! is not marked as a hash goes to the job's FailedUsers instead. At most two
//! jobs of a user store run at once. Jobs advance lazily, whenever a call
//! touches the store. Password hashes and salts are never kept: a user keeps
//! `PasswordHashType`. Sources: CIAM CreateApiImportUserJob (docs/vendors/ciam-import.md) and
//! docs/vendors/tencent-cloud-api.md.
//!
//! A failed user is named in `FailedUserIdentification` by its UserName,
//! else its PhoneNumber, else its Email (else another identifier): the
//! choice the vendor module documents, since docs/vendors/ciam-import.md#matching-failed-users
//! leaves it UNCONFIRMED. An imported user is kept under that same identifier.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{
    ciam::{
        check_user_store, generate_id, member_maps_field, names_user_store,
        overlong_indexed_attribute, stored_fields,
    },
    jobs::{ImportedUser, SimJob},
    pipeline::entries,
    state::{AppState, Refusal, RegisteredUser, SimAccount},
    tencent::{self, Product},
};
use crate::{
    domain::VendorKind,
    vendor_api::tencent::{
        ciam::{MAX_INDEXED_ATTRIBUTE_CHARS, SERVICE, VERSION},
        ciam_import::{ACTION, BUSY_CODE, FailedUser, MAX_RUNNING_JOBS, POLL_ACTION},
    },
};

/// What a failed user's FailedReason says when an identifier is taken.
pub(super) const EXISTS_REASON: &str = "user already exists";

/// docs/vendors/ciam-import.md#importuser ImportUser: the identifiers of which at least one is
/// required, in the order a failed user is named by.
const IDENTIFIERS: [&str; 9] = [
    "UserName",
    "PhoneNumber",
    "Email",
    "WechatOpenId",
    "WechatUnionId",
    "AlipayUserId",
    "QqOpenId",
    "QqUnionId",
    "WeComUserId",
];

/// docs/vendors/ciam-import.md#importuser ImportUser string fields besides the identifiers,
/// Password and PasswordEncryptTypeEnum.
const TEXT_FIELDS: [&str; 18] = [
    "ResidentIdentityCard",
    "Nickname",
    "Address",
    "Description",
    "Birthdate",
    "Name",
    "Locale",
    "Gender",
    "IdentityVerificationMethod",
    "Job",
    "Nationality",
    "Zone",
    "IndexedAttribute1",
    "IndexedAttribute2",
    "IndexedAttribute3",
    "IndexedAttribute4",
    "IndexedAttribute5",
    "PasswordEncryptTypeEnum",
];

/// docs/vendors/ciam-import.md#importuser ImportUser fields that are not strings.
const OTHER_FIELDS: [&str; 5] = [
    "UserGroup",
    "IdentityVerified",
    "CustomizationAttributes",
    "Salt",
    "Password",
];

/// docs/vendors/ciam-import.md#password-hash-and-salt PasswordEncryptTypeEnum values (plaintext and
/// MD5 strings are UNCONFIRMED).
const ENCRYPT_TYPES: [&str; 2] = ["SHA1", "BCRYPT"];

/// `CreateApiImportUserJob`, behind the Tencent gateway (signed as CIAM).
pub(super) struct CreateJob;

impl Product for CreateJob {
    const VENDOR: VendorKind = VendorKind::TencentCiamImport;
    const ACTION: &'static str = ACTION;
    const SERVICE: &'static str = SERVICE;
    const VERSION: &'static str = VERSION;
    const NEEDS_REGION: bool = true;
    type Valid = Vec<ImportedUser>;
    type Accepted = Value;

    fn names(account: &SimAccount, body: &Value) -> bool {
        names_user_store(account, body)
    }

    fn carried(body: Option<&Value>) -> Vec<String> {
        carried_identifications(body)
    }

    fn check_body(body: Option<&Value>, account: &SimAccount) -> Result<Self::Valid, Refusal> {
        validate_job(body, &account.user_store_id)
    }

    fn apply(
        app: &mut AppState,
        _account: &SimAccount,
        users: Self::Valid,
    ) -> Result<Value, Refusal> {
        let now = Instant::now();
        advance(app, now);
        let running = app
            .jobs
            .jobs
            .iter()
            .filter(|job| job.failed_users.is_none())
            .count();
        if running >= MAX_RUNNING_JOBS {
            // docs/vendors/ciam-import.md#concurrent-job-limit: "已存在2个有效的任务，请等待其中一部分完成后重试".
            return Err(tencent::refusal(
                BUSY_CODE,
                "there are already two valid tasks; wait for one of them to complete and try again",
            ));
        }
        let job = SimJob {
            id: generate_id(),
            created_at: now,
            created_date_ms: chrono::Utc::now().timestamp_millis(),
            users,
            failed_users: None,
        };
        let described = job.describe(now);
        app.jobs.jobs.push(job);
        Ok(described)
    }

    fn answer(job: Value) -> Result<Map<String, Value>, Refusal> {
        // CIAM CreateApiImportUserJob "Output Example" (docs/vendors/ciam-import.md#examples):
        // {"Response":{"Job":{...},"RequestId"}}.
        Ok(Map::from_iter([("Job".to_owned(), job)]))
    }
}

/// `ListJobs`, behind the Tencent gateway (signed as CIAM).
pub(super) struct ListJobs;

impl Product for ListJobs {
    const VENDOR: VendorKind = VendorKind::TencentCiamImport;
    const ACTION: &'static str = POLL_ACTION;
    const SERVICE: &'static str = SERVICE;
    const VERSION: &'static str = VERSION;
    const NEEDS_REGION: bool = true;
    type Valid = Option<Vec<String>>;
    type Accepted = Vec<Value>;

    fn names(account: &SimAccount, body: &Value) -> bool {
        names_user_store(account, body)
    }

    fn carried(_body: Option<&Value>) -> Vec<String> {
        Vec::new()
    }

    fn check_body(body: Option<&Value>, account: &SimAccount) -> Result<Self::Valid, Refusal> {
        validate_list(body, &account.user_store_id)
    }

    fn apply(
        app: &mut AppState,
        _account: &SimAccount,
        job_ids: Self::Valid,
    ) -> Result<Vec<Value>, Refusal> {
        let now = Instant::now();
        advance(app, now);
        let listed = app
            .jobs
            .jobs
            .iter()
            .filter(|job| job_ids.as_ref().is_none_or(|ids| ids.contains(&job.id)))
            .map(|job| job.describe(now))
            .collect();
        Ok(listed)
    }

    fn answer(jobs: Vec<Value>) -> Result<Map<String, Value>, Refusal> {
        // docs/vendors/ciam-import.md#listjobs ListJobs: "response JobSet []Job (nullable) + RequestId".
        Ok(Map::from_iter([("JobSet".to_owned(), json!(jobs))]))
    }
}

/// Completes, oldest first, every job whose time has come, registering its users.
fn advance(app: &mut AppState, now: Instant) {
    let AppState { jobs, users, .. } = app;
    for job in jobs.jobs.iter_mut() {
        if job.failed_users.is_none() && now >= job.completes_at() {
            job.failed_users = Some(complete(users, &job.users));
        }
    }
}

/// Registers the users of a completed job; answers those that failed.
fn complete(
    registered: &mut BTreeMap<String, RegisteredUser>,
    users: &[ImportedUser],
) -> Vec<FailedUser> {
    let mut taken: [HashSet<String>; 3] = Default::default();
    for (key, user) in registered.iter() {
        taken[0].insert(key.clone());
        for (index, field) in ["UserName", "PhoneNumber", "Email"].into_iter().enumerate() {
            if let Some(value) = user.fields.get(field) {
                taken[index].insert(value.clone());
            }
        }
    }
    let mut failed = Vec::new();
    for user in users {
        let identifiers = [&user.user_name, &user.phone_number, &user.email];
        let exists = identifiers
            .iter()
            .zip(&taken)
            .any(|(value, held)| !value.is_empty() && held.contains(value.as_str()))
            || registered.contains_key(&user.identification);
        let reason = match (&user.failure, exists) {
            (Some(failure), _) => Some(failure.clone()),
            (None, true) => Some(EXISTS_REASON.to_owned()),
            (None, false) => None,
        };
        if let Some(reason) = reason {
            failed.push(FailedUser {
                failed_user_identification: Some(user.identification.clone()),
                failed_reason: Some(reason),
            });
            continue;
        }
        for (value, held) in identifiers.iter().zip(taken.iter_mut()) {
            if !value.is_empty() {
                held.insert((*value).clone());
            }
        }
        taken[0].insert(user.identification.clone());
        let mut fields = stored_fields(&user.fields);
        for (field, value) in ["UserName", "PhoneNumber", "Email"]
            .into_iter()
            .zip(identifiers)
        {
            if !value.is_empty() {
                fields.insert(field.to_owned(), value.clone());
            }
        }
        let created_ms = chrono::Utc::now().timestamp_millis();
        fields.insert("Status".to_owned(), "NORMAL".to_owned());
        fields.insert("CreatedDate".to_owned(), created_ms.to_string());
        registered.insert(
            user.identification.clone(),
            RegisteredUser {
                origin_id: user.identification.clone(),
                vendor_user_id: generate_id(),
                name: user
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
    }
    failed
}

/// The identification of each user a body carries, read leniently for the call's record.
fn carried_identifications(body: Option<&Value>) -> Vec<String> {
    entries(body, "DataFlowUserCreateList")
        .iter()
        .filter_map(Value::as_object)
        .map(identification_of)
        .collect()
}

fn identification_of(user: &Map<String, Value>) -> String {
    IDENTIFIERS
        .iter()
        .find_map(|field| {
            user.get(*field)
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
        })
        .unwrap_or_default()
        .to_owned()
}

/// Reads a CreateApiImportUserJob body strictly: the documented fields with their types.
fn validate_job(body: Option<&Value>, user_store_id: &str) -> Result<Vec<ImportedUser>, Refusal> {
    let body = tencent::body_object(body)?;
    tencent::only_known(
        body,
        |key| ["UserStoreId", "DataFlowUserCreateList"].contains(&key),
        "",
    )?;
    check_user_store(body, user_store_id)?;
    // CIAM CreateApiImportUserJob (docs/vendors/ciam-import.md#importuser):
    // "DataFlowUserCreateList.N Yes Array of ImportUser".
    let users = tencent::required_array(body, "DataFlowUserCreateList", "an array")?;
    if users.is_empty() {
        // CIAM CreateApiImportUserJob (docs/vendors/ciam-import.md#error-codes):
        // FailedOperation.ImportUserIsEmpty "The user is empty during user import".
        return Err(tencent::refusal(
            "FailedOperation.ImportUserIsEmpty",
            "the user is empty during user import",
        ));
    }
    users
        .iter()
        .enumerate()
        .map(|(index, user)| validate_import_user(index, user))
        .collect()
}

fn validate_import_user(index: usize, user: &Value) -> Result<ImportedUser, Refusal> {
    let path = format!("DataFlowUserCreateList.{index}.");
    let Some(user) = user.as_object() else {
        return Err(tencent::invalid_value(format!(
            "the parameter {path} must be an object"
        )));
    };
    tencent::only_known(
        user,
        |key| {
            IDENTIFIERS.contains(&key) || TEXT_FIELDS.contains(&key) || OTHER_FIELDS.contains(&key)
        },
        &path,
    )?;
    let mut fields = Map::new();
    for field in IDENTIFIERS.iter().skip(3).chain(TEXT_FIELDS.iter()) {
        if let Some(value) =
            tencent::text_field(user, field, &path)?.filter(|value| !value.is_empty())
        {
            fields.insert((*field).to_owned(), Value::String(value));
        }
    }
    let [user_name, phone_number, email] =
        ["UserName", "PhoneNumber", "Email"].map(|field| tencent::text_field(user, field, &path));
    let (user_name, phone_number, email) = (
        user_name?.unwrap_or_default(),
        phone_number?.unwrap_or_default(),
        email?.unwrap_or_default(),
    );
    let password = tencent::text_field(user, "Password", &path)?.filter(|value| !value.is_empty());
    let groups = tencent::strings_field(user, "UserGroup", &path)?;
    if !groups.is_empty() {
        fields.insert("UserGroup".to_owned(), json!(groups));
    }
    match user.get("IdentityVerified") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(verified)) => {
            fields.insert("IdentityVerified".to_owned(), json!(verified));
        }
        Some(_) => {
            return Err(tencent::invalid_value(format!(
                "the parameter {path}IdentityVerified must be a boolean"
            )));
        }
    }
    if let Some(attributes) = member_maps_field(user, &path, "InvalidParameterValue")? {
        fields.insert("CustomizationAttributes".to_owned(), attributes);
    }
    validate_salt(user, &path)?;
    // The hash stays out of the store; what kind of hash it was is kept.
    let encrypt_type = fields
        .remove("PasswordEncryptTypeEnum")
        .and_then(|value| value.as_str().map(str::to_owned));
    let failure = if identification_of(user).is_empty() {
        // docs/vendors/ciam-import.md#identifiers ImportUser: "at least one of UserName,
        // PhoneNumber, Email, ... required".
        Some("at least one of UserName, PhoneNumber, Email, WechatOpenId, WechatUnionId, AlipayUserId, QqOpenId, QqUnionId or WeComUserId is required".to_owned())
    } else if let Some(field) = overlong_indexed_attribute(user) {
        // docs/vendors/ciam.md#indexed-attributes: "max 512 chars → FailedOperation.IndexedAttributeTooLong".
        Some(format!(
            "{field} can contain up to {MAX_INDEXED_ATTRIBUTE_CHARS} characters"
        ))
    } else {
        match (&password, encrypt_type.as_deref()) {
            // docs/vendors/ciam-import.md#password-hash-and-salt: Password is "密码密文"; without
            // PasswordEncryptTypeEnum it reads as plaintext.
            (Some(_), None) => {
                Some("password must be a hash with its PasswordEncryptTypeEnum".to_owned())
            }
            (_, Some(kind)) if !ENCRYPT_TYPES.contains(&kind) => Some(format!(
                "unsupported PasswordEncryptTypeEnum {kind:?}; SHA1 or BCRYPT expected"
            )),
            _ => None,
        }
    };
    if let (Some(_), Some(kind)) = (&password, encrypt_type) {
        fields.insert("PasswordHashType".to_owned(), Value::String(kind));
    }
    Ok(ImportedUser {
        identification: identification_of(user),
        user_name,
        phone_number,
        email,
        fields,
        failure,
    })
}

/// docs/vendors/ciam-import.md#password-hash-and-salt Salt: SaltValue;
/// SaltLocation{SaltLocationTypeEnum HEAD|TAIL|OTHER; SaltLocationRule{Regex}}.
fn validate_salt(user: &Map<String, Value>, path: &str) -> Result<(), Refusal> {
    let salt = match user.get("Salt") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(salt)) => salt,
        Some(_) => {
            return Err(tencent::invalid_value(format!(
                "the parameter {path}Salt must be an object"
            )));
        }
    };
    let malformed = |what: &str| tencent::invalid_value(format!("the parameter {path}Salt{what}"));
    tencent::only_known(
        salt,
        |key| ["SaltValue", "SaltLocation"].contains(&key),
        &format!("{path}Salt."),
    )?;
    if !matches!(
        salt.get("SaltValue"),
        None | Some(Value::Null | Value::String(_))
    ) {
        return Err(malformed(".SaltValue must be a string"));
    }
    let location = match salt.get("SaltLocation") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(location)) => location,
        Some(_) => return Err(malformed(".SaltLocation must be an object")),
    };
    match location.get("SaltLocationTypeEnum") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if ["HEAD", "TAIL", "OTHER"].contains(&kind.as_str()) => {}
        Some(_) => {
            return Err(malformed(
                ".SaltLocation.SaltLocationTypeEnum must be HEAD, TAIL or OTHER",
            ));
        }
    }
    match location.get("SaltLocationRule") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(rule))
            if matches!(
                rule.get("Regex"),
                None | Some(Value::Null | Value::String(_))
            ) =>
        {
            Ok(())
        }
        Some(_) => Err(malformed(
            ".SaltLocation.SaltLocationRule must be {\"Regex\": string}",
        )),
    }
}

/// Reads a ListJobs body: UserStoreId required, JobIds optional (`None` lists every job).
fn validate_list(
    body: Option<&Value>,
    user_store_id: &str,
) -> Result<Option<Vec<String>>, Refusal> {
    let body = tencent::body_object(body)?;
    tencent::only_known(body, |key| ["UserStoreId", "JobIds"].contains(&key), "")?;
    check_user_store(body, user_store_id)?;
    // docs/vendors/ciam-import.md#listjobs ListJobs: "JobIds []String opt (empty → all jobs)".
    let job_ids = tencent::strings_field(body, "JobIds", "")?;
    Ok((!job_ids.is_empty()).then_some(job_ids))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::super::{
        ciam::CreateUser,
        jobs::{PENDING_FOR, PROCESSING_BASE, PROCESSING_PER_USER},
        pipeline::Endpoint,
    };
    use super::*;
    use crate::vendor_api::tencent::ciam_import::{
        STATUS_COMPLETED, STATUS_PENDING, STATUS_PROCESSING,
    };

    const STORE: &str = "2c3aca3b****************a7efe88e";

    /// CIAM CreateApiImportUserJob "Input Example" (docs/vendors/ciam-import.md#examples) user.
    fn documented_user() -> Value {
        json!({
            "UserName": "zhangsan",
            "PhoneNumber": "132****0000",
            "Email": "132****@qq.com",
            "ResidentIdentityCard": "123456789012345678",
            "Nickname": "nick name",
            "Address": "address",
            "UserGroup": ["6cd22e51****************f6f7cb81"],
            "QqOpenId": "qqopenid",
            "QqUnionId": "qqunionid",
            "WechatOpenId": "wechatopenid",
            "WechatUnionId": "wechatunionid",
            "AlipayUserId": "alipayuserid",
            "WeComUserId": "wecomuserid",
            "Description": "user1",
            "Birthdate": "2022-10-20",
            "Name": "name",
            "Locale": "locale",
            "Gender": "male",
            "IdentityVerificationMethod": "PASSWORD",
            "IdentityVerified": true,
            "Job": "employee",
            "Nationality": "nationality",
            "Zone": "zone",
            "Password": "password",
            "CustomizationAttributes": [{"Name": "nickname", "Value": "nike name", "Type": "STRING"}],
            "Salt": {
                "SaltValue": "salt***",
                "SaltLocation": {"SaltLocationTypeEnum": "HEAD", "SaltLocationRule": {"Regex": "passwordabc123"}}
            },
            "PasswordEncryptTypeEnum": "SHA1",
            "IndexedAttribute1": "value1",
            "IndexedAttribute2": "value2",
            "IndexedAttribute3": "value3",
            "IndexedAttribute4": "value4",
            "IndexedAttribute5": "value5"
        })
    }

    fn job_body(users: Vec<Value>) -> Value {
        json!({"UserStoreId": STORE, "DataFlowUserCreateList": users})
    }

    fn code_of(body: Value) -> Option<String> {
        validate_job(Some(&body), STORE)
            .err()
            .map(|refusal| refusal.code)
    }

    fn imported(users: Vec<Value>) -> Vec<ImportedUser> {
        validate_job(Some(&job_body(users)), STORE).unwrap()
    }

    #[test]
    fn the_documented_input_example_is_accepted_and_no_secret_is_kept() {
        let users = imported(vec![documented_user()]);
        assert_eq!(users.len(), 1);
        let user = &users[0];
        assert_eq!(user.identification, "zhangsan");
        assert_eq!(user.failure, None);
        assert_eq!(user.fields["PasswordHashType"], "SHA1");
        let kept = format!("{:?}", user.fields);
        assert!(
            !kept.contains("\"password\"") && !kept.contains("salt***"),
            "{kept}"
        );
    }

    #[test]
    fn every_rule_of_the_body_has_its_code() {
        let with = |field: &str, value: Value| {
            let mut user = documented_user();
            user[field] = value;
            job_body(vec![user])
        };
        let cases = [
            (json!("x"), "InvalidParameter"),
            (json!({"UserStoreId": STORE}), "MissingParameter"),
            (
                json!({"DataFlowUserCreateList": [documented_user()]}),
                "MissingParameter",
            ),
            (
                json!({"UserStoreId": "other", "DataFlowUserCreateList": [documented_user()]}),
                "FailedOperation.UserStoreNotExist",
            ),
            (
                json!({"UserStoreId": STORE, "DataFlowUserCreateList": [], "X": 1}),
                "UnknownParameter",
            ),
            (job_body(vec![]), "FailedOperation.ImportUserIsEmpty"),
            (
                json!({"UserStoreId": STORE, "DataFlowUserCreateList": {}}),
                "InvalidParameterValue",
            ),
            (job_body(vec![json!(5)]), "InvalidParameterValue"),
            (with("Unknown", json!("x")), "UnknownParameter"),
            (with("UserName", json!(5)), "InvalidParameterValue"),
            (
                with("Birthdate", json!(1722420973329i64)),
                "InvalidParameterValue",
            ),
            (
                with("IdentityVerified", json!("yes")),
                "InvalidParameterValue",
            ),
            (with("UserGroup", json!("g")), "InvalidParameterValue"),
            (
                with("CustomizationAttributes", json!([{"Value": "v"}])),
                "InvalidParameterValue",
            ),
            (with("Salt", json!("s")), "InvalidParameterValue"),
            (
                with(
                    "Salt",
                    json!({"SaltValue": "s", "SaltLocation": {"SaltLocationTypeEnum": "MIDDLE"}}),
                ),
                "InvalidParameterValue",
            ),
            (
                with("Salt", json!({"SaltValue": "s", "Pepper": 1})),
                "UnknownParameter",
            ),
        ];
        for (body, code) in cases {
            assert_eq!(code_of(body.clone()).as_deref(), Some(code), "{body}");
        }
    }

    #[test]
    fn users_that_fail_whatever_the_store_holds() {
        let users = imported(vec![
            json!({"Nickname": "nobody"}),
            json!({"UserName": "plain", "Password": "hunter2"}),
            json!({"UserName": "md5", "Password": "x", "PasswordEncryptTypeEnum": "MD5"}),
            json!({"PhoneNumber": "132", "IndexedAttribute2": "x".repeat(513)}),
            json!({"Email": "ok@example.com", "Password": "$2a$10$abc", "PasswordEncryptTypeEnum": "BCRYPT"}),
        ]);
        assert!(
            users[0]
                .failure
                .as_deref()
                .unwrap()
                .contains("at least one of UserName")
        );
        assert_eq!(users[0].identification, "");
        assert!(
            users[1]
                .failure
                .as_deref()
                .unwrap()
                .contains("PasswordEncryptTypeEnum")
        );
        assert!(users[2].failure.as_deref().unwrap().contains("unsupported"));
        assert!(users[3].failure.as_deref().unwrap().contains("512"));
        assert_eq!(users[3].identification, "132");
        assert_eq!(users[4].failure, None);
        assert_eq!(users[4].identification, "ok@example.com");
    }

    #[test]
    fn completing_registers_new_users_and_fails_taken_ones() {
        let mut registered = BTreeMap::new();
        let first = imported(vec![
            json!({"UserName": "a", "PhoneNumber": "1", "Email": "a@x"}),
            json!({"PhoneNumber": "2"}),
        ]);
        assert!(complete(&mut registered, &first).is_empty());
        assert_eq!(registered.len(), 2);
        assert_eq!(registered["2"].fields["PhoneNumber"], "2");
        let second = imported(vec![
            json!({"UserName": "a"}),
            json!({"UserName": "b", "PhoneNumber": "1"}),
            json!({"UserName": "c", "Email": "a@x"}),
            json!({"UserName": "d", "PhoneNumber": "2"}),
            json!({"UserName": "e"}),
            json!({"UserName": "e"}),
            json!({"UserName": "f", "Password": "plain"}),
        ]);
        let failed = complete(&mut registered, &second);
        let named: Vec<(&str, &str)> = failed
            .iter()
            .map(|user| {
                (
                    user.failed_user_identification.as_deref().unwrap(),
                    user.failed_reason.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            named,
            vec![
                ("a", EXISTS_REASON),
                ("b", EXISTS_REASON),
                ("c", EXISTS_REASON),
                ("d", EXISTS_REASON),
                ("e", EXISTS_REASON),
                (
                    "f",
                    "password must be a hash with its PasswordEncryptTypeEnum"
                ),
            ]
        );
        assert_eq!(registered.len(), 3);
        assert_eq!(registered["e"].vendor_user_id.len(), 32);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_moves_from_pending_through_processing_to_completed() {
        let mut app = AppState::new(10);
        let created_at = Instant::now();
        app.jobs.jobs.push(SimJob {
            id: "j1".to_owned(),
            created_at,
            created_date_ms: 0,
            users: imported(vec![json!({"UserName": "u"})]),
            failed_users: None,
        });
        let status = |app: &mut AppState| {
            let now = Instant::now();
            advance(app, now);
            app.jobs.jobs[0].status(now)
        };
        assert_eq!(status(&mut app), STATUS_PENDING);
        tokio::time::advance(PENDING_FOR).await;
        assert_eq!(status(&mut app), STATUS_PROCESSING);
        assert!(app.users.is_empty());
        tokio::time::advance(PROCESSING_BASE).await;
        assert_eq!(status(&mut app), STATUS_PROCESSING);
        tokio::time::advance(PROCESSING_PER_USER).await;
        assert_eq!(status(&mut app), STATUS_COMPLETED);
        assert_eq!(app.users.len(), 1);
        let described = app.jobs.jobs[0].describe(Instant::now());
        assert_eq!(described["Type"], "IMPORT_USER");
        assert_eq!(described["Status"], "COMPLETED");
        assert_eq!(described["FailedUsers"], json!([]));
    }

    #[test]
    fn list_bodies_need_the_store_and_take_optional_job_ids() {
        assert_eq!(
            validate_list(Some(&json!({"UserStoreId": STORE})), STORE),
            Ok(None)
        );
        assert_eq!(
            validate_list(Some(&json!({"UserStoreId": STORE, "JobIds": ["a"]})), STORE),
            Ok(Some(vec!["a".to_owned()]))
        );
        let code = |body: Value| {
            validate_list(Some(&body), STORE)
                .err()
                .map(|refusal| refusal.code)
        };
        assert_eq!(code(json!({})).as_deref(), Some("MissingParameter"));
        assert_eq!(
            code(json!({"UserStoreId": "x"})).as_deref(),
            Some("FailedOperation.UserStoreNotExist")
        );
        assert_eq!(
            code(json!({"UserStoreId": STORE, "JobIds": "a"})).as_deref(),
            Some("InvalidParameterValue")
        );
        assert_eq!(
            code(json!({"UserStoreId": STORE, "Limit": 1})).as_deref(),
            Some("UnknownParameter")
        );
    }

    #[test]
    fn a_secret_id_owning_several_stores_is_resolved_by_the_user_store_id() {
        let account = |vendor, app_id, store: &str, secret_id: &str| SimAccount {
            vendor,
            app_id,
            user_store_id: store.to_owned(),
            secret_id: secret_id.to_owned(),
            secret_key: SecretString::from("key"),
            qps: 1,
        };
        let ciam = VendorKind::TencentCiam;
        let accounts = [
            account(VendorKind::TencentLcic, 9, "", "id"),
            account(VendorKind::TencentCiamImport, 8, "s1", "id"),
            account(ciam, 1, "s1", "id"),
            account(ciam, 2, "s2", "id"),
        ];
        let app_of = |vendor, secret_id: Option<&str>, store: Option<&str>| {
            let secret_id = secret_id.map(str::to_owned);
            let body = store.map(|store| json!({ "UserStoreId": store }));
            let picked = match vendor {
                VendorKind::TencentCiam => {
                    <CreateUser as Endpoint>::pick_account(&accounts, &secret_id, body.as_ref())
                }
                _ => <CreateJob as Endpoint>::pick_account(&accounts, &secret_id, body.as_ref()),
            };
            picked.map(|account| account.app_id)
        };
        assert_eq!(app_of(ciam, Some("id"), Some("s2")), Some(2));
        assert_eq!(app_of(ciam, Some("id"), Some("s1")), Some(1));
        assert_eq!(app_of(ciam, Some("id"), None), Some(1));
        assert_eq!(app_of(ciam, Some("id"), Some("nope")), Some(1));
        assert_eq!(
            app_of(VendorKind::TencentCiamImport, Some("id"), Some("s2")),
            Some(8)
        );
        assert_eq!(app_of(ciam, Some("other"), Some("s1")), None);
        assert_eq!(app_of(ciam, None, Some("s1")), None);
    }
}
