//! What Tencent Cloud API 3.0 vendors (LCIC, CIAM) share: the signed POST,
//! the `{"Response": ...}` envelope and the classification of its error codes.
//!
//! Sources: docs/vendors/tencent-cloud-api.md#headers (headers),
//! docs/vendors/tencent-cloud-api.md#error-codes (envelope and common codes),
//! docs/vendors/tencent-cloud-api.md#sdk-retry-behaviour (what the SDKs retry).

use bytes::Bytes;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use super::tc3;
use crate::vendor_api::settings::{SettingError, TargetSettings};
use crate::vendor_api::{BuildError, ErrorClass, ErrorCode, RegistrarCode, answer, endpoint_uri};

/// The content type the Go and Python SDKs send and sign for JSON POSTs.
pub const CONTENT_TYPE: &str = "application/json";

/// A Tencent Cloud API key pair. The key never leaves this process except as an HMAC.
#[derive(Clone)]
pub struct TencentCredentials {
    pub secret_id: String,
    pub secret_key: SecretString,
}

impl TencentCredentials {
    /// The SecretId and SecretKey a target configured.
    pub fn from_settings(settings: &dyn TargetSettings) -> Result<Self, SettingError> {
        Ok(TencentCredentials {
            secret_id: settings.identifier("secret_id")?,
            secret_key: settings.secret("secret_key")?,
        })
    }
}

impl std::fmt::Debug for TencentCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TencentCredentials")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"[redacted]")
            .finish()
    }
}

/// The fixed parts of one Tencent API action.
#[derive(Debug, Clone, Copy)]
pub struct TencentAction<'a> {
    /// Signing service, e.g. `lcic`: fixed per product, whatever host the endpoint names.
    pub service: &'a str,
    pub action: &'a str,
    pub version: &'a str,
    pub region: Option<&'a str>,
}

/// Builds a POST signed with TC3-HMAC-SHA256 exactly as tencentcloud-sdk-go does:
/// SignedHeaders `content-type;host`, Content-Type `application/json`.
pub fn signed_post(
    endpoint: &str,
    action: TencentAction<'_>,
    credentials: &TencentCredentials,
    body: Vec<u8>,
    timestamp: i64,
) -> Result<http::Request<Bytes>, BuildError> {
    let (uri, host) = endpoint_uri(endpoint)?;
    let signature = tc3::sign(
        &tc3::SigningInput {
            method: "POST",
            canonical_query: "",
            headers: &[("content-type", CONTENT_TYPE), ("host", &host)],
            payload: &body,
            service: action.service,
            timestamp,
        },
        &credentials.secret_id,
        &credentials.secret_key,
    );
    let mut request = http::Request::post(uri)
        .header(http::header::HOST, host)
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .header("X-TC-Action", action.action)
        .header("X-TC-Version", action.version)
        .header("X-TC-Timestamp", timestamp.to_string())
        .header(http::header::AUTHORIZATION, signature.authorization);
    if let Some(region) = action.region {
        request = request.header("X-TC-Region", region);
    }
    Ok(request.body(Bytes::from(body))?)
}

/// `Response.Error` of a failed call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// A Tencent answer, decoded down to its envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// No `Error`: the action's output fields (including `RequestId`).
    Success {
        request_id: Option<String>,
        response: Value,
    },
    /// `Response.Error` was present: the whole call failed.
    Failure {
        request_id: Option<String>,
        error: ApiError,
    },
}

/// Why an answer could not be decoded; always reported as a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub class: ErrorClass,
    pub code: ErrorCode,
    pub message: String,
}

