//! Writing a backup archive.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dawn_security::{NodeIdentity, PASSPHRASE_ENV, Passphrase, PassphraseError};
use dawn_store::Store;
use serde_json::{Value, json};

use super::manifest::{
    AuditSummary, FORMAT_NAME, FORMAT_VERSION, FileEntry, MANIFEST_FILE, Manifest, SIGNATURE_FILE,
};
use super::{
    ARCHIVE_EXTENSION, ARCHIVE_PREFIX, BackupError, ProgressSink, TempDirGuard, archive,
    ensure_private_dir, sync_dir, timefmt, unique_suffix,
};
use crate::config::DawnConfig;
use crate::data_dir::{DATABASE_FILE, DataDir, DataDirLock, NODE_KEY_FILE};

/// The configuration's file name in the archive.
pub(crate) const CONFIG_FILE: &str = "config.toml";
/// The audit log directory in the data directory and in the archive.
pub(crate) const AUDIT_DIR: &str = dawn_security::AUDIT_DIR;
/// zstd compression level: fast, with most of the gain.
const ZSTD_LEVEL: i32 = 3;
/// How often copying a live audit log is retried when it rotated while being copied.
const AUDIT_COPY_ATTEMPTS: usize = 5;

/// What a backup is made of: a data directory, its open database, the identity that signs,
/// and the configuration to save.
pub struct BackupSource {
    data_dir: DataDir,
    store: Store,
    identity: NodeIdentity,
    config: DawnConfig,
    /// Held for an offline backup so no node starts on the directory meanwhile.
    _lock: Option<DataDirLock>,
}

impl std::fmt::Debug for BackupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupSource")
            .field("data_dir", &self.data_dir)
            .field("node_id", &self.identity.peer_id())
            .finish_non_exhaustive()
    }
}

impl BackupSource {
    /// The source of a running node (its open database and identity).
    pub(crate) fn online(
        data_dir: DataDir,
        store: Store,
        identity: NodeIdentity,
        config: DawnConfig,
    ) -> BackupSource {
        BackupSource {
            data_dir,
            store,
            identity,
            config,
            _lock: None,
        }
    }

    /// Opens the data directory of `config` (`node.data_root`) directly, for a backup while
    /// no node runs on it. Takes the directory's lock, so it fails with
    /// [`crate::DataDirError::Locked`] if a node is running, and no node can start until the
    /// returned source is dropped.
    ///
    /// An encrypted node key is unlocked (to sign the manifest) with `passphrase`, else
    /// `$DAWN_PASSPHRASE`, else `security.passphrase_file`. The database is opened without
    /// migrating it, so the backup never changes the data it saves.
    pub fn offline(
        config: &DawnConfig,
        passphrase: Option<Passphrase>,
    ) -> Result<BackupSource, BackupError> {
        let data_dir = DataDir::new(&config.node.data_root);
        let root = data_dir.root().to_path_buf();
        if !root.is_dir() {
            return Err(BackupError::NothingToBackUp {
                root,
                detail: "the directory does not exist".into(),
            });
        }
        for (file, what) in [
            (data_dir.node_key(), "node key"),
            (data_dir.database(), "database"),
        ] {
            if !file.exists() {
                return Err(BackupError::NothingToBackUp {
                    root,
                    detail: format!("no {what} {}", file.display()),
                });
            }
        }
        let lock = data_dir.lock()?;
        let key_path = data_dir.node_key();
        let info = NodeIdentity::key_file_info(&key_path)?;
        let identity = if info.encrypted {
            let passphrase = match passphrase {
                Some(p) => p,
                None => offline_passphrase(config, &key_path)?,
            };
            NodeIdentity::load_with(&key_path, Some(&passphrase))?
        } else {
            NodeIdentity::load(&key_path)?
        };
        let store = Store::open_for_snapshot(&data_dir.database())?;
        Ok(BackupSource {
            data_dir,
            store,
            identity,
            config: config.clone(),
            _lock: Some(lock),
        })
    }

    /// The node id of the source.
    pub fn node_id(&self) -> String {
        self.identity.peer_id().to_string()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }
}

fn offline_passphrase(config: &DawnConfig, key_path: &Path) -> Result<Passphrase, BackupError> {
    match Passphrase::from_env(PASSPHRASE_ENV) {
        Ok(p) => return Ok(p),
        Err(PassphraseError::EnvNotSet { .. }) => {}
        Err(e) => return Err(BackupError::Passphrase(e.to_string())),
    }
    if let Some(file) = &config.security.passphrase_file {
        return Passphrase::from_file(file).map_err(|e| BackupError::Passphrase(e.to_string()));
    }
    Err(BackupError::Passphrase(format!(
        "{} is encrypted and the backup manifest is signed with it: set ${PASSPHRASE_ENV} (or security.passphrase_file) to its passphrase",
        key_path.display()
    )))
}

