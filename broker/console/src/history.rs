//! The charts: a task samples the broker's totals every second into a
//! bounded ring (the last ten minutes), each topic's high watermarks for its
//! rate, and every few seconds each group's lag per topic (also the last ten
//! minutes), so a group's page shows its lag from before it was opened.
//! Stopped with the server.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brooklet_core::Core;
use brooklet_metrics::{LATENCY_BOUNDS_MICROS, LATENCY_BUCKETS, Metrics, Totals};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Samples kept: ten minutes, one a second.
pub(crate) const MAX_SAMPLES: usize = 600;

/// How often the sampler reads the totals.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// Groups' lag is sampled every this many intervals.
pub(crate) const LAG_EVERY: u64 = 5;

/// Lag samples kept per group: ten minutes, one every [`LAG_EVERY`] s.
pub(crate) const MAX_LAG_SAMPLES: usize = 120;

/// Most groups whose lag is sampled (the first, by name).
pub(crate) const MAX_LAG_GROUPS: usize = 1000;

/// Most partitions one lag sample reads, over all groups: the groups past
/// it are not sampled, so that sampling never slows the broker.
pub(crate) const MAX_LAG_PARTITIONS: usize = 100_000;

/// One second of the broker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sample {
    /// When it was taken, ms since the epoch.
    pub(crate) at_ms: i64,
    /// Records appended per second.
    pub(crate) records_in: f64,
    /// Records served per second.
    pub(crate) records_out: f64,
    /// Produce latency percentiles over the second (bucket upper bounds, in
    /// ms); `None` when no produce request ended in it.
    pub(crate) produce_p50_ms: Option<f64>,
    /// See `produce_p50_ms`.
    pub(crate) produce_p99_ms: Option<f64>,
    /// Mean group-commit time over the second, in ms.
    pub(crate) group_commit_ms: Option<f64>,
}

/// A group's lag at one moment, per topic (so that a reader sums only the
/// topics it may see).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LagSample {
    /// When it was taken, ms since the epoch.
    pub(crate) at_ms: i64,
    /// Lag summed over each topic's partitions.
    pub(crate) by_topic: Vec<(String, u64)>,
}

/// The samples, the per-topic rates and the groups' lag. Locks, not
/// channels: readers take a copy and the sampler writes once a second.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
    /// Records per second appended to each topic over the last interval.
    topic_rates: Mutex<HashMap<String, f64>>,
    /// Each group's lag, oldest first.
    group_lags: Mutex<HashMap<String, VecDeque<LagSample>>>,
}

impl History {
    /// Every sample, oldest first.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples.lock().iter().copied().collect()
    }

    /// The rate of `topic`, records per second, if sampled.
    pub(crate) fn topic_rate(&self, topic: &str) -> Option<f64> {
        self.topic_rates.lock().get(topic).copied()
    }

    /// `group`'s lag over time, oldest first, summed over the topics
    /// `visible` accepts: (ms since the epoch, records).
    pub(crate) fn group_lag(&self, group: &str, visible: impl Fn(&str) -> bool) -> Vec<(i64, u64)> {
        let lags = self.group_lags.lock();
        let Some(samples) = lags.get(group) else { return Vec::new() };
        samples
            .iter()
            .map(|s| (s.at_ms, s.by_topic.iter().filter(|(t, _)| visible(t)).map(|(_, lag)| lag).sum()))
            .collect()
    }

    /// Adds one lag sample per group in `now`; groups absent from it are
    /// forgotten.
    pub(crate) fn push_lags(&self, now: HashMap<String, LagSample>) {
        let mut lags = self.group_lags.lock();
        lags.retain(|group, _| now.contains_key(group));
        for (group, sample) in now {
            let ring = lags.entry(group).or_default();
            if ring.len() == MAX_LAG_SAMPLES {
                ring.pop_front();
            }
            ring.push_back(sample);
        }
    }

    fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock();
        if samples.len() == MAX_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Samples every [`INTERVAL`] until `stop` is cancelled.
    pub(crate) async fn run(&self, core: Core, metrics: Metrics, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<(tokio::time::Instant, Totals, HashMap<String, u64>)> = None;
        for tick in 0u64.. {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => return,
            }
            if tick % LAG_EVERY == 0 {
                // Reading every group's offsets blocks: off the async workers.
                let reading = core.clone();
                if let Ok(lags) = tokio::task::spawn_blocking(move || group_lags(&reading, now_ms())).await {
                    self.push_lags(lags);
                }
            }
            let now = tokio::time::Instant::now();
            let totals = metrics.totals();
            let watermarks = topic_watermarks(&core);
            if let Some((then, before, old_marks)) = &last {
                let secs = now.duration_since(*then).as_secs_f64().max(1e-3);
                self.push(sample(before, &totals, secs, now_ms()));
                let rates = watermarks
                    .iter()
                    .map(|(t, hw)| {
                        let old = old_marks.get(t).copied().unwrap_or(*hw);
                        (t.clone(), hw.saturating_sub(old) as f64 / secs)
                    })
                    .collect();
                *self.topic_rates.lock() = rates;
            }
            last = Some((now, totals, watermarks));
        }
    }
}

