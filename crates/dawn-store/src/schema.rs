//! Schema version, the `meta` table and forward migrations.
//!
//! The database records the version of its layout under the key [`SCHEMA_VERSION_KEY`] of the
//! [`META`] table. On open:
//!
//! * a new database gets every current table and is stamped [`SCHEMA_VERSION`] directly;
//! * a database at an older version is upgraded by running the steps of [`MIGRATIONS`] in
//!   order, all in one write transaction, so it ends up either fully migrated or untouched;
//! * a database at a newer version is refused with [`StoreError::NewerSchema`].
//!
//! # Adding a table
//!
//! Records are JSON, so adding a field to a record needs no migration (give the new field
//! `#[serde(default)]`). Adding a table, or changing the meaning of stored data, does:
//!
//! 1. put the table's definition and its accessors in a new module (one module per domain);
//! 2. open the table in [`create_tables`], so new databases get it;
//! 3. bump [`SCHEMA_VERSION`] and append a [`Migration`] to [`MIGRATIONS`] whose step opens
//!    the table (a write transaction creates a table on open) and converts any data.
//!
//! # History
//!
//! | version | tables                                   | step from the previous version |
//! |---------|------------------------------------------|--------------------------------|
//! | 1       | `meta`, `peers`                          | (first version)                |
//! | 2       | `meta`, `peers`, `trust`, `reputation`   | creates `trust` and `reputation` (empty) |
//! | 3       | + `agent_state`                          | creates `agent_state` (empty)  |
//! | 4       | + `registry`                             | creates `registry` (empty); the registry epoch lives in `meta` |

use std::path::Path;

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::{agent_state, peers, registry, reputation, trust};

/// The schema version this build writes, and the newest it can read.
pub const SCHEMA_VERSION: u32 = 4;

/// The name of the [`META`] table.
pub(crate) const META_TABLE: &str = "meta";

/// Store-wide metadata: the schema version and the health probe. Keys are names, values JSON.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new(META_TABLE);

/// The key of [`META`] holding the schema version, a JSON number.
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// One forward migration step, from schema version `from` to `from + 1`.
#[derive(Clone, Copy)]
pub(crate) struct Migration {
    /// The schema version this step upgrades from.
    pub(crate) from: u32,
    /// What the step changes, for the log.
    pub(crate) description: &'static str,
    /// Applies the step inside the open's write transaction; the path is the database file's,
    /// for error messages.
    pub(crate) apply: fn(&Path, &WriteTransaction) -> Result<(), StoreError>,
}

/// The migration steps of this build, oldest first: step `i` upgrades from version `i + 1`.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        from: 1,
        description: "add the trust and reputation tables",
        apply: add_trust_and_reputation_tables,
    },
    Migration {
        from: 2,
        description: "add the agent_state table",
        apply: agent_state::create_table,
    },
    Migration {
        from: 3,
        description: "add the registry cache table",
        apply: registry::create_table,
    },
];

/// Step 1 -> 2: creates the (empty) `trust` and `reputation` tables.
fn add_trust_and_reputation_tables(path: &Path, txn: &WriteTransaction) -> Result<(), StoreError> {
    trust::create_table(path, txn)?;
    reputation::create_table(path, txn)?;
    Ok(())
}

/// Creates every table of the current schema (a write transaction creates a table on open).
pub(crate) fn create_tables(path: &Path, txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META).map_err(redb_error(path))?;
    txn.open_table(peers::PEERS).map_err(redb_error(path))?;
    trust::create_table(path, txn)?;
    reputation::create_table(path, txn)?;
    agent_state::create_table(path, txn)?;
    registry::create_table(path, txn)?;
    Ok(())
}

