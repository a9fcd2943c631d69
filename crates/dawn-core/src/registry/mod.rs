//! The mesh registry: which nodes exist, which agents (with tools,
//! resources and prompts) each offers, and whether they are reachable now.
//!
//! Every node signs a record of its own agents with its node key and a
//! version that only ever increases (an epoch stored in the database, bumped
//! at every start, times 2³², plus a counter), publishes it on the gossip
//! topic [`TOPIC`] whenever it changes, and a small signed heartbeat every
//! `registry.announce_interval`. Receivers verify the signature and that the
//! signer is the record's origin, and merge records into a CRDT keyed by
//! origin (see [`state`]). Nodes that connect compare registries over the
//! Dawn RPC method `dawn/registry_sync` (anti-entropy), so a node that joins
//! or comes back from a partition catches up at once. Forged, malformed or
//! replayed announcements are dropped, counted
//! (`dawn_registry_rejected_total{reason}`), reported as
//! [`NodeEvent::RegistryRejected`](crate::NodeEvent::RegistryRejected), and
//! rejected in gossipsub (which lowers the sender's peer score) when the
//! sender is at fault. The registry is cached in the database, so a
//! restarted node serves its last view at once, marked unconfirmed until a
//! peer confirms it.
//!
//! `docs/registry.md` describes the protocol for operators.

pub(crate) mod record;
mod service;
pub(crate) mod state;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine as _;
use bytes::Bytes;
use dawn_store::{RegistryCacheEntry, Store};
use dawn_transport::{Multiaddr, PeerId, identity};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use record::RegistryRejectReason;
pub(crate) use service::{answer as answer_sync, leave, prime, run};

use crate::{config::RegistrySection, descriptor::AgentDescriptor};
use record::{Announcement, Rejection, SignedHeartbeat, SignedRecord};
use state::{Change, Evidence, HeartbeatOutcome, RecordOutcome, RegistryState};

/// The gossipsub topic records and heartbeats are published on.
pub const TOPIC: &str = "dawn/registry/1";
/// The node-level RPC method for anti-entropy.
pub(crate) const SYNC_METHOD: &str = "dawn/registry_sync";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One node as the registry knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegistryEntry {
    /// The node.
    pub origin: PeerId,
    /// The version of its current record.
    pub version: u64,
    /// Whether this is the local node.
    pub local: bool,
    /// Whether it is reachable now (heard from within
    /// `registry.liveness_timeout`, and not leaving).
    pub available: bool,
    /// `false` for an entry loaded from the cache at start that no peer has
    /// confirmed yet.
    pub confirmed: bool,
    /// How long ago it was last heard from, if ever.
    pub last_heard: Option<Duration>,
    /// Where it can be dialed, as it announced.
    pub addrs: Vec<Multiaddr>,
    /// Its agents.
    pub agents: Vec<AgentDescriptor>,
}

/// Counters of the registry since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RegistryStats {
    /// Announcements dropped, by reason (`malformed`, `too_large`, `forged`,
    /// `replayed`).
    pub rejected: BTreeMap<String, u64>,
    /// Records accepted (new or newer versions).
    pub records_accepted: u64,
    /// Heartbeats accepted.
    pub heartbeats_accepted: u64,
    /// Anti-entropy exchanges this node started that completed.
    pub syncs: u64,
}

/// This node's own announcements.
#[derive(Debug)]
struct Own {
    epoch: u64,
    seq: u64,
    record: Option<Arc<SignedRecord>>,
    heartbeat: Option<SignedHeartbeat>,
}

impl Own {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        (self.epoch << 32) | self.seq
    }

    fn current(&self) -> u64 {
        (self.epoch << 32) | self.seq
    }
}

/// How an announcement arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Via<'a> {
    /// Gossip, signed by `author`.
    Gossip { author: Option<PeerId> },
    /// An anti-entropy answer: the provider heard from the origin `age` ago;
    /// `sent` is the digest we sent it.
    Sync {
        age: Option<Duration>,
        sent: &'a HashMap<PeerId, u64>,
    },
}

