//! Configuration: compiled-in defaults, then a TOML file (`--config`), then
//! environment variables (`REGISTRAR__SECTION__KEY`), then CLI flags.
//!
//! Every key is checked: an unknown key or a missing required one stops
//! start-up with a message naming it. Credentials are written literally or
//! read from a named environment variable or file, and are held as
//! `SecretString` so that no `Debug` output or log line can reveal them.

use std::{collections::HashSet, net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{
    domain::VendorKind,
    vendor_api::{
        registry::{self, VendorKindSpec},
        settings::{SettingError, TargetSettings},
    },
};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// `[[callers]]`: who may call RegistrationService, and with which targets.
    #[serde(default)]
    pub callers: Vec<CallerConfig>,
    /// `[limits]`: what each caller may hold at once, unless its own entry says otherwise.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[metrics]`: the Prometheus metrics listener.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[quota]`: every target's quota shared by the replicas through Redis;
    /// without it each replica paces its targets alone.
    #[serde(default)]
    pub quota: Option<QuotaConfig>,
}

/// `[quota]`: the Redis that keeps every target's quota for all replicas
/// (docs/operations.md#shared-quota).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// `redis://[USER:PASSWORD@]HOST:PORT[/DB]` or `rediss://` for TLS; may
    /// hold a password, so it is a credential.
    pub redis_url: Credential,
    /// A permit (or a heartbeat) Redis does not answer within this counts as
    /// Redis down: the targets pace at their fallback share.
    #[serde(default = "default_permit_timeout", with = "humantime_serde")]
    pub permit_timeout: Duration,
    /// How often this replica beats its heartbeat in Redis; a replica is
    /// counted alive for three intervals after its last beat.
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// The replicas a server assumes before its first heartbeat is
    /// answered (Redis down at start-up): its fallback share is the quota
    /// divided by them. The chart sets the most replicas it may run.
    #[serde(default = "default_fallback_replicas")]
    pub fallback_replicas: u32,
}

fn default_permit_timeout() -> Duration {
    Duration::from_millis(250)
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_fallback_replicas() -> u32 {
    1
}

/// `[metrics]`: where GET /metrics is served (plaintext). Off unless
/// `listen` is set; the embedded default serves it on 127.0.0.1:9464.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// e.g. `0.0.0.0:9464`; none: no metrics listener.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// `[limits]`: what one caller may hold at once. Each caller has its own
/// allowance, so a caller at its limit never slows another; a server without
/// `[[callers]]` applies them to everyone together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Concurrent `BatchRegisterStream` calls.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Concurrent unary `BatchRegister` calls.
    #[serde(default = "default_max_unary_batches")]
    pub max_unary_batches: usize,
    /// Users accepted but not yet answered, across all the caller's batches;
    /// a user sent to several targets counts once per target.
    #[serde(default = "default_max_unanswered_users")]
    pub max_unanswered_users: usize,
    /// The largest gRPC message, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_streams: default_max_streams(),
            max_unary_batches: default_max_unary_batches(),
            max_unanswered_users: default_max_unanswered_users(),
            max_message_bytes: default_max_message_bytes(),
        }
    }
}

fn default_max_streams() -> usize {
    64
}

fn default_max_unary_batches() -> usize {
    4096
}

fn default_max_unanswered_users() -> usize {
    200_000
}

fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}

/// `[callers.limits]`: a caller's own limits, where they differ from `[limits]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerLimitsConfig {
    pub max_streams: Option<usize>,
    pub max_unary_batches: Option<usize>,
    pub max_unanswered_users: Option<usize>,
    pub max_message_bytes: Option<usize>,
}

impl CallerLimitsConfig {
    /// This caller's limits: its own where set, else the server's.
    pub fn over(&self, defaults: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            max_streams: self.max_streams.unwrap_or(defaults.max_streams),
            max_unary_batches: self.max_unary_batches.unwrap_or(defaults.max_unary_batches),
            max_unanswered_users: self
                .max_unanswered_users
                .unwrap_or(defaults.max_unanswered_users),
            max_message_bytes: self.max_message_bytes.unwrap_or(defaults.max_message_bytes),
        }
    }
}

