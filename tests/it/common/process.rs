//! A real `registrar serve` process, for the tests that crash, stop or
//! restart it: it serves a config the test writes, on a free loopback port,
//! logging to a file in the test's directory (one log across restarts).

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use registrar::api::pb::registration_service_client::RegistrationServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const BINARY: &str = env!("CARGO_BIN_EXE_registrar");
/// How long a server may take to start serving (migrations included).
const START_LIMIT: Duration = Duration::from_secs(60);

pub struct ServeProcess {
    pub addr: SocketAddr,
    pub client: RegistrationServiceClient<Channel>,
    child: Child,
    log_path: PathBuf,
}

impl ServeProcess {
    /// Serves `config_toml` (its [audit] and [[targets]]) with a `[server]`
    /// section of a free loopback port plus `server_toml`, from `dir`.
    pub async fn start(dir: &Path, server_toml: &str, config_toml: &str) -> ServeProcess {
        let port = super::postgres::free_loopback_port();
        ServeProcess::start_at(dir, port, server_toml, config_toml).await
    }

    /// As `start`, on loopback port `port` (a restart where clients expect it).
    pub async fn start_at(
        dir: &Path,
        port: u16,
        server_toml: &str,
        config_toml: &str,
    ) -> ServeProcess {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config_path = dir.join(format!("registrar-{port}.toml"));
        fs::write(
            &config_path,
            // these servers serve anyone: the callers tests use their own configs
            format!(
                "[server]\nlisten = \"{addr}\"\nallow_unauthenticated = true\n{server_toml}\n\n{config_toml}"
            ),
        )
        .unwrap();
        let log_path = dir.join("registrar.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = Command::new(BINARY);
        command
            .args(["serve", "--config"])
            .arg(&config_path)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env(
                "RUST_LOG",
                "info,sqlx=warn,sea_orm=warn,h2=warn,hyper=warn,tower=warn",
            );
        for (name, _) in std::env::vars() {
            if name.starts_with("REGISTRAR_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().expect("registrar starts");
        let mut process = ServeProcess {
            addr,
            // connects once the server listens; the wait below sees to that
            client: RegistrationServiceClient::new(
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .unwrap()
                    .connect_lazy(),
            )
            .max_decoding_message_size(64 * 1024 * 1024),
            child,
            log_path,
        };
        process.wait_until_serving().await;
        process
    }

    async fn wait_until_serving(&mut self) {
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "registrar exited with {status} before serving:\n{}",
                    self.log()
                );
            }
            if let Some(mut health) = health_client(self.addr).await
                && let Ok(answer) = health
                    .check(HealthCheckRequest {
                        service: "registrar.v1.RegistrationService".to_owned(),
                    })
                    .await
                && answer.into_inner().status() == ServingStatus::Serving
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "registrar did not serve within {START_LIMIT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What readiness (`registrar.v1.RegistrationService`) says now.
    pub async fn readiness(&self) -> Option<ServingStatus> {
        readiness(self.addr).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process ends at once, with no chance to record anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: a graceful shutdown begins.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM delivered");
    }

    /// The exit status once the process ends, waiting at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the server logged, across restarts in the same directory.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// What readiness (`registrar.v1.RegistrationService`) of the server at
/// `addr` says now; `None` while it does not answer.
pub async fn readiness(addr: SocketAddr) -> Option<ServingStatus> {
    let mut health = health_client(addr).await?;
    let answer = health
        .check(HealthCheckRequest {
            service: "registrar.v1.RegistrationService".to_owned(),
        })
        .await
        .ok()?;
    Some(answer.into_inner().status())
}

/// A grpc.health.v1 client of the server at `addr`, once it accepts connections.
pub async fn health_client(addr: SocketAddr) -> Option<HealthClient<Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    Some(HealthClient::new(channel))
}
