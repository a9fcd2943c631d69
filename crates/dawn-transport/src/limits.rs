//! The connection manager's bookkeeping: when each peer last carried RPC
//! traffic, and which peers to prune when there are too many.
//!
//! Hard limits (total, per peer, pending, memory) are libp2p's
//! `connection_limits` and `memory_connection_limits` behaviours, which refuse
//! connections. The watermarks here are soft: crossing the high watermark
//! never refuses anyone; it closes the least useful connections so the
//! newcomer fits.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use libp2p::PeerId;

/// When each peer last sent or received an RPC frame.
///
/// Readers and writers of RPC streams hold an [`ActivityHandle`] per stream
/// and touch it per frame (one relaxed atomic store), so the hot path takes
/// no lock; the map is locked only when a stream opens and when the
/// connection manager looks.
pub(crate) struct PeerActivity {
    epoch: Instant,
    peers: Mutex<HashMap<PeerId, Arc<AtomicU64>>>,
}

impl Default for PeerActivity {
    fn default() -> Self {
        PeerActivity {
            epoch: Instant::now(),
            peers: Mutex::new(HashMap::new()),
        }
    }
}

impl PeerActivity {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Arc<AtomicU64>>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle a stream to or from `peer` touches.
    pub(crate) fn handle(self: &Arc<Self>, peer: PeerId) -> ActivityHandle {
        let slot = self.lock().entry(peer).or_default().clone();
        ActivityHandle {
            epoch: self.epoch,
            slot,
        }
    }

    /// When `peer` last had RPC traffic, if ever (since it connected).
    pub(crate) fn last(&self, peer: &PeerId) -> Option<Instant> {
        let ms = self.lock().get(peer)?.load(Ordering::Relaxed);
        // 0 means "never touched"; stored values are offset by one.
        ms.checked_sub(1)
            .map(|ms| self.epoch + Duration::from_millis(ms))
    }

    /// Drops what is known about `peer` (it disconnected).
    pub(crate) fn forget(&self, peer: &PeerId) {
        self.lock().remove(peer);
    }
}

/// Records RPC traffic of one peer.
#[derive(Clone)]
pub(crate) struct ActivityHandle {
    epoch: Instant,
    slot: Arc<AtomicU64>,
}

impl ActivityHandle {
    /// Marks the peer active now.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.slot.store(ms.saturating_add(1), Ordering::Relaxed);
    }
}

/// What the connection manager knows about one connected peer.
#[derive(Debug, Clone)]
pub(crate) struct PruneCandidate {
    pub(crate) peer: PeerId,
    /// When its oldest open connection was established.
    pub(crate) connected_at: Instant,
    /// Its last RPC traffic, if any.
    pub(crate) last_rpc: Option<Instant>,
}

/// Chooses the peers to disconnect so that at most `low` remain, or nothing
/// if there are no more than `high`. Protected peers are never chosen (so
/// fewer than asked may be returned). Peers with RPC traffic within
/// `window` are kept in preference to all others; within each group the
/// peer idle the longest (last RPC, or connection time if none) goes first.
pub(crate) fn select_prunable(
    peers: &[PruneCandidate],
    protected: &HashSet<PeerId>,
    low: usize,
    high: usize,
    window: Duration,
    now: Instant,
) -> Vec<PeerId> {
    if peers.len() <= high {
        return Vec::new();
    }
    let excess = peers.len().saturating_sub(low);
    let mut candidates: Vec<(bool, Instant, PeerId)> = peers
        .iter()
        .filter(|p| !protected.contains(&p.peer))
        .map(|p| {
            let recent = p
                .last_rpc
                .is_some_and(|t| now.saturating_duration_since(t) <= window);
            let last_active = p.last_rpc.map_or(p.connected_at, |t| t.max(p.connected_at));
            (recent, last_active, p.peer)
        })
        .collect();
    // Not recent before recent; then oldest activity first; peer id breaks
    // ties so the choice is deterministic.
    candidates.sort_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| a.2.to_bytes().cmp(&b.2.to_bytes()))
    });
    candidates
        .into_iter()
        .take(excess)
        .map(|(_, _, peer)| peer)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn nothing_is_pruned_at_or_below_the_high_watermark() {
        let now = Instant::now();
        let peers: Vec<_> = (0..4)
            .map(|_| PruneCandidate {
                peer: peer(),
                connected_at: now,
                last_rpc: None,
            })
            .collect();
        assert!(
            select_prunable(&peers, &HashSet::new(), 1, 4, Duration::from_secs(60), now).is_empty()
        );
    }

    #[test]
    fn prunes_down_to_low_sparing_protected_and_recently_active_peers() {
        let base = Instant::now();
        let at = |s: u64| base + Duration::from_secs(s);
        let (protected_peer, active, idle_old, idle_new, newcomer) =
            (peer(), peer(), peer(), peer(), peer());
        let peers = vec![
            PruneCandidate {
                peer: protected_peer,
                connected_at: at(0),
                last_rpc: None,
            },
            PruneCandidate {
                peer: active,
                connected_at: at(1),
                last_rpc: Some(at(2)),
            },
            PruneCandidate {
                peer: idle_old,
                connected_at: at(3),
                last_rpc: None,
            },
            PruneCandidate {
                peer: idle_new,
                connected_at: at(4),
                last_rpc: None,
            },
            PruneCandidate {
                peer: newcomer,
                connected_at: at(5),
                last_rpc: None,
            },
        ];
        let protected: HashSet<_> = [protected_peer].into();
        let now = at(6);
        // 5 peers, high 4, low 3: two go, oldest idle first.
        let chosen = select_prunable(&peers, &protected, 3, 4, Duration::from_secs(60), now);
        assert_eq!(chosen, vec![idle_old, idle_new]);
        // Down to 1: everything unprotected goes, the active peer last.
        let chosen = select_prunable(&peers, &protected, 1, 4, Duration::from_secs(60), now);
        assert_eq!(chosen, vec![idle_old, idle_new, newcomer, active]);
        // Activity outside the window counts as plain idleness.
        let chosen = select_prunable(&peers, &protected, 3, 4, Duration::from_secs(1), now);
        assert_eq!(chosen, vec![active, idle_old]);
    }

    #[test]
    fn activity_is_recorded_per_peer() {
        let activity = Arc::new(PeerActivity::default());
        let p = peer();
        assert!(activity.last(&p).is_none());
        let handle = activity.handle(p);
        assert!(activity.last(&p).is_none());
        handle.touch();
        assert!(activity.last(&p).is_some());
        activity.forget(&p);
        assert!(activity.last(&p).is_none());
    }
}
