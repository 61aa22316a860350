//! Tencent Cloud CIAM `CreateUser` 2022-03-31 (being written).

use bytes::Bytes;

use super::{
    AttemptContext, BuildError, CallReport, ErrorClass, VendorApi, tencent::TencentCredentials,
};
use crate::domain::{Rejection, User, VendorKind};

/// The configuration of one CIAM user store (shared by CreateUser and imports).
#[derive(Debug, Clone)]
pub struct CiamConfig {
    pub endpoint: String,
    pub user_store_id: String,
    /// X-TC-Region, required by CIAM (seed 003).
    pub region: String,
    pub credentials: TencentCredentials,
}

#[derive(Debug)]
pub struct CiamCreateUser {
    #[allow(dead_code)]
    config: CiamConfig,
}

impl CiamCreateUser {
    pub fn new(config: CiamConfig) -> Self {
        CiamCreateUser { config }
    }
}

impl VendorApi for CiamCreateUser {
    fn kind(&self) -> VendorKind {
        VendorKind::TencentCiam
    }
    fn action(&self) -> &'static str {
        "CreateUser"
    }
    fn repeat_is_safe(&self) -> bool {
        true
    }
    fn validate(&self, _: &User) -> Result<(), Rejection> {
        Err(Rejection::new(
            "ciam",
            "validation.unsupported",
            "tencent-ciam is not implemented yet",
        ))
    }
    fn build_request(
        &self,
        _: &[&User],
        _: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        Err(BuildError::Endpoint {
            endpoint: self.config.endpoint.clone(),
            reason: "tencent-ciam is not implemented yet".to_owned(),
        })
    }
    fn parse_response(&self, users: &[&User], _: &http::Response<Bytes>) -> CallReport {
        CallReport::call_failed(
            users.len(),
            None,
            ErrorClass::Permanent,
            "registrar.Unsupported",
            "tencent-ciam is not implemented yet",
        )
    }
}
