//! Verification of a received Volcengine SignerV4 signature, the way the
//! OpenAPI gateway checks one: the simulator runs it over every request it
//! receives, and the RTC module's tests over the requests it signs. Its errors
//! are fixed texts that never carry the expected signature or the key.

use hmac::{KeyInit, Mac};
use secrecy::SecretString;

use super::signing::*;

/// The parts of a received `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub access_key_id: String,
    pub short_date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why a received signature was refused; each variant is one of Volcengine's
/// common error codes (docs/vendors/volc-rtc.md#error-codes). The texts are fixed: they never carry
/// the expected signature or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    MissingRequestInfo(&'static str),
    #[error("the access key id is not known")]
    InvalidAccessKey,
    #[error("{0}")]
    SignatureDoesNotMatch(&'static str),
    #[error("X-Date is more than 15 minutes away from the server time")]
    InvalidTimestamp,
}

impl VerifyError {
    /// Volcengine's `Error.Code`.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingRequestInfo(_) => "MissingRequestInfo",
            VerifyError::InvalidAccessKey => "InvalidAccessKey",
            VerifyError::SignatureDoesNotMatch(_) => "SignatureDoesNotMatch",
            VerifyError::InvalidTimestamp => "InvalidTimestamp",
        }
    }

    /// Volcengine's `Error.CodeN` (docs/vendors/volc-rtc.md#error-codes).
    pub fn code_n(&self) -> u32 {
        match self {
            VerifyError::MissingRequestInfo(_) => 100004,
            VerifyError::InvalidTimestamp => 100006,
            VerifyError::InvalidAccessKey => 100009,
            VerifyError::SignatureDoesNotMatch(_) => 100010,
        }
    }

    /// The HTTP status Volcengine answers with (docs/vendors/volc-rtc.md#error-codes).
    pub fn http_status(&self) -> u16 {
        match self {
            VerifyError::MissingRequestInfo(_) | VerifyError::InvalidTimestamp => 400,
            VerifyError::InvalidAccessKey | VerifyError::SignatureDoesNotMatch(_) => 401,
        }
    }
}

const MALFORMED_AUTHORIZATION: VerifyError =
    VerifyError::MissingRequestInfo("the Authorization header is malformed");

/// Parses `HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/request, SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(header: &str) -> Result<ParsedAuthorization, VerifyError> {
    let rest = header
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(MALFORMED_AUTHORIZATION)?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(MALFORMED_AUTHORIZATION)?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(MALFORMED_AUTHORIZATION),
        };
        if slot.replace(value).is_some() {
            return Err(MALFORMED_AUTHORIZATION);
        }
    }
    let credential: Vec<&str> = credential
        .ok_or(MALFORMED_AUTHORIZATION)?
        .split('/')
        .collect();
    let [access_key_id, short_date, region, service, SCOPE_TERMINATOR] = credential[..] else {
        return Err(MALFORMED_AUTHORIZATION);
    };
    let signed_headers: Vec<String> = signed_headers
        .ok_or(MALFORMED_AUTHORIZATION)?
        .split(';')
        .map(str::to_owned)
        .collect();
    if access_key_id.is_empty() || signed_headers.iter().any(String::is_empty) {
        return Err(MALFORMED_AUTHORIZATION);
    }
    Ok(ParsedAuthorization {
        access_key_id: access_key_id.to_owned(),
        short_date: short_date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        signature: signature.ok_or(MALFORMED_AUTHORIZATION)?.to_owned(),
    })
}

/// Who signed a verified request, and for which scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub region: String,
    pub service: String,
}

