//! The rmcp `ServerHandler` behind every MCP endpoint of the node.
//!
//! Logging (`logging/setLevel`, `notifications/message`) is part of protocol
//! revision 2025-11-25, which this gateway implements in full; rmcp marks it
//! deprecated for later revisions, hence the `allow(deprecated)`.
#![allow(deprecated)]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use dawn_resilience::ErrorKind;
use dawn_transport::PeerId;
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams,
        CompleteResult, GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
        ReadResourceResult, ServerCapabilities, ServerConfig, SetLevelRequestParams,
        SubscribeRequestParams, UnsubscribeRequestParams,
    },
    service::{NotificationContext, Peer, RequestContext},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    naming::{mesh_name, mesh_uri, node_alias, parse_mesh_uri},
    upstream::{SessionUpstream, UriRewrite, issue, level_index},
};
use crate::{
    address::{AgentAddress, AgentId},
    descriptor::AgentDescriptor,
    jsonrpc::{CallError, Request},
    node::{CallOptions, Node, NodeEvent},
};

/// Which endpoint a handler serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ViewKind {
    /// `/mcp`: every agent of the mesh, namespaced.
    Mesh,
    /// `/mcp/agents/{agent}`: one local agent.
    Agent,
    /// `/mcp/peers/{peer}/agents/{agent}`: one remote agent.
    RemoteAgent,
}

/// Per-session state; dropped (and everything it started stopped) when the
/// client's session ends.
struct Session {
    min_level: Arc<AtomicU8>,
    subscriptions: Mutex<HashMap<String, CancellationToken>>,
    closed: CancellationToken,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// Serves one MCP session (or, for stateless requests, one request).
pub(crate) struct GatewayHandler {
    node: Node,
    kind: ViewKind,
    page_size: usize,
    session: Arc<Session>,
}

impl GatewayHandler {
    pub(crate) fn new(node: Node, kind: ViewKind, page_size: usize) -> Self {
        GatewayHandler {
            node,
            kind,
            page_size: page_size.max(1),
            session: Arc::new(Session {
                min_level: Arc::new(AtomicU8::new(0)),
                subscriptions: Mutex::new(HashMap::new()),
                closed: CancellationToken::new(),
            }),
        }
    }
}

fn mcp_error(e: CallError) -> McpError {
    McpError::new(
        rmcp::model::ErrorCode(i32::try_from(e.code).unwrap_or(-32603)),
        e.message,
        e.data,
    )
}

fn err(kind: ErrorKind, message: impl Into<String>) -> McpError {
    mcp_error(CallError::new(kind, message))
}

fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, McpError> {
    serde_json::from_value(v).map_err(|e| {
        err(
            ErrorKind::ProtocolViolation,
            format!("malformed result from the agent: {e}"),
        )
    })
}

/// Where a request goes after name translation.
struct Route {
    address: AgentAddress,
    /// The agent's own name for the tool/prompt, or its own URI.
    item: String,
}

impl GatewayHandler {
    /// The single agent an `Agent`/`RemoteAgent` endpoint serves, from the
    /// request path.
    fn endpoint_agent(&self, ctx: &RequestContext<RoleServer>) -> Result<AgentAddress, McpError> {
        let path = ctx
            .extensions
            .get::<axum::http::request::Parts>()
            .map(|p| p.uri.path().to_owned())
            .unwrap_or_default();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let bad = || {
            err(
                ErrorKind::InvalidRequest,
                format!("cannot tell the agent from the path {path:?}"),
            )
        };
        match (self.kind, segments.as_slice()) {
            (ViewKind::Agent, ["mcp", "agents", agent]) => {
                let agent = AgentId::new(*agent)
                    .map_err(|e| err(ErrorKind::UnknownAgent, e.to_string()))?;
                Ok(AgentAddress::local(agent))
            }
            (ViewKind::RemoteAgent, ["mcp", "peers", peer, "agents", agent]) => {
                let peer: PeerId = peer.parse().map_err(|_| {
                    err(ErrorKind::UnknownPeer, format!("{peer:?} is not a peer id"))
                })?;
                let agent = AgentId::new(*agent)
                    .map_err(|e| err(ErrorKind::UnknownAgent, e.to_string()))?;
                Ok(AgentAddress::remote(peer, agent))
            }
            _ => Err(bad()),
        }
    }

