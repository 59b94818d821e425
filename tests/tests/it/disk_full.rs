//! A full disk: produce requests are refused with RESOURCE_EXHAUSTED naming
//! the cause, the broker stays up and keeps serving reads, nothing
//! acknowledged is lost, and writes resume by themselves when space returns.
//!
//! As root (as in CI) the test runs on a size-limited tmpfs that it grows
//! afterwards; otherwise it can only make the broker's reserve larger than
//! the disk's free space, which checks the refusal but not the recovery.

use std::path::{Path, PathBuf};
use std::process::Command;

use brooklet_broker::Config;
use brooklet_proto::v1 as pb;
use brooklet_tests::TestBroker;
use tonic::Code;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size_mb: u32) -> Option<Tmpfs> {
        let root = Command::new("id").arg("-u").output().ok().is_some_and(|o| o.stdout.starts_with(b"0\n"));
        if !root {
            return None;
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(dir.to_path_buf()))
    }

    fn grow(&self, size_mb: u32) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size_mb}m")])
            .arg(&self.0)
            .status()
            .expect("mount runs");
        assert!(status.success(), "remount succeeds");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn batch(i: u32) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: "fill".into(),
        // 1 MiB of incompressible-enough values.
        records: (0..8u32)
            .map(|j| pb::ProduceRecord {
                partition: Some(0),
                value: (0..128 * 1024u32)
                    .map(|k| (k.wrapping_mul(2_654_435_761) ^ i ^ j) as u8)
                    .collect::<Vec<u8>>()
                    .into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(dir.path(), 48);
    let mut config = Config::new(dir.path().join("data"));
    std::fs::create_dir_all(&config.data_dir).unwrap();
    config.limits.min_free_disk_bytes = match tmpfs {
        Some(_) => 16 << 20,
        // Without root: a reserve no disk can meet.
        None => u64::MAX / 2,
    };
    let broker = TestBroker::start_with(config).await;
    broker.create_topic("fill", 1).await;

    let mut acked = 0u32;
    let refusal = loop {
        assert!(acked < 64, "a 48 MiB disk cannot take 64 MiB");
        match broker.producer().produce(batch(acked)).await {
            Ok(_) => acked += 1,
            Err(status) => break status,
        }
    };
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert!(refusal.message().contains("disk full"), "{}", refusal.message());
    if tmpfs.is_some() {
        assert!(acked > 0, "the disk took some batches before it filled");
    }

    // Reads go on, and every acknowledged record is there.
    let mut consumer = broker.consumer();
    let mut offset = 0u64;
    while offset < u64::from(acked) * 8 {
        let got = consumer
            .fetch(pb::FetchRequest {
                topic: "fill".into(),
                partition: 0,
                offset,
                max_bytes: 0,
                max_wait_ms: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let n: usize = got.batches.iter().map(|b| b.records.len()).sum();
        assert!(n > 0, "acknowledged records are readable");
        offset += n as u64;
    }
    assert_eq!(offset, u64::from(acked) * 8);

    if let Some(fs) = &tmpfs {
        fs.grow(128);
        let resumed = broker.producer().produce(batch(999)).await.expect("writes resume once space returns");
        assert_eq!(resumed.into_inner().acks[0].base_offset, u64::from(acked) * 8);
    }
    broker.shutdown().await;
    drop(tmpfs);
}

/// A broker on a fresh 160 MiB tmpfs with the default 64 MiB reserve, or
/// `None` without root. Space freed inside the database counts for half the
/// reserve, which must hold the file's growth right after a delete (up to
/// two 8 MiB segments) besides the requests.
async fn broker_on_small_disk(dir: &Path) -> Option<(TestBroker, Tmpfs)> {
    let Some(tmpfs) = Tmpfs::mount(dir, 160) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return None;
    };
    let mut config = Config::new(dir.join("data"));
    std::fs::create_dir_all(&config.data_dir).unwrap();
    config.limits.min_free_disk_bytes = 64 << 20;
    config.retention_check_interval = std::time::Duration::from_millis(20);
    Some((TestBroker::start_with(config).await, tmpfs))
}

/// `batch(i)` for `topic`.
fn batch_to(topic: &str, i: u32) -> pb::ProduceRequest {
    pb::ProduceRequest { topic: topic.into(), ..batch(i) }
}

/// Produces 1 MiB batches to `topic` until the reserve refuses one; returns
/// how many were taken.
async fn fill(broker: &TestBroker, topic: &str) -> u32 {
    let mut filled = 0u32;
    let refusal = loop {
        assert!(filled < 160, "a 160 MiB disk cannot take 160 MiB");
        match broker.producer().produce(batch_to(topic, filled)).await {
            Ok(_) => filled += 1,
            Err(status) => break status,
        }
    };
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert!(refusal.message().contains("disk full"), "{}", refusal.message());
    assert!(filled > 0, "the disk took some batches before it filled");
    filled
}

/// Produces batches `first..first + n` to `topic`, each of which must be
/// accepted, at offsets from `offset`.
async fn write(broker: &TestBroker, topic: &str, offset: u64, first: u32, n: u32) {
    for i in 0..n {
        let ack = broker
            .producer()
            .produce(batch_to(topic, first + i))
            .await
            .unwrap_or_else(|status| panic!("batch {i} of {n} refused: {status:?}"));
        assert_eq!(ack.into_inner().acks[0].base_offset, offset + u64::from(i) * 8);
    }
}

/// Reads back from `offset` the records of batches `first..first + n`.
async fn read_back(broker: &TestBroker, topic: &str, offset: u64, first: u32, n: u32) {
    let expected: Vec<_> =
        (first..first + n).flat_map(|i| batch_to(topic, i).records).map(|r| r.value).collect();
    let mut consumer = broker.consumer();
    let mut read = Vec::new();
    while read.len() < expected.len() {
        let next = offset + read.len() as u64;
        let got = consumer
            .fetch(pb::FetchRequest {
                topic: topic.into(),
                partition: 0,
                offset: next,
                max_bytes: 0,
                max_wait_ms: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let before = read.len();
        for b in got.batches {
            for r in b.records {
                assert_eq!(b.base_offset + u64::from(r.offset_delta), offset + read.len() as u64);
                read.push(r.value);
            }
        }
        assert!(read.len() > before, "acknowledged records are readable");
    }
    assert!(read == expected, "the records read back are the ones written");
}

/// Deleting a topic frees nothing on the file system (sled keeps its file
/// and reuses the space inside it), yet writes refused for a full disk are
/// accepted again once the delete is answered: in the same process, on a
/// disk no larger than before, and after a restart too.
#[tokio::test]
async fn deleting_a_topic_on_a_full_disk_gives_writes_back() {
    let dir = tempfile::tempdir().unwrap();
    let Some((broker, tmpfs)) = broker_on_small_disk(dir.path()).await else { return };
    broker.create_topic("old", 1).await;
    fill(&broker, "old").await;

    broker.admin().delete_topic(pb::DeleteTopicRequest { name: "old".into() }).await.unwrap();
    broker.create_topic("new", 1).await;
    write(&broker, "new", 0, 1000, 8).await;
    read_back(&broker, "new", 0, 1000, 8).await;

    // What the delete freed is still counted after a restart.
    let broker = broker.restart().await;
    write(&broker, "new", 64, 1008, 2).await;
    read_back(&broker, "new", 0, 1000, 10).await;
    broker.shutdown().await;
    drop(tmpfs);
}

/// The same when retention deletes most of the topic that filled the disk:
/// writes to it are accepted again once retention has run.
#[tokio::test]
async fn retention_on_a_full_disk_gives_writes_back() {
    let dir = tempfile::tempdir().unwrap();
    let Some((broker, tmpfs)) = broker_on_small_disk(dir.path()).await else { return };
    broker.create_topic("kept", 1).await;
    let filled = fill(&broker, "kept").await;

    // Retention keeps the newest 8 MiB, more than is written below, so the
    // records written after it run stay.
    let keep = pb::AlterTopicConfigRequest {
        name: "kept".into(),
        set: [("retention.bytes".to_owned(), (8u32 << 20).to_string())].into(),
        remove: vec![],
    };
    broker.admin().alter_topic_config(keep).await.unwrap();
    let offset = u64::from(filled) * 8;
    // Retention runs in the background: the first write accepted is the
    // sign it has run. A refused one writes nothing.
    let ack = brooklet_tests::eventually("a write accepted after retention", || async {
        broker.producer().produce(batch_to("kept", 1000)).await.ok()
    })
    .await;
    assert_eq!(ack.into_inner().acks[0].base_offset, offset);
    write(&broker, "kept", offset + 8, 1001, 4).await;
    read_back(&broker, "kept", offset, 1000, 5).await;
    broker.shutdown().await;
    drop(tmpfs);
}
