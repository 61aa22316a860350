//! Volcengine OpenAPI request signing, HMAC-SHA256 (being written).

use secrecy::SecretString;

/// A Volcengine access key pair.
#[derive(Clone)]
pub struct VolcCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

impl std::fmt::Debug for VolcCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("VolcCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}
