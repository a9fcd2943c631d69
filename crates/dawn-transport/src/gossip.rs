//! Gossipsub settings: protocol name, validation, sizes, heartbeat and peer
//! scoring.
//!
//! # Parameters and why
//!
//! - Protocol ids `/dawn/meshsub/1.1.0` and `/dawn/meshsub/1.0.0`: Dawn
//!   nodes only mesh with Dawn nodes.
//! - Strict validation with signed messages (`MessageAuthenticity::Signed`):
//!   every message carries its author's peer id, sequence number and
//!   signature; unsigned or badly signed messages are dropped (and count as
//!   invalid deliveries for the sender).
//! - `validate_messages()`: nothing is forwarded until the node reports
//!   [`GossipValidation::Accept`](crate::GossipValidation::Accept).
//! - Heartbeat [`TransportConfig::gossip_heartbeat`] (default 500 ms, first
//!   heartbeat after 100 ms) instead of libp2p's 1 s / 5 s. A mesh forms
//!   without waiting for heartbeats (a subscribed node grafts a newly
//!   subscribed peer at once while its mesh is below D_low): in a 30-node
//!   line on the memory transport the first message reached all 29 other
//!   nodes ~15 ms after the last dial without Kademlia, ~0.5 s with it (the
//!   DHT's extra connections settle first); measured on the 2-vCPU dev box.
//!   The heartbeat drives what happens after that: mesh repair when peers
//!   leave, opportunistic grafting, and lazy gossip (IHAVE/IWANT), through
//!   which a peer that missed a message fetches it. 500 ms halves that
//!   recovery time for a few hundred bytes of control traffic per peer per
//!   second. `history_length` 10 and `history_gossip` 6 keep the message
//!   cache at ~5 s and the gossip window at ~3 s of wall time.
//! - Mesh degree libp2p defaults (D = 6, D_low = 4, D_high = 12, D_lazy = 6);
//!   flood publishing stays on, so an announcement goes straight to every
//!   subscribed peer.
//! - `max_transmit_size` = [`TransportConfig::gossip_max_message_size`]
//!   (default 1 MiB) for whole RPCs in both directions; control messages are
//!   bounded by libp2p (16 KiB per control message, 5000 IHAVE ids).
//!
//! # Peer scoring
//!
//! Scoring is on, tuned for a quiet registry topic (few messages, so no
//! penalty for *not* delivering):
//!
//! - per subscribed topic (weight 1): invalid deliveries (a
//!   [`Reject`](crate::GossipValidation::Reject), or a bad signature) score
//!   `-10 × count²`, the count decaying to 10 % over 10 minutes; first
//!   deliveries give up to +20, time in mesh up to +10; mesh delivery and
//!   mesh failure penalties are off;
//! - thresholds: gossip -10, publish -50, graylist -80. For a peer
//!   without positive credit, one rejected message is tolerated (-10), two
//!   (-40) stop gossip exchange with it, three (-90) get everything it sends
//!   ignored until the count decays; at most +30 of earned credit delays
//!   that by one message;
//! - IP colocation penalty is off: many legitimate nodes share an address
//!   (one host running several nodes, NAT); Sybil resistance comes from the
//!   node's trust policy and bans instead;
//! - behaviour penalties (broken IWANT promises, GRAFT during backoff) count
//!   after 6 offences; scores are retained for an hour after a disconnect so
//!   reconnecting does not reset them.
//!
//! Gossip scoring only steers gossipsub itself. The node's reputation (and
//! bans, via [`Transport::ban`](crate::Transport::ban)) is separate.

use std::time::Duration;

use libp2p::{
    gossipsub::{
        self, ConfigBuilder, MessageAuthenticity, PeerScoreParams, PeerScoreThresholds,
        TopicScoreParams, ValidationMode,
    },
    identity::Keypair,
};

use crate::{config::TransportConfig, error::PublishError, error::TransportError};

/// Gossipsub protocol id prefix (`/1.1.0` and `/1.0.0` are appended).
pub const GOSSIP_PROTOCOL_PREFIX: &str = "/dawn/meshsub";

/// Builds the gossipsub behaviour with scoring enabled.
pub(crate) fn behaviour(
    key: &Keypair,
    config: &TransportConfig,
) -> Result<gossipsub::Behaviour, TransportError> {
    let heartbeat = config.gossip_heartbeat;
    let gossip_config = ConfigBuilder::default()
        .protocol_id_prefix(GOSSIP_PROTOCOL_PREFIX)
        .heartbeat_interval(heartbeat)
        .heartbeat_initial_delay(heartbeat.min(Duration::from_millis(100)))
        .history_length(10)
        .history_gossip(6)
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(config.gossip_max_message_size)
        .duplicate_cache_time(Duration::from_secs(120))
        // A forwarded message waits up to this long for a busy connection
        // (libp2p's default is 1 s). Registry records and heartbeats are
        // small and rare, and a copy dropped on a mesh link is not repaired
        // by gossip, so a busy node would otherwise miss records until the
        // next anti-entropy exchange.
        .forward_queue_duration(Duration::from_secs(5))
        .build()
        .map_err(|e| TransportError::Build(format!("gossipsub config: {e}")))?;
    let mut behaviour =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
            .map_err(|e| TransportError::Build(format!("gossipsub: {e}")))?;
    behaviour
        .with_peer_score(peer_score_params(), peer_score_thresholds())
        .map_err(|e| TransportError::Build(format!("gossipsub scoring: {e}")))?;
    Ok(behaviour)
}

fn peer_score_params() -> PeerScoreParams {
    PeerScoreParams {
        // Positive topic contributions are small (see topic params); cap the
        // total so a long-lived peer cannot bank credit for misbehaviour.
        topic_score_cap: 50.0,
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: 0.0,
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: gossipsub::score_parameter_decay(Duration::from_secs(600)),
        decay_interval: Duration::from_secs(1),
        decay_to_zero: 0.01,
        retain_score: Duration::from_secs(3600),
        ..PeerScoreParams::default()
    }
}

fn peer_score_thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

/// Score parameters applied to every topic this node subscribes to.
pub(crate) fn topic_score_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 1000.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(3600)),
        first_message_deliveries_cap: 20.0,
        // A registry topic is quiet: never punish peers for not delivering.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(
            600,
        )),
        ..TopicScoreParams::default()
    }
}

/// Maps libp2p's publish error to ours.
pub(crate) fn publish_error(
    error: gossipsub::PublishError,
    topic: &str,
    len: usize,
    max: usize,
) -> PublishError {
    match error {
        gossipsub::PublishError::NoPeersSubscribedToTopic => PublishError::NoPeers(topic.into()),
        gossipsub::PublishError::Duplicate => PublishError::Duplicate,
        gossipsub::PublishError::MessageTooLarge => PublishError::TooLarge { len, max },
        gossipsub::PublishError::AllQueuesFull(n) => PublishError::QueuesFull(n),
        other => PublishError::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_parameters_are_valid() {
        assert!(peer_score_params().validate().is_ok());
        assert!(peer_score_thresholds().validate().is_ok());
        assert!(topic_score_params().validate().is_ok());
    }

    #[test]
    fn gossip_behaviour_builds_with_defaults() {
        let key = Keypair::generate_ed25519();
        assert!(behaviour(&key, &TransportConfig::default()).is_ok());
    }
}
