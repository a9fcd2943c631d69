//! The trust registry over a real database file: stored records, config pins,
//! bootstrap peers, the default level and `reject_unknown`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use dawn_security::{
    DecisionRule, Permission, Policy, Requirement, TrustError, TrustLevel, TrustOrigin,
    TrustRegistry, TrustSettings,
};
use dawn_store::{Store, TrustEntry, TrustSource};
use libp2p_identity::PeerId;

/// A fresh peer id (from a newly generated identity).
fn random_peer() -> PeerId {
    dawn_security::NodeIdentity::generate().unwrap().peer_id()
}

fn open(path: &Path, settings: TrustSettings) -> TrustRegistry {
    TrustRegistry::open(Store::open(path).unwrap(), settings).unwrap()
}

#[test]
fn set_get_list_remove_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dawn.redb");
    let (a, b, c) = (random_peer(), random_peer(), random_peer());
    {
        let trust = open(&db, TrustSettings::default());
        assert_eq!(trust.level(&a), TrustLevel::Unknown);
        assert_eq!(trust.lookup(&a).origin, TrustOrigin::Default);
        assert!(trust.list().is_empty());

        let change = trust
            .set(&a, TrustLevel::Trusted, Some("gateway".into()), 1_000)
            .unwrap();
        assert_eq!(change.before.level, TrustLevel::Unknown);
        assert_eq!(change.before.origin, TrustOrigin::Default);
        assert_eq!(change.after.level, TrustLevel::Trusted);
        assert_eq!(
            change.after.origin,
            TrustOrigin::Stored(TrustSource::Operator)
        );
        // Visible at once.
        assert_eq!(trust.level(&a), TrustLevel::Trusted);

        trust.set(&b, TrustLevel::Verified, None, 2_000).unwrap();
        trust.set(&c, TrustLevel::Untrusted, None, 3_000).unwrap();
        let change = trust.remove(&c).unwrap().unwrap();
        assert_eq!(change.before.level, TrustLevel::Untrusted);
        assert_eq!(change.after.level, TrustLevel::Unknown);
        assert!(trust.remove(&c).unwrap().is_none());
    }

    let trust = open(&db, TrustSettings::default());
    let a_trust = trust.lookup(&a);
    assert_eq!(a_trust.level, TrustLevel::Trusted);
    assert_eq!(a_trust.note.as_deref(), Some("gateway"));
    assert_eq!(a_trust.updated_ms, Some(1_000));
    assert_eq!(trust.level(&b), TrustLevel::Verified);
    assert_eq!(trust.level(&c), TrustLevel::Unknown);
    let mut expected = vec![a.to_base58(), b.to_base58()];
    expected.sort();
    let listed: Vec<String> = trust.list().iter().map(|t| t.peer.to_base58()).collect();
    assert_eq!(listed, expected);
}

#[test]
fn clones_share_changes() {
    let dir = tempfile::tempdir().unwrap();
    let trust = open(&dir.path().join("dawn.redb"), TrustSettings::default());
    let reader = trust.clone();
    let peer = random_peer();
    let handle = std::thread::spawn(move || {
        trust.set(&peer, TrustLevel::Trusted, None, 5).unwrap();
    });
    handle.join().unwrap();
    assert_eq!(reader.level(&peer), TrustLevel::Trusted);
}

#[test]
fn config_pins_win_and_refuse_operator_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dawn.redb");
    let (good, bad, other) = (random_peer(), random_peer(), random_peer());
    // A stored record made before the pin existed.
    {
        let trust = open(&db, TrustSettings::default());
        trust.set(&bad, TrustLevel::Trusted, None, 1).unwrap();
    }
    let settings = TrustSettings {
        trusted_peers: vec![good],
        blocked_peers: vec![bad],
        ..TrustSettings::default()
    };
    let trust = open(&db, settings);

    let good_trust = trust.lookup(&good);
    assert_eq!(good_trust.level, TrustLevel::Trusted);
    assert_eq!(good_trust.origin, TrustOrigin::TrustedPeersConfig);
    let bad_trust = trust.lookup(&bad);
    assert_eq!(
        bad_trust.level,
        TrustLevel::Untrusted,
        "config wins over the stored record"
    );
    assert_eq!(bad_trust.origin, TrustOrigin::BlockedPeersConfig);

    let error = trust.set(&bad, TrustLevel::Trusted, None, 2).unwrap_err();
    assert!(
        matches!(
            error,
            TrustError::PinnedByConfig {
                config_key: "security.blocked_peers",
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&bad.to_string()), "{message}");
    assert!(message.contains("security.blocked_peers"), "{message}");
    let error = trust.remove(&good).unwrap_err();
    assert!(
        error.to_string().contains("security.trusted_peers"),
        "{error}"
    );
    assert_eq!(trust.level(&bad), TrustLevel::Untrusted);

    // Unpinned peers still work, and list shows pins too.
    trust.set(&other, TrustLevel::Verified, None, 3).unwrap();
    assert_eq!(trust.list().len(), 3);

    // The stored record of the pinned peer is still there, shadowed.
    drop(trust);
    let store = Store::open(&db).unwrap();
    let stored: Vec<TrustEntry> = store.trust_entries().unwrap();
    assert!(
        stored
            .iter()
            .any(|e| e.peer_id == bad.to_base58() && e.level == "trusted")
    );
}

