//! Users and authentication: users stored salted; `--auth required` on
//! gRPC (Basic credentials, Rust client and CLI) and on Kafka (SASL PLAIN
//! and SCRAM with real clients, and raw frames for the refusals); the
//! bootstrap user; `brooklet user` through the broker and on a data
//! directory.

use std::process::Stdio;

use brooklet_broker::{Auth, BootstrapUser, Config, EmbeddedBroker};
use brooklet_client::{Admin, Code, Error};
use brooklet_tests::{
    DEADLINE, KafkaClient, brooklet_command, finish, finish_with_input, kafka_client_available, kafka_scripts,
};
use tokio::process::Command;

use crate::kafka::exchange;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "correct horse battery";

/// A broker with `--auth required`, a Kafka listener and the bootstrap
/// user, a superuser (allowed everything whatever the ACLs say).
async fn secured(dir: &std::path::Path) -> EmbeddedBroker {
    let mut config = Config::new(dir);
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.auth = Auth::Required;
    config.superusers = vec![ADMIN.into()];
    config.bootstrap_user = Some(BootstrapUser { name: ADMIN.into(), password: ADMIN_PASSWORD.into() });
    EmbeddedBroker::start_with(config).await.expect("broker starts")
}

fn admin(broker: &EmbeddedBroker, credentials: Option<(&str, &str)>) -> Admin {
    let builder = Admin::builder(broker.endpoint());
    match credentials {
        Some((u, p)) => builder.credentials(u, p),
        None => builder,
    }
    .build()
    .unwrap()
}

fn code(err: &Error) -> Option<Code> {
    match err {
        Error::Broker { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test]
async fn grpc_with_auth_required_serves_only_valid_credentials_and_users_are_stored_salted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path()).await;
    // Without, with a wrong password, with an unknown user: UNAUTHENTICATED,
    // and the same message whether the user exists or not.
    let err = admin(&broker, None).list_topics().await.unwrap_err();
    assert_eq!(code(&err), Some(Code::Unauthenticated), "{err}");
    let wrong = admin(&broker, Some((ADMIN, "wrong"))).list_topics().await.unwrap_err();
    let unknown = admin(&broker, Some(("ghost", "wrong"))).list_topics().await.unwrap_err();
    assert_eq!(code(&wrong), Some(Code::Unauthenticated), "{wrong}");
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert!(wrong.to_string().contains("invalid user name or password"), "{wrong}");

    // The bootstrap user manages users.
    let root = admin(&broker, Some((ADMIN, ADMIN_PASSWORD)));
    root.create_user("alice", "alice's s3cret").await.unwrap();
    let err = root.create_user("alice", "x").await.unwrap_err();
    assert_eq!(code(&err), Some(Code::AlreadyExists), "{err}");
    let users = root.list_users().await.unwrap();
    let names: Vec<&str> = users.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["admin", "alice"]);
    assert_eq!(users[1].1, ["SCRAM-SHA-256", "SCRAM-SHA-512"]);
    let alice = admin(&broker, Some(("alice", "alice's s3cret")));
    alice.list_topics().await.expect("alice is served");
    root.set_user_password("alice", "another one").await.unwrap();
    let err = alice.list_topics().await.unwrap_err();
    assert_eq!(code(&err), Some(Code::Unauthenticated), "the old password no longer works: {err}");
    admin(&broker, Some(("alice", "another one"))).list_topics().await.expect("the new one does");
    root.delete_user("alice").await.unwrap();
    let err = root.delete_user("alice").await.unwrap_err();
    assert_eq!(code(&err), Some(Code::NotFound), "{err}");
    let err = admin(&broker, Some(("alice", "another one"))).list_topics().await.unwrap_err();
    assert_eq!(code(&err), Some(Code::Unauthenticated), "{err}");
    root.create_user("bob", "bobs-password-here").await.unwrap();
    broker.shutdown().await.unwrap();

    // No password is in the data directory, in any file.
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for password in [ADMIN_PASSWORD, "alice's s3cret", "another one", "bobs-password-here"] {
            assert!(
                !bytes.windows(password.len()).any(|w| w == password.as_bytes()),
                "`{password}` in clear in {}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[tokio::test]
async fn the_bootstrap_user_is_created_only_when_no_user_exists() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path()).await;
    let root = admin(&broker, Some((ADMIN, ADMIN_PASSWORD)));
    root.set_user_password(ADMIN, "changed since").await.unwrap();
    broker.shutdown().await.unwrap();
    // At the next start the bootstrap settings are ignored: a user exists.
    let broker = secured(dir.path()).await;
    let err = admin(&broker, Some((ADMIN, ADMIN_PASSWORD))).list_topics().await.unwrap_err();
    assert_eq!(code(&err), Some(Code::Unauthenticated), "{err}");
    admin(&broker, Some((ADMIN, "changed since"))).list_topics().await.unwrap();
    broker.shutdown().await.unwrap();
}

