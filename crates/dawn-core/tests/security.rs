//! Security over real sockets: trust decides who may call what, connection
//! admission refuses and bans, every decision lands in the audit log, and
//! the node key's problems are clear errors that change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    future::Future,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    time::{Duration, Instant},
};

use common::{addr, start_node, start_probed, text_of};
use dawn_core::{
    DawnConfig, ErrorKind, Node, NodeBuilder, NodeError, NodeEvent,
    security::{SecurityError, TrustLevel},
};
use dawn_security::{AuditEntry, AuditEvent, AuditFilter, NodeIdentity, Passphrase, audit};
use serde_json::json;

/// Generous: the machine may be busy with other builds.
const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `probe` until it returns `Some`, or panics naming `what`.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every audit record the node has written so far.
async fn audit_of(node: &Node) -> Vec<AuditEntry> {
    node.flush_audit().await;
    audit::tail(node.audit_dir(), 100_000, &AuditFilter::all()).unwrap()
}

fn has(entries: &[AuditEntry], event: AuditEvent, peer: &str, tool: Option<&str>) -> bool {
    entries.iter().any(|e| {
        e.record.event == event
            && e.record.peer.as_deref() == Some(peer)
            && (tool.is_none() || e.record.tool.as_deref() == tool)
    })
}

/// `a` dials `b` and waits until `a` knows `b`'s agents (no trust set up).
async fn dial(a: &Node, b: &Node) {
    let mut events = a.subscribe();
    a.dial(b.dial_addrs()[0].clone()).await.unwrap();
    common::wait_for(
        &mut events,
        |e| matches!(e, NodeEvent::RemoteAgentsChanged(p) if *p == b.peer_id()),
    )
    .await;
}

