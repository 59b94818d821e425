//! An inventory service: a member of the consumer group `inventory` that
//! reads the orders the order service publishes (`order_service.rs`),
//! reserves stock for each, and commits what it has processed. Run several:
//! the broker shares the topic's partitions among them, and moves a
//! member's partitions to the others when it stops.
//!
//! ```text
//! brooklet serve &
//! cargo run -p brooklet-client --example inventory_service -- [ENDPOINT]
//! ```
//!
//! Commits are manual, after each chunk of at most 100 records is processed,
//! so a crash re-reads at most one chunk and never skips an order. Ctrl-C
//! commits what was processed and leaves the group, so the partitions move
//! at once instead of after the session timeout.

use std::collections::HashMap;

use brooklet_client::{Admin, Consumer, ConsumerRecord, NewTopic};

const TOPIC: &str = "orders";
const GROUP: &str = "inventory";

/// Units reserved per customer, as far as this member has seen.
#[derive(Debug, Default)]
struct Reservations {
    orders_by_customer: HashMap<String, u64>,
}

impl Reservations {
    /// Reserves stock for one order. The order's key is its customer id.
    fn apply(&mut self, record: &ConsumerRecord) {
        let customer = record.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned());
        *self.orders_by_customer.entry(customer.unwrap_or_default()).or_default() += 1;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let endpoint = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:7070".to_owned());

    Admin::connect(&endpoint)?.create_topic_if_missing(TOPIC, NewTopic::new(4)).await?;
    let mut consumer = Consumer::builder(&endpoint)
        .group(GROUP)
        // Commit by hand, after processing: nothing is committed unprocessed.
        .auto_commit(None)
        .max_poll_records(100)
        .build()?;
    consumer.subscribe(&[TOPIC])?;
    let assigned = consumer.await_joined().await?;
    eprintln!("joined group {GROUP}: {} partitions of {TOPIC}", assigned.len());

    let mut reservations = Reservations::default();
    let mut processed = 0u64;
    loop {
        // `poll` is cancel-safe: ctrl-c between two polls, or during one,
        // loses no record (see the Consumer docs, "Cancellation").
        let records = tokio::select! {
            records = consumer.poll() => records?,
            _ = tokio::signal::ctrl_c() => break,
        };
        for record in &records {
            reservations.apply(record);
        }
        processed += records.len() as u64;
        if !records.is_empty() {
            consumer.commit().await?;
        }
    }
    // Commits what was processed and leaves the group.
    consumer.close().await?;
    eprintln!(
        "processed {processed} orders for {} customers; committed and left the group",
        reservations.orders_by_customer.len()
    );
    Ok(())
}
