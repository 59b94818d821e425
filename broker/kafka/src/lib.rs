//! The Kafka wire-protocol adapter: Kafka requests in, calls on the core's
//! handle, Kafka responses out, so that existing Kafka clients produce to
//! and consume from Brooklet unchanged. The only crate that knows
//! `kafka-protocol`.
//!
//! - [`serve`]: the accept loop on a listener it is given, until shutdown;
//!   one task per connection.
//! - `frame`: size-prefixed frames, request headers, version checks,
//!   encoding a response for the version the request named.
//! - `api`: ApiVersions, Metadata, Produce (idempotent too), Fetch,
//!   ListOffsets and InitProducerId over the core.
//! - `groups`: FindCoordinator, the classic group protocol (JoinGroup,
//!   SyncGroup, Heartbeat, LeaveGroup), OffsetCommit, OffsetFetch,
//!   ListGroups, DescribeGroups and DeleteGroups over the core's groups.
//! - `admin`: CreateTopics, DeleteTopics and DescribeConfigs.
//! - `records`: RecordBatch v2 ⇄ the core's records, compressed or not on
//!   produce, uncompressed on fetch; header names may repeat.
//! - `compression`: gzip, snappy, lz4 and zstd, never decompressing past
//!   a limit.
//! - `sasl`: SaslHandshake and SaslAuthenticate (PLAIN, SCRAM-SHA-256/512)
//!   when `--auth required`; nothing else is served before them.
//! - `authz`: who sent a request; each API authorizes it for that principal
//!   (per topic, partition or group, before any lookup), denials logged and
//!   counted.
//! - `error`: core errors → Kafka error codes, in one place.
//! - `walk`: checks every array of a request against the bytes that must
//!   hold it, before decoding (which would reserve memory for the count).
//!
//! Not yet: transactions, static group membership.

#![warn(unreachable_pub)]

mod admin;
mod api;
mod authz;
mod codes;
mod compression;
mod error;
mod frame;
#[cfg(test)]
mod fuzz_tests;
mod groups;
mod records;
mod sasl;
mod server;
mod walk;

pub use server::{KafkaOptions, serve};