/// Options of [`create_backup`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The directory to write the archive into (created 0700 if needed). `None`: `backup.dir`
    /// of the configuration, else `<data_root>/backups`.
    pub dir: Option<PathBuf>,
    /// After writing, keep only the newest `keep` archives of this node in the directory
    /// (`None` or `Some(0)`: delete nothing).
    pub keep: Option<u32>,
}

/// What [`create_backup`] wrote.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The archive.
    pub path: PathBuf,
    /// The archive's size in bytes.
    pub bytes: u64,
    /// How long it took.
    pub duration: Duration,
    /// Its manifest.
    pub manifest: Manifest,
    /// Older archives deleted to honour the retention setting.
    pub pruned: Vec<PathBuf>,
}

impl BackupSummary {
    /// The JSON form printed by `dawn-cli backup create --json` and answered by
    /// `POST /api/v1/backup`.
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path.display().to_string(),
            "bytes": self.bytes,
            "duration_ms": u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            "node_id": self.manifest.node_id,
            "created": self.manifest.created,
            "dawn_version": self.manifest.dawn_version,
            "schema_version": self.manifest.schema_version,
            "key_encrypted": self.manifest.key_encrypted,
            "tables": self.manifest.tables,
            "audit_records": self.manifest.audit.as_ref().map(|a| a.records),
            "files": self.manifest.files,
            "pruned": self.pruned.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        })
    }
}

/// The backup directory for a configuration: `backup.dir`, else `<data_root>/backups`.
pub(crate) fn default_dir(config: &DawnConfig) -> PathBuf {
    config
        .backup
        .dir
        .clone()
        .unwrap_or_else(|| config.node.data_root.join(super::DEFAULT_BACKUP_SUBDIR))
}

/// Writes a backup archive of `source`.
///
/// The files are first gathered in a staging directory inside the target directory (the
/// database as a consistent snapshot, the key file as is, the audit log copied up to its last
/// complete record and checked, the configuration), hashed into the manifest, which is
/// signed; then the archive is written under a temporary name, synced, and renamed into
/// place, so a crash never leaves a partial archive under an archive's name. Finally older
/// archives of this node beyond `options.keep` are deleted.
pub fn create_backup(
    source: &BackupSource,
    options: &CreateOptions,
    progress: &dyn ProgressSink,
) -> Result<BackupSummary, BackupError> {
    let started = Instant::now();
    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| default_dir(&source.config));
    ensure_private_dir(&dir)?;
    let created_ms = creation_time_ms();
    let node_id = source.node_id();
    let staging =
        TempDirGuard::create(dir.join(format!(".dawn-backup-staging-{}", unique_suffix())))?;

    // 1. Gather the files.
    progress.stage("snapshot database", None);
    let snapshot = source
        .store
        .snapshot_to(&staging.path().join(DATABASE_FILE))?;
    progress.advance(snapshot.bytes);

    progress.stage("copy key, configuration and audit log", None);
    let key_path = source.data_dir.node_key();
    copy_file(&key_path, &staging.path().join(NODE_KEY_FILE))?;
    let key_encrypted = NodeIdentity::key_file_info(&key_path)?.encrypted;
    let config_text =
        toml::to_string_pretty(&source.config).map_err(|e| BackupError::Config(e.to_string()))?;
    write_private(&staging.path().join(CONFIG_FILE), config_text.as_bytes())?;
    let audit = copy_audit_log(
        &source.data_dir.root().join(AUDIT_DIR),
        &staging.path().join(AUDIT_DIR),
    )?;

    // 2. Hash them into the manifest and sign it.
    let mut paths = vec![
        DATABASE_FILE.to_owned(),
        NODE_KEY_FILE.to_owned(),
        CONFIG_FILE.to_owned(),
    ];
    if let Some((_, files)) = &audit {
        paths.extend(files.iter().map(|name| format!("{AUDIT_DIR}/{name}")));
    }
    let total: u64 = paths
        .iter()
        .map(|p| fs::metadata(staging.path().join(p)).map_or(0, |m| m.len()))
        .sum();
    progress.stage("checksum files", Some(total));
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let (size, sha256) = hash_file(&staging.path().join(&path), progress)?;
        files.push(FileEntry { path, size, sha256 });
    }
    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        node_id: node_id.clone(),
        public_key: hex::encode(source.identity.public_key().encode_protobuf()),
        created: timefmt::rfc3339(created_ms),
        created_ms,
        dawn_version: crate::VERSION.into(),
        schema_version: snapshot.schema_version,
        key_encrypted,
        tables: snapshot.tables.clone(),
        audit: audit.map(|(summary, _)| summary),
        files,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::Config(format!("cannot encode the manifest: {e}")))?;
    let signature = hex::encode(source.identity.sign(&manifest_bytes));

    // 3. Write the archive under a temporary name, then rename it into place.
    let name = archive_name(&dir, created_ms, &node_id);
    let final_path = dir.join(&name);
    let partial = dir.join(format!(".{name}.partial-{}", unique_suffix()));
    progress.stage("write archive", Some(manifest.total_bytes()));
    let written = write_archive(
        &partial,
        staging.path(),
        &manifest,
        &manifest_bytes,
        signature.as_bytes(),
        progress,
    );
    if let Err(error) = written {
        let _ = fs::remove_file(&partial);
        return Err(error);
    }
    if let Err(source) = fs::rename(&partial, &final_path) {
        let _ = fs::remove_file(&partial);
        return Err(BackupError::io("rename into place", &final_path, source));
    }
    sync_dir(&dir)?;
    drop(staging);
    let bytes = fs::metadata(&final_path)
        .map_err(|e| BackupError::io("inspect", &final_path, e))?
        .len();

    let pruned = match options.keep {
        Some(keep) if keep > 0 => prune_backups(&dir, &node_id, keep as usize)?,
        _ => Vec::new(),
    };
    tracing::info!(
        path = %final_path.display(),
        bytes,
        rows = snapshot.rows(),
        pruned = pruned.len(),
        "backup written"
    );
    Ok(BackupSummary {
        path: final_path,
        bytes,
        duration: started.elapsed(),
        manifest,
        pruned,
    })
}

