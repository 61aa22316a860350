//! The tests' vendor accounts, one builder for every vendor kind: the same
//! account as the simulator holds it (`sim`) and as a registrar target names
//! it (`target`), so the two sides always agree.

use registrar::{domain::VendorKind, sim::SimAccount};
use secrecy::SecretString;

/// One account at a vendor: the simulator's side and registrar's target share it.
#[derive(Clone, Copy, Debug)]
pub struct TestAccount {
    pub vendor: VendorKind,
    /// LCIC SdkAppId, ZIM AppId, Volcengine AppId; the simulator's key for CIAM.
    pub app_id: u64,
    /// CIAM (CreateUser and import) only.
    pub user_store_id: &'static str,
    /// CIAM (CreateUser and import) only.
    pub region: &'static str,
    /// Empty for ZIM, which signs with its ServerSecret alone.
    pub secret_id: &'static str,
    /// The secret key, or ZIM's ServerSecret.
    pub secret_key: &'static str,
}

pub const LCIC_APP_ID: u64 = 1_400_000_042;
pub const LCIC_SECRET_ID: &str = "AKIDtestLCIC000000000000000000000000";
pub const LCIC_SECRET_KEY: &str = "test-lcic-secret-key-never-logged";

pub const ZIM_APP_ID: u64 = 1_234_567_890;
pub const ZIM_SERVER_SECRET: &str = "test-zim-server-secret-never-logged";

pub const VOLC_APP_ID: u64 = 2_000_123;
pub const VOLC_ACCESS_KEY_ID: &str = "AKLTtestVolcRTC0000000000000000000000";
pub const VOLC_SECRET_ACCESS_KEY: &str = "test-volc-secret-access-key-never-logged";

pub const CIAM_REGION: &str = "ap-guangzhou";

pub const LCIC: TestAccount = TestAccount {
    vendor: VendorKind::TencentLcic,
    app_id: LCIC_APP_ID,
    user_store_id: "",
    region: "",
    secret_id: LCIC_SECRET_ID,
    secret_key: LCIC_SECRET_KEY,
};

pub const ZIM: TestAccount = TestAccount {
    vendor: VendorKind::ZegoZim,
    app_id: ZIM_APP_ID,
    user_store_id: "",
    region: "",
    secret_id: "",
    secret_key: ZIM_SERVER_SECRET,
};

pub const VOLC: TestAccount = TestAccount {
    vendor: VendorKind::VolcRtc,
    app_id: VOLC_APP_ID,
    user_store_id: "",
    region: "",
    secret_id: VOLC_ACCESS_KEY_ID,
    secret_key: VOLC_SECRET_ACCESS_KEY,
};

impl TestAccount {
    /// A CIAM CreateUser account; each test names its own user store and keys.
    pub const fn ciam(
        app_id: u64,
        user_store_id: &'static str,
        secret_id: &'static str,
        secret_key: &'static str,
    ) -> TestAccount {
        TestAccount {
            vendor: VendorKind::TencentCiam,
            app_id,
            user_store_id,
            region: CIAM_REGION,
            secret_id,
            secret_key,
        }
    }

    /// The same user store and keys, for import jobs (`tencent-ciam-import`).
    pub const fn import(self) -> TestAccount {
        TestAccount {
            vendor: VendorKind::TencentCiamImport,
            ..self
        }
    }

    /// The simulator's account, answering at most `qps` calls a second.
    pub fn sim(&self, qps: u32) -> SimAccount {
        SimAccount {
            vendor: self.vendor,
            app_id: self.app_id,
            user_store_id: self.user_store_id.to_owned(),
            secret_id: self.secret_id.to_owned(),
            secret_key: SecretString::from(self.secret_key),
            qps,
        }
    }

    /// A `[[targets]]` table for this account at `endpoint`; `extra` is appended TOML.
    pub fn target(&self, name: &str, endpoint: &str, extra: &str) -> String {
        let secret = format!("\"{}\"", self.secret_key);
        self.target_with_secret(name, endpoint, &secret, extra)
    }

    /// As [`TestAccount::target`], with `secret` the TOML value of the secret
    /// key (e.g. `{ env = "NAME" }`).
    pub fn target_with_secret(
        &self,
        name: &str,
        endpoint: &str,
        secret: &str,
        extra: &str,
    ) -> String {
        let vendor = self.vendor.as_str();
        let credentials = match self.vendor {
            VendorKind::TencentLcic | VendorKind::VolcRtc => format!(
                "app_id = {}\nsecret_id = \"{}\"\nsecret_key = {secret}\n",
                self.app_id, self.secret_id
            ),
            VendorKind::ZegoZim => {
                format!("app_id = {}\nserver_secret = {secret}\n", self.app_id)
            }
            VendorKind::TencentCiam | VendorKind::TencentCiamImport => format!(
                "user_store_id = \"{}\"\nregion = \"{}\"\nsecret_id = \"{}\"\nsecret_key = {secret}\n",
                self.user_store_id, self.region, self.secret_id
            ),
        };
        format!(
            "[[targets]]\nname = \"{name}\"\nvendor = \"{vendor}\"\nendpoint = \"{endpoint}\"\n\
             {credentials}{extra}\n"
        )
    }
}

pub fn lcic_account(qps: u32) -> SimAccount {
    LCIC.sim(qps)
}

/// An LCIC target at `endpoint` with the test credentials; `extra` is appended TOML.
pub fn lcic_target(name: &str, endpoint: &str, extra: &str) -> String {
    LCIC.target(name, endpoint, extra)
}

pub fn zim_account(qps: u32) -> SimAccount {
    ZIM.sim(qps)
}

/// A ZIM target at `endpoint` with the test AppId and ServerSecret; `extra` is appended TOML.
pub fn zim_target(name: &str, endpoint: &str, extra: &str) -> String {
    ZIM.target(name, endpoint, extra)
}

pub fn volc_account(qps: u32) -> SimAccount {
    VOLC.sim(qps)
}

/// A volc-rtc target with the test credentials; `extra` is appended TOML (e.g. `region`).
pub fn volc_target(name: &str, endpoint: &str, extra: &str) -> String {
    VOLC.target(name, endpoint, extra)
}
