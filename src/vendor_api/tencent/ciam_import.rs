//! Tencent Cloud CIAM import jobs (2022-03-31): `CreateApiImportUserJob`
//! submits many users as one job, `ListJobs` reads the job until it ends.
//!
//! Imports carry password hashes, never plaintext passwords: the hash and
//! its salt leave their `SecretString`s only while the request body is
//! serialized. A submission is not safe to repeat (a repeat creates a second
//! job), so an answer that leaves the job's existence in doubt is permanent.
//! Sources: docs/vendors/tencent-cloud-api.md (TC3, envelope, common codes) and
//! docs/vendors/ciam-import.md (ImportUser, Salt, Job, ListJobs, the two-jobs limit); CIAM
//! CreateApiImportUserJob (docs/vendors/ciam-import.md).
//!
//! docs/vendors/ciam-import.md#matching-failed-users leaves UNCONFIRMED what
//! `FailedUsers[].FailedUserIdentification` and `ErrorDetails[].UserId` name (CIAM
//! CreateApiImportUserJob's example (docs/vendors/ciam-import.md#matching-failed-users) shows a
//! vendor user id, which a failed user never got). This module matches them against the identifiers
//! the user was submitted with: its UserName, else its PhoneNumber, else its Email — whichever
//! equals the identification. The simulator names a failed user by the first of those it has.
//! An entry is only believed where it names exactly one user: users of one job that share an
//! identifier fail with `FailedOperation.ImportUserAmbiguous` if an entry names it (the
//! dispatcher keeps them in different jobs, see `answer_keys`), and while any entry names no
//! user of the job, the users no entry names are unknown (`registrar.MalformedResponse`), never
//! registered.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ciam::{self, CiamConfig, Exposed, IndexedAttributes, MemberMap};
use super::envelope::{self, Envelope};
use crate::domain::{CiamProfile, PasswordHashType, Rejection, SaltLocation, User, VendorKind};
use std::sync::Arc;

use crate::vendor_api::settings::{SettingError, TargetSettings};
use crate::vendor_api::{
    AttemptContext, BuildError, CallReport, ErrorClass, ErrorCode, JobApi, JobStatus,
    RegistrarCode, SharedVendor, Submission, VendorApi, VendorOutcome,
};

pub const ACTION: &str = "CreateApiImportUserJob";
pub const POLL_ACTION: &str = "ListJobs";

/// docs/vendors/ciam-import.md#concurrent-job-limit: "已存在2个有效的任务，请等待其中一部分完成后重试" — wait for a job to
/// end, then submit again.
pub const BUSY_CODE: &str = "FailedOperation.DataFlowTooManyRequests";
/// docs/vendors/ciam-import.md#concurrent-job-limit: at most two jobs PENDING or PROCESSING per user store.
pub const MAX_RUNNING_JOBS: usize = 2;

/// The code of every user of a job whose Status is FAILED (the job names no code).
pub const JOB_FAILED_CODE: &str = "FailedOperation.ImportJobFailed";
/// The code of a user a COMPLETED job lists in FailedUsers or ErrorDetails for
/// an existing identifier; the job's entries (docs/vendors/ciam-import.md#matching-failed-users)
/// carry a reason, never a code.
pub const USER_EXISTS_CODE: &str = "FailedOperation.ImportUserAlreadyExists";
/// The code of a user a COMPLETED job lists for any other reason.
pub const USER_FAILED_CODE: &str = "FailedOperation.ImportUserFailed";
/// The code of users of a COMPLETED job that one failure entry names alike
/// (they share the identifier it names), so which of them failed is unknown.
/// The dispatcher keeps such users out of one job (`answer_keys`): this is
/// defence in depth.
pub const USER_AMBIGUOUS_CODE: &str = "FailedOperation.ImportUserAmbiguous";

/// docs/vendors/ciam-import.md#job Job.Status values.
pub const STATUS_PENDING: &str = "PENDING";
pub const STATUS_PROCESSING: &str = "PROCESSING";
pub const STATUS_COMPLETED: &str = "COMPLETED";
pub const STATUS_FAILED: &str = "FAILED";
/// docs/vendors/ciam-import.md#job Job.Type of an import.
pub const TYPE_IMPORT_USER: &str = "IMPORT_USER";

/// Builds the module of a `tencent-ciam-import` target.
pub fn from_settings(settings: &dyn TargetSettings) -> Result<SharedVendor, SettingError> {
    Ok(Arc::new(CiamImport::new(CiamConfig::from_settings(
        settings,
    )?)))
}

#[derive(Debug)]
pub struct CiamImport {
    config: CiamConfig,
}

impl CiamImport {
    pub fn new(config: CiamConfig) -> Self {
        CiamImport { config }
    }
}

/// `Salt` (docs/vendors/ciam-import.md#password-hash-and-salt): SaltValue and where the salt sits.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SaltBody<'a> {
    salt_value: Exposed<'a>,
    salt_location: SaltLocationBody<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SaltLocationBody<'a> {
    /// docs/vendors/ciam-import.md#password-hash-and-salt: `HEAD`|`TAIL`|`OTHER`.
    salt_location_type_enum: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    salt_location_rule: Option<SaltLocationRule<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SaltLocationRule<'a> {
    regex: &'a str,
}

/// `ImportUser` (docs/vendors/ciam-import.md#importuser): every field optional; the ones a profile supplies.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImportUser<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    user_name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    phone_number: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    email: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    nickname: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    address: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    user_group: &'a [String],
    /// docs/vendors/ciam-import.md#importuser: "Birthdate String(date) here (example
    /// "1722420973329")" — milliseconds as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    birthdate: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    customization_attributes: Vec<MemberMap>,
    /// docs/vendors/ciam-import.md#password-hash-and-salt: Password is "密码密文", the hash; plaintext
    /// import strings are UNCONFIRMED.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<Exposed<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    salt: Option<SaltBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_encrypt_type_enum: Option<&'static str>,
    #[serde(flatten)]
    indexed: IndexedAttributes<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateApiImportUserJobRequest<'a> {
    user_store_id: &'a str,
    data_flow_user_create_list: Vec<ImportUser<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListJobsRequest<'a> {
    user_store_id: &'a str,
    job_ids: [&'a str; 1],
}

/// docs/vendors/ciam-import.md#password-hash-and-salt PasswordEncryptTypeEnum: `SHA1`|`BCRYPT`.
pub fn encrypt_type_name(hash_type: PasswordHashType) -> &'static str {
    match hash_type {
        PasswordHashType::Sha1 => "SHA1",
        PasswordHashType::Bcrypt => "BCRYPT",
    }
}

