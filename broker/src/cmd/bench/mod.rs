//! `brooklet bench`: load generators and yardsticks.
//!
//! `produce`, `consume` and `e2e` drive a running broker through
//! `brooklet-client`, as an application would; `storage` drives the log and
//! storage engine in-process, with no network, which is the ceiling the
//! broker is measured against; `disk` measures the file system beneath them.
//! Each prints one progress line a second to stderr, then a summary to stdout
//! (text, or exactly one JSON object with `--json`).
//!
//! They reach the broker as every client command does (`--broker`,
//! `--timeout`, `--tls-ca`, `--tls-client-cert`/`--tls-client-key`, `--user`
//! with BROOKLET_PASSWORD), through one [`Connect`] made from those flags.
//!
//! Arguments are parsed by clap into the `*Args` structs here, then
//! validated into each command's plan before anything touches the network or
//! the disk. Every load loop is bounded by a record count or a deadline, and
//! every queue between tasks is bounded. Nothing in the broker calls this.

mod consume;
mod disk;
mod e2e;
mod load;
mod produce;
mod report;
mod storage;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure};
use brooklet_client::{
    Admin, AdminBuilder, Consumer, ConsumerBuilder, Durability, Producer, ProducerBuilder, TlsOptions,
};
use clap::{Args, Subcommand, ValueEnum};

use super::BrokerArgs;
use load::Limit;

/// The topic the broker benches use when none is named.
const DEFAULT_TOPIC: &str = "brooklet-bench";
/// The longest run accepted, so a typo cannot start a run of days.
const MAX_DURATION_SECS: f64 = 24.0 * 3600.0;
/// The largest batch accepted: the broker's default request size limit.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// Batches a `bench storage` writer keeps in flight by default: as many as
/// the client's producer pipelines to one partition
/// (`MAX_IN_FLIGHT_PER_PARTITION` in `brooklet-client`, for an idempotent
/// producer, which it is by default).
const DEFAULT_STORAGE_IN_FLIGHT: usize = 4;

/// `brooklet bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Produce to a broker: records/s, MB/s, send-to-ack latency.
    ///
    /// N producers (one client `Producer` each) send random, incompressible
    /// values; each record is timed from `send` to the broker's
    /// acknowledgement. MB/s counts 10^6 bytes of key + value.
    Produce(ProduceArgs),
    /// Read a topic from its start: records/s, MB/s.
    ///
    /// N consumers, each assigned a share of the partitions, read from the
    /// earliest offset to where the log ended when the bench started. MB/s
    /// counts 10^6 bytes of key + value.
    Consume(ConsumeArgs),
    /// Produce and consume at once: records/s, MB/s, send-to-receive latency.
    ///
    /// Each value starts with the time it was sent (8 bytes, µs since the
    /// Unix epoch); consumers subtract it from the time they receive it.
    /// MB/s counts 10^6 bytes of key + value received.
    E2e(E2eArgs),
    /// The disk's limits: synced sequential MB/s, append + fdatasync latency.
    ///
    /// Sequential writes with `fdatasync` after every MiB (MB/s in 10^6
    /// bytes), then 4 KiB appends each followed by `fdatasync`, timed.
    Disk(DiskArgs),
    /// The storage engine alone, in-process: records/s, MB/s, batch latency.
    ///
    /// Opens the log and storage in a temporary directory, no network, and N
    /// writers append batches through the log, each with several batches in
    /// flight as the client pipelines them, durable by default, sharing
    /// flushes (group commit); as fast as the engine takes them, or at a
    /// paced rate. MB/s counts 10^6 bytes of values.
    Storage(StorageArgs),
}

/// How long a load runs: a record count or a duration, not both.
#[derive(Debug, Args)]
pub struct RunFor {
    /// Stop after this many records in total.
    #[arg(long, value_name = "N")]
    pub records: Option<u64>,
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub duration: Option<f64>,
}

