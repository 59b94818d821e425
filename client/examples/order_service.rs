//! An order service: publishes orders as JSON to the `orders` topic, keyed by
//! customer id, so that one customer's orders land in one partition, in the
//! order they were placed.
//!
//! ```text
//! brooklet serve &
//! cargo run -p brooklet-client --example order_service -- [ENDPOINT] [ORDERS]
//! ```
//!
//! `ENDPOINT` defaults to `http://127.0.0.1:7070`, `ORDERS` to 1000. Ctrl-C
//! stops taking orders; either way the service closes its producer before it
//! exits, so every order sent is acknowledged, or reported as failed.

use std::time::Duration;

use brooklet_client::{Admin, Delivery, NewTopic, Producer, ProducerRecord};

const TOPIC: &str = "orders";

/// An order as the service publishes it.
struct Order {
    id: u64,
    customer_id: String,
    amount_cents: u64,
}

impl Order {
    /// The order's JSON. The ids are made of letters, digits and dashes, so
    /// nothing needs escaping.
    fn to_json(&self) -> String {
        format!(
            r#"{{"order_id":{},"customer_id":"{}","amount_cents":{}}}"#,
            self.id, self.customer_id, self.amount_cents
        )
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "http://127.0.0.1:7070".to_owned());
    let orders: u64 = match args.next() {
        Some(n) => n.parse()?,
        None => 1000,
    };

    Admin::connect(&endpoint)?.create_topic_if_missing(TOPIC, NewTopic::new(4)).await?;

    let producer = Producer::builder(&endpoint)
        // A safety net only, for a path that would miss `close()` below (a
        // panic, say): dropping the producer then waits up to 10 s for what
        // it holds. `close().await` is still the way out.
        .flush_on_drop(Duration::from_secs(10))
        .build()?;

    let mut deliveries = Vec::new();
    let published = tokio::select! {
        published = publish(&producer, orders, &mut deliveries) => published,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: closing the producer");
            Ok(())
        }
    };
    // Sends what is still buffered and waits for it, on every path: after
    // the last order, on ctrl-c and after an error.
    let closed = producer.close().await;

    let sent = deliveries.len();
    let mut failed = 0;
    for delivery in deliveries {
        // Each already resolved: `close` waited for them.
        if let Err(err) = delivery.await {
            failed += 1;
            eprintln!("an order was not published: {err}");
        }
    }
    println!("{} orders published, {failed} failed", sent - failed);
    published?;
    closed?;
    Ok(())
}

/// Sends `orders` orders, keeping each one's delivery.
async fn publish(
    producer: &Producer,
    orders: u64,
    deliveries: &mut Vec<Delivery>,
) -> brooklet_client::Result<()> {
    for id in 0..orders {
        let order =
            Order { id, customer_id: format!("customer-{}", id % 17), amount_cents: 100 + id * 7 % 5000 };
        let record = ProducerRecord::new(order.to_json()).key(order.customer_id.clone());
        deliveries.push(producer.send(TOPIC, record).await?);
    }
    Ok(())
}
