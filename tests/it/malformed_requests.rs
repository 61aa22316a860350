//! Requests tonic cannot read, answered the way callers need: bytes that
//! are not a protobuf message of the method's type are INVALID_ARGUMENT
//! (not INTERNAL), and a unary request over the message size limit is
//! RESOURCE_EXHAUSTED pointing to BatchRegisterStream (not a bare
//! OUT_OF_RANGE). Nothing reaches the vendor.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use crate::common::*;
use registrar::api::pb;

#[tokio::test]
async fn a_corrupt_protobuf_is_invalid_argument() {
    let simulator = start_simulator(vec![LCIC.sim(1000)]).await;
    let mut registrar = Registrar::start(&LCIC.target("lcic", &simulator.endpoint(), "")).await;
    // a gRPC frame whose payload starts with field 1 of wire type 7, which protobuf does not have
    let payload = [0x0f_u8, 0xff, 0xff, 0xff];
    let mut frame = vec![0_u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let request = http::Request::post(format!(
        "http://{}/registrar.v1.RegistrationService/BatchRegister",
        registrar.addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(Full::new(Bytes::from(frame)))
    .unwrap();
    let response = client.request(request).await.unwrap();
    let status =
        tonic::Status::from_header_map(response.headers()).expect("a trailers-only error answer");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(simulator.calls().is_empty());
    registrar.stop().await;
}

#[tokio::test]
async fn a_unary_request_over_the_size_limit_points_to_batch_register_stream() {
    let simulator = start_simulator(vec![LCIC.sim(1000)]).await;
    let mut registrar = Registrar::start(&LCIC.target("lcic", &simulator.endpoint(), "")).await;
    // 5,000 users of 1 KB each: over tonic's 4 MiB default
    let users: Vec<pb::User> = (0..5_000)
        .map(|n| pb::User {
            user_id: format!("big{n}"),
            display_name: "x".repeat(1024),
            ..pb::User::default()
        })
        .collect();
    let status = batch_register(&mut registrar.client, request(&["lcic"], users))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("BatchRegisterStream"),
        "{status:?}"
    );
    assert!(simulator.calls().is_empty());
    registrar.stop().await;
}
