//! `brooklet consume`: prints records one per line, as text or JSON. Without
//! `--follow` it stops at the end of the log as it was when it started.
//!
//! With `--group` and no `--partition` it joins the group, which assigns its
//! partitions; with `--partition` it reads that partition and commits under
//! the group (allowed while the group has no live members). Either way a
//! group commits exactly what was printed, and SIGINT (ctrl-c) or SIGTERM
//! stops cleanly: the consumer commits and leaves its group, and exits 0.
//! So does a standard output that fails, such as a pipe whose reader left
//! (`| head`): noticed at once while waiting for records, at the next
//! write otherwise; that too exits 0.

use std::collections::BTreeMap;
use std::io::Write;

use brooklet_client::{Admin, CommittedOffset, Consumer, ConsumerBuilder, ConsumerRecord, Offset};

use super::{BrokerArgs, ConsumeArgs, Format, From, count, stop};

pub async fn run(args: ConsumeArgs, broker: BrokerArgs) -> anyhow::Result<()> {
    // Before anything else, so that a signal from now on stops the command
    // cleanly rather than ending the process.
    let mut stopped = std::pin::pin!(stop::signal());
    let timeout = broker.timeout();
    let admin = broker.admin()?;
    let described = tokio::select! {
        described = admin.describe_topic(&args.topic) => described?,
        _ = &mut stopped => return Ok(()),
    };
    if let Some(p) = args.partition.filter(|p| *p >= described.info.partitions) {
        anyhow::bail!(
            "topic `{}` has {}; there is no partition {p}",
            args.topic,
            count(described.info.partitions.into(), "partition")
        );
    }
    // Where each partition's log ended when we started: without --follow,
    // that is where reading stops.
    let end: BTreeMap<u32, u64> =
        described.partitions.iter().map(|p| (p.partition, p.high_watermark)).collect();
    let member = args.group.is_some() && args.partition.is_none();

    let mut builder = broker.authenticate(
        broker.tls_on(Consumer::builder(&broker.url), ConsumerBuilder::tls)?.request_timeout(timeout),
        |b, u, p| b.credentials(u, p),
    )?;
    if let Some(group) = &args.group {
        // Commits are made here, for exactly what was printed.
        builder = builder.group(group.clone()).auto_commit(None);
    }
    let mut consumer = builder.build()?;
    let start = match (args.from, &args.group) {
        (Some(From::Earliest), _) | (None, None) => Offset::Earliest,
        (Some(From::Latest), _) => Offset::Latest,
        (Some(From::Offset(o)), _) => Offset::At(o),
        (None, Some(_)) => Offset::Committed,
    };
    if member {
        consumer.subscribe(&[args.topic.as_str()])?;
        let joined = tokio::select! {
            joined = consumer.await_joined() => Some(joined?),
            _ = &mut stopped => None,
        };
        let Some(assigned) = joined else {
            // Stopped while joining: leave, with nothing printed to commit.
            consumer.close().await?;
            return Ok(());
        };
        if args.from.is_some() {
            for (topic, p) in assigned {
                consumer.seek(&topic, p, start)?;
            }
        }
    } else {
        let partitions: Vec<u32> = match args.partition {
            Some(p) => vec![p],
            None => (0..described.info.partitions).collect(),
        };
        consumer.assign(&args.topic, &partitions);
        for &p in &partitions {
            consumer.seek(&args.topic, p, start)?;
        }
    }

    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    // The offset after the last printed record of each partition: what a
    // group commits, so a record is committed only once it was printed.
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    // The first offset `poll` returned but that was not printed (past the
    // end, or cut by --count), per partition: a member gives it back before
    // committing, since its consumer commits what `poll` returned.
    let mut unprinted: BTreeMap<u32, u64> = BTreeMap::new();
    // A write that fails (the reader closed the pipe, the disk is full)
    // stops the reading like a signal: what was printed before it is still
    // committed, and the error is returned after. A reader that leaves
    // while the consumer waits for records counts as such a write.
    let mut written: std::io::Result<()> = Ok(());
    let mut reader_gone = std::pin::pin!(stop::stdout_reader_gone());
    'read: loop {
        if !args.follow && caught_up(&consumer, &args.topic, &end) {
            break;
        }
        let records = tokio::select! {
            records = consumer.poll() => records?,
            _ = &mut stopped => break,
            () = &mut reader_gone => {
                written = Err(std::io::ErrorKind::BrokenPipe.into());
                break;
            }
        };
        for record in &records {
            let cut = args.count.is_some_and(|c| printed >= c);
            let past_end = !args.follow && record.offset >= end[&record.partition];
            if cut || past_end || written.is_err() {
                unprinted.entry(record.partition).or_insert(record.offset);
                continue;
            }
            if let Err(e) = print_record(&mut out, record, args.format) {
                written = Err(e);
                unprinted.entry(record.partition).or_insert(record.offset);
                continue;
            }
            printed += 1;
            next.insert(record.partition, record.offset + 1);
        }
        if written.is_ok() {
            written = out.flush();
        }
        if written.is_err() || args.count.is_some_and(|c| printed >= c) {
            break 'read;
        }
        if args.follow && !records.is_empty() {
            commit(&mut consumer, &admin, &args, &next, &mut unprinted, member).await?;
        }
    }
    if written.is_ok() {
        written = out.flush();
    }
    commit(&mut consumer, &admin, &args, &next, &mut unprinted, member).await?;
    if member {
        consumer.close().await?;
    }
    written.map_err(super::output_error)
}

/// Whether every partition the consumer reads has reached where its log
/// ended at start.
fn caught_up(consumer: &Consumer, topic: &str, end: &BTreeMap<u32, u64>) -> bool {
    consumer.assignment().iter().filter(|(t, _)| t == topic).all(|(_, p)| {
        let end = end.get(p).copied().unwrap_or(0);
        end == 0 || consumer.position(topic, *p).is_some_and(|pos| pos >= end)
    })
}

/// Commits what was printed, if there is a group.
async fn commit(
    consumer: &mut Consumer,
    admin: &Admin,
    args: &ConsumeArgs,
    next: &BTreeMap<u32, u64>,
    unprinted: &mut BTreeMap<u32, u64>,
    member: bool,
) -> anyhow::Result<()> {
    let Some(group) = &args.group else { return Ok(()) };
    if member {
        // The consumer commits what `poll` returned; records returned but
        // not printed are given back first.
        let owned = consumer.assignment();
        for (p, offset) in std::mem::take(unprinted) {
            if owned.iter().any(|(t, q)| *t == args.topic && *q == p) {
                consumer.seek(&args.topic, p, Offset::At(offset))?;
            }
        }
        return Ok(consumer.commit().await?);
    }
    if next.is_empty() {
        return Ok(());
    }
    let offsets: Vec<_> =
        next.iter().map(|(p, o)| CommittedOffset::new(args.topic.as_str(), *p, *o)).collect();
    Ok(admin.commit_offsets(group, &offsets).await?)
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