/// Now in unix milliseconds, strictly increasing within this process, so archives made in
/// quick succession still order by creation time.
fn creation_time_ms() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = crate::node::now_ms();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(current) => last = current,
        }
    }
}

/// `dawn-backup-<UTC stamp>-<end of peer id>.tar.zst`, made unique in `dir`.
fn archive_name(dir: &Path, created_ms: u64, node_id: &str) -> String {
    let short = &node_id[node_id.len().saturating_sub(8)..];
    let base = format!(
        "{ARCHIVE_PREFIX}{}-{short}",
        timefmt::file_stamp(created_ms)
    );
    let mut name = format!("{base}{ARCHIVE_EXTENSION}");
    let mut n = 1;
    while dir.join(&name).exists() {
        name = format!("{base}-{n}{ARCHIVE_EXTENSION}");
        n += 1;
    }
    name
}

/// Deletes archives of node `node_id` in `dir` (files named `dawn-backup-*.tar.zst` whose
/// manifest names the node) beyond the newest `keep`. Unreadable archives and other files are
/// never deleted. Returns the deleted paths.
pub fn prune_backups(dir: &Path, node_id: &str, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let mut mine: Vec<(u64, PathBuf)> = archive::list_backups(dir)?
        .into_iter()
        .filter_map(|listing| {
            let manifest = listing.manifest.ok()?;
            let name = listing.path.file_name()?.to_str()?;
            (manifest.node_id == node_id && name.starts_with(ARCHIVE_PREFIX))
                .then_some((manifest.created_ms, listing.path))
        })
        .collect();
    mine.sort_by(|a, b| b.cmp(a));
    let mut deleted = Vec::new();
    for (_, path) in mine.into_iter().skip(keep) {
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "deleted an old backup (retention)");
                deleted.push(path);
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot delete an old backup")
            }
        }
    }
    if !deleted.is_empty() {
        sync_dir(dir)?;
    }
    Ok(deleted)
}

