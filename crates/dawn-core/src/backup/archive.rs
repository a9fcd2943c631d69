//! Reading archives: the manifest, listing a directory, and checked extraction.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};

use super::manifest::{MANIFEST_FILE, MAX_MANIFEST_BYTES, Manifest, SIGNATURE_FILE};
use super::{ARCHIVE_EXTENSION, BackupError, ProgressSink, ensure_private_dir, sync_dir};

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// One archive found by [`list_backups`].
#[derive(Debug, Clone)]
pub struct BackupListing {
    /// The archive.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its manifest (signature not checked), or why it could not be read.
    pub manifest: Result<Manifest, String>,
}

/// The `*.tar.zst` files of `dir` with their manifests, oldest first (by creation time in the
/// manifest, then by name). Reads only the start of each archive.
pub fn list_backups(dir: &Path) -> Result<Vec<BackupListing>, BackupError> {
    let mut listings = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listings),
        Err(e) => return Err(BackupError::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| BackupError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(ARCHIVE_EXTENSION) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let manifest = read_manifest(&path).map_err(|e| e.to_string());
        listings.push(BackupListing {
            path,
            bytes: meta.len(),
            manifest,
        });
    }
    listings.sort_by(|a, b| {
        let created = |l: &BackupListing| l.manifest.as_ref().map_or(0, |m| m.created_ms);
        created(a)
            .cmp(&created(b))
            .then_with(|| a.path.cmp(&b.path))
    });
    Ok(listings)
}

/// Reads an archive's manifest without checking its signature or files.
pub fn read_manifest(archive: &Path) -> Result<Manifest, BackupError> {
    let mut tar = open_archive(archive)?;
    let mut reader = ArchiveReader::new(archive, &mut tar)?;
    let (manifest, _, _) = reader.read_manifest()?;
    Ok(manifest)
}

/// The decompressing stream of an archive file.
pub(crate) type Decoder = zstd::Decoder<'static, BufReader<File>>;

/// Opens an archive file as a tar stream, checking that it is zstd-compressed.
pub(crate) fn open_archive(path: &Path) -> Result<tar::Archive<Decoder>, BackupError> {
    let file = File::open(path).map_err(|e| BackupError::io("open", path, e))?;
    let mut buffered = BufReader::new(file);
    let mut magic = [0u8; 4];
    buffered
        .read_exact(&mut magic)
        .map_err(|_| BackupError::NotABackup {
            archive: path.to_path_buf(),
            detail: "the file is shorter than a zstd header".into(),
        })?;
    if magic != ZSTD_MAGIC {
        return Err(BackupError::NotABackup {
            archive: path.to_path_buf(),
            detail:
                "it is not zstd-compressed (expected a .tar.zst made by dawn-cli backup create)"
                    .into(),
        });
    }
    // Start again from the beginning.
    let file = File::open(path).map_err(|e| BackupError::io("open", path, e))?;
    let decoder = zstd::Decoder::new(file).map_err(|e| BackupError::Damaged {
        archive: path.to_path_buf(),
        file: MANIFEST_FILE.into(),
        detail: format!("cannot start decompressing: {e}"),
    })?;
    Ok(tar::Archive::new(decoder))
}

/// A sequential reader of an archive's entries, with errors that name the archive and the
/// entry being read.
pub(crate) struct ArchiveReader<'a> {
    path: PathBuf,
    entries: tar::Entries<'a, Decoder>,
    /// The last entry read, for errors about what follows it.
    last: String,
}

