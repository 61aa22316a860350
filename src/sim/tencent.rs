//! What the simulated Tencent Cloud API 3.0 products share: routing by
//! `X-TC-Action`, the gateway's checks before a product reads the body (TC3
//! signature, API version, content type) and the `{"Response": ...}`
//! envelope. Every refusal is an `Error` inside an HTTP 200 answer. Nothing
//! here reveals the expected signature or the account's key: refusal
//! messages are the fixed texts of `tc3_verify::VerifyError`.

use axum::{
    Json,
    body::Body,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use super::{Refusal, Shared, SimAccount, ciam, ciam_import, lcic};
use crate::vendor_api::tencent::tc3_verify;

/// vendors.md A.1: "Limits: GET ≤32 KB, POST v3 ≤10 MB".
pub(super) const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The fixed identity of one Tencent product API.
#[derive(Debug, Clone, Copy)]
pub(super) struct Product {
    /// The signing service of the credential scope, e.g. `lcic`.
    pub(super) service: &'static str,
    /// The only `X-TC-Version` the action answers to.
    pub(super) version: &'static str,
}

/// Routes a Tencent call by its `X-TC-Action`.
pub(super) async fn dispatch(
    shared: &Shared,
    parts: &http::request::Parts,
    body: Body,
) -> Response {
    let action = parts
        .headers
        .get("x-tc-action")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    match action {
        crate::vendor_api::tencent::lcic::ACTION => lcic::batch_register(shared, parts, body).await,
        crate::vendor_api::tencent::ciam::ACTION => ciam::create_user(shared, parts, body).await,
        crate::vendor_api::tencent::ciam_import::ACTION => {
            ciam_import::create_job(shared, parts, body).await
        }
        crate::vendor_api::tencent::ciam_import::POLL_ACTION => {
            ciam_import::list_jobs(shared, parts, body).await
        }
        _ => {
            // Unroutable: no vendor to record it under.
            tracing::debug!(action, "simulated tencent call with an unknown action");
            error_response(&refusal(
                "InvalidAction",
                format!("the action {action:?} is not supported"),
            ))
        }
    }
}

/// A Tencent refusal; A.3 puts the failure in `Response.Error`, and Tencent answers it with HTTP 200.
pub(super) fn refusal(code: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        http_status: 200,
        code: code.to_owned(),
        message: message.into(),
    }
}

/// vendors.md A.3: the rate-limit code the SDKs retry (A.4 matches it exactly).
pub(super) fn throttled() -> Refusal {
    refusal(
        "RequestLimitExceeded",
        "the number of requests exceeds the frequency limit",
    )
}

/// The SecretId an `Authorization` header names, if it parses.
pub(super) fn claimed_secret_id(headers: &HeaderMap) -> Option<String> {
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    tc3_verify::parse_authorization(authorization)
        .ok()
        .map(|parsed| parsed.secret_id)
}

/// The gateway's checks, in order: the TC3 signature with the key of
/// `account` (the account the SecretId names, `None` if it names none), the
/// signed service, the timestamp, then the version and the content type.
pub(super) fn check_request(
    headers: &HeaderMap,
    body: &[u8],
    product: Product,
    account: Option<&SimAccount>,
) -> Result<(), Refusal> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| auth_refusal(&tc3_verify::VerifyError::InvalidAuthorization))?;
    let parsed =
        tc3_verify::parse_authorization(authorization).map_err(|error| auth_refusal(&error))?;
    // vendors.md A.1: the credential scope's service is the product; a key derived for another fails.
    if parsed.service != product.service {
        return Err(refusal(
            "AuthFailure.SignatureFailure",
            format!(
                "the credential scope names service {:?}, this action belongs to {}",
                parsed.service, product.service
            ),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    tc3_verify::verify("POST", headers, body, now, |secret_id| {
        account
            .filter(|account| account.secret_id == secret_id)
            .map(|account| account.secret_key.clone())
    })
    .map_err(|error| auth_refusal(&error))?;
    let version = headers
        .get("x-tc-version")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    // vendors.md A.1: X-TC-Version is required and names the API version, e.g. 2022-08-17 for LCIC.
    if version != product.version {
        return Err(refusal(
            "NoSuchVersion",
            format!(
                "the version {version:?} does not exist; this action answers to {}",
                product.version
            ),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !is_json_content_type(content_type) {
        return Err(refusal(
            "InvalidParameter",
            format!("the content type {content_type:?} is not application/json"),
        ));
    }
    Ok(())
}

fn auth_refusal(error: &tc3_verify::VerifyError) -> Refusal {
    // The VerifyError texts are fixed: they never carry the expected signature or the key.
    refusal(error.code(), error.to_string())
}

/// vendors.md A.1: POST JSON is `application/json` (SDK) or `application/json; charset=utf-8` (doc).
fn is_json_content_type(value: &str) -> bool {
    let mut parts = value.split(';').map(str::trim);
    let media_type = parts.next().unwrap_or_default();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return false;
    }
    match (parts.next(), parts.next()) {
        (None, _) => true,
        (Some(parameter), None) => parameter.split_once('=').is_some_and(|(name, charset)| {
            name.trim().eq_ignore_ascii_case("charset")
                && charset
                    .trim()
                    .trim_matches('"')
                    .eq_ignore_ascii_case("utf-8")
        }),
        _ => false,
    }
}

/// vendors.md A.3: `{"Response":{"Error":{"Code","Message"},"RequestId"}}`.
pub(super) fn error_response(refusal: &Refusal) -> Response {
    let body = json!({
        "Response": {
            "Error": { "Code": refusal.code, "Message": refusal.message },
            "RequestId": request_id(),
        }
    });
    let status = http::StatusCode::from_u16(refusal.http_status).unwrap_or(http::StatusCode::OK);
    (status, Json(body)).into_response()
}

/// vendors.md A.3: `{"Response":{...fields..., "RequestId"}}`.
pub(super) fn success_response(mut fields: Map<String, Value>) -> Response {
    fields.insert("RequestId".to_owned(), Value::String(request_id()));
    Json(json!({ "Response": fields })).into_response()
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_with_or_without_a_utf8_charset() {
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
        ] {
            assert!(is_json_content_type(accepted), "{accepted}");
        }
        for refused in [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/json; charset=gbk",
            "application/json; charset=utf-8; boundary=x",
            "application/jsonx",
            "multipart/form-data",
        ] {
            assert!(!is_json_content_type(refused), "{refused}");
        }
    }

    async fn decoded(answer: Response) -> crate::vendor_api::tencent::envelope::Envelope {
        use http_body_util::BodyExt;

        let status = answer.status();
        assert_eq!(status, http::StatusCode::OK);
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        crate::vendor_api::tencent::envelope::decode_envelope(status, &body).unwrap()
    }

    #[tokio::test]
    async fn envelopes_decode_with_the_vendor_module() {
        use crate::vendor_api::tencent::envelope::Envelope;

        match decoded(error_response(&throttled())).await {
            Envelope::Failure { request_id, error } => {
                assert_eq!(error.code, "RequestLimitExceeded");
                assert!(request_id.is_some_and(|id| uuid::Uuid::parse_str(&id).is_ok()));
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        let fields = Map::from_iter([("Users".to_owned(), json!([]))]);
        match decoded(success_response(fields)).await {
            Envelope::Success {
                request_id,
                response,
            } => {
                assert!(request_id.is_some());
                assert_eq!(response["Users"], json!([]));
            }
            other => panic!("expected a success, got {other:?}"),
        }
    }
}