#[tokio::test]
async fn unknown_peer_is_denied_state_changing_tools_until_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let (b, _probe) = start_probed(&dir, "b", |_| {}).await;
    dial(&a, &b).await;
    let target = addr(Some(b.peer_id()), "tester");

    // Read-only tools are open to unknown peers.
    let sum = a
        .call_tool(&target, "add", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(sum.structured_content.unwrap()["sum"], 5);

    // A tool that may change state is not.
    let error = a
        .call_tool(&target, "set_memo", json!({"text": "pwned"}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::Unauthorized));
    assert_eq!(error.code, -32001);
    assert_eq!(error.message, "not permitted");
    let wire = serde_json::to_string(&error).unwrap();
    for secret in ["trusted", "unknown", "min_level", "policy"] {
        assert!(
            !wire.contains(secret),
            "the refusal leaks {secret:?}: {wire}"
        );
    }
    // Neither does a tool that does not exist (no probing of tool names).
    let error = a
        .call_tool(&target, "no_such_tool", json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::Unauthorized));

    // The operator trusts a: at once, without reconnecting.
    let change = b
        .set_trust(a.peer_id(), TrustLevel::Trusted, Some("our gateway".into()))
        .await
        .unwrap();
    assert_eq!(change.before.level, TrustLevel::Unknown);
    assert_eq!(change.after.level, TrustLevel::Trusted);
    let ok = a
        .call_tool(&target, "set_memo", json!({"text": "hello"}))
        .await
        .unwrap();
    assert_eq!(text_of(&ok), "ok");

    let a_id = a.peer_id().to_string();
    let log = audit_of(&b).await;
    assert!(
        has(&log, AuditEvent::ConnectionAccepted, &a_id, None),
        "{log:#?}"
    );
    assert!(has(&log, AuditEvent::CallDenied, &a_id, Some("set_memo")));
    assert!(has(
        &log,
        AuditEvent::CallDenied,
        &a_id,
        Some("no_such_tool")
    ));
    assert!(has(&log, AuditEvent::TrustChanged, &a_id, None));
    assert!(has(&log, AuditEvent::CallAllowed, &a_id, Some("set_memo")));
    let denied = log
        .iter()
        .find(|e| e.record.event == AuditEvent::CallDenied)
        .unwrap();
    // The audit record has what the peer was not told.
    assert!(
        denied
            .record
            .reason
            .as_deref()
            .unwrap()
            .contains("minimum trusted"),
        "{denied:?}"
    );
    assert_eq!(denied.record.agent.as_deref(), Some("tester"));
    assert!(denied.record.request_id.is_some());
    let change = log
        .iter()
        .find(|e| e.record.event == AuditEvent::TrustChanged)
        .unwrap();
    assert_eq!(change.record.details["from"], "unknown");
    assert_eq!(change.record.details["to"], "trusted");
    assert_eq!(change.record.details["note"], "our gateway");
    // Read-only calls are not recorded by default (security.audit.allowed).
    assert!(!has(&log, AuditEvent::CallAllowed, &a_id, Some("add")));
    let report = audit::verify(b.audit_dir()).unwrap();
    assert_eq!(report.records, log.len() as u64);

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn reject_unknown_refuses_the_connection_until_the_peer_has_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let b = start_node(&dir, "b", |c| c.security.reject_unknown = true).await;
    let a_id = a.peer_id().to_string();

    // The transport handshake completes, then b closes the connection.
    let _ = a.dial(b.dial_addrs()[0].clone()).await;
    let log = eventually("b to refuse a", || async {
        let log = audit_of(&b).await;
        has(&log, AuditEvent::ConnectionRefused, &a_id, None).then_some(log)
    })
    .await;
    let refused = log
        .iter()
        .find(|e| e.record.event == AuditEvent::ConnectionRefused)
        .unwrap();
    assert!(
        refused
            .record
            .reason
            .as_deref()
            .unwrap()
            .contains("reject_unknown"),
        "{refused:?}"
    );
    assert_eq!(refused.record.details["action"], "disconnect");
    eventually("a to be disconnected", || async {
        b.connected_peers().is_empty().then_some(())
    })
    .await;
    // Not a ban: a record lets the peer in.
    b.set_trust(a.peer_id(), TrustLevel::Verified, None)
        .await
        .unwrap();
    dial(&a, &b).await;
    let sum = a
        .call_tool(
            &addr(Some(b.peer_id()), "system"),
            "echo",
            json!({"message": "in"}),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&sum), "in");
    let log = audit_of(&b).await;
    assert!(has(&log, AuditEvent::ConnectionAccepted, &a_id, None));

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_peer_is_disconnected_banned_and_let_back_in() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let b = start_node(&dir, "b", |_| {}).await;
    dial(&a, &b).await;
    let a_id = a.peer_id().to_string();

    b.set_trust(a.peer_id(), TrustLevel::Untrusted, Some("abuse".into()))
        .await
        .unwrap();
    eventually("a to be disconnected", || async {
        (b.connected_peers().is_empty() && a.connected_peers().is_empty()).then_some(())
    })
    .await;
    // Refused from then on, both directions (a's side may see its dial
    // complete before b closes it).
    assert!(b.dial(a.dial_addrs()[0].clone()).await.is_err());
    let _ = a.dial(b.dial_addrs()[0].clone()).await;
    let target = addr(Some(b.peer_id()), "system");
    let error = a
        .call_tool(&target, "echo", json!({"message": "let me in"}))
        .await
        .unwrap_err();
    assert_ne!(error.kind(), None, "{error:?}");
    assert!(!b.connected_peers().iter().any(|p| p.peer_id == a.peer_id()));
    let log = audit_of(&b).await;
    assert!(has(&log, AuditEvent::TrustChanged, &a_id, None));

    // Lifting it lets a connect again.
    b.set_trust(a.peer_id(), TrustLevel::Unknown, None)
        .await
        .unwrap();
    let _ = a.dial(b.dial_addrs()[0].clone()).await;
    let echoed = eventually("a to call b again", || async {
        a.call_tool(&target, "echo", json!({"message": "back"}))
            .await
            .ok()
    })
    .await;
    assert_eq!(text_of(&echoed), "back");

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn three_nodes_config_pins_bootstrap_and_an_intact_then_edited_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    // The peer ids must be known before b starts: create a's and c's keys.
    let a_key = dir.path().join("a").join("node.key");
    let c_key = dir.path().join("c").join("node.key");
    let a_id = NodeIdentity::create(&a_key).unwrap().peer_id();
    let c_id = NodeIdentity::create(&c_key).unwrap().peer_id();
    let (b, _probe) = start_probed(&dir, "b", |c| {
        c.security.trusted_peers = vec![a_id.to_string()];
        c.security.blocked_peers = vec![c_id.to_string()];
    })
    .await;
    let b_addr = b.dial_addrs()[0].clone();
    let a = start_node(&dir, "a", |c| c.node.bootstrap = vec![b_addr.clone()]).await;
    let c = start_node(&dir, "c", |c| c.node.bootstrap = vec![b_addr.clone()]).await;
    assert_eq!(a.peer_id(), a_id);

    // a and c see b as their bootstrap peer; b pins a and c from config.
    assert_eq!(a.trust(&b.peer_id()).level, TrustLevel::Bootstrap);
    assert_eq!(b.trust(&a_id).level, TrustLevel::Trusted);
    assert_eq!(b.trust(&c_id).level, TrustLevel::Untrusted);
    let pinned = b
        .set_trust(c_id, TrustLevel::Trusted, None)
        .await
        .unwrap_err();
    assert!(
        matches!(pinned, SecurityError::Trust(_))
            && pinned.to_string().contains("security.blocked_peers"),
        "{pinned}"
    );

    // a (pinned trusted) may change state on b.
    let target = addr(Some(b.peer_id()), "tester");
    let ok = eventually("a to reach b", || async {
        a.call_tool(&target, "set_memo", json!({"text": "from a"}))
            .await
            .ok()
    })
    .await;
    assert_eq!(text_of(&ok), "ok");
    // c (blocked) is banned from the start: it cannot connect at all.
    let c_str = c_id.to_string();
    let _ = c.dial(b_addr.clone()).await;
    assert!(
        c.call_tool(&target, "add", json!({"a": 1, "b": 1}))
            .await
            .is_err()
    );
    assert!(!b.connected_peers().iter().any(|p| p.peer_id == c_id));

    let log = audit_of(&b).await;
    let a_str = a_id.to_string();
    assert!(has(&log, AuditEvent::ConnectionAccepted, &a_str, None));
    assert!(has(&log, AuditEvent::CallAllowed, &a_str, Some("set_memo")));
    let banned = log
        .iter()
        .find(|e| e.record.event == AuditEvent::PeerBanned)
        .unwrap();
    assert_eq!(banned.record.peer.as_deref(), Some(c_str.as_str()));
    assert!(
        banned
            .record
            .reason
            .as_deref()
            .unwrap()
            .contains("security.blocked_peers")
    );
    assert!(log.iter().all(|e| e.record.event != AuditEvent::CallAllowed
        || e.record.peer.as_deref() != Some(c_str.as_str())));

    // The log verifies; then one edited line is found.
    a.shutdown().await;
    c.shutdown().await;
    b.shutdown().await;
    let report = audit::verify(b.audit_dir()).unwrap();
    assert!(report.records >= 3);
    let file = b.audit_dir().join("audit.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&file, edited.as_bytes()).unwrap();
    let error = audit::verify(b.audit_dir()).unwrap_err();
    let line = text
        .lines()
        .position(|l| l.contains("\"decision\":\"deny\""))
        .unwrap()
        + 1;
    assert!(
        error.to_string().contains(&format!("audit.jsonl:{line}:")),
        "{error}"
    );
}

