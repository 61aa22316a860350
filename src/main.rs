//! The `registrar` command line: serve, sim, migrate. Thin: it parses
//! arguments, loads configuration and hands over to the library.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use clap::{Parser, Subcommand};
use registrar::{
    api::server::{ServeOptions, serve},
    app,
    audit::AuditStore,
    config::{CliOverrides, Config},
    sim::{self, SimConfig},
    telemetry,
};

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
            let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
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
        Command::Sim { config, listen } => {
            let accounts = match &config {
                Some(path) => {
                    app::accounts_for(&Config::load(Some(path), None, &CliOverrides::default())?)?
                }
                None => app::demo_accounts(),
            };
            let _telemetry = telemetry::init(&Default::default())?;
            tracing::info!(%listen, accounts = accounts.len(), "vendor simulator listening");
            sim::run(SimConfig { listen, accounts }, shutdown_signal()).await
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
