//! What every load generator shares: the [`Budget`] that says when to stop,
//! the [`Pacer`] that holds a target rate, the pools of pre-generated random
//! values, and joining worker tasks so that the first failure stops them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// How long a run lasts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// This many records in total, across all workers.
    Records(u64),
    /// Until this much time has passed since the start.
    Duration(Duration),
}

/// When workers stop: each claims records from the budget before it sends or
/// counts them, and stops when it is granted none. Aborting (on the first
/// failure) grants nothing more and wakes every worker that waits.
#[derive(Debug)]
pub struct Budget {
    limit: Option<Limit>,
    deadline: Option<Instant>,
    claimed: AtomicU64,
    abort: CancellationToken,
}

impl Budget {
    /// A budget whose clock starts now; `None` grants every claim until
    /// aborted (the worker stops by a condition of its own).
    pub fn start(limit: Option<Limit>) -> Arc<Budget> {
        let deadline = match limit {
            Some(Limit::Duration(d)) => Some(Instant::now() + d),
            _ => None,
        };
        Arc::new(Budget { limit, deadline, claimed: AtomicU64::new(0), abort: CancellationToken::new() })
    }

    /// Claims up to `n` records; returns how many were granted.
    pub fn claim(&self, n: u64) -> u64 {
        if self.abort.is_cancelled() {
            return 0;
        }
        match self.limit {
            None => n,
            Some(Limit::Duration(_)) => {
                if self.deadline.is_some_and(|d| Instant::now() < d) {
                    n
                } else {
                    0
                }
            }
            Some(Limit::Records(max)) => {
                let claimed = self.claimed.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    (c < max).then(|| c.saturating_add(n).min(max))
                });
                match claimed {
                    Ok(before) => before.saturating_add(n).min(max) - before,
                    Err(_) => 0,
                }
            }
        }
    }

    /// When a duration-limited run ends.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Stops every worker: claims are refused from now on.
    pub fn abort(&self) {
        self.abort.cancel();
    }

    /// Whether the run was aborted.
    pub fn is_aborted(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// Resolves once the run was aborted.
    pub fn aborted(&self) -> WaitForCancellationFuture<'_> {
        self.abort.cancelled()
    }
}

/// Spaces one worker's records to hold a rate. A worker that fell behind
/// (the broker stalled) catches up in a burst of at most [`MAX_CATCH_UP`]
/// worth of records, not of everything it missed.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Instant,
}

/// The longest backlog a paced worker sends in a burst.
const MAX_CATCH_UP: Duration = Duration::from_millis(100);

impl Pacer {
    /// A pacer for `per_sec` records a second, or none for an unlimited rate.
    pub fn new(per_sec: Option<f64>) -> Option<Pacer> {
        Pacer::starting_at(per_sec, Instant::now())
    }

    /// A pacer whose first record is due at `first`: workers that pace
    /// whole batches start their schedules apart, so that together they
    /// spread their batches evenly instead of sending them at the same
    /// instants.
    pub fn starting_at(per_sec: Option<f64>, first: Instant) -> Option<Pacer> {
        // A rate so low that its interval passes a day (or any Duration) is
        // paced at one a day: the runs are bounded by a day anyway.
        const DAY: Duration = Duration::from_secs(24 * 60 * 60);
        per_sec.map(|rate| {
            let interval = Duration::try_from_secs_f64(1.0 / rate).map_or(DAY, |d| d.min(DAY));
            Pacer { interval, next: first }
        })
    }

    /// Waits until the next record is due, or until `deadline`.
    pub async fn wait(&mut self, deadline: Option<Instant>) {
        let now = Instant::now();
        if self.next > now {
            let until = deadline.map_or(self.next, |d| d.min(self.next));
            tokio::time::sleep_until(until).await;
        } else if now - self.next > MAX_CATCH_UP {
            self.next = now - MAX_CATCH_UP;
        }
        self.next += self.interval;
    }
}

/// Bytes of pre-generated values kept per pool: enough variety that no
/// layer can win by caching or compressing, small enough to stay in memory.
const POOL_BYTES: usize = 16 << 20;
/// The most values a pool holds.
const POOL_VALUES: usize = 1024;

/// Random, incompressible values made before the run, so generating them is
/// not measured; records reuse them in turn.
#[derive(Debug)]
pub struct Pool {
    values: Vec<Bytes>,
}

