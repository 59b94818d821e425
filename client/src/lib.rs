//! A Rust client for Brooklet: a batching [`Producer`], a polling
//! [`Consumer`] and an [`Admin`] for topics and committed offsets.
//!
//! ```no_run
//! use brooklet_client::{Admin, Consumer, NewTopic, Producer, ProducerRecord};
//!
//! # async fn example() -> brooklet_client::Result<()> {
//! let endpoint = "http://127.0.0.1:7070";
//!
//! let admin = Admin::connect(endpoint)?;
//! admin.create_topic("orders", NewTopic::new(4)).await?;
//!
//! let producer = Producer::builder(endpoint).build()?;
//! let sent = producer
//!     .send("orders", ProducerRecord::new("shipped").key("order-42"))
//!     .await? // joined a batch
//!     .await?; // acknowledged
//! println!("written to partition {} at offset {}", sent.partition, sent.offset);
//! producer.close().await?;
//!
//! let mut consumer = Consumer::builder(endpoint).group("billing").build()?;
//! consumer.assign_all("orders").await?;
//! for record in consumer.poll().await? {
//!     println!("{}/{} @{}: {:?}", record.topic, record.partition, record.offset, record.value);
//! }
//! consumer.commit().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Clients are built without touching the network: they connect on their
//! first call, so building one never fails because the broker is down. Every
//! call has a deadline, the request timeout (30 s by default), and calls that
//! are safe to repeat are retried with jittered exponential backoff while the
//! broker is unreachable, until that deadline.
//!
//! # Code map
//!
//! - `error`: [`Error`], and the one conversion from a gRPC status to it.
//! - `connection`: endpoint → tonic channel; deadlines, retries and backoff.
//!   Knows nothing of records.
//! - `record`: the public record types, and their conversions to and from
//!   the wire types. No other public type mentions a proto type.
//! - `admin`: [`Admin`]: topics and committed offsets. The producer and
//!   consumer use it for metadata and offsets.
//! - `producer`: [`Producer`] and its background sender task;
//!   `producer::accumulator` holds the batching state and is pure
//!   bookkeeping (no I/O, no clock of its own).
//! - `consumer`: [`Consumer`]: positions, concurrent fetches, commits. No
//!   background task.
#![warn(missing_docs)]

mod admin;
mod connection;
mod consumer;
mod error;
mod producer;
mod record;

pub use admin::{
    Admin, AdminBuilder, CommittedOffset, NewTopic, PartitionOffsets, TopicDescription, TopicInfo,
};
pub use consumer::{Consumer, ConsumerBuilder, Offset};
pub use error::{Error, Result};
pub use producer::{Delivery, Producer, ProducerBuilder};
pub use record::{ConsumerRecord, Durability, Header, ProducerRecord, RecordMetadata};
