//! [`AuditLog`]: the writer that appends records, keeps the hash chain and
//! rotates files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::AuditError;
use super::chain::{self, ChainProblem, GENESIS_PREV, LineLocation};
use super::files::{self, ACTIVE_FILE};
use super::record::{AuditEntry, AuditRecord, clamp_record};
use super::timestamp::{format_rfc3339_ms, now_unix_ms};
use crate::secret_file::{self, SECRET_FILE_MODE};

/// The lock file that keeps a second writer out of a log directory.
pub const LOCK_FILE: &str = ".audit.lock";

/// Default size at which the active file is rotated: 64 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// When appended records are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// `fdatasync` after every [`AuditLog::append`] and after every
    /// [`AuditLog::append_batch`] (one sync for the whole batch). A record is
    /// on disk when the call returns. The default.
    #[default]
    EveryWrite,
    /// Only hand records to the operating system: they survive a crash of
    /// the process but not of the machine. Files are still synced before
    /// rotation.
    Never,
}

/// Options of an [`AuditLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditLogOptions {
    /// Rotate the active file before a record would make it larger than
    /// this (a single larger record still gets a file of its own).
    pub max_file_bytes: u64,
    /// When records are synced to disk.
    pub fsync: FsyncPolicy,
}

impl Default for AuditLogOptions {
    fn default() -> Self {
        AuditLogOptions {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            fsync: FsyncPolicy::EveryWrite,
        }
    }
}

/// Where the chain stands: the next record's sequence number and `prev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The sequence number the next record gets.
    pub next_seq: u64,
    /// The hash the next record's `prev` holds.
    pub prev_hash: String,
}

struct WriterState {
    active: File,
    active_size: u64,
    head: ChainHead,
    last_rotated: u64,
    /// Set when a failed write could not be undone: further appends would
    /// extend a damaged file.
    broken: Option<String>,
}

