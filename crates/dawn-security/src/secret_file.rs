//! Files that hold secrets: private directories, owner-only files, atomic
//! durable writes, and reads that refuse files other users could see.
//!
//! Every function here blocks on file I/O; async callers should run them in
//! `tokio::task::spawn_blocking`.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;
use zeroize::Zeroizing;

/// Mode of directories created by [`ensure_private_dir`]: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Mode of files written by [`write_secret_file`] and [`create_secret_file`]:
/// owner read/write only.
pub const SECRET_FILE_MODE: u32 = 0o600;

/// How many temp-file names to try before giving up (names only collide when
/// another writer is using the same directory at the same moment).
const TEMP_NAME_ATTEMPTS: u32 = 16;

/// Distinguishes temp files written by one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An error reading or writing a secret file. Every variant names the path.
#[derive(Debug, Error)]
pub enum SecretFileError {
    /// The file does not exist.
    #[error("secret file {} does not exist", path.display())]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },

    /// [`create_secret_file`] found a file already at the path and left it alone.
    #[error("secret file {} already exists; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// The file can be read or written by group or others.
    #[error(
        "secret file {} has mode {mode:04o}, which lets group or others read or write it; \
         refusing to use it. Run `chmod 600 {}` if the file is yours and was not exposed \
         (if others may have read it, replace the secret)",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The exposed file.
        path: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
    },

    /// The path exists but is not a regular file (a directory, socket, ...).
    #[error("secret file {} is not a regular file", path.display())]
    NotARegularFile {
        /// The offending path.
        path: PathBuf,
    },

    /// The directory path exists but is not a directory.
    #[error("{} exists but is not a directory", path.display())]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },

    /// An I/O operation failed.
    #[error("cannot {operation} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read", "create directory", "rename into place".
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl SecretFileError {
    fn io(operation: &'static str, path: &Path, source: io::Error) -> Self {
        SecretFileError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Creates `dir` (and any missing parents) if it does not exist, giving the
/// directory itself mode `0700`.
///
/// Missing parents get the default mode (subject to the umask). If `dir`
/// already exists its mode is left alone: an operator may have chosen it.
pub fn ensure_private_dir(dir: &Path) -> Result<(), SecretFileError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(SecretFileError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(SecretFileError::io("inspect directory", dir, e)),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(|e| SecretFileError::io("create directory", parent, e))?;
    }
    match DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir) {
        Ok(()) => {
            // The umask may have removed owner bits; set the mode exactly.
            fs::set_permissions(dir, Permissions::from_mode(PRIVATE_DIR_MODE))
                .map_err(|e| SecretFileError::io("set permissions of", dir, e))?;
            tracing::debug!(path = %dir.display(), "created private directory");
            Ok(())
        }
        // Someone else created it between our check and our create: fine.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(SecretFileError::io("create directory", dir, e)),
    }
}

/// Writes `bytes` to `path` atomically and durably, replacing any existing
/// file.
///
/// The bytes go to a new temp file (mode `0600`) in the same directory, which
/// is fsynced and then renamed over `path`; finally the directory is fsynced.
/// Readers see either the old file or the new one, never a partial write, and
/// after a crash the file is whole. The directory must already exist (see
/// [`ensure_private_dir`]).
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), SecretFileError> {
    let temp = write_temp_file(path, bytes)?;
    if let Err(e) = fs::rename(&temp, path) {
        remove_temp_file(&temp);
        return Err(SecretFileError::io("rename into place", path, e));
    }
    sync_parent_dir(path)
}

/// Writes `bytes` to `path` atomically and durably, but only if nothing exists
/// at `path`; an existing file is never touched and gives
/// [`SecretFileError::AlreadyExists`].
///
/// Like [`write_secret_file`] it writes and fsyncs a `0600` temp file first;
/// it then publishes it with a hard link, which fails rather than replace an
/// existing file. The directory must already exist and its filesystem must
/// support hard links.
pub fn create_secret_file(path: &Path, bytes: &[u8]) -> Result<(), SecretFileError> {
    let temp = write_temp_file(path, bytes)?;
    let linked = fs::hard_link(&temp, path);
    remove_temp_file(&temp);
    match linked {
        Ok(()) => sync_parent_dir(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(SecretFileError::AlreadyExists {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(SecretFileError::io("create", path, e)),
    }
}

/// Reads a secret file, refusing it if group or others may read or write it
/// (`mode & 0o077 != 0`).
///
/// Symlinks are followed; the permission check applies to the file that was
/// actually opened. The returned buffer is wiped when dropped.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    let mut file = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            SecretFileError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            SecretFileError::io("open", path, e)
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|e| SecretFileError::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(SecretFileError::NotARegularFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let capacity = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.read_to_end(&mut bytes)
        .map_err(|e| SecretFileError::io("read", path, e))?;
    Ok(bytes)
}

/// The directory that holds `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Creates, fills and fsyncs a `0600` temp file next to `path`; returns its path.
fn write_temp_file(path: &Path, bytes: &[u8]) -> Result<PathBuf, SecretFileError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| SecretFileError::NotARegularFile {
            path: path.to_path_buf(),
        })?
        .to_string_lossy();
    let dir = parent_dir(path);
    let (temp, mut file) = open_new_temp(dir, &file_name)?;
    let written = file
        .set_permissions(Permissions::from_mode(SECRET_FILE_MODE))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        remove_temp_file(&temp);
        return Err(SecretFileError::io("write", &temp, e));
    }
    Ok(temp)
}

