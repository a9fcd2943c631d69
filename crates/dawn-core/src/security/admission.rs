//! Connection admission and enforcement: who may stay connected, bans from
//! trust and reputation, and trust changes applied to the running node.

use std::{sync::Arc, time::Duration};

use dawn_security::{
    AuditDecision, AuditEvent, AuditRecord, DecisionRule, ReputationAction, TrustChange,
    TrustLevel, TrustReconfiguration,
};
use dawn_transport::{Direction, Multiaddr, PeerId, Transport, TransportEvent};
use tokio::sync::broadcast::error::RecvError;

use super::{NodeSecurity, SecurityError};
use crate::node::{NodeShared, now_ms};

/// How often expired reputation bans are lifted.
const BAN_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Runs `f` on the transport from a spawned task, if both exist.
fn with_transport<F, Fut>(security: &NodeSecurity, f: F)
where
    F: FnOnce(Transport) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(transport) = security.transport.get().cloned() else {
        return;
    };
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(f(transport));
    }
}

impl NodeSecurity {
    /// Gives the security layer the transport, and bans or protects peers
    /// as configuration, stored records and reputation say.
    pub(crate) async fn attach_transport(&self, transport: Transport) {
        let now = now_ms();
        for entry in self.trust.list() {
            if entry.level == TrustLevel::Untrusted {
                if let Err(error) = transport.ban(entry.peer).await {
                    tracing::warn!(peer = %entry.peer, %error, "cannot ban an untrusted peer");
                }
                self.audit(
                    AuditRecord::new(AuditEvent::PeerBanned)
                        .peer(entry.peer)
                        .decision(AuditDecision::Deny)
                        .reason(format!(
                            "the peer is untrusted ({}); every connection is refused",
                            entry.origin
                        )),
                );
            } else if entry.level >= TrustLevel::Trusted {
                let _ = transport.protect(entry.peer).await;
            }
        }
        for standing in self.reputation.list(now) {
            if standing.banned_until_ms.is_some() {
                let _ = transport.ban(standing.peer).await;
            }
        }
        let _ = self.transport.set(transport);
    }

