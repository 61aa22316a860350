//! The built-in vendor simulator: one HTTP/1.1 server that answers like the
//! vendors registrar talks to, so tests and benchmarks run against something
//! faithful. It verifies each vendor's signature, enforces batch caps, field
//! rules and the quota of every configured account (answering with the
//! vendor's own codes), keeps registered users in memory and records every
//! call it receives: what it recorded is the ground truth tests assert on.
//! It must never panic on any input, and never put a configured secret or an
//! expected signature into an answer or a log line.
//!
//! Routing: `POST /` carries every vendor call; Tencent products are told
//! apart by `X-TC-Action` (see `tencent`). `GET /_sim/calls`,
//! `GET /_sim/users?vendor=..&app_id=..` and `POST /_sim/reset` read back and
//! clear what was recorded, for out-of-process tests and benchmarks.

mod ciam;
mod ciam_import;
pub mod faults;

pub use ciam_import::SimJobRecord;
mod lcic;
mod quota;
mod tencent;
mod volc;
mod zim;

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use anyhow::Context;
use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, Uri, header::CONTENT_LENGTH},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle, time::Instant};

use crate::domain::VendorKind;
use faults::{Fault, SimFaults};
use quota::SlidingWindow;

/// How long [`Simulator::shutdown`] lets in-flight calls finish before it stops serving anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One vendor account (or app) the simulator knows.
#[derive(Debug, Clone)]
pub struct SimAccount {
    pub vendor: VendorKind,
    /// LCIC SdkAppId, ZIM AppId, Volcengine AppId; for CIAM a numeric
    /// handle of the user store, under which its users are kept.
    pub app_id: u64,
    /// CIAM UserStoreId; empty for the other vendors.
    pub user_store_id: String,
    /// Tencent SecretId, Volcengine AccessKeyId; empty for ZEGO.
    pub secret_id: String,
    /// Tencent SecretKey, ZEGO ServerSecret, Volcengine SecretAccessKey.
    pub secret_key: SecretString,
    /// The real quota: at most `qps` accepted calls in any one-second window.
    pub qps: u32,
}

/// Where the simulator listens and the accounts it serves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub accounts: Vec<SimAccount>,
}

/// One call the simulator received, whatever its fate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedCall {
    pub vendor: VendorKind,
    pub action: String,
    /// The account the call named, once its credentials identify one.
    pub app_id: Option<u64>,
    /// Milliseconds since the simulator started (monotonic), taken when the call was decided.
    pub received_at_ms: u64,
    /// The users the call carried (LCIC: OriginId), in order; empty when the body was unreadable.
    pub user_ids: Vec<String>,
    pub http_status: u16,
    /// `None` when accepted; the vendor's code otherwise (e.g. `RequestLimitExceeded`).
    pub error_code: Option<String>,
}

impl RecordedCall {
    pub fn accepted(&self) -> bool {
        self.error_code.is_none()
    }
}

/// One user held in the simulator's memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisteredUser {
    pub origin_id: String,
    pub vendor_user_id: String,
    pub name: String,
    pub avatar: String,
    /// Times registered (LCIC overwrites an existing user).
    pub registrations: u32,
    /// Other fields the vendor keeps, by the vendor's own field name
    /// (e.g. Volcengine `Tags`, CIAM `Email`); never a password.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
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
        let shared = Arc::new(Shared::new(config.accounts)?);
        shared.set_faults(faults);
        let listener = bind(config.listen).await?;
        let local_addr = listener
            .local_addr()
            .context("the vendor simulator socket has no local address")?;
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
    let shared = Arc::new(Shared::new(config.accounts)?);
    shared.set_faults(faults);
    let listener = bind(config.listen).await?;
    let address = listener
        .local_addr()
        .context("the vendor simulator socket has no local address")?;
    tracing::info!(%address, accounts = shared.accounts.len(), "vendor simulator listening");
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
        .context("the vendor simulator stopped serving")
}

