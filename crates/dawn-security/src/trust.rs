//! Trust levels and the per-peer trust registry.
//!
//! # Levels
//!
//! [`TrustLevel`] orders peers by privilege:
//!
//! ```text
//! untrusted < unknown < verified < trusted < bootstrap
//! ```
//!
//! * `untrusted`: refused everything and disconnected (also the level of
//!   `security.blocked_peers`).
//! * `unknown`: a peer nobody has vouched for. The default for peers without a
//!   record (`security.trust_level_default`).
//! * `verified`: a peer whose identity an operator (or a later automatic check)
//!   has confirmed, without granting it the right to change anything.
//! * `trusted`: may use everything the policy allows, including tools that
//!   change state.
//! * `bootstrap`: the operator-configured infrastructure peers of
//!   `node.bootstrap`. It ranks above `trusted` only so that every minimum a
//!   `trusted` peer meets is met by a bootstrap peer too: with the default
//!   [`Policy`] the two have exactly the same permissions (no
//!   default minimum is `bootstrap`).
//!
//! # Where a peer's level comes from
//!
//! [`TrustRegistry::lookup`] resolves a peer's level from, in order of
//! precedence ([`TrustOrigin`]):
//!
//! 1. **Configuration pins**: `security.blocked_peers` (level `untrusted`) and
//!    `security.trusted_peers` (level `trusted`). Operators cannot override
//!    them: [`TrustRegistry::set`] and [`TrustRegistry::remove`] refuse them
//!    with [`TrustError::PinnedByConfig`], naming the config key to edit. The
//!    configuration is replaced, on the running node, by
//!    [`TrustRegistry::reconfigure`] (`dawn-node` calls it when it reloads its
//!    configuration on SIGHUP). A peer in both lists is a configuration error.
//!    Pins are not written to the database; a stored record for a pinned peer
//!    is kept but has no effect while the pin exists, and applies again once
//!    the pin is removed.
//! 2. **A stored record** (dawn-store `trust` table), set by an operator through
//!    the CLI or API.
//! 3. **Bootstrap**: a peer listed in `node.bootstrap` without a stored record
//!    is `bootstrap`. An operator can still override it with a stored record
//!    (for example to demote a misbehaving bootstrap node); removing that record
//!    returns the peer to `bootstrap`.
//! 4. **The default** (`security.trust_level_default`, `unknown` unless
//!    configured) for every other peer. Such a peer "has no trust record": with
//!    `security.reject_unknown = true` it is refused everything, whatever the
//!    default level is.
//!
//! Changes are written through: [`TrustRegistry::set`] returns after the record
//! is durable in the database and the in-memory view every reader uses is
//! updated, so the next lookup on any thread sees the new level.
//!
//! Methods that change records block on a database commit; async callers
//! should use `tokio::task::spawn_blocking` for them. Lookups only read
//! memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};

use dawn_store::{Store, StoreError, TrustEntry, TrustSource};
use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::policy::{Decision, DecisionRule, Permission, Policy, Requirement};

/// The longest note [`TrustRegistry::set`] accepts, in bytes.
pub const MAX_TRUST_NOTE_BYTES: usize = 1024;

/// How much a peer is trusted. Variants are declared in privilege order, so
/// `Ord` compares privilege (see the [module docs](self)).
///
/// The `Default` is `unknown`, the default level of peers without a record.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TrustLevel {
    /// Refused everything and disconnected.
    Untrusted,
    /// Nobody has vouched for the peer (the usual default).
    #[default]
    Unknown,
    /// The peer's identity was confirmed; no right to change state by default.
    Verified,
    /// May use everything the policy allows, including state-changing tools.
    Trusted,
    /// An operator-configured infrastructure peer; same permissions as
    /// `trusted` under the default policy.
    Bootstrap,
}

impl TrustLevel {
    /// Every level, lowest privilege first.
    pub const ALL: [TrustLevel; 5] = [
        TrustLevel::Untrusted,
        TrustLevel::Unknown,
        TrustLevel::Verified,
        TrustLevel::Trusted,
        TrustLevel::Bootstrap,
    ];

