//! `brooklet bench storage`: the log and storage engine alone, in-process,
//! no network. It opens the core in a temporary directory, as the broker
//! does, and N writer tasks append batches through `Log::produce`,
//! durable by default, so concurrent writers share flushes (group commit).
//! What it reports is the most the engine takes on this disk: the ceiling
//! for `bench produce`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, ensure};
use brooklet_core::{Acks, Core, CoreConfig, MAX_FLUSH_MAX_DELAY, NewRecord};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::load::{self, Budget, Limit, Pool};
use super::report::{self, Latency, Meter, Progress, Summary};
use super::{MAX_BATCH_BYTES, StorageArgs};

/// The bench topic inside the temporary database.
const TOPIC: &str = "bench";
/// Most writers one run may start.
const MAX_WRITERS: u32 = 1024;
/// The storage cache, as the broker's default.
const CACHE_BYTES: u64 = 256 << 20;

/// What one writer appended.
#[derive(Debug)]
struct Appended {
    batches: u64,
    records: u64,
    latency: Histogram<u64>,
}

/// `brooklet bench storage`.
pub async fn run(args: StorageArgs) -> anyhow::Result<()> {
    let duration = super::parse_duration("--duration", args.duration)?;
    let max_record = super::max_record_bytes();
    super::check_size("--record-size", args.record_size, max_record)?;
    super::check_size("--batch-bytes", args.batch_bytes, MAX_BATCH_BYTES)?;
    super::check_count("--writers", u64::from(args.writers), u64::from(MAX_WRITERS))?;
    let partitions = args.partitions.unwrap_or(args.writers);
    ensure!(partitions >= 1, "--partitions must be at least 1");
    let acks = if args.acks == "written" { Acks::Written } else { Acks::Durable };
    let flush_max_delay = std::time::Duration::from_millis(args.flush_max_delay_ms);
    ensure!(
        flush_max_delay <= MAX_FLUSH_MAX_DELAY,
        "--flush-max-delay-ms must be 0 to {}, got {}",
        MAX_FLUSH_MAX_DELAY.as_millis(),
        args.flush_max_delay_ms
    );
    ensure!(args.dir.is_dir(), "--dir {} is not a directory", args.dir.display());
    let dir = tempfile::Builder::new()
        .prefix(".brooklet-bench-storage-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("cannot make a temporary directory in {}", args.dir.display()))?;
    let batch_records = (args.batch_bytes / args.record_size).max(1);

    // The engine is opened and closed as the broker does it: every task that
    // holds the database runs on `tasks`, and closing waits for them.
    let tasks = TaskTracker::new();
    let mut config = CoreConfig::new(dir.path());
    config.cache_capacity_bytes = CACHE_BYTES;
    config.flush_max_delay = flush_max_delay;
    let core = Core::open(&config, None, &tasks)?;
    core.log().create_topic(TOPIC, partitions, BTreeMap::new()).await?;
    let pool = Arc::new(Pool::new(args.record_size));

    let meter = Arc::new(Meter::default());
    let progress = Progress::start("storage", vec![("", Arc::clone(&meter))]);
    let started = Instant::now();
    let budget = Budget::start(Some(Limit::Duration(duration)));
    let mut writers = JoinSet::new();
    for index in 0..args.writers {
        let writer = Writer {
            core: core.clone(),
            partition: index % partitions,
            acks,
            batch: batch(&pool, index, batch_records, index % partitions),
            record_size: args.record_size as u64,
            budget: Arc::clone(&budget),
            meter: Arc::clone(&meter),
        };
        writers.spawn(writer.append());
    }
    let appended = load::join_all(writers, &budget).await;
    let elapsed = started.elapsed();
    progress.finish().await;

    let closed = async {
        core.log().sync().await?;
        drop(core);
        tasks.close();
        tasks.wait().await;
        dir.close().context("cannot remove the temporary directory")
    };
    let closed = closed.await;
    let appended = appended?;
    closed?;

    let records: u64 = appended.iter().map(|a| a.records).sum();
    let mut summary = Summary {
        bench: "storage",
        config: vec![
            ("dir", args.dir.display().to_string().into()),
            ("record_size", args.record_size.into()),
            ("batch_bytes", args.batch_bytes.into()),
            ("batch_records", batch_records.into()),
            ("writers", args.writers.into()),
            ("partitions", partitions.into()),
            ("acks", args.acks.clone().into()),
            ("flush_max_delay_ms", args.flush_max_delay_ms.into()),
            ("duration", args.duration.into()),
        ],
        records,
        bytes: records * args.record_size as u64,
        elapsed,
        latency: Latency::Measured {
            what: format!(
                "one batch of {} through Log::produce, {} ack",
                crate::cmd::count(batch_records as u64, "record"),
                args.acks
            ),
            hist: report::merge(appended.iter().map(|a| &a.latency))?,
        },
        extra: Vec::new(),
    };
    summary.extra("batches", appended.iter().map(|a| a.batches).sum::<u64>());
    summary.print(args.json)
}

/// One writer's batch: `n` records for `partition`, values from the pool
/// starting at the writer's own place in it.
fn batch(pool: &Pool, writer: u32, n: usize, partition: u32) -> Vec<NewRecord> {
    (0..n as u64)
        .map(|i| NewRecord {
            partition: Some(partition),
            value: Some(
                pool.get(u64::from(writer) * n as u64 + i).expect("record sizes are at least 1").clone(),
            ),
            ..NewRecord::default()
        })
        .collect()
}

/// One writer task.
#[derive(Debug)]
struct Writer {
    core: Core,
    partition: u32,
    acks: Acks,
    batch: Vec<NewRecord>,
    record_size: u64,
    budget: Arc<Budget>,
    meter: Arc<Meter>,
}

impl Writer {
    /// Appends its batch again and again until the budget's deadline.
    async fn append(self) -> anyhow::Result<Appended> {
        let mut out = Appended { batches: 0, records: 0, latency: report::histogram() };
        let n = self.batch.len() as u64;
        while self.budget.claim(n) == n {
            let started = Instant::now();
            self.core
                .log()
                .produce(TOPIC, self.batch.clone(), Some(self.acks), None)
                .await
                .with_context(|| format!("append to partition {} failed", self.partition))?;
            report::record(&mut out.latency, started.elapsed());
            out.batches += 1;
            out.records += n;
            self.meter.add(n, n * self.record_size);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_targets_its_partition_with_pooled_values() {
        let pool = Pool::new(10);
        let records = batch(&pool, 1, 3, 2);
        assert_eq!(records.len(), 3);
        assert!(records.iter().all(|r| r.partition == Some(2)
            && r.value.as_ref().is_some_and(|v| v.len() == 10)
            && r.key.is_none()));
    }

    #[tokio::test]
    async fn a_short_run_appends_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = StorageArgs {
            dir: dir.path().to_path_buf(),
            record_size: 100,
            batch_bytes: 1000,
            duration: 0.2,
            writers: 2,
            partitions: None,
            acks: "written".to_owned(),
            flush_max_delay_ms: 0,
            json: true,
        };
        run(args).await.expect("the bench runs");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("readable").collect();
        assert!(left.is_empty(), "the temporary directory is removed: {left:?}");
    }
}
