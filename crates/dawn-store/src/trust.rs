//! Stored trust records: the trust level an operator (or the node) gave a peer.
//!
//! One record per peer in the `trust` table, keyed by the peer id's string form, valued by the
//! JSON of a [`TrustEntry`] without its id. The level is stored as its text name (for example
//! `"trusted"`); the meaning of levels, the defaults for peers without a record and the peers
//! pinned by configuration belong to `dawn-security`, which validates levels when it reads
//! them. This module only keeps the records.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::json_table::JsonTable;
use crate::store::Store;

/// The name of the [`TRUST`] table.
pub(crate) const TRUST_TABLE: &str = "trust";

/// Trust records: peer id to the JSON of a [`StoredTrust`].
pub(crate) const TRUST: TableDefinition<&str, &[u8]> = TableDefinition::new(TRUST_TABLE);

const TABLE: JsonTable = JsonTable {
    name: TRUST_TABLE,
    definition: TRUST,
};

/// Who set a peer's trust level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustSource {
    /// The node's configuration (for example `security.trusted_peers`).
    Config,
    /// An operator, through the CLI or the admin API.
    Operator,
    /// Nobody: the level is the configured default for peers without a record.
    Default,
}

impl TrustSource {
    /// The snake_case name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustSource::Config => "config",
            TrustSource::Operator => "operator",
            TrustSource::Default => "default",
        }
    }
}

impl std::fmt::Display for TrustSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A peer's stored trust record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustEntry {
    /// The peer id, in its string form.
    pub peer_id: String,
    /// The trust level's name (for example `"trusted"`).
    pub level: String,
    /// A free-text note from whoever set the level.
    pub note: Option<String>,
    /// Who set the level.
    pub source: TrustSource,
    /// When the level was set (unix milliseconds).
    pub updated_ms: u64,
}

/// A trust record as stored: [`TrustEntry`] without the id, which is the record's key. New
/// fields must carry `#[serde(default)]` so records written by older builds still decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTrust {
    level: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    source: TrustSource,
    updated_ms: u64,
}

impl StoredTrust {
    fn into_entry(self, peer_id: String) -> TrustEntry {
        TrustEntry {
            peer_id,
            level: self.level,
            note: self.note,
            source: self.source,
            updated_ms: self.updated_ms,
        }
    }
}

/// Creates the `trust` table in a write transaction (new databases and the 1 -> 2 migration).
pub(crate) fn create_table(
    path: &std::path::Path,
    txn: &redb::WriteTransaction,
) -> Result<(), StoreError> {
    TABLE.create(path, txn)
}

impl Store {
    /// The stored trust record of `peer_id`, if any.
    pub fn trust_entry(&self, peer_id: &str) -> Result<Option<TrustEntry>, StoreError> {
        let stored: Option<StoredTrust> = TABLE.get(self, peer_id)?;
        Ok(stored.map(|stored| stored.into_entry(peer_id.to_string())))
    }

    /// Every stored trust record, in peer id order.
    pub fn trust_entries(&self) -> Result<Vec<TrustEntry>, StoreError> {
        let all: Vec<(String, StoredTrust)> = TABLE.all(self)?;
        Ok(all
            .into_iter()
            .map(|(peer_id, stored)| stored.into_entry(peer_id))
            .collect())
    }

    /// Stores `entry`, replacing any record of the same peer, and returns the record it
    /// replaced. Durable when it returns.
    pub fn put_trust_entry(&self, entry: &TrustEntry) -> Result<Option<TrustEntry>, StoreError> {
        let stored = StoredTrust {
            level: entry.level.clone(),
            note: entry.note.clone(),
            source: entry.source,
            updated_ms: entry.updated_ms,
        };
        let previous: Vec<Option<StoredTrust>> =
            TABLE.put_many(self, &[(entry.peer_id.as_str(), &stored)])?;
        Ok(previous
            .into_iter()
            .next()
            .flatten()
            .map(|old| old.into_entry(entry.peer_id.clone())))
    }

    /// Removes the trust record of `peer_id` and returns it (`None` if there was none, or if
    /// it could not be decoded). Durable when it returns.
    pub fn remove_trust_entry(&self, peer_id: &str) -> Result<Option<TrustEntry>, StoreError> {
        let removed: Vec<Option<StoredTrust>> = TABLE.remove_many(self, &[peer_id])?;
        Ok(removed
            .into_iter()
            .next()
            .flatten()
            .map(|old| old.into_entry(peer_id.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_serializes_snake_case() {
        assert_eq!(
            serde_json::to_string(&TrustSource::Operator).unwrap(),
            "\"operator\""
        );
        assert_eq!(TrustSource::Config.to_string(), "config");
    }

    #[test]
    fn stored_record_without_note_decodes_and_unknown_fields_are_ignored() {
        let json = br#"{"level":"trusted","source":"operator","updated_ms":5,"by":"alice"}"#;
        let stored: StoredTrust = serde_json::from_slice(json).unwrap();
        assert_eq!(stored.level, "trusted");
        assert_eq!(stored.note, None);
    }
}
