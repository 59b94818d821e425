//! TLS on both listeners: the Rust client and the CLI over gRPC, kafka-python
//! over Kafka; clients refuse a broker whose certificate they cannot verify
//! (another CA, expired); `--tls-client-auth required` refuses a client
//! without a certificate; plaintext clients fail cleanly; and a reload swaps
//! the certificate for new connections while open ones go on. Certificates
//! are made by the tests (`brooklet_tests::certs`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use brooklet_broker::{ClientAuth, Config, EmbeddedBroker, Tls, TlsConfig};
use brooklet_client::{Admin, Error, NewTopic, TlsFailure, TlsOptions};
use brooklet_tests::certs::{CertFiles, TestCa};
use brooklet_tests::{
    BrokerProcess, DEADLINE, Finished, KafkaClient, brooklet_command, finish, kafka_client_available,
    kafka_scripts,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Short, so that a call a broker never answers ends soon (a refused
/// handshake fails at once, without retries).
const REFUSED_TIMEOUT: Duration = Duration::from_secs(2);

/// A broker serving TLS with `server` on gRPC and Kafka.
async fn tls_broker(dir: &Path, server: &CertFiles, client_ca: Option<&TestCa>) -> EmbeddedBroker {
    let mut config = Config::new(dir.join("data"));
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    let tls = TlsConfig {
        cert: server.cert.clone(),
        key: server.key.clone(),
        client_ca: client_ca.map(|ca| ca.path.clone()),
        client_auth: if client_ca.is_some() { ClientAuth::Required } else { ClientAuth::None },
    };
    config.tls = Some(Tls::new(tls).expect("TLS files load"));
    EmbeddedBroker::start_with(config).await.expect("broker starts")
}

fn admin(broker: &EmbeddedBroker, tls: TlsOptions) -> Admin {
    Admin::builder(broker.endpoint()).tls(tls).request_timeout(REFUSED_TIMEOUT).build().expect("client built")
}

/// The error of a call that must fail, with its sources, on one line.
async fn refused(admin: &Admin) -> String {
    let err = admin.list_topics().await.expect_err("the call must fail");
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `brooklet ARGS` against `endpoint`, to completion.
async fn cli(endpoint: &str, args: &[&str]) -> Finished {
    let child = brooklet_command(&["--broker", endpoint]).args(args).spawn().expect("brooklet runs");
    finish(child).await
}

#[tokio::test]
async fn the_client_and_the_cli_are_served_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "main");
    let broker = tls_broker(dir.path(), &ca.server("server"), None).await;
    assert!(broker.endpoint().starts_with("https://127.0.0.1:"), "{}", broker.endpoint());

    let admin = admin(&broker, TlsOptions::new().ca_pem(ca.pem.clone()));
    admin.create_topic("secure", NewTopic::new(2)).await.expect("created over TLS");
    let ca_path = ca.path.to_str().unwrap();
    let listed = cli(&broker.endpoint(), &["--tls-ca", ca_path, "topic", "list"]).await;
    assert!(listed.success, "{}", listed.stderr);
    assert!(listed.stdout.contains("secure"), "{}", listed.stdout);

    // A bare address with --tls-ca is https; the system's roots do not know
    // the test CA, so without --tls-ca the broker is refused.
    let bare = broker.addr().to_string();
    let bare_listed = cli(&bare, &["--tls-ca", ca_path, "topic", "list"]).await;
    assert!(bare_listed.success, "{}", bare_listed.stderr);
    let untrusted = cli(&broker.endpoint(), &["--timeout", "2", "topic", "list"]).await;
    assert!(!untrusted.success);
    assert!(untrusted.stderr.contains("certificate"), "{}", untrusted.stderr);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_refuses_a_certificate_of_another_ca_or_an_expired_one() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = (TestCa::new(dir.path(), "main"), TestCa::new(dir.path(), "other"));
    let broker = tls_broker(dir.path(), &ca.server("server"), None).await;
    let err = refused(&admin(&broker, TlsOptions::new().ca_file(&other.path))).await;
    assert!(err.contains("invalid peer certificate") && err.contains("UnknownIssuer"), "{err}");
    broker.shutdown().await.unwrap();

    let expired = tls_broker(dir.path(), &ca.expired_server("expired"), None).await;
    let err = refused(&admin(&expired, TlsOptions::new().ca_file(&ca.path))).await;
    assert!(err.contains("invalid peer certificate") && err.contains("Expired"), "{err}");
    expired.shutdown().await.unwrap();
}

#[tokio::test]
async fn required_client_certificates_refuse_a_client_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, clients) = (TestCa::new(dir.path(), "main"), TestCa::new(dir.path(), "clients"));
    let broker = tls_broker(dir.path(), &ca.server("server"), Some(&clients)).await;

    let anonymous = admin(&broker, TlsOptions::new().ca_file(&ca.path));
    let err = refused(&anonymous).await;
    assert!(err.contains("the broker requires a client certificate"), "{err}");
    // A certificate of a CA the broker does not trust is refused too.
    let stranger = ca.client("stranger", "stranger");
    let untrusted =
        admin(&broker, TlsOptions::new().ca_file(&ca.path).identity_files(&stranger.cert, &stranger.key));
    refused(&untrusted).await;

    let alice = clients.client("alice", "alice");
    let known = admin(&broker, TlsOptions::new().ca_file(&ca.path).identity_files(&alice.cert, &alice.key));
    known.create_topic("mtls", NewTopic::new(1)).await.expect("served with a client certificate");
    let (cert, key) = (alice.cert.to_str().unwrap(), alice.key.to_str().unwrap());
    let args = ["--tls-ca", ca.path.to_str().unwrap(), "--tls-client-cert", cert, "--tls-client-key", key];
    let listed = cli(&broker.endpoint(), &[&args[..], &["topic", "list"]].concat()).await;
    assert!(listed.success && listed.stdout.contains("mtls"), "{}{}", listed.stdout, listed.stderr);
    let half = cli(&broker.endpoint(), &["--tls-client-cert", cert, "topic", "list"]).await;
    assert_eq!(half.code, Some(1), "{}", half.stderr);
    assert!(half.stderr.contains("--tls-client-cert and --tls-client-key go together"), "{}", half.stderr);
    broker.shutdown().await.unwrap();
}

