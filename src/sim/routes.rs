//! The one place each simulated vendor kind is registered: which actions it
//! answers (and where a call names its action), the handler of each, and the
//! vendor's own answers to injected faults (and which of its answers can
//! come back with a null output). A call is routed here by the
//! `Action` query parameter (ZEGO, Volcengine; docs/vendors/zim.md,
//! docs/vendors/volc-rtc.md) or else by the `X-TC-Action` header (the Tencent
//! products; docs/vendors/tencent-cloud-api.md). Adding a vendor means its
//! module and one entry in [`sim_vendor`]; the `match` there is exhaustive,
//! so a new `VendorKind` cannot be forgotten.

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, Uri, request::Parts},
    response::Response,
};
use futures::future::BoxFuture;
use http_body_util::BodyExt;

use super::{
    ciam, ciam_import,
    faults::Fault,
    lcic,
    pipeline::{Endpoint, serve},
    state::Shared,
    tencent, volc, zim,
};
use crate::domain::VendorKind;

/// Answers one call of an action and records it.
type Handler = for<'a> fn(&'a Shared, &'a Parts, Body) -> BoxFuture<'a, Response>;

/// An answer's body with its output fields null; `None` for an answer that is not a success.
type NullOutput = fn(&[u8]) -> Option<String>;

/// Where a vendor's calls name their action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActionIn {
    /// The `Action` query parameter; matched first.
    Query,
    /// The `X-TC-Action` header of Tencent Cloud API 3.0.
    TcHeader,
}

/// One action a vendor answers.
struct Route {
    action: &'static str,
    handle: Handler,
}

/// One simulated vendor kind.
struct SimVendor {
    action_in: ActionIn,
    routes: &'static [Route],
    /// The vendor's own answer to an injected internal error or throttle: (status, body).
    fault_answer: fn(Fault) -> (u16, String),
    /// An answer's body with its output fields null, for an injected null
    /// output; `None` where the vendor has no such answer (it answers as usual).
    null_output: Option<NullOutput>,
}

/// The route of an [`Endpoint`]: its action, answered by the shared pipeline.
const fn route<E: Endpoint + 'static>() -> Route {
    Route {
        action: E::ACTION,
        handle: handle::<E>,
    }
}

fn handle<'a, E: Endpoint + 'static>(
    shared: &'a Shared,
    parts: &'a Parts,
    body: Body,
) -> BoxFuture<'a, Response> {
    Box::pin(serve::<E>(shared, parts, body))
}

/// The registration point of every simulated vendor kind.
fn sim_vendor(kind: VendorKind) -> SimVendor {
    match kind {
        VendorKind::TencentLcic => SimVendor {
            action_in: ActionIn::TcHeader,
            routes: const { &[route::<lcic::BatchRegister>()] },
            fault_answer: tencent::fault_answer,
            null_output: Some(tencent::null_output),
        },
        VendorKind::TencentCiam => SimVendor {
            action_in: ActionIn::TcHeader,
            routes: const { &[route::<ciam::CreateUser>()] },
            fault_answer: tencent::fault_answer,
            null_output: Some(tencent::null_output),
        },
        VendorKind::TencentCiamImport => SimVendor {
            action_in: ActionIn::TcHeader,
            routes: const {
                &[
                    route::<ciam_import::CreateJob>(),
                    route::<ciam_import::ListJobs>(),
                ]
            },
            fault_answer: tencent::fault_answer,
            null_output: Some(tencent::null_output),
        },
        VendorKind::ZegoZim => SimVendor {
            action_in: ActionIn::Query,
            routes: const { &[route::<zim::UserRegister>()] },
            fault_answer: zim::fault_answer,
            null_output: None,
        },
        VendorKind::VolcRtc => SimVendor {
            action_in: ActionIn::Query,
            routes: const { &[route::<volc::RegisterUsers>()] },
            fault_answer: volc::fault_answer,
            null_output: None,
        },
    }
}