/// What receiving an announcement did.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Dropped as invalid (or replayed), with the reason.
    pub(crate) rejected: Option<Rejection>,
    /// Accepted: pass it on (gossip).
    pub(crate) accepted: bool,
    /// Origins whose visible state changed.
    pub(crate) changed: Vec<PeerId>,
    /// A record to fetch: a heartbeat vouched for a version not held.
    pub(crate) need_record: Option<PeerId>,
    /// Addresses learned with a new record.
    pub(crate) addrs: Option<(PeerId, Vec<Multiaddr>)>,
    /// A version of our own above our counter was seen (restored backup):
    /// move past it.
    pub(crate) own_newer: Option<u64>,
}

/// The registry of one node.
pub(crate) struct Registry {
    keypair: identity::Keypair,
    local: PeerId,
    config: RegistrySection,
    store: Store,
    state: Mutex<RegistryState>,
    own: Mutex<Own>,
    rejected: [AtomicU64; 4],
    records_accepted: AtomicU64,
    heartbeats_accepted: AtomicU64,
    syncs: AtomicU64,
    /// Origins to write to / remove from the cache.
    dirty: Mutex<(HashSet<PeerId>, HashSet<PeerId>)>,
    /// Origins whose record is being fetched.
    fetching: Mutex<HashSet<PeerId>>,
    /// The own record was published while no peer subscribed.
    unpublished: std::sync::atomic::AtomicBool,
    /// A cache write is running.
    pub(crate) persisting: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    crate::node::now_ms()
}

