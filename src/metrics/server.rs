//! The metrics listener (`[metrics] listen`): GET /metrics answers the
//! process's metrics in the OpenMetrics text format, which Prometheus
//! scrapes; any other path is 404. Plaintext and unauthenticated, like the
//! health port: it reveals counts and target names only, and the chart's
//! NetworkPolicy limits who reaches it.

use std::future::Future;

use axum::{Router, http::header, response::IntoResponse, routing::get};
use tokio::net::TcpListener;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        super::global().encode(),
    )
}

/// Serves /metrics on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(metrics));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
