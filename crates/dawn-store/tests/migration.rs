//! Upgrading a database written by an older build: schema 1 (meta + peers) to the current
//! schema (2 added the trust and reputation tables, 3 the agent_state table).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use dawn_store::{ReputationEntry, SCHEMA_VERSION, Store, TrustEntry, TrustSource};
use redb::{ReadableDatabase, TableDefinition, TableHandle};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");

/// Creates a database exactly as the schema 1 build did: the `meta` table stamped with
/// `schema_version` 1 (JSON) and the `peers` table, here holding one peer in the v1 record
/// layout. No `trust` or `reputation` table exists.
fn create_schema_1_database(path: &Path) {
    let database = redb::Database::create(path).unwrap();
    let txn = database.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("schema_version", b"1".as_slice()).unwrap();
        let mut peers = txn.open_table(PEERS).unwrap();
        let record = br#"{"addresses":[{"addr":"/ip4/10.0.0.1/tcp/8000","source":"dialed","first_seen_ms":10,"last_seen_ms":20}],"first_seen_ms":10,"last_seen_ms":20}"#;
        peers.insert("peer-old", record.as_slice()).unwrap();
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
fn schema_1_database_is_migrated_to_the_current_schema_keeping_its_peers() {
    const { assert!(SCHEMA_VERSION >= 2) };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dawn.redb");
    create_schema_1_database(&path);
    assert_eq!(table_names(&path), ["meta", "peers"]);

    let store = Store::open(&path).unwrap();

    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let peer = store.peer("peer-old").unwrap().expect("v1 peer survives");
    assert_eq!(peer.addresses[0].addr, "/ip4/10.0.0.1/tcp/8000");
    assert!(store.trust_entries().unwrap().is_empty());
    assert!(store.reputation_entries().unwrap().is_empty());

    // The new tables work and persist.
    store
        .put_trust_entry(&TrustEntry {
            peer_id: "peer-old".into(),
            level: "trusted".into(),
            note: Some("ops".into()),
            source: TrustSource::Operator,
            updated_ms: 30,
        })
        .unwrap();
    store
        .put_reputation_entry(&ReputationEntry {
            peer_id: "peer-old".into(),
            score: -12.5,
            updated_ms: 30,
            banned_until_ms: None,
            offences: 1,
            last_offence: Some("protocol_violation".into()),
        })
        .unwrap();
    drop(store);
    assert_eq!(
        table_names(&path),
        [
            "agent_state",
            "meta",
            "peers",
            "registry",
            "reputation",
            "trust"
        ]
    );

    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        reopened.trust_entry("peer-old").unwrap().unwrap().level,
        "trusted"
    );
    assert_eq!(
        reopened
            .reputation_entry("peer-old")
            .unwrap()
            .unwrap()
            .score,
        -12.5
    );
}

#[test]
fn new_database_has_every_current_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dawn.redb");
    drop(Store::open(&path).unwrap());
    assert_eq!(
        table_names(&path),
        [
            "agent_state",
            "meta",
            "peers",
            "registry",
            "reputation",
            "trust"
        ]
    );
}
