//! Authentication over TLS: a verified client certificate authenticates as
//! the user it names (gRPC with the Rust client and the CLI, Kafka with
//! kafka-python and kcat); SASL over TLS (`SASL_SSL`) with kafka-python and
//! kcat, Basic credentials over https with the Rust client and the CLI; and
//! `serve` refusing a listener reachable from other hosts without TLS and
//! authentication unless `--allow-insecure`.

use std::path::Path;
use std::process::Stdio;

use brooklet_broker::EmbeddedBroker;
use brooklet_client::{AclEntry, AclOperation, AclResourceType, Admin, Code, Error, TlsOptions};
use brooklet_tests::certs::{CertFiles, TestCa};
use brooklet_tests::{
    Finished, KafkaClient, brooklet_command, finish, kafka_client_available, kafka_scripts,
};
use tokio::process::Command;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "correct horse battery";

/// A broker with TLS, `--auth required`, a Kafka listener and the
/// bootstrap user, a superuser; client certificates of `clients` required
/// when given.
async fn secured(dir: &Path, ca: &TestCa, clients: Option<&TestCa>) -> EmbeddedBroker {
    let mut config = ca.secured_config(dir.join("data"), clients, ADMIN, ADMIN_PASSWORD);
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    EmbeddedBroker::start_with(config).await.expect("broker starts")
}

fn admin(
    broker: &EmbeddedBroker,
    ca: &TestCa,
    cert: Option<&CertFiles>,
    user: Option<(&str, &str)>,
) -> Admin {
    let mut tls = TlsOptions::new().ca_pem(ca.pem.clone());
    if let Some(cert) = cert {
        tls = tls.identity_files(&cert.cert, &cert.key);
    }
    let builder = Admin::builder(broker.endpoint()).tls(tls);
    match user {
        Some((u, p)) => builder.credentials(u, p),
        None => builder,
    }
    .build()
    .expect("client built")
}

/// The code and message of a call that must fail.
async fn refused(admin: &Admin) -> (Code, String) {
    match admin.list_topics().await.expect_err("refused") {
        Error::Broker { code, message } => (code, message),
        other => panic!("not refused by the broker: {other}"),
    }
}

/// `brooklet --broker ENDPOINT ARGS` with `env`.
async fn cli(endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let child = brooklet_command(&["--broker", endpoint])
        .args(args)
        .envs(env.iter().copied())
        .spawn()
        .expect("brooklet runs");
    finish(child).await
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[tokio::test]
async fn grpc_authenticates_a_client_certificate_as_the_user_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, clients) = (TestCa::new(dir.path(), "main"), TestCa::new(dir.path(), "clients"));
    let broker = secured(dir.path(), &ca, Some(&clients)).await;
    let (root, alice, mallory) = (
        clients.client("admin", ADMIN),
        clients.client("alice", "alice"),
        clients.client("mallory", "mallory"),
    );

    // The bootstrap user's certificate is enough: no password.
    let root = admin(&broker, &ca, Some(&root), None);
    root.create_user("alice", "alice's password").await.expect("the admin is authenticated by certificate");
    // Listing users needs describe on the cluster: alice's ACLs name her
    // as her certificate does.
    let describe_cluster = AclEntry::allow("alice", AclResourceType::Cluster, "", AclOperation::Describe);
    root.create_acl(&describe_cluster).await.unwrap();
    let as_alice = admin(&broker, &ca, Some(&alice), None);
    as_alice.list_topics().await.expect("alice's certificate is served without a password");
    // A header, when sent, must be the certificate's user's, with the right password.
    admin(&broker, &ca, Some(&alice), Some(("alice", "alice's password")))
        .list_topics()
        .await
        .expect("same user");
    let (code, message) = refused(&admin(&broker, &ca, Some(&alice), Some((ADMIN, ADMIN_PASSWORD)))).await;
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(message.contains("names another user than the client certificate (alice)"), "{message}");
    let (code, message) = refused(&admin(&broker, &ca, Some(&alice), Some(("alice", "wrong")))).await;
    assert_eq!((code, message.as_str()), (Code::Unauthenticated, "invalid user name or password"));
    // A certificate of no user is refused, whatever the header says.
    for user in [None, Some((ADMIN, ADMIN_PASSWORD))] {
        let (code, message) = refused(&admin(&broker, &ca, Some(&mallory), user)).await;
        assert_eq!(code, Code::Unauthenticated, "{message}");
        assert!(
            message.contains("the client certificate (CN=mallory) does not name a user of this broker"),
            "{message}"
        );
    }
    // Without a common name, the first DNS name is the user.
    let by_dns = clients.client_without_cn("alice-dns", &["alice", "other.example"]);
    admin(&broker, &ca, Some(&by_dns), None).list_topics().await.expect("DNS name alice");
    // The CLI with a certificate and no --user.
    let args = ["--tls-ca", path(&ca.path), "--tls-client-cert", path(&alice.cert)];
    let args: Vec<&str> =
        args.into_iter().chain(["--tls-client-key", path(&alice.key), "user", "list"]).collect();
    let out = cli(&broker.endpoint(), &args, &[]).await;
    assert!(out.success && out.stdout.contains("alice"), "{out:?}");
    // Deleting the user refuses its certificate from the next request on.
    root.delete_user("alice").await.unwrap();
    let (code, _) = refused(&as_alice).await;
    assert_eq!(code, Code::Unauthenticated);
    broker.shutdown().await.unwrap();
}

