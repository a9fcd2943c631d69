//! [`AuditFollower`]: yields records as they are appended, across rotation.
//!
//! Following polls: each poll reads whatever the current file gained since
//! the last one. When the active file has been rotated away (the path
//! `audit.jsonl` names a different file than the one being read), the old
//! file is drained and the follower moves to the next file in chain order.
//! The writer finishes every write to a file before renaming it, so nothing
//! is missed. Records are tracked by sequence number, so each is yielded
//! once. Hashes are not checked here; use [`verify`](super::verify). When
//! catching up (for example from sequence number 1) each file is read whole
//! into memory, which rotation bounds.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::AuditError;
use super::chain::{self, LineLocation};
use super::files::{self, ACTIVE_FILE};
use super::record::AuditEntry;
use super::tail::AuditFilter;

/// How often a follower looks for new records unless told otherwise.
pub const DEFAULT_FOLLOW_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A file being followed.
struct FollowedFile {
    file: File,
    /// Its path when it was opened (it may have been renamed since).
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Bytes after the last newline read.
    partial: Vec<u8>,
    /// Complete lines read so far, for error locations.
    lines_read: u64,
}

/// Follows a log directory, yielding new records (that match a filter) in
/// order.
///
/// [`AuditFollower::poll`] never blocks on new records; the [`Iterator`]
/// implementation blocks, sleeping `poll_interval` between polls, and never
/// ends (an error is yielded and the next call tries again).
/// [`AuditFollower::next_timeout`] waits at most a given time. All block on
/// file I/O.
pub struct AuditFollower {
    dir: PathBuf,
    filter: AuditFilter,
    poll_interval: Duration,
    next_seq: u64,
    current: Option<FollowedFile>,
    ready: VecDeque<AuditEntry>,
}