    /// The snake_case name used in config, the database, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Untrusted => "untrusted",
            TrustLevel::Unknown => "unknown",
            TrustLevel::Verified => "verified",
            TrustLevel::Trusted => "trusted",
            TrustLevel::Bootstrap => "bootstrap",
        }
    }
}

impl fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a trust level name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unknown trust level {value:?}; expected one of: untrusted, unknown, verified, trusted, bootstrap"
)]
pub struct ParseTrustLevelError {
    /// The rejected text.
    pub value: String,
}

impl FromStr for TrustLevel {
    type Err = ParseTrustLevelError;

    /// Parses a level name (exact, lowercase; surrounding whitespace ignored).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        TrustLevel::ALL
            .into_iter()
            .find(|level| level.as_str() == trimmed)
            .ok_or_else(|| ParseTrustLevelError {
                value: text.to_owned(),
            })
    }
}

/// Where a peer's effective trust level comes from (see the
/// [module docs](self) for the precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrustOrigin {
    /// Pinned by `security.blocked_peers`.
    BlockedPeersConfig,
    /// Pinned by `security.trusted_peers`.
    TrustedPeersConfig,
    /// A record in the database, set by the given source.
    Stored(TrustSource),
    /// Listed in `node.bootstrap`, with no stored record.
    BootstrapConfig,
    /// No record: the configured default level.
    Default,
}

impl TrustOrigin {
    /// The stored-record vocabulary for this origin: `config`, `operator` or
    /// `default`.
    pub fn source(self) -> TrustSource {
        match self {
            TrustOrigin::BlockedPeersConfig
            | TrustOrigin::TrustedPeersConfig
            | TrustOrigin::BootstrapConfig => TrustSource::Config,
            TrustOrigin::Stored(source) => source,
            TrustOrigin::Default => TrustSource::Default,
        }
    }

    /// Whether configuration fixes the level so operators cannot change it.
    pub fn is_pinned(self) -> bool {
        matches!(
            self,
            TrustOrigin::BlockedPeersConfig | TrustOrigin::TrustedPeersConfig
        )
    }

    /// Whether the peer has a trust record of any kind (config or stored);
    /// `security.reject_unknown` refuses peers for which this is false.
    pub fn has_record(self) -> bool {
        !matches!(self, TrustOrigin::Default)
    }

    /// The configuration key responsible, if the level comes from config.
    pub fn config_key(self) -> Option<&'static str> {
        match self {
            TrustOrigin::BlockedPeersConfig => Some("security.blocked_peers"),
            TrustOrigin::TrustedPeersConfig => Some("security.trusted_peers"),
            TrustOrigin::BootstrapConfig => Some("node.bootstrap"),
            TrustOrigin::Stored(_) | TrustOrigin::Default => None,
        }
    }
}

impl fmt::Display for TrustOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustOrigin::Stored(source) => write!(f, "stored record ({source})"),
            TrustOrigin::Default => f.write_str("default (no record)"),
            other => match other.config_key() {
                Some(key) => write!(f, "config ({key})"),
                None => f.write_str("config"),
            },
        }
    }
}

/// A peer's effective trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTrust {
    /// The peer.
    pub peer: PeerId,
    /// Its effective level.
    pub level: TrustLevel,
    /// Where the level comes from.
    pub origin: TrustOrigin,
    /// The operator's note, for stored records.
    pub note: Option<String>,
    /// When the stored record was written (unix milliseconds), for stored
    /// records.
    pub updated_ms: Option<u64>,
}

/// A change made by [`TrustRegistry::set`] or [`TrustRegistry::remove`], for
/// the audit log (`trust_changed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustChange {
    /// The peer's trust before the change.
    pub before: PeerTrust,
    /// The peer's trust after the change.
    pub after: PeerTrust,
}

/// Trust-related configuration, as dawn-core reads it from its config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustSettings {
    /// `security.trust_level_default`: the level of peers with no record.
    pub default_level: TrustLevel,
    /// `security.reject_unknown`: refuse peers with no record.
    pub reject_unknown: bool,
    /// `security.trusted_peers`: pinned at `trusted`.
    pub trusted_peers: Vec<PeerId>,
    /// `security.blocked_peers`: pinned at `untrusted`.
    pub blocked_peers: Vec<PeerId>,
    /// The peer ids of `node.bootstrap` addresses: `bootstrap` unless a stored
    /// record says otherwise.
    pub bootstrap_peers: Vec<PeerId>,
}

