//! `[security]`: trust, authorization policy, audit log, reputation and the
//! node key at rest.

use std::path::PathBuf;

use dawn_security::{PolicyConfig, ReputationConfig, TrustLevel};
use serde::{Deserialize, Serialize};

use super::ByteSize;

/// `[security]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    /// The trust level of peers with no record.
    pub trust_level_default: TrustLevel,
    /// Refuse peers that have no trust record (no stored level, not in
    /// `trusted_peers`, not a bootstrap peer).
    pub reject_unknown: bool,
    /// Peer ids pinned at `trusted`.
    pub trusted_peers: Vec<String>,
    /// Peer ids pinned at `untrusted`: refused and banned.
    pub blocked_peers: Vec<String>,
    /// Create the node key encrypted with a passphrase on first start.
    pub encryption_at_rest: bool,
    /// Refuse to start unless the node key is encrypted and unlocked with a
    /// passphrase.
    pub require_passphrase: bool,
    /// File holding the key passphrase (mode 0600), used when
    /// `DAWN_PASSPHRASE` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
    /// Which trust level may do what.
    pub policy: PolicyConfig,
    /// Peer misbehaviour scores.
    pub reputation: ReputationConfig,
    /// The audit log.
    pub audit: AuditSection,
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            trust_level_default: TrustLevel::Unknown,
            reject_unknown: false,
            trusted_peers: Vec::new(),
            blocked_peers: Vec::new(),
            encryption_at_rest: false,
            require_passphrase: false,
            passphrase_file: None,
            policy: PolicyConfig::default(),
            reputation: ReputationConfig::default(),
            audit: AuditSection::default(),
        }
    }
}

/// Which allowed requests are written to the audit log (denials always are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAllowed {
    /// Calls of tools that may change state (not declared read-only).
    #[default]
    StateChanging,
    /// Every allowed request, including listings and read-only calls.
    All,
    /// No allowed request.
    None,
}

/// `[security.audit]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Rotate `audit.jsonl` before it grows beyond this size.
    pub max_file_size: ByteSize,
    /// Sync every batch of records to disk before it counts as written.
    pub fsync: bool,
    /// Which allowed requests to record.
    pub allowed: AuditAllowed,
    /// Records queued for the writer before new ones are dropped (and
    /// counted).
    pub queue_capacity: usize,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            max_file_size: ByteSize(dawn_security::audit::DEFAULT_MAX_FILE_BYTES),
            fsync: true,
            allowed: AuditAllowed::StateChanging,
            queue_capacity: dawn_security::audit::DEFAULT_AUDIT_QUEUE_CAPACITY,
        }
    }
}

impl SecuritySection {
    /// Checks what types cannot; reports each problem through `issue(key,
    /// message)`.
    pub(crate) fn validate(&self, issue: &mut dyn FnMut(&str, String)) {
        let mut trusted = std::collections::HashSet::new();
        for (key, list) in [
            ("security.trusted_peers", &self.trusted_peers),
            ("security.blocked_peers", &self.blocked_peers),
        ] {
            for text in list {
                match text.trim().parse::<dawn_transport::PeerId>() {
                    Ok(peer) if key == "security.trusted_peers" => {
                        trusted.insert(peer);
                    }
                    Ok(peer) => {
                        if trusted.contains(&peer) {
                            issue(
                                key,
                                format!(
                                    "{peer} is also in security.trusted_peers; remove it from one of them"
                                ),
                            );
                        }
                    }
                    Err(e) => issue(
                        key,
                        format!("{text:?} is not a peer id ({e}); use the 12D3KooW... form"),
                    ),
                }
            }
        }
        if let Err(e) = dawn_security::Policy::new(self.policy.clone()) {
            issue("security.policy", e.to_string());
        }
        if let Err(e) = self.reputation.validate() {
            issue("security.reputation", e.to_string());
        }
        let size = self.audit.max_file_size.0;
        if !(4096..=(1 << 40)).contains(&size) {
            issue(
                "security.audit.max_file_size",
                format!(
                    "{} is out of range (allowed: 4KiB to 1TiB)",
                    self.audit.max_file_size
                ),
            );
        }
        if !(16..=1_000_000).contains(&self.audit.queue_capacity) {
            issue(
                "security.audit.queue_capacity",
                format!(
                    "{} is out of range (allowed: 16 to 1000000)",
                    self.audit.queue_capacity
                ),
            );
        }
        if let Some(path) = &self.passphrase_file
            && path.as_os_str().is_empty()
        {
            issue("security.passphrase_file", "must not be empty".into());
        }
    }

    /// The peer ids of a list (invalid entries are reported by
    /// [`SecuritySection::validate`] and skipped here).
    pub(crate) fn peers(list: &[String]) -> Vec<dawn_transport::PeerId> {
        list.iter().filter_map(|t| t.trim().parse().ok()).collect()
    }
}
