//! What the simulator holds and how a call's fate is decided under one lock:
//! the configured accounts, every recorded call, and each account's quota
//! window, accepted calls, users and import jobs. The quota step, the body's
//! verdict and the change to an account's memory happen together in
//! [`Shared::admit`], so that concurrent calls cannot both take the last slot
//! or register the same user. A handler that panicked elsewhere must not take
//! the simulator down: a poisoned lock is taken over, not propagated.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, MutexGuard, PoisonError},
};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{
    faults::{Fault, SimFaults},
    jobs::Jobs,
    quota::SlidingWindow,
};
use crate::domain::VendorKind;

/// One vendor account (or app) the simulator knows.
#[derive(Debug, Clone)]
pub struct SimAccount {
    pub vendor: VendorKind,
    /// LCIC SdkAppId, ZIM AppId, Volcengine AppId; for CIAM a numeric
    /// handle of the user store, under which its users are kept.
    pub app_id: u64,
    /// CIAM UserStoreId; empty for the other vendors.
    pub user_store_id: String,
    /// Tencent SecretId, Volcengine AccessKeyId; empty for ZEGO.
    pub secret_id: String,
    /// Tencent SecretKey, ZEGO ServerSecret, Volcengine SecretAccessKey.
    pub secret_key: SecretString,
    /// The real quota: at most `qps` accepted calls in any one-second window.
    pub qps: u32,
}

/// One call the simulator received, whatever its fate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedCall {
    pub vendor: VendorKind,
    pub action: String,
    /// The account the call named, once its credentials identify one.
    pub app_id: Option<u64>,
    /// Milliseconds since the simulator started (monotonic), taken when the call was decided.
    pub received_at_ms: u64,
    /// The users the call carried (LCIC: OriginId), in order; empty when the body was unreadable.
    pub user_ids: Vec<String>,
    pub http_status: u16,
    /// `None` when accepted; the vendor's code otherwise (e.g. `RequestLimitExceeded`).
    pub error_code: Option<String>,
    /// The W3C `traceparent` header the call carried, if any.
    pub traceparent: Option<String>,
}

impl RecordedCall {
    pub fn accepted(&self) -> bool {
        self.error_code.is_none()
    }
}

/// One user held in the simulator's memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisteredUser {
    pub origin_id: String,
    pub vendor_user_id: String,
    pub name: String,
    pub avatar: String,
    /// Times registered (LCIC overwrites an existing user).
    pub registrations: u32,
    /// Other fields the vendor keeps, by the vendor's own field name
    /// (e.g. Volcengine `Tags`, CIAM `Email`); never a password.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// A vendor's refusal of a call, in the vendor's own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) http_status: u16,
    pub(super) code: String,
    pub(super) message: String,
}

/// What is known of a call before it is decided, for its record.
#[derive(Debug)]
pub(super) struct CallInfo {
    pub(super) vendor: VendorKind,
    pub(super) action: &'static str,
    pub(super) app_id: Option<u64>,
    pub(super) user_ids: Vec<String>,
    /// The call's W3C `traceparent` header, if it carried one.
    pub(super) traceparent: Option<String>,
}

/// Everything the request handlers share.
pub(super) struct Shared {
    pub(super) started: Instant,
    pub(super) accounts: Vec<SimAccount>,
    state: Mutex<Memory>,
    faults: Mutex<SimFaults>,
}

pub(super) struct Memory {
    pub(super) calls: Vec<RecordedCall>,
    pub(super) apps: HashMap<(VendorKind, u64), AppState>,
}

/// The memory of one account.
pub(super) struct AppState {
    pub(super) window: SlidingWindow,
    /// Arrival instants of every accepted call since the last reset, oldest first.
    pub(super) accepted: Vec<Instant>,
    pub(super) users: BTreeMap<String, RegisteredUser>,
    /// CIAM import jobs of the user store (empty for other vendors).
    pub(super) jobs: Jobs,
}

impl AppState {
    /// Registers a user under `origin_id`, or overwrites the one held there
    /// (which keeps its vendor id); counts the registration either way.
    pub(super) fn overwrite(
        &mut self,
        origin_id: &str,
        vendor_user_id: impl FnOnce() -> String,
        name: String,
        avatar: String,
    ) -> &mut RegisteredUser {
        let held = self
            .users
            .entry(origin_id.to_owned())
            .or_insert_with(|| RegisteredUser {
                origin_id: origin_id.to_owned(),
                vendor_user_id: vendor_user_id(),
                name: String::new(),
                avatar: String::new(),
                registrations: 0,
                fields: BTreeMap::new(),
            });
        held.name = name;
        held.avatar = avatar;
        held.registrations = held.registrations.saturating_add(1);
        held
    }

    pub(super) fn new(qps: u32) -> Self {
        AppState {
            window: SlidingWindow::per_second(qps),
            accepted: Vec::new(),
            users: BTreeMap::new(),
            jobs: Jobs::default(),
        }
    }
}