impl Registry {
    /// Starts a new epoch and loads the cache (blocking: file I/O).
    pub(crate) fn open(
        store: &Store,
        keypair: identity::Keypair,
        config: &RegistrySection,
    ) -> Result<Registry, dawn_store::StoreError> {
        let local = keypair.public().to_peer_id();
        let epoch = store.next_registry_epoch(0)?;
        let mut state = RegistryState::new(local, config.liveness_timeout.0, config.expiry.0);
        let now = Instant::now();
        let max_age_ms = u64::try_from(config.expiry.0.as_millis()).unwrap_or(u64::MAX);
        let wall = now_ms();
        let mut stale = Vec::new();
        let mut loaded = 0usize;
        for cached in store.registry_entries()? {
            let fresh = wall.saturating_sub(cached.stored_ms) < max_age_ms;
            let announcement = B64
                .decode(cached.envelope.as_bytes())
                .ok()
                .map(Bytes::from)
                .and_then(|b| record::open(&b, usize::MAX).ok());
            match announcement {
                Some(Announcement::Record(r))
                    if fresh
                        && r.body.origin != local
                        && r.body.origin.to_string() == cached.origin =>
                {
                    state.merge_record(
                        r,
                        Evidence::Cached {
                            available: cached.available,
                        },
                        now,
                    );
                    loaded += 1;
                }
                _ => stale.push(cached.origin),
            }
        }
        if !stale.is_empty() {
            let keys: Vec<&str> = stale.iter().map(String::as_str).collect();
            store.remove_registry_entries(&keys)?;
        }
        if loaded > 0 {
            tracing::info!(
                nodes = loaded,
                "serving the cached mesh registry until peers confirm it"
            );
        }
        Ok(Registry {
            keypair,
            local,
            config: config.clone(),
            store: store.clone(),
            state: Mutex::new(state),
            own: Mutex::new(Own {
                epoch,
                seq: 0,
                record: None,
                heartbeat: None,
            }),
            rejected: Default::default(),
            records_accepted: AtomicU64::new(0),
            heartbeats_accepted: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            dirty: Mutex::new((HashSet::new(), HashSet::new())),
            fetching: Mutex::new(HashSet::new()),
            unpublished: std::sync::atomic::AtomicBool::new(false),
            persisting: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn max_size(&self) -> usize {
        usize::try_from(self.config.max_record_size.0).unwrap_or(usize::MAX)
    }

    /// Builds and signs a new own record if `agents` or `addrs` differ from
    /// the current one. Returns it if it is new and should be published.
    pub(crate) fn update_own(
        &self,
        agents: Vec<AgentDescriptor>,
        addrs: Vec<Multiaddr>,
    ) -> Option<Arc<SignedRecord>> {
        let mut own = lock(&self.own);
        if let Some(current) = &own.record
            && current.body.agents == agents
            && current.body.addrs == addrs
        {
            return None;
        }
        let version = own.next_seq();
        let body = record::RecordBody {
            origin: self.local,
            version,
            addrs,
            agents,
        };
        let sealed = match record::seal_record(&self.keypair, body) {
            Ok(r) => r,
            Err(error) => {
                tracing::error!(%error, "cannot sign the registry record");
                return None;
            }
        };
        if sealed.envelope.len() > self.max_size() {
            tracing::error!(
                size = sealed.envelope.len(),
                max = self.max_size(),
                "this node's registry record is larger than registry.max_record_size; peers would refuse it, so the previous record stays announced"
            );
            // Keep it for the local view if there is no record yet, but do
            // not publish what peers would refuse.
            if own.record.is_none() {
                own.record = Some(sealed.clone());
                drop(own);
                lock(&self.state).set_local(sealed, Instant::now());
            }
            return None;
        }
        own.record = Some(sealed.clone());
        drop(own);
        lock(&self.state).set_local(sealed.clone(), Instant::now());
        Some(sealed)
    }

    /// Signs a new heartbeat (`leaving` on shutdown).
    pub(crate) fn next_heartbeat(&self, leaving: bool) -> Option<SignedHeartbeat> {
        let mut own = lock(&self.own);
        let version = own.record.as_ref()?.body.version;
        let seq = own.next_seq();
        let heartbeat = record::seal_heartbeat(
            &self.keypair,
            record::HeartbeatBody {
                origin: self.local,
                seq,
                version,
                leaving,
            },
        )
        .map_err(|error| tracing::error!(%error, "cannot sign a registry heartbeat"))
        .ok()?;
        own.heartbeat = Some(heartbeat.clone());
        drop(own);
        lock(&self.state).set_local_heartbeat(&heartbeat);
        Some(heartbeat)
    }

    /// Moves past a version of our own seen elsewhere (e.g. after restoring
    /// an older backup): a new epoch above it. Blocking (database write).
    pub(crate) fn skip_past(&self, seen: u64) -> Result<bool, dawn_store::StoreError> {
        if seen < lock(&self.own).current() {
            return Ok(false);
        }
        let epoch = self.store.next_registry_epoch((seen >> 32) + 1)?;
        let mut own = lock(&self.own);
        if epoch > own.epoch {
            own.epoch = epoch;
            own.seq = 0;
            // Force a new record at the next refresh.
            own.record = None;
            tracing::warn!(
                epoch,
                "a peer holds a newer registry record of this node (restored from an older backup?); announcing with a new epoch"
            );
            return Ok(true);
        }
        Ok(false)
    }

    /// Handles an announcement from the network, delivered by `from`.
    pub(crate) fn receive(&self, data: &Bytes, from: PeerId, via: Via<'_>) -> Received {
        let (author, age, floor) = match via {
            Via::Gossip { author } => (Some(author), None, None),
            Via::Sync { age, sent } => (None, age, Some(sent)),
        };
        let mut out = Received::default();
        let announcement = match record::open(data, self.max_size()) {
            Ok(a) => a,
            Err(rejection) => {
                out.rejected = Some(rejection);
                return out;
            }
        };
        let origin = announcement.origin();
        let gossip = author.is_some();
        if let Some(author) = author
            && author != Some(origin)
        {
            // Only an origin publishes its own announcements.
            out.rejected = Some(Rejection {
                reason: RegistryRejectReason::Forged,
                origin: Some(origin),
            });
            return out;
        }
        if origin == self.local {
            // Our own announcement, passed back (anti-entropy answers carry
            // the latest heartbeat of every live node, and one signed while
            // the exchange was under way is newer than the request said).
            // Only a version this process did not sign is a sign of an
            // older life (a restored backup) that must be moved past.
            let own = lock(&self.own);
            let (seen, signed_here) = match &announcement {
                Announcement::Record(r) => (
                    r.body.version,
                    own.record
                        .as_ref()
                        .is_some_and(|o| o.envelope == r.envelope),
                ),
                Announcement::Heartbeat(h) => (
                    h.body.seq,
                    own.heartbeat
                        .as_ref()
                        .is_some_and(|o| o.envelope == h.envelope),
                ),
            };
            let current = own.current();
            if seen > current || (seen == current && !signed_here) {
                out.own_newer = Some(seen);
            }
            return out;
        }
        let evidence = if gossip || from == origin {
            Evidence::Fresh
        } else {
            Evidence::Relayed(age)
        };
        let now = Instant::now();
        let mut state = lock(&self.state);
        match announcement {
            Announcement::Record(r) => {
                let version = r.body.version;
                let addrs = r.body.addrs.clone();
                let known = state.known_version(&origin);
                // Older than what we said we have: a deliberate replay.
                let below_floor = floor
                    .and_then(|f| f.get(&origin))
                    .is_some_and(|v| version < *v);
                match state.merge_record(r, evidence, now) {
                    RecordOutcome::Stale => {
                        if (gossip && version < known) || below_floor {
                            out.rejected = Some(Rejection {
                                reason: RegistryRejectReason::Replayed,
                                origin: Some(origin),
                            });
                        }
                    }
                    RecordOutcome::Same => {
                        // Known already (e.g. from anti-entropy a moment
                        // ago): still pass the origin's own message on, so
                        // the rest of the mesh gets it (gossipsub forwards
                        // each message once).
                        out.accepted = gossip;
                        out.addrs = Some((origin, addrs));
                        if state.note_availability(&origin, now) {
                            out.changed.push(origin);
                            lock(&self.dirty).0.insert(origin);
                        }
                    }
                    RecordOutcome::Updated => {
                        state.note_availability(&origin, now);
                        self.records_accepted.fetch_add(1, Ordering::Relaxed);
                        out.accepted = true;
                        out.changed.push(origin);
                        out.addrs = Some((origin, addrs));
                        lock(&self.dirty).0.insert(origin);
                    }
                }
            }
            Announcement::Heartbeat(h) => {
                let last = state.entry(&origin).map_or(0, |e| e.last_seq);
                match state.merge_heartbeat(&h, evidence, now) {
                    HeartbeatOutcome::Stale => {
                        if gossip && h.body.seq < last {
                            out.rejected = Some(Rejection {
                                reason: RegistryRejectReason::Replayed,
                                origin: Some(origin),
                            });
                        } else if gossip && h.body.seq == last {
                            // The same heartbeat, known from anti-entropy:
                            // pass it on.
                            out.accepted = true;
                        }
                    }
                    HeartbeatOutcome::Accepted { need_record } => {
                        self.heartbeats_accepted.fetch_add(1, Ordering::Relaxed);
                        out.accepted = true;
                        if state.note_availability(&origin, now) {
                            out.changed.push(origin);
                            lock(&self.dirty).0.insert(origin);
                        }
                        if need_record {
                            out.need_record = Some(origin);
                        }
                    }
                }
            }
        }
        out
    }

    /// Counts a rejection.
    pub(crate) fn count_rejected(&self, reason: RegistryRejectReason) {
        let i = RegistryRejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
        metrics::counter!("dawn_registry_rejected_total", "reason" => reason.as_str()).increment(1);
    }

    /// Re-evaluates liveness and expiry.
    pub(crate) fn sweep(&self) -> Vec<Change> {
        let changes = lock(&self.state).sweep(Instant::now());
        if !changes.is_empty() {
            let mut dirty = lock(&self.dirty);
            for change in &changes {
                match change {
                    Change::Expired(p) => {
                        dirty.0.remove(p);
                        dirty.1.insert(*p);
                    }
                    Change::Availability(p) => {
                        dirty.0.insert(*p);
                    }
                }
            }
        }
        changes
    }

    /// Writes changed entries to the cache and removes expired ones
    /// (blocking: file I/O).
    pub(crate) fn persist(&self) -> Result<(), dawn_store::StoreError> {
        let (changed, removed) = {
            let mut dirty = lock(&self.dirty);
            (std::mem::take(&mut dirty.0), std::mem::take(&mut dirty.1))
        };
        if changed.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let stored_ms = now_ms();
        let entries: Vec<RegistryCacheEntry> = {
            let state = lock(&self.state);
            changed
                .iter()
                .filter_map(|origin| state.entry(origin).map(|e| (origin, e)))
                .map(|(origin, e)| RegistryCacheEntry {
                    origin: origin.to_string(),
                    version: e.record.body.version,
                    envelope: B64.encode(&e.record.envelope),
                    stored_ms,
                    available: e.was_available,
                })
                .collect()
        };
        let removed: Vec<String> = removed.iter().map(ToString::to_string).collect();
        let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
        let result = self
            .store
            .put_registry_entries(&entries)
            .and_then(|()| self.store.remove_registry_entries(&removed).map(|_| ()));
        if result.is_err() {
            // Try again at the next round.
            let mut dirty = lock(&self.dirty);
            dirty.0.extend(changed);
        }
        result
    }

    /// Every entry, local first, then by origin.
    pub(crate) fn entries(&self) -> Vec<RegistryEntry> {
        let now = Instant::now();
        let state = lock(&self.state);
        let timeout = state.liveness_timeout();
        let mut out: Vec<RegistryEntry> = state
            .entries()
            .map(|(origin, e)| RegistryEntry {
                origin: *origin,
                version: e.record.body.version,
                local: *origin == self.local,
                available: *origin == self.local || e.available(now, timeout),
                confirmed: e.confirmed,
                last_heard: if *origin == self.local {
                    Some(Duration::ZERO)
                } else {
                    e.heard_at.map(|t| now.saturating_duration_since(t))
                },
                addrs: e.record.body.addrs.clone(),
                agents: e.record.body.agents.clone(),
            })
            .collect();
        drop(state);
        out.sort_by_cached_key(|a| (!a.local, a.origin.to_base58()));
        out
    }

    /// The agents of every other available node.
    pub(crate) fn available_remote(&self) -> HashMap<PeerId, Vec<AgentDescriptor>> {
        let now = Instant::now();
        let state = lock(&self.state);
        let timeout = state.liveness_timeout();
        state
            .entries()
            .filter(|(origin, e)| **origin != self.local && e.available(now, timeout))
            .map(|(origin, e)| (*origin, e.record.body.agents.clone()))
            .collect()
    }

    /// Counters.
    pub(crate) fn stats(&self) -> RegistryStats {
        RegistryStats {
            rejected: RegistryRejectReason::ALL
                .iter()
                .zip(&self.rejected)
                .map(|(r, n)| (r.as_str().to_owned(), n.load(Ordering::Relaxed)))
                .collect(),
            records_accepted: self.records_accepted.load(Ordering::Relaxed),
            heartbeats_accepted: self.heartbeats_accepted.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
        }
    }

    /// Sets the size gauges.
    pub(crate) fn record_gauges(&self) {
        let now = Instant::now();
        let state = lock(&self.state);
        let available = state.available_origins(now);
        let (mut agents, mut tools) = (0usize, 0usize);
        for (origin, e) in state.entries() {
            if *origin == self.local || available.contains(origin) {
                agents += e.record.body.agents.len();
                tools += e
                    .record
                    .body
                    .agents
                    .iter()
                    .map(|a| a.tools.len())
                    .sum::<usize>();
            }
        }
        let total = state.len();
        let up = available.len();
        drop(state);
        #[allow(clippy::cast_precision_loss)]
        {
            metrics::gauge!("dawn_registry_entries", "kind" => "nodes").set(up as f64);
            metrics::gauge!("dawn_registry_entries", "kind" => "unavailable_nodes")
                .set(total.saturating_sub(up) as f64);
            metrics::gauge!("dawn_registry_entries", "kind" => "agents").set(agents as f64);
            metrics::gauge!("dawn_registry_entries", "kind" => "tools").set(tools as f64);
        }
    }

    /// The anti-entropy request: what this node has (also returned as a
    /// map, to recognise replays in the answer).
    pub(crate) fn sync_request(&self, want: Option<&[PeerId]>) -> (Value, HashMap<PeerId, u64>) {
        let (digest, seen) = {
            let state = lock(&self.state);
            (state.digest(), state.seen())
        };
        let have: BTreeMap<String, u64> = digest.iter().map(|(p, v)| (p.to_string(), *v)).collect();
        let seen: BTreeMap<String, u64> = seen.iter().map(|(p, v)| (p.to_string(), *v)).collect();
        let mut request = json!({ "have": have, "seen": seen });
        if let Some(want) = want {
            request["want"] = json!(want.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
        (request, digest)
    }

    /// Answers a peer's anti-entropy request: records it lacks or holds in
    /// an older version, and liveness reports, within `budget` bytes.
    /// Also returns the origins of which the requester holds newer records
    /// than this node (to pull them in turn: anti-entropy both ways).
    pub(crate) fn answer_sync(
        &self,
        params: &Value,
        budget: usize,
    ) -> Result<(Value, Vec<PeerId>), String> {
        let request: SyncRequest =
            serde_json::from_value(params.clone()).map_err(|e| format!("invalid params: {e}"))?;
        if request.have.len() > 100_000
            || request.seen.len() > 100_000
            || request.want.as_ref().is_some_and(|w| w.len() > 10_000)
        {
            return Err("too many entries in params".into());
        }
        let have: HashMap<PeerId, u64> = request
            .have
            .iter()
            .filter_map(|(p, v)| p.parse().ok().map(|p| (p, *v)))
            .collect();
        let seen: HashMap<PeerId, u64> = request
            .seen
            .iter()
            .filter_map(|(p, v)| p.parse().ok().map(|p| (p, *v)))
            .collect();
        let want: Option<HashSet<PeerId>> = request
            .want
            .map(|w| w.iter().filter_map(|p| p.parse().ok()).collect());
        let now = Instant::now();
        let state = lock(&self.state);
        let timeout = state.liveness_timeout();
        let newer: Vec<PeerId> = have
            .iter()
            .filter(|(origin, version)| {
                **origin != self.local && state.known_version(origin) < **version
            })
            .map(|(origin, _)| *origin)
            .take(1000)
            .collect();
        let mut items = Vec::new();
        let mut size = 0usize;
        let mut more = false;
        let mut origins: Vec<(&PeerId, &state::Entry)> = state.entries().collect();
        // Own entry first, then the freshest.
        origins.sort_by_key(|(p, e)| (**p != self.local, e.heard_at.map(std::cmp::Reverse)));
        for (origin, entry) in origins {
            let wanted = want.as_ref().is_some_and(|w| w.contains(origin));
            if want.is_some() && !wanted {
                continue;
            }
            let is_local = *origin == self.local;
            // Report liveness only if newer than what the requester heard.
            let alive = (is_local || (entry.confirmed && entry.available(now, timeout)))
                && seen.get(origin).is_none_or(|s| *s < entry.last_seq);
            let needs_record = have
                .get(origin)
                .is_none_or(|v| *v < entry.record.body.version);
            // Without a heartbeat, the record carries the liveness report.
            let send_record =
                (needs_record && (alive || wanted)) || (alive && entry.heartbeat.is_none());
            if !send_record && !alive {
                continue;
            }
            let mut item = serde_json::Map::new();
            if send_record {
                item.insert("record".into(), json!(B64.encode(&entry.record.envelope)));
            }
            if alive {
                if let Some(hb) = &entry.heartbeat {
                    item.insert("heartbeat".into(), json!(B64.encode(hb)));
                }
                let age = if is_local {
                    Duration::ZERO
                } else {
                    entry
                        .heard_at
                        .map_or(timeout, |t| now.saturating_duration_since(t))
                };
                item.insert(
                    "age_ms".into(),
                    json!(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
                );
            }
            let item_size = item
                .values()
                .map(|v| v.as_str().map_or(16, str::len) + 16)
                .sum::<usize>();
            if size + item_size > budget && !items.is_empty() {
                more = true;
                break;
            }
            size += item_size;
            items.push(Value::Object(item));
        }
        Ok((json!({ "items": items, "more": more }), newer))
    }

    /// Starts fetching `origin`'s record unless a fetch is running.
    pub(crate) fn begin_fetch(&self, origin: PeerId) -> bool {
        lock(&self.fetching).insert(origin)
    }

    pub(crate) fn end_fetch(&self, origin: &PeerId) {
        lock(&self.fetching).remove(origin);
    }

    pub(crate) fn known_version(&self, origin: &PeerId) -> u64 {
        lock(&self.state).known_version(origin)
    }

    pub(crate) fn count_sync(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn config(&self) -> &RegistrySection {
        &self.config
    }

    /// The announced addresses of every other known node (to dial them
    /// for calls).
    pub(crate) fn known_addrs(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        lock(&self.state)
            .entries()
            .filter(|(origin, _)| **origin != self.local)
            .map(|(origin, e)| (*origin, e.record.body.addrs.clone()))
            .collect()
    }

    /// This node's current record.
    pub(crate) fn own_record(&self) -> Option<Arc<SignedRecord>> {
        lock(&self.own).record.clone()
    }

    pub(crate) fn set_unpublished(&self, unpublished: bool) {
        self.unpublished.store(unpublished, Ordering::Release);
    }

    pub(crate) fn take_unpublished(&self) -> bool {
        self.unpublished.swap(false, Ordering::AcqRel)
    }
}

#[derive(Deserialize)]
struct SyncRequest {
    #[serde(default)]
    have: BTreeMap<String, u64>,
    /// Per origin, the sequence number of the newest evidence of life the
    /// requester has (no liveness report is needed unless newer).
    #[serde(default)]
    seen: BTreeMap<String, u64>,
    #[serde(default)]
    want: Option<Vec<String>>,
}

/// One item of an anti-entropy answer.
#[derive(Debug, Deserialize)]
pub(crate) struct SyncItem {
    #[serde(default)]
    pub(crate) record: Option<String>,
    #[serde(default)]
    pub(crate) heartbeat: Option<String>,
    #[serde(default)]
    pub(crate) age_ms: Option<u64>,
}

/// An anti-entropy answer.
#[derive(Debug, Deserialize)]
pub(crate) struct SyncAnswer {
    #[serde(default)]
    pub(crate) items: Vec<SyncItem>,
    #[serde(default)]
    pub(crate) more: bool,
}

pub(crate) fn decode_b64(s: &str) -> Option<Bytes> {
    B64.decode(s.as_bytes()).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(dir: &std::path::Path, keypair: &identity::Keypair) -> Registry {
        let store = Store::open(dir.join("dawn.redb")).unwrap();
        Registry::open(&store, keypair.clone(), &RegistrySection::default()).unwrap()
    }

    #[test]
    fn its_own_announcements_passed_back_do_not_make_a_node_move_past_them() {
        let dir = tempfile::tempdir().unwrap();
        let keypair = identity::Keypair::generate_ed25519();
        let me = keypair.public().to_peer_id();
        let peer = identity::Keypair::generate_ed25519().public().to_peer_id();
        let registry = registry(dir.path(), &keypair);
        let record = registry.update_own(Vec::new(), Vec::new()).unwrap();
        let via = Via::Sync {
            age: Some(Duration::ZERO),
            sent: &HashMap::new(),
        };

        // The current record, then the current heartbeat, handed back by a
        // peer: ours, nothing newer.
        let back = registry.receive(&record.envelope, peer, via);
        assert_eq!(back.own_newer, None);
        let heartbeat = registry.next_heartbeat(false).unwrap();
        let back = registry.receive(&heartbeat.envelope, peer, via);
        assert_eq!(back.own_newer, None);
        // The older record, after the heartbeat: still nothing.
        assert_eq!(
            registry.receive(&record.envelope, peer, via).own_newer,
            None
        );

        // The same version signed by an earlier life of this node (a
        // restored backup reusing the epoch): it must be moved past.
        let dir2 = tempfile::tempdir().unwrap();
        let earlier = registry_with_epoch(dir2.path(), &keypair, me);
        let foreign = earlier.next_heartbeat(true).unwrap();
        assert_eq!(foreign.body.seq, heartbeat.body.seq);
        assert_ne!(foreign.envelope, heartbeat.envelope);
        let back = registry.receive(&foreign.envelope, peer, via);
        assert_eq!(back.own_newer, Some(heartbeat.body.seq));
        // And anything above the current version.
        let newer = earlier.next_heartbeat(false).unwrap();
        let back = registry.receive(&newer.envelope, peer, via);
        assert_eq!(back.own_newer, Some(newer.body.seq));
    }

    /// A registry for the same key in another database: the same epoch, so
    /// it signs the same versions (with other contents).
    fn registry_with_epoch(
        dir: &std::path::Path,
        keypair: &identity::Keypair,
        me: PeerId,
    ) -> Registry {
        let registry = registry(dir, keypair);
        assert_eq!(registry.local, me);
        registry
            .update_own(Vec::new(), vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()])
            .unwrap();
        registry
    }
}
