//! `McpServerAgent`: the agent that stands for one mounted server, its cache
//! of the server's lists, and the forwarding of calls to the server.
//!
//! Logging (`notifications/message`) is part of protocol revision
//! 2025-11-25, which mounted servers are spoken to in; rmcp marks it
//! deprecated for later revisions, hence the `allow(deprecated)`.
#![allow(deprecated)]

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{
        Arc, Mutex, OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use dawn_resilience::ErrorKind;
use rmcp::{
    RoleClient, ServiceError,
    model::{
        CallToolResult, ClientNotification, ClientRequest, CompleteRequestParams, CompleteResult,
        GetPromptResult, JsonObject, LoggingMessageNotificationParam, ProgressNotificationParam,
        ProgressToken, Prompt, ReadResourceResult, RequestId, Resource, ResourceTemplate,
        ServerCapabilities, Tool,
    },
    service::{Peer, PeerRequestOptions},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

use super::status::{MountedServerState, MountedServerStatus, MountedTransport, STDERR_TAIL_LINES};
use crate::{
    address::AgentId,
    agent::{Agent, AgentHandle, CallContext},
    config::MountedServerConfig,
    error::NodeError,
    jsonrpc::CallError,
};

/// Calls in flight per server whose progress or log notifications can be
/// held back until the call has registered its progress token.
const MAX_ORPHAN_NOTIFICATIONS: usize = 64;

/// An agent that stands for an external MCP server (`mcp.servers`).
///
/// The node creates one per configured server and keeps it registered for
/// the node's lifetime. Its tools, resources, resource templates and prompts
/// are those the server listed when it last connected (refreshed on the
/// server's list-changed notifications); while the server is down they are
/// empty and calls fail with `unreachable`.
#[derive(Clone)]
pub struct McpServerAgent {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for McpServerAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServerAgent")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// What the server offers, as last listed.
#[derive(Debug, Default, Clone)]
pub(super) struct Lists {
    pub(super) tools: Vec<Tool>,
    pub(super) resources: Vec<Resource>,
    pub(super) templates: Vec<ResourceTemplate>,
    pub(super) prompts: Vec<Prompt>,
}

/// A live MCP session with the server.
pub(super) struct Connection {
    pub(super) peer: Peer<RoleClient>,
    pub(super) generation: u64,
    pub(super) capabilities: ServerCapabilities,
}

/// A notification from the server that belongs to one call.
#[derive(Debug)]
pub(super) enum Relay {
    Progress(ProgressNotificationParam),
    Log(LoggingMessageNotificationParam),
}

struct CallSlot {
    ctx: CallContext,
    events: mpsc::UnboundedSender<Relay>,
}

/// Calls in flight to the server, newest last, and the progress tokens rmcp
/// chose for them (rmcp replaces the caller's token with its own).
#[derive(Default)]
struct Inflight {
    next: u64,
    calls: BTreeMap<u64, CallSlot>,
    /// (connection generation, rmcp's token) -> call.
    tokens: HashMap<(u64, ProgressToken), u64>,
    /// Progress that arrived before its call registered the token.
    orphans: VecDeque<(u64, ProgressToken, Relay)>,
}

pub(super) struct Inner {
    pub(super) id: String,
    pub(super) config: MountedServerConfig,
    pub(super) transport: MountedTransport,
    lists: RwLock<Lists>,
    conn: RwLock<Option<Arc<Connection>>>,
    /// The server's own description (instructions or name), from its handshake.
    upstream_description: RwLock<Option<String>>,
    inflight: Mutex<Inflight>,
    handle: OnceLock<AgentHandle>,
    status: watch::Sender<MountedServerStatus>,
    /// When the next start is due (while `Restarting`).
    retry_at: Mutex<Option<Instant>>,
    generations: AtomicU64,
    /// The server said a list changed.
    pub(super) refresh: Notify,
    /// A call failed in a way that suggests the connection is gone.
    pub(super) suspect: Notify,
    /// Resource URIs subscribed to upstream (subscribed again after a restart).
    subscriptions: Mutex<BTreeSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// The URL as shown in status and logs: no credentials, query or fragment.
fn display_url(url: &str) -> String {
    match url.parse::<axum::http::Uri>() {
        Ok(uri) => {
            let scheme = uri.scheme_str().unwrap_or("http");
            let host = uri.host().unwrap_or_default();
            let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{}", uri.path())
        }
        Err(_) => "<invalid url>".into(),
    }
}

impl McpServerAgent {
    /// An agent for `config`, not yet connected (the node's supervisor task
    /// connects it).
    pub(crate) fn new(config: MountedServerConfig) -> Result<Self, NodeError> {
        let id = AgentId::new(config.id.as_str())?.to_string();
        let (transport, target) = match (&config.command, &config.url) {
            (Some(command), _) => (MountedTransport::Stdio, command.clone()),
            (None, Some(url)) => (MountedTransport::Http, display_url(url)),
            (None, None) => {
                return Err(NodeError::Internal(format!(
                    "mounted server {id} has neither command nor url"
                )));
            }
        };
        let (status, _) = watch::channel(MountedServerStatus::new(id.clone(), transport, target));
        metrics::gauge!("dawn_mcp_server_up", "server" => id.clone()).set(0.0);
        Ok(McpServerAgent {
            inner: Arc::new(Inner {
                id,
                config,
                transport,
                lists: RwLock::new(Lists::default()),
                conn: RwLock::new(None),
                upstream_description: RwLock::new(None),
                inflight: Mutex::new(Inflight::default()),
                handle: OnceLock::new(),
                status,
                retry_at: Mutex::new(None),
                generations: AtomicU64::new(0),
                refresh: Notify::new(),
                suspect: Notify::new(),
                subscriptions: Mutex::new(BTreeSet::new()),
            }),
        })
    }

    /// The server's current status.
    pub fn status(&self) -> MountedServerStatus {
        self.inner.status()
    }

    /// Watches the server's status; the receiver sees every change (state,
    /// restarts, stderr lines). `next_in` of a `Restarting` state is the
    /// full delay as of the change; [`McpServerAgent::status`] gives the
    /// time left.
    pub fn watch_status(&self) -> watch::Receiver<MountedServerStatus> {
        self.inner.status.subscribe()
    }
}

impl Inner {
    pub(super) fn status(&self) -> MountedServerStatus {
        let mut status = self.status.borrow().clone();
        if let MountedServerState::Restarting { next_in, .. } = &mut status.state
            && let Some(at) = *lock(&self.retry_at)
        {
            *next_in = at.saturating_duration_since(Instant::now());
        }
        status
    }

    pub(super) fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn lists_changed(&self) {
        if let Some(handle) = self.handle.get() {
            handle.lists_changed();
        }
    }

    pub(super) fn resource_updated(&self, uri: &str) {
        if let Some(handle) = self.handle.get() {
            handle.resource_updated(uri);
        }
    }

    pub(super) fn set_state(&self, state: MountedServerState) {
        let up = state == MountedServerState::Running;
        metrics::gauge!("dawn_mcp_server_up", "server" => self.id.clone()).set(if up {
            1.0
        } else {
            0.0
        });
        let retry_at = match &state {
            MountedServerState::Restarting { next_in, .. } => Some(Instant::now() + *next_in),
            _ => None,
        };
        *lock(&self.retry_at) = retry_at;
        self.status.send_modify(|s| {
            if let MountedServerState::Restarting { last_error, .. }
            | MountedServerState::Failed { error: last_error } = &state
            {
                s.last_error = Some(last_error.clone());
            }
            if !matches!(state, MountedServerState::Running) {
                s.tools = 0;
                s.resources = 0;
                s.prompts = 0;
                s.server = None;
            }
            s.state = state;
        });
    }

    pub(super) fn set_pid(&self, pid: Option<u32>) {
        self.status.send_modify(|s| s.pid = pid);
    }

    pub(super) fn count_restart(&self) {
        self.status.send_modify(|s| s.restarts += 1);
    }

    pub(super) fn push_stderr(&self, line: String) {
        self.status.send_modify(|s| {
            if s.stderr_tail.len() >= STDERR_TAIL_LINES {
                s.stderr_tail.remove(0);
            }
            s.stderr_tail.push(line);
        });
    }

    pub(super) fn last_stderr_line(&self) -> Option<String> {
        self.status.borrow().stderr_tail.last().cloned()
    }

    /// The connection is up and `lists` were read from it: offer them.
    pub(super) fn connected(&self, conn: Arc<Connection>, lists: Lists) {
        let info = conn.peer.peer_info();
        let server = info
            .as_ref()
            .and_then(|i| i.server_info.as_ref())
            .map(|s| format!("{} {}", s.name, s.version));
        // One line: the first line of the server's instructions, else its name.
        let description = info.as_ref().and_then(|i| {
            i.instructions
                .as_deref()
                .and_then(|s| s.lines().map(str::trim).find(|l| !l.is_empty()))
                .map(|l| l.chars().take(200).collect())
                .or_else(|| {
                    i.server_info
                        .as_ref()
                        .map(|s| s.title.clone().unwrap_or_else(|| s.name.clone()))
                })
        });
        *write(&self.upstream_description) = description;
        *write(&self.conn) = Some(conn);
        self.status.send_modify(|s| s.server = server);
        self.replace_lists(lists);
        self.set_state(MountedServerState::Running);
    }

    /// The connection ended: offer nothing until the next one.
    pub(super) fn disconnected(&self) {
        let had = write(&self.conn).take().is_some();
        let mut lists = write(&self.lists);
        let had_items = !(lists.tools.is_empty()
            && lists.resources.is_empty()
            && lists.templates.is_empty()
            && lists.prompts.is_empty());
        *lists = Lists::default();
        drop(lists);
        if had || had_items {
            self.lists_changed();
        }
    }

    pub(super) fn replace_lists(&self, lists: Lists) {
        let (tools, resources, prompts) = (
            lists.tools.len(),
            lists.resources.len(),
            lists.prompts.len(),
        );
        *write(&self.lists) = lists;
        self.status.send_modify(|s| {
            s.tools = tools;
            s.resources = resources;
            s.prompts = prompts;
        });
        self.lists_changed();
    }

    pub(super) fn connection(&self) -> Option<Arc<Connection>> {
        read(&self.conn).clone()
    }

    pub(super) fn subscribed_uris(&self) -> Vec<String> {
        lock(&self.subscriptions).iter().cloned().collect()
    }

    /// Why calls cannot be forwarded now.
    fn not_running(&self) -> CallError {
        let status = self.status();
        let id = &self.id;
        let message = match &status.state {
            MountedServerState::Restarting {
                next_in,
                last_error,
                ..
            } => format!(
                "mounted server {id} is not running (restarting in {}): {last_error}",
                human(*next_in)
            ),
            MountedServerState::Failed { error } => {
                format!("mounted server {id} is not running (failed, not retried): {error}")
            }
            MountedServerState::Stopped => format!("mounted server {id} is stopped"),
            MountedServerState::Starting | MountedServerState::Running => {
                match &status.last_error {
                    Some(e) => format!("mounted server {id} is not running (starting): {e}"),
                    None => format!("mounted server {id} is not running yet (starting)"),
                }
            }
        };
        CallError::new(ErrorKind::Unreachable, message).with("server", id.as_str())
    }

    // --- calls in flight -------------------------------------------------

    fn register(&self, ctx: &CallContext, events: mpsc::UnboundedSender<Relay>) -> u64 {
        let mut inflight = lock(&self.inflight);
        inflight.next += 1;
        let seq = inflight.next;
        inflight.calls.insert(
            seq,
            CallSlot {
                ctx: ctx.clone(),
                events,
            },
        );
        seq
    }

    /// Ties rmcp's progress token to call `seq` and hands it any progress
    /// that arrived first.
    fn bind_token(&self, seq: u64, generation: u64, token: ProgressToken) {
        let mut inflight = lock(&self.inflight);
        let Inflight {
            calls,
            tokens,
            orphans,
            ..
        } = &mut *inflight;
        let Some(slot) = calls.get(&seq) else {
            return;
        };
        let mut kept = VecDeque::with_capacity(orphans.len());
        for (g, t, relay) in orphans.drain(..) {
            if g == generation && t == token {
                let _ = slot.events.send(relay);
            } else {
                kept.push_back((g, t, relay));
            }
        }
        *orphans = kept;
        tokens.insert((generation, token), seq);
    }

    fn unregister(&self, seq: u64) {
        let mut inflight = lock(&self.inflight);
        inflight.calls.remove(&seq);
        inflight.tokens.retain(|_, s| *s != seq);
    }

    /// The call a server->client request (sampling, elicitation, roots) is
    /// made for: the one call in flight, or else the most recent one. MCP
    /// over stdio does not say which request a server->client request
    /// belongs to.
    pub(super) fn call_for_client_request(&self) -> Option<CallContext> {
        lock(&self.inflight)
            .calls
            .last_key_value()
            .map(|(_, slot)| slot.ctx.clone())
    }

    /// Routes a progress or log notification, in the order the server sent
    /// it (called from the transport, before rmcp dispatches the message).
    pub(super) fn observe(&self, generation: u64, relay: Relay) {
        let mut inflight = lock(&self.inflight);
        match relay {
            Relay::Progress(p) => {
                let key = (generation, p.progress_token.clone());
                match inflight.tokens.get(&key).copied() {
                    Some(seq) => {
                        if let Some(slot) = inflight.calls.get(&seq) {
                            let _ = slot.events.send(Relay::Progress(p));
                        }
                    }
                    None => {
                        if inflight.orphans.len() >= MAX_ORPHAN_NOTIFICATIONS {
                            inflight.orphans.pop_front();
                        }
                        inflight
                            .orphans
                            .push_back((key.0, key.1, Relay::Progress(p)));
                    }
                }
            }
            Relay::Log(l) => {
                // A log message names no request: it goes to the caller only
                // when exactly one call is in flight, else to the node's log.
                if inflight.calls.len() == 1
                    && let Some(slot) = inflight.calls.values().next()
                {
                    let _ = slot.events.send(Relay::Log(l));
                } else {
                    drop(inflight);
                    self.log_to_node(&l);
                }
            }
        }
    }

    fn log_to_node(&self, l: &LoggingMessageNotificationParam) {
        let level = level_name(l);
        let logger = l.logger.as_deref().unwrap_or_default();
        let data = l.data.to_string();
        match level.as_str() {
            "debug" => {
                tracing::debug!(server = %self.id, level, logger, data, "mounted server log")
            }
            "info" | "notice" => {
                tracing::info!(server = %self.id, level, logger, data, "mounted server log")
            }
            "warning" => {
                tracing::warn!(server = %self.id, level, logger, data, "mounted server log")
            }
            _ => tracing::error!(server = %self.id, level, logger, data, "mounted server log"),
        }
    }

    // --- forwarding ------------------------------------------------------

    /// Sends `method` with `params` to the server for the call `ctx` and
    /// returns the result, relaying progress and log notifications to the
    /// caller; cancels the request upstream if the caller cancels, the
    /// deadline passes or the call is abandoned.
    pub(super) async fn forward<T: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Value,
    ) -> Result<T, CallError> {
        let conn = self.connection().ok_or_else(|| self.not_running())?;
        let request: ClientRequest =
            serde_json::from_value(json!({ "method": method, "params": params })).map_err(|e| {
                CallError::new(
                    ErrorKind::InvalidParams,
                    format!("not a valid {method} request: {e}"),
                )
            })?;
        let budget = ctx.deadline().remaining().min(self.config.call_timeout.0);
        if budget.is_zero() {
            return Err(CallError::new(
                ErrorKind::DeadlineExceeded,
                format!(
                    "the deadline passed before {method} reached mounted server {}",
                    self.id
                ),
            ));
        }
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let registration = Registration {
            inner: self,
            seq: self.register(ctx, events_tx),
        };
        let handle = conn
            .peer
            .send_cancellable_request(request, PeerRequestOptions::with_timeout(budget))
            .await
            .map_err(|e| self.service_error(method, e))?;
        self.bind_token(
            registration.seq,
            conn.generation,
            handle.progress_token.clone(),
        );
        let mut cancel = CancelUpstream {
            peer: Some(conn.peer.clone()),
            id: handle.id.clone(),
            server: self.id.clone(),
        };
        let response = handle.await_response();
        tokio::pin!(response);
        let mut last_progress = None;
        let outcome = loop {
            tokio::select! {
                biased;
                Some(event) = events.recv() => self.relay(ctx, event, &mut last_progress).await,
                result = &mut response => break Some(result),
                () = ctx.cancellation().cancelled() => break None,
            }
        };
        let Some(result) = outcome else {
            cancel.send("the caller cancelled the call").await;
            return Err(CallError::new(
                ErrorKind::Cancelled,
                "the call was cancelled",
            ));
        };
        // Answered, or timed out (rmcp then sent notifications/cancelled).
        cancel.disarm();
        // Notifications the server sent before its answer are queued already.
        while let Ok(event) = events.try_recv() {
            self.relay(ctx, event, &mut last_progress).await;
        }
        drop(registration);
        let result = result.map_err(|e| self.service_error(method, e))?;
        let value = serde_json::to_value(result).map_err(|e| {
            CallError::new(
                ErrorKind::Internal,
                format!(
                    "cannot encode the answer of mounted server {}: {e}",
                    self.id
                ),
            )
        })?;
        serde_json::from_value(value).map_err(|e| {
            CallError::new(
                ErrorKind::ProtocolViolation,
                format!(
                    "mounted server {} answered {method} with an unexpected result: {e}",
                    self.id
                ),
            )
        })
    }

    async fn relay(&self, ctx: &CallContext, event: Relay, last_progress: &mut Option<f64>) {
        match event {
            Relay::Progress(p) => {
                // Progress must increase; anything else is stale or repeated.
                if last_progress.is_some_and(|last| p.progress <= last) {
                    return;
                }
                *last_progress = Some(p.progress);
                ctx.progress(p.progress, p.total, p.message.as_deref())
                    .await;
            }
            Relay::Log(l) => {
                let level = level_name(&l);
                let logger = l.logger.clone().unwrap_or_else(|| self.id.clone());
                ctx.log(&level, &logger, l.data).await;
            }
        }
    }

    fn service_error(&self, method: &str, error: ServiceError) -> CallError {
        let id = &self.id;
        match error {
            ServiceError::McpError(e) => CallError {
                code: i64::from(e.code.0),
                message: e.message.to_string(),
                data: e.data,
            },
            ServiceError::Timeout { timeout } => CallError::new(
                ErrorKind::DeadlineExceeded,
                format!(
                    "mounted server {id} did not answer {method} within {}",
                    human(timeout)
                ),
            ),
            ServiceError::Cancelled { reason } => CallError::new(
                ErrorKind::Cancelled,
                format!(
                    "mounted server {id} cancelled {method}: {}",
                    reason.unwrap_or_else(|| "no reason given".into())
                ),
            ),
            ServiceError::UnexpectedResponse => CallError::new(
                ErrorKind::ProtocolViolation,
                format!("mounted server {id} answered {method} with an unexpected response"),
            ),
            other @ (ServiceError::TransportClosed | ServiceError::TransportSend(_)) => {
                self.suspect.notify_one();
                CallError::new(
                    ErrorKind::ConnectionLost,
                    format!(
                        "the connection to mounted server {id} failed during {method}: {other}"
                    ),
                )
            }
            other => CallError::new(
                ErrorKind::Internal,
                format!("mounted server {id} failed {method}: {other}"),
            ),
        }
    }
}

/// Removes a call from the in-flight table however the call ends.
struct Registration<'a> {
    inner: &'a Inner,
    seq: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.inner.unregister(self.seq);
    }
}

/// Sends `notifications/cancelled` for a forwarded request unless disarmed;
/// also when the forwarding future is dropped (the node abandons a call on
/// cancellation or deadline without polling it further).
struct CancelUpstream {
    peer: Option<Peer<RoleClient>>,
    id: RequestId,
    server: String,
}

impl CancelUpstream {
    fn disarm(&mut self) {
        self.peer = None;
    }

    fn notification(&self, reason: &str) -> ClientNotification {
        ClientNotification::CancelledNotification(rmcp::model::CancelledNotification::new(
            rmcp::model::CancelledNotificationParam::new(
                Some(self.id.clone()),
                Some(reason.to_owned()),
            ),
        ))
    }

    async fn send(&mut self, reason: &str) {
        if let Some(peer) = self.peer.take() {
            let notification = self.notification(reason);
            if let Err(error) = peer.send_notification(notification).await {
                tracing::debug!(server = %self.server, %error, "cannot cancel a request upstream");
            }
        }
    }
}

impl Drop for CancelUpstream {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else {
            return;
        };
        let notification = self.notification("the caller abandoned the call");
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = peer.send_notification(notification).await;
            });
        }
    }
}

