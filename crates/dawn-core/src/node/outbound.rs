//! Sending calls: to local agents directly, to remote agents over the
//! transport, relaying the remote agent's mid-call messages upstream.

use std::{sync::Arc, time::Duration, time::Instant};

use bytes::Bytes;
use dawn_resilience::{Deadline, ErrorKind};
use dawn_transport::{CallUpdate, FailureCode, OutboundCall, PeerId, RpcError};
use futures::{StreamExt as _, future::BoxFuture, stream::FuturesUnordered};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{
    NodeShared,
    inbound::{error_label, method_label},
};
use crate::{
    address::AgentAddress,
    agent::{CallContext, Caller, Upstream},
    agent_table::dispatch,
    jsonrpc::{CallError, Request, Response},
};

/// Options of one call.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct CallOptions {
    /// Deadline budget; `resilience.deadlines.default` if unset, at most
    /// `resilience.deadlines.max`.
    pub timeout: Option<Duration>,
    /// Cancelling this token cancels the call (remotely too).
    pub cancel: Option<CancellationToken>,
    /// Receives the agent's notifications and answers its requests.
    pub upstream: Option<Arc<dyn Upstream>>,
    pub(crate) caller: Option<Caller>,
}

impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallOptions")
            .field("timeout", &self.timeout)
            .field("has_upstream", &self.upstream.is_some())
            .finish_non_exhaustive()
    }
}

impl CallOptions {
    /// Sets the deadline budget.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets a cancellation token.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = Some(cancel);
        self
    }

    pub(crate) fn for_api_client(mut self) -> Self {
        self.caller = Some(Caller::Api);
        self
    }
}

/// A span field formatted only when it is recorded: `tracing` evaluates
/// the fields of a disabled span when no subscriber is installed (its `log`
/// feature is on through a dependency), so eager `to_string()` calls would
/// base58-encode peer ids on every call of an embedding program.
pub(super) struct OrEmpty<'a, T>(pub(super) Option<&'a T>);

impl<T: std::fmt::Display> std::fmt::Display for OrEmpty<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(value) => value.fmt(f),
            None => Ok(()),
        }
    }
}

pub(super) async fn send(
    shared: &Arc<NodeShared>,
    address: &AgentAddress,
    request: Request,
    options: CallOptions,
) -> Option<Response> {
    let id = request.id.clone();
    if shared.is_shutting_down() {
        return id.map(|id| {
            Response::err(
                id,
                CallError::new(ErrorKind::ShuttingDown, "the node is shutting down"),
            )
        });
    }
    let timeout = shared.resilience.budget(options.timeout);
    let started = Instant::now();
    let method = method_label(&request.method);
    let local = address.peer.is_none_or(|p| p == shared.peer_id());
    let direction = if local { "local" } else { "outbound" };
    // DEBUG, not INFO: formatting peer ids for a span on every call costs
    // more than the rest of the routing; errors are logged with the ids.
    let span = tracing::debug_span!(
        "call",
        node_id = %shared.peer_id(),
        peer_id = %OrEmpty(address.peer.as_ref()),
        agent = %address.agent,
        method = %request.method,
        request_id = %OrEmpty(id.as_ref()),
    );
    let work = async {
        if local {
            send_local(shared, address, request, options, timeout).await
        } else {
            let peer = address.peer.unwrap_or_else(|| shared.peer_id());
            let agent = address.agent.as_str();
            let id = request.id.clone();
            super::resilience::call_remote(
                shared,
                peer,
                address,
                &request,
                &options,
                timeout,
                |body, budget| {
                    send_remote(
                        shared,
                        peer,
                        agent,
                        id.clone(),
                        body,
                        options.clone(),
                        budget,
                    )
                },
            )
            .await
        }
    };
    let response = shared.calls.track_future(work.instrument(span)).await;
    let status = match &response {
        Some(Response { error: Some(e), .. }) => error_label(e),
        _ => "ok",
    };
    crate::observe::telemetry::record_call(direction, method, status, Some(started.elapsed()));
    response
}

async fn send_local(
    shared: &Arc<NodeShared>,
    address: &AgentAddress,
    request: Request,
    options: CallOptions,
    timeout: Duration,
) -> Option<Response> {
    if request.method == super::inbound::NODE_AGENTS_METHOD {
        return request.id.map(|id| {
            Response::ok(
                id,
                serde_json::json!({ "agents": shared.local_descriptors() }),
            )
        });
    }
    let Some(entry) = shared.agents.get(address.agent.as_str()) else {
        return request.id.map(|id| {
            Response::err(
                id,
                CallError::new(
                    ErrorKind::UnknownAgent,
                    format!("this node has no agent named {:?}", address.agent.as_str()),
                )
                .with("agent", address.agent.as_str()),
            )
        });
    };
    let mut ctx = CallContext::new(
        options.caller.unwrap_or(Caller::Local),
        Deadline::after(timeout),
    );
    if let Some(cancel) = options.cancel {
        ctx.cancel = cancel;
    }
    ctx.upstream = options.upstream;
    dispatch(&entry, request, ctx).await
}

