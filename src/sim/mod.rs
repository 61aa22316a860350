//! The built-in vendor simulator: one HTTP/1.1 server that answers like the
//! vendors registrar talks to, so tests and benchmarks run against something
//! faithful. It verifies each vendor's signature, enforces batch caps, field
//! rules and the quota of every configured account (answering with the
//! vendor's own codes), keeps registered users in memory and records every
//! call it receives: what it recorded is the ground truth tests assert on.
//! It must never panic on any input, and never put a configured secret or an
//! expected signature into an answer or a log line.
//!
//! Routing: `POST /` carries every vendor call; `routes` tells the vendor
//! by the action the call names (Tencent products by `X-TC-Action`), and
//! every vendor's handler runs the shared `pipeline`. `GET /_sim/calls`,
//! `GET /_sim/users?vendor=..&app_id=..` and `POST /_sim/reset` read back and
//! clear what was recorded, for out-of-process tests and benchmarks.

mod ciam;
mod ciam_import;
pub mod faults;
mod jobs;
mod lcic;
mod pipeline;
mod quota;
mod routes;
mod state;
mod tencent;
mod volc;
mod zim;

pub use jobs::SimJobRecord;
pub use state::{RecordedCall, RegisteredUser, SimAccount};

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::domain::VendorKind;
use faults::{Fault, SimFaults};
use state::Shared;

/// How long [`Simulator::shutdown`] lets in-flight calls finish before it stops serving anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where the simulator listens and the accounts it serves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub accounts: Vec<SimAccount>,
}

/// A running simulator; stops serving when shut down or dropped.
pub struct Simulator {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Binds `config.listen` (port 0 picks a free port) and serves in a background task.
    pub async fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        Simulator::start_with_faults(config, SimFaults::default()).await
    }

    /// Like `start`, with faults injected from the first call.
    pub async fn start_with_faults(
        config: SimConfig,
        faults: SimFaults,
    ) -> anyhow::Result<Simulator> {
        let (shared, listener, local_addr) = listen(config, faults).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            let signal = async move {
                // A dropped sender stops the server too.
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::error!(%error, "vendor simulator stopped serving");
            }
        });
        tracing::info!(address = %local_addr, "vendor simulator listening");
        Ok(Simulator {
            shared,
            local_addr,
            stop: Some(stop),
            server: Some(server),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL a target's `endpoint` uses, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        endpoint_of(self.local_addr)
    }

    /// The CIAM import jobs of one account, oldest first.
    pub fn jobs(&self, vendor: VendorKind, app_id: u64) -> Vec<SimJobRecord> {
        let state = self.shared.lock();
        state
            .apps
            .get(&(vendor, app_id))
            .map(|app| app.jobs.records(self.shared.started))
            .unwrap_or_default()
    }

    /// Changes the faults injected from the next call on.
    pub fn set_faults(&self, faults: SimFaults) {
        self.shared.set_faults(faults);
    }

    /// Every call received, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    /// The users held for one account, sorted by origin id.
    pub fn registered(&self, vendor: VendorKind, app_id: u64) -> Vec<RegisteredUser> {
        self.shared.registered(vendor, app_id)
    }

    /// The most accepted calls of one account inside any one-second window.
    pub fn max_calls_in_any_second(&self, vendor: VendorKind, app_id: u64) -> usize {
        let state = self.shared.lock();
        state.apps.get(&(vendor, app_id)).map_or(0, |app| {
            quota::max_in_any_window(&app.accepted, quota::ONE_SECOND)
        })
    }

    /// Stops accepting connections, lets in-flight calls finish (for a few
    /// seconds at most) and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
        {
            tracing::warn!("vendor simulator calls still open after the grace period; stopping");
            server.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves the simulator until `shutdown` completes (the `registrar sim` command).
pub async fn run(
    config: SimConfig,
    faults: SimFaults,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (shared, listener, address) = listen(config, faults).await?;
    tracing::info!(%address, accounts = shared.accounts.len(), "vendor simulator listening");
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
        .context("the vendor simulator stopped serving")
}

/// The simulator's memory of `config`'s accounts, with `faults`, and its bound socket.
async fn listen(
    config: SimConfig,
    faults: SimFaults,
) -> anyhow::Result<(Arc<Shared>, TcpListener, SocketAddr)> {
    let shared = Arc::new(Shared::new(config.accounts)?);
    shared.set_faults(faults);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("could not bind the vendor simulator to {}", config.listen))?;
    let address = listener
        .local_addr()
        .context("the vendor simulator socket has no local address")?;
    Ok((shared, listener, address))
}

fn endpoint_of(address: SocketAddr) -> String {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, address.port()))
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", post(vendor_call))
        .route("/_sim/calls", get(list_calls))
        .route("/_sim/users", get(list_users))
        .route("/_sim/reset", post(reset))
        .route("/_sim/faults", post(set_faults))
        .with_state(shared)
}

