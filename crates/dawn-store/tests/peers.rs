//! The peer address book, on real database files.

// Helpers shared by the tests panic on setup failures, like the tests themselves.
#![allow(clippy::unwrap_used)]

use dawn_store::{AddressSource, MAX_ADDRESSES_PER_PEER, Store};

fn open_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("dawn.redb")).unwrap();
    (dir, store)
}

#[test]
fn recording_an_address_creates_the_peer() {
    let (_dir, store) = open_store();
    assert_eq!(store.peer("peer-a").unwrap(), None);

    store
        .record_peer_address("peer-a", "/ip4/1.1.1.1/tcp/1", AddressSource::Mdns, 100)
        .unwrap();

    let peer = store.peer("peer-a").unwrap().unwrap();
    assert_eq!(peer.peer_id, "peer-a");
    assert_eq!(peer.first_seen_ms, 100);
    assert_eq!(peer.last_seen_ms, 100);
    assert_eq!(peer.addresses.len(), 1);
    let address = &peer.addresses[0];
    assert_eq!(address.addr, "/ip4/1.1.1.1/tcp/1");
    assert_eq!(address.source, AddressSource::Mdns);
    assert_eq!((address.first_seen_ms, address.last_seen_ms), (100, 100));
}

#[test]
fn recording_a_known_address_refreshes_it() {
    let (_dir, store) = open_store();
    store
        .record_peer_address("peer-a", "/ip4/1.1.1.1/tcp/1", AddressSource::Identify, 100)
        .unwrap();
    store
        .record_peer_address("peer-a", "/ip4/2.2.2.2/tcp/1", AddressSource::Identify, 150)
        .unwrap();

    store
        .record_peer_address("peer-a", "/ip4/1.1.1.1/tcp/1", AddressSource::Dialed, 200)
        .unwrap();

    let peer = store.peer("peer-a").unwrap().unwrap();
    assert_eq!(peer.addresses.len(), 2, "no duplicate address");
    assert_eq!((peer.first_seen_ms, peer.last_seen_ms), (100, 200));
    // Most recently seen first.
    let refreshed = &peer.addresses[0];
    assert_eq!(refreshed.addr, "/ip4/1.1.1.1/tcp/1");
    assert_eq!(
        refreshed.source,
        AddressSource::Dialed,
        "source is the latest one"
    );
    assert_eq!(refreshed.first_seen_ms, 100, "first_seen is kept");
    assert_eq!(refreshed.last_seen_ms, 200);
    assert_eq!(peer.addresses[1].addr, "/ip4/2.2.2.2/tcp/1");
}

#[test]
fn addresses_per_peer_are_capped_evicting_the_least_recently_seen() {
    let (_dir, store) = open_store();
    let total = MAX_ADDRESSES_PER_PEER as u64 + 4;
    for i in 0..total {
        store
            .record_peer_address(
                "peer-a",
                &format!("/ip4/10.0.0.{i}/tcp/1"),
                AddressSource::Identify,
                1_000 + i,
            )
            .unwrap();
    }
    // Refresh the oldest survivor so that it is no longer the next one out.
    store
        .record_peer_address(
            "peer-a",
            "/ip4/10.0.0.4/tcp/1",
            AddressSource::Dialed,
            5_000,
        )
        .unwrap();
    store
        .record_peer_address(
            "peer-a",
            "/ip4/10.0.0.99/tcp/1",
            AddressSource::Identify,
            5_001,
        )
        .unwrap();

    let peer = store.peer("peer-a").unwrap().unwrap();
    assert_eq!(peer.addresses.len(), MAX_ADDRESSES_PER_PEER);
    let addrs: Vec<&str> = peer.addresses.iter().map(|a| a.addr.as_str()).collect();
    for evicted in 0..=3 {
        assert!(
            !addrs.contains(&format!("/ip4/10.0.0.{evicted}/tcp/1").as_str()),
            "{addrs:?}"
        );
    }
    assert!(!addrs.contains(&"/ip4/10.0.0.5/tcp/1"), "{addrs:?}");
    assert!(addrs.contains(&"/ip4/10.0.0.4/tcp/1"), "{addrs:?}");
    assert_eq!(addrs[0], "/ip4/10.0.0.99/tcp/1");
    assert_eq!(addrs[1], "/ip4/10.0.0.4/tcp/1");
}