/// The vendor a call naming no known action is faulted as: it reaches the
/// Tencent gateway, which answers `InvalidAction` (and records nothing).
const UNROUTED: VendorKind = VendorKind::TencentLcic;

/// The vendor kind a call is for, and the handler of its action (`None`
/// when no vendor answers the action it names).
fn identify(uri: &Uri, headers: &HeaderMap) -> (VendorKind, Option<Handler>) {
    let query = query_action(uri);
    let header = headers
        .get("x-tc-action")
        .and_then(|value| value.to_str().ok());
    for action_in in [ActionIn::Query, ActionIn::TcHeader] {
        let Some(named) = (match action_in {
            ActionIn::Query => query,
            ActionIn::TcHeader => header,
        }) else {
            continue;
        };
        for kind in VendorKind::ALL {
            let vendor = sim_vendor(kind);
            if vendor.action_in != action_in {
                continue;
            }
            if let Some(route) = vendor.routes.iter().find(|route| route.action == named) {
                return (kind, Some(route.handle));
            }
        }
    }
    (UNROUTED, None)
}

/// The vendor a call is for, from its action.
pub(super) fn vendor_of(request: &Request) -> VendorKind {
    identify(request.uri(), request.headers()).0
}

/// Every vendor call: answered by the handler of the action it names.
pub(super) async fn answer(shared: &Shared, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match identify(&parts.uri, &parts.headers).1 {
        Some(handle) => handle(shared, &parts, body).await,
        None => tencent::unknown_action(&parts),
    }
}

/// The vendor's own answer to an injected internal error or throttle: (status, body).
pub(super) fn fault_answer(vendor: VendorKind, fault: Fault) -> (u16, String) {
    (sim_vendor(vendor).fault_answer)(fault)
}

/// `answered` with its output fields null, where the vendor has such an
/// answer; an answer that is not a success stays as it is.
pub(super) async fn null_output(vendor: VendorKind, answered: Response) -> Response {
    let Some(null_output) = sim_vendor(vendor).null_output else {
        return answered;
    };
    let (mut parts, body) = answered.into_parts();
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, Body::empty());
    };
    let body = collected.to_bytes();
    match null_output(&body) {
        Some(nulled) => {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(nulled))
        }
        None => Response::from_parts(parts, Body::from(body)),
    }
}

/// The `Action` query parameter, if any.
fn query_action(uri: &Uri) -> Option<&str> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_as_each_vendor_module_expects() {
        use crate::vendor_api::{ErrorClass, tencent::envelope as tencent};
        let (status, body) = fault_answer(VendorKind::TencentLcic, Fault::Throttle);
        let envelope =
            tencent::decode_envelope(http::StatusCode::from_u16(status).unwrap(), body.as_bytes());
        let Ok(tencent::Envelope::Failure { error, .. }) = envelope else {
            panic!("{envelope:?}")
        };
        assert_eq!(tencent::classify(&error.code), ErrorClass::Throttled);
    }

    #[tokio::test]
    async fn a_null_output_nulls_a_tencent_success_and_leaves_errors_and_other_vendors() {
        use axum::response::IntoResponse;
        let read = |response: Response| async move {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        };
        let success = r#"{"Response":{"User":{"UserId":"u1"},"RequestId":"r"}}"#;
        let nulled = null_output(VendorKind::TencentCiam, success.into_response()).await;
        assert_eq!(
            read(nulled).await,
            serde_json::json!({"Response": {"User": null, "RequestId": "r"}})
        );
        let error = r#"{"Response":{"Error":{"Code":"InternalError"},"RequestId":"r"}}"#;
        let kept = null_output(VendorKind::TencentCiam, error.into_response()).await;
        assert_eq!(
            read(kept).await,
            serde_json::from_str::<serde_json::Value>(error).unwrap()
        );
        let zim = r#"{"Code":0,"ErrorList":[]}"#;
        let kept = null_output(VendorKind::ZegoZim, zim.into_response()).await;
        assert_eq!(
            read(kept).await,
            serde_json::from_str::<serde_json::Value>(zim).unwrap()
        );
    }
}