/// Decodes `{"Response": {...}}`; the presence of `Error` means failure
/// (docs/vendors/tencent-cloud-api.md#error-envelope).
/// A non-200 status without a Tencent error body is classified by status.
pub fn decode_envelope(status: http::StatusCode, body: &[u8]) -> Result<Envelope, Undecodable> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let response = parsed.as_ref().and_then(|value| value.get("Response"));
    let Some(response) = response.filter(|response| response.is_object()) else {
        if status != http::StatusCode::OK {
            return Err(http_status_failure(status));
        }
        return Err(Undecodable {
            class: ErrorClass::Permanent,
            code: RegistrarCode::MalformedResponse.into(),
            message: format!(
                "vendor answered HTTP 200 without a JSON Response object ({} bytes)",
                body.len()
            ),
        });
    };
    let request_id = response
        .get("RequestId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(error) = response.get("Error") {
        let error: ApiError =
            serde_json::from_value(error.clone()).map_err(|decode_error| Undecodable {
                class: ErrorClass::Permanent,
                code: RegistrarCode::MalformedResponse.into(),
                message: format!("vendor answered an Error without a Code: {decode_error}"),
            })?;
        // An empty Code names no failure either: reported as the vendor's, it
        // would be a failure with an empty code, which no retry rule, audit
        // row or caller can tell apart (found by tests/properties).
        if error.code.is_empty() {
            return Err(Undecodable {
                class: ErrorClass::Permanent,
                code: RegistrarCode::MalformedResponse.into(),
                message: "vendor answered an Error with an empty Code".to_owned(),
            });
        }
        return Ok(Envelope::Failure { request_id, error });
    }
    if status != http::StatusCode::OK {
        return Err(http_status_failure(status));
    }
    Ok(Envelope::Success {
        request_id,
        response: response.clone(),
    })
}

/// A failure known only by its HTTP status: 429 throttled, 5xx retryable, other permanent.
pub fn http_status_failure(status: http::StatusCode) -> Undecodable {
    Undecodable {
        class: answer::status_class(status),
        code: answer::status_code(status).into(),
        message: answer::status_message(status),
    }
}

