//! Metrics: libp2p's own (a `prometheus_client` registry rendered as
//! OpenMetrics text) and Dawn's through the `metrics` facade.
//!
//! Facade metrics recorded here (labels are bounded enums, never peer ids):
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `dawn_connected_peers` | gauge | `transport` = tcp, quic, memory, other |
//! | `dawn_connections_total` | counter | `direction`, `status` = established, failed |
//! | `dawn_network_bytes_total` | counter | `direction` = inbound, outbound |
//! | `dawn_message_size_bytes` | histogram | `direction`, `kind` = request, response, event, event_reply |
//! | `dawn_peers_pruned_total` | counter | — |
//! | `dawn_peers_discovered_total` | counter | `source` = mdns, kademlia |
//! | `dawn_gossip_published_total` | counter | `status` = ok, no_peers, error |

use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::{
    event::{Direction, TransportKind},
    rpc::frame::{Frame, Kind},
};

/// libp2p's metric registries. Behaviour and swarm metrics live in `main`,
/// the transport's byte counters in `bandwidth` (kept apart so they can be
/// read cheaply for `dawn_network_bytes_total`).
pub(crate) struct Libp2pRegistries {
    pub(crate) main: Registry,
    pub(crate) bandwidth: Registry,
}

impl Libp2pRegistries {
    pub(crate) fn new() -> Self {
        Libp2pRegistries {
            main: Registry::default(),
            bandwidth: Registry::default(),
        }
    }
}

/// The registries once the swarm is built: read-only, shared.
pub(crate) type SharedRegistries = Arc<Libp2pRegistries>;

/// Renders both registries as one OpenMetrics document (ends in `# EOF`).
pub(crate) fn render(registries: &Libp2pRegistries) -> String {
    use prometheus_client::encoding::text::{encode_eof, encode_registry};
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode_registry(&mut out, &registries.main);
    let _ = encode_registry(&mut out, &registries.bandwidth);
    let _ = encode_eof(&mut out);
    out
}

/// Sums libp2p's bandwidth counters by direction: `(inbound, outbound)`.
pub(crate) fn bandwidth_totals(registries: &Libp2pRegistries) -> (u64, u64) {
    use prometheus_client::encoding::text::encode_registry;
    let mut text = String::new();
    let _ = encode_registry(&mut text, &registries.bandwidth);
    parse_bandwidth(&text)
}

fn parse_bandwidth(text: &str) -> (u64, u64) {
    let (mut inbound, mut outbound) = (0u64, 0u64);
    for line in text.lines() {
        if line.starts_with('#') || !line.starts_with("libp2p_bandwidth") {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        // Counters are integers; tolerate a float rendering.
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let value = value.max(0.0) as u64;
        if series.contains("direction=\"Inbound\"") {
            inbound = inbound.saturating_add(value);
        } else if series.contains("direction=\"Outbound\"") {
            outbound = outbound.saturating_add(value);
        }
    }
    (inbound, outbound)
}

/// Publishes the byte totals through the facade.
pub(crate) fn record_bandwidth(registries: &Libp2pRegistries) {
    let (inbound, outbound) = bandwidth_totals(registries);
    metrics::counter!("dawn_network_bytes_total", "direction" => Direction::Inbound.as_str())
        .absolute(inbound);
    metrics::counter!("dawn_network_bytes_total", "direction" => Direction::Outbound.as_str())
        .absolute(outbound);
}

/// Sets `dawn_connected_peers{transport}` for every transport kind.
pub(crate) fn record_connected_peers(counts: [(TransportKind, usize); 4]) {
    for (kind, n) in counts {
        metrics::gauge!("dawn_connected_peers", "transport" => kind.as_str()).set(n as f64);
    }
}

/// Histogram handles for RPC frame sizes, resolved once per stream so the
/// per-frame cost is one histogram record.
#[derive(Clone)]
pub(crate) struct RpcSizeMetrics {
    inbound: [metrics::Histogram; 4],
    outbound: [metrics::Histogram; 4],
}

const SIZE_KINDS: [&str; 4] = ["request", "response", "event", "event_reply"];

impl RpcSizeMetrics {
    pub(crate) fn new() -> Self {
        let make = |direction: Direction| {
            SIZE_KINDS.map(|kind| {
                metrics::histogram!("dawn_message_size_bytes", "direction" => direction.as_str(), "kind" => kind)
            })
        };
        RpcSizeMetrics {
            inbound: make(Direction::Inbound),
            outbound: make(Direction::Outbound),
        }
    }

    fn slot(kind: Kind) -> Option<usize> {
        match kind {
            Kind::Request => Some(0),
            Kind::Response => Some(1),
            Kind::Event => Some(2),
            Kind::EventReply => Some(3),
            Kind::Failure | Kind::Cancel => None,
        }
    }

    fn observe(set: &[metrics::Histogram; 4], frame: &Frame) {
        let (kind, len) = match frame {
            Frame::Request { body, .. } => (Kind::Request, body.len()),
            Frame::Response { body, .. } => (Kind::Response, body.len()),
            Frame::Event { body, .. } => (Kind::Event, body.len()),
            Frame::EventReply { body, .. } => (Kind::EventReply, body.len()),
            Frame::Oversized {
                kind: Some(kind),
                len,
                ..
            } => (*kind, *len),
            Frame::Failure { .. } | Frame::Cancel { .. } | Frame::Oversized { kind: None, .. } => {
                return;
            }
        };
        if let Some(slot) = Self::slot(kind).and_then(|i| set.get(i)) {
            slot.record(len as f64);
        }
    }

    /// Records a frame read from a peer.
    pub(crate) fn inbound(&self, frame: &Frame) {
        Self::observe(&self.inbound, frame);
    }

    /// Records a frame written to a peer.
    pub(crate) fn outbound(&self, frame: &Frame) {
        Self::observe(&self.outbound, frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_lines_are_summed_by_direction() {
        let text = "# HELP libp2p_bandwidth_bytes Bandwidth usage.\n\
# TYPE libp2p_bandwidth_bytes counter\n\
# UNIT libp2p_bandwidth_bytes bytes\n\
libp2p_bandwidth_bytes_total{protocols=\"/ip4/tcp\",direction=\"Inbound\"} 100\n\
libp2p_bandwidth_bytes_total{protocols=\"/ip4/tcp\",direction=\"Outbound\"} 7\n\
libp2p_bandwidth_bytes_total{protocols=\"/memory\",direction=\"Inbound\"} 5\n";
        assert_eq!(parse_bandwidth(text), (105, 7));
    }
}
