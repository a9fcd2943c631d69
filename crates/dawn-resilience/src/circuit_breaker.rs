//! Per-key circuit breakers for outbound calls.

use std::{
    fmt,
    hash::Hash,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{BreakerOpen, HumanDuration, config::Issues, sweep::SweepSchedule};

/// Number of buckets of the sliding window.
const WINDOW_BUCKETS: u64 = 10;

/// The `retry_in` hint given while every half-open trial slot is taken.
const HALF_OPEN_BUSY_HINT: Duration = Duration::from_secs(1);

/// `resilience.circuit_breaker`: when calls to a peer stop being attempted.
///
/// A breaker opens after `failure_threshold` consecutive failures, or when at
/// least `min_calls` calls ended within the last `window` and the share of
/// failures among them is at least `failure_ratio`. It stays open for
/// `timeout`, then admits up to `half_open_max_calls` trial calls: when that
/// many succeed it closes, and any failing trial opens it again.
///
/// ```yaml
/// circuit_breaker:
///   enabled: true
///   failure_threshold: 5      # consecutive failures that open the breaker
///   timeout: 60               # how long it stays open before trial calls
///   failure_ratio: 0.5        # ... or this share of failures ...
///   window: 60                # ... among the calls of this sliding window ...
///   min_calls: 20             # ... once it holds at least this many calls
///   half_open_max_calls: 1    # trial calls; that many successes close it
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    /// Whether breakers are used at all. Default true.
    pub enabled: bool,
    /// Consecutive failures that open the breaker. Default 5; allowed 1 to
    /// 10000.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it admits trial calls.
    /// Default 60 s; allowed more than 0 s, at most 1 d.
    pub timeout: HumanDuration,
    /// Share of failed calls within `window` that opens the breaker. Default
    /// 0.5; allowed more than 0 to 1.
    pub failure_ratio: f64,
    /// The sliding window over which `failure_ratio` is computed (kept in 10
    /// buckets, so it slides in steps of a tenth). Also how long a breaker
    /// with no calls is kept before it is forgotten. Default 60 s; allowed
    /// more than 0 s, at most 1 d.
    pub window: HumanDuration,
    /// Fewest calls in the window before `failure_ratio` applies. Default 20;
    /// allowed 1 to 1000000.
    pub min_calls: u32,
    /// Trial calls admitted while half-open; when that many succeed the
    /// breaker closes. Default 1; allowed 1 to 1000.
    pub half_open_max_calls: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            enabled: true,
            failure_threshold: 5,
            timeout: HumanDuration::secs(60),
            failure_ratio: 0.5,
            window: HumanDuration::secs(60),
            min_calls: 20,
            half_open_max_calls: 1,
        }
    }
}

impl CircuitBreakerConfig {
    pub(crate) fn validate(&self, issues: &mut Issues) {
        let day = Duration::from_secs(86_400);
        issues.integer(
            "failure_threshold",
            self.failure_threshold.into(),
            1,
            10_000,
        );
        issues.duration("timeout", self.timeout, false, day);
        issues.fraction("failure_ratio", self.failure_ratio, true, 1.0);
        issues.duration("window", self.window, false, day);
        issues.integer("min_calls", self.min_calls.into(), 1, 1_000_000);
        issues.integer(
            "half_open_max_calls",
            self.half_open_max_calls.into(),
            1,
            1000,
        );
    }
}

/// The state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through; results are counted.
    Closed,
    /// Calls are refused until the timeout has passed.
    Open,
    /// A bounded number of trial calls go through to test the peer.
    HalfOpen,
}

impl BreakerState {
    /// Every state, for exporting one gauge per state.
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// The `state`/`from`/`to` metric label: `closed`, `open`, `half_open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionCause {
    /// Closed → open: this many consecutive failures.
    ConsecutiveFailures(u32),
    /// Closed → open: `failures` of the `calls` in the window failed.
    FailureRatio {
        /// Failed calls in the window.
        failures: u32,
        /// All calls in the window.
        calls: u32,
    },
    /// Open → half-open: the open timeout passed and a call arrived.
    TimeoutElapsed,
    /// Half-open → open: a trial call failed.
    TrialFailed,
    /// Half-open → closed: enough trial calls succeeded.
    TrialsSucceeded,
}

