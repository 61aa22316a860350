//! Validation: each vendor's `validate` judges users holding any Unicode in
//! every field of `registrar::domain::User` without panicking, and its
//! verdict is the vendor's documented rules, recomputed here independently:
//! a user is accepted exactly when it breaks no rule, and a rejection names
//! a field whose rule the user breaks. Byte limits (ZIM's UserId, UserName
//! and UserAvatar, Volcengine's Ext keys and values) are counted in bytes and
//! character limits (Volcengine's NickName and Portrait, CIAM's indexed
//! attributes) in characters, so text of multi-byte characters right at a
//! limit tells the two apart. Validation only judges: an accepted user's
//! values reach the vendor's request body whole, never cut inside a
//! character or shortened.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use registrar::{
    domain::{CiamAttribute, CiamProfile, PasswordHashType, SaltLocation, User, VendorKind},
    vendor_api::AttemptContext,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::support::{cases, mixed_width_text, text_near_byte_limit, unicode_text, vendor};

/// `count` copies of a two-byte character: within a character limit of
/// `count` but over a byte limit of `count`.
fn two_byte_chars_near(limit: usize) -> impl Strategy<Value = String> {
    (limit.saturating_sub(4)..=limit + 4).prop_map(|count| "é".repeat(count))
}

/// The ZIM UserId charset (docs/vendors/zim.md#user-id-charset), with the
/// odd character outside it.
fn zim_charset_text() -> impl Strategy<Value = String> {
    let allowed: Vec<char> = ('0'..='9')
        .chain('a'..='z')
        .chain('A'..='Z')
        .chain("!#$%&()+-:;<=.>?@[]^_ {}|~".chars())
        .collect();
    let character = prop_oneof![
        20 => prop::sample::select(allowed),
        1 => prop::sample::select(vec!['é', '\u{0}', '"', '\\', '/', ',', '*', '\'', '`']),
    ];
    prop::collection::vec(character, 1..=36).prop_map(String::from_iter)
}

fn user_id() -> impl Strategy<Value = String> {
    prop_oneof![
        unicode_text(40),
        zim_charset_text(),
        text_near_byte_limit(32),
        // Volcengine UserIds: int64 in canonical form, or nearly
        any::<i64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| format!("+{n}")),
        any::<u64>().prop_map(|n| format!("0{n}")),
        Just(String::new()),
        Just("-0".to_owned()),
        Just("9223372036854775808".to_owned()),
    ]
}

fn display_name() -> impl Strategy<Value = String> {
    prop_oneof![
        unicode_text(40),
        mixed_width_text(300),
        text_near_byte_limit(256),
        two_byte_chars_near(100),
        two_byte_chars_near(256),
    ]
}

fn avatar_url() -> impl Strategy<Value = String> {
    prop_oneof![
        unicode_text(40),
        mixed_width_text(600),
        text_near_byte_limit(500),
        two_byte_chars_near(500),
    ]
}

fn attributes() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = prop_oneof![
        4 => unicode_text(8),
        1 => text_near_byte_limit(50),
        1 => two_byte_chars_near(25),
        1 => unicode_text(6).prop_map(|rest| format!("s:{rest}")),
    ];
    let value = prop_oneof![
        4 => unicode_text(10),
        1 => text_near_byte_limit(500),
        1 => two_byte_chars_near(250),
    ];
    prop_oneof![
        4 => prop::collection::btree_map(key.clone(), value.clone(), 0..=4),
        1 => prop::collection::btree_map(key, value, 18..=23),
    ]
}

/// Empty a third of the time (the required-field rules), anything otherwise.
fn maybe_empty(max_chars: usize) -> impl Strategy<Value = String> {
    prop_oneof![1 => Just(String::new()), 2 => unicode_text(max_chars)]
}

fn secret() -> impl Strategy<Value = Option<SecretString>> {
    prop::option::of(maybe_empty(12).prop_map(SecretString::from))
}

