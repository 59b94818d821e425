//! Circuit breakers, one per endpoint: a small state machine fed with the
//! outcome of each attempt, with no I/O and no clock of its own (every
//! method takes `now`), and the shared handle a program reads states from.
//!
//! A breaker is *closed* while its endpoint answers. After
//! [`BreakerConfig::failure_threshold`] connection failures in a row it
//! *opens* for a cool-down; calls then skip the endpoint without trying it.
//! Once the cool-down is over, the next call is let through as the *probe*
//! (the breaker is *half-open* while it runs): its success closes the
//! breaker, its failure opens it again with a cool-down twice as long, up
//! to [`BreakerConfig::max_cool_down`].
//!
//! Only failures to reach the broker count: any answer from it, an error
//! included, is a success. Failures of attempts that were already under way
//! when the last counted failure came do not count again: one connection
//! lost under many requests is one failure, not one per request.
//!
//! What a call does while every breaker is open is the connection's
//! business (`connection::Connection::call`).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

/// Connection failures in a row that open a breaker by default.
pub(crate) const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// The first cool-down by default.
pub(crate) const DEFAULT_COOL_DOWN: Duration = Duration::from_millis(250);
/// The longest cool-down by default: the longest wait between two retries,
/// as for a call's own retries.
pub(crate) const DEFAULT_MAX_COOL_DOWN: Duration = Duration::from_secs(2);

/// How the circuit breaker of each endpoint behaves; set with the builders'
/// `breaker` method (e.g. [`ProducerBuilder::breaker`](crate::ProducerBuilder::breaker)).
///
/// The defaults open a breaker after 5 connection failures in a row (a
/// refused port gets there within a second, through a call's own retries),
/// then let one call through after 250 ms, doubling up to 2 s while the
/// endpoint stays unreachable.
///
/// ```
/// use std::time::Duration;
/// use brooklet_client::BreakerConfig;
///
/// let patient = BreakerConfig::default()
///     .failure_threshold(10)
///     .cool_down(Duration::from_secs(1))
///     .max_cool_down(Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub(crate) failure_threshold: u32,
    pub(crate) cool_down: Duration,
    pub(crate) max_cool_down: Duration,
    pub(crate) enabled: bool,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            cool_down: DEFAULT_COOL_DOWN,
            max_cool_down: DEFAULT_MAX_COOL_DOWN,
            enabled: true,
        }
    }
}

impl BreakerConfig {
    /// Breakers that never open: every call tries its endpoints and retries
    /// until its request timeout, as a client without breakers does.
    pub fn disabled() -> Self {
        Self { enabled: false, ..Self::default() }
    }

    /// Connection failures in a row that open the breaker (default 5, at
    /// least 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// How long the breaker stays open the first time (default 250 ms); each
    /// failed probe doubles it, up to [`max_cool_down`](Self::max_cool_down).
    /// A random part of up to half of it is taken off, so clients that lost
    /// the same broker do not come back in step.
    pub fn cool_down(mut self, cool_down: Duration) -> Self {
        self.cool_down = cool_down;
        self
    }

    /// The longest cool-down (default 2 s): while the broker is down, how
    /// long after it is back at most until a client notices.
    pub fn max_cool_down(mut self, max_cool_down: Duration) -> Self {
        self.max_cool_down = max_cool_down;
        self
    }

    /// Why these settings cannot work, if they cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.failure_threshold == 0 {
            return Err("the breaker's failure_threshold must be at least 1".to_owned());
        }
        if self.cool_down.is_zero() || self.max_cool_down < self.cool_down {
            return Err(format!(
                "the breaker's cool_down ({:?}) must be above zero and at most its max_cool_down ({:?})",
                self.cool_down, self.max_cool_down
            ));
        }
        Ok(())
    }
}

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through: the endpoint answers, or has not failed often
    /// enough yet.
    Closed,
    /// The endpoint failed repeatedly: calls skip it until the cool-down is
    /// over, then one call is let through to try it again.
    Open,
    /// One call, the probe, is trying the endpoint again: its success closes
    /// the breaker, its failure opens it again for a longer cool-down.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// One endpoint's breaker, as [`Breakers::endpoints`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointBreaker {
    /// The endpoint, normalized (`http://host:port`).
    pub endpoint: String,
    /// Its breaker's state.
    pub state: BreakerState,
    /// Connection failures since the endpoint last answered.
    pub failures: u32,
    /// While open: the time left until a call is let through to try the
    /// endpoint again (zero once the cool-down is over and no call has come
    /// yet).
    pub retry_in: Option<Duration>,
}