impl fmt::Display for TransitionCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionCause::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
            TransitionCause::FailureRatio { failures, calls } => {
                write!(f, "{failures} of {calls} calls in the window failed")
            }
            TransitionCause::TimeoutElapsed => f.write_str("open timeout elapsed"),
            TransitionCause::TrialFailed => f.write_str("a trial call failed"),
            TransitionCause::TrialsSucceeded => f.write_str("trial calls succeeded"),
        }
    }
}

/// One breaker changed state; given to the listener of
/// [`CircuitBreakers::with_listener`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerStateChange<K> {
    /// Whose breaker.
    pub key: K,
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// Why.
    pub cause: TransitionCause,
}

/// Calls and failures in one slice of the window.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which slice of time (nanoseconds since the origin / bucket length).
    slice: u64,
    calls: u32,
    failures: u32,
}

/// Outcome counts over the sliding window.
#[derive(Debug, Clone, Default)]
struct Window {
    buckets: [Bucket; WINDOW_BUCKETS as usize],
}

impl Window {
    fn bucket(&mut self, slice: u64) -> &mut Bucket {
        // `slice % WINDOW_BUCKETS` is below the array length.
        let index = usize::try_from(slice % WINDOW_BUCKETS).unwrap_or(0);
        let bucket = &mut self.buckets[index];
        if bucket.slice != slice {
            *bucket = Bucket {
                slice,
                ..Bucket::default()
            };
        }
        bucket
    }

    fn record(&mut self, slice: u64, failed: bool) {
        let bucket = self.bucket(slice);
        bucket.calls = bucket.calls.saturating_add(1);
        bucket.failures = bucket.failures.saturating_add(u32::from(failed));
    }