fn ciam_profile() -> impl Strategy<Value = CiamProfile> {
    let identity = (
        maybe_empty(20),
        maybe_empty(20),
        maybe_empty(20),
        secret(),
        unicode_text(20),
        unicode_text(20),
        prop::collection::vec(maybe_empty(8), 0..3),
        prop::option::of(any::<i64>()),
    );
    let attribute = (maybe_empty(8), unicode_text(8), unicode_text(8))
        .prop_map(|(name, value, kind)| CiamAttribute { name, value, kind });
    let indexed = prop_oneof![
        4 => unicode_text(20),
        1 => two_byte_chars_near(512),
        1 => mixed_width_text(520),
    ];
    let hashing = (
        prop::collection::vec(attribute, 0..3),
        prop::collection::vec(indexed, 0..=6),
        secret(),
        prop::option::of(prop::sample::select(vec![
            PasswordHashType::Sha1,
            PasswordHashType::Bcrypt,
        ])),
        secret(),
        prop::option::of(prop::sample::select(vec![
            SaltLocation::Head,
            SaltLocation::Tail,
            SaltLocation::Other,
        ])),
        maybe_empty(8),
    );
    (identity, hashing).prop_map(
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
        )| CiamProfile {
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

/// A user with any Unicode in every field, often right at a vendor's limits.
fn any_user() -> impl Strategy<Value = User> {
    (
        user_id(),
        display_name(),
        avatar_url(),
        prop::collection::vec(unicode_text(10), 0..4),
        attributes(),
        prop::option::weighted(0.8, ciam_profile()),
    )
        .prop_map(
            |(user_id, display_name, avatar_url, tags, attributes, ciam)| User {
                user_id,
                display_name,
                avatar_url,
                tags,
                attributes,
                ciam,
            },
        )
}

// ---------------------------------------------------------------------------
// The documented rules, recomputed without the crate's code.
// ---------------------------------------------------------------------------

/// docs/vendors/zim.md#field-rules: UserId 1..=32 bytes of digits, English
/// letters, spaces and the listed symbols; UserName at most 256 bytes,
/// UserAvatar at most 500 bytes.
fn zim_violations(user: &User) -> Vec<&'static str> {
    let mut broken = Vec::new();
    let charset = |c: char| c.is_ascii_alphanumeric() || "!#$%&()+-:;<=.>?@[]^_ {}|~".contains(c);
    if user.user_id.is_empty() || user.user_id.len() > 32 || !user.user_id.chars().all(charset) {
        broken.push("userId");
    }
    if user.display_name.len() > 256 {
        broken.push("displayName");
    }
    if user.avatar_url.len() > 500 {
        broken.push("avatarUrl");
    }
    broken
}

/// docs/vendors/volc-rtc.md#field-rules: UserId an int64 (in canonical
/// decimal, so that the id answered back is the id sent); NickName at most
/// 100 characters, Portrait 500 characters; Ext at most 20 keys, keys at
/// most 50 bytes and not starting with `s:`, values at most 500 bytes.
fn volc_violations(user: &User) -> Vec<&'static str> {
    let mut broken = Vec::new();
    let canonical = user
        .user_id
        .parse::<i64>()
        .is_ok_and(|n| n.to_string() == user.user_id);
    if !canonical {
        broken.push("userId");
    }
    if user.display_name.chars().count() > 100 {
        broken.push("displayName");
    }
    if user.avatar_url.chars().count() > 500 {
        broken.push("avatarUrl");
    }
    let attributes = &user.attributes;
    if attributes.len() > 20
        || attributes
            .iter()
            .any(|(key, value)| key.len() > 50 || key.starts_with("s:") || value.len() > 500)
    {
        broken.push("attributes");
    }
    broken
}

/// docs/vendors/ciam.md#indexed-attributes and #membermap: the optional
/// fields CreateUser and imports share.
fn ciam_optional_violations(profile: &CiamProfile) -> Vec<&'static str> {
    let mut broken = Vec::new();
    if profile.indexed_attributes.len() > 5
        || profile
            .indexed_attributes
            .iter()
            .any(|value| value.chars().count() > 512)
    {
        broken.push("ciam.indexedAttributes");
    }
    if profile
        .customization_attributes
        .iter()
        .any(|attribute| attribute.name.is_empty())
    {
        broken.push("ciam.customizationAttributes");
    }
    if profile.user_groups.iter().any(String::is_empty) {
        broken.push("ciam.userGroups");
    }
    broken
}