/// A self-signed X.509 v1 client certificate, which rcgen cannot make: made
/// by `openssl x509 -req -signkey` (no extensions), valid until 2126.
const V1_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBHDCBwwIUAIn0v37Ly5lGl8mIeaKzCpPsjQIwCgYIKoZIzj0EAwIwEDEOMAwG\nA1UEAwwFYWxpY2UwIBcNMjYxMjA3MDgxNDU0WhgPMjEyNjExMTMwODE0NTRaMBAx\nDjAMBgNVBAMMBWFsaWNlMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE6wtT7snL\nSWaDlD46gEHUt53ksXGSJzz0m4zPwngt8BWiSAPkQE0GBQ6Bg7bcY5x7WGxFJY5Z\n+1lkLdX8/VRc9zAKBggqhkjOPQQDAgNIADBFAiAlB2KW60NM2C4rmSIf5uuA6inx\nx2qE8w4LeI1XIiuWhwIhAK/HqGPLqqlSzyyprPdQFdQhit4DZQILuHKI/8wQahe9\n-----END CERTIFICATE-----\n";
/// The private key of [`V1_CERT`].
const V1_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2FcxM7OfWnJnFFSx\nnkOT+ExYsy2d/VXkrJlETGdTD5mhRANCAATrC1PuyctJZoOUPjqAQdS3neSxcZIn\nPPSbjM/CeC3wFaJIA+RATQYFDoGDttxjnHtYbEUljln7WWQt1fz9VFz3\n-----END PRIVATE KEY-----\n";

/// A TCP forwarder to `target` on a port of its own, and the number of
/// connections it accepted: how many times a client tried.
async fn counting_proxy(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut broker) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                }
            });
        }
    });
    (addr, accepted)
}

