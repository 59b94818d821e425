//! `brooklet bench storage`: the log and storage engine alone, in-process,
//! no network. It opens the core in a temporary directory, as the broker
//! does, and N writer tasks append batches through `Log::produce`, durable
//! by default. Each writer keeps up to `--in-flight` batches in flight (4 by
//! default: what the client's producer pipelines to one partition), so a
//! flush carries several batches of each writer, as the broker's flushes
//! carry several of each client's, and concurrent appends share flushes
//! (group commit). A writer makes its calls one after another on its own
//! task, so its batches take their offsets in the order it made them.
//!
//! Without `--rate` the writers append as fast as the engine acknowledges:
//! what it reports is the most the engine takes on this disk, the ceiling
//! for `bench produce`. With `--rate` each writer makes its calls at paced
//! times (its share of the rate, in whole batches, the writers' schedules
//! staggered evenly), open loop up to its in-flight bound: the engine's own
//! latency at that rate and batch size, to compare the broker's
//! acknowledgement latency at the same rate against.
//!
//! Either way a batch is timed from its `Log::produce` call to the ack. With
//! `--rate` the call is made at the batch's paced time, or later if all of
//! its writer's in-flight slots were taken; that wait is not counted, just
//! as `bench produce` does not count its wait for a `--max-in-flight`
//! permit.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use brooklet_core::{Acks, Core, CoreConfig, MAX_FLUSH_MAX_DELAY, NewRecord};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::load::{self, Budget, Limit, Pacer, Pool};
use super::report::{self, Latency, Meter, Progress, Summary};
use super::{MAX_BATCH_BYTES, StorageArgs};

/// The bench topic inside the temporary database.
const TOPIC: &str = "bench";
/// Most writers one run may start.
const MAX_WRITERS: u32 = 1024;
/// Most batches one writer may keep in flight.
const MAX_IN_FLIGHT: usize = 1024;
/// The storage cache, as the broker's default.
const CACHE_BYTES: u64 = 256 << 20;

/// What one writer appended.
#[derive(Debug)]
struct Appended {
    batches: u64,
    records: u64,
    /// The most batches the writer had in flight at once.
    max_in_flight: usize,
    latency: Histogram<u64>,
}

/// `brooklet bench storage`.
pub async fn run(args: StorageArgs) -> anyhow::Result<()> {
    let duration = super::parse_duration("--duration", args.duration)?;
    let max_record = super::max_record_bytes();
    super::check_size("--record-size", args.record_size, max_record)?;
    super::check_size("--batch-bytes", args.batch_bytes, MAX_BATCH_BYTES)?;
    super::check_count("--writers", u64::from(args.writers), u64::from(MAX_WRITERS))?;
    super::check_count("--in-flight", args.in_flight as u64, MAX_IN_FLIGHT as u64)?;
    if let Some(rate) = args.rate {
        ensure!(rate.is_finite() && rate > 0.0, "--rate must be above 0 records/s, got {rate}");
    }
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
    let batches_per_sec = args.rate.map(|rate| writer_batch_rate(rate, args.writers, batch_records));
    let mut writers = JoinSet::new();
    for index in 0..args.writers {
        let writer = Writer {
            core: core.clone(),
            partition: index % partitions,
            acks,
            batch: batch(&pool, index, batch_records, index % partitions),
            record_size: args.record_size as u64,
            in_flight: args.in_flight,
            pacer: batches_per_sec.and_then(|per_sec| {
                Pacer::starting_at(Some(per_sec), started + stagger(per_sec, index, args.writers))
            }),
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
            ("in_flight", args.in_flight.into()),
            ("rate", args.rate.map_or(Value::Null, Value::from)),
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
                "one batch of {} from its Log::produce call to the {} ack, up to {} per writer in flight{}",
                crate::cmd::count(batch_records as u64, "record"),
                args.acks,
                args.in_flight,
                if args.rate.is_some() { ", called at its paced time or once a slot freed" } else { "" }
            ),
            hist: report::merge(appended.iter().map(|a| &a.latency))?,
        },
        extra: Vec::new(),
    };
    summary.extra("batches", appended.iter().map(|a| a.batches).sum::<u64>());
    summary.extra("max_in_flight_observed", appended.iter().map(|a| a.max_in_flight).max().unwrap_or(0));
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

