//! Amortized eviction of idle per-key state.
//!
//! Keyed structures call [`SweepSchedule::due`] on every operation. A sweep
//! becomes due after `max(MIN_OPERATIONS, keys left by the previous sweep)`
//! operations, so the cost of walking the map is spread over at least as
//! many operations as there are entries (amortized O(1) per operation), and
//! the map never holds more than about twice the keys that are still live plus
//! [`MIN_OPERATIONS`].

use std::sync::atomic::{AtomicU64, Ordering};

/// The fewest operations between two sweeps.
pub(crate) const MIN_OPERATIONS: u64 = 1024;

/// When the next sweep of a keyed structure is due.
#[derive(Debug)]
pub(crate) struct SweepSchedule {
    operations: AtomicU64,
    next_sweep_at: AtomicU64,
}

impl SweepSchedule {
    /// A schedule whose first sweep is due after [`MIN_OPERATIONS`] operations.
    pub(crate) fn new() -> Self {
        SweepSchedule {
            operations: AtomicU64::new(0),
            next_sweep_at: AtomicU64::new(MIN_OPERATIONS),
        }
    }

    /// Counts one operation; true when the caller must sweep now (then only
    /// that caller is told so until it reports [`SweepSchedule::swept`]).
    pub(crate) fn due(&self) -> bool {
        let count = self.operations.fetch_add(1, Ordering::Relaxed) + 1;
        let next = self.next_sweep_at.load(Ordering::Relaxed);
        count >= next
            && self
                .next_sweep_at
                .compare_exchange(next, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Records a finished sweep that left `remaining` keys.
    pub(crate) fn swept(&self, remaining: usize) {
        let remaining = u64::try_from(remaining).unwrap_or(u64::MAX);
        let count = self.operations.load(Ordering::Relaxed);
        self.next_sweep_at.store(
            count.saturating_add(remaining.max(MIN_OPERATIONS)),
            Ordering::Release,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_are_spread_by_the_number_of_keys() {
        let schedule = SweepSchedule::new();
        // Due once after MIN_OPERATIONS, then not again until reported.
        let due: Vec<u64> = (1..=3000u64).filter(|_| schedule.due()).collect();
        assert_eq!(due, vec![MIN_OPERATIONS]);
        // A sweep that left 5000 keys: the next is due 5000 operations later.
        schedule.swept(5000);
        let due: Vec<u64> = (3001..=9000u64).filter(|_| schedule.due()).collect();
        assert_eq!(due, vec![8000]);
        // A sweep that left few keys: due again after MIN_OPERATIONS.
        schedule.swept(10);
        let due: Vec<u64> = (9001..=9000 + MIN_OPERATIONS)
            .filter(|_| schedule.due())
            .collect();
        assert_eq!(due, vec![9000 + MIN_OPERATIONS]);
    }
}