impl Shared {
    /// Checks the accounts: one per (vendor, app id), and one key per SecretId.
    pub(super) fn new(accounts: Vec<SimAccount>) -> anyhow::Result<Shared> {
        let mut apps = HashMap::new();
        for account in &accounts {
            if apps
                .insert((account.vendor, account.app_id), AppState::new(account.qps))
                .is_some()
            {
                anyhow::bail!(
                    "simulator account {} app {} is configured twice",
                    account.vendor,
                    account.app_id
                );
            }
        }
        for (index, account) in accounts.iter().enumerate() {
            let conflicting = accounts[..index].iter().find(|earlier| {
                !account.secret_id.is_empty()
                    && earlier.secret_id == account.secret_id
                    && earlier.secret_key.expose_secret() != account.secret_key.expose_secret()
            });
            if let Some(earlier) = conflicting {
                anyhow::bail!(
                    "simulator accounts {} app {} and {} app {} share a secret id but not its secret key",
                    earlier.vendor,
                    earlier.app_id,
                    account.vendor,
                    account.app_id
                );
            }
        }
        Ok(Shared {
            started: Instant::now(),
            accounts,
            state: Mutex::new(Memory {
                calls: Vec::new(),
                apps,
            }),
            faults: Mutex::new(SimFaults::default()),
        })
    }

    pub(super) fn faults(&self) -> SimFaults {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set_faults(&self, faults: SimFaults) {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner) = faults;
    }

    /// Records a call answered by an injected fault.
    pub(super) fn refuse_fault(&self, vendor: VendorKind, fault: Fault) {
        let refusal = Refusal {
            http_status: 0,
            code: fault.recorded_code().to_owned(),
            message: "simulated fault".to_owned(),
        };
        let call = CallInfo {
            vendor,
            action: "fault",
            app_id: None,
            user_ids: Vec::new(),
            traceparent: None,
        };
        let mut state = self.lock();
        self.record(&mut state, Instant::now(), call, Some(&refusal));
    }

    /// The state; a handler that panicked elsewhere must not take the simulator down.
    pub(super) fn lock(&self) -> MutexGuard<'_, Memory> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn registered(&self, vendor: VendorKind, app_id: u64) -> Vec<RegisteredUser> {
        let state = self.lock();
        state
            .apps
            .get(&(vendor, app_id))
            .map(|app| app.users.values().cloned().collect())
            .unwrap_or_default()
    }

    fn record(&self, state: &mut Memory, now: Instant, call: CallInfo, refusal: Option<&Refusal>) {
        let received_at_ms = u64::try_from(now.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX);
        tracing::debug!(
            vendor = %call.vendor,
            action = call.action,
            app_id = ?call.app_id,
            users = call.user_ids.len(),
            error_code = refusal.map(|refusal| refusal.code.as_str()),
            "simulated vendor call"
        );
        state.calls.push(RecordedCall {
            vendor: call.vendor,
            action: call.action.to_owned(),
            app_id: call.app_id,
            received_at_ms,
            user_ids: call.user_ids,
            http_status: refusal.map_or(200, |refusal| refusal.http_status),
            error_code: refusal.map(|refusal| refusal.code.clone()),
            traceparent: call.traceparent,
        });
    }

    /// Records a call refused before the quota step (credentials, headers, size).
    pub(super) fn refuse(&self, call: CallInfo, refusal: &Refusal) {
        let mut state = self.lock();
        self.record(&mut state, Instant::now(), call, Some(refusal));
    }

    /// The quota step and what follows it, under one lock so that concurrent
    /// calls cannot both take the last slot: a throttled call gets `throttled`;
    /// an admitted call refused for its body (`verdict`) takes no slot; so does
    /// one that `accept` refuses because of what the account holds (an existing
    /// user, two running jobs), and `accept` then changes nothing. An accepted
    /// call takes a slot. Every call is recorded with its fate.
    pub(super) fn admit<V, T>(
        &self,
        account: &SimAccount,
        call: CallInfo,
        throttled: Refusal,
        verdict: Result<V, Refusal>,
        accept: impl FnOnce(&mut AppState, V) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let now = Instant::now();
        let app = state
            .apps
            .entry((account.vendor, account.app_id))
            .or_insert_with(|| AppState::new(account.qps));
        let decision = if !app.window.admits(now) {
            Err(throttled)
        } else {
            verdict.and_then(|valid| {
                let answer = accept(app, valid)?;
                app.window.record(now);
                app.accepted.push(now);
                Ok(answer)
            })
        };
        self.record(state, now, call, decision.as_ref().err());
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(vendor: VendorKind, app_id: u64, secret_id: &str, key: &str) -> SimAccount {
        SimAccount {
            vendor,
            app_id,
            user_store_id: String::new(),
            secret_id: secret_id.to_owned(),
            secret_key: SecretString::from(key),
            qps: 5,
        }
    }

    #[test]
    fn accounts_are_one_per_app_and_one_key_per_secret_id() {
        let lcic = VendorKind::TencentLcic;
        assert!(
            Shared::new(vec![
                account(lcic, 1, "id", "k"),
                account(lcic, 2, "id", "k")
            ])
            .is_ok()
        );
        let twice = Shared::new(vec![account(lcic, 1, "a", "k"), account(lcic, 1, "b", "k")]);
        assert!(twice.is_err());
        let keys = Shared::new(vec![
            account(lcic, 1, "id", "k1"),
            account(lcic, 2, "id", "k2"),
        ]);
        let message = keys
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(message.contains("share a secret id"), "{message}");
        assert!(
            !message.contains("k1") && !message.contains("k2"),
            "{message}"
        );
        // ZEGO accounts have no secret id; they never conflict.
        let zego = VendorKind::ZegoZim;
        assert!(Shared::new(vec![account(zego, 1, "", "k1"), account(zego, 2, "", "k2")]).is_ok());
    }
}