/// Creates a new temp file named `.<file_name>.<pid>.<n>.tmp` in `dir`.
fn open_new_temp(dir: &Path, file_name: &str) -> Result<(PathBuf, File), SecretFileError> {
    let pid = std::process::id();
    let mut last_error = None;
    for _ in 0..TEMP_NAME_ATTEMPTS {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{file_name}.{pid}.{n}.tmp"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(SECRET_FILE_MODE)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(SecretFileError::io("create temp file in", dir, e)),
        }
    }
    let source = last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
    Err(SecretFileError::io("create temp file in", dir, source))
}

/// Best-effort removal of a temp file after a failure or a hard link.
fn remove_temp_file(temp: &Path) {
    if let Err(e) = fs::remove_file(temp) {
        tracing::warn!(path = %temp.display(), error = %e, "could not remove temp file");
    }
}

/// Fsyncs the directory holding `path` so a rename or link survives a crash.
fn sync_parent_dir(path: &Path) -> Result<(), SecretFileError> {
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SecretFileError::io("sync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_dir_gets_0700_and_existing_dir_keeps_its_mode() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/secrets");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode_of(&dir), 0o700);

        fs::set_permissions(&dir, Permissions::from_mode(0o750)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode_of(&dir), 0o750);
    }

    #[test]
    fn private_dir_on_a_file_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        fs::write(&file, b"x").unwrap();
        let err = ensure_private_dir(&file).unwrap_err();
        assert!(matches!(err, SecretFileError::NotADirectory { .. }));
        assert!(err.to_string().contains(&file.display().to_string()));
    }

    #[test]
    fn write_then_read_round_trips_with_0600() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("s");
        write_secret_file(&path, b"hello").unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(read_secret_file(&path).unwrap().as_slice(), b"hello");
    }

    #[test]
    fn read_refuses_group_or_other_bits() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("s");
        write_secret_file(&path, b"hello").unwrap();
        for mode in [0o640, 0o604, 0o620, 0o602, 0o644, 0o666] {
            fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
            let err = read_secret_file(&path).unwrap_err();
            assert!(
                matches!(err, SecretFileError::InsecurePermissions { mode: m, .. } if m == mode),
                "{mode:o}: {err}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
        }
        fs::set_permissions(&path, Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_secret_file(&path).unwrap().as_slice(), b"hello");
    }

    #[test]
    fn read_missing_and_directory() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("nope");
        let err = read_secret_file(&missing).unwrap_err();
        assert!(matches!(err, SecretFileError::NotFound { .. }));
        assert!(err.to_string().contains(&missing.display().to_string()));

        let dir = root.path().join("d");
        DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let err = read_secret_file(&dir).unwrap_err();
        assert!(
            matches!(err, SecretFileError::NotARegularFile { .. }),
            "{err}"
        );
    }

    #[test]
    fn create_does_not_clobber() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("s");
        create_secret_file(&path, b"first").unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let err = create_secret_file(&path, b"second").unwrap_err();
        assert!(matches!(err, SecretFileError::AlreadyExists { .. }));
        assert_eq!(fs::read(&path).unwrap(), b"first");
        let names: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temp files left behind: {names:?}");
    }

    #[test]
    fn write_into_missing_directory_names_it() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("missing/s");
        let err = write_secret_file(&path, b"x").unwrap_err();
        assert!(
            err.to_string()
                .contains(&root.path().join("missing").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn relative_bare_file_name_uses_current_dir() {
        assert_eq!(parent_dir(Path::new("node.key")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/node.key")), Path::new("/a"));
    }
}
