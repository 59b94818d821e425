//! `brooklet bench consume`: N consumers, each assigned a disjoint share of
//! the topic's partitions by hand, read from the earliest offset up to where
//! each partition's log ended when the bench started (or until the record
//! count or duration is reached), and count records and bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use brooklet_client::{CommittedOffset, Offset};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::load::{self, Budget, Limit};
use super::report::{Latency, Meter, Progress, Summary};
use super::{BrokerArgs, Connect, ConsumeArgs};
use crate::cmd::count;

/// Most consumers one run may start.
const MAX_CONSUMERS: u32 = 1024;

/// One partition to read: from its log start to where it ended at the start.
#[derive(Clone, Copy, Debug)]
struct Span {
    partition: u32,
    start: u64,
    end: u64,
}

/// What one consumer read.
#[derive(Debug, Default)]
struct Read {
    records: u64,
    bytes: u64,
    /// The offset after the last record counted, per partition: what a group
    /// commits.
    next: BTreeMap<u32, u64>,
}

/// `brooklet bench consume`.
pub async fn run(args: ConsumeArgs, broker: &BrokerArgs) -> anyhow::Result<()> {
    let limit = args.run.limit(None)?;
    super::check_count("--consumers", u64::from(args.consumers), u64::from(MAX_CONSUMERS))?;
    ensure!(args.fetch_bytes > 0, "--fetch-bytes must be at least 1");
    if let Some(group) = &args.group {
        ensure!(!group.is_empty() && group.len() <= 255, "--group must be 1 to 255 bytes");
    }
    let connect = Connect::new(broker)?;
    let admin = connect.admin()?;
    let described = admin.describe_topic(&args.topic).await?;
    let partitions = described.info.partitions;
    ensure!(
        args.consumers <= partitions,
        "--consumers {} exceeds the {} of topic {:?}: each consumer needs one",
        args.consumers,
        count(partitions.into(), "partition"),
        args.topic
    );
    let spans: Vec<Span> = described
        .partitions
        .iter()
        .map(|p| Span { partition: p.partition, start: p.log_start_offset, end: p.high_watermark })
        .collect();
    let available: u64 = spans.iter().map(|s| s.end.saturating_sub(s.start)).sum();
    // Partitions are dealt by number, so each consumer gets its share whether
    // or not it holds records; empty ones are then left out.
    let shares: Vec<Vec<Span>> = load::deal(&spans, args.consumers as usize)
        .into_iter()
        .map(|share| share.into_iter().filter(|s| s.end > s.start).collect())
        .collect();

    let meter = Arc::new(Meter::default());
    let progress = Progress::start("consume", vec![("", Arc::clone(&meter))]);
    let started = Instant::now();
    let budget = Budget::start(limit);
    let mut tasks = JoinSet::new();
    for share in shares {
        let reader = Reader {
            connect: connect.clone(),
            topic: args.topic.clone(),
            fetch_bytes: args.fetch_bytes,
            budget: Arc::clone(&budget),
            meter: Arc::clone(&meter),
        };
        tasks.spawn(reader.read(share));
    }
    let reads = load::join_all(tasks, &budget).await;
    let elapsed = started.elapsed();
    progress.finish().await;
    let reads = reads?;

    if let Some(group) = &args.group {
        let offsets: Vec<CommittedOffset> = reads
            .iter()
            .flat_map(|r| r.next.iter().map(|(p, o)| CommittedOffset::new(args.topic.clone(), *p, *o)))
            .collect();
        if !offsets.is_empty() {
            admin
                .commit_offsets(group, &offsets)
                .await
                .with_context(|| format!("cannot commit the offsets read under group {group:?}"))?;
        }
    }

    let records: u64 = reads.iter().map(|r| r.records).sum();
    let mut summary = Summary {
        bench: "consume",
        config: vec![
            ("topic", args.topic.clone().into()),
            ("partitions", partitions.into()),
            ("consumers", args.consumers.into()),
            ("group", args.group.clone().into()),
            ("fetch_bytes", args.fetch_bytes.into()),
        ]
        .into_iter()
        .chain(connect.config())
        .collect(),
        records,
        bytes: reads.iter().map(|r| r.bytes).sum(),
        elapsed,
        latency: Latency::NotMeasured(
            "consume measures throughput only; see bench e2e for latency".to_owned(),
        ),
        extra: Vec::new(),
    };
    summary.extra("available", available);
    summary.extra(
        "stopped_by",
        match limit {
            Some(Limit::Records(n)) if records >= n => "records",
            Some(Limit::Duration(_)) if records < available => "duration",
            _ => "end of log",
        },
    );
    summary.print(args.json)
}

/// One consumer's settings.
#[derive(Debug)]
struct Reader {
    connect: Connect,
    topic: String,
    fetch_bytes: u32,
    budget: Arc<Budget>,
    meter: Arc<Meter>,
}

impl Reader {
    /// Reads `spans` until each is read to its end, or the budget runs out.
    async fn read(self, spans: Vec<Span>) -> anyhow::Result<Read> {
        let mut read = Read::default();
        if spans.is_empty() {
            return Ok(read);
        }
        let mut consumer = self
            .connect
            .consumer()
            .max_bytes(self.fetch_bytes)
            // Every partition read has records waiting, so a fetch rarely
            // waits; this bounds how long one that does holds up the end.
            .max_wait(Duration::from_millis(100))
            .build()?;
        let partitions: Vec<u32> = spans.iter().map(|s| s.partition).collect();
        consumer.assign(&self.topic, &partitions);
        for span in &spans {
            consumer.seek(&self.topic, span.partition, Offset::At(span.start))?;
        }
        let end: BTreeMap<u32, u64> = spans.iter().map(|s| (s.partition, s.end)).collect();
        let deadline = self.budget.deadline();
        loop {
            let done =
                spans.iter().all(|s| consumer.position(&self.topic, s.partition).is_some_and(|p| p >= s.end));
            if done {
                break;
            }
            let polled = tokio::select! {
                polled = consumer.poll() => polled?,
                () = self.budget.aborted() => break,
                () = sleep_until(deadline) => break,
            };
            let wanted: Vec<_> = polled.iter().filter(|r| r.offset < end[&r.partition]).collect();
            let granted = self.budget.claim(wanted.len() as u64) as usize;
            let mut bytes = 0u64;
            for record in &wanted[..granted] {
                bytes += (record.value.len() + record.key.as_ref().map_or(0, |k| k.len())) as u64;
                read.next.insert(record.partition, record.offset + 1);
            }
            read.records += granted as u64;
            read.bytes += bytes;
            self.meter.add(granted as u64, bytes);
            if granted < wanted.len() {
                break;
            }
        }
        Ok(read)
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
