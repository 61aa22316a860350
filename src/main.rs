//! The `registrar` command line: serve, sim, migrate, import. Thin: it
//! parses arguments, loads configuration and hands over to the library.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use clap::{Parser, Subcommand};
use registrar::{
    api::server::{ServeOptions, bind, serve},
    app,
    audit::AuditStore,
    config::{CliOverrides, Config},
    import,
    sim::{self, SimConfig, faults::SimFaults},
    telemetry,
};
use secrecy::SecretString;

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
    /// Register every user of a CSV or NDJSON file (optionally gzip) through a
    /// running registrar, resuming by itself after a lost connection. Exit
    /// code 0: every user registered or already existing; 1: some rejected
    /// or failed (see the failed-rows file); 2: usage, file or connection errors.
    Import(ImportArgs),
    /// Ask a running registrar whether it serves (grpc.health.v1) and list
    /// its services (server reflection). Exit code 0: serving and offering
    /// the service; 1: not serving; 2: no answer. `helm test` runs it.
    Health(HealthArgs),
    /// Apply the audit store's pending migrations, then exit.
    Migrate {
        #[arg(long, env = "REGISTRAR_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides [audit] database_url.
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The file of users: CSV with a header row, or NDJSON; `-` reads stdin;
    /// gzip is read compressed.
    file: String,
    /// The registrar server's URL (https:// with --ca-file).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// A target to register every user with; repeat for several.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// The file's format, when its name does not end in .csv, .ndjson or .jsonl (.gz).
    #[arg(long, value_enum)]
    format: Option<import::source::Format>,
    /// Where rows that end REJECTED or FAILED go [default: beside FILE, as NAME.failed.EXT].
    #[arg(long)]
    failed: Option<PathBuf>,
    /// The batch's idempotency key [default: derived from the file's content
    /// and the targets, and printed].
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Validate every row as a real run would and write the failed-rows file; call no vendor.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// A file holding the bearer token (else REGISTRAR_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Reconnects after a lost connection before giving up.
    #[arg(long, default_value_t = 20)]
    retries: u32,
    /// Users sent and not yet answered, at most.
    #[arg(long, default_value_t = 50_000)]
    max_in_flight: usize,
}

/// How a client command reaches a TLS server: `registrar import` and `registrar health`.
#[derive(clap::Args)]
struct TlsArgs {
    /// The CA certificate (PEM) that signed the server's certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// A client certificate (PEM), for mutual TLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct HealthArgs {
    /// The registrar server's URL (https:// with --ca-file).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The service whose health is checked; "" asks for the server as a whole.
    #[arg(long, default_value = "registrar.v1.RegistrationService")]
    service: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// The name the server's certificate holds, when the URL's host is another.
    #[arg(long)]
    server_name: Option<String>,
}

/// Runs `registrar health`; returns its exit code.
async fn health_command(args: HealthArgs) -> i32 {
    let options = import::connect::ConnectOptions {
        ca_file: args.tls.ca_file,
        cert: args.tls.cert,
        key: args.tls.key,
        token: None,
        server_name: args.server_name,
    };
    match registrar::health_check::check(&args.server, &args.service, &options).await {
        Ok(report) => {
            let checked = if report.service.is_empty() {
                "the server"
            } else {
                report.service.as_str()
            };
            println!("{checked}: {}", report.status.as_str_name());
            println!("services:");
            for service in &report.services {
                println!("  {service}");
            }
            if report.healthy() {
                0
            } else {
                if !report.service.is_empty() && !report.services.contains(&report.service) {
                    eprintln!(
                        "registrar health: reflection does not list {}",
                        report.service
                    );
                }
                1
            }
        }
        Err(message) => {
            eprintln!("registrar health: {message}");
            2
        }
    }
}

/// The bearer token from `--token-file` or `REGISTRAR_TOKEN`.
fn bearer_token(file: Option<&std::path::Path>) -> Result<Option<SecretString>, String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|error| format!("--token-file {}: {error}", path.display()))?,
        None => match std::env::var("REGISTRAR_TOKEN") {
            Ok(token) => token,
            Err(_) => return Ok(None),
        },
    };
    let token = token.trim();
    if token.is_empty() || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err("the bearer token must be printable ASCII without spaces".to_owned());
    }
    Ok(Some(SecretString::from(token.to_owned())))
}

/// Runs `registrar import`; returns its exit code.
async fn import_command(args: ImportArgs) -> i32 {
    let token = match bearer_token(args.token_file.as_deref()) {
        Ok(token) => token,
        Err(message) => {
            eprintln!("registrar import: {message}");
            return 2;
        }
    };
    let options = import::ImportOptions {
        input: args.file,
        server: args.server,
        targets: args.targets,
        format: args.format,
        failed: args.failed,
        idempotency_key: args.idempotency_key,
        dry_run: args.dry_run,
        connection: import::connect::ConnectOptions {
            ca_file: args.tls.ca_file,
            cert: args.tls.cert,
            key: args.tls.key,
            token,
            server_name: None,
        },
        retries: args.retries,
        max_in_flight: args.max_in_flight,
    };
    let run = import::run(options);
    tokio::select! {
        finished = run => match finished {
            Ok(report) => {
                print!("{}", import::progress::summary_table(&report.summary, report.elapsed));
                match &report.failed_file {
                    Some(path) => println!(
                        "rows rejected or failed: {}, written to {} (fix them and import that file)",
                        report.failed_rows,
                        path.display()
                    ),
                    None => println!("no row was rejected or failed"),
                }
                i32::from(report.any_failed)
            }
            Err(error) => {
                eprintln!("registrar import: {error}");
                2
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("registrar import: interrupted; run the same command again to resume");
            130
        }
    }
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
                    config.check_authentication(&path.display().to_string())?;
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
            let health_listener = match config.server.health_listen {
                Some(address) => Some(bind(address).await?),
                None => None,
            };
            let metrics_server = match config.metrics.listen {
                Some(address) => {
                    let listener = bind(address).await?;
                    tracing::info!(local_addr = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
                    Some(tokio::spawn(registrar::metrics::server::serve(
                        listener,
                        std::future::pending(),
                    )))
                }
                None => None,
            };
            serve(
                listener,
                Arc::clone(&engine),
                ServeOptions {
                    max_unary_users: config.server.max_unary_users,
                    shutdown_grace: config.server.shutdown_grace,
                    tls: config.server.tls.clone(),
                    health_listener,
                    callers: config.callers.clone(),
                    limits: config.limits,
                },
                shutdown_signal(),
            )
            .await?;
            // scraped until the drain is over, so the last figures are seen
            if let Some(metrics_server) = metrics_server {
                metrics_server.abort();
            }
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
        Command::Import(args) => std::process::exit(import_command(args).await),
        Command::Health(args) => std::process::exit(health_command(args).await),
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
