//! Consistent online snapshots of the database, for backups.
//!
//! [`Store::snapshot_to`] copies every table, as one read transaction sees it, into a new
//! database file. Readers in redb see a fixed version of the database while writers go on,
//! so the copy is consistent (every commit is either wholly in it or wholly absent) and the
//! node keeps running and writing while it is made. The copy is a complete, compact,
//! cleanly closed redb file at the same schema version, which [`Store::open`] opens like any
//! other database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, TableError};

use crate::error::StoreError;
use crate::schema::{self, META};
use crate::store::Store;

/// What [`Store::snapshot_to`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    /// The snapshot file.
    pub path: PathBuf,
    /// The schema version of the snapshot (that of the database when it was taken).
    pub schema_version: u32,
    /// Rows per table.
    pub tables: BTreeMap<String, u64>,
    /// The snapshot file's size in bytes.
    pub bytes: u64,
}

impl SnapshotReport {
    /// Rows in all tables.
    pub fn rows(&self) -> u64 {
        self.tables.values().sum()
    }
}

impl Store {
    /// Writes a consistent copy of the whole database to a new file at `target`.
    ///
    /// `target` must not exist; its directory must. The copy reflects one moment: every
    /// commit that finished before the snapshot's read transaction began, and none after.
    /// Writers are not blocked. The file is synced before this returns. On failure the
    /// partial file is removed.
    ///
    /// Every table of the schema is keyed by strings with byte values; a table of another
    /// shape fails the snapshot with [`StoreError::Snapshot`] naming it (this crate would then
    /// have to learn to copy it).
    pub fn snapshot_to(&self, target: &Path) -> Result<SnapshotReport, StoreError> {
        let snapshot_error = |detail: String| StoreError::Snapshot {
            path: self.path().to_path_buf(),
            target: target.to_path_buf(),
            detail,
        };
        create_new_private_file(target).map_err(|e| snapshot_error(e.to_string()))?;
        let result = self.copy_into(target);
        if result.is_err() {
            let _ = std::fs::remove_file(target);
        }
        result
    }

    fn copy_into(&self, target: &Path) -> Result<SnapshotReport, StoreError> {
        let snapshot_error = |detail: String| StoreError::Snapshot {
            path: self.path().to_path_buf(),
            target: target.to_path_buf(),
            detail,
        };
        let dest = redb::Database::create(target)
            .map_err(|error| snapshot_error(format!("cannot create the snapshot file: {error}")))?;
        let mut tables = BTreeMap::new();
        let schema_version = self.read(|source| {
            if source
                .list_multimap_tables()
                .map_err(|error| self.redb_error(error))?
                .next()
                .is_some()
            {
                return Err(snapshot_error(
                    "the database holds multimap tables, which snapshots do not copy".into(),
                ));
            }
            let meta = source
                .open_table(META)
                .map_err(|error| self.redb_error(error))?;
            let schema_version = schema::read_schema_version(self.path(), &meta)?;
            drop(meta);

            let txn = dest
                .begin_write()
                .map_err(|error| snapshot_error(error.to_string()))?;
            let names: Vec<String> = source
                .list_tables()
                .map_err(|error| self.redb_error(error))?
                .map(|handle| redb::TableHandle::name(&handle).to_owned())
                .collect();
            for name in names {
                let definition: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
                let from = match source.open_table(definition) {
                    Ok(table) => table,
                    Err(TableError::TableTypeMismatch { table, key, value }) => {
                        return Err(snapshot_error(format!(
                            "table {table} has keys of type {} and values of type {}; snapshots copy only tables of string keys and byte values",
                            key.name(),
                            value.name()
                        )));
                    }
                    Err(error) => return Err(self.redb_error(error)),
                };
                let mut to = txn
                    .open_table(definition)
                    .map_err(|error| snapshot_error(error.to_string()))?;
                for row in from.iter().map_err(|error| self.redb_error(error))? {
                    let (key, value) = row.map_err(|error| self.redb_error(error))?;
                    to.insert(key.value(), value.value())
                        .map_err(|error| snapshot_error(error.to_string()))?;
                }
                let rows = from.len().map_err(|error| self.redb_error(error))?;
                tables.insert(name, rows);
            }
            txn.commit()
                .map_err(|error| snapshot_error(error.to_string()))?;
            Ok(schema_version)
        })?;
        drop(dest);
        let file = std::fs::File::open(target)
            .map_err(|e| snapshot_error(format!("cannot reopen the snapshot file: {e}")))?;
        file.sync_all()
            .map_err(|e| snapshot_error(format!("cannot sync the snapshot file: {e}")))?;
        let bytes = file
            .metadata()
            .map_err(|e| snapshot_error(e.to_string()))?
            .len();
        Ok(SnapshotReport {
            path: target.to_path_buf(),
            schema_version,
            tables,
            bytes,
        })
    }

