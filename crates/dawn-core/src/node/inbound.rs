//! Serving calls that other nodes make to this node's agents.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use async_trait::async_trait;
use bytes::Bytes;
use dawn_resilience::ErrorKind;
use dawn_transport::{EventSender, InboundCall, InboundCalls};
use serde_json::Value;
use tokio::sync::{Mutex, oneshot};
use tracing::Instrument as _;

use super::NodeShared;
use crate::{
    agent::{CallContext, Caller, Upstream},
    agent_table::dispatch,
    jsonrpc::{CallError, Request, Response, parse_request},
};

/// Serves peers' calls from now on: each call is accepted (or refused)
/// directly on the transport task that read it, and handled on its own task.
pub(super) fn serve(shared: Arc<NodeShared>, calls: InboundCalls) {
    calls.serve_with(move |call| accept(&shared, call));
}

/// Runs on the stream reader's task for every inbound call: must not block.
fn accept(shared: &Arc<NodeShared>, call: InboundCall) {
    if shared.is_shutting_down() || shared.stop.is_cancelled() {
        let body = refusal(
            &call,
            CallError::new(ErrorKind::ShuttingDown, "the node is shutting down"),
        );
        tokio::spawn(call.respond(body));
        return;
    }
    // Tracked: graceful shutdown waits for calls in flight.
    shared.calls.spawn(handle(shared.clone(), call));
}

/// An error response for a call we will not run, keeping the caller's id.
fn refusal(call: &InboundCall, error: CallError) -> Bytes {
    let id = serde_json::from_slice::<Value>(call.body())
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null);
    Bytes::from(Response::err(id, error).to_bytes())
}

async fn handle(shared: Arc<NodeShared>, call: InboundCall) {
    let started = Instant::now();
    let peer = call.peer();
    let request = match parse_request(call.body()) {
        Ok(request) => request,
        Err((id, error)) => {
            crate::observe::telemetry::record_call("inbound", "invalid", error_label(&error), None);
            shared
                .security
                .offence(&peer, dawn_security::Offence::MalformedMessage);
            call.respond(Bytes::from(Response::err(id, error).to_bytes()))
                .await;
            return;
        }
    };
    let method = method_label(&request.method);
    let span = tracing::debug_span!(
        "inbound_call",
        peer_id = %peer,
        agent = %call.agent(),
        method = %request.method,
        request_id = %super::outbound::OrEmpty(request.id.as_ref()),
    );
    async move {
        // Security: trust and policy decide before anything runs.
        if let Err(error) =
            shared
                .security
                .authorize_call(&shared.agents, &peer, call.agent(), &request)
        {
            crate::observe::telemetry::record_call("inbound", method, error_label(&error), None);
            let body = request
                .id
                .clone()
                .map(|id| Bytes::from(Response::err(id, error).to_bytes()))
                .unwrap_or_default();
            call.respond(body).await;
            return;
        }
        // Resilience: rate limit, deadline ceiling and concurrency slot per peer.
        let Some((mut call, admission)) = super::guard::admit(&shared, call, &request).await else {
            return;
        };
        if let Some(response) = node_method(&shared, &mut call, &request).await {
            crate::observe::telemetry::record_call(
                "inbound",
                method,
                "ok",
                Some(started.elapsed()),
            );
            let body = response
                .map(|r| Bytes::from(r.to_bytes()))
                .unwrap_or_default();
            call.respond(body).await;
            return;
        }
        let Some(entry) = shared.agents.get(call.agent()) else {
            let error = CallError::new(
                ErrorKind::UnknownAgent,
                format!(
                    "node {} has no agent named {:?}",
                    shared.peer_id(),
                    call.agent()
                ),
            )
            .with("agent", call.agent().to_owned());
            crate::observe::telemetry::record_call("inbound", method, "unknown_agent", None);
            let body = request
                .id
                .clone()
                .map(|id| Bytes::from(Response::err(id, error).to_bytes()))
                .unwrap_or_default();
            call.respond(body).await;
            return;
        };
        let mut ctx = CallContext::new(Caller::Peer(peer), admission.deadline);
        ctx.cancel = call.cancellation();
        ctx.upstream = Some(Arc::new(PeerUpstream::new(call.events())));
        let response = dispatch(&entry, request, ctx).await;
        let status = match &response {
            Some(Response { error: Some(e), .. }) => error_label(e),
            _ => "ok",
        };
        crate::observe::telemetry::record_call("inbound", method, status, Some(started.elapsed()));
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "call handled"
        );
        let body = response
            .map(|r| Bytes::from(r.to_bytes()))
            .unwrap_or_default();
        call.respond(body).await;
    }
    .instrument(span)
    .await
}

