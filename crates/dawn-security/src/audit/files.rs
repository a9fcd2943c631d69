//! The files of a log directory: names, chain order, and reading lines.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The file new records are appended to.
pub const ACTIVE_FILE: &str = "audit.jsonl";

/// The name of rotated file number `n` (`audit.000001.jsonl`, ...).
pub(crate) fn rotated_name(n: u64) -> String {
    format!("audit.{n:06}.jsonl")
}

/// The number of a rotated file name, if `name` is one (canonical width
/// only, so each number has one name).
fn rotated_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit.")?.strip_suffix(".jsonl")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    (rotated_name(n) == name).then_some(n)
}

/// The log files of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogFiles {
    /// Rotated files by number, ascending (oldest first).
    pub(crate) rotated: Vec<(u64, PathBuf)>,
    /// The active file, if it exists.
    pub(crate) active: Option<PathBuf>,
}

impl LogFiles {
    /// Every file in chain order: rotated by number, then the active file.
    pub(crate) fn in_order(&self) -> Vec<PathBuf> {
        self.rotated
            .iter()
            .map(|(_, path)| path.clone())
            .chain(self.active.clone())
            .collect()
    }

    /// The highest rotated number (0 if none).
    pub(crate) fn last_rotated(&self) -> u64 {
        self.rotated.last().map_or(0, |(n, _)| *n)
    }
}

/// Lists the log files of `dir` (other files are ignored).
pub(crate) fn list(dir: &Path) -> io::Result<LogFiles> {
    let mut rotated = Vec::new();
    let mut active = None;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == ACTIVE_FILE {
            active = Some(entry.path());
        } else if let Some(n) = rotated_number(name) {
            rotated.push((n, entry.path()));
        }
    }
    rotated.sort_by_key(|(n, _)| *n);
    Ok(LogFiles { rotated, active })
}

/// Reads a file's lines with their exact bytes. The second value is whether
/// the last line lacked its newline (it is still returned).
pub(crate) fn read_lines(path: &Path) -> io::Result<(Vec<Vec<u8>>, bool)> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok((lines, false));
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            lines.push(line);
        } else {
            lines.push(line);
            return Ok((lines, true));
        }
    }
}

/// The last (up to) two lines of a file, read backwards from the end, plus
/// whether the file ends without a newline. Empty files give no lines.
pub(crate) struct Tail {
    /// The lines' bytes, older first.
    pub(crate) lines: Vec<Vec<u8>>,
    /// Whether the last line has no newline.
    pub(crate) incomplete: bool,
}

impl Tail {
    /// The 1-based line number of `lines[index]` (reads the whole file: only
    /// for error messages).
    pub(crate) fn line_number(&self, path: &Path, index: usize) -> io::Result<u64> {
        let total_lines = count_newlines(path)? + u64::from(self.incomplete);
        Ok(total_lines + 1 + index as u64 - self.lines.len() as u64)
    }
}

/// Reads the tail of a file (see [`Tail`]).
pub(crate) fn read_tail(path: &Path) -> io::Result<Tail> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(Tail {
            lines: Vec::new(),
            incomplete: false,
        });
    }
    // Read backwards in growing chunks until three newlines (or the start of
    // the file) bound the last two lines.
    let mut chunk: u64 = 64 * 1024;
    let buf = loop {
        let start = len.saturating_sub(chunk);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.by_ref().take(len - start).read_to_end(&mut buf)?;
        let newlines = buf.iter().filter(|b| **b == b'\n').count();
        if start == 0 || newlines >= 3 {
            break (start, buf);
        }
        chunk = chunk.saturating_mul(4);
    };
    let (start, bytes) = buf;
    let incomplete = bytes.last() != Some(&b'\n');
    let body = if incomplete {
        &bytes[..]
    } else {
        &bytes[..bytes.len() - 1]
    };
    let mut pieces: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    if start > 0 {
        // The first piece may be a partial line.
        pieces.remove(0);
    }
    let keep = pieces.len().min(2);
    let lines = pieces[pieces.len() - keep..]
        .iter()
        .map(|p| p.to_vec())
        .collect();
    Ok(Tail { lines, incomplete })
}

/// Counts the newlines of a file.
fn count_newlines(path: &Path) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut count = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(count);
        }
        count += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

/// The first line of a file (without its newline), if it has a complete one.
pub(crate) fn read_first_line(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        Ok(Some(line))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_parse_only_in_canonical_form() {
        assert_eq!(rotated_name(1), "audit.000001.jsonl");
        assert_eq!(rotated_number("audit.000001.jsonl"), Some(1));
        assert_eq!(rotated_number("audit.1234567.jsonl"), Some(1_234_567));
        assert_eq!(rotated_number("audit.1.jsonl"), None);
        assert_eq!(rotated_number("audit.jsonl"), None);
        assert_eq!(rotated_number("audit.00000a.jsonl"), None);
    }

    #[test]
    fn tail_finds_last_two_lines_and_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"").unwrap();
        assert!(read_tail(&path).unwrap().lines.is_empty());

        fs::write(&path, b"one\n").unwrap();
        let tail = read_tail(&path).unwrap();
        assert_eq!(tail.lines, vec![b"one".to_vec()]);
        assert!(!tail.incomplete);
        assert_eq!(tail.line_number(&path, 0).unwrap(), 1);

        let mut text = String::new();
        for i in 1..=20_000 {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str("partial");
        fs::write(&path, &text).unwrap();
        let tail = read_tail(&path).unwrap();
        assert!(tail.incomplete);
        assert_eq!(
            tail.lines,
            vec![b"line 20000".to_vec(), b"partial".to_vec()]
        );
        assert_eq!(tail.line_number(&path, 0).unwrap(), 20_000);
        assert_eq!(tail.line_number(&path, 1).unwrap(), 20_001);
        let (lines, incomplete) = read_lines(&path).unwrap();
        assert_eq!(lines.len(), 20_001);
        assert!(incomplete);
    }
}