async fn cli(endpoint: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> brooklet_tests::Finished {
    let mut command = brooklet_command(&["--broker", endpoint]);
    command.args(args).envs(env.iter().copied());
    finish_with_input(command, stdin).await
}

#[tokio::test]
async fn the_cli_manages_users_through_the_broker_and_on_a_stopped_brokers_data() {
    let dir = tempfile::tempdir().unwrap();
    // The first user, before the broker's first start: its data directory
    // does not exist yet. Commands that only read or change users refuse
    // it; `add` creates it, password on stdin.
    let data_dir = dir.path().join("brooklet-data");
    let data = data_dir.to_str().unwrap();
    for args in
        [&["user", "list", "--data-dir", data][..], &["user", "set-password", "root", "--data-dir", data]]
    {
        let out = cli("http://127.0.0.1:1", args, &[], "root-password\n").await;
        assert!(!out.success && out.stderr.contains("does not exist"), "{args:?}: {out:?}");
        assert!(!data_dir.exists(), "{args:?} created the directory");
    }
    let out =
        cli("http://127.0.0.1:1", &["user", "add", "root", "--data-dir", data], &[], "root-password\n").await;
    assert!(out.success, "{out:?}");
    let out = cli("http://127.0.0.1:1", &["user", "list", "--data-dir", data], &[], "").await;
    assert!(out.stdout.contains("root") && out.stdout.contains("SCRAM-SHA-512"), "{out:?}");

    let mut config = Config::new(&data_dir);
    config.auth = Auth::Required;
    config.superusers = vec!["root".into()];
    let broker = EmbeddedBroker::start_with(config).await.unwrap();
    let endpoint = broker.endpoint();
    // Without credentials, and with a wrong password: refused.
    let out = cli(&endpoint, &["topic", "list"], &[], "").await;
    assert!(!out.success && out.stderr.contains("UNAUTHENTICATED"), "{out:?}");
    let wrong = [("BROOKLET_USER", "root"), ("BROOKLET_PASSWORD", "nope")];
    let out = cli(&endpoint, &["topic", "list"], &wrong, "").await;
    assert!(!out.success && out.stderr.contains("invalid user name or password"), "{out:?}");
    // With them: served; users are managed through the broker.
    let root = [("BROOKLET_USER", "root"), ("BROOKLET_PASSWORD", "root-password")];
    let out = cli(&endpoint, &["topic", "list"], &root, "").await;
    assert!(out.success, "{out:?}");
    let with_new = [root[0], root[1], ("BROOKLET_NEW_PASSWORD", "carol-pw")];
    let out = cli(&endpoint, &["user", "add", "carol"], &with_new, "").await;
    assert!(out.success && out.stdout.contains("created user carol"), "{out:?}");
    // Listing users and the status need describe on the cluster.
    let carol = [("BROOKLET_PASSWORD", "carol-pw")];
    let out = cli(&endpoint, &["--user", "carol", "user", "list"], &carol, "").await;
    assert!(!out.success && out.stderr.contains("PERMISSION_DENIED"), "{out:?}");
    let acl = ["acl", "add", "--principal", "carol", "--cluster", "--operation", "describe"];
    let out = cli(&endpoint, &acl, &root, "").await;
    assert!(out.success, "{out:?}");
    let out =
        cli(&endpoint, &["--user", "carol", "user", "list"], &[("BROOKLET_PASSWORD", "carol-pw")], "").await;
    assert!(out.success && out.stdout.contains("carol") && out.stdout.contains("root"), "{out:?}");
    let out = cli(&endpoint, &["user", "set-password", "carol"], &root, "carol-pw-2\n").await;
    assert!(out.success, "{out:?}");
    let out =
        cli(&endpoint, &["--user", "carol", "status"], &[("BROOKLET_PASSWORD", "carol-pw-2")], "").await;
    assert!(out.success, "{out:?}");
    let out = cli(&endpoint, &["user", "delete", "carol"], &root, "").await;
    assert!(out.success && out.stdout.contains("deleted user carol"), "{out:?}");
    let out = cli(&endpoint, &["user", "delete", "carol"], &root, "").await;
    assert!(!out.success && out.stderr.contains("NOT_FOUND"), "{out:?}");
    broker.shutdown().await.unwrap();
}

/// A request frame: header v1 (API, version, correlation id, client id)
/// and `body`.
fn frame(api: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&api.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&[0xff, 0xff]);
    out.extend_from_slice(body);
    out
}

fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as i16).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

