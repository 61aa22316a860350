//! The tonic server: RegistrationService, gRPC server reflection (v1 and
//! v1alpha, so grpcurl 1.8 and newer clients both work), the standard
//! grpc.health.v1 service, and a graceful shutdown that stops taking new
//! work, lets in-flight vendor calls and audit writes finish within a grace
//! period, and only then returns. Readiness follows the audit store, as the
//! engine reports it.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use super::{
    callers::Authenticate, decode_errors, grpc_metrics, limits::Limits, pb, rpc_span,
    service::RegistrationApi, tls,
};
use crate::{
    config::{CallerConfig, LimitsConfig, TlsConfig},
    engine::Engine,
};

/// Binds the gRPC listener; the error names the address, so `Address already
/// in use` says which one.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("could not listen on {address}"))
}

pub struct ServeOptions {
    pub max_unary_users: usize,
    pub shutdown_grace: Duration,
    /// TLS (and mutual TLS) on the gRPC port; plaintext when `None`.
    pub tls: Option<TlsConfig>,
    /// A plaintext listener for the health service alone (`[server] health_listen`).
    pub health_listener: Option<TcpListener>,
    /// Who may call RegistrationService; none: anyone.
    pub callers: Vec<CallerConfig>,
    /// What each caller may hold at once, unless its entry says otherwise.
    pub limits: LimitsConfig,
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
    // google.rpc error details too, so clients can decode BadRequest
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    // set once shutdown begins, so the audit watch never reports serving again
    let shutting_down = Arc::new(AtomicBool::new(false));
    let audit_watch = tokio::spawn(watch_audit_store(
        engine.clone(),
        health.clone(),
        shutting_down.clone(),
    ));
    let limits = Arc::new(Limits::new(&options.limits, &options.callers));
    let largest_message = limits.largest_message();
    let api = RegistrationApi::new(engine.clone(), options.max_unary_users, limits);

    // the instant the shutdown signal arrived: the grace period counts from it
    let (stopping_sender, mut stopping) = tokio::sync::watch::channel(None);
    let signal = {
        let health = health.clone();
        let engine = engine.clone();
        async move {
            shutdown.await;
            // open streams stop taking input at once: their callers resume elsewhere
            engine.stop_input();
            shutting_down.store(true, Ordering::Relaxed);
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
    let health_only = match options.health_listener {
        Some(health_listener) => {
            tracing::info!(local_addr = %health_listener.local_addr()?, "serving grpc.health.v1.Health in plaintext for probes");
            let health_service = health_service.clone();
            // reflection of the health service alone, so grpcurl can call it
            let health_reflection = || {
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            };
            Some(tokio::spawn(
                Server::builder()
                    .add_service(health_service)
                    .add_service(health_reflection().build_v1()?)
                    .add_service(health_reflection().build_v1alpha()?)
                    .serve_with_incoming(TcpListenerStream::new(health_listener)),
            ))
        }
        None => None,
    };
    let router = Server::builder()
        // outermost: it counts the status the caller got
        .layer(grpc_metrics::GrpcMetricsLayer)
        .layer(rpc_span::RpcSpanLayer)
        .layer(tower::util::MapResponseLayer::new(
            decode_errors::clarify_response,
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        // health and reflection stay open: probes and grpcurl's `list` need no credentials
        .add_service(tonic::service::interceptor::InterceptedService::new(
            pb::registration_service_server::RegistrationServiceServer::new(api)
                .max_decoding_message_size(largest_message),
            Authenticate::new(&options.callers),
        ));
    type Served =
        std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;
    let server: Served = match &options.tls {
        Some(tls_config) => {
            let incoming = tls::incoming(listener, tls_config)?;
            tracing::info!(%local_addr, mutual_tls = tls_config.client_ca_file.is_some(), "serving registrar.v1.RegistrationService over TLS");
            Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
        }
        None => {
            tracing::info!(%local_addr, "serving registrar.v1.RegistrationService");
            Box::pin(router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal))
        }
    };

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
    audit_watch.abort();
    if !engine.drain(remaining).await {
        tracing::warn!("grace period over before every vendor call finished");
    }
    if let Some(health_only) = health_only {
        health_only.abort();
    }
    Ok(())
}

/// How often readiness re-checks the audit store.
const AUDIT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Readiness follows the audit store: no vendor call may be made without its
/// audit row, so while the store is unreachable the service reports
/// NOT_SERVING and Kubernetes routes callers to another replica.
async fn watch_audit_store(
    engine: Arc<Engine>,
    health: tonic_health::server::HealthReporter,
    shutting_down: Arc<AtomicBool>,
) {
    type Service = pb::registration_service_server::RegistrationServiceServer<RegistrationApi>;
    let mut serving = true;
    let mut interval = tokio::time::interval(AUDIT_CHECK_INTERVAL);
    loop {
        interval.tick().await;
        let reachable = engine.audit_store_ready().await;
        if shutting_down.load(Ordering::Relaxed) {
            return;
        }
        if reachable != serving {
            serving = reachable;
            if reachable {
                tracing::info!("audit store reachable again: serving");
                health.set_serving::<Service>().await;
            } else {
                tracing::error!("audit store unreachable: reporting NOT_SERVING");
                health.set_not_serving::<Service>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_in_use_is_named_in_the_error() {
        let taken = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let address = taken.local_addr().unwrap();
        let error = bind(address).await.unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains(&address.to_string()),
            "the error names {address}: {message}"
        );
    }
}
