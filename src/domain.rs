//! Domain types shared by the engine, the vendor modules and the audit store.
//!
//! These are registrar's own types, independent of the protobuf contract: the
//! gRPC edge converts to and from them, so vendor modules never see proto
//! messages. Secrets (CIAM passwords) are wrapped so that `Debug` output and
//! log lines cannot reveal them.

use std::{collections::BTreeMap, fmt, str::FromStr};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// One user to register, as the caller described it.
#[derive(Debug, Clone, Default)]
pub struct User {
    pub user_id: String,
    pub display_name: String,
    pub avatar_url: String,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub ciam: Option<CiamProfile>,
}

/// Identity fields only Tencent CIAM targets use.
#[derive(Debug, Clone, Default)]
pub struct CiamProfile {
    pub user_name: String,
    pub phone_number: String,
    pub email: String,
    /// Sent to the vendor and nowhere else.
    pub password: Option<SecretString>,
    pub nickname: String,
    pub address: String,
    pub user_groups: Vec<String>,
    /// Milliseconds since the Unix epoch; `None` when not given.
    pub birthdate_unix_ms: Option<i64>,
    pub customization_attributes: Vec<CiamAttribute>,
    pub indexed_attributes: Vec<String>,
    pub password_hash: Option<SecretString>,
    pub password_hash_type: Option<PasswordHashType>,
    pub salt_value: Option<SecretString>,
    pub salt_location: Option<SaltLocation>,
    pub salt_regex: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiamAttribute {
    pub name: String,
    pub value: String,
    pub kind: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordHashType {
    Sha1,
    Bcrypt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaltLocation {
    Head,
    Tail,
    Other,
}

/// The final (or, in the audit store, current) outcome for one user at one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Pending,
    Registered,
    AlreadyExists,
    Rejected,
    Failed,
    Validated,
    /// An interrupted batch's user that no vendor call carried.
    NotSent,
    /// An interrupted batch's user that a vendor call carried, whose answer
    /// was never recorded.
    AnswerLost,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Pending,
        Outcome::Registered,
        Outcome::AlreadyExists,
        Outcome::Rejected,
        Outcome::Failed,
        Outcome::Validated,
        Outcome::NotSent,
        Outcome::AnswerLost,
    ];

    /// The stable name stored in audit rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Registered => "registered",
            Outcome::AlreadyExists => "already_exists",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Validated => "validated",
            Outcome::NotSent => "not_sent",
            Outcome::AnswerLost => "answer_lost",
        }
    }

    /// Whether the outcome is the user's last word at the target: a replay
    /// answers it from the audit store instead of sending the user again.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Outcome::Pending | Outcome::NotSent | Outcome::AnswerLost
        )
    }

    pub fn parse(stored: &str) -> Option<Outcome> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == stored)
    }
}

/// The vendor API a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VendorKind {
    TencentLcic,
    ZegoZim,
    VolcRtc,
    TencentCiam,
    TencentCiamImport,
}

impl VendorKind {
    pub const ALL: [VendorKind; 5] = [
        VendorKind::TencentLcic,
        VendorKind::ZegoZim,
        VendorKind::VolcRtc,
        VendorKind::TencentCiam,
        VendorKind::TencentCiamImport,
    ];

    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            VendorKind::TencentLcic => "tencent-lcic",
            VendorKind::ZegoZim => "zego-zim",
            VendorKind::VolcRtc => "volc-rtc",
            VendorKind::TencentCiam => "tencent-ciam",
            VendorKind::TencentCiamImport => "tencent-ciam-import",
        }
    }
}

impl fmt::Display for VendorKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for VendorKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        VendorKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<_> = VendorKind::ALL.iter().map(|kind| kind.as_str()).collect();
                format!(
                    "unknown vendor {name:?}; known vendors: {}",
                    known.join(", ")
                )
            })
    }
}

/// Why a user was rejected before anything was sent: the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The field as the caller names it in JSON, e.g. `userId` or `ciam.email`.
    pub field: &'static str,
    /// A stable machine-readable code, e.g. `validation.too_long`.
    pub code: &'static str,
    /// A human-readable statement of the rule, e.g. `must be at most 32 bytes (got 40)`.
    pub rule: String,
}

impl Rejection {
    pub fn new(field: &'static str, code: &'static str, rule: impl Into<String>) -> Self {
        Rejection {
            field,
            code,
            rule: rule.into(),
        }
    }

    pub fn required(field: &'static str) -> Self {
        Rejection::new(
            field,
            "validation.required",
            "is required and must not be empty",
        )
    }

    /// The message reported to the caller: the field, then the rule.
    pub fn message(&self) -> String {
        format!("{} {}", self.field, self.rule)
    }
}

/// The final answer for one user at one target, as streamed to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserResult {
    pub batch_id: String,
    pub index: u64,
    pub target: String,
    pub user_id: String,
    pub outcome: Outcome,
    pub vendor_user_id: String,
    pub error_code: String,
    pub error_message: String,
    pub attempts: u32,
    pub replayed: bool,
}

/// Who is calling RegistrationService: a configured caller (`[[callers]]`),
/// or anyone when the server runs without callers. Batches record their
/// caller; idempotency keys are scoped to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Empty for anyone (a server without callers).
    pub name: String,
    /// Target names or `*` patterns it may use.
    pub targets: Vec<String>,
    /// May read every caller's batches.
    pub admin: bool,
}

impl Caller {
    /// Anyone, on a server without callers: every target, every batch.
    pub fn anyone() -> Caller {
        Caller {
            name: String::new(),
            targets: vec!["*".to_owned()],
            admin: true,
        }
    }

    pub fn may_use(&self, target: &str) -> bool {
        self.targets
            .iter()
            .any(|pattern| matches_pattern(pattern, target))
    }

    /// Whether it may read a batch that `owner` opened.
    pub fn may_read(&self, owner: &str) -> bool {
        self.admin || self.name == owner
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod caller_tests {
    use super::*;

    #[test]
    fn patterns_match_with_stars_anywhere() {
        assert!(matches_pattern("*", "lcic"));
        assert!(matches_pattern("lcic-*", "lcic-prod"));
        assert!(!matches_pattern("lcic-*", "zim-prod"));
        assert!(matches_pattern("*-prod", "zim-prod"));
        assert!(matches_pattern("a*b*c", "a-x-b-y-c"));
        assert!(!matches_pattern("a*b*c", "a-c"));
        assert!(!matches_pattern("ab*ba", "aba"));
        assert!(matches_pattern("lcic", "lcic"));
        assert!(!matches_pattern("lcic", "lcic2"));
    }

    #[test]
    fn a_caller_reads_its_own_batches_and_an_admin_every_one() {
        let caller = Caller {
            name: "a".into(),
            targets: vec!["lcic-*".into()],
            admin: false,
        };
        assert!(caller.may_use("lcic-1") && !caller.may_use("zim"));
        assert!(caller.may_read("a") && !caller.may_read("b"));
        assert!(Caller::anyone().may_read("b"));
    }
}
