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
    config::{ConfigError, TargetConfig, target_identifier, target_secret},
    domain::VendorKind,
    vendor_api::{
        SharedVendor,
        tencent::ciam::{CiamConfig, CiamCreateUser},
        tencent::ciam_import::CiamImport,
        tencent::envelope::TencentCredentials,
        tencent::lcic::{Lcic, LcicConfig},
        volc::rtc::{VolcConfig, VolcRtc},
        volc::signing::VolcCredentials,
        zego::zim::{Zim, ZimConfig},
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
}

impl TargetSpec {
    /// Builds the vendor module of a target, resolving its credentials.
    pub fn from_config(config: &TargetConfig) -> Result<TargetSpec, ConfigError> {
        let missing = |key: &str| ConfigError::Missing {
            key: format!("targets.{}.{key}", config.name),
            vendor: config.vendor,
        };
        let tencent_credentials = || -> Result<TencentCredentials, ConfigError> {
            Ok(TencentCredentials {
                secret_id: target_identifier(config, "secret_id", &config.secret_id)?,
                secret_key: target_secret(config, "secret_key", &config.secret_key)?,
            })
        };
        let ciam_config = || -> Result<CiamConfig, ConfigError> {
            Ok(CiamConfig {
                endpoint: config.endpoint.clone(),
                user_store_id: config
                    .user_store_id
                    .clone()
                    .ok_or_else(|| missing("user_store_id"))?,
                region: config.region.clone().ok_or_else(|| missing("region"))?,
                credentials: tencent_credentials()?,
            })
        };
        let vendor: SharedVendor = match config.vendor {
            VendorKind::TencentLcic => Arc::new(Lcic::new(LcicConfig {
                endpoint: config.endpoint.clone(),
                sdk_app_id: config.app_id.ok_or_else(|| missing("app_id"))?,
                region: config.region.clone(),
                credentials: tencent_credentials()?,
            })),
            VendorKind::ZegoZim => Arc::new(Zim::new(ZimConfig {
                endpoint: config.endpoint.clone(),
                app_id: config.app_id.ok_or_else(|| missing("app_id"))?,
                server_secret: target_secret(config, "server_secret", &config.server_secret)?,
            })),
            VendorKind::VolcRtc => Arc::new(VolcRtc::new(VolcConfig {
                endpoint: config.endpoint.clone(),
                app_id: config.app_id.ok_or_else(|| missing("app_id"))?,
                // vendors.md D.1: RTC signs for region cn-north-1 unless overseas
                region: config
                    .region
                    .clone()
                    .unwrap_or_else(|| "cn-north-1".to_owned()),
                credentials: VolcCredentials {
                    access_key_id: target_identifier(config, "secret_id", &config.secret_id)?,
                    secret_access_key: target_secret(config, "secret_key", &config.secret_key)?,
                },
            })),
            VendorKind::TencentCiam => Arc::new(CiamCreateUser::new(ciam_config()?)),
            VendorKind::TencentCiamImport => Arc::new(CiamImport::new(ciam_config()?)),
        };
        // vendors.md B.2: at most two import jobs run at once per user store
        let max_in_flight = match config.vendor {
            VendorKind::TencentCiamImport => config.max_in_flight.unwrap_or(2).clamp(1, 2),
            _ => config.max_in_flight().max(1),
        };
        Ok(TargetSpec {
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
        })
    }
}