/// Opens the database's schema in `txn`: stamps a new database, migrates an older one, or
/// refuses a newer one. Returns whether anything was written (the caller commits if so).
pub(crate) fn prepare(
    path: &Path,
    txn: &WriteTransaction,
    migrations: &[Migration],
    target_version: u32,
) -> Result<bool, StoreError> {
    let stored_version = {
        let meta = txn.open_table(META).map_err(redb_error(path))?;
        let stored = meta.get(SCHEMA_VERSION_KEY).map_err(redb_error(path))?;
        match stored {
            Some(bytes) => Some(decode::<u32>(
                path,
                META_TABLE,
                SCHEMA_VERSION_KEY,
                bytes.value(),
            )?),
            None => None,
        }
    };

    let Some(stored_version) = stored_version else {
        // No version: either a brand-new file, or a redb file some other program wrote.
        let foreign_tables: Vec<String> = txn
            .list_tables()
            .map_err(redb_error(path))?
            .map(|table| table.name().to_string())
            .filter(|name| name != META_TABLE)
            .collect();
        if !foreign_tables.is_empty() {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "a redb database without a schema version, holding tables {foreign_tables:?}"
                ),
            });
        }
        create_tables(path, txn)?;
        write_schema_version(path, txn, target_version)?;
        tracing::info!(path = %path.display(), schema_version = target_version, "created database");
        return Ok(true);
    };

    if stored_version > target_version {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: stored_version,
            supported: target_version,
        });
    }
    if stored_version == target_version {
        return Ok(false);
    }

    for from in stored_version..target_version {
        let to = from + 1;
        let Some(step) = migrations.iter().find(|step| step.from == from) else {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "schema version {stored_version} is not one this build can upgrade from"
                ),
            });
        };
        (step.apply)(path, txn).map_err(|source| StoreError::Migration {
            path: path.to_path_buf(),
            from,
            to,
            source: Box::new(source),
        })?;
        tracing::info!(
            path = %path.display(),
            from,
            to,
            step = step.description,
            "migrated database schema"
        );
    }
    write_schema_version(path, txn, target_version)?;
    Ok(true)
}

/// Classifies a redb error about the database at `path`, for `map_err`.
fn redb_error<E: Into<redb::Error>>(path: &Path) -> impl Fn(E) -> StoreError + '_ {
    move |error| StoreError::from_redb(path, error)
}

/// Reads the schema version recorded in the database, in a write or read transaction.
pub(crate) fn read_schema_version(
    path: &Path,
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<u32, StoreError> {
    match meta.get(SCHEMA_VERSION_KEY).map_err(redb_error(path))? {
        Some(bytes) => decode(path, META_TABLE, SCHEMA_VERSION_KEY, bytes.value()),
        None => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: "the meta table has no schema version".to_string(),
        }),
    }
}

fn write_schema_version(
    path: &Path,
    txn: &WriteTransaction,
    version: u32,
) -> Result<(), StoreError> {
    let bytes = encode(path, META_TABLE, SCHEMA_VERSION_KEY, &version)?;
    let mut meta = txn.open_table(META).map_err(redb_error(path))?;
    meta.insert(SCHEMA_VERSION_KEY, bytes.as_slice())
        .map_err(redb_error(path))?;
    Ok(())
}

/// Serializes a record to its stored JSON form.
pub(crate) fn encode<T: Serialize>(
    path: &Path,
    table: &'static str,
    key: &str,
    record: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|source| StoreError::Record {
        path: path.to_path_buf(),
        table,
        key: key.to_string(),
        source,
    })
}

/// Deserializes a record from its stored JSON form.
pub(crate) fn decode<T: DeserializeOwned>(
    path: &Path,
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Record {
        path: path.to_path_buf(),
        table,
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_cover_every_version_below_the_current_one() {
        let sources: Vec<u32> = MIGRATIONS.iter().map(|step| step.from).collect();
        let expected: Vec<u32> = (1..SCHEMA_VERSION).collect();
        assert_eq!(
            sources, expected,
            "MIGRATIONS must hold exactly one step from each version 1..SCHEMA_VERSION, in order"
        );
    }
}
