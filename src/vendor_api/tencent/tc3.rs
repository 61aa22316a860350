//! TC3-HMAC-SHA256, the request signature of Tencent Cloud API 3.0 (LCIC, CIAM).
//!
//! Signing follows docs/vendors/tencent-cloud-api.md#signing (tencentcloud-sdk-go
//! `sendWithSignatureV3`) and reproduces the published test vectors T1 to T4 of
//! docs/vendors/tencent-cloud-api.md#test-vectors. Verification is the same computation run by the
//! simulator over a received request; it never reveals the expected signature or the key in its errors.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::vendor_api::canonical;

pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// What a TC3 signature covers.
#[derive(Debug, Clone)]
pub struct SigningInput<'a> {
    /// `POST` or `GET`.
    pub method: &'a str,
    /// The RFC 3986 query for GET; empty for POST.
    pub canonical_query: &'a str,
    /// The signed headers as (name, value); names are lower-cased and sorted here.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body, byte for byte as sent.
    pub payload: &'a [u8],
    /// The service, e.g. `lcic` or `ciam`.
    pub service: &'a str,
    /// `X-TC-Timestamp`, seconds since the Unix epoch.
    pub timestamp: i64,
}

/// A computed signature and the `Authorization` header that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub canonical_request_hash: String,
    pub signed_headers: String,
    pub signature: String,
    pub authorization: String,
}

/// The UTC date (`yyyy-mm-dd`) of a timestamp, as the credential scope uses it.
pub fn utc_date(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

fn sorted_headers(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut lowered: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_ascii_lowercase()))
        .collect();
    lowered.sort();
    lowered
}

/// The canonical request and the `SignedHeaders` list of docs/vendors/tencent-cloud-api.md#canonical-request.
pub fn canonical_request(input: &SigningInput<'_>) -> (String, String) {
    let headers = sorted_headers(input.headers);
    let (canonical_headers, signed_headers) = canonical::headers_and_signed_names(&headers);
    let request = format!(
        "{}\n/\n{}\n{}\n{}\n{}",
        input.method,
        input.canonical_query,
        canonical_headers,
        signed_headers,
        hex::encode(Sha256::digest(input.payload)),
    );
    (request, signed_headers)
}

pub(crate) fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The derived signing key: SecretDate -> SecretService -> SecretSigning.
pub fn signing_key(secret_key: &SecretString, date: &str, service: &str) -> Vec<u8> {
    let secret_date = hmac(
        format!("TC3{}", secret_key.expose_secret()).as_bytes(),
        date.as_bytes(),
    );
    let secret_service = hmac(&secret_date, service.as_bytes());
    hmac(&secret_service, b"tc3_request")
}

pub(crate) fn string_to_sign(
    input: &SigningInput<'_>,
    date: &str,
    canonical_request_hash: &str,
) -> String {
    format!(
        "{ALGORITHM}\n{}\n{date}/{}/tc3_request\n{canonical_request_hash}",
        input.timestamp, input.service
    )
}