    /// All agents the mesh view shows: local ones, then each peer's.
    fn mesh_agents(&self) -> Vec<(Option<PeerId>, AgentDescriptor)> {
        let mut out: Vec<(Option<PeerId>, AgentDescriptor)> = self
            .node
            .local_descriptors()
            .into_iter()
            .map(|d| (None, d))
            .collect();
        let mut remote: Vec<(PeerId, Vec<AgentDescriptor>)> =
            self.node.remote_descriptors().into_iter().collect();
        remote.sort_by_key(|(p, _)| p.to_base58());
        for (peer, agents) in remote {
            out.extend(agents.into_iter().map(|d| (Some(peer), d)));
        }
        out
    }

    fn address_of(&self, peer: Option<PeerId>, agent: &str) -> Option<AgentAddress> {
        let id = AgentId::new(agent).ok()?;
        Some(match peer {
            Some(p) => AgentAddress::remote(p, id),
            None => AgentAddress::local(id),
        })
    }

    /// Resolves a mesh tool or prompt name.
    fn resolve_name(&self, name: &str, prompts: bool) -> Result<Route, McpError> {
        for (peer, agent) in self.mesh_agents() {
            let alias = peer.as_ref().map(node_alias);
            let names: Vec<String> = if prompts {
                agent.prompts.iter().map(|p| p.name.clone()).collect()
            } else {
                agent.tools.iter().map(|t| t.name.to_string()).collect()
            };
            for item in names {
                if mesh_name(alias.as_deref(), &agent.id, &item) == name
                    && let Some(address) = self.address_of(peer, &agent.id)
                {
                    return Ok(Route { address, item });
                }
            }
        }
        let kind = if prompts {
            ErrorKind::UnknownPrompt
        } else {
            ErrorKind::UnknownTool
        };
        Err(err(kind, format!("no agent in the mesh offers {name:?}")))
    }

    /// Resolves a mesh resource URI.
    fn resolve_uri(&self, uri: &str) -> Result<Route, McpError> {
        let (peer, agent, inner) = parse_mesh_uri(uri).ok_or_else(|| {
            err(
                ErrorKind::UnknownResource,
                format!("{uri} is not a dawn:// mesh resource URI"),
            )
        })?;
        let peer = (peer != self.node.peer_id()).then_some(peer);
        let address = self.address_of(peer, &agent).ok_or_else(|| {
            err(
                ErrorKind::UnknownAgent,
                format!("{agent:?} is not an agent id"),
            )
        })?;
        Ok(Route {
            address,
            item: inner,
        })
    }

    fn uri_rewriter(&self, address: &AgentAddress) -> UriRewrite {
        let peer = address.peer.unwrap_or_else(|| self.node.peer_id());
        let agent = address.agent.to_string();
        Arc::new(move |inner: &str| mesh_uri(&peer, &agent, inner))
    }

    /// Sends one request to an agent, relaying the agent's notifications and
    /// requests to this session's client, honouring the client's cancellation.
    async fn forward(
        &self,
        ctx: &RequestContext<RoleServer>,
        address: &AgentAddress,
        method: &str,
        params: Value,
        rewrite: Option<UriRewrite>,
    ) -> Result<Value, McpError> {
        let (requests_tx, mut requests_rx) = mpsc::channel(8);
        let upstream = Arc::new(SessionUpstream {
            peer: ctx.peer.clone(),
            requests: Some(requests_tx),
            min_level: self.session.min_level.clone(),
            rewrite_uri: rewrite,
        });
        let request = Request::new(1, method, Some(params));
        let mut options = CallOptions::default()
            .for_api_client()
            .with_cancel(ctx.ct.clone());
        options.upstream = Some(upstream);
        let call = self.node.send(address, request, options);
        tokio::pin!(call);
        let response = loop {
            tokio::select! {
                response = &mut call => break response,
                Some((request, reply)) = requests_rx.recv() => {
                    let _ = reply.send(issue(&ctx.peer, request).await);
                }
            }
        };
        match response {
            Some(r) => r.into_result().map_err(mcp_error),
            None => Ok(Value::Null),
        }
    }

    fn paginate(
        &self,
        items: Vec<Value>,
        cursor: Option<&str>,
        key: &str,
    ) -> Result<Value, McpError> {
        let start = match cursor {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= items.len())
                .ok_or_else(|| err(ErrorKind::InvalidParams, format!("invalid cursor {c:?}")))?,
        };
        let end = (start + self.page_size).min(items.len());
        let mut result = json!({ key: items[start..end].to_vec() });
        if end < items.len() {
            result["nextCursor"] = json!(end.to_string());
        }
        Ok(result)
    }

