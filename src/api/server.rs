//! The tonic server: RegistrationService, gRPC server reflection (v1 and
//! v1alpha, so grpcurl 1.8 and newer clients both work), the standard
//! grpc.health.v1 service, and a graceful shutdown that stops taking new
//! work, lets in-flight vendor calls and audit writes finish within a grace
//! period, and only then returns.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use super::{pb, service::RegistrationApi};
use crate::engine::Engine;

pub struct ServeOptions {
    pub max_unary_users: usize,
    pub shutdown_grace: Duration,
}

/// Serves until `shutdown` resolves, then drains within the grace period.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::registration_service_server::RegistrationServiceServer<RegistrationApi>>(
        )
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let api = RegistrationApi::new(engine.clone(), options.max_unary_users);

    // the instant the shutdown signal arrived: the grace period counts from it
    let (stopping_sender, mut stopping) = tokio::sync::watch::channel(None);
    let signal = {
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: refusing new work, draining in-flight calls");
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            health
                .set_not_serving::<pb::registration_service_server::RegistrationServiceServer<RegistrationApi>>()
                .await;
            let _ = stopping_sender.send(Some(tokio::time::Instant::now()));
        }
    };
    let local_addr = listener.local_addr()?;
    tracing::info!(%local_addr, "serving registrar.v1.RegistrationService");
    let server = Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(pb::registration_service_server::RegistrationServiceServer::new(api))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal);

    let grace = options.shutdown_grace;
    let mut stopping_at = stopping.clone();
    let grace_expired = async move {
        let _ = stopping.wait_for(Option::is_some).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = server => served?,
        () = grace_expired => {
            tracing::warn!(?grace, "grace period over: closing streams that are still open");
        }
    }
    let signalled = *stopping_at.borrow_and_update();
    let remaining = signalled.map_or(grace, |at| grace.saturating_sub(at.elapsed()));
    if !engine.drain(remaining).await {
        tracing::warn!("grace period over before every vendor call finished");
    }
    Ok(())
}
