//! The resilience layer of one node: the mechanisms of `dawn-resilience`
//! built from `resilience.*` and applied on the real call paths.
//!
//! - Inbound calls from peers: rate limit and bulkhead per peer, deadline
//!   ceiling (see `guard.rs`).
//! - Outbound calls to peers: a circuit breaker per peer, retries with
//!   backoff and jitter for calls that are safe to repeat, bounded by the
//!   call's deadline and a node-wide retry budget ([`call_remote`]).
//! - Redials of bootstrap and remembered peers: a backoff per peer
//!   (`peering.rs`).
//!
//! See `docs/resilience.md` for what each mechanism does and its defaults.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use dawn_resilience::{
    BreakerOpen, BreakerState, BreakerStateChange, Bulkhead, CircuitBreakers, Deadline,
    DeadlineConfig, DialBackoff, ErrorKind, KeyedRateLimiter, ResilienceConfig, RetryBudget,
    RetryError, RetryPolicy,
};
use dawn_transport::PeerId;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{CallOptions, Node, NodeEvent, NodeShared};
use crate::{
    address::AgentAddress,
    jsonrpc::{CallError, Request, Response},
};

/// The mechanisms of one node, shared by every call path.
pub(crate) struct Resilience {
    /// Inbound calls per peer and trust level.
    pub(super) limiter: KeyedRateLimiter<PeerId>,
    /// Inbound calls in flight per peer.
    pub(super) bulkhead: Bulkhead<PeerId>,
    /// Outbound calls per peer.
    breakers: CircuitBreakers<PeerId>,
    retry: RetryPolicy,
    retry_budget: RetryBudget,
    /// Redials per peer.
    pub(super) dials: DialBackoff<PeerId>,
    deadlines: DeadlineConfig,
    dials_started: AtomicU64,
    retries: AtomicU64,
}

