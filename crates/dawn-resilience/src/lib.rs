//! Resilience building blocks shared by every Dawn node.
//!
//! * [`ErrorKind`] — the error taxonomy of the node. Every error a client or a
//!   remote peer can see has one stable kind, and each kind has one stable
//!   JSON-RPC error code and one metric label. `docs/errors.md` is generated
//!   from [`ErrorKind::ALL`].
//! * [`Deadline`] — an absolute point in time by which a call must finish,
//!   which travels with a call to a remote node as the remaining budget;
//!   [`DeadlineConfig`] gives budgets a default and a ceiling.
//! * [`KeyedRateLimiter`] — per-caller GCRA rate limits with a quota per class
//!   of caller (the node uses trust levels), bounded memory.
//! * [`Bulkhead`] — per-caller concurrency limits with a short bounded wait.
//! * [`CircuitBreakers`] — per-peer circuit breakers for outbound calls.
//! * [`retry`] with [`RetryPolicy`] and [`RetryBudget`] — exponential backoff
//!   with jitter for calls that are safe to repeat, without amplifying an
//!   outage; [`DialBackoff`] — spacing of redials per peer.
//! * [`ResilienceConfig`] — the `resilience` config section for all of them,
//!   with defaults and [`ResilienceConfig::validate`].
//!
//! Every mechanism is generic over its key (`K: Hash + Eq + Clone + Send +
//! Sync`; the node uses peer ids), reads time from tokio's clock (so tests
//! drive it with `tokio::time::pause()`), and exports metrics through the
//! `metrics` facade with bounded labels only (never a peer id).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use dawn_resilience::{
//!     Bulkhead, CircuitBreakers, Deadline, ErrorKind, KeyedRateLimiter, ResilienceConfig,
//! };
//! use std::time::Duration;
//!
//! let config = ResilienceConfig::default();
//! assert!(config.validate().is_empty());
//!
//! // Inbound: rate limit, then a concurrency slot.
//! let limiter = KeyedRateLimiter::<&str>::new(&config.rate_limit);
//! let bulkhead = Bulkhead::<&str>::new(&config.bulkhead);
//! limiter.check(&"peer-a", "verified").unwrap();
//! let _slot = bulkhead.acquire(&"peer-a").await.unwrap();
//!
//! // Outbound: ask the breaker, report the outcome.
//! let breakers = CircuitBreakers::<&str>::new(&config.circuit_breaker);
//! let guard = breakers.before_call(&"peer-b").unwrap();
//! guard.success();
//!
//! let deadline = Deadline::after(config.deadlines.clamp_budget(None));
//! assert!(deadline.remaining() <= Duration::from_secs(30));
//! assert_eq!(ErrorKind::RateLimited.jsonrpc_code(), -32005);
//! # }
//! ```

#![deny(missing_docs)]

mod bulkhead;
mod circuit_breaker;
mod clock;
mod config;
mod deadline;
mod dial_backoff;
mod duration;
mod error_kind;
mod errors;
mod rate_limit;
mod retry;
mod sweep;

pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadPermit};
pub use circuit_breaker::{
    BreakerState, BreakerStateChange, CallGuard, CircuitBreakerConfig, CircuitBreakers,
    TransitionCause,
};
pub use config::{InvalidSetting, ResilienceConfig};
pub use deadline::{Deadline, DeadlineConfig};
pub use dial_backoff::{DialBackoff, DialBackoffConfig, DialDeferred};
pub use duration::{HumanDuration, parse_duration};
pub use error_kind::{ErrorKind, UnknownErrorCode};
pub use errors::{BreakerOpen, Busy, RateLimited};
pub use rate_limit::{KeyedRateLimiter, RateLimitConfig, RateQuota};
pub use retry::{RetryBudget, RetryConfig, RetryError, RetryPolicy, retry};
