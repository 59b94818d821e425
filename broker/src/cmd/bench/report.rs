//! What a bench tells: latency histograms (HDR, in microseconds), the
//! [`Meter`] workers count into, a progress line a second on stderr, and the
//! final [`Summary`] on stdout as text or as exactly one JSON object.
//! MB here is always 10^6 bytes.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, DropGuard};

/// The largest latency a histogram tells apart: an hour, in µs. Anything
/// longer is counted as an hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram in µs with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

/// Counts `latency` in `hist`, at least 1 µs and at most an hour.
pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    hist.saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1));
}

/// Adds every histogram of `parts` into one.
pub fn merge<'a>(parts: impl IntoIterator<Item = &'a Histogram<u64>>) -> anyhow::Result<Histogram<u64>> {
    let mut total = histogram();
    for part in parts {
        total.add(part)?;
    }
    Ok(total)
}

/// Records and bytes done so far, counted by workers and read by the
/// progress line.
#[derive(Debug, Default)]
pub struct Meter {
    records: AtomicU64,
    bytes: AtomicU64,
}

impl Meter {
    /// Counts `records` records holding `bytes` bytes.
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records counted so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    fn read(&self) -> (u64, u64) {
        (self.records.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// The progress line's task: one line a second to stderr until finished or
/// dropped.
#[derive(Debug)]
pub struct Progress {
    stop: DropGuard,
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts printing, every second, each meter's rate over the last second
    /// and its total, named by its label.
    pub fn start(bench: &'static str, meters: Vec<(&'static str, Arc<Meter>)>) -> Progress {
        let stop = CancellationToken::new();
        let task = tokio::spawn(progress(bench, meters, stop.clone()));
        Progress { stop: stop.drop_guard(), task }
    }

    /// Stops printing, once the current line is out.
    pub async fn finish(self) {
        drop(self.stop);
        let _ = self.task.await;
    }
}

async fn progress(bench: &'static str, meters: Vec<(&'static str, Arc<Meter>)>, stop: CancellationToken) {
    let start = Instant::now();
    let mut ticks = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last: Vec<(u64, u64)> = vec![(0, 0); meters.len()];
    let mut last_at = start;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = Instant::now();
        let secs = (now - last_at).as_secs_f64().max(1e-9);
        let mut line = format!("bench {bench} {:>6.1} s", (now - start).as_secs_f64());
        for ((label, meter), previous) in meters.iter().zip(&mut last) {
            let (records, bytes) = meter.read();
            let rate = (records - previous.0) as f64 / secs;
            let mb = (bytes - previous.1) as f64 / secs / 1e6;
            let _ = write!(line, " | {label}{rate:>10.0} records/s {mb:>8.2} MB/s {records:>11} records");
            *previous = (records, bytes);
        }
        last_at = now;
        eprintln!("{line}");
    }
}

/// A latency distribution, or why there is none.
#[derive(Debug)]
pub enum Latency {
    /// Measured: what was timed, and the histogram in µs.
    Measured { what: String, hist: Histogram<u64> },
    /// Not measured, and why.
    NotMeasured(String),
}

/// The outcome of a run: the main figures, what the run was, and anything
/// else worth printing.
#[derive(Debug)]
pub struct Summary {
    /// The bench's name, e.g. `produce`.
    pub bench: &'static str,
    /// The settings of the run, as given or defaulted.
    pub config: Vec<(&'static str, Value)>,
    /// Records done.
    pub records: u64,
    /// Bytes of those records (key + value).
    pub bytes: u64,
    /// Time from the start of the load to its last record.
    pub elapsed: Duration,
    /// The main latency.
    pub latency: Latency,
    /// Further figures: JSON key, and the text shown for them.
    pub extra: Vec<(&'static str, Value, String)>,
}

impl Summary {
    /// Adds a figure.
    pub fn extra(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        let text = match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.extra.push((key, value, text));
    }

    /// Adds a latency distribution as a further figure.
    pub fn extra_latency(&mut self, key: &'static str, what: &str, hist: &Histogram<u64>) {
        self.extra.push((key, latency_json(hist), format!("{} ({what})", latency_text(hist))));
    }

    fn records_per_sec(&self) -> f64 {
        per_sec(self.records as f64, self.elapsed)
    }

    fn mb_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64 / 1e6, self.elapsed)
    }