/// What producers send, and how: shared by `produce` and `e2e`.
#[derive(Debug, Args)]
pub struct ProducerOpts {
    /// Topic to produce to; created if missing.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    pub topic: String,
    /// Partitions of the topic if it is created (default: one per producer,
    /// or per consumer if more). An existing topic keeps its own.
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Concurrent producers, one client `Producer` each.
    #[arg(long, default_value_t = 1)]
    pub producers: u32,
    /// Bytes of each record's value: random, incompressible.
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub record_size: usize,
    /// Bytes of each record's key; 0 sends no key, and records go to the
    /// partitions in turn instead of by key.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub key_size: usize,
    /// How long a batch waits for more records, in ms.
    #[arg(long, value_name = "MS", default_value_t = 5)]
    pub linger_ms: u64,
    /// A batch is sent once it holds this many bytes.
    #[arg(long, value_name = "B", default_value_t = 256 * 1024)]
    pub batch_bytes: usize,
    /// The acknowledgement to wait for: `durable` (on disk), `written` (in
    /// the storage engine), or `none` (written, but deliveries are not
    /// awaited, so no latency is measured).
    #[arg(long, value_enum, default_value_t = AckMode::Durable)]
    pub acks: AckMode,
    /// Target total rate in records/s, spread over the producers (default:
    /// as fast as the broker takes them).
    #[arg(long, value_name = "RECORDS_PER_SEC", allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Records per producer sent and not yet acknowledged, at most (not
    /// with `--acks none`, which awaits no acknowledgement).
    #[arg(long, value_name = "N", default_value_t = 32_768)]
    pub max_in_flight: usize,
}

/// The acknowledgement a producer bench waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AckMode {
    /// Flushed and fdatasync'd before the ack.
    Durable,
    /// In the storage engine, not yet flushed.
    Written,
    /// Fire and forget: the producer does not wait for the broker's answers.
    None,
}

impl AckMode {
    fn durability(self) -> Durability {
        match self {
            AckMode::Durable => Durability::Durable,
            AckMode::Written => Durability::Written,
            AckMode::None => Durability::None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            AckMode::Durable => "durable",
            AckMode::Written => "written",
            AckMode::None => "none",
        }
    }
}

