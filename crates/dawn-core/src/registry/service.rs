//! The registry's background task: announcing, validating gossip, liveness
//! sweeps, anti-entropy and the cache.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use dawn_transport::{GossipValidation, Multiaddr, PeerId, TransportEvent};
use libp2p::multiaddr::Protocol;
use tokio::sync::broadcast::error::RecvError;

use super::{Received, RegistryRejectReason, SYNC_METHOD, SyncAnswer, TOPIC, Via, decode_b64};
use crate::{
    jsonrpc::{Request, Response},
    node::{NodeEvent, NodeShared},
    registry::state::Change,
    system_agent::SYSTEM_AGENT_ID,
};

/// How long local agent changes are collected before a new record.
const REFRESH_DELAY: Duration = Duration::from_millis(50);
/// Longest anti-entropy exchange (several rounds when `more`).
const SYNC_ROUNDS: u64 = 8;
/// Deadline of one anti-entropy call.
const SYNC_TIMEOUT: Duration = Duration::from_secs(15);
/// Delay of the first heartbeat after start (then every
/// `registry.announce_interval`).
const FIRST_HEARTBEAT: Duration = Duration::from_secs(3);

/// Ticks first after `first`, then every `period`; late ticks are delayed,
/// not bunched.
fn ticker(first: Duration, period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// The event streams the registry task follows, subscribed before it runs so
/// it misses no connection.
pub(crate) struct Subscriptions {
    transport: tokio::sync::broadcast::Receiver<TransportEvent>,
    node: tokio::sync::broadcast::Receiver<NodeEvent>,
}

/// Runs the registry until the node stops.
pub(crate) async fn run(shared: Arc<NodeShared>, subscriptions: Subscriptions) {
    let Subscriptions {
        transport: mut transport_events,
        node: mut node_events,
    } = subscriptions;
    if let Err(error) = shared.transport.gossip_subscribe(TOPIC).await {
        tracing::error!(%error, topic = TOPIC, "cannot subscribe to the registry topic; the registry will rely on anti-entropy only");
    }
    refresh_own(&shared).await;
    // Peers identified before this task ran still get their anti-entropy
    // (a second exchange with the same peer is cheap).
    for peer in shared.transport.connected_peers() {
        if peer.agent_version.is_some() {
            spawn_sync(&shared, peer.peer_id, None);
        }
    }
    shared.registry.record_gauges();
    let config = shared.registry.config().clone();
    // The first heartbeat comes early: a gossip copy of this node's first
    // record that missed part of the mesh (a busy or just-pruned link) is
    // then fetched by the nodes that lack it (`need_record`) within seconds,
    // not after a whole `announce_interval`.
    let mut heartbeat = ticker(
        FIRST_HEARTBEAT.min(config.announce_interval.0),
        config.announce_interval.0,
    );
    let sweep_period =
        (config.liveness_timeout.0 / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut sweep = ticker(sweep_period, sweep_period);
    let mut sync = ticker(config.sync_interval.0, config.sync_interval.0);
    let mut refresh_at: Option<tokio::time::Instant> = None;
    loop {
        let refresh_due = async {
            match refresh_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            () = refresh_due => {
                refresh_at = None;
                refresh_own(&shared).await;
            }
            _ = sweep.tick() => {
                // Also covers a subscription that happened before this task
                // listened for events.
                publish_unpublished(&shared).await;
                sweep_once(&shared);
                persist_in_background(&shared);
            }
            _ = heartbeat.tick() => publish_heartbeat(&shared, false).await,
            _ = sync.tick() => {
                if let Some(peer) = random_peer(&shared) {
                    spawn_sync(&shared, peer, None);
                }
            }
            event = transport_events.recv() => match event {
                Ok(TransportEvent::GossipMessage { id, source, propagation_source, topic, data }) if topic == TOPIC => {
                    // Trust policy: may this peer send us registry records?
                    if !shared.security.authorize_discovery(&propagation_source) {
                        let _ = shared.transport.report_validation(id, propagation_source, GossipValidation::Ignore).await;
                        continue;
                    }
                    let received = shared.registry.receive(&data, propagation_source, Via::Gossip { author: source });
                    let verdict = match (&received.rejected, received.accepted) {
                        (Some(rejection), _) if rejection.reason.is_misbehaviour() => GossipValidation::Reject,
                        (_, true) => GossipValidation::Accept,
                        _ => GossipValidation::Ignore,
                    };
                    tracing::trace!(from = %propagation_source, author = ?source.map(|s| s.to_string()), len = data.len(), ?verdict, changed = received.changed.len(), "registry gossip");
                    match received.need_record {
                        // A heartbeat for a record version this node lacks:
                        // fetch the record from the peer that forwarded the
                        // heartbeat, then forward it, so the next hop can
                        // fetch the record from here.
                        Some(origin) if verdict == GossipValidation::Accept => {
                            spawn_fetch(&shared, propagation_source, origin, Some(id));
                        }
                        _ => {
                            if let Err(error) = shared.transport.report_validation(id, propagation_source, verdict).await {
                                tracing::debug!(%error, "cannot report a gossip validation result");
                            }
                        }
                    }
                    apply(&shared, propagation_source, Received { need_record: None, ..received });
                }
                Ok(TransportEvent::PeerIdentified { peer, supports_rpc: true, .. }) => {
                    spawn_sync(&shared, peer, None);
                    // Once more a moment later: a peer that itself just
                    // joined may have been catching up during the first
                    // exchange.
                    spawn_follow_up(&shared, peer);
                }
                Ok(TransportEvent::GossipSubscribed { topic, .. }) if topic == TOPIC => {
                    publish_unpublished(&shared).await;
                }
                Ok(TransportEvent::Listening { .. } | TransportEvent::ListenAddrExpired { .. }) => {
                    refresh_at.get_or_insert(tokio::time::Instant::now() + REFRESH_DELAY);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "registry missed transport events; heartbeats and anti-entropy will catch up");
                }
                Err(RecvError::Closed) => break,
            },
            event = node_events.recv() => match event {
                Ok(NodeEvent::AgentAdded(_) | NodeEvent::AgentRemoved(_) | NodeEvent::AgentChanged(_))
                | Err(RecvError::Lagged(_)) => {
                    refresh_at.get_or_insert(tokio::time::Instant::now() + REFRESH_DELAY);
                }
                Ok(_) => {}
                Err(RecvError::Closed) => break,
            },
        }
    }
    // The last write, after any still running.
    for _ in 0..200 {
        if !shared
            .registry
            .persisting
            .load(std::sync::atomic::Ordering::Acquire)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    persist(&shared).await;
}

/// Signs this node's first record at start, so the registry shows it at
/// once (it is published when the first peer subscribes), and subscribes to
/// the events [`run`] follows.
pub(crate) fn prime(shared: &Arc<NodeShared>) -> Subscriptions {
    let subscriptions = Subscriptions {
        transport: shared.transport.subscribe(),
        node: shared.events.subscribe(),
    };
    // Nodes served from the cache can be called at their last addresses.
    for (origin, addrs) in shared.registry.known_addrs() {
        add_addresses(shared, origin, addrs);
    }
    if shared
        .registry
        .update_own(shared.local_descriptors(), own_addrs(shared))
        .is_some()
    {
        shared.registry.set_unpublished(true);
    }
    subscriptions
}

fn own_addrs(shared: &NodeShared) -> Vec<Multiaddr> {
    shared
        .transport
        .listen_addrs()
        .into_iter()
        .filter(|a| {
            a.iter().all(|p| match p {
                Protocol::Ip4(ip) => !ip.is_unspecified(),
                Protocol::Ip6(ip) => !ip.is_unspecified(),
                _ => true,
            })
        })
        .collect()
}

/// Signs and publishes a new own record if the agents or addresses changed.
async fn refresh_own(shared: &Arc<NodeShared>) {
    let agents = shared.local_descriptors();
    let addrs = own_addrs(shared);
    let Some(record) = shared.registry.update_own(agents, addrs) else {
        return;
    };
    tracing::debug!(
        version = record.body.version,
        agents = record.body.agents.len(),
        "announcing this node's registry record"
    );
    let delivered = publish(shared, record.envelope.clone(), "record").await;
    // Nobody heard it (no subscribed peer yet): publish it again when the
    // first one appears, so the rest of the mesh learns about this node
    // without waiting for a heartbeat.
    shared.registry.set_unpublished(!delivered);
    shared.registry.record_gauges();
}

/// Publishes the own record if no peer has heard it yet.
async fn publish_unpublished(shared: &Arc<NodeShared>) {
    if shared.registry.take_unpublished()
        && let Some(record) = shared.registry.own_record()
    {
        let delivered = publish(shared, record.envelope.clone(), "record").await;
        tracing::debug!(me = %shared.peer_id(), delivered, "published the pending own record");
        shared.registry.set_unpublished(!delivered);
    }
}

/// Publishes on the registry topic; returns whether a peer took it.
async fn publish(shared: &Arc<NodeShared>, data: Bytes, what: &str) -> bool {
    match shared.transport.publish(TOPIC, data).await {
        Ok(()) => true,
        Err(error) if error.is_soft() => {
            tracing::trace!(%error, what, "registry announcement reached no peer");
            false
        }
        Err(error) => {
            tracing::debug!(%error, what, "cannot publish a registry announcement");
            false
        }
    }
}

async fn publish_heartbeat(shared: &Arc<NodeShared>, leaving: bool) {
    if let Some(hb) = shared.registry.next_heartbeat(leaving) {
        publish(shared, hb.envelope, "heartbeat").await;
    }
}

/// Tells peers that this node is leaving (graceful shutdown): they mark
/// its agents unavailable at once instead of after the liveness timeout.
pub(crate) async fn leave(shared: &Arc<NodeShared>) {
    publish_heartbeat(shared, true).await;
}

fn sweep_once(shared: &Arc<NodeShared>) {
    let changes = shared.registry.sweep();
    if changes.is_empty() {
        return;
    }
    for change in &changes {
        match change {
            Change::Availability(origin) => {
                let available = shared
                    .registry
                    .entries()
                    .iter()
                    .any(|e| e.origin == *origin && e.available);
                if available {
                    tracing::info!(node = %origin, "registry: node available");
                } else {
                    tracing::info!(node = %origin, "registry: node unavailable (not heard from within registry.liveness_timeout, or left)");
                }
                shared.emit(NodeEvent::RemoteAgentsChanged(*origin));
            }
            Change::Expired(origin) => {
                tracing::info!(node = %origin, "registry: node expired and removed");
                shared.emit(NodeEvent::RemoteAgentsChanged(*origin));
            }
        }
    }
    shared.registry.record_gauges();
}

/// Writes the cache without holding up the registry task (one write at a
/// time).
fn persist_in_background(shared: &Arc<NodeShared>) {
    use std::sync::atomic::Ordering;
    if shared.registry.persisting.swap(true, Ordering::AcqRel) {
        return;
    }
    let s = shared.clone();
    tokio::spawn(async move {
        persist(&s).await;
        s.registry.persisting.store(false, Ordering::Release);
    });
}

async fn persist(shared: &Arc<NodeShared>) {
    let s = shared.clone();
    match tokio::task::spawn_blocking(move || s.registry.persist()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "cannot write the registry cache"),
        Err(error) => tracing::warn!(%error, "registry cache task failed"),
    }
}

/// Acts on what receiving an announcement did.
fn apply(shared: &Arc<NodeShared>, from: PeerId, received: Received) {
    if let Some(rejection) = received.rejected {
        reject(shared, from, rejection.origin, rejection.reason);
    }
    if let Some((origin, addrs)) = received.addrs {
        add_addresses(shared, origin, addrs);
    }
    if !received.changed.is_empty() {
        for origin in &received.changed {
            shared.emit(NodeEvent::RemoteAgentsChanged(*origin));
        }
        shared.registry.record_gauges();
    }
    if let Some(origin) = received.need_record {
        spawn_fetch(shared, from, origin, None);
    }
    if let Some(seen) = received.own_newer {
        let s = shared.clone();
        tokio::spawn(async move {
            let r = s.clone();
            match tokio::task::spawn_blocking(move || r.registry.skip_past(seen)).await {
                Ok(Ok(true)) => refresh_own(&s).await,
                Ok(Ok(false)) => {}
                Ok(Err(error)) => tracing::warn!(%error, "cannot store a new registry epoch"),
                Err(error) => tracing::warn!(%error, "registry epoch task failed"),
            }
        });
    }
}

/// Lets calls reach `origin` at the addresses it announced.
fn add_addresses(shared: &NodeShared, origin: PeerId, addrs: Vec<Multiaddr>) {
    let addrs: Vec<Multiaddr> = addrs
        .into_iter()
        .map(|mut a| {
            if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
                a.pop();
            }
            a
        })
        .take(dawn_store::MAX_ADDRESSES_PER_PEER)
        .collect();
    if !addrs.is_empty() {
        shared.transport.add_addresses(origin, addrs);
    }
}

