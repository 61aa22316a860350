//! Tencent Cloud LCIC `BatchRegister` (2022-08-17).
//!
//! Up to 1000 users per call, an existing user is overwritten, and the answer
//! lists only the users registered, matched back by `OriginId`
//! (docs/vendors/lcic.md#partial-failure). A batch-level error applies to every user of the call.
//! The request carries exactly the fields the LCIC document defines.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::envelope::{self, Envelope, TencentAction, TencentCredentials};
use crate::domain::{Rejection, User, VendorKind};
use std::sync::Arc;

use crate::vendor_api::settings::{SettingError, TargetSettings, required};
use crate::vendor_api::{
    AttemptContext, BuildError, CallReport, ErrorClass, RegistrarCode, SharedVendor, VendorApi,
    VendorOutcome,
};

pub const ACTION: &str = "BatchRegister";
pub const VERSION: &str = "2022-08-17";
pub const SERVICE: &str = "lcic";
/// docs/vendors/lcic.md#batch-size: "register multiple users (up to 1,000) at a time".
pub const MAX_USERS_PER_CALL: usize = 1000;

/// The configuration of one LCIC application.
#[derive(Debug, Clone)]
pub struct LcicConfig {
    pub endpoint: String,
    pub sdk_app_id: u64,
    /// LCIC does not require a region (LCIC BatchRegister, docs/vendors/lcic.md#endpoint: "Region No").
    pub region: Option<String>,
    pub credentials: TencentCredentials,
}

/// Builds the module of a `tencent-lcic` target.
pub fn from_settings(settings: &dyn TargetSettings) -> Result<SharedVendor, SettingError> {
    Ok(Arc::new(Lcic::new(LcicConfig {
        endpoint: settings.endpoint().to_owned(),
        sdk_app_id: required(settings.app_id(), "app_id")?,
        region: settings.region().map(str::to_owned),
        credentials: TencentCredentials::from_settings(settings)?,
    })))
}

#[derive(Debug)]
pub struct Lcic {
    config: LcicConfig,
}

impl Lcic {
    pub fn new(config: LcicConfig) -> Self {
        Lcic { config }
    }
}

/// `BatchUserRequest` (docs/vendors/lcic.md#request): SdkAppId required; Name, OriginId, Avatar optional.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct BatchUserRequest {
    pub sdk_app_id: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub avatar: String,
}

/// The `BatchRegister` request body.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct BatchRegisterRequest {
    pub users: Vec<BatchUserRequest>,
}

/// `BatchUserInfo` (docs/vendors/lcic.md#response): one successfully registered user.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct BatchUserInfo {
    #[serde(default)]
    pub sdk_app_id: u64,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub origin_id: String,
}

/// The `BatchRegister` output fields; `Users` "may return null".
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchRegisterOutput {
    #[serde(default)]
    users: Option<Vec<BatchUserInfo>>,
}

impl VendorApi for Lcic {
    fn kind(&self) -> VendorKind {
        VendorKind::TencentLcic
    }

    fn action(&self) -> &'static str {
        ACTION
    }

    fn repeat_is_safe(&self) -> bool {
        // LCIC BatchRegister (docs/vendors/lcic.md#repeats): "If a user ID already exists, the
        // existing one will be overwritten."
        true
    }

    fn validate(&self, user: &User) -> Result<(), Rejection> {
        // OriginId is how results are matched back, so it must be present;
        // docs/vendors/lcic.md#field-rules documents no length or charset limits for it (UNCONFIRMED).
        if user.user_id.is_empty() {
            return Err(Rejection::required("userId"));
        }
        Ok(())
    }

    fn build_request(
        &self,
        users: &[&User],
        attempt: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        let body = BatchRegisterRequest {
            users: users
                .iter()
                .map(|user| BatchUserRequest {
                    sdk_app_id: self.config.sdk_app_id,
                    name: user.display_name.clone(),
                    origin_id: user.user_id.clone(),
                    avatar: user.avatar_url.clone(),
                })
                .collect(),
        };
        envelope::signed_post(
            &self.config.endpoint,
            TencentAction {
                service: SERVICE,
                action: ACTION,
                version: VERSION,
                region: self.config.region.as_deref(),
            },
            &self.config.credentials,
            serde_json::to_vec(&body)?,
            attempt.unix_time,
        )
    }

    fn parse_response(&self, users: &[&User], response: &http::Response<Bytes>) -> CallReport {
        parse_batch_register(users, response.status(), response.body())
    }
}

