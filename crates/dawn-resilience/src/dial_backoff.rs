//! Per-peer dial backoff: spaces out dials of the same peer so a dead or
//! flapping peer cannot cause a dial storm.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBackoff};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{HumanDuration, config::Issues, retry::jittered_backoff, sweep::SweepSchedule};

/// `resilience.retry.dial`: how dials of one peer are spaced out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DialBackoffConfig {
    /// Upper bound of the wait after the first dial; each further wait's
    /// bound doubles. Default 1 s; allowed more than 0 s, at most
    /// `max_backoff`.
    pub initial_backoff: HumanDuration,
    /// Upper bound of every wait between dials. Default 5 m; allowed more
    /// than 0 s, at most 1 d.
    pub max_backoff: HumanDuration,
    /// How long a connection must stay up before the backoff starts over.
    /// A peer that accepts connections and drops them sooner keeps backing
    /// off. Default 30 s; allowed 0 s to 1 d.
    pub stable_after: HumanDuration,
}

impl Default for DialBackoffConfig {
    fn default() -> Self {
        DialBackoffConfig {
            initial_backoff: HumanDuration::secs(1),
            max_backoff: HumanDuration::secs(300),
            stable_after: HumanDuration::secs(30),
        }
    }
}

impl DialBackoffConfig {
    pub(crate) fn validate(&self, issues: &mut Issues) {
        let day = Duration::from_secs(86_400);
        issues.duration("max_backoff", self.max_backoff, false, day);
        issues.duration("initial_backoff", self.initial_backoff, false, day);
        if self.initial_backoff > self.max_backoff {
            issues.push(
                "initial_backoff",
                format!(
                    "{} is more than max_backoff ({})",
                    self.initial_backoff, self.max_backoff
                ),
            );
        }
        issues.duration("stable_after", self.stable_after, true, day);
    }
}

/// A dial that must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("dialing this peer again is allowed in {} ms", crate::errors::ceil_millis(*retry_in))]
pub struct DialDeferred {
    /// How long until a dial is allowed.
    pub retry_in: Duration,
}

#[derive(Debug)]
struct DialState {
    delays: ExponentialBackoff,
    next_dial_at: Instant,
    connected_since: Option<Instant>,
}

/// When each peer may be dialed next.
///
/// Every allowed dial pushes the next allowed dial of that peer back by a
/// growing, jittered delay (bounds doubling from `initial_backoff` to
/// `max_backoff`), whether the dial then fails or succeeds. The schedule
/// starts over only once a connection has stayed up for `stable_after`: a
/// flapping peer (accepts, then drops) keeps backing off instead of being
/// redialed at once after every drop. The first dial of a peer is allowed at
/// once.
///
/// The node calls [`DialBackoff::try_dial`] before dialing,
/// [`DialBackoff::connected`] / [`DialBackoff::disconnected`] on connection
/// events, and [`DialBackoff::forget`] when it stops caring about a peer.
/// Peers not dialed for `max_backoff` after they were allowed are forgotten
/// automatically.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use dawn_resilience::{DialBackoff, DialBackoffConfig};
///
/// let dials = DialBackoff::<u64>::new(&DialBackoffConfig::default());
/// assert!(dials.try_dial(&7).is_ok()); // first dial: at once
/// assert!(dials.try_dial(&7).is_err()); // again right away: deferred
/// # }
/// ```
#[derive(Debug)]
pub struct DialBackoff<K> {
    initial_backoff: Duration,
    max_backoff: Duration,
    stable_after: Duration,
    peers: Mutex<HashMap<K, DialState>>,
    sweep: SweepSchedule,
}

impl<K> DialBackoff<K>
where
    K: Hash + Eq + Clone + Send + Sync,
{
    /// Dial backoff per `config`; `initial_backoff` is clamped to
    /// `max_backoff`.
    pub fn new(config: &DialBackoffConfig) -> Self {
        DialBackoff {
            initial_backoff: config.initial_backoff.0.min(config.max_backoff.0),
            max_backoff: config.max_backoff.0,
            stable_after: config.stable_after.0,
            peers: Mutex::new(HashMap::new()),
            sweep: SweepSchedule::new(),
        }
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<K, DialState>> {
        // Every update leaves the map consistent, so a poisoned lock is usable.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh_state(&self, now: Instant) -> DialState {
        DialState {
            delays: jittered_backoff(self.initial_backoff, self.max_backoff)
                .without_max_times()
                .build(),
            next_dial_at: now,
            connected_since: None,
        }
    }

    /// Whether `key` may be dialed now. If so, the dial is counted and the
    /// next one is pushed back; if not, says how long to wait.
    pub fn try_dial(&self, key: &K) -> Result<(), DialDeferred> {
        let now = Instant::now();
        let mut peers = self.peers();
        if self.sweep.due() {
            self.evict_stale(&mut peers, now);
        }
        let state = peers
            .entry(key.clone())
            .or_insert_with(|| self.fresh_state(now));
        if now < state.next_dial_at {
            return Err(DialDeferred {
                retry_in: state.next_dial_at - now,
            });
        }
        let delay = state.delays.next().unwrap_or(self.max_backoff);
        state.next_dial_at = now + delay;
        Ok(())
    }

    /// `key` is connected (by our dial or its own).
    pub fn connected(&self, key: &K) {
        let now = Instant::now();
        let mut peers = self.peers();
        let state = peers
            .entry(key.clone())
            .or_insert_with(|| self.fresh_state(now));
        state.connected_since.get_or_insert(now);
    }

    /// `key`'s connection closed. If it had stayed up for `stable_after`,
    /// the backoff starts over (the next dial is allowed at once); otherwise
    /// the schedule continues.
    pub fn disconnected(&self, key: &K) {
        let now = Instant::now();
        let mut peers = self.peers();
        let Some(state) = peers.get_mut(key) else {
            return;
        };
        match state.connected_since.take() {
            Some(since) if now.saturating_duration_since(since) >= self.stable_after => {
                peers.remove(key);
            }
            _ => {}
        }
    }

    /// Forgets `key` entirely (its next dial is allowed at once).
    pub fn forget(&self, key: &K) {
        self.peers().remove(key);
    }

    /// Peers with a dial schedule.
    pub fn tracked_keys(&self) -> usize {
        self.peers().len()
    }

    fn evict_stale(&self, peers: &mut HashMap<K, DialState>, now: Instant) {
        peers.retain(|_, state| {
            state.connected_since.is_some()
                || now.saturating_duration_since(state.next_dial_at) < self.max_backoff
        });
        peers.shrink_to_fit();
        self.sweep.swept(peers.len());
    }
}
