//! Staying connected: the peer address book and redialing. (Which agents
//! peers offer is the registry's business: `crate::registry`.)

use std::sync::Arc;

use dawn_store::AddressSource;
use dawn_transport::{Multiaddr, PeerId, TransportEvent};
use libp2p::multiaddr::Protocol;
use tokio::sync::broadcast::error::RecvError;

use super::{NodeEvent, NodeShared, now_ms};

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
                shared.resilience.dials.connected(&peer);
                shared.emit(NodeEvent::PeerConnected(peer));
            }
            TransportEvent::PeerDisconnected { peer, .. } => {
                shared.resilience.dials.disconnected(&peer);
                shared.emit(NodeEvent::PeerDisconnected(peer));
            }
            TransportEvent::PeerDiscovered {
                peer,
                addrs,
                source,
            } => super::discovery::on_discovered(&shared, peer, addrs, source).await,
            TransportEvent::PeerIdentified {
                peer,
                listen_addrs,
                supports_rpc,
                ..
            } => {
                // The registry learns the peer's agents (anti-entropy on
                // this same event).
                let _ = supports_rpc;
                for addr in &listen_addrs {
                    remember(&shared, peer, addr, AddressSource::Identify).await;
                }
            }
            _ => {}
        }
    }
}

/// Dials bootstrap peers and remembered peers at start, and again every
/// `node.redial_interval` while they are disconnected, each peer no more
/// often than its dial backoff (`resilience.retry.dial`) allows.
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
    let mut bootstrap = std::collections::HashSet::new();
    for addr in &shared.config.node.bootstrap {
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            remember(&shared, peer, addr, AddressSource::Config).await;
            // Bootstrap peers are never pruned by the connection manager.
            if let Err(error) = shared.transport.protect(peer).await {
                tracing::debug!(%peer, %error, "cannot protect a bootstrap peer");
            }
            bootstrap.insert(peer);
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
            // Remembered peers fill the connection budget; bootstrap peers
            // are always redialed.
            if !bootstrap.contains(peer)
                && shared.transport.connected_peers().len() >= shared.config.transport.low_watermark
            {
                continue;
            }
            if let Err(deferred) = shared.resilience.dials.try_dial(peer) {
                tracing::trace!(%peer, retry_in_ms = deferred.retry_in.as_millis(), "redial deferred by backoff");
                continue;
            }
            shared.resilience.count_dial();
            let transport = shared.transport.clone();
            let peer = *peer;
            tokio::spawn(async move {
                let outcome = match transport.connect(peer).await {
                    Ok(()) => "connected",
                    Err(error) => {
                        tracing::debug!(%peer, %error, "redial failed");
                        "failed"
                    }
                };
                metrics::counter!("dawn_peer_dials_total", "outcome" => outcome).increment(1);
            });
        }
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
