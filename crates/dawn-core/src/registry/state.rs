//! The merged registry: a state-based CRDT plus local liveness.
//!
//! # The CRDT
//!
//! The registry is a map from origin node to that node's latest signed
//! record. Merging two copies keeps, per origin, the record with the higher
//! `version`; equal versions with different content (only possible if an
//! origin lost its counter) are ordered by the SHA-256 of the body, so every
//! node picks the same one. The merge is commutative, associative and
//! idempotent, and never looks at a clock: any two nodes that received the
//! same records hold the same registry, in whatever order they arrived.
//!
//! Removing an agent is a new version of its node's record without it, so
//! an older record can never bring it back. When a whole node expires (no
//! sign of life for `registry.expiry`), its entry is replaced by a
//! tombstone that remembers the version, for another `registry.expiry`, so
//! copies of the old record still held by others are refused too.
//!
//! # Liveness
//!
//! Liveness is local knowledge, not part of the CRDT. An origin is
//! available while the newest evidence that it is alive is younger than
//! `registry.liveness_timeout`. Evidence is a record or heartbeat with a
//! higher sequence number than seen before from that origin (a replay of an
//! old one proves nothing), received from the origin itself, or reported by
//! a peer during anti-entropy with the age at which that peer heard it. A
//! heartbeat with `leaving` makes the origin unavailable at once.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use dawn_transport::PeerId;

use super::record::{SignedHeartbeat, SignedRecord};

/// Where a piece of evidence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evidence {
    /// Sent by the origin itself just now (gossip authored by it, or its own
    /// answer to a sync).
    Fresh,
    /// Relayed by a peer, which heard from the origin `age` ago (`None`: it
    /// does not know the origin to be alive).
    Relayed(Option<Duration>),
    /// Loaded from this node's cache at start: shown at once (available
    /// for one liveness period if it was when cached), but unconfirmed until
    /// the network confirms it.
    Cached {
        /// Whether the origin was available when the record was cached.
        available: bool,
    },
}

/// What merging a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordOutcome {
    /// Older than the known record or tombstone: dropped.
    Stale,
    /// The same record as known (liveness may still have changed).
    Same,
    /// A newer record replaced the known one, or the origin is new.
    Updated,
}

/// What a heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatOutcome {
    /// Not newer than what was heard from the origin: dropped.
    Stale,
    /// Accepted.
    Accepted {
        /// The heartbeat vouches for a record version this node does not
        /// have: fetch it.
        need_record: bool,
    },
}

/// A node's entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) record: Arc<SignedRecord>,
    /// The newest heartbeat accepted, passed on during anti-entropy.
    pub(crate) heartbeat: Option<Bytes>,
    /// The highest record version or heartbeat seq that counted as evidence.
    pub(crate) last_seq: u64,
    /// When the newest evidence of life was heard (or reported to be).
    pub(crate) heard_at: Option<Instant>,
    /// When the entry last changed or was heard from: the start of its
    /// expiry period.
    pub(crate) touched_at: Instant,
    /// The origin said it is leaving.
    pub(crate) leaving: bool,
    /// A peer (or the origin) confirmed the record since it was loaded from
    /// the cache.
    pub(crate) confirmed: bool,
    /// Availability as of the last evaluation (to report changes).
    pub(crate) was_available: bool,
}

impl Entry {
    pub(crate) fn available(&self, now: Instant, timeout: Duration) -> bool {
        !self.leaving
            && self
                .heard_at
                .is_some_and(|t| now.saturating_duration_since(t) < timeout)
    }
}

/// A change the node reports (events, metrics, persistence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The origin's availability flipped.
    Availability(PeerId),
    /// The origin expired and was removed.
    Expired(PeerId),
}

/// The registry of one node.
#[derive(Debug)]
pub(crate) struct RegistryState {
    local: PeerId,
    liveness_timeout: Duration,
    expiry: Duration,
    entries: HashMap<PeerId, Entry>,
    /// Expired origins: the version they had and when they expired.
    tombstones: HashMap<PeerId, (u64, Instant)>,
}

/// Most tombstones kept; the oldest go first.
const MAX_TOMBSTONES: usize = 10_000;

impl RegistryState {
    pub(crate) fn new(local: PeerId, liveness_timeout: Duration, expiry: Duration) -> Self {
        RegistryState {
            local,
            liveness_timeout,
            expiry,
            entries: HashMap::new(),
            tombstones: HashMap::new(),
        }
    }

