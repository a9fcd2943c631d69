//! A lying peer cannot change the registry. An attacker (a bare Dawn
//! transport, not a node) joins the registry gossip topic and answers
//! anti-entropy with forged, malformed, oversized and replayed
//! announcements, built by hand from the documented wire format
//! (`docs/registry.md`). The honest nodes' registries do not change, every
//! announcement is counted by reason and reported as an event, gossipsub
//! scores the attacker negative, and with the default reputation settings the
//! node bans it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use dawn_core::{
    Agent, CallContext, CallError, DawnConfig, Node, NodeBuilder, NodeEvent, PeerId,
    REGISTRY_TOPIC, RegistryRejectReason,
    config::HumanDuration,
    mcp::{CallToolResult, JsonObject},
};
use dawn_transport::{Transport, TransportConfig, TransportEvent, identity::Keypair};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const WAIT: Duration = Duration::from_secs(60);

struct Named(&'static str);

#[async_trait]
impl Agent for Named {
    fn id(&self) -> &str {
        self.0
    }
    fn description(&self) -> String {
        String::new()
    }
    fn tools(&self) -> Vec<dawn_core::mcp::Tool> {
        Vec::new()
    }
    async fn call_tool(
        &self,
        _ctx: &CallContext,
        _tool: &str,
        _args: JsonObject,
    ) -> Result<CallToolResult, CallError> {
        Ok(CallToolResult::success(vec![]))
    }
}

fn config(dir: &tempfile::TempDir, name: &str) -> DawnConfig {
    let mut config = DawnConfig::ephemeral(dir.path().join(name));
    config.api.enabled = false;
    config.discovery.mdns = false;
    config.discovery.kademlia = false;
    config.registry.announce_interval = HumanDuration(Duration::from_millis(500));
    config.registry.liveness_timeout = HumanDuration::secs(20);
    config
}

/// Seals a registry announcement as the wire format says:
/// `"DRG" 1 kind | key_len key | sig_len sig | body`, the signature over
/// `"dawn-registry/1" kind body`.
fn seal(key: &Keypair, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = b"dawn-registry/1".to_vec();
    message.push(kind);
    message.extend_from_slice(body);
    let signature = key.sign(&message).unwrap();
    let public = key.public().encode_protobuf();
    let mut out = b"DRG".to_vec();
    out.push(1);
    out.push(kind);
    out.extend_from_slice(&(public.len() as u16).to_be_bytes());
    out.extend_from_slice(&public);
    out.extend_from_slice(&(signature.len() as u16).to_be_bytes());
    out.extend_from_slice(&signature);
    out.extend_from_slice(body);
    out
}

fn record(key: &Keypair, origin: PeerId, version: u64, agents: &[&str]) -> Vec<u8> {
    let body = json!({
        "origin": origin.to_string(),
        "version": version,
        "addrs": [],
        "agents": agents.iter().map(|a| json!({"id": a})).collect::<Vec<_>>(),
    });
    seal(key, 1, &serde_json::to_vec(&body).unwrap())
}

/// The JSON body of an envelope (after the header).
fn body_of(envelope: &[u8]) -> Value {
    let key_len = u16::from_be_bytes([envelope[5], envelope[6]]) as usize;
    let at = 7 + key_len;
    let sig_len = u16::from_be_bytes([envelope[at], envelope[at + 1]]) as usize;
    serde_json::from_slice(&envelope[at + 2 + sig_len..]).unwrap()
}

/// The attacker: a bare transport on the registry topic that answers
/// `dawn/registry_sync` with `answer`.
struct Attacker {
    key: Keypair,
    transport: Transport,
    answer: Arc<Mutex<Value>>,
}

impl Attacker {
    async fn start() -> Attacker {
        let key = Keypair::generate_ed25519();
        let (transport, mut calls) = Transport::start(
            key.clone(),
            TransportConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                enable_mdns: false,
                enable_kademlia: false,
                ..TransportConfig::default()
            },
        )
        .await
        .unwrap();
        transport.gossip_subscribe(REGISTRY_TOPIC).await.unwrap();
        let answer = Arc::new(Mutex::new(json!({ "items": [], "more": false })));
        let served = answer.clone();
        tokio::spawn(async move {
            while let Some(call) = calls.recv().await {
                let id = serde_json::from_slice::<Value>(call.body())
                    .ok()
                    .and_then(|r| r.get("id").cloned())
                    .unwrap_or(Value::Null);
                let result = served.lock().unwrap().clone();
                let reply = json!({ "jsonrpc": "2.0", "id": id, "result": result });
                call.respond(Bytes::from(serde_json::to_vec(&reply).unwrap()))
                    .await;
            }
        });
        // Validate whatever the honest nodes gossip, like any peer would.
        let mut events = transport.subscribe();
        let validator = transport.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if let TransportEvent::GossipMessage {
                    id,
                    propagation_source,
                    ..
                } = event
                {
                    let _ = validator
                        .report_validation(
                            id,
                            propagation_source,
                            dawn_transport::GossipValidation::Accept,
                        )
                        .await;
                }
            }
        });
        Attacker {
            key,
            transport,
            answer,
        }
    }

    fn id(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    /// Asks `node` for its registry, as any peer may: origin -> envelope.
    async fn fetch_registry(&self, node: &Node) -> BTreeMap<PeerId, Vec<u8>> {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "dawn/registry_sync", "params": {"have": {}}});
        let reply = self
            .transport
            .call(
                node.peer_id(),
                "system",
                Bytes::from(serde_json::to_vec(&request).unwrap()),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        let mut out = BTreeMap::new();
        for item in reply["result"]["items"].as_array().unwrap() {
            if let Some(record) = item["record"].as_str() {
                let envelope = B64.decode(record).unwrap();
                let origin: PeerId = body_of(&envelope)["origin"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                out.insert(origin, envelope);
            }
        }
        out
    }

    /// Publishes on the registry topic, retrying until a peer takes it.
    async fn publish(&self, data: Vec<u8>) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self
                .transport
                .publish(REGISTRY_TOPIC, Bytes::from(data.clone()))
                .await
            {
                Ok(()) => return,
                Err(e) if e.is_soft() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("publish failed: {e}"),
            }
        }
    }
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The agent ids `node` knows for `origin`, sorted.
fn agents_of(node: &Node, origin: &PeerId) -> Vec<String> {
    let mut ids: Vec<String> = node
        .registry()
        .into_iter()
        .find(|e| e.origin == *origin)
        .map(|e| e.agents.into_iter().map(|a| a.id).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

fn rejected(node: &Node, reason: RegistryRejectReason) -> u64 {
    node.registry_stats()
        .rejected
        .get(reason.as_str())
        .copied()
        .unwrap_or(0)
}

/// Everything a node's registry says, for before/after comparisons.
fn snapshot(node: &Node) -> Vec<(PeerId, u64, Vec<String>)> {
    node.registry()
        .into_iter()
        .map(|e| {
            (
                e.origin,
                e.version,
                e.agents.into_iter().map(|a| a.id).collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_malformed_oversized_and_replayed_announcements_change_nothing_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    // No reputation penalties on A, so the attacker stays connected for
    // every attack (the next test shows the ban).
    let mut a_config = config(&dir, "a");
    let zero = &mut a_config.security.reputation.penalties;
    zero.forged_record = 0.0;
    zero.malformed_message = 0.0;
    zero.oversized_message = 0.0;
    zero.protocol_violation = 0.0;
    let a = NodeBuilder::new(a_config)
        .agent(Named("agent-a"))
        .start()
        .await
        .unwrap();
    let b = NodeBuilder::new(config(&dir, "b"))
        .agent(Named("agent-b"))
        .start()
        .await
        .unwrap();
    a.dial(b.dial_addrs()[0].clone()).await.unwrap();
    let b_id = b.peer_id();
    wait_until("A to know B", || {
        agents_of(&a, &b_id).contains(&"agent-b".into())
    })
    .await;

    let attacker = Attacker::start().await;
    let x_id = attacker.id();
    let a_addr = a.dial_addrs()[0].clone();
    attacker.transport.dial(a_addr.clone()).await.unwrap();

    // B adds an agent, the attacker copies B's signed record with it, then
    // B removes the agent again.
    b.add_agent(Named("temp")).unwrap();
    wait_until("A to see temp", || {
        agents_of(&a, &b_id).contains(&"temp".into())
    })
    .await;
    let with_temp = attacker.fetch_registry(&a).await.remove(&b_id).unwrap();
    assert!(body_of(&with_temp)["agents"].to_string().contains("temp"));
    b.remove_agent("temp");
    wait_until("A to see temp removed", || {
        let agents = agents_of(&a, &b_id);
        agents.contains(&"agent-b".into()) && !agents.contains(&"temp".into())
    })
    .await;
    let current = attacker.fetch_registry(&a).await.remove(&b_id).unwrap();
    let b_version = body_of(&current)["version"].as_u64().unwrap();

    let mut events = a.subscribe();
    let before_a = snapshot(&a);
    let before_b = snapshot(&b);

    // --- Through anti-entropy: the attacker's answer when A syncs with it.
    let mut tampered = current.clone();
    let last = tampered.len() - 3;
    tampered[last] ^= 0x01;
    let forged_heartbeat = seal(
        &attacker.key,
        2,
        &serde_json::to_vec(&json!({"origin": b_id.to_string(), "seq": u64::MAX - 1, "version": u64::MAX - 2, "leaving": true})).unwrap(),
    );
    *attacker.answer.lock().unwrap() = json!({
        "more": false,
        "items": [
            // B's genuine but old record (with `temp`): older than what A
            // says it has, so a replay.
            {"record": B64.encode(&with_temp), "age_ms": 0},
            // Signed by the attacker, claiming to be B, with a huge version.
            {"record": B64.encode(record(&attacker.key, b_id, u64::MAX - 1, &["evil"])), "age_ms": 0},
            // B's current record with one byte changed: bad signature.
            {"record": B64.encode(&tampered), "age_ms": 0},
            // Not base64; base64 of garbage.
            {"record": "!!! not base64 !!!"},
            {"record": B64.encode(b"garbage garbage garbage")},
            // A heartbeat signed by the attacker saying B is leaving.
            {"heartbeat": B64.encode(&forged_heartbeat), "age_ms": 0},
        ],
    });
    // A syncs with every peer it (re)connects to.
    attacker.transport.disconnect(a.peer_id()).await.unwrap();
    wait_until("A to notice the attacker left", || {
        !a.connected_peers().iter().any(|p| p.peer_id == x_id)
    })
    .await;
    attacker.transport.dial(a_addr.clone()).await.unwrap();
    wait_until("A to count the anti-entropy attacks", || {
        rejected(&a, RegistryRejectReason::Replayed) >= 1
            && rejected(&a, RegistryRejectReason::Forged) >= 3
            && rejected(&a, RegistryRejectReason::Malformed) >= 2
    })
    .await;

    // --- Through gossip. First the attacker's own record, then an older
    // copy of it (a replay, dropped without penalty).
    attacker
        .publish(record(&attacker.key, x_id, 10, &["x-agent"]))
        .await;
    wait_until("A to accept the attacker's own valid record", || {
        agents_of(&a, &x_id) == ["x-agent"]
    })
    .await;
    attacker
        .publish(record(&attacker.key, x_id, 5, &["x-old"]))
        .await;
    wait_until("A to count the gossip replay", || {
        rejected(&a, RegistryRejectReason::Replayed) >= 2
    })
    .await;
    // Garbage, a record claiming to be B, an oversized record.
    let forged_before = rejected(&a, RegistryRejectReason::Forged);
    let malformed_before = rejected(&a, RegistryRejectReason::Malformed);
    attacker.publish(b"DRG\x01\x01 garbage".to_vec()).await;
    attacker
        .publish(record(&attacker.key, b_id, b_version + 1_000, &["evil"]))
        .await;
    let big: Vec<String> = (0..3000)
        .map(|i| format!("agent-{i:04}-{}", "x".repeat(80)))
        .collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    attacker
        .publish(record(&attacker.key, x_id, 11, &big))
        .await;
    wait_until("A to count the gossip attacks", || {
        rejected(&a, RegistryRejectReason::Malformed) > malformed_before
            && rejected(&a, RegistryRejectReason::Forged) > forged_before
            && rejected(&a, RegistryRejectReason::TooLarge) >= 1
    })
    .await;

    // Nothing changed, except the attacker's own valid record.
    let after_a: Vec<_> = snapshot(&a)
        .into_iter()
        .filter(|(o, ..)| *o != x_id)
        .collect();
    assert_eq!(after_a, before_a);
    assert_eq!(agents_of(&a, &x_id), ["x-agent"]);
    assert_eq!(agents_of(&a, &b_id), ["agent-b", "system"]);
    assert!(
        a.registry()
            .iter()
            .find(|e| e.origin == b_id)
            .unwrap()
            .available,
        "the forged `leaving` heartbeat must not mark B unavailable"
    );
    for entry in a.registry() {
        for agent in &entry.agents {
            assert!(agent.id != "evil" && agent.id != "temp", "{entry:?}");
        }
    }
    // A forwarded none of it: B's registry is as before (plus the
    // attacker's valid record) and B rejected nothing.
    wait_until("B to see the attacker's valid record", || {
        agents_of(&b, &x_id) == ["x-agent"]
    })
    .await;
    let after_b: Vec<_> = snapshot(&b)
        .into_iter()
        .filter(|(o, ..)| *o != x_id)
        .collect();
    assert_eq!(after_b, before_b);
    assert!(
        b.registry_stats().rejected.values().all(|n| *n == 0),
        "{:?}",
        b.registry_stats()
    );

    // Every rejection was reported, naming the attacker.
    let mut reported: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        match events.try_recv() {
            Ok(NodeEvent::RegistryRejected { from, reason, .. }) => {
                assert_eq!(from, x_id);
                *reported.entry(reason.as_str().to_owned()).or_default() += 1;
            }
            Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    for reason in ["replayed", "forged", "malformed", "too_large"] {
        assert!(
            reported.get(reason).copied().unwrap_or(0) >= 1,
            "{reported:?}"
        );
    }

    // Gossipsub penalized the attacker for what it rejected.
    let score = a.gossip_score(&x_id).await.expect("scored");
    assert!(score < 0.0, "the attacker's gossip score is {score}");
    let honest = a.gossip_score(&b_id).await.expect("scored");
    assert!(honest >= 0.0, "the honest peer's gossip score is {honest}");

    attacker.transport.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_default_reputation_settings_a_forging_peer_is_banned() {
    let dir = tempfile::tempdir().unwrap();
    let a = NodeBuilder::new(config(&dir, "a"))
        .agent(Named("agent-a"))
        .start()
        .await
        .unwrap();
    let b = NodeBuilder::new(config(&dir, "b"))
        .agent(Named("agent-b"))
        .start()
        .await
        .unwrap();
    a.dial(b.dial_addrs()[0].clone()).await.unwrap();
    let b_id = b.peer_id();
    wait_until("A to know B", || {
        agents_of(&a, &b_id).contains(&"agent-b".into())
    })
    .await;
    let before = snapshot(&a);

    let attacker = Attacker::start().await;
    let x_id = attacker.id();
    let a_addr = a.dial_addrs()[0].clone();
    attacker.transport.dial(a_addr.clone()).await.unwrap();
    let mut x_events = attacker.transport.subscribe();
    for version in 1..=2u64 {
        attacker
            .publish(record(&attacker.key, b_id, 1 << 40 | version, &["evil"]))
            .await;
    }
    // A drops the connection and refuses the attacker from then on.
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(TransportEvent::PeerDisconnected { peer, .. }) = x_events.recv().await
                && peer == a.peer_id()
            {
                return;
            }
        }
    })
    .await
    .expect("A did not disconnect the forging peer");
    assert!(rejected(&a, RegistryRejectReason::Forged) >= 2);
    let redial = attacker.transport.dial(a_addr).await;
    let still_out = match redial {
        Err(_) => true,
        // The handshake may complete before A closes the connection.
        Ok(_) => {
            wait_until("A to close the banned peer's new connection", || {
                !a.connected_peers().iter().any(|p| p.peer_id == x_id)
            })
            .await;
            true
        }
    };
    assert!(still_out);
    assert_eq!(snapshot(&a), before);
    attacker.transport.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}
