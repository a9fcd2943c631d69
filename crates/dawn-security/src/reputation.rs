//! Peer reputation: a misbehaviour score that decays, with disconnect and
//! ban thresholds.
//!
//! Every peer starts at 0. Each [`Offence`] subtracts its penalty (see
//! [`OffencePenalties`] for the defaults); [`ReputationTracker::reward`] adds
//! points for good behaviour. Scores stay within `-100..=100` and decay
//! exponentially toward 0: after `half_life_secs` without events a score is
//! half as far from 0. Scores are persisted in dawn-store's `reputation`
//! table, so a restart does not wipe a peer's record.
//!
//! [`ReputationTracker::penalize`] and [`ReputationTracker::standing`] tell
//! the node what to do ([`ReputationAction`]); the node does it:
//!
//! * score below `ban_below` after an offence: **ban** until
//!   `now + ban_duration_secs` (refuse connections; the ban expires on its
//!   own, see [`ReputationTracker::unban`] to lift it early);
//! * otherwise, score below `disconnect_below`: **disconnect** (the peer may
//!   reconnect; while the score is still below the threshold it is
//!   disconnected again, so it must wait for the decay);
//! * otherwise nothing.
//!
//! With the defaults (half-life 1 h, disconnect below -50, ban below -80 for
//! 1 h): three protocol violations in quick succession get a peer
//! disconnected; two forged records, five protocol violations or seventeen
//! rate-limit offences (one per `rate_limit_interval_secs` of sustained
//! abuse: about three minutes of it) get it banned; a peer banned just below -80 is back
//! above the disconnect threshold about when its ban ends.
//!
//! Time is passed in (`now_ms`, unix milliseconds), so behaviour is
//! deterministic in tests. Changes are written through to the database on
//! every call that changes a score (one commit each; blocking: use
//! `spawn_blocking` from async code); reads use an in-memory copy. Call
//! [`ReputationTracker::prune`] now and then to forget peers whose score
//! has decayed to about 0.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use dawn_store::{ReputationEntry, Store, StoreError};
use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The lowest possible score.
pub const MIN_SCORE: f64 = -100.0;
/// The highest possible score.
pub const MAX_SCORE: f64 = 100.0;
/// Scores closer to 0 than this (and without an active ban) are forgotten by
/// [`ReputationTracker::prune`].
pub const PRUNE_BELOW_ABS_SCORE: f64 = 1.0;

/// A kind of misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Offence {
    /// Broke the Dawn protocol (unexpected message, wrong state).
    ProtocolViolation,
    /// Sent a message that does not decode.
    MalformedMessage,
    /// Sent a message over the size limit.
    OversizedMessage,
    /// Sent a registry record that is forged (bad signature, wrong owner).
    ForgedRecord,
    /// Exceeded a rate limit.
    RateLimitExceeded,
}

impl Offence {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Offence::ProtocolViolation => "protocol_violation",
            Offence::MalformedMessage => "malformed_message",
            Offence::OversizedMessage => "oversized_message",
            Offence::ForgedRecord => "forged_record",
            Offence::RateLimitExceeded => "rate_limit_exceeded",
        }
    }
}

impl fmt::Display for Offence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Penalty points per offence (`security.reputation.penalties`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OffencePenalties {
    /// Default 20.
    pub protocol_violation: f64,
    /// Default 10.
    pub malformed_message: f64,
    /// Default 20.
    pub oversized_message: f64,
    /// Default 50: forging is never an accident.
    pub forged_record: f64,
    /// Default 5: a burst can be a bug on an honest peer.
    pub rate_limit_exceeded: f64,
}

impl Default for OffencePenalties {
    fn default() -> Self {
        OffencePenalties {
            protocol_violation: 20.0,
            malformed_message: 10.0,
            oversized_message: 20.0,
            forged_record: 50.0,
            rate_limit_exceeded: 5.0,
        }
    }
}

impl OffencePenalties {
    /// The penalty for `offence`.
    pub fn for_offence(&self, offence: Offence) -> f64 {
        match offence {
            Offence::ProtocolViolation => self.protocol_violation,
            Offence::MalformedMessage => self.malformed_message,
            Offence::OversizedMessage => self.oversized_message,
            Offence::ForgedRecord => self.forged_record,
            Offence::RateLimitExceeded => self.rate_limit_exceeded,
        }
    }

    fn entries(&self) -> [(&'static str, f64); 5] {
        [
            ("protocol_violation", self.protocol_violation),
            ("malformed_message", self.malformed_message),
            ("oversized_message", self.oversized_message),
            ("forged_record", self.forged_record),
            ("rate_limit_exceeded", self.rate_limit_exceeded),
        ]
    }
}

/// Reputation settings (`security.reputation`), for embedding in the node's
/// config schema. Unknown keys are errors; every key has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationConfig {
    /// Seconds for a score to decay halfway to 0. Default 3600.
    pub half_life_secs: u64,
    /// Disconnect a peer whose score is below this. Default -50.
    pub disconnect_below: f64,
    /// Ban a peer whose score falls below this. Default -80.
    pub ban_below: f64,
    /// How long a ban lasts, in seconds. Default 3600.
    pub ban_duration_secs: u64,
    /// Penalty points per offence.
    pub penalties: OffencePenalties,
    /// At most one `rate_limit_exceeded` offence per peer per this many
    /// seconds (0: one per refused call), so a burst costs one penalty while
    /// sustained abuse keeps costing. Default 10.
    pub rate_limit_interval_secs: u64,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            half_life_secs: 3600,
            disconnect_below: -50.0,
            ban_below: -80.0,
            ban_duration_secs: 3600,
            penalties: OffencePenalties::default(),
            rate_limit_interval_secs: 10,
        }
    }
}