    /// (calls, failures) of the buckets within the window ending at `slice`.
    fn totals(&self, slice: u64) -> (u32, u32) {
        self.buckets
            .iter()
            .filter(|b| b.slice <= slice && b.slice + WINDOW_BUCKETS > slice)
            .fold((0u32, 0u32), |(calls, failures), b| {
                (
                    calls.saturating_add(b.calls),
                    failures.saturating_add(b.failures),
                )
            })
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[derive(Debug)]
struct Breaker {
    phase: Phase,
    /// Changes on every transition; results of calls admitted under an older
    /// generation are ignored.
    generation: u64,
    consecutive_failures: u32,
    window: Window,
    last_activity: Instant,
}

/// One key's breaker, shared by the map and the guards of its calls.
#[derive(Debug)]
struct BreakerCell<K> {
    key: K,
    breaker: Mutex<Breaker>,
}

impl<K> BreakerCell<K> {
    fn lock(&self) -> MutexGuard<'_, Breaker> {
        // The breaker's invariants hold between statements, so a panic in
        // another thread while it held the lock leaves it usable.
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
}

type Listener<K> = Box<dyn Fn(&BreakerStateChange<K>) + Send + Sync>;

struct Inner<K: Hash + Eq> {
    enabled: bool,
    failure_threshold: u32,
    timeout: Duration,
    failure_ratio: f64,
    window: Duration,
    bucket_nanos: u64,
    min_calls: u32,
    half_open_max_calls: u32,
    origin: Instant,
    generations: AtomicU64,
    breakers: DashMap<K, Arc<BreakerCell<K>>>,
    sweep: SweepSchedule,
    listener: Option<Listener<K>>,
}

/// Per-key circuit breakers.
///
/// Before an outbound call, [`CircuitBreakers::before_call`] either refuses
/// it at once ([`BreakerOpen`] with the time until a trial is allowed) or
/// returns a [`CallGuard`]; the caller reports the outcome with
/// [`CallGuard::success`] or [`CallGuard::failure`].
///
/// **Which outcomes are failures is the caller's decision**: count transport
/// and availability failures (dial failed, connection lost, stream or call
/// timed out, deadline exceeded, the peer says it is busy or shutting down);
/// do not count errors the remote application returned (unknown tool, invalid
/// params, a tool error): those show the peer is up.
///
/// A guard dropped without a report counts as **cancelled**: it is neither a
/// success nor a failure (a caller that gave up says nothing about the
/// peer), and a half-open trial slot it held is freed for another trial. A
/// call whose deadline passed is a failure and must be reported as one.
///
/// Results of calls admitted before the breaker last changed state are
/// ignored (a late failure from before a recovery does not reopen it).
/// Breakers with no call for a whole `window` are forgotten (an open one only
/// once its timeout plus `window` has passed), so memory is bounded by the
/// keys called recently; forgetting resets the consecutive-failure count.
///
/// Metrics (no per-peer labels): `dawn_circuit_breaker_state{state}` (gauge:
/// breakers in each state), `dawn_circuit_breaker_transitions_total{from,to}`
/// (counter), `dawn_circuit_breaker_rejected_total` (counter: calls refused
/// while open). The state of a breaker is updated lazily: an open breaker
/// whose timeout has passed stays open until the next call makes it
/// half-open.
///
/// Cloning is cheap and shares the breakers.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use dawn_resilience::{CircuitBreakerConfig, CircuitBreakers};
///
/// let breakers = CircuitBreakers::<u64>::new(&CircuitBreakerConfig::default());
/// match breakers.before_call(&7) {
///     Ok(guard) => {
///         // ... make the call; on a transport failure: guard.failure() ...
///         guard.success();
///     }
///     Err(open) => println!("not calling: {open}"),
/// }
/// # }
/// ```
pub struct CircuitBreakers<K: Hash + Eq> {
    inner: Arc<Inner<K>>,
}

impl<K: Hash + Eq> Clone for CircuitBreakers<K> {
    fn clone(&self) -> Self {
        CircuitBreakers {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Hash + Eq> fmt::Debug for CircuitBreakers<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakers")
            .field("enabled", &self.inner.enabled)
            .field("breakers", &self.inner.breakers.len())
            .finish_non_exhaustive()
    }
}

/// An admitted call; report its outcome with [`CallGuard::success`] or
/// [`CallGuard::failure`]. Dropping it unreported counts as cancelled.
#[must_use = "report the outcome with success() or failure(); dropping counts as cancelled"]
pub struct CallGuard<K: Hash + Eq> {
    admitted: Option<Admitted<K>>,
}

struct Admitted<K: Hash + Eq> {
    inner: Arc<Inner<K>>,
    cell: Arc<BreakerCell<K>>,
    generation: u64,
    /// Admitted as a half-open trial.
    trial: bool,
}

impl<K: Hash + Eq> fmt::Debug for CallGuard<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallGuard")
            .field("generation", &self.admitted.as_ref().map(|a| a.generation))
            .finish()
    }
}

impl<K> CallGuard<K>
where
    K: Hash + Eq + Clone + Send + Sync,
{
    /// The call succeeded (or failed in a way that shows the peer is up).
    pub fn success(mut self) {
        self.settle(Outcome::Success);
    }

    /// The call failed in a way that counts against the peer.
    pub fn failure(mut self) {
        self.settle(Outcome::Failure);
    }

    fn settle(&mut self, outcome: Outcome) {
        if let Some(admitted) = self.admitted.take() {
            admitted
                .inner
                .on_outcome(&admitted.cell, admitted.generation, outcome);
        }
    }
}

impl<K: Hash + Eq> Drop for CallGuard<K> {
    fn drop(&mut self) {
        if let Some(admitted) = self.admitted.take()
            && admitted.trial
        {
            admitted
                .inner
                .on_trial_cancelled(&admitted.cell, admitted.generation);
        }
    }
}

/// A transition decided under a breaker's lock, reported after it.
struct Transition {
    from: BreakerState,
    to: BreakerState,
    cause: TransitionCause,
}

impl<K> CircuitBreakers<K>
where
    K: Hash + Eq + Clone + Send + Sync,
{
    /// Breakers with the configured thresholds. Out-of-range values are
    /// clamped to usable ones; validate the config first.
    pub fn new(config: &CircuitBreakerConfig) -> Self {
        Self::build(config, None)
    }

    /// Like [`CircuitBreakers::new`], and calls `listener` after every state
    /// change (outside the breaker's lock; keep it short, e.g. a log line).
    pub fn with_listener(
        config: &CircuitBreakerConfig,
        listener: impl Fn(&BreakerStateChange<K>) + Send + Sync + 'static,
    ) -> Self {
        Self::build(config, Some(Box::new(listener)))
    }

    fn build(config: &CircuitBreakerConfig, listener: Option<Listener<K>>) -> Self {
        let window = config.window.0.max(Duration::from_millis(1));
        let bucket_nanos = u64::try_from(window.as_nanos() / u128::from(WINDOW_BUCKETS))
            .unwrap_or(u64::MAX)
            .max(1);
        let failure_ratio = if config.failure_ratio.is_finite() {
            config.failure_ratio.clamp(f64::MIN_POSITIVE, 1.0)
        } else {
            1.0
        };
        CircuitBreakers {
            inner: Arc::new(Inner {
                enabled: config.enabled,
                failure_threshold: config.failure_threshold.max(1),
                timeout: config.timeout.0,
                failure_ratio,
                window,
                bucket_nanos,
                min_calls: config.min_calls.max(1),
                half_open_max_calls: config.half_open_max_calls.max(1),
                origin: Instant::now(),
                generations: AtomicU64::new(0),
                breakers: DashMap::new(),
                sweep: SweepSchedule::new(),
                listener,
            }),
        }
    }

    /// Admits a call to `key`, or refuses it while the breaker is open (or
    /// while all half-open trial slots are taken). Always admits when
    /// breakers are disabled.
    pub fn before_call(&self, key: &K) -> Result<CallGuard<K>, BreakerOpen> {
        let inner = &self.inner;
        if !inner.enabled {
            return Ok(CallGuard { admitted: None });
        }
        if inner.sweep.due() {
            self.evict_idle();
        }
        let cell = inner.cell(key);
        let mut transition = None;
        let decision = {
            let mut breaker = cell.lock();
            match breaker.phase {
                // The common case reads no clock: outcomes record activity.
                Phase::Closed => Ok((breaker.generation, false)),
                Phase::Open { until } => {
                    let now = Instant::now();
                    breaker.last_activity = now;
                    if now >= until {
                        transition = Some(inner.transition(
                            &mut breaker,
                            Phase::HalfOpen {
                                admitted: 1,
                                succeeded: 0,
                            },
                            TransitionCause::TimeoutElapsed,
                        ));
                        Ok((breaker.generation, true))
                    } else {
                        Err(BreakerOpen {
                            retry_in: until - now,
                        })
                    }
                }
                Phase::HalfOpen {
                    admitted,
                    succeeded,
                } => {
                    breaker.last_activity = Instant::now();
                    if admitted < inner.half_open_max_calls {
                        breaker.phase = Phase::HalfOpen {
                            admitted: admitted + 1,
                            succeeded,
                        };
                        Ok((breaker.generation, true))
                    } else {
                        Err(BreakerOpen {
                            retry_in: HALF_OPEN_BUSY_HINT.min(inner.timeout),
                        })
                    }
                }
            }
        };
        if let Some(transition) = transition {
            inner.report(&cell.key, transition);
        }
        match decision {
            Ok((generation, trial)) => Ok(CallGuard {
                admitted: Some(Admitted {
                    inner: Arc::clone(inner),
                    cell,
                    generation,
                    trial,
                }),
            }),
            Err(open) => {
                metrics::counter!("dawn_circuit_breaker_rejected_total").increment(1);
                Err(open)
            }
        }
    }

    /// The state of `key`'s breaker (closed if it has none).
    pub fn state(&self, key: &K) -> BreakerState {
        self.inner
            .breakers
            .get(key)
            .map_or(BreakerState::Closed, |cell| cell.lock().phase.state())
    }

    /// Forgets breakers that had no call for a whole window (open ones only
    /// once their timeout plus a window has passed) and no call in flight.
    pub fn evict_idle(&self) {
        let inner = &self.inner;
        let now = Instant::now();
        inner.breakers.retain(|_, cell| {
            if Arc::strong_count(cell) > 1 {
                return true; // a call is in flight
            }
            let breaker = cell.lock();
            let idle_since = match breaker.phase {
                Phase::Open { until } => breaker.last_activity.max(until),
                Phase::Closed | Phase::HalfOpen { .. } => breaker.last_activity,
            };
            let keep = now.saturating_duration_since(idle_since) < inner.window;
            if !keep {
                state_gauge(breaker.phase.state()).decrement(1.0);
            }
            keep
        });
        inner.breakers.shrink_to_fit();
        inner.sweep.swept(inner.breakers.len());
    }

    /// Keys with a breaker.
    pub fn tracked_keys(&self) -> usize {
        self.inner.breakers.len()
    }
}

fn state_gauge(state: BreakerState) -> metrics::Gauge {
    metrics::gauge!("dawn_circuit_breaker_state", "state" => state.as_str())
}

impl<K: Hash + Eq> Inner<K> {
    fn slice(&self, now: Instant) -> u64 {
        let nanos = u64::try_from(now.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX);
        nanos / self.bucket_nanos
    }