fn code_is(code: &str, family: &str) -> bool {
    code == family
        || code
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Classifies a Tencent error code per docs/vendors/tencent-cloud-api.md#error-codes (and
/// docs/vendors/ciam.md#error-codes for CIAM's own codes).
pub fn classify(code: &str) -> ErrorClass {
    const THROTTLED: &[&str] = &["RequestLimitExceeded"];
    const RETRYABLE: &[&str] = &[
        "InternalError",
        "ServiceUnavailable",
        "ResourceUnavailable",
        "ResourceInsufficient",
        "ResourceInUse",
        // docs/vendors/tencent-cloud-api.md#error-codes: a timestamp more than 5 minutes off; the
        // retry re-signs with a fresh one.
        "AuthFailure.SignatureExpire",
    ];
    if code == "RequestLimitExceeded.RepeatRequest" {
        // docs/vendors/ciam.md#error-codes: "请求重复，请稍后再试" is a retry-later, not a quota answer.
        return ErrorClass::Retryable;
    }
    if THROTTLED.iter().any(|family| code_is(code, family)) {
        return ErrorClass::Throttled;
    }
    if RETRYABLE.iter().any(|family| code_is(code, family)) {
        return ErrorClass::Retryable;
    }
    ErrorClass::Permanent
}

/// Whether a permanent code says the request's data was refused (so the
/// users are OUTCOME_REJECTED) rather than the account or service failing.
pub fn is_data_error(code: &str) -> bool {
    const DATA: &[&str] = &[
        "InvalidParameter",
        "InvalidParameterValue",
        "MissingParameter",
        "UnknownParameter",
    ];
    DATA.iter().any(|family| code_is(code, family))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_common_codes_of_a3() {
        // docs/vendors/tencent-cloud-api.md#error-codes: common error codes and their classes.
        for code in [
            "RequestLimitExceeded",
            "RequestLimitExceeded.UinLimitExceeded",
            "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
            "RequestLimitExceeded.IPLimitExceeded",
        ] {
            assert_eq!(classify(code), ErrorClass::Throttled, "{code}");
        }
        for code in [
            "InternalError",
            "ServiceUnavailable",
            "ResourceUnavailable",
            "ResourceInsufficient",
            "ResourceInUse",
            "AuthFailure.SignatureExpire",
        ] {
            assert_eq!(classify(code), ErrorClass::Retryable, "{code}");
        }
        for code in [
            "AuthFailure.SignatureFailure",
            "AuthFailure.SecretIdNotFound",
            "AuthFailure.InvalidSecretId",
            "AuthFailure.TokenFailure",
            "AuthFailure.MFAFailure",
            "AuthFailure.InvalidAuthorization",
            "AuthFailure.UnauthorizedOperation",
            "InvalidParameter",
            "InvalidParameter.SdkAppId",
            "InvalidParameterValue",
            "MissingParameter",
            "UnknownParameter",
            "InvalidAction",
            "NoSuchVersion",
            "UnauthorizedOperation",
            "LimitExceeded",
            "ResourceNotFound",
            "FailedOperation",
            "RequestSizeLimitExceeded",
            "ActionOffline",
            // not a prefix match: a code that merely starts with a family's letters
            "InternalErrorish",
        ] {
            assert_eq!(classify(code), ErrorClass::Permanent, "{code}");
        }
    }

    #[test]
    fn data_errors_are_the_parameter_families() {
        assert!(is_data_error("InvalidParameter.SdkAppId"));
        assert!(is_data_error("MissingParameter"));
        assert!(!is_data_error("UnauthorizedOperation"));
        assert!(!is_data_error("AuthFailure.SignatureFailure"));
    }

    #[test]
    fn decodes_the_documented_error_envelope() {
        // docs/vendors/tencent-cloud-api.md#error-envelope:
        // {"Response":{"Error":{"Code","Message"},"RequestId"}}.
        let body = br#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"The provided credentials could not be validated."},"RequestId":"ed93f3cb-f35e-473f-b9f3-0d451b8b79c6"}}"#;
        assert_eq!(
            decode_envelope(http::StatusCode::OK, body),
            Ok(Envelope::Failure {
                request_id: Some("ed93f3cb-f35e-473f-b9f3-0d451b8b79c6".to_owned()),
                error: ApiError {
                    code: "AuthFailure.SignatureFailure".to_owned(),
                    message: "The provided credentials could not be validated.".to_owned(),
                },
            })
        );
    }

    #[test]
    fn non_json_and_bad_statuses_are_failures_not_panics() {
        let html = b"<html>bad gateway</html>";
        let failure = decode_envelope(http::StatusCode::BAD_GATEWAY, html).unwrap_err();
        assert_eq!(failure.class, ErrorClass::Retryable);
        assert_eq!(failure.code, "HTTP502");
        let failure = decode_envelope(http::StatusCode::TOO_MANY_REQUESTS, b"").unwrap_err();
        assert_eq!(failure.class, ErrorClass::Throttled);
        let failure = decode_envelope(http::StatusCode::OK, b"{\"Response\": 3}").unwrap_err();
        assert_eq!(failure.code, RegistrarCode::MalformedResponse);
        let failure = decode_envelope(http::StatusCode::OK, b"\xff\xfe").unwrap_err();
        assert_eq!(failure.class, ErrorClass::Permanent);
        let failure = decode_envelope(
            http::StatusCode::OK,
            br#"{"Response":{"Error":{"Message":"x"}}}"#,
        )
        .unwrap_err();
        assert_eq!(failure.code, RegistrarCode::MalformedResponse);
    }

    #[test]
    fn an_error_with_an_empty_code_is_malformed_not_a_vendor_code() {
        // Found by tests/properties: `"Code": ""` became a failure whose code was empty.
        for status in [http::StatusCode::OK, http::StatusCode::BAD_GATEWAY] {
            let failure = decode_envelope(
                status,
                br#"{"Response":{"Error":{"Code":"","Message":""},"RequestId":"r"}}"#,
            )
            .unwrap_err();
            assert_eq!(failure.code, RegistrarCode::MalformedResponse);
            assert_eq!(failure.class, ErrorClass::Permanent);
        }
    }
}