impl ReputationConfig {
    /// Checks the settings; messages name the config key.
    pub fn validate(&self) -> Result<(), ReputationError> {
        let invalid = |key: &str, reason: String| ReputationError::InvalidConfig {
            key: format!("security.reputation.{key}"),
            reason,
        };
        if self.half_life_secs == 0 {
            return Err(invalid("half_life_secs", "must be at least 1".to_owned()));
        }
        let in_range = |value: f64| value.is_finite() && (MIN_SCORE..0.0).contains(&value);
        if !in_range(self.disconnect_below) {
            return Err(invalid(
                "disconnect_below",
                format!("{} is not in -100..0", self.disconnect_below),
            ));
        }
        if !in_range(self.ban_below) || self.ban_below > self.disconnect_below {
            return Err(invalid(
                "ban_below",
                format!(
                    "{} must be in -100..0 and not above disconnect_below ({})",
                    self.ban_below, self.disconnect_below
                ),
            ));
        }
        if self.rate_limit_interval_secs > 86_400 {
            return Err(invalid(
                "rate_limit_interval_secs",
                format!("{} is not in 0..=86400", self.rate_limit_interval_secs),
            ));
        }
        for (name, penalty) in self.penalties.entries() {
            if !penalty.is_finite() || !(0.0..=200.0).contains(&penalty) {
                return Err(invalid(
                    &format!("penalties.{name}"),
                    format!("{penalty} is not in 0..=200"),
                ));
            }
        }
        Ok(())
    }
}

/// What the node should do about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReputationAction {
    /// Nothing.
    None,
    /// Close its connections.
    Disconnect,
    /// Close its connections and refuse new ones until `until_ms`.
    Ban {
        /// When the ban ends (unix milliseconds).
        until_ms: u64,
    },
}

/// A peer's reputation at a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStanding {
    /// The peer.
    pub peer: PeerId,
    /// Its score at that moment (decay applied).
    pub score: f64,
    /// The end of its current ban, if banned at that moment.
    pub banned_until_ms: Option<u64>,
    /// Offences committed in total.
    pub offences: u64,
    /// The most recent offence's name.
    pub last_offence: Option<String>,
    /// What to do.
    pub action: ReputationAction,
}

/// An error of the reputation tracker.
#[derive(Debug, Error)]
pub enum ReputationError {
    /// A setting is invalid.
    #[error("{key}: {reason}")]
    InvalidConfig {
        /// The config key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A stored record's key is not a peer id.
    #[error(
        "reputation record {key:?} in database {} is not a peer id ({reason})",
        path.display()
    )]
    InvalidRecord {
        /// The database file.
        path: std::path::PathBuf,
        /// The record's key.
        key: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq)]
struct PeerRecord {
    score: f64,
    updated_ms: u64,
    banned_until_ms: Option<u64>,
    offences: u64,
    last_offence: Option<String>,
}

impl PeerRecord {
    fn new(now_ms: u64) -> Self {
        PeerRecord {
            score: 0.0,
            updated_ms: now_ms,
            banned_until_ms: None,
            offences: 0,
            last_offence: None,
        }
    }
}

struct TrackerInner {
    store: Store,
    config: ReputationConfig,
    peers: Mutex<HashMap<PeerId, PeerRecord>>,
}

/// Per-peer reputation scores, persisted in the store. Cheap to clone (clones
/// share state); safe to use from many threads.
#[derive(Clone)]
pub struct ReputationTracker {
    inner: Arc<TrackerInner>,
}

