//! registrar: a gRPC gateway that registers users in bulk with third-party
//! vendors (Tencent LCIC, ZEGOCLOUD ZIM, Volcengine RTC, Tencent CIAM).
//!
//! Data flows one way: `api` -> `engine` -> `outbound` -> `vendor_api` ->
//! `engine` -> `api`, with audit rows written by the engine through `audit`.

pub mod api;
pub mod app;
pub mod audit;
pub mod config;
pub mod domain;
pub mod engine;
pub mod health_check;
pub mod import;
pub mod metrics;
pub mod outbound;
pub mod sim;
pub mod telemetry;
pub mod vendor_api;