fn config_in(dir: &Path) -> DawnConfig {
    let mut config = DawnConfig::ephemeral(dir);
    config.api.enabled = false;
    config
}

fn passphrase_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

async fn start_err(config: DawnConfig) -> NodeError {
    match NodeBuilder::new(config).start().await {
        Ok(node) => {
            node.shutdown().await;
            drop(node);
            panic!("the node started");
        }
        Err(error) => error,
    }
}

#[tokio::test]
async fn key_problems_are_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let right = passphrase_file(dir.path(), "right", "correct horse battery\n");
    let wrong = passphrase_file(dir.path(), "wrong", "not the passphrase\n");

    // First start with encryption at rest: an encrypted key is created.
    let mut config = config_in(&data);
    config.security.encryption_at_rest = true;
    config.security.passphrase_file = Some(right.clone());
    let node = NodeBuilder::new(config.clone()).start().await.unwrap();
    let peer = node.peer_id();
    node.shutdown().await;
    drop(node);
    let key = data.join("node.key");
    assert!(NodeIdentity::key_file_info(&key).unwrap().encrypted);
    let original = std::fs::read(&key).unwrap();

    // Wrong passphrase: one clear error, the file untouched, audited.
    config.security.passphrase_file = Some(wrong.clone());
    let error = start_err(config.clone()).await;
    assert!(error.to_string().contains("wrong passphrase"), "{error}");
    assert!(error.to_string().contains("node.key"), "{error}");
    assert_eq!(std::fs::read(&key).unwrap(), original);

    // No passphrase at all.
    let mut none = config.clone();
    none.security.passphrase_file = None;
    let error = start_err(none).await;
    assert!(error.to_string().contains("DAWN_PASSPHRASE"), "{error}");

    // A passphrase given by the embedding program (dawn-node's prompt).
    let node = NodeBuilder::new(config.clone())
        .passphrase(Passphrase::new("correct horse battery".into()).unwrap())
        .start()
        .await
        .unwrap();
    assert_eq!(node.peer_id(), peer);
    node.shutdown().await;
    drop(node);

    // World-readable key file: refused, named, unchanged.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    config.security.passphrase_file = Some(right.clone());
    let error = start_err(config.clone()).await;
    let message = error.to_string();
    assert!(
        message.contains("node.key") && message.contains("chmod 600"),
        "{message}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), original);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Truncated key file: refused, never replaced by a new identity.
    std::fs::write(&key, &original[..original.len() / 2]).unwrap();
    let error = start_err(config.clone()).await;
    assert!(error.to_string().contains("node.key"), "{error}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        &original[..original.len() / 2]
    );
    std::fs::write(&key, &original).unwrap();

    // The right passphrase works again, with the same identity.
    let node = NodeBuilder::new(config.clone()).start().await.unwrap();
    assert_eq!(node.peer_id(), peer);
    let log = audit_of(&node).await;
    node.shutdown().await;
    drop(node);
    let unlocked = log
        .iter()
        .filter(|e| e.record.event == AuditEvent::KeyUnlocked)
        .count();
    let failed = log
        .iter()
        .filter(|e| e.record.event == AuditEvent::KeyUnlockFailed)
        .count();
    assert!(unlocked >= 3, "{log:#?}");
    assert!(failed >= 4, "{log:#?}");
    assert!(log.iter().any(|e| {
        e.record.event == AuditEvent::KeyUnlockFailed
            && e.record
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("wrong passphrase")
    }));

    // require_passphrase refuses a plain key.
    let plain = dir.path().join("plain");
    let node = NodeBuilder::new(config_in(&plain)).start().await.unwrap();
    node.shutdown().await;
    drop(node);
    let mut strict = config_in(&plain);
    strict.security.require_passphrase = true;
    let error = start_err(strict).await;
    assert!(
        error.to_string().contains("security.require_passphrase"),
        "{error}"
    );
}

