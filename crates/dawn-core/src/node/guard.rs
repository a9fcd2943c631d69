//! Admission of inbound calls from peers: per-peer rate limit (with a quota
//! per trust level), deadline ceiling, and per-peer bulkhead.
//!
//! `inbound::handle` calls [`admit`] once per parsed request; a refused call
//! is answered here (with the caller's request id) and never reaches an
//! agent.

use bytes::Bytes;
use dawn_resilience::{Busy, Deadline, ErrorKind, RateLimited};
use dawn_transport::{InboundCall, PeerId};

use super::{NodeShared, inbound, resources::WATCH_METHOD};
use crate::jsonrpc::{CallError, Request, Response};

/// What an admitted inbound call holds until it has been answered.
pub(super) struct Admission {
    /// The call's concurrency slot (none for resource watches, which live
    /// as long as the watch); freed when dropped.
    _slot: Option<dawn_resilience::BulkheadPermit>,
    /// The deadline the call runs under: the caller's, cut to
    /// `resilience.deadlines.max`.
    pub(super) deadline: Deadline,
}

/// The rate-limit class of `peer`: the name of its trust level
/// (`untrusted`, `unknown`, `verified`, `trusted`, `bootstrap`), so that
/// `resilience.rate_limit.per_trust_level.<level>` applies. An in-memory
/// lookup: it runs once per inbound call.
fn rate_class(shared: &NodeShared, peer: &PeerId) -> &'static str {
    shared.security.trust().level(peer).as_str()
}

fn rate_limited_error(limited: &RateLimited) -> CallError {
    let mut error = CallError::new(
        ErrorKind::RateLimited,
        format!("too many calls from your node: {limited}"),
    );
    error.data = Some(limited.data());
    error
}

fn busy_error(busy: &Busy) -> CallError {
    let mut error = CallError::new(
        ErrorKind::Busy,
        format!(
            "this node is already running the most calls it takes from your node at once: {busy}"
        ),
    );
    error.data = Some(busy.data());
    error
}

/// Admits `call` or answers it with the refusal. Returns the call back with
/// its [`Admission`] when it may run.
pub(super) async fn admit(
    shared: &NodeShared,
    call: InboundCall,
    request: &Request,
) -> Option<(InboundCall, Admission)> {
    let peer = call.peer();
    let res = &shared.resilience;
    if let Err(limited) = res.limiter.check(&peer, rate_class(shared, &peer)) {
        // Reputation: sustained abuse (at most one offence per peer per
        // `security.reputation.rate_limit_interval_secs`).
        shared.security.rate_limited(&peer);
        tracing::debug!(%peer, retry_after_ms = limited.retry_after.as_millis(), "inbound call refused: rate limit");
        return refuse(call, request, rate_limited_error(&limited)).await;
    }
    let deadline = res.inbound_deadline(call.deadline());
    if deadline.is_expired() {
        let error = CallError::new(
            ErrorKind::DeadlineExceeded,
            "the call's deadline passed before it arrived",
        );
        return refuse(call, request, error).await;
    }
    let slot = if request.method == WATCH_METHOD {
        None
    } else {
        let acquire = res.bulkhead.acquire(&peer);
        let late = tokio::time::sleep_until(deadline.instant().into());
        // Biased: a free slot is taken without arming the deadline timer.
        tokio::select! {
            biased;
            acquired = acquire => match acquired {
                Ok(slot) => Some(slot),
                Err(busy) => {
                    tracing::debug!(%peer, "inbound call refused: too many in flight from this peer");
                    return refuse(call, request, busy_error(&busy)).await;
                }
            },
            () = late => {
                let error = CallError::new(
                    ErrorKind::DeadlineExceeded,
                    "the call's deadline passed while it waited for a slot",
                );
                return refuse(call, request, error).await;
            }
        }
    };
    Some((
        call,
        Admission {
            _slot: slot,
            deadline,
        },
    ))
}

/// Answers a call that will not run (nothing for a notification).
async fn refuse(
    call: InboundCall,
    request: &Request,
    error: CallError,
) -> Option<(InboundCall, Admission)> {
    let status = inbound::error_label(&error);
    crate::observe::telemetry::record_call(
        "inbound",
        inbound::method_label(&request.method),
        status,
        None,
    );
    let body = request
        .id
        .clone()
        .map(|id| Bytes::from(Response::err(id, error).to_bytes()))
        .unwrap_or_default();
    call.respond(body).await;
    None
}
