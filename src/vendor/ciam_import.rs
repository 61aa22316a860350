//! Tencent Cloud CIAM import jobs: `CreateApiImportUserJob` + `ListJobs` (being written).

use bytes::Bytes;

use super::{
    AttemptContext, BuildError, CallReport, ErrorClass, JobApi, JobStatus, Submission, VendorApi,
    ciam::CiamConfig,
};
use crate::domain::{Rejection, User, VendorKind};

#[derive(Debug)]
pub struct CiamImport {
    #[allow(dead_code)]
    config: CiamConfig,
}

impl CiamImport {
    pub fn new(config: CiamConfig) -> Self {
        CiamImport { config }
    }
}

impl VendorApi for CiamImport {
    fn kind(&self) -> VendorKind {
        VendorKind::TencentCiamImport
    }
    fn action(&self) -> &'static str {
        "CreateApiImportUserJob"
    }
    fn repeat_is_safe(&self) -> bool {
        false
    }
    fn validate(&self, _: &User) -> Result<(), Rejection> {
        Err(Rejection::new(
            "ciam",
            "validation.unsupported",
            "tencent-ciam-import is not implemented yet",
        ))
    }
    fn build_request(
        &self,
        _: &[&User],
        _: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        Err(BuildError::Endpoint {
            endpoint: self.config.endpoint.clone(),
            reason: "tencent-ciam-import is not implemented yet".to_owned(),
        })
    }
    fn parse_response(&self, users: &[&User], _: &http::Response<Bytes>) -> CallReport {
        CallReport::call_failed(
            users.len(),
            None,
            ErrorClass::Permanent,
            "registrar.Unsupported",
            "tencent-ciam-import is not implemented yet",
        )
    }
    fn jobs(&self) -> Option<&dyn JobApi> {
        Some(self)
    }
}

impl JobApi for CiamImport {
    fn poll_action(&self) -> &'static str {
        "ListJobs"
    }
    fn parse_submission(&self, users: &[&User], response: &http::Response<Bytes>) -> Submission {
        Submission::Answered(self.parse_response(users, response))
    }
    fn build_poll_request(
        &self,
        _: &str,
        _: &AttemptContext,
    ) -> Result<http::Request<Bytes>, BuildError> {
        Err(BuildError::Endpoint {
            endpoint: self.config.endpoint.clone(),
            reason: "tencent-ciam-import is not implemented yet".to_owned(),
        })
    }
    fn parse_poll(&self, users: &[&User], _: &str, response: &http::Response<Bytes>) -> JobStatus {
        JobStatus::Finished(self.parse_response(users, response))
    }
}
