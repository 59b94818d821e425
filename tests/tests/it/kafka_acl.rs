//! ACLs on the Kafka listener (`--auth required`): each API refused with
//! Kafka's error code (TOPIC_, GROUP_, CLUSTER_AUTHORIZATION_FAILED) per
//! topic, partition or group, and served once an ACL allows it; raw frames
//! for the exact codes, kafka-python and kcat for what clients see. ACLs and
//! users are added through the core on a stopped broker's data directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use brooklet_broker::{Auth, Config, EmbeddedBroker};
use brooklet_core::{Acl, Core, CoreConfig, Operation, PatternType, Permission, ResourceType};
use brooklet_tests::{DEADLINE, KafkaClient, finish, kafka_client_available, kafka_scripts};
use tokio::process::Command;
use tokio_util::task::TaskTracker;

use crate::kafka::exchange;
use crate::metrics::get;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-password";
const ALICE_PASSWORD: &str = "alice-password";
const BOB_PASSWORD: &str = "bob-password";

/// An entry allowing `principal` `operation` on the literal resource.
fn allow(principal: &str, resource_type: ResourceType, name: &str, operation: Operation) -> Acl {
    Acl::new(principal, resource_type, PatternType::Literal, name, operation, Permission::Allow)
        .expect("a valid entry")
}

/// On a stopped broker's data in `dir`: the users (once), `topics` (one
/// partition each) and `acls` added; the database closed again.
async fn prepare(dir: &Path, topics: &[&str], acls: &[Acl]) {
    let tasks = TaskTracker::new();
    let core = Core::open(&CoreConfig::new(dir), None, &tasks).expect("the core opens");
    for (user, password) in [(ADMIN, ADMIN_PASSWORD), ("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)] {
        if !core.users().list().unwrap().iter().any(|u| u.name == user) {
            core.users().add(user, password).await.expect("user added");
        }
    }
    for topic in topics {
        core.log().create_topic(topic, 1, BTreeMap::new()).await.expect("topic created");
    }
    for acl in acls {
        core.acls().add(acl).await.expect("entry added");
    }
    core.flush().expect("flushed");
    drop(core);
    tasks.close();
    tasks.wait().await;
}

/// A broker on `dir` with `--auth required`, superuser `admin`, a Kafka
/// listener and the metrics listener; Metadata creates no topic.
async fn secured(dir: &Path) -> EmbeddedBroker {
    let mut config = Config::new(dir);
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.kafka_auto_create_topics = false;
    config.auth = Auth::Required;
    config.superusers = vec![ADMIN.into()];
    EmbeddedBroker::start_with(config).await.expect("broker starts")
}

/// A request frame: header v1 (API, version, correlation id 1, null
/// client id) and `body`.
fn frame(api: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&api.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&[0xff, 0xff]);
    out.extend_from_slice(body);
    out
}

/// Builds a request body field by field, as Kafka's non-flexible versions
/// encode them.
#[derive(Default)]
struct Body(Vec<u8>);

impl Body {
    fn i8(mut self, v: i8) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn string(self, s: &str) -> Self {
        let mut out = self.i16(s.len() as i16);
        out.0.extend_from_slice(s.as_bytes());
        out
    }
    fn bytes(self, b: &[u8]) -> Self {
        let mut out = self.i32(b.len() as i32);
        out.0.extend_from_slice(b);
        out
    }
    /// An array of `items`, each written by `each`.
    fn array<T>(self, items: &[T], each: impl Fn(Body, &T) -> Body) -> Self {
        let out = self.i32(items.len() as i32);
        items.iter().fold(out, each)
    }
}

/// Reads a response field by field.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let len = self.i16();
        if len < 0 {
            return String::new();
        }
        String::from_utf8(self.take(len as usize).to_vec()).unwrap()
    }
    fn skip_bytes(&mut self) {
        let len = self.i32();
        if len > 0 {
            self.take(len as usize);
        }
    }
    /// Reads an array with `each`.
    fn array<T>(&mut self, mut each: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let n = self.i32().max(0);
        (0..n).map(|_| each(self)).collect()
    }
}