    /// Prints the summary to stdout: text, or one JSON object. The CPU time
    /// reported is this process's, from its start: the load generator's for
    /// the network benches, the storage engine's (and its writers') for
    /// `bench storage`.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        let cpu = brooklet_metrics::process_cpu_time();
        let mut out = crate::cmd::stdout();
        if json { writeln!(out, "{}", self.to_json(cpu)) } else { write!(out, "{}", self.to_text(cpu)) }
    }

    /// CPU microseconds per record.
    fn cpu_us_per_record(&self, cpu: Duration) -> f64 {
        if self.records == 0 { 0.0 } else { cpu.as_secs_f64() * 1e6 / self.records as f64 }
    }

    fn to_json(&self, cpu: Option<Duration>) -> Value {
        let mut out = Map::new();
        out.insert("bench".into(), self.bench.into());
        out.insert(
            "config".into(),
            Value::Object(self.config.iter().map(|(k, v)| ((*k).into(), v.clone())).collect()),
        );
        out.insert("records".into(), self.records.into());
        out.insert("bytes".into(), self.bytes.into());
        out.insert("seconds".into(), round(self.elapsed.as_secs_f64(), 3).into());
        out.insert("records_per_sec".into(), round(self.records_per_sec(), 1).into());
        out.insert("mb_per_sec".into(), round(self.mb_per_sec(), 3).into());
        match &self.latency {
            Latency::Measured { what, hist } => {
                out.insert("latency_ms".into(), latency_json(hist));
                out.insert("latency".into(), what.as_str().into());
            }
            Latency::NotMeasured(why) => {
                out.insert("latency_ms".into(), Value::Null);
                out.insert("latency".into(), why.as_str().into());
            }
        }
        if let Some(cpu) = cpu {
            out.insert("cpu_seconds".into(), round(cpu.as_secs_f64(), 3).into());
            out.insert("cpu_us_per_record".into(), round(self.cpu_us_per_record(cpu), 3).into());
        }
        for (key, value, _) in &self.extra {
            out.insert((*key).into(), value.clone());
        }
        Value::Object(out)
    }

    fn to_text(&self, cpu: Option<Duration>) -> String {
        let mut out = format!("brooklet bench {}\n", self.bench);
        let config: Vec<String> = self
            .config
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        let _ = writeln!(out, "  {}", config.join(" "));
        let _ = writeln!(out, "  {:<16}{}", "records", self.records);
        let _ = writeln!(out, "  {:<16}{:.3}", "seconds", self.elapsed.as_secs_f64());
        let _ = writeln!(out, "  {:<16}{:.1}", "records/s", self.records_per_sec());
        let _ = writeln!(out, "  {:<16}{:.3}  (MB = 10^6 bytes)", "MB/s", self.mb_per_sec());
        match &self.latency {
            Latency::Measured { what, hist } => {
                let _ = writeln!(out, "  {:<16}{}  ({what})", "latency ms", latency_text(hist));
            }
            Latency::NotMeasured(why) => {
                let _ = writeln!(out, "  {:<16}not measured: {why}", "latency");
            }
        }
        if let Some(cpu) = cpu {
            let per_record = self.cpu_us_per_record(cpu);
            let _ = writeln!(
                out,
                "  {:<16}{:.3} s, {per_record:.3} us/record  (this process)",
                "cpu",
                cpu.as_secs_f64()
            );
        }
        for (key, _, text) in &self.extra {
            // A key as long as the column still gets a space after it.
            let _ = writeln!(out, "  {key:<15} {text}");
        }
        out
    }
}