/// Each TLS mistake is one line that says what is wrong and which flag
/// fixes it.
///
/// A certificate the client does not trust is not retried: the client
/// connects once (its channel may connect once more before the command
/// exits), where retries made five to ten connections, each a warning in
/// the broker's log. The broker's refusals (a client certificate missing or
/// refused, TLS spoken to an `http://` client) arrive as a TLS alert after
/// the client has written; the broker's close can reset the connection
/// before the client reads that alert, and such an attempt counts as a
/// failure to connect, so those are not counted here.
#[tokio::test]
async fn tls_mistakes_are_one_line_that_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, clients) = (TestCa::new(dir.path(), "main"), TestCa::new(dir.path(), "clients"));
    let server = ca.server("server");
    let open = tls_broker(&dir.path().join("open"), &server, None).await;
    let mutual = tls_broker(&dir.path().join("mutual"), &server, Some(&clients)).await;
    let ca_path = ca.path.to_str().unwrap();
    let stranger = ca.client("stranger", "stranger");
    let (v1_cert, v1_key) = (dir.path().join("v1.pem"), dir.path().join("v1.key"));
    std::fs::write(&v1_cert, V1_CERT).unwrap();
    std::fs::write(&v1_key, V1_KEY).unwrap();

    let (proxy, accepted) = counting_proxy(open.addr()).await;
    let out = cli(&format!("https://{proxy}"), &["--timeout", "30", "topic", "list"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: the certificate of the broker at https://{proxy} is not trusted (UnknownIssuer): pass \
             its CA with --tls-ca FILE"
        )
    );
    let tries = accepted.load(Ordering::SeqCst);
    assert!(tries <= 2, "{tries} connections");

    let mutual_ep = mutual.endpoint();
    let (cert, key) = (stranger.cert.to_str().unwrap(), stranger.key.to_str().unwrap());
    let (v1_cert, v1_key) = (v1_cert.to_str().unwrap(), v1_key.to_str().unwrap());
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            format!("http://{}", open.addr()),
            vec![],
            "did not answer gRPC over plaintext: if it serves TLS, use https:// and --tls-ca",
        ),
        (
            mutual_ep.clone(),
            vec!["--tls-ca", ca_path],
            "requires a client certificate: pass --tls-client-cert and --tls-client-key",
        ),
        (
            mutual_ep.clone(),
            vec!["--tls-ca", ca_path, "--tls-client-cert", cert, "--tls-client-key", key],
            "refused the client certificate",
        ),
        (
            mutual_ep.clone(),
            vec!["--tls-ca", ca_path, "--tls-client-cert", v1_cert, "--tls-client-key", v1_key],
            "v1.pem is not usable: X.509 v1 certificates are not supported, make a v3 certificate",
        ),
    ];
    for (endpoint, flags, expected) in cases {
        let args = [&flags[..], &["--timeout", "30", "topic", "list"]].concat();
        let out = cli(&endpoint, &args).await;
        assert_eq!(out.code, Some(1), "{endpoint} {flags:?}: {}", out.stderr);
        let stderr = out.stderr.trim_end();
        assert_eq!(stderr.lines().count(), 1, "{endpoint} {flags:?}: one line: {stderr}");
        assert!(stderr.contains(expected), "{endpoint} {flags:?}: {stderr}");
        assert!(!stderr.contains("invalid broker endpoint"), "{stderr}");
    }

    // The Rust client reports the failure as such, without retrying for
    // its request timeout.
    let untrusted = Admin::builder(open.endpoint()).request_timeout(DEADLINE).build().unwrap();
    let err = untrusted.list_topics().await.unwrap_err();
    let Error::Tls { failure: TlsFailure::UntrustedBroker { reason }, .. } = &err else {
        panic!("expected an untrusted certificate, got {err:?}");
    };
    assert_eq!(reason, "UnknownIssuer");
    open.shutdown().await.unwrap();
    mutual.shutdown().await.unwrap();
}

#[tokio::test]
async fn plaintext_clients_fail_cleanly_against_tls_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "main");
    let broker = tls_broker(dir.path(), &ca.server("server"), None).await;

    let plain =
        Admin::builder(format!("http://{}", broker.addr())).request_timeout(REFUSED_TIMEOUT).build().unwrap();
    refused(&plain).await;

    // A Kafka ApiVersions request in plaintext: the broker closes the
    // connection and never answers in Kafka's framing.
    let kafka = broker.kafka_addr().unwrap();
    let mut socket = tokio::net::TcpStream::connect(kafka).await.unwrap();
    let api_versions = b"\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x01\x00\x04test";
    socket.write_all(api_versions).await.unwrap();
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(DEADLINE, socket.read_to_end(&mut answer)).await.expect("closed in time");
    // Only a TLS alert (record type 21) may come back, or nothing.
    if closed.is_ok() && !answer.is_empty() {
        assert_eq!(answer[0], 21, "{answer:?}");
    }

    // The broker goes on serving TLS clients.
    admin(&broker, TlsOptions::new().ca_file(&ca.path)).list_topics().await.expect("still serving");
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections_only() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (TestCa::new(dir.path(), "old"), TestCa::new(dir.path(), "new"));
    let served = old_ca.server("server");
    let broker = tls_broker(dir.path(), &served, None).await;
    let established = admin(&broker, TlsOptions::new().ca_file(&old_ca.path));
    established.create_topic("before", NewTopic::new(1)).await.unwrap();

    // The broker's files now hold a certificate of the new CA.
    let replacement = new_ca.server("server");
    std::fs::copy(&replacement.cert, &served.cert).unwrap();
    std::fs::copy(&replacement.key, &served.key).unwrap();
    broker.reload_tls().expect("the new files load");

    // The open HTTP/2 connection keeps its session; new ones see the new
    // certificate.
    established.create_topic("after", NewTopic::new(1)).await.expect("the established connection goes on");
    let renewed = admin(&broker, TlsOptions::new().ca_file(&new_ca.path));
    assert_eq!(renewed.list_topics().await.unwrap().len(), 2);
    let err = refused(&admin(&broker, TlsOptions::new().ca_file(&old_ca.path))).await;
    assert!(err.contains("UnknownIssuer"), "{err}");

    // A bad file is refused and the certificate in use stays.
    std::fs::write(&served.key, "not a key").unwrap();
    let err = broker.reload_tls().unwrap_err().to_string();
    assert!(err.contains("--tls-key") && err.contains("no PEM private key"), "{err}");
    admin(&broker, TlsOptions::new().ca_file(&new_ca.path))
        .list_topics()
        .await
        .expect("the new certificate stays");
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_brooklet_serve() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (TestCa::new(dir.path(), "old"), TestCa::new(dir.path(), "new"));
    let served = old_ca.server("server");
    let cert = served.cert.to_str().unwrap();
    let key = served.key.to_str().unwrap();
    let broker =
        BrokerProcess::start_with(&dir.path().join("data"), &["--tls-cert", cert, "--tls-key", key]).await;
    let endpoint = broker.endpoint.replace("http://", "https://");
    let trusts = |ca: &TestCa| {
        Admin::builder(&endpoint)
            .tls(TlsOptions::new().ca_file(&ca.path))
            .request_timeout(REFUSED_TIMEOUT)
            .build()
            .unwrap()
    };
    trusts(&old_ca).list_topics().await.expect("served with the first certificate");

    let replacement = new_ca.server("server");
    std::fs::copy(&replacement.cert, &served.cert).unwrap();
    std::fs::copy(&replacement.key, &served.key).unwrap();
    broker.signal("HUP");
    brooklet_tests::eventually("the new certificate after SIGHUP", || async {
        trusts(&new_ca).list_topics().await.ok()
    })
    .await;
    broker.terminate().await;
}