/// The circuit breakers of a client's endpoints: read their states, or
/// watch them change. Returned by `breakers()` on [`Admin`](crate::Admin),
/// [`Producer`](crate::Producer) and [`Consumer`](crate::Consumer); cheap to
/// clone, and clones see the same breakers.
///
/// ```no_run
/// # async fn example(producer: brooklet_client::Producer) {
/// use brooklet_client::BreakerState;
///
/// let mut state = producer.breakers().subscribe();
/// // Wait until the broker answers again.
/// let _ = state.wait_for(|s| *s == BreakerState::Closed).await;
/// # }
/// ```
#[derive(Clone)]
pub struct Breakers {
    shared: Arc<Shared>,
}

impl fmt::Debug for Breakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.endpoints()).finish()
    }
}

impl Breakers {
    /// The client's state as a whole: [`Closed`](BreakerState::Closed) while
    /// some endpoint's breaker is closed, else
    /// [`HalfOpen`](BreakerState::HalfOpen) while one is trying its endpoint
    /// again, else [`Open`](BreakerState::Open). With one endpoint, its
    /// breaker's state.
    pub fn state(&self) -> BreakerState {
        *self.shared.state.borrow()
    }

    /// Each endpoint's breaker, in the order the endpoints were given.
    pub fn endpoints(&self) -> Vec<EndpointBreaker> {
        let now = Instant::now();
        self.shared.breakers.lock().iter().map(|b| b.snapshot(now)).collect()
    }

    /// A receiver of [`state`](Self::state) that sees each change; await
    /// one with `changed` or `wait_for`.
    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.shared.state.subscribe()
    }
}

/// The breakers of one connection and the channels their changes are
/// published on.
struct Shared {
    breakers: Mutex<Vec<Breaker>>,
    /// The overall state, for programs.
    state: watch::Sender<BreakerState>,
    /// Bumped on every change a waiting call may care about, a probe given
    /// up included (which changes no public state).
    changes: watch::Sender<u64>,
}

/// What a call may do next, from [`Breakers::choose`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Try endpoint `index`; as the probe of a half-open breaker when
    /// `probe`.
    Try { index: usize, probe: bool },
    /// Every endpoint that lets calls through was tried by this call since
    /// it last waited: wait (back off) before trying again.
    TriedAll,
    /// Every breaker is open, or half-open with its probe under way.
    Blocked(Blocked),
}

/// Why no endpoint can be tried now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Blocked {
    /// The soonest end of a cool-down; `None` when every breaker is
    /// half-open (a probe is under way), so only its outcome can change
    /// anything.
    pub(crate) until: Option<Instant>,
    /// Whether any of the blocked endpoints has ever answered.
    pub(crate) reached: bool,
}

impl Breakers {
    pub(crate) fn new(endpoints: &[Arc<str>], config: BreakerConfig) -> Self {
        let breakers = endpoints.iter().map(|e| Breaker::new(Arc::clone(e), config)).collect();
        let (state, _) = watch::channel(BreakerState::Closed);
        let (changes, _) = watch::channel(0);
        Self { shared: Arc::new(Shared { breakers: Mutex::new(breakers), state, changes }) }
    }

    /// A receiver of internal changes, for a call waiting on the breakers.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// The first endpoint, in order, that `tried` (a bit per endpoint) does
    /// not hold and whose breaker lets a call through now; it is taken (a
    /// half-open breaker's one probe).
    pub(crate) fn choose(&self, now: Instant, tried: u64) -> Choice {
        self.update(|breakers| {
            let mut tried_open = false;
            let mut blocked = Blocked { until: None, reached: false };
            for (index, breaker) in breakers.iter_mut().enumerate() {
                match breaker.admits(now) {
                    Admits::Yes if tried & (1 << index) != 0 => tried_open = true,
                    Admits::Yes => return Choice::Try { index, probe: breaker.admit(now) },
                    Admits::No { until } => {
                        blocked.reached |= breaker.reached;
                        if let Some(until) = until {
                            blocked.until = Some(blocked.until.map_or(until, |u| u.min(until)));
                        }
                    }
                }
            }
            if tried_open { Choice::TriedAll } else { Choice::Blocked(blocked) }
        })
    }

