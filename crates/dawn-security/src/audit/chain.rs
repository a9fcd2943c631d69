//! One line of the log: encoding a record, its hash, and checking a line.
//!
//! A line is the JSON object of the record's fields in a fixed order, ending
//! with `"prev"`, then `"hash"`:
//!
//! ```text
//! {"time":"...","seq":7,"event":"call_denied",...,"prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! `hash` is the SHA-256 of the *body*: the exact bytes of the line up to
//! (not including) `,"hash":"...` followed by a closing `}`; that is, the
//! same object without its hash field. Checking a line needs no JSON
//! canonicalisation: cut the fixed-length suffix, re-add `}`, hash.

use std::fmt;
use std::path::PathBuf;

use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::record::{AuditDecision, AuditEntry, AuditEvent, AuditRecord};

/// `prev` of the first record of a log.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Between the body and the hash.
const HASH_PREFIX: &[u8] = br#","hash":""#;
/// After the hash.
const HASH_SUFFIX: &[u8] = br#""}"#;
/// Hex length of a SHA-256 hash.
const HASH_HEX_LEN: usize = 64;
/// Length of `,"hash":"<64 hex>"}`.
const HASH_TAIL_LEN: usize = HASH_PREFIX.len() + HASH_HEX_LEN + HASH_SUFFIX.len();

/// A line of a log file: `path:line` (lines count from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineLocation {
    /// The log file.
    pub path: PathBuf,
    /// The line number, from 1.
    pub line: u64,
}

impl fmt::Display for LineLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// What is wrong with a line, or with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// The line is not a well-formed audit record.
    Malformed(String),
    /// The record's content does not match its own hash.
    Edited,
    /// The record's sequence number is not the one expected here.
    UnexpectedSeq {
        /// The number the chain expects.
        expected: u64,
        /// The number found.
        found: u64,
    },
    /// `prev` is not the hash of the previous record.
    PrevMismatch {
        /// The previous record's location, if in the log.
        previous: Option<LineLocation>,
    },
    /// The first record of the log is not the start of a chain.
    NotGenesis {
        /// Its sequence number.
        seq: u64,
    },
    /// The file's last line has no newline: a write was interrupted.
    Incomplete,
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainProblem::Malformed(reason) => write!(f, "not a valid audit record: {reason}"),
            ChainProblem::Edited => {
                f.write_str("the record does not match its hash: the line was edited")
            }
            ChainProblem::UnexpectedSeq { expected, found } if found > expected => write!(
                f,
                "seq is {found} where {expected} was expected: {} record(s) before this line \
                 are missing (deleted) or lines were reordered",
                found - expected
            ),
            ChainProblem::UnexpectedSeq { expected, found } => write!(
                f,
                "seq is {found} where {expected} was expected: a line was inserted before this \
                 one, duplicated, or lines were reordered"
            ),
            ChainProblem::PrevMismatch {
                previous: Some(previous),
            } => write!(
                f,
                "prev is not the hash of the previous record ({previous}): that record was \
                 altered, or this line was inserted or moved"
            ),
            ChainProblem::PrevMismatch { previous: None } => {
                f.write_str("prev is not the hash of the previous record")
            }
            ChainProblem::NotGenesis { seq } => write!(
                f,
                "the log starts at seq {seq} instead of a first record (seq 1, prev of zeros): \
                 earlier records or files are missing"
            ),
            ChainProblem::Incomplete => f.write_str(
                "the last line is incomplete (no newline at its end): a write was interrupted \
                 or the file was truncated",
            ),
        }
    }
}

/// The serialized form, fields in line order. `hash` is not part of it.
#[derive(Serialize)]
struct Body<'a> {
    time: &'a str,
    seq: u64,
    event: &'a AuditEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<AuditDecision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    details: &'a Map<String, Value>,
    prev: &'a str,
}

/// The parsed form of a whole line. Unknown fields (from a newer Dawn) are
/// ignored here; they are still covered by the hash.
#[derive(Deserialize)]
struct Parsed {
    time: String,
    seq: u64,
    event: AuditEvent,
    #[serde(default)]
    peer: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    decision: Option<AuditDecision>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    details: Map<String, Value>,
    prev: String,
    hash: String,
}

/// Encodes a record as a line (without the newline) and returns it with the
/// entry it describes.
pub(crate) fn encode_line(
    record: &AuditRecord,
    time: String,
    seq: u64,
    prev: String,
) -> Result<(Vec<u8>, AuditEntry), serde_json::Error> {
    let body = Body {
        time: &time,
        seq,
        event: &record.event,
        peer: record.peer.as_deref(),
        agent: record.agent.as_deref(),
        tool: record.tool.as_deref(),
        decision: record.decision,
        reason: record.reason.as_deref(),
        request_id: record.request_id.as_deref(),
        details: &record.details,
        prev: &prev,
    };
    let mut line = serde_json::to_vec(&body)?;
    let hash = hex::encode(digest(&SHA256, &line));
    // `line` is a JSON object: drop its closing brace and append the hash.
    line.pop();
    line.extend_from_slice(HASH_PREFIX);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(HASH_SUFFIX);
    let entry = AuditEntry {
        time,
        seq,
        record: record.clone(),
        prev,
        hash,
    };
    Ok((line, entry))
}