fn reject(
    shared: &Arc<NodeShared>,
    from: PeerId,
    origin: Option<PeerId>,
    reason: RegistryRejectReason,
) {
    shared.registry.count_rejected(reason);
    // Audit and reputation (dawn-security).
    let offence = match reason {
        RegistryRejectReason::Forged => Some(dawn_security::Offence::ForgedRecord),
        RegistryRejectReason::Malformed => Some(dawn_security::Offence::MalformedMessage),
        RegistryRejectReason::TooLarge => Some(dawn_security::Offence::OversizedMessage),
        _ => None,
    };
    shared
        .security
        .announcement_rejected(&from, reason.as_str(), offence);
    if reason.is_misbehaviour() {
        tracing::warn!(peer = %from, origin = ?origin.map(|o| o.to_string()), %reason, "registry announcement rejected");
    } else {
        tracing::debug!(peer = %from, origin = ?origin.map(|o| o.to_string()), %reason, "registry announcement dropped");
    }
    shared.emit(NodeEvent::RegistryRejected {
        from,
        origin,
        reason,
    });
}

fn random_peer(shared: &Arc<NodeShared>) -> Option<PeerId> {
    let peers = shared.transport.connected_peers();
    if peers.is_empty() {
        return None;
    }
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok()?;
    let n = usize::try_from(u64::from_le_bytes(bytes) % peers.len() as u64).unwrap_or(0);
    peers.get(n).map(|p| p.peer_id)
}