    /// Reports an answer from endpoint `index`; `reached` when it came from
    /// a Brooklet broker.
    pub(crate) fn succeeded(&self, index: usize, reached: bool) {
        self.update(|breakers| breakers[index].succeed(reached));
    }

    /// Reports a failure to reach endpoint `index` of an attempt let
    /// through at `started`.
    pub(crate) fn failed(
        &self,
        index: usize,
        started: Instant,
        now: Instant,
        probe: bool,
        error: Arc<dyn StdError + Send + Sync>,
    ) {
        self.update(|breakers| breakers[index].fail(started, now, probe, error));
    }

    /// A probe ended without an outcome (its call was dropped or ran out of
    /// time): the next call probes instead.
    pub(crate) fn probe_abandoned(&self, index: usize) {
        self.update(|breakers| breakers[index].abandon_probe());
    }

    /// The error a call that tried nothing gets while every breaker is
    /// blocked: the endpoints, the time to the next probe, and what made the
    /// first of them open.
    pub(crate) fn open_error(&self, now: Instant) -> crate::Error {
        let breakers = self.shared.breakers.lock();
        let endpoint = breakers.iter().map(|b| &*b.endpoint).collect::<Vec<_>>().join(", ");
        let retry_in = breakers
            .iter()
            .filter_map(|b| match b.state {
                State::Open { until } => Some(until.saturating_duration_since(now)),
                State::HalfOpen { .. } => Some(Duration::ZERO),
                State::Closed => None,
            })
            .min()
            .unwrap_or_default();
        let source = breakers.iter().find_map(|b| b.last_failure.clone());
        crate::Error::CircuitOpen { endpoint, retry_in, source }
    }

    /// Applies `change` under the lock and publishes what changed.
    fn update<T>(&self, change: impl FnOnce(&mut [Breaker]) -> T) -> T {
        let mut breakers = self.shared.breakers.lock();
        let out = change(&mut breakers);
        if breakers.iter_mut().fold(false, |any, b| std::mem::take(&mut b.changed) | any) {
            let overall = overall(breakers.iter().map(|b| b.public_state()));
            self.shared.state.send_if_modified(|state| std::mem::replace(state, overall) != overall);
            self.shared.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        out
    }
}

/// The state of a client as a whole, from its breakers' states.
fn overall(states: impl Iterator<Item = BreakerState>) -> BreakerState {
    let mut result = BreakerState::Open;
    for state in states {
        match state {
            BreakerState::Closed => return BreakerState::Closed,
            BreakerState::HalfOpen => result = BreakerState::HalfOpen,
            BreakerState::Open => {}
        }
    }
    result
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// `probing` while the probe is under way; a probe abandoned leaves the
    /// breaker half-open for the next call to probe.
    HalfOpen {
        probing: bool,
    },
}

/// Whether a breaker lets a call through now.
enum Admits {
    Yes,
    /// No; `until` is when it will, `None` when that depends on a probe.
    No {
        until: Option<Instant>,
    },
}

/// One endpoint's breaker.
struct Breaker {
    endpoint: Arc<str>,
    config: BreakerConfig,
    state: State,
    /// Connection failures since the endpoint last answered.
    failures: u32,
    /// When the last counted failure came.
    failed_at: Option<Instant>,
    /// Times opened since it last closed: each doubles the cool-down.
    opened: u32,
    /// Whether a Brooklet broker ever answered at this endpoint.
    reached: bool,
    /// The last connection failure, named by a `CircuitOpen` error.
    last_failure: Option<Arc<dyn StdError + Send + Sync>>,
    /// Whether `state` changed since the owner last looked.
    changed: bool,
}

impl Breaker {
    fn new(endpoint: Arc<str>, config: BreakerConfig) -> Self {
        Self {
            endpoint,
            config,
            state: State::Closed,
            failures: 0,
            failed_at: None,
            opened: 0,
            reached: false,
            last_failure: None,
            changed: false,
        }
    }

