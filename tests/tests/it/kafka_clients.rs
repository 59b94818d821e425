//! Kafka's wire protocol with the clients applications use: confluent-kafka
//! (librdkafka), kcat and kafkajs produce and consume unchanged, keyed
//! records land on the partition Kafka's default partitioner picks, and
//! records cross between Kafka clients and the gRPC client intact.
//!
//! The clients run as child processes: `tests/kafka/confluent_client.py`
//! and `tests/kafka/kafkajs_client.js` (records in and out as JSON lines),
//! kcat directly. Without a client its tests skip loudly; CI requires them
//! all (`brooklet_tests::kafka_client_available`). Consumers read from
//! offset 0: confluent-kafka's assigned partitions, kafkajs's subscribed in
//! a group of its own that commits nothing and is deleted once read (groups
//! themselves are tested in `kafka_client_groups`).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use brooklet_broker::{Config, EmbeddedBroker};
use brooklet_client::{Admin, Consumer, NewTopic, Producer, ProducerRecord};
use brooklet_proto::partitioner::partition_for_key;
use brooklet_tests::{DEADLINE, KafkaClient, finish, kafka_client_available, kafka_scripts};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// 2020-01-01 in ms: a timestamp a client or the broker stamped is later.
const RECENT_MS: i64 = 1_577_836_800_000;

/// A broker with a Kafka listener on 127.0.0.1, in a temporary directory.
struct KafkaBroker {
    broker: EmbeddedBroker,
    /// The Kafka listener, `127.0.0.1:PORT`.
    addr: String,
    _dir: tempfile::TempDir,
}

impl KafkaBroker {
    async fn start() -> KafkaBroker {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
        let broker = EmbeddedBroker::start_with(config).await.expect("broker starts");
        let addr = broker.kafka_addr().expect("a Kafka listener").to_string();
        KafkaBroker { broker, addr, _dir: dir }
    }

    /// A topic of `partitions` partitions, created over gRPC.
    async fn create_topic(&self, name: &str, partitions: u32) {
        let admin = Admin::connect(self.broker.endpoint()).unwrap();
        admin.create_topic(name, NewTopic::new(partitions)).await.expect("topic created");
    }

    /// The high watermark of each partition of `topic`, over gRPC.
    async fn high_watermarks(&self, topic: &str) -> Vec<u64> {
        let admin = Admin::connect(self.broker.endpoint()).unwrap();
        let topic = admin.describe_topic(topic).await.expect("topic described");
        topic.partitions.iter().map(|p| p.high_watermark).collect()
    }

    async fn shutdown(self) {
        self.broker.shutdown().await.unwrap();
    }
}

/// A record as a test sends it; keys, values and header values are text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    /// Sent to this partition; `None` leaves it to the client's partitioner.
    partition: Option<u32>,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
    /// The producer's timestamp; `None` leaves it to the client or broker.
    timestamp: Option<i64>,
}

/// A record as a client read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    partition: u32,
    offset: u64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
    timestamp: i64,
}

/// `n` records for partition `partition` (or the partitioner's choice):
/// keys and values, some null; headers, some with an empty value; half
/// with a producer timestamp.
fn records(n: usize, tag: &str, partition: Option<u32>) -> Vec<Sent> {
    (0..n)
        .map(|i| {
            let mut headers =
                vec![("seq".to_owned(), Some(i.to_string())), ("client".into(), Some(tag.into()))];
            if i % 4 == 0 {
                headers.push(("empty".into(), Some(String::new())));
            }
            Sent {
                partition,
                key: (i % 7 != 3).then(|| format!("{tag}-key-{i}")),
                value: (i % 10 != 9).then(|| format!("{tag}-value-{i}-{}", "x".repeat(i % 50))),
                headers,
                timestamp: (i % 2 == 0).then(|| 1_700_000_000_000 + i as i64),
            }
        })
        .collect()
}

