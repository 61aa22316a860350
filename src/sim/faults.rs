//! Fault injection: what the simulator does to a share of the calls it
//! receives, configurable per run (and changeable while it runs), so that
//! tests and benchmarks can watch registrar stay truthful under faults.
//!
//! Every kind is answered in the vendor's own terms: a Tencent internal error
//! is `{"Response":{"Error":{"Code":"InternalError"}}}`, ZEGO's is its server
//! busy code, Volcengine's an `InternalError` envelope with HTTP 500; likewise
//! for throttle answers (each vendor's answers are registered in `routes`). A dropped connection happens after the vendor did
//! the work (the users are registered, the answer is lost); "no answer" holds
//! the call open past any sensible timeout without doing anything; a null
//! output does the work and answers a Tencent success without its data.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The faults of a run. Shares are fractions of calls in 0..=1, drawn
/// independently of each other in the order of the fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimFaults {
    /// Latency added to every answer: `latency` plus a uniform share of `latency_jitter`.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    #[serde(with = "humantime_serde")]
    pub latency_jitter: Duration,
    /// Answer HTTP 503 with no body, without doing the work.
    pub http_5xx: f64,
    /// Answer the vendor's own internal-error code, without doing the work.
    pub internal_error: f64,
    /// Answer the vendor's own throttle code, without doing the work.
    pub throttle: f64,
    /// Do the work, then drop the connection instead of answering.
    pub drop_after_work: f64,
    /// Do nothing and answer nothing for `no_answer_for`.
    pub no_answer: f64,
    #[serde(with = "humantime_serde")]
    pub no_answer_for: Duration,
    /// Do the work, then answer a Tencent success with every output field
    /// null (a Tencent output field "may return null"); the other vendors
    /// answer as usual. Not part of [`SimFaults::spread`].
    pub null_output: f64,
    /// Sent as `Retry-After` (whole seconds) with the HTTP 503 answers.
    #[serde(with = "humantime_serde")]
    pub retry_after: Option<Duration>,
}

impl SimFaults {
    /// `share` of all calls faulted, spread evenly over the five kinds.
    pub fn spread(share: f64) -> Self {
        let each = share.clamp(0.0, 1.0) / 5.0;
        SimFaults {
            http_5xx: each,
            internal_error: each,
            throttle: each,
            drop_after_work: each,
            no_answer: each,
            no_answer_for: Duration::from_secs(30),
            ..SimFaults::default()
        }
    }

    /// The fault for a call, given a uniform draw in 0..1.
    pub fn pick(&self, draw: f64) -> Option<Fault> {
        let kinds = [
            (self.http_5xx, Fault::Http5xx),
            (self.internal_error, Fault::InternalError),
            (self.throttle, Fault::Throttle),
            (self.drop_after_work, Fault::DropAfterWork),
            (self.no_answer, Fault::NoAnswer),
            (self.null_output, Fault::NullOutput),
        ];
        let mut bound = 0.0;
        for (share, fault) in kinds {
            bound += share.max(0.0);
            if draw < bound {
                return Some(fault);
            }
        }
        None
    }

    /// The latency of one answer, given a uniform draw in 0..1.
    pub fn latency(&self, draw: f64) -> Duration {
        self.latency + self.latency_jitter.mul_f64(draw.clamp(0.0, 1.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Http5xx,
    InternalError,
    Throttle,
    DropAfterWork,
    NoAnswer,
    NullOutput,
}

impl Fault {
    /// The code recorded for the call.
    pub fn recorded_code(self) -> &'static str {
        match self {
            Fault::Http5xx => "sim.Http503",
            Fault::InternalError => "sim.InternalError",
            Fault::Throttle => "sim.Throttle",
            Fault::DropAfterWork => "sim.DropAfterWork",
            Fault::NoAnswer => "sim.NoAnswer",
            Fault::NullOutput => "sim.NullOutput",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_fall_into_the_configured_shares() {
        let faults = SimFaults::spread(0.5);
        assert_eq!(faults.pick(0.05), Some(Fault::Http5xx));
        assert_eq!(faults.pick(0.15), Some(Fault::InternalError));
        assert_eq!(faults.pick(0.25), Some(Fault::Throttle));
        assert_eq!(faults.pick(0.35), Some(Fault::DropAfterWork));
        assert_eq!(faults.pick(0.45), Some(Fault::NoAnswer));
        assert_eq!(faults.pick(0.55), None);
        let null_output = SimFaults {
            null_output: 1.0,
            ..SimFaults::default()
        };
        assert_eq!(null_output.pick(0.99), Some(Fault::NullOutput));
        assert_eq!(SimFaults::default().pick(0.0), None);
    }

    #[test]
    fn latency_spreads_over_the_jitter() {
        let faults = SimFaults {
            latency: Duration::from_millis(50),
            latency_jitter: Duration::from_millis(20),
            ..SimFaults::default()
        };
        assert_eq!(faults.latency(0.0), Duration::from_millis(50));
        assert_eq!(faults.latency(0.5), Duration::from_millis(60));
    }
}