    pub(crate) fn liveness_timeout(&self) -> Duration {
        self.liveness_timeout
    }

    pub(crate) fn entry(&self, origin: &PeerId) -> Option<&Entry> {
        self.entries.get(origin)
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (&PeerId, &Entry)> {
        self.entries.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The version known for `origin` (or its tombstone's), 0 if none.
    pub(crate) fn known_version(&self, origin: &PeerId) -> u64 {
        self.entries
            .get(origin)
            .map(|e| e.record.body.version)
            .or_else(|| self.tombstones.get(origin).map(|(v, _)| *v))
            .unwrap_or(0)
    }

    /// Whether `origin` is available now.
    #[cfg(test)]
    pub(crate) fn is_available(&self, origin: &PeerId, now: Instant) -> bool {
        *origin == self.local
            || self
                .entries
                .get(origin)
                .is_some_and(|e| e.available(now, self.liveness_timeout))
    }

    /// Sets this node's own record: always available and confirmed.
    pub(crate) fn set_local(&mut self, record: Arc<SignedRecord>, now: Instant) {
        let version = record.body.version;
        let entry = self.entries.entry(self.local).or_insert_with(|| Entry {
            record: record.clone(),
            heartbeat: None,
            last_seq: version,
            heard_at: Some(now),
            touched_at: now,
            leaving: false,
            confirmed: true,
            was_available: true,
        });
        entry.record = record;
        entry.last_seq = entry.last_seq.max(version);
    }

    /// Sets this node's own latest heartbeat.
    pub(crate) fn set_local_heartbeat(&mut self, heartbeat: &SignedHeartbeat) {
        if let Some(entry) = self.entries.get_mut(&self.local) {
            entry.heartbeat = Some(heartbeat.envelope.clone());
            entry.last_seq = entry.last_seq.max(heartbeat.body.seq);
        }
    }

    /// Merges a record of another node.
    pub(crate) fn merge_record(
        &mut self,
        record: Arc<SignedRecord>,
        evidence: Evidence,
        now: Instant,
    ) -> RecordOutcome {
        let origin = record.body.origin;
        let version = record.body.version;
        if origin == self.local {
            return RecordOutcome::Stale;
        }
        if let Some((tomb_version, _)) = self.tombstones.get(&origin) {
            if version <= *tomb_version {
                return RecordOutcome::Stale;
            }
            self.tombstones.remove(&origin);
        }
        let timeout = self.liveness_timeout;
        let outcome = match self.entries.get_mut(&origin) {
            Some(entry) => {
                let known = (entry.record.body.version, entry.record.digest);
                let incoming = (version, record.digest);
                if incoming < known {
                    return RecordOutcome::Stale;
                }
                if incoming == known {
                    RecordOutcome::Same
                } else {
                    entry.record = record;
                    entry.touched_at = now;
                    RecordOutcome::Updated
                }
            }
            None => {
                self.entries.insert(
                    origin,
                    Entry {
                        record,
                        heartbeat: None,
                        last_seq: 0,
                        heard_at: None,
                        touched_at: now,
                        leaving: false,
                        confirmed: false,
                        was_available: false,
                    },
                );
                RecordOutcome::Updated
            }
        };
        if let Some(entry) = self.entries.get_mut(&origin) {
            apply_evidence(entry, version, evidence, now, timeout);
        }
        outcome
    }

    /// Merges a heartbeat of another node (whose record may be unknown).
    pub(crate) fn merge_heartbeat(
        &mut self,
        heartbeat: &SignedHeartbeat,
        evidence: Evidence,
        now: Instant,
    ) -> HeartbeatOutcome {
        let body = &heartbeat.body;
        if body.origin == self.local {
            return HeartbeatOutcome::Stale;
        }
        let timeout = self.liveness_timeout;
        let Some(entry) = self.entries.get_mut(&body.origin) else {
            let tombstoned = self
                .tombstones
                .get(&body.origin)
                .is_some_and(|(v, _)| body.version <= *v);
            return if tombstoned {
                HeartbeatOutcome::Stale
            } else {
                HeartbeatOutcome::Accepted { need_record: true }
            };
        };
        if body.seq <= entry.last_seq {
            return HeartbeatOutcome::Stale;
        }
        apply_evidence(entry, body.seq, evidence, now, timeout);
        entry.heartbeat = Some(heartbeat.envelope.clone());
        entry.leaving = body.leaving;
        if body.leaving {
            entry.heard_at = None;
        }
        entry.touched_at = now;
        HeartbeatOutcome::Accepted {
            need_record: body.version > entry.record.body.version,
        }
    }

    /// Re-evaluates availability and expiry. Returns what changed.
    pub(crate) fn sweep(&mut self, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        let timeout = self.liveness_timeout;
        let expiry = self.expiry;
        let mut expired = Vec::new();
        for (origin, entry) in &mut self.entries {
            if *origin == self.local {
                continue;
            }
            let available = entry.available(now, timeout);
            if available != entry.was_available {
                entry.was_available = available;
                changes.push(Change::Availability(*origin));
            }
            let since = entry
                .heard_at
                .map_or(entry.touched_at, |h| h.max(entry.touched_at));
            if !available && now.saturating_duration_since(since) >= expiry {
                expired.push(*origin);
            }
        }
        for origin in expired {
            if let Some(entry) = self.entries.remove(&origin) {
                self.tombstones
                    .insert(origin, (entry.record.body.version, now));
                changes.push(Change::Expired(origin));
            }
        }
        self.tombstones
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < expiry);
        if self.tombstones.len() > MAX_TOMBSTONES {
            let mut by_age: Vec<(PeerId, Instant)> = self
                .tombstones
                .iter()
                .map(|(p, (_, at))| (*p, *at))
                .collect();
            by_age.sort_by_key(|(_, at)| *at);
            let excess = self.tombstones.len() - MAX_TOMBSTONES;
            for (origin, _) in by_age.into_iter().take(excess) {
                self.tombstones.remove(&origin);
            }
        }
        changes
    }

    /// Marks availability as reported (after a merge changed it).
    pub(crate) fn note_availability(&mut self, origin: &PeerId, now: Instant) -> bool {
        let timeout = self.liveness_timeout;
        match self.entries.get_mut(origin) {
            Some(entry) => {
                let available = entry.available(now, timeout);
                let changed = available != entry.was_available;
                entry.was_available = available;
                changed
            }
            None => false,
        }
    }

    /// Origins and versions, for anti-entropy.
    pub(crate) fn digest(&self) -> HashMap<PeerId, u64> {
        self.entries
            .iter()
            .map(|(p, e)| (*p, e.record.body.version))
            .collect()
    }

    /// For each origin heard from, the sequence number of the newest
    /// evidence of life: a peer need only report newer evidence.
    pub(crate) fn seen(&self) -> HashMap<PeerId, u64> {
        self.entries
            .iter()
            .filter(|(_, e)| e.heard_at.is_some())
            .map(|(p, e)| (*p, e.last_seq))
            .collect()
    }

    /// Origins whose entry is available now.
    pub(crate) fn available_origins(&self, now: Instant) -> HashSet<PeerId> {
        self.entries
            .iter()
            .filter(|(p, e)| **p == self.local || e.available(now, self.liveness_timeout))
            .map(|(p, _)| *p)
            .collect()
    }
}

/// Applies liveness evidence carried by something with sequence `seq`.
fn apply_evidence(
    entry: &mut Entry,
    seq: u64,
    evidence: Evidence,
    now: Instant,
    timeout: Duration,
) {
    match evidence {
        Evidence::Cached { available } => {
            // Shown at once, for one liveness period, unless confirmed.
            entry.last_seq = entry.last_seq.max(seq);
            entry.heard_at = available.then_some(now);
            entry.was_available = available;
            entry.confirmed = false;
        }
        Evidence::Fresh => {
            entry.confirmed = true;
            if seq > entry.last_seq {
                entry.last_seq = seq;
                entry.heard_at = Some(now);
                entry.leaving = false;
                entry.touched_at = now;
            }
        }
        Evidence::Relayed(age) => {
            entry.confirmed = true;
            if let Some(age) = age
                && seq >= entry.last_seq
                && age < timeout
            {
                let heard = now.checked_sub(age).unwrap_or(now);
                if seq > entry.last_seq || entry.heard_at.is_none_or(|h| heard > h) {
                    entry.heard_at = Some(entry.heard_at.map_or(heard, |h| h.max(heard)));
                    if seq > entry.last_seq {
                        entry.leaving = false;
                    }
                    entry.last_seq = seq;
                    entry.touched_at = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{
        descriptor::AgentDescriptor,
        registry::record::{HeartbeatBody, RecordBody, seal_heartbeat, seal_record},
    };
    use dawn_transport::identity::Keypair;

    const TIMEOUT: Duration = Duration::from_secs(10);
    const EXPIRY: Duration = Duration::from_secs(60);

    fn agent(id: &str) -> AgentDescriptor {
        AgentDescriptor {
            id: id.into(),
            description: String::new(),
            tools: vec![],
            resources: vec![],
            resource_templates: vec![],
            prompts: vec![],
        }
    }

    fn record(key: &Keypair, version: u64, agents: &[&str]) -> Arc<SignedRecord> {
        seal_record(
            key,
            RecordBody {
                origin: key.public().to_peer_id(),
                version,
                addrs: vec![],
                agents: agents.iter().map(|a| agent(a)).collect(),
            },
        )
        .unwrap()
    }

    fn heartbeat(key: &Keypair, seq: u64, version: u64, leaving: bool) -> SignedHeartbeat {
        seal_heartbeat(
            key,
            HeartbeatBody {
                origin: key.public().to_peer_id(),
                seq,
                version,
                leaving,
            },
        )
        .unwrap()
    }

    fn state() -> RegistryState {
        RegistryState::new(PeerId::random(), TIMEOUT, EXPIRY)
    }

    fn agents_of(state: &RegistryState, origin: &PeerId) -> Vec<String> {
        state.entries[origin]
            .record
            .body
            .agents
            .iter()
            .map(|a| a.id.clone())
            .collect()
    }

    #[test]
    fn merge_is_order_independent() {
        let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate_ed25519()).collect();
        let mut records = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            for v in 1..=3u64 {
                records.push(record(key, v, &[&format!("a{i}v{v}")]));
            }
        }
        let now = Instant::now();
        let mut forward = state();
        for r in &records {
            forward.merge_record(r.clone(), Evidence::Relayed(None), now);
        }
        let mut backward = state();
        for r in records.iter().rev() {
            backward.merge_record(r.clone(), Evidence::Relayed(None), now);
            // Idempotent: merging twice changes nothing.
            backward.merge_record(r.clone(), Evidence::Relayed(None), now);
        }
        assert_eq!(forward.digest(), backward.digest());
        for key in &keys {
            let origin = key.public().to_peer_id();
            assert_eq!(forward.known_version(&origin), 3);
            assert_eq!(agents_of(&forward, &origin), agents_of(&backward, &origin));
        }
    }

    #[test]
    fn equal_versions_pick_the_same_winner_everywhere() {
        let key = Keypair::generate_ed25519();
        let a = record(&key, 5, &["left"]);
        let b = record(&key, 5, &["right"]);
        let now = Instant::now();
        let mut one = state();
        one.merge_record(a.clone(), Evidence::Relayed(None), now);
        one.merge_record(b.clone(), Evidence::Relayed(None), now);
        let mut two = state();
        two.merge_record(b, Evidence::Relayed(None), now);
        two.merge_record(a, Evidence::Relayed(None), now);
        let origin = key.public().to_peer_id();
        assert_eq!(agents_of(&one, &origin), agents_of(&two, &origin));
    }

    #[test]
    fn a_removed_agent_never_comes_back_from_an_old_record() {
        let key = Keypair::generate_ed25519();
        let origin = key.public().to_peer_id();
        let old = record(&key, 1, &["keep", "gone"]);
        let new = record(&key, 2, &["keep"]);
        let now = Instant::now();
        let mut s = state();
        s.merge_record(old.clone(), Evidence::Fresh, now);
        assert_eq!(
            s.merge_record(new, Evidence::Fresh, now),
            RecordOutcome::Updated
        );
        assert_eq!(
            s.merge_record(old, Evidence::Relayed(Some(Duration::ZERO)), now),
            RecordOutcome::Stale
        );
        assert_eq!(agents_of(&s, &origin), ["keep"]);
    }

    #[test]
    fn liveness_runs_out_after_the_timeout_and_heartbeats_renew_it() {
        let key = Keypair::generate_ed25519();
        let origin = key.public().to_peer_id();
        let t0 = Instant::now();
        let mut s = state();
        s.merge_record(record(&key, 10, &["a"]), Evidence::Fresh, t0);
        assert!(s.note_availability(&origin, t0));
        assert!(s.is_available(&origin, t0 + TIMEOUT - Duration::from_millis(1)));
        assert!(!s.is_available(&origin, t0 + TIMEOUT));
        assert_eq!(s.sweep(t0 + TIMEOUT), vec![Change::Availability(origin)]);
        // A heartbeat brings it back; a replay of it does not extend life.
        let t1 = t0 + TIMEOUT + Duration::from_secs(1);
        let hb = heartbeat(&key, 11, 10, false);
        assert_eq!(
            s.merge_heartbeat(&hb, Evidence::Fresh, t1),
            HeartbeatOutcome::Accepted { need_record: false }
        );
        assert!(s.is_available(&origin, t1));
        let t2 = t1 + TIMEOUT;
        assert_eq!(
            s.merge_heartbeat(&hb, Evidence::Fresh, t2),
            HeartbeatOutcome::Stale
        );
        assert!(!s.is_available(&origin, t2));
        // A newer heartbeat that vouches for an unknown record asks for it.
        assert_eq!(
            s.merge_heartbeat(&heartbeat(&key, 13, 12, false), Evidence::Fresh, t2),
            HeartbeatOutcome::Accepted { need_record: true }
        );
    }

    #[test]
    fn leaving_makes_it_unavailable_at_once() {
        let key = Keypair::generate_ed25519();
        let origin = key.public().to_peer_id();
        let t0 = Instant::now();
        let mut s = state();
        s.merge_record(record(&key, 10, &["a"]), Evidence::Fresh, t0);
        s.merge_heartbeat(&heartbeat(&key, 11, 10, true), Evidence::Fresh, t0);
        assert!(!s.is_available(&origin, t0));
        // Restarted: a higher epoch brings it back.
        s.merge_record(record(&key, 1 << 32 | 1, &["a"]), Evidence::Fresh, t0);
        assert!(s.is_available(&origin, t0));
    }

    #[test]
    fn relayed_evidence_counts_with_its_age_and_never_beyond_the_timeout() {
        let key = Keypair::generate_ed25519();
        let origin = key.public().to_peer_id();
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut s = state();
        s.merge_record(
            record(&key, 10, &["a"]),
            Evidence::Relayed(Some(Duration::from_secs(8))),
            t0,
        );
        assert!(s.is_available(&origin, t0));
        assert!(!s.is_available(&origin, t0 + Duration::from_secs(2)));
        let other = Keypair::generate_ed25519();
        s.merge_record(
            record(&other, 10, &["a"]),
            Evidence::Relayed(Some(TIMEOUT)),
            t0,
        );
        assert!(!s.is_available(&other.public().to_peer_id(), t0));
        s.merge_record(record(&other, 11, &["a"]), Evidence::Relayed(None), t0);
        assert!(!s.is_available(&other.public().to_peer_id(), t0));
    }

    #[test]
    fn expired_origins_leave_tombstones_that_refuse_old_records() {
        let key = Keypair::generate_ed25519();
        let origin = key.public().to_peer_id();
        let t0 = Instant::now();
        let mut s = state();
        let r = record(&key, 10, &["a"]);
        s.merge_record(r.clone(), Evidence::Fresh, t0);
        s.note_availability(&origin, t0);
        let later = t0 + EXPIRY + Duration::from_secs(1);
        let changes = s.sweep(later);
        assert!(changes.contains(&Change::Expired(origin)), "{changes:?}");
        assert!(s.entry(&origin).is_none());
        assert_eq!(
            s.merge_record(r, Evidence::Relayed(None), later),
            RecordOutcome::Stale
        );
        assert_eq!(
            s.merge_heartbeat(&heartbeat(&key, 10, 10, false), Evidence::Fresh, later),
            HeartbeatOutcome::Stale
        );
        // A newer record (the node came back) is taken.
        assert_eq!(
            s.merge_record(record(&key, 20, &["a"]), Evidence::Fresh, later),
            RecordOutcome::Updated
        );
        assert!(s.is_available(&origin, later));
    }

    #[test]
    fn cached_entries_are_served_unconfirmed_until_the_network_confirms() {
        let key = Keypair::generate_ed25519();
        let origin = key.public().to_peer_id();
        let t0 = Instant::now();
        let mut s = state();
        let r = record(&key, 10, &["a"]);
        s.merge_record(r.clone(), Evidence::Cached { available: true }, t0);
        assert!(s.is_available(&origin, t0));
        assert!(!s.entry(&origin).unwrap().confirmed);
        assert!(!s.is_available(&origin, t0 + TIMEOUT));
        s.merge_record(r, Evidence::Relayed(Some(Duration::ZERO)), t0 + TIMEOUT);
        assert!(s.entry(&origin).unwrap().confirmed);
    }
}
