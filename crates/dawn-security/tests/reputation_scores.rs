//! Peer reputation over a real database file: penalties, decay over simulated
//! time, disconnect and ban thresholds, ban expiry and persistence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use dawn_security::{Offence, ReputationAction, ReputationConfig, ReputationTracker};
use dawn_store::Store;
use libp2p_identity::PeerId;

/// A fresh peer id (from a newly generated identity).
fn random_peer() -> PeerId {
    dawn_security::NodeIdentity::generate().unwrap().peer_id()
}

const HOUR_MS: u64 = 3_600_000;
const T0: u64 = 1_700_000_000_000;

fn open(path: &Path) -> ReputationTracker {
    ReputationTracker::open(Store::open(path).unwrap(), ReputationConfig::default()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn penalties_follow_the_default_weights() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = open(&dir.path().join("dawn.redb"));
    let peer = random_peer();
    assert_eq!(tracker.standing(&peer, T0).score, 0.0);
    assert_eq!(tracker.standing(&peer, T0).action, ReputationAction::None);

    let standing = tracker
        .penalize(&peer, Offence::RateLimitExceeded, T0)
        .unwrap();
    assert!(close(standing.score, -5.0));
    let standing = tracker
        .penalize(&peer, Offence::MalformedMessage, T0)
        .unwrap();
    assert!(close(standing.score, -15.0));
    let standing = tracker
        .penalize(&peer, Offence::ProtocolViolation, T0)
        .unwrap();
    assert!(close(standing.score, -35.0));
    assert_eq!(standing.action, ReputationAction::None);
    assert_eq!(standing.offences, 3);
    assert_eq!(standing.last_offence.as_deref(), Some("protocol_violation"));
}

#[test]
fn thresholds_disconnect_then_ban_and_the_ban_expires() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = open(&dir.path().join("dawn.redb"));
    let peer = random_peer();

    // -60: below disconnect (-50), above ban (-80).
    for _ in 0..3 {
        tracker
            .penalize(&peer, Offence::ProtocolViolation, T0)
            .unwrap();
    }
    let standing = tracker.standing(&peer, T0);
    assert!(close(standing.score, -60.0));
    assert_eq!(standing.action, ReputationAction::Disconnect);
    assert_eq!(tracker.banned_until(&peer, T0), None);

    // A forged record: -110 clamps to -100, below -80: banned for an hour.
    let standing = tracker
        .penalize(&peer, Offence::ForgedRecord, T0 + 1_000)
        .unwrap();
    assert!(close(standing.score, -100.0), "{}", standing.score);
    let until = T0 + 1_000 + HOUR_MS;
    assert_eq!(standing.action, ReputationAction::Ban { until_ms: until });
    assert_eq!(tracker.banned_until(&peer, T0 + HOUR_MS / 2), Some(until));

    // One millisecond before the end: still banned; at the end: not.
    assert_eq!(
        tracker.standing(&peer, until - 1).action,
        ReputationAction::Ban { until_ms: until }
    );
    let after = tracker.standing(&peer, until);
    assert_eq!(after.banned_until_ms, None);
    // After one half-life the score is about -50: just at the disconnect
    // threshold, not below it.
    assert!(
        close(after.score, -50.0) || after.score > -50.0,
        "{}",
        after.score
    );
    assert_eq!(after.action, ReputationAction::None);
}

#[test]
fn scores_decay_toward_zero_by_half_life() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = open(&dir.path().join("dawn.redb"));
    let peer = random_peer();
    for _ in 0..2 {
        tracker
            .penalize(&peer, Offence::ProtocolViolation, T0)
            .unwrap();
    }
    assert!(close(tracker.standing(&peer, T0).score, -40.0));
    assert!(close(tracker.standing(&peer, T0 + HOUR_MS).score, -20.0));
    assert!(close(
        tracker.standing(&peer, T0 + 2 * HOUR_MS).score,
        -10.0
    ));
    assert!(close(
        tracker.standing(&peer, T0 + HOUR_MS / 2).score,
        -40.0 / 2f64.sqrt()
    ));

    // A penalty later applies to the decayed score.
    let standing = tracker
        .penalize(&peer, Offence::MalformedMessage, T0 + HOUR_MS)
        .unwrap();
    assert!(close(standing.score, -30.0));

    // Rewards move toward +100 and decay too.
    let other = random_peer();
    let standing = tracker.reward(&other, 500.0, T0).unwrap();
    assert!(close(standing.score, 100.0));
    assert!(close(tracker.standing(&other, T0 + HOUR_MS).score, 50.0));
}

#[test]
fn scores_and_bans_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dawn.redb");
    let (banned, scored) = (random_peer(), random_peer());
    {
        let tracker = open(&db);
        tracker
            .penalize(&banned, Offence::ForgedRecord, T0)
            .unwrap();
        tracker
            .penalize(&banned, Offence::ForgedRecord, T0)
            .unwrap();
        tracker
            .penalize(&scored, Offence::OversizedMessage, T0)
            .unwrap();
    }
    let tracker = open(&db);
    assert_eq!(
        tracker.standing(&banned, T0 + 10).action,
        ReputationAction::Ban {
            until_ms: T0 + HOUR_MS
        }
    );
    let standing = tracker.standing(&scored, T0 + HOUR_MS);
    assert!(close(standing.score, -10.0));
    assert_eq!(standing.offences, 1);
    let listed = tracker.list(T0);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].peer, banned, "lowest score first");
}

#[test]
fn unban_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dawn.redb");
    let (banned, mild) = (random_peer(), random_peer());
    {
        let tracker = open(&db);
        tracker
            .penalize(&banned, Offence::ForgedRecord, T0)
            .unwrap();
        tracker
            .penalize(&banned, Offence::ForgedRecord, T0)
            .unwrap();
        tracker
            .penalize(&mild, Offence::RateLimitExceeded, T0)
            .unwrap();

        assert!(tracker.unban(&banned, T0 + 5).unwrap());
        assert!(!tracker.unban(&banned, T0 + 6).unwrap());
        assert_eq!(tracker.banned_until(&banned, T0 + 7), None);
        assert_eq!(
            tracker.standing(&banned, T0 + 7).action,
            ReputationAction::Disconnect
        );

        // After 3 hours -5 has decayed to -0.625: forgotten; -100 to -12.5: kept.
        assert_eq!(tracker.prune(T0 + 3 * HOUR_MS).unwrap(), 1);
        assert_eq!(tracker.list(T0 + 3 * HOUR_MS).len(), 1);
    }
    let tracker = open(&db);
    assert_eq!(tracker.list(T0).len(), 1, "prune is durable");
    assert_eq!(
        tracker.standing(&banned, T0 + 8).banned_until_ms,
        None,
        "unban is durable"
    );
}

#[test]
fn invalid_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = ReputationConfig {
        half_life_secs: 0,
        ..ReputationConfig::default()
    };
    let error = ReputationTracker::open(Store::open(dir.path().join("dawn.redb")).unwrap(), config)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("security.reputation.half_life_secs"),
        "{error}"
    );
}
