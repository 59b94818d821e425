//! Kafka's topic administration and compressed batches with real Kafka
//! clients, kafka-python and librdkafka (through confluent-kafka): their
//! admin clients create, describe, alter and delete topics, delete a
//! group's offsets and list groups by type; their producers compress with
//! every codec.

use std::path::PathBuf;
use std::process::Stdio;

use brooklet_broker::{Config, EmbeddedBroker};
use brooklet_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;
use pb::consumer_service_client::ConsumerServiceClient;
use pb::group_service_client::GroupServiceClient;

use brooklet_tests::{KafkaClient, kafka_client_available};

/// A member of a broker-assigned (gRPC) group, which ListGroups v5 calls
/// a consumer group. It heartbeats once: the broker's default session
/// (set long by the tests) outlasts the client script.
async fn grpc_member(broker: &EmbeddedBroker, group: &str) {
    let mut groups = GroupServiceClient::connect(broker.endpoint()).await.unwrap();
    let heartbeat = pb::HeartbeatRequest {
        group: group.into(),
        member_id: String::new(),
        member_epoch: 0,
        topics: vec!["anything".into()],
        owned: vec![],
        client_id: "test".into(),
        session_timeout_ms: 0,
    };
    groups.heartbeat(heartbeat).await.unwrap();
}