/// `[[callers]]`: one caller, known by a bearer token's SHA-256, a client
/// certificate's identity, or both; the targets it may use; whether it may
/// read every batch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    pub name: String,
    /// Hex SHA-256 of the caller's bearer token (the token itself is never configured).
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// A DNS or URI subject alternative name of the caller's client
    /// certificate (mutual TLS), e.g. a SPIFFE id.
    #[serde(default)]
    pub tls_identity: Option<String>,
    /// Target names or `*` patterns the caller may use.
    pub targets: Vec<String>,
    /// May read every caller's batches and rows.
    #[serde(default)]
    pub admin: bool,
    /// Limits of this caller that differ from `[limits]`.
    #[serde(default)]
    pub limits: CallerLimitsConfig,
}

/// `[server]`: the gRPC listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The gRPC listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How long in-flight vendor calls and audit writes may take to finish after SIGTERM.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The largest unary `BatchRegister`; larger batches must use `BatchRegisterStream`.
    #[serde(default = "default_max_unary_users")]
    pub max_unary_users: usize,
    /// This server's name among the replicas sharing one audit store; unique
    /// per running server. A server that starts under the name of one that
    /// ran before takes over that run's batches at once. Default: the host name.
    #[serde(default)]
    pub instance_name: Option<String>,
    /// How long a running batch stays owned by its server without a renewal:
    /// a batch whose server stopped renewing (a crash) becomes interrupted,
    /// and resumable, after this long.
    #[serde(default = "default_batch_lease", with = "humantime_serde")]
    pub batch_lease: Duration,
    /// A second, plaintext listener serving only grpc.health.v1.Health, for
    /// probes that cannot speak TLS (Kubernetes' gRPC probes). Off when unset.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    /// `[server.tls]`: TLS on the gRPC port; plaintext when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Serve every client that reaches the port when no `[[callers]]` are
    /// configured; without it such a configuration refuses to start.
    #[serde(default)]
    pub allow_unauthenticated: bool,
}

/// `[server.tls]`: the server's certificate and key, and the CA whose client
/// certificates are required (mutual TLS) when `client_ca_file` is set. All
/// PEM; read again when they change on disk.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            shutdown_grace: default_shutdown_grace(),
            max_unary_users: default_max_unary_users(),
            instance_name: None,
            batch_lease: default_batch_lease(),
            health_listen: None,
            tls: None,
            allow_unauthenticated: false,
        }
    }
}

impl ServerConfig {
    /// `instance_name`, else the host name, else a name of this run alone.
    pub fn instance_name(&self) -> String {
        if let Some(name) = self
            .instance_name
            .as_deref()
            .filter(|name| !name.is_empty())
        {
            return name.to_owned();
        }
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| format!("registrar-{}", uuid::Uuid::new_v4()))
    }
}

fn default_batch_lease() -> Duration {
    Duration::from_secs(30)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 50051))
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}

fn default_max_unary_users() -> usize {
    10_000
}

/// `[audit]`: where audit rows go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `sqlite://PATH?mode=rwc` (default `sqlite://registrar.db?mode=rwc`) or
    /// `postgres://USER:PASSWORD@HOST/DB`; may hold a password, so it is a credential.
    #[serde(default = "default_database_url")]
    pub database_url: Credential,
    /// Largest number of pooled database connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            database_url: default_database_url(),
            max_connections: default_max_connections(),
        }
    }
}

fn default_database_url() -> Credential {
    Credential::Literal("sqlite://registrar.db?mode=rwc".to_owned())
}

fn default_max_connections() -> u32 {
    8
}

/// `[telemetry]`: logs and traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// An OTLP/gRPC collector, e.g. `http://otel-collector:4317`; traces are exported when set.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The share of traces sampled where the caller's traceparent does not
    /// decide (parent-based): 0 to 1, 1 by default.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