fn is_blank(secret: &Option<SecretString>) -> bool {
    secret
        .as_ref()
        .is_none_or(|secret| secret.expose_secret().is_empty())
}

/// docs/vendors/ciam.md#request: UserName, PhoneNumber, Email and Password required.
fn ciam_violations(user: &User) -> Vec<&'static str> {
    let Some(profile) = &user.ciam else {
        return vec!["ciam"];
    };
    let mut broken = ciam_optional_violations(profile);
    for (field, value) in [
        ("ciam.userName", &profile.user_name),
        ("ciam.phoneNumber", &profile.phone_number),
        ("ciam.email", &profile.email),
    ] {
        if value.is_empty() {
            broken.push(field);
        }
    }
    if is_blank(&profile.password) {
        broken.push("ciam.password");
    }
    broken
}

/// docs/vendors/ciam-import.md#identifiers and #password-hash-and-salt: one
/// identifier at least; hashes, never plaintext passwords; a hash needs its
/// type, a salt its location, an OTHER location its regex.
fn ciam_import_violations(user: &User) -> Vec<&'static str> {
    let Some(profile) = &user.ciam else {
        return vec!["ciam"];
    };
    let mut broken = ciam_optional_violations(profile);
    if profile.user_name.is_empty() && profile.phone_number.is_empty() && profile.email.is_empty() {
        broken.push("ciam.userName");
    }
    if profile.password.is_some() && profile.password_hash.is_none() {
        broken.push("ciam.password");
    }
    if profile.password_hash.is_some() {
        if profile.password_hash_type.is_none() {
            broken.push("ciam.passwordHashType");
        }
        if profile.salt_value.is_some() {
            match profile.salt_location {
                None => broken.push("ciam.saltLocation"),
                Some(SaltLocation::Other) if profile.salt_regex.is_empty() => {
                    broken.push("ciam.saltRegex")
                }
                Some(_) => {}
            }
        }
    }
    broken
}

/// The fields of `user` that break `kind`'s documented rules.
fn violations(kind: VendorKind, user: &User) -> Vec<&'static str> {
    match kind {
        // docs/vendors/lcic.md#field-rules: OriginId (the userId) must be present.
        VendorKind::TencentLcic if user.user_id.is_empty() => vec!["userId"],
        VendorKind::TencentLcic => vec![],
        VendorKind::ZegoZim => zim_violations(user),
        VendorKind::VolcRtc => volc_violations(user),
        VendorKind::TencentCiam => ciam_violations(user),
        VendorKind::TencentCiamImport => ciam_import_violations(user),
    }
}

/// The texts of `user` that `kind`'s request body carries verbatim.
fn texts_sent(kind: VendorKind, user: &User) -> Vec<String> {
    let mut texts = Vec::new();
    match kind {
        VendorKind::TencentLcic | VendorKind::ZegoZim => {
            texts.extend([
                user.user_id.clone(),
                user.display_name.clone(),
                user.avatar_url.clone(),
            ]);
        }
        VendorKind::VolcRtc => {
            texts.extend([user.display_name.clone(), user.avatar_url.clone()]);
            texts.extend(user.tags.iter().cloned());
            for (key, value) in &user.attributes {
                texts.extend([key.clone(), value.clone()]);
            }
        }
        VendorKind::TencentCiam | VendorKind::TencentCiamImport => {
            let profile = user
                .ciam
                .as_ref()
                .expect("an accepted CIAM user has a profile");
            texts.extend([
                profile.user_name.clone(),
                profile.phone_number.clone(),
                profile.email.clone(),
                profile.nickname.clone(),
                profile.address.clone(),
            ]);
            texts.extend(profile.user_groups.iter().cloned());
            texts.extend(profile.indexed_attributes.iter().cloned());
            for attribute in &profile.customization_attributes {
                texts.extend([attribute.name.clone(), attribute.value.clone()]);
            }
        }
    }
    // empty optional fields are omitted from the bodies, by design
    texts.retain(|text| !text.is_empty());
    texts
}

