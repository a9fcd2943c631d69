//! The libp2p swarm, its behaviours and the task that drives it.
//!
//! # Message size limits per protocol
//!
//! | protocol | limit | where |
//! |----------|-------|-------|
//! | Dawn RPC `/dawn/rpc/1.0.0` | [`TransportConfig::max_message_size`] per frame body (default 4 MiB) | our codec |
//! | gossipsub `/dawn/meshsub/1.1.0` | [`TransportConfig::gossip_max_message_size`] per RPC (default 1 MiB) | libp2p |
//! | Kademlia `/dawn/kad/1.0.0` | 16 KiB per message ([`KAD_MAX_PACKET_SIZE`]) | libp2p |
//! | identify `/dawn/id/1.0.0` | 4 KiB per message (libp2p constant) | libp2p |
//! | ping `/ipfs/ping/1.0.0` | 32-byte payloads | libp2p |
//! | mDNS | one UDP datagram | libp2p |
//!
//! Kademlia records and provider records sent by peers are never stored
//! (record filtering is on and nothing accepts them): the DHT is used for
//! peer routing only.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, allow_block_list,
    connection_limits::{self, ConnectionLimits},
    core::{ConnectedPoint, Transport as _, transport::MemoryTransport, upgrade::Version},
    gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, TopicHash},
    identify, identity, kad, mdns, memory_connection_limits,
    metrics::{Metrics, Recorder as _},
    noise, ping,
    swarm::{
        ConnectionId, NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle, dial_opts::DialOpts,
        dial_opts::PeerCondition,
    },
    tcp, yamux,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    config::TransportConfig,
    error::{PublishError, RpcError, TransportError},
    event::{Direction, DiscoverySource, GossipValidation, TransportEvent},
    gossip,
    limits::{PeerActivity, PruneCandidate, select_prunable},
    peers::{ConnInfo, SharedPeers, read, strip_p2p, write},
    rpc::PROTOCOL,
    telemetry::{self, Libp2pRegistries, SharedRegistries},
};

/// The protocol version announced through identify.
pub const IDENTIFY_PROTOCOL: &str = "/dawn/id/1.0.0";
/// The Kademlia protocol name: Dawn nodes form their own DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/dawn/kad/1.0.0");
/// Largest Kademlia message accepted or sent.
pub const KAD_MAX_PACKET_SIZE: usize = 16 * 1024;
/// How often the byte counters are copied to `dawn_network_bytes_total`.
const BANDWIDTH_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Peers remembered as already reported by Kademlia random walks.
const MAX_REPORTED: usize = 8192;
/// Addresses remembered per reported peer.
const MAX_REPORTED_ADDRS: usize = 16;

/// The behaviours every Dawn node runs. The refusing behaviours come first
/// so a denied connection is turned away before the others set up state.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    memory: Toggle<memory_connection_limits::Behaviour>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    gossipsub: gossipsub::Behaviour,
}

impl Behaviour {
    pub(crate) fn stream_control(&self) -> libp2p_stream::Control {
        self.stream.new_control()
    }