impl fmt::Debug for ReputationTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReputationTracker")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ReputationTracker {
    /// Validates `config` and loads every stored record. Blocks on a database
    /// read.
    pub fn open(store: Store, config: ReputationConfig) -> Result<Self, ReputationError> {
        config.validate()?;
        let mut peers = HashMap::new();
        for entry in store.reputation_entries()? {
            let peer =
                PeerId::from_str(&entry.peer_id).map_err(|e| ReputationError::InvalidRecord {
                    path: store.path().to_path_buf(),
                    key: entry.peer_id.clone(),
                    reason: e.to_string(),
                })?;
            peers.insert(
                peer,
                PeerRecord {
                    score: entry.score.clamp(MIN_SCORE, MAX_SCORE),
                    updated_ms: entry.updated_ms,
                    banned_until_ms: entry.banned_until_ms,
                    offences: entry.offences,
                    last_offence: entry.last_offence,
                },
            );
        }
        Ok(ReputationTracker {
            inner: Arc::new(TrackerInner {
                store,
                config,
                peers: Mutex::new(peers),
            }),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &ReputationConfig {
        &self.inner.config
    }

    /// Records `offence` by `peer` at `now_ms` and returns the peer's new
    /// standing, whose action the node should carry out. Starts a ban when
    /// the score is below `ban_below` after the penalty (so an offence while
    /// the score is still that low restarts the ban). Durable on return.
    pub fn penalize(
        &self,
        peer: &PeerId,
        offence: Offence,
        now_ms: u64,
    ) -> Result<PeerStanding, ReputationError> {
        let penalty = self.inner.config.penalties.for_offence(offence);
        self.update(peer, now_ms, |record, config| {
            record.score = (record.score - penalty).max(MIN_SCORE);
            record.offences += 1;
            record.last_offence = Some(offence.as_str().to_owned());
            if record.score < config.ban_below {
                let until = now_ms.saturating_add(config.ban_duration_secs.saturating_mul(1000));
                record.banned_until_ms = Some(until);
            }
        })
        .inspect(|standing| {
            if !matches!(standing.action, ReputationAction::None) {
                tracing::info!(
                    %peer,
                    %offence,
                    score = standing.score,
                    action = ?standing.action,
                    "peer reputation fell below a threshold"
                );
            }
        })
    }

    /// Adds `points` (at most `100`; negative values are ignored) for good
    /// behaviour at `now_ms`. Does not lift a ban. Durable on return.
    pub fn reward(
        &self,
        peer: &PeerId,
        points: f64,
        now_ms: u64,
    ) -> Result<PeerStanding, ReputationError> {
        let points = if points.is_finite() {
            points.clamp(0.0, MAX_SCORE)
        } else {
            0.0
        };
        self.update(peer, now_ms, |record, _| {
            record.score = (record.score + points).min(MAX_SCORE);
        })
    }

    /// The peer's standing at `now_ms` (decay applied; nothing is written).
    /// A peer without a record stands at 0 with no action.
    pub fn standing(&self, peer: &PeerId, now_ms: u64) -> PeerStanding {
        let peers = self.lock();
        let record = peers
            .get(peer)
            .cloned()
            .unwrap_or_else(|| PeerRecord::new(now_ms));
        self.standing_of(peer, &record, now_ms)
    }

    /// The end of `peer`'s ban, if it is banned at `now_ms`.
    pub fn banned_until(&self, peer: &PeerId, now_ms: u64) -> Option<u64> {
        self.standing(peer, now_ms).banned_until_ms
    }

    /// Lifts `peer`'s ban (its score is kept). Returns whether it was banned.
    /// Durable on return.
    pub fn unban(&self, peer: &PeerId, now_ms: u64) -> Result<bool, ReputationError> {
        let mut was_banned = false;
        self.update(peer, now_ms, |record, _| {
            was_banned = record.banned_until_ms.is_some_and(|until| until > now_ms);
            record.banned_until_ms = None;
        })?;
        Ok(was_banned)
    }

    /// Every peer with a record, with its standing at `now_ms`, lowest score
    /// first.
    pub fn list(&self, now_ms: u64) -> Vec<PeerStanding> {
        let peers = self.lock();
        let mut all: Vec<PeerStanding> = peers
            .iter()
            .map(|(peer, record)| self.standing_of(peer, record, now_ms))
            .collect();
        all.sort_by(|a, b| a.score.total_cmp(&b.score));
        all
    }

    /// Forgets peers whose score has decayed to within
    /// [`PRUNE_BELOW_ABS_SCORE`] of 0 and who are not banned at `now_ms`.
    /// Returns how many were forgotten. One database commit.
    pub fn prune(&self, now_ms: u64) -> Result<usize, ReputationError> {
        let mut peers = self.lock();
        let forget: Vec<PeerId> = peers
            .iter()
            .filter(|(_, record)| {
                let score = decayed(record, now_ms, self.inner.config.half_life_secs);
                score.abs() < PRUNE_BELOW_ABS_SCORE
                    && record.banned_until_ms.is_none_or(|until| until <= now_ms)
            })
            .map(|(peer, _)| *peer)
            .collect();
        if forget.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = forget.iter().map(|peer| peer.to_base58()).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.inner.store.remove_reputation_entries(&key_refs)?;
        for peer in &forget {
            peers.remove(peer);
        }
        Ok(forget.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, PeerRecord>> {
        self.inner
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Decays the record to `now_ms`, applies `change`, writes it through and
    /// returns the new standing.
    fn update(
        &self,
        peer: &PeerId,
        now_ms: u64,
        change: impl FnOnce(&mut PeerRecord, &ReputationConfig),
    ) -> Result<PeerStanding, ReputationError> {
        let mut peers = self.lock();
        let mut record = peers
            .get(peer)
            .cloned()
            .unwrap_or_else(|| PeerRecord::new(now_ms));
        record.score = decayed(&record, now_ms, self.inner.config.half_life_secs);
        record.updated_ms = record.updated_ms.max(now_ms);
        change(&mut record, &self.inner.config);
        self.inner.store.put_reputation_entry(&ReputationEntry {
            peer_id: peer.to_base58(),
            score: record.score,
            updated_ms: record.updated_ms,
            banned_until_ms: record.banned_until_ms,
            offences: record.offences,
            last_offence: record.last_offence.clone(),
        })?;
        let standing = self.standing_of(peer, &record, now_ms);
        peers.insert(*peer, record);
        Ok(standing)
    }

    fn standing_of(&self, peer: &PeerId, record: &PeerRecord, now_ms: u64) -> PeerStanding {
        let config = &self.inner.config;
        let score = decayed(record, now_ms, config.half_life_secs);
        let banned_until_ms = record.banned_until_ms.filter(|until| *until > now_ms);
        let action = match banned_until_ms {
            Some(until_ms) => ReputationAction::Ban { until_ms },
            None if score < config.disconnect_below => ReputationAction::Disconnect,
            None => ReputationAction::None,
        };
        PeerStanding {
            peer: *peer,
            score,
            banned_until_ms,
            offences: record.offences,
            last_offence: record.last_offence.clone(),
            action,
        }
    }
}

/// The record's score decayed from `updated_ms` to `now_ms`.
fn decayed(record: &PeerRecord, now_ms: u64, half_life_secs: u64) -> f64 {
    let elapsed_ms = now_ms.saturating_sub(record.updated_ms);
    if elapsed_ms == 0 || record.score == 0.0 {
        return record.score;
    }
    let half_lives = elapsed_ms as f64 / (half_life_secs as f64 * 1000.0);
    record.score * 0.5f64.powf(half_lives)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_halves_per_half_life() {
        let record = PeerRecord {
            score: -80.0,
            ..PeerRecord::new(1_000)
        };
        assert_eq!(decayed(&record, 1_000, 60), -80.0);
        assert!((decayed(&record, 61_000, 60) + 40.0).abs() < 1e-9);
        assert!((decayed(&record, 121_000, 60) + 20.0).abs() < 1e-9);
        assert_eq!(decayed(&record, 0, 60), -80.0, "clock going back: no decay");
    }

    #[test]
    fn config_validation_names_keys() {
        ReputationConfig::default().validate().unwrap();
        let bad = ReputationConfig {
            ban_below: -10.0,
            ..ReputationConfig::default()
        };
        let error = bad.validate().unwrap_err().to_string();
        assert!(
            error.starts_with("security.reputation.ban_below: "),
            "{error}"
        );
        let bad = ReputationConfig {
            penalties: OffencePenalties {
                forged_record: f64::NAN,
                ..OffencePenalties::default()
            },
            ..ReputationConfig::default()
        };
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("penalties.forged_record"), "{error}");
        let bad = ReputationConfig {
            rate_limit_interval_secs: 86_401,
            ..ReputationConfig::default()
        };
        let error = bad.validate().unwrap_err().to_string();
        assert!(
            error.starts_with("security.reputation.rate_limit_interval_secs: "),
            "{error}"
        );
    }

    #[test]
    fn config_has_defaults_and_refuses_unknown_keys() {
        let config: ReputationConfig =
            serde_json::from_str(r#"{"ban_below": -90, "penalties": {"forged_record": 60}}"#)
                .unwrap();
        assert_eq!(config.ban_below, -90.0);
        assert_eq!(config.penalties.forged_record, 60.0);
        assert_eq!(config.penalties.protocol_violation, 20.0);
        assert!(serde_json::from_str::<ReputationConfig>(r#"{"ban_bellow": -90}"#).is_err());
    }
}
