//! A configured target at run time: its vendor module, limits, health, and
//! the outbound stack its calls go through.

use std::{
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use crate::{
    config::{ConfigError, TargetConfig, target_identifier},
    domain::VendorKind,
    metrics::TargetMetrics,
    outbound::shared_quota::QuotaKey,
    vendor_api::{
        SharedVendor,
        registry::{CallsInFlight, QuotaAccount},
    },
};

/// How the target's last vendor call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    Unknown = 0,
    Serving = 1,
    Throttled = 2,
    Failing = 3,
}

/// The last-call health of a target, shared between its calls and ListTargets.
#[derive(Debug, Default)]
pub struct HealthCell(AtomicU8);

impl HealthCell {
    pub fn set(&self, health: Health) {
        self.0.store(health as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> Health {
        match self.0.load(Ordering::Relaxed) {
            1 => Health::Serving,
            2 => Health::Throttled,
            3 => Health::Failing,
            _ => Health::Unknown,
        }
    }
}

/// What the engine knows about one target.
pub struct TargetSpec {
    pub name: Arc<str>,
    pub vendor_kind: VendorKind,
    pub vendor: SharedVendor,
    pub max_batch: usize,
    pub qps: NonZeroU32,
    pub timeout: Duration,
    pub linger: Duration,
    pub max_in_flight: usize,
    pub max_attempts: u32,
    /// Spacing added to the quota's permits, as a share.
    pub rate_margin: f64,
    pub health: Arc<HealthCell>,
    /// The quota it spends when the quota is shared: vendor kind, account and API.
    pub quota_key: QuotaKey,
    /// Its metrics, resolved once.
    pub metrics: TargetMetrics,
}

impl TargetSpec {
    /// Builds the vendor module of a target, resolving its credentials.
    pub fn from_config(config: &TargetConfig) -> Result<TargetSpec, ConfigError> {
        let kind = config.vendor_spec();
        let vendor = (kind.build)(config).map_err(|error| config.setting_error(error))?;
        let max_in_flight = match kind.calls_in_flight {
            CallsInFlight::AtMost(limit) => config.max_in_flight.unwrap_or(limit).clamp(1, limit),
            CallsInFlight::FollowQuota => config.max_in_flight().max(1),
        };
        let account = match (&config.quota_account, kind.quota_account) {
            (Some(account), _) => account.clone(),
            (None, QuotaAccount::AppId) => config.app_id.unwrap_or_default().to_string(),
            (None, QuotaAccount::SecretId) => {
                target_identifier(config, "secret_id", &config.secret_id)?
            }
        };
        Ok(TargetSpec {
            quota_key: QuotaKey::new(config.vendor.as_str(), &account, kind.quota_api),
            name: Arc::from(config.name.as_str()),
            vendor_kind: config.vendor,
            vendor,
            max_batch: config.max_batch() as usize,
            qps: NonZeroU32::new(config.qps()).unwrap_or(NonZeroU32::MIN),
            timeout: config.timeout,
            linger: config.linger,
            max_in_flight,
            max_attempts: config.max_attempts.max(1),
            rate_margin: config.rate_margin.clamp(0.0, 0.5),
            health: Arc::default(),
            metrics: TargetMetrics::new(
                &config.name,
                config.vendor,
                config.qps(),
                config.max_batch() as usize,
            ),
        })
    }
}
