//! Who is calling RegistrationService. With `[[callers]]` configured, every
//! call must carry a bearer token (`authorization: Bearer ...`) whose SHA-256
//! a caller lists, or come over mutual TLS with a client certificate whose
//! DNS or URI subject alternative name a caller lists; anything else is
//! UNAUTHENTICATED. Token hashes are compared in constant time, against
//! every caller, and no token, hash or certificate reaches a log or an
//! error message. Without callers (the embedded default, or
//! `allow_unauthenticated`), everyone is `Caller::anyone()`.
//!
//! The caller found goes into the request's extensions for the service.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{
    Request, Status,
    service::Interceptor,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};

use crate::{config::CallerConfig, domain::Caller};

struct Known {
    caller: Arc<Caller>,
    token_sha256: Option<[u8; 32]>,
    tls_identity: Option<String>,
}

/// Finds the caller of a request, as a tonic interceptor.
#[derive(Clone)]
pub struct Authenticate {
    /// `None`: no callers configured, everyone is let in.
    known: Option<Arc<Vec<Known>>>,
    anyone: Arc<Caller>,
}

impl Authenticate {
    /// Callers from the configuration; none means everyone is let in.
    pub fn new(callers: &[CallerConfig]) -> Authenticate {
        let anyone = Arc::new(Caller::anyone());
        if callers.is_empty() {
            return Authenticate {
                known: None,
                anyone,
            };
        }
        let known = callers
            .iter()
            .map(|config| Known {
                caller: Arc::new(Caller {
                    name: config.name.clone(),
                    targets: config.targets.clone(),
                    admin: config.admin,
                }),
                token_sha256: config.token_sha256.as_deref().and_then(|hash| {
                    let mut bytes = [0_u8; 32];
                    hex::decode_to_slice(hash, &mut bytes).ok().map(|()| bytes)
                }),
                tls_identity: config.tls_identity.clone(),
            })
            .collect();
        Authenticate {
            known: Some(Arc::new(known)),
            anyone,
        }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Arc<Caller>, Status> {
        let Some(known) = &self.known else {
            return Ok(Arc::clone(&self.anyone));
        };
        if let Some(value) = request.metadata().get("authorization") {
            let token = value
                .to_str()
                .ok()
                .and_then(|value| {
                    let (scheme, token) = value.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
                .filter(|token| !token.is_empty())
                .ok_or_else(|| {
                    Status::unauthenticated("the authorization header must be `Bearer TOKEN`")
                })?;
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            // every caller is compared, so the time taken says nothing of which matched
            let mut found = None;
            for entry in known.iter() {
                if let Some(hash) = &entry.token_sha256
                    && bool::from(hash.ct_eq(&digest))
                {
                    found = Some(Arc::clone(&entry.caller));
                }
            }
            return found.ok_or_else(|| Status::unauthenticated("unknown bearer token"));
        }
        let identities = peer_identities(request);
        if identities.is_empty() {
            return Err(Status::unauthenticated(
                "no credentials: send `authorization: Bearer TOKEN`, or connect with a client certificate over mutual TLS",
            ));
        }
        known
            .iter()
            .find(|entry| {
                entry
                    .tls_identity
                    .as_ref()
                    .is_some_and(|identity| identities.contains(identity))
            })
            .map(|entry| Arc::clone(&entry.caller))
            .ok_or_else(|| {
                Status::unauthenticated("the client certificate names no configured caller")
            })
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.caller(&request)?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The DNS and URI subject alternative names of the client certificate the
/// connection was verified with (mutual TLS), if any.
fn peer_identities<T>(request: &Request<T>) -> Vec<String> {
    let Some(info) = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>() else {
        return Vec::new();
    };
    let Some(certs) = info.peer_certs() else {
        return Vec::new();
    };
    let Some(leaf) = certs.first() else {
        return Vec::new();
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(names)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

/// The caller the interceptor found (anyone where none ran, as in unit tests).
pub fn caller_of<T>(request: &Request<T>) -> Arc<Caller> {
    request
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .unwrap_or_else(|| Arc::new(Caller::anyone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, token: &str, targets: &[&str]) -> CallerConfig {
        CallerConfig {
            name: name.into(),
            token_sha256: Some(hex::encode(Sha256::digest(token.as_bytes()))),
            tls_identity: None,
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            admin: false,
            limits: Default::default(),
        }
    }

    fn with_token(token: &str) -> Request<()> {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    }

    #[test]
    fn a_token_names_its_caller_and_anything_else_is_unauthenticated() {
        let auth = Authenticate::new(&[
            config("a", "token-a", &["*"]),
            config("b", "token-b", &["x"]),
        ]);
        assert_eq!(auth.caller(&with_token("token-b")).unwrap().name, "b");
        let wrong = auth.caller(&with_token("token-c")).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(!wrong.message().contains("token-c"), "{wrong:?}");
        let none = auth.caller(&Request::new(())).unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unauthenticated);
        let mut basic = Request::new(());
        basic
            .metadata_mut()
            .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(
            auth.caller(&basic).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn without_callers_everyone_is_anyone() {
        let auth = Authenticate::new(&[]);
        assert_eq!(*auth.caller(&Request::new(())).unwrap(), Caller::anyone());
    }
}