/// An error of the trust registry. Messages name the peer, the config key or
/// the database file involved.
#[derive(Debug, Error)]
pub enum TrustError {
    /// The peer's level is fixed by configuration.
    #[error(
        "the trust level of peer {peer} is set to {level} by the configuration key {config_key}; \
         edit that key and reload the configuration (SIGHUP to dawn-node) to change it"
    )]
    PinnedByConfig {
        /// The peer.
        peer: PeerId,
        /// Its pinned level.
        level: TrustLevel,
        /// The configuration key that pins it.
        config_key: &'static str,
    },

    /// The same peer is in both `security.trusted_peers` and
    /// `security.blocked_peers`.
    #[error(
        "peer {peer} is listed in both security.trusted_peers and security.blocked_peers; \
         remove it from one of them"
    )]
    ConflictingConfig {
        /// The peer listed twice.
        peer: PeerId,
    },

    /// A note longer than [`MAX_TRUST_NOTE_BYTES`].
    #[error("the trust note for peer {peer} is {len} bytes; the limit is {max} bytes")]
    NoteTooLong {
        /// The peer.
        peer: PeerId,
        /// The note's length in bytes.
        len: usize,
        /// [`MAX_TRUST_NOTE_BYTES`].
        max: usize,
    },

    /// A stored record this build cannot interpret.
    #[error(
        "trust record {key:?} in database {} is invalid ({reason}); fix or remove that record \
         before starting",
        path.display()
    )]
    InvalidRecord {
        /// The database file.
        path: std::path::PathBuf,
        /// The record's key (the peer id text).
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored record as cached in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CachedRecord {
    level: TrustLevel,
    note: Option<String>,
    source: TrustSource,
    updated_ms: u64,
}

/// The part of the trust view that comes from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConfigTrust {
    default_level: TrustLevel,
    reject_unknown: bool,
    /// Config pins: peer to (level, origin).
    pins: HashMap<PeerId, (TrustLevel, TrustOrigin)>,
    bootstrap: HashSet<PeerId>,
}

impl ConfigTrust {
    fn from_settings(settings: TrustSettings) -> Result<Self, TrustError> {
        let mut pins = HashMap::new();
        for peer in &settings.blocked_peers {
            pins.insert(
                *peer,
                (TrustLevel::Untrusted, TrustOrigin::BlockedPeersConfig),
            );
        }
        for peer in &settings.trusted_peers {
            if pins.contains_key(peer) {
                return Err(TrustError::ConflictingConfig { peer: *peer });
            }
            pins.insert(
                *peer,
                (TrustLevel::Trusted, TrustOrigin::TrustedPeersConfig),
            );
        }
        Ok(ConfigTrust {
            default_level: settings.default_level,
            reject_unknown: settings.reject_unknown,
            pins,
            bootstrap: settings.bootstrap_peers.into_iter().collect(),
        })
    }

    fn resolve(&self, peer: &PeerId, record: Option<&CachedRecord>) -> PeerTrust {
        if let Some((level, origin)) = self.pins.get(peer) {
            return PeerTrust {
                peer: *peer,
                level: *level,
                origin: *origin,
                note: None,
                updated_ms: None,
            };
        }
        if let Some(record) = record {
            return PeerTrust {
                peer: *peer,
                level: record.level,
                origin: TrustOrigin::Stored(record.source),
                note: record.note.clone(),
                updated_ms: Some(record.updated_ms),
            };
        }
        let (level, origin) = if self.bootstrap.contains(peer) {
            (TrustLevel::Bootstrap, TrustOrigin::BootstrapConfig)
        } else {
            (self.default_level, TrustOrigin::Default)
        };
        PeerTrust {
            peer: *peer,
            level,
            origin,
            note: None,
            updated_ms: None,
        }
    }

    fn warn_overridden(&self, records: &HashMap<PeerId, CachedRecord>) {
        for (peer, (pinned, origin)) in &self.pins {
            if let Some(record) = records.get(peer) {
                tracing::warn!(
                    %peer,
                    stored_level = %record.level,
                    pinned_level = %pinned,
                    config_key = origin.config_key().unwrap_or("config"),
                    "stored trust record is overridden by the configuration"
                );
            }
        }
    }
}