async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not bind the vendor simulator to {listen}"))
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
        return route(&shared, request).await;
    }
    let vendor = vendor_of(&request);
    let fault = faults.pick(rand::random::<f64>());
    let latency = faults.latency(rand::random::<f64>());
    let response = match fault {
        None => route(&shared, request).await,
        Some(Fault::NoAnswer) => {
            shared.refuse_fault(vendor, Fault::NoAnswer);
            tokio::time::sleep(faults.no_answer_for).await;
            return broken_response();
        }
        Some(Fault::DropAfterWork) => {
            let _done = route(&shared, request).await;
            shared.refuse_fault(vendor, Fault::DropAfterWork);
            tokio::time::sleep(latency).await;
            return broken_response();
        }
        Some(Fault::Http5xx) => {
            shared.refuse_fault(vendor, Fault::Http5xx);
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Some(fault) => {
            shared.refuse_fault(vendor, fault);
            let (status, body) = faults::vendor_answer(vendor, fault);
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

/// The vendor a call is for, from its action.
fn vendor_of(request: &Request) -> VendorKind {
    match query_action(request.uri()) {
        Some(crate::vendor_api::zego::zim::ACTION) => VendorKind::ZegoZim,
        Some(crate::vendor_api::volc::rtc::ACTION) => VendorKind::VolcRtc,
        _ => match request
            .headers()
            .get("x-tc-action")
            .and_then(|value| value.to_str().ok())
        {
            Some(crate::vendor_api::tencent::ciam::ACTION) => VendorKind::TencentCiam,
            Some(
                crate::vendor_api::tencent::ciam_import::ACTION
                | crate::vendor_api::tencent::ciam_import::POLL_ACTION,
            ) => VendorKind::TencentCiamImport,
            _ => VendorKind::TencentLcic,
        },
    }
}

/// Every vendor call: routed by the query parameter or header naming the action.
async fn route(shared: &Shared, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // ZEGO and Volcengine name the action in the `Action` query parameter;
    // Tencent in the `X-TC-Action` header.
    match query_action(&parts.uri) {
        Some(crate::vendor_api::zego::zim::ACTION) => {
            zim::user_register(shared, &parts, body).await
        }
        Some(crate::vendor_api::volc::rtc::ACTION) => {
            volc::register_users(shared, &parts, body).await
        }
        _ => tencent::dispatch(shared, &parts, body).await,
    }
}

/// The `Action` query parameter, if any.
fn query_action(uri: &Uri) -> Option<&str> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
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

/// A vendor's refusal of a call, in the vendor's own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    http_status: u16,
    code: String,
    message: String,
}

/// What is known of a call before it is decided, for its record.
#[derive(Debug)]
struct CallInfo {
    vendor: VendorKind,
    action: &'static str,
    app_id: Option<u64>,
    user_ids: Vec<String>,
}

/// Everything the request handlers share.
struct Shared {
    started: Instant,
    accounts: Vec<SimAccount>,
    state: Mutex<Memory>,
    faults: Mutex<SimFaults>,
}

struct Memory {
    calls: Vec<RecordedCall>,
    apps: HashMap<(VendorKind, u64), AppState>,
}

/// The memory of one account.
struct AppState {
    window: SlidingWindow,
    /// Arrival instants of every accepted call since the last reset, oldest first.
    accepted: Vec<Instant>,
    users: BTreeMap<String, RegisteredUser>,
    /// CIAM import jobs of the user store (empty for other vendors).
    jobs: ciam_import::Jobs,
}

impl AppState {
    fn new(qps: u32) -> Self {
        AppState {
            window: SlidingWindow::per_second(qps),
            accepted: Vec::new(),
            users: BTreeMap::new(),
            jobs: ciam_import::Jobs::default(),
        }
    }
}

impl Shared {
    /// Checks the accounts: one per (vendor, app id), and one key per SecretId.
    fn new(accounts: Vec<SimAccount>) -> anyhow::Result<Shared> {
        let mut apps = HashMap::new();
        for account in &accounts {
            if apps
                .insert((account.vendor, account.app_id), AppState::new(account.qps))
                .is_some()
            {
                anyhow::bail!(
                    "simulator account {} app {} is configured twice",
                    account.vendor,
                    account.app_id
                );
            }
        }
        for (index, account) in accounts.iter().enumerate() {
            let conflicting = accounts[..index].iter().find(|earlier| {
                !account.secret_id.is_empty()
                    && earlier.secret_id == account.secret_id
                    && earlier.secret_key.expose_secret() != account.secret_key.expose_secret()
            });
            if let Some(earlier) = conflicting {
                anyhow::bail!(
                    "simulator accounts {} app {} and {} app {} share a secret id but not its secret key",
                    earlier.vendor,
                    earlier.app_id,
                    account.vendor,
                    account.app_id
                );
            }
        }
        Ok(Shared {
            started: Instant::now(),
            accounts,
            state: Mutex::new(Memory {
                calls: Vec::new(),
                apps,
            }),
            faults: Mutex::new(SimFaults::default()),
        })
    }

    fn faults(&self) -> SimFaults {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_faults(&self, faults: SimFaults) {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner) = faults;
    }

    /// Records a call answered by an injected fault.
    fn refuse_fault(&self, vendor: VendorKind, fault: Fault) {
        let refusal = Refusal {
            http_status: 0,
            code: fault.recorded_code().to_owned(),
            message: "simulated fault".to_owned(),
        };
        let call = CallInfo {
            vendor,
            action: "fault",
            app_id: None,
            user_ids: Vec::new(),
        };
        let mut state = self.lock();
        self.record(&mut state, Instant::now(), call, Some(&refusal));
    }

    /// The state; a handler that panicked elsewhere must not take the simulator down.
    fn lock(&self) -> MutexGuard<'_, Memory> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn registered(&self, vendor: VendorKind, app_id: u64) -> Vec<RegisteredUser> {
        let state = self.lock();
        state
            .apps
            .get(&(vendor, app_id))
            .map(|app| app.users.values().cloned().collect())
            .unwrap_or_default()
    }

    fn record(&self, state: &mut Memory, now: Instant, call: CallInfo, refusal: Option<&Refusal>) {
        let received_at_ms = u64::try_from(now.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX);
        tracing::debug!(
            vendor = %call.vendor,
            action = call.action,
            app_id = ?call.app_id,
            users = call.user_ids.len(),
            error_code = refusal.map(|refusal| refusal.code.as_str()),
            "simulated vendor call"
        );
        state.calls.push(RecordedCall {
            vendor: call.vendor,
            action: call.action.to_owned(),
            app_id: call.app_id,
            received_at_ms,
            user_ids: call.user_ids,
            http_status: refusal.map_or(200, |refusal| refusal.http_status),
            error_code: refusal.map(|refusal| refusal.code.clone()),
        });
    }

    /// Records a call refused before the quota step (credentials, headers, size).
    fn refuse(&self, call: CallInfo, refusal: &Refusal) {
        let mut state = self.lock();
        self.record(&mut state, Instant::now(), call, Some(refusal));
    }

    /// The quota step and what follows it, under one lock so that concurrent
    /// calls cannot both take the last slot: a throttled call gets `throttled`;
    /// an admitted call refused for its body (`verdict`) takes no slot; an
    /// accepted one takes a slot and runs `accept` on the account's memory.
    fn admit<V, T>(
        &self,
        account: &SimAccount,
        call: CallInfo,
        throttled: Refusal,
        verdict: Result<V, Refusal>,
        accept: impl FnOnce(&mut AppState, V) -> T,
    ) -> Result<T, Refusal> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let now = Instant::now();
        let app = state
            .apps
            .entry((account.vendor, account.app_id))
            .or_insert_with(|| AppState::new(account.qps));
        let decision = if !app.window.admits(now) {
            Err(throttled)
        } else {
            verdict.map(|valid| {
                app.window.record(now);
                app.accepted.push(now);
                accept(app, valid)
            })
        };
        self.record(state, now, call, decision.as_ref().err());
        decision
    }
}

