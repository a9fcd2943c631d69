//! Reading the newest records: [`tail`] and [`AuditFilter`].

use std::path::Path;

use super::AuditError;
use super::chain::{self, LineLocation};
use super::files;
use super::record::{AuditEntry, AuditEvent};

/// Which records to show. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only records of this event type.
    pub event: Option<AuditEvent>,
    /// Only records about this peer (exact peer id text).
    pub peer: Option<String>,
}

impl AuditFilter {
    /// Matches everything.
    pub fn all() -> Self {
        AuditFilter::default()
    }

    /// Whether `entry` passes the filter.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.event
            .as_ref()
            .is_none_or(|event| *event == entry.record.event)
            && self
                .peer
                .as_deref()
                .is_none_or(|peer| entry.record.peer.as_deref() == Some(peer))
    }
}

/// The last `n` records of the log in `dir` that match `filter`, oldest
/// first.
///
/// Reads files from the newest back, each whole (files are bounded by the
/// rotation size), until `n` records matched. Records are parsed but hashes
/// are not checked (use [`verify`](super::verify)); a line that cannot be
/// parsed is an error naming it. A missing directory or an empty log gives no
/// records. An incomplete last line (a write in progress) is skipped. Blocks
/// on file I/O.
pub fn tail(dir: &Path, n: usize, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError> {
    if n == 0 || !dir.is_dir() {
        return Ok(Vec::new());
    }
    let log_files = files::list(dir).map_err(|e| AuditError::io("list", dir, e))?;
    let mut newest_first = Vec::new();
    for path in log_files.in_order().iter().rev() {
        let (lines, incomplete) =
            files::read_lines(path).map_err(|e| AuditError::io("read", path, e))?;
        let complete = lines.len() - usize::from(incomplete);
        for (index, line) in lines[..complete].iter().enumerate().rev() {
            let entry = chain::parse_line(line).map_err(|problem| AuditError::Malformed {
                location: LineLocation {
                    path: path.clone(),
                    line: index as u64 + 1,
                },
                problem,
            })?;
            if filter.matches(&entry) {
                newest_first.push(entry);
                if newest_first.len() == n {
                    newest_first.reverse();
                    return Ok(newest_first);
                }
            }
        }
    }
    newest_first.reverse();
    Ok(newest_first)
}
