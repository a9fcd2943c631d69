use std::time::Duration;

use dawn_resilience::{DialBackoff, DialBackoffConfig, HumanDuration};
use tokio::time::advance;

fn config() -> DialBackoffConfig {
    DialBackoffConfig {
        initial_backoff: HumanDuration::secs(1),
        max_backoff: HumanDuration::secs(60),
        stable_after: HumanDuration::secs(30),
    }
}

/// Waits until `key` may be dialed, dials, and returns how long it waited.
async fn next_dial(dials: &DialBackoff<&'static str>, key: &'static str) -> Duration {
    match dials.try_dial(&key) {
        Ok(()) => Duration::ZERO,
        Err(deferred) => {
            advance(deferred.retry_in).await;
            dials.try_dial(&key).unwrap();
            deferred.retry_in
        }
    }
}

#[tokio::test(start_paused = true)]
async fn waits_grow_per_peer_up_to_the_maximum() {
    let dials = DialBackoff::new(&config());
    assert_eq!(next_dial(&dials, "a").await, Duration::ZERO);
    let mut bound = Duration::from_secs(1);
    for _ in 0..10 {
        let waited = next_dial(&dials, "a").await;
        assert!(
            waited >= bound / 2 - Duration::from_millis(1) && waited <= bound,
            "waited {waited:?}, bound {bound:?}"
        );
        bound = (bound * 2).min(Duration::from_secs(60));
    }
    // Another peer has its own schedule.
    assert!(dials.try_dial(&"b").is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_stable_connection_resets_the_backoff() {
    let dials = DialBackoff::new(&config());
    for _ in 0..5 {
        next_dial(&dials, "a").await;
    }
    dials.connected(&"a");
    advance(Duration::from_secs(30)).await;
    dials.disconnected(&"a");
    // Redial at once, then the schedule starts from the beginning.
    assert!(dials.try_dial(&"a").is_ok());
    let waited = next_dial(&dials, "a").await;
    assert!(waited <= Duration::from_secs(1), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_flapping_peer_does_not_cause_a_dial_storm() {
    let dials = DialBackoff::new(&DialBackoffConfig {
        max_backoff: HumanDuration::secs(300),
        ..config()
    });
    // For 10 minutes the node tries to dial the peer every 100 ms; every dial
    // connects and the connection drops 1 s later.
    let mut dial_count = 0;
    for _ in 0..6000 {
        if dials.try_dial(&"flappy").is_ok() {
            dial_count += 1;
            dials.connected(&"flappy");
            advance(Duration::from_secs(1)).await;
            dials.disconnected(&"flappy");
        } else {
            advance(Duration::from_millis(100)).await;
        }
    }
    // Bounds 1, 2, 4, ..., 256, 300 s: about a dozen dials, not 6000 (or 600
    // if every drop reset the backoff).
    assert!((8..=16).contains(&dial_count), "{dial_count} dials");
}

#[tokio::test(start_paused = true)]
async fn forget_resets_a_peer() {
    let dials = DialBackoff::new(&config());
    dials.try_dial(&"a").unwrap();
    assert!(dials.try_dial(&"a").is_err());
    dials.forget(&"a");
    assert_eq!(dials.tracked_keys(), 0);
    assert!(dials.try_dial(&"a").is_ok());
}