fn level_name(l: &LoggingMessageNotificationParam) -> String {
    serde_json::to_value(l.level)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "info".into())
}

/// `4s`, `1.5s`, `250ms`.
pub(super) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 10_000 {
        format!("{}s", d.as_secs())
    } else if ms >= 1000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

#[async_trait]
impl Agent for McpServerAgent {
    fn id(&self) -> &str {
        &self.inner.id
    }

    fn description(&self) -> String {
        let inner = &self.inner;
        if let Some(d) = &inner.config.description {
            return d.clone();
        }
        if let Some(d) = read(&inner.upstream_description).clone() {
            return d;
        }
        let status = inner.status.borrow();
        match inner.transport {
            MountedTransport::Stdio => format!("MCP server mounted from command {}", status.target),
            MountedTransport::Http => format!("MCP server mounted from {}", status.target),
        }
    }

    fn tools(&self) -> Vec<Tool> {
        read(&self.inner.lists).tools.clone()
    }

    fn resources(&self) -> Vec<Resource> {
        read(&self.inner.lists).resources.clone()
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        read(&self.inner.lists).templates.clone()
    }

    fn prompts(&self) -> Vec<Prompt> {
        read(&self.inner.lists).prompts.clone()
    }

    async fn call_tool(
        &self,
        ctx: &CallContext,
        name: &str,
        arguments: JsonObject,
    ) -> Result<CallToolResult, CallError> {
        self.inner
            .forward(
                ctx,
                "tools/call",
                json!({ "name": name, "arguments": arguments }),
            )
            .await
    }