#[tokio::test]
async fn kafka_python_administers_topics_and_produces_compressed_batches() {
    if !kafka_client_available(KafkaClient::KafkaPython).await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.kafka_auto_create_topics = false;
    config.kafka_default_partitions = 2;
    config.core.groups.default_session_timeout = std::time::Duration::from_secs(120);
    let broker = EmbeddedBroker::start_with(config).await.expect("broker starts");
    let addr = broker.kafka_addr().expect("a Kafka listener");
    grpc_member(&broker, "grpc-readers").await;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka/admin.py");
    let child = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts");
    let out = brooklet_tests::finish(child).await;
    assert!(
        out.success,
        "kafka-python failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );

    let lines: Vec<&str> = out.stdout.lines().collect();
    let codecs: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("codec ")).collect();
    let others: Vec<&str> = lines.iter().copied().filter(|l| !l.starts_with("codec ")).collect();
    assert_eq!(
        others,
        [
            "created orders 0 3 1 60000",
            "created plain 0 2 1 604800000",
            "validate-only leaves ['orders', 'plain']",
            "again: TopicAlreadyExistsError",
            "replicated: InvalidReplicationFactorError",
            "unknown config: InvalidConfigurationError",
            "config cleanup.policy compact,delete DYNAMIC_TOPIC_CONFIG",
            "config retention.bytes -1 DEFAULT_CONFIG",
            "config retention.ms 60000 DYNAMIC_TOPIC_CONFIG",
            "modified ['cleanup.policy', 'retention.ms']",
            "broker num.partitions 2",
            // AlterConfigs: kafka-python sends the other set configs along.
            "alter legacy OK [('retention.bytes', '4096'), ('retention.ms', '120000')]",
            "alter incremental OK [('cleanup.policy', 'delete,compact'), ('retention.ms', '120000')]",
            "alter validate-only OK [('cleanup.policy', 'delete,compact'), ('retention.ms', '120000')]",
            "alter bad value [Error 40] InvalidConfigurationError \
             [('cleanup.policy', 'delete,compact'), ('retention.ms', '120000')]",
            "reset OK [('retention.ms', '120000')]",
            "alter OK [('cleanup.policy', 'delete,compact'), ('retention.ms', '90000')]",
            "commit ['NoError', 'NoError', 'NoError']",
            "offsets deleted [(0, 'NoError'), (9, 'UnknownTopicOrPartitionError')]",
            "offsets left [1, 2]",
            "unknown group: GroupIdNotFoundError",
            "subscribed [(1, 'GroupSubscribedToTopicError')]",
            // The member left: the group keeps its protocol type.
            "groups classic [('tools', 'consumer', 'classic')]",
            "groups consumer [('grpc-readers', 'consumer', 'consumer')]",
            "deleted [('orders', 0), ('plain', 0)]",
            "delete again: UnknownTopicOrPartitionError",
            "left ['tuned']",
        ],
        "{}",
        out.stdout
    );
    // The probe of KafkaClient::KafkaPython requires the codecs' modules.
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let ok = format!("codec {codec} ok 30");
        assert!(codecs.contains(&ok.as_str()), "{ok} in {codecs:?}");
    }
    assert_eq!(codecs.len(), 4, "{codecs:?}");

    // The configs kafka-python altered, as the gRPC API describes them.
    let mut admin = AdminServiceClient::connect(broker.endpoint()).await.unwrap();
    let tuned =
        admin.describe_topic(pb::DescribeTopicRequest { name: "tuned".into() }).await.unwrap().into_inner();
    let config: Vec<(&str, &str)> =
        tuned.topic.as_ref().unwrap().config.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut config = config;
    config.sort();
    assert_eq!(config, [("cleanup.policy", "delete,compact"), ("retention.ms", "90000")]);

    // Over gRPC, the records that kafka-python produced compressed carry
    // their headers as sent: the name `a` twice, in order.
    let mut consumer = ConsumerServiceClient::connect(broker.endpoint()).await.unwrap();
    let request = pb::FetchRequest {
        topic: "compressed-gzip".into(),
        partition: 0,
        offset: 0,
        max_bytes: 0,
        max_wait_ms: 0,
    };
    let fetched = consumer.fetch(request).await.unwrap().into_inner();
    let records: Vec<&pb::Record> = fetched.batches.iter().flat_map(|b| &b.records).collect();
    assert_eq!(records.len(), 30);
    for r in records {
        let headers: Vec<(&str, &[u8])> = r.headers.iter().map(|h| (h.name.as_str(), &h.value[..])).collect();
        assert_eq!(headers, [("a", &b"1"[..]), ("b", b"x"), ("a", b"2")]);
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn librdkafka_administers_topics_and_produces_compressed_batches() {
    if !kafka_client_available(KafkaClient::ConfluentKafka).await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.kafka_auto_create_topics = false;
    config.core.groups.default_session_timeout = std::time::Duration::from_secs(120);
    let broker = EmbeddedBroker::start_with(config).await.expect("broker starts");
    let addr = broker.kafka_addr().expect("a Kafka listener");
    grpc_member(&broker, "grpc-readers").await;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka/admin_librdkafka.py");
    let child = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts");
    let out = brooklet_tests::finish(child).await;
    assert!(
        out.success,
        "librdkafka failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "create events ok",
            "create odd INVALID_CONFIG",
            "create wide INVALID_REPLICATION_FACTOR",
            "validate-only dry ok",
            "topics ['events']",
            "describe events [('retention.ms', '1234', 1), ('retention.bytes', '-1', 5)]",
            "describe 0 [('num.partitions', '1', 4)]",
            "incremental ok [('cleanup.policy', 'delete,compact'), ('retention.ms', '5000')]",
            // All or nothing: the valid change of a refused resource is not made.
            "incremental unknown key INVALID_CONFIG [('cleanup.policy', 'delete,compact'), ('retention.ms', '5000')]",
            "incremental validate-only ok [('cleanup.policy', 'delete,compact'), ('retention.ms', '5000')]",
            "incremental missing topic UNKNOWN_TOPIC_OR_PART",
            "incremental broker INVALID_REQUEST",
            // AlterConfigs replaces the whole config: cleanup.policy is back to its default.
            "alter ok [('retention.ms', '7000')]",
            "consumed 40",
            // librdkafka calls a group without a protocol type simple.
            "groups [('grpc-readers', 'CONSUMER', False), ('readers', 'CLASSIC', True)]",
            "groups classic [('readers', 'CLASSIC', True)]",
            "groups consumer [('grpc-readers', 'CONSUMER', False)]",
            "delete events ok",
            "delete missing UNKNOWN_TOPIC_OR_PART",
            "topics []",
        ],
        "{}",
        out.stderr
    );
    broker.shutdown().await.unwrap();
}