/// The records as JSON lines, the drivers' input.
fn json_lines(records: &[Sent]) -> String {
    records
        .iter()
        .map(|r| {
            let mut line = json!({ "key": r.key, "value": r.value, "headers": r.headers });
            if let Some(p) = r.partition {
                line["partition"] = json!(p);
            }
            if let Some(t) = r.timestamp {
                line["timestamp"] = json!(t);
            }
            format!("{line}\n")
        })
        .collect()
}

/// Runs `program` with `args` in `tests/kafka`, `input` on its stdin; its
/// stdout's lines, once it exited 0.
async fn run(program: &str, args: &[&str], input: &str) -> Vec<String> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(kafka_scripts())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} starts: {e}"));
    let mut stdin = child.stdin.take().expect("stdin piped");
    tokio::time::timeout(DEADLINE, stdin.write_all(input.as_bytes()))
        .await
        .expect("input written in time")
        .expect("input written");
    drop(stdin);
    let out = finish(child).await;
    assert!(
        out.success,
        "{program} {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );
    out.stdout.lines().map(str::to_owned).collect()
}

/// Runs a driver script: `python3 confluent_client.py …` or `node
/// kafkajs_client.js …`; its output lines as JSON.
async fn driver(client: KafkaClient, args: &[&str], input: &str) -> Vec<Value> {
    let (program, script) = match client {
        KafkaClient::ConfluentKafka => ("python3", "confluent_client.py"),
        KafkaClient::Kafkajs => ("node", "kafkajs_client.js"),
        other => panic!("{other:?} has no driver script"),
    };
    let args: Vec<&str> = std::iter::once(script).chain(args.iter().copied()).collect();
    let lines = run(program, &args, input).await;
    lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// A record printed by a driver script.
fn seen_from_driver(v: &Value) -> Seen {
    let headers = v["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| (h[0].as_str().expect("a header name").to_owned(), text(&h[1])))
        .collect();
    Seen {
        partition: v["partition"].as_u64().expect("partition") as u32,
        offset: v["offset"].as_u64().expect("offset"),
        key: text(&v["key"]),
        value: text(&v["value"]),
        headers,
        timestamp: v["timestamp"].as_i64().expect("timestamp"),
    }
}

/// A record printed by `kcat -J`: headers as a flat name, value list.
fn seen_from_kcat(v: &Value) -> Seen {
    let flat = v["headers"].as_array().cloned().unwrap_or_default();
    let headers =
        flat.chunks(2).map(|h| (h[0].as_str().expect("a header name").to_owned(), text(&h[1]))).collect();
    Seen {
        partition: v["partition"].as_u64().expect("partition") as u32,
        offset: v["offset"].as_u64().expect("offset"),
        key: text(&v["key"]),
        value: text(&v["payload"]),
        headers,
        timestamp: v["ts"].as_i64().expect("ts"),
    }
}

/// Reads every record of `topic` with confluent-kafka, partition by
/// partition; `counts[p]` records of partition `p`.
async fn read_with_confluent(addr: &str, topic: &str, counts: &[u64]) -> Vec<Seen> {
    let mut seen = Vec::new();
    for (partition, count) in counts.iter().enumerate() {
        let (partition, count) = (partition.to_string(), count.to_string());
        let lines =
            driver(KafkaClient::ConfluentKafka, &["consume", addr, topic, &partition, &count], "").await;
        let (bounds, records) = lines.split_last().expect("the bounds line");
        assert_eq!(
            bounds,
            &json!({ "low": 0, "high": count.parse::<u64>().unwrap() }),
            "{topic}/{partition}"
        );
        seen.extend(records.iter().map(seen_from_driver));
    }
    seen
}

/// Reads every partition of `topic` from its start to its end with kcat.
async fn read_with_kcat(addr: &str, topic: &str) -> Vec<Seen> {
    let args = ["-C", "-b", addr, "-t", topic, "-o", "beginning", "-e", "-J", "-q"];
    let lines = run("kcat", &args, "").await;
    let mut seen: Vec<Seen> = lines
        .iter()
        .map(|l| seen_from_kcat(&serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))))
        .collect();
    seen.sort_by_key(|s| (s.partition, s.offset));
    seen
}

