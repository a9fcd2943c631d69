//! Discovery wiring: nodes that know only one bootstrap peer find each other
//! through Kademlia, are dialed, and land in the address book with every
//! source they were learned from; bootstrap peers are protected from
//! pruning; stale address book entries expire.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dawn_core::{DawnConfig, Node, NodeBuilder, config::HumanDuration};
use dawn_store::AddressSource;

const WAIT: Duration = Duration::from_secs(60);

fn config(dir: &tempfile::TempDir, name: &str) -> DawnConfig {
    let mut config = DawnConfig::ephemeral(dir.path().join(name));
    config.api.enabled = false;
    config.discovery.mdns = false;
    config.discovery.kademlia = true;
    config.discovery.kad_refresh_interval = HumanDuration::secs(2);
    config
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn connected(node: &Node, other: &Node) -> bool {
    node.connected_peers()
        .iter()
        .any(|p| p.peer_id == other.peer_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_found_through_kademlia_are_dialed_and_remembered_with_their_sources() {
    let dir = tempfile::tempdir().unwrap();
    let hub = NodeBuilder::new(config(&dir, "hub")).start().await.unwrap();
    let hub_addr = hub.dial_addrs()[0].clone();
    let mut leaves = Vec::new();
    for i in 0..3 {
        let mut c = config(&dir, &format!("leaf{i}"));
        c.node.bootstrap = vec![hub_addr.clone()];
        leaves.push(NodeBuilder::new(c).start().await.unwrap());
    }
    // Each leaf knows only the hub, yet finds the other leaves.
    wait_until("every leaf to connect to every other leaf", || {
        leaves.iter().all(|a| {
            leaves
                .iter()
                .all(|b| a.peer_id() == b.peer_id() || connected(a, b))
        })
    })
    .await;
    // The registry follows: every leaf sees every node's agents.
    wait_until("every leaf to see four nodes in its registry", || {
        leaves
            .iter()
            .all(|l| l.registry().iter().filter(|e| e.available).count() == 4)
    })
    .await;

    // The address book knows the other leaves, from Kademlia among others,
    // with first/last seen times. Addresses are written as they are learnt,
    // after the connection that may already have created the peer's entry:
    // wait for them rather than read the book at one instant.
    let learnt = |entry: &dawn_store::PeerEntry| {
        entry.addresses.iter().any(|a| {
            a.sources.contains(&AddressSource::Kademlia)
                || a.sources.contains(&AddressSource::Identify)
        })
    };
    wait_until(
        "leaf 0's address book to hold the other leaves' addresses",
        || {
            let book = leaves[0].store().peers().unwrap_or_default();
            leaves[1..].iter().all(|other| {
                book.iter()
                    .any(|p| p.peer_id == other.peer_id().to_string() && learnt(p))
            })
        },
    )
    .await;
    let book = leaves[0].store().peers().unwrap();
    for other in &leaves[1..] {
        let entry = book
            .iter()
            .find(|p| p.peer_id == other.peer_id().to_string())
            .unwrap_or_else(|| panic!("{} not in the address book: {book:?}", other.peer_id()));
        let sources: Vec<AddressSource> = entry
            .addresses
            .iter()
            .flat_map(|a| a.sources.iter().copied())
            .collect();
        assert!(
            sources.contains(&AddressSource::Kademlia)
                || sources.contains(&AddressSource::Identify),
            "{entry:?}"
        );
        assert!(entry.first_seen_ms > 0 && entry.last_seen_ms >= entry.first_seen_ms);
    }
    // The bootstrap entry is recorded as such.
    let hub_entry = book
        .iter()
        .find(|p| p.peer_id == hub.peer_id().to_string())
        .unwrap();
    assert!(
        hub_entry
            .addresses
            .iter()
            .any(|a| a.sources.contains(&AddressSource::Config)),
        "{hub_entry:?}"
    );

    for node in leaves.into_iter().chain([hub]) {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_address_book_entries_expire_while_the_node_is_online() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir, "a");
    // The shortest TTL: checked every 15 s.
    c.discovery.address_ttl = HumanDuration::secs(60);
    let a = NodeBuilder::new(c).start().await.unwrap();
    let b = NodeBuilder::new(config(&dir, "b")).start().await.unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let store = a.store();
    store
        .record_peer_address(
            "12D3KooWStalePeerStalePeerStalePeerStalePeerStale",
            "/ip4/10.9.9.9/tcp/8000",
            AddressSource::Kademlia,
            now_ms - 600_000,
        )
        .unwrap();
    a.dial(b.dial_addrs()[0].clone()).await.unwrap();
    wait_until("the stale entry to expire", || {
        store
            .peers()
            .unwrap()
            .iter()
            .all(|p| !p.peer_id.starts_with("12D3KooWStale"))
    })
    .await;
    // The live peer stays.
    assert!(
        store
            .peers()
            .unwrap()
            .iter()
            .any(|p| p.peer_id == b.peer_id().to_string())
    );
    a.shutdown().await;
    b.shutdown().await;
}