/// A connection authenticated as `user` with SASL PLAIN.
async fn login(addr: SocketAddr, user: &str, password: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let handshake = exchange(&mut stream, &frame(17, 1, &Body::default().string("PLAIN").0)).await.unwrap();
    assert_eq!(handshake[4..6], [0, 0], "handshake accepted");
    let token = format!("\0{user}\0{password}");
    let auth =
        exchange(&mut stream, &frame(36, 0, &Body::default().bytes(token.as_bytes()).0)).await.unwrap();
    assert_eq!(auth[4..6], [0, 0], "{user} authenticated");
    stream
}

/// Sends a request and returns a reader past the response's correlation id.
async fn call(stream: &mut tokio::net::TcpStream, api: i16, version: i16, body: Body) -> Vec<u8> {
    let response = exchange(stream, &frame(api, version, &body.0)).await.expect("answered");
    response[4..].to_vec()
}

/// Metadata v1 of `topics` (`None`: all): each topic's name and error code.
async fn metadata(stream: &mut tokio::net::TcpStream, topics: Option<&[&str]>) -> Vec<(String, i16)> {
    let body = match topics {
        None => Body::default().i32(-1),
        Some(topics) => Body::default().array(topics, |b, t| b.string(t)),
    };
    let response = call(stream, 3, 1, body).await;
    let mut r = Reader(&response);
    r.array(|r| {
        r.i32();
        r.string();
        r.i32();
        r.string();
    });
    r.i32();
    r.array(|r| {
        let code = r.i16();
        let name = r.string();
        r.take(1);
        r.array(|r| {
            r.i16();
            r.i32();
            r.i32();
            r.array(|r| r.i32());
            r.array(|r| r.i32());
        });
        (name, code)
    })
}

/// Each partition's (topic, error code) of a response laid out as
/// topics [name, partitions [index, error code, `rest` bytes]].
fn partition_codes(response: &[u8], rest: usize) -> Vec<(String, i16)> {
    let mut r = Reader(response);
    r.array(|r| {
        let name = r.string();
        r.array(|r| {
            r.i32();
            let code = r.i16();
            r.take(rest);
            (name.clone(), code)
        })
    })
    .concat()
}

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const CORRUPT_MESSAGE: i16 = 2;