    fn new(key: &identity::Keypair, config: &TransportConfig) -> Result<Self, TransportError> {
        let local = key.public().to_peer_id();

        let limits = ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            .with_max_established_per_peer(Some(config.max_connections_per_peer))
            .with_max_pending_incoming(Some(config.max_pending_incoming))
            .with_max_pending_outgoing(Some(config.max_pending_outgoing));
        let memory = match (config.max_memory_bytes, config.max_memory_fraction) {
            (Some(bytes), _) => Some(memory_connection_limits::Behaviour::with_max_bytes(bytes)),
            (None, Some(fraction)) => Some(
                memory_connection_limits::Behaviour::with_max_percentage(fraction),
            ),
            (None, None) => None,
        };

        let kad = config.enable_kademlia.then(|| {
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config
                .set_periodic_bootstrap_interval(Some(config.kad_refresh_interval))
                .set_record_filtering(kad::StoreInserts::FilterBoth)
                .set_max_packet_size(KAD_MAX_PACKET_SIZE)
                .set_query_timeout(Duration::from_secs(30));
            let mut kad =
                kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), kad_config);
            // Every Dawn node answers DHT queries, whether or not it knows an
            // external address (libp2p's automatic mode would stay a client).
            kad.set_mode(Some(kad::Mode::Server));
            kad
        });

        let mdns = if config.enable_mdns {
            let mdns_config = mdns::Config {
                query_interval: config.mdns_query_interval,
                ..mdns::Config::default()
            };
            match mdns::tokio::Behaviour::new(mdns_config, local) {
                Ok(m) => Some(m),
                Err(error) => {
                    tracing::warn!(%error, "mDNS is unavailable; continuing without local discovery");
                    None
                }
            }
        } else {
            None
        };

        Ok(Behaviour {
            blocked: allow_block_list::Behaviour::default(),
            limits: connection_limits::Behaviour::new(limits),
            memory: Toggle::from(memory),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                    .with_agent_version(config.agent_version.clone())
                    .with_interval(config.identify_interval)
                    .with_push_listen_addr_updates(true)
                    .with_cache_size(64),
            ),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(config.ping_interval)),
            stream: libp2p_stream::Behaviour::new(),
            kad: Toggle::from(kad),
            mdns: Toggle::from(mdns),
            gossipsub: gossip::behaviour(key, config)?,
        })
    }
}

/// Builds the swarm; byte counters go to `registries.bandwidth`, and the
/// returned recorder writes behaviour metrics to `registries.main`.
pub(crate) fn build_swarm(
    keypair: identity::Keypair,
    config: &TransportConfig,
    registries: &mut Libp2pRegistries,
) -> Result<(Swarm<Behaviour>, Metrics), TransportError> {
    let build = |e: &dyn std::fmt::Display| TransportError::Build(e.to_string());
    let behaviour = Behaviour::new(&keypair, config)?;
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| build(&e))?
        .with_quic()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            Ok(MemoryTransport::default()
                .upgrade(Version::V1)
                .authenticate(noise)
                .multiplex(yamux::Config::default()))
        })
        .map_err(|e| build(&e))?
        .with_dns()
        .map_err(|e| build(&e))?
        .with_bandwidth_metrics(&mut registries.bandwidth)
        .with_behaviour(|_| behaviour)
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();
    let metrics = Metrics::new(&mut registries.main);
    Ok((swarm, metrics))
}

/// Requests to the swarm task.
pub(crate) enum Command {
    DialAddr {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, TransportError>>,
    },
    DialPeer {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<PeerId, TransportError>>,
    },
    Disconnect {
        peer: PeerId,
    },
    Ban {
        peer: PeerId,
    },
    Unban {
        peer: PeerId,
    },
    Protect {
        peer: PeerId,
        protect: bool,
    },
    KadBootstrap {
        reply: oneshot::Sender<Result<(), TransportError>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<bool, TransportError>>,
    },
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<bool>,
    },
    Publish {
        topic: String,
        data: Bytes,
        reply: oneshot::Sender<Result<(), PublishError>>,
    },
    ReportValidation {
        id: MessageId,
        propagation_source: PeerId,
        result: GossipValidation,
    },
    MeshPeers {
        topic: String,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    PeerScore {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Makes sure a connection to a peer exists, dialing known addresses if not.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) peers: SharedPeers,
    pub(crate) commands: mpsc::Sender<Command>,
}

impl Connector {
    pub(crate) async fn ensure_connected(
        &self,
        peer: PeerId,
        timeout: Duration,
    ) -> Result<(), RpcError> {
        let addrs = {
            let table = read(&self.peers);
            if table.is_connected(&peer) {
                return Ok(());
            }
            table.known_addrs(&peer)
        };
        if addrs.is_empty() {
            return Err(RpcError::NoAddress(peer));
        }
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::DialPeer { peer, addrs, reply })
            .await
            .map_err(|_| RpcError::Shutdown)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(e))) => Err(RpcError::Unreachable {
                peer,
                reason: e.to_string(),
            }),
            Ok(Err(_)) => Err(RpcError::Shutdown),
            Err(_) => Err(RpcError::ConnectTimeout {
                peer,
                after: timeout,
            }),
        }
    }
}

