//! The [`Store`] handle: opening the database file, transactions, and the health probe.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};

use crate::error::StoreError;
use crate::schema::{self, META, META_TABLE, Migration};

/// The key of the `meta` table that [`Store::check`] writes and reads back.
const HEALTH_PROBE_KEY: &str = "health_probe";

/// A handle on the node's database file.
///
/// Cheap to clone: clones share one open database. Every write method commits durably (the
/// data is on disk) before it returns. Methods block on file I/O, so async callers should run
/// them through `tokio::task::spawn_blocking` when they may be slow.
#[derive(Clone, Debug)]
pub struct Store {
    database: Arc<Database>,
    path: Arc<PathBuf>,
}

impl Store {
    /// Opens the database file at `path`, creating it if absent, and brings its schema up to
    /// [`SCHEMA_VERSION`](crate::SCHEMA_VERSION) by running the forward migrations.
    ///
    /// The whole file is verified against its checksums on open. A file that is not a redb
    /// database, or is damaged beyond redb's crash recovery, fails with
    /// [`StoreError::Corrupt`] and is not modified. A database written by a newer Dawn fails
    /// with [`StoreError::NewerSchema`], one held by another process with
    /// [`StoreError::Locked`]. A file left by a crash is recovered by redb as part of the open.
    /// An existing empty file is initialised as a new database. The parent directory must
    /// exist; a new file is created readable by its owner only (on Unix).
    ///
    /// The verification reads the whole file, so opening takes time proportional to its size.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Store::open_with(path.as_ref(), schema::MIGRATIONS, schema::SCHEMA_VERSION)
    }

    /// [`Store::open`] with an explicit list of migrations and target version, so tests can
    /// exercise the migration framework with steps of their own.
    pub(crate) fn open_with(
        path: &Path,
        migrations: &[Migration],
        target_version: u32,
    ) -> Result<Store, StoreError> {
        create_private_file_if_absent(path)?;
        // The integrity check verifies every page's checksum, so a file damaged outside redb is
        // reported as corrupt instead of being trusted (a plain redb open may panic on one). It
        // writes only once the file verified, or to recover from a crash as any open does.
        let database = redb::Builder::new()
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|error| StoreError::from_redb(path, error))?;
        let store = Store {
            database: Arc::new(database),
            path: Arc::new(path.to_path_buf()),
        };

        let txn = store.begin_write()?;
        if schema::prepare(path, &txn, migrations, target_version)? {
            txn.commit().map_err(|error| store.redb_error(error))?;
        } else {
            txn.abort().map_err(|error| store.redb_error(error))?;
        }
        Ok(store)
    }

    /// Wraps an already open database (for the snapshot module's unmigrated open).
    pub(crate) fn from_database(database: Database, path: &Path) -> Store {
        Store {
            database: Arc::new(database),
            path: Arc::new(path.to_path_buf()),
        }
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.read(|txn| {
            let meta = txn
                .open_table(META)
                .map_err(|error| self.redb_error(error))?;
            schema::read_schema_version(self.path(), &meta)
        })
    }

    /// Health probe: writes a fresh value under a probe key of the `meta` table, commits it,
    /// and reads it back in a new read transaction. Succeeds only if both work and agree.
    pub fn check(&self) -> Result<(), StoreError> {
        let written: u64 = self.write(|txn| {
            let mut meta = txn
                .open_table(META)
                .map_err(|error| self.redb_error(error))?;
            let previous: u64 = match meta
                .get(HEALTH_PROBE_KEY)
                .map_err(|error| self.redb_error(error))?
            {
                // A probe value that does not decode is replaced rather than reported: the
                // probe is about whether the database works now.
                Some(bytes) => serde_json::from_slice(bytes.value()).unwrap_or(0),
                None => 0,
            };
            let next = previous.wrapping_add(1);
            let bytes = schema::encode(self.path(), META_TABLE, HEALTH_PROBE_KEY, &next)?;
            meta.insert(HEALTH_PROBE_KEY, bytes.as_slice())
                .map_err(|error| self.redb_error(error))?;
            Ok(next)
        })?;

        let read_back: Option<u64> = self.read(|txn| {
            let meta = txn
                .open_table(META)
                .map_err(|error| self.redb_error(error))?;
            match meta
                .get(HEALTH_PROBE_KEY)
                .map_err(|error| self.redb_error(error))?
            {
                Some(bytes) => Ok(Some(schema::decode(
                    self.path(),
                    META_TABLE,
                    HEALTH_PROBE_KEY,
                    bytes.value(),
                )?)),
                None => Ok(None),
            }
        })?;

        if read_back == Some(written) {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: self.path.to_path_buf(),
                detail: format!(
                    "health probe wrote {written} but read back {read_back:?} after the commit"
                ),
            })
        }
    }

    /// Runs `operation` in a write transaction and commits it durably if it succeeds. If it
    /// fails, the transaction is aborted and nothing it wrote is kept.
    pub(crate) fn write<T>(
        &self,
        operation: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.begin_write()?;
        // On error `txn` is dropped uncommitted, which aborts it.
        let output = operation(&txn)?;
        txn.commit().map_err(|error| self.redb_error(error))?;
        Ok(output)
    }

    /// Runs `operation` in a read transaction (a consistent snapshot of the database).
    pub(crate) fn read<T>(
        &self,
        operation: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self
            .database
            .begin_read()
            .map_err(|error| self.redb_error(error))?;
        operation(&txn)
    }

    /// Classifies an error redb reported for this database.
    pub(crate) fn redb_error(&self, error: impl Into<redb::Error>) -> StoreError {
        StoreError::from_redb(&self.path, error)
    }

    pub(crate) fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        self.database
            .begin_write()
            .map_err(|error| self.redb_error(error))
    }
}

