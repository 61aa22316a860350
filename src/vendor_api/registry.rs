//! The vendor kinds registrar speaks, one entry each: the kind's static facts
//! (batch cap, default quota, the configuration keys it needs, how many calls
//! may be in flight, its demo account in the simulator) and the function that
//! builds its vendor module from a target's settings.
//!
//! This table is the one place that knows every kind: configuration checks,
//! target construction and the embedded default read it, so adding a vendor
//! kind is its folder under `vendor_api/` plus one entry here. It never reads
//! configuration files or the environment itself: `TargetSettings` hands it
//! what a target configured, resolving credentials only when asked.

use super::{
    SharedVendor,
    settings::{SettingError, TargetSettings},
    tencent::{ciam, ciam_import, lcic},
    volc::rtc,
    zego::zim,
};
use crate::domain::VendorKind;

/// How many vendor calls of one target may be in flight at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallsInFlight {
    /// Configurable; by default enough to use the whole quota at 1 s latency (2 × qps).
    FollowQuota,
    /// The vendor runs at most this many at once (CIAM import jobs per user store);
    /// a configured value is clamped to `1..=limit`, and the default is the limit.
    AtMost(usize),
}

/// What names the vendor account a target's quota belongs to, so that
/// targets on one account and API share one quota across replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaAccount {
    /// The app id: the vendor's quota is per app.
    AppId,
    /// The SecretId/AccessKeyId: the quota is per account, whose key it is.
    SecretId,
}

/// The account a kind has in the embedded simulator. These credentials exist
/// only inside the simulator; they are not secrets.
#[derive(Debug, Clone, Copy)]
pub struct DemoAccount {
    pub app_id: u64,
    pub user_store_id: &'static str,
    pub secret_id: &'static str,
    /// Written into the demo target when set.
    pub region: Option<&'static str>,
}

/// The static facts of one vendor kind and how to build its module.
pub struct VendorKindSpec {
    pub kind: VendorKind,
    /// The vendor's largest batch per call (per import job for CIAM imports).
    pub max_batch: u32,
    /// Whether `max_batch` is the vendor's hard cap: a target may not configure more.
    pub max_batch_is_cap: bool,
    /// The vendor's documented quota in calls per second.
    pub default_qps: u32,
    /// The largest app id the vendor's API accepts.
    pub max_app_id: u64,
    /// The `[[targets]]` keys the kind cannot work without.
    pub required_keys: &'static [&'static str],
    /// The key holding the secret the kind signs with (`secret_key` or `server_secret`).
    pub signing_secret_key: &'static str,
    pub calls_in_flight: CallsInFlight,
    /// The API whose quota the target spends (its registering action).
    pub quota_api: &'static str,
    /// What the quota is counted per.
    pub quota_account: QuotaAccount,
    /// The largest answer read from the vendor, in bytes: many times the
    /// largest answer a full call gets (docs/performance.md#vendor-answer-sizes),
    /// so that a real answer always fits and a runaway one cannot fill memory.
    pub max_response_bytes: usize,
    pub demo: DemoAccount,
    /// Builds the kind's vendor module for one target.
    pub build: fn(&dyn TargetSettings) -> Result<SharedVendor, SettingError>,
}

const TENCENT_KEYS: &[&str] = &["app_id", "secret_id", "secret_key"];
const CIAM_KEYS: &[&str] = &["user_store_id", "region", "secret_id", "secret_key"];