#[test]
fn a_peer_both_trusted_and_blocked_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let peer = random_peer();
    let error = TrustRegistry::open(
        Store::open(dir.path().join("dawn.redb")).unwrap(),
        TrustSettings {
            trusted_peers: vec![peer],
            blocked_peers: vec![peer],
            ..TrustSettings::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(error, TrustError::ConflictingConfig { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("both security.trusted_peers and security.blocked_peers")
    );
}

#[test]
fn bootstrap_peers_start_at_bootstrap_and_can_be_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let boot = random_peer();
    let trust = open(
        &dir.path().join("dawn.redb"),
        TrustSettings {
            bootstrap_peers: vec![boot],
            ..TrustSettings::default()
        },
    );
    assert_eq!(trust.level(&boot), TrustLevel::Bootstrap);
    assert_eq!(trust.lookup(&boot).origin, TrustOrigin::BootstrapConfig);
    assert!(trust.lookup(&boot).origin.has_record());

    trust
        .set(&boot, TrustLevel::Verified, Some("demoted".into()), 9)
        .unwrap();
    assert_eq!(trust.level(&boot), TrustLevel::Verified);
    trust.remove(&boot).unwrap().unwrap();
    assert_eq!(trust.level(&boot), TrustLevel::Bootstrap);
}

#[test]
fn default_level_applies_to_peers_without_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let trust = open(
        &dir.path().join("dawn.redb"),
        TrustSettings {
            default_level: TrustLevel::Untrusted,
            ..TrustSettings::default()
        },
    );
    let stranger = random_peer();
    assert_eq!(trust.default_level(), TrustLevel::Untrusted);
    assert_eq!(trust.level(&stranger), TrustLevel::Untrusted);
    let decision = trust.admit(&stranger, &Policy::default());
    assert!(!decision.allowed);
    assert_eq!(decision.rule, DecisionRule::Untrusted);
}

#[test]
fn reject_unknown_refuses_only_peers_without_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let (boot, known, stranger) = (random_peer(), random_peer(), random_peer());
    let trust = open(
        &dir.path().join("dawn.redb"),
        TrustSettings {
            reject_unknown: true,
            bootstrap_peers: vec![boot],
            ..TrustSettings::default()
        },
    );
    let policy = Policy::default();
    trust
        .set(&known, TrustLevel::Unknown, Some("seen it".into()), 1)
        .unwrap();

    let decision = trust.admit(&stranger, &policy);
    assert!(!decision.allowed);
    assert_eq!(decision.rule, DecisionRule::RejectUnknown);
    assert_eq!(decision.reason_code, "not_permitted");
    assert!(
        decision.detail.contains("reject_unknown"),
        "{}",
        decision.detail
    );
    // Every permission, not only connect.
    let listing = trust.authorize(
        &stranger,
        &policy,
        Permission::ListTools,
        &Requirement::none(),
    );
    assert!(!listing.allowed);

    // An explicit record (even at level unknown) and bootstrap peers pass.
    assert!(trust.admit(&known, &policy).allowed);
    assert!(trust.admit(&boot, &policy).allowed);

    // Removing the record takes effect at once.
    trust.remove(&known).unwrap();
    assert!(!trust.admit(&known, &policy).allowed);
}

#[test]
fn unknown_peer_is_denied_a_state_changing_tool_until_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let trust = open(&dir.path().join("dawn.redb"), TrustSettings::default());
    let policy = Policy::default();
    let peer = random_peer();
    let write = Permission::CallTool { read_only: false };
    let target = Requirement::tool("files", "delete");

    assert!(trust.admit(&peer, &policy).allowed);
    let denied = trust.authorize(&peer, &policy, write, &target);
    assert!(!denied.allowed);
    assert_eq!(denied.public_message(), "not permitted");
    assert!(
        trust
            .authorize(
                &peer,
                &policy,
                Permission::CallTool { read_only: true },
                &target
            )
            .allowed
    );

    trust.set(&peer, TrustLevel::Trusted, None, 1).unwrap();
    assert!(trust.authorize(&peer, &policy, write, &target).allowed);

    trust.set(&peer, TrustLevel::Untrusted, None, 2).unwrap();
    let refused = trust.admit(&peer, &policy);
    assert!(!refused.allowed, "untrusted peers are disconnected");
    assert_eq!(refused.rule, DecisionRule::Untrusted);
}

