//! What a caller asked for one user, as a short keyed hash stored in the
//! user's rows: a replay under the same idempotency key must ask for the same
//! thing, and the first index whose fingerprint differs names the change.
//!
//! The hash is HMAC-SHA256, keyed by the batch id, over every field of the
//! user in a fixed, length-prefixed order (attributes sorted by name).
//! Passwords, password hashes and salts enter only through that keyed hash:
//! the stored fingerprint reveals nothing of them, and the same password in
//! two batches hashes differently.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::domain::{CiamProfile, PasswordHashType, SaltLocation, User};

/// Bytes of the MAC kept: 128 bits, stored as 32 hex digits.
const KEPT_BYTES: usize = 16;

/// The fingerprint of `user` in batch `batch_id`.
pub(super) fn fingerprint(batch_id: &str, user: &User) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(batch_id.as_bytes()).expect("HMAC takes keys of any length");
    let mut field = |bytes: &[u8]| {
        mac.update(&(bytes.len() as u64).to_le_bytes());
        mac.update(bytes);
    };
    field(user.user_id.as_bytes());
    field(user.display_name.as_bytes());
    field(user.avatar_url.as_bytes());
    field(&(user.tags.len() as u64).to_le_bytes());
    for tag in &user.tags {
        field(tag.as_bytes());
    }
    field(&(user.attributes.len() as u64).to_le_bytes());
    for (name, value) in &user.attributes {
        field(name.as_bytes());
        field(value.as_bytes());
    }
    match &user.ciam {
        None => field(b"no-ciam"),
        Some(profile) => ciam_fields(profile, &mut field),
    }
    let tag = mac.finalize().into_bytes();
    hex::encode(&tag[..KEPT_BYTES])
}

fn ciam_fields(profile: &CiamProfile, field: &mut impl FnMut(&[u8])) {
    let secret = |field: &mut dyn FnMut(&[u8]), value: &Option<SecretString>| match value {
        None => field(b"none"),
        Some(value) => field(value.expose_secret().as_bytes()),
    };
    field(b"ciam");
    field(profile.user_name.as_bytes());
    field(profile.phone_number.as_bytes());
    field(profile.email.as_bytes());
    secret(field, &profile.password);
    field(profile.nickname.as_bytes());
    field(profile.address.as_bytes());
    field(&(profile.user_groups.len() as u64).to_le_bytes());
    for group in &profile.user_groups {
        field(group.as_bytes());
    }
    field(&profile.birthdate_unix_ms.unwrap_or(i64::MIN).to_le_bytes());
    field(&(profile.customization_attributes.len() as u64).to_le_bytes());
    for attribute in &profile.customization_attributes {
        field(attribute.name.as_bytes());
        field(attribute.value.as_bytes());
        field(attribute.kind.as_bytes());
    }
    field(&(profile.indexed_attributes.len() as u64).to_le_bytes());
    for attribute in &profile.indexed_attributes {
        field(attribute.as_bytes());
    }
    secret(field, &profile.password_hash);
    field(match profile.password_hash_type {
        None => b"none",
        Some(PasswordHashType::Sha1) => b"sha1",
        Some(PasswordHashType::Bcrypt) => b"bcrypt",
    });
    secret(field, &profile.salt_value);
    field(match profile.salt_location {
        None => b"none",
        Some(SaltLocation::Head) => b"head",
        Some(SaltLocation::Tail) => b"tail",
        Some(SaltLocation::Other) => b"other",
    });
    field(profile.salt_regex.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> User {
        User {
            user_id: id.to_owned(),
            display_name: "Ada".to_owned(),
            ..User::default()
        }
    }

    #[test]
    fn the_same_user_has_the_same_fingerprint_in_its_batch_only() {
        assert_eq!(
            fingerprint("b1", &user("u1")),
            fingerprint("b1", &user("u1"))
        );
        assert_ne!(
            fingerprint("b1", &user("u1")),
            fingerprint("b2", &user("u1"))
        );
        assert_eq!(fingerprint("b1", &user("u1")).len(), 32);
    }

    #[test]
    fn any_changed_field_changes_the_fingerprint() {
        let base = fingerprint("b", &user("u1"));
        let mut renamed = user("u1");
        renamed.display_name = "Grace".to_owned();
        assert_ne!(fingerprint("b", &renamed), base);
        // fields are length-prefixed: moving a character between two fields is a change
        let mut shifted = user("u1A");
        shifted.display_name = "da".to_owned();
        assert_ne!(fingerprint("b", &shifted), base);
        let mut with_password = user("u1");
        with_password.ciam = Some(CiamProfile {
            password: Some(SecretString::from("hunter2")),
            ..CiamProfile::default()
        });
        let mut other_password = with_password.clone();
        if let Some(profile) = &mut other_password.ciam {
            profile.password = Some(SecretString::from("hunter3"));
        }
        let with = fingerprint("b", &with_password);
        assert_ne!(with, fingerprint("b", &other_password));
        assert!(!with.contains("hunter2"));
    }
}
