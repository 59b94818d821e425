//! Retention and run-time topic configuration: the oldest batches go, the
//! log start advances (and survives restarts), readers behind it are told
//! the new bounds, and altered config is validated and kept.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brooklet_broker::Config;
use brooklet_proto::v1 as pb;
use brooklet_tests::{TestBroker, eventually};
use tonic::Code;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn start(dir: &std::path::Path) -> TestBroker {
    let mut config = Config::new(dir);
    config.core.retention_check_interval = Duration::from_millis(20);
    TestBroker::start_with(config).await
}

async fn produce(broker: &TestBroker, topic: &str, values: &[&str], timestamp_ms: i64) -> u64 {
    let records = values
        .iter()
        .map(|v| pb::ProduceRecord {
            partition: Some(0),
            value: v.to_string().into(),
            timestamp_ms: Some(timestamp_ms),
            ..Default::default()
        })
        .collect();
    let resp = broker
        .producer()
        .produce(pb::ProduceRequest { topic: topic.into(), records, acks: 0, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    resp.acks[0].base_offset
}

async fn bounds(broker: &TestBroker, topic: &str) -> (u64, u64) {
    let d = broker.admin().describe_topic(pb::DescribeTopicRequest { name: topic.into() }).await.unwrap();
    let p = &d.into_inner().partitions[0];
    (p.log_start_offset, p.high_watermark)
}

async fn alter(
    broker: &TestBroker,
    topic: &str,
    set: &[(&str, &str)],
    remove: &[&str],
) -> Result<pb::TopicInfo, tonic::Status> {
    let req = pb::AlterTopicConfigRequest {
        name: topic.into(),
        set: set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        remove: remove.iter().map(|k| k.to_string()).collect(),
    };
    broker.admin().alter_topic_config(req).await.map(|r| r.into_inner().topic.unwrap())
}

#[tokio::test]
async fn retention_by_time_deletes_old_batches_and_the_log_start_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    broker.create_topic("events", 1).await;
    let week_ago = now_ms() - 8 * 24 * 3600 * 1000;
    produce(&broker, "events", &["old-1", "old-2"], week_ago).await;
    produce(&broker, "events", &["old-3"], week_ago + 1).await;
    produce(&broker, "events", &["new-1", "new-2"], now_ms()).await;

    // The default retention is 7 days: the old batches go.
    let b = &broker;
    eventually("retention to delete the week-old batches", || async move {
        (bounds(b, "events").await == (3, 5)).then_some(())
    })
    .await;

    // A reader behind the log start is told the new bounds.
    let err = broker
        .consumer()
        .fetch(pb::FetchRequest {
            topic: "events".into(),
            partition: 0,
            offset: 1,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    assert!(err.message().contains("log start offset is 3") && err.message().contains("high watermark is 5"));

    // Everything expires: the log is empty but its offsets go on.
    alter(&broker, "events", &[("retention.ms", "0")], &[]).await.unwrap();
    eventually("retention to empty the log", || async move {
        (bounds(b, "events").await == (5, 5)).then_some(())
    })
    .await;
    let broker = broker.restart().await;
    assert_eq!(bounds(&broker, "events").await, (5, 5), "an emptied log keeps its offsets across a restart");
    alter(&broker, "events", &[], &["retention.ms"]).await.unwrap();
    assert_eq!(produce(&broker, "events", &["after"], now_ms()).await, 5, "offsets are never reused");
    broker.shutdown().await;
}

#[tokio::test]
async fn retention_by_bytes_keeps_the_newest_batches() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let config = [("retention.bytes".to_owned(), "10000".to_owned())].into();
    broker
        .admin()
        .create_topic(pb::CreateTopicRequest { name: "capped".into(), partitions: 1, config })
        .await
        .unwrap();
    let value = "x".repeat(1000);
    for _ in 0..30 {
        produce(&broker, "capped", &[&value, &value], now_ms()).await;
    }
    let b = &broker;
    // Batches of two 1,000-byte records are just over 2 KB stored, so four
    // of them (8 records) fit in 10,000 bytes and a fifth would not.
    let (start, end) = eventually("retention to trim to the byte limit", || async move {
        let (start, end) = bounds(b, "capped").await;
        (end - start <= 8).then_some((start, end))
    })
    .await;
    assert_eq!((start, end), (52, 60), "the newest batches that fit are kept, no fewer");
    let got = broker
        .consumer()
        .fetch(pb::FetchRequest {
            topic: "capped".into(),
            partition: 0,
            offset: start,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let first = &got.batches[0];
    assert_eq!(first.base_offset + u64::from(first.records[0].offset_delta), start);
    broker.shutdown().await;
}

#[tokio::test]
async fn topic_config_is_altered_at_run_time_validated_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    broker.create_topic("t", 1).await;
    let info =
        alter(&broker, "t", &[("retention.ms", "-1"), ("max.message.bytes", "100")], &[]).await.unwrap();
    assert_eq!(info.config.get("retention.ms").map(String::as_str), Some("-1"));

    // The new limit applies at once.
    let big = "y".repeat(101);
    let err = broker
        .producer()
        .produce(pb::ProduceRequest {
            topic: "t".into(),
            records: vec![pb::ProduceRecord { value: big.into(), ..Default::default() }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("100 bytes"), "{}", err.message());

    // A bad alteration changes nothing.
    let err =
        alter(&broker, "t", &[("retention.ms", "soon"), ("max.message.bytes", "50")], &[]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("retention.ms"), "{}", err.message());
    let err = alter(&broker, "t", &[("cleanup.policy", "shred")], &[]).await.unwrap_err();
    assert!(err.message().contains("cleanup.policy"), "{}", err.message());
    assert_eq!(alter(&broker, "nope", &[], &[]).await.unwrap_err().code(), Code::NotFound);

    let broker = broker.restart().await;
    let d = broker
        .admin()
        .describe_topic(pb::DescribeTopicRequest { name: "t".into() })
        .await
        .unwrap()
        .into_inner();
    let config = d.topic.unwrap().config;
    assert_eq!(config.get("max.message.bytes").map(String::as_str), Some("100"), "kept across a restart");
    assert_eq!(config.get("retention.ms").map(String::as_str), Some("-1"));
    broker.shutdown().await;
}

fn keyed(key: &str, value: &str) -> pb::ProduceRecord {
    pb::ProduceRecord {
        partition: Some(0),
        key: Some(key.to_owned().into()),
        value: value.to_owned().into(),
        ..Default::default()
    }
}

async fn read_all(broker: &TestBroker, topic: &str) -> Vec<(u64, String, String)> {
    let got = broker
        .consumer()
        .fetch(pb::FetchRequest {
            topic: topic.into(),
            partition: 0,
            offset: 0,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    got.batches
        .iter()
        .flat_map(|b| {
            b.records.iter().map(move |r| {
                let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
                (
                    b.base_offset + u64::from(r.offset_delta),
                    key,
                    String::from_utf8_lossy(&r.value).into_owned(),
                )
            })
        })
        .collect()
}

#[tokio::test]
async fn compaction_keeps_the_newest_record_per_key_and_preserves_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let config = [
        ("cleanup.policy".to_owned(), "compact".to_owned()),
        ("delete.retention.ms".to_owned(), "0".to_owned()),
    ]
    .into();
    broker
        .admin()
        .create_topic(pb::CreateTopicRequest { name: "state".into(), partitions: 1, config })
        .await
        .unwrap();
    let produce = |records: Vec<pb::ProduceRecord>| {
        let mut producer = broker.producer();
        async move {
            producer
                .produce(pb::ProduceRequest { topic: "state".into(), records, ..Default::default() })
                .await
                .unwrap();
        }
    };
    produce(vec![keyed("a", "1"), keyed("b", "1"), keyed("a", "2")]).await; // offsets 0-2
    produce(vec![keyed("c", "1"), keyed("b", "")]).await; // 3-4: b's tombstone
    produce(vec![keyed("a", "3")]).await; // 5: the newest batch, never compacted

    let b = &broker;
    let compacted = eventually("compaction", || async move {
        let records = read_all(b, "state").await;
        (records.len() == 2).then_some(records)
    })
    .await;
    // a's older records, b and its tombstone (past delete.retention.ms) are
    // gone; c and the newest a stay at their offsets.
    assert_eq!(compacted, [(3, "c".to_owned(), "1".to_owned()), (5, "a".to_owned(), "3".to_owned())]);
    let (start, end) = bounds(&broker, "state").await;
    assert_eq!((start, end), (0, 6), "offsets are preserved, gaps and all");

    // A fetch from inside a gap starts at the next record.
    let got = broker
        .consumer()
        .fetch(pb::FetchRequest {
            topic: "state".into(),
            partition: 0,
            offset: 1,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let first = &got.batches[0];
    assert_eq!(first.base_offset + u64::from(first.records[0].offset_delta), 3);

    // New appends continue after the gaps; compacted data survives a restart.
    let broker = broker.restart().await;
    assert_eq!(read_all(&broker, "state").await.len(), 2);
    let err = broker
        .producer()
        .produce(pb::ProduceRequest {
            topic: "state".into(),
            records: vec![pb::ProduceRecord {
                partition: Some(0),
                value: "keyless".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("needs a key"), "{}", err.message());
    broker.shutdown().await;
}