/// kafka-python's SSL round trip (`tls_client.py`) with `cert`.
async fn python_ssl(addr: &str, topic: &str, ca: &TestCa, cert: &CertFiles) -> Finished {
    let child = Command::new("python3")
        .arg(kafka_scripts().join("tls_client.py"))
        .args([addr, topic, path(&ca.path), path(&cert.cert), path(&cert.key)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    finish(child).await
}

/// `kcat -L` against `addr` with `settings` (`-X` properties).
async fn kcat(addr: &str, settings: &[String]) -> Finished {
    let mut command = Command::new("kcat");
    command.args(["-b", addr, "-L", "-m", "10"]);
    for setting in settings {
        command.args(["-X", setting]);
    }
    let child =
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn().expect("kcat runs");
    finish(child).await
}

#[tokio::test]
async fn kafka_authenticates_a_client_certificate_as_the_user_it_names() {
    let python = kafka_client_available(KafkaClient::KafkaPython).await;
    let kcat_found = kafka_client_available(KafkaClient::Kcat).await;
    if !python && !kcat_found {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, clients) = (TestCa::new(dir.path(), "main"), TestCa::new(dir.path(), "clients"));
    let broker = secured(dir.path(), &ca, Some(&clients)).await;
    let addr = broker.kafka_addr().unwrap().to_string();
    let (root, mallory) = (clients.client("admin", ADMIN), clients.client("mallory", "mallory"));
    if python {
        let out = python_ssl(&addr, "by-cert", &ca, &root).await;
        assert!(out.success && out.stdout.contains("roundtrip 10"), "{out:?}");
        let out = python_ssl(&addr, "by-cert", &ca, &mallory).await;
        assert!(!out.success, "a certificate of no user is refused: {out:?}");
    }
    if kcat_found {
        let ssl = |cert: &CertFiles, protocol: &str| {
            vec![
                format!("security.protocol={protocol}"),
                format!("ssl.ca.location={}", ca.path.display()),
                format!("ssl.certificate.location={}", cert.cert.display()),
                format!("ssl.key.location={}", cert.key.display()),
            ]
        };
        let out = kcat(&addr, &ssl(&root, "ssl")).await;
        assert!(out.success && out.stdout.contains("1 brokers"), "{out:?}");
        let out = kcat(&addr, &ssl(&mallory, "ssl")).await;
        assert!(!out.success, "a certificate of no user is refused: {out:?}");
        // Authenticated by its certificate already, a connection is refused SASL.
        let mut sasl = ssl(&root, "sasl_ssl");
        sasl.extend(["sasl.mechanisms=PLAIN".into(), format!("sasl.username={ADMIN}")]);
        sasl.push(format!("sasl.password={ADMIN_PASSWORD}"));
        let out = kcat(&addr, &sasl).await;
        assert!(!out.success, "SASL after the certificate: {out:?}");
        assert!(
            out.stderr.contains("Request not valid in current SASL state"),
            "ILLEGAL_SASL_STATE: {out:?}"
        );
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn sasl_and_basic_credentials_are_served_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "main");
    let broker = secured(dir.path(), &ca, None).await;

    // gRPC: Basic over https, the Rust client and the CLI.
    admin(&broker, &ca, None, Some((ADMIN, ADMIN_PASSWORD))).list_topics().await.expect("served");
    let (code, _) = refused(&admin(&broker, &ca, None, Some((ADMIN, "wrong")))).await;
    assert_eq!(code, Code::Unauthenticated);
    let (code, _) = refused(&admin(&broker, &ca, None, None)).await;
    assert_eq!(code, Code::Unauthenticated);
    let args = ["--tls-ca", path(&ca.path), "--user", ADMIN, "user", "list"];
    let out = cli(&broker.endpoint(), &args, &[("BROOKLET_PASSWORD", ADMIN_PASSWORD)]).await;
    assert!(out.success && out.stdout.contains(ADMIN), "{out:?}");
    let out = cli(&broker.endpoint(), &args, &[("BROOKLET_PASSWORD", "wrong")]).await;
    assert!(!out.success && out.stderr.contains("invalid user name or password"), "{out:?}");

    // Kafka: SASL_SSL.
    let addr = broker.kafka_addr().unwrap().to_string();
    if kafka_client_available(KafkaClient::KafkaPython).await {
        for mechanism in ["PLAIN", "SCRAM-SHA-512"] {
            let child = Command::new("python3")
                .arg(kafka_scripts().join("sasl_client.py"))
                .args(["kafka-python", &addr, mechanism, ADMIN, "sasl-ssl"])
                .env("SASL_PASSWORD", ADMIN_PASSWORD)
                .env("SASL_CAFILE", &ca.path)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let out = finish(child).await;
            assert!(out.success && out.stdout.starts_with("ok "), "{mechanism}: {out:?}");
        }
    }
    if kafka_client_available(KafkaClient::Kcat).await {
        let settings = |password: &str| {
            vec![
                "security.protocol=sasl_ssl".to_owned(),
                format!("ssl.ca.location={}", ca.path.display()),
                "sasl.mechanisms=PLAIN".to_owned(),
                format!("sasl.username={ADMIN}"),
                format!("sasl.password={password}"),
            ]
        };
        let out = kcat(&addr, &settings(ADMIN_PASSWORD)).await;
        assert!(out.success && out.stdout.contains("1 brokers"), "{out:?}");
        let out = kcat(&addr, &settings("wrong")).await;
        assert!(!out.success, "a wrong password: {out:?}");
    }
    broker.shutdown().await.unwrap();
}

/// `brooklet serve ARGS` with `env`, its data in `dir`.
async fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let child = brooklet_command(&["serve", "--metrics-listen", "off"])
        .args(args)
        .env_remove("BROOKLET_ALLOW_INSECURE")
        .env_remove("BROOKLET_AUTH")
        .envs(env.iter().copied())
        .current_dir(dir)
        .spawn()
        .expect("brooklet runs");
    finish(child).await
}

#[tokio::test]
async fn serve_refuses_listeners_off_loopback_without_tls_and_auth_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    // A data directory that cannot be created: start-up fails there, after
    // the listeners' addresses were checked and before anything is bound.
    std::fs::write(dir.path().join("file"), "").unwrap();
    let data = ["--data-dir", "file/data"];
    let refused = |out: &Finished, flag: &str| {
        assert_eq!(out.code, Some(2), "{out:?}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
        let expected = format!("{flag} 0.0.0.0:0 is reachable from other hosts, but the broker has no");
        assert!(out.stderr.contains(&expected), "{out:?}");
        assert!(out.stderr.contains("or pass --allow-insecure"), "{out:?}");
    };
    let passed = |out: &Finished| {
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(out.stderr.contains("cannot create data directory"), "{out:?}");
    };
    let grpc = [&data[..], &["--listen", "0.0.0.0:0"]].concat();
    refused(&serve(dir.path(), &grpc, &[]).await, "--listen");
    let kafka = [&data[..], &["--listen", "127.0.0.1:0", "--kafka-listen", "0.0.0.0:0"]].concat();
    let kafka = [&kafka[..], &["--kafka-advertised", "127.0.0.1:9092"]].concat();
    refused(&serve(dir.path(), &kafka, &[]).await, "--kafka-listen");
    // Every interface without an advertised address: both refusals at once,
    // on one line.
    let everywhere = [&data[..], &["--listen", "127.0.0.1:0", "--kafka-listen", "0.0.0.0:0"]].concat();
    let out = serve(dir.path(), &everywhere, &[]).await;
    refused(&out, "--kafka-listen");
    assert!(out.stderr.contains("set --kafka-advertised HOST:PORT"), "{out:?}");
    // Authentication alone is not enough.
    refused(&serve(dir.path(), &grpc, &[("BROOKLET_AUTH", "required")]).await, "--listen");

    // Allowed by the flag, the variable or the config file.
    passed(&serve(dir.path(), &[&grpc[..], &["--allow-insecure"]].concat(), &[]).await);
    passed(&serve(dir.path(), &kafka, &[("BROOKLET_ALLOW_INSECURE", "true")]).await);
    std::fs::write(dir.path().join("brooklet.toml"), "allow_insecure = true\n").unwrap();
    passed(&serve(dir.path(), &[&grpc[..], &["--config", "brooklet.toml"]].concat(), &[]).await);
    // And by TLS with authentication.
    let ca = TestCa::new(dir.path(), "main");
    let server = ca.server("server");
    let tls = ["--tls-cert", path(&server.cert), "--tls-key", path(&server.key), "--auth", "required"];
    passed(&serve(dir.path(), &[&grpc[..], &tls[..]].concat(), &[]).await);
    // Loopback needs neither.
    passed(&serve(dir.path(), &[&data[..], &["--listen", "127.0.0.1:0"]].concat(), &[]).await);
}
