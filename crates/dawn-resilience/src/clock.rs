//! The crate's single time source: tokio's clock.
//!
//! Every time-based decision (rate-limit refill, bulkhead waits, breaker
//! timeouts, backoff schedules) reads `tokio::time::Instant`, which is the
//! monotonic clock in production and a virtual clock under
//! `tokio::time::pause()`, so tests advance time instead of sleeping.

use std::time::Duration;

use tokio::time::Instant;

/// A [`governor`] clock that reads tokio's clock, as the time elapsed since the
/// clock was created.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    /// A clock whose zero is now.
    pub(crate) fn new() -> Self {
        TokioClock {
            origin: Instant::now(),
        }
    }
}

impl governor::clock::Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}