fn default_sample_ratio() -> f64 {
    1.0
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_format: LogFormat::default(),
            otlp_endpoint: None,
            sample_ratio: default_sample_ratio(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[[targets]]`: one vendor account or app that callers can name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// What callers put in `targets`.
    pub name: String,
    pub vendor: VendorKind,
    /// The vendor's base URL (e.g. `https://lcic.tencentcloudapi.com`), or a simulator's.
    pub endpoint: String,
    /// LCIC SdkAppId, ZIM AppId, Volcengine AppId.
    #[serde(default)]
    pub app_id: Option<u64>,
    /// CIAM user store.
    #[serde(default)]
    pub user_store_id: Option<String>,
    /// The vendor account whose quota the target spends, when it is not what
    /// the vendor kind counts it by (the app id for ZIM, the SecretId for
    /// the others): targets with the same `quota_account`, vendor kind and
    /// API share one quota in `[quota]`'s Redis.
    #[serde(default)]
    pub quota_account: Option<String>,
    /// Tencent X-TC-Region (required by CIAM), Volcengine region (default cn-north-1).
    #[serde(default)]
    pub region: Option<String>,
    /// Tencent SecretId, Volcengine AccessKeyId.
    #[serde(default)]
    pub secret_id: Option<Credential>,
    /// Tencent SecretKey, Volcengine SecretAccessKey.
    #[serde(default)]
    pub secret_key: Option<Credential>,
    /// ZEGO ServerSecret.
    #[serde(default)]
    pub server_secret: Option<Credential>,
    /// Vendor calls per second (default: the vendor's documented quota).
    #[serde(default)]
    pub qps: Option<u32>,
    /// Users per vendor call (default and maximum: the vendor's cap).
    #[serde(default)]
    pub max_batch: Option<u32>,
    /// Per-call timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a partly filled batch waits for more users.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// Vendor calls in flight at once (default: enough to use the whole quota at 1 s latency).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Attempts per user, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Spacing added to the quota's permits, as a share (0.02 = 2 %): room
    /// for the time between a send and the vendor counting the call. Must be
    /// in [0, 0.5]; the target then uses at most `qps / (1 + rate_margin)`.
    #[serde(default = "default_rate_margin")]
    pub rate_margin: f64,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_linger() -> Duration {
    Duration::from_millis(5)
}

fn default_max_attempts() -> u32 {
    4
}

fn default_rate_margin() -> f64 {
    0.02
}

impl TargetConfig {
    /// The entry of this target's vendor kind.
    pub fn vendor_spec(&self) -> &'static VendorKindSpec {
        registry::spec(self.vendor)
    }

    pub fn qps(&self) -> u32 {
        self.qps.unwrap_or(self.vendor_spec().default_qps)
    }

    pub fn max_batch(&self) -> u32 {
        self.max_batch.unwrap_or(self.vendor_spec().max_batch)
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
            .unwrap_or_else(|| (self.qps() as usize).max(1) * 2)
    }
}

/// A secret: written literally, or read from an environment variable or a file.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum Credential {
    Literal(String),
    Env { env: String },
    File { file: PathBuf },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Literal(_) => formatter.write_str("Credential::Literal([redacted])"),
            Credential::Env { env } => write!(formatter, "Credential::Env({env})"),
            Credential::File { file } => write!(formatter, "Credential::File({})", file.display()),
        }
    }
}