/// Everything a lookup reads, under one lock so a lookup never mixes an old
/// configuration with a new record or the reverse.
struct TrustState {
    config: ConfigTrust,
    /// Every stored record. Written *after* the database commit, so readers
    /// never see a level that is not durable.
    records: HashMap<PeerId, CachedRecord>,
}

impl TrustState {
    fn resolve(&self, peer: &PeerId) -> PeerTrust {
        self.config.resolve(peer, self.records.get(peer))
    }
}

struct RegistryInner {
    store: Store,
    state: RwLock<TrustState>,
}

/// What [`TrustRegistry::reconfigure`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustReconfiguration {
    /// Every peer named in the old or new configuration (pins and bootstrap
    /// peers) whose effective level or origin changed, in peer id order.
    pub changes: Vec<TrustChange>,
    /// `security.trust_level_default` before and after, if it changed. It
    /// applies to every peer without a record, which are not listed in
    /// `changes`.
    pub default_level: Option<(TrustLevel, TrustLevel)>,
    /// `security.reject_unknown` before and after, if it changed.
    pub reject_unknown: Option<(bool, bool)>,
}

impl TrustReconfiguration {
    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.default_level.is_none() && self.reject_unknown.is_none()
    }
}

/// The node's view of how much each peer is trusted: configuration pins,
/// stored records and the default, combined as the [module docs](self)
/// describe.
///
/// Cheap to clone (clones share state) and safe to use from many threads.
#[derive(Clone)]
pub struct TrustRegistry {
    inner: Arc<RegistryInner>,
}

impl fmt::Debug for TrustRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.read();
        f.debug_struct("TrustRegistry")
            .field("default_level", &state.config.default_level)
            .field("reject_unknown", &state.config.reject_unknown)
            .field("pins", &state.config.pins.len())
            .finish_non_exhaustive()
    }
}

impl TrustRegistry {
    /// Builds the registry from `settings` and every trust record in `store`.
    ///
    /// Fails if a peer is both trusted and blocked in config, or if a stored
    /// record has an invalid peer id or level. Blocks on a database read.
    pub fn open(store: Store, settings: TrustSettings) -> Result<Self, TrustError> {
        let config = ConfigTrust::from_settings(settings)?;
        let mut records = HashMap::new();
        for entry in store.trust_entries()? {
            let invalid = |reason: String| TrustError::InvalidRecord {
                path: store.path().to_path_buf(),
                key: entry.peer_id.clone(),
                reason,
            };
            let peer = PeerId::from_str(&entry.peer_id)
                .map_err(|e| invalid(format!("not a peer id: {e}")))?;
            let level = TrustLevel::from_str(&entry.level).map_err(|e| invalid(e.to_string()))?;
            records.insert(
                peer,
                CachedRecord {
                    level,
                    note: entry.note,
                    source: entry.source,
                    updated_ms: entry.updated_ms,
                },
            );
        }
        config.warn_overridden(&records);
        Ok(TrustRegistry {
            inner: Arc::new(RegistryInner {
                store,
                state: RwLock::new(TrustState { config, records }),
            }),
        })
    }