/// The audit log writer for one directory.
///
/// Appends are serialized by an internal mutex, so an `AuditLog` (in an
/// `Arc`) can be shared by threads. Every method blocks on file I/O (and,
/// with [`FsyncPolicy::EveryWrite`], on a disk sync): from async code use
/// `tokio::task::spawn_blocking`, or the non-blocking
/// [`AuditSink`](super::AuditSink). Only one `AuditLog` may write a
/// directory at a time: it holds an exclusive lock on [`LOCK_FILE`] in the
/// directory until dropped, and a second open (in this or another process)
/// fails with [`AuditError::Locked`].
pub struct AuditLog {
    dir: PathBuf,
    options: AuditLogOptions,
    state: Mutex<WriterState>,
    /// Held for the writer's lifetime; the lock is released on drop.
    _lock: File,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or starts) the log in `dir` with `max_file_bytes` rotation and
    /// [`FsyncPolicy::EveryWrite`]. See [`AuditLog::open_with`].
    pub fn open(dir: &Path, max_file_bytes: u64) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(
            dir,
            AuditLogOptions {
                max_file_bytes,
                ..AuditLogOptions::default()
            },
        )
    }

    /// Opens the log in `dir`, creating the directory (mode `0700`) if
    /// needed, and resumes the chain from the last record of the newest
    /// file.
    ///
    /// The tail is checked first: the last record must match its own hash,
    /// follow the record before it, and end with a newline. A damaged tail is
    /// an error ([`AuditError::CorruptTail`]): the writer never starts a new
    /// chain over a damaged one. The rest of the log is not read; use
    /// [`verify`](super::verify) for that.
    pub fn open_with(dir: &Path, options: AuditLogOptions) -> Result<AuditLog, AuditError> {
        secret_file::ensure_private_dir(dir)?;
        let lock = lock_dir(dir)?;
        let log_files =
            files::list(dir).map_err(|e| AuditError::io("list the audit log directory", dir, e))?;
        let head = resume_head(&log_files)?;
        let active_path = dir.join(ACTIVE_FILE);
        let active = open_active(&active_path, false)?;
        let active_size = active
            .metadata()
            .map_err(|e| AuditError::io("inspect", &active_path, e))?
            .len();
        tracing::debug!(
            dir = %dir.display(),
            next_seq = head.next_seq,
            "opened audit log"
        );
        Ok(AuditLog {
            dir: dir.to_path_buf(),
            options,
            state: Mutex::new(WriterState {
                active,
                active_size,
                head,
                last_rotated: log_files.last_rotated(),
                broken: None,
            }),
            _lock: lock,
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the log was opened with.
    pub fn options(&self) -> AuditLogOptions {
        self.options
    }

    /// Where the chain stands now.
    pub fn head(&self) -> ChainHead {
        self.lock().head.clone()
    }

    /// Appends one record, stamped with the current time, and returns it as
    /// written. Durable on return under [`FsyncPolicy::EveryWrite`].
    pub fn append(&self, record: &AuditRecord) -> Result<AuditEntry, AuditError> {
        let mut entries = self.append_batch(std::slice::from_ref(record))?;
        entries.pop().ok_or_else(|| AuditError::Broken {
            dir: self.dir.clone(),
            reason: "append wrote no record".to_owned(),
        })
    }

    /// Appends several records in order with one disk sync at the end (group
    /// commit). If a write fails, the records of this batch that were not
    /// fully written are removed again and the error is returned; records
    /// already synced (before a rotation) stay.
    pub fn append_batch(&self, records: &[AuditRecord]) -> Result<Vec<AuditEntry>, AuditError> {
        let mut state = self.lock();
        if let Some(reason) = &state.broken {
            return Err(AuditError::Broken {
                dir: self.dir.clone(),
                reason: reason.clone(),
            });
        }
        let active_path = self.dir.join(ACTIVE_FILE);
        let mut entries = Vec::with_capacity(records.len());
        let mut pending: Vec<u8> = Vec::new();
        // The chain head after the last record encoded so far.
        let mut next = state.head.clone();
        for record in records {
            let record = clamp_record(record);
            let time = format_rfc3339_ms(now_unix_ms());
            let (line, entry) =
                chain::encode_line(&record, time, next.next_seq, next.prev_hash.clone()).map_err(
                    |source| AuditError::Encode {
                        dir: self.dir.clone(),
                        source,
                    },
                )?;
            let buffered = state.active_size + pending.len() as u64;
            if buffered > 0 && buffered + line.len() as u64 + 1 > self.options.max_file_bytes {
                self.write_pending(&mut state, &active_path, &pending)?;
                pending.clear();
                state.head = next.clone();
                self.rotate(&mut state, &active_path)?;
            }
            pending.extend_from_slice(&line);
            pending.push(b'\n');
            next = ChainHead {
                next_seq: entry.seq + 1,
                prev_hash: entry.hash.clone(),
            };
            entries.push(entry);
        }
        self.write_pending(&mut state, &active_path, &pending)?;
        state.head = next;
        if self.options.fsync == FsyncPolicy::EveryWrite {
            state
                .active
                .sync_data()
                .map_err(|e| AuditError::io("sync", &active_path, e))?;
        }
        Ok(entries)
    }

    /// Forces everything appended so far to disk (useful with
    /// [`FsyncPolicy::Never`], for example at shutdown).
    pub fn sync(&self) -> Result<(), AuditError> {
        let state = self.lock();
        state
            .active
            .sync_data()
            .map_err(|e| AuditError::io("sync", &self.dir.join(ACTIVE_FILE), e))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        // A panic while holding the lock leaves the state as consistent as
        // any I/O failure would; `broken` guards the file itself.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `bytes` at the end of the active file; on failure, cuts the
    /// file back to its previous size (or marks the writer broken).
    fn write_pending(
        &self,
        state: &mut WriterState,
        active_path: &Path,
        bytes: &[u8],
    ) -> Result<(), AuditError> {
        if bytes.is_empty() {
            return Ok(());
        }
        match state.active.write_all(bytes) {
            Ok(()) => {
                state.active_size += bytes.len() as u64;
                Ok(())
            }
            Err(error) => {
                if let Err(undo) = state.active.set_len(state.active_size) {
                    let reason = format!(
                        "a write to {} failed ({error}) and the partial record could not be \
                         removed ({undo})",
                        active_path.display()
                    );
                    tracing::error!(%reason, "audit log writer is broken");
                    state.broken = Some(reason);
                }
                Err(AuditError::io("append to", active_path, error))
            }
        }
    }

    /// Renames the active file to the next rotated name and starts a new one.
    fn rotate(&self, state: &mut WriterState, active_path: &Path) -> Result<(), AuditError> {
        state
            .active
            .sync_all()
            .map_err(|e| AuditError::io("sync", active_path, e))?;
        let number = state.last_rotated + 1;
        let rotated = self.dir.join(files::rotated_name(number));
        if rotated.exists() {
            return Err(AuditError::io(
                "rotate to",
                &rotated,
                io::Error::from(io::ErrorKind::AlreadyExists),
            ));
        }
        fs::rename(active_path, &rotated)
            .map_err(|e| AuditError::io("rotate (rename) to", &rotated, e))?;
        state.last_rotated = number;
        sync_dir(&self.dir)?;
        state.active = open_active(active_path, true)?;
        state.active_size = 0;
        sync_dir(&self.dir)?;
        tracing::info!(rotated = %rotated.display(), "rotated audit log");
        Ok(())
    }
}

/// Opens the active file for appending (mode `0600` when created).
fn open_active(path: &Path, create_new: bool) -> Result<File, AuditError> {
    let mut options = OpenOptions::new();
    options.append(true).mode(SECRET_FILE_MODE);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true);
    }
    options
        .open(path)
        .map_err(|e| AuditError::io("open for appending", path, e))
}

/// Takes the directory's writer lock, without waiting.
fn lock_dir(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(SECRET_FILE_MODE)
        .open(&path)
        .map_err(|e| AuditError::io("open the lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AuditError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(AuditError::io("lock", &path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io("sync directory", dir, e))
}

/// Finds where the chain stands from the newest non-empty file, checking its
/// last record (and the link to the one before it, in the same file).
fn resume_head(log_files: &files::LogFiles) -> Result<ChainHead, AuditError> {
    for path in log_files.in_order().iter().rev() {
        let tail = files::read_tail(path).map_err(|e| AuditError::io("read", path, e))?;
        if tail.lines.is_empty() {
            continue;
        }
        let corrupt = |index: usize, problem: ChainProblem| -> AuditError {
            match tail.line_number(path, index) {
                Ok(line) => AuditError::CorruptTail {
                    location: LineLocation {
                        path: path.clone(),
                        line,
                    },
                    problem,
                },
                Err(e) => AuditError::io("read", path, e),
            }
        };
        let last_index = tail.lines.len() - 1;
        if tail.incomplete {
            return Err(corrupt(last_index, ChainProblem::Incomplete));
        }
        let last = chain::check_line(&tail.lines[last_index])
            .map_err(|problem| corrupt(last_index, problem))?;
        if last_index > 0 {
            let previous = chain::check_line(&tail.lines[last_index - 1])
                .map_err(|problem| corrupt(last_index - 1, problem))?;
            if last.seq != previous.seq + 1 {
                return Err(corrupt(
                    last_index,
                    ChainProblem::UnexpectedSeq {
                        expected: previous.seq + 1,
                        found: last.seq,
                    },
                ));
            }
            if last.prev != previous.hash {
                return Err(corrupt(
                    last_index,
                    ChainProblem::PrevMismatch { previous: None },
                ));
            }
        }
        return Ok(ChainHead {
            next_seq: last.seq + 1,
            prev_hash: last.hash,
        });
    }
    Ok(ChainHead {
        next_seq: 1,
        prev_hash: GENESIS_PREV.to_owned(),
    })
}
