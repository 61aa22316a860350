//! TLS on the gRPC port, and mutual TLS when a client CA is configured:
//! rustls with the ring provider (the one crypto provider in the tree),
//! ALPN `h2`. The certificate, its key and the client CA are read again
//! when any of the three files changes on disk (cert-manager rotating a
//! Secret), checked every `RELOAD_EVERY`: new connections get the new
//! files, open ones keep theirs. Files that do not load leave the last good
//! ones in use, with an error logged. A connection whose handshake fails
//! (plaintext to this port, a client certificate from another CA) is closed.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::ring,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;

use crate::config::TlsConfig;

/// How often the files are checked for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(10);
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes done and waiting to be served.
const ACCEPTED: usize = 64;

/// The files' modification times, to tell a rotation.
type Stamps = Vec<Option<SystemTime>>;

fn stamps(config: &TlsConfig) -> Stamps {
    files(config)
        .iter()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| anyhow::anyhow!("{what} {}: {error}", path.display()))
}

fn certificates(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| anyhow::anyhow!("{what} {}: {error}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{what} {}: no PEM certificate in it",
        path.display()
    );
    Ok(certs)
}

/// A rustls server configuration from the files as they are now.
pub fn load(config: &TlsConfig) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(ring::default_provider());
    let chain = certificates(&config.cert_file, "[server.tls] cert_file")?;
    let key = PrivateKeyDer::from_pem_slice(&read(&config.key_file, "[server.tls] key_file")?)
        // the key's bytes never reach the message
        .map_err(|_| {
            anyhow::anyhow!(
                "[server.tls] key_file {}: no PEM private key in it",
                config.key_file.display()
            )
        })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &config.client_ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(path, "[server.tls] client_ca_file")? {
                roots.add(ca)?;
            }
            let verifier: Arc<dyn ClientCertVerifier> =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|error| anyhow::anyhow!("[server.tls] cert_file and key_file: {error}"))?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(server))
}

/// The current configuration, replaced when the files change.
struct Current {
    config: TlsConfig,
    server: RwLock<Arc<ServerConfig>>,
}

impl Current {
    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.server
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    async fn watch(self: Arc<Self>) {
        let mut seen = stamps(&self.config);
        let mut interval = tokio::time::interval(RELOAD_EVERY);
        interval.tick().await;
        loop {
            interval.tick().await;
            if Arc::strong_count(&self) == 1 {
                // the listener is gone: nothing takes new connections
                return;
            }
            let now = stamps(&self.config);
            if now == seen {
                continue;
            }
            match load(&self.config) {
                Ok(server) => {
                    *self.server.write().unwrap_or_else(|e| e.into_inner()) = server;
                    seen = now;
                    tracing::info!("TLS certificate files changed: new connections use them");
                }
                Err(error) => {
                    // a rotation caught between two files: tried again next time
                    tracing::error!(%error, "TLS certificate files changed but do not load: keeping the last good ones");
                }
            }
        }
    }
}

/// Accepts TCP connections on `listener` and yields those whose TLS
/// handshake succeeds, for tonic's `serve_with_incoming`.
pub fn incoming(
    listener: TcpListener,
    config: &TlsConfig,
) -> anyhow::Result<ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>>> {
    let current = Arc::new(Current {
        config: config.clone(),
        server: RwLock::new(load(config)?),
    });
    tokio::spawn(Arc::clone(&current).watch());
    let (sender, receiver) = tokio::sync::mpsc::channel(ACCEPTED);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            if sender.is_closed() {
                return;
            }
            let acceptor = current.acceptor();
            let handshaken = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = handshaken.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    Ok(ReceiverStream::new(receiver))
}

/// The files a configuration reads.
fn files(config: &TlsConfig) -> Vec<PathBuf> {
    let mut files = vec![config.cert_file.clone(), config.key_file.clone()];
    files.extend(config.client_ca_file.clone());
    files
}
