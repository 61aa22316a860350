//! The simulated Tencent Cloud API 3.0 gateway, shared by the Tencent
//! products (LCIC, CIAM, CIAM import jobs): the checks before a product reads
//! the body (TC3 signature, signed service, timestamp, API version, content
//! type, and for CIAM the region), the `{"Response": ...}` envelope and the
//! gateway's own codes (docs/vendors/tencent-cloud-api.md). A product plugs in
//! as a [`Product`]: which account its body names, how its body is read and
//! what it answers; the gateway makes it an [`Endpoint`] of the simulator's
//! pipeline. Every refusal is an `Error` inside an HTTP 200 answer. Nothing
//! here reveals the expected signature or the account's key: refusal
//! messages are the fixed texts of `tc3_verify::VerifyError`. This module
//! knows no product; the routing by `X-TC-Action` is the simulator's
//! (`routes`).

use axum::{
    Json,
    http::{HeaderMap, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use super::{
    faults::Fault,
    pipeline::{BodyError, Endpoint, owned_account},
    state::{AppState, Refusal, Shared, SimAccount},
};
use crate::{domain::VendorKind, vendor_api::tencent::tc3_verify};

/// docs/vendors/tencent-cloud-api.md#size-limits: "Limits: GET ≤32 KB, POST v3 ≤10 MB".
pub(super) const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// One Tencent product action behind the gateway.
pub(super) trait Product {
    /// The vendor the calls are recorded under.
    const VENDOR: VendorKind;
    /// The `X-TC-Action` it answers, recorded with each call.
    const ACTION: &'static str;
    /// The signing service of the credential scope, e.g. `lcic`.
    const SERVICE: &'static str;
    /// The only `X-TC-Version` the action answers to.
    const VERSION: &'static str;
    /// Whether the action requires `X-TC-Region` (CIAM, docs/vendors/ciam.md).
    const NEEDS_REGION: bool;
    type Valid;
    type Accepted;

    /// Whether the body names `account` (by its app or user store): one
    /// SecretId may own several accounts of the product; the one the body
    /// names is picked, else the first configured.
    fn names(account: &SimAccount, body: &Value) -> bool;
    /// The users the call carries, read leniently for its record.
    fn carried(body: Option<&Value>) -> Vec<String>;
    /// Reads the body strictly, for the authenticated account.
    fn check_body(body: Option<&Value>, account: &SimAccount) -> Result<Self::Valid, Refusal>;
    /// Changes the account's memory for an admitted call (see [`Endpoint::accept`]).
    fn apply(
        app: &mut AppState,
        account: &SimAccount,
        valid: Self::Valid,
    ) -> Result<Self::Accepted, Refusal>;
    /// The fields of an accepted call's `Response`, besides `RequestId`.
    fn answer(accepted: Self::Accepted) -> Result<Map<String, Value>, Refusal>;
}

/// Every Tencent product is an endpoint of the pipeline: the gateway's
/// checks first, then the quota, then the product's body rules.
impl<P: Product> Endpoint for P {
    const VENDOR: VendorKind = <P as Product>::VENDOR;
    const ACTION: &'static str = <P as Product>::ACTION;
    const MAX_BODY_BYTES: usize = MAX_BODY_BYTES;
    /// The SecretId the `Authorization` header claims.
    type Head = Option<String>;
    type Valid = <P as Product>::Valid;
    type Accepted = <P as Product>::Accepted;

    fn head(parts: &Parts) -> Option<String> {
        claimed_secret_id(&parts.headers)
    }

    fn body_refusal(error: BodyError) -> Refusal {
        match error {
            // docs/vendors/tencent-cloud-api.md#size-limits: POST v3 bodies are at most 10 MB.
            BodyError::TooLarge => refusal(
                "RequestSizeLimitExceeded",
                "the request body is larger than 10 MB",
            ),
            BodyError::Unreadable => {
                refusal("InvalidParameter", "the request body could not be read")
            }
        }
    }

    fn pick_account<'a>(
        accounts: &'a [SimAccount],
        secret_id: &Option<String>,
        body: Option<&Value>,
    ) -> Option<&'a SimAccount> {
        owned_account(accounts, P::VENDOR, secret_id.as_deref(), |account| {
            body.is_some_and(|body| P::names(account, body))
        })
    }

    fn carried_user_ids(body: Option<&Value>) -> Vec<String> {
        P::carried(body)
    }

    fn authenticate<'a>(
        parts: &Parts,
        _secret_id: &Option<String>,
        body: &[u8],
        account: Option<&'a SimAccount>,
        _accounts: &'a [SimAccount],
    ) -> Result<&'a SimAccount, Refusal> {
        check_request(&parts.headers, body, P::SERVICE, P::VERSION, account)?;
        if P::NEEDS_REGION {
            check_region(&parts.headers)?;
        }
        // check_request refuses a SecretId without an account; kept for totality.
        account.ok_or_else(|| refusal("AuthFailure.SecretIdNotFound", "the SecretId is not known"))
    }

    fn validate(
        _shared: &Shared,
        _secret_id: &mut Option<String>,
        account: &SimAccount,
        body: Option<&Value>,
    ) -> Result<Self::Valid, Refusal> {
        P::check_body(body, account)
    }

    fn throttled() -> Refusal {
        throttled()
    }

    fn accept(
        app: &mut AppState,
        account: &SimAccount,
        valid: Self::Valid,
    ) -> Result<Self::Accepted, Refusal> {
        P::apply(app, account, valid)
    }

    fn accepted(_secret_id: &Option<String>, accepted: Self::Accepted) -> Response {
        match P::answer(accepted) {
            Ok(fields) => success_response(fields),
            Err(refusal) => error_response(&refusal),
        }
    }

    fn refused(_secret_id: &Option<String>, refusal: &Refusal) -> Response {
        error_response(refusal)
    }
}

