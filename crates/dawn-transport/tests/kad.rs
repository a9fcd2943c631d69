//! Kademlia discovery over the in-process memory transport.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::HashSet, time::Duration};

use common::{PATIENCE, memory_config, start};
use dawn_transport::{DiscoverySource, PeerId, Transport, TransportConfig, TransportEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_in_a_line_discover_each_other_through_kademlia() {
    let config = TransportConfig {
        enable_kademlia: true,
        kad_refresh_interval: Duration::from_secs(5),
        ..memory_config()
    };
    let mut nodes: Vec<Transport> = Vec::new();
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let (node, _calls) = start(config.clone()).await;
        nodes.push(node);
    }
    let ids: Vec<PeerId> = nodes.iter().map(Transport::local_peer_id).collect();
    // Subscribe before any connection exists so no discovery is missed.
    for node in &nodes {
        let mut events = node.subscribe();
        let me = node.local_peer_id();
        let expected: HashSet<PeerId> = ids.iter().copied().filter(|p| *p != me).collect();
        waiters.push(tokio::spawn(async move {
            let mut found = HashSet::new();
            while found != expected {
                match events.recv().await {
                    Ok(TransportEvent::PeerDiscovered {
                        peer,
                        addrs,
                        source: DiscoverySource::Kademlia,
                    }) => {
                        assert!(!addrs.is_empty(), "discovered peers come with addresses");
                        assert_ne!(peer, me, "a node never discovers itself");
                        found.insert(peer);
                    }
                    Ok(_) => {}
                    Err(e) => panic!("event stream: {e}"),
                }
            }
            found
        }));
    }
    // Each node dials only its right-hand neighbour.
    for pair in nodes.windows(2) {
        pair[0]
            .dial(pair[1].listen_addrs()[0].clone())
            .await
            .unwrap();
    }
    for (i, waiter) in waiters.into_iter().enumerate() {
        let found = tokio::time::timeout(PATIENCE, waiter)
            .await
            .unwrap_or_else(|_| panic!("node {i} did not discover everyone within {PATIENCE:?}"))
            .unwrap();
        assert_eq!(found.len(), 4, "node {i}");
    }
    // What was discovered is dialable by peer id alone.
    let (first, last) = (&nodes[0], &nodes[4]);
    first.connect(last.local_peer_id()).await.unwrap();
    assert!(first.is_connected(&last.local_peer_id()));
    for node in &nodes {
        node.shutdown().await;
    }
}
