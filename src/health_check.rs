//! `registrar health`: a small client that asks a running registrar whether
//! it serves (grpc.health.v1 Check of a service, by default
//! registrar.v1.RegistrationService) and which services it offers (server
//! reflection's list), over plaintext, TLS or mutual TLS. The chart's
//! `helm test` runs it from the registrar image, so a release is checked
//! without any other image. Health and reflection need no bearer token.

use std::time::Duration;

use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::import::connect::{ConnectOptions, channel};

/// How long each of the two questions may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server answered.
#[derive(Debug)]
pub struct HealthReport {
    pub service: String,
    pub status: ServingStatus,
    /// Every service reflection lists, sorted.
    pub services: Vec<String>,
}

impl HealthReport {
    /// Serving, and offering the service that was checked (when one was named).
    pub fn healthy(&self) -> bool {
        self.status == ServingStatus::Serving
            && (self.service.is_empty() || self.services.contains(&self.service))
    }
}

/// Checks `service` on `server` and lists its services.
pub async fn check(
    server: &str,
    service: &str,
    options: &ConnectOptions,
) -> Result<HealthReport, String> {
    let channel: Channel = channel(server, options).map_err(|error| error.to_string())?;
    let status = tokio::time::timeout(
        ANSWER_TIMEOUT,
        HealthClient::new(channel.clone()).check(HealthCheckRequest {
            service: service.to_owned(),
        }),
    )
    .await
    .map_err(|_| format!("no health answer from {server} within {ANSWER_TIMEOUT:?}"))?
    .map_err(|status| format!("health check of {service:?} at {server}: {status}"))?
    .into_inner()
    .status();
    let services = tokio::time::timeout(ANSWER_TIMEOUT, list_services(channel))
        .await
        .map_err(|_| format!("no reflection answer from {server} within {ANSWER_TIMEOUT:?}"))??;
    Ok(HealthReport {
        service: service.to_owned(),
        status,
        services,
    })
}

async fn list_services(channel: Channel) -> Result<Vec<String>, String> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .map_err(|status| format!("server reflection: {status}"))?
        .into_inner();
    let answer = answers
        .message()
        .await
        .map_err(|status| format!("server reflection: {status}"))?
        .ok_or("server reflection ended without an answer")?;
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut services: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            services.sort();
            Ok(services)
        }
        Some(MessageResponse::ErrorResponse(error)) => Err(format!(
            "server reflection: {} ({})",
            error.error_message, error.error_code
        )),
        _ => Err("server reflection answered something else than a list of services".to_owned()),
    }
}
