//! The gRPC edge: the `registrar.v1.RegistrationService` implementation,
//! proto <-> domain conversion, error -> `Status` mapping, and the tonic
//! server with reflection, health and graceful shutdown. It validates the
//! shape of requests and converts; the engine decides.

mod callers;
pub mod convert;
mod decode_errors;
pub mod error;
mod grpc_metrics;
mod limits;
mod page_token;
mod rpc_span;
pub mod server;
pub mod service;
mod tls;

/// The generated `registrar.v1` messages, client and server.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("registrar.v1");

    /// The encoded descriptor set served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/registrar_descriptor.bin"));
}