/// `brooklet bench produce`.
#[derive(Debug, Args)]
#[command(after_help = "MB = 10^6 bytes. Without --records or --duration, runs for 10 seconds.")]
pub struct ProduceArgs {
    #[command(flatten)]
    pub producer: ProducerOpts,
    #[command(flatten)]
    pub run: RunFor,
    /// Print exactly one JSON object on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

/// `brooklet bench consume`.
#[derive(Debug, Args)]
#[command(
    after_help = "MB = 10^6 bytes. Without --records or --duration, reads to where the log ended at the start."
)]
pub struct ConsumeArgs {
    /// Topic to read.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    pub topic: String,
    /// Concurrent consumers, each assigned its share of the partitions.
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    /// Commit what was read under this consumer group at the end. Reading
    /// still starts from the earliest offset.
    #[arg(long)]
    pub group: Option<String>,
    /// Bytes one fetch returns per partition, at most.
    #[arg(long, value_name = "B", default_value_t = 1 << 20)]
    pub fetch_bytes: u32,
    #[command(flatten)]
    pub run: RunFor,
    /// Print exactly one JSON object on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

/// `brooklet bench e2e`.
#[derive(Debug, Args)]
#[command(after_help = "MB = 10^6 bytes. Without --records or --duration, produces for 10 seconds.")]
pub struct E2eArgs {
    #[command(flatten)]
    pub producer: ProducerOpts,
    /// Concurrent consumers, each assigned its share of the partitions.
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    #[command(flatten)]
    pub run: RunFor,
    /// Print exactly one JSON object on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

/// `brooklet bench disk`.
#[derive(Debug, Args)]
#[command(after_help = "MB = 10^6 bytes; MiB = 2^20 bytes. Each phase also stops after 10 seconds.")]
pub struct DiskArgs {
    /// Directory on the disk to measure, e.g. the broker's data directory.
    /// A temporary directory is made in it and removed afterwards.
    #[arg(long, env = "BROOKLET_DATA_DIR", default_value = ".")]
    pub dir: PathBuf,
    /// MiB to write sequentially, with `fdatasync` after each MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub size_mb: u64,
    /// 4 KiB appends, each followed by `fdatasync`, to time.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub appends: u64,
    /// Print exactly one JSON object on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

/// `brooklet bench storage`.
#[derive(Debug, Args)]
#[command(after_help = "MB = 10^6 bytes of record values.")]
pub struct StorageArgs {
    /// Directory on the disk to use; a temporary directory is made in it and
    /// removed afterwards.
    #[arg(long, env = "BROOKLET_DATA_DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Bytes of each record's value: random, incompressible.
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub record_size: usize,
    /// Bytes of values per appended batch: a batch holds as many records as
    /// fit (at least one).
    #[arg(long, value_name = "B", default_value_t = 256 * 1024)]
    pub batch_bytes: usize,
    /// Seconds to append for (fractions allowed).
    #[arg(long, value_name = "SECS", default_value_t = 5.0, allow_negative_numbers = true)]
    pub duration: f64,
    /// Concurrent writer tasks; more of them share each flush (group commit).
    #[arg(long, default_value_t = 4)]
    pub writers: u32,
    /// Batches each writer keeps in flight (appended and not yet
    /// acknowledged) at once, 1 to 1024. The default, 4, is what the
    /// client's producer pipelines to one partition
    /// (`MAX_IN_FLIGHT_PER_PARTITION` in brooklet-client), so a flush can
    /// carry several batches of one writer, as the broker's can of one
    /// client.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_STORAGE_IN_FLIGHT)]
    pub in_flight: usize,
    /// Target total rate in records/s, spread evenly over the writers, as
    /// `bench produce --rate` over its producers (default: as fast as the
    /// engine takes them). Each writer calls `Log::produce` with a batch
    /// every batch-records × writers / rate seconds, the writers'
    /// schedules staggered evenly, open loop up to --in-flight: a batch due
    /// while all of its writer's batches are in flight goes as soon as one
    /// is acknowledged, and a writer that fell behind catches up at most
    /// 100 ms of batches at once. Latency is timed as without --rate and as
    /// `bench produce` times it, from the call to the ack: the call is made
    /// at the batch's paced time, or later when the writer had to wait for
    /// a free in-flight slot, and that wait is not counted.
    #[arg(long, value_name = "RECORDS_PER_SEC", allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Partitions of the bench topic (default: one per writer; writer i
    /// appends to partition i mod partitions).
    #[arg(long)]
    pub partitions: Option<u32>,
    /// What an append waits for: `durable` (flush + fdatasync, shared by
    /// group commit) or `written` (in the storage engine).
    #[arg(long, value_parser = ["durable", "written"], default_value = "durable")]
    pub acks: String,
    /// How long a group commit may wait for more appends to share it, in ms:
    /// as `brooklet serve --flush-max-delay-ms`, and the same default, so
    /// the ceiling is measured with the broker's group commit. At most 1000.
    #[arg(long, value_name = "MS", default_value_t = brooklet_broker::DEFAULT_FLUSH_MAX_DELAY.as_millis() as u64)]
    pub flush_max_delay_ms: u64,
    /// Print exactly one JSON object on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

/// Runs a bench.
pub async fn run(command: BenchCommand, broker: BrokerArgs) -> anyhow::Result<()> {
    match command {
        BenchCommand::Produce(args) => produce::run(args, &broker).await,
        BenchCommand::Consume(args) => consume::run(args, &broker).await,
        BenchCommand::E2e(args) => e2e::run(args, &broker).await,
        BenchCommand::Disk(args) => disk::run(args).await,
        BenchCommand::Storage(args) => storage::run(args).await,
    }
}

/// How the benches reach the broker: its endpoint, the request timeout, and
/// the TLS options and credentials every client they build carries. Read
/// from [`BrokerArgs`] once, before any load starts, so that a missing
/// password or a lone `--tls-client-cert` fails at once.
#[derive(Clone, Debug)]
pub struct Connect {
    /// The broker's endpoint, as given to `--broker`.
    pub endpoint: String,
    /// How long a request may take, retries included.
    pub timeout: Duration,
    tls: Option<TlsOptions>,
    /// User and password, from `--user` and BROOKLET_PASSWORD.
    credentials: Option<(String, String)>,
}

impl Connect {
    /// The settings of `--broker`, `--timeout`, the `--tls-*` flags and
    /// `--user`.
    pub fn new(broker: &BrokerArgs) -> anyhow::Result<Connect> {
        Ok(Connect {
            endpoint: broker.url.clone(),
            timeout: broker.timeout(),
            tls: broker.tls()?,
            credentials: broker.authenticate(None, |_, user, password| Some((user, password)))?,
        })
    }

