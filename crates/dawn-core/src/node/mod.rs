//! `NodeBuilder` and `Node`: the embeddable Dawn node.

mod discovery;
mod guard;
mod inbound;
mod outbound;
mod peering;
mod reload;
mod resilience;
mod resources;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use dawn_security::{KeyFileStatus, NodeIdentity};
use dawn_store::Store;
use dawn_transport::{Multiaddr, PeerId, PeerInfo, Transport, TransportConfig};
use rmcp::model::{CallToolResult, JsonObject};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use dawn_resilience::BreakerState;
#[cfg(test)]
pub(crate) use inbound::method_label;
pub use outbound::CallOptions;
pub use reload::{ConfigReload, ReloadError};
pub use resilience::ResilienceStats;

use crate::{
    address::{AgentAddress, AgentId},
    agent::{Agent, AgentHandle, Upstream},
    agent_table::{AgentEntry, AgentTable},
    config::DawnConfig,
    data_dir::{DataDir, DataDirLock},
    descriptor::AgentDescriptor,
    error::NodeError,
    jsonrpc::{CallError, Request},
    system_agent::SystemAgent,
};

/// Node-level events for embedding programs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A peer connected.
    PeerConnected(PeerId),
    /// A peer disconnected.
    PeerDisconnected(PeerId),
    /// What the mesh registry shows of a node changed: its agents, tools,
    /// resources or prompts, or its availability.
    RemoteAgentsChanged(PeerId),
    /// A local agent was added.
    AgentAdded(String),
    /// A local agent was removed.
    AgentRemoved(String),
    /// A local agent's tools, resources or prompts changed.
    AgentChanged(String),
    /// A local agent reported that a resource's content changed.
    ResourceUpdated {
        /// The agent.
        agent: String,
        /// The resource URI.
        uri: String,
    },
    /// The node began shutting down.
    ShuttingDown,
    /// A registry announcement was dropped: forged, malformed, too large or
    /// replayed. For auditing and reputation.
    RegistryRejected {
        /// The peer that delivered it.
        from: PeerId,
        /// The node it claimed to come from, if readable.
        origin: Option<PeerId>,
        /// Why.
        reason: crate::registry::RegistryRejectReason,
    },
    /// The circuit breaker of outbound calls to a peer changed state.
    CircuitBreaker {
        /// The peer.
        peer: PeerId,
        /// The state before.
        from: BreakerState,
        /// The state now.
        to: BreakerState,
    },
}

/// A tool as listed in summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSummary {
    /// Tool name.
    pub name: String,
    /// Tool description.
    #[serde(default)]
    pub description: String,
    /// Whether the tool declares that it changes nothing.
    #[serde(default)]
    pub read_only: bool,
}

/// An agent as listed by `/api/v1/agents` and `system/info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    /// The agent id.
    pub id: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Its tools.
    #[serde(default)]
    pub tools: Vec<ToolSummary>,
    /// Number of resources.
    #[serde(default)]
    pub resources: usize,
    /// Number of prompts.
    #[serde(default)]
    pub prompts: usize,
}

/// Builds and starts a [`Node`].
pub struct NodeBuilder {
    config: DawnConfig,
    agents: Vec<Arc<dyn Agent>>,
    unlock: crate::security::KeyUnlock,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field(
                "agents",
                &self
                    .agents
                    .iter()
                    .map(|a| a.id().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// State shared by every handle and background task of one node.
pub(crate) struct NodeShared {
    /// The configuration the node started with.
    pub(crate) config: DawnConfig,
    /// The configuration as last applied: `config` plus the reloadable keys
    /// of the last [`Node::reload_config`]. Held while a reload runs.
    pub(crate) running_config: tokio::sync::Mutex<DawnConfig>,
    pub(crate) identity: NodeIdentity,
    pub(crate) data_dir: DataDir,
    pub(crate) store: Store,
    pub(crate) transport: Transport,
    pub(crate) agents: AgentTable,
    /// The mesh registry: every node's agents and their availability.
    pub(crate) registry: crate::registry::Registry,
    /// Watchers per (agent, uri) of local resources.
    pub(crate) subscriptions: Mutex<HashMap<(String, String), usize>>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) started: Instant,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) stop: CancellationToken,
    /// Inbound and API calls in flight (drained at shutdown).
    pub(crate) calls: TaskTracker,
    /// Trust, policy, audit log, reputation and the API token.
    pub(crate) security: crate::security::NodeSecurity,
    pub(crate) api_addr: Mutex<Option<SocketAddr>>,
    /// MCP servers mounted from `mcp.servers`.
    pub(crate) mounted: crate::mounted::MountedServers,
    /// Metrics exporter, health checks, readiness and alert engine.
    pub(crate) observe: crate::observe::NodeObservability,
    /// Rate limits, bulkheads, circuit breakers, retries, dial backoff.
    pub(crate) resilience: resilience::Resilience,
    /// Backups: one at a time, last results (crate::backup).
    pub(crate) backup: crate::backup::schedule::BackupState,
    lock: Mutex<Option<DataDirLock>>,
    background: TaskTracker,
}

/// A running node. Cheap to clone; every clone controls the same node.
#[derive(Clone)]
pub struct Node {
    pub(crate) shared: Arc<NodeShared>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

/// How long shutdown waits for the background tasks to end after the stop.
const BACKGROUND_STOP: Duration = Duration::from_secs(5);

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Internal(format!("blocking task failed: {e}")))
}