/// docs/vendors/ciam-import.md#password-hash-and-salt SaltLocationTypeEnum: `HEAD`|`TAIL`|`OTHER`.
pub fn salt_location_name(location: SaltLocation) -> &'static str {
    match location {
        SaltLocation::Head => "HEAD",
        SaltLocation::Tail => "TAIL",
        SaltLocation::Other => "OTHER",
    }
}

/// `ErrorDetails[]` of a Job (docs/vendors/ciam-import.md#job).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorDetail {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// `FailedUsers[]` of a Job (docs/vendors/ciam-import.md#job).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FailedUser {
    #[serde(default)]
    pub failed_user_identification: Option<String>,
    #[serde(default)]
    pub failed_reason: Option<String>,
}

/// `Job` (docs/vendors/ciam-import.md#job); read leniently: any field may be absent or null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Job {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub r#type: Option<String>,
    #[serde(default)]
    pub created_date: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default)]
    pub error_details: Option<Vec<ErrorDetail>>,
    #[serde(default)]
    pub failed_users: Option<Vec<FailedUser>>,
}

impl VendorApi for CiamImport {
    fn kind(&self) -> VendorKind {
        VendorKind::TencentCiamImport
    }

    fn action(&self) -> &'static str {
        ACTION
    }

    fn repeat_is_safe(&self) -> bool {
        // A repeated CreateApiImportUserJob creates a second job.
        false
    }

    fn validate(&self, user: &User) -> Result<(), Rejection> {
        let Some(profile) = &user.ciam else {
            return Err(Rejection::required("ciam"));
        };
        // docs/vendors/ciam-import.md#identifiers ImportUser: "at least one of UserName, PhoneNumber,
        // Email, WechatOpenId, ... required"; of those, the profile carries the first three.
        if profile.user_name.is_empty()
            && profile.phone_number.is_empty()
            && profile.email.is_empty()
        {
            return Err(Rejection::new(
                "ciam.userName",
                "validation.required",
                "or ciam.phoneNumber or ciam.email is required: an imported user needs at least one identifier",
            ));
        }
        // docs/vendors/ciam-import.md#password-hash-and-salt: Password is "密码密文" with
        // PasswordEncryptTypeEnum SHA1|BCRYPT; the enum strings for plaintext and MD5 imports are
        // UNCONFIRMED, so none is sent.
        if profile.password.is_some() && profile.password_hash.is_none() {
            return Err(Rejection::new(
                "ciam.password",
                "validation.unsupported",
                "imports carry password hashes, not plaintext; set ciam.passwordHash and ciam.passwordHashType",
            ));
        }
        if profile.password_hash.is_some() {
            if profile.password_hash_type.is_none() {
                return Err(Rejection::new(
                    "ciam.passwordHashType",
                    "validation.required",
                    "is required with ciam.passwordHash (SHA1 or BCRYPT)",
                ));
            }
            if profile.salt_value.is_some() {
                match profile.salt_location {
                    None => {
                        return Err(Rejection::new(
                            "ciam.saltLocation",
                            "validation.required",
                            "is required with ciam.saltValue (HEAD, TAIL or OTHER)",
                        ));
                    }
                    // docs/vendors/ciam-import.md#password-hash-and-salt: SaltLocationRule{Regex}
                    // places a salt that is neither head nor tail.
                    Some(SaltLocation::Other) if profile.salt_regex.is_empty() => {
                        return Err(Rejection::new(
                            "ciam.saltRegex",
                            "validation.required",
                            "is required when ciam.saltLocation is OTHER",
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        ciam::validate_optional_fields(profile)
    }

    fn build_request(
        &self,
        users: &[&User],
        attempt: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        let body = CreateApiImportUserJobRequest {
            user_store_id: &self.config.user_store_id,
            data_flow_user_create_list: users
                .iter()
                .filter_map(|user| user.ciam.as_ref())
                .map(import_user)
                .collect(),
        };
        if body.data_flow_user_create_list.len() != users.len() {
            return Err(BuildError::Unvalidated(
                "every imported user needs a ciam profile".to_owned(),
            ));
        }
        self.config
            .signed_post(ACTION, serde_json::to_vec(&body)?, attempt)
    }

    fn parse_response(&self, users: &[&User], response: &http::Response<Bytes>) -> CallReport {
        match parse_submission(users, response.status(), response.body()) {
            Submission::Answered(report) => report,
            Submission::Started {
                job_id,
                vendor_request_id,
            } => CallReport::call_failed(
                users.len(),
                vendor_request_id,
                ErrorClass::Permanent,
                RegistrarCode::JobNotPolled,
                &format!(
                    "import job {job_id} was started; its outcome is known only from ListJobs"
                ),
            ),
            Submission::Busy {
                code,
                message,
                vendor_request_id,
            } => CallReport::call_failed(
                users.len(),
                vendor_request_id,
                ErrorClass::Throttled,
                &code,
                &message,
            ),
        }
    }

    fn answer_keys(&self, user: &User) -> Vec<String> {
        // docs/vendors/ciam-import.md#matching-failed-users: a failed user is named by one bare
        // identifier, which may be any of the three, so the keys are the values themselves.
        user.ciam
            .iter()
            .flat_map(|profile| [&profile.user_name, &profile.phone_number, &profile.email])
            .filter(|identifier| !identifier.is_empty())
            .cloned()
            .collect()
    }

    fn jobs(&self) -> Option<&dyn JobApi> {
        Some(self)
    }
}

impl JobApi for CiamImport {
    fn poll_action(&self) -> &'static str {
        POLL_ACTION
    }

    fn parse_submission(&self, users: &[&User], response: &http::Response<Bytes>) -> Submission {
        parse_submission(users, response.status(), response.body())
    }

    fn build_poll_request(
        &self,
        job_id: &str,
        attempt: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        // docs/vendors/ciam-import.md#listjobs ListJobs: UserStoreId required, JobIds optional
        // (empty lists every job).
        let body = ListJobsRequest {
            user_store_id: &self.config.user_store_id,
            job_ids: [job_id],
        };
        self.config
            .signed_post(POLL_ACTION, serde_json::to_vec(&body)?, attempt)
    }

    fn parse_poll(
        &self,
        users: &[&User],
        job_id: &str,
        response: &http::Response<Bytes>,
    ) -> JobStatus {
        parse_poll(users, job_id, response.status(), response.body())
    }
}

fn import_user(profile: &CiamProfile) -> ImportUser<'_> {
    let password = profile.password_hash.as_ref().map(Exposed);
    let hashed = password.is_some();
    let salt = profile
        .salt_value
        .as_ref()
        .filter(|_| hashed)
        .zip(profile.salt_location)
        .map(|(salt_value, location)| SaltBody {
            salt_value: Exposed(salt_value),
            salt_location: SaltLocationBody {
                salt_location_type_enum: salt_location_name(location),
                salt_location_rule: (!profile.salt_regex.is_empty()).then_some(SaltLocationRule {
                    regex: &profile.salt_regex,
                }),
            },
        });
    ImportUser {
        user_name: &profile.user_name,
        phone_number: &profile.phone_number,
        email: &profile.email,
        nickname: &profile.nickname,
        address: &profile.address,
        user_group: &profile.user_groups,
        birthdate: profile.birthdate_unix_ms.map(|ms| ms.to_string()),
        customization_attributes: ciam::member_maps(profile),
        password,
        salt,
        password_encrypt_type_enum: profile
            .password_hash_type
            .filter(|_| hashed)
            .map(encrypt_type_name),
        indexed: IndexedAttributes::of(profile),
    }
}

/// Reads the answer to `CreateApiImportUserJob`.
pub fn parse_submission(users: &[&User], status: http::StatusCode, body: &[u8]) -> Submission {
    let (request_id, response) = match envelope::decode_envelope(status, body) {
        Err(failure) => {
            // Without a Tencent answer the job may or may not exist; a throttle
            // status means it was not taken, anything else is not resubmitted.
            let (class, message) = if failure.class == ErrorClass::Throttled {
                (failure.class, failure.message)
            } else {
                (
                    ErrorClass::Permanent,
                    format!(
                        "{}; the import job may have been created, so it is not submitted again",
                        failure.message
                    ),
                )
            };
            return Submission::Answered(CallReport::call_failed(
                users.len(),
                None,
                class,
                &failure.code,
                &message,
            ));
        }
        Ok(Envelope::Failure { request_id, error }) => {
            if error.code == BUSY_CODE {
                return Submission::Busy {
                    code: error.code,
                    message: error.message,
                    vendor_request_id: request_id,
                };
            }
            return Submission::Answered(ciam::report_of_error(users.len(), request_id, &error));
        }
        Ok(Envelope::Success {
            request_id,
            response,
        }) => (request_id, response),
    };
    // CIAM CreateApiImportUserJob "Output Example" (docs/vendors/ciam-import.md#examples):
    // {"Response":{"Job":{"Id":..., "Status":"PENDING", ...}, "RequestId"}}.
    let job_id = response
        .get("Job")
        .and_then(|job| job.get("Id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty());
    match job_id {
        Some(job_id) => Submission::Started {
            job_id: job_id.to_owned(),
            vendor_request_id: request_id,
        },
        None => Submission::Answered(CallReport::call_failed(
            users.len(),
            request_id,
            ErrorClass::Permanent,
            RegistrarCode::MalformedResponse,
            "vendor answered CreateApiImportUserJob without a Job.Id; the job may exist but cannot be followed",
        )),
    }
}

/// Reads the answer to `ListJobs` for the job `job_id` of `users`.
pub fn parse_poll(
    users: &[&User],
    job_id: &str,
    status: http::StatusCode,
    body: &[u8],
) -> JobStatus {
    let poll_failed =
        |class, code: ErrorCode, message: String, vendor_request_id| JobStatus::PollFailed {
            class,
            code,
            message,
            vendor_request_id,
        };
    let (request_id, response) = match envelope::decode_envelope(status, body) {
        Err(failure) => {
            // Reading a job is always safe to repeat: a garbled answer is read again.
            let class = if failure.code == RegistrarCode::MalformedResponse {
                ErrorClass::Retryable
            } else {
                failure.class
            };
            return poll_failed(class, failure.code, failure.message, None);
        }
        Ok(Envelope::Failure { request_id, error }) => {
            let class = envelope::classify(&error.code);
            return poll_failed(
                class,
                ErrorCode::from(&error.code),
                error.message,
                request_id,
            );
        }
        Ok(Envelope::Success {
            request_id,
            response,
        }) => (request_id, response),
    };
    // docs/vendors/ciam-import.md#listjobs ListJobs: "JobSet []Job (nullable)".
    let jobs: Vec<Job> = match response.get("JobSet") {
        None | Some(Value::Null) => Vec::new(),
        Some(job_set) => match serde_json::from_value(job_set.clone()) {
            Ok(jobs) => jobs,
            Err(decode_error) => {
                return poll_failed(
                    ErrorClass::Retryable,
                    RegistrarCode::MalformedResponse.into(),
                    format!("vendor answered ListJobs with an unexpected JobSet: {decode_error}"),
                    request_id,
                );
            }
        },
    };
    let Some(job) = jobs
        .into_iter()
        .find(|job| job.id.as_deref() == Some(job_id))
    else {
        return poll_failed(
            ErrorClass::Retryable,
            RegistrarCode::JobNotListed.into(),
            format!("ListJobs did not list job {job_id}"),
            request_id,
        );
    };
    match job.status.as_deref() {
        Some(STATUS_PENDING | STATUS_PROCESSING) => JobStatus::Running {
            vendor_request_id: request_id,
        },
        Some(STATUS_COMPLETED) => JobStatus::Finished(completed(users, &job, request_id)),
        Some(STATUS_FAILED) => JobStatus::Finished(failed(users, job_id, &job, request_id)),
        other => poll_failed(
            ErrorClass::Retryable,
            RegistrarCode::MalformedResponse.into(),
            format!("ListJobs answered job {job_id} with an unknown Status {other:?}"),
            request_id,
        ),
    }
}

/// The failure entries of a job, FailedUsers first: (identification, reason).
fn failure_entries(job: &Job) -> impl Iterator<Item = (Option<&str>, Option<&str>)> {
    let failed_users = job.failed_users.iter().flatten().map(|failed| {
        (
            failed.failed_user_identification.as_deref(),
            failed.failed_reason.as_deref(),
        )
    });
    let error_details = job
        .error_details
        .iter()
        .flatten()
        .map(|detail| (detail.user_id.as_deref(), detail.error.as_deref()));
    failed_users.chain(error_details)
}

/// The identifiers a failed user may be named by: UserName, PhoneNumber,
/// Email, in that order, the empty ones left out.
fn identifiers(user: &User) -> impl Iterator<Item = &str> {
    user.ciam
        .iter()
        .flat_map(|profile| [&profile.user_name, &profile.phone_number, &profile.email])
        .map(String::as_str)
        .filter(|identifier| !identifier.is_empty())
}

/// What a finished job's failure entries say about the users of the job.
struct Naming<'a> {
    /// The reason a job gives for each identification it names, first mention first.
    reasons: HashMap<&'a str, &'a str>,
    /// How many users of the job each named identification matches.
    users_named: HashMap<&'a str, usize>,
    /// Failure entries that name no user of the job (or nobody at all).
    unmatched: usize,
}

/// What a job's failure entries say about one user.
enum Named<'a> {
    /// No entry names the user.
    Unnamed,
    /// An entry names the user, and no other user of the job.
    Failed(&'a str),
    /// An entry names an identifier the user shares with other users of the job.
    Ambiguous {
        identification: &'a str,
        users: usize,
    },
}

impl<'a> Naming<'a> {
    fn of(job: &'a Job, users: &[&User]) -> Self {
        let mut reasons = HashMap::new();
        let mut unmatched = 0;
        for (identification, reason) in failure_entries(job) {
            match identification.filter(|id| !id.is_empty()) {
                Some(identification) => {
                    reasons
                        .entry(identification)
                        .or_insert(reason.unwrap_or_default());
                }
                None => unmatched += 1,
            }
        }
        let mut users_named: HashMap<&str, usize> = HashMap::new();
        for user in users {
            // a user counts once for an identification, however many of its identifiers equal it
            let named: HashSet<&str> = identifiers(user)
                .filter_map(|identifier| reasons.get_key_value(identifier).map(|(key, _)| *key))
                .collect();
            for identification in named {
                *users_named.entry(identification).or_default() += 1;
            }
        }
        unmatched += reasons
            .keys()
            .filter(|identification| !users_named.contains_key(*identification))
            .count();
        Naming {
            reasons,
            users_named,
            unmatched,
        }
    }

    /// What the entries say about `user`, by UserName, else PhoneNumber, else Email.
    fn of_user(&self, user: &User) -> Named<'a> {
        let shared = identifiers(user).find_map(|identifier| {
            self.users_named
                .get_key_value(identifier)
                .filter(|(_, users)| **users > 1)
        });
        if let Some((identification, users)) = shared {
            return Named::Ambiguous {
                identification,
                users: *users,
            };
        }
        identifiers(user)
            .find_map(|identifier| self.reasons.get(identifier).copied())
            .map_or(Named::Unnamed, Named::Failed)
    }
}

/// Whether a failure reason says the user exists already (English or Chinese).
fn says_exists(reason: &str) -> bool {
    reason.to_lowercase().contains("exist") || reason.contains("已存在")
}

fn completed(users: &[&User], job: &Job, request_id: Option<String>) -> CallReport {
    let naming = Naming::of(job, users);
    let outcomes = users
        .iter()
        .map(|user| match naming.of_user(user) {
            // every failure the job lists is accounted for: the users it does not name were imported
            Named::Unnamed if naming.unmatched == 0 => VendorOutcome::Registered {
                vendor_user_id: None,
            },
            Named::Unnamed => VendorOutcome::failed(
                ErrorClass::Permanent,
                RegistrarCode::MalformedResponse,
                format!(
                    "the import job reports failures that match no user of the job ({}), so whether this user was imported is unknown",
                    naming.unmatched
                ),
            ),
            Named::Ambiguous {
                identification,
                users,
            } => VendorOutcome::failed(
                ErrorClass::Permanent,
                USER_AMBIGUOUS_CODE,
                format!(
                    "the import job lists {identification:?} as failed, which {users} users of the job share, so which of them failed is unknown"
                ),
            ),
            Named::Failed(reason) if says_exists(reason) => VendorOutcome::AlreadyExists {
                code: USER_EXISTS_CODE.into(),
                message: reason.to_owned(),
            },
            Named::Failed(reason) => VendorOutcome::Rejected {
                code: USER_FAILED_CODE.into(),
                message: if reason.is_empty() {
                    "the import job listed this user as failed without a reason".to_owned()
                } else {
                    reason.to_owned()
                },
            },
        })
        .collect();
    CallReport {
        vendor_request_id: request_id,
        error_code: None,
        error_class: None,
        outcomes,
    }
}

fn failed(users: &[&User], job_id: &str, job: &Job, request_id: Option<String>) -> CallReport {
    let naming = Naming::of(job, users);
    let job_reason = job
        .error_details
        .iter()
        .flatten()
        .find_map(|detail| detail.error.as_deref())
        .or_else(|| {
            job.failed_users
                .iter()
                .flatten()
                .find_map(|failed| failed.failed_reason.as_deref())
        })
        .filter(|reason| !reason.is_empty())
        .map_or_else(
            || format!("import job {job_id} failed without a reason"),
            |reason| format!("import job {job_id} failed: {reason}"),
        );
    let outcomes = users
        .iter()
        .map(|user| {
            let message = match naming.of_user(user) {
                Named::Failed(reason) if !reason.is_empty() => {
                    format!("import job {job_id} failed: {reason}")
                }
                _ => job_reason.clone(),
            };
            VendorOutcome::failed(ErrorClass::Permanent, JOB_FAILED_CODE, message)
        })
        .collect();
    CallReport {
        vendor_request_id: request_id,
        error_code: Some(JOB_FAILED_CODE.into()),
        error_class: Some(ErrorClass::Permanent),
        outcomes,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::{domain::CiamAttribute, vendor_api::tencent::envelope::TencentCredentials};

    const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
    const HASH: &str = "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8";
    const PLAINTEXT: &str = "plaintext-password-never-imported";
    const SALT: &str = "salt***";

    fn import() -> CiamImport {
        CiamImport::new(CiamConfig {
            endpoint: "https://ciam.intl.tencentcloudapi.com".to_owned(),
            user_store_id: "2c3aca3b****************a7efe88e".to_owned(),
            region: "ap-guangzhou".to_owned(),
            credentials: TencentCredentials {
                secret_id: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE".to_owned(),
                secret_key: SecretString::from(SECRET_KEY),
            },
        })
    }

    fn attempt() -> AttemptContext {
        AttemptContext {
            unix_time: 1_700_000_000,
            nonce: String::new(),
        }
    }

    fn user(user_name: &str, phone_number: &str, email: &str) -> User {
        User {
            user_id: format!("id-{user_name}{phone_number}{email}"),
            ciam: Some(CiamProfile {
                user_name: user_name.to_owned(),
                phone_number: phone_number.to_owned(),
                email: email.to_owned(),
                ..CiamProfile::default()
            }),
            ..User::default()
        }
    }

    /// The ImportUser fields of CIAM CreateApiImportUserJob's "Input Example"
    /// (docs/vendors/ciam-import.md#examples) that a profile carries.
    fn documented_user() -> User {
        User {
            user_id: "zhangsan".to_owned(),
            ciam: Some(CiamProfile {
                user_name: "zhangsan".to_owned(),
                phone_number: "132****0000".to_owned(),
                email: "132****@qq.com".to_owned(),
                nickname: "nick name".to_owned(),
                address: "address".to_owned(),
                user_groups: vec!["6cd22e51****************f6f7cb81".to_owned()],
                birthdate_unix_ms: Some(1_722_420_973_329),
                customization_attributes: vec![CiamAttribute {
                    name: "nickname".to_owned(),
                    value: "nike name".to_owned(),
                    kind: "STRING".to_owned(),
                }],
                indexed_attributes: (1..=5).map(|n| format!("value{n}")).collect(),
                password_hash: Some(SecretString::from("password")),
                password_hash_type: Some(PasswordHashType::Sha1),
                salt_value: Some(SecretString::from(SALT)),
                salt_location: Some(SaltLocation::Head),
                salt_regex: "passwordabc123".to_owned(),
                ..CiamProfile::default()
            }),
            ..User::default()
        }
    }

    fn body_of(request: &http::Request<Bytes>) -> Value {
        serde_json::from_slice(request.body()).unwrap()
    }

    fn response(status: u16, body: &str) -> http::Response<Bytes> {
        http::Response::builder()
            .status(status)
            .body(Bytes::from(body.to_owned()))
            .unwrap()
    }

    fn submit(users: &[User], status: u16, body: &str) -> Submission {
        let refs: Vec<&User> = users.iter().collect();
        import().parse_submission(&refs, &response(status, body))
    }

    fn poll(users: &[User], job_id: &str, status: u16, body: &str) -> JobStatus {
        let refs: Vec<&User> = users.iter().collect();
        import().parse_poll(&refs, job_id, &response(status, body))
    }

    fn error_body(code: &str) -> String {
        format!(r#"{{"Response":{{"Error":{{"Code":"{code}","Message":"m"}},"RequestId":"r"}}}}"#)
    }

    fn job_set(job: &str) -> String {
        format!(r#"{{"Response":{{"JobSet":[{job}],"RequestId":"r"}}}}"#)
    }

    fn finished(status: JobStatus) -> CallReport {
        match status {
            JobStatus::Finished(report) => report,
            other => panic!("expected a finished job, got {other:?}"),
        }
    }

    #[test]
    fn request_body_is_the_documented_example_for_the_fields_a_profile_carries() {
        // CIAM CreateApiImportUserJob "Input Example" (docs/vendors/ciam-import.md#examples), less
        // the fields registrar's profile has no source for (ResidentIdentityCard, QqOpenId, ...,
        // Zone); Birthdate is milliseconds as a string (docs/vendors/ciam-import.md#importuser
        // example "1722420973329").
        let request = import()
            .build_request(&[&documented_user()], &attempt())
            .unwrap();
        let documented: Value = serde_json::from_str(
            r#"{
                "UserStoreId": "2c3aca3b****************a7efe88e",
                "DataFlowUserCreateList": [{
                    "UserName": "zhangsan",
                    "PhoneNumber": "132****0000",
                    "Email": "132****@qq.com",
                    "Nickname": "nick name",
                    "Address": "address",
                    "UserGroup": ["6cd22e51****************f6f7cb81"],
                    "Birthdate": "1722420973329",
                    "Password": "password",
                    "CustomizationAttributes": [{"Name": "nickname", "Value": "nike name", "Type": "STRING"}],
                    "Salt": {
                        "SaltValue": "salt***",
                        "SaltLocation": {
                            "SaltLocationTypeEnum": "HEAD",
                            "SaltLocationRule": {"Regex": "passwordabc123"}
                        }
                    },
                    "PasswordEncryptTypeEnum": "SHA1",
                    "IndexedAttribute1": "value1",
                    "IndexedAttribute2": "value2",
                    "IndexedAttribute3": "value3",
                    "IndexedAttribute4": "value4",
                    "IndexedAttribute5": "value5"
                }]
            }"#,
        )
        .unwrap();
        assert_eq!(body_of(&request), documented);
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("x-tc-action"), "CreateApiImportUserJob");
        assert_eq!(header("x-tc-version"), "2022-03-31");
        assert_eq!(header("x-tc-region"), "ap-guangzhou");
        assert!(header("authorization").contains("/ciam/tc3_request"));
        let verified = super::super::tc3_verify::verify(
            "POST",
            request.headers(),
            request.body(),
            1_700_000_000,
            |_| Some(SecretString::from(SECRET_KEY)),
        );
        assert!(verified.is_ok());
    }

    #[test]
    fn a_user_with_an_identifier_only_sends_that_and_bcrypt_without_salt_sends_no_salt() {
        let mut phone_only = user("", "13200000000", "");
        let profile = phone_only.ciam.as_mut().unwrap();
        profile.password_hash = Some(SecretString::from(HASH));
        profile.password_hash_type = Some(PasswordHashType::Bcrypt);
        profile.salt_location = Some(SaltLocation::Tail);
        let email_only = user("", "", "a@example.com");
        let request = import()
            .build_request(&[&phone_only, &email_only], &attempt())
            .unwrap();
        assert_eq!(
            body_of(&request)["DataFlowUserCreateList"],
            serde_json::json!([
                {"PhoneNumber": "13200000000", "Password": HASH, "PasswordEncryptTypeEnum": "BCRYPT"},
                {"Email": "a@example.com"}
            ])
        );
    }

    #[test]
    fn the_plaintext_password_is_never_sent_and_secrets_stay_out_of_debug_output() {
        let mut both = user("u", "", "");
        let profile = both.ciam.as_mut().unwrap();
        profile.password = Some(SecretString::from(PLAINTEXT));
        profile.password_hash = Some(SecretString::from(HASH));
        profile.password_hash_type = Some(PasswordHashType::Sha1);
        profile.salt_value = Some(SecretString::from(SALT));
        profile.salt_location = Some(SaltLocation::Other);
        profile.salt_regex = "^(.{4})".to_owned();
        // the same profile may serve a CreateUser target: its plaintext is accepted and ignored here
        assert_eq!(import().validate(&both), Ok(()));
        let request = import().build_request(&[&both], &attempt()).unwrap();
        let sent = std::str::from_utf8(request.body()).unwrap();
        assert!(!sent.contains(PLAINTEXT), "{sent}");
        assert!(sent.contains(HASH) && sent.contains(SALT));
        assert!(
            sent.contains(
                r#""SaltLocationTypeEnum":"OTHER","SaltLocationRule":{"Regex":"^(.{4})"}"#
            )
        );
        let profile = both.ciam.as_ref().unwrap();
        let debug = format!("{:?} {:?} {:?}", both, import(), import_user(profile));
        for secret in [PLAINTEXT, HASH, SALT, SECRET_KEY] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn validation_follows_the_import_rules() {
        let check = |user: &User| {
            import()
                .validate(user)
                .map_err(|rejection| (rejection.field, rejection.code))
        };
        assert_eq!(
            check(&User::default()),
            Err(("ciam", "validation.required"))
        );
        // docs/vendors/ciam-import.md#identifiers: at least one identifier.
        let rejection = import().validate(&user("", "", "")).unwrap_err();
        assert_eq!(rejection.field, "ciam.userName");
        assert_eq!(rejection.code, "validation.required");
        assert!(
            rejection
                .message()
                .contains("ciam.phoneNumber or ciam.email")
        );
        for identified in [user("u", "", ""), user("", "1", ""), user("", "", "e")] {
            assert_eq!(check(&identified), Ok(()));
        }
        // a plaintext password without a hash
        let mut plaintext = user("u", "", "");
        plaintext.ciam.as_mut().unwrap().password = Some(SecretString::from(PLAINTEXT));
        let rejection = import().validate(&plaintext).unwrap_err();
        assert_eq!(rejection.field, "ciam.password");
        assert_eq!(
            rejection.rule,
            "imports carry password hashes, not plaintext; set ciam.passwordHash and ciam.passwordHashType"
        );
        assert!(!rejection.message().contains(PLAINTEXT));
        // a hash without its type
        let mut untyped = user("u", "", "");
        untyped.ciam.as_mut().unwrap().password_hash = Some(SecretString::from(HASH));
        assert_eq!(
            check(&untyped),
            Err(("ciam.passwordHashType", "validation.required"))
        );
        // a salt needs its location, and OTHER needs its regex
        let profile = untyped.ciam.as_mut().unwrap();
        profile.password_hash_type = Some(PasswordHashType::Sha1);
        profile.salt_value = Some(SecretString::from(SALT));
        assert_eq!(
            check(&untyped),
            Err(("ciam.saltLocation", "validation.required"))
        );
        untyped.ciam.as_mut().unwrap().salt_location = Some(SaltLocation::Other);
        assert_eq!(
            check(&untyped),
            Err(("ciam.saltRegex", "validation.required"))
        );
        untyped.ciam.as_mut().unwrap().salt_location = Some(SaltLocation::Head);
        assert_eq!(check(&untyped), Ok(()));
        // the shared rules: at most 5 indexed attributes
        let mut six = user("u", "", "");
        six.ciam.as_mut().unwrap().indexed_attributes = vec!["v".to_owned(); 6];
        assert_eq!(
            check(&six),
            Err(("ciam.indexedAttributes", "validation.too_many"))
        );
    }

    #[test]
    fn the_answer_keys_are_the_identifiers_a_failed_user_may_be_named_by() {
        // docs/vendors/ciam-import.md#matching-failed-users: UserName, PhoneNumber or Email.
        assert_eq!(
            import().answer_keys(&user("zhangsan", "13200000000", "z@example.com")),
            ["zhangsan", "13200000000", "z@example.com"]
        );
        assert_eq!(
            import().answer_keys(&user("", "13200000000", "")),
            ["13200000000"]
        );
        assert!(import().answer_keys(&User::default()).is_empty());
    }

    #[test]
    fn the_poll_lists_exactly_the_job() {
        // docs/vendors/ciam-import.md#listjobs ListJobs: UserStoreId required, JobIds optional.
        let request = import()
            .build_poll_request("c29f2c0f****************405ec698", &attempt())
            .unwrap();
        assert_eq!(
            body_of(&request),
            serde_json::json!({
                "UserStoreId": "2c3aca3b****************a7efe88e",
                "JobIds": ["c29f2c0f****************405ec698"]
            })
        );
        assert_eq!(request.headers()["x-tc-action"], "ListJobs");
        assert_eq!(request.headers()["x-tc-region"], "ap-guangzhou");
        assert_eq!(
            import().jobs().map(|jobs| jobs.poll_action()),
            Some("ListJobs")
        );
    }

    #[test]
    fn the_documented_output_example_starts_the_job() {
        // CIAM CreateApiImportUserJob "Output Example" (docs/vendors/ciam-import.md#examples).
        let answer = r#"{"Response":{"Job":{"Id":"c29f2c0f****************405ec698","Status":"PENDING",
            "Type":"IMPORT_USER","CreatedDate":1715156770024,"Format":"NDJSON","Location":"http://test.com/bb.csv",
            "ErrorDetails":[{"UserId":"53e25c3****************e4eb5bd1","Error":"error message"}],
            "FailedUsers":[{"FailedUserIdentification":"53e25c3****************e4eb5bd1","FailedReason":"error reason"}]},
            "RequestId":"e2e9e8aa********************9ab34c6e"}}"#;
        assert_eq!(
            submit(&[documented_user()], 200, answer),
            Submission::Started {
                job_id: "c29f2c0f****************405ec698".to_owned(),
                vendor_request_id: Some("e2e9e8aa********************9ab34c6e".to_owned()),
            }
        );
    }

    #[test]
    fn two_running_jobs_make_the_vendor_busy() {
        // docs/vendors/ciam-import.md#concurrent-job-limit: FailedOperation.DataFlowTooManyRequests
        // -> wait for a job to end, then submit again.
        assert_eq!(
            submit(&[user("u", "", "")], 200, &error_body(BUSY_CODE)),
            Submission::Busy {
                code: BUSY_CODE.to_owned(),
                message: "m".to_owned(),
                vendor_request_id: Some("r".to_owned()),
            }
        );
    }

    #[test]
    fn submission_errors_are_answered_per_user_with_their_class() {
        // CIAM CreateApiImportUserJob error codes (docs/vendors/ciam-import.md#error-codes).
        let users = [user("a", "", ""), user("b", "", "")];
        let answered = |code: &str| match submit(&users, 200, &error_body(code)) {
            Submission::Answered(report) => report,
            other => panic!("{code}: {other:?}"),
        };
        let report = answered("FailedOperation.ImportUserIsEmpty");
        assert_eq!(report.outcomes.len(), 2);
        assert!(report.outcomes.iter().all(|outcome| matches!(outcome, VendorOutcome::Rejected { code, .. } if code == "FailedOperation.ImportUserIsEmpty")));
        for (code, class) in [
            ("RequestLimitExceeded", ErrorClass::Throttled),
            (
                "RequestLimitExceeded.FrequentRequest",
                ErrorClass::Throttled,
            ),
            ("RequestLimitExceeded.RepeatRequest", ErrorClass::Retryable),
            ("InternalError.UnknownError", ErrorClass::Retryable),
            ("FailedOperation.InvalidUserStore", ErrorClass::Permanent),
            ("FailedOperation.QuotaLimitExceeded", ErrorClass::Permanent),
            (
                "UnauthorizedOperation.TenantNotActivated",
                ErrorClass::Permanent,
            ),
            ("AuthFailure.SignatureFailure", ErrorClass::Permanent),
        ] {
            let report = answered(code);
            assert_eq!(report.error_class, Some(class), "{code}");
            assert!(
                report
                    .outcomes
                    .iter()
                    .all(|outcome| outcome == &VendorOutcome::failed(class, code, "m")),
                "{code}"
            );
        }
        for code in [
            "InvalidParameter.ParameterIllegal",
            "InvalidParameterValue",
            "MissingParameter",
            "UnknownParameter",
        ] {
            assert!(
                matches!(answered(code).outcomes[0], VendorOutcome::Rejected { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn ambiguous_submission_answers_are_never_resubmitted() {
        let users = [user("a", "", "")];
        for (status, body) in [
            (502, "<html>bad gateway</html>"),
            (200, "not json"),
            (
                200,
                r#"{"Response":{"Job":{"Status":"PENDING"},"RequestId":"r"}}"#,
            ),
            (200, r#"{"Response":{"Job":null,"RequestId":"r"}}"#),
        ] {
            match submit(&users, status, body) {
                Submission::Answered(report) => {
                    assert_eq!(report.outcomes[0].retry_class(), None, "{body}: {report:?}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        // a throttle status means the vendor did not take the job
        match submit(&users, 429, "") {
            Submission::Answered(report) => {
                assert_eq!(
                    report.outcomes[0].retry_class(),
                    Some(ErrorClass::Throttled)
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pending_and_processing_jobs_are_running() {
        // docs/vendors/ciam-import.md#job Job.Status: PENDING, PROCESSING, COMPLETED, FAILED.
        for status in ["PENDING", "PROCESSING"] {
            let answer = job_set(&format!(
                r#"{{"Id":"j1","Status":"{status}","Type":"IMPORT_USER","CreatedDate":1715156770024}}"#
            ));
            assert_eq!(
                poll(&[user("a", "", "")], "j1", 200, &answer),
                JobStatus::Running {
                    vendor_request_id: Some("r".to_owned())
                }
            );
        }
    }

    #[test]
    fn a_completed_job_reports_each_user_by_identifier() {
        // docs/vendors/ciam-import.md#job Job: FailedUsers[{FailedUserIdentification, FailedReason}],
        // ErrorDetails[{UserId, Error}].
        let users = [
            user("ok", "13200000001", "ok@example.com"),
            user("taken", "13200000002", "taken@example.com"),
            user("", "13200000003", ""),
            user("", "", "bad@example.com"),
            user("chinese", "", ""),
            user("detail", "", ""),
        ];
        let answer = job_set(
            r#"{"Id":"j1","Status":"COMPLETED","Type":"IMPORT_USER","CreatedDate":1715156770024,
                "FailedUsers":[
                    {"FailedUserIdentification":"taken","FailedReason":"user already exists"},
                    {"FailedUserIdentification":"13200000003","FailedReason":"Phone number exists"},
                    {"FailedUserIdentification":"bad@example.com","FailedReason":"password format error"},
                    {"FailedUserIdentification":"chinese","FailedReason":"用户名已存在"},
                    {"FailedUserIdentification":"taken@example.com","FailedReason":"named twice"}
                ],
                "ErrorDetails":[{"UserId":"detail","Error":"error message"}]}"#,
        );
        let report = finished(poll(&users, "j1", 200, &answer));
        assert_eq!(report.vendor_request_id.as_deref(), Some("r"));
        assert_eq!(report.error_code, None);
        let exists = |message: &str| VendorOutcome::AlreadyExists {
            code: USER_EXISTS_CODE.into(),
            message: message.to_owned(),
        };
        let rejected = |message: &str| VendorOutcome::Rejected {
            code: USER_FAILED_CODE.into(),
            message: message.to_owned(),
        };
        assert_eq!(
            report.outcomes,
            vec![
                VendorOutcome::Registered {
                    vendor_user_id: None
                },
                exists("user already exists"),
                exists("Phone number exists"),
                rejected("password format error"),
                exists("用户名已存在"),
                rejected("error message"),
            ]
        );
    }

    #[test]
    fn failures_that_match_no_user_leave_the_unnamed_users_unknown_not_registered() {
        // docs/vendors/ciam-import.md#matching-failed-users: an entry registrar cannot match may
        // be any user of the job, so no unnamed user is known to be imported.
        let users = [user("a", "", ""), user("b", "", "")];
        for entries in [
            r#""FailedUsers":[{"FailedUserIdentification":"b","FailedReason":"bad row"},
                {"FailedUserIdentification":"53e25c3****************e4eb5bd1","FailedReason":"error reason"}]"#,
            r#""FailedUsers":[{"FailedUserIdentification":"b","FailedReason":"bad row"}],
                "ErrorDetails":[{"Error":"error message"}]"#,
            r#""FailedUsers":[{"FailedUserIdentification":"b","FailedReason":"bad row"},
                {"FailedUserIdentification":"","FailedReason":"error reason"}]"#,
        ] {
            let answer = job_set(&format!(r#"{{"Id":"j1","Status":"COMPLETED",{entries}}}"#));
            let report = finished(poll(&users, "j1", 200, &answer));
            assert_eq!(report.error_code, None, "{entries}");
            assert_eq!(
                report.outcomes,
                vec![
                    VendorOutcome::failed(
                        ErrorClass::Permanent,
                        RegistrarCode::MalformedResponse,
                        "the import job reports failures that match no user of the job (1), so whether this user was imported is unknown"
                    ),
                    VendorOutcome::Rejected {
                        code: USER_FAILED_CODE.into(),
                        message: "bad row".to_owned()
                    },
                ],
                "{entries}"
            );
        }
    }

    #[test]
    fn a_failure_naming_an_identifier_users_of_the_job_share_fails_each_of_them() {
        // docs/vendors/ciam-import.md#matching-failed-users: the entry names one identifier, here
        // a UserName two users share and a PhoneNumber that is another user's UserName.
        let users = [
            user("same", "13200000001", ""),
            user("same", "13200000002", ""),
            user("13200000003", "", ""),
            user("", "13200000003", ""),
            user("fine", "", ""),
        ];
        let answer = job_set(
            r#"{"Id":"j1","Status":"COMPLETED","FailedUsers":[
                {"FailedUserIdentification":"same","FailedReason":"user already exists"},
                {"FailedUserIdentification":"13200000003","FailedReason":"user already exists"}]}"#,
        );
        let report = finished(poll(&users, "j1", 200, &answer));
        let ambiguous = |identification: &str| {
            VendorOutcome::failed(
                ErrorClass::Permanent,
                USER_AMBIGUOUS_CODE,
                format!(
                    "the import job lists {identification:?} as failed, which 2 users of the job share, so which of them failed is unknown"
                ),
            )
        };
        assert_eq!(
            report.outcomes,
            vec![
                ambiguous("same"),
                ambiguous("same"),
                ambiguous("13200000003"),
                ambiguous("13200000003"),
                VendorOutcome::Registered {
                    vendor_user_id: None
                },
            ]
        );
    }

    #[test]
    fn null_lists_in_a_completed_job_register_everyone() {
        // docs/vendors/ciam-import.md#listjobs: FailedUsers "(nullable)"; ListJobs JobSet "(nullable)".
        let answer = job_set(
            r#"{"Id":"j1","Status":"COMPLETED","FailedUsers":null,"ErrorDetails":null,"Format":null,"Location":null}"#,
        );
        let report = finished(poll(
            &[user("a", "", ""), user("b", "", "")],
            "j1",
            200,
            &answer,
        ));
        assert!(
            report
                .outcomes
                .iter()
                .all(|outcome| matches!(outcome, VendorOutcome::Registered { .. }))
        );
    }

    #[test]
    fn a_failed_job_fails_every_user_permanently() {
        let users = [user("a", "", ""), user("b", "", "")];
        let answer = job_set(
            r#"{"Id":"j1","Status":"FAILED","ErrorDetails":[{"UserId":"x","Error":"storage unavailable"}],
                "FailedUsers":[{"FailedUserIdentification":"b","FailedReason":"bad row"}]}"#,
        );
        let report = finished(poll(&users, "j1", 200, &answer));
        assert_eq!(report.error_code(), Some(JOB_FAILED_CODE));
        assert_eq!(report.error_class, Some(ErrorClass::Permanent));
        assert_eq!(
            report.outcomes,
            vec![
                VendorOutcome::failed(
                    ErrorClass::Permanent,
                    JOB_FAILED_CODE,
                    "import job j1 failed: storage unavailable"
                ),
                VendorOutcome::failed(
                    ErrorClass::Permanent,
                    JOB_FAILED_CODE,
                    "import job j1 failed: bad row"
                ),
            ]
        );
        let report = finished(poll(
            &users,
            "j1",
            200,
            &job_set(r#"{"Id":"j1","Status":"FAILED"}"#),
        ));
        assert_eq!(
            report.outcomes[0],
            VendorOutcome::failed(
                ErrorClass::Permanent,
                JOB_FAILED_CODE,
                "import job j1 failed without a reason"
            )
        );
    }

    #[test]
    fn a_job_missing_or_malformed_is_polled_again() {
        let users = [user("a", "", "")];
        for body in [
            job_set(r#"{"Id":"other","Status":"COMPLETED"}"#),
            r#"{"Response":{"JobSet":null,"RequestId":"r"}}"#.to_owned(),
            r#"{"Response":{"RequestId":"r"}}"#.to_owned(),
            r#"{"Response":{"JobSet":"nope","RequestId":"r"}}"#.to_owned(),
            job_set(r#"{"Id":"j1","Status":"EXPLODED"}"#),
            job_set(r#"{"Id":"j1"}"#),
            job_set(r#"{"Id":"j1","Status":"COMPLETED","FailedUsers":[{"FailedReason":7}]}"#),
            "not json".to_owned(),
        ] {
            match poll(&users, "j1", 200, &body) {
                JobStatus::PollFailed { class, .. } => {
                    assert_eq!(class, ErrorClass::Retryable, "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn poll_errors_keep_their_class() {
        let users = [user("a", "", "")];
        for (code, class) in [
            ("RequestLimitExceeded", ErrorClass::Throttled),
            ("InternalError", ErrorClass::Retryable),
            ("AuthFailure.SignatureFailure", ErrorClass::Permanent),
            ("FailedOperation.UserStoreNotExist", ErrorClass::Permanent),
        ] {
            assert_eq!(
                poll(&users, "j1", 200, &error_body(code)),
                JobStatus::PollFailed {
                    class,
                    code: code.into(),
                    message: "m".to_owned(),
                    vendor_request_id: Some("r".to_owned()),
                }
            );
        }
        match poll(&users, "j1", 503, "") {
            JobStatus::PollFailed { class, .. } => assert_eq!(class, ErrorClass::Retryable),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parse_response_collapses_the_submission() {
        let users = [user("a", "", "")];
        let refs: Vec<&User> = users.iter().collect();
        let started = import().parse_response(
            &refs,
            &response(
                200,
                r#"{"Response":{"Job":{"Id":"j1","Status":"PENDING"},"RequestId":"r"}}"#,
            ),
        );
        assert_eq!(
            started.error_code(),
            Some(RegistrarCode::JobNotPolled.as_str())
        );
        let busy = import().parse_response(&refs, &response(200, &error_body(BUSY_CODE)));
        assert_eq!(busy.outcomes[0].retry_class(), Some(ErrorClass::Throttled));
        let rejected = import().parse_response(
            &refs,
            &response(200, &error_body("FailedOperation.ImportUserIsEmpty")),
        );
        assert!(matches!(
            rejected.outcomes[0],
            VendorOutcome::Rejected { .. }
        ));
    }
}
