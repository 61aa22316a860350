//! The audit rows a vendor call writes: the call's own row, opened before the
//! call and completed after it, and its users' outcomes once it is answered.
//!
//! In service this is the audit store; unit tests put a log in memory in its
//! place, since a paused tokio clock would jump ahead while a database
//! driver's own thread answers. The log never decides whether a call is made:
//! its callers do (no row, no call).

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::audit::{AuditError, AuditStore, NewVendorCall, RegistrationRow, VendorCallEnd};

pub(super) trait CallLog: Send + Sync + 'static {
    /// Writes a vendor call's row; its id, for `finish_call`.
    fn start_call<'a>(&'a self, call: &'a NewVendorCall) -> BoxFuture<'a, Result<i64, AuditError>>;

    /// Completes a vendor call's row.
    fn finish_call<'a>(
        &'a self,
        call_id: i64,
        end: &'a VendorCallEnd,
    ) -> BoxFuture<'a, Result<(), AuditError>>;

    /// Records the outcomes of a call's users.
    fn record_outcomes<'a>(
        &'a self,
        rows: &'a [RegistrationRow],
    ) -> BoxFuture<'a, Result<(), AuditError>>;
}

pub(super) type SharedCallLog = Arc<dyn CallLog>;

impl CallLog for AuditStore {
    fn start_call<'a>(&'a self, call: &'a NewVendorCall) -> BoxFuture<'a, Result<i64, AuditError>> {
        Box::pin(self.start_vendor_call(call))
    }

    fn finish_call<'a>(
        &'a self,
        call_id: i64,
        end: &'a VendorCallEnd,
    ) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(self.finish_vendor_call(call_id, end))
    }

    fn record_outcomes<'a>(
        &'a self,
        rows: &'a [RegistrationRow],
    ) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(AuditStore::record_outcomes(self, rows))
    }
}