#[tokio::test]
async fn each_kafka_request_is_refused_per_topic_partition_and_group_without_revealing_topics() {
    let dir = tempfile::tempdir().unwrap();
    let acls = [
        allow("alice", ResourceType::Topic, "readable", Operation::Read),
        allow("alice", ResourceType::Topic, "gone", Operation::Describe),
        allow("alice", ResourceType::Group, "mine", Operation::Read),
    ];
    prepare(dir.path(), &["readable", "secret"], &acls).await;
    let broker = secured(dir.path()).await;
    let addr = broker.kafka_addr().unwrap();
    tokio::time::timeout(DEADLINE, async {
        let mut alice = login(addr, "alice", ALICE_PASSWORD).await;
        // Metadata of every topic lists only the describable ones; named
        // ones not describable are refused whether they exist or not; a
        // describable missing one is unknown.
        assert_eq!(metadata(&mut alice, None).await, [("readable".to_owned(), 0)]);
        let named = metadata(&mut alice, Some(&["secret", "missing", "gone", "readable"])).await;
        let expected = [
            ("secret", TOPIC_AUTHORIZATION_FAILED),
            ("missing", TOPIC_AUTHORIZATION_FAILED),
            ("gone", UNKNOWN_TOPIC_OR_PARTITION),
            ("readable", 0),
        ];
        assert_eq!(named, expected.map(|(t, c)| (t.to_owned(), c)));

        // Produce v3 (null records): the topic alice may not write is
        // refused in every partition, before its records or existence are
        // looked at.
        let produce = Body::default()
            .i16(-1)
            .i16(1)
            .i32(5000)
            .array(&["secret", "missing"], |b, t| b.string(t).array(&[0, 1], |b, p| b.i32(*p).i32(-1)));
        let response = call(&mut alice, 0, 3, produce).await;
        let codes = partition_codes(&response, 16);
        assert!(codes.iter().all(|(_, c)| *c == TOPIC_AUTHORIZATION_FAILED), "{codes:?}");
        assert_eq!(codes.len(), 4);

        // Fetch v4: each partition of the readable topic served, the other refused.
        let fetch = Body::default()
            .i32(-1)
            .i32(0)
            .i32(0)
            .i32(1 << 20)
            .i8(0)
            .array(&["readable", "secret"], |b, t| {
                b.string(t).array(&[0], |b, p| b.i32(*p).i64(0).i32(1 << 20))
            });
        let response = call(&mut alice, 1, 4, fetch).await;
        let mut r = Reader(&response);
        r.i32();
        let fetched = r
            .array(|r| {
                let name = r.string();
                r.array(|r| {
                    r.i32();
                    let code = r.i16();
                    r.i64();
                    r.i64();
                    r.array(|r| (r.i64(), r.i64()));
                    r.skip_bytes();
                    (name.clone(), code)
                })
            })
            .concat();
        assert_eq!(fetched, [("readable".to_owned(), 0), ("secret".to_owned(), TOPIC_AUTHORIZATION_FAILED)]);

        // ListOffsets v1 (latest): per partition.
        let list = Body::default().i32(-1).array(&["readable", "secret", "missing"], |b, t| {
            b.string(t).array(&[0], |b, p| b.i32(*p).i64(-1))
        });
        let response = call(&mut alice, 2, 1, list).await;
        let expected = [
            ("readable", 0),
            ("secret", TOPIC_AUTHORIZATION_FAILED),
            ("missing", TOPIC_AUTHORIZATION_FAILED),
        ];
        assert_eq!(partition_codes(&response, 16), expected.map(|(t, c)| (t.to_owned(), c)));

        // OffsetCommit v2 outside any generation: a group alice may not
        // read refuses every partition; in hers, each topic she may not
        // read is refused.
        let commit = |group: &str| {
            Body::default().string(group).i32(-1).string("").i64(-1).array(&["readable", "secret"], |b, t| {
                b.string(t).array(&[0], |b, p| b.i32(*p).i64(0).i16(-1))
            })
        };
        let response = call(&mut alice, 8, 2, commit("theirs")).await;
        let codes = partition_codes(&response, 0);
        assert_eq!(
            codes,
            [
                ("readable".to_owned(), GROUP_AUTHORIZATION_FAILED),
                ("secret".to_owned(), GROUP_AUTHORIZATION_FAILED)
            ]
        );
        let response = call(&mut alice, 8, 2, commit("mine")).await;
        let codes = partition_codes(&response, 0);
        assert_eq!(codes, [("readable".to_owned(), 0), ("secret".to_owned(), TOPIC_AUTHORIZATION_FAILED)]);

        // DescribeGroups v0: per group.
        let response =
            call(&mut alice, 15, 0, Body::default().array(&["mine", "theirs"], |b, g| b.string(g))).await;
        let mut r = Reader(&response);
        let groups = r.array(|r| {
            let code = r.i16();
            let group = r.string();
            r.string();
            r.string();
            r.string();
            r.array(|r| {
                r.string();
                r.string();
                r.string();
                r.skip_bytes();
                r.skip_bytes();
            });
            (group, code)
        });
        assert_eq!(groups, [("mine".to_owned(), 0), ("theirs".to_owned(), GROUP_AUTHORIZATION_FAILED)]);

        // InitProducerId v0 without a write ACL anywhere.
        let response = call(&mut alice, 22, 0, Body::default().i16(-1).i32(60000)).await;
        let mut r = Reader(&response);
        r.i32();
        assert_eq!(r.i16(), CLUSTER_AUTHORIZATION_FAILED);

        // The superuser is served all of it: the missing topic is unknown
        // to it, and its null records are refused as corrupt.
        let mut admin = login(addr, ADMIN, ADMIN_PASSWORD).await;
        let all = metadata(&mut admin, None).await;
        assert_eq!(all, [("readable".to_owned(), 0), ("secret".to_owned(), 0)]);
        let named = metadata(&mut admin, Some(&["missing"])).await;
        assert_eq!(named, [("missing".to_owned(), UNKNOWN_TOPIC_OR_PARTITION)]);
        let produce = Body::default()
            .i16(-1)
            .i16(1)
            .i32(5000)
            .array(&["secret"], |b, t| b.string(t).array(&[0], |b, p| b.i32(*p).i32(-1)));
        let response = call(&mut admin, 0, 3, produce).await;
        assert_eq!(partition_codes(&response, 16), [("secret".to_owned(), CORRUPT_MESSAGE)]);
        let response = call(&mut admin, 22, 0, Body::default().i16(-1).i32(60000)).await;
        assert_eq!(Reader(&response).take(6)[4..], [0, 0]);
    })
    .await
    .expect("in time");

    // Denials are counted by operation and resource type, and their codes
    // by API.
    let (_, _, body) = get(broker.metrics_addr().unwrap(), "/metrics").await;
    for sample in [
        r#"brooklet_authorization_denials_total{protocol="kafka",operation="describe",resource_type="topic"}"#,
        r#"brooklet_authorization_denials_total{protocol="kafka",operation="write",resource_type="topic"}"#,
        r#"brooklet_authorization_denials_total{protocol="kafka",operation="read",resource_type="group"}"#,
        r#"brooklet_authorization_denials_total{protocol="kafka",operation="write",resource_type="cluster"}"#,
        r#"brooklet_kafka_request_errors_total{api="Metadata",code="TOPIC_AUTHORIZATION_FAILED"}"#,
        r#"brooklet_kafka_request_errors_total{api="OffsetCommit",code="GROUP_AUTHORIZATION_FAILED"}"#,
        r#"brooklet_kafka_request_errors_total{api="InitProducerId",code="CLUSTER_AUTHORIZATION_FAILED"}"#,
    ] {
        assert!(body.contains(sample), "{sample} in\n{body}");
    }
    broker.shutdown().await.unwrap();
}

