//! The `Agent` trait: what a program implements to offer MCP tools,
//! resources and prompts on the mesh.

use std::sync::Arc;

use async_trait::async_trait;
use dawn_resilience::{Deadline, ErrorKind};
use dawn_transport::PeerId;
use rmcp::model::{
    CallToolResult, CompleteRequestParams, CompleteResult, GetPromptResult, JsonObject, Prompt,
    ReadResourceResult, Resource, ResourceTemplate, Tool,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::{CallError, Request};

/// An agent hosted by a node.
///
/// Tools, resources and prompts use the MCP data model (re-exported as
/// [`crate::mcp`]). Tool arguments are validated against each tool's
/// `input_schema` before [`Agent::call_tool`] is called, so an agent sees only
/// arguments that match its schema.
///
/// Tool failures that the model should see (bad input in a valid shape, an
/// upstream service down) belong in a [`CallToolResult`] with `is_error`;
/// return `Err` for protocol-level failures (unknown tool, invalid params,
/// internal errors).
///
/// Annotate tools that change nothing with `read_only_hint` and tools that
/// are safe to repeat with `idempotent_hint`: the node uses these hints for
/// authorization defaults and retries.
#[async_trait]
pub trait Agent: Send + Sync + 'static {
    /// The agent id (see [`crate::AgentId`] for the rules).
    fn id(&self) -> &str;

    /// One line saying what the agent does.
    fn description(&self) -> String;

    /// The tools the agent offers.
    fn tools(&self) -> Vec<Tool>;

    /// The resources the agent offers.
    fn resources(&self) -> Vec<Resource> {
        Vec::new()
    }

    /// URI templates for parameterised resources.
    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        Vec::new()
    }

    /// The prompts the agent offers.
    fn prompts(&self) -> Vec<Prompt> {
        Vec::new()
    }

    /// Runs a tool. `arguments` already passed schema validation.
    async fn call_tool(
        &self,
        ctx: &CallContext,
        name: &str,
        arguments: JsonObject,
    ) -> Result<CallToolResult, CallError>;

    /// Reads a resource.
    async fn read_resource(
        &self,
        ctx: &CallContext,
        uri: &str,
    ) -> Result<ReadResourceResult, CallError> {
        let _ = ctx;
        Err(CallError::new(
            ErrorKind::UnknownResource,
            format!("resource {uri} not found"),
        )
        .with("uri", uri))
    }

    /// Renders a prompt.
    async fn get_prompt(
        &self,
        ctx: &CallContext,
        name: &str,
        arguments: JsonObject,
    ) -> Result<GetPromptResult, CallError> {
        let _ = (ctx, arguments);
        Err(CallError::new(
            ErrorKind::UnknownPrompt,
            format!("prompt {name} not found"),
        ))
    }

    /// Suggests values for a prompt or resource-template argument (MCP
    /// `completion/complete`). The default suggests nothing.
    async fn complete(
        &self,
        ctx: &CallContext,
        params: CompleteRequestParams,
    ) -> Result<CompleteResult, CallError> {
        let _ = (ctx, params);
        Ok(CompleteResult::default())
    }

    /// A client wants `notifications/resources/updated` for `uri`. Report
    /// changes with [`AgentHandle::resource_updated`]. The default accepts
    /// any URI the agent lists.
    async fn subscribe(&self, ctx: &CallContext, uri: &str) -> Result<(), CallError> {
        let _ = (ctx, uri);
        Ok(())
    }

    /// The last subscriber to `uri` went away.
    async fn unsubscribe(&self, ctx: &CallContext, uri: &str) -> Result<(), CallError> {
        let _ = (ctx, uri);
        Ok(())
    }

    /// Called once when the agent is added to a node. Keep the handle to tell
    /// the node when the agent's tools, resources or prompts change, or when
    /// a resource's content changes.
    fn attach(&self, handle: AgentHandle) {
        let _ = handle;
    }
}

