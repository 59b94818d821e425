//! Certificates for the TLS tests, made with rcgen and written as PEM files
//! in a temporary directory: a CA, and server and client certificates it
//! signs (for 127.0.0.1 and localhost), expired ones too.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair};

/// A certificate authority whose certificate is written as `<name>-ca.pem`.
#[derive(Debug)]
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, as PEM.
    pub pem: String,
    /// Where the CA certificate was written.
    pub path: PathBuf,
    dir: PathBuf,
    name: String,
}

/// A certificate and key signed by a [`TestCa`], as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate, as PEM.
    pub cert: PathBuf,
    /// Its private key, as PEM.
    pub key: PathBuf,
}

impl TestCa {
    /// A broker's config with data in `data`: TLS with a server certificate
    /// of this CA (and client certificates of `clients` required, when
    /// given), `--auth required`, and `admin` with `password` as its first
    /// user and a superuser.
    pub fn secured_config(
        &self,
        data: PathBuf,
        clients: Option<&TestCa>,
        admin: &str,
        password: &str,
    ) -> brooklet_broker::Config {
        let server = self.server("server");
        let mut config = brooklet_broker::Config::new(data);
        config.auth = brooklet_broker::Auth::Required;
        config.superusers = vec![admin.into()];
        config.bootstrap_user =
            Some(brooklet_broker::BootstrapUser { name: admin.into(), password: password.into() });
        let tls = brooklet_broker::TlsConfig {
            cert: server.cert,
            key: server.key,
            client_ca: clients.map(|c| c.path.clone()),
            client_auth: match clients {
                Some(_) => brooklet_broker::ClientAuth::Required,
                None => brooklet_broker::ClientAuth::None,
            },
        };
        config.tls = Some(brooklet_broker::Tls::new(tls).expect("TLS files load"));
        config
    }

    /// A new CA called `name`, its certificate written in `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA self-signs").pem();
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, &pem).expect("CA written");
        TestCa { issuer: Issuer::new(params, key), pem, path, dir: dir.to_owned(), name: name.to_owned() }
    }

    /// A broker certificate for 127.0.0.1 and localhost, written as
    /// `<ca>-<file>.pem` and `<ca>-<file>.key`.
    pub fn server(&self, file: &str) -> CertFiles {
        self.sign(file, "brooklet", &["127.0.0.1", "localhost"], false)
    }

    /// As [`server`](Self::server), but expired yesterday.
    pub fn expired_server(&self, file: &str) -> CertFiles {
        self.sign(file, "brooklet", &["127.0.0.1", "localhost"], true)
    }

    /// A client certificate whose subject's common name is `cn`.
    pub fn client(&self, file: &str, cn: &str) -> CertFiles {
        self.sign(file, cn, &[], false)
    }

    /// A client certificate without a common name, whose subject
    /// alternative names are the DNS names `dns`.
    pub fn client_without_cn(&self, file: &str, dns: &[&str]) -> CertFiles {
        self.sign_names(file, None, dns, false)
    }

    fn sign(&self, file: &str, cn: &str, sans: &[&str], expired: bool) -> CertFiles {
        self.sign_names(file, Some(cn), sans, expired)
    }

    fn sign_names(&self, file: &str, cn: Option<&str>, sans: &[&str], expired: bool) -> CertFiles {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        if expired {
            let now = std::time::SystemTime::now();
            params.not_before = (now - std::time::Duration::from_secs(30 * 86_400)).into();
            params.not_after = (now - std::time::Duration::from_secs(86_400)).into();
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("CA signs");
        let files = CertFiles {
            cert: self.dir.join(format!("{}-{file}.pem", self.name)),
            key: self.dir.join(format!("{}-{file}.key", self.name)),
        };
        std::fs::write(&files.cert, cert.pem()).expect("certificate written");
        std::fs::write(&files.key, key.serialize_pem()).expect("key written");
        files
    }
}