/// Delay of the second anti-entropy exchange with a new peer.
const FOLLOW_UP: Duration = Duration::from_secs(2);

fn spawn_follow_up(shared: &Arc<NodeShared>, peer: PeerId) {
    let s = shared.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = s.stop.cancelled() => {}
            () = tokio::time::sleep(FOLLOW_UP) => {
                if s.transport.is_connected(&peer) {
                    sync_with(&s, peer, None).await;
                }
            }
        }
    });
}

fn spawn_sync(shared: &Arc<NodeShared>, peer: PeerId, want: Option<Vec<PeerId>>) {
    let s = shared.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = s.stop.cancelled() => {}
            _ = sync_with(&s, peer, want.as_deref()) => {}
        }
    });
}

/// Fetches `origin`'s record from `from` (or from the origin itself), then
/// accepts the gossip message `forward` (a heartbeat that vouched for it).
fn spawn_fetch(
    shared: &Arc<NodeShared>,
    from: PeerId,
    origin: PeerId,
    forward: Option<dawn_transport::GossipMessageId>,
) {
    let s = shared.clone();
    tokio::spawn(async move {
        if s.registry.begin_fetch(origin) {
            let fetch = async {
                let before = s.registry.known_version(&origin);
                sync_with(&s, from, Some(&[origin])).await;
                if s.registry.known_version(&origin) == before
                    && origin != from
                    && s.transport.is_connected(&origin)
                {
                    sync_with(&s, origin, Some(&[origin])).await;
                }
            };
            tokio::select! {
                () = s.stop.cancelled() => {}
                () = fetch => {}
            }
            s.registry.end_fetch(&origin);
        }
        if let Some(id) = forward {
            let _ = s
                .transport
                .report_validation(id, from, GossipValidation::Accept)
                .await;
        }
    });
}