/// Every vendor kind, in the order of `VendorKind::ALL`.
pub static VENDOR_KINDS: [VendorKindSpec; 5] = [
    VendorKindSpec {
        kind: VendorKind::TencentLcic,
        max_batch: lcic::MAX_USERS_PER_CALL as u32,
        max_batch_is_cap: true,
        // docs/vendors/lcic.md#quota: 20 calls/s (some SDK text says 10; configure qps if lower)
        default_qps: 20,
        max_app_id: u64::MAX,
        required_keys: TENCENT_KEYS,
        signing_secret_key: "secret_key",
        calls_in_flight: CallsInFlight::FollowQuota,
        max_response_bytes: 4 << 20,
        demo: DemoAccount {
            app_id: 1_400_000_001,
            user_store_id: "",
            secret_id: "AKIDregistrarDEMOlcic0000000000000000",
            region: None,
        },
        quota_api: lcic::ACTION,
        // docs/vendors/lcic.md#quota: per API and account
        quota_account: QuotaAccount::SecretId,
        build: lcic::from_settings,
    },
    VendorKindSpec {
        kind: VendorKind::ZegoZim,
        max_batch: zim::MAX_USERS_PER_CALL as u32,
        max_batch_is_cap: true,
        default_qps: 20,
        // docs/vendors/zim.md#common-parameters: AppId is a Uint32
        max_app_id: u32::MAX as u64,
        required_keys: &["app_id", "server_secret"],
        signing_secret_key: "server_secret",
        calls_in_flight: CallsInFlight::FollowQuota,
        max_response_bytes: 1 << 20,
        demo: DemoAccount {
            app_id: 1_000_000_001,
            user_store_id: "",
            secret_id: "",
            region: None,
        },
        quota_api: zim::ACTION,
        // docs/vendors/zim.md#quota: per app
        quota_account: QuotaAccount::AppId,
        build: zim::from_settings,
    },
    VendorKindSpec {
        kind: VendorKind::VolcRtc,
        max_batch: rtc::MAX_USERS_PER_CALL as u32,
        max_batch_is_cap: true,
        // docs/vendors/volc-rtc.md#quota: 50 calls/s per account
        default_qps: 50,
        max_app_id: u64::MAX,
        required_keys: TENCENT_KEYS,
        signing_secret_key: "secret_key",
        calls_in_flight: CallsInFlight::FollowQuota,
        max_response_bytes: 256 << 10,
        demo: DemoAccount {
            app_id: 600_000_001,
            user_store_id: "",
            secret_id: "AKLTregistrarDEMOvolc000000000000000",
            region: Some(rtc::DEFAULT_REGION),
        },
        quota_api: rtc::ACTION,
        // docs/vendors/volc-rtc.md#quota: per account, shared by all its AppIds
        quota_account: QuotaAccount::SecretId,
        build: rtc::from_settings,
    },
    VendorKindSpec {
        kind: VendorKind::TencentCiam,
        max_batch: ciam::MAX_USERS_PER_CALL as u32,
        max_batch_is_cap: true,
        default_qps: 20,
        max_app_id: u64::MAX,
        required_keys: CIAM_KEYS,
        signing_secret_key: "secret_key",
        calls_in_flight: CallsInFlight::FollowQuota,
        max_response_bytes: 256 << 10,
        demo: DemoAccount {
            app_id: 1,
            user_store_id: "demo-user-store",
            secret_id: "AKIDregistrarDEMOciam0000000000000000",
            region: Some("ap-guangzhou"),
        },
        quota_api: ciam::ACTION,
        // docs/vendors/ciam.md#quota: per API and account
        quota_account: QuotaAccount::SecretId,
        build: ciam::from_settings,
    },
    VendorKindSpec {
        kind: VendorKind::TencentCiamImport,
        // registrar's policy: the vendor documents no per-job maximum
        max_batch: 1000,
        max_batch_is_cap: false,
        default_qps: 20,
        max_app_id: u64::MAX,
        required_keys: CIAM_KEYS,
        signing_secret_key: "secret_key",
        // docs/vendors/ciam-import.md#concurrent-job-limit: two jobs per user store
        calls_in_flight: CallsInFlight::AtMost(ciam_import::MAX_RUNNING_JOBS),
        max_response_bytes: 4 << 20,
        demo: DemoAccount {
            app_id: 2,
            user_store_id: "demo-import-store",
            secret_id: "AKIDregistrarDEMOciamimport0000000000",
            region: Some("ap-guangzhou"),
        },
        quota_api: ciam_import::ACTION,
        // docs/vendors/ciam-import.md#quota: per action and account
        quota_account: QuotaAccount::SecretId,
        build: ciam_import::from_settings,
    },
];

/// The entry of a vendor kind.
pub fn spec(kind: VendorKind) -> &'static VendorKindSpec {
    VENDOR_KINDS
        .iter()
        .find(|spec| spec.kind == kind)
        .expect("every vendor kind has an entry in VENDOR_KINDS")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::SecretString;

    use super::*;
    use crate::vendor_api::settings::required;

    /// Settings holding exactly the given keys.
    struct Only(HashMap<&'static str, &'static str>);

    impl TargetSettings for Only {
        fn endpoint(&self) -> &str {
            "http://127.0.0.1:1"
        }
        fn app_id(&self) -> Option<u64> {
            self.0.get("app_id").map(|value| value.parse().unwrap())
        }
        fn user_store_id(&self) -> Option<&str> {
            self.0.get("user_store_id").copied()
        }
        fn region(&self) -> Option<&str> {
            self.0.get("region").copied()
        }
        fn identifier(&self, key: &'static str) -> Result<String, SettingError> {
            required(self.0.get(key), key).map(|value| value.to_string())
        }
        fn secret(&self, key: &'static str) -> Result<SecretString, SettingError> {
            required(self.0.get(key), key).map(|value| SecretString::from(*value))
        }
    }

    fn settings(keys: &[&'static str]) -> Only {
        Only(
            keys.iter()
                .map(|key| (*key, if *key == "app_id" { "7" } else { "x" }))
                .collect(),
        )
    }

    #[test]
    fn every_kind_has_one_entry_in_the_order_of_all() {
        let kinds: Vec<VendorKind> = VENDOR_KINDS.iter().map(|spec| spec.kind).collect();
        assert_eq!(kinds, VendorKind::ALL);
    }

    #[test]
    fn the_required_keys_build_each_kind_and_each_one_missing_is_named() {
        for spec in &VENDOR_KINDS {
            let vendor = (spec.build)(&settings(spec.required_keys)).unwrap();
            assert_eq!(vendor.kind(), spec.kind);
            for missing in spec.required_keys {
                let rest: Vec<&'static str> = spec
                    .required_keys
                    .iter()
                    .copied()
                    .filter(|key| key != missing)
                    .collect();
                let error = (spec.build)(&settings(&rest)).err().unwrap();
                assert_eq!(error.key(), *missing, "{}", spec.kind);
            }
        }
    }

    #[test]
    fn the_signing_secret_is_a_required_key() {
        for spec in &VENDOR_KINDS {
            assert!(spec.required_keys.contains(&spec.signing_secret_key));
        }
    }
}