    /// Opens an existing database to snapshot it, without creating it and without migrating
    /// it: its schema version is kept as it is (a backup never changes the data it saves).
    /// Like [`Store::open`], verifies the file and recovers it after a crash; refuses a
    /// database of a newer schema, one held by another process, or a file without Dawn's
    /// schema metadata.
    pub fn open_for_snapshot(path: &Path) -> Result<Store, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no database file"),
            });
        }
        let database = redb::Builder::new()
            .set_check_integrity_on_open(true)
            .open(path)
            .map_err(|error| StoreError::from_redb(path, error))?;
        let store = Store::from_database(database, path);
        let version = store.read(|txn| {
            let meta = match txn.open_table(META) {
                Ok(meta) => meta,
                Err(TableError::TableDoesNotExist(_)) => {
                    return Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        detail: "a redb database without Dawn's meta table".into(),
                    });
                }
                Err(error) => return Err(store.redb_error(error)),
            };
            schema::read_schema_version(path, &meta)
        })?;
        if version > crate::SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                supported: crate::SCHEMA_VERSION,
            });
        }
        Ok(store)
    }

    /// Rows per table, from one consistent read.
    pub fn table_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.read(|txn| {
            let mut counts = BTreeMap::new();
            for handle in txn.list_tables().map_err(|error| self.redb_error(error))? {
                let name = redb::TableHandle::name(&handle).to_owned();
                let table = txn
                    .open_untyped_table(handle)
                    .map_err(|error| self.redb_error(error))?;
                let rows = table.len().map_err(|error| self.redb_error(error))?;
                counts.insert(name, rows);
            }
            Ok(counts)
        })
    }
}

fn create_new_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{SCHEMA_VERSION, TrustEntry, TrustSource};

    #[test]
    fn snapshot_holds_every_table_and_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("dawn.redb")).unwrap();
        store
            .record_peer_address(
                "peer",
                "/ip4/1.2.3.4/tcp/1",
                crate::AddressSource::Manual,
                5,
            )
            .unwrap();
        store
            .put_trust_entry(&TrustEntry {
                peer_id: "peer".into(),
                level: "trusted".into(),
                note: None,
                source: TrustSource::Operator,
                updated_ms: 5,
            })
            .unwrap();
        store.agent_store("a").unwrap().put("k", b"v").unwrap();

        let target = dir.path().join("snapshot.redb");
        let report = store.snapshot_to(&target).unwrap();
        assert_eq!(report.schema_version, SCHEMA_VERSION);
        assert_eq!(report.tables["trust"], 1);
        assert_eq!(report.tables["agent_state"], 1);
        assert_eq!(report.tables, store.table_counts().unwrap());
        assert_eq!(report.bytes, std::fs::metadata(&target).unwrap().len());

        // The source keeps working; the copy opens on its own.
        store.agent_store("a").unwrap().put("later", b"x").unwrap();
        let copy = Store::open(&target).unwrap();
        assert_eq!(
            copy.agent_store("a").unwrap().get("k").unwrap().unwrap(),
            b"v"
        );
        assert_eq!(copy.agent_store("a").unwrap().get("later").unwrap(), None);
        assert_eq!(copy.trust_entry("peer").unwrap().unwrap().level, "trusted");
        assert_eq!(copy.peer("peer").unwrap().unwrap().addresses.len(), 1);
    }

    #[test]
    fn open_for_snapshot_keeps_an_older_schema_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dawn.redb");
        drop(Store::open_with(&path, &[], 1).unwrap());

        let store = Store::open_for_snapshot(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), 1);
        let report = store.snapshot_to(&dir.path().join("copy.redb")).unwrap();
        assert_eq!(report.schema_version, 1);
        drop(store);
        assert_eq!(
            Store::open_for_snapshot(&path)
                .unwrap()
                .schema_version()
                .unwrap(),
            1
        );

        let missing = Store::open_for_snapshot(&dir.path().join("absent.redb")).unwrap_err();
        assert!(matches!(missing, StoreError::Io { .. }), "{missing:?}");
        assert!(!dir.path().join("absent.redb").exists());
    }

    #[test]
    fn existing_target_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("dawn.redb")).unwrap();
        let target = dir.path().join("taken");
        std::fs::write(&target, b"precious").unwrap();
        let error = store.snapshot_to(&target).unwrap_err();
        assert!(matches!(error, StoreError::Snapshot { .. }), "{error:?}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn table_of_another_shape_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("dawn.redb")).unwrap();
        store
            .write(|txn| {
                let odd: TableDefinition<u64, u64> = TableDefinition::new("odd_shape");
                txn.open_table(odd)
                    .map_err(|error| store.redb_error(error))?
                    .insert(1, 2)
                    .map_err(|error| store.redb_error(error))?;
                Ok(())
            })
            .unwrap();
        let target = dir.path().join("snapshot.redb");
        let error = store.snapshot_to(&target).unwrap_err();
        assert!(error.to_string().contains("odd_shape"), "{error}");
        assert!(!target.exists(), "the partial snapshot is removed");
    }
}
