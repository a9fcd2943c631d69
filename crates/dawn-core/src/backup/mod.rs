//! Backups of a node's state: signed `.tar.zst` archives, verification and restore.
//!
//! An archive holds a consistent snapshot of the database (taken while the node runs, see
//! [`dawn_store::Store::snapshot_to`]), the node key file exactly as it is on disk (still
//! encrypted if it was), the audit log files, the node's effective configuration
//! (`config.toml`) and a manifest:
//!
//! ```text
//! manifest.json     format version, node id and public key, creation time, Dawn version,
//!                   schema version, rows per table, audit chain head, and each file's
//!                   path, size and SHA-256
//! manifest.sig      Ed25519 signature of manifest.json's exact bytes by the node key
//! dawn.redb         the database snapshot
//! node.key          the node key file
//! config.toml       the effective configuration when the backup was made
//! audit/...         audit.000001.jsonl ... audit.jsonl
//! ```
//!
//! The manifest comes first, so listing archives reads only their first few kilobytes.
//!
//! * [`create_backup`] writes an archive (online through a running [`crate::Node`], see
//!   [`crate::Node::backup_now`], or offline from a data directory with [`BackupSource::offline`]).
//! * [`verify_archive`] checks it: format and versions, signature, every file's size and
//!   checksum, nothing missing or extra, the database opens and holds the rows the manifest
//!   lists, the key file belongs to the node that signed, and the audit chain verifies.
//! * [`restore_archive`] verifies an archive into a staging directory next to the data
//!   directory, moves the current data directory aside, and renames the staging directory
//!   into place; on any failure the original is put back.
//! * [`list_backups`] and [`prune_backups`] read and thin out a backup directory.
//!
//! Every function here blocks on file I/O; async callers use `spawn_blocking`.

mod archive;
mod create;
mod manifest;
mod restore;
pub(crate) mod schedule;
mod timefmt;

use std::path::{Path, PathBuf};

pub use archive::{BackupListing, list_backups, read_manifest};
pub use create::{BackupSource, BackupSummary, CreateOptions, create_backup, prune_backups};
pub use manifest::{FORMAT_VERSION, FileEntry, Manifest};
pub use restore::{RestoreOptions, RestoreReport, VerifyReport, restore_archive, verify_archive};
pub use schedule::{BackupRun, BackupStatus};

/// The file name extension of backup archives.
pub const ARCHIVE_EXTENSION: &str = ".tar.zst";
/// The prefix of the file names [`create_backup`] gives archives (and the only files
/// [`prune_backups`] ever deletes).
pub const ARCHIVE_PREFIX: &str = "dawn-backup-";
/// The default backup directory inside the data directory (`backup.dir` unset).
pub const DEFAULT_BACKUP_SUBDIR: &str = "backups";
/// The file name a restore gives the configuration found in the archive, inside the restored
/// data directory.
pub const RESTORED_CONFIG_FILE: &str = "config.restored.toml";

