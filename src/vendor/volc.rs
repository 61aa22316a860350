//! Volcengine RTC `RegisterUsers` 2020-12-01 (being written).

use bytes::Bytes;

use super::{
    AttemptContext, BuildError, CallReport, ErrorClass, VendorApi, volc_sign::VolcCredentials,
};
use crate::domain::{Rejection, User, VendorKind};

/// The configuration of one Volcengine RTC application.
#[derive(Debug, Clone)]
pub struct VolcConfig {
    pub endpoint: String,
    pub app_id: u64,
    /// Signing region, default `cn-north-1` (vendors.md D.1).
    pub region: String,
    pub credentials: VolcCredentials,
}

#[derive(Debug)]
pub struct VolcRtc {
    #[allow(dead_code)]
    config: VolcConfig,
}

impl VolcRtc {
    pub fn new(config: VolcConfig) -> Self {
        VolcRtc { config }
    }
}

impl VendorApi for VolcRtc {
    fn kind(&self) -> VendorKind {
        VendorKind::VolcRtc
    }
    fn action(&self) -> &'static str {
        "RegisterUsers"
    }
    fn repeat_is_safe(&self) -> bool {
        true
    }
    fn validate(&self, _: &User) -> Result<(), Rejection> {
        Err(Rejection::new(
            "userId",
            "validation.unsupported",
            "volc-rtc is not implemented yet",
        ))
    }
    fn build_request(
        &self,
        _: &[&User],
        _: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        Err(BuildError::Endpoint {
            endpoint: self.config.endpoint.clone(),
            reason: "volc-rtc is not implemented yet".to_owned(),
        })
    }
    fn parse_response(&self, users: &[&User], _: &http::Response<Bytes>) -> CallReport {
        CallReport::call_failed(
            users.len(),
            None,
            ErrorClass::Permanent,
            "registrar.Unsupported",
            "volc-rtc is not implemented yet",
        )
    }
}
