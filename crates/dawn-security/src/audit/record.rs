//! What an audit record says: the event type, its subject and the decision.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The longest text kept in one string field of a record, in bytes. Longer
/// values (a remote peer chooses tool names and request ids) are cut at a
/// character boundary and end with [`TRUNCATION_MARK`].
pub const MAX_AUDIT_FIELD_BYTES: usize = 1024;

/// Appended to a string field that was cut to [`MAX_AUDIT_FIELD_BYTES`].
pub const TRUNCATION_MARK: &str = "...[truncated]";

/// The type of a security event. Serialized as its snake_case name; names
/// written by a newer Dawn that this build does not know are kept as
/// [`AuditEvent::Other`], so old readers can still show newer logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuditEvent {
    /// A peer's connection was accepted.
    ConnectionAccepted,
    /// A peer's connection was refused or closed by policy.
    ConnectionRefused,
    /// A call (tool, resource, prompt, listing) was allowed.
    CallAllowed,
    /// A call was denied.
    CallDenied,
    /// A peer's trust level changed.
    TrustChanged,
    /// A registry announcement from a peer was rejected.
    AnnouncementRejected,
    /// An HTTP API or MCP request failed authentication.
    ApiAuthFailed,
    /// The API token was rotated.
    TokenRotated,
    /// The node key was unlocked with its passphrase.
    KeyUnlocked,
    /// Unlocking the node key failed.
    KeyUnlockFailed,
    /// The node key's passphrase was changed.
    PassphraseChanged,
    /// A peer's reputation fell below the disconnect threshold.
    PeerDisconnected,
    /// A peer was banned for a while.
    PeerBanned,
    /// A backup was created.
    BackupCreated,
    /// A backup was restored.
    BackupRestored,
    /// The node reloaded its configuration (SIGHUP); `details` name the keys
    /// applied and those that need a restart.
    ConfigReloaded,
    /// The audit writer could not record some events (queue full or write
    /// failures); `details` has the counts.
    AuditRecordsDropped,
    /// An event name this build does not know.
    Other(String),
}

impl AuditEvent {
    /// Every named event (not [`AuditEvent::Other`]).
    pub const KNOWN: [AuditEvent; 17] = [
        AuditEvent::ConnectionAccepted,
        AuditEvent::ConnectionRefused,
        AuditEvent::CallAllowed,
        AuditEvent::CallDenied,
        AuditEvent::TrustChanged,
        AuditEvent::AnnouncementRejected,
        AuditEvent::ApiAuthFailed,
        AuditEvent::TokenRotated,
        AuditEvent::KeyUnlocked,
        AuditEvent::KeyUnlockFailed,
        AuditEvent::PassphraseChanged,
        AuditEvent::PeerDisconnected,
        AuditEvent::PeerBanned,
        AuditEvent::BackupCreated,
        AuditEvent::BackupRestored,
        AuditEvent::ConfigReloaded,
        AuditEvent::AuditRecordsDropped,
    ];

    /// The snake_case name.
    pub fn as_str(&self) -> &str {
        match self {
            AuditEvent::ConnectionAccepted => "connection_accepted",
            AuditEvent::ConnectionRefused => "connection_refused",
            AuditEvent::CallAllowed => "call_allowed",
            AuditEvent::CallDenied => "call_denied",
            AuditEvent::TrustChanged => "trust_changed",
            AuditEvent::AnnouncementRejected => "announcement_rejected",
            AuditEvent::ApiAuthFailed => "api_auth_failed",
            AuditEvent::TokenRotated => "token_rotated",
            AuditEvent::KeyUnlocked => "key_unlocked",
            AuditEvent::KeyUnlockFailed => "key_unlock_failed",
            AuditEvent::PassphraseChanged => "passphrase_changed",
            AuditEvent::PeerDisconnected => "peer_disconnected",
            AuditEvent::PeerBanned => "peer_banned",
            AuditEvent::BackupCreated => "backup_created",
            AuditEvent::BackupRestored => "backup_restored",
            AuditEvent::ConfigReloaded => "config_reloaded",
            AuditEvent::AuditRecordsDropped => "audit_records_dropped",
            AuditEvent::Other(name) => name,
        }
    }

    /// Parses a name; unknown names become [`AuditEvent::Other`].
    pub fn from_name(name: &str) -> AuditEvent {
        AuditEvent::KNOWN
            .into_iter()
            .find(|event| event.as_str() == name)
            .unwrap_or_else(|| AuditEvent::Other(name.to_owned()))
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event name that is not a known event (for filters given by a user).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit event type {value:?}; known types: {}", known_names())]
pub struct ParseAuditEventError {
    /// The rejected text.
    pub value: String,
}

fn known_names() -> String {
    AuditEvent::KNOWN
        .iter()
        .map(AuditEvent::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for AuditEvent {
    type Err = ParseAuditEventError;

    /// Parses a known event name strictly (for `--event` filters); use
    /// [`AuditEvent::from_name`] to accept any name.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match AuditEvent::from_name(text.trim()) {
            AuditEvent::Other(_) => Err(ParseAuditEventError {
                value: text.to_owned(),
            }),
            known => Ok(known),
        }
    }
}

impl Serialize for AuditEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuditEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = Cow::<str>::deserialize(deserializer)?;
        Ok(AuditEvent::from_name(&name))
    }
}

