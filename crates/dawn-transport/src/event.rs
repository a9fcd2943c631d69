//! What the transport reports to the node.

use std::time::{Duration, SystemTime};

use libp2p::{Multiaddr, PeerId};

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
    /// An inbound connection attempt failed (e.g. handshake error).
    InboundFailed {
        /// The remote address.
        addr: Multiaddr,
        /// Why.
        error: String,
    },
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
