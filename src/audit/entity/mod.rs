//! sea-orm entities of the three audit tables.

pub mod batch;
pub mod registration;
pub mod vendor_call;