/// The answer to an `X-TC-Action` no product answers (not recorded: it
/// names no vendor).
pub(super) fn unknown_action(parts: &Parts) -> Response {
    let action = parts
        .headers
        .get("x-tc-action")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    tracing::debug!(action, "simulated tencent call with an unknown action");
    error_response(&refusal(
        "InvalidAction",
        format!("the action {action:?} is not supported"),
    ))
}

/// The gateway's answer to an injected internal error or throttle: (status, body).
pub(super) fn fault_answer(fault: Fault) -> (u16, String) {
    // docs/vendors/tencent-cloud-api.md#error-codes: RequestLimitExceeded and InternalError inside HTTP 200
    let code = match fault {
        Fault::Throttle => "RequestLimitExceeded",
        _ => "InternalError",
    };
    let body = json!({"Response": {"Error": {"Code": code, "Message": "simulated fault"}, "RequestId": request_id()}});
    (200, body.to_string())
}

/// A success answer with every output field null but `RequestId`, for an
/// injected null output; `None` for an answer that is not a success (an
/// error stays as it is). Tencent API pages say of output fields "This field
/// may return null".
pub(super) fn null_output(body: &[u8]) -> Option<String> {
    let mut answer: Value = serde_json::from_slice(body).ok()?;
    let response = answer.get_mut("Response")?.as_object_mut()?;
    if response.contains_key("Error") {
        return None;
    }
    for (field, value) in response.iter_mut() {
        if field != "RequestId" {
            *value = Value::Null;
        }
    }
    Some(answer.to_string())
}

/// A Tencent refusal; docs/vendors/tencent-cloud-api.md#error-envelope puts the failure in
/// `Response.Error`, and Tencent answers it with HTTP 200.
pub(super) fn refusal(code: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        http_status: 200,
        code: code.to_owned(),
        message: message.into(),
    }
}

/// docs/vendors/tencent-cloud-api.md#rate-limits: the rate-limit code the SDKs retry
/// (docs/vendors/tencent-cloud-api.md#sdk-retry-behaviour matches it exactly).
fn throttled() -> Refusal {
    refusal(
        "RequestLimitExceeded",
        "the number of requests exceeds the frequency limit",
    )
}

/// The SecretId an `Authorization` header names, if it parses.
fn claimed_secret_id(headers: &HeaderMap) -> Option<String> {
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    tc3_verify::parse_authorization(authorization)
        .ok()
        .map(|parsed| parsed.secret_id)
}