impl NodeBuilder {
    /// A builder for a node with this configuration and the built-in `system`
    /// agent.
    pub fn new(config: DawnConfig) -> Self {
        NodeBuilder {
            config,
            agents: Vec::new(),
            unlock: crate::security::KeyUnlock::default(),
        }
    }

    /// The passphrase of an encrypted node key (or of the key to create with
    /// `security.encryption_at_rest`), used before `DAWN_PASSPHRASE` and
    /// `security.passphrase_file`.
    pub fn passphrase(mut self, passphrase: dawn_security::Passphrase) -> Self {
        self.unlock = crate::security::KeyUnlock::with_passphrase(passphrase);
        self
    }

    /// Adds an agent.
    pub fn agent(mut self, agent: impl Agent) -> Self {
        self.agents.push(Arc::new(agent));
        self
    }

    /// Adds an agent that is already shared.
    pub fn agent_arc(mut self, agent: Arc<dyn Agent>) -> Self {
        self.agents.push(agent);
        self
    }

    /// Opens the data directory, loads (or creates) the identity, opens the
    /// database, starts the transport and the HTTP API, and returns the
    /// running node.
    pub async fn start(self) -> Result<Node, NodeError> {
        let config = self.config;
        let issues = config.validate();
        if !issues.is_empty() {
            return Err(crate::config::ConfigError::Invalid(issues).into());
        }
        let data_dir = DataDir::new(&config.node.data_root);
        let (lock, identity, status, store, security) = {
            let data_dir = data_dir.clone();
            let config = config.clone();
            let unlock = self.unlock;
            blocking(move || -> Result<_, NodeError> {
                data_dir.ensure()?;
                let lock = data_dir.lock()?;
                let store = Store::open(data_dir.database())?;
                let (security, identity, status) =
                    crate::security::NodeSecurity::open(&config, &data_dir, &store, unlock)?;
                Ok((lock, identity, status, store, security))
            })
            .await??
        };
        let peer_id = identity.peer_id();
        // Before the transport starts, so its first measurements are kept.
        let observe = crate::observe::NodeObservability::new(&config, &peer_id);
        match status {
            KeyFileStatus::Created => {
                tracing::info!(%peer_id, path = %data_dir.node_key().display(), "created a new node identity")
            }
            KeyFileStatus::Loaded => tracing::info!(%peer_id, "loaded node identity"),
        }
        let registry = {
            let (store, key, section) = (
                store.clone(),
                identity.keypair().clone(),
                config.registry.clone(),
            );
            blocking(move || crate::registry::Registry::open(&store, key, &section)).await??
        };
        let transport_config = TransportConfig {
            listen: config.node.listen.clone(),
            max_message_size: usize::try_from(config.transport.max_message_size.0)
                .unwrap_or(usize::MAX),
            idle_connection_timeout: config.transport.idle_connection_timeout.0,
            connect_timeout: config.transport.connect_timeout.0,
            enable_mdns: config.discovery.mdns,
            enable_kademlia: config.discovery.kademlia,
            kad_refresh_interval: config.discovery.kad_refresh_interval.0,
            low_watermark: config.transport.low_watermark,
            high_watermark: config.transport.high_watermark,
            ..TransportConfig::default()
        };
        let (transport, inbound_calls) =
            Transport::start(identity.keypair().clone(), transport_config).await?;
        let (events, _) = broadcast::channel(1024);
        let resilience = resilience::Resilience::new(&config.resilience, events.clone());
        let shared = Arc::new(NodeShared {
            running_config: tokio::sync::Mutex::new(config.clone()),
            config,
            identity,
            data_dir,
            store,
            transport,
            agents: AgentTable::default(),
            registry,
            subscriptions: Mutex::new(HashMap::new()),
            events,
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
            stop: CancellationToken::new(),
            calls: TaskTracker::new(),
            security,
            api_addr: Mutex::new(None),
            mounted: Default::default(),
            backup: Default::default(),
            observe,
            resilience,
            lock: Mutex::new(Some(lock)),
            background: TaskTracker::new(),
        });
        let node = Node { shared };
        node.add_agent_arc(Arc::new(SystemAgent {
            node: Arc::downgrade(&node.shared),
        }))?;
        if node.shared.config.mcp.conformance_agent {
            node.add_agent_arc(Arc::new(crate::conformance_agent::ConformanceAgent::new()))?;
        }
        for agent in self.agents {
            node.add_agent_arc(agent)?;
        }
        crate::mounted::register(&node)?;

        let shared = &node.shared;
        shared
            .security
            .attach_transport(shared.transport.clone())
            .await;
        shared
            .background
            .spawn(crate::security::admission::watch(node.shared.clone()));
        inbound::serve(node.shared.clone(), inbound_calls);
        shared
            .background
            .spawn(peering::watch_transport(node.shared.clone()));
        shared
            .background
            .spawn(peering::keep_connected(node.shared.clone()));
        let registry_events = crate::registry::prime(&node.shared);
        shared
            .background
            .spawn(crate::registry::run(node.shared.clone(), registry_events));
        shared
            .background
            .spawn(discovery::maintain_address_book(node.shared.clone()));
        crate::observe::start(&node)?;
        if shared.config.api.enabled {
            crate::http_api::serve(node.clone()).await?;
        }
        crate::mounted::start(&node);
        crate::backup::schedule::start(&node);
        tracing::info!(
            %peer_id,
            listen = ?node.listen_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
            api = ?node.api_addr(),
            "node started"
        );
        Ok(node)
    }
}

