//! A soak: an embedded broker under sustained durable load, reporting the
//! process's resident memory once a second, so that "memory stays bounded"
//! is something one can watch rather than assume.
//!
//! ```sh
//! cargo run --release -p brooklet-benches --bin soak -- [SECONDS] [CACHE_MB] [durable|written]
//! ```
//!
//! Four producers send 1 KiB records (durable acks by default) to four partitions
//! while a consumer reads them back. The broker, producers and consumer
//! share the process, so the figure is an upper bound on the broker's own
//! memory. It prints `second, records acked, RSS MB` lines and, at the end,
//! the peak RSS against the configured cache plus 256 MB.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brooklet_benches::random_values;
use brooklet_broker::{Config, EmbeddedBroker};
use brooklet_client::{Admin, Consumer, Durability, NewTopic, Producer, ProducerRecord};

/// Resident set size of this process in bytes (Linux), from /proc/self/statm.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30);
    let cache_mb: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let acks = match args.next().as_deref() {
        None | Some("durable") => Durability::Durable,
        Some("written") => Durability::Written,
        Some(other) => anyhow::bail!("acks must be durable or written, got {other:?}"),
    };
    let dir = tempfile::tempdir()?;
    let mut config = Config::new(dir.path());
    config.core.cache_capacity_bytes = cache_mb << 20;
    let broker = EmbeddedBroker::start_with(config).await?;
    Admin::connect(broker.endpoint())?.create_topic("soak", NewTopic::new(4)).await?;

    let acked = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let values = Arc::new(random_values(1024, 1024));
    let mut tasks = Vec::new();
    for p in 0..4u32 {
        let (endpoint, acked, values) = (broker.endpoint(), acked.clone(), values.clone());
        tasks.push(tokio::spawn(async move {
            let producer = Producer::builder(endpoint).acks(acks).build()?;
            let mut pending = std::collections::VecDeque::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let record = ProducerRecord::new(values[i % values.len()].clone()).partition(p);
                pending.push_back(producer.send("soak", record).await?);
                i += 1;
                if pending.len() >= 4096 {
                    pending.pop_front().expect("not empty").await?;
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            for d in pending {
                d.await?;
                acked.fetch_add(1, Ordering::Relaxed);
            }
            producer.close().await?;
            anyhow::Ok(())
        }));
    }
    let reader = {
        let endpoint = broker.endpoint();
        tokio::spawn(async move {
            let mut consumer = Consumer::builder(endpoint).max_wait(Duration::from_millis(100)).build()?;
            consumer.assign("soak", &[0, 1, 2, 3]);
            while Instant::now() < deadline {
                consumer.poll().await?;
            }
            anyhow::Ok(())
        })
    };

    println!("second,records_acked,rss_mb");
    let mut peak = 0;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < deadline {
        tick.tick().await;
        let rss = rss_bytes().unwrap_or(0);
        peak = peak.max(rss);
        println!("{},{},{:.1}", started.elapsed().as_secs(), acked.load(Ordering::Relaxed), rss as f64 / 1e6);
    }
    for t in tasks {
        t.await??;
    }
    reader.await??;
    broker.shutdown().await?;
    let bound = (cache_mb << 20) + (256 << 20);
    println!(
        "peak RSS {:.1} MB; cache {cache_mb} MiB + 256 MiB = {:.1} MB: {}",
        peak as f64 / 1e6,
        bound as f64 / 1e6,
        if peak <= bound { "within" } else { "ABOVE" }
    );
    Ok(())
}