/// Parses a line (without its newline) and checks it against its own hash.
pub(crate) fn check_line(line: &[u8]) -> Result<AuditEntry, ChainProblem> {
    let entry = parse_line(line)?;
    let body_len = line.len() - HASH_TAIL_LEN;
    let mut body = Vec::with_capacity(body_len + 1);
    body.extend_from_slice(&line[..body_len]);
    body.push(b'}');
    if hex::encode(digest(&SHA256, &body)) != entry.hash {
        return Err(ChainProblem::Edited);
    }
    Ok(entry)
}

/// Parses a line (without its newline) without checking its hash: enough to
/// show it. The layout (hash last) is still required.
pub(crate) fn parse_line(line: &[u8]) -> Result<AuditEntry, ChainProblem> {
    if line.is_empty() {
        return Err(ChainProblem::Malformed("empty line".to_owned()));
    }
    let parsed: Parsed = serde_json::from_slice(line)
        .map_err(|e| ChainProblem::Malformed(format!("invalid JSON: {e}")))?;
    let well_placed = line.len() > HASH_TAIL_LEN
        && line[line.len() - HASH_TAIL_LEN..].starts_with(HASH_PREFIX)
        && line.ends_with(HASH_SUFFIX)
        && parsed.hash.len() == HASH_HEX_LEN
        && line[line.len() - HASH_SUFFIX.len() - HASH_HEX_LEN..line.len() - HASH_SUFFIX.len()]
            == *parsed.hash.as_bytes();
    if !well_placed {
        return Err(ChainProblem::Malformed(
            "the \"hash\" field is not a 64-character hex hash at the end of the line".to_owned(),
        ));
    }
    if !is_lower_hex_hash(&parsed.hash) || !is_lower_hex_hash(&parsed.prev) {
        return Err(ChainProblem::Malformed(
            "\"hash\" and \"prev\" must be 64 lowercase hex characters".to_owned(),
        ));
    }
    Ok(AuditEntry {
        time: parsed.time,
        seq: parsed.seq,
        record: AuditRecord {
            event: parsed.event,
            peer: parsed.peer,
            agent: parsed.agent,
            tool: parsed.tool,
            decision: parsed.decision,
            reason: parsed.reason,
            request_id: parsed.request_id,
            details: parsed.details,
        },
        prev: parsed.prev,
        hash: parsed.hash,
    })
}

fn is_lower_hex_hash(text: &str) -> bool {
    text.len() == HASH_HEX_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u8>, AuditEntry) {
        let record = AuditRecord::new(AuditEvent::CallDenied)
            .peer("12D3KooWPeer")
            .agent("files")
            .tool("delete")
            .decision(AuditDecision::Deny)
            .reason("level unknown is below trusted")
            .request_id("r-1")
            .detail("level", "unknown");
        encode_line(
            &record,
            "2024-01-02T03:04:05.678Z".to_owned(),
            7,
            GENESIS_PREV.to_owned(),
        )
        .unwrap()
    }

    #[test]
    fn layout_is_fixed_and_hash_covers_the_body() {
        let (line, entry) = sample();
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.starts_with(
            r#"{"time":"2024-01-02T03:04:05.678Z","seq":7,"event":"call_denied","peer":"12D3KooWPeer","agent":"files","tool":"delete","decision":"deny","reason":"level unknown is below trusted","request_id":"r-1","details":{"level":"unknown"},"prev":"0000"#
        ), "{text}");
        assert!(text.ends_with(&format!(r#","hash":"{}"}}"#, entry.hash)));
        let body = format!("{}}}", &text[..text.len() - HASH_TAIL_LEN]);
        assert_eq!(entry.hash, hex::encode(digest(&SHA256, body.as_bytes())));
        assert_eq!(check_line(&line).unwrap(), entry);
    }

    #[test]
    fn an_edited_field_breaks_the_hash() {
        let (line, _) = sample();
        let text = String::from_utf8(line)
            .unwrap()
            .replace("\"deny\"", "\"allow\"");
        assert_eq!(
            check_line(text.as_bytes()).unwrap_err(),
            ChainProblem::Edited
        );
        // Still displayable.
        assert_eq!(
            parse_line(text.as_bytes()).unwrap().record.decision,
            Some(AuditDecision::Allow)
        );
    }

    #[test]
    fn malformed_lines() {
        for bad in [
            &b""[..],
            b"not json",
            b"{}",
            br#"{"time":"t","seq":1,"event":"x","prev":"00","hash":"11"}"#,
        ] {
            assert!(
                matches!(check_line(bad), Err(ChainProblem::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Hash not last.
        let (line, entry) = sample();
        let text = String::from_utf8(line).unwrap();
        let moved = text.replace(
            &format!(r#","hash":"{}"}}"#, entry.hash),
            &format!(r#","hash":"{}","x":1}}"#, entry.hash),
        );
        assert!(matches!(
            check_line(moved.as_bytes()),
            Err(ChainProblem::Malformed(_))
        ));
    }
}