/// Replaces the faults injected from the next call on (JSON `SimFaults`).
async fn set_faults(
    State(shared): State<Arc<Shared>>,
    Json(faults): Json<SimFaults>,
) -> StatusCode {
    shared.set_faults(faults);
    StatusCode::NO_CONTENT
}

/// Every vendor call, with the run's faults and latency applied around it.
async fn vendor_call(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let faults = shared.faults();
    if faults == SimFaults::default() {
        return routes::answer(&shared, request).await;
    }
    let vendor = routes::vendor_of(&request);
    let fault = faults.pick(rand::random::<f64>());
    let latency = faults.latency(rand::random::<f64>());
    let response = match fault {
        None => routes::answer(&shared, request).await,
        Some(Fault::NoAnswer) => {
            shared.refuse_fault(vendor, Fault::NoAnswer);
            tokio::time::sleep(faults.no_answer_for).await;
            return broken_response();
        }
        Some(Fault::DropAfterWork) => {
            let _done = routes::answer(&shared, request).await;
            shared.refuse_fault(vendor, Fault::DropAfterWork);
            tokio::time::sleep(latency).await;
            return broken_response();
        }
        Some(Fault::NullOutput) => {
            let answered = routes::answer(&shared, request).await;
            shared.refuse_fault(vendor, Fault::NullOutput);
            routes::null_output(vendor, answered).await
        }
        Some(Fault::Http5xx) => {
            shared.refuse_fault(vendor, Fault::Http5xx);
            let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
            if let Some(wait) = faults.retry_after {
                response.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from(wait.as_secs()),
                );
            }
            response
        }
        Some(fault) => {
            shared.refuse_fault(vendor, fault);
            let (status, body) = routes::fault_answer(vendor, fault);
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [(http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
    };
    tokio::time::sleep(latency).await;
    response
}

/// A response whose body fails at once: the client sees the connection drop.
fn broken_response() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "simulated dropped connection",
        ))
    });
    Response::new(Body::from_stream(failing))
}

async fn list_calls(State(shared): State<Arc<Shared>>) -> Json<Vec<RecordedCall>> {
    Json(shared.lock().calls.clone())
}

async fn list_users(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    match users_query(uri.query()) {
        Ok((vendor, app_id)) => Json(shared.registered(vendor, app_id)).into_response(),
        Err(message) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": message })),
        )
            .into_response(),
    }
}

/// Clears the recorded calls and users. The quota windows stay: a vendor
/// does not forget the calls of the last second because a test started over.
async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    let mut state = shared.lock();
    state.calls.clear();
    for app in state.apps.values_mut() {
        app.accepted.clear();
        app.users.clear();
        app.jobs.clear();
    }
    StatusCode::NO_CONTENT
}

/// Parses `vendor=tencent-lcic&app_id=N`.
fn users_query(query: Option<&str>) -> Result<(VendorKind, u64), String> {
    let (mut vendor, mut app_id) = (None, None);
    for pair in query.unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "vendor" => vendor = Some(value.parse::<VendorKind>()?),
            "app_id" => {
                app_id =
                    Some(value.parse::<u64>().map_err(|_| {
                        format!("app_id must be an unsigned integer, got {value:?}")
                    })?);
            }
            _ => {
                return Err(format!(
                    "unknown query parameter {key:?}; expected vendor and app_id"
                ));
            }
        }
    }
    match (vendor, app_id) {
        (Some(vendor), Some(app_id)) => Ok((vendor, app_id)),
        (None, _) => Err("the vendor query parameter is required".to_owned()),
        (_, None) => Err("the app_id query parameter is required".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_loopback_for_unspecified_addresses() {
        let address: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(endpoint_of(address), "http://127.0.0.1:8080");
        let address: SocketAddr = "[::]:8080".parse().unwrap();
        assert_eq!(endpoint_of(address), "http://[::1]:8080");
        let address: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(endpoint_of(address), "http://127.0.0.1:1");
    }

    #[test]
    fn users_query_needs_a_known_vendor_and_a_numeric_app_id() {
        assert_eq!(
            users_query(Some("vendor=tencent-lcic&app_id=1400000001")),
            Ok((VendorKind::TencentLcic, 1_400_000_001))
        );
        assert_eq!(
            users_query(Some("app_id=7&vendor=zego-zim")),
            Ok((VendorKind::ZegoZim, 7))
        );
        for bad in [
            None,
            Some(""),
            Some("vendor=tencent-lcic"),
            Some("app_id=1"),
        ] {
            assert!(users_query(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "vendor=nobody&app_id=1",
            "vendor=tencent-lcic&app_id=-1",
            "vendor=tencent-lcic&app_id=1&extra=2",
            "vendor&app_id",
        ] {
            assert!(users_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