#[tokio::test]
async fn invalid_security_config_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir.path().join("d"));
    config.security.trusted_peers = vec!["not-a-peer".into()];
    config.security.policy.min_level.call_tools = TrustLevel::Untrusted;
    let error = start_err(config).await.to_string();
    assert!(error.contains("security.trusted_peers"), "{error}");
    assert!(error.contains("security.policy"), "{error}");
}

/// A raw transport dialed to `node`: it can send bytes no Dawn node would.
async fn raw_peer(node: &Node) -> (dawn_transport::Transport, dawn_core::PeerId) {
    use dawn_transport::{Transport, TransportConfig, identity::Keypair};
    let (raw, _calls) = Transport::start(
        Keypair::generate_ed25519(),
        TransportConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..TransportConfig::default()
        },
    )
    .await
    .unwrap();
    let peer = raw.dial(node.dial_addrs()[0].clone()).await.unwrap();
    (raw, peer)
}

const PING: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

#[tokio::test]
async fn a_peer_sending_malformed_requests_loses_reputation_and_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir, "b", |_| {}).await;
    let (raw, peer) = raw_peer(&node).await;
    let raw_id = raw.local_peer_id().to_string();
    raw.call(peer, "system", PING.into(), Duration::from_secs(30))
        .await
        .unwrap();
    // Default penalties: 10 points per malformed message; below -50 the
    // peer is disconnected, and refused while its score stays that low.
    for _ in 0..6 {
        let answer = raw
            .call(peer, "system", "{not json".into(), Duration::from_secs(30))
            .await
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["error"]["code"], -32700, "{answer}");
    }
    let log = eventually("b to disconnect the peer", || async {
        let log = audit_of(&node).await;
        has(&log, AuditEvent::PeerDisconnected, &raw_id, None).then_some(log)
    })
    .await;
    let record = log
        .iter()
        .find(|e| e.record.event == AuditEvent::PeerDisconnected)
        .unwrap();
    assert!(
        record
            .record
            .reason
            .as_deref()
            .unwrap()
            .contains("malformed_message")
    );
    eventually("the peer to be refused", || async {
        let refused = raw
            .call(peer, "system", PING.into(), Duration::from_secs(10))
            .await
            .is_err();
        let log = audit_of(&node).await;
        (refused && has(&log, AuditEvent::ConnectionRefused, &raw_id, None)).then_some(())
    })
    .await;
    // Reputation is not trust: the operator's view of the peer is unchanged.
    assert_eq!(node.trust(&raw.local_peer_id()).level, TrustLevel::Unknown);
    raw.shutdown().await;
    node.shutdown().await;
}

