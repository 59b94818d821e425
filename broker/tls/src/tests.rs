use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A CA, and certificates it signs, written as PEM files in a directory.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { issuer: Issuer::new(params, key), pem }
    }

    /// A certificate for `cn` with `sans`, and its key, as PEM.
    fn sign(&self, cn: &str, sans: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files { dir: tempfile::tempdir().unwrap() }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn server_config(files: &Files, ca: &Ca) -> TlsConfig {
    let (cert, key) = ca.sign("broker", &["localhost", "127.0.0.1"]);
    TlsConfig {
        cert: files.write("server.pem", &cert),
        key: files.write("server.key", &key),
        client_ca: None,
        client_auth: ClientAuth::None,
    }
}

fn client(ca: &Ca, identity: Option<(String, String)>) -> tokio_rustls::TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One handshake over loopback: the server's result, and whether the client
/// then reads the server's echo of a byte.
async fn handshake(
    tls: &Tls,
    connector: tokio_rustls::TlsConnector,
) -> (Result<Option<PeerIdentity>, HandshakeError>, bool) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = tls.clone();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        match tls.accept(Listener::Kafka, socket).await {
            Ok((mut stream, peer)) => {
                let mut byte = [0u8];
                if stream.read_exact(&mut byte).await.is_ok() {
                    let _ = stream.write_all(&byte).await;
                    let _ = stream.flush().await;
                }
                Ok(peer)
            }
            Err(e) => Err(e),
        }
    });
    let socket = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let echoed = async {
        let mut stream = connector.connect(name, socket).await.ok()?;
        stream.write_all(b"x").await.ok()?;
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await.ok()?;
        Some(byte == *b"x")
    }
    .await
    .unwrap_or(false);
    (server.await.unwrap(), echoed)
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_is_served_without_a_certificate() {
    let (files, ca) = (Files::new(), Ca::new("ca"));
    let tls = Tls::new(server_config(&files, &ca)).unwrap();
    let (peer, echoed) = handshake(&tls, client(&ca, None)).await;
    assert_eq!(peer.unwrap(), None);
    assert!(echoed);
    // A client trusting another CA refuses the broker.
    let (_, echoed) = handshake(&tls, client(&Ca::new("other"), None)).await;
    assert!(!echoed);
}