    /// Moves `breaker` to `to`, starting a new generation.
    fn transition(&self, breaker: &mut Breaker, to: Phase, cause: TransitionCause) -> Transition {
        let from = breaker.phase.state();
        breaker.phase = to;
        breaker.generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        if matches!(to, Phase::Closed) {
            breaker.consecutive_failures = 0;
            breaker.window = Window::default();
        }
        Transition {
            from,
            to: to.state(),
            cause,
        }
    }

    fn open(&self, breaker: &mut Breaker, cause: TransitionCause) -> Transition {
        let until = Instant::now() + self.timeout;
        self.transition(breaker, Phase::Open { until }, cause)
    }

    fn on_outcome(&self, cell: &BreakerCell<K>, generation: u64, outcome: Outcome)
    where
        K: Clone,
    {
        let now = Instant::now();
        let transition = {
            let mut breaker = cell.lock();
            if breaker.generation != generation {
                return; // admitted before the last state change
            }
            breaker.last_activity = now;
            match (breaker.phase, outcome) {
                (Phase::Closed, Outcome::Success) => {
                    breaker.consecutive_failures = 0;
                    let slice = self.slice(now);
                    breaker.window.record(slice, false);
                    None
                }
                (Phase::Closed, Outcome::Failure) => {
                    breaker.consecutive_failures = breaker.consecutive_failures.saturating_add(1);
                    let slice = self.slice(now);
                    breaker.window.record(slice, true);
                    let (calls, failures) = breaker.window.totals(slice);
                    if breaker.consecutive_failures >= self.failure_threshold {
                        let n = breaker.consecutive_failures;
                        Some(self.open(&mut breaker, TransitionCause::ConsecutiveFailures(n)))
                    } else if calls >= self.min_calls
                        && f64::from(failures) >= self.failure_ratio * f64::from(calls)
                    {
                        Some(self.open(
                            &mut breaker,
                            TransitionCause::FailureRatio { failures, calls },
                        ))
                    } else {
                        None
                    }
                }
                (
                    Phase::HalfOpen {
                        admitted,
                        succeeded,
                    },
                    Outcome::Success,
                ) => {
                    let succeeded = succeeded + 1;
                    if succeeded >= self.half_open_max_calls {
                        Some(self.transition(
                            &mut breaker,
                            Phase::Closed,
                            TransitionCause::TrialsSucceeded,
                        ))
                    } else {
                        breaker.phase = Phase::HalfOpen {
                            admitted,
                            succeeded,
                        };
                        None
                    }
                }
                (Phase::HalfOpen { .. }, Outcome::Failure) => {
                    Some(self.open(&mut breaker, TransitionCause::TrialFailed))
                }
                // Nothing is admitted under an open breaker's generation.
                (Phase::Open { .. }, _) => None,
            }
        };
        if let Some(transition) = transition {
            self.report(&cell.key, transition);
        }
    }