#[test]
fn touching_a_peer_marks_it_seen_without_changing_addresses() {
    let (_dir, store) = open_store();
    store.touch_peer("peer-new", 50).unwrap();
    let created = store.peer("peer-new").unwrap().unwrap();
    assert!(created.addresses.is_empty());
    assert_eq!((created.first_seen_ms, created.last_seen_ms), (50, 50));

    store
        .record_peer_address("peer-a", "/ip4/1.1.1.1/tcp/1", AddressSource::Inbound, 100)
        .unwrap();
    store.touch_peer("peer-a", 300).unwrap();

    let peer = store.peer("peer-a").unwrap().unwrap();
    assert_eq!((peer.first_seen_ms, peer.last_seen_ms), (100, 300));
    assert_eq!(peer.addresses.len(), 1);
    assert_eq!(peer.addresses[0].last_seen_ms, 100);

    // An older time does not move last_seen backwards.
    store.touch_peer("peer-a", 200).unwrap();
    assert_eq!(store.peer("peer-a").unwrap().unwrap().last_seen_ms, 300);
}

#[test]
fn peers_are_listed_most_recently_seen_first() {
    let (_dir, store) = open_store();
    store
        .record_peer_address("peer-old", "/ip4/1.1.1.1/tcp/1", AddressSource::Config, 100)
        .unwrap();
    store
        .record_peer_address("peer-mid", "/ip4/2.2.2.2/tcp/1", AddressSource::Config, 200)
        .unwrap();
    store.touch_peer("peer-new", 300).unwrap();
    store.touch_peer("peer-old", 400).unwrap();

    let ids: Vec<String> = store
        .peers()
        .unwrap()
        .into_iter()
        .map(|p| p.peer_id)
        .collect();
    assert_eq!(ids, ["peer-old", "peer-new", "peer-mid"]);
}

#[test]
fn removing_a_peer_forgets_it() {
    let (_dir, store) = open_store();
    store
        .record_peer_address("peer-a", "/ip4/1.1.1.1/tcp/1", AddressSource::Manual, 100)
        .unwrap();
    store.touch_peer("peer-b", 100).unwrap();

    assert!(store.remove_peer("peer-a").unwrap());
    assert!(!store.remove_peer("peer-a").unwrap(), "already gone");
    assert!(!store.remove_peer("never-seen").unwrap());

    assert_eq!(store.peer("peer-a").unwrap(), None);
    let ids: Vec<String> = store
        .peers()
        .unwrap()
        .into_iter()
        .map(|p| p.peer_id)
        .collect();
    assert_eq!(ids, ["peer-b"]);
}

#[test]
fn expiry_drops_stale_addresses_and_then_empty_stale_peers() {
    let (_dir, store) = open_store();
    // peer-a: one stale and one fresh address.
    store
        .record_peer_address("peer-a", "/ip4/1.1.1.1/tcp/1", AddressSource::Dialed, 100)
        .unwrap();
    store
        .record_peer_address("peer-a", "/ip4/1.1.1.2/tcp/1", AddressSource::Dialed, 900)
        .unwrap();
    // peer-b: only stale addresses, and not seen since.
    store
        .record_peer_address("peer-b", "/ip4/2.2.2.1/tcp/1", AddressSource::Mdns, 100)
        .unwrap();
    store
        .record_peer_address("peer-b", "/ip4/2.2.2.2/tcp/1", AddressSource::Mdns, 200)
        .unwrap();
    // peer-c: a stale address, but connected recently: kept, without the address.
    store
        .record_peer_address("peer-c", "/ip4/3.3.3.3/tcp/1", AddressSource::Inbound, 100)
        .unwrap();
    store.touch_peer("peer-c", 800).unwrap();
    // peer-d: never had an address, not seen since: dropped. peer-e: same, but recent: kept.
    store.touch_peer("peer-d", 100).unwrap();
    store.touch_peer("peer-e", 600).unwrap();

    let removed = store.expire_peer_addresses(500).unwrap();

    assert_eq!(removed, 4);
    let peer_a = store.peer("peer-a").unwrap().unwrap();
    let addrs: Vec<&str> = peer_a.addresses.iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(addrs, ["/ip4/1.1.1.2/tcp/1"]);
    assert_eq!(store.peer("peer-b").unwrap(), None);
    let peer_c = store.peer("peer-c").unwrap().unwrap();
    assert!(peer_c.addresses.is_empty());
    assert_eq!(store.peer("peer-d").unwrap(), None);
    assert!(store.peer("peer-e").unwrap().is_some());

    // An address seen exactly at the cutoff is kept; expiring again removes nothing.
    assert_eq!(store.expire_peer_addresses(500).unwrap(), 0);
    assert_eq!(store.expire_peer_addresses(900).unwrap(), 0);
    assert_eq!(store.peer("peer-a").unwrap().unwrap().addresses.len(), 1);
}

#[test]
fn address_book_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dawn.redb");
    {
        let store = Store::open(&path).unwrap();
        store
            .record_peer_address("peer-a", "/ip4/1.1.1.1/tcp/1", AddressSource::Kademlia, 100)
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let peer = store.peer("peer-a").unwrap().unwrap();
    assert_eq!(peer.addresses[0].source, AddressSource::Kademlia);
}