    async fn read_resource(
        &self,
        ctx: &CallContext,
        uri: &str,
    ) -> Result<ReadResourceResult, CallError> {
        self.inner
            .forward(ctx, "resources/read", json!({ "uri": uri }))
            .await
    }

    async fn get_prompt(
        &self,
        ctx: &CallContext,
        name: &str,
        arguments: JsonObject,
    ) -> Result<GetPromptResult, CallError> {
        self.inner
            .forward(
                ctx,
                "prompts/get",
                json!({ "name": name, "arguments": arguments }),
            )
            .await
    }

    async fn complete(
        &self,
        ctx: &CallContext,
        params: CompleteRequestParams,
    ) -> Result<CompleteResult, CallError> {
        let supported = self
            .inner
            .connection()
            .is_some_and(|c| c.capabilities.completions.is_some());
        if !supported {
            return Ok(CompleteResult::default());
        }
        let params = serde_json::to_value(params).map_err(|e| {
            CallError::new(
                ErrorKind::InvalidParams,
                format!("invalid completion request: {e}"),
            )
        })?;
        self.inner.forward(ctx, "completion/complete", params).await
    }

    async fn subscribe(&self, ctx: &CallContext, uri: &str) -> Result<(), CallError> {
        lock(&self.inner.subscriptions).insert(uri.to_owned());
        if supports_subscribe(self.inner.connection().as_deref()) {
            let _: Value = self
                .inner
                .forward(ctx, "resources/subscribe", json!({ "uri": uri }))
                .await?;
        }
        Ok(())
    }

    async fn unsubscribe(&self, ctx: &CallContext, uri: &str) -> Result<(), CallError> {
        lock(&self.inner.subscriptions).remove(uri);
        if supports_subscribe(self.inner.connection().as_deref()) {
            let _: Value = self
                .inner
                .forward(ctx, "resources/unsubscribe", json!({ "uri": uri }))
                .await?;
        }
        Ok(())
    }

    fn attach(&self, handle: AgentHandle) {
        let _ = self.inner.handle.set(handle);
    }
}

pub(super) fn supports_subscribe(conn: Option<&Connection>) -> bool {
    conn.and_then(|c| c.capabilities.resources.as_ref())
        .and_then(|r| r.subscribe)
        .unwrap_or(false)
}
