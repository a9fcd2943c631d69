use std::{cell::Cell, time::Duration};

use dawn_resilience::{
    ErrorKind, HumanDuration, RetryBudget, RetryConfig, RetryError, RetryPolicy, retry,
};
use tokio::time::Instant;

use crate::Recorded;

fn policy(max_attempts: u32, initial_ms: u64, max_ms: u64) -> RetryPolicy {
    RetryPolicy::new(&RetryConfig {
        max_attempts,
        initial_backoff: HumanDuration::millis(initial_ms),
        max_backoff: HumanDuration::millis(max_ms),
        ..RetryConfig::default()
    })
}

fn unlimited_budget() -> RetryBudget {
    RetryBudget::new(1.0, 100_000)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Transient,
    Permanent,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

fn is_transient(e: &Failure) -> bool {
    *e == Failure::Transient
}

/// Allows for backon computing delays in `f32`.
const SLACK: Duration = Duration::from_micros(100);

#[tokio::test(start_paused = true)]
async fn only_retryable_errors_are_retried() {
    let calls = Cell::new(0);
    let result: Result<(), _> = retry(
        &policy(5, 100, 1000),
        &unlimited_budget(),
        is_transient,
        |_| {
            calls.set(calls.get() + 1);
            async { Err(Failure::Permanent) }
        },
    )
    .await;
    assert_eq!(calls.get(), 1);
    let err = result.unwrap_err();
    assert!(matches!(
        err,
        RetryError::Failed {
            error: Failure::Permanent,
            attempts: 1
        }
    ));
    assert_eq!(err.kind(), None);
    assert_eq!(err.to_string(), "Permanent");
}

#[tokio::test(start_paused = true)]
async fn retries_until_success() {
    let recorded = Recorded::new();
    let attempts_seen = Cell::new(Vec::new());
    let value = recorded
        .during_async(retry(
            &policy(5, 100, 1000),
            &unlimited_budget(),
            is_transient,
            |attempt| {
                let mut seen = attempts_seen.take();
                seen.push(attempt);
                attempts_seen.set(seen);
                async move {
                    if attempt < 3 {
                        Err(Failure::Transient)
                    } else {
                        Ok("done")
                    }
                }
            },
        ))
        .await
        .unwrap();
    assert_eq!(value, "done");
    assert_eq!(attempts_seen.take(), vec![1, 2, 3]);
    assert_eq!(recorded.counter("dawn_retries_total", &[]), 2);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_is_respected_and_the_wait_follows_the_backoff() {
    let calls = Cell::new(0);
    let started = Instant::now();
    let err = retry(
        &policy(4, 100, 1000),
        &unlimited_budget(),
        is_transient,
        |_| {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(Failure::Transient) }
        },
    )
    .await
    .unwrap_err();
    assert_eq!(calls.get(), 4);
    assert_eq!(err.attempts(), 4);
    assert_eq!(err.kind(), Some(ErrorKind::RetryExhausted));
    assert_eq!(err.data().unwrap()["attempts"], 4);
    assert_eq!(*err.last_error(), Failure::Transient);
    // Three waits with bounds 100, 200 and 400 ms, each in [b/2, b).
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(350) - SLACK && waited < Duration::from_millis(700),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn one_attempt_means_no_retry() {
    let calls = Cell::new(0);
    let err = retry(
        &policy(1, 100, 1000),
        &unlimited_budget(),
        is_transient,
        |_| {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(Failure::Transient) }
        },
    )
    .await
    .unwrap_err();
    assert_eq!(calls.get(), 1);
    assert!(matches!(err, RetryError::Failed { attempts: 1, .. }));
}

#[test]
fn backoff_grows_with_jitter_within_bounds() {
    let policy = policy(10, 100, 1000);
    let mut first_delays = Vec::new();
    for _ in 0..50 {
        let delays: Vec<Duration> = policy.backoff().collect();
        assert_eq!(delays.len(), 9);
        for (k, delay) in delays.iter().enumerate() {
            let bound = (Duration::from_millis(100) * (1 << k)).min(Duration::from_millis(1000));
            assert!(
                *delay + SLACK >= bound / 2 && *delay < bound + SLACK,
                "delay {k} = {delay:?}, bound {bound:?}"
            );
        }
        first_delays.push(delays[0]);
    }
    // Jitter: the same policy does not produce the same schedule every time.
    first_delays.sort();
    first_delays.dedup();
    assert!(first_delays.len() > 10, "{first_delays:?}");
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_retries_from_amplifying_an_outage() {
    let recorded = Recorded::new();
    // 10 saved-up retries, then 0.1 per call.
    let budget = RetryBudget::new(0.1, 10);
    let policy = policy(3, 10, 100);
    let mut attempts = 0;
    let mut budget_stops = 0;
    recorded
        .during_async(async {
            for _ in 0..100 {
                let err = retry(&policy, &budget, is_transient, |_| {
                    attempts += 1;
                    async { Err::<(), _>(Failure::Transient) }
                })
                .await
                .unwrap_err();
                assert_eq!(err.kind(), Some(ErrorKind::RetryExhausted));
                if matches!(err, RetryError::BudgetExhausted { .. }) {
                    budget_stops += 1;
                }
            }
        })
        .await;
    let retries = attempts - 100;
    // Without a budget: 200 retries. With it: at most 10 + 0.1 × 100.
    assert!((10..=20).contains(&retries), "{retries} retries");
    assert!(budget_stops > 50, "{budget_stops}");
    assert_eq!(recorded.counter("dawn_retries_total", &[]), retries);
    assert_eq!(
        recorded.counter("dawn_retry_budget_exhausted_total", &[]),
        budget_stops
    );
}

#[test]
fn budget_refills_with_calls_and_is_capped() {
    let budget = RetryBudget::new(0.5, 2);
    assert_eq!(budget.tokens(), 2);
    assert!(budget.try_withdraw());
    assert!(budget.try_withdraw());
    assert!(!budget.try_withdraw());
    budget.deposit();
    assert!(!budget.try_withdraw()); // half a token
    budget.deposit();
    assert!(budget.try_withdraw());
    for _ in 0..100 {
        budget.deposit();
    }
    assert_eq!(budget.tokens(), 2);
    // A zero budget never allows a retry.
    let none = RetryBudget::new(0.0, 0);
    none.deposit();
    assert!(!none.try_withdraw());
}