fn write_archive(
    target: &Path,
    staging: &Path,
    manifest: &Manifest,
    manifest_bytes: &[u8],
    signature: &[u8],
    progress: &dyn ProgressSink,
) -> Result<(), BackupError> {
    let io = |e: io::Error| BackupError::io("write archive", target, e);
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .map_err(io)?;
    let mut encoder = zstd::Encoder::new(BufWriter::new(file), ZSTD_LEVEL).map_err(io)?;
    encoder.include_checksum(true).map_err(io)?;
    let mut tar = tar::Builder::new(encoder);
    let mtime = manifest.created_ms / 1000;
    append(
        &mut tar,
        MANIFEST_FILE,
        manifest_bytes.len() as u64,
        mtime,
        manifest_bytes,
    )
    .map_err(io)?;
    append(
        &mut tar,
        SIGNATURE_FILE,
        signature.len() as u64,
        mtime,
        signature,
    )
    .map_err(io)?;
    for entry in &manifest.files {
        let path = staging.join(&entry.path);
        let file = File::open(&path).map_err(|e| BackupError::io("read", &path, e))?;
        let reader = ProgressReader {
            inner: file,
            progress,
        };
        append(&mut tar, &entry.path, entry.size, mtime, reader).map_err(io)?;
    }
    let encoder = tar.into_inner().map_err(io)?;
    let writer = encoder.finish().map_err(io)?;
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(())
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    mtime: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    tar.append_data(&mut header, path, data)
}

/// Counts bytes read into a progress sink.
struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a dyn ProgressSink,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Size and SHA-256 (hex) of a file.
pub(crate) fn hash_file(
    path: &Path,
    progress: &dyn ProgressSink,
) -> Result<(u64, String), BackupError> {
    let mut file = File::open(path).map_err(|e| BackupError::io("read", path, e))?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| BackupError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        context.update(&buf[..n]);
        size += n as u64;
        progress.advance(n as u64);
    }
    Ok((size, hex::encode(context.finish().as_ref())))
}

/// Creates `path` (0600) with `bytes`, synced.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BackupError::io("create", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| BackupError::io("write", path, e))
}

fn copy_file(from: &Path, to: &Path) -> Result<u64, BackupError> {
    let bytes = fs::read(from).map_err(|e| BackupError::io("read", from, e))?;
    write_private(to, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Whether `name` is a file of an audit log directory (`audit.jsonl`, `audit.NNNNNN.jsonl`).
fn is_audit_file(name: &str) -> bool {
    name == dawn_security::audit::ACTIVE_FILE
        || name
            .strip_prefix("audit.")
            .and_then(|rest| rest.strip_suffix(".jsonl"))
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Copies the audit log of `from` (if any) into `to`: rotated files whole, the active file up
/// to its last complete line (a writer may be appending), then verifies the copy's chain. A
/// rotation during the copy shows as a broken chain, and the copy is retried. Returns the
/// copy's chain head and its file names, or `None` if there is no log.
fn copy_audit_log(
    from: &Path,
    to: &Path,
) -> Result<Option<(AuditSummary, Vec<String>)>, BackupError> {
    if !from.is_dir() {
        return Ok(None);
    }
    let mut last_error = String::new();
    for _ in 0..AUDIT_COPY_ATTEMPTS {
        let mut names: Vec<String> = fs::read_dir(from)
            .map_err(|e| BackupError::io("list", from, e))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| is_audit_file(name))
            .collect();
        if names.is_empty() {
            return Ok(None);
        }
        names.sort();
        if to.exists() {
            fs::remove_dir_all(to).map_err(|e| BackupError::io("clear", to, e))?;
        }
        ensure_private_dir(to)?;
        let mut copied = Vec::new();
        let mut vanished = false;
        for name in &names {
            let source = from.join(name);
            let mut bytes = match fs::read(&source) {
                Ok(bytes) => bytes,
                // Rotated away between the listing and the read: start over.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    vanished = true;
                    break;
                }
                Err(e) => return Err(BackupError::io("read", &source, e)),
            };
            if name == dawn_security::audit::ACTIVE_FILE {
                let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                bytes.truncate(complete);
            }
            write_private(&to.join(name), &bytes)?;
            copied.push(name.clone());
        }
        if vanished {
            last_error = "a file was rotated away while being copied".into();
            continue;
        }
        match dawn_security::audit::verify(to) {
            Ok(report) => {
                return Ok(Some((
                    AuditSummary {
                        records: report.records,
                        last_hash: report.last_hash,
                    },
                    copied,
                )));
            }
            Err(error) => last_error = error.to_string(),
        }
    }
    Err(BackupError::AuditLog {
        dir: from.to_path_buf(),
        detail: format!(
            "the audit log does not verify ({last_error}); check it with `dawn-cli audit verify` and repair or move it aside before backing up"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_file_names() {
        assert!(is_audit_file("audit.jsonl"));
        assert!(is_audit_file("audit.000001.jsonl"));
        assert!(!is_audit_file(".audit.lock"));
        assert!(!is_audit_file("audit..jsonl"));
        assert!(!is_audit_file("audit.x.jsonl"));
    }
}