impl Pool {
    /// Values of `size` bytes; empty when `size` is 0.
    pub fn new(size: usize) -> Pool {
        if size == 0 {
            return Pool { values: Vec::new() };
        }
        let count = (POOL_BYTES / size).clamp(1, POOL_VALUES);
        let values = (0..count)
            .map(|_| {
                let mut value = vec![0u8; size];
                fastrand::fill(&mut value);
                Bytes::from(value)
            })
            .collect();
        Pool { values }
    }

    /// The `i`-th value, cycling; `None` for a pool of size 0.
    pub fn get(&self, i: u64) -> Option<&Bytes> {
        if self.values.is_empty() {
            return None;
        }
        // The remainder is below the length, which is a usize.
        self.values.get((i % self.values.len() as u64) as usize)
    }
}

/// Microseconds since the Unix epoch, by the wall clock.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A copy of `template` whose first 8 bytes are the time now, µs since the
/// Unix epoch, big-endian. `template` has at least 8 bytes.
pub fn stamped(template: &Bytes) -> Bytes {
    let mut value = BytesMut::with_capacity(template.len());
    value.put_u64(now_us());
    value.extend_from_slice(&template[8..]);
    value.freeze()
}

/// The stamp `stamped` wrote, if the value is long enough to hold one.
pub fn stamp_of(value: &[u8]) -> Option<u64> {
    value.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
}

/// Waits for every task of `tasks`. The first failure aborts `budget`, so the
/// others stop soon; it is the error returned once they all ended.
pub async fn join_all<T: 'static>(
    mut tasks: JoinSet<anyhow::Result<T>>,
    budget: &Budget,
) -> anyhow::Result<Vec<T>> {
    let mut done = Vec::with_capacity(tasks.len());
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.unwrap_or_else(|e| Err(anyhow!("a bench task failed: {e}")));
        match outcome {
            Ok(value) => done.push(value),
            Err(e) => {
                budget.abort();
                failure.get_or_insert(e);
            }
        }
    }
    failure.map_or(Ok(done), Err)
}

/// Splits `items` into `n` shares, dealt in turn: share i holds items i,
/// i + n, i + 2n, …
pub fn deal<T: Copy>(items: &[T], n: usize) -> Vec<Vec<T>> {
    let mut shares = vec![Vec::new(); n];
    for (i, item) in items.iter().enumerate() {
        shares[i % n].push(*item);
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_budget_grants_exactly_its_records() {
        let budget = Budget::start(Some(Limit::Records(10)));
        assert_eq!(budget.claim(4), 4);
        assert_eq!(budget.claim(4), 4);
        assert_eq!(budget.claim(4), 2);
        assert_eq!(budget.claim(1), 0);
    }

    #[test]
    fn an_aborted_budget_grants_nothing() {
        let budget = Budget::start(None);
        assert_eq!(budget.claim(3), 3);
        budget.abort();
        assert_eq!(budget.claim(3), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_duration_budget_grants_until_its_deadline() {
        let budget = Budget::start(Some(Limit::Duration(Duration::from_secs(1))));
        assert_eq!(budget.claim(5), 5);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(budget.claim(5), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tiny_rate_is_paced_at_one_a_day_not_a_panic() {
        let pacer = Pacer::new(Some(1e-300)).expect("a rate");
        assert_eq!(pacer.interval, Duration::from_secs(24 * 60 * 60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pacer_holds_its_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::new(Some(100.0)).expect("a rate");
        for _ in 0..50 {
            pacer.wait(None).await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(480) && elapsed <= Duration::from_millis(500),
            "{elapsed:?}"
        );
    }

    #[test]
    fn stamps_round_trip_and_values_keep_their_size() {
        let pool = Pool::new(100);
        let value = stamped(pool.get(3).expect("a value"));
        assert_eq!(value.len(), 100);
        let stamp = stamp_of(&value).expect("a stamp");
        assert!(stamp.abs_diff(now_us()) < 60_000_000);
        assert_eq!(stamp_of(b"short"), None);
        assert!(Pool::new(0).get(0).is_none());
    }

    #[test]
    fn deal_spreads_items_in_turn() {
        assert_eq!(deal(&[0, 1, 2, 3, 4], 2), [vec![0, 2, 4], vec![1, 3]]);
    }
}