impl NodeShared {
    pub(crate) fn background_spawn(
        &self,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.background.spawn(task);
    }

    pub(crate) fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    pub(crate) fn emit(&self, event: NodeEvent) {
        let _ = self.events.send(event);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn local_agents(&self) -> Vec<AgentSummary> {
        self.local_descriptors()
            .iter()
            .map(AgentDescriptor::summary)
            .collect()
    }

    pub(crate) fn local_descriptors(&self) -> Vec<AgentDescriptor> {
        self.agents.all().iter().map(|e| e.descriptor()).collect()
    }

    pub(crate) fn dial_addrs(&self) -> Vec<Multiaddr> {
        let me = self.peer_id();
        self.transport
            .listen_addrs()
            .into_iter()
            .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(me)))
            .collect()
    }

    pub(crate) fn info_json(&self) -> Value {
        json!({
            "node_id": self.peer_id().to_string(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "listen_addrs": self.dial_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "agents": self.local_agents(),
        })
    }

    pub(crate) fn peers_json(&self) -> Value {
        json!({ "peers": self.transport.connected_peers().iter().map(peer_json).collect::<Vec<_>>() })
    }
}

fn millis_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn now_ms() -> u64 {
    millis_since_epoch(SystemTime::now())
}

pub(crate) fn peer_json(p: &PeerInfo) -> Value {
    json!({
        "peer_id": p.peer_id.to_string(),
        "addresses": p.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "direction": p.direction.as_str(),
        "transport": p.transport.as_str(),
        "connected_since_ms": millis_since_epoch(p.connected_since),
        "agent_version": p.agent_version,
        "rtt_ms": p.rtt.map(|d| d.as_secs_f64() * 1000.0),
    })
}

impl Node {
    /// This node's peer id (its public identity).
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id()
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &DawnConfig {
        &self.shared.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.shared.data_dir
    }

