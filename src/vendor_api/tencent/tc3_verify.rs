//! Verification of a received TC3-HMAC-SHA256 signature, the way Tencent
//! Cloud's gateway checks one: the simulator runs it over every request it
//! receives, and the vendor modules' tests over the requests they sign. Its
//! errors are fixed texts: they never reveal the expected signature or the key.

use hmac::{KeyInit, Mac};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::tc3::{
    ALGORITHM, HmacSha256, SigningInput, canonical_request, signing_key, string_to_sign, utc_date,
};

/// The parts of a received `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub secret_id: String,
    pub date: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why a received signature was refused; the variants map to Tencent's `AuthFailure.*` codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the Authorization header is missing or malformed")]
    InvalidAuthorization,
    #[error("the SecretId is not known")]
    SecretIdNotFound,
    #[error("the signature does not match")]
    SignatureFailure,
    #[error("the timestamp is more than 5 minutes away from the server time")]
    SignatureExpire,
}

impl VerifyError {
    /// Tencent's error code for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::InvalidAuthorization => "AuthFailure.InvalidAuthorization",
            VerifyError::SecretIdNotFound => "AuthFailure.SecretIdNotFound",
            VerifyError::SignatureFailure => "AuthFailure.SignatureFailure",
            VerifyError::SignatureExpire => "AuthFailure.SignatureExpire",
        }
    }
}

/// Parses `TC3-HMAC-SHA256 Credential=ID/DATE/SERVICE/tc3_request, SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(header: &str) -> Result<ParsedAuthorization, VerifyError> {
    let rest = header
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(VerifyError::InvalidAuthorization)?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(VerifyError::InvalidAuthorization)?;
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => return Err(VerifyError::InvalidAuthorization),
        }
    }
    let credential: Vec<&str> = credential
        .ok_or(VerifyError::InvalidAuthorization)?
        .split('/')
        .collect();
    let [secret_id, date, service, "tc3_request"] = credential[..] else {
        return Err(VerifyError::InvalidAuthorization);
    };
    Ok(ParsedAuthorization {
        secret_id: secret_id.to_owned(),
        date: date.to_owned(),
        service: service.to_owned(),
        signed_headers: signed_headers
            .ok_or(VerifyError::InvalidAuthorization)?
            .split(';')
            .map(str::to_owned)
            .collect(),
        signature: signature
            .ok_or(VerifyError::InvalidAuthorization)?
            .to_owned(),
    })
}

/// Verifies a received request the way Tencent's gateway does: recomputes the
/// signature over the headers it names, with the key of its SecretId, and
/// checks the timestamp is within 5 minutes of `now`. Returns the SecretId.
pub fn verify(
    method: &str,
    headers: &http::HeaderMap,
    payload: &[u8],
    now: i64,
    secret_key_of: impl Fn(&str) -> Option<SecretString>,
) -> Result<String, VerifyError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let parsed =
        parse_authorization(header("authorization").ok_or(VerifyError::InvalidAuthorization)?)?;
    let timestamp: i64 = header("x-tc-timestamp")
        .and_then(|value| value.parse().ok())
        .ok_or(VerifyError::InvalidAuthorization)?;
    if (now - timestamp).abs() > 300 {
        return Err(VerifyError::SignatureExpire);
    }
    if parsed.date != utc_date(timestamp)
        || !parsed
            .signed_headers
            .iter()
            .any(|name| name == "content-type")
        || !parsed.signed_headers.iter().any(|name| name == "host")
    {
        return Err(VerifyError::InvalidAuthorization);
    }
    let secret_key = secret_key_of(&parsed.secret_id).ok_or(VerifyError::SecretIdNotFound)?;
    let mut signed = Vec::with_capacity(parsed.signed_headers.len());
    for name in &parsed.signed_headers {
        signed.push((
            name.as_str(),
            header(name).ok_or(VerifyError::InvalidAuthorization)?,
        ));
    }
    let input = SigningInput {
        method,
        canonical_query: "",
        headers: &signed,
        payload,
        service: &parsed.service,
        timestamp,
    };
    let (request, _) = canonical_request(&input);
    let canonical_request_hash = hex::encode(Sha256::digest(request.as_bytes()));
    let to_sign = string_to_sign(&input, &parsed.date, &canonical_request_hash);
    let claimed = hex::decode(&parsed.signature).map_err(|_| VerifyError::SignatureFailure)?;
    let mut mac =
        HmacSha256::new_from_slice(&signing_key(&secret_key, &parsed.date, &parsed.service))
            .expect("hmac accepts keys of any length");
    mac.update(to_sign.as_bytes());
    mac.verify_slice(&claimed)
        .map_err(|_| VerifyError::SignatureFailure)?;
    Ok(parsed.secret_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor_api::tencent::tc3::{
        Signature, sign,
        tests::{BODY, TIMESTAMP, WITH_ACTION, WITHOUT_ACTION, input, masked_key_t1},
    };

    fn received(signature: &Signature, headers: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map.insert("authorization", signature.authorization.parse().unwrap());
        map.insert("x-tc-timestamp", TIMESTAMP.to_string().parse().unwrap());
        map
    }

    #[test]
    fn verify_accepts_the_t1_and_t3_requests_and_names_the_secret_id() {
        // docs/vendors/tencent-cloud-api.md#test-vectors: both SignedHeaders variants are valid TC3
        // signatures.
        for (headers, secret_id, secret_key) in [
            (WITH_ACTION, masked_key_t1().0, masked_key_t1().1),
            (
                WITHOUT_ACTION,
                "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE".to_owned(),
                SecretString::from("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"),
            ),
        ] {
            let signature = sign(&input(headers), &secret_id, &secret_key);
            let verified = verify(
                "POST",
                &received(&signature, headers),
                BODY,
                TIMESTAMP + 10,
                |id| (id == secret_id).then(|| secret_key.clone()),
            );
            assert_eq!(verified, Ok(secret_id.clone()));
        }
    }

    #[test]
    fn verify_refuses_tampering_unknown_ids_and_stale_timestamps() {
        let (secret_id, secret_key) = masked_key_t1();
        let signature = sign(&input(WITH_ACTION), &secret_id, &secret_key);
        let headers = received(&signature, WITH_ACTION);
        let key_of = |id: &str| (id == secret_id).then(|| secret_key.clone());

        let tampered = br#"{"Limit": 2}"#;
        assert_eq!(
            verify("POST", &headers, tampered, TIMESTAMP, key_of),
            Err(VerifyError::SignatureFailure)
        );
        assert_eq!(
            verify("POST", &headers, BODY, TIMESTAMP + 301, key_of),
            Err(VerifyError::SignatureExpire)
        );
        assert_eq!(
            verify("POST", &headers, BODY, TIMESTAMP, |_| None),
            Err(VerifyError::SecretIdNotFound)
        );
        let wrong_key = SecretString::from("x".repeat(32));
        assert_eq!(
            verify("POST", &headers, BODY, TIMESTAMP, |_| Some(
                wrong_key.clone()
            )),
            Err(VerifyError::SignatureFailure)
        );
        let mut no_auth = headers.clone();
        no_auth.remove("authorization");
        assert_eq!(
            verify("POST", &no_auth, BODY, TIMESTAMP, key_of),
            Err(VerifyError::InvalidAuthorization)
        );
    }
}
