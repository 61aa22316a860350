//! Tencent Cloud API 3.0 products: LCIC `BatchRegister`, CIAM `CreateUser`
//! and CIAM import jobs. They share the TC3-HMAC-SHA256 signature (`tc3`,
//! checked by `tc3_verify`) and the `{"Response": ...}` envelope with its
//! common error codes (`envelope`); each product module adds its own fields,
//! caps and codes. See docs/vendors/tencent-cloud-api.md.

pub mod ciam;
pub mod ciam_import;
pub mod envelope;
pub mod lcic;
pub mod tc3;
pub mod tc3_verify;