/// Maps a `BatchRegister` answer to one outcome per user sent.
pub fn parse_batch_register(users: &[&User], status: http::StatusCode, body: &[u8]) -> CallReport {
    let envelope = match envelope::decode_envelope(status, body) {
        Ok(envelope) => envelope,
        Err(failure) => {
            return CallReport::call_failed(
                users.len(),
                None,
                failure.class,
                &failure.code,
                &failure.message,
            );
        }
    };
    let (request_id, response) = match envelope {
        Envelope::Failure { request_id, error } => {
            let class = envelope::classify(&error.code);
            if class == ErrorClass::Permanent && envelope::is_data_error(&error.code) {
                return CallReport::call_rejected(
                    users.len(),
                    request_id,
                    &error.code,
                    &error.message,
                );
            }
            return CallReport::call_failed(
                users.len(),
                request_id,
                class,
                &error.code,
                &error.message,
            );
        }
        Envelope::Success {
            request_id,
            response,
        } => (request_id, response),
    };
    let output: BatchRegisterOutput = match serde_json::from_value(response) {
        Ok(output) => output,
        Err(decode_error) => {
            return CallReport::call_failed(
                users.len(),
                request_id,
                ErrorClass::Permanent,
                RegistrarCode::MalformedResponse,
                &format!("vendor answered an unexpected Users list: {decode_error}"),
            );
        }
    };
    let registered: HashMap<&str, &str> = output
        .users
        .iter()
        .flatten()
        .map(|info| (info.origin_id.as_str(), info.user_id.as_str()))
        .collect();
    let outcomes = users
        .iter()
        .map(|user| match registered.get(user.user_id.as_str()) {
            Some(vendor_user_id) => VendorOutcome::Registered {
                vendor_user_id: Some((*vendor_user_id).to_owned())
                    .filter(|vendor_user_id| !vendor_user_id.is_empty()),
            },
            // docs/vendors/lcic.md#partial-failure: Users lists "the successfully registered
            // users"; anyone missing was not registered and the vendor gave no reason.
            None => VendorOutcome::failed(
                ErrorClass::Permanent,
                RegistrarCode::UserNotRegistered,
                "LCIC answered without this user among the registered users",
            ),
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

    use super::*;

    fn lcic() -> Lcic {
        Lcic::new(LcicConfig {
            endpoint: "https://lcic.tencentcloudapi.com".to_owned(),
            sdk_app_id: 1,
            region: None,
            credentials: TencentCredentials {
                secret_id: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE".to_owned(),
                secret_key: SecretString::from("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"),
            },
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
        parse_batch_register(
            &refs,
            http::StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        )
    }

    #[test]
    fn request_body_is_the_documented_example() {
        // LCIC BatchRegister "Input Example" (docs/vendors/lcic.md#examples):
        // {"Users":[{"SdkAppId":1,"Name":"xx","OriginId":"xx","Avatar":"xx"}]}.
        let user = User {
            user_id: "xx".to_owned(),
            display_name: "xx".to_owned(),
            avatar_url: "xx".to_owned(),
            ..User::default()
        };
        let request = lcic()
            .build_request(
                &[&user],
                &AttemptContext {
                    unix_time: 1_700_000_000,
                    nonce: String::new(),
                },
            )
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
        let documented: serde_json::Value = serde_json::from_str(
            r#"{"Users":[{"SdkAppId":1,"Name":"xx","OriginId":"xx","Avatar":"xx"}]}"#,
        )
        .unwrap();
        assert_eq!(body, documented);
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "https://lcic.tencentcloudapi.com/"
        );
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("x-tc-action"), "BatchRegister");
        assert_eq!(header("x-tc-version"), "2022-08-17");
        assert_eq!(header("x-tc-timestamp"), "1700000000");
        assert_eq!(header("host"), "lcic.tencentcloudapi.com");
        assert_eq!(header("content-type"), "application/json");
        assert!(request.headers().get("x-tc-region").is_none());
        assert!(header("authorization").starts_with(
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2023-11-14/lcic/tc3_request, SignedHeaders=content-type;host, Signature="
        ));
    }

    #[test]
    fn optional_fields_are_omitted_when_empty() {
        // LCIC BatchRegister (docs/vendors/lcic.md#request): Name, OriginId and Avatar are
        // optional; send no empty strings.
        let request = lcic()
            .build_request(&[&user("u1")], &AttemptContext::now())
            .unwrap();
        assert_eq!(
            std::str::from_utf8(request.body()).unwrap(),
            r#"{"Users":[{"SdkAppId":1,"OriginId":"u1"}]}"#
        );
    }

    #[test]
    fn the_signature_verifies_against_the_sent_headers() {
        let attempt = AttemptContext::now();
        let request = lcic().build_request(&[&user("u1")], &attempt).unwrap();
        let verified = super::super::tc3_verify::verify(
            "POST",
            request.headers(),
            request.body(),
            attempt.unix_time,
            |_| Some(SecretString::from("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE")),
        );
        assert_eq!(
            verified.as_deref(),
            Ok("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE")
        );
    }

    #[test]
    fn documented_output_example_registers_by_origin_id() {
        // LCIC BatchRegister "Output Example" (docs/vendors/lcic.md#examples): Users[{SdkAppId,
        // UserId, OriginId}], RequestId.
        let report = parse(
            &[user("xx")],
            200,
            r#"{"Response":{"Users":[{"SdkAppId":1,"UserId":"xx","OriginId":"xx"}],"RequestId":"xx"}}"#,
        );
        assert_eq!(report.vendor_request_id.as_deref(), Some("xx"));
        assert_eq!(report.error_code, None);
        assert_eq!(
            report.outcomes,
            vec![VendorOutcome::Registered {
                vendor_user_id: Some("xx".to_owned())
            }]
        );
    }

    #[test]
    fn results_match_by_origin_id_not_position() {
        // docs/vendors/lcic.md#partial-failure: no per-user failure list exists; match results by OriginId.
        let report = parse(
            &[user("a"), user("b"), user("c")],
            200,
            r#"{"Response":{"Users":[
                {"SdkAppId":1,"UserId":"2i5WfUzRRC2Eb2uNmLNv96gzxCv","OriginId":"c"},
                {"SdkAppId":1,"UserId":"2i5WfUzRRC2Eb2uNmLNv96gzxAa","OriginId":"a"}],
               "RequestId":"r1"}}"#,
        );
        assert_eq!(
            report.outcomes[0],
            VendorOutcome::Registered {
                vendor_user_id: Some("2i5WfUzRRC2Eb2uNmLNv96gzxAa".to_owned())
            }
        );
        assert_eq!(
            report.outcomes[2],
            VendorOutcome::Registered {
                vendor_user_id: Some("2i5WfUzRRC2Eb2uNmLNv96gzxCv".to_owned())
            }
        );
        assert!(matches!(
            &report.outcomes[1],
            VendorOutcome::Failed { class: ErrorClass::Permanent, code, .. } if *code == RegistrarCode::UserNotRegistered
        ));
    }

    #[test]
    fn users_null_means_none_registered() {
        // LCIC BatchRegister (docs/vendors/lcic.md#response): "This field may return null".
        let report = parse(
            &[user("a")],
            200,
            r#"{"Response":{"Users":null,"RequestId":"r"}}"#,
        );
        assert!(matches!(report.outcomes[0], VendorOutcome::Failed { .. }));
    }

    #[test]
    fn every_documented_error_code_applies_to_each_user_of_the_call() {
        // LCIC BatchRegister error codes (docs/vendors/lcic.md#error-codes): InternalError,
        // InvalidParameter, InvalidParameter.SdkAppId, InvalidParameterValue, MissingParameter,
        // UnauthorizedOperation.
        let users = [user("a"), user("b")];
        let cases = [
            ("InternalError", Some(ErrorClass::Retryable)),
            ("InvalidParameter", None),
            ("InvalidParameter.SdkAppId", None),
            ("InvalidParameterValue", None),
            ("MissingParameter", None),
            ("UnauthorizedOperation", Some(ErrorClass::Permanent)),
            ("RequestLimitExceeded", Some(ErrorClass::Throttled)),
            ("AuthFailure.SignatureFailure", Some(ErrorClass::Permanent)),
        ];
        for (code, failed_class) in cases {
            let body = format!(
                r#"{{"Response":{{"Error":{{"Code":"{code}","Message":"m"}},"RequestId":"r"}}}}"#
            );
            let report = parse(&users, 200, &body);
            assert_eq!(report.error_code(), Some(code));
            assert_eq!(report.outcomes.len(), 2);
            for outcome in &report.outcomes {
                match failed_class {
                    Some(class) => {
                        assert_eq!(outcome, &VendorOutcome::failed(class, code, "m"), "{code}")
                    }
                    None => assert_eq!(
                        outcome,
                        &VendorOutcome::Rejected {
                            code: code.into(),
                            message: "m".to_owned()
                        },
                        "{code}"
                    ),
                }
            }
        }
    }

    #[test]
    fn malformed_answers_fail_every_user_without_panicking() {
        let users = [user("a")];
        for (status, body) in [
            (200, "not json"),
            (200, r#"{"Response":{"Users":"nope","RequestId":"r"}}"#),
            (200, r#"{"Response":{"Users":[{"OriginId":5}]}}"#),
            (200, "{}"),
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
}