#[test]
fn invalid_stored_level_is_reported_with_the_database_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dawn.redb");
    let peer = random_peer();
    {
        let store = Store::open(&db).unwrap();
        store
            .put_trust_entry(&TrustEntry {
                peer_id: peer.to_base58(),
                level: "godlike".into(),
                note: None,
                source: TrustSource::Operator,
                updated_ms: 1,
            })
            .unwrap();
    }
    let error =
        TrustRegistry::open(Store::open(&db).unwrap(), TrustSettings::default()).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, TrustError::InvalidRecord { .. }),
        "{error:?}"
    );
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert!(message.contains(&peer.to_base58()), "{message}");
    assert!(
        message.contains("unknown trust level \"godlike\""),
        "{message}"
    );
}

#[test]
fn overlong_notes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let trust = open(&dir.path().join("dawn.redb"), TrustSettings::default());
    let peer = random_peer();
    let error = trust
        .set(&peer, TrustLevel::Trusted, Some("x".repeat(2000)), 1)
        .unwrap_err();
    assert!(
        matches!(error, TrustError::NoteTooLong { len: 2000, .. }),
        "{error:?}"
    );
    assert_eq!(trust.level(&peer), TrustLevel::Unknown);
}

#[test]
fn reconfigure_replaces_pins_bootstrap_and_defaults_and_reports_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dawn.redb");
    let (stored, pinned, boot, bystander) =
        (random_peer(), random_peer(), random_peer(), random_peer());
    let trust = open(
        &db,
        TrustSettings {
            trusted_peers: vec![pinned],
            bootstrap_peers: vec![boot],
            ..TrustSettings::default()
        },
    );
    trust.set(&stored, TrustLevel::Verified, None, 1).unwrap();
    trust
        .set(&bystander, TrustLevel::Verified, None, 2)
        .unwrap();
    let reader = trust.clone();

    // Block the stored peer, unpin the pinned one, drop the bootstrap peer,
    // raise the default and turn on reject_unknown.
    let outcome = trust
        .reconfigure(TrustSettings {
            blocked_peers: vec![stored],
            default_level: TrustLevel::Verified,
            reject_unknown: true,
            ..TrustSettings::default()
        })
        .unwrap();
    let mut expected = vec![
        (stored, TrustLevel::Verified, TrustLevel::Untrusted),
        (pinned, TrustLevel::Trusted, TrustLevel::Verified),
        (boot, TrustLevel::Bootstrap, TrustLevel::Verified),
    ];
    expected.sort_by_key(|(peer, _, _)| peer.to_base58());
    let got: Vec<_> = outcome
        .changes
        .iter()
        .map(|c| (c.after.peer, c.before.level, c.after.level))
        .collect();
    assert_eq!(got, expected, "{outcome:?}");
    assert_eq!(
        outcome.default_level,
        Some((TrustLevel::Unknown, TrustLevel::Verified))
    );
    assert_eq!(outcome.reject_unknown, Some((false, true)));

    // Every clone sees the new view at once.
    assert_eq!(
        reader.lookup(&stored).origin,
        TrustOrigin::BlockedPeersConfig
    );
    assert_eq!(reader.level(&pinned), TrustLevel::Verified);
    assert_eq!(reader.lookup(&boot).origin, TrustOrigin::Default);
    assert_eq!(reader.level(&bystander), TrustLevel::Verified);
    assert!(reader.reject_unknown());
    let policy = Policy::default();
    let decision = reader.authorize(
        &random_peer(),
        &policy,
        Permission::Connect,
        &Requirement::none(),
    );
    assert_eq!(decision.rule, DecisionRule::RejectUnknown);
    let error = reader
        .set(&stored, TrustLevel::Trusted, None, 3)
        .unwrap_err();
    assert!(
        error.to_string().contains("reload the configuration"),
        "{error}"
    );

    // Unpinning brings the shadowed stored record back, untouched.
    let outcome = trust.reconfigure(TrustSettings::default()).unwrap();
    let back = outcome
        .changes
        .iter()
        .find(|c| c.after.peer == stored)
        .unwrap();
    assert_eq!(back.after.level, TrustLevel::Verified);
    assert_eq!(
        back.after.origin,
        TrustOrigin::Stored(TrustSource::Operator)
    );
    assert_eq!(outcome.reject_unknown, Some((true, false)));

    // The same configuration again changes nothing.
    assert!(
        trust
            .reconfigure(TrustSettings::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_conflicting_reconfiguration_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dawn.redb");
    let (a, b) = (random_peer(), random_peer());
    let trust = open(
        &db,
        TrustSettings {
            blocked_peers: vec![a],
            ..TrustSettings::default()
        },
    );
    let error = trust
        .reconfigure(TrustSettings {
            trusted_peers: vec![a, b],
            blocked_peers: vec![a],
            ..TrustSettings::default()
        })
        .unwrap_err();
    assert!(matches!(error, TrustError::ConflictingConfig { peer } if peer == a));
    assert_eq!(trust.lookup(&a).origin, TrustOrigin::BlockedPeersConfig);
    assert_eq!(trust.lookup(&b).origin, TrustOrigin::Default);
}
