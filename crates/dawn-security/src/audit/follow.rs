//! [`AuditFollower`]: yields records as they are appended, across rotation.
//!
//! Following polls: each poll reads whatever the current file gained since
//! the last one. When the active file has been rotated away (the path
//! `audit.jsonl` names a different file than the one being read), the old
//! file is drained and the follower moves to the next file in chain order.
//! The writer finishes every write to a file before renaming it, so nothing
//! is missed. A rotation can also rename `audit.jsonl` between listing the
//! directory and opening the file: then the path is missing for a moment, or
//! already names a later file. Either way the follower lists the directory
//! again (or waits for the next poll) instead of failing or skipping the
//! renamed file. Records are tracked by sequence number, so each is yielded
//! once. A missing log directory is an error. Hashes are not checked here;
//! use [`verify`](super::verify). When catching up (for example from
//! sequence number 1) each file is read whole into memory, which rotation
//! bounds.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read};
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

/// How often one poll lists the directory again when rotations keep racing
/// with opening a file; after that the next poll tries again.
const RACE_RETRIES: usize = 8;

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
        for _ in 0..RACE_RETRIES {
            let listing = self.listing()?;
            let paths = listing.in_order();
            let position = paths.iter().position(|path| {
                fs::metadata(path)
                    .map(|meta| meta.dev() == dev && meta.ino() == ino)
                    .unwrap_or(false)
            });
            let Some(index) = position else {
                // The file is gone (deleted by someone): find our place again.
                return self.open_for(self.next_seq);
            };
            let Some(path) = paths.get(index + 1) else {
                return Ok(None);
            };
            if let Some(next) = self.open_listed(&listing, path)? {
                return Ok(Some(next));
            }
        }
        Ok(None)
    }

    /// Opens the file that holds `seq`: the last one whose first record is at
    /// or before `seq` (the first file if all start later; an empty active
    /// file if there are no records yet).
    fn open_for(&self, seq: u64) -> Result<Option<FollowedFile>, AuditError> {
        'listing: for _ in 0..RACE_RETRIES {
            let listing = self.listing()?;
            let paths = listing.in_order();
            let mut chosen: Option<&PathBuf> = None;
            let mut first_non_empty: Option<&PathBuf> = None;
            for path in &paths {
                let first = match files::read_first_line(path) {
                    Ok(first) => first,
                    // Renamed by a rotation (or deleted) since the listing.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue 'listing,
                    Err(e) => return Err(AuditError::io("read", path, e)),
                };
                let Some(first) = first else { continue };
                first_non_empty.get_or_insert(path);
                let Ok(entry) = chain::parse_line(&first) else {
                    continue;
                };
                if entry.seq <= seq {
                    chosen = Some(path);
                }
            }
            let Some(path) = chosen.or(first_non_empty).or_else(|| paths.last()) else {
                return Ok(None);
            };
            if let Some(file) = self.open_listed(&listing, path)? {
                return Ok(Some(file));
            }
        }
        Ok(None)
    }

    /// Opens `path`, chosen from `listing`; `None` if a rotation (or a
    /// deletion) since the listing makes the choice stale: list again.
    ///
    /// Rotated files keep their names, but `audit.jsonl` is renamed by every
    /// rotation: it may be missing (renamed, its successor not created yet)
    /// or name a later file than the one listed, whose records come after
    /// those of the renamed one. A rotation always adds a rotated file, so an
    /// unchanged set of rotated files after opening proves the opened file is
    /// the one listed.
    fn open_listed(
        &self,
        listing: &files::LogFiles,
        path: &Path,
    ) -> Result<Option<FollowedFile>, AuditError> {
        let Some(file) = open_if_exists(path)? else {
            return Ok(None);
        };
        if listing.active.as_deref() == Some(path) && self.listing()?.rotated != listing.rotated {
            return Ok(None);
        }
        Ok(Some(file))
    }

    /// The log files of the directory; a missing directory is an error.
    fn listing(&self) -> Result<files::LogFiles, AuditError> {
        files::list(&self.dir).map_err(|e| AuditError::io("list", &self.dir, e))
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

/// Opens `path` for following; `None` if it does not exist.
fn open_if_exists(path: &Path) -> Result<Option<FollowedFile>, AuditError> {
    #[cfg(test)]
    tests::before_open(path);
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io("open", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| AuditError::io("inspect", path, e))?;
    Ok(Some(FollowedFile {
        file,
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
        partial: Vec::new(),
        lines_read: 0,
    }))
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

#[cfg(test)]
mod tests {
    //! Rotations that land between listing the directory and opening a file,
    //! made deterministic with a hook that runs right before the open.

    use std::cell::RefCell;

    use super::*;
    use crate::audit::{AuditEvent, AuditLog, AuditRecord};

    type Hook = Box<dyn FnOnce(&Path)>;

    thread_local! {
        static BEFORE_OPEN: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Runs (once) the hook this thread set with [`on_next_open`].
    pub(super) fn before_open(path: &Path) {
        if let Some(hook) = BEFORE_OPEN.with(|hook| hook.borrow_mut().take()) {
            hook(path);
        }
    }

    /// Runs `hook` right before the follower next opens a file.
    fn on_next_open(hook: impl FnOnce(&Path) + 'static) {
        BEFORE_OPEN.with(|slot| *slot.borrow_mut() = Some(Box::new(hook)));
    }

    fn record(i: u64) -> AuditRecord {
        AuditRecord::new(AuditEvent::CallDenied)
            .peer(format!("peer-{i}"))
            .reason(format!("reason {i}"))
    }

    const BIG: u64 = 1 << 30;

    /// A log directory with records `1..=n` in `audit.jsonl` (no writer
    /// open), and the size of that file.
    fn log_with(n: u64) -> (tempfile::TempDir, PathBuf, u64) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("audit");
        let log = AuditLog::open(&dir, BIG).unwrap();
        for i in 1..=n {
            log.append(&record(i)).unwrap();
        }
        let size = fs::metadata(dir.join(ACTIVE_FILE)).unwrap().len();
        (root, dir, size)
    }

    fn seqs(follower: &mut AuditFollower) -> Vec<u64> {
        follower.poll().unwrap().iter().map(|e| e.seq).collect()
    }

    /// What a rotation does before it creates the new active file.
    fn rename_active(dir: &Path, n: u64) {
        fs::rename(dir.join(ACTIVE_FILE), dir.join(files::rotated_name(n))).unwrap();
    }

    #[test]
    fn active_file_renamed_before_the_first_open_is_found_under_its_new_name() {
        let (_root, dir, _) = log_with(3);
        let mut follower = AuditFollower::from_seq(&dir, 1, AuditFilter::all());
        let hook_dir = dir.clone();
        on_next_open(move |path| {
            assert!(path.ends_with(ACTIVE_FILE));
            rename_active(&hook_dir, 1);
        });
        assert_eq!(seqs(&mut follower), [1, 2, 3]);
        assert!(follower.poll().unwrap().is_empty());

        // The writer creates the new active file and goes on.
        let log = AuditLog::open(&dir, BIG).unwrap();
        log.append(&record(4)).unwrap();
        assert_eq!(seqs(&mut follower), [4]);
    }

    #[test]
    fn active_file_renamed_before_moving_to_it_is_found_under_its_new_name() {
        let (_root, dir, size) = log_with(3);
        let mut follower = AuditFollower::from_seq(&dir, 1, AuditFilter::all());
        assert_eq!(seqs(&mut follower), [1, 2, 3]);
        // A rotation: 4 goes to the next file, which is then renamed too
        // while the follower is about to open it.
        let log = AuditLog::open(&dir, size).unwrap();
        log.append(&record(4)).unwrap();
        drop(log);
        let hook_dir = dir.clone();
        on_next_open(move |path| {
            assert!(path.ends_with(ACTIVE_FILE));
            rename_active(&hook_dir, 2);
        });
        assert_eq!(seqs(&mut follower), [4]);
        assert!(follower.poll().unwrap().is_empty());

        let log = AuditLog::open(&dir, BIG).unwrap();
        log.append(&record(5)).unwrap();
        assert_eq!(seqs(&mut follower), [5]);
    }

    #[test]
    fn a_whole_rotation_before_the_first_open_skips_nothing() {
        let (_root, dir, size) = log_with(3);
        let mut follower = AuditFollower::from_seq(&dir, 1, AuditFilter::all());
        // Room for four records of this size: the fifth starts a new file.
        let log = AuditLog::open(&dir, size * 3 / 2).unwrap();
        on_next_open(move |path| {
            assert!(path.ends_with(ACTIVE_FILE));
            for i in 4..=5 {
                log.append(&record(i)).unwrap();
            }
        });
        assert_eq!(seqs(&mut follower), [1, 2, 3, 4, 5]);
        assert!(dir.join(files::rotated_name(1)).exists());
    }

    #[test]
    fn a_whole_rotation_before_moving_to_the_next_file_skips_nothing() {
        let (_root, dir, size) = log_with(3);
        let mut follower = AuditFollower::from_seq(&dir, 1, AuditFilter::all());
        assert_eq!(seqs(&mut follower), [1, 2, 3]);
        let log = std::sync::Arc::new(AuditLog::open(&dir, size * 3 / 2).unwrap());
        for i in 4..=5 {
            log.append(&record(i)).unwrap();
        }
        // The follower lists 5's file as the next one; before it opens it,
        // that file fills up and is rotated as well.
        let hook_log = std::sync::Arc::clone(&log);
        on_next_open(move |path| {
            assert!(path.ends_with(ACTIVE_FILE));
            for i in 6..=9 {
                hook_log.append(&record(i)).unwrap();
            }
        });
        assert_eq!(seqs(&mut follower), [4, 5, 6, 7, 8, 9]);
        assert!(dir.join(files::rotated_name(2)).exists());
        log.append(&record(10)).unwrap();
        assert_eq!(seqs(&mut follower), [10]);
    }

    #[test]
    fn a_missing_log_directory_is_an_error() {
        let (root, dir, _) = log_with(1);
        let mut follower = AuditFollower::from_seq(&dir, 1, AuditFilter::all());
        assert_eq!(seqs(&mut follower), [1]);
        fs::remove_dir_all(&dir).unwrap();
        for mut follower in [
            follower,
            AuditFollower::from_seq(&root.path().join("nowhere"), 1, AuditFilter::all()),
        ] {
            let error = follower.poll().unwrap_err();
            assert!(
                matches!(&error, AuditError::Io { operation: "list", source, .. }
                    if source.kind() == io::ErrorKind::NotFound),
                "{error:?}"
            );
        }
    }
}