impl Credential {
    /// Reads the secret; `key` names it in errors (never the value).
    pub fn resolve(&self, key: &str) -> Result<SecretString, ConfigError> {
        let value = match self {
            Credential::Literal(value) => value.clone(),
            Credential::Env { env } => std::env::var(env).map_err(|_| ConfigError::Invalid {
                key: key.to_owned(),
                reason: format!("environment variable {env} is not set"),
            })?,
            Credential::File { file } => std::fs::read_to_string(file)
                .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|error| ConfigError::Invalid {
                    key: key.to_owned(),
                    reason: format!("cannot read {}: {error}", file.display()),
                })?,
        };
        if value.is_empty() {
            return Err(ConfigError::Invalid {
                key: key.to_owned(),
                reason: "is empty".to_owned(),
            });
        }
        Ok(SecretString::from(value))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: {key} is required for vendor {vendor}")]
    Missing { key: String, vendor: VendorKind },
    #[error("configuration: {key} {reason}")]
    Invalid { key: String, reason: String },
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        // figment names the key and the file; join all errors so none is hidden
        ConfigError::Parse(
            error
                .into_iter()
                .map(|error| error.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

/// Values given on the command line; they override the file and the environment.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CliOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Config {
    /// Loads the layers: the TOML text (file or embedded), then `REGISTRAR__*`, then the CLI.
    pub fn load(
        toml_file: Option<&std::path::Path>,
        embedded_toml: Option<&str>,
        overrides: &CliOverrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(text) = embedded_toml {
            figment = figment.merge(Toml::string(text));
        }
        if let Some(path) = toml_file {
            if !path.exists() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("REGISTRAR__").split("__"));
        if let Some(listen) = overrides.listen {
            figment = figment.merge(Serialized::default("server.listen", listen.to_string()));
        }
        if let Some(url) = &overrides.database_url {
            figment = figment.merge(Serialized::default("audit.database_url", url));
        }
        let config: Config = figment.extract()?;
        config.check()?;
        Ok(config)
    }

    /// Checks what serde cannot: unique names, per-vendor required keys, caps.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.check_targets()?;
        self.check_callers()?;
        self.check_limits()?;
        self.check_quota()?;
        let ratio = self.telemetry.sample_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ConfigError::Invalid {
                key: "telemetry.sample_ratio".to_owned(),
                reason: format!("must be between 0 and 1 (got {ratio})"),
            });
        }
        Ok(())
    }

    /// The shared quota's timings and replica count can work.
    fn check_quota(&self) -> Result<(), ConfigError> {
        let Some(quota) = &self.quota else {
            return Ok(());
        };
        let invalid = |field: &str, reason: &str| ConfigError::Invalid {
            key: format!("quota.{field}"),
            reason: reason.to_owned(),
        };
        if quota.permit_timeout < Duration::from_millis(1)
            || quota.permit_timeout > Duration::from_secs(10)
        {
            return Err(invalid("permit_timeout", "must be between 1ms and 10s"));
        }
        if quota.heartbeat_interval < Duration::from_millis(100)
            || quota.heartbeat_interval > Duration::from_secs(60)
        {
            return Err(invalid(
                "heartbeat_interval",
                "must be between 100ms and 60s",
            ));
        }
        if quota.fallback_replicas == 0 {
            return Err(invalid("fallback_replicas", "must be at least 1"));
        }
        Ok(())
    }

    /// Every limit, the server's and each caller's, lets at least one call through.
    fn check_limits(&self) -> Result<(), ConfigError> {
        let mut all = vec![("limits".to_owned(), self.limits)];
        for (position, caller) in self.callers.iter().enumerate() {
            all.push((
                format!("callers[{position}].limits"),
                caller.limits.over(&self.limits),
            ));
        }
        for (section, limits) in all {
            let invalid = |field: &str, reason: &str| ConfigError::Invalid {
                key: format!("{section}.{field}"),
                reason: reason.to_owned(),
            };
            for (field, value) in [
                ("max_streams", limits.max_streams),
                ("max_unary_batches", limits.max_unary_batches),
                ("max_unanswered_users", limits.max_unanswered_users),
            ] {
                if value == 0 {
                    return Err(invalid(field, "must be at least 1"));
                }
                if value > tokio::sync::Semaphore::MAX_PERMITS {
                    return Err(invalid(field, "is larger than this server can count"));
                }
            }
            if limits.max_message_bytes < 1024 || limits.max_message_bytes > 1 << 30 {
                return Err(invalid(
                    "max_message_bytes",
                    "must be between 1024 and 1073741824 (1 GiB)",
                ));
            }
        }
        Ok(())
    }

    /// A config file must say who may call: `[[callers]]`, or
    /// `[server] allow_unauthenticated = true` to serve anyone.
    pub fn check_authentication(&self, file: &str) -> Result<(), ConfigError> {
        if self.callers.is_empty() && !self.server.allow_unauthenticated {
            return Err(ConfigError::Invalid {
                key: "callers".to_owned(),
                reason: format!(
                    "are missing in {file}: any client that reaches the port could spend every target's quota and read every user's rows. \
                     Add [[callers]] entries (name, token_sha256 or tls_identity, targets; see docs/security.md), \
                     or set [server] allow_unauthenticated = true to serve every client on purpose"
                ),
            });
        }
        Ok(())
    }

    fn check_callers(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (position, caller) in self.callers.iter().enumerate() {
            let invalid = |field: &str, reason: String| ConfigError::Invalid {
                key: format!("callers[{position}].{field}"),
                reason,
            };
            if caller.name.is_empty()
                || !caller
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(invalid(
                    "name",
                    format!("{:?} must be letters, digits, '.', '_' or '-'", caller.name),
                ));
            }
            if !names.insert(caller.name.as_str()) {
                return Err(invalid(
                    "name",
                    format!("{:?} is used by more than one caller", caller.name),
                ));
            }
            if caller.token_sha256.is_none() && caller.tls_identity.is_none() {
                return Err(invalid(
                    "token_sha256",
                    "or tls_identity is required: how the caller is known".to_owned(),
                ));
            }
            if let Some(hash) = &caller.token_sha256
                && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(invalid(
                    "token_sha256",
                    "must be 64 hex digits, the SHA-256 of the token (`printf %s TOKEN | sha256sum`)"
                        .to_owned(),
                ));
            }
            if caller.tls_identity.as_deref() == Some("") {
                return Err(invalid("tls_identity", "must not be empty".to_owned()));
            }
            if caller.targets.is_empty() {
                return Err(invalid(
                    "targets",
                    "must name at least one target".to_owned(),
                ));
            }
            for pattern in &caller.targets {
                if !self
                    .targets
                    .iter()
                    .any(|target| crate::domain::matches_pattern(pattern, &target.name))
                {
                    return Err(invalid(
                        "targets",
                        format!("{pattern:?} matches no configured target"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_targets(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (position, target) in self.targets.iter().enumerate() {
            let key = |field: &str| format!("targets[{position}].{field}");
            if target.name.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    key: key("name"),
                    reason: "must not be empty".to_owned(),
                });
            }
            if !names.insert(target.name.as_str()) {
                return Err(ConfigError::Invalid {
                    key: key("name"),
                    reason: format!("{:?} is used by more than one target", target.name),
                });
            }
            crate::vendor_api::endpoint_uri(&target.endpoint).map_err(|error| {
                ConfigError::Invalid {
                    key: key("endpoint"),
                    reason: error.to_string(),
                }
            })?;
            let missing = |field: &str| ConfigError::Missing {
                key: format!("targets[{position}].{field} (target {:?})", target.name),
                vendor: target.vendor,
            };
            let spec = target.vendor_spec();
            for field in spec.required_keys {
                if !target.configures(field) {
                    return Err(missing(field));
                }
            }
            if target.app_id.is_some_and(|app_id| app_id > spec.max_app_id) {
                return Err(ConfigError::Invalid {
                    key: key("app_id"),
                    reason: format!(
                        "must fit in {} bits for {}",
                        u64::BITS - spec.max_app_id.leading_zeros(),
                        target.vendor
                    ),
                });
            }
            let cap = spec.max_batch;
            match target.max_batch {
                Some(0) => {
                    return Err(ConfigError::Invalid {
                        key: key("max_batch"),
                        reason: "must be at least 1".to_owned(),
                    });
                }
                Some(max_batch) if max_batch > cap && spec.max_batch_is_cap => {
                    return Err(ConfigError::Invalid {
                        key: key("max_batch"),
                        reason: format!("{max_batch} is above the {} cap of {cap}", target.vendor),
                    });
                }
                _ => {}
            }
            if target.qps == Some(0) {
                return Err(ConfigError::Invalid {
                    key: key("qps"),
                    reason: "must be at least 1".to_owned(),
                });
            }
            if target.max_attempts == 0 {
                return Err(ConfigError::Invalid {
                    key: key("max_attempts"),
                    reason: "must be at least 1".to_owned(),
                });
            }
            if !(0.0..=0.5).contains(&target.rate_margin) {
                return Err(ConfigError::Invalid {
                    key: key("rate_margin"),
                    reason: format!("must be between 0 and 0.5 (got {})", target.rate_margin),
                });
            }
        }
        Ok(())
    }

    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|target| target.name == name)
    }
}

