//! The `registrar` command line: serve, sim, migrate. Thin: it parses
//! arguments, loads configuration and hands over to the library.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use clap::{Parser, Subcommand};
use registrar::{
    api::server::{ServeOptions, bind, serve},
    app,
    audit::AuditStore,
    config::{CliOverrides, Config},
    sim::{self, SimConfig, faults::SimFaults},
    telemetry,
};

// under load the server makes and drops many short-lived rows and buffers
// across threads: glibc's allocator took a quarter of its time, and
// mimalloc raised the overhead benchmark from 47,000 to 55,000 users/s
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "registrar",
    version,
    about = "Registers users in bulk with third-party vendors, behind one gRPC contract"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve registrar.v1.RegistrationService. Without --config, serves the
    /// embedded default: the built-in simulator with demo targets, SQLite audit.
    Serve {
        /// TOML configuration file (see config/registrar.example.toml).
        #[arg(long, env = "REGISTRAR_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides [server] listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Overrides [audit] database_url.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Run the vendor simulator alone, for the targets of a config (or the demo accounts).
    Sim {
        /// Simulate the targets of this registrar config (their credentials and quotas).
        #[arg(long, env = "REGISTRAR_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: SocketAddr,
        /// The real quota of every simulated account, in calls per second,
        /// when it differs from the targets' configured qps.
        #[arg(long)]
        real_qps: Option<u32>,
        /// Latency added to every answer, e.g. 50ms.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        latency: std::time::Duration,
        /// Uniform jitter on top of --latency, e.g. 20ms.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        latency_jitter: std::time::Duration,
        /// Share of calls (0..1) faulted, spread evenly over HTTP 503, the
        /// vendor's internal error, its throttle answer, a connection dropped
        /// after the work, and no answer at all.
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
    },
    /// Apply the audit store's pending migrations, then exit.
    Migrate {
        #[arg(long, env = "REGISTRAR_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides [audit] database_url.
        #[arg(long)]
        database_url: Option<String>,
    },
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            database_url,
        } => {
            let overrides = CliOverrides {
                listen,
                database_url,
            };
            let (config, simulator, _telemetry) = match &config {
                Some(path) => {
                    let config = Config::load(Some(path), None, &overrides)?;
                    let telemetry = telemetry::init(&config.telemetry)?;
                    (config, None, telemetry)
                }
                None => {
                    // [telemetry] from the environment applies to the embedded default too
                    let layered = Config::load(None, None, &overrides)?;
                    let telemetry = telemetry::init(&layered.telemetry)?;
                    let (config, simulator) = app::start_embedded(&overrides).await?;
                    (config, Some(simulator), telemetry)
                }
            };
            let engine = app::start_engine(&config).await?;
            let listener = bind(config.server.listen).await?;
            serve(
                listener,
                Arc::clone(&engine),
                ServeOptions {
                    max_unary_users: config.server.max_unary_users,
                    shutdown_grace: config.server.shutdown_grace,
                },
                shutdown_signal(),
            )
            .await?;
            if let Some(simulator) = simulator {
                simulator.shutdown().await;
            }
            Ok(())
        }
        Command::Sim {
            config,
            listen,
            real_qps,
            latency,
            latency_jitter,
            fault_rate,
        } => {
            let faults = SimFaults {
                latency,
                latency_jitter,
                ..SimFaults::spread(fault_rate)
            };
            let mut accounts = match &config {
                Some(path) => {
                    app::accounts_for(&Config::load(Some(path), None, &CliOverrides::default())?)?
                }
                None => app::demo_accounts(),
            };
            if let Some(real_qps) = real_qps {
                for account in &mut accounts {
                    account.qps = real_qps;
                }
            }
            let _telemetry = telemetry::init(&Default::default())?;
            tracing::info!(
                accounts = accounts.len(),
                ?faults,
                "vendor simulator configured"
            );
            sim::run(SimConfig { listen, accounts }, faults, shutdown_signal()).await
        }
        Command::Migrate {
            config,
            database_url,
        } => {
            let overrides = CliOverrides {
                listen: None,
                database_url,
            };
            let config = Config::load(config.as_deref(), None, &overrides)?;
            let _telemetry = telemetry::init(&config.telemetry)?;
            let url = config.audit.database_url.resolve("audit.database_url")?;
            AuditStore::connect(&url, 1).await?;
            tracing::info!("audit store migrated");
            Ok(())
        }
    }
}