fn bytes(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

/// SaslHandshake v1 for `mechanism`, then SaslAuthenticate v0 with
/// `token`: the authenticate response's error code and whether the broker
/// closed the connection after it.
async fn sasl(addr: std::net::SocketAddr, mechanism: &str, tokens: &[&[u8]]) -> (Vec<i16>, bool) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let response =
        exchange(&mut stream, &frame(17, 1, &string(mechanism))).await.expect("handshake answered");
    assert_eq!(response[4..6], [0, 0], "handshake accepted");
    let mut codes = Vec::new();
    for token in tokens {
        let Some(response) = exchange(&mut stream, &frame(36, 0, &bytes(token))).await else { break };
        codes.push(i16::from_be_bytes([response[4], response[5]]));
    }
    // Metadata v1, all topics: served only once authenticated.
    let closed = exchange(&mut stream, &frame(3, 1, &(-1i32).to_be_bytes())).await.is_none();
    (codes, closed)
}

#[tokio::test]
async fn kafka_refuses_bad_logins_and_requests_before_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path()).await;
    let addr = broker.kafka_addr().unwrap();
    tokio::time::timeout(DEADLINE, async {
        // A request before authentication closes the connection; ApiVersions is answered.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(exchange(&mut stream, &frame(18, 0, &[])).await.is_some(), "ApiVersions is answered");
        assert!(
            exchange(&mut stream, &frame(3, 1, &(-1i32).to_be_bytes())).await.is_none(),
            "Metadata closes"
        );
        // PLAIN: right, wrong password, unknown user.
        let good = format!("\0{ADMIN}\0{ADMIN_PASSWORD}");
        assert_eq!(sasl(addr, "PLAIN", &[good.as_bytes()]).await, (vec![0], false));
        let wrong = format!("\0{ADMIN}\0wrong");
        assert_eq!(
            sasl(addr, "PLAIN", &[wrong.as_bytes()]).await,
            (vec![58], true),
            "SASL_AUTHENTICATION_FAILED"
        );
        assert_eq!(sasl(addr, "PLAIN", &[b"\0ghost\0wrong"]).await, (vec![58], true));
        // SCRAM: an unknown user is answered a first message like any
        // user's, and fails at its proof.
        let proof = b"c=biws,r=NONCE,p=AAAA";
        let (codes, closed) = sasl(addr, "SCRAM-SHA-256", &[b"n,,n=ghost,r=abcdef", proof]).await;
        assert_eq!((codes[0], codes[1], closed), (0, 58, true));
        // A frame larger than 64 KiB before authentication closes the connection.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(exchange(&mut stream, &frame(18, 0, &vec![0; 70 << 10])).await.is_none());
        // SaslHandshake v0 (raw tokens) is not implemented: answered
        // UNSUPPORTED_VERSION, then the connection closes.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let response = exchange(&mut stream, &frame(17, 0, &string("PLAIN"))).await.expect("answered");
        assert_eq!(response[4..6], 35i16.to_be_bytes());
        assert!(exchange(&mut stream, &frame(18, 0, &[])).await.is_none(), "closed");
    })
    .await
    .expect("in time");
    broker.shutdown().await.unwrap();
}

async fn sasl_client(args: &[&str], password: &str) -> brooklet_tests::Finished {
    let child = Command::new("python3")
        .arg(kafka_scripts().join("sasl_client.py"))
        .args(args)
        .env("SASL_PASSWORD", password)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    finish(child).await
}

#[tokio::test]
async fn kafka_python_authenticates_with_plain_and_scram_and_confluent_with_scram_sha_512() {
    let python = kafka_client_available(KafkaClient::KafkaPython).await;
    let confluent = kafka_client_available(KafkaClient::ConfluentKafka).await;
    if !python && !confluent {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path()).await;
    let addr = broker.kafka_addr().unwrap().to_string();
    if python {
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let out =
                sasl_client(&["kafka-python", &addr, mechanism, ADMIN, "sasl-py"], ADMIN_PASSWORD).await;
            assert!(out.success && out.stdout.starts_with("ok "), "{mechanism}: {out:?}");
        }
    }
    if confluent {
        let out = sasl_client(&["confluent", &addr, "SCRAM-SHA-512", ADMIN, "sasl-ck"], ADMIN_PASSWORD).await;
        assert!(out.success && out.stdout.starts_with("ok "), "{out:?}");
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn kcat_authenticates_with_plain() {
    if !kafka_client_available(KafkaClient::Kcat).await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path()).await;
    let addr = broker.kafka_addr().unwrap().to_string();
    let kcat = |password: &str| {
        Command::new("kcat")
            .args(["-b", &addr, "-L", "-m", "10"])
            .args(["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN"])
            .args(["-X", &format!("sasl.username={ADMIN}"), "-X", &format!("sasl.password={password}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let out = finish(kcat(ADMIN_PASSWORD)).await;
    assert!(out.success && out.stdout.contains("1 brokers"), "{out:?}");
    broker.shutdown().await.unwrap();
}
