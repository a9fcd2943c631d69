//! Staying connected: the peer address book, redialing, and learning which
//! agents connected peers offer.

use std::{sync::Arc, time::Duration};

use dawn_store::AddressSource;
use dawn_transport::{Multiaddr, PeerId, TransportEvent};
use libp2p::multiaddr::Protocol;
use tokio::sync::broadcast::error::RecvError;

use super::{NodeEvent, NodeShared, now_ms};
use crate::{
    address::{AgentAddress, AgentId},
    descriptor::AgentDescriptor,
    jsonrpc::Request,
    system_agent::SYSTEM_AGENT_ID,
};

/// Whether an address is worth remembering for redialing.
fn dialable(addr: &Multiaddr) -> bool {
    addr.iter().all(|p| match p {
        Protocol::Ip4(ip) => !ip.is_unspecified(),
        Protocol::Ip6(ip) => !ip.is_unspecified(),
        Protocol::Memory(_) => false,
        _ => true,
    })
}

/// Records an address of a peer in the address book (and the transport's).
pub(super) async fn remember(
    shared: &Arc<NodeShared>,
    peer: PeerId,
    addr: &Multiaddr,
    source: AddressSource,
) {
    let mut addr = addr.clone();
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    if !dialable(&addr) {
        return;
    }
    shared.transport.add_addresses(peer, [addr.clone()]);
    let store = shared.store.clone();
    let (peer_s, addr_s) = (peer.to_string(), addr.to_string());
    let result = tokio::task::spawn_blocking(move || {
        store.record_peer_address(&peer_s, &addr_s, source, now_ms())
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%peer, %error, "cannot record a peer address"),
        Err(error) => tracing::warn!(%peer, %error, "address book task failed"),
    }
}

/// Follows transport events: keeps the address book and the remote agent
/// view up to date, and re-emits them as node events.
pub(super) async fn watch_transport(shared: Arc<NodeShared>) {
    let mut events = shared.transport.subscribe();
    loop {
        let event = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return,
            event = events.recv() => event,
        };
        let event = match event {
            Ok(event) => event,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "transport events were dropped; the peer view may be stale until the next change"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match event {
            TransportEvent::PeerConnected {
                peer,
                addr,
                direction,
            } => {
                if direction == dawn_transport::Direction::Outbound {
                    remember(&shared, peer, &addr, AddressSource::Dialed).await;
                } else {
                    let store = shared.store.clone();
                    let p = peer.to_string();
                    let _ =
                        tokio::task::spawn_blocking(move || store.touch_peer(&p, now_ms())).await;
                }
                shared.emit(NodeEvent::PeerConnected(peer));
            }
            TransportEvent::PeerDisconnected { peer, .. } => {
                let removed = shared
                    .remote_agents
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&peer)
                    .is_some();
                shared.emit(NodeEvent::PeerDisconnected(peer));
                if removed {
                    shared.emit(NodeEvent::RemoteAgentsChanged(peer));
                }
            }
            TransportEvent::PeerIdentified {
                peer,
                listen_addrs,
                supports_rpc,
                ..
            } => {
                for addr in &listen_addrs {
                    remember(&shared, peer, addr, AddressSource::Identify).await;
                }
                if supports_rpc {
                    let shared = shared.clone();
                    tokio::spawn(async move { learn_agents(&shared, peer).await });
                }
            }
            _ => {}
        }
    }
}

/// Asks a peer which agents it has, with their full descriptions.
async fn learn_agents(shared: &Arc<NodeShared>, peer: PeerId) {
    let Ok(system) = AgentId::new(SYSTEM_AGENT_ID) else {
        return;
    };
    let address = AgentAddress::remote(peer, system);
    let request = Request::new(0, super::inbound::NODE_AGENTS_METHOD, None);
    let node = super::Node {
        shared: shared.clone(),
    };
    let options = super::CallOptions::default().with_timeout(Duration::from_secs(10));
    let agents = match node.request(&address, request, options).await {
        Ok(result) => result
            .get("agents")
            .cloned()
            .and_then(|a| serde_json::from_value::<Vec<AgentDescriptor>>(a).ok()),
        Err(error) => {
            tracing::debug!(%peer, %error, "cannot learn the peer's agents");
            None
        }
    };
    if let Some(agents) = agents {
        if !shared.transport.is_connected(&peer) {
            return;
        }
        tracing::debug!(%peer, count = agents.len(), "learned the peer's agents");
        shared
            .remote_agents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, agents);
        shared.emit(NodeEvent::RemoteAgentsChanged(peer));
    }
}

/// Dials bootstrap peers and remembered peers at start, and again every
/// `node.redial_interval` while they are disconnected.
pub(super) async fn keep_connected(shared: Arc<NodeShared>) {
    // Load the address book once: restarts rejoin the mesh from it.
    let store = shared.store.clone();
    let remembered = tokio::task::spawn_blocking(move || store.peers())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut targets: Vec<PeerId> = Vec::new();
    for entry in remembered {
        let Ok(peer) = entry.peer_id.parse::<PeerId>() else {
            continue;
        };
        if peer == shared.peer_id() {
            continue;
        }
        let addrs: Vec<Multiaddr> = entry
            .addresses
            .iter()
            .filter_map(|a| a.addr.parse().ok())
            .collect();
        if !addrs.is_empty() {
            shared.transport.add_addresses(peer, addrs);
            targets.push(peer);
        }
    }
    for addr in &shared.config.node.bootstrap {
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            remember(&shared, peer, addr, AddressSource::Config).await;
            if !targets.contains(&peer) {
                targets.push(peer);
            }
        }
    }
    let interval = shared.config.node.redial_interval.0;
    loop {
        for peer in &targets {
            if shared.stop.is_cancelled() {
                return;
            }
            if shared.transport.is_connected(peer) {
                continue;
            }
            let transport = shared.transport.clone();
            let peer = *peer;
            tokio::spawn(async move {
                if let Err(error) = transport.connect(peer).await {
                    tracing::debug!(%peer, %error, "redial failed");
                }
            });
        }
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
