//! Who is connected, where peers can be reached, and which peers are
//! protected or banned. Shared between the swarm task (writer) and every
//! handle (readers).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
    time::{Duration, Instant, SystemTime},
};

use libp2p::{Multiaddr, PeerId, swarm::ConnectionId};

use crate::event::{Direction, PeerInfo, TransportKind};

/// Addresses remembered per peer for redialing.
const MAX_KNOWN_ADDRS: usize = 16;
/// Peers whose addresses are remembered (discovery can report many; the
/// oldest-learned are forgotten first when full).
const MAX_KNOWN_PEERS: usize = 4096;

pub(crate) struct ConnInfo {
    pub(crate) addr: Multiaddr,
    pub(crate) direction: Direction,
    pub(crate) since: SystemTime,
}

pub(crate) struct PeerState {
    pub(crate) connections: Vec<(ConnectionId, ConnInfo)>,
    /// When the first of the current connections was established.
    pub(crate) established: Instant,
    pub(crate) agent_version: Option<String>,
    pub(crate) rtt: Option<Duration>,
    pub(crate) listen_addrs: Vec<Multiaddr>,
}

impl Default for PeerState {
    fn default() -> Self {
        PeerState {
            connections: Vec::new(),
            established: Instant::now(),
            agent_version: None,
            rtt: None,
            listen_addrs: Vec::new(),
        }
    }
}

#[derive(Default)]
pub(crate) struct PeerTable {
    pub(crate) connected: HashMap<PeerId, PeerState>,
    known_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// Insertion order of `known_addrs`, for eviction.
    known_order: std::collections::VecDeque<PeerId>,
    pub(crate) listen_addrs: Vec<Multiaddr>,
    pub(crate) protected: HashSet<PeerId>,
    pub(crate) banned: HashSet<PeerId>,
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

    /// Connected peers per transport of their oldest connection.
    pub(crate) fn counts_by_transport(&self) -> [(TransportKind, usize); 4] {
        let mut counts = [
            (TransportKind::Tcp, 0),
            (TransportKind::Quic, 0),
            (TransportKind::Memory, 0),
            (TransportKind::Other, 0),
        ];
        for state in self.connected.values() {
            if let Some((_, first)) = state.connections.first() {
                let kind = TransportKind::of(&first.addr);
                if let Some(slot) = counts.iter_mut().find(|(k, _)| *k == kind) {
                    slot.1 += 1;
                }
            }
        }
        counts
    }

    pub(crate) fn known_addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.known_addrs.get(peer).cloned().unwrap_or_default()
    }

    pub(crate) fn add_known_addrs(
        &mut self,
        peer: PeerId,
        addrs: impl IntoIterator<Item = Multiaddr>,
    ) {
        if !self.known_addrs.contains_key(&peer) {
            let mut budget = self.known_order.len();
            while self.known_addrs.len() >= MAX_KNOWN_PEERS && budget > 0 {
                budget -= 1;
                let Some(oldest) = self.known_order.pop_front() else {
                    break;
                };
                // Peers we are connected to keep their addresses.
                if self.connected.contains_key(&oldest) {
                    self.known_order.push_back(oldest);
                    continue;
                }
                self.known_addrs.remove(&oldest);
            }
            self.known_order.push_back(peer);
        }
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

pub(crate) fn write(peers: &SharedPeers) -> std::sync::RwLockWriteGuard<'_, PeerTable> {
    peers.write().unwrap_or_else(|e| e.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_addresses_are_bounded_per_peer_and_in_total() {
        let mut table = PeerTable::default();
        let peer = PeerId::random();
        for port in 0..(MAX_KNOWN_ADDRS as u16 + 5) {
            let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", port + 1)
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty());
            table.add_known_addrs(peer, [addr]);
        }
        assert_eq!(table.known_addrs(&peer).len(), MAX_KNOWN_ADDRS);
        for _ in 0..(MAX_KNOWN_PEERS + 10) {
            table.add_known_addrs(PeerId::random(), [Multiaddr::empty()]);
        }
        assert!(table.known_addrs.len() <= MAX_KNOWN_PEERS);
        assert!(table.known_addrs(&peer).is_empty(), "oldest peer evicted");
    }
}
