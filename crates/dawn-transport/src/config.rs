//! Transport configuration.

use std::time::Duration;

use libp2p::Multiaddr;

/// How the transport listens, connects and bounds messages.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Addresses to listen on (`/ip4/.../tcp/N`, `/ip4/.../udp/N/quic-v1`,
    /// `/memory/N`); port 0 picks a free port.
    pub listen: Vec<Multiaddr>,
    /// Largest RPC message body sent or accepted, in bytes.
    pub max_message_size: usize,
    /// How long a connection with no open streams is kept.
    pub idle_connection_timeout: Duration,
    /// How long dialing a peer and opening an RPC stream may take.
    pub connect_timeout: Duration,
    /// The agent version announced through identify, e.g. `dawn/0.1.0`.
    pub agent_version: String,
    /// How often identify re-announces this node to connected peers.
    pub identify_interval: Duration,
    /// How often peers are pinged to measure round-trip time and liveness.
    pub ping_interval: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            listen: Vec::new(),
            max_message_size: 4 * 1024 * 1024,
            idle_connection_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            agent_version: format!("dawn/{}", env!("CARGO_PKG_VERSION")),
            identify_interval: Duration::from_secs(300),
            ping_interval: Duration::from_secs(15),
        }
    }
}
