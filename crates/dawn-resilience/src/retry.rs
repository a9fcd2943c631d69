//! Retries with exponential backoff and jitter, bounded by a retry budget.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{DialBackoffConfig, ErrorKind, HumanDuration, config::Issues};

/// `resilience.retry`: retries of calls that are safe to repeat, and the
/// backoff between redials of a peer.
///
/// ```yaml
/// retry:
///   max_attempts: 3          # attempts per call, the first included; 1 = never retry
///   initial_backoff: 100ms   # upper bound of the first delay
///   max_backoff: 2s          # upper bound of any delay
///   budget_ratio: 0.1        # retries earned per call: retries add at most 10% load
///   budget_max_tokens: 10    # retries that can be saved up (and the starting balance)
///   dial: { initial_backoff: 1s, max_backoff: 5m, stable_after: 30s }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per call including the first; 1 disables retries. Default 3;
    /// allowed 1 to 10.
    pub max_attempts: u32,
    /// Upper bound of the delay before the first retry; each further delay's
    /// bound doubles. Default 100 ms; allowed more than 0 s, at most
    /// `max_backoff`.
    pub initial_backoff: HumanDuration,
    /// Upper bound of every delay. Default 2 s; allowed more than 0 s, at most
    /// 5 m.
    pub max_backoff: HumanDuration,
    /// Retry tokens earned by each call (first attempt); each retry spends
    /// one. 0.1 means retries add at most 10% to the load on a failing peer.
    /// Default 0.1; allowed 0 to 1.
    pub budget_ratio: f64,
    /// Most retry tokens that can be saved up; the budget starts full.
    /// Default 10; allowed 0 to 100000.
    pub budget_max_tokens: u32,
    /// Backoff between dials of the same peer (`resilience.retry.dial`).
    pub dial: DialBackoffConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            initial_backoff: HumanDuration::millis(100),
            max_backoff: HumanDuration::secs(2),
            budget_ratio: 0.1,
            budget_max_tokens: 10,
            dial: DialBackoffConfig::default(),
        }
    }
}

impl RetryConfig {
    pub(crate) fn validate(&self, issues: &mut Issues) {
        issues.integer("max_attempts", self.max_attempts.into(), 1, 10);
        issues.duration(
            "max_backoff",
            self.max_backoff,
            false,
            Duration::from_secs(300),
        );
        issues.duration(
            "initial_backoff",
            self.initial_backoff,
            false,
            Duration::from_secs(300),
        );
        if self.initial_backoff > self.max_backoff {
            issues.push(
                "initial_backoff",
                format!(
                    "{} is more than max_backoff ({})",
                    self.initial_backoff, self.max_backoff
                ),
            );
        }
        issues.fraction("budget_ratio", self.budget_ratio, false, 1.0);
        issues.integer(
            "budget_max_tokens",
            self.budget_max_tokens.into(),
            0,
            100_000,
        );
        self.dial.validate(&mut issues.section("dial"));
    }
}

/// Exponential backoff with "equal jitter": the delay whose bound is `b` is
/// drawn uniformly from `[b/2, b)`, and bounds double from `initial` up to
/// `max`. So `max` is a true upper bound, and peers that failed together do not
/// retry together.
pub(crate) fn jittered_backoff(initial: Duration, max: Duration) -> ExponentialBuilder {
    let max = max.max(Duration::from_nanos(2));
    let initial = initial.clamp(Duration::from_nanos(2), max);
    // backon adds a random share of up to 100% of its delay; start from half.
    ExponentialBuilder::new()
        .with_min_delay(initial / 2)
        .with_max_delay(max / 2)
        .with_factor(2.0)
        .with_jitter()
}

/// How often and how patiently to retry one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl RetryPolicy {
    /// The policy of `resilience.retry`. Out-of-range values are clamped (at
    /// least one attempt; `initial_backoff` at most `max_backoff`).
    pub fn new(config: &RetryConfig) -> Self {
        RetryPolicy {
            max_attempts: config.max_attempts.max(1),
            initial_backoff: config.initial_backoff.0.min(config.max_backoff.0),
            max_backoff: config.max_backoff.0,
        }
    }

    /// Attempts per call, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delays before the retries of one call: `max_attempts - 1` of
    /// them, the k-th (from 0) uniformly random in `[b/2, b)` with
    /// `b = min(initial_backoff × 2^k, max_backoff)`.
    pub fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        let retries = usize::try_from(self.max_attempts.saturating_sub(1)).unwrap_or(0);
        jittered_backoff(self.initial_backoff, self.max_backoff)
            .with_max_times(retries)
            .build()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new(&RetryConfig::default())
    }
}

/// Micro-tokens per retry token (fixed point keeps the budget lock-free).
const TOKEN: u64 = 1_000_000;

/// A token bucket that keeps retries from amplifying an outage.
///
/// Every call deposits `ratio` tokens (up to `max_tokens`); every retry
/// withdraws one, and a retry with no token left is not made. With ratio 0.1,
/// N calls that all fail cause at most `max_tokens + 0.1 × N` retries, however
/// many attempts each call would be allowed. Share one budget among all calls
/// of a node (or of one peer) to bound the retries they make together.
///
/// Metric: `dawn_retry_budget_exhausted_total` (counter: retries refused for
/// lack of tokens).
#[derive(Debug)]
pub struct RetryBudget {
    micro_tokens: AtomicU64,
    deposit: u64,
    max: u64,
}

impl RetryBudget {
    /// A full budget earning `ratio` tokens per call and holding at most
    /// `max_tokens`. A ratio outside 0..=1 is clamped.
    pub fn new(ratio: f64, max_tokens: u32) -> Self {
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // In 0..=TOKEN after the clamp.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let deposit = (ratio * TOKEN as f64).round() as u64;
        let max = u64::from(max_tokens) * TOKEN;
        RetryBudget {
            micro_tokens: AtomicU64::new(max),
            deposit,
            max,
        }
    }

