//! Validation of a batch's users before anything is written or sent: the
//! rules registrar itself enforces (a user id, no duplicate within a batch)
//! and then each target vendor's documented field rules. Validation only
//! judges: it never writes, sends or changes a user.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
};

use crate::{
    domain::{Rejection, User},
    vendor_api::VendorApi,
};

/// Remembers the user ids of one batch, so that a repeat is rejected.
///
/// Ids are kept as 64-bit keyed hashes with the index of their first
/// occurrence: 16 bytes per user however long the ids are, which keeps a
/// stream of millions of users small. The price is a false repeat when two
/// ids share a hash: about n^2 / 2^65, 3e-8 for a million users.
#[derive(Debug, Default)]
pub struct BatchValidator {
    first_index_by_id: HashMap<u64, u64>,
    hasher: RandomState,
}

impl BatchValidator {
    /// Checks the rules every target shares; records the id when it is new.
    pub fn check_common(&mut self, user: &User, index: u64) -> Result<(), Rejection> {
        if user.user_id.is_empty() {
            return Err(Rejection::required("userId"));
        }
        let key = self.hasher.hash_one(user.user_id.as_str());
        if let Some(first) = self.first_index_by_id.get(&key) {
            return Err(Rejection::new(
                "userId",
                "validation.duplicate",
                format!("duplicates the user at index {first} of this batch"),
            ));
        }
        self.first_index_by_id.insert(key, index);
        Ok(())
    }
}

/// The verdict for one user at one target: the common rules, then the vendor's.
pub fn check_for_target(
    common: &Result<(), Rejection>,
    vendor: &dyn VendorApi,
    user: &User,
) -> Result<(), Rejection> {
    common.clone()?;
    vendor.validate(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(user_id: &str) -> User {
        User {
            user_id: user_id.to_owned(),
            ..User::default()
        }
    }

    #[test]
    fn empty_and_repeated_ids_are_rejected_with_field_and_rule() {
        let mut validator = BatchValidator::default();
        assert_eq!(validator.check_common(&user("a"), 0), Ok(()));
        assert_eq!(validator.check_common(&user("b"), 1), Ok(()));
        let empty = validator.check_common(&user(""), 2).unwrap_err();
        assert_eq!(empty.field, "userId");
        assert_eq!(empty.code, "validation.required");
        let repeat = validator.check_common(&user("a"), 3).unwrap_err();
        assert_eq!(repeat.code, "validation.duplicate");
        assert_eq!(
            repeat.message(),
            "userId duplicates the user at index 0 of this batch"
        );
    }
}