/// Every string in a JSON document, object keys included.
fn strings_in(value: &Value, strings: &mut BTreeSet<String>) {
    match value {
        Value::String(text) => {
            strings.insert(text.clone());
        }
        Value::Array(items) => items.iter().for_each(|item| strings_in(item, strings)),
        Value::Object(fields) => {
            for (key, item) in fields {
                strings.insert(key.clone());
                strings_in(item, strings);
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// 512 cases, each judged by all five vendors: no panic; accepted
    /// exactly when no documented rule is broken; a rejection names a field
    /// whose rule is broken, with a `validation.*` code and a rule to read.
    #[test]
    fn every_vendor_accepts_exactly_the_users_that_follow_its_rules(user in any_user()) {
        for kind in VendorKind::ALL {
            let broken = violations(kind, &user);
            match vendor(kind).validate(&user) {
                Ok(()) => prop_assert!(
                    broken.is_empty(),
                    "{} accepted a user breaking {:?}: {:?}", kind, broken, user
                ),
                Err(rejection) => {
                    prop_assert!(
                        broken.contains(&rejection.field),
                        "{} rejected {} ({}), but the rules broken are {:?}: {:?}",
                        kind, rejection.field, rejection.rule, broken, user
                    );
                    prop_assert!(rejection.code.starts_with("validation."), "{:?}", rejection);
                    prop_assert!(!rejection.rule.is_empty(), "{:?}", rejection);
                    prop_assert!(rejection.message().starts_with(rejection.field));
                }
            }
        }
    }

    /// 256 cases: an accepted user's values reach the request body whole;
    /// the body is JSON, so a value cut inside a character could not even be
    /// written, and a shortened one would not be found.
    #[test]
    fn accepted_users_are_sent_with_every_value_whole(user in any_user()) {
        let attempt = AttemptContext { unix_time: 1_700_000_000, nonce: "0123456789abcdef".to_owned() };
        for kind in VendorKind::ALL {
            let module = vendor(kind);
            if module.validate(&user).is_err() {
                continue;
            }
            let request = module
                .build_request(&[&user], &attempt)
                .map_err(|error| TestCaseError::fail(format!("{kind}: an accepted user's request fails: {error}")))?;
            let body: Value = serde_json::from_slice(request.body())
                .map_err(|error| TestCaseError::fail(format!("{kind}: the body is not JSON: {error}")))?;
            let mut strings = BTreeSet::new();
            strings_in(&body, &mut strings);
            for text in texts_sent(kind, &user) {
                prop_assert!(strings.contains(&text), "{}: {:?} is not in the body {}", kind, text, body);
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// 256 cases: ZIM's byte limits, right at the limit with a last
    /// character of one to four bytes: accepted exactly when the bytes fit,
    /// whatever the character count.
    #[test]
    fn zim_limits_count_bytes_not_characters(
        user_id in text_near_byte_limit(32),
        display_name in text_near_byte_limit(256),
        avatar_url in text_near_byte_limit(500),
        field in 0usize..3,
    ) {
        // one field at its limit at a time, the others valid
        let mut user = User { user_id: "u1".to_owned(), ..User::default() };
        let (name, limit, len) = match field {
            0 => {
                // keep the id within the charset unless its last character is the point
                user.user_id = user_id;
                ("userId", 32, user.user_id.len())
            }
            1 => {
                user.display_name = display_name;
                ("displayName", 256, user.display_name.len())
            }
            _ => {
                user.avatar_url = avatar_url;
                ("avatarUrl", 500, user.avatar_url.len())
            }
        };
        let verdict = vendor(VendorKind::ZegoZim).validate(&user);
        let ascii = user.user_id.is_ascii();
        match verdict {
            Ok(()) => prop_assert!(len <= limit, "{} of {} bytes accepted", name, len),
            Err(rejection) if rejection.code == "validation.too_long" => {
                prop_assert_eq!(rejection.field, name);
                prop_assert!(len > limit, "{} of {} bytes rejected as too long", name, len);
                // the rule reports the length in bytes
                let expected_rule = format!("must be at most {limit} bytes (got {len})");
                prop_assert_eq!(rejection.rule, expected_rule);
            }
            // a UserId ending in a non-ASCII character breaks the charset instead
            Err(rejection) => prop_assert!(
                rejection.field == "userId" && !ascii && len <= limit,
                "{:?}", rejection
            ),
        }
    }
}