    fn describe(&self, peer: Option<PeerId>, agent: &str) -> String {
        match peer {
            Some(p) => format!("[agent {agent} on node {p}]"),
            None => format!("[agent {agent} on this node {}]", self.node.peer_id()),
        }
    }

    /// Lists items of one kind (`tools`, `prompts`, `resources`,
    /// `resourceTemplates`) for this endpoint, then paginates.
    async fn list(
        &self,
        ctx: &RequestContext<RoleServer>,
        request: Option<PaginatedRequestParams>,
        method: &str,
        key: &str,
    ) -> Result<Value, McpError> {
        let cursor = request.and_then(|r| r.cursor);
        let items: Vec<Value> = match self.kind {
            ViewKind::Mesh => self.mesh_items(key),
            _ => {
                let address = self.endpoint_agent(ctx)?;
                let result = self.forward(ctx, &address, method, json!({}), None).await?;
                result
                    .get(key)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            }
        };
        self.paginate(items, cursor.as_deref(), key)
    }

    fn mesh_items(&self, key: &str) -> Vec<Value> {
        let mut items = Vec::new();
        for (peer, agent) in self.mesh_agents() {
            let alias = peer.as_ref().map(node_alias);
            let node_peer = peer.unwrap_or_else(|| self.node.peer_id());
            let origin = self.describe(peer, &agent.id);
            let renamed = |v: Value, name_key: &str, name: &str| -> Value {
                let mut v = v;
                v[name_key] = json!(mesh_name(alias.as_deref(), &agent.id, name));
                let description = v
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                v["description"] = json!(format!("{origin} {description}").trim_end().to_owned());
                v
            };
            match key {
                "tools" => {
                    for t in &agent.tools {
                        items.push(renamed(json!(t), "name", &t.name));
                    }
                }
                "prompts" => {
                    for p in &agent.prompts {
                        items.push(renamed(json!(p), "name", &p.name));
                    }
                }
                "resources" => {
                    for r in &agent.resources {
                        let mut v = renamed(json!(r), "name", &r.name);
                        v["uri"] = json!(mesh_uri(&node_peer, &agent.id, &r.uri));
                        items.push(v);
                    }
                }
                "resourceTemplates" => {
                    for t in &agent.resource_templates {
                        let mut v = renamed(json!(t), "name", &t.name);
                        v["uriTemplate"] = json!(mesh_uri(&node_peer, &agent.id, &t.uri_template));
                        items.push(v);
                    }
                }
                _ => {}
            }
        }
        items
    }

    /// Watches for mesh changes and tells the client its lists changed.
    fn watch_lists(&self, peer: Peer<RoleServer>) {
        let mut events = self.node.subscribe();
        let closed = self.session.closed.clone();
        let stop = self.node.shared.stop.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = closed.cancelled() => return,
                    () = stop.cancelled() => return,
                    event = events.recv() => event,
                };
                let relevant = match event {
                    Ok(
                        NodeEvent::AgentAdded(_)
                        | NodeEvent::AgentRemoved(_)
                        | NodeEvent::AgentChanged(_)
                        | NodeEvent::RemoteAgentsChanged(_),
                    ) => true,
                    Ok(_) => false,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if !relevant {
                    continue;
                }
                // Coalesce bursts (an agent added with many tools, a peer joining).
                tokio::time::sleep(Duration::from_millis(50)).await;
                while events.try_recv().is_ok() {}
                if peer.is_transport_closed() {
                    return;
                }
                let _ = peer.notify_tool_list_changed().await;
                let _ = peer.notify_prompt_list_changed().await;
                let _ = peer.notify_resource_list_changed().await;
            }
        });
    }
}