/// Anti-entropy with `peer`: sends what this node has, merges what the peer
/// has that is newer (and its liveness reports). Returns whether it worked.
pub(crate) async fn sync_with(
    shared: &Arc<NodeShared>,
    peer: PeerId,
    want: Option<&[PeerId]>,
) -> bool {
    // Anti-entropy rides on existing connections and never dials: a peer
    // that just left (or flaps) is redialed only by the node's dial
    // backoff, not by registry traffic.
    if !shared.transport.is_connected(&peer) || !shared.security.authorize_discovery(&peer) {
        return false;
    }
    for round in 0..SYNC_ROUNDS {
        let (params, sent) = shared.registry.sync_request(want);
        let body = Bytes::from(Request::new(round, SYNC_METHOD, Some(params)).to_bytes());
        let reply = match shared
            .transport
            .call(peer, SYSTEM_AGENT_ID, body, SYNC_TIMEOUT)
            .await
        {
            Ok(reply) => reply,
            Err(error) => {
                tracing::debug!(%peer, %error, "registry anti-entropy failed");
                return false;
            }
        };
        let answer = Response::parse(&reply)
            .and_then(Response::into_result)
            .map_err(|e| e.message)
            .and_then(|v| serde_json::from_value::<SyncAnswer>(v).map_err(|e| e.to_string()));
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                // Older nodes do not know the method; anything else is the
                // peer's problem.
                tracing::debug!(%peer, %error, "registry anti-entropy answer not usable");
                return false;
            }
        };
        tracing::debug!(%peer, me = %shared.peer_id(), items = answer.items.len(), more = answer.more, "registry anti-entropy answer");
        for item in answer.items {
            let age = item.age_ms.map(Duration::from_millis);
            for data in [item.record, item.heartbeat].into_iter().flatten() {
                match decode_b64(&data) {
                    Some(bytes) => {
                        let received =
                            shared
                                .registry
                                .receive(&bytes, peer, Via::Sync { age, sent: &sent });
                        apply(shared, peer, received);
                    }
                    None => reject(shared, peer, None, RegistryRejectReason::Malformed),
                }
            }
        }
        if !answer.more {
            break;
        }
    }
    shared.registry.count_sync();
    true
}

/// Answers `dawn/registry_sync` from a peer.
pub(crate) fn answer(
    shared: &Arc<NodeShared>,
    peer: PeerId,
    request: &Request,
) -> Result<serde_json::Value, crate::jsonrpc::CallError> {
    let params = request.params.clone().unwrap_or(serde_json::Value::Null);
    let budget =
        usize::try_from(shared.config.transport.max_message_size.0).unwrap_or(usize::MAX) / 2;
    let (answer, newer) = shared
        .registry
        .answer_sync(&params, budget)
        .map_err(|message| {
            crate::jsonrpc::CallError::new(dawn_resilience::ErrorKind::InvalidParams, message)
        })?;
    // The requester knows more: pull that too.
    if !newer.is_empty() {
        spawn_sync(shared, peer, Some(newer));
    }
    Ok(answer)
}