/// Why a request body could not be read.
#[derive(Debug, PartialEq, Eq)]
enum BodyError {
    /// Over the vendor's limit (declared or actual).
    TooLarge,
    /// The connection failed while the body was being read.
    Unreadable,
}

/// Reads a request body, refusing one over `limit` bytes without buffering it.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge)
        }
        Err(_) => Err(BodyError::Unreadable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(vendor: VendorKind, app_id: u64, secret_id: &str, key: &str) -> SimAccount {
        SimAccount {
            vendor,
            app_id,
            user_store_id: String::new(),
            secret_id: secret_id.to_owned(),
            secret_key: SecretString::from(key),
            qps: 5,
        }
    }

    #[test]
    fn accounts_are_one_per_app_and_one_key_per_secret_id() {
        let lcic = VendorKind::TencentLcic;
        assert!(
            Shared::new(vec![
                account(lcic, 1, "id", "k"),
                account(lcic, 2, "id", "k")
            ])
            .is_ok()
        );
        let twice = Shared::new(vec![account(lcic, 1, "a", "k"), account(lcic, 1, "b", "k")]);
        assert!(twice.is_err());
        let keys = Shared::new(vec![
            account(lcic, 1, "id", "k1"),
            account(lcic, 2, "id", "k2"),
        ]);
        let message = keys
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(message.contains("share a secret id"), "{message}");
        assert!(
            !message.contains("k1") && !message.contains("k2"),
            "{message}"
        );
        // ZEGO accounts have no secret id; they never conflict.
        let zego = VendorKind::ZegoZim;
        assert!(Shared::new(vec![account(zego, 1, "", "k1"), account(zego, 2, "", "k2")]).is_ok());
    }

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

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_declared_or_not() {
        let empty = HeaderMap::new();
        assert_eq!(
            read_body(&empty, Body::from("12345"), 5).await,
            Ok(Bytes::from("12345"))
        );
        assert_eq!(
            read_body(&empty, Body::from("123456"), 5).await,
            Err(BodyError::TooLarge)
        );
        let mut declared = HeaderMap::new();
        declared.insert(CONTENT_LENGTH, "6".parse().unwrap());
        assert_eq!(
            read_body(&declared, Body::from("1"), 5).await,
            Err(BodyError::TooLarge)
        );
    }
}