/// Creates an empty database file readable by its owner only, if there is none at `path`.
/// redb initialises an empty file as a new database; it would otherwise create the file with
/// the process's default permissions.
fn create_private_file_if_absent(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use redb::{ReadableTableMetadata, TableDefinition};

    use super::*;
    use crate::schema::SCHEMA_VERSION;

    const ADDED_BY_MIGRATION: TableDefinition<&str, &[u8]> =
        TableDefinition::new("added_by_migration");

    fn create_added_table(_path: &Path, txn: &WriteTransaction) -> Result<(), StoreError> {
        let mut table = txn
            .open_table(ADDED_BY_MIGRATION)
            .map_err(|error| StoreError::from_redb(Path::new("test"), error))?;
        table
            .insert("marker", b"true".as_slice())
            .map_err(|error| StoreError::from_redb(Path::new("test"), error))?;
        Ok(())
    }

    fn failing_step(_path: &Path, _txn: &WriteTransaction) -> Result<(), StoreError> {
        Err(StoreError::Corrupt {
            path: PathBuf::from("test"),
            detail: "step failed on purpose".to_string(),
        })
    }

    const STEP_1_TO_2: Migration = Migration {
        from: 1,
        description: "add the added_by_migration table",
        apply: create_added_table,
    };

    fn added_table_len(store: &Store) -> Option<u64> {
        store
            .read(|txn| match txn.open_table(ADDED_BY_MIGRATION) {
                Ok(table) => Ok(Some(table.len().map_err(|e| store.redb_error(e))?)),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(error) => Err(store.redb_error(error)),
            })
            .unwrap()
    }

    #[test]
    fn database_one_version_behind_is_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dawn.redb");
        let at_version_1 = Store::open_with(&path, &[], 1).unwrap();
        assert_eq!(at_version_1.schema_version().unwrap(), 1);
        drop(at_version_1);

        let migrated = Store::open_with(&path, &[STEP_1_TO_2], 2).unwrap();

        assert_eq!(migrated.schema_version().unwrap(), 2);
        assert_eq!(added_table_len(&migrated), Some(1));
        drop(migrated);
        // Reopening at the same version runs nothing again.
        let reopened = Store::open_with(&path, &[], 2).unwrap();
        assert_eq!(reopened.schema_version().unwrap(), 2);
    }

    #[test]
    fn several_steps_run_in_order() {
        fn step_2_to_3(_path: &Path, txn: &WriteTransaction) -> Result<(), StoreError> {
            // Relies on step 1 -> 2 having created the table in the same transaction.
            let mut table = txn
                .open_table(ADDED_BY_MIGRATION)
                .map_err(|error| StoreError::from_redb(Path::new("test"), error))?;
            table
                .insert("second", b"true".as_slice())
                .map_err(|error| StoreError::from_redb(Path::new("test"), error))?;
            Ok(())
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dawn.redb");
        drop(Store::open_with(&path, &[], 1).unwrap());
        let steps = [
            STEP_1_TO_2,
            Migration {
                from: 2,
                description: "add a second marker",
                apply: step_2_to_3,
            },
        ];

        let migrated = Store::open_with(&path, &steps, 3).unwrap();

        assert_eq!(migrated.schema_version().unwrap(), 3);
        assert_eq!(added_table_len(&migrated), Some(2));
    }

    #[test]
    fn failed_step_leaves_the_database_at_its_old_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dawn.redb");
        drop(Store::open_with(&path, &[], 1).unwrap());
        let steps = [
            STEP_1_TO_2,
            Migration {
                from: 2,
                description: "fails",
                apply: failing_step,
            },
        ];

        let error = Store::open_with(&path, &steps, 3).unwrap_err();

        match &error {
            StoreError::Migration {
                path: error_path,
                from,
                to,
                ..
            } => {
                assert_eq!(error_path, &path);
                assert_eq!((*from, *to), (2, 3));
            }
            other => panic!("expected Migration, got {other:?}"),
        }
        assert!(
            error.to_string().contains("step failed on purpose"),
            "{error}"
        );
        // Everything ran in one transaction: the first step's table is gone too.
        let store = Store::open_with(&path, &[], 1).unwrap();
        assert_eq!(store.schema_version().unwrap(), 1);
        assert_eq!(added_table_len(&store), None);
    }

    #[test]
    fn missing_step_is_reported_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dawn.redb");
        drop(Store::open_with(&path, &[], 1).unwrap());

        let error = Store::open_with(&path, &[], 2).unwrap_err();

        assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
        let store = Store::open_with(&path, &[], 1).unwrap();
        assert_eq!(store.schema_version().unwrap(), 1);
    }

    #[test]
    fn new_database_is_created_at_the_target_version_without_migrating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dawn.redb");

        let store = Store::open_with(&path, &[STEP_1_TO_2], 2).unwrap();

        assert_eq!(store.schema_version().unwrap(), 2);
        assert_eq!(added_table_len(&store), None, "no step ran");
        assert!(store.peers().unwrap().is_empty(), "current tables exist");
    }

    #[test]
    fn real_open_uses_the_current_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("dawn.redb")).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }
}