/// Resolves a required credential of a target, naming the key on error.
pub fn target_secret(
    target: &TargetConfig,
    field: &'static str,
    credential: &Option<Credential>,
) -> Result<SecretString, ConfigError> {
    let key = format!("targets.{}.{field}", target.name);
    credential
        .as_ref()
        .ok_or_else(|| ConfigError::Missing {
            key: key.clone(),
            vendor: target.vendor,
        })?
        .resolve(&key)
}

/// A credential that is not secret on its own (a SecretId), resolved to plain text.
pub fn target_identifier(
    target: &TargetConfig,
    field: &'static str,
    credential: &Option<Credential>,
) -> Result<String, ConfigError> {
    target_secret(target, field, credential).map(|secret| secret.expose_secret().to_owned())
}

impl TargetConfig {
    /// The credential configured under `key`, if the key names one.
    fn credential(&self, key: &str) -> &Option<Credential> {
        match key {
            "secret_id" => &self.secret_id,
            "secret_key" => &self.secret_key,
            "server_secret" => &self.server_secret,
            _ => &None,
        }
    }

    /// Whether the target sets `key` at all (a credential is not resolved here).
    fn configures(&self, key: &str) -> bool {
        match key {
            "app_id" => self.app_id.is_some(),
            "user_store_id" => self.user_store_id.is_some(),
            "region" => self.region.is_some(),
            _ => self.credential(key).is_some(),
        }
    }

