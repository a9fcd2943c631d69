//! The error type of the store, and the mapping from redb's errors onto it.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while opening or using a [`Store`](crate::Store).
///
/// Every variant names the database file, so an operator reading a log line knows which file
/// to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database records a schema version newer than this build knows. Opening it would
    /// risk misreading data a newer Dawn wrote, so the file is left untouched.
    #[error(
        "database {} was written by a newer Dawn (schema {found}); this build supports schema {supported} at most",
        .path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The schema version stored in the file.
        found: u32,
        /// The newest schema version this build can read ([`SCHEMA_VERSION`](crate::SCHEMA_VERSION)).
        supported: u32,
    },

    /// The file is not a readable Dawn database: not a redb file at all, truncated, damaged
    /// beyond redb's crash recovery, or a redb file without Dawn's schema metadata. The store
    /// never overwrites or repairs such a file itself.
    #[error(
        "database {} is corrupt or not a Dawn database ({detail}); the file was left as it is: restore it from a backup or move it aside",
        .path.display()
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was found wrong, as reported by redb or by the schema check.
        detail: String,
    },

    /// Another process (or another `Store` in this process) has the database open.
    #[error(
        "database {} is locked by another process; another dawn-node may be running on this data directory",
        .path.display()
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },

    /// An operating-system I/O error on the database file (permissions, missing directory,
    /// disk full, ...).
    #[error("I/O error on database {}: {source}", .path.display())]
    Io {
        /// The database file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// Any other error reported by the redb database engine.
    #[error("database error on {}: {source}", .path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// The underlying redb error.
        #[source]
        source: redb::Error,
    },

    /// A stored record could not be encoded to or decoded from its JSON form.
    #[error(
        "record {key:?} in table {table} of database {} is not valid for its type: {source}",
        .path.display()
    )]
    Record {
        /// The database file.
        path: PathBuf,
        /// The table holding the record.
        table: &'static str,
        /// The record's key.
        key: String,
        /// The underlying JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// A caller passed a value the store refuses (an empty or oversized agent state key, a
    /// namespace with a `/`, ...). Nothing was written.
    #[error("invalid input for database {}: {detail}", .path.display())]
    InvalidInput {
        /// The database file.
        path: PathBuf,
        /// What is wrong with the input.
        detail: String,
    },

    /// Writing a snapshot of the database to another file failed.
    #[error("cannot snapshot database {} to {}: {detail}", .path.display(), .target.display())]
    Snapshot {
        /// The database file.
        path: PathBuf,
        /// The snapshot file being written.
        target: PathBuf,
        /// What went wrong.
        detail: String,
    },

    /// A forward migration step failed; the database was left at schema version `from`.
    #[error(
        "migrating database {} from schema {from} to {to} failed: {source}",
        .path.display()
    )]
    Migration {
        /// The database file.
        path: PathBuf,
        /// The schema version the failed step started from.
        from: u32,
        /// The schema version the failed step was migrating to.
        to: u32,
        /// Why the step failed.
        #[source]
        source: Box<StoreError>,
    },
}

impl StoreError {
    /// Classifies an error from redb for the database file at `path`.
    ///
    /// redb reports a file that is not a redb database as an I/O error of kind `InvalidData`,
    /// and a header shorter than it expects as `UnexpectedEof`; both are corruption of the
    /// file, not failures of the operating system, so they become [`StoreError::Corrupt`].
    pub(crate) fn from_redb(path: &Path, error: impl Into<redb::Error>) -> StoreError {
        let path = path.to_path_buf();
        match error.into() {
            redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
                StoreError::Locked { path }
            }
            redb::Error::Corrupted(detail) => StoreError::Corrupt { path, detail },
            redb::Error::Io(source)
                if matches!(
                    source.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
            {
                StoreError::Corrupt {
                    path,
                    detail: source.to_string(),
                }
            }
            redb::Error::Io(source) => StoreError::Io { path, source },
            source => StoreError::Database { path, source },
        }
    }

    /// The database file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            StoreError::NewerSchema { path, .. }
            | StoreError::Corrupt { path, .. }
            | StoreError::Locked { path }
            | StoreError::Io { path, .. }
            | StoreError::Database { path, .. }
            | StoreError::Record { path, .. }
            | StoreError::Migration { path, .. }
            | StoreError::InvalidInput { path, .. }
            | StoreError::Snapshot { path, .. } => path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schema_message_names_file_and_versions() {
        let error = StoreError::NewerSchema {
            path: PathBuf::from("/x/dawn.redb"),
            found: 7,
            supported: 1,
        };
        assert_eq!(
            error.to_string(),
            "database /x/dawn.redb was written by a newer Dawn (schema 7); this build supports schema 1 at most"
        );
    }

    #[test]
    fn locked_message_mentions_another_node() {
        let error = StoreError::from_redb(
            Path::new("/x/dawn.redb"),
            redb::DatabaseError::DatabaseAlreadyOpen,
        );
        assert!(matches!(error, StoreError::Locked { .. }));
        let message = error.to_string();
        assert!(message.contains("/x/dawn.redb"), "{message}");
        assert!(message.contains("another dawn-node"), "{message}");
    }

    #[test]
    fn invalid_data_io_error_is_corruption() {
        let error = StoreError::from_redb(
            Path::new("/x/dawn.redb"),
            redb::StorageError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "Not a redb database: magic number mismatch",
            )),
        );
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
        assert_eq!(error.path(), Path::new("/x/dawn.redb"));
    }

    #[test]
    fn other_io_errors_stay_io_errors() {
        let error = StoreError::from_redb(
            Path::new("/x/dawn.redb"),
            redb::StorageError::Io(io::Error::from(io::ErrorKind::PermissionDenied)),
        );
        assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    }
}