/// `count` per second of `elapsed`; 0 for an empty run.
pub fn per_sec(count: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count / secs } else { 0.0 }
}

/// Rounds to `digits` decimals, so JSON shows no false precision.
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn ms(us: u64) -> f64 {
    round(us as f64 / 1000.0, 3)
}

/// Percentiles in ms, or null when nothing was recorded.
pub fn latency_json(hist: &Histogram<u64>) -> Value {
    if hist.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": ms(hist.value_at_quantile(0.50)),
        "p90": ms(hist.value_at_quantile(0.90)),
        "p99": ms(hist.value_at_quantile(0.99)),
        "p999": ms(hist.value_at_quantile(0.999)),
        "max": ms(hist.max()),
        "mean": round(hist.mean() / 1000.0, 3),
        "count": hist.len(),
    })
}

fn latency_text(hist: &Histogram<u64>) -> String {
    if hist.is_empty() {
        return "no samples".to_owned();
    }
    format!(
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        ms(hist.value_at_quantile(0.50)),
        ms(hist.value_at_quantile(0.90)),
        ms(hist.value_at_quantile(0.99)),
        ms(hist.value_at_quantile(0.999)),
        ms(hist.max()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(latency: Latency) -> Summary {
        Summary {
            bench: "produce",
            config: vec![("producers", 2.into()), ("acks", "durable".into())],
            records: 2_000_000,
            bytes: 200_000_000,
            elapsed: Duration::from_secs(4),
            latency,
            extra: Vec::new(),
        }
    }

    #[test]
    fn json_has_the_figures_in_ms_and_mb_of_ten_to_the_six() {
        let mut hist = histogram();
        for us in 1..=1000 {
            record(&mut hist, Duration::from_micros(us));
        }
        let mut s = summary(Latency::Measured { what: "send to ack".into(), hist });
        s.extra("sent", 2_000_000u64);
        let v = s.to_json(Some(Duration::from_secs(3)));
        assert_eq!(v["records_per_sec"], 500_000.0);
        assert_eq!(v["cpu_seconds"], 3.0);
        assert_eq!(v["cpu_us_per_record"], 1.5);
        assert_eq!(v["mb_per_sec"], 50.0);
        assert_eq!(v["latency_ms"]["p50"], 0.5);
        assert_eq!(v["latency_ms"]["max"], 1.0);
        assert_eq!(v["latency_ms"]["count"], 1000);
        assert!(v["latency_ms"]["p999"].as_f64().is_some());
        assert_eq!(v["config"]["producers"], 2);
        assert_eq!(v["sent"], 2_000_000);
        let text = s.to_text(Some(Duration::from_secs(3)));
        assert!(text.contains("records/s       500000.0"), "{text}");
        assert!(text.contains("1.500 us/record"), "{text}");
        assert!(text.contains("p50 0.500"), "{text}");
    }

    #[test]
    fn no_latency_is_null_with_the_reason() {
        let s = summary(Latency::NotMeasured("deliveries are not awaited".into()));
        let v = s.to_json(None);
        assert!(v["latency_ms"].is_null());
        assert!(v.get("cpu_seconds").is_none(), "no CPU figure where it cannot be read");
        assert_eq!(v["latency"], "deliveries are not awaited");
        assert!(s.to_text(None).contains("not measured: deliveries are not awaited"));
    }

    #[test]
    fn out_of_range_latencies_saturate() {
        let mut hist = histogram();
        record(&mut hist, Duration::ZERO);
        record(&mut hist, Duration::from_secs(10 * 3600));
        assert_eq!(hist.len(), 2);
        assert_eq!(hist.min(), 1);
        assert!(hist.max() >= MAX_LATENCY_US);
        assert_eq!(merge([&hist, &hist]).expect("same bounds").len(), 4);
    }
}
