//! The libp2p swarm, its behaviours and the task that drives it.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder,
    core::{ConnectedPoint, Transport as _, transport::MemoryTransport, upgrade::Version},
    identify, identity, noise, ping,
    swarm::{
        ConnectionId, NetworkBehaviour, SwarmEvent, dial_opts::DialOpts, dial_opts::PeerCondition,
    },
    tcp, yamux,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    config::TransportConfig,
    error::{RpcError, TransportError},
    event::{Direction, PeerInfo, TransportEvent, TransportKind},
    rpc::PROTOCOL,
};

/// The protocol version announced through identify.
pub const IDENTIFY_PROTOCOL: &str = "/dawn/id/1.0.0";

/// The behaviours every Dawn node runs.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

impl Behaviour {
    pub(crate) fn stream_control(&self) -> libp2p_stream::Control {
        self.stream.new_control()
    }
}

pub(crate) fn build_swarm(
    keypair: identity::Keypair,
    config: &TransportConfig,
) -> Result<Swarm<Behaviour>, TransportError> {
    let build = |e: &dyn std::fmt::Display| TransportError::Build(e.to_string());
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
        .with_behaviour(|key| Behaviour {
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                    .with_agent_version(config.agent_version.clone())
                    .with_interval(config.identify_interval)
                    .with_push_listen_addr_updates(true)
                    .with_cache_size(64),
            ),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(config.ping_interval)),
            stream: libp2p_stream::Behaviour::new(),
        })
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();
    Ok(swarm)
}

/// Who is connected, and where peers can be reached. Shared between the swarm
/// task (writer) and every handle (readers).
#[derive(Default)]
pub(crate) struct PeerTable {
    connected: HashMap<PeerId, PeerState>,
    known_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    listen_addrs: Vec<Multiaddr>,
}

/// Addresses remembered per peer for redialing.
const MAX_KNOWN_ADDRS: usize = 16;

struct ConnInfo {
    addr: Multiaddr,
    direction: Direction,
    since: SystemTime,
}

#[derive(Default)]
struct PeerState {
    connections: Vec<(ConnectionId, ConnInfo)>,
    agent_version: Option<String>,
    rtt: Option<Duration>,
    listen_addrs: Vec<Multiaddr>,
}

impl PeerTable {
    pub(crate) fn is_connected(&self, peer: &PeerId) -> bool {
        self.connected.contains_key(peer)
    }

    pub(crate) fn peers(&self) -> Vec<PeerInfo> {
        let mut out: Vec<PeerInfo> = self
            .connected
            .iter()
            .filter_map(|(peer, state)| {
                let (_, first) = state.connections.first()?;
                Some(PeerInfo {
                    peer_id: *peer,
                    addresses: state
                        .connections
                        .iter()
                        .map(|(_, c)| c.addr.clone())
                        .collect(),
                    direction: first.direction,
                    transport: TransportKind::of(&first.addr),
                    connected_since: first.since,
                    agent_version: state.agent_version.clone(),
                    rtt: state.rtt,
                    listen_addrs: state.listen_addrs.clone(),
                })
            })
            .collect();
        out.sort_by_key(|p| p.peer_id.to_base58());
        out
    }

    pub(crate) fn known_addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.known_addrs.get(peer).cloned().unwrap_or_default()
    }

    pub(crate) fn add_known_addrs(
        &mut self,
        peer: PeerId,
        addrs: impl IntoIterator<Item = Multiaddr>,
    ) {
        let list = self.known_addrs.entry(peer).or_default();
        for addr in addrs {
            let addr = strip_p2p(addr);
            if let Some(pos) = list.iter().position(|a| *a == addr) {
                list.remove(pos);
            }
            list.insert(0, addr);
        }
        list.truncate(MAX_KNOWN_ADDRS);
    }

    pub(crate) fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs.clone()
    }
}

/// Removes a trailing `/p2p/<id>` so addresses compare equal.
pub(crate) fn strip_p2p(mut addr: Multiaddr) -> Multiaddr {
    if matches!(
        addr.iter().last(),
        Some(libp2p::multiaddr::Protocol::P2p(_))
    ) {
        addr.pop();
    }
    addr
}

pub(crate) type SharedPeers = Arc<RwLock<PeerTable>>;

pub(crate) fn read(peers: &SharedPeers) -> std::sync::RwLockReadGuard<'_, PeerTable> {
    peers.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write_listen_addr(peers: &SharedPeers, addr: Multiaddr) {
    write(peers).listen_addrs.push(addr);
}

pub(crate) fn write_known_addrs(
    peers: &SharedPeers,
    peer: PeerId,
    addrs: impl IntoIterator<Item = Multiaddr>,
) {
    write(peers).add_known_addrs(peer, addrs);
}

fn write(peers: &SharedPeers) -> std::sync::RwLockWriteGuard<'_, PeerTable> {
    peers.write().unwrap_or_else(|e| e.into_inner())
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

/// State owned by the swarm task.
pub(crate) struct SwarmTask {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) peers: SharedPeers,
    pub(crate) events: broadcast::Sender<TransportEvent>,
    pub(crate) conn_waiters: HashMap<ConnectionId, (String, DialReply)>,
    pub(crate) peer_waiters: HashMap<PeerId, Vec<DialReply>>,
}

impl SwarmTask {
    pub(crate) async fn run(mut self) {
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
                            reason: e.to_string(),
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
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Disconnect { peer } => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn emit(&self, event: TransportEvent) {
        let _ = self.events.send(event);
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
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
            } => {
                let (addr, direction) = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => {
                        (address.clone(), Direction::Outbound)
                    }
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
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, %addr, direction = direction.as_str(), "peer connected");
                    self.emit(TransportEvent::PeerConnected {
                        peer: peer_id,
                        addr,
                        direction,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                {
                    let mut table = write(&self.peers);
                    if let Some(state) = table.connected.get_mut(&peer_id) {
                        state.connections.retain(|(id, _)| *id != connection_id);
                        if state.connections.is_empty() {
                            table.connected.remove(&peer_id);
                        }
                    }
                }
                if num_established == 0 {
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
                let reason = error.to_string();
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
                    {
                        for reply in self.peer_waiters.remove(&peer).unwrap_or_default() {
                            let _ = reply.send(Err(TransportError::Dial {
                                target: peer.to_string(),
                                reason: reason.clone(),
                            }));
                        }
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
                tracing::debug!(addr = %send_back_addr, %error, "inbound connection failed");
                self.emit(TransportEvent::InboundFailed {
                    addr: send_back_addr,
                    error: error.to_string(),
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let supports_rpc = info.protocols.contains(&PROTOCOL);
                {
                    let mut table = write(&self.peers);
                    table.add_known_addrs(peer_id, info.listen_addrs.iter().cloned());
                    if let Some(state) = table.connected.get_mut(&peer_id) {
                        state.agent_version = Some(info.agent_version.clone());
                        state.listen_addrs = info.listen_addrs.clone();
                    }
                }
                self.emit(TransportEvent::PeerIdentified {
                    peer: peer_id,
                    listen_addrs: info.listen_addrs,
                    agent_version: info.agent_version,
                    supports_rpc,
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                if let Some(state) = write(&self.peers).connected.get_mut(&peer) {
                    state.rtt = Some(rtt);
                }
            }
            _ => {}
        }
    }
}
