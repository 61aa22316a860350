//! Shared harness of the integration tests: a vendor (the built-in simulator
//! or a test's own server) and registrar, both started in-process on
//! 127.0.0.1 port 0, a generated tonic client, and direct access to the
//! audit store so tests assert on ground truth.

#![allow(dead_code)]

pub mod certs;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod redis_server;
pub mod small_fs;
pub mod tencent_sdk;
pub mod vendors;

pub use vendors::*;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use registrar::{
    api::{
        pb::{self, registration_service_client::RegistrationServiceClient},
        server::{ServeOptions, serve},
    },
    app,
    audit::AuditStore,
    config::{CliOverrides, Config},
    sim::{RecordedCall, SimAccount, SimConfig, Simulator, faults::SimFaults},
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

pub async fn start_simulator(accounts: Vec<SimAccount>) -> Simulator {
    Simulator::start(SimConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        accounts,
    })
    .await
    .expect("simulator starts")
}

/// The simulator holding `accounts`, misbehaving as `faults` says.
pub async fn start_simulator_with_faults(
    accounts: Vec<SimAccount>,
    faults: SimFaults,
) -> Simulator {
    Simulator::start_with_faults(
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            accounts,
        },
        faults,
    )
    .await
    .expect("simulator starts")
}

/// The simulator holding `account` at `qps` calls a second, and a registrar
/// with one target `name` for that account (`extra` is appended TOML).
pub async fn start_with_target(
    account: TestAccount,
    qps: u32,
    name: &str,
    extra: &str,
) -> (Simulator, Registrar) {
    let simulator = start_simulator(vec![account.sim(qps)]).await;
    let registrar = Registrar::start(&account.target(name, &simulator.endpoint(), extra)).await;
    (simulator, registrar)
}

/// A vendor written in a test, serving `app` on a free loopback port: its
/// endpoint, and the task to abort when the test is done with it.
pub async fn serve_vendor(app: axum::Router) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (endpoint, server)
}

/// How many users each recorded call carried, in the order of the calls.
pub fn call_sizes(calls: &[RecordedCall]) -> Vec<usize> {
    calls.iter().map(|call| call.user_ids.len()).collect()
}

/// Every user id the simulator's recorded calls carried, call after call.
pub fn sent_user_ids(simulator: &Simulator) -> Vec<String> {
    simulator
        .calls()
        .into_iter()
        .flat_map(|call| call.user_ids)
        .collect()
}

/// A running registrar.
pub struct Registrar {
    pub client: RegistrationServiceClient<Channel>,
    pub audit: AuditStore,
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Registrar {
    /// Starts registrar with the given targets and a fresh SQLite audit file.
    pub async fn start(targets_toml: &str) -> Registrar {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("audit.db").display()
        );
        let mut registrar = Registrar::start_with_database(targets_toml, &url, "").await;
        registrar._dir = Some(dir);
        registrar
    }

