//! Verifying a whole log: every line, every link, every file.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::chain::{self, ChainProblem, GENESIS_PREV, LineLocation};
use super::files::{self, rotated_name};

/// What [`verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The files checked, in chain order.
    pub files: Vec<PathBuf>,
    /// How many records they hold.
    pub records: u64,
    /// The last record's sequence number (`None` for an empty log).
    pub last_seq: Option<u64>,
    /// The last record's hash (64 zeros for an empty log). Keeping this value
    /// elsewhere lets a later check detect truncation of the newest records.
    pub last_hash: String,
}

/// Why a log failed verification. Messages name the file (and line).
#[derive(Debug, Error)]
pub enum VerifyError {
    /// The first bad line, and what is wrong with it.
    #[error("{location}: {problem}")]
    Broken {
        /// The first line that fails a check.
        location: LineLocation,
        /// The failed check.
        problem: ChainProblem,
    },
    /// A rotated file is missing from the numbered sequence.
    #[error(
        "{}: missing: the rotated files must be numbered 1, 2, 3, ... without gaps; this file \
         was deleted or renamed",
        path.display()
    )]
    MissingFile {
        /// The expected path.
        path: PathBuf,
    },
    /// The directory does not exist.
    #[error("audit log directory {} does not exist", dir.display())]
    NoLog {
        /// The directory.
        dir: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot {operation} {}: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Checks the whole log in `dir`: rotated files numbered from 1 without gaps,
/// then the active file; in each, every line a well-formed record matching
/// its own hash, with the next sequence number and the previous record's hash
/// as `prev` (across files too); the first record is seq 1 with a `prev` of
/// zeros; every file ends with a newline.
///
/// Reports the first failure. An edited line fails its own hash (if the
/// editor recomputed it, the next line's `prev` fails); a deleted line shows
/// as a jump in `seq`; swapped or inserted lines break `seq` or `prev` at the
/// first line out of place. What this cannot detect alone: removal of the
/// newest records or of the whole log (compare [`VerifyReport::last_hash`]
/// with a copy kept elsewhere), and a complete rewrite of the chain by
/// someone who recomputes every hash (the hashes are not secret).
///
/// Reads every file once, line by line; blocks on file I/O.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    if !dir.is_dir() {
        return Err(VerifyError::NoLog {
            dir: dir.to_path_buf(),
        });
    }
    let log_files = files::list(dir).map_err(|source| VerifyError::Io {
        operation: "list",
        path: dir.to_path_buf(),
        source,
    })?;
    for (index, (number, _)) in log_files.rotated.iter().enumerate() {
        let expected = index as u64 + 1;
        if *number != expected {
            return Err(VerifyError::MissingFile {
                path: dir.join(rotated_name(expected)),
            });
        }
    }

    let mut report = VerifyReport {
        files: log_files.in_order(),
        records: 0,
        last_seq: None,
        last_hash: GENESIS_PREV.to_owned(),
    };
    let mut previous: Option<LineLocation> = None;
    for path in log_files.in_order() {
        let (lines, incomplete) = files::read_lines(&path).map_err(|source| VerifyError::Io {
            operation: "read",
            path: path.clone(),
            source,
        })?;
        for (index, line) in lines.iter().enumerate() {
            let location = LineLocation {
                path: path.clone(),
                line: index as u64 + 1,
            };
            let broken = |problem| VerifyError::Broken {
                location: location.clone(),
                problem,
            };
            if incomplete && index + 1 == lines.len() {
                return Err(broken(ChainProblem::Incomplete));
            }
            let entry = chain::check_line(line).map_err(broken)?;
            match report.last_seq {
                None if entry.seq != 1 || entry.prev != GENESIS_PREV => {
                    return Err(broken(ChainProblem::NotGenesis { seq: entry.seq }));
                }
                None => {}
                Some(last_seq) => {
                    if entry.seq != last_seq + 1 {
                        return Err(broken(ChainProblem::UnexpectedSeq {
                            expected: last_seq + 1,
                            found: entry.seq,
                        }));
                    }
                    if entry.prev != report.last_hash {
                        return Err(broken(ChainProblem::PrevMismatch {
                            previous: previous.clone(),
                        }));
                    }
                }
            }
            report.records += 1;
            report.last_seq = Some(entry.seq);
            report.last_hash = entry.hash;
            previous = Some(location);
        }
    }
    Ok(report)
}
