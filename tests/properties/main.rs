//! Property tests: the parts of registrar that read input it does not
//! control survive any input, and classify what they cannot use.
//!
//! Each module takes one boundary: the vendors' answers
//! (`vendor_answers`), the users callers send (`validation`), the
//! configuration operators write (`config_loading`) and the protobuf bytes
//! clients send (`proto_conversion`). The properties are the same at every
//! boundary: no panic, one outcome per user sent, every failure classified
//! with a class and a non-empty code.
//!
//! Case counts are set per property with `ProptestConfig { cases, .. }` so
//! that the whole target stays near a minute in a debug build on two cores;
//! `PROPTEST_CASES` in the environment does not override an explicit count.
//! Failure persistence is off (`failure_persistence: None`): a failing case
//! is printed with its minimal input, and the fix adds that input as a named
//! unit test next to the code it breaks, where it documents the bug, instead
//! of a `proptest-regressions/` file of opaque seeds.

mod config_loading;
mod proto_conversion;
mod support;
mod validation;
mod vendor_answers;
