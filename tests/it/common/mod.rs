//! Shared harness of the integration tests: a vendor (the built-in simulator
//! or a test's own server) and registrar, both started in-process on
//! 127.0.0.1 port 0, a generated tonic client, and direct access to the
//! audit store so tests assert on ground truth.

#![allow(dead_code)]

pub mod postgres;
pub mod tencent_sdk;

use std::{net::SocketAddr, time::Duration};

use registrar::{
    api::{
        pb::{self, registration_service_client::RegistrationServiceClient},
        server::{ServeOptions, serve},
    },
    app,
    audit::AuditStore,
    config::{CliOverrides, Config},
    domain::VendorKind,
    sim::{SimAccount, SimConfig, Simulator},
};
use secrecy::SecretString;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

pub const LCIC_APP_ID: u64 = 1_400_000_042;
pub const LCIC_SECRET_ID: &str = "AKIDtestLCIC000000000000000000000000";
pub const LCIC_SECRET_KEY: &str = "test-lcic-secret-key-never-logged";

pub fn lcic_account(qps: u32) -> SimAccount {
    SimAccount {
        vendor: VendorKind::TencentLcic,
        app_id: LCIC_APP_ID,
        user_store_id: String::new(),
        secret_id: LCIC_SECRET_ID.to_owned(),
        secret_key: SecretString::from(LCIC_SECRET_KEY),
        qps,
    }
}

/// An LCIC target at `endpoint` with the test credentials; `extra` is appended TOML.
pub fn lcic_target(name: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "[[targets]]\nname = \"{name}\"\nvendor = \"tencent-lcic\"\nendpoint = \"{endpoint}\"\n\
         app_id = {LCIC_APP_ID}\nsecret_id = \"{LCIC_SECRET_ID}\"\nsecret_key = \"{LCIC_SECRET_KEY}\"\n{extra}\n"
    )
}

pub async fn start_simulator(accounts: Vec<SimAccount>) -> Simulator {
    Simulator::start(SimConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        accounts,
    })
    .await
    .expect("simulator starts")
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
        let (shutdown, signal) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            engine,
            ServeOptions {
                max_unary_users: config.server.max_unary_users,
                shutdown_grace: config.server.shutdown_grace,
            },
            async move {
                let _ = signal.await;
            },
        ));
        let client = connect(addr).await;
        Registrar {
            client,
            audit,
            addr,
            shutdown: Some(shutdown),
            server: Some(server),
            _dir: None,
        }
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

    pub fn with_outcome(&self, outcome: pb::Outcome) -> Vec<&pb::UserResult> {
        self.results
            .iter()
            .filter(|result| result.outcome() == outcome)
            .collect()
    }
}

pub async fn batch_register(
    client: &mut RegistrationServiceClient<Channel>,
    request: pb::BatchRegisterRequest,
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

pub fn request(targets: &[&str], users: Vec<pb::User>) -> pb::BatchRegisterRequest {
    pb::BatchRegisterRequest {
        targets: targets.iter().map(|target| target.to_string()).collect(),
        users,
        ..pb::BatchRegisterRequest::default()
    }
}
