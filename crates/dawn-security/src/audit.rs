//! The security audit log: append-only JSON Lines with a hash chain.
//!
//! # Files
//!
//! A log lives in its own directory (by convention `<data_root>/audit/`,
//! created `0700`; files are `0600`). Records are appended to `audit.jsonl`.
//! When the next record would make it larger than the rotation size, it is
//! renamed to the next number, `audit.000001.jsonl`, `audit.000002.jsonl`, ...
//! (oldest first), and a new `audit.jsonl` is started. The chain continues
//! across files. A writer holds an exclusive lock on `.audit.lock` in the
//! directory.
//!
//! # Records
//!
//! One JSON object per line, fields in this order (absent optional fields
//! are omitted):
//!
//! ```text
//! {"time":"2025-01-02T03:04:05.678Z","seq":42,"event":"call_denied",
//!  "peer":"12D3KooW...","agent":"files","tool":"delete","decision":"deny",
//!  "reason":"level unknown is below the minimum trusted ...","request_id":"r-17",
//!  "details":{...},"prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! * `time`: when the writer appended it, RFC 3339 UTC with milliseconds.
//! * `seq`: 1 for the first record ever written in this directory, then +1.
//! * `event`: see [`AuditEvent`] (snake_case; unknown names from newer
//!   versions are kept as [`AuditEvent::Other`]).
//! * `peer`, `agent`, `tool`, `decision` (`allow`/`deny`), `reason`,
//!   `request_id`, `details`: optional; each string is cut to
//!   [`MAX_AUDIT_FIELD_BYTES`].
//!
//! # The hash chain
//!
//! `hash` is the hex SHA-256 of the line's *body*: the exact bytes of the
//! line without its `,"hash":"..."` member (that is, up to `"prev":"..."`
//! and a closing `}`). `prev` is the previous record's `hash`, and 64 zeros
//! for the first record. So:
//!
//! * editing any byte of a line breaks its own hash;
//! * an editor who also recomputes that hash breaks the next line's `prev`;
//! * deleting, inserting or reordering lines breaks `seq` or `prev`;
//! * deleting or renaming a rotated file leaves a gap in the file numbers or
//!   breaks the link into the next file.
//!
//! [`verify`] checks all of this and names the first bad line as
//! `file:line`. The hashes are not keyed: someone who can rewrite the whole
//! log from a point onwards (recomputing every later hash), or who cuts off
//! the newest records, is not detected from the log alone. Keep
//! [`VerifyReport::last_hash`] (or a stream of the log via [`AuditFollower`])
//! somewhere else to catch that.
//!
//! # Writing
//!
//! [`AuditLog`] appends (thread-safe; blocking). It resumes an existing chain
//! on open after checking the tail, and refuses to continue from a damaged
//! tail ([`AuditError::CorruptTail`]). By default every append (or batch) is
//! followed by `fdatasync` ([`FsyncPolicy::EveryWrite`]). Measured on the
//! project's 2-core machine (`examples/measure_security_costs.rs`, release
//! build): a synced single-record append takes about 4 ms (the sync
//! dominates; encoding and hashing a record take about 7 us), so one thread
//! appending record by record manages about 250 records/s. The [`AuditSink`]
//! writer thread therefore groups whatever is queued into one batch with one
//! sync: with batches of 100 the cost fell to about 40-50 us per record.
//! [`AuditSink`] is the handle for async code: non-blocking,
//! bounded, and never silent about what it could not write.
//!
//! # Reading
//!
//! [`tail`] returns the newest records (optionally filtered by event type or
//! peer); [`AuditFollower`] yields new records as they are appended, across
//! rotation, by polling (every 200 ms by default).

mod chain;
mod files;
mod follow;
mod record;
mod sink;
mod tail;
mod timestamp;
mod verify;
mod writer;

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use chain::{ChainProblem, GENESIS_PREV, LineLocation};
pub use files::ACTIVE_FILE;
pub use follow::{AuditFollower, DEFAULT_FOLLOW_POLL_INTERVAL};
pub use record::{
    AuditDecision, AuditEntry, AuditEvent, AuditRecord, MAX_AUDIT_FIELD_BYTES,
    ParseAuditEventError, TRUNCATION_MARK,
};
pub use sink::{
    AuditQueueFull, AuditSink, AuditSinkStats, AuditWriterStopped, AuditWriterThread,
    DEFAULT_AUDIT_QUEUE_CAPACITY,
};
pub use tail::{AuditFilter, tail};
pub use verify::{VerifyError, VerifyReport, verify};
pub use writer::{
    AuditLog, AuditLogOptions, ChainHead, DEFAULT_MAX_FILE_BYTES, FsyncPolicy, LOCK_FILE,
};

use crate::secret_file::SecretFileError;

/// The conventional name of the log directory inside the data directory.
pub const AUDIT_DIR: &str = "audit";

/// An error writing or reading the audit log. Messages name the file.
#[derive(Debug, Error)]
pub enum AuditError {
    /// The newest record is damaged, so the chain cannot be continued.
    #[error(
        "audit log {location} is damaged ({problem}); refusing to continue the hash chain \
         from it. Nothing was written. Inspect the log with `dawn-cli audit verify`; to go on, \
         restore the file from a backup, or move the damaged file aside (verification will then \
         report the gap)"
    )]
    CorruptTail {
        /// The damaged line.
        location: LineLocation,
        /// What is wrong with it.
        problem: ChainProblem,
    },

    /// Another writer holds the log directory.
    #[error(
        "audit log {} is in use by another writer (another dawn-node on this data directory?)",
        dir.display()
    )]
    Locked {
        /// The log directory.
        dir: PathBuf,
    },

    /// A line could not be parsed while reading (tail, follow).
    #[error("audit log {location} cannot be read ({problem}); run `dawn-cli audit verify`")]
    Malformed {
        /// The line.
        location: LineLocation,
        /// What is wrong with it.
        problem: ChainProblem,
    },

    /// The log directory could not be created or is not a directory.
    #[error(transparent)]
    Dir(#[from] SecretFileError),

    /// An I/O operation failed.
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

    /// A record could not be encoded (not expected to happen).
    #[error("cannot encode an audit record for {}: {source}", dir.display())]
    Encode {
        /// The log directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },

    /// An earlier failure left the active file in a state the writer could
    /// not undo; it refuses to append to it.
    #[error("the audit log writer for {} stopped: {reason}; restart to re-check the log", dir.display())]
    Broken {
        /// The log directory.
        dir: PathBuf,
        /// What happened.
        reason: String,
    },
}

impl AuditError {
    fn io(operation: &'static str, path: &Path, source: io::Error) -> AuditError {
        AuditError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }
}