/// Why a backup, verification or restore failed. Messages name the archive and the file
/// inside it (or on disk) that is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be read, snapshotted or opened.
    #[error(transparent)]
    Store(#[from] dawn_store::StoreError),
    /// The node key could not be read.
    #[error(transparent)]
    Identity(#[from] dawn_security::IdentityError),
    /// The data directory is in use or unusable.
    #[error(transparent)]
    DataDir(#[from] crate::DataDirError),
    /// The node key is encrypted and no passphrase was given to sign with.
    #[error("{0}")]
    Passphrase(String),
    /// The data directory holds no node to back up.
    #[error("{} holds no Dawn node ({detail}); nothing to back up", root.display())]
    NothingToBackUp {
        /// The data directory.
        root: PathBuf,
        /// What is missing.
        detail: String,
    },
    /// A node runs on the data directory, so it cannot be restored into.
    #[error(
        "refusing to restore into {}: a dawn-node{pid} is running on it; stop it first (nothing was changed)",
        root.display(),
        pid = .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    NodeRunning {
        /// The data directory.
        root: PathBuf,
        /// The running node's pid, if known.
        pid: Option<u32>,
    },
    /// The file is not a Dawn backup archive.
    #[error("{} is not a Dawn backup archive: {detail}", archive.display())]
    NotABackup {
        /// The archive.
        archive: PathBuf,
        /// Why.
        detail: String,
    },
    /// A file inside the archive is damaged, missing, unexpected or altered.
    #[error("backup archive {} is damaged: {file}: {detail}", archive.display())]
    Damaged {
        /// The archive.
        archive: PathBuf,
        /// The file inside the archive (`manifest.json`, `dawn.redb`, `audit/audit.jsonl`, ...).
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// The manifest's signature does not verify.
    #[error(
        "backup archive {} has a bad signature: {detail}; the manifest was altered or signed by another key",
        archive.display()
    )]
    BadSignature {
        /// The archive.
        archive: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The archive was made by a newer Dawn than this one.
    #[error(
        "backup archive {} was made by a newer Dawn ({what} {found}; this is Dawn {this_version}, which supports {what} {supported}): upgrade Dawn to restore it",
        archive.display(),
        this_version = crate::VERSION
    )]
    NewerVersion {
        /// The archive.
        archive: PathBuf,
        /// What is newer: `Dawn version`, `backup format` or `database schema`.
        what: &'static str,
        /// The archive's value.
        found: String,
        /// This build's value.
        supported: String,
    },
    /// The archive's files are intact but do not check out (the database does not open, the
    /// audit chain is broken, the key belongs to another node, ...).
    #[error("backup archive {} failed verification: {file}: {detail}", archive.display())]
    Invalid {
        /// The archive.
        archive: PathBuf,
        /// The file inside the archive.
        file: String,
        /// What failed.
        detail: String,
    },
    /// The node's audit log does not verify, so it cannot be saved as it is.
    #[error("cannot back up the audit log {}: {detail}", dir.display())]
    AuditLog {
        /// The audit log directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Another backup of this node is being written.
    #[error("a backup of this node is already running; try again when it has finished")]
    Busy,
    /// The configuration could not be written into the archive.
    #[error("cannot write the configuration into the backup: {0}")]
    Config(String),
    /// The restore failed and the original data directory was put back.
    #[error("restore failed and was rolled back ({} is as it was): {cause}", root.display())]
    RolledBack {
        /// The data directory.
        root: PathBuf,
        /// What failed.
        cause: Box<BackupError>,
    },
    /// The restore failed and the original data could not be put back automatically.
    #[error(
        "restore failed ({cause}) and rolling back failed too ({rollback}); the original data directory is at {}: move it back to {} by hand",
        aside.display(),
        root.display()
    )]
    RollbackFailed {
        /// The data directory.
        root: PathBuf,
        /// Where the original data is.
        aside: PathBuf,
        /// What failed first.
        cause: Box<BackupError>,
        /// Why putting it back failed.
        rollback: String,
    },
}

impl BackupError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> BackupError {
        BackupError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Receives progress of long operations (a progress bar, log lines, nothing).
///
/// A stage starts with [`ProgressSink::stage`] (with a byte total if it is known) and advances
/// by [`ProgressSink::advance`] as bytes are processed.
pub trait ProgressSink: Send + Sync {
    /// A new stage begins, e.g. `snapshot database` or `write archive`.
    fn stage(&self, name: &str, total_bytes: Option<u64>);
    /// `bytes` more bytes of the current stage are done.
    fn advance(&self, bytes: u64);
}

/// A [`ProgressSink`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn stage(&self, _name: &str, _total_bytes: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
}

/// Creates a directory (and its parents) with mode 0700 if it does not exist.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), BackupError> {
    dawn_security::ensure_private_dir(dir).map_err(|e| BackupError::Io {
        action: "create directory",
        path: dir.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Fsyncs a directory so renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io("sync directory", dir, e))
}

/// A name unique to this process and moment, for staging directories and temp files.
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        crate::node::now_ms(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory removed (with its content) when dropped, unless kept.
pub(crate) struct TempDirGuard {
    path: PathBuf,
    keep: bool,
}

impl TempDirGuard {
    /// Creates `path` (mode 0700); it must not exist.
    pub(crate) fn create(path: PathBuf) -> Result<TempDirGuard, BackupError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| BackupError::io("create directory", &path, e))?;
        Ok(TempDirGuard { path, keep: false })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the guard from removing the directory.
    pub(crate) fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        if !self.keep
            && let Err(error) = std::fs::remove_dir_all(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove a temporary backup directory");
        }
    }
}
