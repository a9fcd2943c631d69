use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use dawn_resilience::{
    BreakerState, BreakerStateChange, CircuitBreakerConfig, CircuitBreakers, HumanDuration,
    TransitionCause,
};
use tokio::time::advance;

use crate::Recorded;

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        enabled: true,
        failure_threshold: 3,
        timeout: HumanDuration::secs(60),
        failure_ratio: 0.5,
        window: HumanDuration::secs(10),
        min_calls: 10,
        half_open_max_calls: 1,
    }
}

fn fail(breakers: &CircuitBreakers<&'static str>, key: &'static str) {
    breakers.before_call(&key).unwrap().failure();
}

fn succeed(breakers: &CircuitBreakers<&'static str>, key: &'static str) {
    breakers.before_call(&key).unwrap().success();
}

type Events = Arc<Mutex<Vec<BreakerStateChange<&'static str>>>>;

/// A breaker set whose state changes are collected.
fn observed(config: &CircuitBreakerConfig) -> (CircuitBreakers<&'static str>, Events) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let breakers = CircuitBreakers::with_listener(config, move |change| {
        sink.lock().unwrap().push(change.clone());
    });
    (breakers, events)
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_it_and_it_fails_fast_with_retry_in() {
    let (breakers, events) = observed(&config());
    fail(&breakers, "p");
    fail(&breakers, "p");
    succeed(&breakers, "p"); // resets the consecutive count
    fail(&breakers, "p");
    fail(&breakers, "p");
    assert_eq!(breakers.state(&"p"), BreakerState::Closed);
    fail(&breakers, "p");
    assert_eq!(breakers.state(&"p"), BreakerState::Open);
    assert_eq!(
        *events.lock().unwrap(),
        vec![BreakerStateChange {
            key: "p",
            from: BreakerState::Closed,
            to: BreakerState::Open,
            cause: TransitionCause::ConsecutiveFailures(3),
        }]
    );

    let open = breakers.before_call(&"p").unwrap_err();
    assert_eq!(open.retry_in, Duration::from_secs(60));
    advance(Duration::from_secs(20)).await;
    let open = breakers.before_call(&"p").unwrap_err();
    assert_eq!(open.retry_in, Duration::from_secs(40));
    // Other peers are unaffected.
    succeed(&breakers, "q");
}

