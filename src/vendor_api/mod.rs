//! Vendor API modules: one folder per vendor family, one module per API, each pure.
//!
//! A vendor module validates users against the vendor's documented rules,
//! turns a slice of users into one signed `http::Request`, and turns the
//! vendor's `http::Response` into one outcome per user, with every failure
//! classified retryable, throttled or permanent. It never touches the network,
//! the clock or a random source: the time and nonce of an attempt are handed
//! in, so every module is tested without a network against the vendors'
//! published examples.

pub mod answer;
mod canonical;
mod endpoint;
mod interface;
mod outcome;
pub mod registry;
pub mod settings;
pub mod tencent;
pub mod volc;
pub mod zego;

pub use endpoint::endpoint_uri;
pub use interface::{
    AttemptContext, BuildError, JobApi, JobStatus, SharedVendor, Submission, VendorApi,
};
pub use outcome::{CallReport, ErrorClass, ErrorCode, RegistrarCode, VendorOutcome};