type DialReply = oneshot::Sender<Result<PeerId, TransportError>>;

/// Connection-manager settings the task needs.
struct Watermarks {
    low: usize,
    high: usize,
    window: Duration,
}

/// State owned by the swarm task.
pub(crate) struct SwarmTask {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    peers: SharedPeers,
    events: broadcast::Sender<TransportEvent>,
    conn_waiters: HashMap<ConnectionId, (String, DialReply)>,
    peer_waiters: HashMap<PeerId, Vec<DialReply>>,
    metrics: Metrics,
    registries: SharedRegistries,
    activity: std::sync::Arc<PeerActivity>,
    watermarks: Watermarks,
    /// Peers being disconnected by the connection manager.
    pruning: HashSet<PeerId>,
    kad_refresh_interval: Duration,
    prune_interval: Duration,
    gossip_max_message_size: usize,
    /// Whether a Kademlia bootstrap ran since the routing table was last
    /// empty of connected peers.
    kad_bootstrapped: bool,
    /// Addresses already reported per peer by Kademlia (random walks find
    /// the same peers again and again; only news is reported).
    kad_reported: HashMap<PeerId, HashSet<Multiaddr>>,
}

/// What [`SwarmTask::new`] needs besides the swarm.
pub(crate) struct SwarmTaskParts {
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) peers: SharedPeers,
    pub(crate) events: broadcast::Sender<TransportEvent>,
    pub(crate) metrics: Metrics,
    pub(crate) registries: SharedRegistries,
    pub(crate) activity: std::sync::Arc<PeerActivity>,
    /// Events the swarm produced while [`crate::Transport::start`] waited
    /// for its listeners (an mDNS answer, an early inbound connection):
    /// handled first, so none is lost.
    pub(crate) early_events: Vec<SwarmEvent<BehaviourEvent>>,
}

