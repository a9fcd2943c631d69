//! mDNS discovery between two nodes of one process.
//!
//! mDNS answers only with listen addresses that belong to the interface the
//! query arrived on, and libp2p never runs it on loopback interfaces. So the
//! nodes here listen on `0.0.0.0` (port 0): a node bound to 127.0.0.1 alone
//! is not discoverable through mDNS (checked on this machine: the
//! discovery never happens). The query and the answer go through the
//! machine's multicast interface and come back through multicast loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{next_matching_within, start};
use dawn_transport::{
    DiscoverySource, Multiaddr, PeerId, Transport, TransportConfig, TransportEvent,
};
use tokio::sync::broadcast;

async fn discovered(
    node: &Transport,
    events: &mut broadcast::Receiver<TransportEvent>,
    who: PeerId,
) -> Vec<Multiaddr> {
    // B starts after A is up, so B can hear A before its events are
    // subscribed (libp2p reports an mDNS peer once): the addresses it keeps
    // show that. Nothing else tells these nodes of each other (no Kademlia,
    // no dial yet), so known addresses come from mDNS.
    let known = node.known_addrs(&who);
    if !known.is_empty() {
        return known;
    }
    // libp2p's mDNS probes at 0.5, 1, 2, 4, ... s after start until the
    // first answer from ANY node, then queries every `mdns_query_interval`.
    // Other tests on this machine run mDNS nodes too: an answer from one of
    // them ends a node's probing before it has heard the node it looks for,
    // so the test queries every 2 s instead of every 5 minutes.
    next_matching_within(
        events,
        "mDNS discovery",
        Duration::from_secs(90),
        |e| match e {
            TransportEvent::PeerDiscovered {
                peer,
                addrs,
                source: DiscoverySource::Mdns,
            } if peer == who => Some(addrs),
            _ => None,
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_find_each_other_through_mdns_and_connect() {
    let config = TransportConfig {
        listen: vec!["/ip4/0.0.0.0/tcp/0".parse().unwrap()],
        enable_mdns: true,
        mdns_query_interval: Duration::from_secs(2),
        enable_kademlia: false,
        ..TransportConfig::default()
    };
    let (a, _ac) = start(config.clone()).await;
    let mut a_events = a.subscribe();
    let (b, _bc) = start(config).await;
    let mut b_events = b.subscribe();
    let (a_id, b_id) = (a.local_peer_id(), b.local_peer_id());

    let b_addrs = discovered(&a, &mut a_events, b_id).await;
    assert!(!b_addrs.is_empty());
    let a_addrs = discovered(&b, &mut b_events, a_id).await;
    assert!(!a_addrs.is_empty());

    // Discovery reports; it does not dial. The addresses are remembered, so
    // connecting by peer id works.
    assert!(!a.is_connected(&b_id));
    a.connect(b_id).await.unwrap();
    assert!(a.is_connected(&b_id));
    a.shutdown().await;
    b.shutdown().await;
}