    fn set_state(&mut self, state: State) {
        self.changed |= self.state != state;
        self.state = state;
    }

    fn admits(&self, now: Instant) -> Admits {
        match self.state {
            State::Closed | State::HalfOpen { probing: false } => Admits::Yes,
            State::Open { until } if now >= until => Admits::Yes,
            State::Open { until } => Admits::No { until: Some(until) },
            State::HalfOpen { probing: true } => Admits::No { until: None },
        }
    }

    /// Lets a call through (`admits` said yes); returns whether it is the
    /// probe of a half-open breaker.
    fn admit(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed => false,
            State::Open { until } => {
                debug_assert!(now >= until, "admitted before the cool-down ended");
                self.set_state(State::HalfOpen { probing: true });
                tracing::warn!(
                    endpoint = %self.endpoint,
                    failures = self.failures,
                    "circuit breaker half-open: letting one call through to try the endpoint again"
                );
                true
            }
            State::HalfOpen { .. } => {
                self.set_state(State::HalfOpen { probing: true });
                true
            }
        }
    }

    fn succeed(&mut self, reached: bool) {
        self.reached |= reached;
        self.failures = 0;
        self.failed_at = None;
        self.opened = 0;
        self.last_failure = None;
        if self.state != State::Closed {
            self.set_state(State::Closed);
            tracing::warn!(endpoint = %self.endpoint, "circuit breaker closed: the endpoint answers again");
        }
    }

    fn fail(&mut self, started: Instant, now: Instant, probe: bool, error: Arc<dyn StdError + Send + Sync>) {
        self.last_failure = Some(error);
        // Under way when the last failure came: most likely the same
        // broken connection, already counted.
        if !probe && self.failed_at.is_some_and(|at| started < at) {
            return;
        }
        self.failures = self.failures.saturating_add(1);
        self.failed_at = Some(now);
        let open = match self.state {
            State::Closed => self.config.enabled && self.failures >= self.config.failure_threshold,
            // Only the probe's outcome counts: a call let through before
            // the breaker opened says nothing new.
            State::HalfOpen { .. } => probe,
            State::Open { .. } => false,
        };
        if open {
            let cool_down = self.cool_down(self.opened);
            self.opened = self.opened.saturating_add(1);
            self.set_state(State::Open { until: now + cool_down });
            tracing::warn!(
                endpoint = %self.endpoint,
                failures = self.failures,
                retry_in = ?cool_down,
                error = %self.last_failure.as_ref().map(|e| e.to_string()).unwrap_or_default(),
                "circuit breaker open: the endpoint could not be reached; calls skip it until one is let through to try again"
            );
        }
    }

    fn abandon_probe(&mut self) {
        if self.state == (State::HalfOpen { probing: true }) {
            self.set_state(State::HalfOpen { probing: false });
        }
    }

    /// The cool-down after the breaker opened `opened` times in a row: the
    /// first doubled that many times, capped, less a random part of up to
    /// half of it.
    fn cool_down(&self, opened: u32) -> Duration {
        let factor = 1u32.checked_shl(opened).unwrap_or(u32::MAX);
        let ceiling = self.config.cool_down.saturating_mul(factor).min(self.config.max_cool_down);
        let half = u64::try_from(ceiling.as_micros() / 2).unwrap_or(u64::MAX);
        ceiling - Duration::from_micros(fastrand::u64(0..=half))
    }

