//! Dawn's network layer: a rust-libp2p swarm (TCP + Noise + Yamux, QUIC,
//! identify, ping) with the multiplexed Dawn RPC protocol, discovery
//! (Kademlia under `/dawn/kad/1.0.0`, mDNS), gossipsub for the mesh
//! registry, connection limits, a watermark connection manager, bans, and
//! libp2p's metrics.
//!
//! The transport knows nothing about trust, agents or JSON: it connects peers,
//! reports what happens as [`TransportEvent`]s, carries opaque message bodies
//! to named agents on other nodes, and delivers the calls other nodes make as
//! [`InboundCall`]s. The node (dawn-core) decides what to do with them:
//!
//! - **Discovery** reports [`TransportEvent::PeerDiscovered`] (and
//!   `PeerExpired` for mDNS) and remembers the addresses; it never dials on
//!   the node's behalf (Kademlia queries do open connections of their own).
//!   Dial with [`Transport::connect`] what policy allows.
//! - **Gossip**: [`Transport::gossip_subscribe`], [`Transport::publish`];
//!   every received message is a [`TransportEvent::GossipMessage`] that is
//!   forwarded only after [`Transport::report_validation`] accepts it.
//! - **Admission**: the node refuses a peer with [`Transport::ban`]
//!   (refused from then on, until [`Transport::unban`]) or
//!   [`Transport::disconnect`], typically on `PeerConnected`.
//! - **Limits**: hard limits refuse connections (total, per peer, pending,
//!   memory); above `high_watermark` connected peers the least useful
//!   unprotected ones are pruned down to `low_watermark`
//!   ([`TransportEvent::PeerPruned`]); [`Transport::protect`] exempts
//!   bootstrap and trusted peers.
//! - **Metrics**: `dawn_*` through the `metrics` facade, and
//!   [`Transport::render_libp2p_metrics`] for libp2p's own.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use dawn_transport::{Transport, TransportConfig};
//! use std::time::Duration;
//!
//! let config = TransportConfig {
//!     listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
//!     ..TransportConfig::default()
//! };
//! let (a, _a_calls) = Transport::start(libp2p::identity::Keypair::generate_ed25519(), config.clone()).await?;
//! let (b, mut b_calls) = Transport::start(libp2p::identity::Keypair::generate_ed25519(), config).await?;
//!
//! // b answers every call with the body it received.
//! tokio::spawn(async move {
//!     while let Some(call) = b_calls.recv().await {
//!         let body = call.body().clone();
//!         call.respond(body).await;
//!     }
//! });
//!
//! let b_addr = b.listen_addrs()[0].clone();
//! let b_id = a.dial(b_addr).await?;
//! let reply = a.call(b_id, "echo", "hello".into(), Duration::from_secs(5)).await?;
//! assert_eq!(&reply[..], b"hello");
//! # Ok(()) }
//! ```

mod config;
mod error;
mod event;
mod gossip;
mod limits;
mod peers;
pub mod rpc;
mod swarm;
mod telemetry;

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use config::TransportConfig;
pub use error::{FailureCode, PublishError, RpcError, TransportError};
pub use event::{
    Direction, DiscoverySource, GossipValidation, PeerInfo, TransportEvent, TransportKind,
};
pub use gossip::GOSSIP_PROTOCOL_PREFIX;
pub use libp2p::gossipsub::MessageId as GossipMessageId;
pub use libp2p::{Multiaddr, PeerId, identity};
pub use rpc::{CallUpdate, EventSender, InboundCall, InboundCalls, OutboundCall, PROTOCOL};
pub use swarm::{IDENTIFY_PROTOCOL, KAD_MAX_PACKET_SIZE, KAD_PROTOCOL};

use peers::{PeerTable, SharedPeers};
use swarm::{Command, Connector, SwarmTask, SwarmTaskParts};
use telemetry::SharedRegistries;

