//! `brooklet bench disk`: the limits of the disk under a data directory,
//! the yardstick for every durable figure. Two phases, each on a file of its
//! own in a temporary directory that is removed afterwards:
//!
//! - sequential: 1 MiB writes of random bytes, `fdatasync` after each, until
//!   `--size-mb` MiB or 10 seconds;
//! - appends: 4 KiB writes at the end of a growing file, each followed by
//!   `fdatasync` and timed, until `--appends` or 10 seconds. Like a log's
//!   append, each sync also persists the file's new length.
//!
//! File I/O blocks, so the phases run on a blocking thread.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;

use super::DiskArgs;
use super::report::{self, per_sec, round};

/// Bytes per sequential write, each followed by `fdatasync`.
const CHUNK: usize = 1 << 20;
/// Bytes per timed append.
const APPEND: usize = 4096;
/// Longest a phase runs, whatever its size or count.
const PHASE_LIMIT: Duration = Duration::from_secs(10);
/// Largest sequential phase accepted, in MiB.
const MAX_SIZE_MB: u64 = 64 << 10;
/// Most appends accepted.
const MAX_APPENDS: u64 = 10_000_000;

/// The sequential phase's outcome.
#[derive(Debug)]
struct Sequential {
    bytes: u64,
    elapsed: Duration,
}

/// `brooklet bench disk`.
pub async fn run(args: DiskArgs) -> anyhow::Result<()> {
    super::check_count("--size-mb", args.size_mb, MAX_SIZE_MB)?;
    super::check_count("--appends", args.appends, MAX_APPENDS)?;
    ensure!(args.dir.is_dir(), "--dir {} is not a directory", args.dir.display());
    let dir = tempfile::Builder::new()
        .prefix(".brooklet-bench-disk-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("cannot make a temporary directory in {}", args.dir.display()))?;
    let path = dir.path().to_path_buf();
    let (size_mb, appends) = (args.size_mb, args.appends);
    let (sequential, hist) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let sequential = sequential(&path.join("sequential"), size_mb)?;
        let hist = appends_latency(&path.join("appends"), appends)?;
        Ok((sequential, hist))
    })
    .await
    .context("the disk bench thread failed")??;
    dir.close().context("cannot remove the temporary directory")?;

    let mb_per_sec = per_sec(sequential.bytes as f64 / 1e6, sequential.elapsed);
    let us = |q: f64| hist.value_at_quantile(q);
    let mut stdout = crate::cmd::stdout();
    if args.json {
        let out = json!({
            "bench": "disk",
            "dir": args.dir.display().to_string(),
            "seq_bytes": sequential.bytes,
            "seq_seconds": round(sequential.elapsed.as_secs_f64(), 3),
            "seq_fdatasync_mb_per_sec": round(mb_per_sec, 1),
            "appends": hist.len(),
            "append_bytes": APPEND,
            "fdatasync_p50_us": us(0.50),
            "fdatasync_p90_us": us(0.90),
            "fdatasync_p99_us": us(0.99),
            "fdatasync_max_us": hist.max(),
        });
        writeln!(stdout, "{out}")?;
    } else {
        writeln!(stdout, "brooklet bench disk")?;
        writeln!(stdout, "  dir={}", args.dir.display())?;
        writeln!(
            stdout,
            "  {:<24}{:.1} MB/s  ({} MiB in {:.3} s; MB = 10^6 bytes)",
            "sequential + fdatasync",
            mb_per_sec,
            sequential.bytes >> 20,
            sequential.elapsed.as_secs_f64()
        )?;
        writeln!(
            stdout,
            "  {:<24}p50 {} us  p90 {} us  p99 {} us  max {} us  ({} of {APPEND} bytes)",
            "append + fdatasync",
            us(0.50),
            us(0.90),
            us(0.99),
            hist.max(),
            crate::cmd::count(hist.len(), "append")
        )?;
    }
    Ok(())
}

/// Writes `size_mb` MiB to `path` in 1 MiB chunks, `fdatasync` after each,
/// or as many as fit in [`PHASE_LIMIT`].
fn sequential(path: &Path, size_mb: u64) -> anyhow::Result<Sequential> {
    let mut chunk = vec![0u8; CHUNK];
    fastrand::fill(&mut chunk);
    let mut file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let started = Instant::now();
    let mut next_report = started + Duration::from_secs(1);
    let mut written = 0u64;
    for _ in 0..size_mb {
        file.write_all(&chunk).with_context(|| format!("cannot write {}", path.display()))?;
        file.sync_data().with_context(|| format!("cannot fdatasync {}", path.display()))?;
        written += CHUNK as u64;
        let now = Instant::now();
        if now >= next_report {
            let secs = (now - started).as_secs_f64();
            eprintln!(
                "bench disk {secs:>6.1} s | sequential + fdatasync {:>8.1} MB/s {:>6} MiB",
                written as f64 / 1e6 / secs,
                written >> 20
            );
            next_report += Duration::from_secs(1);
        }
        if now - started >= PHASE_LIMIT {
            break;
        }
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    Ok(Sequential { bytes: written, elapsed })
}

/// Appends 4 KiB to `path` `count` times, or for [`PHASE_LIMIT`], and times
/// each write + `fdatasync`, in µs.
fn appends_latency(path: &Path, count: u64) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let mut block = vec![0u8; APPEND];
    fastrand::fill(&mut block);
    let mut file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut hist = report::histogram();
    let started = Instant::now();
    let mut next_report = started + Duration::from_secs(1);
    for _ in 0..count {
        let t = Instant::now();
        file.write_all(&block).with_context(|| format!("cannot write {}", path.display()))?;
        file.sync_data().with_context(|| format!("cannot fdatasync {}", path.display()))?;
        report::record(&mut hist, t.elapsed());
        let now = Instant::now();
        if now >= next_report {
            eprintln!(
                "bench disk {:>6.1} s | append + fdatasync {:>6} appends, p50 {} us",
                (now - started).as_secs_f64(),
                hist.len(),
                hist.value_at_quantile(0.5)
            );
            next_report += Duration::from_secs(1);
        }
        if now - started >= PHASE_LIMIT {
            break;
        }
    }
    drop(file);
    std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    Ok(hist)
}
