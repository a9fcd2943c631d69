//! Transport configuration.

use std::time::Duration;

use libp2p::Multiaddr;

use crate::error::TransportError;

/// How the transport listens, connects, discovers peers and bounds resources.
///
/// Every field has a production default in [`TransportConfig::default`];
/// build configurations with `..TransportConfig::default()` so new fields
/// keep their defaults.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Addresses to listen on (`/ip4/.../tcp/N`, `/ip4/.../udp/N/quic-v1`,
    /// `/memory/N`); port 0 picks a free port.
    pub listen: Vec<Multiaddr>,
    /// Largest RPC message body sent or accepted, in bytes. Default 4 MiB.
    pub max_message_size: usize,
    /// How long a connection with no open streams is kept. Default 120 s.
    pub idle_connection_timeout: Duration,
    /// How long dialing a peer and opening an RPC stream may take. Default 10 s.
    pub connect_timeout: Duration,
    /// The agent version announced through identify, e.g. `dawn/0.1.0`.
    pub agent_version: String,
    /// How often identify re-announces this node to connected peers.
    /// Default 300 s.
    pub identify_interval: Duration,
    /// How often peers are pinged to measure round-trip time and liveness.
    /// Default 15 s.
    pub ping_interval: Duration,

    // --- discovery ---
    /// Whether mDNS discovery runs on the local network (IPv4, every
    /// non-loopback multicast interface). Default `true`. mDNS only
    /// advertises listen addresses that belong to the interface it answers
    /// on, so a node listening only on 127.0.0.1 is not discoverable by it;
    /// listen on `0.0.0.0` (or a LAN address) for mDNS to be useful. Turn it
    /// off for in-process test meshes. If the mDNS socket cannot be opened the
    /// transport logs a warning and runs without it.
    pub enable_mdns: bool,
    /// How often mDNS queries the LAN once its start-up probes (0.5, 1, 2,
    /// ... s) are over; probing also ends at the first answer from any
    /// node. Default 5 minutes (libp2p's default).
    pub mdns_query_interval: Duration,
    /// Whether the Kademlia DHT (`/dawn/kad/1.0.0`) runs. Default `true`.
    /// Without it the node only knows peers it is told about (bootstrap
    /// list, address book, mDNS) and the peers those connect to it; it also
    /// neither dials nor is dialed for DHT queries, so the connection graph
    /// is exactly what the node dials (useful for fixed topologies).
    pub enable_kademlia: bool,
    /// How often Kademlia refreshes its routing table (a bootstrap) and runs
    /// a random walk (`get_closest_peers` for a random id) that reports peers
    /// not seen before. Default 60 s.
    pub kad_refresh_interval: Duration,

    // --- gossip ---
    /// Gossipsub heartbeat: mesh maintenance (GRAFT/PRUNE) and lazy gossip
    /// (IHAVE) happen once per heartbeat. Default 500 ms, which lets a
    /// 30-node in-process mesh form and repair within a few heartbeats.
    pub gossip_heartbeat: Duration,
    /// Largest gossip message accepted or published (the whole encoded
    /// gossipsub RPC, so the usable payload is a few hundred bytes smaller:
    /// signature, key, topic and sequence number). Default 1 MiB.
    pub gossip_max_message_size: usize,

    // --- hard connection limits (libp2p `connection_limits`) ---
    /// Most established connections in total (both directions); further
    /// connections are denied. Default 256.
    pub max_connections: u32,
    /// Most established connections to a single peer. Default 4 (TCP and QUIC
    /// in both directions).
    pub max_connections_per_peer: u32,
    /// Most inbound connections still in their handshake. Default 64.
    pub max_pending_incoming: u32,
    /// Most outbound dials in progress. Default 64.
    pub max_pending_outgoing: u32,
    /// New connections are denied while the process's resident memory is
    /// above this many bytes (libp2p `memory_connection_limits`). Default
    /// `None` (no memory-based limit).
    pub max_memory_bytes: Option<usize>,
    /// Like `max_memory_bytes`, as a fraction (0.0..=1.0) of the machine's
    /// physical memory. Used only when `max_memory_bytes` is `None`.
    /// Default `None`.
    pub max_memory_fraction: Option<f64>,

    // --- connection manager (soft limits) ---
    /// When the number of connected peers rises above `high_watermark`, the
    /// least useful unprotected peers are disconnected until `low_watermark`
    /// remain. Default 64.
    pub low_watermark: usize,
    /// See `low_watermark`. Default 96. Must be at least `low_watermark` and
    /// should stay below `max_connections` so new peers can always get in
    /// (pruning makes room instead of refusing them).
    pub high_watermark: usize,
    /// How often the connection manager checks the watermarks (it also checks
    /// on every new connection). Default 30 s.
    pub prune_interval: Duration,
    /// A peer with RPC traffic (either direction) within this window is kept
    /// in preference to every peer without; among equals, the one idle the
    /// longest is pruned first. Default 5 min.
    pub prune_activity_window: Duration,
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
            enable_mdns: true,
            mdns_query_interval: Duration::from_secs(300),
            enable_kademlia: true,
            kad_refresh_interval: Duration::from_secs(60),
            gossip_heartbeat: Duration::from_millis(500),
            gossip_max_message_size: 1024 * 1024,
            max_connections: 256,
            max_connections_per_peer: 4,
            max_pending_incoming: 64,
            max_pending_outgoing: 64,
            max_memory_bytes: None,
            max_memory_fraction: None,
            low_watermark: 64,
            high_watermark: 96,
            prune_interval: Duration::from_secs(30),
            prune_activity_window: Duration::from_secs(300),
        }
    }
}

impl TransportConfig {
    /// Checks the values that cannot work together.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |m: String| Err(TransportError::Config(m));
        if self.low_watermark > self.high_watermark {
            return bad(format!(
                "low_watermark ({}) must not exceed high_watermark ({})",
                self.low_watermark, self.high_watermark
            ));
        }
        if self.max_connections_per_peer == 0 || self.max_connections == 0 {
            return bad("max_connections and max_connections_per_peer must be at least 1".into());
        }
        for (name, d) in [
            ("kad_refresh_interval", self.kad_refresh_interval),
            ("gossip_heartbeat", self.gossip_heartbeat),
            ("prune_interval", self.prune_interval),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be greater than zero"));
            }
        }
        if self.gossip_max_message_size < 1024 {
            return bad(format!(
                "gossip_max_message_size ({}) must be at least 1024 bytes",
                self.gossip_max_message_size
            ));
        }
        if let Some(f) = self.max_memory_fraction
            && !(f > 0.0 && f <= 1.0)
        {
            return bad(format!("max_memory_fraction ({f}) must be in (0, 1]"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(TransportConfig::default().validate().is_ok());
    }

    #[test]
    fn inverted_watermarks_are_refused() {
        let config = TransportConfig {
            low_watermark: 10,
            high_watermark: 5,
            ..TransportConfig::default()
        };
        assert!(matches!(config.validate(), Err(TransportError::Config(_))));
    }
}