impl ServerHandler for GatewayHandler {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        let instructions = match self.kind {
            ViewKind::Mesh => {
                "Dawn mesh: every agent of every connected node. Tool and prompt names are <agent>__<name> for this node's agents and <node>.<agent>__<name> for other nodes' agents; resource URIs are dawn://<peer-id>/<agent>/<uri>."
            }
            ViewKind::Agent => "One agent of this Dawn node; names are the agent's own.",
            ViewKind::RemoteAgent => {
                "One agent of another Dawn node, reached through this node; names are the agent's own."
            }
        };
        ServerConfig::new(capabilities)
            .with_server_info(
                Implementation::new("dawn", crate::VERSION).with_title("Dawn mesh node"),
            )
            .with_instructions(instructions)
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.watch_lists(context.peer.clone());
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        from_value(self.list(&ctx, request, "tools/list", "tools").await?)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let route = match self.kind {
            ViewKind::Mesh => self.resolve_name(&request.name, false)?,
            _ => Route {
                address: self.endpoint_agent(&ctx)?,
                item: request.name.to_string(),
            },
        };
        let mut params =
            json!({ "name": route.item, "arguments": request.arguments.unwrap_or_default() });
        if let Some(token) = ctx.meta.get_progress_token() {
            params["_meta"] = json!({ "progressToken": token });
        }
        let result = self
            .forward(&ctx, &route.address, "tools/call", params, None)
            .await?;
        Ok(from_value::<CallToolResult>(result)?.into())
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        from_value(self.list(&ctx, request, "prompts/list", "prompts").await?)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let route = match self.kind {
            ViewKind::Mesh => self.resolve_name(&request.name, true)?,
            _ => Route {
                address: self.endpoint_agent(&ctx)?,
                item: request.name.clone(),
            },
        };
        let params =
            json!({ "name": route.item, "arguments": request.arguments.unwrap_or_default() });
        let result = self
            .forward(&ctx, &route.address, "prompts/get", params, None)
            .await?;
        Ok(from_value::<GetPromptResult>(result)?.into())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        from_value(
            self.list(&ctx, request, "resources/list", "resources")
                .await?,
        )
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        from_value(
            self.list(
                &ctx,
                request,
                "resources/templates/list",
                "resourceTemplates",
            )
            .await?,
        )
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let (route, mesh) = match self.kind {
            ViewKind::Mesh => (self.resolve_uri(&request.uri)?, true),
            _ => (
                Route {
                    address: self.endpoint_agent(&ctx)?,
                    item: request.uri.clone(),
                },
                false,
            ),
        };
        let mut result = self
            .forward(
                &ctx,
                &route.address,
                "resources/read",
                json!({ "uri": route.item }),
                None,
            )
            .await?;
        if mesh {
            let rewrite = self.uri_rewriter(&route.address);
            if let Some(contents) = result.get_mut("contents").and_then(Value::as_array_mut) {
                for c in contents {
                    if let Some(uri) = c.get("uri").and_then(Value::as_str).map(str::to_owned) {
                        c["uri"] = json!(rewrite(&uri));
                    }
                }
            }
        }
        Ok(from_value::<ReadResourceResult>(result)?.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let mut params =
            serde_json::to_value(&request).map_err(|e| err(ErrorKind::Internal, e.to_string()))?;
        let address = match self.kind {
            ViewKind::Mesh => {
                let reference = params.get("ref").cloned().unwrap_or_default();
                match reference.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => {
                        let name = reference
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let route = self.resolve_name(name, true)?;
                        params["ref"]["name"] = json!(route.item);
                        route.address
                    }
                    Some("ref/resource") => {
                        let uri = reference
                            .get("uri")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let route = self.resolve_uri(uri)?;
                        params["ref"]["uri"] = json!(route.item);
                        route.address
                    }
                    _ => {
                        return Err(err(
                            ErrorKind::InvalidParams,
                            "ref must be a ref/prompt or ref/resource",
                        ));
                    }
                }
            }
            _ => self.endpoint_agent(&ctx)?,
        };
        from_value(
            self.forward(&ctx, &address, "completion/complete", params, None)
                .await?,
        )
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let level = serde_json::to_value(request.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "info".into());
        self.session
            .min_level
            .store(level_index(&level), Ordering::Relaxed);
        Ok(())
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let uri = request.uri.clone();
        let (route, rewrite) = match self.kind {
            ViewKind::Mesh => {
                let route = self.resolve_uri(&uri)?;
                let rewrite = self.uri_rewriter(&route.address);
                (route, Some(rewrite))
            }
            _ => (
                Route {
                    address: self.endpoint_agent(&ctx)?,
                    item: uri.clone(),
                },
                None,
            ),
        };
        let token = self.session.closed.child_token();
        {
            let mut subs = self
                .session
                .subscriptions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(old) = subs.insert(uri.clone(), token.clone()) {
                old.cancel();
            }
        }
        let upstream = Arc::new(SessionUpstream {
            peer: ctx.peer.clone(),
            requests: None,
            min_level: self.session.min_level.clone(),
            rewrite_uri: rewrite,
        });
        let node = self.node.clone();
        tokio::spawn(async move {
            if let Err(error) = node
                .watch_resource(&route.address, &route.item, upstream, token)
                .await
            {
                tracing::debug!(%error, uri, "resource subscription ended with an error");
            }
        });
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Some(token) = self
            .session
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request.uri)
        {
            token.cancel();
        }
        Ok(())
    }
}
