//! Call deadlines.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{HumanDuration, config::Issues};

/// `resilience.deadlines`: how much time a call gets.
///
/// ```yaml
/// deadlines:
///   default: 30s   # budget of a call whose caller gave none
///   max: 5m        # largest budget accepted, from a local caller or a remote peer
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlineConfig {
    /// Budget of a call whose caller gave none. Default 30 s; allowed more
    /// than 0 s, at most `max`.
    pub default: HumanDuration,
    /// Largest budget a call may have; longer requested budgets (also those
    /// arriving from remote peers) are cut to it. Default 5 m; allowed more
    /// than 0 s, at most 1 d.
    pub max: HumanDuration,
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        DeadlineConfig {
            default: HumanDuration::secs(30),
            max: HumanDuration::secs(300),
        }
    }
}

impl DeadlineConfig {
    pub(crate) fn validate(&self, issues: &mut Issues) {
        issues.duration("max", self.max, false, Duration::from_secs(86_400));
        issues.duration("default", self.default, false, Duration::from_secs(86_400));
        if self.default > self.max {
            issues.push(
                "default",
                format!("{} is more than max ({})", self.default, self.max),
            );
        }
    }

    /// The budget a call gets: `requested` cut to `max`, or `default` (also
    /// cut to `max`) when none was requested. A zero request stays zero (the
    /// call is already late).
    pub fn clamp_budget(&self, requested: Option<Duration>) -> Duration {
        requested.unwrap_or(self.default.0).min(self.max.0)
    }
}

/// The instant by which a call must complete.
///
/// Deadlines are monotonic-clock instants on the local node. When a call
/// crosses to another node only the *remaining budget* travels (see
/// [`Deadline::remaining_millis`]), so clocks of different machines never need
/// to agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        let now = Instant::now();
        Deadline(
            now.checked_add(budget)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        )
    }

    /// A deadline at a given instant.
    pub fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// The instant of the deadline.
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// Time left before the deadline; zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Time left in whole milliseconds, saturated to `u32` (about 49 days), for
    /// putting on the wire.
    pub fn remaining_millis(&self) -> u32 {
        u32::try_from(self.remaining().as_millis()).unwrap_or(u32::MAX)
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        if self.0 <= other.0 { self } else { other }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_defaulted_and_capped() {
        let config = DeadlineConfig::default();
        assert_eq!(config.clamp_budget(None), Duration::from_secs(30));
        assert_eq!(
            config.clamp_budget(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            config.clamp_budget(Some(Duration::from_secs(86_400 * 49))),
            Duration::from_secs(300)
        );
        assert_eq!(config.clamp_budget(Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn remaining_shrinks_and_saturates() {
        let d = Deadline::after(Duration::from_millis(50));
        assert!(d.remaining() <= Duration::from_millis(50));
        let past = Deadline::at(Instant::now() - Duration::from_secs(1));
        assert!(past.is_expired());
        assert_eq!(past.remaining_millis(), 0);
        assert_eq!(d.min(past), past);
    }

    #[test]
    fn huge_budget_does_not_overflow() {
        let d = Deadline::after(Duration::MAX);
        assert_eq!(d.remaining_millis(), u32::MAX);
    }
}
