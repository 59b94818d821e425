//! TLS for the broker's listeners: loads the certificate, key and client CA
//! from PEM files into rustls configurations (ring provider only), swaps in
//! new ones on reload, runs each accepted connection's handshake, and names
//! the client by its verified certificate ([`PeerIdentity`]).
//!
//! It knows nothing of gRPC or Kafka beyond the ALPN each listener offers:
//! the adapters hand it a socket and get back an encrypted stream. It
//! decides no authorization: it only says who the client proved to be.
//!
//! [`guard`] holds each listener's rules for its connections: places per
//! client address, the deadline for a connection's first request, its idle
//! timeout, and rate-limited warnings of the connections it closes.

#![warn(unreachable_pub)]

pub mod guard;
mod identity;

pub use identity::{PeerIdentity, PrincipalFrom};
/// An accepted connection once its handshake is done.
pub use tokio_rustls::server::TlsStream;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a client has to finish its handshake; past it the connection is
/// closed, so a silent client cannot hold a place under the connection limit.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether clients are asked for a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A client may present a certificate; one it presents must verify.
    Optional,
    /// A client must present a certificate that verifies.
    Required,
}

impl FromStr for ClientAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<ClientAuth, String> {
        match s {
            "none" => Ok(ClientAuth::None),
            "optional" => Ok(ClientAuth::Optional),
            "required" => Ok(ClientAuth::Required),
            _ => Err(format!("`{s}` is not one of none, optional, required")),
        }
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientAuth::None => "none",
            ClientAuth::Optional => "optional",
            ClientAuth::Required => "required",
        })
    }
}

/// Where the listeners' TLS material is, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The broker's certificate chain, its own certificate first.
    pub cert: PathBuf,
    /// The private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates client certificates are verified against.
    pub client_ca: Option<PathBuf>,
    /// Whether clients are asked for a certificate; anything but `None`
    /// needs `client_ca`.
    pub client_auth: ClientAuth,
}

/// Why TLS material was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// Which setting: `--tls-cert`, `--tls-key` or `--tls-client-ca`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{what} {}: {reason}", path.display())]
    Invalid {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("--tls-key {} is not the private key of --tls-cert {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// Client certificates are asked for with nothing to verify them against.
    #[error("--tls-client-auth {0} needs --tls-client-ca FILE to verify client certificates against")]
    ClientAuthWithoutCa(ClientAuth),
    /// A client CA given while no client certificate is asked for.
    #[error("--tls-client-ca is set but --tls-client-auth is none: set it to optional or required")]
    CaWithoutClientAuth,
}

/// Which listener a handshake is for: gRPC offers HTTP/2 by ALPN, as gRPC
/// clients require; Kafka offers no application protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The gRPC listener.
    Grpc,
    /// The Kafka listener.
    Kafka,
}

/// Why a connection's handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client did not finish in [`HANDSHAKE_TIMEOUT`].
    #[error("TLS handshake not finished within {}s", HANDSHAKE_TIMEOUT.as_secs())]
    TimedOut,
    /// The handshake failed, e.g. on a plaintext client or a refused client
    /// certificate.
    #[error("TLS handshake failed: {source}{hint}")]
    Failed {
        /// What failed.
        #[source]
        source: io::Error,
        /// A hint when the client looks like a plaintext one.
        hint: &'static str,
    },
}

/// The listeners' TLS settings, loaded: cheap to clone, and clones share the
/// configuration that [`Tls::reload`] replaces.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    config: TlsConfig,
    /// Read at every handshake and replaced whole on reload; a lock rather
    /// than a channel because readers want only the latest value, and it is
    /// held just to clone an `Arc`.
    current: RwLock<Configs>,
}

#[derive(Clone)]
struct Configs {
    grpc: Arc<ServerConfig>,
    kafka: Arc<ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads and checks the files `config` names.
    pub fn new(config: TlsConfig) -> Result<Tls, TlsError> {
        let configs = load(&config)?;
        Ok(Tls { inner: Arc::new(Inner { config, current: RwLock::new(configs) }) })
    }

    /// The files this was loaded from.
    pub fn config(&self) -> &TlsConfig {
        &self.inner.config
    }