impl std::fmt::Debug for AuditFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditFollower")
            .field("dir", &self.dir)
            .field("filter", &self.filter)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl AuditFollower {
    /// Follows records appended after the current last one.
    pub fn from_end(dir: &Path, filter: AuditFilter) -> Result<Self, AuditError> {
        let next_seq = last_seq(dir)?.map_or(1, |seq| seq + 1);
        Ok(Self::from_seq(dir, next_seq, filter))
    }

    /// Follows records from sequence number `next_seq` on (for example one
    /// past the last record [`tail`](super::tail) showed; 1 for everything).
    pub fn from_seq(dir: &Path, next_seq: u64, filter: AuditFilter) -> Self {
        AuditFollower {
            dir: dir.to_path_buf(),
            filter,
            poll_interval: DEFAULT_FOLLOW_POLL_INTERVAL,
            next_seq,
            current: None,
            ready: VecDeque::new(),
        }
    }

    /// Sets how long the blocking methods sleep between polls.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The sequence number of the next record to read.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Every matching record appended since the last call (possibly none).
    pub fn poll(&mut self) -> Result<Vec<AuditEntry>, AuditError> {
        self.fill()?;
        Ok(self.ready.drain(..).collect())
    }

    /// The next matching record, waiting up to `timeout` for one.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<AuditEntry>, AuditError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(entry) = self.ready.pop_front() {
                return Ok(Some(entry));
            }
            self.fill()?;
            if let Some(entry) = self.ready.pop_front() {
                return Ok(Some(entry));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            thread::sleep(self.poll_interval.min(deadline - now));
        }
    }

    /// Reads everything available into `ready`.
    fn fill(&mut self) -> Result<(), AuditError> {
        loop {
            if self.current.is_none() {
                self.current = self.open_for(self.next_seq)?;
            }
            let Some(current) = self.current.as_ref() else {
                return Ok(());
            };
            let (dev, ino) = (current.dev, current.ino);
            self.read_available()?;
            if self.is_active(dev, ino) {
                return Ok(());
            }
            // Rotated away (or a rotated file we started in): whatever was
            // written to it was written before it was renamed, so one more
            // read drains it.
            self.read_available()?;
            match self.file_after(dev, ino)? {
                Some(next) => self.current = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Reads the current file's new complete lines.
    fn read_available(&mut self) -> Result<(), AuditError> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        current
            .file
            .read_to_end(&mut bytes)
            .map_err(|e| AuditError::io("read", &current.path, e))?;
        if bytes.is_empty() {
            return Ok(());
        }
        current.partial.extend_from_slice(&bytes);
        let Some(last_newline) = current.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        let rest = current.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut current.partial, rest);
        for line in complete[..complete.len() - 1].split(|b| *b == b'\n') {
            current.lines_read += 1;
            let entry = chain::parse_line(line).map_err(|problem| AuditError::Malformed {
                location: LineLocation {
                    path: current.path.clone(),
                    line: current.lines_read,
                },
                problem,
            })?;
            if entry.seq < self.next_seq {
                continue;
            }
            self.next_seq = entry.seq + 1;
            if self.filter.matches(&entry) {
                self.ready.push_back(entry);
            }
        }
        Ok(())
    }

    /// Whether `audit.jsonl` is currently the file `(dev, ino)`.
    fn is_active(&self, dev: u64, ino: u64) -> bool {
        fs::metadata(self.dir.join(ACTIVE_FILE))
            .map(|meta| meta.dev() == dev && meta.ino() == ino)
            .unwrap_or(false)
    }

    /// The file after `(dev, ino)` in chain order, if one exists yet.
    fn file_after(&self, dev: u64, ino: u64) -> Result<Option<FollowedFile>, AuditError> {
        let paths = self.chain_order()?;
        let position = paths.iter().position(|path| {
            fs::metadata(path)
                .map(|meta| meta.dev() == dev && meta.ino() == ino)
                .unwrap_or(false)
        });
        match position {
            Some(index) => match paths.get(index + 1) {
                Some(path) => open_followed(path).map(Some),
                None => Ok(None),
            },
            // The file is gone (deleted by someone): find our place again.
            None => self.open_for(self.next_seq),
        }
    }

    /// Opens the file that holds `seq`: the last one whose first record is at
    /// or before `seq` (the first file if all start later; an empty active
    /// file if there are no records yet).
    fn open_for(&self, seq: u64) -> Result<Option<FollowedFile>, AuditError> {
        let paths = self.chain_order()?;
        let mut chosen: Option<&PathBuf> = None;
        let mut first_non_empty: Option<&PathBuf> = None;
        for path in &paths {
            let first =
                files::read_first_line(path).map_err(|e| AuditError::io("read", path, e))?;
            let Some(first) = first else { continue };
            first_non_empty.get_or_insert(path);
            let Ok(entry) = chain::parse_line(&first) else {
                continue;
            };
            if entry.seq <= seq {
                chosen = Some(path);
            }
        }
        let chosen = chosen.or(first_non_empty).or_else(|| paths.last()).cloned();
        chosen.map(|path| open_followed(&path)).transpose()
    }

    fn chain_order(&self) -> Result<Vec<PathBuf>, AuditError> {
        if !self.dir.is_dir() {
            return Ok(Vec::new());
        }
        files::list(&self.dir)
            .map(|log_files| log_files.in_order())
            .map_err(|e| AuditError::io("list", &self.dir, e))
    }
}

impl Iterator for AuditFollower {
    type Item = Result<AuditEntry, AuditError>;

    /// Blocks until the next matching record (or an error).
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.ready.pop_front() {
                return Some(Ok(entry));
            }
            if let Err(error) = self.fill() {
                return Some(Err(error));
            }
            if self.ready.is_empty() {
                thread::sleep(self.poll_interval);
            }
        }
    }
}

fn open_followed(path: &Path) -> Result<FollowedFile, AuditError> {
    let file = File::open(path).map_err(|e| AuditError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| AuditError::io("inspect", path, e))?;
    Ok(FollowedFile {
        file,
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
        partial: Vec::new(),
        lines_read: 0,
    })
}

/// The sequence number of the last complete record of the log, if any.
fn last_seq(dir: &Path) -> Result<Option<u64>, AuditError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let log_files = files::list(dir).map_err(|e| AuditError::io("list", dir, e))?;
    for path in log_files.in_order().iter().rev() {
        let tail = files::read_tail(path).map_err(|e| AuditError::io("read", path, e))?;
        let complete = tail.lines.len() - usize::from(tail.incomplete);
        if let Some(line) = tail.lines[..complete].last() {
            let entry = chain::parse_line(line).map_err(|problem| {
                let line = tail.line_number(path, complete - 1).unwrap_or(0);
                AuditError::Malformed {
                    location: LineLocation {
                        path: path.clone(),
                        line,
                    },
                    problem,
                }
            })?;
            return Ok(Some(entry.seq));
        }
    }
    Ok(None)
}