/// The outcome recorded for a decision event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    /// The request was allowed.
    Allow,
    /// The request was denied.
    Deny,
}

/// A security event to record. Build one with [`AuditRecord::new`] and the
/// setters; the log adds the time, sequence number and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// The event type.
    pub event: AuditEvent,
    /// The peer involved (peer id text).
    pub peer: Option<String>,
    /// The agent involved.
    pub agent: Option<String>,
    /// The tool (or resource, prompt) involved.
    pub tool: Option<String>,
    /// The decision, for decision events.
    pub decision: Option<AuditDecision>,
    /// Why: the detailed reason (local only; it may name policy rules).
    pub reason: Option<String>,
    /// The request id, to correlate with logs and traces.
    pub request_id: Option<String>,
    /// Any further event-specific fields (for example the old and new trust
    /// levels of `trust_changed`).
    pub details: Map<String, Value>,
}

impl AuditRecord {
    /// A record of `event` with no other field set.
    pub fn new(event: AuditEvent) -> Self {
        AuditRecord {
            event,
            peer: None,
            agent: None,
            tool: None,
            decision: None,
            reason: None,
            request_id: None,
            details: Map::new(),
        }
    }

    /// Sets the peer.
    pub fn peer(mut self, peer: impl fmt::Display) -> Self {
        self.peer = Some(peer.to_string());
        self
    }

    /// Sets the agent.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Sets the tool.
    pub fn tool(mut self, tool: impl Into<String>) -> Self {
        self.tool = Some(tool.into());
        self
    }

    /// Sets the decision.
    pub fn decision(mut self, decision: AuditDecision) -> Self {
        self.decision = Some(decision);
        self
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the request id.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Adds an event-specific field.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// A record as written to the log: the record plus the fields the log adds.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// When the record was appended, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Position in the chain: 1 for the first record ever written, then +1.
    pub seq: u64,
    /// The record.
    pub record: AuditRecord,
    /// Hex SHA-256 hash of the previous record (64 zeros for the first).
    pub prev: String,
    /// Hex SHA-256 hash of this record (see the [module docs](super)).
    pub hash: String,
}

/// Cuts a string field to [`MAX_AUDIT_FIELD_BYTES`] (at a character
/// boundary), marking the cut.
pub(crate) fn clamp_field(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_AUDIT_FIELD_BYTES {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_AUDIT_FIELD_BYTES - TRUNCATION_MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{TRUNCATION_MARK}", &text[..end]))
}

/// Clamps every string field of a record, and the string values of its
/// details.
pub(crate) fn clamp_record(record: &AuditRecord) -> AuditRecord {
    let clamp = |field: &Option<String>| field.as_deref().map(|s| clamp_field(s).into_owned());
    let details = record
        .details
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(text) => Value::String(clamp_field(text).into_owned()),
                other => other.clone(),
            };
            (clamp_field(key).into_owned(), value)
        })
        .collect();
    AuditRecord {
        event: AuditEvent::from_name(&clamp_field(record.event.as_str())),
        peer: clamp(&record.peer),
        agent: clamp(&record.agent),
        tool: clamp(&record.tool),
        decision: record.decision,
        reason: clamp(&record.reason),
        request_id: clamp(&record.request_id),
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip_and_unknown_names_are_kept() {
        for event in AuditEvent::KNOWN {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(json, format!("\"{}\"", event.as_str()));
            assert_eq!(serde_json::from_str::<AuditEvent>(&json).unwrap(), event);
            assert_eq!(event.as_str().parse::<AuditEvent>().unwrap(), event);
        }
        let newer: AuditEvent = serde_json::from_str("\"quantum_event\"").unwrap();
        assert_eq!(newer, AuditEvent::Other("quantum_event".into()));
        assert_eq!(newer.to_string(), "quantum_event");
        let error = "quantum_event".parse::<AuditEvent>().unwrap_err();
        assert!(error.to_string().contains("call_denied"), "{error}");
    }

    #[test]
    fn long_fields_are_cut_at_a_char_boundary() {
        let long = "é".repeat(MAX_AUDIT_FIELD_BYTES);
        let clamped = clamp_field(&long);
        assert!(clamped.len() <= MAX_AUDIT_FIELD_BYTES);
        assert!(clamped.ends_with(TRUNCATION_MARK));
        assert_eq!(clamp_field("short"), "short");
        let record = clamp_record(&AuditRecord::new(AuditEvent::CallDenied).tool(long));
        assert!(record.tool.unwrap().len() <= MAX_AUDIT_FIELD_BYTES);
    }
}