    /// Replaces the configuration part of the view (pins, bootstrap peers,
    /// default level, `reject_unknown`) with `settings`, keeping every stored
    /// record, and returns what changed. Every lookup after it returns sees
    /// the new configuration.
    ///
    /// On error (a peer both trusted and blocked) nothing changes. Does not
    /// touch the database.
    pub fn reconfigure(&self, settings: TrustSettings) -> Result<TrustReconfiguration, TrustError> {
        let new = ConfigTrust::from_settings(settings)?;
        let mut state = self.write();
        let old = std::mem::replace(&mut state.config, new);
        let mut named: BTreeMap<String, PeerId> = BTreeMap::new();
        for peer in old
            .pins
            .keys()
            .chain(old.bootstrap.iter())
            .chain(state.config.pins.keys())
            .chain(state.config.bootstrap.iter())
        {
            named.insert(peer.to_base58(), *peer);
        }
        let changes = named
            .values()
            .filter_map(|peer| {
                let record = state.records.get(peer);
                let before = old.resolve(peer, record);
                let after = state.config.resolve(peer, record);
                (before != after).then_some(TrustChange { before, after })
            })
            .collect();
        let new = &state.config;
        let outcome = TrustReconfiguration {
            changes,
            default_level: (old.default_level != new.default_level)
                .then_some((old.default_level, new.default_level)),
            reject_unknown: (old.reject_unknown != new.reject_unknown)
                .then_some((old.reject_unknown, new.reject_unknown)),
        };
        new.warn_overridden(&state.records);
        drop(state);
        for change in &outcome.changes {
            tracing::info!(
                peer = %change.after.peer,
                from = %change.before.level,
                to = %change.after.level,
                origin = %change.after.origin,
                "trust level changed by the configuration"
            );
        }
        Ok(outcome)
    }

    /// The level of peers with no record.
    pub fn default_level(&self) -> TrustLevel {
        self.read().config.default_level
    }

    /// Whether peers with no record are refused (`security.reject_unknown`).
    pub fn reject_unknown(&self) -> bool {
        self.read().config.reject_unknown
    }

    /// The effective level of `peer`.
    pub fn level(&self, peer: &PeerId) -> TrustLevel {
        self.lookup(peer).level
    }

    /// The effective trust of `peer` and where it comes from.
    pub fn lookup(&self, peer: &PeerId) -> PeerTrust {
        self.read().resolve(peer)
    }

    /// Every peer with a pin, a stored record or a bootstrap entry, in peer id
    /// order (peers at the default level are not listed).
    pub fn list(&self) -> Vec<PeerTrust> {
        let state = self.read();
        let mut peers: BTreeMap<String, PeerId> = BTreeMap::new();
        let known = state
            .config
            .pins
            .keys()
            .chain(state.records.keys())
            .chain(state.config.bootstrap.iter());
        for peer in known {
            peers.insert(peer.to_base58(), *peer);
        }
        peers.values().map(|peer| state.resolve(peer)).collect()
    }

    /// Sets `peer`'s level as an operator, with an optional note, at `now_ms`.
    ///
    /// Durable and visible to every reader when it returns. Refused for peers
    /// pinned by configuration. Blocks on a database commit.
    pub fn set(
        &self,
        peer: &PeerId,
        level: TrustLevel,
        note: Option<String>,
        now_ms: u64,
    ) -> Result<TrustChange, TrustError> {
        if let Some(note) = &note
            && note.len() > MAX_TRUST_NOTE_BYTES
        {
            return Err(TrustError::NoteTooLong {
                peer: *peer,
                len: note.len(),
                max: MAX_TRUST_NOTE_BYTES,
            });
        }
        let record = CachedRecord {
            level,
            note,
            source: TrustSource::Operator,
            updated_ms: now_ms,
        };
        let mut state = self.write();
        Self::refuse_pinned(&state, peer)?;
        let before = state.resolve(peer);
        self.inner.store.put_trust_entry(&TrustEntry {
            peer_id: peer.to_base58(),
            level: level.as_str().to_owned(),
            note: record.note.clone(),
            source: record.source,
            updated_ms: now_ms,
        })?;
        let after = state.config.resolve(peer, Some(&record));
        state.records.insert(*peer, record);
        drop(state);
        tracing::info!(%peer, from = %before.level, to = %after.level, "trust level set");
        Ok(TrustChange { before, after })
    }

    /// Removes `peer`'s stored record, returning it to the bootstrap or default
    /// level. Returns `None` if it had no stored record. Refused for peers
    /// pinned by configuration. Blocks on a database commit.
    pub fn remove(&self, peer: &PeerId) -> Result<Option<TrustChange>, TrustError> {
        let mut state = self.write();
        Self::refuse_pinned(&state, peer)?;
        if !state.records.contains_key(peer) {
            return Ok(None);
        }
        let before = state.resolve(peer);
        self.inner.store.remove_trust_entry(&peer.to_base58())?;
        state.records.remove(peer);
        let after = state.resolve(peer);
        drop(state);
        tracing::info!(%peer, from = %before.level, to = %after.level, "trust record removed");
        Ok(Some(TrustChange { before, after }))
    }