/// Inbound calls queued before stream readers wait for the node.
const INBOUND_QUEUE: usize = 1024;
/// Transport events buffered per subscriber.
const EVENT_BUFFER: usize = 1024;
/// How long [`Transport::shutdown`] lets RPC streams write what is already
/// queued and waits for the callers to read it (a peer that stops reading
/// holds the shutdown up to this long) before it closes the connections.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// A handle to a running transport. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    local_peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    peers: SharedPeers,
    events: broadcast::Sender<TransportEvent>,
    rpc: Arc<rpc::RpcClient>,
    shutdown: CancellationToken,
    /// Every RPC stream's writer and inbound reader; [`Transport::shutdown`]
    /// waits for them.
    streams: TaskTracker,
    config: TransportConfig,
    registries: SharedRegistries,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local_peer_id", &self.inner.local_peer_id)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Builds the swarm, starts listening on every configured address and
    /// waits until each listener is bound (so port 0 has become a real port).
    pub async fn start(
        keypair: identity::Keypair,
        config: TransportConfig,
    ) -> Result<(Transport, InboundCalls), TransportError> {
        config.validate()?;
        let local_peer_id = keypair.public().to_peer_id();
        let mut registries = telemetry::Libp2pRegistries::new();
        let (mut swarm, metrics) = swarm::build_swarm(keypair, &config, &mut registries)?;
        let registries: SharedRegistries = Arc::new(registries);
        let mut control = swarm.behaviour().stream_control();
        let incoming = control
            .accept(PROTOCOL)
            .map_err(|e| TransportError::Build(e.to_string()))?;

        // Bind every listener before anything else runs.
        let mut pending: HashMap<libp2p::core::transport::ListenerId, Multiaddr> = HashMap::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| TransportError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
            pending.insert(id, addr.clone());
        }
        let peers: SharedPeers = Arc::new(RwLock::new(PeerTable::default()));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        // Everything else the swarm does meanwhile is kept for the swarm
        // task: libp2p reports an mDNS peer or an inbound connection once.
        let mut early_events = Vec::new();
        let bind = async {
            use futures::StreamExt as _;
            use libp2p::swarm::SwarmEvent;
            while !pending.is_empty() {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr {
                        listener_id,
                        address,
                    } => {
                        tracing::info!(%address, "listening");
                        pending.remove(&listener_id);
                        peers::write_listen_addr(&peers, address);
                    }
                    SwarmEvent::ListenerClosed {
                        listener_id,
                        reason,
                        ..
                    } => {
                        if let Some(addr) = pending.remove(&listener_id) {
                            return Err(TransportError::Listen {
                                addr,
                                reason: match reason {
                                    Err(e) => e.to_string(),
                                    Ok(()) => "listener closed".into(),
                                },
                            });
                        }
                    }
                    SwarmEvent::ListenerError { listener_id, error } => {
                        if let Some(addr) = pending.remove(&listener_id) {
                            return Err(TransportError::Listen {
                                addr,
                                reason: error.to_string(),
                            });
                        }
                    }
                    other => early_events.push(other),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(10), bind).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(TransportError::Listen {
                    addr: pending
                        .values()
                        .next()
                        .cloned()
                        .unwrap_or_else(Multiaddr::empty),
                    reason: "no listen address within 10 s".into(),
                });
            }
        }

        let (commands_tx, commands_rx) = mpsc::channel(256);
        let connector = Connector {
            peers: peers.clone(),
            commands: commands_tx.clone(),
        };
        let activity = Arc::new(limits::PeerActivity::default());
        let streams = TaskTracker::new();
        let rpc = Arc::new(rpc::RpcClient::new(
            control,
            connector,
            config.max_message_size,
            config.connect_timeout,
            activity.clone(),
            streams.clone(),
        ));
        let shutdown = CancellationToken::new();
        let (calls_tx, inbound_calls) = rpc::CallSink::new(INBOUND_QUEUE);
        tokio::spawn(rpc::serve_incoming(
            incoming,
            calls_tx,
            config.max_message_size,
            shutdown.clone(),
            activity.clone(),
            streams.clone(),
        ));
        tokio::spawn(
            SwarmTask::new(
                swarm,
                SwarmTaskParts {
                    commands: commands_rx,
                    peers: peers.clone(),
                    events: events.clone(),
                    metrics,
                    registries: registries.clone(),
                    activity,
                    early_events,
                },
                &config,
            )
            .run(),
        );
        let transport = Transport {
            inner: Arc::new(Inner {
                local_peer_id,
                commands: commands_tx,
                peers,
                events,
                rpc,
                shutdown,
                streams,
                config,
                registries,
            }),
        };
        Ok((transport, inbound_calls))
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.inner.local_peer_id
    }

    /// The configuration the transport runs with.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// Addresses the node is listening on, with real ports.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        peers::read(&self.inner.peers).listen_addrs()
    }

    /// Subscribes to transport events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TransportEvent> {
        self.inner.events.subscribe()
    }

    /// Connected peers.
    pub fn connected_peers(&self) -> Vec<PeerInfo> {
        peers::read(&self.inner.peers).peers()
    }

    /// Whether at least one connection to `peer` is open.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        peers::read(&self.inner.peers).is_connected(peer)
    }

    /// Addresses known for `peer` (most recent first).
    pub fn known_addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        peers::read(&self.inner.peers).known_addrs(peer)
    }

    /// Remembers addresses for `peer`, used when a call needs a connection.
    pub fn add_addresses(&self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        peers::write_known_addrs(&self.inner.peers, peer, addrs);
    }

    /// Dials an address and waits until the connection is established (or
    /// fails, or `connect_timeout` passes). Returns the remote peer id. If the
    /// address ends in `/p2p/<id>`, the remote must prove that identity.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, TransportError> {
        let target = addr.to_string();
        let (reply, rx) = oneshot::channel();
        self.send(Command::DialAddr { addr, reply }).await?;
        self.await_dial(target, rx).await
    }

    /// Connects to `peer` using its known addresses, unless already connected.
    pub async fn connect(&self, peer: PeerId) -> Result<(), TransportError> {
        if self.is_connected(&peer) {
            return Ok(());
        }
        let addrs = self.known_addrs(&peer);
        if addrs.is_empty() {
            return Err(TransportError::Dial {
                target: peer.to_string(),
                reason: "no known address".into(),
            });
        }
        let (reply, rx) = oneshot::channel();
        self.send(Command::DialPeer { peer, addrs, reply }).await?;
        self.await_dial(peer.to_string(), rx).await.map(|_| ())
    }

    async fn await_dial(
        &self,
        target: String,
        rx: oneshot::Receiver<Result<PeerId, TransportError>>,
    ) -> Result<PeerId, TransportError> {
        let after = self.inner.config.connect_timeout;
        match tokio::time::timeout(after, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TransportError::Shutdown),
            Err(_) => Err(TransportError::DialTimeout { target, after }),
        }
    }

    /// Closes every connection to `peer`.
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), TransportError> {
        self.send(Command::Disconnect { peer }).await
    }

    /// Bans `peer`: closes every connection to it at once, refuses its
    /// future connections (both directions), removes it from the Kademlia
    /// routing table and drops gossip it authored, even when relayed by
    /// others. Bans do not expire by themselves: the node keeps the expiry
    /// and calls [`Transport::unban`].
    ///
    /// This is also the admission hook: the transport cannot know whom the
    /// node trusts, so on [`TransportEvent::PeerConnected`] (or
    /// `PeerIdentified`) the node checks its policy and either bans the peer
    /// (untrusted: refused from then on) or calls [`Transport::disconnect`]
    /// (e.g. unknown peers under `reject_unknown`, which may be let in
    /// later). Until then the connection has exchanged only identify, ping,
    /// Kademlia and gossip subscriptions; RPC calls from it still reach the
    /// node, which authorizes every call itself.
    pub async fn ban(&self, peer: PeerId) -> Result<(), TransportError> {
        peers::write(&self.inner.peers).banned.insert(peer);
        self.send(Command::Ban { peer }).await
    }

    /// Lifts a ban; the peer may connect again.
    pub async fn unban(&self, peer: PeerId) -> Result<(), TransportError> {
        peers::write(&self.inner.peers).banned.remove(&peer);
        self.send(Command::Unban { peer }).await
    }

    /// Whether `peer` is banned.
    pub fn is_banned(&self, peer: &PeerId) -> bool {
        peers::read(&self.inner.peers).banned.contains(peer)
    }

    /// Every banned peer.
    pub fn banned_peers(&self) -> Vec<PeerId> {
        peers::read(&self.inner.peers)
            .banned
            .iter()
            .copied()
            .collect()
    }

    /// Protects `peer` (a bootstrap or trusted peer): the connection manager
    /// never prunes it, and the hard connection limits do not apply to it.
    pub async fn protect(&self, peer: PeerId) -> Result<(), TransportError> {
        peers::write(&self.inner.peers).protected.insert(peer);
        self.send(Command::Protect {
            peer,
            protect: true,
        })
        .await
    }

    /// Removes the protection given by [`Transport::protect`].
    pub async fn unprotect(&self, peer: PeerId) -> Result<(), TransportError> {
        peers::write(&self.inner.peers).protected.remove(&peer);
        self.send(Command::Protect {
            peer,
            protect: false,
        })
        .await
    }

    /// Whether `peer` is protected from pruning.
    pub fn is_protected(&self, peer: &PeerId) -> bool {
        peers::read(&self.inner.peers).protected.contains(peer)
    }

    /// Starts a Kademlia bootstrap now (it also runs when the first peer
    /// joins the routing table and every `kad_refresh_interval`). Fails if
    /// no peer is known to Kademlia yet.
    pub async fn bootstrap(&self) -> Result<(), TransportError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::KadBootstrap { reply }).await?;
        rx.await.map_err(|_| TransportError::Shutdown)?
    }

    /// Subscribes to a gossip topic. Messages on it arrive as
    /// [`TransportEvent::GossipMessage`] and must be validated with
    /// [`Transport::report_validation`]. Returns `false` if already
    /// subscribed.
    pub async fn gossip_subscribe(&self, topic: &str) -> Result<bool, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Subscribe {
            topic: topic.to_owned(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| TransportError::Shutdown)?
    }

    /// Leaves a gossip topic. Returns `false` if not subscribed.
    pub async fn gossip_unsubscribe(&self, topic: &str) -> Result<bool, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Unsubscribe {
            topic: topic.to_owned(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| TransportError::Shutdown)
    }

    /// Publishes `data` on a gossip topic, signed with the node key. The
    /// topic need not be subscribed. [`PublishError::NoPeers`] (nobody
    /// subscribed is connected) is a soft error: see
    /// [`PublishError::is_soft`].
    pub async fn publish(&self, topic: &str, data: Bytes) -> Result<(), PublishError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Publish {
                topic: topic.to_owned(),
                data,
                reply,
            })
            .await
            .map_err(|_| PublishError::Shutdown)?;
        rx.await.map_err(|_| PublishError::Shutdown)?
    }

    /// Reports the node's verdict on a [`TransportEvent::GossipMessage`]:
    /// `Accept` forwards it to the mesh, `Reject` drops it and penalizes the
    /// senders' gossip score, `Ignore` drops it quietly. Report each message
    /// once, with the `propagation_source` from the event.
    pub async fn report_validation(
        &self,
        id: GossipMessageId,
        propagation_source: PeerId,
        result: GossipValidation,
    ) -> Result<(), TransportError> {
        self.send(Command::ReportValidation {
            id,
            propagation_source,
            result,
        })
        .await
    }

    /// The peers in this node's gossip mesh for `topic` (those full messages
    /// are exchanged with); empty if not subscribed.
    pub async fn gossip_mesh_peers(&self, topic: &str) -> Result<Vec<PeerId>, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::MeshPeers {
            topic: topic.to_owned(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| TransportError::Shutdown)
    }

    /// Gossipsub's score of `peer` (see the `gossip` module docs): negative
    /// after it sent messages the node rejected, e.g. forged registry
    /// announcements; `None` if the peer is unknown to gossipsub's scoring.
    pub async fn gossip_peer_score(&self, peer: PeerId) -> Result<Option<f64>, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::PeerScore { peer, reply }).await?;
        rx.await.map_err(|_| TransportError::Shutdown)
    }

    /// Brings `dawn_network_bytes_total` up to date with libp2p's byte
    /// counters now (it is otherwise synced every few seconds); call before
    /// rendering a scrape.
    pub fn sync_byte_counters(&self) {
        telemetry::record_bandwidth(&self.inner.registries);
    }

    /// Bytes received and sent on all connections since the transport
    /// started, `(inbound, outbound)`.
    pub fn network_bytes(&self) -> (u64, u64) {
        telemetry::bandwidth_totals(&self.inner.registries)
    }

    /// libp2p's own metrics (swarm, identify, ping, Kademlia, gossipsub,
    /// bandwidth; all prefixed `libp2p_`) as an OpenMetrics text document
    /// ending in `# EOF`, for the node's `/metrics` (dawn-observe's merge
    /// translates it to Prometheus text).
    pub fn render_libp2p_metrics(&self) -> String {
        telemetry::render(&self.inner.registries)
    }

    async fn send(&self, command: Command) -> Result<(), TransportError> {
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| TransportError::Shutdown)
    }

    /// Calls `agent` on `peer` with a request body and waits for the response
    /// body, at most `timeout` (connection set-up included).
    pub async fn call(
        &self,
        peer: PeerId,
        agent: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(RpcError::Shutdown);
        }
        self.inner
            .rpc
            .start_call(peer, agent, body, timeout, false)
            .await?
            .response()
            .await
    }

    /// Starts a call whose mid-call events (progress, logs, requests from the
    /// callee) the caller wants to see. Dropping the handle cancels the call.
    pub async fn start_call(
        &self,
        peer: PeerId,
        agent: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<OutboundCall, RpcError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(RpcError::Shutdown);
        }
        self.inner
            .rpc
            .start_call(peer, agent, body, timeout, true)
            .await
    }

    /// Stops accepting streams, closes every connection (each peer sees an
    /// orderly close) and stops the swarm. Calls still in flight fail.
    ///
    /// Frames already queued when it is called (the response of a call that
    /// finished just before) are still delivered: every stream writes what
    /// it holds and closes its side, and each inbound stream waits until its
    /// caller has read everything and closed its side too, within
    /// [`SHUTDOWN_FLUSH`] in all; only then do the connections close.
    pub async fn shutdown(&self) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        self.inner.shutdown.cancel();
        self.inner.rpc.close_all();
        self.inner.streams.close();
        if tokio::time::timeout(SHUTDOWN_FLUSH, self.inner.streams.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                streams = self.inner.streams.len(),
                "rpc streams still open after {SHUTDOWN_FLUSH:?}; closing them"
            );
        }
        let (reply, rx) = oneshot::channel();
        if self
            .inner
            .commands
            .send(Command::Shutdown { reply })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}
