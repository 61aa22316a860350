//! How the import reaches the server: its URL (`http://` or, with a CA
//! file, `https://`), a client certificate for mutual TLS, and a bearer token
//! (from a file or `REGISTRAR_TOKEN`, never the command line) sent as
//! `authorization: Bearer ...` on every call. The channel connects lazily,
//! so a server that is not up yet is one more reason to retry.

use std::{path::PathBuf, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use tonic::{
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use super::error::ImportError;
use crate::api::pb::registration_service_client::RegistrationServiceClient;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer message taken: a summary of many targets, well within it.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

#[derive(Default)]
pub struct ConnectOptions {
    pub ca_file: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub token: Option<SecretString>,
    /// The name the server's certificate must hold, when it is not the
    /// URL's host (e.g. a pod reached by its Service's name).
    pub server_name: Option<String>,
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, ImportError> {
    std::fs::read(path)
        .map_err(|error| ImportError::file(&format!("{what} {}", path.display()), error))
}

/// A lazily connecting channel to `server`.
pub fn channel(server: &str, options: &ConnectOptions) -> Result<Channel, ImportError> {
    let mut endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|error| ImportError::Usage(format!("--server {server:?}: {error}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let tls = server.starts_with("https://");
    if (options.ca_file.is_some() || options.cert.is_some()) && !tls {
        return Err(ImportError::Usage(format!(
            "--ca-file and --cert need an https:// server URL, not {server:?}"
        )));
    }
    if tls {
        let Some(ca_file) = &options.ca_file else {
            return Err(ImportError::Usage(
                "an https:// server needs --ca-file, the CA that signed its certificate".to_owned(),
            ));
        };
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca_file, "CA file")?));
        if let Some(name) = &options.server_name {
            config = config.domain_name(name.clone());
        }
        match (&options.cert, &options.key) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read(cert, "certificate")?,
                    read(key, "key")?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(ImportError::Usage(
                    "--cert and --key go together".to_owned(),
                ));
            }
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|error| ImportError::Usage(format!("TLS settings: {error}")))?;
    }
    Ok(endpoint.connect_lazy())
}

/// Adds the bearer token, when there is one.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Client = RegistrationServiceClient<InterceptedService<Channel, BearerToken>>;

pub fn client(channel: Channel, options: &ConnectOptions) -> Client {
    let token = options.token.as_ref().and_then(|token| {
        let mut value: MetadataValue<_> = format!("Bearer {}", token.expose_secret().trim())
            .parse()
            .ok()?;
        value.set_sensitive(true);
        Some(value)
    });
    RegistrationServiceClient::with_interceptor(channel, BearerToken(token))
        .max_decoding_message_size(MAX_MESSAGE)
}
