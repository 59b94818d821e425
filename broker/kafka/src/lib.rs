//! The Kafka wire-protocol adapter: Kafka requests in, calls on the core's
//! handle, Kafka responses out, so that existing Kafka clients produce to
//! and consume from Brooklet unchanged. The only crate that knows
//! `kafka-protocol`.
//!
//! - [`serve`]: the accept loop on a listener it is given, until shutdown;
//!   one task per connection.
//! - `frame`: size-prefixed frames, request headers, version checks,
//!   encoding a response for the version the request named.
//! - `api`: ApiVersions, Metadata, Produce, Fetch and ListOffsets over the
//!   core.
//! - `records`: RecordBatch v2 ⇄ the core's records.
//! - `error`: core errors → Kafka error codes, in one place.
//!
//! Not yet: consumer groups, idempotent and transactional producers,
//! compressed batches.

#![warn(unreachable_pub)]

mod api;
mod error;
mod frame;
mod records;
mod server;

pub use server::{KafkaOptions, serve};
