//! Resource subscriptions that work across the mesh.
//!
//! A watcher (an MCP session on this node, or a remote node) subscribes to
//! `(agent, uri)`. For a local agent the node calls [`crate::Agent::subscribe`]
//! when the first watcher arrives and [`crate::Agent::unsubscribe`] when the
//! last one leaves, and forwards `notifications/resources/updated` for every
//! [`crate::AgentHandle::resource_updated`]. For a remote agent the node sends
//! one long-lived `dawn/watch_resource` call to the peer, which does the same
//! there and streams the notifications back as mid-call events; cancelling
//! the watch cancels that call.

use std::{sync::Arc, time::Duration};

use dawn_resilience::{Deadline, ErrorKind};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{NodeEvent, NodeShared, outbound};
use crate::{
    address::AgentAddress,
    agent::{CallContext, Caller, Upstream},
    jsonrpc::{CallError, Request},
};

/// The method a node sends to a peer to watch one of its resources.
pub(crate) const WATCH_METHOD: &str = "dawn/watch_resource";

/// How long a remote watch call may live (the transport carries at most
/// ~49 days; watches are renewed by the watcher when they end).
const WATCH_BUDGET: Duration = Duration::from_secs(30 * 86_400);

/// Watches `uri` of the agent at `address` until `cancel` fires, sending
/// `notifications/resources/updated` to `upstream`. Returns an error if the
/// subscription could not be set up.
pub(crate) async fn watch(
    shared: &Arc<NodeShared>,
    address: &AgentAddress,
    uri: &str,
    caller: Caller,
    upstream: Arc<dyn Upstream>,
    cancel: CancellationToken,
) -> Result<(), CallError> {
    let local = address.peer.is_none_or(|p| p == shared.peer_id());
    if local {
        return watch_local(
            shared,
            address.agent.as_str(),
            uri,
            caller,
            upstream,
            cancel,
        )
        .await;
    }
    let request = Request::new(1, WATCH_METHOD, Some(json!({ "uri": uri })));
    let options = outbound::CallOptions {
        timeout: Some(WATCH_BUDGET),
        cancel: Some(cancel),
        upstream: Some(upstream),
        caller: Some(caller),
    };
    let node = super::Node {
        shared: shared.clone(),
    };
    match node.send(address, request, options).await {
        Some(response) => response.into_result().map(|_| ()),
        None => Ok(()),
    }
}

/// Serves a watch of a local agent's resource.
pub(crate) async fn watch_local(
    shared: &Arc<NodeShared>,
    agent_id: &str,
    uri: &str,
    caller: Caller,
    upstream: Arc<dyn Upstream>,
    cancel: CancellationToken,
) -> Result<(), CallError> {
    let Some(entry) = shared.agents.get(agent_id) else {
        return Err(CallError::new(
            ErrorKind::UnknownAgent,
            format!("this node has no agent named {agent_id:?}"),
        ));
    };
    let mut events = shared.events.subscribe();
    let key = (agent_id.to_owned(), uri.to_owned());
    let first = {
        let mut subs = shared
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let count = subs.entry(key.clone()).or_insert(0);
        *count += 1;
        *count == 1
    };
    let mut ctx = CallContext::new(caller.clone(), Deadline::after(WATCH_BUDGET));
    ctx.cancel = cancel.clone();
    if first && let Err(error) = entry.agent.subscribe(&ctx, uri).await {
        release(shared, &key);
        return Err(error);
    }
    tracing::debug!(agent = agent_id, uri, ?caller, "resource watch started");
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => break,
            () = shared.stop.cancelled() => break,
            event = events.recv() => event,
        };
        match event {
            Ok(NodeEvent::ResourceUpdated {
                agent,
                uri: updated,
            }) if agent == agent_id && updated == uri => {
                upstream
                    .notify(Request::notification(
                        "notifications/resources/updated",
                        Some(json!({ "uri": uri })),
                    ))
                    .await;
            }
            Ok(NodeEvent::AgentRemoved(agent)) if agent == agent_id => break,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                // Updates may have been missed: tell the watcher to re-read.
                upstream
                    .notify(Request::notification(
                        "notifications/resources/updated",
                        Some(json!({ "uri": uri })),
                    ))
                    .await;
            }
            Err(RecvError::Closed) => break,
        }
    }
    if release(shared, &key) {
        let mut ctx = CallContext::new(caller, Deadline::after(Duration::from_secs(10)));
        ctx.cancel = CancellationToken::new();
        if let Err(error) = entry.agent.unsubscribe(&ctx, uri).await {
            tracing::debug!(agent = agent_id, uri, %error, "unsubscribe failed");
        }
    }
    tracing::debug!(agent = agent_id, uri, "resource watch ended");
    Ok(())
}

/// Drops one watcher; returns whether it was the last.
fn release(shared: &NodeShared, key: &(String, String)) -> bool {
    let mut subs = shared
        .subscriptions
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match subs.get_mut(key) {
        Some(count) if *count > 1 => {
            *count -= 1;
            false
        }
        Some(_) => {
            subs.remove(key);
            true
        }
        None => false,
    }
}