    /// Decides whether `peer` may do `permission` on `requirement`'s target:
    /// applies `security.reject_unknown` (a peer with no record is refused
    /// everything), then `policy` at the peer's current level.
    pub fn authorize(
        &self,
        peer: &PeerId,
        policy: &Policy,
        permission: Permission,
        requirement: &Requirement<'_>,
    ) -> Decision {
        let (trust, reject_unknown) = self.lookup_with_reject(peer);
        if reject_unknown && !trust.origin.has_record() {
            return Decision::deny(
                trust.level,
                trust.level,
                DecisionRule::RejectUnknown,
                format!(
                    "peer has no trust record and security.reject_unknown is true \
                     (permission {})",
                    permission.name()
                ),
            );
        }
        policy.decide(trust.level, permission, requirement)
    }

    /// Whether `peer` may do `permission` on `requirement`'s target: exactly
    /// [`Decision::allowed`] of [`Self::authorize`], without building the
    /// decision's texts. Reads the current trust, so changes apply at once.
    pub fn permits(
        &self,
        peer: &PeerId,
        policy: &Policy,
        permission: Permission,
        requirement: &Requirement<'_>,
    ) -> bool {
        let (trust, reject_unknown) = self.lookup_with_reject(peer);
        if reject_unknown && !trust.origin.has_record() {
            return false;
        }
        policy.permits(trust.level, permission, requirement)
    }

    /// Whether `peer` may connect (and stay connected): [`Self::authorize`] for
    /// [`Permission::Connect`]. A denied peer should be disconnected.
    pub fn admit(&self, peer: &PeerId, policy: &Policy) -> Decision {
        self.authorize(peer, policy, Permission::Connect, &Requirement::none())
    }

    /// The peer's trust and `reject_unknown`, read together.
    fn lookup_with_reject(&self, peer: &PeerId) -> (PeerTrust, bool) {
        let state = self.read();
        (state.resolve(peer), state.config.reject_unknown)
    }

    fn refuse_pinned(state: &TrustState, peer: &PeerId) -> Result<(), TrustError> {
        match state.config.pins.get(peer) {
            Some((level, origin)) => Err(TrustError::PinnedByConfig {
                peer: *peer,
                level: *level,
                config_key: origin.config_key().unwrap_or("security"),
            }),
            None => Ok(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, TrustState> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, TrustState> {
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_by_privilege() {
        use TrustLevel::*;
        assert!(Untrusted < Unknown);
        assert!(Unknown < Verified);
        assert!(Verified < Trusted);
        assert!(Trusted < Bootstrap);
        let mut sorted = TrustLevel::ALL;
        sorted.sort();
        assert_eq!(sorted, TrustLevel::ALL);
    }

    #[test]
    fn levels_parse_display_and_serialize_snake_case() {
        for level in TrustLevel::ALL {
            assert_eq!(level.to_string().parse::<TrustLevel>().unwrap(), level);
            assert_eq!(
                serde_json::to_string(&level).unwrap(),
                format!("\"{level}\"")
            );
        }
        assert_eq!(
            " trusted\n".parse::<TrustLevel>().unwrap(),
            TrustLevel::Trusted
        );
        let error = "Trusted".parse::<TrustLevel>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown trust level \"Trusted\"; expected one of: untrusted, unknown, verified, \
             trusted, bootstrap"
        );
        assert_eq!(TrustLevel::default(), TrustLevel::Unknown);
    }

    #[test]
    fn origin_vocabulary() {
        assert!(TrustOrigin::TrustedPeersConfig.is_pinned());
        assert!(!TrustOrigin::BootstrapConfig.is_pinned());
        assert!(TrustOrigin::BootstrapConfig.has_record());
        assert!(!TrustOrigin::Default.has_record());
        assert_eq!(TrustOrigin::BootstrapConfig.source(), TrustSource::Config);
        assert_eq!(
            TrustOrigin::Stored(TrustSource::Operator).to_string(),
            "stored record (operator)"
        );
        assert_eq!(
            TrustOrigin::BlockedPeersConfig.to_string(),
            "config (security.blocked_peers)"
        );
    }
}
