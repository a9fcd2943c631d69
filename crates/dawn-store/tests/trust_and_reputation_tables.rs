//! The trust and reputation tables on real database files: round trips, replacement, removal
//! and persistence across reopening.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dawn_store::{ReputationEntry, Store, StoreError, TrustEntry, TrustSource};

fn trust(peer: &str, level: &str, updated_ms: u64) -> TrustEntry {
    TrustEntry {
        peer_id: peer.into(),
        level: level.into(),
        note: None,
        source: TrustSource::Operator,
        updated_ms,
    }
}

fn reputation(peer: &str, score: f64) -> ReputationEntry {
    ReputationEntry {
        peer_id: peer.into(),
        score,
        updated_ms: 100,
        banned_until_ms: Some(5_000),
        offences: 3,
        last_offence: Some("forged_record".into()),
    }
}

#[test]
fn trust_entries_round_trip_replace_remove_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dawn.redb");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.trust_entry("b").unwrap(), None);
        assert_eq!(
            store.put_trust_entry(&trust("b", "verified", 1)).unwrap(),
            None
        );
        let mut with_note = trust("a", "trusted", 2);
        with_note.note = Some("our gateway".into());
        store.put_trust_entry(&with_note).unwrap();

        let previous = store.put_trust_entry(&trust("b", "untrusted", 3)).unwrap();
        assert_eq!(previous, Some(trust("b", "verified", 1)));
        store.put_trust_entry(&trust("c", "unknown", 4)).unwrap();
        assert_eq!(
            store.remove_trust_entry("c").unwrap(),
            Some(trust("c", "unknown", 4))
        );
        assert_eq!(store.remove_trust_entry("c").unwrap(), None);
    }

    let store = Store::open(&path).unwrap();
    let entries = store.trust_entries().unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e.peer_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "peer id order");
    assert_eq!(entries[0].note.as_deref(), Some("our gateway"));
    assert_eq!(entries[1].level, "untrusted");
    assert_eq!(entries[1].updated_ms, 3);
}

#[test]
fn reputation_entries_round_trip_remove_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dawn.redb");
    {
        let store = Store::open(&path).unwrap();
        store
            .put_reputation_entry(&reputation("p1", -40.25))
            .unwrap();
        store.put_reputation_entry(&reputation("p2", 3.0)).unwrap();
        store.put_reputation_entry(&reputation("p3", 0.0)).unwrap();
        assert_eq!(store.remove_reputation_entries(&["p3", "nope"]).unwrap(), 1);
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.reputation_entry("p1").unwrap(),
        Some(reputation("p1", -40.25))
    );
    let all = store.reputation_entries().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].peer_id, "p2");
}

#[test]
fn non_finite_score_is_refused_naming_the_table_and_peer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("dawn.redb")).unwrap();
    let error = store
        .put_reputation_entry(&reputation("p1", f64::NAN))
        .unwrap_err();
    assert!(matches!(error, StoreError::Record { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("reputation"), "{message}");
    assert!(message.contains("\"p1\""), "{message}");
    assert_eq!(store.reputation_entry("p1").unwrap(), None);
}