    /// A vendor-module setting error as a configuration error naming the target's key.
    pub fn setting_error(&self, error: SettingError) -> ConfigError {
        let key = format!("targets.{}.{}", self.name, error.key());
        match error {
            SettingError::Missing { .. } => ConfigError::Missing {
                key,
                vendor: self.vendor,
            },
            SettingError::Invalid { reason, .. } => ConfigError::Invalid { key, reason },
        }
    }
}

/// A configuration error met while resolving `key`, as a vendor-module setting error.
fn setting_error_of(key: &'static str, error: ConfigError) -> SettingError {
    match error {
        ConfigError::Missing { .. } => SettingError::Missing { key },
        ConfigError::Invalid { reason, .. } => SettingError::Invalid { key, reason },
        ConfigError::Parse(reason) => SettingError::Invalid { key, reason },
    }
}

impl TargetSettings for TargetConfig {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn app_id(&self) -> Option<u64> {
        self.app_id
    }

    fn user_store_id(&self) -> Option<&str> {
        self.user_store_id.as_deref()
    }

    fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    fn identifier(&self, key: &'static str) -> Result<String, SettingError> {
        target_identifier(self, key, self.credential(key))
            .map_err(|error| setting_error_of(key, error))
    }

    fn secret(&self, key: &'static str) -> Result<SecretString, SettingError> {
        target_secret(self, key, self.credential(key)).map_err(|error| setting_error_of(key, error))
    }
}

