//! What each caller may hold at once (`[limits]`, and a caller's own
//! `[callers.limits]`): open streams, open unary batches, results accepted
//! but not yet answered, and the size of one message. Each caller has its
//! own allowance, so a caller at a limit is told RESOURCE_EXHAUSTED naming
//! the limit (with a google.rpc.QuotaFailure) and no other caller waits for
//! it. A server without `[[callers]]` gives everyone one allowance together.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    config::{CallerConfig, LimitsConfig},
    domain::Caller,
    engine::places::SharedPlaces,
};

/// The allowances of every configured caller.
pub struct Limits {
    by_caller: HashMap<String, Arc<Allowance>>,
    /// For `Caller::anyone()` (no callers configured), and any caller not listed.
    anyone: Arc<Allowance>,
    /// The largest message any caller may send: what tonic decodes at most.
    largest_message: usize,
}

impl Limits {
    pub fn new(defaults: &LimitsConfig, callers: &[CallerConfig]) -> Limits {
        let largest_message = callers
            .iter()
            .map(|caller| caller.limits.over(defaults).max_message_bytes)
            .chain([defaults.max_message_bytes])
            .max()
            .unwrap_or(defaults.max_message_bytes);
        let by_caller = callers
            .iter()
            .map(|caller| {
                let limits = caller.limits.over(defaults);
                let allowance = Allowance::new(&caller.name, limits, largest_message);
                (caller.name.clone(), allowance)
            })
            .collect();
        Limits {
            by_caller,
            anyone: Allowance::new("", *defaults, largest_message),
            largest_message,
        }
    }

    /// The allowance of `caller`.
    pub fn of(&self, caller: &Caller) -> Arc<Allowance> {
        self.by_caller
            .get(&caller.name)
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.anyone))
    }

    /// The largest message tonic must decode: the largest any caller may send.
    pub fn largest_message(&self) -> usize {
        self.largest_message
    }
}

/// One caller's allowance.
pub struct Allowance {
    /// `caller "NAME"`, or what the server's callers are when none are configured.
    who: String,
    /// Where its limits are configured, for messages.
    section: String,
    limits: LimitsConfig,
    /// Whether tonic's decoding limit is this caller's own, so a message
    /// that arrived needs no second look.
    message_limit_is_tonics: bool,
    streams: Arc<Semaphore>,
    unary_batches: Arc<Semaphore>,
    places: Arc<SharedPlaces>,
}

/// Held while a call is open; dropping it frees its place.
pub type OpenCall = OwnedSemaphorePermit;

impl Allowance {
    fn new(name: &str, limits: LimitsConfig, largest_message: usize) -> Arc<Allowance> {
        let (who, section) = if name.is_empty() {
            (
                "this server's callers (none are configured, so they share one allowance)"
                    .to_owned(),
                "[limits]".to_owned(),
            )
        } else {
            (
                format!("caller {name:?}"),
                "[limits] (or this caller's [callers.limits])".to_owned(),
            )
        };
        Arc::new(Allowance {
            who,
            section,
            streams: Arc::new(Semaphore::new(limits.max_streams)),
            unary_batches: Arc::new(Semaphore::new(limits.max_unary_batches)),
            places: SharedPlaces::new(limits.max_unanswered_users),
            message_limit_is_tonics: limits.max_message_bytes >= largest_message,
            limits,
        })
    }

    /// The places its batches share (users accepted but not yet answered).
    pub fn places(&self) -> Arc<SharedPlaces> {
        Arc::clone(&self.places)
    }

    fn exhausted(&self, key: &str, description: String) -> Status {
        let message = format!("{}: {description}", self.who);
        Status::with_error_details(
            Code::ResourceExhausted,
            message.clone(),
            ErrorDetails::with_quota_failure_violation(format!("{} {key}", self.section), message),
        )
    }

    /// A place for one more `BatchRegisterStream`.
    pub fn open_stream(&self) -> Result<OpenCall, Status> {
        Arc::clone(&self.streams).try_acquire_owned().map_err(|_| {
            self.exhausted(
                "max_streams",
                format!(
                    "{} BatchRegisterStream calls are open, the limit ({} max_streams = {}); \
                     send more users on an open stream, or wait for one to end",
                    self.limits.max_streams, self.section, self.limits.max_streams
                ),
            )
        })
    }

    /// A place for one more unary `BatchRegister`.
    pub fn open_unary_batch(&self) -> Result<OpenCall, Status> {
        Arc::clone(&self.unary_batches)
            .try_acquire_owned()
            .map_err(|_| {
                self.exhausted(
                    "max_unary_batches",
                    format!(
                        "{} BatchRegister calls are open, the limit ({} max_unary_batches = {}); \
                         wait for one to end, or send many users on one BatchRegisterStream",
                        self.limits.max_unary_batches, self.section, self.limits.max_unary_batches
                    ),
                )
            })
    }

