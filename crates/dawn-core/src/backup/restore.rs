//! Verifying an archive, and restoring one into a data directory.

use std::fs;
use std::path::{Path, PathBuf};

use dawn_security::NodeIdentity;
use dawn_store::Store;
use serde_json::{Value, json};

use super::archive::{ArchiveReader, open_archive};
use super::create::{AUDIT_DIR, CONFIG_FILE};
use super::manifest::Manifest;
use super::{
    BackupError, DEFAULT_BACKUP_SUBDIR, ProgressSink, RESTORED_CONFIG_FILE, TempDirGuard, sync_dir,
    timefmt, unique_suffix,
};
use crate::data_dir::{API_TOKEN_FILE, DATABASE_FILE, DataDir, DataDirError, NODE_KEY_FILE};

/// What [`verify_archive`] checked.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The archive.
    pub archive: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its manifest.
    pub manifest: Manifest,
    /// One line per check that passed.
    pub checks: Vec<String>,
}

impl VerifyReport {
    /// The JSON form printed by `dawn-cli backup verify --json`.
    pub fn to_json(&self) -> Value {
        json!({
            "archive": self.archive.display().to_string(),
            "ok": true,
            "bytes": self.bytes,
            "node_id": self.manifest.node_id,
            "created": self.manifest.created,
            "dawn_version": self.manifest.dawn_version,
            "format_version": self.manifest.format_version,
            "schema_version": self.manifest.schema_version,
            "key_encrypted": self.manifest.key_encrypted,
            "tables": self.manifest.tables,
            "audit_records": self.manifest.audit.as_ref().map(|a| a.records),
            "files": self.manifest.files,
            "checks": self.checks,
        })
    }
}

/// Checks an archive completely, extracting it into a temporary directory (under the system's
/// temp directory) that is removed afterwards:
///
/// 1. it is a Dawn backup of a format, Dawn version and schema this build supports;
/// 2. the manifest's public key belongs to its node id and its signature verifies;
/// 3. every file is listed, present once, a regular file at a plain path, of the listed size
///    and SHA-256, and no listed file is missing;
/// 4. the database opens (its pages verify) and holds the rows the manifest lists;
/// 5. the key file belongs to the node that signed;
/// 6. the audit log's chain verifies and ends at the head the manifest recorded;
/// 7. the configuration is valid TOML.
///
/// The first failure is returned, naming the file.
pub fn verify_archive(
    archive: &Path,
    progress: &dyn ProgressSink,
) -> Result<VerifyReport, BackupError> {
    let staging = TempDirGuard::create(
        std::env::temp_dir().join(format!("dawn-backup-verify-{}", unique_suffix())),
    )?;
    check_into(archive, staging.path(), progress)
}

/// Extracts and checks `archive` into the empty directory `into` (see [`verify_archive`]).
fn check_into(
    archive: &Path,
    into: &Path,
    progress: &dyn ProgressSink,
) -> Result<VerifyReport, BackupError> {
    let bytes = fs::metadata(archive)
        .map_err(|e| BackupError::io("open", archive, e))?
        .len();
    progress.stage("read manifest", None);
    let mut tar = open_archive(archive)?;
    let reader = ArchiveReader::new(archive, &mut tar)?;
    let manifest = reader.extract_verified(into, progress)?;
    let mut checks = vec![
        format!(
            "format {} from Dawn {}, schema {}",
            manifest.format_version, manifest.dawn_version, manifest.schema_version
        ),
        format!("signature by {}", manifest.node_id),
        format!(
            "{} files, sizes and SHA-256 checksums",
            manifest.files.len()
        ),
    ];
    let invalid = |file: &str, detail: String| BackupError::Invalid {
        archive: archive.to_path_buf(),
        file: file.to_owned(),
        detail,
    };

    progress.stage("open database", None);
    {
        let path = into.join(DATABASE_FILE);
        if manifest.file(DATABASE_FILE).is_none() {
            return Err(invalid(
                DATABASE_FILE,
                "the manifest lists no database".into(),
            ));
        }
        let store = Store::open(&path).map_err(|e| invalid(DATABASE_FILE, e.to_string()))?;
        let counts = store
            .table_counts()
            .map_err(|e| invalid(DATABASE_FILE, e.to_string()))?;
        for (table, rows) in &manifest.tables {
            let found = counts.get(table).copied();
            if found != Some(*rows) {
                return Err(invalid(
                    DATABASE_FILE,
                    format!(
                        "table {table} holds {} rows, but the manifest lists {rows}",
                        found.map_or_else(|| "no".to_owned(), |n| n.to_string())
                    ),
                ));
            }
        }
        let rows: u64 = manifest.tables.values().sum();
        checks.push(format!(
            "database opens: {} tables, {rows} rows",
            manifest.tables.len()
        ));
    }

    {
        let path = into.join(NODE_KEY_FILE);
        if manifest.file(NODE_KEY_FILE).is_none() {
            return Err(invalid(
                NODE_KEY_FILE,
                "the manifest lists no node key".into(),
            ));
        }
        let info = NodeIdentity::key_file_info(&path)
            .map_err(|e| invalid(NODE_KEY_FILE, e.to_string()))?;
        if info.peer_id.to_string() != manifest.node_id {
            return Err(invalid(
                NODE_KEY_FILE,
                format!(
                    "the key belongs to {}, but the archive was signed by {}",
                    info.peer_id, manifest.node_id
                ),
            ));
        }
        if info.encrypted != manifest.key_encrypted {
            return Err(invalid(
                NODE_KEY_FILE,
                "its encryption does not match the manifest".into(),
            ));
        }
        checks.push(format!(
            "node key of {} ({})",
            manifest.node_id,
            if info.encrypted {
                "encrypted"
            } else {
                "not encrypted"
            }
        ));
    }

    match &manifest.audit {
        Some(expected) => {
            progress.stage("verify audit chain", None);
            let report = dawn_security::audit::verify(&into.join(AUDIT_DIR))
                .map_err(|e| invalid(AUDIT_DIR, format!("the audit chain does not verify: {e}")))?;
            if report.records != expected.records || report.last_hash != expected.last_hash {
                return Err(invalid(
                    AUDIT_DIR,
                    format!(
                        "the audit log holds {} records ending in {}, but the manifest recorded {} ending in {}",
                        report.records, report.last_hash, expected.records, expected.last_hash
                    ),
                ));
            }
            checks.push(format!("audit chain: {} records", report.records));
        }
        None => checks.push("no audit log in the archive".into()),
    }

    if manifest.file(CONFIG_FILE).is_some() {
        let path = into.join(CONFIG_FILE);
        let text = fs::read_to_string(&path).map_err(|e| invalid(CONFIG_FILE, e.to_string()))?;
        toml::from_str::<toml::Table>(&text).map_err(|e| invalid(CONFIG_FILE, e.to_string()))?;
        checks.push("configuration is valid TOML".into());
    }

    Ok(VerifyReport {
        archive: archive.to_path_buf(),
        bytes,
        manifest,
        checks,
    })
}

