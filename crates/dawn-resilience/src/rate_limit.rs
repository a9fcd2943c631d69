//! Per-key rate limiting (GCRA) with a quota per class of caller.

use std::{collections::BTreeMap, hash::Hash, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    Quota, RateLimiter, clock::Clock, middleware::NoOpMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use metrics::SharedString;
use serde::{Deserialize, Serialize};

use crate::{HumanDuration, RateLimited, clock::TokioClock, config::Issues, sweep::SweepSchedule};

/// Allowed values of [`RateQuota::max_requests`].
const MAX_REQUESTS_RANGE: (u64, u64) = (1, 1_000_000);
/// Longest allowed [`RateQuota::time_window`].
const MAX_TIME_WINDOW: Duration = Duration::from_secs(86_400);

/// A quota: at most `max_requests` per `time_window`.
///
/// Enforced with GCRA: a caller may send `max_requests` at once (the burst),
/// after which one more call is admitted every `time_window / max_requests`.
/// Over any `time_window` a caller therefore gets at most about
/// `2 × max_requests` calls, and on average `max_requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateQuota {
    /// Calls allowed per window, and the size of the burst. Default 100;
    /// allowed 1 to 1000000.
    pub max_requests: u32,
    /// The window; seconds or a duration such as `"1m"`. Default 60 s; allowed
    /// more than 0 s, at most 1 d.
    pub time_window: HumanDuration,
}

impl Default for RateQuota {
    fn default() -> Self {
        RateQuota {
            max_requests: 100,
            time_window: HumanDuration::secs(60),
        }
    }
}

impl RateQuota {
    fn validate(&self, issues: &mut Issues) {
        let (min, max) = MAX_REQUESTS_RANGE;
        issues.integer("max_requests", self.max_requests.into(), min, max);
        issues.duration("time_window", self.time_window, false, MAX_TIME_WINDOW);
    }

    /// The governor quota; values out of range are clamped to usable ones.
    fn to_governor(self) -> Quota {
        let burst = NonZeroU32::new(self.max_requests).unwrap_or(NonZeroU32::MIN);
        let period = (self.time_window.0 / burst.get()).max(Duration::from_nanos(1));
        Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

/// `resilience.rate_limit`: limits on inbound calls per caller.
///
/// ```yaml
/// rate_limit:
///   enabled: true
///   max_requests: 100        # default quota: 100 calls ...
///   time_window: 60          # ... per 60 s
///   per_trust_level:         # class name -> quota; classes without an entry use the default
///     trusted: { max_requests: 1000, time_window: 60 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Whether calls are rate limited at all. Default true.
    pub enabled: bool,
    /// Calls allowed per window for callers whose class has no quota of its
    /// own. Default 100; allowed 1 to 1000000.
    pub max_requests: u32,
    /// The window of the default quota. Default 60 s.
    pub time_window: HumanDuration,
    /// Quotas per class of caller, by class name. The node uses trust levels
    /// as classes (`untrusted`, `unknown`, `verified`, `trusted`,
    /// `bootstrap`); this crate treats names as opaque. In each entry an
    /// omitted field takes the default quota's default (100 per 60 s).
    /// Default: `trusted` and `bootstrap` get 1000 per 60 s (see
    /// [`RateLimitConfig::default_per_trust_level`]).
    pub per_trust_level: BTreeMap<String, RateQuota>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let quota = RateQuota::default();
        RateLimitConfig {
            enabled: true,
            max_requests: quota.max_requests,
            time_window: quota.time_window,
            per_trust_level: RateLimitConfig::default_per_trust_level(),
        }
    }
}

impl RateLimitConfig {
    /// The default class quotas: peers an operator vouched for (`trusted`,
    /// `bootstrap`) get ten times the default quota, 1000 calls per 60 s.
    pub fn default_per_trust_level() -> BTreeMap<String, RateQuota> {
        let generous = RateQuota {
            max_requests: 1000,
            time_window: HumanDuration::secs(60),
        };
        ["bootstrap", "trusted"]
            .into_iter()
            .map(|class| (class.to_owned(), generous))
            .collect()
    }

    /// The quota of callers whose class has no entry in `per_trust_level`.
    pub fn default_quota(&self) -> RateQuota {
        RateQuota {
            max_requests: self.max_requests,
            time_window: self.time_window,
        }
    }

    pub(crate) fn validate(&self, issues: &mut Issues) {
        self.default_quota().validate(issues);
        let mut classes = issues.section("per_trust_level");
        for (class, quota) in &self.per_trust_level {
            if class.trim().is_empty() {
                classes.push(
                    &format!("{class:?}"),
                    "a class name must not be empty".to_owned(),
                );
            }
            quota.validate(&mut classes.section(class));
        }
    }
}

type GovernorLimiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, TokioClock, NoOpMiddleware<Duration>>;

/// The limiter of one class: its own GCRA state per key.
struct ClassLimiter<K: Hash + Eq + Clone> {
    /// The class name, also the `class` label of the rejection counter.
    label: SharedString,
    limiter: GovernorLimiter<K>,
}

impl<K: Hash + Eq + Clone> ClassLimiter<K> {
    fn new(label: &str, quota: RateQuota, clock: TokioClock) -> Self {
        ClassLimiter {
            label: SharedString::from_shared(Arc::<str>::from(label)),
            limiter: RateLimiter::new(
                quota.to_governor(),
                DefaultKeyedStateStore::default(),
                clock,
            ),
        }
    }
}

/// Per-key rate limits with a quota per class of caller.
///
/// Each key (the node uses peer ids) has its own GCRA state per class. The
/// class is given on every check (the node passes the caller's trust level);
/// a class without a configured quota uses the default one. A key whose
/// class changes (a peer promoted to `trusted`) starts with a full quota of
/// the new class. Memory is
/// bounded: keys whose state has returned to "fresh" (they have been idle long
/// enough to have their full burst again) are evicted automatically, amortized
/// over checks, so the map holds at most about twice the keys active within a
/// window plus a small constant. [`KeyedRateLimiter::evict_idle`] does the
/// same on demand (e.g. from a timer, to free memory when traffic stops).
///
/// Metrics: `dawn_rate_limit_rejected_total{class}` (counter; `class` is a
/// configured class name or `default`), `dawn_rate_limit_keys` (gauge: keys
/// tracked after the last eviction).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use dawn_resilience::{KeyedRateLimiter, RateLimitConfig};
///
/// let limiter = KeyedRateLimiter::<u64>::new(&RateLimitConfig::default());
/// assert!(limiter.check(&7, "unknown").is_ok());
/// # }
/// ```
pub struct KeyedRateLimiter<K: Hash + Eq + Clone> {
    enabled: bool,
    default: ClassLimiter<K>,
    classes: Vec<ClassLimiter<K>>,
    clock: TokioClock,
    sweep: SweepSchedule,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("enabled", &self.enabled)
            .field(
                "classes",
                &self.classes.iter().map(|c| &*c.label).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<K> KeyedRateLimiter<K>
where
    K: Hash + Eq + Clone + Send + Sync,
{
    /// A limiter with the configured quotas. Out-of-range values are clamped
    /// (a `max_requests` of 0 acts as 1); validate the config first.
    pub fn new(config: &RateLimitConfig) -> Self {
        let clock = TokioClock::new();
        KeyedRateLimiter {
            enabled: config.enabled,
            default: ClassLimiter::new("default", config.default_quota(), clock),
            classes: config
                .per_trust_level
                .iter()
                .map(|(class, quota)| ClassLimiter::new(class, *quota, clock))
                .collect(),
            clock,
            sweep: SweepSchedule::new(),
        }
    }

    /// Admits one call from `key` of class `class`, or says how long until it
    /// would be admitted. Always admits when rate limiting is disabled.
    pub fn check(&self, key: &K, class: &str) -> Result<(), RateLimited> {
        if !self.enabled {
            return Ok(());
        }
        if self.sweep.due() {
            self.evict_idle();
        }
        let class = self
            .classes
            .iter()
            .find(|c| &*c.label == class)
            .unwrap_or(&self.default);
        match class.limiter.check_key(key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                metrics::counter!("dawn_rate_limit_rejected_total", "class" => class.label.clone())
                    .increment(1);
                Err(RateLimited {
                    retry_after: not_until.wait_time_from(self.clock.now()),
                })
            }
        }
    }

    /// Forgets keys that have been idle long enough to have their full quota
    /// again (indistinguishable from new keys), and releases the memory.
    pub fn evict_idle(&self) {
        let mut remaining = 0;
        for class in std::iter::once(&self.default).chain(&self.classes) {
            class.limiter.retain_recent();
            class.limiter.shrink_to_fit();
            remaining += class.limiter.len();
        }
        self.sweep.swept(remaining);
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("dawn_rate_limit_keys").set(remaining as f64);
    }

    /// Keys currently tracked (over all classes); an estimate while checks
    /// run concurrently.
    pub fn tracked_keys(&self) -> usize {
        std::iter::once(&self.default)
            .chain(&self.classes)
            .map(|c| c.limiter.len())
            .sum()
    }
}
