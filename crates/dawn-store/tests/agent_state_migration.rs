//! Upgrading a database written by the schema 2 build (meta, peers, trust, reputation) to
//! schema 3, which adds the `agent_state` table; and agent state surviving reopen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use dawn_store::{SCHEMA_VERSION, Store};
use redb::{ReadableDatabase, TableDefinition, TableHandle};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
const TRUST: TableDefinition<&str, &[u8]> = TableDefinition::new("trust");
const REPUTATION: TableDefinition<&str, &[u8]> = TableDefinition::new("reputation");

/// Creates a database exactly as the schema 2 build did, with one record in each table.
fn create_schema_2_database(path: &Path) {
    let database = redb::Database::create(path).unwrap();
    let txn = database.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("schema_version", b"2".as_slice()).unwrap();
        let mut peers = txn.open_table(PEERS).unwrap();
        let record = br#"{"addresses":[{"addr":"/ip4/10.0.0.1/tcp/8000","source":"dialed","first_seen_ms":10,"last_seen_ms":20}],"first_seen_ms":10,"last_seen_ms":20}"#;
        peers.insert("peer-old", record.as_slice()).unwrap();
        let mut trust = txn.open_table(TRUST).unwrap();
        let record = br#"{"level":"trusted","note":"ops","source":"operator","updated_ms":30}"#;
        trust.insert("peer-old", record.as_slice()).unwrap();
        let mut reputation = txn.open_table(REPUTATION).unwrap();
        let record = br#"{"score":-3.0,"updated_ms":30,"banned_until_ms":null,"offences":1,"last_offence":"protocol_violation"}"#;
        reputation.insert("peer-old", record.as_slice()).unwrap();
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
fn schema_2_database_gains_agent_state_and_keeps_its_records() {
    const { assert!(SCHEMA_VERSION >= 3) };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dawn.redb");
    create_schema_2_database(&path);
    assert!(!table_names(&path).contains(&"agent_state".to_string()));

    let store = Store::open(&path).unwrap();

    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(table_names_of(&store).contains(&"agent_state".to_string()));
    assert_eq!(
        store.trust_entry("peer-old").unwrap().unwrap().level,
        "trusted"
    );
    assert_eq!(
        store
            .reputation_entry("peer-old")
            .unwrap()
            .unwrap()
            .offences,
        1
    );
    assert_eq!(
        store.peer("peer-old").unwrap().unwrap().addresses[0].addr,
        "/ip4/10.0.0.1/tcp/8000"
    );
    assert!(store.agent_state_namespaces().unwrap().is_empty());

    let notes = store.agent_store("notes").unwrap();
    notes.put_json("first", &"kept").unwrap();
    drop(notes);
    drop(store);

    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        reopened
            .agent_store("notes")
            .unwrap()
            .get_json::<String>("first")
            .unwrap()
            .as_deref(),
        Some("kept")
    );
}

fn table_names_of(store: &Store) -> Vec<String> {
    store.table_counts().unwrap().into_keys().collect()
}
