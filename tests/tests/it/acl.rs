//! ACLs on the gRPC API, with `--auth required`: every call is denied
//! (PERMISSION_DENIED naming the operation and the resource, whether or not
//! the resource exists) until an entry allows it; lists leave out what the
//! caller may not describe; deny wins; prefixes; superusers; the denial
//! metric; entries survive a restart; `brooklet acl` through the broker and
//! on a stopped broker's data directory.

use std::path::Path;

use brooklet_broker::{Auth, BootstrapUser, Config, EmbeddedBroker};
use brooklet_client::{AclEntry, AclFilter, AclOperation, AclResourceType, Admin};
use brooklet_proto::v1 as pb;
use brooklet_tests::{Finished, brooklet_command, finish, with_credentials};
use pb::admin_service_client::AdminServiceClient;
use pb::consumer_service_client::ConsumerServiceClient;
use pb::group_service_client::GroupServiceClient;
use pb::producer_service_client::ProducerServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::metrics::get;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin's password";
const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "alice's password";
const BOB: &str = "bob";
const BOB_PASSWORD: &str = "bob's password";

/// A broker with `--auth required`, `--superusers admin` (the bootstrap
/// user) and metrics, storing its data in `dir`.
async fn secured(dir: &Path) -> EmbeddedBroker {
    let mut config = Config::new(dir);
    config.auth = Auth::Required;
    config.superusers = vec![ADMIN.into()];
    config.bootstrap_user = Some(BootstrapUser { name: ADMIN.into(), password: ADMIN_PASSWORD.into() });
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    EmbeddedBroker::start_with(config).await.expect("broker starts")
}

/// Raw gRPC clients of one broker, sending one user's credentials.
struct As {
    channel: Channel,
    user: &'static str,
    password: &'static str,
}

impl As {
    async fn new(broker: &EmbeddedBroker, user: &'static str, password: &'static str) -> As {
        let channel = Channel::from_shared(broker.endpoint()).unwrap().connect().await.unwrap();
        As { channel, user, password }
    }

    fn req<T>(&self, message: T) -> tonic::Request<T> {
        with_credentials(message, self.user, self.password)
    }

    fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    fn producer(&self) -> ProducerServiceClient<Channel> {
        ProducerServiceClient::new(self.channel.clone())
    }

    fn consumer(&self) -> ConsumerServiceClient<Channel> {
        ConsumerServiceClient::new(self.channel.clone())
    }

    fn groups(&self) -> GroupServiceClient<Channel> {
        GroupServiceClient::new(self.channel.clone())
    }
}

fn client(broker: &EmbeddedBroker, user: &str, password: &str) -> Admin {
    Admin::builder(broker.endpoint()).credentials(user, password).build().unwrap()
}

/// Asserts `result` is alice's PERMISSION_DENIED to do `what` (e.g.
/// "read topic `orders`").
#[track_caller]
fn denied<T: std::fmt::Debug>(result: Result<T, Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
    assert_eq!(status.message(), format!("User:alice is not allowed to {what}"));
}

#[track_caller]
fn allowed<T>(result: Result<T, Status>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(status) => panic!("{what}: {status:?}"),
    }
}

