//! The MCP client side of a mounted server: the rmcp `ClientHandler` that
//! receives the server's notifications and requests, and a transport wrapper
//! that sees progress and log notifications in wire order.
//!
//! Sampling, roots and logging are part of protocol revision 2025-11-25,
//! which mounted servers are spoken to in; rmcp marks them deprecated for
//! later revisions, hence the `allow(deprecated)`.
#![allow(deprecated)]

use std::{borrow::Cow, sync::Arc};

use dawn_resilience::ErrorKind;
use rmcp::{
    ClientHandler, ErrorData as McpError, RoleClient,
    model::{
        ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequestParams, ElicitResult, ErrorCode, Implementation, JsonRpcMessage,
        ListRootsResult, ProtocolVersion, ResourceUpdatedNotificationParam, ServerNotification,
    },
    service::{NotificationContext, RequestContext},
    transport::Transport,
};
use serde::{Serialize, de::DeserializeOwned};

use super::agent::{Inner, Relay};
use crate::jsonrpc::CallError;

/// The protocol revision spoken to mounted servers: the newest with the
/// `initialize` handshake and mid-call server-to-client requests.
pub(super) const PROTOCOL: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// Receives what a mounted server sends on its own initiative.
#[derive(Clone)]
pub(super) struct UpstreamClient {
    pub(super) inner: Arc<Inner>,
}

fn mcp_error(e: CallError) -> McpError {
    McpError::new(
        ErrorCode(i32::try_from(e.code).unwrap_or(ErrorCode::INTERNAL_ERROR.0)),
        e.message,
        e.data,
    )
}

impl UpstreamClient {
    /// Forwards a server->client request to the client of the call it is
    /// most likely made for (see [`Inner::call_for_client_request`]).
    async fn ask_caller<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: P,
        context: &RequestContext<RoleClient>,
    ) -> Result<R, McpError> {
        let id = &self.inner.id;
        let Some(ctx) = self.inner.call_for_client_request() else {
            tracing::warn!(server = %id, method, "mounted server sent a request outside any call; refused");
            return Err(mcp_error(CallError::new(
                ErrorKind::MethodNotFound,
                format!("{method} is only possible during a call to a tool, prompt or resource"),
            )));
        };
        let params = serde_json::to_value(params)
            .map_err(|e| McpError::invalid_params(format!("cannot encode {method}: {e}"), None))?;
        tracing::debug!(server = %id, method, "forwarding a request of a mounted server to the caller");
        let answer = tokio::select! {
            answer = ctx.request_client(method, params) => answer.map_err(mcp_error)?,
            () = context.ct.cancelled() => {
                return Err(mcp_error(CallError::new(ErrorKind::Cancelled, format!("the server cancelled {method}"))));
            }
            () = ctx.cancellation().cancelled() => {
                return Err(mcp_error(CallError::new(ErrorKind::Cancelled, "the call this request belongs to was cancelled")));
            }
        };
        serde_json::from_value(answer).map_err(|e| {
            McpError::internal_error(
                format!("the client's answer to {method} is malformed: {e}"),
                None,
            )
        })
    }
}

impl ClientHandler for UpstreamClient {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        self.ask_caller("sampling/createMessage", params, &context)
            .await
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        self.ask_caller("elicitation/create", request, &context)
            .await
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        if self.inner.call_for_client_request().is_none() {
            return Ok(ListRootsResult::default());
        }
        self.ask_caller("roots/list", serde_json::json!({}), &context)
            .await
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.inner.resource_updated(&params.uri);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.inner.refresh.notify_one();
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.inner.refresh.notify_one();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.inner.refresh.notify_one();
    }

    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        capabilities.sampling = Some(Default::default());
        capabilities.elicitation = Some(Default::default());
        ClientConfig::new(
            capabilities,
            Implementation::new("dawn", crate::VERSION).with_title("Dawn mesh node"),
        )
        .with_protocol_version(PROTOCOL)
    }
}

/// A transport that hands progress and log notifications to the agent as
/// they arrive, before rmcp dispatches them on separate tasks (which would
/// reorder them, and let them trail the response of their request).
pub(super) struct Tapped<T> {
    pub(super) inner: T,
    pub(super) agent: Arc<Inner>,
    pub(super) generation: u64,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Tapped<T> {
    type Error = T::Error;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    fn receive(
        &mut self,
    ) -> impl Future<Output = Option<rmcp::service::RxJsonRpcMessage<RoleClient>>> + Send {
        let agent = self.agent.clone();
        let generation = self.generation;
        let next = self.inner.receive();
        async move {
            let message = next.await;
            if let Some(JsonRpcMessage::Notification(n)) = &message {
                match &n.notification {
                    ServerNotification::ProgressNotification(p) => {
                        agent.observe(generation, Relay::Progress(p.params.clone()));
                    }
                    ServerNotification::LoggingMessageNotification(l) => {
                        agent.observe(generation, Relay::Log(l.params.clone()));
                    }
                    _ => {}
                }
            }
            message
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
