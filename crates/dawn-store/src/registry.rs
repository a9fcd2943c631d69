//! The mesh registry cache: the last known signed record of every node, so a restarted node
//! can serve its last view of the mesh at once, and the node's own registry epoch, so the
//! versions it announces keep increasing across restarts.
//!
//! One record per origin node in the `registry` table, keyed by the origin's peer id string,
//! valued by the JSON of a [`RegistryCacheEntry`] without the origin. The signed record itself
//! is opaque here (`envelope`, encoded by the caller); verifying it belongs to `dawn-core`.
//!
//! The epoch lives in the `meta` table under [`REGISTRY_EPOCH_KEY`]; see
//! [`Store::next_registry_epoch`].

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::json_table::JsonTable;
use crate::schema::{self, META, META_TABLE};
use crate::store::Store;

/// The name of the [`REGISTRY`] table.
pub(crate) const REGISTRY_TABLE: &str = "registry";

/// Registry cache records: origin peer id to the JSON of a [`StoredRegistryEntry`].
pub(crate) const REGISTRY: TableDefinition<&str, &[u8]> = TableDefinition::new(REGISTRY_TABLE);

/// The key of the `meta` table holding the node's registry epoch, a JSON number.
pub(crate) const REGISTRY_EPOCH_KEY: &str = "registry_epoch";

const TABLE: JsonTable = JsonTable {
    name: REGISTRY_TABLE,
    definition: REGISTRY,
};

/// The cached registry record of one origin node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCacheEntry {
    /// The origin node's peer id, in its string form.
    pub origin: String,
    /// The record's version (also inside the signed envelope; kept here for listings).
    pub version: u64,
    /// The signed record as received, in the caller's text encoding (e.g. base64).
    pub envelope: String,
    /// When the record was stored (unix milliseconds), to drop stale caches on load.
    pub stored_ms: u64,
    /// Whether the origin was reachable when the record was stored.
    pub available: bool,
}

/// A cache entry as stored: [`RegistryCacheEntry`] without the origin, which is the key. New
/// fields must carry `#[serde(default)]` so records written by older builds decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRegistryEntry {
    version: u64,
    envelope: String,
    stored_ms: u64,
    #[serde(default = "available_by_default")]
    available: bool,
}

fn available_by_default() -> bool {
    true
}

/// Creates the `registry` table in a write transaction (new databases and the 2 -> 3
/// migration).
pub(crate) fn create_table(
    path: &std::path::Path,
    txn: &redb::WriteTransaction,
) -> Result<(), StoreError> {
    TABLE.create(path, txn)
}

impl Store {
    /// Every cached registry record, in origin order.
    pub fn registry_entries(&self) -> Result<Vec<RegistryCacheEntry>, StoreError> {
        let all: Vec<(String, StoredRegistryEntry)> = TABLE.all(self)?;
        Ok(all
            .into_iter()
            .map(|(origin, stored)| RegistryCacheEntry {
                origin,
                version: stored.version,
                envelope: stored.envelope,
                stored_ms: stored.stored_ms,
                available: stored.available,
            })
            .collect())
    }

    /// Stores `entries` (replacing records of the same origins) in one durable transaction.
    pub fn put_registry_entries(&self, entries: &[RegistryCacheEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let stored: Vec<StoredRegistryEntry> = entries
            .iter()
            .map(|e| StoredRegistryEntry {
                version: e.version,
                envelope: e.envelope.clone(),
                stored_ms: e.stored_ms,
                available: e.available,
            })
            .collect();
        let records: Vec<(&str, &StoredRegistryEntry)> = entries
            .iter()
            .zip(&stored)
            .map(|(e, s)| (e.origin.as_str(), s))
            .collect();
        let _previous: Vec<Option<StoredRegistryEntry>> = TABLE.put_many(self, &records)?;
        Ok(())
    }

    /// Removes the cached records of `origins` in one durable transaction; returns how many
    /// existed.
    pub fn remove_registry_entries(&self, origins: &[&str]) -> Result<usize, StoreError> {
        if origins.is_empty() {
            return Ok(0);
        }
        let removed: Vec<Option<serde_json::Value>> = TABLE.remove_many(self, origins)?;
        Ok(removed.iter().filter(|old| old.is_some()).count())
    }

    /// The node's registry epoch as last stored (0 if never stored).
    pub fn registry_epoch(&self) -> Result<u64, StoreError> {
        self.read(|txn| {
            let meta = txn
                .open_table(META)
                .map_err(|error| self.redb_error(error))?;
            read_epoch(self, &meta)
        })
    }

    /// Starts a new registry epoch: stores and returns `max(stored + 1, at_least)`, durably.
    ///
    /// The node calls this once per start (and when it sees a record of its own with a higher
    /// version, e.g. after restoring an older backup), so every version it announces in this
    /// run is above every version announced before.
    pub fn next_registry_epoch(&self, at_least: u64) -> Result<u64, StoreError> {
        self.write(|txn| {
            let mut meta = txn
                .open_table(META)
                .map_err(|error| self.redb_error(error))?;
            let current = read_epoch(self, &meta)?;
            let next = current.saturating_add(1).max(at_least);
            let bytes = schema::encode(self.path(), META_TABLE, REGISTRY_EPOCH_KEY, &next)?;
            meta.insert(REGISTRY_EPOCH_KEY, bytes.as_slice())
                .map_err(|error| self.redb_error(error))?;
            Ok(next)
        })
    }
}

fn read_epoch(
    store: &Store,
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<u64, StoreError> {
    match meta
        .get(REGISTRY_EPOCH_KEY)
        .map_err(|error| store.redb_error(error))?
    {
        Some(bytes) => schema::decode(store.path(), META_TABLE, REGISTRY_EPOCH_KEY, bytes.value()),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_starts_at_one_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("dawn.redb")).unwrap();
        assert_eq!(store.registry_epoch().unwrap(), 0);
        assert_eq!(store.next_registry_epoch(0).unwrap(), 1);
        assert_eq!(store.next_registry_epoch(0).unwrap(), 2);
        assert_eq!(store.next_registry_epoch(10).unwrap(), 10);
        assert_eq!(store.next_registry_epoch(3).unwrap(), 11);
        assert_eq!(store.registry_epoch().unwrap(), 11);
    }

    #[test]
    fn entries_round_trip_and_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("dawn.redb")).unwrap();
        let entry = |origin: &str, version| RegistryCacheEntry {
            origin: origin.into(),
            version,
            envelope: format!("env-{origin}-{version}"),
            stored_ms: 5,
            available: version % 2 == 1,
        };
        store
            .put_registry_entries(&[entry("b", 1), entry("a", 2)])
            .unwrap();
        store.put_registry_entries(&[entry("b", 3)]).unwrap();
        assert_eq!(
            store.registry_entries().unwrap(),
            vec![entry("a", 2), entry("b", 3)]
        );
        assert_eq!(store.remove_registry_entries(&["a", "zz"]).unwrap(), 1);
        assert_eq!(store.registry_entries().unwrap(), vec![entry("b", 3)]);
    }
}
