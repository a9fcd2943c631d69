//! Per-key concurrency limits (bulkheads) with a short, bounded wait.

use std::{
    hash::Hash,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{Busy, HumanDuration, config::Issues, sweep::SweepSchedule};

/// `resilience.bulkhead`: how many inbound calls one caller may have in
/// flight, and how long an excess call waits for a slot.
///
/// ```yaml
/// bulkhead:
///   enabled: true
///   max_concurrent: 64   # calls in flight per caller
///   max_wait: 1s         # how long an excess call waits for a slot
///   max_waiting: 256     # calls allowed to wait at once per caller; more are refused at once
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BulkheadConfig {
    /// Whether concurrency is limited at all. Default true.
    pub enabled: bool,
    /// Calls in flight per caller. Default 64; allowed 1 to 100000.
    pub max_concurrent: u32,
    /// How long a call beyond the limit waits for a slot before it is refused
    /// as busy. Default 1 s; allowed 0 s (no waiting) to 1 m.
    pub max_wait: HumanDuration,
    /// Calls per caller allowed to wait at the same time; further calls are
    /// refused at once. Default 256; allowed 0 to 100000.
    pub max_waiting: u32,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig {
            enabled: true,
            max_concurrent: 64,
            max_wait: HumanDuration::secs(1),
            max_waiting: 256,
        }
    }
}

impl BulkheadConfig {
    pub(crate) fn validate(&self, issues: &mut Issues) {
        issues.integer("max_concurrent", self.max_concurrent.into(), 1, 100_000);
        issues.duration("max_wait", self.max_wait, true, Duration::from_secs(60));
        issues.integer("max_waiting", self.max_waiting.into(), 0, 100_000);
    }
}

/// The slots of one key.
#[derive(Debug)]
struct KeySlots {
    semaphore: Semaphore,
    waiting: AtomicU32,
}

/// Counts a call as waiting for as long as it lives (also when the waiting
/// call is cancelled).
struct WaitingCall<'a>(&'a AtomicU32);

impl<'a> WaitingCall<'a> {
    fn enter(waiting: &'a AtomicU32, max_waiting: u32) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_waiting).then_some(n + 1)
            })
            .ok()
            .map(|_| WaitingCall(waiting))
    }
}

impl Drop for WaitingCall<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A slot held by one call; dropping it frees the slot (and wakes a waiter).
#[must_use = "the slot is released as soon as the permit is dropped"]
#[derive(Debug)]
pub struct BulkheadPermit {
    slots: Option<Arc<KeySlots>>,
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.semaphore.add_permits(1);
        }
    }
}

/// Per-key concurrency limits.
///
/// [`Bulkhead::acquire`] returns at once while the key has fewer than
/// `max_concurrent` calls in flight; otherwise it waits at most `max_wait` for
/// a slot, and at most `max_waiting` calls per key wait at once, so there is
/// never an unbounded queue. Waiters are served in arrival order. Keys with
/// no call in flight or waiting are evicted (amortized over acquisitions, or
/// with [`Bulkhead::evict_idle`]).
///
/// Metric: `dawn_bulkhead_rejected_total{reason}` (counter; `reason` is
/// `wait_timeout` or `too_many_waiting`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use dawn_resilience::{Bulkhead, BulkheadConfig};
///
/// let bulkhead = Bulkhead::<u64>::new(&BulkheadConfig::default());
/// let permit = bulkhead.acquire(&7).await.unwrap();
/// // ... handle the call ...
/// drop(permit);
/// # }
/// ```
#[derive(Debug)]
pub struct Bulkhead<K: Hash + Eq> {
    enabled: bool,
    max_concurrent: u32,
    max_wait: Duration,
    max_waiting: u32,
    slots: DashMap<K, Arc<KeySlots>>,
    sweep: SweepSchedule,
}

impl<K> Bulkhead<K>
where
    K: Hash + Eq + Clone + Send + Sync,
{
    /// A bulkhead with the configured limits. Out-of-range values are clamped
    /// (a `max_concurrent` of 0 acts as 1); validate the config first.
    pub fn new(config: &BulkheadConfig) -> Self {
        let max_permits = u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX);
        Bulkhead {
            enabled: config.enabled,
            max_concurrent: config.max_concurrent.clamp(1, max_permits),
            max_wait: config.max_wait.0,
            max_waiting: config.max_waiting,
            slots: DashMap::new(),
            sweep: SweepSchedule::new(),
        }
    }

    /// Takes a slot for one call from `key`, waiting at most `max_wait`.
    ///
    /// Cancel-safe: dropping the future gives up the wait (and any slot it
    /// was about to get). Always succeeds at once when the bulkhead is
    /// disabled.
    pub async fn acquire(&self, key: &K) -> Result<BulkheadPermit, Busy> {
        if !self.enabled {
            return Ok(BulkheadPermit { slots: None });
        }
        if self.sweep.due() {
            self.evict_idle();
        }
        let slots = self.slots_of(key);
        let taken = slots
            .semaphore
            .try_acquire()
            .map(SemaphorePermit::forget)
            .is_ok();
        if taken {
            return Ok(BulkheadPermit { slots: Some(slots) });
        }
        if self.max_wait.is_zero() {
            return Err(self.reject("wait_timeout"));
        }
        let Some(waiting) = WaitingCall::enter(&slots.waiting, self.max_waiting) else {
            return Err(self.reject("too_many_waiting"));
        };
        // The semaphore is never closed; were it, that would count as a timeout.
        let taken = matches!(
            tokio::time::timeout(self.max_wait, slots.semaphore.acquire())
                .await
                .map(|acquired| acquired.map(SemaphorePermit::forget)),
            Ok(Ok(()))
        );
        drop(waiting);
        if taken {
            Ok(BulkheadPermit { slots: Some(slots) })
        } else {
            Err(self.reject("wait_timeout"))
        }
    }

    fn slots_of(&self, key: &K) -> Arc<KeySlots> {
        if let Some(slots) = self.slots.get(key) {
            return Arc::clone(&slots);
        }
        let max = usize::try_from(self.max_concurrent).unwrap_or(usize::MAX);
        Arc::clone(&self.slots.entry(key.clone()).or_insert_with(|| {
            Arc::new(KeySlots {
                semaphore: Semaphore::new(max),
                waiting: AtomicU32::new(0),
            })
        }))
    }

    fn reject(&self, reason: &'static str) -> Busy {
        metrics::counter!("dawn_bulkhead_rejected_total", "reason" => reason).increment(1);
        Busy {
            max_concurrent: self.max_concurrent,
        }
    }

    /// Forgets keys with no call in flight or waiting.
    pub fn evict_idle(&self) {
        // Every permit and every waiter holds a clone of the key's `Arc`, and
        // clones are only taken under the map's shard lock, so a count of 1
        // seen under the write lock means the key is idle and stays so.
        self.slots.retain(|_, slots| Arc::strong_count(slots) > 1);
        self.slots.shrink_to_fit();
        self.sweep.swept(self.slots.len());
    }

    /// Keys currently tracked.
    pub fn tracked_keys(&self) -> usize {
        self.slots.len()
    }
}
