use std::time::Duration;

use dawn_resilience::{HumanDuration, KeyedRateLimiter, RateLimitConfig, RateQuota};
use tokio::time::advance;

use crate::Recorded;

fn config(max_requests: u32, window_secs: u64) -> RateLimitConfig {
    RateLimitConfig {
        max_requests,
        time_window: HumanDuration::secs(window_secs),
        ..RateLimitConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn burst_then_refusal_with_retry_after_then_refill() {
    // 10 per 10 s: a burst of 10, then one more every second.
    let limiter = KeyedRateLimiter::new(&config(10, 10));
    for _ in 0..10 {
        limiter.check(&"a", "unknown").unwrap();
    }
    let refused = limiter.check(&"a", "unknown").unwrap_err();
    assert!(
        refused.retry_after > Duration::from_millis(900)
            && refused.retry_after <= Duration::from_secs(1),
        "{refused:?}"
    );
    // Another key is not affected.
    limiter.check(&"b", "unknown").unwrap();

    // Part of the wait: still refused, with less to wait.
    advance(Duration::from_millis(600)).await;
    let again = limiter.check(&"a", "unknown").unwrap_err();
    assert!(again.retry_after <= Duration::from_millis(400), "{again:?}");

    // After retry_after: exactly one more call.
    advance(again.retry_after).await;
    limiter.check(&"a", "unknown").unwrap();
    assert!(limiter.check(&"a", "unknown").is_err());

    // After a whole window idle: the full burst again.
    advance(Duration::from_secs(10)).await;
    for _ in 0..10 {
        limiter.check(&"a", "unknown").unwrap();
    }
    assert!(limiter.check(&"a", "unknown").is_err());
}

#[tokio::test(start_paused = true)]
async fn classes_get_their_own_quotas() {
    let mut config = config(2, 60);
    config.per_trust_level.insert(
        "trusted".into(),
        RateQuota {
            max_requests: 5,
            time_window: HumanDuration::secs(60),
        },
    );
    let limiter = KeyedRateLimiter::new(&config);

    let admitted = |key: &'static str, class: &str| {
        (0..10)
            .take_while(|_| limiter.check(&key, class).is_ok())
            .count()
    };
    assert_eq!(admitted("u", "unknown"), 2);
    assert_eq!(admitted("t", "trusted"), 5);
    // A class without a quota of its own uses the default one.
    assert_eq!(admitted("x", "no-such-class"), 2);
}

#[tokio::test(start_paused = true)]
async fn rejections_are_counted_per_class_without_peer_labels() {
    let recorded = Recorded::new();
    let mut config = config(1, 60);
    config
        .per_trust_level
        .insert("trusted".into(), RateQuota::default());
    let limiter = KeyedRateLimiter::new(&config);
    recorded.during(|| {
        limiter.check(&"u", "unknown").unwrap();
        limiter.check(&"u", "unknown").unwrap_err();
        limiter.check(&"u", "unknown").unwrap_err();
    });
    assert_eq!(
        recorded.counter("dawn_rate_limit_rejected_total", &[("class", "default")]),
        2
    );
    assert_eq!(
        recorded.counter("dawn_rate_limit_rejected_total", &[("class", "trusted")]),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn disabled_admits_everything() {
    let limiter = KeyedRateLimiter::new(&RateLimitConfig {
        enabled: false,
        ..config(1, 60)
    });
    for _ in 0..1000 {
        limiter.check(&1u32, "unknown").unwrap();
    }
    assert_eq!(limiter.tracked_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted_so_memory_stays_bounded() {
    // Default quota: 100 per 60 s, so a key that made one call is back to
    // "fresh" 1.2 s later.
    let limiter = KeyedRateLimiter::<u64>::new(&RateLimitConfig::default());

    // 100k distinct keys at once: all are live.
    for key in 0..100_000u64 {
        limiter.check(&key, "unknown").unwrap();
    }
    assert!(
        limiter.tracked_keys() >= 99_000,
        "{}",
        limiter.tracked_keys()
    );

    // Once they are idle, eviction forgets them.
    advance(Duration::from_secs(2)).await;
    limiter.evict_idle();
    assert_eq!(limiter.tracked_keys(), 0);

    // A flood of another 100k distinct keys spread over 10 s, never calling
    // evict_idle: automatic eviction keeps the map near the keys active in
    // the last ~1.2 s (about 12k), far below 100k.
    let mut peak = 0;
    for key in 100_000..200_000u64 {
        if key % 100 == 0 {
            advance(Duration::from_millis(10)).await;
        }
        limiter.check(&key, "unknown").unwrap();
        peak = peak.max(limiter.tracked_keys());
    }
    assert!(peak < 30_000, "peak {peak} keys");

    // When the flood is over, ordinary traffic sweeps the rest away.
    advance(Duration::from_secs(2)).await;
    for _ in 0..(2 * peak) {
        let _ = limiter.check(&7, "unknown");
    }
    assert!(limiter.tracked_keys() <= 1, "{}", limiter.tracked_keys());
}
