//! Proto -> domain conversion: whatever a client sends, the gRPC edge
//! decodes it or refuses it, and converts what it decoded without panicking.
//! Arbitrary `prost` messages (any strings, any enum integers, known or not,
//! optional messages present or absent) convert field for field into
//! `registrar::domain::User`, one domain user per proto user, with unknown
//! enum values classified as "not given" rather than guessed; and arbitrary
//! bytes, damaged encodings and nesting far deeper than prost's recursion
//! limit decode into every request type or fail with a `DecodeError`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use prost::Message;
use registrar::{
    api::{
        convert::{outcome_from_proto, outcome_to_proto, user_from_proto},
        pb,
    },
    domain::{Outcome, PasswordHashType, SaltLocation},
};
use secrecy::ExposeSecret;

use crate::support::{cases, unicode_text};

/// An enum field's integer: usually a defined value, sometimes any `i32`.
fn enum_value() -> impl Strategy<Value = i32> {
    prop_oneof![3 => 0i32..=4, 1 => any::<i32>()]
}

/// Any text, empty a quarter of the time (proto3's "not set").
fn text() -> impl Strategy<Value = String> {
    prop_oneof![1 => Just(String::new()), 3 => unicode_text(16)]
}

fn proto_ciam() -> impl Strategy<Value = pb::CiamProfile> {
    let identity = (
        text(),
        text(),
        text(),
        text(),
        text(),
        text(),
        prop::collection::vec(text(), 0..3),
        prop_oneof![Just(0i64), any::<i64>()],
    );
    let attribute = (text(), text(), text()).prop_map(|(name, value, r#type)| pb::CiamAttribute {
        name,
        value,
        r#type,
    });
    let rest = (
        prop::collection::vec(attribute, 0..3),
        prop::collection::vec(text(), 0..6),
        text(),
        enum_value(),
        text(),
        enum_value(),
        text(),
    );
    (identity, rest).prop_map(
        |(
            (user_name, phone_number, email, password, nickname, address, user_groups, birthdate),
            (
                customization_attributes,
                indexed_attributes,
                password_hash,
                password_hash_type,
                salt_value,
                salt_location,
                salt_regex,
            ),
        )| pb::CiamProfile {
            user_name,
            phone_number,
            email,
            password,
            nickname,
            address,
            user_groups,
            birthdate_unix_ms: birthdate,
            customization_attributes,
            indexed_attributes,
            password_hash,
            password_hash_type,
            salt_value,
            salt_location,
            salt_regex,
        },
    )
}

fn proto_user() -> impl Strategy<Value = pb::User> {
    (
        text(),
        text(),
        text(),
        prop::collection::vec(text(), 0..4),
        prop::collection::hash_map(unicode_text(8), text(), 0..4),
        prop::option::of(proto_ciam()),
    )
        .prop_map(
            |(user_id, display_name, avatar_url, tags, attributes, ciam)| pb::User {
                user_id,
                display_name,
                avatar_url,
                tags,
                attributes,
                ciam,
            },
        )
}

fn batch_request() -> impl Strategy<Value = pb::BatchRegisterRequest> {
    (
        prop::collection::vec(text(), 0..3),
        prop::collection::vec(proto_user(), 0..8),
        text(),
        any::<bool>(),
    )
        .prop_map(
            |(targets, users, idempotency_key, dry_run)| pb::BatchRegisterRequest {
                targets,
                users,
                idempotency_key,
                dry_run,
            },
        )
}

fn stream_request() -> impl Strategy<Value = pb::BatchRegisterStreamRequest> {
    use pb::batch_register_stream_request::Message as Part;
    let header = (prop::collection::vec(text(), 0..3), text(), any::<bool>()).prop_map(
        |(targets, idempotency_key, dry_run)| {
            Part::Header(pb::BatchHeader {
                targets,
                idempotency_key,
                dry_run,
            })
        },
    );
    let chunk = prop::collection::vec(proto_user(), 0..8)
        .prop_map(|users| Part::Users(pb::UserChunk { users }));
    prop::option::of(prop_oneof![header, chunk])
        .prop_map(|message| pb::BatchRegisterStreamRequest { message })
}

fn list_registrations_request() -> impl Strategy<Value = pb::ListRegistrationsRequest> {
    (text(), text(), text(), enum_value(), any::<u32>(), text()).prop_map(
        |(batch_id, target, user_id, outcome, page_size, page_token)| {
            pb::ListRegistrationsRequest {
                batch_id,
                target,
                user_id,
                outcome,
                page_size,
                page_token,
            }
        },
    )
}

