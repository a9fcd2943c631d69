//! What the transport reports to the node.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use libp2p::{Multiaddr, PeerId, gossipsub::MessageId};

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We dialed the peer.
    Outbound,
    /// The peer dialed us.
    Inbound,
}

impl Direction {
    /// `"outbound"` or `"inbound"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// The transport protocol a connection runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// TCP with Noise and Yamux.
    Tcp,
    /// QUIC (TLS 1.3 built in).
    Quic,
    /// In-process memory transport (tests and simulations).
    Memory,
    /// Anything else.
    Other,
}

impl TransportKind {
    /// Classifies a multiaddr.
    pub fn of(addr: &Multiaddr) -> TransportKind {
        use libp2p::multiaddr::Protocol;
        let mut kind = TransportKind::Other;
        for p in addr.iter() {
            match p {
                Protocol::QuicV1 | Protocol::Quic => return TransportKind::Quic,
                Protocol::Tcp(_) => kind = TransportKind::Tcp,
                Protocol::Memory(_) => return TransportKind::Memory,
                _ => {}
            }
        }
        kind
    }

    /// `"tcp"`, `"quic"`, `"memory"` or `"other"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Quic => "quic",
            TransportKind::Memory => "memory",
            TransportKind::Other => "other",
        }
    }
}

/// Something that happened in the network.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TransportEvent {
    /// A listener got an address.
    Listening {
        /// The address, including the chosen port.
        addr: Multiaddr,
    },
    /// A listen address went away.
    ListenAddrExpired {
        /// The address.
        addr: Multiaddr,
    },
    /// The first connection to a peer was established.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// The remote address of the connection.
        addr: Multiaddr,
        /// Who dialed.
        direction: Direction,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
        /// Why, if known.
        cause: Option<String>,
    },
    /// The peer told us who it is and where it listens.
    PeerIdentified {
        /// The peer.
        peer: PeerId,
        /// Its announced listen addresses.
        listen_addrs: Vec<Multiaddr>,
        /// Its software version.
        agent_version: String,
        /// Whether it speaks the Dawn RPC protocol.
        supports_rpc: bool,
    },
    /// An outbound connection attempt failed.
    DialFailed {
        /// The peer, if it was known.
        peer: Option<PeerId>,
        /// Why.
        error: String,
    },
    /// An inbound connection attempt failed (e.g. handshake error, or it was
    /// denied: banned peer, connection or memory limit).
    InboundFailed {
        /// The remote address.
        addr: Multiaddr,
        /// Why.
        error: String,
    },
    /// Discovery learned of a peer, or of new addresses for it: an mDNS
    /// answer, a new entry in the Kademlia routing table (which includes
    /// peers that just connected), or a peer a Kademlia random walk found.
    /// It may already be connected. The transport does not dial it; the node
    /// decides (and must not trust the addresses: anyone can announce any).
    PeerDiscovered {
        /// The peer.
        peer: PeerId,
        /// Addresses it can be reached at (also remembered for
        /// [`Transport::connect`](crate::Transport::connect)).
        addrs: Vec<Multiaddr>,
        /// How it was learned.
        source: DiscoverySource,
    },
    /// Discovery records of a peer expired (mDNS TTL ran out without a
    /// refresh): it has probably left the local network.
    PeerExpired {
        /// The peer.
        peer: PeerId,
        /// The addresses that expired.
        addrs: Vec<Multiaddr>,
        /// Which discovery mechanism expired them.
        source: DiscoverySource,
    },
    /// The connection manager closed the connections to a peer because the
    /// number of connected peers rose above the high watermark.
    PeerPruned {
        /// The peer.
        peer: PeerId,
    },
    /// A gossip message on a subscribed topic awaits validation. It is not
    /// forwarded to other peers until the node calls
    /// [`Transport::report_validation`](crate::Transport::report_validation)
    /// with [`GossipValidation::Accept`]; unreported messages are dropped
    /// from the cache after a few heartbeats.
    GossipMessage {
        /// The message id (to report the validation result).
        id: MessageId,
        /// The peer that created and signed the message (signature checked).
        source: Option<PeerId>,
        /// The peer that forwarded it to us.
        propagation_source: PeerId,
        /// The topic.
        topic: String,
        /// The payload.
        data: Bytes,
    },
    /// A connected peer subscribed to a gossip topic.
    GossipSubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
    /// A connected peer unsubscribed from a gossip topic.
    GossipUnsubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
}

/// How a peer was discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DiscoverySource {
    /// Multicast DNS on the local network.
    Mdns,
    /// The Kademlia DHT (routing table updates and random walks).
    Kademlia,
}

impl DiscoverySource {
    /// `"mdns"` or `"kademlia"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscoverySource::Mdns => "mdns",
            DiscoverySource::Kademlia => "kademlia",
        }
    }
}

/// The node's verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GossipValidation {
    /// Valid: deliver it and forward it to mesh peers.
    Accept,
    /// Invalid (forged, malformed): drop it, do not forward it, and penalize
    /// the peer that sent it (and any other peer that sent the same message)
    /// in gossipsub's peer score.
    Reject,
    /// Not useful (e.g. an old version) but not malicious: drop it without
    /// forwarding and without a penalty.
    Ignore,
}

/// What the transport knows about a connected peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer.
    pub peer_id: PeerId,
    /// Remote addresses of the open connections.
    pub addresses: Vec<Multiaddr>,
    /// Direction of the oldest open connection.
    pub direction: Direction,
    /// Transport of the oldest open connection.
    pub transport: TransportKind,
    /// When the oldest open connection was established.
    pub connected_since: SystemTime,
    /// The peer's software version, once identified.
    pub agent_version: Option<String>,
    /// Last measured round-trip time.
    pub rtt: Option<Duration>,
    /// Listen addresses the peer announced.
    pub listen_addrs: Vec<Multiaddr>,
}