impl<'a> ArchiveReader<'a> {
    pub(crate) fn new(
        path: &Path,
        archive: &'a mut tar::Archive<Decoder>,
    ) -> Result<ArchiveReader<'a>, BackupError> {
        let entries = archive.entries().map_err(|e| BackupError::Damaged {
            archive: path.to_path_buf(),
            file: MANIFEST_FILE.into(),
            detail: e.to_string(),
        })?;
        Ok(ArchiveReader {
            path: path.to_path_buf(),
            entries,
            last: String::new(),
        })
    }

    fn damaged(&self, file: impl Into<String>, detail: impl std::fmt::Display) -> BackupError {
        BackupError::Damaged {
            archive: self.path.clone(),
            file: file.into(),
            detail: detail.to_string(),
        }
    }

    /// The next entry, or `None` at the end; `expected` names it in errors.
    fn next_entry(
        &mut self,
        expected: &str,
    ) -> Result<Option<tar::Entry<'a, Decoder>>, BackupError> {
        match self.entries.next() {
            None => Ok(None),
            Some(Ok(entry)) => Ok(Some(entry)),
            Some(Err(e)) => {
                let what = if self.last.is_empty() {
                    expected.to_owned()
                } else {
                    format!("the entry after {}", self.last)
                };
                Err(self.damaged(what, format!("cannot read it ({e})")))
            }
        }
    }

    /// Reads a small entry that must be named `name`.
    fn read_small(&mut self, name: &str) -> Result<Vec<u8>, BackupError> {
        let Some(entry) = self.next_entry(name)? else {
            return Err(self.damaged(name, "missing (the archive ends before it)"));
        };
        let path = entry_path(&entry).unwrap_or_default();
        if path != name {
            if name == MANIFEST_FILE {
                return Err(BackupError::NotABackup {
                    archive: self.path.clone(),
                    detail: format!("its first entry is {path:?}, not {MANIFEST_FILE}"),
                });
            }
            return Err(self.damaged(name, format!("missing (found {path:?} in its place)")));
        }
        if entry.header().size().unwrap_or(u64::MAX) > MAX_MANIFEST_BYTES {
            return Err(self.damaged(name, "too large"));
        }
        let mut bytes = Vec::new();
        entry
            .take(MAX_MANIFEST_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| self.damaged(name, format!("cannot read it ({e})")))?;
        self.last = name.to_owned();
        Ok(bytes)
    }

    /// Reads `manifest.json` and `manifest.sig` (the first two entries); checks the format and
    /// versions, not the signature. Returns the manifest, its bytes and the signature bytes.
    pub(crate) fn read_manifest(&mut self) -> Result<(Manifest, Vec<u8>, Vec<u8>), BackupError> {
        let manifest_bytes = self.read_small(MANIFEST_FILE)?;
        let manifest = Manifest::parse(&self.path, &manifest_bytes)?;
        let signature = self.read_small(SIGNATURE_FILE)?;
        Ok((manifest, manifest_bytes, signature))
    }

    /// Reads the manifest, checks its signature, then extracts every file into `into` (an
    /// empty directory), checking each against the manifest as it is written: only regular
    /// files at plain relative paths that the manifest lists, each once, with the listed size
    /// and SHA-256; and no listed file missing. Every written file is synced.
    pub(crate) fn extract_verified(
        mut self,
        into: &Path,
        progress: &dyn ProgressSink,
    ) -> Result<Manifest, BackupError> {
        let (manifest, manifest_bytes, signature) = self.read_manifest()?;
        manifest.verify_signature(&self.path, &manifest_bytes, &signature)?;
        progress.stage("extract and check files", Some(manifest.total_bytes()));
        let mut seen: HashSet<String> = HashSet::new();
        let mut dirs: HashSet<PathBuf> = HashSet::new();
        loop {
            let Some(mut entry) = self.next_entry("the first data file")? else {
                break;
            };
            let Some(path) = entry_path(&entry) else {
                return Err(self.damaged(
                    format!("the entry after {}", self.last),
                    "its path is not a plain relative path",
                ));
            };
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(self.damaged(&path, "not a regular file"));
            }
            let Some(listed) = manifest.file(&path) else {
                return Err(self.damaged(&path, "not listed in the manifest"));
            };
            if !seen.insert(path.clone()) {
                return Err(self.damaged(&path, "appears twice"));
            }
            let target = into.join(&path);
            if let Some(parent) = target.parent()
                && parent != into
                && dirs.insert(parent.to_path_buf())
            {
                ensure_private_dir(parent)?;
            }
            let (size, sha256) =
                copy_hashed(&mut entry, &target, progress).map_err(|e| match e {
                    CopyError::Read(e) => self.damaged(&path, format!("cannot read it ({e})")),
                    CopyError::Write(e) => BackupError::io("write", &target, e),
                })?;
            if size != listed.size {
                return Err(self.damaged(
                    &path,
                    format!("{size} bytes, but the manifest lists {}", listed.size),
                ));
            }
            if sha256 != listed.sha256 {
                return Err(self.damaged(
                    &path,
                    format!(
                        "SHA-256 {sha256} does not match the manifest's {}",
                        listed.sha256
                    ),
                ));
            }
            self.last = path;
        }
        if let Some(missing) = manifest.files.iter().find(|f| !seen.contains(&f.path)) {
            return Err(self.damaged(
                &missing.path,
                "missing (the archive ends before it: truncated?)",
            ));
        }
        for dir in dirs.iter().chain(std::iter::once(&into.to_path_buf())) {
            sync_dir(dir)?;
        }
        Ok(manifest)
    }
}

/// The entry's path if it is a plain relative path (no `..`, no root), `/`-separated.
fn entry_path<R: Read>(entry: &tar::Entry<'_, R>) -> Option<String> {
    let path = entry.path().ok()?;
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_owned()),
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into a new file `to` (0600), hashing; syncs it. Returns size and SHA-256.
fn copy_hashed(
    from: &mut impl Read,
    to: &Path,
    progress: &dyn ProgressSink,
) -> Result<(u64, String), CopyError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(CopyError::Write)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        context.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(CopyError::Write)?;
        size += n as u64;
        progress.advance(n as u64);
    }
    file.sync_all().map_err(CopyError::Write)?;
    Ok((size, hex::encode(context.finish().as_ref())))
}
