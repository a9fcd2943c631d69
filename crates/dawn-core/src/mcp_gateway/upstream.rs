//! Delivering an agent's mid-call messages to the MCP client of a session.
//!
//! Notifications go straight to the rmcp peer. Requests to the client
//! (sampling, elicitation, roots) must be issued from inside the handler
//! future that serves the client's call, or rmcp cannot tie them to that
//! call's stream; so they are handed to that future over a channel.

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

use async_trait::async_trait;
use dawn_resilience::ErrorKind;
use rmcp::{
    RoleServer,
    model::{ServerNotification, ServerRequest},
    service::Peer,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::{
    agent::Upstream,
    jsonrpc::{CallError, Request},
};

/// A request to the client waiting to be issued by the handler future.
pub(crate) type ClientRequest = (Request, oneshot::Sender<Result<Value, CallError>>);

/// Rewrites URIs in notifications (mesh view) before they reach the client.
pub(crate) type UriRewrite = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// MCP log levels in increasing severity.
pub(crate) const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

pub(crate) fn level_index(level: &str) -> u8 {
    LEVELS.iter().position(|l| *l == level).unwrap_or(0) as u8
}

pub(crate) struct SessionUpstream {
    pub(crate) peer: Peer<RoleServer>,
    pub(crate) requests: Option<mpsc::Sender<ClientRequest>>,
    pub(crate) min_level: Arc<AtomicU8>,
    pub(crate) rewrite_uri: Option<UriRewrite>,
}

#[async_trait]
impl Upstream for SessionUpstream {
    async fn notify(&self, mut notification: Request) {
        if notification.method == "notifications/message" {
            let level = notification
                .params
                .as_ref()
                .and_then(|p| p.get("level"))
                .and_then(Value::as_str)
                .unwrap_or("info");
            if level_index(level) < self.min_level.load(Ordering::Relaxed) {
                return;
            }
        }
        if notification.method == "notifications/resources/updated"
            && let (Some(rewrite), Some(params)) = (&self.rewrite_uri, notification.params.as_mut())
            && let Some(uri) = params.get("uri").and_then(Value::as_str).map(str::to_owned)
        {
            params["uri"] = json!(rewrite(&uri));
        }
        let message = json!({ "method": notification.method, "params": notification.params.unwrap_or(json!({})) });
        match serde_json::from_value::<ServerNotification>(message) {
            Ok(n) => {
                if let Err(error) = self.peer.send_notification(n).await {
                    tracing::debug!(%error, "cannot deliver a notification to the MCP client");
                }
            }
            Err(error) => {
                tracing::debug!(%error, "dropping a notification the MCP model does not know")
            }
        }
    }

    async fn request(&self, request: Request) -> Result<Value, CallError> {
        let Some(requests) = &self.requests else {
            return Err(CallError::new(
                ErrorKind::MethodNotFound,
                format!(
                    "{} cannot be sent to the client outside a call",
                    request.method
                ),
            ));
        };
        let (tx, rx) = oneshot::channel();
        requests.send((request, tx)).await.map_err(|_| {
            CallError::new(ErrorKind::ConnectionLost, "the client's call has ended")
        })?;
        rx.await
            .map_err(|_| CallError::new(ErrorKind::ConnectionLost, "the client's call has ended"))?
    }
}

/// Issues one client request through the session's peer (called from the
/// handler future).
pub(crate) async fn issue(peer: &Peer<RoleServer>, request: Request) -> Result<Value, CallError> {
    let message =
        json!({ "method": request.method, "params": request.params.unwrap_or(json!({})) });
    let server_request: ServerRequest = serde_json::from_value(message).map_err(|e| {
        CallError::new(
            ErrorKind::InvalidRequest,
            format!("not a request an MCP server may send: {e}"),
        )
    })?;
    match peer.send_request(server_request).await {
        Ok(result) => serde_json::to_value(result).map_err(|e| {
            CallError::new(
                ErrorKind::Internal,
                format!("cannot encode the client's answer: {e}"),
            )
        }),
        Err(rmcp::ServiceError::McpError(e)) => Err(CallError {
            code: i64::from(e.code.0),
            message: e.message.to_string(),
            data: e.data,
        }),
        Err(e) => Err(CallError::new(
            ErrorKind::ConnectionLost,
            format!("the client did not answer: {e}"),
        )),
    }
}
