//! Operator observability: owns the Prometheus registry and its text
//! exposition. Adapters count what they serve through its methods; the
//! server crate serves it over HTTP.
//!
//! It reads the core through its public handle at scrape time; the core
//! does not know it exists. The one exception is group commit, which
//! reports each flush through the storage-owned [`FlushObserver`] trait.
//!
//! Cardinality is bounded: labels are only topic, partition, group, rpc,
//! gRPC code, Kafka API, version, error code name and frame error reason,
//! never a record, producer or request.

#![warn(unreachable_pub)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::time::{Duration, Instant};

use brooklet_core::{Core, FlushObserver};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcCodeLabels {
    rpc: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KafkaApiLabels {
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KafkaVersionLabels {
    api: String,
    version: i16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KafkaErrorLabels {
    api: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KafkaFrameLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    listener: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    protocol: &'static str,
    operation: &'static str,
    resource_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthFailureLabels {
    protocol: &'static str,
    mechanism: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the broker. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    records_produced: Family<TopicLabels, Counter>,
    bytes_produced: Family<TopicLabels, Counter>,
    records_fetched: Family<TopicLabels, Counter>,
    bytes_fetched: Family<TopicLabels, Counter>,
    requests: Family<RpcCodeLabels, Counter>,
    request_duration: HistogramFamily<RpcLabels>,
    group_commit_duration: Histogram,
    group_commit_batches: Histogram,
    high_watermark: Family<PartitionLabels, Gauge>,
    log_start: Family<PartitionLabels, Gauge>,
    storage_bytes: Family<TopicLabels, Gauge>,
    storage_disk_bytes: Gauge,
    group_committed: Family<GroupPartitionLabels, Gauge>,
    group_lag: Family<GroupPartitionLabels, Gauge>,
    connections_active: Gauge,
    requests_in_flight: Gauge,
    requests_shed: Counter,
    sequence_waits: Counter,
    kafka_requests: Family<KafkaVersionLabels, Counter>,
    kafka_request_errors: Family<KafkaErrorLabels, Counter>,
    kafka_request_duration: HistogramFamily<KafkaApiLabels>,
    kafka_connections: Gauge,
    kafka_connections_total: Counter,
    kafka_frame_errors: Family<KafkaFrameLabels, Counter>,
    auth_failures: Family<AuthFailureLabels, Counter>,
    authorization_denials: Family<DenialLabels, Counter>,
    connections_closed: Family<ClosedLabels, Counter>,
    resident_memory: Gauge,
    cpu: Counter<f64, AtomicU64>,
    uptime: Gauge<f64, AtomicU64>,
    started: Instant,
    /// Storage is open and the broker accepts requests; false once shutdown
    /// has begun.
    ready: AtomicBool,
    /// Held while a scrape refreshes the gauges computed at scrape time and
    /// encodes them, so that two scrapes never interleave a clear and a fill.
    scrape: Mutex<()>,
    /// Broker-wide sums for [`Metrics::totals`]: a family cannot be summed
    /// without a scrape.
    totals: TotalCounters,
}

/// Upper bounds of the produce latency buckets of [`Totals`], in
/// microseconds: 250 µs doubling to about 65 s; a last bucket counts the
/// rest.
pub const LATENCY_BOUNDS_MICROS: [u64; 19] = {
    let mut bounds = [0u64; 19];
    let mut i = 0;
    while i < bounds.len() {
        bounds[i] = 250 << i;
        i += 1;
    }
    bounds
};

/// Buckets of [`Totals::produce_latency`]: one per bound and one above.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MICROS.len() + 1;

#[derive(Debug, Default)]
struct TotalCounters {
    records_in: AtomicU64,
    records_out: AtomicU64,
    produce_latency: [AtomicU64; LATENCY_BUCKETS],
    group_commits: AtomicU64,
    group_commit_micros: AtomicU64,
}

/// Broker-wide counters since start, read at once without a scrape: two
/// readings a second apart give rates and latencies over that second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Records appended, every topic and protocol.
    pub records_in: u64,
    /// Records served by fetches, every topic and protocol.
    pub records_out: u64,
    /// Produce requests (gRPC and Kafka) by latency: bucket `i` counts
    /// those at most [`LATENCY_BOUNDS_MICROS`]`[i]`, the last one the rest.
    pub produce_latency: [u64; LATENCY_BUCKETS],
    /// Group commits (flushes and syncs) completed.
    pub group_commits: u64,
    /// Their time together, in microseconds.
    pub group_commit_micros: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn request_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// A value for a gauge: the gauges hold i64, offsets and byte counts are u64.
fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric, all at zero; not ready.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("brooklet");
        let records_produced = Family::default();
        registry.register("records_produced", "Records appended, by topic", records_produced.clone());
        let bytes_produced = Family::default();
        registry.register(
            "bytes_produced",
            "Bytes of records appended (key + value + headers), by topic",
            bytes_produced.clone(),
        );
        let records_fetched = Family::default();
        registry.register(
            "records_fetched",
            "Records served by Fetch and Subscribe, by topic",
            records_fetched.clone(),
        );
        let bytes_fetched = Family::default();
        registry.register(
            "bytes_fetched",
            "Bytes of records served, each as stored and sent (its protobuf encoding: key, value, headers, timestamp, offset), by topic",
            bytes_fetched.clone(),
        );
        let requests = Family::default();
        registry.register("requests", "gRPC requests answered, by rpc and status code", requests.clone());
        let request_duration: HistogramFamily<RpcLabels> = Family::new_with_constructor(request_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from a gRPC request's arrival to its response headers, by rpc",
            request_duration.clone(),
        );
        // 0.1 ms to about 3 s.
        let group_commit_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "group_commit_duration_seconds",
            "Time one group-commit flush (sled flush + fdatasync) takes",
            group_commit_duration.clone(),
        );
        let group_commit_batches = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "group_commit_batches",
            "Sync requests (durable appends and commits) made durable by one flush",
            group_commit_batches.clone(),
        );
        let high_watermark = Family::default();
        registry.register(
            "partition_high_watermark",
            "The next offset to be written, by partition",
            high_watermark.clone(),
        );
        let log_start = Family::default();
        registry.register(
            "partition_log_start_offset",
            "The first offset in the log, by partition",
            log_start.clone(),
        );
        let storage_bytes = Family::default();
        registry.register(
            "storage_bytes",
            "Bytes of stored batches, by topic (what retention.bytes counts)",
            storage_bytes.clone(),
        );
        let storage_disk_bytes = Gauge::default();
        registry.register(
            "storage_disk_bytes",
            "Size of the database on disk, as the storage engine counts it",
            storage_disk_bytes.clone(),
        );
        let group_committed = Family::default();
        registry.register(
            "group_committed_offset",
            "A consumer group's committed offset, by partition",
            group_committed.clone(),
        );
        let group_lag = Family::default();
        registry.register(
            "group_lag",
            "Records between a consumer group's committed offset (or the log start) and the high watermark",
            group_lag.clone(),
        );
        let connections_active = Gauge::default();
        registry.register("connections_active", "Open gRPC connections", connections_active.clone());
        let requests_in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "gRPC requests received and not yet answered",
            requests_in_flight.clone(),
        );
        let requests_shed = Counter::default();
        registry.register(
            "requests_shed",
            "gRPC requests refused with RESOURCE_EXHAUSTED because their connection had \
             --max-requests-per-connection in flight",
            requests_shed.clone(),
        );
        let sequence_waits = Counter::default();
        registry.register(
            "produce_sequence_waits",
            "Idempotent producer batches that arrived ahead of an earlier batch and waited for it",
            sequence_waits.clone(),
        );
        let kafka_requests = Family::default();
        registry.register(
            "kafka_requests",
            "Kafka requests answered (or, with acks 0, served), by API and version",
            kafka_requests.clone(),
        );
        let kafka_request_errors = Family::default();
        registry.register(
            "kafka_request_errors",
            "Kafka error codes answered, by API and code name: one per request, topic or partition \
             that carried one, and one per frame refused for a known API",
            kafka_request_errors.clone(),
        );
        let kafka_request_duration: HistogramFamily<KafkaApiLabels> =
            Family::new_with_constructor(request_histogram);
        registry.register(
            "kafka_request_duration_seconds",
            "Time from a Kafka request's frame being read to its response being encoded, by API",
            kafka_request_duration.clone(),
        );
        let kafka_connections = Gauge::default();
        registry.register("kafka_connections", "Open Kafka connections", kafka_connections.clone());
        let kafka_connections_total = Counter::default();
        registry.register(
            "kafka_connections",
            "Kafka connections accepted (those over --max-connections excluded)",
            kafka_connections_total.clone(),
        );
        let kafka_frame_errors = Family::default();
        registry.register(
            "kafka_frame_errors",
            "Kafka frames that closed their connection, by reason: too_large, short, unknown_api, \
             unsupported_version, not_implemented, malformed, encode",
            kafka_frame_errors.clone(),
        );
        let auth_failures = Family::default();
        registry.register(
            "auth_failures",
            "Failed logins and unauthenticated requests refused, by protocol (grpc, kafka) and mechanism",
            auth_failures.clone(),
        );
        let authorization_denials = Family::default();
        registry.register(
            "authorization_denials",
            "Requests (or parts of one) denied by the ACLs, by protocol (grpc, kafka), operation and \
             resource type",
            authorization_denials.clone(),
        );
        let connections_closed = Family::default();
        registry.register(
            "connections_closed",
            "Connections the broker closed itself, by listener (grpc, kafka) and reason: max_connections, \
             per_address (both at accept), handshake_timeout, idle_timeout",
            connections_closed.clone(),
        );
        let resident_memory = Gauge::default();
        if cfg!(target_os = "linux") {
            registry.register(
                "process_resident_memory_bytes",
                "Resident memory of the broker process",
                resident_memory.clone(),
            );
        }
        let cpu = Counter::<f64, AtomicU64>::default();
        if cfg!(target_os = "linux") {
            registry.register(
                "process_cpu_seconds",
                "CPU time (user + system) of the broker process",
                cpu.clone(),
            );
        }
        let uptime = Gauge::<f64, AtomicU64>::default();
        registry.register("uptime_seconds", "Time since the broker started", uptime.clone());
        Metrics {
            inner: Arc::new(Inner {
                registry,
                records_produced,
                bytes_produced,
                records_fetched,
                bytes_fetched,
                requests,
                request_duration,
                group_commit_duration,
                group_commit_batches,
                high_watermark,
                log_start,
                storage_bytes,
                storage_disk_bytes,
                group_committed,
                group_lag,
                connections_active,
                requests_in_flight,
                requests_shed,
                sequence_waits,
                kafka_requests,
                kafka_request_errors,
                kafka_request_duration,
                kafka_connections,
                kafka_connections_total,
                kafka_frame_errors,
                auth_failures,
                authorization_denials,
                connections_closed,
                resident_memory,
                cpu,
                uptime,
                started: Instant::now(),
                ready: AtomicBool::new(false),
                scrape: Mutex::new(()),
                totals: TotalCounters::default(),
            }),
        }
    }

    /// Counts records appended to `topic` (duplicates of an idempotent retry
    /// excluded by the caller).
    pub fn produced(&self, topic: &str, records: u64, bytes: u64) {
        let labels = TopicLabels { topic: topic.to_owned() };
        self.inner.records_produced.get_or_create(&labels).inc_by(records);
        self.inner.bytes_produced.get_or_create(&labels).inc_by(bytes);
        self.inner.totals.records_in.fetch_add(records, Ordering::Relaxed);
    }

    /// Counts `n` records of `bytes` (their encodings, as stored and sent)
    /// served from `topic`.
    pub fn fetched(&self, topic: &str, n: u64, bytes: u64) {
        if n > 0 {
            let labels = TopicLabels { topic: topic.to_owned() };
            self.inner.records_fetched.get_or_create(&labels).inc_by(n);
            self.inner.bytes_fetched.get_or_create(&labels).inc_by(bytes);
            self.inner.totals.records_out.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts a produce request served in `took`, whatever its protocol, for
    /// [`Totals::produce_latency`].
    fn produce_took(&self, took: Duration) {
        let us = micros(took);
        let bucket = LATENCY_BOUNDS_MICROS.iter().position(|&b| us <= b).unwrap_or(LATENCY_BUCKETS - 1);
        self.inner.totals.produce_latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The broker-wide totals since start (see [`Totals`]).
    pub fn totals(&self) -> Totals {
        let t = &self.inner.totals;
        Totals {
            records_in: t.records_in.load(Ordering::Relaxed),
            records_out: t.records_out.load(Ordering::Relaxed),
            produce_latency: std::array::from_fn(|i| t.produce_latency[i].load(Ordering::Relaxed)),
            group_commits: t.group_commits.load(Ordering::Relaxed),
            group_commit_micros: t.group_commit_micros.load(Ordering::Relaxed),
        }
    }

    /// Marks the broker ready (storage open, accepting) or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Counts a request refused at admission (its connection had no free
    /// place).
    pub fn request_shed(&self) {
        self.inner.requests_shed.inc();
    }

    /// Counts a request admitted; [`Metrics::request_ended`] ends it.
    pub fn request_started(&self) {
        self.inner.requests_in_flight.inc();
    }

    /// Ends an admitted request: `rpc` names the method (from a bounded
    /// set), `code` its final status, `took` its latency.
    pub fn request_ended(&self, rpc: String, code: &'static str, took: Duration) {
        let m = &self.inner;
        m.requests_in_flight.dec();
        if rpc.ends_with("/Produce") {
            self.produce_took(took);
        }
        m.request_duration.get_or_create(&RpcLabels { rpc: rpc.clone() }).observe(took.as_secs_f64());
        m.requests.get_or_create(&RpcCodeLabels { rpc, code }).inc();
    }

    /// Counts one open connection until the guard is dropped.
    pub fn connection(&self) -> ConnectionGuard {
        self.inner.connections_active.inc();
        ConnectionGuard { metrics: self.clone() }
    }

    /// Counts a Kafka request of `api` (a Kafka API name, from a bounded
    /// set) at `version` (one the adapter implements), served in `took`.
    pub fn kafka_request(&self, api: &str, version: i16, took: Duration) {
        let m = &self.inner;
        if api == "Produce" {
            self.produce_took(took);
        }
        m.kafka_request_duration
            .get_or_create(&KafkaApiLabels { api: api.to_owned() })
            .observe(took.as_secs_f64());
        m.kafka_requests.get_or_create(&KafkaVersionLabels { api: api.to_owned(), version }).inc();
    }

    /// Counts one Kafka error code answered for `api`; `code` is the error's
    /// name, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
    pub fn kafka_request_error(&self, api: &str, code: &str) {
        let labels = KafkaErrorLabels { api: api.to_owned(), code: code.to_owned() };
        self.inner.kafka_request_errors.get_or_create(&labels).inc();
    }

    /// Counts a Kafka frame that closed its connection; `reason` is one of
    /// a fixed set.
    pub fn kafka_frame_error(&self, reason: &'static str) {
        self.inner.kafka_frame_errors.get_or_create(&KafkaFrameLabels { reason }).inc();
    }

    /// Counts a failed login or a request refused for want of one;
    /// `protocol` is `grpc` or `kafka`, `mechanism` e.g. `PLAIN`.
    pub fn auth_failure(&self, protocol: &'static str, mechanism: &str) {
        let labels = AuthFailureLabels { protocol, mechanism: mechanism.to_owned() };
        self.inner.auth_failures.get_or_create(&labels).inc();
    }

    /// Counts a request (or a part of one, such as one topic of a produce)
    /// denied by the ACLs; `protocol` is `grpc` or `kafka`, `operation`
    /// and `resource_type` name the operation and the resource's type.
    pub fn authorization_denied(
        &self,
        protocol: &'static str,
        operation: &'static str,
        resource_type: &'static str,
    ) {
        self.inner
            .authorization_denials
            .get_or_create(&DenialLabels { protocol, operation, resource_type })
            .inc();
    }

    /// Counts a connection the broker closed on `listener` (`grpc` or
    /// `kafka`) for `reason`, one of a fixed set.
    pub fn connection_closed(&self, listener: &'static str, reason: &'static str) {
        self.inner.connections_closed.get_or_create(&ClosedLabels { listener, reason }).inc();
    }

    /// Counts an accepted Kafka connection, open until the guard is dropped.
    pub fn kafka_connection(&self) -> KafkaConnectionGuard {
        self.inner.kafka_connections_total.inc();
        self.inner.kafka_connections.inc();
        KafkaConnectionGuard { metrics: self.clone() }
    }

    /// The exposition, in the Prometheus text format 0.0.4, after refreshing
    /// what is computed at scrape time from the core.
    pub fn render(&self, core: &Core) -> String {
        let _scrape = self.inner.scrape.lock();
        self.refresh(core);
        let mut open_metrics = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut open_metrics, &self.inner.registry);
        to_text_format(&open_metrics)
    }

    #[cfg(test)]
    fn render_registry(&self) -> String {
        let mut open_metrics = String::new();
        prometheus_client::encoding::text::encode_registry(&mut open_metrics, &self.inner.registry).unwrap();
        to_text_format(&open_metrics)
    }

    fn refresh(&self, core: &Core) {
        let (log, groups) = (core.log(), core.groups());
        let m = &self.inner;
        // Cleared first so that deleted topics and groups leave no series.
        m.high_watermark.clear();
        m.log_start.clear();
        m.storage_bytes.clear();
        m.group_committed.clear();
        m.group_lag.clear();
        for topic in log.list_topics() {
            // A topic deleted since it was listed has nothing to show.
            let Ok((_, states)) = log.describe_topic(&topic.name) else { continue };
            for s in states {
                let labels = PartitionLabels { topic: topic.name.clone(), partition: s.partition };
                m.high_watermark.get_or_create(&labels).set(gauge_value(s.high_watermark));
                m.log_start.get_or_create(&labels).set(gauge_value(s.log_start));
            }
            if let Ok(bytes) = log.stored_bytes(&topic.name) {
                m.storage_bytes.get_or_create(&TopicLabels { topic: topic.name }).set(gauge_value(bytes));
            }
        }
        match core.disk_usage() {
            Ok(usage) => {
                m.storage_disk_bytes.set(gauge_value(usage.used_bytes));
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the database size for metrics"),
        }
        match groups.list() {
            Ok(list) => {
                for (group, _, _) in list {
                    let Ok(description) = groups.describe(&group) else { continue };
                    for p in description.partitions {
                        let labels = GroupPartitionLabels {
                            group: group.clone(),
                            topic: p.topic,
                            partition: p.partition,
                        };
                        if let Some(committed) = p.committed {
                            m.group_committed.get_or_create(&labels).set(gauge_value(committed));
                        }
                        m.group_lag.get_or_create(&labels).set(gauge_value(p.lag));
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot list groups for metrics"),
        }
        if let Some(rss) = resident_memory_bytes() {
            m.resident_memory.set(gauge_value(rss));
        }
        // Scrapes take turns here, so the counters only ever catch up.
        m.sequence_waits.inc_by(log.sequence_waits().saturating_sub(m.sequence_waits.get()));
        if let Some(cpu) = process_cpu_time() {
            let behind = cpu.as_secs_f64() - m.cpu.get();
            if behind > 0.0 {
                m.cpu.inc_by(behind);
            }
        }
        m.uptime.set(m.started.elapsed().as_secs_f64());
    }
}

impl FlushObserver for Metrics {
    fn flushed(&self, batches: usize, took: Duration) {
        self.inner.group_commit_duration.observe(took.as_secs_f64());
        self.inner.group_commit_batches.observe(batches as f64);
        self.inner.totals.group_commits.fetch_add(1, Ordering::Relaxed);
        self.inner.totals.group_commit_micros.fetch_add(micros(took), Ordering::Relaxed);
    }
}

/// prometheus-client writes OpenMetrics text; Prometheus' text format 0.0.4
/// differs in one way that matters here: a counter's `# HELP` and `# TYPE`
/// lines name the sample (`x_total`), not the family (`x`). A gauge may
/// share a counter's family name (`x` and `x_total`), so each `# HELP` takes
/// the type from the `# TYPE` line after it. `# EOF` is never written (the
/// caller encodes without it) and no metric has a `# UNIT`.
fn to_text_format(open_metrics: &str) -> String {
    let lines: Vec<&str> = open_metrics.lines().collect();
    let mut out = String::with_capacity(open_metrics.len() + 256);
    for (i, line) in lines.iter().enumerate() {
        let comment = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match comment {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let counter = match kind {
                    "# TYPE " => tail == "counter",
                    _ => lines.get(i + 1).is_some_and(|next| {
                        next.strip_prefix("# TYPE ").and_then(|r| r.strip_prefix(name)) == Some(" counter")
                    }),
                };
                let suffix = if counter { "_total" } else { "" };
                let _ = writeln!(out, "{kind}{name}{suffix} {tail}");
            }
            None if line.starts_with("# UNIT ") || *line == "# EOF" => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The resident set size, from `/proc/self/status` (Linux only).
fn resident_memory_bytes() -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().strip_suffix("kB")?.trim();
    kb.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The CPU time (user + system, all threads) this process has used, from
/// `/proc/self/stat` (Linux only).
pub fn process_cpu_time() -> Option<Duration> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    cpu_time_of_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime + stime of a `/proc/PID/stat` line.
fn cpu_time_of_stat(stat: &str) -> Option<Duration> {
    /// `/proc` counts in clock ticks of the kernel's fixed user-space rate.
    const TICKS_PER_SEC: u64 = 100;
    // The command name, in parentheses, may hold spaces and parentheses:
    // fields are counted from after its last `)`. utime and stime are fields
    // 14 and 15 of the line.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / TICKS_PER_SEC))
}

/// Counts an open connection; dropped when the connection closes.
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Metrics,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.inner.connections_active.dec();
    }
}

/// Counts an open Kafka connection; dropped when the connection closes.
#[derive(Debug)]
pub struct KafkaConnectionGuard {
    metrics: Metrics,
}

impl Drop for KafkaConnectionGuard {
    fn drop(&mut self) {
        self.metrics.inner.kafka_connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 10 0 0 0 250 125 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_time_of_stat(stat), Some(Duration::from_millis(3750)));
        assert_eq!(cpu_time_of_stat("4242 (x) S 1"), None, "a short line is not misread");
        if cfg!(target_os = "linux") {
            assert!(process_cpu_time().is_some(), "this process's own stat line parses");
        }
    }

    #[test]
    fn counters_are_named_by_their_samples_in_the_text_format() {
        let open_metrics = "# HELP brooklet_x Xs.\n# TYPE brooklet_x counter\nbrooklet_x_total{topic=\"t\"} 3\n\
                            # HELP brooklet_g G.\n# TYPE brooklet_g gauge\nbrooklet_g 1\n# EOF\n";
        assert_eq!(
            to_text_format(open_metrics),
            "# HELP brooklet_x_total Xs.\n# TYPE brooklet_x_total counter\nbrooklet_x_total{topic=\"t\"} 3\n\
             # HELP brooklet_g G.\n# TYPE brooklet_g gauge\nbrooklet_g 1\n"
        );
    }

    #[test]
    fn a_gauge_and_a_counter_of_one_family_name_keep_their_own_names() {
        let metrics = Metrics::new();
        let open = metrics.kafka_connection();
        let text = metrics.render_registry();
        assert!(
            text.contains("# TYPE brooklet_kafka_connections gauge\nbrooklet_kafka_connections 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP brooklet_kafka_connections_total Kafka connections accepted"),
            "{text}"
        );
        assert!(
            text.contains(
                "# TYPE brooklet_kafka_connections_total counter\nbrooklet_kafka_connections_total 1\n"
            ),
            "{text}"
        );
        drop(open);
        assert!(metrics.render_registry().contains("brooklet_kafka_connections 0\n"));
    }

    #[test]
    fn flushes_are_observed() {
        let metrics = Metrics::new();
        metrics.flushed(3, Duration::from_millis(2));
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &metrics.inner.registry).unwrap();
        assert!(text.contains("brooklet_group_commit_batches_count 1\n"), "{text}");
        assert!(text.contains("brooklet_group_commit_batches_sum 3.0\n"), "{text}");
    }
}
