//! TLS for `https://` endpoints: the CA certificates the broker's is
//! verified against, and the certificate the client presents when the
//! broker asks for one. Files are read when the client is built.

use std::error::Error as StdError;
use std::path::PathBuf;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::error::{Error, Result};

/// How a client verifies the broker over `https://`, and proves who it is.
///
/// Without a CA the system's root certificates are trusted.
///
/// ```no_run
/// use brooklet_client::{Admin, TlsOptions};
///
/// # fn example() -> brooklet_client::Result<()> {
/// let tls = TlsOptions::new().ca_file("ca.pem").identity_files("client.pem", "client.key");
/// let admin = Admin::builder("https://broker.example:7070").tls(tls).build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    ca: Option<Pem>,
    identity: Option<(Pem, Pem)>,
    domain: Option<String>,
}

/// PEM text, or the file that holds it.
#[derive(Clone, Debug)]
enum Pem {
    Text(Vec<u8>),
    File(PathBuf),
}

impl Pem {
    fn read(&self, what: &str) -> Result<Vec<u8>> {
        match self {
            Pem::Text(pem) => Ok(pem.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|e| Error::InvalidArgument {
                message: format!("cannot read the TLS {what} file {}: {e}", path.display()),
            }),
        }
    }

    fn name(&self, what: &str) -> String {
        match self {
            Pem::Text(_) => format!("the TLS {what}"),
            Pem::File(path) => format!("the TLS {what} file {}", path.display()),
        }
    }
}

impl TlsOptions {
    /// Trusts the system's root certificates, presents no certificate.
    pub fn new() -> TlsOptions {
        TlsOptions::default()
    }

    /// Trusts only the CA certificates in `pem` (PEM text).
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> TlsOptions {
        self.ca = Some(Pem::Text(pem.into()));
        self
    }

    /// Trusts only the CA certificates in the PEM file at `path`.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> TlsOptions {
        self.ca = Some(Pem::File(path.into()));
        self
    }

    /// Presents the certificate chain `cert` with its private key `key`
    /// (PEM text) to a broker that asks for one.
    pub fn identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> TlsOptions {
        self.identity = Some((Pem::Text(cert.into()), Pem::Text(key.into())));
        self
    }

    /// Presents the certificate chain and private key in these PEM files to
    /// a broker that asks for one.
    pub fn identity_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsOptions {
        self.identity = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Verifies the broker's certificate for `name` instead of the
    /// endpoint's host.
    pub fn domain_name(mut self, name: impl Into<String>) -> TlsOptions {
        self.domain = Some(name.into());
        self
    }

    /// The files read and checked, as tonic's configuration.
    pub(crate) fn client_config(&self) -> Result<ClientTlsConfig> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => {
                let pem = ca.read("CA")?;
                certificates(&pem, &ca.name("CA"))?;
                config.ca_certificate(Certificate::from_pem(pem))
            }
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            let (cert_pem, key_pem) = (cert.read("certificate")?, key.read("key")?);
            certificates(&cert_pem, &cert.name("certificate"))?;
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| Error::InvalidArgument {
                message: format!("{} holds no PEM private key: {e}", key.name("key")),
            })?;
            config = config.identity(Identity::from_pem(cert_pem, key_pem));
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }

    /// The error for a configuration tonic refused when it built the TLS
    /// connector: rustls checks the client certificate there (a v1
    /// certificate is refused), so it names the certificate. `reason` is
    /// tonic's error with its sources, on one line.
    pub(crate) fn unusable(&self, error: &(dyn StdError + 'static), reason: String) -> Error {
        let what = match &self.identity {
            Some((cert, _)) => format!("{} is not usable", cert.name("client certificate")),
            None => "the TLS settings are not usable".to_owned(),
        };
        let mut next = Some(error);
        while let Some(err) = next {
            if format!("{err:?}").contains("UnsupportedCertVersion") {
                let message =
                    format!("{what}: X.509 v1 certificates are not supported, make a v3 certificate");
                return Error::InvalidArgument { message };
            }
            next = err.source();
        }
        Error::InvalidArgument { message: format!("{what}: {reason}") }
    }
}

/// Checks that `pem` holds at least one PEM certificate.
fn certificates(pem: &[u8], name: &str) -> Result<()> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidArgument { message: format!("{name} is not PEM: {e}") })?;
    if certs.is_empty() {
        return Err(Error::InvalidArgument {
            message: format!("{name} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
        });
    }
    Ok(())
}

