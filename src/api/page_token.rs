//! ListRegistrations page tokens: opaque to callers, integrity-checked and
//! bound to the filters they were issued for, so a token made by hand, edited,
//! or carried over to other filters is refused. Every replica and every
//! restart checks tokens with the same key, so paging works behind a load
//! balancer and across a rollout. The check is not an access control: a
//! token only says where a page starts among the rows its filters already
//! select, and holds nothing but that position.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::engine::queries::{RegistrationCursor, RegistrationFilter};

/// Bytes of the HMAC-SHA256 tag kept in a token.
const TAG_LEN: usize = 16;
/// Separates these MACs from any other use of the key.
const CONTEXT: &[u8] = b"registrar.v1.ListRegistrations.pageToken";

/// The key every registrar process checks page tokens with.
const SHARED_KEY: &[u8] = b"registrar page tokens: integrity, not secrecy";

/// Issues and checks page tokens.
pub struct PageTokens {
    key: Vec<u8>,
}

/// A token this process did not issue for these filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignToken;

impl PageTokens {
    /// Tokens that every replica and every restart of registrar accepts.
    pub fn shared() -> Self {
        PageTokens::with_key(SHARED_KEY)
    }

    fn with_key(key: &[u8]) -> Self {
        PageTokens { key: key.to_vec() }
    }

    pub fn issue(&self, cursor: RegistrationCursor, filter: &RegistrationFilter) -> String {
        let position = cursor.0.to_be_bytes();
        let tag = self.mac(&position, filter).finalize().into_bytes();
        let mut token = Vec::with_capacity(position.len() + TAG_LEN);
        token.extend_from_slice(&position);
        token.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The cursor of `token`; an empty token starts at the first row.
    pub fn check(
        &self,
        token: &str,
        filter: &RegistrationFilter,
    ) -> Result<RegistrationCursor, ForeignToken> {
        if token.is_empty() {
            return Ok(RegistrationCursor::default());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| ForeignToken)?;
        let (position, tag) = bytes.split_at_checked(8).ok_or(ForeignToken)?;
        if tag.len() != TAG_LEN {
            return Err(ForeignToken);
        }
        self.mac(position, filter)
            .verify_truncated_left(tag)
            .map_err(|_| ForeignToken)?;
        let position: [u8; 8] = position.try_into().map_err(|_| ForeignToken)?;
        Ok(RegistrationCursor(i64::from_be_bytes(position)))
    }

    fn mac(&self, position: &[u8], filter: &RegistrationFilter) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(CONTEXT);
        mac.update(position);
        let outcome = filter.outcome.map(|outcome| outcome.as_str());
        for field in [
            filter.batch_id.as_deref(),
            filter.target.as_deref(),
            filter.user_id.as_deref(),
            outcome,
        ] {
            // length-prefixed, and absent apart from empty, so no two filters share bytes
            match field {
                None => mac.update(&[0]),
                Some(value) => {
                    mac.update(&[1]);
                    mac.update(&(value.len() as u64).to_be_bytes());
                    mac.update(value.as_bytes());
                }
            }
        }
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Outcome;

    fn filter(target: &str) -> RegistrationFilter {
        RegistrationFilter {
            target: Some(target.to_owned()),
            outcome: Some(Outcome::Registered),
            ..RegistrationFilter::default()
        }
    }

    #[test]
    fn a_token_round_trips_for_its_own_filters() {
        let tokens = PageTokens::shared();
        let token = tokens.issue(RegistrationCursor(42), &filter("lcic"));
        assert_eq!(
            tokens.check(&token, &filter("lcic")),
            Ok(RegistrationCursor(42))
        );
        assert_eq!(tokens.check("", &filter("lcic")), Ok(RegistrationCursor(0)));
    }

    #[test]
    fn hand_made_tokens_are_refused() {
        let tokens = PageTokens::shared();
        for forged in [
            "after:0",
            "after:-5",
            "not-a-token",
            "YWZ0ZXI6MA",
            "YWZ0ZXI6LTU",
        ] {
            assert_eq!(
                tokens.check(forged, &filter("lcic")),
                Err(ForeignToken),
                "{forged}"
            );
        }
        let mut edited = URL_SAFE_NO_PAD
            .decode(tokens.issue(RegistrationCursor(42), &filter("lcic")))
            .unwrap();
        edited[7] ^= 1;
        assert_eq!(
            tokens.check(&URL_SAFE_NO_PAD.encode(edited), &filter("lcic")),
            Err(ForeignToken)
        );
    }

    #[test]
    fn a_token_of_other_filters_or_another_key_is_refused() {
        let tokens = PageTokens::shared();
        let token = tokens.issue(RegistrationCursor(42), &filter("lcic"));
        assert_eq!(tokens.check(&token, &filter("zim")), Err(ForeignToken));
        let unfiltered = RegistrationFilter::default();
        assert_eq!(tokens.check(&token, &unfiltered), Err(ForeignToken));
        let other_key = PageTokens::with_key(b"another key");
        assert_eq!(other_key.check(&token, &filter("lcic")), Err(ForeignToken));
        // another replica, or this one after a restart
        assert_eq!(
            PageTokens::shared().check(&token, &filter("lcic")),
            Ok(RegistrationCursor(42))
        );
    }
}