    /// The node's database.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Addresses the node listens on, without the `/p2p/` suffix.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.shared.transport.listen_addrs()
    }

    /// Addresses other nodes can dial, ending in `/p2p/<this peer id>`.
    pub fn dial_addrs(&self) -> Vec<Multiaddr> {
        self.shared.dial_addrs()
    }

    /// The HTTP API's bound address, if it is served.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        *self
            .shared
            .api_addr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// How long the node has been running.
    pub fn uptime(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Connected peers.
    pub fn connected_peers(&self) -> Vec<PeerInfo> {
        self.shared.transport.connected_peers()
    }

    /// Subscribes to node events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }

    /// Connects to a peer at `addr` and remembers the address. Returns its id.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        let peer = self.shared.transport.dial(addr.clone()).await?;
        peering::remember(&self.shared, peer, &addr, dawn_store::AddressSource::Manual).await;
        Ok(peer)
    }

    /// Local agents.
    pub fn agents(&self) -> Vec<AgentSummary> {
        self.shared.local_agents()
    }

    /// Agents of the other available nodes of the mesh, from the registry.
    pub fn remote_agents(&self) -> HashMap<PeerId, Vec<AgentSummary>> {
        self.remote_descriptors()
            .into_iter()
            .map(|(peer, agents)| (peer, agents.iter().map(AgentDescriptor::summary).collect()))
            .collect()
    }

    /// Full descriptions of the agents of the other available nodes of the
    /// mesh, from the registry.
    pub fn remote_descriptors(&self) -> HashMap<PeerId, Vec<AgentDescriptor>> {
        self.shared.registry.available_remote()
    }

    /// The mesh registry: every known node (this one first) with its
    /// agents, version, availability and whether it is confirmed.
    pub fn registry(&self) -> Vec<crate::registry::RegistryEntry> {
        self.shared.registry.entries()
    }

    /// Registry counters: accepted and rejected announcements.
    pub fn registry_stats(&self) -> crate::registry::RegistryStats {
        self.shared.registry.stats()
    }

    /// Bytes received and sent on all peer-to-peer connections since the
    /// node started, `(inbound, outbound)`.
    pub fn network_bytes(&self) -> (u64, u64) {
        self.shared.transport.network_bytes()
    }

    /// Gossipsub's score of a connected peer: it drops below zero when the
    /// peer sends gossip this node rejects (forged or malformed registry
    /// announcements), and gossip from a peer far below zero is ignored.
    pub async fn gossip_score(&self, peer: &PeerId) -> Option<f64> {
        self.shared
            .transport
            .gossip_peer_score(*peer)
            .await
            .ok()
            .flatten()
    }

    /// Full descriptions of the local agents.
    pub fn local_descriptors(&self) -> Vec<AgentDescriptor> {
        self.shared.local_descriptors()
    }

    /// Watches a resource of any agent (local or remote) until `cancel`
    /// fires, delivering `notifications/resources/updated` to `upstream`.
    pub async fn watch_resource(
        &self,
        address: &AgentAddress,
        uri: &str,
        upstream: Arc<dyn Upstream>,
        cancel: CancellationToken,
    ) -> Result<(), CallError> {
        resources::watch(
            &self.shared,
            address,
            uri,
            crate::agent::Caller::Api,
            upstream,
            cancel,
        )
        .await
    }

    /// The status of every mounted MCP server (`mcp.servers`), in
    /// configuration order.
    pub fn mounted_servers(&self) -> Vec<crate::mounted::MountedServerStatus> {
        self.shared.mounted.statuses()
    }

    /// Watches the status of the mounted MCP server `id`.
    pub fn watch_mounted_server(
        &self,
        id: &str,
    ) -> Option<tokio::sync::watch::Receiver<crate::mounted::MountedServerStatus>> {
        self.shared.mounted.watch(id)
    }

    /// Adds an agent to the running node.
    pub fn add_agent(&self, agent: impl Agent) -> Result<(), NodeError> {
        self.add_agent_arc(Arc::new(agent))
    }

    /// Adds a shared agent to the running node.
    pub fn add_agent_arc(&self, agent: Arc<dyn Agent>) -> Result<(), NodeError> {
        let id = AgentId::new(agent.id())?;
        let entry = AgentEntry::new(id.clone(), agent.clone());
        let store = self.shared.store.agent_store(id.as_str())?;
        if !self.shared.agents.insert(entry.clone()) {
            return Err(NodeError::DuplicateAgent(id.to_string()));
        }
        let weak = Arc::downgrade(&self.shared);
        let weak_entry = Arc::downgrade(&entry);
        let weak_updated = Arc::downgrade(&self.shared);
        let agent_id = id.to_string();
        agent.attach(AgentHandle {
            notify: Arc::new(move || {
                if let (Some(shared), Some(entry)) = (weak.upgrade(), weak_entry.upgrade()) {
                    entry.refresh_tools();
                    shared.emit(NodeEvent::AgentChanged(entry.id.to_string()));
                }
            }),
            updated: Arc::new(move |uri: &str| {
                if let Some(shared) = weak_updated.upgrade() {
                    shared.emit(NodeEvent::ResourceUpdated {
                        agent: agent_id.clone(),
                        uri: uri.to_owned(),
                    });
                }
            }),
            store,
        });
        tracing::info!(agent = %id, "agent added");
        self.shared.emit(NodeEvent::AgentAdded(id.to_string()));
        Ok(())
    }

    /// Removes a local agent. Returns whether it existed.
    pub fn remove_agent(&self, id: &str) -> bool {
        let removed = self.shared.agents.remove(id).is_some();
        if removed {
            tracing::info!(agent = %id, "agent removed");
            self.shared.emit(NodeEvent::AgentRemoved(id.to_owned()));
        }
        removed
    }

    /// Calls a tool on any agent, local or remote.
    pub async fn call_tool(
        &self,
        address: &AgentAddress,
        tool: &str,
        arguments: Value,
    ) -> Result<CallToolResult, CallError> {
        let arguments = match arguments {
            Value::Null => Value::Object(JsonObject::new()),
            other => other,
        };
        let request = Request::new(
            1,
            "tools/call",
            Some(json!({ "name": tool, "arguments": arguments })),
        );
        let value = self
            .request(address, request, CallOptions::default())
            .await?;
        serde_json::from_value(value).map_err(|e| {
            CallError::new(
                dawn_resilience::ErrorKind::ProtocolViolation,
                format!("the agent returned a malformed tool result: {e}"),
            )
        })
    }

    /// Sends a JSON-RPC request (any MCP method) to an agent, local or remote,
    /// and returns its result.
    pub async fn request(
        &self,
        address: &AgentAddress,
        request: Request,
        options: CallOptions,
    ) -> Result<Value, CallError> {
        match self.send(address, request, options).await {
            Some(response) => response.into_result(),
            None => Ok(Value::Null),
        }
    }

    /// Sends a JSON-RPC message to an agent and returns the full response
    /// (with the caller's id), or `None` for notifications.
    pub async fn send(
        &self,
        address: &AgentAddress,
        request: Request,
        options: CallOptions,
    ) -> Option<crate::jsonrpc::Response> {
        outbound::send(&self.shared, address, request, options).await
    }

    /// Like [`Node::send`] with an upstream that receives the agent's
    /// notifications and answers its requests.
    pub async fn send_with_upstream(
        &self,
        address: &AgentAddress,
        request: Request,
        mut options: CallOptions,
        upstream: Arc<dyn Upstream>,
    ) -> Option<crate::jsonrpc::Response> {
        options.upstream = Some(upstream);
        outbound::send(&self.shared, address, request, options).await
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// Resolves when shutdown has begun (from any handle).
    pub async fn stopped(&self) {
        self.shared.stop.cancelled().await
    }

    /// Graceful shutdown: refuse new calls, wait up to
    /// `node.shutdown_grace` for calls in flight, close every connection,
    /// wait for a backup being written (a new one is refused), stop the API
    /// and release the data directory. The database closes when the last
    /// handle is dropped.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        if shared.shutting_down.swap(true, Ordering::AcqRel) {
            shared.background.wait().await;
            return;
        }
        tracing::info!("shutting down");
        shared.emit(NodeEvent::ShuttingDown);
        crate::registry::leave(shared).await;
        shared.calls.close();
        let grace = shared.config.node.shutdown_grace.0;
        if tokio::time::timeout(grace, shared.calls.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = shared.calls.len(),
                ?grace,
                "calls still running after the shutdown grace period; abandoning them"
            );
        }
        shared.stop.cancel();
        // Writes the responses the last calls queued, then disconnects.
        shared.transport.shutdown().await;
        // A backup being written (scheduled or from the API) holds the database and the node
        // until it ends: the bounded wait below would give up on it and return with the
        // database still open, so a node restarted on this directory could not open it.
        let backups = shared.backup.finish_and_refuse_new().await;
        shared.background.close();
        if tokio::time::timeout(BACKGROUND_STOP, shared.background.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = shared.background.len(),
                "background tasks still running {BACKGROUND_STOP:?} after the stop; \
                 the database stays open until they end"
            );
        }
        shared.security.close().await;
        shared.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(backups);
        tracing::info!("node stopped");
    }
}