#[cfg(test)]
// figment::Jail's closures return figment::Error, which is large; that is its API
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    /// Loads inside a figment jail, so that tests setting `REGISTRAR__*` never leak into it.
    fn load(text: &str) -> Result<Config, ConfigError> {
        let mut loaded = None;
        figment::Jail::expect_with(|_| {
            loaded = Some(Config::load(None, Some(text), &CliOverrides::default()));
            Ok(())
        });
        loaded.expect("the jail ran the closure")
    }

    const LCIC: &str = r#"
        [[targets]]
        name = "lcic"
        vendor = "tencent-lcic"
        endpoint = "https://lcic.tencentcloudapi.com"
        app_id = 1400000000
        secret_id = "AKIDexample"
        secret_key = { env = "REGISTRAR_TEST_UNSET_VARIABLE" }
    "#;

    #[test]
    fn the_example_file_loads_with_its_limits() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join("registrar.example.toml");
        let config = Config::load(Some(&path), None, &CliOverrides::default()).unwrap();
        assert_eq!(
            config.limits,
            LimitsConfig::default(),
            "it shows the defaults"
        );
        assert!(config.check_authentication("example").is_ok());
    }

    /// The `config: |` block of a Helm values file, unindented.
    fn chart_config(values_file: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("helm/registrar")
            .join(values_file);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines().skip_while(|line| *line != "config: |").skip(1);
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|line| line.is_empty() || line.starts_with("  "))
            .map(|line| line.strip_prefix("  ").unwrap_or(line))
            .collect();
        assert!(!block.is_empty(), "{values_file} has a config block");
        block.join("\n")
    }

    #[test]
    fn the_charts_configs_load() {
        // the default: callers are the installer's to add (NOTES.txt says so)
        let default = chart_config("values.yaml");
        let config = Config::load(None, Some(&default), &CliOverrides::default()).unwrap();
        assert_eq!(config.targets.len(), 1);
        assert!(config.check_authentication("values.yaml").is_err());
        // the production-like CI values: callers by client certificate, OTLP
        let production = chart_config("ci/production-values.yaml");
        let config = Config::load(None, Some(&production), &CliOverrides::default()).unwrap();
        assert!(
            config
                .check_authentication("production-values.yaml")
                .is_ok()
        );
        assert!(config.telemetry.otlp_endpoint.is_some());
    }

    #[test]
    fn limits_default_per_caller_and_zero_is_refused() {
        let hash = "a".repeat(64);
        let with = |limits: &str, caller_limits: &str| {
            load(&format!(
                "{LCIC}\n[limits]\n{limits}\n[[callers]]\nname = \"a\"\ntoken_sha256 = \"{hash}\"\ntargets = [\"*\"]\n[callers.limits]\n{caller_limits}\n"
            ))
        };
        let config = with("max_streams = 3", "max_unanswered_users = 7").unwrap();
        let own = config.callers[0].limits.over(&config.limits);
        assert_eq!(own.max_streams, 3, "from [limits]");
        assert_eq!(own.max_unanswered_users, 7, "its own");
        assert_eq!(own.max_message_bytes, 4 * 1024 * 1024, "the default");
        for (limits, caller_limits, key) in [
            ("max_streams = 0", "", "limits.max_streams"),
            (
                "",
                "max_unary_batches = 0",
                "callers[0].limits.max_unary_batches",
            ),
            ("max_message_bytes = 10", "", "limits.max_message_bytes"),
        ] {
            let refused = with(limits, caller_limits).unwrap_err().to_string();
            assert!(refused.contains(key), "{refused}");
        }
        assert!(
            with("max_stream = 1", "").is_err(),
            "an unknown key is refused"
        );
    }

    #[test]
    fn callers_are_checked_and_a_file_without_them_must_say_it_is_open() {
        let hash = "a".repeat(64);
        let caller = |extra: &str| format!("{LCIC}\n[[callers]]\nname = \"a\"\n{extra}");
        let ok = load(&caller(&format!(
            "token_sha256 = \"{hash}\"\ntargets = [\"lc*\"]"
        )))
        .unwrap();
        assert_eq!(ok.callers[0].targets, ["lc*"]);
        assert!(ok.check_authentication("f.toml").is_ok());
        for (extra, key, says) in [
            (
                "targets = [\"lcic\"]",
                "callers[0].token_sha256",
                "tls_identity",
            ),
            (
                "token_sha256 = \"abc\"\ntargets = [\"lcic\"]",
                "callers[0].token_sha256",
                "64 hex",
            ),
            (
                &format!("token_sha256 = \"{hash}\"\ntargets = [\"zim*\"]") as &str,
                "callers[0].targets",
                "matches no configured target",
            ),
            (
                &format!("token_sha256 = \"{hash}\"\ntargets = []") as &str,
                "callers[0].targets",
                "at least one",
            ),
        ] {
            let error = load(&caller(extra)).unwrap_err().to_string();
            assert!(
                error.contains(key) && error.contains(says),
                "{extra}: {error}"
            );
        }
        let open = load(LCIC).unwrap();
        let refused = open.check_authentication("f.toml").unwrap_err().to_string();
        assert!(
            refused.contains("[[callers]]") && refused.contains("allow_unauthenticated = true")
        );
        let allowed = load(&format!("[server]\nallow_unauthenticated = true\n{LCIC}")).unwrap();
        assert!(allowed.check_authentication("f.toml").is_ok());
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let config = load(LCIC).unwrap();
        assert_eq!(config.server.listen, "0.0.0.0:50051".parse().unwrap());
        assert_eq!(config.server.shutdown_grace, Duration::from_secs(30));
        let target = &config.targets[0];
        assert_eq!(target.vendor, VendorKind::TencentLcic);
        assert_eq!(target.qps(), 20);
        assert_eq!(target.max_batch(), 1000);
        assert_eq!(target.timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_rate_margin_outside_its_range_is_refused() {
        let error = load(
            "[[targets]]\nname = \"t\"\nvendor = \"zego-zim\"\nendpoint = \"http://127.0.0.1:1\"\n\
             app_id = 1\nserver_secret = \"s\"\nrate_margin = 0.8\n",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "configuration: targets[0].rate_margin must be between 0 and 0.5 (got 0.8)"
        );
    }

    #[test]
    fn an_unknown_key_is_named() {
        let error = load("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(error.to_string().contains("lisen"), "{error}");
        let error = load(&format!("{LCIC}\nsecret_kee = \"x\"\n")).unwrap_err();
        assert!(error.to_string().contains("secret_kee"), "{error}");
    }

    #[test]
    fn a_missing_required_key_is_named() {
        let error = load(
            r#"[[targets]]
            name = "lcic"
            vendor = "tencent-lcic"
            endpoint = "https://lcic.tencentcloudapi.com"
            secret_id = "a"
            secret_key = "b""#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("app_id"), "{error}");
        let error = load("[[targets]]\nname = \"x\"\nvendor = \"tencent-lcic\"\n").unwrap_err();
        assert!(error.to_string().contains("endpoint"), "{error}");
    }

    #[test]
    fn an_unknown_vendor_and_a_cap_above_the_vendor_are_refused() {
        let error = load(&LCIC.replace("tencent-lcic", "tencent-lcc")).unwrap_err();
        assert!(error.to_string().contains("tencent-lcc"), "{error}");
        let error = load(&format!("{LCIC}\nmax_batch = 1001\n")).unwrap_err();
        assert!(error.to_string().contains("max_batch"), "{error}");
    }

    #[test]
    fn credentials_resolve_from_env_and_never_print() {
        let config = load(LCIC).unwrap();
        let target = &config.targets[0];
        let error = target_secret(target, "secret_key", &target.secret_key).unwrap_err();
        assert!(error.to_string().contains("REGISTRAR_TEST_UNSET_VARIABLE"));
        let literal = Credential::Literal("hunter2".to_owned());
        assert!(!format!("{literal:?}").contains("hunter2"));
        assert!(!format!("{config:?}").contains("AKIDexample"));
    }

    #[test]
    fn the_shared_quota_loads_with_its_defaults_and_refuses_timings_that_cannot_work() {
        let load = |quota: &str| load(&format!("{LCIC}\n[quota]\n{quota}\n"));
        let config = load(r#"redis_url = { env = "REGISTRAR_REDIS_URL" }"#).unwrap();
        let quota = config.quota.unwrap();
        assert_eq!(quota.permit_timeout, Duration::from_millis(250));
        assert_eq!(quota.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(quota.fallback_replicas, 1);
        assert!(load("").unwrap_err().to_string().contains("redis_url"));
        for (setting, key) in [
            ("permit_timeout = \"0s\"", "quota.permit_timeout"),
            ("heartbeat_interval = \"10ms\"", "quota.heartbeat_interval"),
            ("fallback_replicas = 0", "quota.fallback_replicas"),
        ] {
            let error = load(&format!("redis_url = \"redis://127.0.0.1:1\"\n{setting}"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{setting}: {error}");
        }
    }

    #[test]
    fn credentials_resolve_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cret\n").unwrap();
        let credential = Credential::File { file: path };
        assert_eq!(credential.resolve("k").unwrap().expose_secret(), "s3cret");
    }

    #[test]
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REGISTRAR__SERVER__LISTEN", "127.0.0.1:6000");
            jail.set_env(
                "REGISTRAR__AUDIT__DATABASE_URL",
                "sqlite://other.db?mode=rwc",
            );
            let config = Config::load(None, Some(LCIC), &CliOverrides::default()).unwrap();
            assert_eq!(config.server.listen, "127.0.0.1:6000".parse().unwrap());
            let url = config
                .audit
                .database_url
                .resolve("audit.database_url")
                .unwrap();
            assert_eq!(url.expose_secret(), "sqlite://other.db?mode=rwc");
            Ok(())
        });
    }

    #[test]
    fn cli_overrides_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REGISTRAR__SERVER__LISTEN", "127.0.0.1:6000");
            let overrides = CliOverrides {
                listen: Some("127.0.0.1:7000".parse().unwrap()),
                database_url: None,
            };
            let config = Config::load(None, Some(LCIC), &overrides).unwrap();
            assert_eq!(config.server.listen, "127.0.0.1:7000".parse().unwrap());
            Ok(())
        });
    }
}