/// Signs a request with the given credentials.
pub fn sign(input: &SigningInput<'_>, secret_id: &str, secret_key: &SecretString) -> Signature {
    let date = utc_date(input.timestamp);
    let (request, signed_headers) = canonical_request(input);
    let canonical_request_hash = hex::encode(Sha256::digest(request.as_bytes()));
    let to_sign = string_to_sign(input, &date, &canonical_request_hash);
    let signature = hex::encode(hmac(
        &signing_key(secret_key, &date, input.service),
        to_sign.as_bytes(),
    ));
    let authorization = format!(
        "{ALGORITHM} Credential={secret_id}/{date}/{}/tc3_request, SignedHeaders={signed_headers}, Signature={signature}",
        input.service
    );
    Signature {
        canonical_request_hash,
        signed_headers,
        signature,
        authorization,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // docs/vendors/tencent-cloud-api.md#test-vectors: the official CVM DescribeInstances worked example.
    pub(crate) const BODY: &[u8] = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
    pub(crate) const CONTENT_TYPE: &str = "application/json; charset=utf-8";
    pub(crate) const HOST: &str = "cvm.tencentcloudapi.com";
    pub(crate) const TIMESTAMP: i64 = 1551113065;

    pub(crate) fn input<'a>(headers: &'a [(&'a str, &'a str)]) -> SigningInput<'a> {
        SigningInput {
            method: "POST",
            canonical_query: "",
            headers,
            payload: BODY,
            service: "cvm",
            timestamp: TIMESTAMP,
        }
    }

    pub(crate) const WITH_ACTION: &[(&str, &str)] = &[
        ("Content-Type", CONTENT_TYPE),
        ("Host", HOST),
        ("X-TC-Action", "DescribeInstances"),
    ];
    pub(crate) const WITHOUT_ACTION: &[(&str, &str)] =
        &[("Content-Type", CONTENT_TYPE), ("Host", HOST)];

    pub(crate) fn masked_key_t1() -> (String, SecretString) {
        (
            format!("AKID{}", "*".repeat(32)),
            SecretString::from("*".repeat(32)),
        )
    }

    #[test]
    fn payload_hash_matches_the_published_value() {
        // docs/vendors/tencent-cloud-api.md#test-vectors: hex(sha256(body)) of the worked example.
        assert_eq!(
            hex::encode(Sha256::digest(BODY)),
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
    }

    #[test]
    fn date_is_utc_not_local_time() {
        // docs/vendors/tencent-cloud-api.md#test-vectors: 1551113065 is 2019-02-26 in UTC+8 but the
        // scope date is 2019-02-25.
        assert_eq!(utc_date(TIMESTAMP), "2019-02-25");
    }

    #[test]
    fn t1_current_doc_masked_key() {
        // docs/vendors/tencent-cloud-api.md#test-vectors T1
        // (cloud.tencent.com/document/api/213/30654, current revision).
        let (secret_id, secret_key) = masked_key_t1();
        let signature = sign(&input(WITH_ACTION), &secret_id, &secret_key);
        assert_eq!(
            signature.canonical_request_hash,
            "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
        );
        assert_eq!(
            signature.signature,
            "10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"
        );
        assert_eq!(
            signature.authorization,
            "TC3-HMAC-SHA256 Credential=AKID********************************/2019-02-25/cvm/tc3_request, \
             SignedHeaders=content-type;host;x-tc-action, \
             Signature=10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"
        );
    }

    #[test]
    fn t1_published_intermediate_keys() {
        // docs/vendors/tencent-cloud-api.md#test-vectors T1 intermediates: SecretDate,
        // SecretService, SecretSigning.
        let (_, secret_key) = masked_key_t1();
        let secret_date = hmac(
            format!("TC3{}", secret_key.expose_secret()).as_bytes(),
            b"2019-02-25",
        );
        assert_eq!(
            hex::encode(&secret_date),
            "da98fb70dcf6b112dc21038d1eeeb3a95c74b4dcb12c1131f864f6066bd02be0"
        );
        let secret_service = hmac(&secret_date, b"cvm");
        assert_eq!(
            hex::encode(&secret_service),
            "8d70cbefb03939f929db64d32dc2ba89b1095620119fe3e050e2b18c5bd2752f"
        );
        assert_eq!(
            hex::encode(signing_key(&secret_key, "2019-02-25", "cvm")),
            "b596b923aad85185e2d1f6659d2a062e0a86731226e021e61bfe06f7ed05f5af"
        );
    }

    #[test]
    fn t1_canonical_request_text() {
        // docs/vendors/tencent-cloud-api.md#test-vectors: T1/T2 canonical request, with the
        // lower-cased action.
        let (request, signed_headers) = canonical_request(&input(WITH_ACTION));
        assert_eq!(
            request,
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\
             x-tc-action:describeinstances\n\ncontent-type;host;x-tc-action\n\
             35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(signed_headers, "content-type;host;x-tc-action");
    }

    #[test]
    fn t2_signature_process_demo_key() {
        // docs/vendors/tencent-cloud-api.md#test-vectors T2 (signature-process-demo
        // signature-v3/python/demo.py).
        let signature = sign(
            &input(WITH_ACTION),
            "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
            &SecretString::from("Gu5t9xGARNpq86cd98joQYCN3*******"),
        );
        assert_eq!(
            signature.canonical_request_hash,
            "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
        );
        assert_eq!(
            signature.signature,
            "be4f67d323c78ab9acb7395e43c0dbcf822a9cfac32fea2449a7bc7726b770a3"
        );
    }

    #[test]
    fn t3_older_doc_example_key() {
        // docs/vendors/tencent-cloud-api.md#test-vectors T3 (qcloud-documents Python_API.md,
        // SignedHeaders content-type;host).
        let signature = sign(
            &input(WITHOUT_ACTION),
            "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
            &SecretString::from("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"),
        );
        assert_eq!(
            signature.canonical_request_hash,
            "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            signature.signature,
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn t4_older_doc_masked_key() {
        // docs/vendors/tencent-cloud-api.md#test-vectors T4 (older revision of 213/30654, masked key).
        let signature = sign(
            &input(WITHOUT_ACTION),
            "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
            &SecretString::from("Gu5t9xGARNpq86cd98joQYCN3*******"),
        );
        assert_eq!(
            signature.canonical_request_hash,
            "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            signature.signature,
            "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
        );
    }
}
