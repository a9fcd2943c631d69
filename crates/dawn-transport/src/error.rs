//! Errors of the transport layer.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

/// Why a transport-level failure frame was sent by the remote side.
///
/// These cover what the transport itself decides; errors of the called agent
/// travel inside normal responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    /// The request or the response exceeded the maximum message size.
    MessageTooLarge,
    /// The remote node is shutting down.
    ShuttingDown,
    /// The remote node failed internally while handling the call.
    Internal,
    /// The deadline passed on the remote side.
    DeadlineExceeded,
    /// The remote side considered our frames a protocol violation.
    ProtocolViolation,
    /// A code this version does not know (sent by a newer peer).
    Unknown(u16),
}

impl FailureCode {
    pub(crate) fn as_u16(self) -> u16 {
        match self {
            FailureCode::MessageTooLarge => 1,
            FailureCode::ShuttingDown => 2,
            FailureCode::Internal => 3,
            FailureCode::DeadlineExceeded => 4,
            FailureCode::ProtocolViolation => 5,
            FailureCode::Unknown(v) => v,
        }
    }

    pub(crate) fn from_u16(v: u16) -> FailureCode {
        match v {
            1 => FailureCode::MessageTooLarge,
            2 => FailureCode::ShuttingDown,
            3 => FailureCode::Internal,
            4 => FailureCode::DeadlineExceeded,
            5 => FailureCode::ProtocolViolation,
            other => FailureCode::Unknown(other),
        }
    }
}

/// Why an outbound RPC call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// No connection to the peer exists and none could be made.
    #[error("peer {peer} is unreachable: {reason}")]
    Unreachable {
        /// The peer.
        peer: PeerId,
        /// What went wrong, from libp2p.
        reason: String,
    },
    /// No address is known for a peer we are not connected to.
    #[error("no address is known for peer {0}")]
    NoAddress(PeerId),
    /// The peer does not speak the Dawn RPC protocol.
    #[error("peer {0} does not support the Dawn RPC protocol")]
    UnsupportedProtocol(PeerId),
    /// Dialing or opening the stream took too long.
    #[error("connecting to peer {peer} timed out after {after:?}")]
    ConnectTimeout {
        /// The peer.
        peer: PeerId,
        /// How long we waited.
        after: Duration,
    },
    /// The connection closed while the call was in flight.
    #[error("connection to peer {0} was lost during the call")]
    ConnectionLost(PeerId),
    /// The call's deadline passed before a response arrived.
    #[error("no response from peer {peer} within {after:?}")]
    DeadlineExceeded {
        /// The peer.
        peer: PeerId,
        /// The budget the call had.
        after: Duration,
    },
    /// The request was larger than the maximum message size; nothing was sent.
    #[error("request of {len} bytes exceeds the maximum message size of {max} bytes")]
    RequestTooLarge {
        /// Size of the request body.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The response was larger than our maximum message size; it was discarded.
    #[error("response from peer {peer} exceeds the maximum message size of {max} bytes")]
    ResponseTooLarge {
        /// The peer.
        peer: PeerId,
        /// Configured maximum.
        max: usize,
    },
    /// The agent id cannot be carried by the protocol.
    #[error("agent id of {0} bytes is longer than the protocol allows (255)")]
    AgentIdTooLong(usize),
    /// The remote transport refused or failed the call.
    #[error("peer {peer} failed the call ({code:?}): {message}")]
    Remote {
        /// The peer.
        peer: PeerId,
        /// The failure code.
        code: FailureCode,
        /// The remote's message.
        message: String,
    },
    /// The local transport is shut down.
    #[error("the transport is shut down")]
    Shutdown,
}

/// Errors starting or commanding the transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Building the libp2p swarm failed.
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A dial failed.
    #[error("cannot dial {target}: {reason}")]
    Dial {
        /// The address or peer dialed.
        target: String,
        /// Why.
        reason: String,
    },
    /// The dial did not complete in time.
    #[error("dialing {target} timed out after {after:?}")]
    DialTimeout {
        /// The address or peer dialed.
        target: String,
        /// How long we waited.
        after: Duration,
    },
    /// The transport task has stopped.
    #[error("the transport is shut down")]
    Shutdown,
    /// The configuration is inconsistent.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// A gossipsub operation (subscribing to a topic) failed.
    #[error("gossip: {0}")]
    Gossip(String),
}

/// Why publishing a gossip message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// No connected peer is subscribed to the topic (or all of them score
    /// too low to publish to), so the message went nowhere. A soft error:
    /// peers that join later catch up through the registry's anti-entropy.
    #[error("no connected peer is subscribed to topic {0}")]
    NoPeers(String),
    /// The message is larger than `gossip_max_message_size` (once encoded).
    #[error("gossip message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Payload size.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// An identical message (same id) was published recently.
    #[error("the same message was already published")]
    Duplicate,
    /// Every peer's outbound queue is full; the message was not sent.
    #[error("the send queues of all {0} peers are full")]
    QueuesFull(usize),
    /// Any other gossipsub failure (signing, encoding).
    #[error("publishing failed: {0}")]
    Failed(String),
    /// The transport task has stopped.
    #[error("the transport is shut down")]
    Shutdown,
}

impl PublishError {
    /// Whether the failure is expected in normal operation and needs no
    /// action beyond relying on anti-entropy ([`PublishError::NoPeers`],
    /// [`PublishError::Duplicate`]).
    pub fn is_soft(&self) -> bool {
        matches!(self, PublishError::NoPeers(_) | PublishError::Duplicate)
    }
}