/// Lets an agent tell its node that its lists or resources changed.
#[derive(Clone)]
pub struct AgentHandle {
    pub(crate) notify: Arc<dyn Fn() + Send + Sync>,
    pub(crate) updated: Arc<dyn Fn(&str) + Send + Sync>,
    pub(crate) store: dawn_store::AgentStore,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentHandle")
    }
}

impl AgentHandle {
    /// The agent's tools, resources or prompts changed: the node re-reads
    /// them (and, where it applies, tells connected clients and peers).
    pub fn lists_changed(&self) {
        (self.notify)()
    }

    /// The content of the resource at `uri` changed: subscribers (local MCP
    /// clients and remote nodes) get `notifications/resources/updated`.
    pub fn resource_updated(&self, uri: &str) {
        (self.updated)(uri)
    }

    /// The agent's persistent state: a transactional key-value store in the node's
    /// database, in a namespace of its own (its agent id). Writes are durable when they
    /// return, survive restarts and crashes, and are included in backups. Its methods block
    /// on the disk: from async code, clone it into `tokio::task::spawn_blocking`.
    pub fn store(&self) -> &dawn_store::AgentStore {
        &self.store
    }
}

/// Who made a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The embedding program, through [`crate::Node`].
    Local,
    /// A client of this node's HTTP API or MCP endpoint.
    Api,
    /// Another node, authenticated by its key.
    Peer(PeerId),
}

/// Where mid-call messages from an agent go: the MCP client or the calling
/// node, whichever is upstream of this call.
#[async_trait]
pub trait Upstream: Send + Sync {
    /// Sends a notification (progress, log message).
    async fn notify(&self, notification: Request);
    /// Sends a request (sampling, elicitation, roots) and waits for the answer.
    async fn request(&self, request: Request) -> Result<Value, CallError>;
}

/// Everything an agent may want to know about the call it is handling.
#[derive(Clone)]
pub struct CallContext {
    pub(crate) caller: Caller,
    pub(crate) deadline: Deadline,
    pub(crate) cancel: CancellationToken,
    pub(crate) upstream: Option<Arc<dyn Upstream>>,
    pub(crate) progress_token: Option<Value>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("caller", &self.caller)
            .field("deadline", &self.deadline)
            .field("progress_token", &self.progress_token)
            .finish_non_exhaustive()
    }
}

impl CallContext {
    pub(crate) fn new(caller: Caller, deadline: Deadline) -> Self {
        CallContext {
            caller,
            deadline,
            cancel: CancellationToken::new(),
            upstream: None,
            progress_token: None,
        }
    }

    /// Who is calling.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// When the caller stops waiting. Work past it is wasted.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// Cancelled when the caller cancels, disconnects, or the deadline passes.
    /// Long-running tools should select on it.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Reports progress to the caller if it asked for progress (MCP
    /// `notifications/progress`); otherwise does nothing.
    pub async fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let (Some(upstream), Some(token)) = (&self.upstream, &self.progress_token) else {
            return;
        };
        let mut params = json!({ "progressToken": token, "progress": progress });
        if let Some(total) = total {
            params["total"] = json!(total);
        }
        if let Some(message) = message {
            params["message"] = json!(message);
        }
        upstream
            .notify(Request::notification(
                "notifications/progress",
                Some(params),
            ))
            .await;
    }

    /// Sends a log message to the caller (MCP `notifications/message`).
    pub async fn log(&self, level: &str, logger: &str, data: Value) {
        if let Some(upstream) = &self.upstream {
            upstream
                .notify(Request::notification(
                    "notifications/message",
                    Some(json!({ "level": level, "logger": logger, "data": data })),
                ))
                .await;
        }
    }

    /// Asks the caller's client something (MCP `sampling/createMessage`,
    /// `elicitation/create`, `roots/list`) and waits for the answer.
    pub async fn request_client(&self, method: &str, params: Value) -> Result<Value, CallError> {
        let Some(upstream) = &self.upstream else {
            return Err(CallError::new(
                ErrorKind::MethodNotFound,
                format!("no client is attached to this call to answer {method}"),
            ));
        };
        upstream
            .request(Request::new(0, method, Some(params)))
            .await
    }
}