    pub async fn start_with_database(
        targets_toml: &str,
        database_url: &str,
        server_toml: &str,
    ) -> Registrar {
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"10s\"\n{server_toml}\n\
             [audit]\ndatabase_url = \"{database_url}\"\n\n{targets_toml}"
        );
        let config =
            Config::load(None, Some(&toml), &CliOverrides::default()).expect("test config loads");
        let engine = app::start_engine(&config).await.expect("engine starts");
        let audit = engine.audit().clone();
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let health_listener = match config.server.health_listen {
            Some(address) => Some(tokio::net::TcpListener::bind(address).await.unwrap()),
            None => None,
        };
        let over_tls = config.server.tls.is_some();
        let (shutdown, signal) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            engine,
            ServeOptions {
                max_unary_users: config.server.max_unary_users,
                shutdown_grace: config.server.shutdown_grace,
                tls: config.server.tls.clone(),
                health_listener,
                callers: config.callers.clone(),
                limits: config.limits,
            },
            async move {
                let _ = signal.await;
            },
        ));
        // over TLS the tests make clients of their own (tests/it/tls.rs)
        let client = if over_tls {
            RegistrationServiceClient::new(
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .unwrap()
                    .connect_lazy(),
            )
        } else {
            connect(addr).await
        };
        Registrar {
            client,
            audit,
            addr,
            shutdown: Some(shutdown),
            server: Some(server),
            _dir: None,
        }
    }

    /// The batch as `GetBatch` reports it.
    pub async fn get_batch(&self, batch_id: &str) -> pb::Batch {
        get_batch(&self.client, batch_id).await
    }

    /// The targets as `ListTargets` reports them.
    pub async fn list_targets(&self) -> Vec<pb::Target> {
        self.client
            .clone()
            .list_targets(pb::ListTargetsRequest {})
            .await
            .unwrap()
            .into_inner()
            .targets
    }

    /// Every page `ListRegistrations` returns for the batch, `page_size` rows
    /// a page, following the page tokens to the last page.
    pub async fn list_registration_pages(
        &self,
        batch_id: &str,
        page_size: u32,
    ) -> Vec<Vec<pb::Registration>> {
        list_registration_pages(&self.client, batch_id, page_size).await
    }

    /// Sends SIGTERM's equivalent and waits for the drain to end.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("server stops within its grace period")
                .unwrap()
                .unwrap();
        }
    }
}