#[tokio::test(start_paused = true)]
async fn failure_ratio_over_the_window_opens_it() {
    let (breakers, events) = observed(&CircuitBreakerConfig {
        failure_threshold: 100,
        ..config()
    });
    // Below min_calls even 100% failures do not open it.
    for _ in 0..4 {
        fail(&breakers, "p");
    }
    assert_eq!(breakers.state(&"p"), BreakerState::Closed);
    // Old calls slide out of the 10 s window.
    advance(Duration::from_secs(11)).await;
    for _ in 0..4 {
        succeed(&breakers, "p");
        fail(&breakers, "p");
    }
    succeed(&breakers, "p");
    // 9 calls in the window (4 failed): below min_calls.
    assert_eq!(breakers.state(&"p"), BreakerState::Closed);
    fail(&breakers, "p"); // 10 calls, 5 failed: ratio 0.5
    assert_eq!(breakers.state(&"p"), BreakerState::Open);
    assert_eq!(
        events.lock().unwrap()[0].cause,
        TransitionCause::FailureRatio {
            failures: 5,
            calls: 10
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_mostly_healthy_peer_stays_closed() {
    let breakers = CircuitBreakers::new(&CircuitBreakerConfig {
        failure_threshold: 100,
        ..config()
    });
    for _ in 0..100 {
        for _ in 0..3 {
            succeed(&breakers, "p");
        }
        fail(&breakers, "p");
        advance(Duration::from_millis(100)).await;
    }
    assert_eq!(breakers.state(&"p"), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_only_the_trials_and_successes_close_it() {
    let (breakers, events) = observed(&CircuitBreakerConfig {
        half_open_max_calls: 2,
        ..config()
    });
    for _ in 0..3 {
        fail(&breakers, "p");
    }
    advance(Duration::from_secs(60)).await;
    let trial1 = breakers.before_call(&"p").unwrap();
    assert_eq!(breakers.state(&"p"), BreakerState::HalfOpen);
    let trial2 = breakers.before_call(&"p").unwrap();
    let refused = breakers.before_call(&"p").unwrap_err();
    assert!(refused.retry_in <= Duration::from_secs(1));

    trial1.success();
    assert_eq!(breakers.state(&"p"), BreakerState::HalfOpen);
    // Still only the admitted trials.
    assert!(breakers.before_call(&"p").is_err());
    trial2.success();
    assert_eq!(breakers.state(&"p"), BreakerState::Closed);
    succeed(&breakers, "p");

    let causes: Vec<_> = events.lock().unwrap().iter().map(|e| e.cause).collect();
    assert_eq!(
        causes,
        vec![
            TransitionCause::ConsecutiveFailures(3),
            TransitionCause::TimeoutElapsed,
            TransitionCause::TrialsSucceeded,
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_trial_reopens_it_for_a_full_timeout() {
    let breakers = CircuitBreakers::new(&config());
    for _ in 0..3 {
        fail(&breakers, "p");
    }
    advance(Duration::from_secs(61)).await;
    breakers.before_call(&"p").unwrap().failure();
    assert_eq!(breakers.state(&"p"), BreakerState::Open);
    assert_eq!(
        breakers.before_call(&"p").unwrap_err().retry_in,
        Duration::from_secs(60)
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_trial_is_cancelled_and_frees_its_slot() {
    let breakers = CircuitBreakers::new(&config());
    for _ in 0..3 {
        fail(&breakers, "p");
    }
    advance(Duration::from_secs(60)).await;
    let trial = breakers.before_call(&"p").unwrap();
    assert!(breakers.before_call(&"p").is_err());
    drop(trial); // neither success nor failure
    assert_eq!(breakers.state(&"p"), BreakerState::HalfOpen);
    breakers.before_call(&"p").unwrap().success();
    assert_eq!(breakers.state(&"p"), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn dropped_closed_guards_are_neutral() {
    let breakers = CircuitBreakers::new(&config());
    for _ in 0..2 {
        fail(&breakers, "p");
    }
    for _ in 0..10 {
        drop(breakers.before_call(&"p").unwrap());
    }
    // Cancellations neither reset nor extend the failure count.
    fail(&breakers, "p");
    assert_eq!(breakers.state(&"p"), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn late_results_from_before_a_transition_are_ignored() {
    let breakers = CircuitBreakers::new(&config());
    let slow_call = breakers.before_call(&"p").unwrap();
    for _ in 0..3 {
        fail(&breakers, "p");
    }
    advance(Duration::from_secs(60)).await;
    breakers.before_call(&"p").unwrap().success();
    assert_eq!(breakers.state(&"p"), BreakerState::Closed);
    // The call admitted long before recovery fails now: it says nothing
    // about the recovered peer.
    slow_call.failure();
    for _ in 0..2 {
        fail(&breakers, "p");
    }
    assert_eq!(breakers.state(&"p"), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn transitions_and_states_are_exported_without_peer_labels() {
    let recorded = Recorded::new();
    recorded
        .during_async(async {
            let breakers = CircuitBreakers::new(&config());
            succeed(&breakers, "q");
            for _ in 0..3 {
                fail(&breakers, "p");
            }
            assert!(breakers.before_call(&"p").is_err());
            advance(Duration::from_secs(60)).await;
            breakers.before_call(&"p").unwrap().success();
            for _ in 0..3 {
                fail(&breakers, "p");
            }
        })
        .await;
    let transitions = |from, to| {
        recorded.counter(
            "dawn_circuit_breaker_transitions_total",
            &[("from", from), ("to", to)],
        )
    };
    assert_eq!(transitions("closed", "open"), 2);
    assert_eq!(transitions("open", "half_open"), 1);
    assert_eq!(transitions("half_open", "closed"), 1);
    assert_eq!(transitions("half_open", "open"), 0);
    assert_eq!(
        recorded.counter("dawn_circuit_breaker_rejected_total", &[]),
        1
    );
    // The breaker set was dropped at the end of the block: the gauges went
    // back to zero. Check them while it is alive, too.
    assert_eq!(
        recorded.gauge("dawn_circuit_breaker_state", &[("state", "open")]),
        0.0
    );

    let recorded = Recorded::new();
    let breakers = recorded.during(|| {
        let breakers = CircuitBreakers::new(&config());
        succeed(&breakers, "q");
        for _ in 0..3 {
            fail(&breakers, "p");
        }
        breakers
    });
    assert_eq!(
        recorded.gauge("dawn_circuit_breaker_state", &[("state", "open")]),
        1.0
    );
    assert_eq!(
        recorded.gauge("dawn_circuit_breaker_state", &[("state", "closed")]),
        1.0
    );
    recorded.during(|| drop(breakers));
    assert_eq!(
        recorded.gauge("dawn_circuit_breaker_state", &[("state", "closed")]),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn idle_breakers_are_forgotten_open_ones_only_after_timeout() {
    let breakers = CircuitBreakers::new(&config());
    succeed(&breakers, "idle");
    for _ in 0..3 {
        fail(&breakers, "down");
    }
    let in_flight = breakers.before_call(&"busy").unwrap();
    advance(Duration::from_secs(11)).await;
    breakers.evict_idle();
    // "idle" is gone; "down" is open (timeout 60 s); "busy" has a call in flight.
    assert_eq!(breakers.tracked_keys(), 2);
    assert_eq!(breakers.state(&"down"), BreakerState::Open);
    in_flight.success();
    advance(Duration::from_secs(60)).await;
    breakers.evict_idle();
    assert_eq!(breakers.tracked_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn disabled_never_refuses() {
    let breakers = CircuitBreakers::new(&CircuitBreakerConfig {
        enabled: false,
        ..config()
    });
    for _ in 0..100 {
        fail(&breakers, "p");
    }
    assert_eq!(breakers.state(&"p"), BreakerState::Closed);
    assert_eq!(breakers.tracked_keys(), 0);
}
