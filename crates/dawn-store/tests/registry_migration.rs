//! Upgrading a database written by the schema 3 build (meta, peers, trust, reputation,
//! agent_state) to schema 4, which adds the `registry` cache table; and the registry cache
//! and epoch surviving a reopen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use dawn_store::{RegistryCacheEntry, SCHEMA_VERSION, Store};
use redb::{ReadableDatabase, TableDefinition, TableHandle};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
const TRUST: TableDefinition<&str, &[u8]> = TableDefinition::new("trust");
const REPUTATION: TableDefinition<&str, &[u8]> = TableDefinition::new("reputation");
const AGENT_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_state");

/// Creates a database exactly as the schema 3 build did, with a peer in the address book.
fn create_schema_3_database(path: &Path) {
    let database = redb::Database::create(path).unwrap();
    let txn = database.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("schema_version", b"3".as_slice()).unwrap();
        let mut peers = txn.open_table(PEERS).unwrap();
        let record = br#"{"addresses":[{"addr":"/ip4/10.0.0.1/tcp/8000","source":"dialed","first_seen_ms":10,"last_seen_ms":20}],"first_seen_ms":10,"last_seen_ms":20}"#;
        peers.insert("peer-old", record.as_slice()).unwrap();
        txn.open_table(TRUST).unwrap();
        txn.open_table(REPUTATION).unwrap();
        txn.open_table(AGENT_STATE).unwrap();
    }
    txn.commit().unwrap();
}

fn table_names(path: &Path) -> Vec<String> {
    let database = redb::Database::open(path).unwrap();
    let txn = database.begin_read().unwrap();
    let mut names: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|table| table.name().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn schema_3_database_gains_the_registry_cache_and_keeps_its_peers() {
    const { assert!(SCHEMA_VERSION >= 4) };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dawn.redb");
    create_schema_3_database(&path);
    assert!(!table_names(&path).contains(&"registry".to_string()));

    let store = Store::open(&path).unwrap();

    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(store.registry_entries().unwrap().is_empty());
    assert_eq!(store.registry_epoch().unwrap(), 0);
    assert_eq!(
        store.peer("peer-old").unwrap().unwrap().addresses[0].addr,
        "/ip4/10.0.0.1/tcp/8000"
    );

    // The new table and the epoch work and persist.
    let entry = RegistryCacheEntry {
        origin: "12D3KooWOrigin".into(),
        version: (3 << 32) | 7,
        envelope: "RFJHAQ==".into(),
        stored_ms: 1_000,
        available: true,
    };
    store
        .put_registry_entries(std::slice::from_ref(&entry))
        .unwrap();
    assert_eq!(store.next_registry_epoch(0).unwrap(), 1);
    drop(store);
    assert!(table_names(&path).contains(&"registry".to_string()));

    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(reopened.registry_entries().unwrap(), vec![entry]);
    assert_eq!(reopened.registry_epoch().unwrap(), 1);
    assert_eq!(reopened.next_registry_epoch(0).unwrap(), 2);
}
