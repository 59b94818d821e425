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
