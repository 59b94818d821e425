//! Brooklet: a single-binary message broker on sled with a gRPC API.
//!
//! # Code map
//!
//! A request flows `server` → `grpc` → `log` / `group` → `storage`; nothing
//! below calls up.
//!
//! - [`server`]: binds nothing itself; [`run`] serves a bound listener until a
//!   shutdown future resolves, then drains and flushes. [`EmbeddedBroker`]
//!   starts one in-process for tests.
//! - `connection`: accepted connections, the connection limit and each
//!   connection's places for requests in flight.
//! - `grpc`: tonic services, proto ⇄ domain conversion, `Error` → `Status`.
//! - [`log`]: topics and partitions; offsets, reads, waiting for data,
//!   retention, compaction, idempotent producers.
//! - [`group`]: consumer groups: membership, assignment, committed offsets.
//! - [`storage`]: the only module that names sled: keys, batch layout, trees.
//! - [`record`]: records and batches as appended, stored and served.
//! - [`metrics`]: the Prometheus registry, the `/metrics`, `/healthz` and
//!   `/readyz` HTTP server, and the tower layer counting gRPC requests; it
//!   reads `log` and `group` at scrape time, and they know nothing of it.
//! - [`config`], [`error`]: validated configuration; the typed error.
//!
//! # Embedding a broker in a test
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let broker = brooklet_broker::EmbeddedBroker::start().await?;
//! println!("broker listening at {}", broker.endpoint());
//! broker.shutdown().await?;
//! # Ok(())
//! # }
//! ```

pub mod config;
mod connection;
pub mod error;
pub mod group;
mod grpc;
pub mod log;
pub mod metrics;
pub mod record;
pub mod server;
pub mod storage;

pub use config::{Config, Limits};
pub use error::{Error, Result};
pub use server::{EmbeddedBroker, Listeners, ServeError, run};
