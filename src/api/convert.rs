//! Conversions between the protobuf contract and registrar's domain types.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::pb;
use crate::{
    domain::{
        CiamAttribute, CiamProfile, Outcome, PasswordHashType, SaltLocation, User, UserResult,
        VendorKind,
    },
    engine::{
        batch::BatchSummary,
        queries::{BatchRecord, BatchState, OutcomeCounts, Registration},
        target::Health,
    },
    outbound::shared_limiter::Pacing,
};

fn non_empty_secret(value: String) -> Option<SecretString> {
    (!value.is_empty()).then(|| SecretString::from(value))
}

pub fn user_from_proto(user: pb::User) -> User {
    User {
        user_id: user.user_id,
        display_name: user.display_name,
        avatar_url: user.avatar_url,
        tags: user.tags,
        attributes: user.attributes.into_iter().collect(),
        ciam: user.ciam.map(ciam_from_proto),
    }
}

fn ciam_from_proto(ciam: pb::CiamProfile) -> CiamProfile {
    let password_hash_type = match ciam.password_hash_type() {
        pb::PasswordHashType::Sha1 => Some(PasswordHashType::Sha1),
        pb::PasswordHashType::Bcrypt => Some(PasswordHashType::Bcrypt),
        pb::PasswordHashType::Unspecified => None,
    };
    let salt_location = match ciam.salt_location() {
        pb::SaltLocation::Head => Some(SaltLocation::Head),
        pb::SaltLocation::Tail => Some(SaltLocation::Tail),
        pb::SaltLocation::Other => Some(SaltLocation::Other),
        pb::SaltLocation::Unspecified => None,
    };
    CiamProfile {
        user_name: ciam.user_name,
        phone_number: ciam.phone_number,
        email: ciam.email,
        password: non_empty_secret(ciam.password),
        nickname: ciam.nickname,
        address: ciam.address,
        user_groups: ciam.user_groups,
        birthdate_unix_ms: (ciam.birthdate_unix_ms != 0).then_some(ciam.birthdate_unix_ms),
        customization_attributes: ciam
            .customization_attributes
            .into_iter()
            .map(|attribute| CiamAttribute {
                name: attribute.name,
                value: attribute.value,
                kind: attribute.r#type,
            })
            .collect(),
        indexed_attributes: ciam.indexed_attributes,
        password_hash: non_empty_secret(ciam.password_hash),
        password_hash_type,
        salt_value: non_empty_secret(ciam.salt_value),
        salt_location,
        salt_regex: ciam.salt_regex,
    }
}

pub fn outcome_to_proto(outcome: Outcome) -> pb::Outcome {
    match outcome {
        Outcome::Pending => pb::Outcome::Pending,
        Outcome::Registered => pb::Outcome::Registered,
        Outcome::AlreadyExists => pb::Outcome::AlreadyExists,
        Outcome::Rejected => pb::Outcome::Rejected,
        Outcome::Failed => pb::Outcome::Failed,
        Outcome::Validated => pb::Outcome::Validated,
        Outcome::NotSent => pb::Outcome::NotSent,
        Outcome::AnswerLost => pb::Outcome::AnswerLost,
    }
}

/// `None` for OUTCOME_UNSPECIFIED (no filter).
pub fn outcome_from_proto(outcome: pb::Outcome) -> Option<Outcome> {
    match outcome {
        pb::Outcome::Unspecified => None,
        pb::Outcome::Pending => Some(Outcome::Pending),
        pb::Outcome::Registered => Some(Outcome::Registered),
        pb::Outcome::AlreadyExists => Some(Outcome::AlreadyExists),
        pb::Outcome::Rejected => Some(Outcome::Rejected),
        pb::Outcome::Failed => Some(Outcome::Failed),
        pb::Outcome::Validated => Some(Outcome::Validated),
        pb::Outcome::NotSent => Some(Outcome::NotSent),
        pb::Outcome::AnswerLost => Some(Outcome::AnswerLost),
    }
}

/// The contract's value for a vendor kind: `VENDOR_KIND_` and the
/// configuration name in upper snake case (`tencent-lcic` ->
/// `VENDOR_KIND_TENCENT_LCIC`), so a new kind needs only its proto value.
pub fn vendor_to_proto(vendor: VendorKind) -> pb::VendorKind {
    let name = format!(
        "VENDOR_KIND_{}",
        vendor.as_str().to_ascii_uppercase().replace('-', "_")
    );
    pb::VendorKind::from_str_name(&name).unwrap_or(pb::VendorKind::Unspecified)
}

