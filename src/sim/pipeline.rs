//! The one pipeline every simulated vendor call goes through: read the body
//! (refusing one over the vendor's limit) -> pick the account the call names
//! -> authenticate -> validate the body -> admit to the account's quota and
//! change its memory -> answer. A vendor plugs in as an [`Endpoint`]: its
//! hooks say how each step reads in that vendor's terms (which credential
//! names the account, which gateway checks run and in what order, which code
//! a throttled call gets, what an answer looks like). Every call is recorded
//! once, with its fate: one refused before the quota step by
//! [`Shared::refuse`], any other by [`Shared::admit`]. Faults and latency are
//! applied around the pipeline, by the server (`sim/mod.rs`).

use axum::{
    body::Body,
    http::{HeaderMap, header::CONTENT_LENGTH, request::Parts},
    response::Response,
};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use super::state::{AppState, CallInfo, Refusal, Shared, SimAccount};
use crate::domain::VendorKind;

/// One simulated vendor action, as hooks on the shared pipeline ([`serve`]).
pub(super) trait Endpoint {
    /// The vendor the calls are recorded under.
    const VENDOR: VendorKind;
    /// The action the calls are recorded under.
    const ACTION: &'static str;
    /// The largest body the vendor reads.
    const MAX_BODY_BYTES: usize;
    /// What the call's head (headers, query) says before the body is read —
    /// the claimed credential, what the answer needs — carried to the answer.
    type Head: Send;
    /// A body that passed validation.
    type Valid;
    /// What an accepted call answers.
    type Accepted;

    fn head(parts: &Parts) -> Self::Head;
    /// The refusal of a body that could not be read.
    fn body_refusal(error: BodyError) -> Refusal;
    /// The account the call names, from its head and (once read) its body.
    fn pick_account<'a>(
        accounts: &'a [SimAccount],
        head: &Self::Head,
        body: Option<&Value>,
    ) -> Option<&'a SimAccount>;
    /// The users the call carries, read leniently for its record.
    fn carried_user_ids(body: Option<&Value>) -> Vec<String>;
    /// The gateway's checks, in the vendor's order; the authenticated account.
    fn authenticate<'a>(
        parts: &Parts,
        head: &Self::Head,
        body: &[u8],
        account: Option<&'a SimAccount>,
        accounts: &'a [SimAccount],
    ) -> Result<&'a SimAccount, Refusal>;
    /// The body's verdict, judged before the quota step (it may note in `head`
    /// what the answer needs, and may read the account's memory).
    fn validate(
        shared: &Shared,
        head: &mut Self::Head,
        account: &SimAccount,
        body: Option<&Value>,
    ) -> Result<Self::Valid, Refusal>;
    /// The vendor's answer to a call over the quota.
    fn throttled() -> Refusal;
    /// Changes the account's memory for an admitted, valid call; a refusal
    /// here must leave the memory as it was.
    fn accept(
        app: &mut AppState,
        account: &SimAccount,
        valid: Self::Valid,
    ) -> Result<Self::Accepted, Refusal>;
    /// The answer to an accepted call.
    fn accepted(head: &Self::Head, accepted: Self::Accepted) -> Response;
    /// The answer to a refused or throttled call.
    fn refused(head: &Self::Head, refusal: &Refusal) -> Response;
}

/// Answers one call of `E` and records it.
pub(super) async fn serve<E: Endpoint>(shared: &Shared, parts: &Parts, body: Body) -> Response {
    let mut head = E::head(parts);
    let body = match read_body(&parts.headers, body, E::MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(error) => {
            let refusal = E::body_refusal(error);
            let account = E::pick_account(&shared.accounts, &head, None);
            shared.refuse(call_info::<E>(parts, account, Vec::new()), &refusal);
            return E::refused(&head, &refusal);
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let account = E::pick_account(&shared.accounts, &head, parsed.as_ref());
    let call = call_info::<E>(parts, account, E::carried_user_ids(parsed.as_ref()));
    let account = match E::authenticate(parts, &head, &body, account, &shared.accounts) {
        Ok(account) => account,
        Err(refusal) => {
            shared.refuse(call, &refusal);
            return E::refused(&head, &refusal);
        }
    };
    let verdict = E::validate(shared, &mut head, account, parsed.as_ref());
    let decision = shared.admit(account, call, E::throttled(), verdict, |app, valid| {
        E::accept(app, account, valid)
    });
    match decision {
        Ok(accepted) => E::accepted(&head, accepted),
        Err(refusal) => E::refused(&head, &refusal),
    }
}

fn call_info<E: Endpoint>(
    parts: &Parts,
    account: Option<&SimAccount>,
    user_ids: Vec<String>,
) -> CallInfo {
    CallInfo {
        vendor: E::VENDOR,
        action: E::ACTION,
        app_id: account.map(|account| account.app_id),
        user_ids,
        traceparent: parts
            .headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    }
}

/// The `vendor` account a credential id (SecretId, AccessKeyId) names. One
/// id may own several accounts: the first that `named` (what the body names)
/// picks, else the first configured is used.
pub(super) fn owned_account<'a>(
    accounts: &'a [SimAccount],
    vendor: VendorKind,
    secret_id: Option<&str>,
    named: impl Fn(&SimAccount) -> bool,
) -> Option<&'a SimAccount> {
    let secret_id = secret_id?;
    let mut owned = accounts
        .iter()
        .filter(|account| account.vendor == vendor && account.secret_id == secret_id);
    let first = owned.next()?;
    if named(first) {
        return Some(first);
    }
    Some(owned.find(|account| named(account)).unwrap_or(first))
}

/// The `vendor` account a credential id names, the body's app id picking
/// among the apps one id owns (see [`owned_account`]).
pub(super) fn account_by_app_id<'a>(
    accounts: &'a [SimAccount],
    vendor: VendorKind,
    secret_id: Option<&str>,
    app_id: Option<u64>,
) -> Option<&'a SimAccount> {
    owned_account(accounts, vendor, secret_id, |account| {
        Some(account.app_id) == app_id
    })
}

/// The entries of a body's `list` array; none when it has no such array.
pub(super) fn entries<'a>(body: Option<&'a Value>, list: &str) -> &'a [Value] {
    body.and_then(|body| body.get(list))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The ids a body's `list` carries, read leniently for the call's record: an
/// entry without `id` (or with null) carries ""; entries that are not
/// objects or whose `id` is not a string are skipped.
pub(super) fn carried_ids(body: Option<&Value>, list: &str, id: &str) -> Vec<String> {
    entries(body, list)
        .iter()
        .filter_map(|entry| match entry.as_object()?.get(id) {
            None | Some(Value::Null) => Some(String::new()),
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => None,
        })
        .collect()
}

/// Why a request body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BodyError {
    /// Over the vendor's limit (declared or actual).
    TooLarge,
    /// The connection failed while the body was being read.
    Unreadable,
}

/// Reads a request body, refusing one over `limit` bytes without buffering it.
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge)
        }
        Err(_) => Err(BodyError::Unreadable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_declared_or_not() {
        let empty = HeaderMap::new();
        assert_eq!(
            read_body(&empty, Body::from("12345"), 5).await,
            Ok(Bytes::from("12345"))
        );
        assert_eq!(
            read_body(&empty, Body::from("123456"), 5).await,
            Err(BodyError::TooLarge)
        );
        let mut declared = HeaderMap::new();
        declared.insert(CONTENT_LENGTH, "6".parse().unwrap());
        assert_eq!(
            read_body(&declared, Body::from("1"), 5).await,
            Err(BodyError::TooLarge)
        );
    }
}