/// Each group's lag per topic, for the first [`MAX_LAG_GROUPS`] groups, up
/// to [`MAX_LAG_PARTITIONS`] partitions in all.
pub(crate) fn group_lags(core: &Core, at_ms: i64) -> HashMap<String, LagSample> {
    let groups = core.groups();
    let Ok(list) = groups.list() else { return HashMap::new() };
    let mut lags = HashMap::new();
    let mut partitions = 0;
    for (id, _, _) in list.into_iter().take(MAX_LAG_GROUPS) {
        if partitions >= MAX_LAG_PARTITIONS {
            break;
        }
        let Ok(d) = groups.describe(&id) else { continue };
        partitions += d.partitions.len();
        let mut by_topic: BTreeMap<String, u64> = BTreeMap::new();
        for l in d.partitions {
            *by_topic.entry(l.topic).or_default() += l.lag;
        }
        lags.insert(id, LagSample { at_ms, by_topic: by_topic.into_iter().collect() });
    }
    lags
}

/// The sum of each topic's high watermarks.
fn topic_watermarks(core: &Core) -> HashMap<String, u64> {
    let log = core.log();
    log.list_topics()
        .into_iter()
        .filter_map(|t| {
            let (_, states) = log.describe_topic(&t.name).ok()?;
            Some((t.name, states.iter().map(|s| s.high_watermark).sum()))
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}

/// The second between two readings of the totals.
pub(crate) fn sample(before: &Totals, after: &Totals, secs: f64, at_ms: i64) -> Sample {
    let latency: [u64; LATENCY_BUCKETS] =
        std::array::from_fn(|i| after.produce_latency[i].saturating_sub(before.produce_latency[i]));
    let commits = after.group_commits.saturating_sub(before.group_commits);
    let commit_micros = after.group_commit_micros.saturating_sub(before.group_commit_micros);
    Sample {
        at_ms,
        records_in: after.records_in.saturating_sub(before.records_in) as f64 / secs,
        records_out: after.records_out.saturating_sub(before.records_out) as f64 / secs,
        produce_p50_ms: percentile(&latency, 0.50),
        produce_p99_ms: percentile(&latency, 0.99),
        group_commit_ms: (commits > 0).then(|| commit_micros as f64 / commits as f64 / 1000.0),
    }
}

/// The upper bound (ms) of the bucket holding the `q` quantile; the last
/// bucket, unbounded, reports twice the last bound.
fn percentile(buckets: &[u64; LATENCY_BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let bound = LATENCY_BOUNDS_MICROS
                .get(i)
                .copied()
                .unwrap_or(LATENCY_BOUNDS_MICROS[LATENCY_BOUNDS_MICROS.len() - 1] * 2);
            return Some(bound as f64 / 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_the_difference_of_two_readings() {
        let before = Totals {
            records_in: 10,
            records_out: 5,
            group_commits: 2,
            group_commit_micros: 100,
            ..Totals::default()
        };
        let mut after =
            Totals { records_in: 30, records_out: 5, group_commits: 4, group_commit_micros: 3100, ..before };
        after.produce_latency[0] = 98; // <= 0.25 ms
        after.produce_latency[4] = 2; // <= 4 ms
        let s = sample(&before, &after, 2.0, 7);
        assert_eq!(s.records_in, 10.0);
        assert_eq!(s.records_out, 0.0);
        assert_eq!(s.produce_p50_ms, Some(0.25));
        assert_eq!(s.produce_p99_ms, Some(4.0));
        assert_eq!(s.group_commit_ms, Some(1.5));
        let idle = sample(&after, &after, 1.0, 8);
        assert_eq!((idle.produce_p50_ms, idle.group_commit_ms), (None, None));
    }

    #[test]
    fn a_groups_lag_sums_the_visible_topics_keeps_ten_minutes_and_ends_with_the_group() {
        let h = History::default();
        let at = |at_ms| LagSample { at_ms, by_topic: vec![("a".into(), 2), ("b".into(), 5)] };
        for i in 0..MAX_LAG_SAMPLES + 3 {
            h.push_lags([("g".to_owned(), at(i as i64))].into());
        }
        let all = h.group_lag("g", |_| true);
        assert_eq!(all.len(), MAX_LAG_SAMPLES);
        assert_eq!(all[0], (3, 7));
        assert_eq!(h.group_lag("g", |t| t == "a")[0], (3, 2), "topics the reader may not see are left out");
        assert!(h.group_lag("other", |_| true).is_empty());
        h.push_lags(HashMap::new());
        assert!(h.group_lag("g", |_| true).is_empty(), "a deleted group's lag is forgotten");
    }

    #[test]
    fn the_ring_keeps_the_last_ten_minutes() {
        let h = History::default();
        let s = sample(&Totals::default(), &Totals::default(), 1.0, 0);
        for i in 0..MAX_SAMPLES + 5 {
            h.push(Sample { at_ms: i as i64, ..s });
        }
        let kept = h.samples();
        assert_eq!(kept.len(), MAX_SAMPLES);
        assert_eq!(kept[0].at_ms, 5);
    }
}