    /// The budget of `resilience.retry` (`budget_ratio`, `budget_max_tokens`).
    pub fn from_config(config: &RetryConfig) -> Self {
        RetryBudget::new(config.budget_ratio, config.budget_max_tokens)
    }

    /// Records a call (a first attempt): earns `ratio` tokens.
    pub fn deposit(&self) {
        let _ = self
            .micro_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(self.deposit).min(self.max))
            });
    }

    /// Spends a token for one retry; false (and the retry must not be made)
    /// when less than one token is left.
    pub fn try_withdraw(&self) -> bool {
        let spent = self
            .micro_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                t.checked_sub(TOKEN)
            })
            .is_ok();
        if !spent {
            metrics::counter!("dawn_retry_budget_exhausted_total").increment(1);
        }
        spent
    }

    /// Tokens left (whole retries that may be made now).
    pub fn tokens(&self) -> u64 {
        self.micro_tokens.load(Ordering::Acquire) / TOKEN
    }
}

/// A call that [`retry`] gave up on.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// The error was not retryable (or retries are disabled): report `error`
    /// as it is.
    #[error("{error}")]
    Failed {
        /// The error of the last attempt.
        error: E,
        /// Attempts made.
        attempts: u32,
    },
    /// Every allowed attempt failed ([`ErrorKind::RetryExhausted`]).
    #[error("all {attempts} attempts failed; last error: {last_error}")]
    Exhausted {
        /// The error of the last attempt.
        last_error: E,
        /// Attempts made (`max_attempts`).
        attempts: u32,
    },
    /// A retry was due but the retry budget was empty
    /// ([`ErrorKind::RetryExhausted`]).
    #[error("retry budget exhausted after {attempts} attempt(s); last error: {last_error}")]
    BudgetExhausted {
        /// The error of the last attempt.
        last_error: E,
        /// Attempts made.
        attempts: u32,
    },
}

impl<E> RetryError<E> {
    /// Attempts made.
    pub fn attempts(&self) -> u32 {
        match self {
            RetryError::Failed { attempts, .. }
            | RetryError::Exhausted { attempts, .. }
            | RetryError::BudgetExhausted { attempts, .. } => *attempts,
        }
    }

    /// The error of the last attempt.
    pub fn last_error(&self) -> &E {
        match self {
            RetryError::Failed { error, .. }
            | RetryError::Exhausted {
                last_error: error, ..
            }
            | RetryError::BudgetExhausted {
                last_error: error, ..
            } => error,
        }
    }

    /// The error of the last attempt, by value.
    pub fn into_last_error(self) -> E {
        match self {
            RetryError::Failed { error, .. }
            | RetryError::Exhausted {
                last_error: error, ..
            }
            | RetryError::BudgetExhausted {
                last_error: error, ..
            } => error,
        }
    }

    /// [`ErrorKind::RetryExhausted`] when retrying gave up; `None` for
    /// [`RetryError::Failed`], whose kind is that of the error itself.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            RetryError::Failed { .. } => None,
            RetryError::Exhausted { .. } | RetryError::BudgetExhausted { .. } => {
                Some(ErrorKind::RetryExhausted)
            }
        }
    }

    /// The JSON-RPC error `data` when retrying gave up: `{"kind":
    /// "retry_exhausted", "attempts": N, "budget_exhausted": bool}`; `None`
    /// for [`RetryError::Failed`].
    pub fn data(&self) -> Option<Value> {
        let kind = self.kind()?;
        Some(json!({
            "kind": kind.as_str(),
            "attempts": self.attempts(),
            "budget_exhausted": matches!(self, RetryError::BudgetExhausted { .. }),
        }))
    }
}

/// Runs `operation` until it succeeds, retrying only errors for which
/// `is_retryable` is true, at most `policy.max_attempts()` attempts in all,
/// sleeping a jittered exponential backoff between attempts, and only while
/// `budget` has tokens.
///
/// `operation` gets the attempt number (1 for the first). The caller decides
/// what is retryable; the node retries only calls that are safe to repeat
/// (reads, tools marked idempotent) and only transient failures
/// ([`ErrorKind::is_transient`]), but not [`ErrorKind::BreakerOpen`] or
/// [`ErrorKind::RateLimited`], whose wait is longer than any backoff. Retries
/// do not look at the call's deadline: wrap the whole retry in
/// `tokio::time::timeout` so the caller never waits past it.
///
/// Metrics: `dawn_retries_total` (counter: retries made),
/// `dawn_retry_budget_exhausted_total`.
pub async fn retry<T, E, Op, Fut>(
    policy: &RetryPolicy,
    budget: &RetryBudget,
    is_retryable: impl Fn(&E) -> bool,
    mut operation: Op,
) -> Result<T, RetryError<E>>
where
    Op: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    budget.deposit();
    let mut delays = policy.backoff();
    let mut attempt = 1;
    loop {
        let error = match operation(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !is_retryable(&error) {
            return Err(RetryError::Failed {
                error,
                attempts: attempt,
            });
        }
        let Some(delay) = delays.next() else {
            return Err(if attempt == 1 {
                RetryError::Failed {
                    error,
                    attempts: attempt,
                }
            } else {
                RetryError::Exhausted {
                    last_error: error,
                    attempts: attempt,
                }
            });
        };
        if !budget.try_withdraw() {
            return Err(RetryError::BudgetExhausted {
                last_error: error,
                attempts: attempt,
            });
        }
        metrics::counter!("dawn_retries_total").increment(1);
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}
