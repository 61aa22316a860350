//! ZEGOCLOUD ZIM `UserRegister` (being written).

use bytes::Bytes;
use secrecy::SecretString;

use super::{AttemptContext, BuildError, CallReport, ErrorClass, VendorApi};
use crate::domain::{Rejection, User, VendorKind};

/// The configuration of one ZIM application.
#[derive(Debug, Clone)]
pub struct ZimConfig {
    pub endpoint: String,
    pub app_id: u64,
    pub server_secret: SecretString,
}

#[derive(Debug)]
pub struct Zim {
    #[allow(dead_code)]
    config: ZimConfig,
}

impl Zim {
    pub fn new(config: ZimConfig) -> Self {
        Zim { config }
    }
}

impl VendorApi for Zim {
    fn kind(&self) -> VendorKind {
        VendorKind::ZegoZim
    }
    fn action(&self) -> &'static str {
        "UserRegister"
    }
    fn repeat_is_safe(&self) -> bool {
        true
    }
    fn validate(&self, _: &User) -> Result<(), Rejection> {
        Err(Rejection::new(
            "userId",
            "validation.unsupported",
            "zego-zim is not implemented yet",
        ))
    }
    fn build_request(
        &self,
        _: &[&User],
        _: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        Err(BuildError::Endpoint {
            endpoint: self.config.endpoint.clone(),
            reason: "zego-zim is not implemented yet".to_owned(),
        })
    }
    fn parse_response(&self, users: &[&User], _: &http::Response<Bytes>) -> CallReport {
        CallReport::call_failed(
            users.len(),
            None,
            ErrorClass::Permanent,
            "registrar.Unsupported",
            "zego-zim is not implemented yet",
        )
    }
}