/// Batches a second one writer appends for its share of `rate` records a
/// second: at least one a day (a run's longest), so the pacer's interval
/// stays a valid time; a rate that low sends each writer's first batch and
/// no other either way.
fn writer_batch_rate(rate: f64, writers: u32, batch_records: usize) -> f64 {
    (rate / f64::from(writers) / batch_records as f64).max(1.0 / super::MAX_DURATION_SECS)
}

/// How long after the start writer `index` of `writers` sends its first
/// paced batch: the writers' schedules are spread evenly over one interval,
/// so together they send batches evenly instead of all at the same
/// instants.
fn stagger(batches_per_sec: f64, index: u32, writers: u32) -> Duration {
    Duration::from_secs_f64(f64::from(index) / f64::from(writers) / batches_per_sec)
}

/// One writer task.
#[derive(Debug)]
struct Writer {
    core: Core,
    partition: u32,
    acks: Acks,
    batch: Vec<NewRecord>,
    record_size: u64,
    /// Batches in flight at once, at most.
    in_flight: usize,
    /// When each batch is due, with `--rate`.
    pacer: Option<Pacer>,
    budget: Arc<Budget>,
    meter: Arc<Meter>,
}

impl Writer {
    /// Appends its batch again and again until the budget's deadline, with
    /// up to `in_flight` appends waiting for their acks at once, each made
    /// when the pacer says it is due (at once without one). Its calls run
    /// on this task one after another, so its batches take their offsets
    /// in the order of the calls; acks are timed as they come.
    async fn append(self) -> anyhow::Result<Appended> {
        let Writer { core, partition, acks, batch, record_size, in_flight: max, mut pacer, budget, meter } =
            self;
        let mut out = Appended { batches: 0, records: 0, max_in_flight: 0, latency: report::histogram() };
        let n = batch.len() as u64;
        let deadline = budget.deadline();
        let acked = |out: &mut Appended, (done, latency): (brooklet_core::Result<_>, Duration)| {
            done.with_context(|| format!("append to partition {partition} failed"))?;
            report::record(&mut out.latency, latency);
            out.batches += 1;
            out.records += n;
            meter.add(n, n * record_size);
            anyhow::Ok(())
        };
        let mut in_flight = FuturesUnordered::new();
        loop {
            let room = in_flight.len() < max;
            tokio::select! {
                // Acks first, so each is timed as soon as it comes.
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => acked(&mut out, done)?,
                () = due(pacer.as_mut(), deadline), if room => {
                    if budget.claim(n) != n {
                        break;
                    }
                    // Called (and timed from) when first polled: next time
                    // round, before anything else is sent.
                    in_flight.push(timed(core.log().produce(TOPIC, batch.clone(), Some(acks), None)));
                    out.max_in_flight = out.max_in_flight.max(in_flight.len());
                }
                () = budget.aborted() => break,
            }
        }
        // What was appended before the deadline is waited for and counted.
        while let Some(done) = in_flight.next().await {
            acked(&mut out, done)?;
        }
        Ok(out)
    }
}

/// Resolves when the next batch is due: at once without a pacer, else at
/// its paced time or the deadline, whichever is first. Dropped before then,
/// it leaves the pacer as it was.
async fn due(pacer: Option<&mut Pacer>, deadline: Option<Instant>) {
    if let Some(pacer) = pacer {
        pacer.wait(deadline).await;
    }
}

/// `call`'s output and how long it took, from its first poll.
async fn timed<F: Future>(call: F) -> (F::Output, Duration) {
    let started = Instant::now();
    let output = call.await;
    (output, started.elapsed())
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

    #[test]
    fn a_rate_is_shared_by_the_writers_in_whole_batches_on_staggered_schedules() {
        // 2000 records/s over 2 writers of 10-record batches: 100 batches/s
        // each, the second writer's schedule half an interval behind.
        let per_sec = writer_batch_rate(2000.0, 2, 10);
        assert!((per_sec - 100.0).abs() < 1e-9, "{per_sec}");
        assert_eq!(stagger(per_sec, 0, 2), Duration::ZERO);
        assert_eq!(stagger(per_sec, 1, 2), Duration::from_millis(5));
        // However low the rate, the interval stays at most a day.
        assert_eq!(writer_batch_rate(1e-300, 1024, 1 << 20), 1.0 / super::super::MAX_DURATION_SECS);
        let _ = stagger(writer_batch_rate(1e-300, 1024, 1 << 20), 1023, 1024);
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
            in_flight: 3,
            rate: None,
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
