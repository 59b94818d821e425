//! `brooklet produce`: one record per line of standard input. Exits 0 only
//! when every line was acknowledged with the requested guarantee (with
//! `--acks none`: sent).

use std::collections::VecDeque;

use brooklet_client::{Delivery, Durability, Producer, ProducerRecord};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{BrokerArgs, ProduceArgs, count, stdout};

/// Deliveries awaited at once; older ones are awaited as new lines arrive, so
/// memory stays bounded whatever the input's length.
const MAX_PENDING: usize = 10_000;

pub async fn run(args: ProduceArgs, broker: BrokerArgs) -> anyhow::Result<()> {
    let acks = match args.acks.as_str() {
        "none" => Durability::None,
        "written" => Durability::Written,
        _ => Durability::Durable,
    };
    let builder = broker
        .tls_on(Producer::builder(&broker.url), brooklet_client::ProducerBuilder::tls)?
        .request_timeout(broker.timeout())
        .acks(acks);
    let producer = broker.authenticate(builder, |b, u, p| b.credentials(u, p))?.build()?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending: VecDeque<Delivery> = VecDeque::new();
    let (mut read, mut acked) = (0u64, 0u64);
    let mut failure = None;
    while let Some(line) = lines.next_line().await? {
        read += 1;
        let mut record = match (&args.key, &args.key_separator) {
            (Some(key), _) => ProducerRecord::new(line).key(key.clone()),
            (None, Some(sep)) => match line.split_once(sep.as_str()) {
                Some((key, value)) => ProducerRecord::new(value.to_owned()).key(key.to_owned()),
                None => ProducerRecord::new(line),
            },
            (None, None) => ProducerRecord::new(line),
        };
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        match producer.send(&args.topic, record).await {
            Ok(delivery) => pending.push_back(delivery),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if pending.len() >= MAX_PENDING {
            let delivery = pending.pop_front().expect("pending is not empty");
            match delivery.await {
                Ok(_) => acked += 1,
                Err(e) => failure = failure.or(Some(e)),
            }
        }
    }
    for delivery in pending {
        match delivery.await {
            Ok(_) => acked += 1,
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    // With `--acks none` the deliveries resolved as their batches went out:
    // wait for the broker's answers before the process exits.
    producer.close().await?;
    // Fire and forget has nothing acknowledged to report, only records sent.
    let done = if acks == Durability::None { "sent, not acknowledged" } else { "acknowledged" };
    let guarantee = acks.name();
    match failure {
        None => {
            writeln!(stdout(), "{} {done} ({guarantee})", count(acked, "record"))?;
            Ok(())
        }
        // No guarantee to name when nothing was acknowledged.
        Some(e) if acked == 0 => {
            Err(anyhow::Error::new(e)
                .context(format!("0 of {} {done}; first failure", count(read, "record"))))
        }
        Some(e) => Err(anyhow::Error::new(e)
            .context(format!("{acked} of {} {done} ({guarantee}); first failure", count(read, "record")))),
    }
}
