use std::{sync::Arc, time::Duration};

use dawn_resilience::{Bulkhead, BulkheadConfig, HumanDuration};
use tokio::{task::yield_now, time::Instant};

use crate::Recorded;

fn config(max_concurrent: u32, max_wait_ms: u64, max_waiting: u32) -> BulkheadConfig {
    BulkheadConfig {
        enabled: true,
        max_concurrent,
        max_wait: HumanDuration::millis(max_wait_ms),
        max_waiting,
    }
}

#[tokio::test(start_paused = true)]
async fn limit_is_per_key_and_the_excess_call_waits_then_is_busy() {
    let recorded = Recorded::new();
    let bulkhead = Bulkhead::new(&config(2, 100, 4));
    let _a1 = bulkhead.acquire(&"a").await.unwrap();
    let _a2 = bulkhead.acquire(&"a").await.unwrap();
    // Another key has its own slots.
    let _b1 = bulkhead.acquire(&"b").await.unwrap();

    let started = Instant::now();
    let busy = recorded
        .during_async(bulkhead.acquire(&"a"))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(busy.max_concurrent, 2);
    assert_eq!(
        recorded.counter(
            "dawn_bulkhead_rejected_total",
            &[("reason", "wait_timeout")]
        ),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_released_permit_lets_a_waiter_in() {
    let bulkhead = Arc::new(Bulkhead::new(&config(1, 1000, 4)));
    let held = bulkhead.acquire(&"a").await.unwrap();
    let started = Instant::now();
    let waiter = tokio::spawn({
        let bulkhead = Arc::clone(&bulkhead);
        async move { bulkhead.acquire(&"a").await.map(|_permit| ()) }
    });
    yield_now().await; // the waiter is now queued
    assert!(!waiter.is_finished());
    drop(held);
    waiter.await.unwrap().unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_capped_and_the_excess_is_refused_at_once() {
    let recorded = Recorded::new();
    let bulkhead = Arc::new(Bulkhead::new(&config(1, 1000, 1)));
    let _held = bulkhead.acquire(&"a").await.unwrap();
    let waiter = tokio::spawn({
        let bulkhead = Arc::clone(&bulkhead);
        async move { bulkhead.acquire(&"a").await.map(|_permit| ()) }
    });
    yield_now().await;

    let started = Instant::now();
    recorded
        .during_async(bulkhead.acquire(&"a"))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(
        recorded.counter(
            "dawn_bulkhead_rejected_total",
            &[("reason", "too_many_waiting")]
        ),
        1
    );
    // The queued waiter itself times out after max_wait.
    assert!(waiter.await.unwrap().is_err());
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_leaves_the_queue() {
    let bulkhead = Bulkhead::new(&config(1, 1000, 1));
    let held = bulkhead.acquire(&"a").await.unwrap();
    // Give up waiting long before max_wait.
    let gave_up = tokio::time::timeout(Duration::from_millis(10), bulkhead.acquire(&"a")).await;
    assert!(gave_up.is_err());
    // Its place in the queue is free again: this call waits (not refused at
    // once) and gets the slot when it is released.
    let (acquired, ()) = tokio::join!(bulkhead.acquire(&"a"), async {
        yield_now().await;
        drop(held);
    });
    let _permit = acquired.unwrap();
}

#[tokio::test(start_paused = true)]
async fn zero_wait_refuses_at_once() {
    let bulkhead = Bulkhead::new(&config(1, 0, 4));
    let _held = bulkhead.acquire(&"a").await.unwrap();
    let started = Instant::now();
    assert!(bulkhead.acquire(&"a").await.is_err());
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted_busy_ones_kept() {
    let bulkhead = Bulkhead::new(&config(4, 100, 4));
    for key in 0..5000u32 {
        drop(bulkhead.acquire(&key).await.unwrap());
    }
    let held = bulkhead.acquire(&9999).await.unwrap();
    // Amortized sweeps already ran during the loop.
    assert!(
        bulkhead.tracked_keys() <= 1100,
        "{}",
        bulkhead.tracked_keys()
    );
    bulkhead.evict_idle();
    assert_eq!(bulkhead.tracked_keys(), 1);
    drop(held);
    bulkhead.evict_idle();
    assert_eq!(bulkhead.tracked_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn disabled_is_unlimited() {
    let bulkhead = Bulkhead::new(&BulkheadConfig {
        enabled: false,
        ..config(1, 0, 0)
    });
    let permits: Vec<_> = acquire_many(&bulkhead, 100).await;
    assert_eq!(permits.len(), 100);
}

async fn acquire_many(
    bulkhead: &Bulkhead<&'static str>,
    n: usize,
) -> Vec<dawn_resilience::BulkheadPermit> {
    let mut permits = Vec::with_capacity(n);
    for _ in 0..n {
        permits.push(bulkhead.acquire(&"a").await.unwrap());
    }
    permits
}