    /// Reads the files again and uses them for the connections accepted from
    /// now on; established connections keep the configuration they started
    /// with. On an error the configuration in use is kept, and the error is
    /// logged and returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        match load(&self.inner.config) {
            Ok(configs) => {
                *self.inner.current.write() = configs;
                tracing::info!(cert = %self.inner.config.cert.display(), "TLS certificate and key reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload refused; the previous certificate stays in use");
                Err(e)
            }
        }
    }

    /// Runs the server side of the handshake on `stream`, within
    /// [`HANDSHAKE_TIMEOUT`]; returns the encrypted stream and the client's
    /// identity if it presented a certificate (it was verified).
    pub async fn accept<S>(
        &self,
        listener: Listener,
        stream: S,
    ) -> Result<(TlsStream<S>, Option<PeerIdentity>), HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config = {
            let current = self.inner.current.read();
            match listener {
                Listener::Grpc => current.grpc.clone(),
                Listener::Kafka => current.kafka.clone(),
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let accepting = acceptor.accept(stream).into_fallible();
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepting).await {
            Err(_) => return Err(HandshakeError::TimedOut),
            Ok(Err((source, stream))) => {
                linger(stream).await;
                let hint = if plaintext_client(&source) { " (is the client using plaintext?)" } else { "" };
                return Err(HandshakeError::Failed { source, hint });
            }
            Ok(Ok(stream)) => stream,
        };
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| PeerIdentity::from_der(cert.as_ref()));
        Ok((stream, peer))
    }
}

/// How long a failed handshake's connection is kept to deliver its alert.
const LINGER: Duration = Duration::from_secs(1);

/// Closes a connection whose handshake failed so that the client reads the
/// alert saying why (a missing or refused certificate): the alert is
/// already written; closing with the client's unread bytes would reset the
/// connection and could discard it. So: end the writing side, then read
/// and drop what the client sends until it closes, for at most [`LINGER`]
/// and 64 KiB.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let drain = async {
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Whether a handshake failed on bytes that are no TLS record at all.
fn plaintext_client(e: &io::Error) -> bool {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).is_some_and(|e| {
        matches!(
            e,
            rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType | rustls::InvalidMessage::UnknownProtocolVersion
            )
        )
    })
}

/// The one crypto provider in the build. ring lacks post-quantum key
/// exchange (hence rustls' deprecation note), but needs no C toolchain.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(config: &TlsConfig) -> Result<Configs, TlsError> {
    let chain = read_certs("--tls-cert", &config.cert)?;
    let key_pem = read("--tls-key", &config.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
        what: "--tls-key",
        path: config.key.clone(),
        reason: format!("no PEM private key found ({e})"),
    })?;
    let verifier = match (config.client_auth, &config.client_ca) {
        (ClientAuth::None, None) => None,
        (ClientAuth::None, Some(_)) => return Err(TlsError::CaWithoutClientAuth),
        (auth, None) => return Err(TlsError::ClientAuthWithoutCa(auth)),
        (auth, Some(path)) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("--tls-client-ca", path)? {
                roots.add(cert).map_err(|e| TlsError::Invalid {
                    what: "--tls-client-ca",
                    path: path.clone(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let builder =
                if auth == ClientAuth::Optional { builder.allow_unauthenticated() } else { builder };
            Some(builder.build().map_err(|e| TlsError::Invalid {
                what: "--tls-client-ca",
                path: path.clone(),
                reason: e.to_string(),
            })?)
        }
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let kafka = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            TlsError::KeyMismatch { cert: config.cert.clone(), key: config.key.clone() }
        }
        e => TlsError::Invalid { what: "--tls-key", path: config.key.clone(), reason: e.to_string() },
    })?;
    let mut grpc = kafka.clone();
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Configs { grpc: Arc::new(grpc), kafka: Arc::new(kafka) })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })
}

/// Every certificate of a PEM file, each checked to be X.509.
fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let invalid = |reason: String| TlsError::Invalid { what, path: path.to_owned(), reason };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate (-----BEGIN CERTIFICATE-----) found".to_owned()));
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|e| invalid(format!("not an X.509 certificate ({e})")))?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests;