    /// A message's encoded size against the caller's own limit (tonic has
    /// already refused anything over the largest limit of any caller).
    pub fn check_message(&self, message: &impl prost::Message) -> Result<(), Status> {
        if self.message_limit_is_tonics {
            return Ok(());
        }
        let encoded_bytes = message.encoded_len();
        if encoded_bytes <= self.limits.max_message_bytes {
            return Ok(());
        }
        Err(self.exhausted(
            "max_message_bytes",
            format!(
                "a message of {encoded_bytes} bytes is over the limit ({} max_message_bytes = {}); \
                 send many users with BatchRegisterStream, in chunks that each fit the limit",
                self.section, self.limits.max_message_bytes
            ),
        ))
    }

    /// Whether one message of `users` users for `targets` targets can ever
    /// be taken: it needs one place per user and target at once.
    pub fn check_message_places(&self, users: usize, targets: usize) -> Result<(), Status> {
        let needed = users.saturating_mul(targets.max(1));
        if needed <= self.places.limit() {
            return Ok(());
        }
        Err(self.exhausted(
            "max_unanswered_users",
            format!(
                "{users} users for {targets} targets need {needed} unanswered results at once, \
                 over the limit ({} max_unanswered_users = {}); send them in smaller chunks",
                self.section,
                self.places.limit()
            ),
        ))
    }

    /// Whether a unary batch's users fit the caller's unanswered results
    /// right now: a unary call cannot wait for room as a stream does.
    pub fn check_unary_room(&self, users: usize, targets: usize) -> Result<(), Status> {
        self.check_message_places(users, targets)?;
        let needed = users.saturating_mul(targets.max(1));
        let available = self.places.available();
        if needed <= available {
            return Ok(());
        }
        Err(self.exhausted(
            "max_unanswered_users",
            format!(
                "{} results accepted earlier are not yet answered, and {needed} more would pass \
                 the limit ({} max_unanswered_users = {}); try again as they are answered",
                self.places.limit() - available,
                self.section,
                self.places.limit()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CallerLimitsConfig;

    fn caller(name: &str, limits: CallerLimitsConfig) -> CallerConfig {
        CallerConfig {
            name: name.into(),
            token_sha256: Some("a".repeat(64)),
            tls_identity: None,
            targets: vec!["*".into()],
            admin: false,
            limits,
        }
    }

    fn named(name: &str) -> Caller {
        Caller {
            name: name.into(),
            targets: vec!["*".into()],
            admin: false,
        }
    }

    #[test]
    fn each_caller_has_its_own_allowance_and_going_over_names_the_limit() {
        let defaults = LimitsConfig {
            max_streams: 1,
            ..LimitsConfig::default()
        };
        let limits = Limits::new(
            &defaults,
            &[
                caller("a", CallerLimitsConfig::default()),
                caller(
                    "b",
                    CallerLimitsConfig {
                        max_streams: Some(2),
                        ..CallerLimitsConfig::default()
                    },
                ),
            ],
        );
        let a = limits.of(&named("a"));
        let held = a.open_stream().unwrap();
        let refused = a.open_stream().unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(
            refused.message().contains("caller \"a\"")
                && refused.message().contains("max_streams = 1"),
            "{}",
            refused.message()
        );
        let details = refused.get_error_details();
        assert!(
            details.quota_failure().is_some(),
            "a QuotaFailure says which limit"
        );
        let b = limits.of(&named("b"));
        let _one = b.open_stream().unwrap();
        let _two = b
            .open_stream()
            .expect("b's own limit is 2, and a's streams are not b's");
        drop(held);
        assert!(
            a.open_stream().is_ok(),
            "a stream that ended frees its place"
        );
    }

    #[test]
    fn the_largest_message_any_caller_may_send_is_what_tonic_decodes() {
        let defaults = LimitsConfig {
            max_message_bytes: 4096,
            ..LimitsConfig::default()
        };
        let limits = Limits::new(
            &defaults,
            &[caller(
                "big",
                CallerLimitsConfig {
                    max_message_bytes: Some(65_536),
                    ..CallerLimitsConfig::default()
                },
            )],
        );
        assert_eq!(limits.largest_message(), 65_536);
        let message = |bytes: usize| prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("x".repeat(bytes))),
        };
        assert!(
            limits
                .of(&named("big"))
                .check_message(&message(60_000))
                .is_ok()
        );
        let refused = limits
            .of(&Caller::anyone())
            .check_message(&message(5000))
            .unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(refused.message().contains("max_message_bytes = 4096"));
        assert!(refused.message().contains("BatchRegisterStream"));
    }

    #[test]
    fn unanswered_results_count_once_per_target() {
        let defaults = LimitsConfig {
            max_unanswered_users: 10,
            ..LimitsConfig::default()
        };
        let limits = Limits::new(&defaults, &[]);
        let anyone = limits.of(&Caller::anyone());
        assert!(anyone.check_unary_room(5, 2).is_ok());
        let refused = anyone.check_unary_room(4, 3).unwrap_err();
        assert!(
            refused.message().contains("need 12")
                && refused.message().contains("max_unanswered_users = 10"),
            "{}",
            refused.message()
        );
    }
}