    /// Checks whether `peer` may be connected and acts on it: untrusted (and
    /// reputation-banned) peers are banned, others refused by policy (such
    /// as peers without a record under `security.reject_unknown`) are
    /// disconnected. `connected` carries the new connection's direction and
    /// address when called for `PeerConnected`; then the decision is
    /// audited either way. Returns whether the peer is admitted.
    pub(crate) fn enforce_admission(
        &self,
        peer: PeerId,
        connected: Option<(Direction, &Multiaddr)>,
    ) -> bool {
        let trust = self.trust.lookup(&peer);
        let decision = self.trust.admit(&peer, &self.policy);
        let standing = self.reputation.standing(&peer, now_ms());
        let refusal = if let Some(until) = standing.banned_until_ms {
            Some((
                true,
                format!("peer is banned for misbehaviour until {until} (unix ms)"),
            ))
        } else if standing.action == ReputationAction::Disconnect {
            Some((
                false,
                format!(
                    "peer's reputation ({:.1}) is below the disconnect threshold",
                    standing.score
                ),
            ))
        } else if decision.allowed {
            None
        } else {
            Some((
                decision.rule == DecisionRule::Untrusted,
                decision.detail.clone(),
            ))
        };
        let Some((ban, reason)) = refusal else {
            if let Some((direction, addr)) = connected {
                self.audit(
                    AuditRecord::new(AuditEvent::ConnectionAccepted)
                        .peer(peer)
                        .decision(AuditDecision::Allow)
                        .reason(decision.detail)
                        .detail("level", trust.level.as_str())
                        .detail("origin", trust.origin.to_string())
                        .detail("direction", direction.as_str())
                        .detail("address", addr.to_string()),
                );
                if trust.level >= TrustLevel::Trusted {
                    with_transport(self, move |t| async move {
                        let _ = t.protect(peer).await;
                    });
                }
            }
            return true;
        };
        Self::count_denial(dawn_security::Permission::Connect);
        if let Some((direction, addr)) = connected {
            tracing::info!(%peer, %reason, ban, "connection refused");
            self.audit(
                AuditRecord::new(AuditEvent::ConnectionRefused)
                    .peer(peer)
                    .decision(AuditDecision::Deny)
                    .reason(reason)
                    .detail("level", trust.level.as_str())
                    .detail("origin", trust.origin.to_string())
                    .detail("direction", direction.as_str())
                    .detail("address", addr.to_string())
                    .detail("action", if ban { "ban" } else { "disconnect" }),
            );
        }
        with_transport(self, move |t| async move {
            let result = if ban {
                t.ban(peer).await
            } else {
                t.disconnect(peer).await
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "cannot close a refused peer's connection");
            }
        });
        false
    }

    /// Carries out a reputation action: disconnect, or ban until its end.
    pub(crate) fn enforce_reputation(&self, peer: &PeerId, action: ReputationAction, why: &str) {
        let peer = *peer;
        match action {
            ReputationAction::None => {}
            ReputationAction::Disconnect => {
                self.audit(
                    AuditRecord::new(AuditEvent::PeerDisconnected)
                        .peer(peer)
                        .decision(AuditDecision::Deny)
                        .reason(format!(
                            "reputation below the disconnect threshold after {why}"
                        )),
                );
                with_transport(self, move |t| async move {
                    let _ = t.disconnect(peer).await;
                });
            }
            ReputationAction::Ban { until_ms } => {
                self.audit(
                    AuditRecord::new(AuditEvent::PeerBanned)
                        .peer(peer)
                        .decision(AuditDecision::Deny)
                        .reason(format!("reputation below the ban threshold after {why}"))
                        .detail("until_ms", until_ms),
                );
                with_transport(self, move |t| async move {
                    let _ = t.ban(peer).await;
                });
            }
        }
    }

    /// Sets `peer`'s trust level as an operator (`by` names the channel, e.g.
    /// `api`), audits the change and applies it at once: a peer set to
    /// `untrusted` is banned and disconnected, one raised from `untrusted`
    /// is let in again, `trusted` peers are protected from pruning.
    pub(crate) async fn set_trust(
        &self,
        peer: PeerId,
        level: TrustLevel,
        note: Option<String>,
        by: &str,
    ) -> Result<TrustChange, SecurityError> {
        let trust = self.trust.clone();
        let change = tokio::task::spawn_blocking(move || trust.set(&peer, level, note, now_ms()))
            .await
            .map_err(|e| SecurityError::Internal(format!("trust update task failed: {e}")))??;
        self.trust_changed(&change, by).await;
        Ok(change)
    }

    /// Removes `peer`'s stored record (back to bootstrap or the default),
    /// audited and applied like [`NodeSecurity::set_trust`].
    pub(crate) async fn remove_trust(
        &self,
        peer: PeerId,
        by: &str,
    ) -> Result<Option<TrustChange>, SecurityError> {
        let trust = self.trust.clone();
        let change = tokio::task::spawn_blocking(move || trust.remove(&peer))
            .await
            .map_err(|e| SecurityError::Internal(format!("trust update task failed: {e}")))??;
        if let Some(change) = &change {
            self.trust_changed(change, by).await;
        }
        Ok(change)
    }

    /// Replaces the configuration part of the trust view (a configuration
    /// reload) and applies every resulting change like an operator's: each
    /// peer whose trust changed is audited, banned, unbanned, protected or
    /// disconnected as [`NodeSecurity::set_trust`] does. When the default
    /// level or `security.reject_unknown` changed, every connected peer is
    /// checked again. Nothing changes on error.
    pub(crate) async fn reconfigure_trust(
        &self,
        settings: dawn_security::TrustSettings,
    ) -> Result<TrustReconfiguration, SecurityError> {
        let outcome = self.trust.reconfigure(settings)?;
        for change in &outcome.changes {
            self.trust_changed(change, "a configuration reload").await;
        }
        if let Some((from, to)) = outcome.default_level {
            self.audit(
                AuditRecord::new(AuditEvent::TrustChanged)
                    .reason("security.trust_level_default changed by a configuration reload")
                    .detail("from", from.as_str())
                    .detail("to", to.as_str())
                    .detail("origin", "config (security.trust_level_default)"),
            );
        }
        if let Some((from, to)) = outcome.reject_unknown {
            self.audit(
                AuditRecord::new(AuditEvent::TrustChanged)
                    .reason("security.reject_unknown changed by a configuration reload")
                    .detail("from", from)
                    .detail("to", to)
                    .detail("origin", "config (security.reject_unknown)"),
            );
        }
        if (outcome.default_level.is_some() || outcome.reject_unknown.is_some())
            && let Some(transport) = self.transport.get()
        {
            for info in transport.connected_peers() {
                self.enforce_admission(info.peer_id, None);
            }
        }
        Ok(outcome)
    }

    async fn trust_changed(&self, change: &TrustChange, by: &str) {
        let peer = change.after.peer;
        let (before, after) = (change.before.level, change.after.level);
        let mut record = AuditRecord::new(AuditEvent::TrustChanged)
            .peer(peer)
            .reason(format!("set through {by}"))
            .detail("from", before.as_str())
            .detail("to", after.as_str())
            .detail("origin", change.after.origin.to_string());
        if let Some(note) = &change.after.note {
            record = record.detail("note", note.as_str());
        }
        self.audit(record);
        let Some(transport) = self.transport.get().cloned() else {
            return;
        };
        if before == TrustLevel::Untrusted
            && after != TrustLevel::Untrusted
            && self.reputation.banned_until(&peer, now_ms()).is_none()
        {
            let _ = transport.unban(peer).await;
        }
        if after >= TrustLevel::Trusted {
            let _ = transport.protect(peer).await;
        } else if before >= TrustLevel::Trusted {
            let _ = transport.unprotect(peer).await;
        }
        if transport.is_connected(&peer) || after == TrustLevel::Untrusted {
            self.enforce_admission(peer, None);
        }
    }

    /// Lifts transport bans whose reason has gone: the peer is no longer
    /// `untrusted` and has no active reputation ban.
    async fn sweep_bans(&self) {
        let Some(transport) = self.transport.get().cloned() else {
            return;
        };
        let now = now_ms();
        for peer in transport.banned_peers() {
            if self.trust.level(&peer) == TrustLevel::Untrusted
                || self.reputation.banned_until(&peer, now).is_some()
            {
                continue;
            }
            tracing::info!(%peer, "ban expired; the peer may connect again");
            let _ = transport.unban(peer).await;
        }
    }
}

/// Follows transport events: admits or refuses each new connection, and
/// lifts expired bans.
pub(crate) async fn watch(shared: Arc<NodeShared>) {
    let mut events = shared.transport.subscribe();
    // Peers that connected before this task subscribed.
    for info in shared.transport.connected_peers() {
        let addr = info
            .addresses
            .first()
            .cloned()
            .unwrap_or_else(Multiaddr::empty);
        shared
            .security
            .enforce_admission(info.peer_id, Some((info.direction, &addr)));
    }
    let mut sweep = tokio::time::interval(BAN_SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return,
            _ = sweep.tick() => {
                shared.security.sweep_bans().await;
                continue;
            }
            event = events.recv() => event,
        };
        match event {
            Ok(TransportEvent::PeerConnected {
                peer,
                addr,
                direction,
            }) => {
                shared
                    .security
                    .enforce_admission(peer, Some((direction, &addr)));
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "security missed transport events; re-checking every connected peer"
                );
                for info in shared.transport.connected_peers() {
                    shared.security.enforce_admission(info.peer_id, None);
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}
