//! The outbound stack: tower layers that every vendor call goes through.
//!
//! Outermost first: a tracing span per call -> retry (only retryable and
//! throttled failures, only the users that failed, backoff with jitter, a
//! retry budget) -> rate limit (GCRA per target, in process or shared by the
//! replicas through Redis; every attempt takes a permit) -> the attempt itself, whose HTTP exchange runs under a timeout.
//! The stack knows nothing of vendors beyond a target's quota and an error's
//! class; each layer is one file, generic over the request it wraps.

pub mod http_client;
pub mod rate_limit;
pub mod retry;
pub mod shared_limiter;
pub mod shared_quota;
pub mod timeout;
pub mod trace;