    /// An admin client.
    pub fn admin(&self) -> anyhow::Result<Admin> {
        let builder = Admin::builder(&self.endpoint).request_timeout(self.timeout);
        Ok(self.secure(builder, AdminBuilder::tls, AdminBuilder::credentials).build()?)
    }

    /// A producer's builder, for the caller to finish.
    pub fn producer(&self) -> ProducerBuilder {
        let builder = Producer::builder(&self.endpoint).request_timeout(self.timeout);
        self.secure(builder, ProducerBuilder::tls, ProducerBuilder::credentials)
    }

    /// A consumer's builder, for the caller to finish.
    pub fn consumer(&self) -> ConsumerBuilder {
        let builder = Consumer::builder(&self.endpoint).request_timeout(self.timeout);
        self.secure(builder, ConsumerBuilder::tls, ConsumerBuilder::credentials)
    }

    /// `builder` with the TLS options and credentials, where given.
    fn secure<B>(
        &self,
        builder: B,
        tls: fn(B, TlsOptions) -> B,
        credentials: fn(B, String, String) -> B,
    ) -> B {
        let builder = match &self.tls {
            Some(options) => tls(builder, options.clone()),
            None => builder,
        };
        match &self.credentials {
            Some((user, password)) => credentials(builder, user.clone(), password.clone()),
            None => builder,
        }
    }

    /// Whether the connection is TLS and who it authenticates as, for the
    /// summary.
    pub fn config(&self) -> Vec<(&'static str, serde_json::Value)> {
        let tls = self.tls.is_some() || self.endpoint.starts_with("https://");
        let user = self.credentials.as_ref().map(|(user, _)| user.clone());
        vec![("tls", tls.into()), ("user", user.into())]
    }
}

impl RunFor {
    /// The limit, `default` when neither flag was given.
    fn limit(&self, default: Option<Limit>) -> anyhow::Result<Option<Limit>> {
        match (self.records, self.duration) {
            (Some(_), Some(_)) => bail!("--records and --duration are exclusive: give one of them"),
            (Some(0), None) => bail!("--records must be at least 1"),
            (Some(n), None) => Ok(Some(Limit::Records(n))),
            (None, Some(secs)) => Ok(Some(Limit::Duration(parse_duration("--duration", secs)?))),
            (None, None) => Ok(default),
        }
    }
}

/// A duration in seconds, positive and at most a day.
fn parse_duration(flag: &str, secs: f64) -> anyhow::Result<Duration> {
    ensure!(
        secs.is_finite() && secs > 0.0 && secs <= MAX_DURATION_SECS,
        "{flag} must be above 0 and at most {MAX_DURATION_SECS} seconds, got {secs}"
    );
    Ok(Duration::from_secs_f64(secs))
}

/// Checks a size flag against `1..=max`.
fn check_size(flag: &str, value: usize, max: usize) -> anyhow::Result<()> {
    ensure!((1..=max).contains(&value), "{flag} must be 1 to {max} bytes, got {value}");
    Ok(())
}

/// Checks a count flag against `1..=max`.
fn check_count(flag: &str, value: u64, max: u64) -> anyhow::Result<()> {
    ensure!((1..=max).contains(&value), "{flag} must be 1 to {max}, got {value}");
    Ok(())
}

/// The broker's default limit on one record (key + value + headers): a
/// bench record must fit whatever the broker it meets.
fn max_record_bytes() -> usize {
    brooklet_broker::Limits::default().max_record_bytes
}