/// The batch as `GetBatch` reports it, from any server.
pub async fn get_batch(client: &RegistrationServiceClient<Channel>, batch_id: &str) -> pb::Batch {
    client
        .clone()
        .get_batch(pb::GetBatchRequest {
            batch_id: batch_id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .batch
        .unwrap()
}

/// Waits (bounded by `within`) until `GetBatch` reports `state`.
pub async fn wait_for_batch_state(
    client: &RegistrationServiceClient<Channel>,
    batch_id: &str,
    state: pb::BatchState,
    within: Duration,
) -> pb::Batch {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let batch = get_batch(client, batch_id).await;
        if batch.state() == state {
            return batch;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "batch {batch_id} is {:?}, not {state:?}",
            batch.state()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every page `ListRegistrations` returns for the batch, `page_size` rows
/// a page, following the page tokens to the last page.
pub async fn list_registration_pages(
    client: &RegistrationServiceClient<Channel>,
    batch_id: &str,
    page_size: u32,
) -> Vec<Vec<pb::Registration>> {
    let mut client = client.clone();
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_registrations(pb::ListRegistrationsRequest {
                batch_id: batch_id.to_owned(),
                page_size,
                page_token: page_token.clone(),
                ..pb::ListRegistrationsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(page.registrations);
        if page.next_page_token.is_empty() {
            return pages;
        }
        page_token = page.next_page_token;
    }
}

/// Every row of a batch of one target: user id -> outcome.
pub async fn outcomes_by_user(
    client: &RegistrationServiceClient<Channel>,
    batch_id: &str,
) -> BTreeMap<String, pb::Outcome> {
    list_registration_pages(client, batch_id, 1000)
        .await
        .into_iter()
        .flatten()
        .map(|row| (row.user_id.clone(), row.outcome()))
        .collect()
}

/// The batch a user's first row belongs to: how a test finds the batch of a
/// call that never got to its summary.
pub async fn batch_id_of_user(
    client: &RegistrationServiceClient<Channel>,
    user_id: &str,
) -> String {
    let page = client
        .clone()
        .list_registrations(pb::ListRegistrationsRequest {
            user_id: user_id.to_owned(),
            ..pb::ListRegistrationsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    page.registrations
        .first()
        .expect("the user has a row")
        .batch_id
        .clone()
}

/// Starts a stream of `users` under `key` in the background, a chunk of
/// 1000 at a time as the server takes them; its results, or the status it
/// ended with.
pub fn stream_in_background(
    client: &RegistrationServiceClient<Channel>,
    targets: &'static [&'static str],
    key: &str,
    users: Vec<pb::User>,
) -> JoinHandle<Result<Collected, (Collected, tonic::Status)>> {
    let mut client = client.clone();
    let key = key.to_owned();
    tokio::spawn(async move {
        let (input, requests) = tokio::sync::mpsc::channel(4);
        let feeder = tokio::spawn(async move {
            if input.send(stream_header(targets, &key)).await.is_err() {
                return;
            }
            for part in users.chunks(1000) {
                if input.send(stream_chunk(part.to_vec())).await.is_err() {
                    return;
                }
            }
        });
        let responses = client
            .batch_register_stream(tokio_stream::wrappers::ReceiverStream::new(requests))
            .await
            .map_err(|status| (Collected::default(), status))?
            .into_inner();
        let collected = collect_stream(responses).await;
        feeder.abort();
        collected
    })
}

/// Waits (bounded) until the simulator has received `calls` calls.
pub async fn wait_for_calls(simulator: &Simulator, calls: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while simulator.calls().len() < calls {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the simulator got {} calls, not {calls}",
            simulator.calls().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn connect(addr: SocketAddr) -> RegistrationServiceClient<Channel> {
    // up to 10 s: a registrar started as a separate process may still be migrating
    for _ in 0..500 {
        if let Ok(client) = RegistrationServiceClient::connect(format!("http://{addr}")).await {
            return client.max_decoding_message_size(64 * 1024 * 1024);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("registrar at {addr} did not accept connections");
}

/// `result` was rejected by registrar's validation with `code` and
/// `message`, and never sent.
pub fn assert_rejected(result: &pb::UserResult, code: &str, message: &str) {
    assert_eq!(result.outcome(), pb::Outcome::Rejected, "{result:?}");
    assert_eq!(result.error_code, code, "{result:?}");
    assert_eq!(result.error_message, message, "{result:?}");
    assert_eq!(result.attempts, 0, "{result:?}");
}

/// As [`assert_rejected`], with a message that starts with `message`.
pub fn assert_rejected_starting(result: &pb::UserResult, code: &str, message: &str) {
    assert_eq!(result.outcome(), pb::Outcome::Rejected, "{result:?}");
    assert_eq!(result.error_code, code, "{result:?}");
    assert!(
        result.error_message.starts_with(message),
        "{:?} should start with {message:?}",
        result.error_message
    );
    assert_eq!(result.attempts, 0, "{result:?}");
}

pub fn user(user_id: impl Into<String>) -> pb::User {
    pb::User {
        user_id: user_id.into(),
        ..pb::User::default()
    }
}

pub fn users(prefix: &str, count: usize) -> Vec<pb::User> {
    (0..count)
        .map(|n| user(format!("{prefix}{n:06}")))
        .collect()
}

/// Every result and the summary of one registration stream.
#[derive(Debug, Default)]
pub struct Collected {
    pub results: Vec<pb::UserResult>,
    pub summary: Option<pb::BatchSummary>,
}

impl Collected {
    pub fn batch_id(&self) -> String {
        self.summary.as_ref().expect("a summary").batch_id.clone()
    }

    /// The results by index; for a batch of one target, one each.
    pub fn by_index(&self) -> BTreeMap<u64, &pb::UserResult> {
        self.results
            .iter()
            .map(|result| (result.index, result))
            .collect()
    }

    pub fn with_outcome(&self, outcome: pb::Outcome) -> Vec<&pb::UserResult> {
        self.results
            .iter()
            .filter(|result| result.outcome() == outcome)
            .collect()
    }
}

pub async fn batch_register(
    client: &mut RegistrationServiceClient<Channel>,
    request: impl tonic::IntoRequest<pb::BatchRegisterRequest>,
) -> Result<Collected, tonic::Status> {
    let mut stream = client.batch_register(request).await?.into_inner();
    let mut collected = Collected::default();
    while let Some(response) = stream.message().await? {
        match response.event {
            Some(pb::batch_register_response::Event::Result(result)) => {
                assert!(collected.summary.is_none(), "a result after the summary");
                collected.results.push(result)
            }
            Some(pb::batch_register_response::Event::Summary(summary)) => {
                assert!(
                    collected.summary.replace(summary).is_none(),
                    "two summaries"
                )
            }
            None => panic!("an empty response event"),
        }
    }
    Ok(collected)
}

/// The hex SHA-256 of a token, as `[[callers]] token_sha256` takes it.
pub fn sha256_hex(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// `message` with `authorization: Bearer TOKEN`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub fn request(targets: &[&str], users: Vec<pb::User>) -> pb::BatchRegisterRequest {
    pb::BatchRegisterRequest {
        targets: targets.iter().map(|target| target.to_string()).collect(),
        users,
        ..pb::BatchRegisterRequest::default()
    }
}

/// A stream's header naming `targets`, under `idempotency_key` ("" for none).
pub fn stream_header(targets: &[&str], idempotency_key: &str) -> pb::BatchRegisterStreamRequest {
    pb::BatchRegisterStreamRequest {
        message: Some(pb::batch_register_stream_request::Message::Header(
            pb::BatchHeader {
                targets: targets.iter().map(|target| target.to_string()).collect(),
                idempotency_key: idempotency_key.to_owned(),
                ..pb::BatchHeader::default()
            },
        )),
    }
}

pub fn stream_chunk(users: Vec<pb::User>) -> pb::BatchRegisterStreamRequest {
    pb::BatchRegisterStreamRequest {
        message: Some(pb::batch_register_stream_request::Message::Users(
            pb::UserChunk { users },
        )),
    }
}

/// Reads a registration stream to its end: every result and the summary,
/// or the status the call ended with.
pub async fn collect_stream(
    mut responses: tonic::Streaming<pb::BatchRegisterStreamResponse>,
) -> Result<Collected, (Collected, tonic::Status)> {
    use pb::batch_register_stream_response::Event;
    let mut collected = Collected::default();
    loop {
        match responses.message().await {
            Ok(Some(response)) => match response.event {
                Some(Event::Result(result)) => collected.results.push(result),
                Some(Event::Summary(summary)) => {
                    assert!(
                        collected.summary.replace(summary).is_none(),
                        "two summaries"
                    )
                }
                None => panic!("an empty response event"),
            },
            Ok(None) => return Ok(collected),
            Err(status) => return Err((collected, status)),
        }
    }
}

/// Sends `users` as one `BatchRegisterStream` in chunks of `chunk` under
/// `key`, and reads it to its end.
pub async fn stream_register(
    client: &mut RegistrationServiceClient<Channel>,
    targets: &[&str],
    key: &str,
    users: Vec<pb::User>,
    chunk: usize,
) -> Result<Collected, (Collected, tonic::Status)> {
    let mut messages = vec![stream_header(targets, key)];
    messages.extend(
        users
            .chunks(chunk)
            .map(|users| stream_chunk(users.to_vec())),
    );
    let responses = client
        .batch_register_stream(tokio_stream::iter(messages))
        .await
        .map_err(|status| (Collected::default(), status))?
        .into_inner();
    collect_stream(responses).await
}

/// Each index of `0..count` exactly once.
pub fn assert_one_result_per_index(results: &[pb::UserResult], count: usize) {
    let mut seen = std::collections::BTreeSet::new();
    for result in results {
        assert!(
            seen.insert(result.index),
            "two results for index {}: {result:?}",
            result.index
        );
    }
    assert_eq!(seen.len(), count, "one result per user");
    assert_eq!(seen.iter().next_back().copied(), Some(count as u64 - 1));
}

/// A simulated LCIC account of `qps` that answers after `latency`.
pub async fn lcic_with_latency(qps: u32, latency: Duration) -> Simulator {
    start_simulator_with_faults(
        vec![LCIC.sim(qps)],
        registrar::sim::faults::SimFaults {
            latency,
            ..registrar::sim::faults::SimFaults::default()
        },
    )
    .await
}

/// How many of the users the simulator received in calls after the first
/// `calls_before` are among `finished`: users sent again.
pub fn sent_again(
    simulator: &Simulator,
    calls_before: usize,
    finished: &std::collections::BTreeSet<String>,
) -> usize {
    simulator.calls()[calls_before..]
        .iter()
        .flat_map(|call| call.user_ids.iter())
        .filter(|user_id| finished.contains(*user_id))
        .count()
}