/// Why TLS with a broker failed, as [`Error::Tls`] reports it. None of
/// these goes away by retrying.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The broker's certificate could not be verified.
    #[error(
        "the broker's certificate is not trusted ({reason}): trust its CA with TlsOptions::ca_file, or \
         renew a certificate that expired or does not name the host"
    )]
    UntrustedBroker {
        /// Why, as rustls says it: `UnknownIssuer`, `Expired`,
        /// `NotValidForName`, …
        reason: String,
    },
    /// The broker asks for a client certificate and none was presented.
    #[error("the broker requires a client certificate: present one with TlsOptions::identity_files")]
    ClientCertificateRequired,
    /// The broker refused the client certificate presented.
    #[error(
        "the broker refused the client certificate (TLS alert {alert}): present one signed by a CA the \
         broker trusts for clients"
    )]
    ClientCertificateRefused {
        /// The TLS alert the broker sent, e.g. `UnknownCA`, `BadCertificate`.
        alert: String,
    },
    /// An `https://` endpoint answered without TLS.
    #[error("it did not answer TLS: if the broker serves plaintext, use http://")]
    NotTls,
    /// An `http://` endpoint answered something other than HTTP/2, such as
    /// a TLS alert.
    #[error("it did not answer gRPC over plaintext: if the broker serves TLS, use https://")]
    NotPlaintext,
}

/// The TLS failure behind a failed call to `endpoint`, if that is what it
/// was: told from the rustls error or alert, or the HTTP/2 error, in
/// `error`'s chain.
pub(crate) fn failure(error: &(dyn StdError + 'static), endpoint: &str) -> Option<TlsFailure> {
    let mut next = Some(error);
    while let Some(err) = next {
        // rustls' errors reach here inside an `io::Error`, whose `source`
        // skips them; an alert received after the handshake (TLS 1.3 sends
        // a client certificate's refusal then) only as its text.
        let inner = err.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
        for candidate in [Some(err), inner.map(|e| e as &(dyn StdError + 'static))].into_iter().flatten() {
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return from_rustls(tls);
            }
            if let Some(alert) = candidate.to_string().strip_prefix("received fatal alert: ") {
                return from_alert(alert);
            }
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>()
            && endpoint.starts_with("http://")
            && h2.is_go_away()
            && h2.is_library()
            && matches!(h2.reason(), Some(h2::Reason::FRAME_SIZE_ERROR | h2::Reason::PROTOCOL_ERROR))
        {
            // The bytes that came back were not HTTP/2 frames: most likely
            // a TLS alert from a listener that expected a ClientHello.
            return Some(TlsFailure::NotPlaintext);
        }
        next = err.source();
    }
    None
}

fn from_rustls(error: &rustls::Error) -> Option<TlsFailure> {
    match error {
        rustls::Error::InvalidCertificate(reason) => {
            Some(TlsFailure::UntrustedBroker { reason: certificate_reason(reason) })
        }
        rustls::Error::AlertReceived(alert) => from_alert(&format!("{alert:?}")),
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => Some(TlsFailure::NotTls),
        _ => None,
    }
}

/// The variant's name alone (`NotValidForName`, not its context's
/// fields), else rustls' text.
fn certificate_reason(reason: &rustls::CertificateError) -> String {
    let debug = format!("{reason:?}");
    let name: String = debug.chars().take_while(char::is_ascii_alphanumeric).collect();
    let name = name.strip_suffix("Context").unwrap_or(&name);
    match reason {
        rustls::CertificateError::Other(other) => other.to_string(),
        _ if !name.is_empty() => name.to_owned(),
        _ => reason.to_string(),
    }
}

fn from_alert(alert: &str) -> Option<TlsFailure> {
    match alert {
        "CertificateRequired" => Some(TlsFailure::ClientCertificateRequired),
        "BadCertificate"
        | "UnsupportedCertificate"
        | "CertificateRevoked"
        | "CertificateExpired"
        | "CertificateUnknown"
        | "UnknownCA"
        | "AccessDenied"
        | "HandshakeFailure"
        | "DecryptError" => Some(TlsFailure::ClientCertificateRefused { alert: alert.to_owned() }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_io(error: impl Into<Box<dyn StdError + Send + Sync>>) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }

    #[test]
    fn tls_failures_are_told_from_rustls_errors_and_alerts() {
        let untrusted = in_io(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        assert_eq!(
            failure(&untrusted, "https://b:1"),
            Some(TlsFailure::UntrustedBroker { reason: "UnknownIssuer".to_owned() })
        );
        let plaintext = in_io(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType));
        assert_eq!(failure(&plaintext, "https://b:1"), Some(TlsFailure::NotTls));
        // After the handshake an alert arrives as text only.
        let required = in_io("received fatal alert: CertificateRequired");
        assert_eq!(failure(&required, "https://b:1"), Some(TlsFailure::ClientCertificateRequired));
        let refused = rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA);
        assert_eq!(
            failure(&refused, "https://b:1"),
            Some(TlsFailure::ClientCertificateRefused { alert: "UnknownCA".to_owned() })
        );
        // A refused port is not a TLS failure.
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(failure(&io, "https://b:1"), None);
    }
}