/// Runs `acl_client.py BOOTSTRAP MODE`; its output lines.
async fn acl_client(addr: &str, mode: &str) -> Vec<String> {
    let child = Command::new("python3")
        .arg(kafka_scripts().join("acl_client.py"))
        .args([addr, mode])
        .env("ADMIN_USER", ADMIN)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("ALICE_PASSWORD", ALICE_PASSWORD)
        .env("BOB_PASSWORD", BOB_PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = finish(child).await;
    assert!(out.success, "acl_client.py {mode} failed: {out:?}");
    out.stdout.lines().map(str::to_owned).collect()
}

/// kcat as alice (SASL PLAIN): `args` after the bootstrap and credentials.
async fn kcat(addr: &str, args: &[&str], input: &str) -> brooklet_tests::Finished {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("kcat")
        .args(["-b", addr, "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN"])
        .args(["-X", "sasl.username=alice", "-X", &format!("sasl.password={ALICE_PASSWORD}")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    finish(child).await
}

#[tokio::test]
async fn kafka_clients_are_refused_each_operation_until_an_acl_allows_it() {
    let python = kafka_client_available(KafkaClient::KafkaPython).await;
    let kcat_here = kafka_client_available(KafkaClient::Kcat).await;
    if !python && !kcat_here {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let topics = ["acl-read", "acl-write", "acl-secret", "acl-doomed"];
    let first = [
        allow("alice", ResourceType::Topic, "acl-read", Operation::Read),
        allow("alice", ResourceType::Topic, "acl-write", Operation::Write),
        allow("alice", ResourceType::Group, "g-describe", Operation::Describe),
        allow("alice", ResourceType::Group, "g-read", Operation::Read),
        // Bob sees the topic, but may write none: no producer id for him.
        allow("bob", ResourceType::Topic, "acl-write", Operation::Describe),
    ];
    prepare(dir.path(), &topics, &first).await;
    let broker = secured(dir.path()).await;
    let addr = broker.kafka_addr().unwrap().to_string();
    if python {
        assert_eq!(acl_client(&addr, "setup").await, ["setup: ok"]);
        let denied = acl_client(&addr, "check").await;
        assert_eq!(
            denied,
            [
                "metadata: ok acl-read acl-write",
                "produce-describable: TopicAuthorizationFailedError",
                "produce-hidden: TopicAuthorizationFailedError",
                "fetch: TopicAuthorizationFailedError",
                // Metadata hides the topic, so the client sends no
                // ListOffsets (whose own refusal the frame test pins).
                "list-offsets: UnknownTopicOrPartitionError",
                "join: GroupAuthorizationFailedError",
                "commit-group: GroupAuthorizationFailedError",
                "commit-topic: TopicAuthorizationFailedError",
                "create-topic: TopicAuthorizationFailedError",
                "delete-topic: TopicAuthorizationFailedError",
                "describe-configs: TOPIC_AUTHORIZATION_FAILED",
                "alter-configs: TOPIC_AUTHORIZATION_FAILED",
                "describe-broker-configs: CLUSTER_AUTHORIZATION_FAILED",
                "list-groups: ok g-describe g-read",
                "describe-groups: GroupAuthorizationFailedError",
                "delete-groups: GroupAuthorizationFailedError",
                "idempotent-producer: ClusterAuthorizationFailedError",
            ],
            "{denied:#?}"
        );
    }
    if kcat_here {
        // Alice may read `acl-read` (its record written by the setup) but
        // not write it.
        let produced = kcat(&addr, &["-P", "-t", "acl-read"], "refused\n").await;
        assert!(produced.stderr.contains("Topic authorization failed"), "{produced:?}");
        if python {
            let consumed = kcat(&addr, &["-C", "-t", "acl-read", "-o", "beginning", "-e", "-q"], "").await;
            assert!(consumed.success && consumed.stdout.lines().count() == 1, "{consumed:?}");
        }
    }
    broker.shutdown().await.unwrap();

    // Each operation allowed by its own entry.
    let second = [
        allow("alice", ResourceType::Topic, "acl-read", Operation::Write),
        allow("alice", ResourceType::Topic, "acl-read", Operation::Alter),
        allow("alice", ResourceType::Topic, "acl-secret", Operation::Write),
        allow("alice", ResourceType::Topic, "acl-write", Operation::Read),
        allow("alice", ResourceType::Topic, "acl-new", Operation::Create),
        allow("alice", ResourceType::Topic, "acl-doomed", Operation::Delete),
        allow("alice", ResourceType::Group, "g-describe", Operation::Read),
        allow("alice", ResourceType::Group, "g-secret", Operation::Describe),
        allow("alice", ResourceType::Group, "g-read", Operation::Delete),
        allow("alice", ResourceType::Cluster, "", Operation::Describe),
        allow("bob", ResourceType::Topic, "acl-write", Operation::Write),
    ];
    prepare(dir.path(), &[], &second).await;
    let broker = secured(dir.path()).await;
    let addr = broker.kafka_addr().unwrap().to_string();
    if python {
        let allowed = acl_client(&addr, "check").await;
        assert_eq!(
            allowed,
            [
                "metadata: ok acl-doomed acl-read acl-secret acl-write",
                "produce-describable: ok",
                "produce-hidden: ok",
                "fetch: ok 1",
                "list-offsets: ok 2",
                "join: ok acl-read/0",
                "commit-group: ok",
                "commit-topic: ok",
                "create-topic: ok",
                "delete-topic: ok",
                "describe-configs: ok True",
                "alter-configs: ok",
                "describe-broker-configs: ok True",
                "list-groups: ok g-describe g-read g-secret",
                "describe-groups: ok Empty",
                "delete-groups: ok",
                "idempotent-producer: ok",
            ],
            "{allowed:#?}"
        );
    }
    if kcat_here {
        let produced = kcat(&addr, &["-P", "-t", "acl-read"], "allowed\n").await;
        assert!(produced.success && produced.stderr.is_empty(), "{produced:?}");
    }
    broker.shutdown().await.unwrap();
}
