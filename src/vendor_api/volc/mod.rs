//! Volcengine products: RTC `RegisterUsers`, signed with the OpenAPI's
//! SignerV4 (`signing`, checked by `verify`). See docs/vendors/volc-rtc.md.

pub mod rtc;
pub mod signing;
pub mod verify;