    /// A half-open trial ended without an outcome: free its slot.
    fn on_trial_cancelled(&self, cell: &BreakerCell<K>, generation: u64) {
        let mut breaker = cell.lock();
        if breaker.generation != generation {
            return;
        }
        if let Phase::HalfOpen {
            admitted,
            succeeded,
        } = breaker.phase
        {
            breaker.phase = Phase::HalfOpen {
                admitted: admitted.saturating_sub(1),
                succeeded,
            };
        }
    }

    fn report(&self, key: &K, transition: Transition)
    where
        K: Clone,
    {
        let Transition { from, to, cause } = transition;
        state_gauge(from).decrement(1.0);
        state_gauge(to).increment(1.0);
        metrics::counter!(
            "dawn_circuit_breaker_transitions_total",
            "from" => from.as_str(),
            "to" => to.as_str()
        )
        .increment(1);
        if let Some(listener) = &self.listener {
            listener(&BreakerStateChange {
                key: key.clone(),
                from,
                to,
                cause,
            });
        }
    }

    fn cell(&self, key: &K) -> Arc<BreakerCell<K>>
    where
        K: Clone,
    {
        if let Some(cell) = self.breakers.get(key) {
            return Arc::clone(&cell);
        }
        Arc::clone(&self.breakers.entry(key.clone()).or_insert_with(|| {
            state_gauge(BreakerState::Closed).increment(1.0);
            Arc::new(BreakerCell {
                key: key.clone(),
                breaker: Mutex::new(Breaker {
                    phase: Phase::Closed,
                    generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
                    consecutive_failures: 0,
                    window: Window::default(),
                    last_activity: Instant::now(),
                }),
            })
        }))
    }
}

impl<K: Hash + Eq> Drop for Inner<K> {
    fn drop(&mut self) {
        // Take this set's breakers out of the process-wide state gauges.
        for cell in self.breakers.iter() {
            state_gauge(cell.lock().phase.state()).decrement(1.0);
        }
    }
}
