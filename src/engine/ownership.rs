//! Who owns a running batch, and what becomes of a batch whose owner is gone.
//!
//! Every server run has an owner name, `INSTANCE/RUN`: the instance's name
//! (unique among the replicas sharing one audit store) and a fresh id per
//! start. A batch is opened or resumed under a lease that the run renews in
//! the audit store every third of its length. Recovery, at start-up and at
//! every renewal, interrupts a running batch whose owner is gone: its lease
//! expired (the owner crashed or lost the store), or its owner is an earlier
//! run of this same instance (a restart, which need not wait for the lease).
//! Interrupting says of each unfinished row whether a vendor call carried it,
//! and is conditional in the store, so a batch whose owner renewed in the
//! meantime is never touched.
//!
//! Leases are compared with this server's clock: replicas' clocks must agree
//! to well within the lease (NTP does).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditError, AuditStore, Lease};

pub(super) struct Ownership {
    instance: String,
    owner: String,
    lease: Duration,
}

impl Ownership {
    pub fn new(instance: &str, lease: Duration) -> Ownership {
        Ownership {
            instance: instance.to_owned(),
            owner: format!("{instance}/{}", uuid::Uuid::now_v7()),
            lease,
        }
    }

    /// This run's owner name.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// A lease for this run, from now.
    pub fn lease(&self) -> Lease {
        Lease {
            owner: self.owner.clone(),
            expires_at: Utc::now()
                + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// Whether `owner` is an earlier run of this instance: one instance runs
    /// one server at a time, so that run has ended.
    fn is_earlier_run(&self, owner: &str) -> bool {
        owner != self.owner
            && owner
                .rsplit_once('/')
                .is_some_and(|(instance, _)| instance == self.instance)
    }

    /// Whether a running batch's owner may still be working on it.
    pub fn owner_alive(&self, lease: Option<&Lease>, now: DateTime<Utc>) -> bool {
        match lease {
            None => false,
            Some(lease) if lease.owner == self.owner => true,
            Some(lease) => !self.is_earlier_run(&lease.owner) && lease.expires_at > now,
        }
    }

    /// How often the leases are renewed and ownerless batches looked for.
    pub fn renewal_interval(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(100))
    }
}

/// Interrupts one running batch whose owner is gone; false when the owner
/// turned out alive (it renewed meanwhile) or another server got there first.
pub(super) async fn interrupt_if_ownerless(
    audit: &AuditStore,
    ownership: &Ownership,
    batch_id: &str,
    lease: Option<&Lease>,
) -> Result<bool, AuditError> {
    match lease {
        None => audit.interrupt(batch_id, None, false).await,
        Some(lease) if ownership.is_earlier_run(&lease.owner) => {
            audit.interrupt(batch_id, Some(&lease.owner), false).await
        }
        Some(lease) => audit.interrupt(batch_id, Some(&lease.owner), true).await,
    }
}

/// Interrupts every running batch whose owner is gone; how many.
pub(super) async fn recover(audit: &AuditStore, ownership: &Ownership) -> Result<u64, AuditError> {
    let now = Utc::now();
    let mut interrupted = 0;
    for batch in audit.running_batches().await? {
        if ownership.owner_alive(batch.lease.as_ref(), now) {
            continue;
        }
        if interrupt_if_ownerless(audit, ownership, &batch.id, batch.lease.as_ref()).await? {
            interrupted += 1;
            tracing::warn!(
                batch_id = %batch.id,
                previous_owner = batch.lease.as_ref().map_or("none", |lease| lease.owner.as_str()),
                "batch interrupted: its owner is gone; a replay with its idempotency key resumes it"
            );
        }
    }
    Ok(interrupted)
}

/// Renews this run's leases and recovers ownerless batches, every renewal
/// interval, until `stop`.
pub(super) async fn maintain(
    audit: AuditStore,
    ownership: std::sync::Arc<Ownership>,
    stop: CancellationToken,
) {
    let mut interval = tokio::time::interval(ownership.renewal_interval());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Err(error) = audit.renew_leases(&ownership.lease()).await {
            tracing::error!(%error, "could not renew the leases of this server's batches");
            continue;
        }
        if let Err(error) = recover(&audit, &ownership).await {
            tracing::warn!(%error, "could not look for batches whose owner is gone");
        }
    }
}

/// Interrupts every batch this run still owns: at the end of a shutdown, so
/// that a replay against another replica resumes at once.
pub(super) async fn release(audit: &AuditStore, ownership: &Ownership) -> Result<u64, AuditError> {
    let mut released = 0;
    for batch in audit.running_batches().await? {
        let ours = batch
            .lease
            .as_ref()
            .is_some_and(|lease| lease.owner == ownership.owner);
        if ours
            && audit
                .interrupt(&batch.id, Some(&ownership.owner), false)
                .await?
        {
            released += 1;
        }
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(owner: &str, seconds_from_now: i64) -> Lease {
        Lease {
            owner: owner.to_owned(),
            expires_at: Utc::now() + chrono::Duration::seconds(seconds_from_now),
        }
    }

    #[test]
    fn an_owner_is_alive_while_its_lease_holds_unless_it_is_an_earlier_run_of_this_instance() {
        let ownership = Ownership::new("pod-a", Duration::from_secs(30));
        let now = Utc::now();
        assert!(ownership.owner_alive(Some(&ownership.lease()), now));
        assert!(ownership.owner_alive(Some(&lease("pod-b/run-1", 10)), now));
        assert!(!ownership.owner_alive(Some(&lease("pod-b/run-1", -1)), now));
        // this instance restarted: its earlier run is gone, whatever its lease says
        assert!(!ownership.owner_alive(Some(&lease("pod-a/run-0", 10)), now));
        // a batch with no owner (written by an older version) has none alive
        assert!(!ownership.owner_alive(None, now));
        // an instance name that merely starts the same is another instance
        assert!(ownership.owner_alive(Some(&lease("pod-a2/run-0", 10)), now));
    }
}
