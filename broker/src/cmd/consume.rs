//! `brooklet consume`: prints records one per line, as text or JSON. Without
//! `--follow` it stops at the end of the log as it was when it started.

use std::collections::BTreeMap;
use std::io::Write;

use brooklet_client::{Admin, CommittedOffset, Consumer, ConsumerRecord, Offset};

use super::{ConsumeArgs, Format, From};

pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let timeout = args.broker.timeout();
    let admin = Admin::builder(&args.broker.url).request_timeout(timeout).build()?;
    let described = admin.describe_topic(&args.topic).await?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p >= described.info.partitions => anyhow::bail!(
            "topic `{}` has {} partitions; there is no partition {p}",
            args.topic,
            described.info.partitions
        ),
        Some(p) => vec![p],
        None => (0..described.info.partitions).collect(),
    };
    // Where each partition's log ended when we started: without --follow,
    // that is where reading stops.
    let end: BTreeMap<u32, u64> =
        described.partitions.iter().map(|p| (p.partition, p.high_watermark)).collect();

    let mut builder = Consumer::builder(&args.broker.url).request_timeout(timeout);
    if let Some(group) = &args.group {
        builder = builder.group(group.clone());
    }
    let mut consumer = builder.build()?;
    consumer.assign(&args.topic, &partitions);
    let start = match (args.from, &args.group) {
        (Some(From::Earliest), _) | (None, None) => Offset::Earliest,
        (Some(From::Latest), _) => Offset::Latest,
        (Some(From::Offset(o)), _) => Offset::At(o),
        (None, Some(_)) => Offset::Committed,
    };
    for &p in &partitions {
        consumer.seek(&args.topic, p, start)?;
    }

    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    // The offset after the last printed record of each partition: what a
    // group commits, so a record is committed only once it was printed.
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    'read: loop {
        if !args.follow && caught_up(&consumer, &args.topic, &partitions, &end) {
            break;
        }
        let records = consumer.poll().await?;
        for record in &records {
            if args.count.is_some_and(|c| printed >= c) {
                break 'read;
            }
            if !args.follow && record.offset >= end[&record.partition] {
                continue;
            }
            print_record(&mut out, record, args.format)?;
            printed += 1;
            next.insert(record.partition, record.offset + 1);
        }
        out.flush()?;
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
        if args.follow && !records.is_empty() {
            commit(&admin, args.group.as_deref(), &args.topic, &next).await?;
        }
    }
    out.flush()?;
    commit(&admin, args.group.as_deref(), &args.topic, &next).await
}

/// Commits what was printed for `group`, if there is one.
async fn commit(
    admin: &Admin,
    group: Option<&str>,
    topic: &str,
    next: &BTreeMap<u32, u64>,
) -> anyhow::Result<()> {
    let Some(group) = group else { return Ok(()) };
    if next.is_empty() {
        return Ok(());
    }
    let offsets: Vec<_> = next.iter().map(|(p, o)| CommittedOffset::new(topic, *p, *o)).collect();
    Ok(admin.commit_offsets(group, &offsets).await?)
}

/// Whether every partition's position has reached where its log ended.
fn caught_up(consumer: &Consumer, topic: &str, partitions: &[u32], end: &BTreeMap<u32, u64>) -> bool {
    partitions.iter().all(|p| consumer.position(topic, *p).is_some_and(|pos| pos >= end[p]) || end[p] == 0)
}

fn print_record(out: &mut impl Write, r: &ConsumerRecord, format: Format) -> std::io::Result<()> {
    match format {
        Format::Text => writeln!(out, "{}", String::from_utf8_lossy(&r.value)),
        Format::Json => {
            let headers: Vec<_> = r
                .headers
                .iter()
                .map(|h| serde_json::json!({ "name": h.name, "value": String::from_utf8_lossy(&h.value) }))
                .collect();
            let line = serde_json::json!({
                "partition": r.partition,
                "offset": r.offset,
                "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k)),
                "value": String::from_utf8_lossy(&r.value),
                "headers": headers,
                "timestamp": r.timestamp_ms,
            });
            writeln!(out, "{line}")
        }
    }
}
