//! Discovery wiring: peers found by mDNS and Kademlia go into the address
//! book and are dialed while the node is below `transport.low_watermark`;
//! stale address book entries expire.

use std::{sync::Arc, time::Duration};

use dawn_store::AddressSource;
use dawn_transport::{DiscoverySource, Multiaddr, PeerId};

use super::{NodeShared, now_ms, peering::remember};

/// The address book is checked for stale entries every quarter of
/// `discovery.address_ttl`, at most this rarely.
const ADDRESS_BOOK_SWEEP: Duration = Duration::from_secs(3600);

/// A peer was discovered: remember its addresses, and dial it if the node
/// wants more connections.
pub(super) async fn on_discovered(
    shared: &Arc<NodeShared>,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    source: DiscoverySource,
) {
    if peer == shared.peer_id() || shared.transport.is_banned(&peer) {
        return;
    }
    let book_source = match source {
        DiscoverySource::Mdns => AddressSource::Mdns,
        _ => AddressSource::Kademlia,
    };
    for addr in addrs.iter().take(dawn_store::MAX_ADDRESSES_PER_PEER) {
        remember(shared, peer, addr, book_source).await;
    }
    if !shared.config.discovery.auto_dial
        || shared.is_shutting_down()
        || shared.transport.is_connected(&peer)
        || shared.transport.connected_peers().len() >= shared.config.transport.low_watermark
    {
        return;
    }
    if shared.resilience.dials.try_dial(&peer).is_err() {
        return;
    }
    shared.resilience.count_dial();
    let transport = shared.transport.clone();
    tokio::spawn(async move {
        let outcome = match transport.connect(peer).await {
            Ok(()) => "connected",
            Err(error) => {
                tracing::debug!(%peer, source = source.as_str(), %error, "dialing a discovered peer failed");
                "failed"
            }
        };
        metrics::counter!("dawn_peer_dials_total", "outcome" => outcome).increment(1);
    });
}

/// Drops address book entries not seen for `discovery.address_ttl`. Runs
/// only while the node is connected to someone: a node that was offline
/// keeps its book, which it needs to rejoin.
pub(super) async fn maintain_address_book(shared: Arc<NodeShared>) {
    let ttl = shared.config.discovery.address_ttl.0;
    let wait = (ttl / 4).min(ADDRESS_BOOK_SWEEP);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        if shared.transport.connected_peers().is_empty() {
            continue;
        }
        let cutoff = now_ms().saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.expire_peer_addresses(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(addresses = n, "expired stale address book entries"),
            Ok(Err(error)) => tracing::warn!(%error, "cannot expire address book entries"),
            Err(error) => tracing::warn!(%error, "address book task failed"),
        }
    }
}
