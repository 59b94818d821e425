//! TLS for `https://` endpoints: the CA certificates the broker's is
//! verified against, and the certificate the client presents when the
//! broker asks for one. Files are read when the client is built.

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