impl Resilience {
    /// Builds every mechanism from `config`; breaker state changes are logged
    /// and sent to `events` as [`NodeEvent::CircuitBreaker`].
    pub(super) fn new(config: &ResilienceConfig, events: broadcast::Sender<NodeEvent>) -> Self {
        let breakers = CircuitBreakers::with_listener(
            &config.circuit_breaker,
            move |change: &BreakerStateChange<PeerId>| {
                let peer = change.key;
                match change.to {
                    BreakerState::Open => tracing::warn!(
                        %peer,
                        from = %change.from,
                        cause = %change.cause,
                        "circuit breaker opened: calls to this peer fail fast until a trial call succeeds"
                    ),
                    BreakerState::HalfOpen => tracing::info!(
                        %peer,
                        cause = %change.cause,
                        "circuit breaker half-open: trying the peer again"
                    ),
                    BreakerState::Closed => tracing::info!(
                        %peer,
                        cause = %change.cause,
                        "circuit breaker closed: the peer answers again"
                    ),
                }
                let _ = events.send(NodeEvent::CircuitBreaker {
                    peer,
                    from: change.from,
                    to: change.to,
                });
            },
        );
        Resilience {
            limiter: KeyedRateLimiter::new(&config.rate_limit),
            bulkhead: Bulkhead::new(&config.bulkhead),
            breakers,
            retry: RetryPolicy::new(&config.retry),
            retry_budget: RetryBudget::from_config(&config.retry),
            dials: DialBackoff::new(&config.retry.dial),
            deadlines: config.deadlines.clone(),
            dials_started: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// The budget of a call: the requested one cut to
    /// `resilience.deadlines.max`, or `resilience.deadlines.default`.
    pub(super) fn budget(&self, requested: Option<Duration>) -> Duration {
        self.deadlines.clamp_budget(requested)
    }

    /// The deadline of an inbound call: what the caller sent, cut to
    /// `resilience.deadlines.max` from now.
    pub(super) fn inbound_deadline(&self, requested: Instant) -> Deadline {
        Deadline::at(requested).min(Deadline::after(self.deadlines.max.0))
    }

    /// Counts one dial started by the redial loop.
    pub(super) fn count_dial(&self) {
        self.dials_started.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sizes and counters of the resilience mechanisms of a node
/// ([`Node::resilience_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ResilienceStats {
    /// Peers the inbound rate limiter keeps state for (idle ones are
    /// evicted, so this stays near the number of recently active peers).
    pub rate_limited_peers: usize,
    /// Peers the inbound bulkhead keeps state for (those with calls in
    /// flight, plus idle ones not yet evicted).
    pub bulkhead_peers: usize,
    /// Peers with an outbound circuit breaker.
    pub breakers: usize,
    /// Peers with a dial backoff schedule.
    pub dial_schedules: usize,
    /// Dials started by the redial loop since the node started.
    pub dials: u64,
    /// Retries of outbound calls since the node started.
    pub retries: u64,
    /// Retries the retry budget allows right now.
    pub retry_tokens: u64,
}

impl Node {
    /// Sizes and counters of the resilience mechanisms (see
    /// `docs/resilience.md`).
    pub fn resilience_stats(&self) -> ResilienceStats {
        let r = &self.shared.resilience;
        ResilienceStats {
            rate_limited_peers: r.limiter.tracked_keys(),
            bulkhead_peers: r.bulkhead.tracked_keys(),
            breakers: r.breakers.tracked_keys(),
            dial_schedules: r.dials.tracked_keys(),
            dials: r.dials_started.load(Ordering::Relaxed),
            retries: r.retries.load(Ordering::Relaxed),
            retry_tokens: r.retry_budget.tokens(),
        }
    }

    /// The state of the circuit breaker for outbound calls to `peer`
    /// (closed when it has none).
    pub fn breaker_state(&self, peer: &PeerId) -> BreakerState {
        self.shared.resilience.breakers.state(peer)
    }
}

/// How an attempt bears on the peer's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The peer answered (possibly with an application error).
    Up,
    /// The peer is unreachable, too slow, overloaded or going away.
    Failing,
    /// Says nothing about the peer (cancelled by the caller, a notification,
    /// a local problem).
    Unknown,
}

fn verdict(kind: Option<ErrorKind>) -> Verdict {
    match kind {
        Some(
            ErrorKind::Unreachable
            | ErrorKind::NetworkTimeout
            | ErrorKind::ConnectionLost
            | ErrorKind::DeadlineExceeded
            | ErrorKind::Busy
            | ErrorKind::ShuttingDown
            | ErrorKind::ProtocolViolation,
        ) => Verdict::Failing,
        Some(ErrorKind::Cancelled | ErrorKind::UnknownPeer | ErrorKind::MessageTooLarge) => {
            Verdict::Unknown
        }
        _ => Verdict::Up,
    }
}

/// Failures after which another attempt may succeed. Not
/// `deadline_exceeded` (the call's time is spent), `rate_limited` or
/// `breaker_open` (their wait is longer than any backoff).
fn worth_retrying(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Unreachable
            | ErrorKind::NetworkTimeout
            | ErrorKind::ConnectionLost
            | ErrorKind::Busy
    )
}

/// MCP methods that only read: repeating them changes nothing.
fn is_read_method(method: &str) -> bool {
    matches!(
        method,
        "tools/list"
            | "resources/list"
            | "resources/read"
            | "resources/templates/list"
            | "prompts/list"
            | "prompts/get"
            | "completion/complete"
            | "ping"
            | "dawn/describe"
            | super::inbound::NODE_AGENTS_METHOD
    )
}

/// Whether repeating `request` is safe: a read, or a call of a tool the
/// remote agent declares read-only (`readOnlyHint`) or idempotent
/// (`idempotentHint`) in its mesh registry record. Unknown tools are not
/// safe.
fn safe_to_repeat(shared: &NodeShared, peer: &PeerId, agent: &str, request: &Request) -> bool {
    if is_read_method(&request.method) {
        return true;
    }
    if request.method != "tools/call" {
        return false;
    }
    let Some(tool) = request
        .params
        .as_ref()
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
    else {
        return false;
    };
    // Only reached after a retryable failure, so the copy of the registry's
    // view is off the hot path.
    let remote = shared.registry.available_remote();
    remote
        .get(peer)
        .and_then(|agents| agents.iter().find(|a| a.id == agent))
        .and_then(|a| a.tools.iter().find(|t| t.name == tool))
        .and_then(|t| t.annotations.as_ref())
        .is_some_and(|a| a.read_only_hint == Some(true) || a.idempotent_hint == Some(true))
}

fn error_of(response: &Option<Response>) -> Option<&CallError> {
    response.as_ref().and_then(|r| r.error.as_ref())
}

fn breaker_open_error(peer: PeerId, open: BreakerOpen) -> CallError {
    let mut error = CallError::new(
        ErrorKind::BreakerOpen,
        format!("calls to peer {peer} are failing and are not attempted for now: {open}"),
    );
    error.data = Some(open.data());
    error.with("peer", peer.to_string())
}

fn retry_gave_up(given_up: &RetryError<CallError>) -> CallError {
    let last = given_up.last_error();
    let mut error = CallError::new(ErrorKind::RetryExhausted, given_up.to_string());
    error.data = given_up.data();
    error.with(
        "last_error",
        json!({ "code": last.code, "message": last.message, "data": last.data }),
    )
}

/// Makes a call to a remote agent through the peer's circuit breaker,
/// retrying failures that another attempt may cure when the call is safe to
/// repeat, as long as the deadline, the attempts and the retry budget allow.
///
/// `attempt` sends the request once with the given time budget.
pub(super) async fn call_remote<F, Fut>(
    shared: &Arc<NodeShared>,
    peer: PeerId,
    address: &AgentAddress,
    request: &Request,
    options: &CallOptions,
    budget: Duration,
    mut attempt: F,
) -> Option<Response>
where
    F: FnMut(Bytes, Duration) -> Fut,
    Fut: std::future::Future<Output = Option<Response>>,
{
    let res = &shared.resilience;
    let deadline = Deadline::after(budget);
    let id = request.id.clone();
    let fail = |error: CallError| id.clone().map(|id| Response::err(id, error));
    let body = Bytes::from(request.to_bytes());
    res.retry_budget.deposit();
    let mut delays = None;
    let mut attempts = 0u32;
    loop {
        let guard = match res.breakers.before_call(&peer) {
            Ok(guard) => guard,
            Err(open) => return fail(breaker_open_error(peer, open)),
        };
        attempts += 1;
        let response = attempt(body.clone(), deadline.remaining()).await;
        let kind = match &response {
            Some(r) => r.error.as_ref().and_then(CallError::kind),
            None => None,
        };
        match (response.is_some(), verdict(kind)) {
            (true, Verdict::Up) => guard.success(),
            (true, Verdict::Failing) => guard.failure(),
            // Notifications have no answer to judge by.
            _ => drop(guard),
        }
        let Some(kind) = kind.filter(|k| worth_retrying(*k)) else {
            return response;
        };
        if !safe_to_repeat(shared, &peer, address.agent.as_str(), request) {
            return response;
        }
        let delays = delays.get_or_insert_with(|| res.retry.backoff());
        let last_error = error_of(&response).cloned()?;
        let Some(delay) = delays.next() else {
            if attempts == 1 {
                return response; // retries are disabled
            }
            return fail(retry_gave_up(&RetryError::Exhausted {
                last_error,
                attempts,
            }));
        };
        if delay >= deadline.remaining() {
            // No time left for another attempt: report the failure itself.
            return response;
        }
        if !res.retry_budget.try_withdraw() {
            return fail(retry_gave_up(&RetryError::BudgetExhausted {
                last_error,
                attempts,
            }));
        }
        res.retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("dawn_retries_total").increment(1);
        tracing::debug!(
            %peer,
            attempt = attempts,
            error = %kind,
            delay_ms = delay.as_millis(),
            "retrying a call that is safe to repeat"
        );
        let cancelled = async {
            match &options.cancel {
                Some(cancel) => cancel.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancelled => {
                return fail(CallError::new(ErrorKind::Cancelled, "the call was cancelled"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_count_against_the_peer_and_application_errors_do_not() {
        assert_eq!(verdict(Some(ErrorKind::ConnectionLost)), Verdict::Failing);
        assert_eq!(verdict(Some(ErrorKind::DeadlineExceeded)), Verdict::Failing);
        assert_eq!(verdict(Some(ErrorKind::Busy)), Verdict::Failing);
        assert_eq!(verdict(Some(ErrorKind::UnknownTool)), Verdict::Up);
        assert_eq!(verdict(Some(ErrorKind::InvalidParams)), Verdict::Up);
        assert_eq!(verdict(Some(ErrorKind::RateLimited)), Verdict::Up);
        assert_eq!(verdict(None), Verdict::Up);
        assert_eq!(verdict(Some(ErrorKind::Cancelled)), Verdict::Unknown);
    }

    #[test]
    fn only_failures_another_attempt_may_cure_are_retried() {
        for kind in ErrorKind::ALL {
            let expected = matches!(
                kind,
                ErrorKind::Unreachable
                    | ErrorKind::NetworkTimeout
                    | ErrorKind::ConnectionLost
                    | ErrorKind::Busy
            );
            assert_eq!(worth_retrying(*kind), expected, "{kind}");
        }
        assert!(is_read_method("resources/read"));
        assert!(!is_read_method("tools/call"));
    }
}
