//! A Rust client for Brooklet: a batching [`Producer`], a polling
//! [`Consumer`] that reads partitions it assigns itself or that its consumer
//! group assigns it, and an [`Admin`] for topics, groups and offsets.
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
//! println!("written to partition {} at offset {:?}", sent.partition, sent.offset);
//! producer.close().await?;
//!
//! // The broker spreads the partitions over the group's members.
//! let mut consumer = Consumer::builder(endpoint).group("billing").build()?;
//! consumer.subscribe(&["orders"])?;
//! for record in consumer.poll().await? {
//!     println!("{}/{} @{}: {:?}", record.topic, record.partition, record.offset, record.value);
//! }
//! consumer.close().await?; // commits, then leaves the group
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
//! Keys, values and header values are anything [`IntoBytes`]: `Bytes`,
//! `Vec<u8>` and `String` move in, borrowed `&str` and `&[u8]` are copied.
//! Failures are an [`Error`]; the broker's answers that fit no other variant
//! carry the client's own gRPC [`Code`], so matching on them needs no tonic
//! dependency.
//!
//! # Features
//!
//! - `json` (off by default): `ProducerRecord::json` serializes a value into
//!   a record and `ConsumerRecord::json` deserializes one, with serde and
//!   serde_json.
//!
//! # Endpoints and circuit breakers
//!
//! A client may be given several endpoints (`builder("http://a:7070,http://b:7070")`,
//! or the builders' `endpoints`), tried in order: a call that cannot connect
//! to one moves on to the next, so a standby broker takes over. Each
//! endpoint has a circuit breaker ([`Breakers`], from `breakers()` on every
//! client): 5 connection failures in a row open it, and calls then skip the
//! endpoint until, after a cool-down (250 ms, doubling up to 2 s), one call
//! is let through to try it again. When every breaker is open, a call fails
//! at once ([`Error::CircuitOpen`]), except a call that may be retried to an
//! endpoint that has answered before: the broker is likely restarting, so
//! it waits for the breaker to let it through, within its deadline. So a
//! client pointed at the wrong port learns it within a second, while the
//! producer's and consumer's background work rides out a restart. An
//! endpoint that answers HTTP but not gRPC, such as the broker's metrics
//! port, fails with [`Error::NotBrooklet`].
//!
//! # Code map
//!
//! - `error`: [`Error`] and [`Code`], and the one conversion from a gRPC
//!   status to them. Nothing public mentions a tonic type.
//! - `connection`: endpoints → tonic channels; deadlines, retries, backoff
//!   and failover. Knows nothing of records.
//! - `breaker`: the circuit breakers, one per endpoint: a state machine with
//!   no I/O and no clock of its own, and [`Breakers`], how programs see them.
//! - `record`: the public record types and [`IntoBytes`], their JSON
//!   helpers, and their conversions to and from the wire types. No other
//!   public type mentions a proto type.
//! - `admin`: [`Admin`]: topics, groups and offsets. The producer and
//!   consumer use it for metadata and offsets.
//! - `group`: the public types `Admin` shows groups with, and their
//!   conversions from the wire types. No I/O.
//! - `producer`: [`Producer`] and its background sender task;
//!   `producer::accumulator` holds the batching state and is pure
//!   bookkeeping (no I/O, no clock of its own).
//! - `consumer`: [`Consumer`]: concurrent fetches and commits.
//!   `consumer::positions` is the bookkeeping of positions (pure, no I/O);
//!   `consumer::membership` is a subscribed consumer's one background task
//!   (heartbeats, assignment, commits, leaving), the only writer of the set
//!   of partitions it owns. A consumer assigned by hand has no task.
#![warn(missing_docs)]

mod acl;
mod admin;
mod breaker;
mod connection;
mod consumer;
mod error;
mod group;
mod producer;
mod record;
mod tls;

pub use acl::{AclEntry, AclFilter, AclOperation, AclPattern, AclPermission, AclResourceType};
pub use admin::{
    Admin, AdminBuilder, BrokerStatus, CommittedOffset, GroupStatus, ListenerStatus, NewTopic,
    PartitionOffsets, TopicDescription, TopicInfo, TopicStatus,
};
pub use breaker::{BreakerConfig, BreakerState, Breakers, EndpointBreaker};
pub use consumer::{
    AutoOffsetReset, Consumer, ConsumerBuilder, ConsumerStream, MissingTopics, Offset, RebalanceEvent,
    RebalanceEvents,
};
pub use error::{Code, Error, Result};
pub use group::{GroupDescription, GroupMember, GroupState, GroupSummary, PartitionLag, ResetTo, TimeOffset};
pub use producer::{Delivery, Producer, ProducerBuilder};
pub use record::{ConsumerRecord, Durability, Header, IntoBytes, ProducerRecord, RecordMetadata};
pub use tls::{TlsFailure, TlsOptions};

/// Helpers shared by the unit tests.
#[cfg(test)]
mod test_support {
    /// A loopback address that refuses connections for as long as the
    /// returned socket lives: bound, never listening, so the OS hands its
    /// port to no other test meanwhile (a port freed by closing a listener
    /// could be).
    pub(crate) fn refusing_addr() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.bind(([127, 0, 0, 1], 0).into()).expect("bind a loopback port");
        let addr = socket.local_addr().expect("the bound address");
        (socket, addr)
    }
}