#[tokio::test]
async fn serve_refuses_bad_tls_settings_with_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "main");
    let (good, other) = (ca.server("server"), ca.server("other"));
    let data = dir.path().join("data");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let cases: [(Vec<String>, &str); 4] = [
        (
            vec![
                "--tls-cert".into(),
                path(&dir.path().join("missing.pem")),
                "--tls-key".into(),
                path(&good.key),
            ],
            "cannot read --tls-cert",
        ),
        (
            vec!["--tls-cert".into(), path(&good.cert), "--tls-key".into(), path(&other.key)],
            "is not the private key of --tls-cert",
        ),
        (vec!["--tls-cert".into(), path(&good.cert)], "--tls-cert and --tls-key go together"),
        (
            vec![
                "--tls-cert".into(),
                path(&good.cert),
                "--tls-key".into(),
                path(&good.key),
                "--tls-client-auth".into(),
                "required".into(),
            ],
            "--tls-client-auth required needs --tls-client-ca",
        ),
    ];
    for (args, expected) in cases {
        let child =
            brooklet_command(&["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--data-dir"])
                .arg(&data)
                .args(&args)
                .spawn()
                .unwrap();
        let out = finish(child).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
}

#[tokio::test]
async fn kafka_python_produces_and_consumes_over_tls_and_mutual_tls() {
    if !kafka_client_available(KafkaClient::KafkaPython).await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, clients, other) = (
        TestCa::new(dir.path(), "main"),
        TestCa::new(dir.path(), "clients"),
        TestCa::new(dir.path(), "other"),
    );
    let run = |addr: String, topic: &str, ca: &Path, identity: Option<&CertFiles>| {
        let mut command = tokio::process::Command::new("python3");
        command.arg(kafka_scripts().join("tls_client.py")).arg(addr).arg(topic).arg(ca);
        if let Some(id) = identity {
            command.arg(&id.cert).arg(&id.key);
        }
        let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
        finish(child)
    };

    let broker = tls_broker(dir.path(), &ca.server("server"), None).await;
    let addr = broker.kafka_addr().unwrap().to_string();
    let out = run(addr.clone(), "ssl", &ca.path, None).await;
    assert!(out.success && out.stdout.contains("roundtrip 10"), "{}{}", out.stdout, out.stderr);
    let wrong_ca = run(addr, "ssl", &other.path, None).await;
    assert!(!wrong_ca.success, "{}", wrong_ca.stdout);
    broker.shutdown().await.unwrap();

    let mutual = tls_broker(dir.path(), &ca.server("server"), Some(&clients)).await;
    let addr = mutual.kafka_addr().unwrap().to_string();
    let alice = clients.client("alice", "alice");
    let out = run(addr.clone(), "mtls", &ca.path, Some(&alice)).await;
    assert!(out.success && out.stdout.contains("roundtrip 10"), "{}{}", out.stdout, out.stderr);
    let anonymous = run(addr, "mtls", &ca.path, None).await;
    assert!(!anonymous.success, "{}", anonymous.stdout);
    mutual.shutdown().await.unwrap();
}