fn produce(topic: &str, value: &str) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.into(),
        records: vec![pb::ProduceRecord {
            partition: Some(0),
            value: value.to_owned().into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn commit(group: &str, topic: &str, offset: u64) -> pb::CommitOffsetsRequest {
    pb::CommitOffsetsRequest {
        group: group.into(),
        offsets: vec![pb::PartitionOffset { topic: topic.into(), partition: 0, offset, metadata: None }],
        ..Default::default()
    }
}

fn entry(resource_type: AclResourceType, name: &str, operation: AclOperation) -> AclEntry {
    AclEntry::allow(ALICE, resource_type, name, operation)
}

async fn cli(endpoint: &str, args: &[&str], user: Option<(&str, &str)>) -> Finished {
    let mut command = brooklet_command(&["--broker", endpoint]);
    command.args(args);
    if let Some((user, password)) = user {
        command.args(["--user", user]).env("BROOKLET_PASSWORD", password);
    }
    finish(command.spawn().unwrap()).await
}

#[tokio::test]
async fn every_grpc_call_is_denied_until_an_acl_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path()).await;
    let endpoint = broker.endpoint();
    let root = client(&broker, ADMIN, ADMIN_PASSWORD);
    root.create_user(ALICE, ALICE_PASSWORD).await.unwrap();
    let admin = As::new(&broker, ADMIN, ADMIN_PASSWORD).await;
    let alice = As::new(&broker, ALICE, ALICE_PASSWORD).await;
    let grant = |e: AclEntry| {
        let root = root.clone();
        async move { assert!(root.create_acl(&e).await.unwrap(), "{e} is new") }
    };
    // The superuser is allowed everything, with no entry.
    for (name, partitions) in [("orders", 1), ("secret", 1)] {
        let topic = pb::CreateTopicRequest { name: name.into(), partitions, config: Default::default() };
        admin.admin().create_topic(admin.req(topic)).await.unwrap();
    }
    admin.producer().produce(admin.req(produce("orders", "first"))).await.unwrap();
    admin.groups().commit_offsets(admin.req(commit("g", "orders", 1))).await.unwrap();
    admin.groups().commit_offsets(admin.req(commit("g", "secret", 0))).await.unwrap();
    admin.groups().commit_offsets(admin.req(commit("other", "orders", 0))).await.unwrap();

    // --- topics. Lists leave out what alice may not describe.
    let topics = allowed(alice.admin().list_topics(alice.req(pb::ListTopicsRequest {})).await, "list");
    assert!(topics.into_inner().topics.is_empty());
    let describe = |name: &str| alice.req(pb::DescribeTopicRequest { name: name.into() });
    denied(alice.admin().describe_topic(describe("orders")).await, "describe topic `orders`");
    // A topic that does not exist is denied the same way: no NOT_FOUND.
    denied(alice.admin().describe_topic(describe("missing")).await, "describe topic `missing`");
    let list_offsets = || alice.req(pb::ListOffsetsRequest { topic: "orders".into(), ..Default::default() });
    denied(alice.consumer().list_offsets(list_offsets()).await, "describe topic `orders`");
    grant(entry(AclResourceType::Topic, "orders", AclOperation::Describe)).await;
    let d = allowed(alice.admin().describe_topic(describe("orders")).await, "describe").into_inner();
    assert_eq!(d.partitions[0].high_watermark, 1);
    denied(alice.admin().describe_topic(describe("missing")).await, "describe topic `missing`");
    allowed(alice.consumer().list_offsets(list_offsets()).await, "list offsets");
    let topics = alice.admin().list_topics(alice.req(pb::ListTopicsRequest {})).await.unwrap().into_inner();
    assert_eq!(topics.topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["orders"]);

    // Reads: fetch and subscribe (checked as the stream opens).
    let fetch = || alice.req(pb::FetchRequest { topic: "orders".into(), ..Default::default() });
    let subscribe = || alice.req(pb::SubscribeRequest { topic: "orders".into(), ..Default::default() });
    denied(alice.consumer().fetch(fetch()).await, "read topic `orders`");
    denied(alice.consumer().subscribe(subscribe()).await.map(|_| ()), "read topic `orders`");
    // Through the CLI, online, as the superuser.
    let out = cli(
        &endpoint,
        &["acl", "add", "--principal", "User:alice", "--topic", "orders", "--operation", "read"],
        Some((ADMIN, ADMIN_PASSWORD)),
    )
    .await;
    assert!(
        out.success && out.stdout.contains("added allow User:alice read topic literal orders"),
        "{out:?}"
    );
    let fetched = allowed(alice.consumer().fetch(fetch()).await, "fetch").into_inner();
    assert_eq!(fetched.high_watermark, 1);
    let mut stream = allowed(alice.consumer().subscribe(subscribe()).await, "subscribe").into_inner();
    let first = tokio::time::timeout(brooklet_tests::DEADLINE, stream.message()).await.unwrap().unwrap();
    assert!(first.is_some(), "the stream serves the record");
    drop(stream);

    // Writes; an idempotent producer's id needs write on the cluster or on
    // some topic.
    denied(alice.producer().produce(alice.req(produce("orders", "x"))).await, "write topic `orders`");
    let init = || alice.req(pb::InitProducerIdRequest {});
    denied(alice.producer().init_producer_id(init()).await, "write the cluster");
    grant(entry(AclResourceType::Topic, "orders", AclOperation::Write)).await;
    allowed(alice.producer().produce(alice.req(produce("orders", "x"))).await, "produce");
    allowed(alice.producer().init_producer_id(init()).await, "init producer id");

    // Create, alter, delete.
    let create = || alice.req(pb::CreateTopicRequest { name: "alice.t".into(), ..Default::default() });
    denied(alice.admin().create_topic(create()).await, "create topic `alice.t`");
    grant(entry(AclResourceType::Topic, "alice.", AclOperation::Create).prefixed()).await;
    allowed(alice.admin().create_topic(create()).await, "create");
    let alter = || {
        alice.req(pb::AlterTopicConfigRequest {
            name: "alice.t".into(),
            set: [("retention.ms".to_owned(), "3600000".to_owned())].into(),
            remove: vec![],
        })
    };
    denied(alice.admin().alter_topic_config(alter()).await, "alter topic `alice.t`");
    grant(entry(AclResourceType::Topic, "alice.", AclOperation::Alter).prefixed()).await;
    allowed(alice.admin().alter_topic_config(alter()).await, "alter");
    let delete = || alice.req(pb::DeleteTopicRequest { name: "alice.t".into() });
    denied(alice.admin().delete_topic(delete()).await, "delete topic `alice.t`");
    grant(entry(AclResourceType::Topic, "alice.", AclOperation::Delete).prefixed()).await;
    allowed(alice.admin().delete_topic(delete()).await, "delete");

    // --- the cluster: status, users, ACLs.
    let status = || alice.req(pb::StatusRequest {});
    let create_user =
        || alice.req(pb::CreateUserRequest { name: "carol".into(), password: "carol's pw".into() });
    let set_password =
        || alice.req(pb::SetUserPasswordRequest { name: "carol".into(), password: "2nd pw".into() });
    let delete_user = || alice.req(pb::DeleteUserRequest { name: "carol".into() });
    let acl = || pb::Acl {
        principal: "bob".into(),
        resource_type: "topic".into(),
        name: "orders".into(),
        operation: "read".into(),
        ..Default::default()
    };
    denied(alice.admin().status(status()).await, "describe the cluster");
    denied(alice.admin().list_users(alice.req(pb::ListUsersRequest {})).await, "describe the cluster");
    denied(alice.admin().list_acls(alice.req(pb::ListAclsRequest::default())).await, "describe the cluster");
    denied(alice.admin().create_user(create_user()).await, "alter the cluster");
    denied(alice.admin().set_user_password(set_password()).await, "alter the cluster");
    denied(alice.admin().delete_user(delete_user()).await, "alter the cluster");
    let create_acl = || alice.req(pb::CreateAclRequest { acl: Some(acl()) });
    let delete_acl = || alice.req(pb::DeleteAclRequest { acl: Some(acl()) });
    denied(alice.admin().create_acl(create_acl()).await, "alter the cluster");
    denied(alice.admin().delete_acl(delete_acl()).await, "alter the cluster");
    grant(entry(AclResourceType::Cluster, "", AclOperation::Describe)).await;
    let s = allowed(alice.admin().status(status()).await, "status").into_inner();
    // Status lists only what alice may describe.
    assert_eq!(s.topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["orders"]);
    assert!(s.groups.is_empty(), "{:?}", s.groups);
    allowed(alice.admin().list_users(alice.req(pb::ListUsersRequest {})).await, "list users");
    grant(entry(AclResourceType::Cluster, "", AclOperation::Alter)).await;
    allowed(alice.admin().create_user(create_user()).await, "create user");
    allowed(alice.admin().set_user_password(set_password()).await, "set password");
    allowed(alice.admin().delete_user(delete_user()).await, "delete user");
    assert!(allowed(alice.admin().create_acl(create_acl()).await, "create acl").into_inner().created);
    assert!(!alice.admin().create_acl(create_acl()).await.unwrap().into_inner().created, "idempotent");
    let listed = alice
        .admin()
        .list_acls(alice.req(pb::ListAclsRequest { principal: "User:bob".into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.acls, [pb::Acl { pattern: "literal".into(), permission: "allow".into(), ..acl() }]);
    allowed(alice.admin().delete_acl(delete_acl()).await, "delete acl");
    let gone = alice.admin().delete_acl(delete_acl()).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    // Bad fields are named.
    let bad = pb::Acl { resource_type: "cluster".into(), name: "orders".into(), ..acl() };
    let err = alice.admin().create_acl(alice.req(pb::CreateAclRequest { acl: Some(bad) })).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("acl.name"), "{err:?}");
    let bad = pb::Acl { operation: "steal".into(), ..acl() };
    let err = alice.admin().create_acl(alice.req(pb::CreateAclRequest { acl: Some(bad) })).await.unwrap_err();
    assert!(err.message().contains("acl.operation") && err.message().contains("steal"), "{err:?}");

    // --- groups. Lists leave out what alice may not describe.
    let groups = alice.groups().list_groups(alice.req(pb::ListGroupsRequest {})).await.unwrap().into_inner();
    assert!(groups.groups.is_empty(), "{:?}", groups.groups);
    let fetch_offsets = || alice.req(pb::FetchOffsetsRequest { group: "g".into(), topic: String::new() });
    let describe_group = || alice.req(pb::DescribeGroupRequest { group: "g".into() });
    denied(alice.groups().fetch_offsets(fetch_offsets()).await, "describe group `g`");
    denied(alice.groups().describe_group(describe_group()).await, "describe group `g`");
    denied(
        alice.groups().describe_group(alice.req(pb::DescribeGroupRequest { group: "nope".into() })).await,
        "describe group `nope`",
    );
    denied(alice.groups().commit_offsets(alice.req(commit("g", "orders", 1))).await, "read group `g`");
    let reset = || {
        alice.req(pb::ResetOffsetsRequest {
            group: "g".into(),
            topic: "orders".into(),
            to: Some(pb::reset_offsets_request::To::Earliest(true)),
        })
    };
    denied(alice.groups().reset_offsets(reset()).await, "read group `g`");
    let heartbeat = |topic: &str| {
        alice.req(pb::HeartbeatRequest {
            group: "live".into(),
            topics: vec![topic.into()],
            ..Default::default()
        })
    };
    denied(alice.groups().heartbeat(heartbeat("orders")).await, "read group `live`");
    grant(entry(AclResourceType::Group, "g", AclOperation::Read)).await;
    grant(entry(AclResourceType::Group, "live", AclOperation::Read)).await;
    // Offsets of topics alice may not describe are left out.
    let offsets = allowed(alice.groups().fetch_offsets(fetch_offsets()).await, "fetch offsets").into_inner();
    assert_eq!(offsets.offsets.iter().map(|o| o.topic.as_str()).collect::<Vec<_>>(), ["orders"]);
    allowed(alice.groups().describe_group(describe_group()).await, "describe group");
    allowed(alice.groups().commit_offsets(alice.req(commit("g", "orders", 1))).await, "commit");
    // A commit naming a topic alice may not read is refused whole.
    denied(alice.groups().commit_offsets(alice.req(commit("g", "secret", 0))).await, "read topic `secret`");
    allowed(alice.groups().reset_offsets(reset()).await, "reset");
    let groups = alice.groups().list_groups(alice.req(pb::ListGroupsRequest {})).await.unwrap().into_inner();
    assert_eq!(groups.groups.iter().map(|g| g.group.as_str()).collect::<Vec<_>>(), ["g"]);
    // A member needs read on every topic it subscribes to.
    denied(alice.groups().heartbeat(heartbeat("secret")).await, "read topic `secret`");
    let joined = allowed(alice.groups().heartbeat(heartbeat("orders")).await, "join").into_inner();
    let leave = pb::HeartbeatRequest {
        group: "live".into(),
        member_id: joined.member_id,
        member_epoch: -1,
        ..Default::default()
    };
    allowed(alice.groups().heartbeat(alice.req(leave)).await, "leave");
    let delete_group = || alice.req(pb::DeleteGroupRequest { group: "g".into() });
    denied(alice.groups().delete_group(delete_group()).await, "delete group `g`");
    grant(entry(AclResourceType::Group, "g", AclOperation::Delete)).await;
    allowed(alice.groups().delete_group(delete_group()).await, "delete group");

    // Without credentials: UNAUTHENTICATED, before any ACL is looked at.
    let err = AdminServiceClient::new(alice.channel.clone())
        .describe_topic(pb::DescribeTopicRequest { name: "orders".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // Every denial was counted.
    let (_, _, body) = get(broker.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        body.contains(
            r#"brooklet_authorization_denials_total{protocol="grpc",operation="read",resource_type="topic"}"#
        ),
        "{body}"
    );
    assert!(
        body.contains(
            r#"brooklet_authorization_denials_total{protocol="grpc",operation="alter",resource_type="cluster"}"#
        ),
        "{body}"
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn deny_wins_prefixes_match_and_entries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path()).await;
    let root = client(&broker, ADMIN, ADMIN_PASSWORD);
    root.create_user(ALICE, ALICE_PASSWORD).await.unwrap();
    root.create_user(BOB, BOB_PASSWORD).await.unwrap();
    for topic in ["orders.eu", "orders.secret", "payments"] {
        root.create_topic(topic, brooklet_client::NewTopic::new(1)).await.unwrap();
    }
    root.create_acl(&entry(AclResourceType::Topic, "orders.", AclOperation::All).prefixed()).await.unwrap();
    root.create_acl(&entry(AclResourceType::Topic, "orders.secret", AclOperation::Read).deny())
        .await
        .unwrap();
    root.create_acl(&AclEntry::allow("*", AclResourceType::Topic, "payments", AclOperation::Describe))
        .await
        .unwrap();

    let check = |broker: &EmbeddedBroker| {
        let endpoint = broker.endpoint();
        async move {
            let channel = Channel::from_shared(endpoint).unwrap().connect().await.unwrap();
            let alice = As { channel: channel.clone(), user: ALICE, password: ALICE_PASSWORD };
            let bob = As { channel, user: BOB, password: BOB_PASSWORD };
            let fetch = |who: &As, topic: &str| {
                who.req(pb::FetchRequest { topic: topic.into(), ..Default::default() })
            };
            allowed(alice.consumer().fetch(fetch(&alice, "orders.eu")).await, "the prefix allows");
            denied(
                alice.consumer().fetch(fetch(&alice, "orders.secret")).await,
                "read topic `orders.secret`",
            );
            // The deny of read leaves alice's other operations on it alone.
            allowed(alice.producer().produce(alice.req(produce("orders.secret", "v"))).await, "write");
            let topics = |who: &As| who.req(pb::ListTopicsRequest {});
            let names = |r: pb::ListTopicsResponse| r.topics.into_iter().map(|t| t.name).collect::<Vec<_>>();
            let listed = names(alice.admin().list_topics(topics(&alice)).await.unwrap().into_inner());
            assert_eq!(listed, ["orders.eu", "orders.secret", "payments"]);
            // `*` is every user; bob has nothing else.
            let listed = names(bob.admin().list_topics(topics(&bob)).await.unwrap().into_inner());
            assert_eq!(listed, ["payments"]);
            let err = bob.consumer().fetch(fetch(&bob, "orders.eu")).await.unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied);
            assert_eq!(err.message(), "User:bob is not allowed to read topic `orders.eu`");
        }
    };
    check(&broker).await;
    broker.shutdown().await.unwrap();
    let broker = secured(dir.path()).await;
    check(&broker).await;
    let listed = client(&broker, ADMIN, ADMIN_PASSWORD).list_acls(&AclFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_cli_manages_acls_through_the_broker_and_on_a_stopped_brokers_data() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("brooklet-data");
    let data = data_dir.to_str().unwrap();
    // Offline: no broker runs on the directory, which does not exist yet:
    // `list` refuses it, `add` creates it (not before its entries are valid).
    let nowhere = "http://127.0.0.1:1";
    let out = cli(nowhere, &["acl", "list", "--data-dir", data], None).await;
    assert!(!out.success && out.stderr.contains("does not exist"), "{out:?}");
    let invalid = ["acl", "add", "--principal", "a", "--cluster", "--prefixed", "--operation", "read"];
    let out = cli(nowhere, &[&invalid[..], &["--data-dir", data]].concat(), None).await;
    assert!(out.stderr.contains("--prefixed goes with --topic or --group"), "{out:?}");
    assert!(!out.success, "{out:?}");
    assert!(!data_dir.exists(), "an invalid entry created the directory");
    let add = ["acl", "add", "--principal", "alice", "--topic", "orders.", "--prefixed"];
    let out =
        cli(nowhere, &[&add[..], &["--operation", "read,write", "--data-dir", data]].concat(), None).await;
    assert!(out.success, "{out:?}");
    assert!(out.stdout.contains("added allow User:alice read topic prefixed orders."), "{out:?}");
    assert!(out.stdout.contains("added allow User:alice write topic prefixed orders."), "{out:?}");
    let out = cli(
        nowhere,
        &[
            "acl",
            "add",
            "--principal",
            "*",
            "--cluster",
            "--operation",
            "describe",
            "--deny",
            "--data-dir",
            data,
        ],
        None,
    )
    .await;
    assert!(out.success && out.stdout.contains("added deny User:* describe cluster"), "{out:?}");
    let out = cli(nowhere, &["acl", "list", "--data-dir", data], None).await;
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "deny User:* describe cluster",
            "allow User:alice read topic prefixed orders.",
            "allow User:alice write topic prefixed orders.",
        ],
        "{out:?}"
    );
    let out = cli(nowhere, &["acl", "list", "--cluster", "--data-dir", data], None).await;
    assert_eq!(out.stdout.trim(), "deny User:* describe cluster", "{out:?}");
    // Exactly one resource; known operations.
    let out =
        cli(nowhere, &["acl", "add", "--principal", "a", "--operation", "read", "--data-dir", data], None)
            .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = cli(
        nowhere,
        &["acl", "add", "--principal", "a", "--topic", "t", "--group", "g", "--operation", "read"],
        None,
    )
    .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    let out =
        cli(nowhere, &["acl", "add", "--principal", "a", "--topic", "t", "--operation", "steal"], None).await;
    assert!(!out.success && out.stderr.contains("steal"), "{out:?}");

    // Online, on the same data.
    let broker = secured(&data_dir).await;
    let endpoint = broker.endpoint();
    let root = Some((ADMIN, ADMIN_PASSWORD));
    let out = cli(&endpoint, &["acl", "list", "--principal", "User:alice"], root).await;
    assert_eq!(out.stdout.lines().count(), 2, "{out:?}");
    let out =
        cli(&endpoint, &["acl", "add", "--principal", "bob", "--group", "g", "--operation", "read"], root)
            .await;
    assert!(out.success && out.stdout.contains("added allow User:bob read group literal g"), "{out:?}");
    let out =
        cli(&endpoint, &["acl", "add", "--principal", "bob", "--group", "g", "--operation", "read"], root)
            .await;
    assert!(out.success && out.stdout.contains("exists allow User:bob read group literal g"), "{out:?}");
    let out = cli(&endpoint, &["acl", "list", "--group", "g"], root).await;
    assert_eq!(out.stdout.trim(), "allow User:bob read group literal g", "{out:?}");
    let remove = ["acl", "remove", "--principal", "alice", "--topic", "orders.", "--prefixed"];
    let out =
        cli(&endpoint, &[&remove[..], &["--operation", "read", "--operation", "write"]].concat(), root).await;
    assert!(out.success && out.stdout.contains("2 entries removed"), "{out:?}");
    let out = cli(&endpoint, &[&remove[..], &["--operation", "read"]].concat(), root).await;
    assert_eq!(out.code, Some(1), "nothing matched: {out:?}");
    assert!(out.stderr.contains("no ACL matched"), "{out:?}");
    // Denied to a user without alter on the cluster; no credentials at all.
    client(&broker, ADMIN, ADMIN_PASSWORD).create_user(BOB, BOB_PASSWORD).await.unwrap();
    let out = cli(&endpoint, &["acl", "list"], Some((BOB, BOB_PASSWORD))).await;
    assert!(!out.success && out.stderr.contains("PERMISSION_DENIED"), "{out:?}");
    assert!(out.stderr.contains("User:bob is not allowed to describe the cluster"), "{out:?}");
    let out = cli(&endpoint, &["acl", "list"], None).await;
    assert!(!out.success && out.stderr.contains("UNAUTHENTICATED"), "{out:?}");
    broker.shutdown().await.unwrap();
}