/// Options of [`restore_archive`].
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Testing only: fail after the current data directory was moved aside and before the
    /// restored one is moved into place, to exercise the rollback.
    #[doc(hidden)]
    pub fail_before_swap: bool,
}

/// What [`restore_archive`] did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The restored data directory.
    pub data_root: PathBuf,
    /// Where the previous data directory was moved (kept), if there was one.
    pub previous: Option<PathBuf>,
    /// The configuration saved in the archive, written into the restored directory.
    pub restored_config: Option<PathBuf>,
    /// What was checked before restoring.
    pub verified: VerifyReport,
}

impl RestoreReport {
    /// The JSON form printed by `dawn-cli backup restore --json`.
    pub fn to_json(&self) -> Value {
        json!({
            "data_root": self.data_root.display().to_string(),
            "previous_data_moved_to": self.previous.as_ref().map(|p| p.display().to_string()),
            "restored_config": self.restored_config.as_ref().map(|p| p.display().to_string()),
            "node_id": self.verified.manifest.node_id,
            "created": self.verified.manifest.created,
            "dawn_version": self.verified.manifest.dawn_version,
            "tables": self.verified.manifest.tables,
            "checks": self.verified.checks,
        })
    }
}

/// Restores `archive` into the data directory `data_root`.
///
/// Refuses while a node runs on `data_root` ([`BackupError::NodeRunning`]). The archive is
/// extracted and fully checked (see [`verify_archive`]) into a staging directory next to
/// `data_root`; a bad archive stops the restore there, with `data_root` untouched. The current
/// `data_root`, if any, is then renamed to `<data_root>.pre-restore-<time>` (kept, reported in
/// [`RestoreReport::previous`]), and the staging directory is renamed to `data_root`. Both are
/// renames within one directory, so each is atomic; if the second fails, the first is undone.
///
/// Carried over from the current data directory: `api.token` (clients keep working) and the
/// `backups` directory (moved, so archives stay where `backup list` looks). The archive's
/// configuration is written as [`RESTORED_CONFIG_FILE`]; the node does not read it unless
/// given it with `--config`.
pub fn restore_archive(
    archive: &Path,
    data_root: &Path,
    options: &RestoreOptions,
    progress: &dyn ProgressSink,
) -> Result<RestoreReport, BackupError> {
    let root = absolute(data_root)?;
    let (parent, name) = match (root.parent(), root.file_name().and_then(|n| n.to_str())) {
        (Some(parent), Some(name)) => (parent.to_path_buf(), name.to_owned()),
        _ => {
            return Err(BackupError::io(
                "restore into",
                &root,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a directory path with a name",
                ),
            ));
        }
    };
    fs::create_dir_all(&parent).map_err(|e| BackupError::io("create directory", &parent, e))?;
    let data_dir = DataDir::new(&root);
    let exists = match fs::symlink_metadata(&root) {
        Ok(meta) if meta.is_dir() => true,
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(BackupError::io(
                "restore into",
                &root,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "it is a symbolic link; restore into the directory it points to (pass that as --data-root)",
                ),
            ));
        }
        Ok(_) => {
            return Err(BackupError::io(
                "restore into",
                &root,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a directory"),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(BackupError::io("inspect", &root, e)),
    };
    // Held until the end: no node can start on the current directory meanwhile.
    let current_lock = if exists {
        Some(data_dir.lock().map_err(|e| match e {
            DataDirError::Locked { root, pid } => BackupError::NodeRunning { root, pid },
            other => BackupError::DataDir(other),
        })?)
    } else {
        None
    };

    let staging =
        TempDirGuard::create(parent.join(format!(".{name}.restore-{}", unique_suffix())))?;
    let verified = check_into(archive, staging.path(), progress)?;

    progress.stage("restore", None);
    let restored_config = if verified.manifest.file(CONFIG_FILE).is_some() {
        let from = staging.path().join(CONFIG_FILE);
        let to = staging.path().join(RESTORED_CONFIG_FILE);
        fs::rename(&from, &to).map_err(|e| BackupError::io("rename", &from, e))?;
        Some(root.join(RESTORED_CONFIG_FILE))
    } else {
        None
    };
    if exists && data_dir.api_token().is_file() {
        let token = fs::read(data_dir.api_token())
            .map_err(|e| BackupError::io("read", &data_dir.api_token(), e))?;
        super::create::write_private(&staging.path().join(API_TOKEN_FILE), &token)?;
    }
    // The restored directory is locked before it takes the data directory's place.
    let restored_lock = DataDir::new(staging.path()).lock()?;
    sync_dir(staging.path())?;

    let previous = parent.join(format!(
        "{name}.pre-restore-{}",
        timefmt::file_stamp(crate::node::now_ms())
    ));
    let previous = unused(previous);
    let swapped = swap_into_place(&root, exists, staging.path(), &previous, options);
    let synced = sync_dir(&parent);
    // The previous directory's lock first: dropping a lock removes `api.addr` by path, and the
    // path is the restored directory's now, which stays locked until the end.
    drop(current_lock);
    drop(restored_lock);
    if let Err(error) = synced {
        tracing::warn!(%error, "cannot sync the data directory's parent after the restore");
    }
    match swapped {
        Ok(()) => {
            let _ = staging.keep();
            tracing::info!(
                data_root = %root.display(),
                previous = %previous.display(),
                node_id = %verified.manifest.node_id,
                "restored a backup"
            );
            Ok(RestoreReport {
                data_root: root,
                previous: exists.then_some(previous),
                restored_config,
                verified,
            })
        }
        Err(error) => Err(error),
    }
}

/// Moves `root` (if it exists) to `previous`, its `backups` directory into `staging`, and
/// `staging` to `root`; undoes the completed steps if one fails.
fn swap_into_place(
    root: &Path,
    exists: bool,
    staging: &Path,
    previous: &Path,
    options: &RestoreOptions,
) -> Result<(), BackupError> {
    if !exists {
        return fs::rename(staging, root).map_err(|e| BackupError::io("move into place", root, e));
    }
    fs::rename(root, previous).map_err(|e| BackupError::io("move aside", root, e))?;
    let old_backups = previous.join(DEFAULT_BACKUP_SUBDIR);
    let new_backups = staging.join(DEFAULT_BACKUP_SUBDIR);
    let moved_backups = old_backups.is_dir() && fs::rename(&old_backups, &new_backups).is_ok();

    let result = if options.fail_before_swap {
        Err(BackupError::io(
            "move into place",
            root,
            std::io::Error::other("simulated failure (RestoreOptions::fail_before_swap)"),
        ))
    } else {
        fs::rename(staging, root).map_err(|e| BackupError::io("move into place", root, e))
    };
    let Err(cause) = result else {
        return Ok(());
    };
    // Roll back: the backups directory first, then the data directory.
    if moved_backups && let Err(e) = fs::rename(&new_backups, &old_backups) {
        tracing::warn!(error = %e, "cannot move the backups directory back during rollback");
    }
    match fs::rename(previous, root) {
        Ok(()) => Err(BackupError::RolledBack {
            root: root.to_path_buf(),
            cause: Box::new(cause),
        }),
        Err(e) => Err(BackupError::RollbackFailed {
            root: root.to_path_buf(),
            aside: previous.to_path_buf(),
            cause: Box::new(cause),
            rollback: e.to_string(),
        }),
    }
}

/// `path`, or `path-1`, `path-2`, ... whichever does not exist.
fn unused(path: PathBuf) -> PathBuf {
    if !path.exists() {
        return path;
    }
    let mut n = 1;
    loop {
        let candidate = PathBuf::from(format!("{}-{n}", path.display()));
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

fn absolute(path: &Path) -> Result<PathBuf, BackupError> {
    std::path::absolute(path).map_err(|e| BackupError::io("resolve", path, e))
}