    fn public_state(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn snapshot(&self, now: Instant) -> EndpointBreaker {
        EndpointBreaker {
            endpoint: self.endpoint.to_string(),
            state: self.public_state(),
            failures: self.failures,
            retry_in: match self.state {
                State::Open { until } => Some(until.saturating_duration_since(now)),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers(endpoints: &[&str], config: BreakerConfig) -> Breakers {
        let endpoints: Vec<Arc<str>> = endpoints.iter().map(|e| Arc::from(*e)).collect();
        Breakers::new(&endpoints, config)
    }

    fn refused() -> Arc<dyn StdError + Send + Sync> {
        Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    /// Takes endpoint 0 and fails it.
    fn fail_once(b: &Breakers) {
        let Choice::Try { index: 0, probe } = b.choose(Instant::now(), 0) else {
            panic!("endpoint 0 should let a call through");
        };
        b.failed(0, Instant::now(), Instant::now(), probe, refused());
    }

    fn retry_in(b: &Breakers) -> Duration {
        b.endpoints()[0].retry_in.expect("open")
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_open_it_and_an_answer_in_between_resets_the_count() {
        let b = breakers(&["http://a:1"], BreakerConfig::default().failure_threshold(3));
        fail_once(&b);
        fail_once(&b);
        b.succeeded(0, true);
        assert_eq!(b.endpoints()[0].failures, 0);
        fail_once(&b);
        fail_once(&b);
        assert_eq!(b.state(), BreakerState::Closed);
        fail_once(&b);
        assert_eq!(b.state(), BreakerState::Open);
        let only = &b.endpoints()[0];
        assert_eq!((only.state, only.failures), (BreakerState::Open, 3));
    }

    /// Requests under way together on a connection that breaks fail
    /// together: one failure, not one per request.
    #[tokio::test(start_paused = true)]
    async fn failures_of_attempts_under_way_together_count_once() {
        let b = breakers(&["http://a:1"], BreakerConfig::default().failure_threshold(2));
        let started = Instant::now();
        tokio::time::advance(Duration::from_millis(10)).await;
        for _ in 0..16 {
            b.failed(0, started, Instant::now(), false, refused());
        }
        assert_eq!((b.state(), b.endpoints()[0].failures), (BreakerState::Closed, 1));
        // A retry started after that failure counts.
        fail_once(&b);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_blocks_until_its_cool_down_then_lets_one_probe_through() {
        let b = breakers(&["http://a:1"], BreakerConfig::default().failure_threshold(1));
        let mut watch = b.subscribe();
        fail_once(&b);
        assert!(watch.has_changed().unwrap());
        assert_eq!(*watch.borrow_and_update(), BreakerState::Open);
        let wait = retry_in(&b);
        assert!(wait >= DEFAULT_COOL_DOWN / 2 && wait <= DEFAULT_COOL_DOWN, "{wait:?}");
        let Choice::Blocked(blocked) = b.choose(Instant::now(), 0) else { panic!("open") };
        assert_eq!(blocked, Blocked { until: Some(Instant::now() + wait), reached: false });

        tokio::time::advance(wait).await;
        assert_eq!(retry_in(&b), Duration::ZERO, "still open until a call comes");
        assert_eq!(b.choose(Instant::now(), 0), Choice::Try { index: 0, probe: true });
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(*watch.borrow_and_update(), BreakerState::HalfOpen);
        // One probe at a time: the others wait for its outcome.
        let Choice::Blocked(blocked) = b.choose(Instant::now(), 0) else { panic!("probing") };
        assert_eq!(blocked.until, None);

        b.succeeded(0, true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(*watch.borrow_and_update(), BreakerState::Closed);
        assert_eq!(b.choose(Instant::now(), 0), Choice::Try { index: 0, probe: false });
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_it_for_longer_up_to_the_cap_and_a_success_starts_over() {
        let config = BreakerConfig::default()
            .failure_threshold(1)
            .cool_down(Duration::from_millis(100))
            .max_cool_down(Duration::from_millis(700));
        let b = breakers(&["http://a:1"], config);
        fail_once(&b);
        let mut ceilings = Vec::new();
        for _ in 0..5 {
            let wait = retry_in(&b);
            ceilings.push(wait);
            tokio::time::advance(wait).await;
            fail_once(&b); // the probe
            assert_eq!(b.state(), BreakerState::Open);
        }
        // Each cool-down lies in [ceiling / 2, ceiling]: 100, 200, 400, 700, 700 ms.
        let expected = [100, 200, 400, 700, 700, 700];
        for (wait, ceiling) in ceilings.iter().zip(expected) {
            let ceiling = Duration::from_millis(ceiling);
            assert!(*wait >= ceiling / 2 && *wait <= ceiling, "{ceilings:?}");
        }
        tokio::time::advance(retry_in(&b)).await;
        assert_eq!(b.choose(Instant::now(), 0), Choice::Try { index: 0, probe: true });
        b.succeeded(0, true);
        fail_once(&b);
        assert!(retry_in(&b) <= Duration::from_millis(100), "the cool-down starts over");
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_call_probe() {
        let b = breakers(&["http://a:1"], BreakerConfig::default().failure_threshold(1));
        fail_once(&b);
        let mut changes = b.changes();
        tokio::time::advance(retry_in(&b)).await;
        assert_eq!(b.choose(Instant::now(), 0), Choice::Try { index: 0, probe: true });
        changes.borrow_and_update();
        b.probe_abandoned(0);
        assert!(changes.has_changed().unwrap(), "waiting calls are woken");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.choose(Instant::now(), 0), Choice::Try { index: 0, probe: true });
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_probe_decides_a_half_open_breaker() {
        let b = breakers(&["http://a:1"], BreakerConfig::default().failure_threshold(1));
        // A call let through while closed, still running when it opens.
        assert_eq!(b.choose(Instant::now(), 0), Choice::Try { index: 0, probe: false });
        fail_once(&b);
        tokio::time::advance(retry_in(&b)).await;
        assert_eq!(b.choose(Instant::now(), 0), Choice::Try { index: 0, probe: true });
        b.failed(0, Instant::now(), Instant::now(), false, refused());
        assert_eq!(b.state(), BreakerState::HalfOpen, "a late failure does not reopen it");
        // But any answer shows the endpoint is back.
        b.succeeded(0, true);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn endpoints_are_chosen_in_order_skipping_open_and_tried_ones() {
        let b = breakers(&["http://a:1", "http://b:2"], BreakerConfig::default().failure_threshold(2));
        assert_eq!(b.choose(Instant::now(), 0), Choice::Try { index: 0, probe: false });
        b.failed(0, Instant::now(), Instant::now(), false, refused());
        // Tried by this call: the next one.
        assert_eq!(b.choose(Instant::now(), 0b01), Choice::Try { index: 1, probe: false });
        b.succeeded(1, true);
        assert_eq!(b.choose(Instant::now(), 0b11), Choice::TriedAll);
        // A new call still starts with the first.
        assert_eq!(b.choose(Instant::now(), 0), Choice::Try { index: 0, probe: false });
        b.failed(0, Instant::now(), Instant::now(), false, refused());
        let endpoints = b.endpoints();
        assert_eq!((endpoints[0].state, endpoints[1].state), (BreakerState::Open, BreakerState::Closed));
        assert_eq!(b.state(), BreakerState::Closed, "calls still go through the second");
        assert_eq!(b.choose(Instant::now(), 0), Choice::Try { index: 1, probe: false });

        b.failed(1, Instant::now(), Instant::now(), false, refused());
        b.failed(1, Instant::now(), Instant::now(), false, refused());
        assert_eq!(b.state(), BreakerState::Open);
        let Choice::Blocked(blocked) = b.choose(Instant::now(), 0) else { panic!("both open") };
        assert!(blocked.reached, "the second answered once");
        let soonest = b.endpoints().iter().filter_map(|e| e.retry_in).min().unwrap();
        assert_eq!(blocked.until, Some(Instant::now() + soonest));
    }

    #[tokio::test(start_paused = true)]
    async fn the_open_error_names_the_endpoints_the_wait_and_the_cause() {
        let b = breakers(&["http://a:1"], BreakerConfig::default().failure_threshold(1));
        fail_once(&b);
        let wait = retry_in(&b);
        let err = b.open_error(Instant::now());
        let crate::Error::CircuitOpen { endpoint, retry_in, source } = &err else { panic!("{err:?}") };
        assert_eq!((endpoint.as_str(), *retry_in), ("http://a:1", wait));
        assert!(source.is_some());
        let text = err.to_string();
        assert!(text.contains("circuit breaker") && text.contains("http://a:1"), "{text}");
        assert!(text.contains(&format!("{wait:?}")), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_breaker_never_opens() {
        let b = breakers(&["http://a:1"], BreakerConfig::disabled());
        for _ in 0..100 {
            fail_once(&b);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.endpoints()[0].failures, 100);
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        assert!(BreakerConfig::default().check().is_ok());
        assert!(BreakerConfig::default().failure_threshold(0).check().is_err());
        assert!(BreakerConfig::default().cool_down(Duration::ZERO).check().is_err());
        let inverted =
            BreakerConfig::default().cool_down(Duration::from_secs(3)).max_cool_down(Duration::from_secs(1));
        assert!(inverted.check().is_err());
    }
}