#[tokio::test]
async fn a_required_client_certificate_is_verified_and_names_the_client() {
    let (files, ca, client_ca) = (Files::new(), Ca::new("ca"), Ca::new("clients"));
    let mut config = server_config(&files, &ca);
    config.client_ca = Some(files.write("clients.pem", &client_ca.pem));
    config.client_auth = ClientAuth::Required;
    let tls = Tls::new(config).unwrap();

    let (peer, echoed) =
        handshake(&tls, client(&ca, Some(client_ca.sign("alice", &["alice.example", "10.0.0.1"])))).await;
    let peer = peer.unwrap().expect("a verified certificate names the client");
    assert!(echoed);
    assert_eq!(peer.common_name.as_deref(), Some("alice"));
    assert_eq!(peer.dns_names, ["alice.example"]);
    assert_eq!(peer.ip_addresses, ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(peer.name(), Some("alice"));
    assert_eq!(peer.to_string(), "CN=alice, DNS:alice.example, IP:10.0.0.1");

    let (refused, echoed) = handshake(&tls, client(&ca, None)).await;
    let err = refused.unwrap_err().to_string();
    assert!(!echoed);
    assert!(err.contains("TLS handshake failed") && err.contains("certificate"), "{err}");
    // Signed by a CA the broker does not trust.
    let (refused, echoed) = handshake(&tls, client(&ca, Some(ca.sign("mallory", &[])))).await;
    assert!(refused.is_err() && !echoed);
}

#[tokio::test]
async fn an_optional_client_certificate_may_be_left_out() {
    let (files, ca, client_ca) = (Files::new(), Ca::new("ca"), Ca::new("clients"));
    let mut config = server_config(&files, &ca);
    config.client_ca = Some(files.write("clients.pem", &client_ca.pem));
    config.client_auth = ClientAuth::Optional;
    let tls = Tls::new(config).unwrap();
    let (peer, echoed) = handshake(&tls, client(&ca, None)).await;
    assert_eq!(peer.unwrap(), None);
    assert!(echoed);
    let (peer, _) = handshake(&tls, client(&ca, Some(client_ca.sign("bob", &[])))).await;
    assert_eq!(peer.unwrap().and_then(|p| p.common_name), Some("bob".to_owned()));
}

#[tokio::test]
async fn a_plaintext_client_fails_the_handshake_with_a_hint() {
    let (files, ca) = (Files::new(), Ca::new("ca"));
    let tls = Tls::new(server_config(&files, &ca)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\x00\x00").await.unwrap();
    let (socket, _) = listener.accept().await.unwrap();
    let err = tls.accept(Listener::Kafka, socket).await.unwrap_err().to_string();
    assert!(err.contains("is the client using plaintext?"), "{err}");
}

#[tokio::test]
async fn reload_swaps_the_certificate_and_keeps_the_old_one_on_a_bad_file() {
    let (files, old_ca, new_ca) = (Files::new(), Ca::new("old"), Ca::new("new"));
    let config = server_config(&files, &old_ca);
    let tls = Tls::new(config.clone()).unwrap();
    assert!(handshake(&tls, client(&old_ca, None)).await.1);

    // A key that is not the certificate's is refused; the old pair serves.
    let (new_cert, new_key) = new_ca.sign("broker", &["localhost"]);
    std::fs::write(&config.cert, &new_cert).unwrap();
    let err = tls.reload().unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    assert!(handshake(&tls, client(&old_ca, None)).await.1);

    std::fs::write(&config.key, &new_key).unwrap();
    tls.reload().unwrap();
    assert!(handshake(&tls, client(&new_ca, None)).await.1);
    assert!(!handshake(&tls, client(&old_ca, None)).await.1);

    std::fs::write(&config.cert, "not a certificate").unwrap();
    assert!(tls.reload().is_err());
    assert!(handshake(&tls, client(&new_ca, None)).await.1);
}

#[test]
fn bad_files_are_refused_with_the_setting_and_the_path() {
    let (files, ca) = (Files::new(), Ca::new("ca"));
    let good = server_config(&files, &ca);
    let refused = |config: TlsConfig| Tls::new(config).unwrap_err().to_string();

    let missing = TlsConfig { cert: files.dir.path().join("missing.pem"), ..good.clone() };
    let err = refused(missing);
    assert!(err.starts_with("cannot read --tls-cert ") && err.contains("missing.pem"), "{err}");

    let garbage = TlsConfig { cert: files.write("garbage.pem", "hello"), ..good.clone() };
    assert!(refused(garbage).contains("no PEM certificate"));

    let not_x509 = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
    let bad = TlsConfig { cert: files.write("bad.pem", not_x509), ..good.clone() };
    assert!(refused(bad).contains("not an X.509 certificate"));

    let no_key = TlsConfig { key: good.cert.clone(), ..good.clone() };
    assert!(refused(no_key).contains("no PEM private key"));

    let (_, other_key) = ca.sign("other", &[]);
    let mismatch = TlsConfig { key: files.write("other.key", &other_key), ..good.clone() };
    assert!(refused(mismatch).contains("is not the private key of --tls-cert"));

    let auth_without_ca = TlsConfig { client_auth: ClientAuth::Required, ..good.clone() };
    assert_eq!(
        refused(auth_without_ca),
        "--tls-client-auth required needs --tls-client-ca FILE to verify client certificates against"
    );
    let ca_without_auth = TlsConfig { client_ca: Some(files.write("ca.pem", &ca.pem)), ..good.clone() };
    assert!(refused(ca_without_auth).contains("--tls-client-auth is none"));

    assert_eq!("optional".parse::<ClientAuth>(), Ok(ClientAuth::Optional));
    assert!("sometimes".parse::<ClientAuth>().is_err());
}
