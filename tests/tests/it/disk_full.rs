//! A full disk: produce requests are refused with RESOURCE_EXHAUSTED naming
//! the cause, the broker stays up and keeps serving reads, nothing
//! acknowledged is lost, and writes resume by themselves when space returns.
//!
//! The test runs on a size-limited tmpfs that it grows afterwards. As root
//! (as in CI) it mounts one itself. Otherwise it runs again in a child
//! process that is root in a new user and mount namespace (`unshare`),
//! where it may mount a tmpfs. Where neither is allowed, it can only make
//! the broker's reserve larger than the disk's free space, which checks the
//! refusal but not that writes resume, and it says so on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use brooklet_broker::Config;
use brooklet_proto::v1 as pb;
use brooklet_tests::TestBroker;
use tonic::Code;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` if this process cannot mount one (it is not root, or not
    /// allowed to mount).
    fn mount(dir: &Path, size_mb: u32) -> Option<Tmpfs> {
        let root = Command::new("id").arg("-u").output().ok().is_some_and(|o| o.stdout.starts_with(b"0\n"));
        if !root {
            return None;
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(dir.to_path_buf()))
    }

    fn grow(&self, size_mb: u32) {
        // With the type and source given, mount(8) passes only these
        // options: it does not add the mount's current ones (such as a
        // `uid=` that a user namespace cannot map back).
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("remount,size={size_mb}m"), "tmpfs"])
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

/// Set in the child process that runs the test in a user namespace.
const IN_NAMESPACE: &str = "BROOKLET_DISK_FULL_IN_NAMESPACE";

/// `unshare` arguments: a new user namespace whose root is this user, and a
/// new mount namespace it owns, where it may mount a tmpfs.
const UNSHARE: [&str; 3] = ["--user", "--map-root-user", "--mount"];

#[tokio::test]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(dir.path(), 48);
    if tmpfs.is_none() {
        assert!(std::env::var_os(IN_NAMESPACE).is_none(), "cannot mount a tmpfs in the user namespace");
        if rerun_in_namespace(dir.path()).await {
            return;
        }
        // Not eprintln!, which the test harness captures (and shows only if
        // the test fails): this must be seen when the test passes.
        let _ = writeln!(
            std::io::stderr(),
            "note: disk_full: cannot mount a tmpfs, neither here nor in a user namespace: only the \
             refusal of writes is tested (a free-space reserve above the disk's free space); SKIPPED: \
             filling a real disk, and writes resuming when space returns. Run as root for the whole test."
        );
    }
    let mut config = Config::new(dir.path().join("data"));
    std::fs::create_dir_all(&config.core.data_dir).unwrap();
    config.core.limits.min_free_disk_bytes = match tmpfs {
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

/// Runs this test again in a child process that is root in a new user and
/// mount namespace, and checks that it passed there. `false` if this system
/// does not let this user mount a tmpfs even so.
async fn rerun_in_namespace(probe_dir: &Path) -> bool {
    let probe = tokio::process::Command::new("unshare")
        .args(UNSHARE)
        .args(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(probe_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !probe.is_ok_and(|s| s.success()) {
        return false;
    }
    // The test's name as the harness knows it: the module path without the
    // crate's name, then the function's.
    let module = module_path!().split_once("::").map_or(module_path!(), |(_, m)| m);
    let name = format!("{module}::a_full_disk_refuses_writes_keeps_reads_and_recovers");
    let out = tokio::process::Command::new("unshare")
        .args(UNSHARE)
        .arg(std::env::current_exe().expect("the test binary"))
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, "1")
        .kill_on_drop(true)
        .output()
        .await
        .expect("unshare runs");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the test failed in a user namespace:\n{report}");
    assert!(report.contains("1 passed"), "the test did not run in the user namespace:\n{report}");
    true
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
    std::fs::create_dir_all(&config.core.data_dir).unwrap();
    config.core.limits.min_free_disk_bytes = 64 << 20;
    config.core.retention_check_interval = std::time::Duration::from_millis(20);
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
    // A pass deletes in chunks, so the first write may be accepted before
    // the pass is over: wait for it to leave about the newest 8 MiB (8
    // batches of 8 records, plus the one just written) before counting on
    // what it freed.
    brooklet_tests::eventually("retention to leave the newest 8 MiB", || async {
        let described = broker
            .admin()
            .describe_topic(pb::DescribeTopicRequest { name: "kept".into() })
            .await
            .unwrap()
            .into_inner();
        let p = &described.partitions[0];
        (p.high_watermark - p.log_start_offset <= 80).then_some(())
    })
    .await;
    write(&broker, "kept", offset + 8, 1001, 4).await;
    read_back(&broker, "kept", offset, 1000, 5).await;
    broker.shutdown().await;
    drop(tmpfs);
}