/// Methods answered by the node itself rather than one agent. Returns
/// `None` when `request` is not one of them.
async fn node_method(
    shared: &Arc<NodeShared>,
    call: &mut InboundCall,
    request: &Request,
) -> Option<Option<Response>> {
    match request.method.as_str() {
        NODE_AGENTS_METHOD => Some(request.id.clone().map(|id| {
            Response::ok(
                id,
                serde_json::json!({ "agents": shared.local_descriptors() }),
            )
        })),
        crate::registry::SYNC_METHOD => Some(request.id.clone().map(|id| {
            match crate::registry::answer_sync(shared, call.peer(), request) {
                Ok(result) => Response::ok(id, result),
                Err(error) => Response::err(id, error),
            }
        })),
        super::resources::WATCH_METHOD => {
            let uri = request
                .params
                .as_ref()
                .and_then(|p| p.get("uri"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let id = request.id.clone()?;
            let Some(uri) = uri else {
                return Some(Some(Response::err(
                    id,
                    CallError::new(ErrorKind::InvalidParams, "params.uri must be a string"),
                )));
            };
            let upstream = Arc::new(PeerUpstream::new(call.events()));
            let result = super::resources::watch_local(
                shared,
                call.agent(),
                &uri,
                Caller::Peer(call.peer()),
                upstream,
                call.cancellation(),
            )
            .await;
            Some(Some(match result {
                Ok(()) => Response::ok(id, serde_json::json!({})),
                Err(error) => Response::err(id, error),
            }))
        }
        _ => None,
    }
}

/// The node-level method listing every local agent with its full description.
pub(crate) const NODE_AGENTS_METHOD: &str = "dawn/agents";

/// A bounded label for the method (never raw client input).
pub(crate) fn method_label(method: &str) -> &'static str {
    match method {
        "tools/call" => "tools_call",
        "tools/list" => "tools_list",
        "resources/read" => "resources_read",
        "resources/list" => "resources_list",
        "resources/templates/list" => "resource_templates_list",
        "prompts/get" => "prompts_get",
        "prompts/list" => "prompts_list",
        "ping" => "ping",
        "dawn/describe" => "describe",
        "dawn/agents" => "agents",
        "dawn/registry_sync" => "registry_sync",
        "dawn/watch_resource" => "watch_resource",
        "completion/complete" => "complete",
        _ => "other",
    }
}

/// The metric label for an error (the taxonomy's, or `other`).
pub(crate) fn error_label(error: &CallError) -> &'static str {
    error.kind().map(|k| k.as_str()).unwrap_or("other")
}

/// Sends a remote agent's notifications and requests back over the call's
/// stream, and matches the caller's replies to the requests.
struct PeerUpstream {
    events: EventSender,
    next_id: AtomicU64,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>,
    /// Whether the caller's replies are pumped into `waiting` (from the
    /// first request on; most calls never send one).
    pumping: std::sync::Mutex<bool>,
}

impl PeerUpstream {
    fn new(events: EventSender) -> Self {
        PeerUpstream {
            events,
            next_id: AtomicU64::new(1),
            waiting: Arc::default(),
            pumping: std::sync::Mutex::new(false),
        }
    }

    /// Opens the caller's replies and pumps them, once. Holds the lock until
    /// the receiver is open, so that no request goes out before it.
    fn start_reply_pump(&self) {
        let mut pumping = self.pumping.lock().unwrap_or_else(|e| e.into_inner());
        if *pumping {
            return;
        }
        *pumping = true;
        let Some(mut replies) = self.events.open_replies() else {
            return;
        };
        let waiting = self.waiting.clone();
        tokio::spawn(async move {
            while let Some(reply) = replies.recv().await {
                let Ok(response) = serde_json::from_slice::<Response>(&reply) else {
                    tracing::debug!("caller sent a malformed reply to a mid-call request");
                    continue;
                };
                let Some(id) = response.id.as_u64() else {
                    continue;
                };
                if let Some(tx) = waiting.lock().await.remove(&id) {
                    let _ = tx.send(response);
                }
            }
        });
    }
}

#[async_trait]
impl Upstream for PeerUpstream {
    async fn notify(&self, notification: Request) {
        let _ = self.events.send(Bytes::from(notification.to_bytes())).await;
    }

    async fn request(&self, mut request: Request) -> Result<Value, CallError> {
        self.start_reply_pump();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request.id = Some(Value::from(id));
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().await.insert(id, tx);
        if !self.events.send(Bytes::from(request.to_bytes())).await {
            self.waiting.lock().await.remove(&id);
            return Err(CallError::new(
                ErrorKind::ConnectionLost,
                "the caller is gone",
            ));
        }
        match rx.await {
            Ok(response) => response.into_result(),
            Err(_) => Err(CallError::new(
                ErrorKind::ConnectionLost,
                "the caller is gone",
            )),
        }
    }
}
