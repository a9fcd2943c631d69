//! Stored peer reputation: each peer's misbehaviour score and any ban in force.
//!
//! One record per peer in the `reputation` table, keyed by the peer id's string form, valued
//! by the JSON of a [`ReputationEntry`] without its id. Scoring (penalties, decay, thresholds)
//! belongs to `dawn-security`; this module only keeps the records. The score is stored as it
//! was at `updated_ms`; readers apply the decay since then.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::json_table::JsonTable;
use crate::store::Store;

/// The name of the [`REPUTATION`] table.
pub(crate) const REPUTATION_TABLE: &str = "reputation";

/// Reputation records: peer id to the JSON of a [`StoredReputation`].
pub(crate) const REPUTATION: TableDefinition<&str, &[u8]> = TableDefinition::new(REPUTATION_TABLE);

const TABLE: JsonTable = JsonTable {
    name: REPUTATION_TABLE,
    definition: REPUTATION,
};

/// A peer's stored reputation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReputationEntry {
    /// The peer id, in its string form.
    pub peer_id: String,
    /// The score at `updated_ms` (must be finite; JSON has no NaN or infinity).
    pub score: f64,
    /// When the score was last computed (unix milliseconds).
    pub updated_ms: u64,
    /// The end of the peer's ban (unix milliseconds), if it was ever banned.
    pub banned_until_ms: Option<u64>,
    /// How many offences the peer has committed in total.
    pub offences: u64,
    /// The name of the peer's most recent offence.
    pub last_offence: Option<String>,
}

/// A reputation record as stored: [`ReputationEntry`] without the id, which is the record's
/// key. New fields must carry `#[serde(default)]` so records written by older builds decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredReputation {
    score: f64,
    updated_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    banned_until_ms: Option<u64>,
    #[serde(default)]
    offences: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_offence: Option<String>,
}

impl StoredReputation {
    fn from_entry(entry: &ReputationEntry) -> StoredReputation {
        StoredReputation {
            score: entry.score,
            updated_ms: entry.updated_ms,
            banned_until_ms: entry.banned_until_ms,
            offences: entry.offences,
            last_offence: entry.last_offence.clone(),
        }
    }

    fn into_entry(self, peer_id: String) -> ReputationEntry {
        ReputationEntry {
            peer_id,
            score: self.score,
            updated_ms: self.updated_ms,
            banned_until_ms: self.banned_until_ms,
            offences: self.offences,
            last_offence: self.last_offence,
        }
    }
}

/// Creates the `reputation` table in a write transaction (new databases and the 1 -> 2
/// migration).
pub(crate) fn create_table(
    path: &std::path::Path,
    txn: &redb::WriteTransaction,
) -> Result<(), StoreError> {
    TABLE.create(path, txn)
}

impl Store {
    /// The stored reputation of `peer_id`, if any.
    pub fn reputation_entry(&self, peer_id: &str) -> Result<Option<ReputationEntry>, StoreError> {
        let stored: Option<StoredReputation> = TABLE.get(self, peer_id)?;
        Ok(stored.map(|stored| stored.into_entry(peer_id.to_string())))
    }

    /// Every stored reputation record, in peer id order.
    pub fn reputation_entries(&self) -> Result<Vec<ReputationEntry>, StoreError> {
        let all: Vec<(String, StoredReputation)> = TABLE.all(self)?;
        Ok(all
            .into_iter()
            .map(|(peer_id, stored)| stored.into_entry(peer_id))
            .collect())
    }

    /// Stores `entry`, replacing any record of the same peer. Durable when it returns. A
    /// non-finite score fails with [`StoreError::Record`].
    pub fn put_reputation_entry(&self, entry: &ReputationEntry) -> Result<(), StoreError> {
        if !entry.score.is_finite() {
            // serde_json would write `null`, which would then fail to decode on every read.
            return Err(StoreError::Record {
                path: self.path().to_path_buf(),
                table: REPUTATION_TABLE,
                key: entry.peer_id.clone(),
                source: <serde_json::Error as serde::ser::Error>::custom(format!(
                    "score {} is not a finite number",
                    entry.score
                )),
            });
        }
        let stored = StoredReputation::from_entry(entry);
        TABLE.put_many(self, &[(entry.peer_id.as_str(), &stored)])?;
        Ok(())
    }

    /// Removes the reputation records of `peer_ids` in one durable transaction and returns how
    /// many existed.
    pub fn remove_reputation_entries(&self, peer_ids: &[&str]) -> Result<usize, StoreError> {
        let removed: Vec<Option<serde_json::Value>> = TABLE.remove_many(self, peer_ids)?;
        Ok(removed.iter().filter(|old| old.is_some()).count())
    }
}