type Pending = FuturesUnordered<BoxFuture<'static, (Value, Result<Value, CallError>)>>;

/// One attempt of a remote call: `body` is the serialized request whose id
/// is `id`.
async fn send_remote(
    shared: &Arc<NodeShared>,
    peer: PeerId,
    agent: &str,
    id: Option<Value>,
    body: Bytes,
    options: CallOptions,
    timeout: Duration,
) -> Option<Response> {
    let fail = |error: CallError| id.clone().map(|id| Response::err(id, error));
    let mut call: OutboundCall = match shared
        .transport
        .start_call(peer, agent, body, timeout)
        .await
    {
        Ok(call) => call,
        Err(e) => return fail(call_error(&e)),
    };
    let cancel = options.cancel.unwrap_or_default();
    let upstream = options.upstream;
    let mut pending: Pending = FuturesUnordered::new();
    loop {
        tokio::select! {
            update = call.next() => match update {
                CallUpdate::Event(event) => relay_event(&upstream, &mut pending, event).await,
                CallUpdate::Done(Ok(bytes)) => return finish_response(id, &bytes),
                CallUpdate::Done(Err(e)) => return fail(call_error(&e)),
            },
            Some((event_id, result)) = pending.next(), if !pending.is_empty() => {
                let response = match result {
                    Ok(value) => Response::ok(event_id, value),
                    Err(error) => Response::err(event_id, error),
                };
                if let Err(e) = call.reply_to_event(Bytes::from(response.to_bytes())).await {
                    tracing::debug!(error = %e, "cannot return a client's answer to the remote agent");
                }
            }
            () = cancel.cancelled() => {
                call.cancel();
                return fail(CallError::new(ErrorKind::Cancelled, "the call was cancelled"));
            }
        }
    }
}

/// Checks a peer's response body against the request's id.
fn finish_response(id: Option<Value>, bytes: &[u8]) -> Option<Response> {
    let id = id?;
    Some(match Response::parse(bytes) {
        Ok(response) if response.id == id => response,
        Ok(response) => Response::err(
            id.clone(),
            CallError::new(
                ErrorKind::ProtocolViolation,
                format!("peer answered with id {} instead of {id}", response.id),
            ),
        ),
        Err(error) => Response::err(id, error),
    })
}

/// Forwards one mid-call message of a remote agent to the upstream.
async fn relay_event(upstream: &Option<Arc<dyn Upstream>>, pending: &mut Pending, event: Bytes) {
    let Ok(message) = serde_json::from_slice::<Request>(&event) else {
        tracing::debug!("ignoring a malformed mid-call message from a peer");
        return;
    };
    match (message.id.clone(), upstream) {
        (None, Some(upstream)) => upstream.notify(message).await,
        (None, None) => {}
        (Some(event_id), Some(upstream)) => {
            let upstream = upstream.clone();
            pending.push(Box::pin(async move {
                let result = upstream.request(message).await;
                (event_id, result)
            }));
        }
        (Some(event_id), None) => {
            let method = message.method.clone();
            pending.push(Box::pin(async move {
                (
                    event_id,
                    Err(CallError::new(
                        ErrorKind::MethodNotFound,
                        format!("no client is attached to this call to answer {method}"),
                    )),
                )
            }));
        }
    }
}

/// Maps a transport failure to the error taxonomy.
pub(crate) fn call_error(e: &RpcError) -> CallError {
    let kind = match e {
        RpcError::NoAddress(_) => ErrorKind::UnknownPeer,
        RpcError::Unreachable { .. } | RpcError::UnsupportedProtocol(_) => ErrorKind::Unreachable,
        RpcError::ConnectTimeout { .. } => ErrorKind::NetworkTimeout,
        RpcError::ConnectionLost(_) => ErrorKind::ConnectionLost,
        RpcError::DeadlineExceeded { .. } => ErrorKind::DeadlineExceeded,
        RpcError::RequestTooLarge { .. } | RpcError::ResponseTooLarge { .. } => {
            ErrorKind::MessageTooLarge
        }
        RpcError::AgentIdTooLong(_) => ErrorKind::InvalidParams,
        RpcError::Remote { code, .. } => match code {
            FailureCode::MessageTooLarge => ErrorKind::MessageTooLarge,
            FailureCode::ShuttingDown => ErrorKind::ShuttingDown,
            FailureCode::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            FailureCode::ProtocolViolation => ErrorKind::ProtocolViolation,
            FailureCode::Internal | FailureCode::Unknown(_) => ErrorKind::Internal,
        },
        RpcError::Shutdown => ErrorKind::ShuttingDown,
    };
    let mut error = CallError::new(kind, e.to_string());
    if let RpcError::NoAddress(peer) = e {
        error = error.with("peer", peer.to_string());
    }
    error
}
