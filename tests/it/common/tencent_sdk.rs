//! TC3-HMAC-SHA256 as tencentcloud-sdk-go `sendWithSignatureV3` computes it
//! (docs/vendors/tencent-cloud-api.md#signing), written again here and sharing no code with
//! `registrar::vendor_api::tencent::tc3`, so the vendor servers of the tests check
//! registrar's signatures the way Tencent's own SDK would produce them.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], message: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).unwrap();
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The Authorization header of a POST to `/` for `service`: SignedHeaders
/// content-type;host, the UTC date of X-TC-Timestamp.
pub fn sdk_authorization(
    service: &str,
    secret_id: &str,
    secret_key: &str,
    content_type: &str,
    host: &str,
    timestamp: i64,
    payload: &[u8],
) -> String {
    let canonical_headers = format!("content-type:{content_type}\nhost:{host}\n");
    let signed_headers = "content-type;host";
    let hashed_payload = hex::encode(Sha256::digest(payload));
    let canonical_request =
        format!("POST\n/\n\n{canonical_headers}\n{signed_headers}\n{hashed_payload}");
    let date = chrono::DateTime::from_timestamp(timestamp, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let credential_scope = format!("{date}/{service}/tc3_request");
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{credential_scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let secret_date = hmac(format!("TC3{secret_key}").as_bytes(), &date);
    let secret_service = hmac(&secret_date, service);
    let secret_signing = hmac(&secret_service, "tc3_request");
    let signature = hex::encode(hmac(&secret_signing, &string_to_sign));
    format!(
        "TC3-HMAC-SHA256 Credential={secret_id}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
}

/// The signer itself reproduces the published example that signs
/// content-type;host (docs/vendors/tencent-cloud-api.md#test-vectors T3, qcloud-documents Python_API.md).
pub fn assert_reproduces_t3() {
    let authorization = sdk_authorization(
        "cvm",
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        "application/json; charset=utf-8",
        "cvm.tencentcloudapi.com",
        1551113065,
        br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#,
    );
    assert!(
        authorization.ends_with(
            "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        ),
        "{authorization}"
    );
}
