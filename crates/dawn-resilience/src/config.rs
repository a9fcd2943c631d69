//! The `resilience` section of the node configuration and its validation.

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    BulkheadConfig, CircuitBreakerConfig, DeadlineConfig, HumanDuration, RateLimitConfig,
    RetryConfig,
};

/// The `resilience` section: every limit, breaker, retry and deadline setting.
///
/// Each sub-section has documented defaults, so an empty section is valid.
/// Deserialization rejects unknown keys; call [`ResilienceConfig::validate`]
/// after loading to check ranges. The constructors of the mechanisms accept any
/// value (out-of-range values are clamped to the nearest usable one), so an
/// unvalidated config never panics, but only a validated one means what it
/// says.
///
/// ```
/// use dawn_resilience::ResilienceConfig;
///
/// let config: ResilienceConfig = serde_json::from_str(
///     r#"{ "rate_limit": { "max_requests": 100, "time_window": 60,
///          "per_trust_level": { "trusted": { "max_requests": 1000 } } },
///        "circuit_breaker": { "failure_threshold": 5, "timeout": "1m" } }"#,
/// ).unwrap();
/// assert!(config.validate().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// Per-peer rate limits on inbound calls (`resilience.rate_limit`).
    pub rate_limit: RateLimitConfig,
    /// Per-peer concurrency limits on inbound calls (`resilience.bulkhead`).
    pub bulkhead: BulkheadConfig,
    /// Per-peer circuit breakers on outbound calls
    /// (`resilience.circuit_breaker`).
    pub circuit_breaker: CircuitBreakerConfig,
    /// Retries of safe-to-repeat calls and redials (`resilience.retry`).
    pub retry: RetryConfig,
    /// Call deadlines (`resilience.deadlines`).
    pub deadlines: DeadlineConfig,
}

impl ResilienceConfig {
    /// The dotted path under which the node embeds this section; every
    /// [`InvalidSetting::key`] starts with it.
    pub const SECTION: &'static str = "resilience";

    /// Every out-of-range or inconsistent setting, each with its full dotted
    /// key (`resilience.rate_limit.max_requests`) and a message that says what
    /// is allowed. Empty when the configuration is usable.
    pub fn validate(&self) -> Vec<InvalidSetting> {
        let mut issues = Issues::new(Self::SECTION);
        self.rate_limit.validate(&mut issues.section("rate_limit"));
        self.bulkhead.validate(&mut issues.section("bulkhead"));
        self.circuit_breaker
            .validate(&mut issues.section("circuit_breaker"));
        self.retry.validate(&mut issues.section("retry"));
        self.deadlines.validate(&mut issues.section("deadlines"));
        issues.into_vec()
    }
}

/// One setting that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// Full dotted key, e.g. `resilience.rate_limit.max_requests`.
    pub key: String,
    /// What is wrong and what is allowed, e.g. `0 is out of range (allowed: 1
    /// to 1000000)`.
    pub message: String,
}

impl fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Collects validation issues under a key prefix.
#[derive(Debug)]
pub(crate) struct Issues {
    prefix: String,
    found: Vec<InvalidSetting>,
}

/// Issues of a nested section; merged into the parent when dropped.
pub(crate) struct SectionIssues<'a> {
    parent: &'a mut Issues,
    inner: Issues,
}

impl std::ops::Deref for SectionIssues<'_> {
    type Target = Issues;
    fn deref(&self) -> &Issues {
        &self.inner
    }
}

impl std::ops::DerefMut for SectionIssues<'_> {
    fn deref_mut(&mut self) -> &mut Issues {
        &mut self.inner
    }
}

impl Drop for SectionIssues<'_> {
    fn drop(&mut self) {
        self.parent.found.append(&mut self.inner.found);
    }
}

impl Issues {
    pub(crate) fn new(prefix: &str) -> Self {
        Issues {
            prefix: prefix.to_owned(),
            found: Vec::new(),
        }
    }

    /// Issues of the sub-section `name`.
    pub(crate) fn section(&mut self, name: &str) -> SectionIssues<'_> {
        let prefix = self.key(name);
        SectionIssues {
            parent: self,
            inner: Issues::new(&prefix),
        }
    }

    pub(crate) fn into_vec(self) -> Vec<InvalidSetting> {
        self.found
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Records an issue with the setting `name` of this section.
    pub(crate) fn push(&mut self, name: &str, message: String) {
        let key = self.key(name);
        self.found.push(InvalidSetting { key, message });
    }

    /// Checks `min <= value <= max`.
    pub(crate) fn integer(&mut self, name: &str, value: u64, min: u64, max: u64) {
        if !(min..=max).contains(&value) {
            self.push(
                name,
                format!("{value} is out of range (allowed: {min} to {max})"),
            );
        }
    }

    /// Checks a fraction lies in `(0, max]` (`min_exclusive`) or `[0, max]`.
    pub(crate) fn fraction(&mut self, name: &str, value: f64, min_exclusive: bool, max: f64) {
        let above_min = if min_exclusive {
            value > 0.0
        } else {
            value >= 0.0
        };
        if !(value.is_finite() && above_min && value <= max) {
            let lower = if min_exclusive { "more than 0" } else { "0" };
            self.push(
                name,
                format!("{value} is out of range (allowed: {lower} to {max})"),
            );
        }
    }

    /// Checks a duration: more than zero unless `zero_allowed`, at most `max`.
    pub(crate) fn duration(
        &mut self,
        name: &str,
        value: HumanDuration,
        zero_allowed: bool,
        max: Duration,
    ) {
        let max_text = HumanDuration(max);
        if zero_allowed {
            if value.0 > max {
                self.push(
                    name,
                    format!("{value} is out of range (allowed: 0s to {max_text})"),
                );
            }
        } else if value.0.is_zero() || value.0 > max {
            self.push(
                name,
                format!("{value} is out of range (allowed: more than 0s, at most {max_text})"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_valid_and_serialize_as_documented() {
        let config = ResilienceConfig::default();
        assert_eq!(config.validate(), vec![]);
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["rate_limit"]["max_requests"], 100);
        assert_eq!(json["rate_limit"]["time_window"], "1m");
        assert_eq!(json["circuit_breaker"]["failure_threshold"], 5);
        assert_eq!(json["circuit_breaker"]["timeout"], "1m");
        assert_eq!(json["deadlines"]["default"], "30s");
        // And a serialized config reads back to the same value.
        let back: ResilienceConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn empty_section_is_the_default() {
        let config: ResilienceConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, ResilienceConfig::default());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<ResilienceConfig>(r#"{"rate_limit": {"max_request": 5}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_request"), "{err}");
        let err = serde_json::from_str::<ResilienceConfig>(r#"{"breaker": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("breaker"), "{err}");
    }
}
