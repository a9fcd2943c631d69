//! Cost of the resilience layer on the call hot path, per call, for one key:
//! inbound rate-limit check + bulkhead slot, outbound breaker admit + report.
//!
//! Run with `cargo bench -p dawn-resilience`. Compare `hot_path/enabled` with
//! a remote call's latency to judge the "< 5% overhead" goal; `disabled`
//! shows the cost with every mechanism switched off.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use dawn_resilience::{
    Bulkhead, CircuitBreakers, HumanDuration, KeyedRateLimiter, ResilienceConfig,
};

/// The size of a libp2p peer id (an identity multihash of an ed25519 key).
type Key = [u8; 38];

fn config(enabled: bool) -> ResilienceConfig {
    let mut config = ResilienceConfig::default();
    config.rate_limit.enabled = enabled;
    // A quota the benchmark never exhausts, so every check is admitted.
    config.rate_limit.max_requests = 1_000_000;
    config.rate_limit.time_window = HumanDuration(Duration::from_millis(1));
    config.bulkhead.enabled = enabled;
    config.circuit_breaker.enabled = enabled;
    config
}

struct Layer {
    limiter: KeyedRateLimiter<Key>,
    bulkhead: Bulkhead<Key>,
    breakers: CircuitBreakers<Key>,
}

impl Layer {
    fn new(enabled: bool) -> Self {
        let config = config(enabled);
        Layer {
            limiter: KeyedRateLimiter::new(&config.rate_limit),
            bulkhead: Bulkhead::new(&config.bulkhead),
            breakers: CircuitBreakers::new(&config.circuit_breaker),
        }
    }

    async fn call(&self, key: &Key) {
        self.limiter.check(key, "verified").unwrap();
        let permit = self.bulkhead.acquire(key).await.unwrap();
        let guard = self.breakers.before_call(key).unwrap();
        black_box(&guard);
        guard.success();
        drop(permit);
    }
}

fn hot_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let key: Key = [7; 38];
    let mut group = c.benchmark_group("hot_path");
    for (name, enabled) in [("enabled", true), ("disabled", false)] {
        let layer = Layer::new(enabled);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        layer.call(black_box(&key)).await;
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();

    let layer = Layer::new(true);
    let mut group = c.benchmark_group("parts");
    group.bench_function("rate_limit_check", |b| {
        b.iter(|| layer.limiter.check(black_box(&key), "verified"));
    });
    group.bench_function("bulkhead_acquire_release", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    drop(layer.bulkhead.acquire(black_box(&key)).await.unwrap());
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("breaker_admit_success", |b| {
        b.iter(|| {
            layer
                .breakers
                .before_call(black_box(&key))
                .unwrap()
                .success()
        });
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
