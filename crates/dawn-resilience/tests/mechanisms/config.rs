use std::time::Duration;

use dawn_resilience::{HumanDuration, RateQuota, ResilienceConfig};

fn messages(config: &ResilienceConfig) -> Vec<String> {
    config.validate().iter().map(ToString::to_string).collect()
}

#[test]
fn the_known_config_shape_loads() {
    let toml = r#"
        [resilience]
        circuit_breaker = { failure_threshold = 5, timeout = 60 }

        [resilience.rate_limit]
        max_requests = 100
        time_window = 60

        [resilience.rate_limit.per_trust_level]
        trusted = { max_requests = 1000, time_window = 60 }
        untrusted = { max_requests = 10 }

        [resilience.bulkhead]
        max_wait = "250ms"

        [resilience.retry]
        max_attempts = 4
        dial = { max_backoff = "10m" }

        [resilience.deadlines]
        default = "10s"
        max = "2m"
    "#;
    #[derive(serde::Deserialize)]
    struct File {
        resilience: ResilienceConfig,
    }
    let config = toml::from_str::<File>(toml).unwrap().resilience;
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(config.rate_limit.max_requests, 100);
    assert_eq!(
        config.rate_limit.per_trust_level["trusted"],
        RateQuota {
            max_requests: 1000,
            time_window: HumanDuration::secs(60)
        }
    );
    // An omitted field of a class quota takes the default.
    assert_eq!(
        config.rate_limit.per_trust_level["untrusted"].time_window,
        HumanDuration::secs(60)
    );
    assert_eq!(config.circuit_breaker.timeout.0, Duration::from_secs(60));
    assert_eq!(config.circuit_breaker.min_calls, 20);
    assert_eq!(config.bulkhead.max_wait.0, Duration::from_millis(250));
    assert_eq!(config.retry.max_attempts, 4);
    assert_eq!(config.retry.dial.max_backoff.0, Duration::from_secs(600));
    assert_eq!(
        config
            .deadlines
            .clamp_budget(Some(Duration::from_secs(600))),
        Duration::from_secs(120)
    );
}

#[test]
fn out_of_range_values_are_reported_with_their_full_key() {
    let mut config = ResilienceConfig::default();
    config.rate_limit.max_requests = 0;
    config.rate_limit.per_trust_level.insert(
        "trusted".into(),
        RateQuota {
            max_requests: 10,
            time_window: HumanDuration::secs(0),
        },
    );
    config.bulkhead.max_concurrent = 0;
    config.bulkhead.max_wait = HumanDuration::secs(120);
    config.circuit_breaker.failure_ratio = 1.5;
    config.circuit_breaker.half_open_max_calls = 0;
    config.retry.max_attempts = 11;
    config.retry.budget_ratio = -0.1;
    config.retry.initial_backoff = HumanDuration::secs(5);
    config.retry.dial.initial_backoff = HumanDuration::secs(600);
    config.deadlines.default = HumanDuration::secs(600);
    assert_eq!(
        messages(&config),
        vec![
            "resilience.rate_limit.max_requests: 0 is out of range (allowed: 1 to 1000000)",
            "resilience.rate_limit.per_trust_level.trusted.time_window: 0s is out of range (allowed: more than 0s, at most 1d)",
            "resilience.bulkhead.max_concurrent: 0 is out of range (allowed: 1 to 100000)",
            "resilience.bulkhead.max_wait: 2m is out of range (allowed: 0s to 1m)",
            "resilience.circuit_breaker.failure_ratio: 1.5 is out of range (allowed: more than 0 to 1)",
            "resilience.circuit_breaker.half_open_max_calls: 0 is out of range (allowed: 1 to 1000)",
            "resilience.retry.max_attempts: 11 is out of range (allowed: 1 to 10)",
            "resilience.retry.initial_backoff: 5s is more than max_backoff (2s)",
            "resilience.retry.budget_ratio: -0.1 is out of range (allowed: 0 to 1)",
            "resilience.retry.dial.initial_backoff: 10m is more than max_backoff (5m)",
            "resilience.deadlines.default: 10m is more than max (5m)",
        ]
    );
    let first = &config.validate()[0];
    assert_eq!(first.key, "resilience.rate_limit.max_requests");
    assert_eq!(first.message, "0 is out of range (allowed: 1 to 1000000)");
}

#[test]
fn unvalidated_values_do_not_panic_the_mechanisms() {
    let mut config = ResilienceConfig::default();
    config.rate_limit.max_requests = 0;
    config.rate_limit.time_window = HumanDuration::secs(0);
    config.bulkhead.max_concurrent = 0;
    config.circuit_breaker.failure_ratio = f64::NAN;
    config.circuit_breaker.window = HumanDuration::secs(0);
    config.retry.max_attempts = 0;
    config.retry.initial_backoff = HumanDuration::secs(10);
    config.retry.max_backoff = HumanDuration::secs(0);
    config.retry.dial.max_backoff = HumanDuration::secs(0);
    assert!(!config.validate().is_empty());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let limiter = dawn_resilience::KeyedRateLimiter::new(&config.rate_limit);
        let _ = limiter.check(&1u8, "x");
        let bulkhead = dawn_resilience::Bulkhead::new(&config.bulkhead);
        let _permit = bulkhead.acquire(&1u8).await.unwrap();
        let breakers = dawn_resilience::CircuitBreakers::new(&config.circuit_breaker);
        breakers.before_call(&1u8).unwrap().failure();
        let policy = dawn_resilience::RetryPolicy::new(&config.retry);
        assert_eq!(policy.max_attempts(), 1);
        assert_eq!(policy.backoff().count(), 0);
        let dials = dawn_resilience::DialBackoff::new(&config.retry.dial);
        dials.try_dial(&1u8).unwrap();
    });
}
