//! The Rust client crate against a real broker.

use std::collections::BTreeMap;
use std::time::Duration;

use brooklet_client::{
    Admin, CommittedOffset, Consumer, Durability, Error, NewTopic, Offset, Producer, ProducerRecord,
};
use brooklet_tests::{ReservedPort, TestBroker};
use futures::StreamExt;

#[tokio::test]
async fn producer_batches_keyed_records_and_consumer_reads_them_in_order() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(broker.endpoint()).unwrap();
    admin.create_topic("orders", NewTopic::new(4)).await.unwrap();
    let producer = Producer::builder(broker.endpoint()).linger(Duration::from_millis(2)).build().unwrap();

    let mut deliveries = Vec::new();
    for i in 0..400u32 {
        let key = format!("customer-{}", i % 13);
        let record = ProducerRecord::new(format!("{i}"))
            .key(key.clone())
            .header("seq", i.to_be_bytes().to_vec())
            .timestamp_ms(1_000 + i64::from(i));
        deliveries.push((key, producer.send("orders", record).await.unwrap()));
    }
    let mut written = BTreeMap::new();
    for (key, delivery) in deliveries {
        let meta = delivery.await.unwrap();
        assert_eq!(meta.durability, Durability::Durable);
        assert_eq!(meta.partition, brooklet_proto::partitioner::partition_for_key(key.as_bytes(), 4));
        assert!(
            written
                .insert((meta.partition, meta.offset.expect("acknowledged with an offset")), key)
                .is_none(),
            "offsets are unique"
        );
    }
    producer.close().await.unwrap();

    let mut consumer =
        Consumer::builder(broker.endpoint()).max_wait(Duration::from_millis(100)).build().unwrap();
    consumer.assign_all("orders").await.unwrap();
    let mut read = Vec::new();
    while read.len() < 400 {
        read.extend(consumer.poll().await.unwrap());
    }
    assert_eq!(read.len(), 400);
    // Per key, records come back in the order they were sent.
    let mut last_by_key: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    for r in &read {
        let seq = u32::from_be_bytes(r.headers[0].value[..].try_into().unwrap());
        assert_eq!(r.value, seq.to_string());
        assert_eq!(r.timestamp_ms, 1_000 + i64::from(seq));
        assert_eq!(written[&(r.partition, r.offset)].as_bytes(), &r.key.as_ref().unwrap()[..]);
        let key = r.key.clone().unwrap().to_vec();
        if let Some(prev) = last_by_key.insert(key, seq) {
            assert!(prev < seq, "per-key order kept");
        }
    }
    broker.shutdown().await;
}

/// Small batches to one partition: the idempotent producer keeps several in
/// flight at once, they may reach the broker out of order, and still every
/// record lands at the offset of its place in the send order.
#[tokio::test]
async fn pipelined_batches_of_a_partition_keep_the_send_order() {
    let broker = TestBroker::start().await;
    Admin::connect(broker.endpoint()).unwrap().create_topic("orders", NewTopic::new(1)).await.unwrap();
    let refused = send_orders_in_small_batches(&broker, |_| None).await;
    assert!(refused.is_empty());
    broker.shutdown().await;
}

/// Sends 2,000 records to the one-partition `orders` in batches of a few
/// records, with `extra(i)` sent to `small` after record `i`; checks that
/// each `orders` record lands at the offset of its place in the send order
/// and returns the outcomes of the extra records.
async fn send_orders_in_small_batches(
    broker: &TestBroker,
    extra: impl Fn(u64) -> Option<ProducerRecord>,
) -> Vec<brooklet_client::Result<brooklet_client::RecordMetadata>> {
    let producer = Producer::builder(broker.endpoint()).max_batch_bytes(256).build().unwrap();
    let (mut deliveries, mut extras) = (Vec::new(), Vec::new());
    for i in 0..2_000u64 {
        deliveries
            .push(producer.send("orders", ProducerRecord::new(format!("record-{i:05}"))).await.unwrap());
        if let Some(record) = extra(i) {
            extras.push(producer.send("small", record).await.unwrap());
        }
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        assert_eq!(delivery.await.unwrap().offset, Some(i as u64), "record {i}");
    }
    let outcomes = futures::future::join_all(extras).await;
    producer.close().await.unwrap();
    outcomes
}