pub fn pacing_to_proto(pacing: Pacing) -> pb::QuotaPacing {
    match pacing {
        Pacing::Alone => pb::QuotaPacing::Alone,
        Pacing::Shared => pb::QuotaPacing::Shared,
        Pacing::Fallback { .. } => pb::QuotaPacing::Fallback,
    }
}

pub fn health_to_proto(health: Health) -> pb::TargetHealth {
    match health {
        Health::Unknown => pb::TargetHealth::Unspecified,
        Health::Serving => pb::TargetHealth::Serving,
        Health::Throttled => pb::TargetHealth::Throttled,
        Health::Failing => pb::TargetHealth::Failing,
    }
}

pub fn result_to_proto(result: UserResult) -> pb::UserResult {
    pb::UserResult {
        batch_id: result.batch_id,
        index: result.index,
        target: result.target,
        user_id: result.user_id,
        outcome: outcome_to_proto(result.outcome).into(),
        vendor_user_id: result.vendor_user_id,
        error_code: result.error_code,
        error_message: result.error_message,
        attempts: result.attempts,
        replayed: result.replayed,
    }
}

pub fn counts_to_proto(target: String, counts: &OutcomeCounts) -> pb::TargetCounts {
    pb::TargetCounts {
        target,
        total: counts.total(),
        registered: counts.get(Outcome::Registered),
        already_exists: counts.get(Outcome::AlreadyExists),
        rejected: counts.get(Outcome::Rejected),
        failed: counts.get(Outcome::Failed),
        pending: counts.get(Outcome::Pending),
        validated: counts.get(Outcome::Validated),
        not_sent: counts.get(Outcome::NotSent),
        answer_lost: counts.get(Outcome::AnswerLost),
    }
}

pub fn summary_to_proto(summary: BatchSummary) -> pb::BatchSummary {
    pb::BatchSummary {
        batch_id: summary.batch_id,
        targets: summary
            .counts
            .into_iter()
            .map(|(target, counts)| counts_to_proto(target, &counts))
            .collect(),
        duration: Some(duration_to_proto(summary.duration)),
        dry_run: summary.dry_run,
        replayed: summary.replayed,
    }
}

pub fn duration_to_proto(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: duration.as_secs() as i64,
        nanos: duration.subsec_nanos() as i32,
    }
}

pub fn timestamp_to_proto(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

pub fn batch_to_proto(record: BatchRecord) -> pb::Batch {
    let state = match record.state {
        BatchState::Running => pb::BatchState::Running,
        BatchState::Completed => pb::BatchState::Completed,
        BatchState::Aborted => pb::BatchState::Aborted,
        BatchState::Interrupted => pb::BatchState::Interrupted,
    };
    pb::Batch {
        batch_id: record.id,
        state: state.into(),
        counts: record
            .targets
            .iter()
            .map(|name| {
                counts_to_proto(
                    name.clone(),
                    &record.counts.get(name).cloned().unwrap_or_default(),
                )
            })
            .collect(),
        targets: record.targets,
        idempotency_key: record.idempotency_key.unwrap_or_default(),
        dry_run: record.dry_run,
        user_count: record.user_count,
        create_time: Some(timestamp_to_proto(record.created_at)),
        finish_time: record.finished_at.map(timestamp_to_proto),
    }
}

pub fn registration_to_proto(row: Registration) -> pb::Registration {
    pb::Registration {
        batch_id: row.batch_id,
        index: row.index,
        target: row.target,
        user_id: row.user_id,
        outcome: row
            .outcome
            .map_or(pb::Outcome::Unspecified, outcome_to_proto)
            .into(),
        vendor_user_id: row.vendor_user_id.unwrap_or_default(),
        error_code: row.error_code.unwrap_or_default(),
        error_message: row.error_message.unwrap_or_default(),
        attempts: row.attempts,
        create_time: Some(timestamp_to_proto(row.created_at)),
        update_time: Some(timestamp_to_proto(row.updated_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vendor_kind_has_its_own_contract_value() {
        let values: Vec<pb::VendorKind> =
            VendorKind::ALL.into_iter().map(vendor_to_proto).collect();
        assert_eq!(
            values,
            [
                pb::VendorKind::TencentLcic,
                pb::VendorKind::ZegoZim,
                pb::VendorKind::VolcRtc,
                pb::VendorKind::TencentCiam,
                pb::VendorKind::TencentCiamImport,
            ]
        );
    }
}