/// Reads `count` records of `topic`, every partition, with the gRPC client;
/// in partition, then offset order.
async fn read_with_grpc(endpoint: &str, topic: &str, count: usize) -> Vec<Seen> {
    let mut consumer = Consumer::builder(endpoint).max_wait(Duration::from_millis(100)).build().unwrap();
    consumer.assign_all(topic).await.unwrap();
    let mut read = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while read.len() < count {
            read.extend(consumer.poll().await.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {count} records of {topic} read in time", read.len()));
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).expect("UTF-8");
    let mut seen: Vec<Seen> = read
        .iter()
        .map(|r| Seen {
            partition: r.partition,
            offset: r.offset,
            key: r.key.as_deref().map(utf8),
            value: Some(utf8(&r.value)),
            headers: r.headers.iter().map(|h| (h.name.clone(), Some(utf8(&h.value)))).collect(),
            timestamp: r.timestamp_ms,
        })
        .collect();
    seen.sort_by_key(|s| (s.partition, s.offset));
    seen
}

/// Checks that `seen` holds `sent`, in order and intact, at offsets 0, 1, …
/// of the partition each was sent to (`partition`, when the records do not
/// say). A record sent without a timestamp carries one its client or the
/// broker stamped.
fn assert_intact(sent: &[Sent], seen: &[Seen], partition: u32) {
    assert_eq!(seen.len(), sent.len(), "record count");
    let mut next_offset: BTreeMap<u32, u64> = BTreeMap::new();
    for (i, (s, r)) in sent.iter().zip(seen).enumerate() {
        let p = s.partition.unwrap_or(partition);
        let offset = next_offset.entry(p).or_default();
        assert_eq!((r.partition, r.offset), (p, *offset), "record {i}'s place: {r:?}");
        *offset += 1;
        assert_eq!((&r.key, &r.value, &r.headers), (&s.key, &s.value, &s.headers), "record {i}");
        match s.timestamp {
            Some(t) => assert_eq!(r.timestamp, t, "record {i}'s timestamp"),
            None => assert!(r.timestamp > RECENT_MS, "record {i} is stamped: {}", r.timestamp),
        }
    }
}

/// The records as the gRPC API reads them: it has no null value, so a
/// null value (its tombstone) reads as an empty one.
fn as_grpc_reads(sent: &[Sent]) -> Vec<Sent> {
    sent.iter().cloned().map(|s| Sent { value: Some(s.value.unwrap_or_default()), ..s }).collect()
}

#[tokio::test]
async fn confluent_kafka_idempotent_producer_round_trips_records_in_order() {
    if !kafka_client_available(KafkaClient::ConfluentKafka).await {
        return;
    }
    let broker = KafkaBroker::start().await;
    // The topic is created by the producer's Metadata request: one partition.
    let sent = records(150, "confluent", None);
    let args = ["produce", &broker.addr, "orders", "--idempotent"];
    let delivered = driver(KafkaClient::ConfluentKafka, &args, &json_lines(&sent)).await;
    let places: Vec<(u64, u64)> =
        delivered.iter().map(|d| (d["partition"].as_u64().unwrap(), d["offset"].as_u64().unwrap())).collect();
    assert_eq!(places, (0..150).map(|o| (0, o)).collect::<Vec<_>>(), "acknowledged in send order");

    let seen = read_with_confluent(&broker.addr, "orders", &[150]).await;
    assert_intact(&sent, &seen, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn kafkajs_idempotent_producer_round_trips_records_in_order() {
    if !kafka_client_available(KafkaClient::Kafkajs).await {
        return;
    }
    let broker = KafkaBroker::start().await;
    let sent = records(150, "kafkajs", None);
    let args = ["produce", &broker.addr, "orders", "--idempotent"];
    let written = driver(KafkaClient::Kafkajs, &args, &json_lines(&sent)).await;
    assert_eq!(written, [json!({ "partition": 0, "base_offset": 0 })]);

    let read = driver(KafkaClient::Kafkajs, &["consume", &broker.addr, "orders", "0", "150"], "").await;
    let seen: Vec<Seen> = read.iter().map(seen_from_driver).collect();
    assert_intact(&sent, &seen, 0);
    assert_eq!(broker.high_watermarks("orders").await, [150], "nothing more was written");
    let admin = Admin::connect(broker.broker.endpoint()).unwrap();
    assert_eq!(admin.list_groups().await.unwrap(), [], "the reader's group was deleted");
    broker.shutdown().await;
}

/// kcat's records in its producer's input format (`-K '\t' -Z`: key, tab,
/// value; an empty key or value is null) and as it sends them, each with
/// the headers of its `-H` options.
fn kcat_records(n: usize, partition: Option<u32>) -> (String, Vec<Sent>) {
    let sent: Vec<Sent> = records(n, "kcat", partition)
        .into_iter()
        .map(|r| Sent {
            headers: vec![("client".into(), Some("kcat".into())), ("run".into(), Some("1".into()))],
            timestamp: None,
            ..r
        })
        .collect();
    let input = sent
        .iter()
        .map(|r| format!("{}\t{}\n", r.key.as_deref().unwrap_or(""), r.value.as_deref().unwrap_or("")))
        .collect();
    (input, sent)
}

#[tokio::test]
async fn kcat_produces_and_consumes_records_in_order() {
    if !kafka_client_available(KafkaClient::Kcat).await {
        return;
    }
    let broker = KafkaBroker::start().await;
    let (input, sent) = kcat_records(150, Some(0));
    let produce = [
        "-P",
        "-b",
        &broker.addr,
        "-t",
        "orders",
        "-p",
        "0",
        "-K",
        "\t",
        "-Z",
        "-H",
        "client=kcat",
        "-H",
        "run=1",
        "-X",
        "enable.idempotence=true",
    ];
    run("kcat", &produce, &input).await;

    let seen = read_with_kcat(&broker.addr, "orders").await;
    assert_intact(&sent, &seen, 0);
    // The same records over gRPC.
    let seen = read_with_grpc(&broker.broker.endpoint(), "orders", 150).await;
    assert_intact(&as_grpc_reads(&sent), &seen, 0);
    broker.shutdown().await;
}

/// 300 keys of 1 to 8 bytes and more, each once.
fn keyed_records() -> Vec<Sent> {
    (0..300)
        .map(|i| Sent {
            partition: None,
            key: Some(format!("{}{i}", "k".repeat(i % 6))),
            value: Some(format!("value-{i}")),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect()
}

/// Checks, over gRPC, that each of `sent` is on the partition Brooklet's
/// partitioner (Kafka's murmur2) picks for its key among `partitions`, and
/// that nothing else was written.
async fn assert_on_key_partitions(broker: &KafkaBroker, topic: &str, sent: &[Sent], partitions: u32) {
    let key_partition = |key: &str| partition_for_key(key.as_bytes(), partitions);
    let mut expected = vec![0u64; partitions as usize];
    for s in sent {
        expected[key_partition(s.key.as_deref().unwrap()) as usize] += 1;
    }
    assert!(expected.iter().all(|&n| n > 0), "the keys spread over every partition: {expected:?}");
    assert_eq!(broker.high_watermarks(topic).await, expected, "records per partition");
    let seen = read_with_grpc(&broker.broker.endpoint(), topic, sent.len()).await;
    for r in &seen {
        let key = r.key.as_deref().expect("a key");
        assert_eq!(r.partition, key_partition(key), "key {key}");
    }
    let mut keys: Vec<_> = seen.iter().map(|r| r.key.clone()).collect();
    let mut sent_keys: Vec<_> = sent.iter().map(|s| s.key.clone()).collect();
    keys.sort();
    sent_keys.sort();
    assert_eq!(keys, sent_keys, "every key once");
}

#[tokio::test]
async fn confluent_kafka_puts_keys_on_kafkas_partitions() {
    if !kafka_client_available(KafkaClient::ConfluentKafka).await {
        return;
    }
    let broker = KafkaBroker::start().await;
    broker.create_topic("keyed", 6).await;
    let sent = keyed_records();
    // Not idempotent: the plain producer's path.
    let delivered =
        driver(KafkaClient::ConfluentKafka, &["produce", &broker.addr, "keyed"], &json_lines(&sent)).await;
    for d in &delivered {
        let key = d["key"].as_str().unwrap();
        assert_eq!(d["partition"].as_u64(), Some(u64::from(partition_for_key(key.as_bytes(), 6))), "{d}");
    }
    assert_on_key_partitions(&broker, "keyed", &sent, 6).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn kafkajs_puts_keys_on_kafkas_partitions() {
    if !kafka_client_available(KafkaClient::Kafkajs).await {
        return;
    }
    let broker = KafkaBroker::start().await;
    broker.create_topic("keyed", 6).await;
    let sent = keyed_records();
    driver(KafkaClient::Kafkajs, &["produce", &broker.addr, "keyed", "--idempotent"], &json_lines(&sent))
        .await;
    assert_on_key_partitions(&broker, "keyed", &sent, 6).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn kcat_puts_keys_on_kafkas_partitions() {
    if !kafka_client_available(KafkaClient::Kcat).await {
        return;
    }
    let broker = KafkaBroker::start().await;
    broker.create_topic("keyed", 6).await;
    let sent = keyed_records();
    let input: String = sent
        .iter()
        .map(|s| format!("{}\t{}\n", s.key.as_ref().unwrap(), s.value.as_ref().unwrap()))
        .collect();
    let produce = ["-P", "-b", &broker.addr, "-t", "keyed", "-K", "\t", "-X", "partitioner=murmur2_random"];
    run("kcat", &produce, &input).await;
    assert_on_key_partitions(&broker, "keyed", &sent, 6).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn records_produced_over_kafka_read_intact_over_grpc() {
    if !kafka_client_available(KafkaClient::ConfluentKafka).await {
        return;
    }
    let broker = KafkaBroker::start().await;
    broker.create_topic("orders", 3).await;
    let sent: Vec<Sent> = (0..3).flat_map(|p| records(60, &format!("p{p}"), Some(p))).collect();
    let args = ["produce", &broker.addr, "orders", "--idempotent"];
    driver(KafkaClient::ConfluentKafka, &args, &json_lines(&sent)).await;

    let seen = read_with_grpc(&broker.broker.endpoint(), "orders", sent.len()).await;
    assert_intact(&as_grpc_reads(&sent), &seen, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn records_produced_over_grpc_read_intact_over_kafka() {
    let confluent = kafka_client_available(KafkaClient::ConfluentKafka).await;
    let kcat = kafka_client_available(KafkaClient::Kcat).await;
    if !confluent && !kcat {
        return;
    }
    let broker = KafkaBroker::start().await;
    broker.create_topic("orders", 3).await;
    // The gRPC API has no null value: an empty value is its tombstone, which
    // Kafka clients read as null.
    let sent: Vec<Sent> = (0..3).flat_map(|p| records(60, &format!("p{p}"), Some(p))).collect();
    let producer =
        Producer::builder(broker.broker.endpoint()).linger(Duration::from_millis(2)).build().unwrap();
    let mut deliveries = Vec::new();
    for s in &sent {
        let value = s.value.clone().unwrap_or_default();
        let mut record = ProducerRecord::new(value).partition(s.partition.unwrap());
        if let Some(key) = &s.key {
            record = record.key(key.as_str());
        }
        for (name, value) in &s.headers {
            record = record.header(name.as_str(), value.clone().unwrap());
        }
        if let Some(t) = s.timestamp {
            record = record.timestamp_ms(t);
        }
        deliveries.push(producer.send("orders", record).await.unwrap());
    }
    for d in deliveries {
        d.await.expect("delivered");
    }
    producer.close().await.unwrap();

    if confluent {
        let seen = read_with_confluent(&broker.addr, "orders", &[60, 60, 60]).await;
        assert_intact(&sent, &seen, 0);
    }
    if kcat {
        let seen = read_with_kcat(&broker.addr, "orders").await;
        assert_intact(&sent, &seen, 0);
    }
    broker.shutdown().await;
}

/// Headers cross protocols in order, a repeated name included; a header's
/// null value reads as empty (the core's header values are bytes, never
/// null: docs/kafka.md).
#[tokio::test]
async fn kafka_headers_keep_repeated_names_in_order_and_read_null_values_as_empty() {
    let confluent = kafka_client_available(KafkaClient::ConfluentKafka).await;
    let kcat = kafka_client_available(KafkaClient::Kcat).await;
    if !confluent || !kcat {
        return;
    }
    let broker = KafkaBroker::start().await;
    let header = |name: &str, value: Option<&str>| (name.to_owned(), value.map(str::to_owned));
    let sent = Sent {
        partition: Some(0),
        key: Some("k".into()),
        value: Some("v".into()),
        headers: vec![
            header("a", Some("1")),
            header("n", None),
            header("d", Some("1")),
            header("d", Some("2")),
        ],
        timestamp: Some(1_000),
    };
    driver(
        KafkaClient::ConfluentKafka,
        &["produce", &broker.addr, "over-kafka"],
        &json_lines(std::slice::from_ref(&sent)),
    )
    .await;
    let seen = read_with_grpc(&broker.broker.endpoint(), "over-kafka", 1).await;
    let expected =
        [header("a", Some("1")), header("n", Some("")), header("d", Some("1")), header("d", Some("2"))];
    assert_eq!(seen[0].headers, expected);

    broker.create_topic("over-grpc", 1).await;
    let producer = Producer::builder(broker.broker.endpoint()).build().unwrap();
    let record = ProducerRecord::new("v").header("d", "1").header("x", "y").header("d", "2");
    producer.send("over-grpc", record).await.unwrap().await.expect("delivered");
    producer.close().await.unwrap();
    let seen = read_with_grpc(&broker.broker.endpoint(), "over-grpc", 1).await;
    assert_eq!(seen[0].headers, [header("d", Some("1")), header("x", Some("y")), header("d", Some("2"))]);
    let seen = read_with_kcat(&broker.addr, "over-grpc").await;
    assert_eq!(seen[0].headers, [header("d", Some("1")), header("x", Some("y")), header("d", Some("2"))]);
    broker.shutdown().await;
}

#[tokio::test]
async fn confluent_kafka_transactional_producer_fails_at_once_with_a_fatal_error() {
    if !kafka_client_available(KafkaClient::ConfluentKafka).await {
        return;
    }
    let broker = KafkaBroker::start().await;
    let out = driver(KafkaClient::ConfluentKafka, &["transactions", &broker.addr], "").await;
    assert_eq!(out.len(), 1, "{out:?}");
    let err = &out[0];
    // Refused, not left to retry until its timeout: the error is fatal and
    // says why.
    assert_eq!(err["error"], "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "{err}");
    assert_eq!(err["fatal"], true, "{err}");
    assert_eq!(err["retriable"], false, "{err}");
    assert!(err["message"].as_str().unwrap().contains("transactions are not supported"), "{err}");
    broker.shutdown().await;
}