#[tokio::test]
async fn reputation_bans_happen_below_the_threshold_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir, "b", |c| {
        c.security.reputation.penalties.malformed_message = 50.0;
        c.security.reputation.ban_duration_secs = 1;
        c.security.reputation.half_life_secs = 1;
    })
    .await;
    let (raw, peer) = raw_peer(&node).await;
    let raw_id = raw.local_peer_id().to_string();
    for _ in 0..2 {
        let _ = raw
            .call(peer, "system", "[]".into(), Duration::from_secs(30))
            .await;
    }
    let log = eventually("b to ban the peer", || async {
        let log = audit_of(&node).await;
        has(&log, AuditEvent::PeerBanned, &raw_id, None).then_some(log)
    })
    .await;
    let banned = log
        .iter()
        .find(|e| e.record.event == AuditEvent::PeerBanned)
        .unwrap();
    assert!(banned.record.details.contains_key("until_ms"));
    // The ban ends on its own and the score decays: the peer is let back in.
    eventually("the ban to expire", || async {
        raw.call(peer, "system", PING.into(), Duration::from_secs(5))
            .await
            .ok()
    })
    .await;
    raw.shutdown().await;
    node.shutdown().await;
}

/// Sends `PING` from `raw` and returns the JSON-RPC error code of the
/// answer (`None` for a result), or `Err` when no answer came (refused or
/// closed connection).
async fn ping_code(
    raw: &dawn_transport::Transport,
    peer: dawn_core::PeerId,
) -> Result<Option<i64>, String> {
    let answer = raw
        .call(peer, "system", PING.into(), Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    Ok(answer["error"]["code"].as_i64())
}

/// 10 calls per hour per peer: the refill plays no part in these tests.
fn ten_calls_an_hour(c: &mut DawnConfig) {
    c.resilience.rate_limit.max_requests = 10;
    c.resilience.rate_limit.time_window = dawn_resilience::HumanDuration::secs(3600);
}

#[tokio::test]
async fn a_burst_past_the_rate_limit_costs_a_little_reputation_and_calls_within_it_none() {
    let dir = tempfile::tempdir().unwrap();
    // Default reputation settings: 5 points per rate-limit offence, at most
    // one offence per 10 s; disconnect below -50.
    let node = start_node(&dir, "b", ten_calls_an_hour).await;
    let (polite, polite_peer) = raw_peer(&node).await;
    let (bursty, bursty_peer) = raw_peer(&node).await;
    let bursty_id = bursty.local_peer_id().to_string();

    for _ in 0..8 {
        assert_eq!(ping_code(&polite, polite_peer).await, Ok(None));
    }
    let mut refused = 0;
    for _ in 0..40 {
        match ping_code(&bursty, bursty_peer).await.unwrap() {
            None => {}
            Some(-32005) => refused += 1,
            Some(code) => panic!("unexpected error {code}"),
        }
    }
    assert_eq!(refused, 30);

    // The burst cost the bursty peer a little, not its connection.
    let standing = node.reputation(&bursty.local_peer_id());
    assert!(standing.offences >= 1, "{standing:?}");
    assert_eq!(
        standing.last_offence.as_deref(),
        Some("rate_limit_exceeded")
    );
    assert!(
        standing.score < 0.0 && standing.score > -50.0,
        "{standing:?}"
    );
    assert_eq!(standing.banned_until_ms, None);
    assert_eq!(ping_code(&bursty, bursty_peer).await, Ok(Some(-32005)));
    let log = audit_of(&node).await;
    assert!(!has(&log, AuditEvent::PeerDisconnected, &bursty_id, None));
    assert!(!has(&log, AuditEvent::PeerBanned, &bursty_id, None));

    // The peer that stayed within its limit lost nothing and is served.
    let standing = node.reputation(&polite.local_peer_id());
    assert_eq!(
        (standing.score, standing.offences),
        (0.0, 0),
        "{standing:?}"
    );
    assert_eq!(ping_code(&polite, polite_peer).await, Ok(None));
    polite.shutdown().await;
    bursty.shutdown().await;
    node.shutdown().await;
}

#[tokio::test]
async fn sustained_rate_limit_abuse_gets_a_peer_banned() {
    let dir = tempfile::tempdir().unwrap();
    // One offence per second of abuse at most, 45 points each: the second
    // one takes the score below the ban threshold (-80).
    let node = start_node(&dir, "b", |c| {
        ten_calls_an_hour(c);
        c.security.reputation.rate_limit_interval_secs = 1;
        c.security.reputation.penalties.rate_limit_exceeded = 45.0;
    })
    .await;
    let (polite, polite_peer) = raw_peer(&node).await;
    let (flooder, flooder_peer) = raw_peer(&node).await;
    let flooder_id = flooder.local_peer_id().to_string();
    assert_eq!(ping_code(&polite, polite_peer).await, Ok(None));

    // Flood until the node bans the flooder. Calls are refused by the rate
    // limit until then, and fail once the connection is closed.
    let log = eventually("b to ban the flooder", || async {
        for _ in 0..20 {
            match ping_code(&flooder, flooder_peer).await {
                Ok(None | Some(-32005)) => {}
                Ok(Some(code)) => panic!("unexpected error {code}"),
                Err(_) => break,
            }
        }
        let log = audit_of(&node).await;
        has(&log, AuditEvent::PeerBanned, &flooder_id, None).then_some(log)
    })
    .await;
    let banned = log
        .iter()
        .find(|e| e.record.event == AuditEvent::PeerBanned)
        .unwrap();
    assert!(
        banned
            .record
            .reason
            .as_deref()
            .unwrap()
            .contains("rate_limit_exceeded"),
        "{banned:?}"
    );
    let standing = node.reputation(&flooder.local_peer_id());
    assert!(standing.score < -80.0, "{standing:?}");
    assert!(standing.offences >= 2, "{standing:?}");
    assert!(standing.banned_until_ms.is_some(), "{standing:?}");
    eventually("the banned flooder to be refused", || async {
        ping_code(&flooder, flooder_peer).await.err()
    })
    .await;

    // The peer within its limit is untouched and still served.
    let standing = node.reputation(&polite.local_peer_id());
    assert_eq!(
        (standing.score, standing.offences),
        (0.0, 0),
        "{standing:?}"
    );
    assert_eq!(ping_code(&polite, polite_peer).await, Ok(None));
    polite.shutdown().await;
    flooder.shutdown().await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_config_reload_applies_trust_settings_to_connected_peers_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let b = start_node(&dir, "b", |_| {}).await;
    dial(&a, &b).await;
    let a_id = a.peer_id().to_string();
    assert_eq!(b.trust(&a.peer_id()).level, TrustLevel::Unknown);
    let started = b.config().clone();

    // A raised default level applies to the connected peer without a record;
    // a non-reloadable key is reported and keeps its running value.
    let mut next = started.clone();
    next.security.trust_level_default = TrustLevel::Verified;
    next.node.shutdown_grace = dawn_core::config::HumanDuration::secs(3);
    let reload = b.reload_config(next.clone()).await.unwrap();
    assert_eq!(reload.applied, ["security.trust_level_default"]);
    assert_eq!(reload.restart_required, ["node.shutdown_grace"]);
    assert_eq!(
        reload.trust.default_level,
        Some((TrustLevel::Unknown, TrustLevel::Verified))
    );
    assert_eq!(b.trust(&a.peer_id()).level, TrustLevel::Verified);
    assert_eq!(b.config().node.shutdown_grace, started.node.shutdown_grace);

    // A peer both trusted and blocked: refused as a whole, nothing changes.
    let mut bad = next.clone();
    bad.security.reject_unknown = true;
    bad.security.trusted_peers = vec![a_id.clone()];
    bad.security.blocked_peers = vec![a_id.clone()];
    let error = b.reload_config(bad).await.unwrap_err().to_string();
    assert!(error.contains("security.blocked_peers"), "{error}");
    assert!(!b.trust_list().iter().any(|t| t.peer == a.peer_id()));
    assert_eq!(b.connected_peers().len(), 1);

    // reject_unknown turned on: the connected peer without a record is
    // checked again and disconnected.
    next.security.reject_unknown = true;
    let reload = b.reload_config(next.clone()).await.unwrap();
    assert_eq!(reload.applied, ["security.reject_unknown"]);
    eventually("b to drop a", || async {
        b.connected_peers().is_empty().then_some(())
    })
    .await;
    let log = audit_of(&b).await;
    let reloads: Vec<_> = log
        .iter()
        .filter(|e| e.record.event == AuditEvent::ConfigReloaded)
        .collect();
    assert_eq!(reloads.len(), 2, "{reloads:?}");
    assert_eq!(
        reloads[1].record.details["applied"],
        "security.reject_unknown"
    );
    assert!(
        log.iter()
            .any(|e| e.record.event == AuditEvent::TrustChanged
                && e.record.details["origin"] == "config (security.reject_unknown)")
    );

    // Listing the peer in security.trusted_peers lets it back in.
    next.security.trusted_peers = vec![a_id.clone()];
    b.reload_config(next).await.unwrap();
    assert_eq!(b.trust(&a.peer_id()).level, TrustLevel::Trusted);
    a.dial(b.dial_addrs()[0].clone()).await.unwrap();
    let echoed = eventually("a to call b again", || async {
        a.call_tool(
            &addr(Some(b.peer_id()), "system"),
            "echo",
            json!({"message": "back"}),
        )
        .await
        .ok()
    })
    .await;
    assert_eq!(text_of(&echoed), "back");
    let log = audit_of(&b).await;
    assert!(has(&log, AuditEvent::TrustChanged, &a_id, None));

    a.shutdown().await;
    b.shutdown().await;
}
