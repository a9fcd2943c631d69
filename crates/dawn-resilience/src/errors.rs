//! Refusals by the resilience mechanisms, each mapped to an [`ErrorKind`] and
//! to the `data` object of the JSON-RPC error a caller receives.

use std::time::Duration;

use serde_json::{Value, json};

use crate::ErrorKind;

/// Whole milliseconds, rounded up so a caller that waits that long is not
/// refused again for having come back a fraction of a millisecond early.
pub(crate) fn ceil_millis(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The caller exceeded its rate limit ([`ErrorKind::RateLimited`], -32005).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded; retry after {} ms", ceil_millis(*retry_after))]
pub struct RateLimited {
    /// How long until the next call from this caller would be admitted.
    pub retry_after: Duration,
}

impl RateLimited {
    /// [`ErrorKind::RateLimited`].
    pub const fn kind(&self) -> ErrorKind {
        ErrorKind::RateLimited
    }

    /// The JSON-RPC error `data`: `{"kind": "rate_limited", "retry_after_ms": N}`.
    pub fn data(&self) -> Value {
        json!({ "kind": self.kind().as_str(), "retry_after_ms": ceil_millis(self.retry_after) })
    }
}

/// The caller has too many calls in flight and no slot freed up within the
/// allowed wait ([`ErrorKind::Busy`], -32006).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many calls in flight (limit {max_concurrent}); try again shortly")]
pub struct Busy {
    /// The per-caller concurrency limit that was reached.
    pub max_concurrent: u32,
}

impl Busy {
    /// [`ErrorKind::Busy`].
    pub const fn kind(&self) -> ErrorKind {
        ErrorKind::Busy
    }

    /// The JSON-RPC error `data`: `{"kind": "busy", "max_concurrent": N}`.
    pub fn data(&self) -> Value {
        json!({ "kind": self.kind().as_str(), "max_concurrent": self.max_concurrent })
    }
}

/// The circuit breaker for the target is open: the call was not attempted
/// ([`ErrorKind::BreakerOpen`], -32007).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open; next attempt allowed in {} ms", ceil_millis(*retry_in))]
pub struct BreakerOpen {
    /// How long until the breaker admits a trial call.
    pub retry_in: Duration,
}

impl BreakerOpen {
    /// [`ErrorKind::BreakerOpen`].
    pub const fn kind(&self) -> ErrorKind {
        ErrorKind::BreakerOpen
    }

    /// The JSON-RPC error `data`: `{"kind": "breaker_open", "retry_after_ms":
    /// N}`. The field has the same name as for [`RateLimited`] (and as
    /// documented for this code in `docs/errors.md`) so clients handle every
    /// "come back later" error alike.
    pub fn data(&self) -> Value {
        json!({ "kind": self.kind().as_str(), "retry_after_ms": ceil_millis(self.retry_in) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_carries_kind_and_rounded_up_millis() {
        let e = RateLimited {
            retry_after: Duration::from_micros(1500),
        };
        assert_eq!(
            e.data(),
            json!({"kind": "rate_limited", "retry_after_ms": 2})
        );
        assert_eq!(e.kind().jsonrpc_code(), -32005);
        let e = BreakerOpen {
            retry_in: Duration::from_secs(30),
        };
        assert_eq!(
            e.data(),
            json!({"kind": "breaker_open", "retry_after_ms": 30_000})
        );
        assert_eq!(e.kind().jsonrpc_code(), -32007);
        let e = Busy { max_concurrent: 8 };
        assert_eq!(e.data(), json!({"kind": "busy", "max_concurrent": 8}));
        assert_eq!(e.kind().jsonrpc_code(), -32006);
        assert_eq!(ceil_millis(Duration::ZERO), 0);
        assert_eq!(ceil_millis(Duration::from_millis(7)), 7);
    }
}