/// Requests to another topic fail now and then (a record over its size
/// limit), and each failure makes the producer start a new producer id while
/// batches to `orders` are in flight under the old one: those batches, and
/// the ones after them, still land in send order.
#[tokio::test]
async fn failures_elsewhere_during_pipelined_sends_keep_the_send_order() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(broker.endpoint()).unwrap();
    admin.create_topic("orders", NewTopic::new(1)).await.unwrap();
    admin.create_topic("small", NewTopic::new(1).config("max.message.bytes", "64")).await.unwrap();
    let refused = send_orders_in_small_batches(&broker, |i| {
        (i % 100 == 0).then(|| ProducerRecord::new("x".repeat(100)))
    })
    .await;
    assert_eq!(refused.len(), 20);
    for outcome in refused {
        let err = outcome.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn a_group_resumes_from_its_committed_offsets() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(broker.endpoint()).unwrap();
    admin.create_topic("jobs", NewTopic::new(2)).await.unwrap();
    let producer = Producer::builder(broker.endpoint()).build().unwrap();
    for i in 0..10u32 {
        let d = producer.send("jobs", ProducerRecord::new(i.to_string()).partition(i % 2)).await.unwrap();
        d.await.unwrap();
    }

    let consumer =
        || Consumer::builder(broker.endpoint()).group("workers").max_wait(Duration::ZERO).build().unwrap();
    let mut first = consumer();
    first.assign("jobs", &[0, 1]);
    let mut seen = 0;
    while seen < 10 {
        seen += first.poll().await.unwrap().len();
    }
    first.commit().await.unwrap();
    let committed = admin.fetch_offsets("workers", Some("jobs")).await.unwrap();
    let mut offsets: Vec<_> = committed.iter().map(|c| (c.partition, c.offset)).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, vec![(0, 5), (1, 5)]);

    for i in 10..14u32 {
        producer
            .send("jobs", ProducerRecord::new(i.to_string()).partition(i % 2))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut second = consumer();
    second.assign("jobs", &[0, 1]);
    let mut values = Vec::new();
    while values.len() < 4 {
        values.extend(
            second.poll().await.unwrap().into_iter().map(|r| String::from_utf8(r.value.to_vec()).unwrap()),
        );
    }
    values.sort();
    assert_eq!(values, ["10", "11", "12", "13"], "only what the group had not committed");

    // Seeking overrides the committed position.
    second.seek("jobs", 1, Offset::At(3)).unwrap();
    second.assign("jobs", &[1]);
    let again = second.poll().await.unwrap();
    assert_eq!(again.first().map(|r| r.offset), Some(3));

    // Admin commits are validated like any other.
    let err = admin.commit_offsets("workers", &[CommittedOffset::new("jobs", 0, 99)]).await.unwrap_err();
    assert!(matches!(err, Error::OffsetOutOfRange { .. }), "{err}");
    broker.shutdown().await;
}

#[tokio::test]
async fn consumer_stream_follows_live_records() {
    let broker = TestBroker::start().await;
    Admin::connect(broker.endpoint()).unwrap().create_topic("feed", NewTopic::new(1)).await.unwrap();
    let mut consumer =
        Consumer::builder(broker.endpoint()).max_wait(Duration::from_millis(100)).build().unwrap();
    consumer.assign("feed", &[0]);
    consumer.seek("feed", 0, Offset::Latest).unwrap();
    // `Latest` is resolved by the first poll.
    assert!(consumer.poll().await.unwrap().is_empty());
    assert_eq!(consumer.position("feed", 0), Some(0));
    let mut stream = consumer.into_stream();
    let producer = Producer::builder(broker.endpoint()).build().unwrap();
    let reader = tokio::spawn(async move {
        let mut values = Vec::new();
        while values.len() < 3 {
            let r = stream.next().await.expect("stream continues").expect("no error");
            values.push(String::from_utf8(r.value.to_vec()).unwrap());
        }
        values
    });
    for v in ["x", "y", "z"] {
        producer.send("feed", ProducerRecord::new(v)).await.unwrap().await.unwrap();
    }
    let values = tokio::time::timeout(brooklet_tests::DEADLINE, reader).await.expect("streamed").unwrap();
    assert_eq!(values, ["x", "y", "z"]);
    broker.shutdown().await;
}

