//! The integration tests, one binary: a module per area, the shared harness
//! in `common`. The tests that measure pacing and waits against the wall
//! clock are in `tests/paced/`, a binary of their own.

mod common;

mod answer_lost;
mod audit_postgres;
mod callers;
mod ciam_end_to_end;
mod ciam_import_end_to_end;
mod ciam_truthfulness;
mod ciam_vendor_contract;
mod coalescing;
mod crash_recovery;
mod durability;
mod fan_out_and_dry_run;
mod faults;
mod import;
mod lcic_end_to_end;
mod lcic_vendor_contract;
mod limits;
mod malformed_requests;
mod metrics;
mod no_secrets_in_logs;
mod sim_lcic;
mod store_faults;
mod streams;
mod tls;
mod traces;
mod vendor_answers;
mod volc_end_to_end;
mod zim_end_to_end;