impl SwarmTask {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        parts: SwarmTaskParts,
        config: &TransportConfig,
    ) -> Self {
        let mut task = SwarmTask {
            swarm,
            commands: parts.commands,
            peers: parts.peers,
            events: parts.events,
            conn_waiters: HashMap::new(),
            peer_waiters: HashMap::new(),
            metrics: parts.metrics,
            registries: parts.registries,
            activity: parts.activity,
            watermarks: Watermarks {
                low: config.low_watermark,
                high: config.high_watermark,
                window: config.prune_activity_window,
            },
            pruning: HashSet::new(),
            kad_refresh_interval: config.kad_refresh_interval,
            prune_interval: config.prune_interval,
            gossip_max_message_size: config.gossip_max_message_size,
            kad_bootstrapped: false,
            kad_reported: HashMap::new(),
        };
        for event in parts.early_events {
            task.on_event(event);
        }
        task
    }

    pub(crate) async fn run(mut self) {
        let ticker = |period: Duration| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        };
        let mut kad_tick = ticker(self.kad_refresh_interval);
        let mut prune_tick = ticker(self.prune_interval);
        let mut bandwidth_tick = ticker(BANDWIDTH_SYNC_INTERVAL);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = kad_tick.tick() => self.random_walk(),
                _ = prune_tick.tick() => self.prune_if_needed(),
                _ = bandwidth_tick.tick() => telemetry::record_bandwidth(&self.registries),
            }
        }
    }

    async fn shutdown(&mut self) {
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        // Let the connection tasks send their close frames (bounded).
        let drain = async {
            while self.swarm.connected_peers().next().is_some() {
                let event = self.swarm.select_next_some().await;
                self.on_event(event);
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        telemetry::record_bandwidth(&self.registries);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::DialAddr { addr, reply } => {
                let opts = DialOpts::from(addr.clone());
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.conn_waiters.insert(id, (addr.to_string(), reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(TransportError::Dial {
                            target: addr.to_string(),
                            reason: error_chain(&e),
                        }));
                    }
                }
            }
            Command::DialPeer { peer, addrs, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                let opts = DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                match self.swarm.dial(opts) {
                    Ok(()) => self.peer_waiters.entry(peer).or_default().push(reply),
                    Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {
                        self.peer_waiters.entry(peer).or_default().push(reply)
                    }
                    Err(e) => {
                        let _ = reply.send(Err(TransportError::Dial {
                            target: peer.to_string(),
                            reason: error_chain(&e),
                        }));
                    }
                }
            }
            Command::Disconnect { peer } => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Ban { peer } => {
                let behaviour = self.swarm.behaviour_mut();
                // Closes every connection to the peer and refuses new ones.
                behaviour.blocked.block_peer(peer);
                // Do not route others to it, and drop gossip it authored.
                if let Some(kad) = behaviour.kad.as_mut() {
                    kad.remove_peer(&peer);
                }
                behaviour.gossipsub.blacklist_peer(&peer);
                self.kad_reported.remove(&peer);
                tracing::info!(%peer, "peer banned");
            }
            Command::Unban { peer } => {
                let behaviour = self.swarm.behaviour_mut();
                behaviour.blocked.unblock_peer(peer);
                behaviour.gossipsub.remove_blacklisted_peer(&peer);
                tracing::info!(%peer, "peer unbanned");
            }
            Command::Protect { peer, protect } => {
                let limits = &mut self.swarm.behaviour_mut().limits;
                if protect {
                    limits.bypass_peer_id(&peer);
                } else {
                    limits.remove_peer_id(&peer);
                }
            }
            Command::KadBootstrap { reply } => {
                let result = match self.swarm.behaviour_mut().kad.as_mut() {
                    Some(kad) => kad
                        .bootstrap()
                        .map(|_| ())
                        .map_err(|_| TransportError::Dial {
                            target: "kademlia".into(),
                            reason: "no known peer to bootstrap from".into(),
                        }),
                    None => Err(TransportError::Config("kademlia is disabled".into())),
                };
                let _ = reply.send(result);
            }
            Command::Subscribe { topic, reply } => {
                let topic = IdentTopic::new(topic);
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                let result = match gossipsub.subscribe(&topic) {
                    Ok(new) => {
                        if new
                            && let Err(error) = gossipsub
                                .set_topic_params(topic.clone(), gossip::topic_score_params())
                        {
                            tracing::warn!(%error, "gossip scoring not applied to topic");
                        }
                        Ok(new)
                    }
                    Err(e) => Err(TransportError::Gossip(format!(
                        "cannot subscribe to {topic}: {e:?}"
                    ))),
                };
                let _ = reply.send(result);
            }
            Command::Unsubscribe { topic, reply } => {
                let topic = IdentTopic::new(topic);
                let _ = reply.send(self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic));
            }
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::ReportValidation {
                id,
                propagation_source,
                result,
            } => {
                let acceptance = match result {
                    GossipValidation::Accept => MessageAcceptance::Accept,
                    GossipValidation::Reject => MessageAcceptance::Reject,
                    GossipValidation::Ignore => MessageAcceptance::Ignore,
                };
                let found = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &propagation_source, acceptance);
                if !found {
                    tracing::debug!(message = %id, "validated gossip message was no longer cached");
                }
            }
            Command::MeshPeers { topic, reply } => {
                let hash = TopicHash::from_raw(topic);
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .mesh_peers(&hash)
                    .copied()
                    .collect();
                let _ = reply.send(peers);
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn publish(&mut self, topic: String, data: Bytes) -> Result<(), PublishError> {
        let max = self.gossip_max_message_size;
        let len = data.len();
        let result = if len > max {
            Err(PublishError::TooLarge { len, max })
        } else {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .publish(IdentTopic::new(topic.clone()), data.to_vec())
                .map(|_| ())
                .map_err(|e| gossip::publish_error(e, &topic, len, max))
        };
        let status = match &result {
            Ok(()) => "ok",
            Err(PublishError::NoPeers(_)) => "no_peers",
            Err(_) => "error",
        };
        metrics::counter!("dawn_gossip_published_total", "status" => status).increment(1);
        result
    }

    pub(crate) fn emit(&self, event: TransportEvent) {
        let _ = self.events.send(event);
    }

    fn record_connected_peers(&self) {
        telemetry::record_connected_peers(read(&self.peers).counts_by_transport());
    }

    /// Disconnects the least useful peers when there are more than the high
    /// watermark (see [`select_prunable`]).
    fn prune_if_needed(&mut self) {
        let (peers, protected) = {
            let table = read(&self.peers);
            let peers: Vec<(PeerId, Instant)> = table
                .connected
                .iter()
                .filter(|(peer, _)| !self.pruning.contains(peer))
                .map(|(peer, state)| (*peer, state.established))
                .collect();
            if peers.len() <= self.watermarks.high {
                return;
            }
            (peers, table.protected.clone())
        };
        let candidates: Vec<PruneCandidate> = peers
            .into_iter()
            .map(|(peer, connected_at)| PruneCandidate {
                peer,
                connected_at,
                last_rpc: self.activity.last(&peer),
            })
            .collect();
        let chosen = select_prunable(
            &candidates,
            &protected,
            self.watermarks.low,
            self.watermarks.high,
            self.watermarks.window,
            Instant::now(),
        );
        tracing::info!(
            connected = candidates.len(),
            high = self.watermarks.high,
            low = self.watermarks.low,
            pruning = chosen.len(),
            "too many peers; pruning the least useful connections"
        );
        for peer in chosen {
            tracing::debug!(%peer, "pruning peer");
            metrics::counter!("dawn_peers_pruned_total").increment(1);
            self.pruning.insert(peer);
            self.emit(TransportEvent::PeerPruned { peer });
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                write(&self.peers).listen_addrs.push(address.clone());
                self.emit(TransportEvent::Listening { addr: address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                write(&self.peers).listen_addrs.retain(|a| *a != address);
                self.emit(TransportEvent::ListenAddrExpired { addr: address });
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => self.on_connection_established(
                peer_id,
                connection_id,
                &endpoint,
                num_established.get(),
            ),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                let now_empty = {
                    let mut table = write(&self.peers);
                    if let Some(state) = table.connected.get_mut(&peer_id) {
                        state.connections.retain(|(id, _)| *id != connection_id);
                        if state.connections.is_empty() {
                            table.connected.remove(&peer_id);
                        }
                    }
                    table.connected.is_empty()
                };
                if num_established == 0 {
                    self.pruning.remove(&peer_id);
                    self.activity.forget(&peer_id);
                    self.record_connected_peers();
                    if now_empty {
                        // Isolated: bootstrap again when a peer comes back.
                        self.kad_bootstrapped = false;
                    }
                    let cause = cause.map(|c| c.to_string());
                    tracing::info!(peer = %peer_id, cause = cause.as_deref().unwrap_or("closed"), "peer disconnected");
                    self.emit(TransportEvent::PeerDisconnected {
                        peer: peer_id,
                        cause,
                    });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let reason = error_chain(&error);
                metrics::counter!("dawn_connections_total", "direction" => "outbound", "status" => "failed").increment(1);
                tracing::debug!(peer = ?peer_id, %reason, "dial failed");
                if let Some((target, reply)) = self.conn_waiters.remove(&connection_id) {
                    let _ = reply.send(Err(TransportError::Dial {
                        target,
                        reason: reason.clone(),
                    }));
                }
                if let Some(peer) = peer_id
                    && !self.swarm.is_connected(&peer)
                {
                    for reply in self.peer_waiters.remove(&peer).unwrap_or_default() {
                        let _ = reply.send(Err(TransportError::Dial {
                            target: peer.to_string(),
                            reason: reason.clone(),
                        }));
                    }
                }
                self.emit(TransportEvent::DialFailed {
                    peer: peer_id,
                    error: reason,
                });
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                metrics::counter!("dawn_connections_total", "direction" => "inbound", "status" => "failed").increment(1);
                let error = error_chain(&error);
                tracing::debug!(addr = %send_back_addr, %error, "inbound connection failed");
                self.emit(TransportEvent::InboundFailed {
                    addr: send_back_addr,
                    error,
                });
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_connection_established(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: &ConnectedPoint,
        num_established: u32,
    ) {
        let (addr, direction) = match endpoint {
            ConnectedPoint::Dialer { address, .. } => (address.clone(), Direction::Outbound),
            ConnectedPoint::Listener { send_back_addr, .. } => {
                (send_back_addr.clone(), Direction::Inbound)
            }
        };
        {
            let mut table = write(&self.peers);
            if direction == Direction::Outbound {
                table.add_known_addrs(peer_id, [addr.clone()]);
            }
            table
                .connected
                .entry(peer_id)
                .or_default()
                .connections
                .push((
                    connection_id,
                    ConnInfo {
                        addr: addr.clone(),
                        direction,
                        since: SystemTime::now(),
                    },
                ));
        }
        metrics::counter!("dawn_connections_total", "direction" => direction.as_str(), "status" => "established").increment(1);
        if let Some((_, reply)) = self.conn_waiters.remove(&connection_id) {
            let _ = reply.send(Ok(peer_id));
        }
        for reply in self.peer_waiters.remove(&peer_id).unwrap_or_default() {
            let _ = reply.send(Ok(peer_id));
        }
        if num_established == 1 {
            tracing::info!(peer = %peer_id, %addr, direction = direction.as_str(), "peer connected");
            self.record_connected_peers();
            self.emit(TransportEvent::PeerConnected {
                peer: peer_id,
                addr,
                direction,
            });
            self.prune_if_needed();
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(event) => {
                self.metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    self.on_identified(peer_id, info);
                }
            }
            BehaviourEvent::Ping(event) => {
                self.metrics.record(&event);
                if let Ok(rtt) = event.result
                    && let Some(state) = write(&self.peers).connected.get_mut(&event.peer)
                {
                    state.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Kad(event) => {
                self.metrics.record(&event);
                self.on_kad_event(event);
            }
            BehaviourEvent::Mdns(event) => self.on_mdns_event(event),
            BehaviourEvent::Gossipsub(event) => {
                self.metrics.record(&event);
                self.on_gossip_event(event);
            }
            BehaviourEvent::Blocked(never)
            | BehaviourEvent::Limits(never)
            | BehaviourEvent::Memory(never) => match never {},
            BehaviourEvent::Stream(()) => {}
        }
    }

    fn on_identified(&mut self, peer_id: PeerId, info: identify::Info) {
        let supports_rpc = info.protocols.contains(&PROTOCOL);
        let supports_kad = info.protocols.contains(&KAD_PROTOCOL);
        {
            let mut table = write(&self.peers);
            table.add_known_addrs(peer_id, info.listen_addrs.iter().cloned());
            if let Some(state) = table.connected.get_mut(&peer_id) {
                state.agent_version = Some(info.agent_version.clone());
                state.listen_addrs = info.listen_addrs.clone();
            }
        }
        // Kademlia only learns a remote's address by dialing it; for inbound
        // connections the identify listen addresses are the routable ones.
        if supports_kad && let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            for addr in info.listen_addrs.iter().filter(|a| is_routable(a)) {
                kad.add_address(&peer_id, addr.clone());
            }
        }
        self.emit(TransportEvent::PeerIdentified {
            peer: peer_id,
            listen_addrs: info.listen_addrs,
            agent_version: info.agent_version,
            supports_rpc,
        });
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer,
                addresses,
                old_peer,
                ..
            } => {
                if let Some(old) = old_peer {
                    self.kad_reported.remove(&old);
                }
                if !self.kad_bootstrapped {
                    // The first peer is in the routing table: join the DHT.
                    self.kad_bootstrapped = true;
                    if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut()
                        && let Err(error) = kad.bootstrap()
                    {
                        tracing::debug!(?error, "kademlia bootstrap not started");
                    }
                }
                if is_new_peer {
                    self.report_discovered(
                        peer,
                        addresses.into_vec(),
                        DiscoverySource::Kademlia,
                        true,
                    );
                }
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(result),
                ..
            } => {
                let found = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                for info in found {
                    self.report_discovered(
                        info.peer_id,
                        info.addrs,
                        DiscoverySource::Kademlia,
                        false,
                    );
                }
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::Bootstrap(Err(error)),
                ..
            } => {
                tracing::debug!(%error, "kademlia bootstrap step failed");
            }
            _ => {}
        }
    }

    /// A random walk: look up the peers closest to a random id, which
    /// reaches (and reports) parts of the DHT the routing table lacks.
    fn random_walk(&mut self) {
        if self.swarm.connected_peers().next().is_none() {
            return;
        }
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            kad.get_closest_peers(PeerId::random());
        }
    }

    fn on_mdns_event(&mut self, event: mdns::Event) {
        let (list, discovered) = match event {
            mdns::Event::Discovered(list) => (list, true),
            mdns::Event::Expired(list) => (list, false),
        };
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, addr) in list {
            by_peer.entry(peer).or_default().push(addr);
        }
        for (peer, addrs) in by_peer {
            if discovered {
                self.report_discovered(peer, addrs, DiscoverySource::Mdns, true);
            } else {
                tracing::debug!(%peer, "mDNS record expired");
                self.emit(TransportEvent::PeerExpired {
                    peer,
                    addrs,
                    source: DiscoverySource::Mdns,
                });
            }
        }
    }

    /// Remembers and reports a discovered peer. Kademlia walk results
    /// (`always` false) are reported only when they bring a peer or an
    /// address not reported before.
    fn report_discovered(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        source: DiscoverySource,
        always: bool,
    ) {
        if peer == *self.swarm.local_peer_id() || addrs.is_empty() {
            return;
        }
        let addrs: Vec<Multiaddr> = addrs.into_iter().map(strip_p2p).collect();
        if read(&self.peers).banned.contains(&peer) {
            return;
        }
        if source == DiscoverySource::Kademlia {
            if self.kad_reported.len() >= MAX_REPORTED && !self.kad_reported.contains_key(&peer) {
                self.kad_reported.clear();
            }
            let known = self.kad_reported.entry(peer).or_default();
            let mut news = false;
            for addr in &addrs {
                if known.len() < MAX_REPORTED_ADDRS && known.insert(addr.clone()) {
                    news = true;
                }
            }
            if !news && !always {
                return;
            }
        }
        write(&self.peers).add_known_addrs(peer, addrs.iter().cloned());
        metrics::counter!("dawn_peers_discovered_total", "source" => source.as_str()).increment(1);
        tracing::debug!(%peer, source = source.as_str(), "peer discovered");
        self.emit(TransportEvent::PeerDiscovered {
            peer,
            addrs,
            source,
        });
    }

    fn on_gossip_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                self.emit(TransportEvent::GossipMessage {
                    id: message_id,
                    source: message.source,
                    propagation_source,
                    topic: message.topic.into_string(),
                    data: Bytes::from(message.data),
                });
            }
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                self.emit(TransportEvent::GossipSubscribed {
                    peer: peer_id,
                    topic: topic.into_string(),
                });
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                self.emit(TransportEvent::GossipUnsubscribed {
                    peer: peer_id,
                    topic: topic.into_string(),
                });
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                tracing::debug!(peer = %peer_id, ?failed_messages, "gossip peer is slow");
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                tracing::trace!(peer = %peer_id, "peer does not speak gossipsub");
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
}

/// An error and its sources, e.g. "Dial error: connection denied: peer … is
/// in the block list" (libp2p's top-level messages alone say little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Addresses worth putting in the DHT (relayed addresses are not).
fn is_routable(addr: &Multiaddr) -> bool {
    !addr
        .iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
}