/// A consumer caught up on several partitions long-polls each; when one
/// partition's records come first, the other fetches keep running for the
/// next poll rather than being cancelled. Each cancel resets an HTTP/2
/// stream, and HTTP/2 closes a connection that resets too many streams the
/// broker was already answering, so a busy consumer must not cancel.
#[tokio::test]
async fn a_caught_up_consumer_keeps_its_other_long_polls_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = brooklet_broker::Config::new(dir.path());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let broker = TestBroker::start_with(config).await;
    broker.create_topic("lanes", 3).await;
    let producer = Producer::builder(broker.endpoint()).build().unwrap();
    let mut consumer = Consumer::builder(broker.endpoint()).max_wait(Duration::from_secs(5)).build().unwrap();
    consumer.assign("lanes", &[0, 1, 2]);
    let mut received = Vec::new();
    for i in 0..30u32 {
        let record = ProducerRecord::new(format!("r{i}")).partition(i % 3);
        producer.send("lanes", record).await.unwrap().await.unwrap();
        let records = tokio::time::timeout(brooklet_tests::DEADLINE, async {
            loop {
                let records = consumer.poll().await.expect("poll");
                if !records.is_empty() {
                    return records;
                }
            }
        })
        .await
        .expect("the record arrives");
        received.extend(records.into_iter().map(|r| String::from_utf8(r.value.to_vec()).unwrap()));
    }
    assert_eq!(received, (0..30).map(|i| format!("r{i}")).collect::<Vec<_>>());
    let (_, _, body) = crate::metrics::get(broker.metrics_addr().unwrap(), "/metrics").await;
    let samples = crate::metrics::parse_exposition(&body);
    let fetches = |code: &str| {
        let series =
            format!(r#"brooklet_requests_total{{rpc="brooklet.v1.ConsumerService/Fetch",code="{code}"}}"#);
        samples.get(&series).copied().unwrap_or(0.0)
    };
    assert!(fetches("OK") >= 30.0, "{body}");
    assert_eq!(fetches("CANCELLED"), 0.0, "no fetch was cancelled while the consumer ran");
    drop(consumer);
    broker.shutdown().await;
}

#[tokio::test]
async fn client_errors_are_typed() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(broker.endpoint()).unwrap();
    admin.create_topic("t", NewTopic::new(1)).await.unwrap();
    assert!(matches!(admin.create_topic("t", NewTopic::new(1)).await, Err(Error::TopicExists { .. })));
    assert!(matches!(admin.describe_topic("nope").await, Err(Error::TopicNotFound { .. })));
    assert!(matches!(
        admin.create_topic("bad/name", NewTopic::new(1)).await,
        Err(Error::InvalidArgument { .. })
    ));

    let producer = Producer::builder(broker.endpoint()).build().unwrap();
    let err = producer.send("nope", ProducerRecord::new("v")).await.unwrap_err();
    assert!(matches!(err, Error::TopicNotFound { .. }), "{err}");
    let oversized = ProducerRecord::new(vec![0u8; (1 << 20) + 1]);
    let err = producer.send("t", oversized).await.unwrap().await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    assert!(err.to_string().contains("1048576"), "{err}");
    broker.shutdown().await;

    // A broker that is gone (its port refuses connections): calls fail as
    // unavailable within their deadline. The port stays reserved while the
    // call runs, so no broker of a test running beside this one can be
    // listening there, as one could on the port of a stopped broker.
    let gone = ReservedPort::new();
    let admin = Admin::builder(gone.endpoint()).request_timeout(Duration::from_millis(500)).build().unwrap();
    let err = admin.list_topics().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. } | Error::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn a_fire_and_forget_producer_does_not_wait_and_the_broker_still_appends() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(broker.endpoint()).unwrap();
    admin.create_topic("samples", NewTopic::new(1)).await.unwrap();
    let producer = Producer::builder(broker.endpoint()).acks(Durability::None).build().unwrap();
    let mut deliveries = Vec::new();
    for i in 0..50 {
        deliveries.push(producer.send("samples", ProducerRecord::new(format!("{i}"))).await.unwrap());
    }
    for delivery in deliveries {
        let sent = delivery.await.expect("sent");
        assert_eq!((sent.offset, sent.durability), (None, Durability::None), "no offset without an answer");
    }
    // Closing waits for the broker's answers, so the records are there.
    producer.close().await.unwrap();
    let mut consumer = Consumer::builder(broker.endpoint()).build().unwrap();
    consumer.assign("samples", &[0]);
    let mut read = Vec::new();
    while read.len() < 50 {
        let polled = tokio::time::timeout(brooklet_tests::DEADLINE, consumer.poll()).await.expect("in time");
        read.extend(polled.unwrap().into_iter().map(|r| String::from_utf8(r.value.to_vec()).unwrap()));
    }
    assert_eq!(read, (0..50).map(|i| i.to_string()).collect::<Vec<_>>(), "all appended, in order");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_topic_is_created_if_missing_and_left_alone_if_not() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(broker.endpoint()).unwrap();
    assert!(admin.create_topic_if_missing("declared", NewTopic::new(3)).await.unwrap(), "created");
    assert!(!admin.create_topic_if_missing("declared", NewTopic::new(5)).await.unwrap(), "already there");
    assert_eq!(admin.describe_topic("declared").await.unwrap().partitions.len(), 3, "left as it was");
    let invalid = admin.create_topic_if_missing("bad name", NewTopic::new(1)).await;
    assert!(matches!(invalid, Err(Error::InvalidArgument { .. })), "{invalid:?}");
    broker.shutdown().await;
}