/// Verifies a received request the way Volcengine's gateway does: recomputes
/// the signature over the headers the `Authorization` names, with the key of
/// its access key id, compares in constant time, and checks that `X-Date` is
/// within [`MAX_CLOCK_SKEW_SECONDS`] of `now`.
pub fn verify(
    method: &str,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    payload: &[u8],
    now: i64,
    secret_of: impl Fn(&str) -> Option<SecretString>,
) -> Result<Verified, VerifyError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let parsed = parse_authorization(header("authorization").ok_or(
        VerifyError::MissingRequestInfo("the Authorization header is missing"),
    )?)?;
    // docs/vendors/volc-rtc.md#error-codes: MissingRequestInfo covers a missing X-Date.
    let x_date = header("x-date").ok_or(VerifyError::MissingRequestInfo(
        "the X-Date header is missing",
    ))?;
    let signed_at = parse_x_date(x_date).ok_or(VerifyError::MissingRequestInfo(
        "the X-Date header is not YYYYMMDD'T'HHMMSS'Z'",
    ))?;
    let secret = secret_of(&parsed.access_key_id).ok_or(VerifyError::InvalidAccessKey)?;
    if (now - signed_at).abs() > MAX_CLOCK_SKEW_SECONDS {
        return Err(VerifyError::InvalidTimestamp);
    }
    if parsed.short_date != short_date(x_date) {
        return Err(VerifyError::SignatureDoesNotMatch(
            "the credential scope's date is not the date of X-Date",
        ));
    }
    for required in ["host", "x-date"] {
        if !parsed.signed_headers.iter().any(|name| name == required) {
            return Err(VerifyError::SignatureDoesNotMatch(
                "SignedHeaders must include host and x-date",
            ));
        }
    }
    if let Some(claimed_hash) = header("x-content-sha256")
        && !claimed_hash.eq_ignore_ascii_case(&payload_hash(payload))
    {
        return Err(VerifyError::SignatureDoesNotMatch(
            "X-Content-Sha256 is not the hash of the body",
        ));
    }
    let mut signed = Vec::with_capacity(parsed.signed_headers.len());
    for name in &parsed.signed_headers {
        let value = header(name).ok_or(VerifyError::SignatureDoesNotMatch(
            "a header named in SignedHeaders is missing",
        ))?;
        signed.push((name.as_str(), value));
    }
    let query = parse_query(uri.query().unwrap_or_default()).map_err(|_| {
        VerifyError::SignatureDoesNotMatch("the query is not validly percent-encoded")
    })?;
    let input = SigningInput {
        method,
        path: uri.path(),
        canonical_query: &canonical_query(&query),
        headers: &signed,
        payload,
        x_date,
        region: &parsed.region,
        service: &parsed.service,
    };
    let (request, _) = canonical_request(&input);
    let scope = credential_scope(&parsed.short_date, &parsed.region, &parsed.service);
    let to_sign = string_to_sign(x_date, &scope, &payload_hash(request.as_bytes()));
    let mismatch = VerifyError::SignatureDoesNotMatch("the signature does not match");
    let claimed = hex::decode(&parsed.signature).map_err(|_| mismatch.clone())?;
    let mut mac = HmacSha256::new_from_slice(&signing_key(
        &secret,
        &parsed.short_date,
        &parsed.region,
        &parsed.service,
    ))
    .expect("hmac accepts keys of any length");
    mac.update(to_sign.as_bytes());
    mac.verify_slice(&claimed).map_err(|_| mismatch)?;
    Ok(Verified {
        access_key_id: parsed.access_key_id,
        region: parsed.region,
        service: parsed.service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor_api::volc::signing::tests::*;

    fn received_v2() -> (http::Uri, http::HeaderMap) {
        let (request, _) = signed_v2_request(&[]);
        let (parts, _) = request.into_parts();
        (parts.uri, parts.headers)
    }

    fn key_of(access_key_id: &str) -> Option<SecretString> {
        (access_key_id == AK).then(|| SecretString::from(SK))
    }

    #[test]
    fn verify_accepts_v1_and_v2_and_names_the_scope() {
        let (uri, headers) = received_v2();
        assert_eq!(
            verify("POST", &uri, &headers, V2_BODY, 1_718_781_186 + 60, key_of),
            Ok(Verified {
                access_key_id: AK.to_owned(),
                region: "cn-north-1".to_owned(),
                service: "rtc".to_owned(),
            })
        );
        // V1 signs host;x-date only, with the query in another order than canonical.
        let query = v1_query();
        let signature = sign(&v1_input(&query), &credentials());
        let uri: http::Uri =
            "https://iam.volcengineapi.com/?Action=ListUsers&Version=2018-01-01&Limit=10&Offset=0"
                .parse()
                .unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "iam.volcengineapi.com".parse().unwrap());
        headers.insert("x-date", X_DATE.parse().unwrap());
        headers.insert("authorization", signature.authorization.parse().unwrap());
        let verified = verify("GET", &uri, &headers, b"", 1_718_781_186, key_of).unwrap();
        assert_eq!(verified.service, "iam");
    }

    #[test]
    fn verify_maps_each_failure_to_its_volcengine_code() {
        // docs/vendors/volc-rtc.md#error-codes: MissingRequestInfo 400, InvalidTimestamp 400,
        // InvalidAccessKey 401, SignatureDoesNotMatch 401.
        let now = 1_718_781_186;
        let (uri, headers) = received_v2();
        let check = |headers: &http::HeaderMap, body: &[u8], now: i64| {
            verify("POST", &uri, headers, body, now, key_of)
                .err()
                .map(|error| (error.code(), error.http_status()))
        };
        assert_eq!(check(&headers, V2_BODY, now), None);

        let tampered = br#"{"AppId":123456,"Users":[{"UserId":10002}]}"#;
        assert_eq!(
            check(&headers, tampered, now),
            Some(("SignatureDoesNotMatch", 401))
        );
        let mut forged_hash = headers.clone();
        forged_hash.insert("x-content-sha256", payload_hash(tampered).parse().unwrap());
        assert_eq!(
            check(&forged_hash, tampered, now),
            Some(("SignatureDoesNotMatch", 401))
        );
        assert_eq!(
            check(&headers, V2_BODY, now + MAX_CLOCK_SKEW_SECONDS + 1),
            Some(("InvalidTimestamp", 400))
        );
        assert_eq!(
            check(&headers, V2_BODY, now - MAX_CLOCK_SKEW_SECONDS - 1),
            Some(("InvalidTimestamp", 400))
        );
        let mut no_date = headers.clone();
        no_date.remove("x-date");
        assert_eq!(
            check(&no_date, V2_BODY, now),
            Some(("MissingRequestInfo", 400))
        );
        let mut no_auth = headers.clone();
        no_auth.remove("authorization");
        assert_eq!(
            check(&no_auth, V2_BODY, now),
            Some(("MissingRequestInfo", 400))
        );
        let mut other_host = headers.clone();
        other_host.insert("host", "rtc.example.com".parse().unwrap());
        assert_eq!(
            check(&other_host, V2_BODY, now),
            Some(("SignatureDoesNotMatch", 401))
        );
        assert_eq!(
            verify("POST", &uri, &headers, V2_BODY, now, |_| None)
                .unwrap_err()
                .code(),
            "InvalidAccessKey"
        );
        let wrong_key = verify("POST", &uri, &headers, V2_BODY, now, |_| {
            Some(SecretString::from("not-the-key"))
        })
        .unwrap_err();
        assert_eq!(wrong_key.code(), "SignatureDoesNotMatch");
        // never the expected signature or the key in the message
        assert!(!wrong_key.to_string().contains("22d0292a"));
        assert!(!wrong_key.to_string().contains(SK));
        let other_query: http::Uri =
            "https://rtc.volcengineapi.com/?Action=RegisterUsers&Version=2021-01-01"
                .parse()
                .unwrap();
        assert_eq!(
            verify("POST", &other_query, &headers, V2_BODY, now, key_of)
                .unwrap_err()
                .code(),
            "SignatureDoesNotMatch"
        );
    }

    #[test]
    fn malformed_authorization_headers_are_missing_request_info() {
        for header in [
            "",
            "HMAC-SHA256",
            "TC3-HMAC-SHA256 Credential=a/b/c/d/request, SignedHeaders=host, Signature=00",
            "HMAC-SHA256 Credential=a/b/c/d, SignedHeaders=host, Signature=00",
            "HMAC-SHA256 Credential=a/b/c/d/tc3_request, SignedHeaders=host, Signature=00",
            "HMAC-SHA256 Credential=/b/c/d/request, SignedHeaders=host, Signature=00",
            "HMAC-SHA256 Credential=a/b/c/d/request, SignedHeaders=host",
            "HMAC-SHA256 Credential=a/b/c/d/request, SignedHeaders=host;;x-date, Signature=00",
            "HMAC-SHA256 Credential=a/b/c/d/request, Credential=a/b/c/d/request, SignedHeaders=host, Signature=00",
            "HMAC-SHA256 Credential=a/b/c/d/request, SignedHeaders=host, Signature=00, Extra=1",
        ] {
            assert_eq!(
                parse_authorization(header).map_err(|error| error.code()),
                Err("MissingRequestInfo"),
                "{header}"
            );
        }
    }
}