/// The domain user of `proto` is `proto`, field for field; unknown enum
/// values and empty secrets are "not given".
fn check_user_converted(proto: &pb::User) -> Result<(), TestCaseError> {
    let user = user_from_proto(proto.clone());
    prop_assert_eq!(&user.user_id, &proto.user_id);
    prop_assert_eq!(&user.display_name, &proto.display_name);
    prop_assert_eq!(&user.avatar_url, &proto.avatar_url);
    prop_assert_eq!(&user.tags, &proto.tags);
    let attributes: BTreeMap<String, String> = proto.attributes.clone().into_iter().collect();
    prop_assert_eq!(&user.attributes, &attributes);
    match (&user.ciam, &proto.ciam) {
        (None, None) => {}
        (Some(ciam), Some(sent)) => {
            prop_assert_eq!(&ciam.user_name, &sent.user_name);
            prop_assert_eq!(&ciam.phone_number, &sent.phone_number);
            prop_assert_eq!(&ciam.email, &sent.email);
            prop_assert_eq!(&ciam.nickname, &sent.nickname);
            prop_assert_eq!(&ciam.address, &sent.address);
            prop_assert_eq!(&ciam.user_groups, &sent.user_groups);
            prop_assert_eq!(&ciam.indexed_attributes, &sent.indexed_attributes);
            prop_assert_eq!(&ciam.salt_regex, &sent.salt_regex);
            let secret = |value: &Option<secrecy::SecretString>| {
                value
                    .as_ref()
                    .map(|secret| secret.expose_secret().to_owned())
            };
            let given = |value: &String| Some(value.clone()).filter(|value| !value.is_empty());
            prop_assert_eq!(secret(&ciam.password), given(&sent.password));
            prop_assert_eq!(secret(&ciam.password_hash), given(&sent.password_hash));
            prop_assert_eq!(secret(&ciam.salt_value), given(&sent.salt_value));
            prop_assert_eq!(
                ciam.birthdate_unix_ms,
                Some(sent.birthdate_unix_ms).filter(|ms| *ms != 0)
            );
            let hash_type = match sent.password_hash_type {
                1 => Some(PasswordHashType::Sha1),
                2 => Some(PasswordHashType::Bcrypt),
                _ => None,
            };
            prop_assert_eq!(ciam.password_hash_type, hash_type);
            let salt_location = match sent.salt_location {
                1 => Some(SaltLocation::Head),
                2 => Some(SaltLocation::Tail),
                3 => Some(SaltLocation::Other),
                _ => None,
            };
            prop_assert_eq!(ciam.salt_location, salt_location);
            prop_assert_eq!(
                ciam.customization_attributes.len(),
                sent.customization_attributes.len()
            );
            for (attribute, sent) in ciam
                .customization_attributes
                .iter()
                .zip(&sent.customization_attributes)
            {
                prop_assert_eq!(&attribute.name, &sent.name);
                prop_assert_eq!(&attribute.value, &sent.value);
                prop_assert_eq!(&attribute.kind, &sent.r#type);
            }
        }
        (converted, sent) => prop_assert!(
            false,
            "ciam given {:?}, converted {:?}",
            sent.is_some(),
            converted.is_some()
        ),
    }
    Ok(())
}

/// Decodes `bytes` as every request type of the service; whatever decodes
/// converts, one domain user per proto user.
fn decode_as_every_request(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(user) = pb::User::decode(bytes) {
        check_user_converted(&user)?;
    }
    if let Ok(request) = pb::BatchRegisterRequest::decode(bytes) {
        let count = request.users.len();
        let users: Vec<_> = request.users.into_iter().map(user_from_proto).collect();
        prop_assert_eq!(users.len(), count);
    }
    if let Ok(request) = pb::BatchRegisterStreamRequest::decode(bytes)
        && let Some(pb::batch_register_stream_request::Message::Users(chunk)) = request.message
    {
        let count = chunk.users.len();
        prop_assert_eq!(chunk.users.into_iter().map(user_from_proto).count(), count);
    }
    if let Ok(request) = pb::ListRegistrationsRequest::decode(bytes) {
        // an unknown outcome integer reads as OUTCOME_UNSPECIFIED: no filter
        let _filter = outcome_from_proto(request.outcome());
    }
    let _ = pb::GetBatchRequest::decode(bytes);
    let _ = pb::ListTargetsRequest::decode(bytes);
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    /// 512 cases: any proto user converts field for field.
    #[test]
    fn any_proto_user_converts_field_for_field(user in proto_user()) {
        check_user_converted(&user)?;
    }

    /// 512 cases: any bytes decode as each request type or fail; no panic.
    #[test]
    fn arbitrary_bytes_decode_as_every_request_or_fail(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        decode_as_every_request(&bytes)?;
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// 256 cases: requests survive the wire unchanged, and a batch converts
    /// into exactly one domain user per proto user, in order.
    #[test]
    fn requests_survive_the_wire_and_convert_one_user_per_user(
        batch in batch_request(),
        stream in stream_request(),
        list in list_registrations_request(),
    ) {
        let decoded = pb::BatchRegisterRequest::decode(batch.encode_to_vec().as_slice())
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(&decoded, &batch);
        let users: Vec<_> = decoded.users.iter().cloned().map(user_from_proto).collect();
        prop_assert_eq!(users.len(), batch.users.len());
        for (user, sent) in users.iter().zip(&batch.users) {
            prop_assert_eq!(&user.user_id, &sent.user_id);
        }
        let decoded = pb::BatchRegisterStreamRequest::decode(stream.encode_to_vec().as_slice())
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(&decoded, &stream);
        let decoded = pb::ListRegistrationsRequest::decode(list.encode_to_vec().as_slice())
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(&decoded, &list);
    }

    /// 256 cases: a valid encoding cut short or with one byte changed decodes
    /// or fails, and what decodes converts.
    #[test]
    fn damaged_encodings_decode_or_fail(
        batch in batch_request(),
        stream in stream_request(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        for mut bytes in [batch.encode_to_vec(), stream.encode_to_vec()] {
            if !bytes.is_empty() {
                let at = flip.index(bytes.len());
                bytes[at] = byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            decode_as_every_request(&bytes)?;
        }
    }

    /// 256 cases: every integer an outcome field can carry reads as an
    /// outcome or as "no filter", and the defined ones round-trip.
    #[test]
    fn any_outcome_integer_reads_as_an_outcome_or_no_filter(value in any::<i32>()) {
        let request = pb::ListRegistrationsRequest { outcome: value, ..Default::default() };
        let filter = outcome_from_proto(request.outcome());
        match pb::Outcome::try_from(value) {
            Ok(pb::Outcome::Unspecified) | Err(_) => prop_assert_eq!(filter, None),
            Ok(outcome) => {
                let domain = filter.ok_or_else(|| TestCaseError::fail(format!("{outcome:?} read as no filter")))?;
                prop_assert_eq!(outcome_to_proto(domain), outcome);
            }
        }
    }
}

/// `depth` nested start-group tags (wire type 3), closed or not, as field
/// `field` of the outer message: prost skips unknown groups recursively, so
/// only its recursion limit (100) keeps this from overflowing the stack.
fn nested_groups(field: u32, depth: usize, closed: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    let start = u64::from((field << 3) | 3);
    let end = u64::from((field << 3) | 4);
    for _ in 0..depth {
        prost::encoding::encode_varint(start, &mut bytes);
    }
    if closed {
        for _ in 0..depth {
            prost::encoding::encode_varint(end, &mut bytes);
        }
    }
    bytes
}

/// `depth` nested `users` messages (field 2 of BatchRegisterRequest, field 6
/// `ciam` of User): each level one length-delimited message inside the last.
fn nested_messages(depth: usize) -> Vec<u8> {
    let mut inner: Vec<u8> = Vec::new();
    for level in 0..depth {
        let tag = if level % 2 == 0 {
            (6 << 3) | 2
        } else {
            (2 << 3) | 2
        };
        let mut outer = Vec::with_capacity(inner.len() + 12);
        prost::encoding::encode_varint(tag, &mut outer);
        prost::encoding::encode_varint(inner.len() as u64, &mut outer);
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    inner
}

proptest! {
    #![proptest_config(cases(32))]

    /// 32 cases, nesting up to 100,000 groups: refused at prost's recursion
    /// limit, or decoded, never a stack overflow.
    #[test]
    fn deeply_nested_groups_are_refused_not_a_stack_overflow(
        field in prop_oneof![Just(1u32), Just(2), Just(6), 7u32..=1000],
        depth in prop_oneof![1 => 1usize..=150, 3 => 101usize..=100_000],
        closed in any::<bool>(),
    ) {
        decode_as_every_request(&nested_groups(field, depth, closed))?;
    }

    /// 32 cases, messages nested 1 to 2,000 deep through fields the schema
    /// gives other types: decoded or refused, never a stack overflow.
    #[test]
    fn deeply_nested_messages_are_refused_not_a_stack_overflow(depth in 1usize..=2_000) {
        decode_as_every_request(&nested_messages(depth))?;
    }
}

/// The domain has an outcome for every defined proto outcome but
/// OUTCOME_UNSPECIFIED, and back.
#[test]
fn every_defined_outcome_round_trips() {
    for outcome in Outcome::ALL {
        assert_eq!(outcome_from_proto(outcome_to_proto(outcome)), Some(outcome));
    }
    assert_eq!(outcome_from_proto(pb::Outcome::Unspecified), None);
}