/// The gateway's checks, in order: the TC3 signature with the key of
/// `account` (the account the SecretId names, `None` if it names none), the
/// signed service, the timestamp, then the version and the content type.
fn check_request(
    headers: &HeaderMap,
    body: &[u8],
    service: &str,
    version: &str,
    account: Option<&SimAccount>,
) -> Result<(), Refusal> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| auth_refusal(&tc3_verify::VerifyError::InvalidAuthorization))?;
    let parsed =
        tc3_verify::parse_authorization(authorization).map_err(|error| auth_refusal(&error))?;
    // docs/vendors/tencent-cloud-api.md#credential-scope: the credential scope's service is the
    // product; a key derived for another fails.
    if parsed.service != service {
        return Err(refusal(
            "AuthFailure.SignatureFailure",
            format!(
                "the credential scope names service {:?}, this action belongs to {service}",
                parsed.service
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
    let sent = headers
        .get("x-tc-version")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    // docs/vendors/tencent-cloud-api.md#headers: X-TC-Version is required and names the API
    // version, e.g. 2022-08-17 for LCIC.
    if sent != version {
        return Err(refusal(
            "NoSuchVersion",
            format!("the version {sent:?} does not exist; this action answers to {version}"),
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

/// The region CIAM requires (docs/vendors/ciam.md, docs/vendors/ciam-import.md).
fn check_region(headers: &HeaderMap) -> Result<(), Refusal> {
    let region = headers
        .get("x-tc-region")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    // CIAM CreateUser and CreateApiImportUserJob (docs/vendors/ciam.md#endpoint,
    // docs/vendors/ciam-import.md#endpoint): "Region Yes" — CIAM answers nothing without X-TC-Region.
    if region.trim().is_empty() {
        return Err(refusal(
            "MissingParameter",
            "the parameter Region (X-TC-Region) is required",
        ));
    }
    Ok(())
}

fn auth_refusal(error: &tc3_verify::VerifyError) -> Refusal {
    // The VerifyError texts are fixed: they never carry the expected signature or the key.
    refusal(error.code(), error.to_string())
}

/// docs/vendors/tencent-cloud-api.md#content-type: POST JSON is `application/json` (SDK) or
/// `application/json; charset=utf-8` (doc).
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

// The body readers the Tencent products share.

/// The body as a JSON object, else `InvalidParameter`.
pub(super) fn body_object(body: Option<&Value>) -> Result<&Map<String, Value>, Refusal> {
    body.ok_or_else(|| refusal("InvalidParameter", "the request body is not valid JSON"))?
        .as_object()
        .ok_or_else(|| refusal("InvalidParameter", "the request body must be a JSON object"))
}

/// A parameter of the wrong shape (docs/vendors/tencent-cloud-api.md, error codes).
pub(super) fn invalid_value(message: String) -> Refusal {
    refusal("InvalidParameterValue", message)
}

/// A string field: absent or null is `None`; any other type is refused.
pub(super) fn text_field(
    object: &Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Option<String>, Refusal> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(invalid_value(format!(
            "the parameter {path}{field} must be a string"
        ))),
    }
}

/// An array of strings: absent or null is empty.
pub(super) fn strings_field(
    object: &Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Vec<String>, Refusal> {
    let not_strings = || {
        invalid_value(format!(
            "the parameter {path}{field} must be an array of strings"
        ))
    };
    match object.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| value.as_str().map(str::to_owned).ok_or_else(not_strings))
            .collect(),
        Some(_) => Err(not_strings()),
    }
}

/// Refuses the first key of `object` that is not `known` (`UnknownParameter`):
/// a request parameter (`path` empty) is named quoted, a nested one after its `path`.
pub(super) fn only_known(
    object: &Map<String, Value>,
    known: impl Fn(&str) -> bool,
    path: &str,
) -> Result<(), Refusal> {
    match object.keys().find(|key| !known(key)) {
        None => Ok(()),
        Some(unknown) if path.is_empty() => Err(refusal(
            "UnknownParameter",
            format!("the parameter {unknown:?} is not recognized"),
        )),
        Some(unknown) => Err(refusal(
            "UnknownParameter",
            format!("the parameter {path}{unknown} is not recognized"),
        )),
    }
}

/// A required array parameter: absent or null is `MissingParameter`, another
/// type `InvalidParameterValue` ("the parameter {field} must be {shape}").
pub(super) fn required_array<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    shape: &str,
) -> Result<&'a Vec<Value>, Refusal> {
    match object.get(field) {
        None | Some(Value::Null) => Err(refusal(
            "MissingParameter",
            format!("the parameter {field} is required"),
        )),
        Some(Value::Array(values)) => Ok(values),
        Some(_) => Err(invalid_value(format!(
            "the parameter {field} must be {shape}"
        ))),
    }
}

/// docs/vendors/tencent-cloud-api.md#error-envelope: `{"Response":{"Error":{"Code","Message"},"RequestId"}}`.
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

/// docs/vendors/tencent-cloud-api.md#response-envelope: `{"Response":{...fields..., "RequestId"}}`.
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
