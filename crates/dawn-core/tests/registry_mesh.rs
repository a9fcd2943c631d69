//! The mesh registry in-process: 30 real nodes on 127.0.0.1 in line, ring and
//! random topologies converge to the same registry; an agent added and
//! removed on one node is seen everywhere and never comes back; a crashed
//! node's agents become unavailable everywhere and return when it restarts;
//! a restarted node serves its cached view, unconfirmed until a peer
//! confirms it.
//!
//! Kademlia and mDNS are off so the connection graph is exactly the
//! topology under test: announcements travel over several hops of gossip,
//! and anti-entropy on each connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use dawn_core::{
    Agent, CallContext, CallError, DawnConfig, Node, NodeBuilder, PeerId,
    config::HumanDuration,
    mcp::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations},
};
use serde_json::json;

/// Tests here start 30 nodes each; one at a time keeps a 2-core machine
/// usable.
static ONE_MESH_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long any convergence may take on a loaded machine.
const CONVERGE: Duration = Duration::from_secs(90);
const NODES: usize = 30;

struct Named(String);

#[async_trait]
impl Agent for Named {
    fn id(&self) -> &str {
        &self.0
    }
    fn description(&self) -> String {
        format!("agent {}", self.0)
    }
    fn tools(&self) -> Vec<Tool> {
        vec![
            Tool::new(
                "hello",
                "says hello",
                json!({"type": "object"}).as_object().cloned().unwrap(),
            )
            .with_annotations(ToolAnnotations::new().read_only(true)),
        ]
    }
    async fn call_tool(
        &self,
        _ctx: &CallContext,
        _tool: &str,
        _args: JsonObject,
    ) -> Result<CallToolResult, CallError> {
        Ok(CallToolResult::success(vec![ContentBlock::text("hello")]))
    }
}

fn config(dir: &tempfile::TempDir, name: &str, liveness: Duration) -> DawnConfig {
    let mut config = DawnConfig::ephemeral(dir.path().join(name));
    config.api.enabled = false;
    config.discovery.mdns = false;
    config.discovery.kademlia = false;
    config.registry.announce_interval = HumanDuration(Duration::from_millis(500));
    config.registry.liveness_timeout = HumanDuration(liveness);
    config
}

async fn start(dir: &tempfile::TempDir, i: usize, liveness: Duration) -> Node {
    let name = format!("n{i:02}");
    NodeBuilder::new(config(dir, &name, liveness))
        .agent(Named(format!("agent-{i:02}")))
        .start()
        .await
        .unwrap()
}

async fn start_all(dir: &tempfile::TempDir, liveness: Duration) -> Vec<Node> {
    let mut nodes = Vec::with_capacity(NODES);
    for i in 0..NODES {
        nodes.push(start(dir, i, liveness).await);
    }
    nodes
}

/// A small deterministic generator, so a failing random topology can be
/// reproduced.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }
}

fn line() -> Vec<(usize, usize)> {
    (0..NODES - 1).map(|i| (i, i + 1)).collect()
}

fn ring() -> Vec<(usize, usize)> {
    let mut edges = line();
    edges.push((NODES - 1, 0));
    edges
}

/// A random tree (so the graph is connected) plus a few random extra edges.
fn random(seed: u64) -> Vec<(usize, usize)> {
    let mut rng = Lcg(seed);
    let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
    for i in 1..NODES {
        edges.insert((i, rng.below(i)));
    }
    while edges.len() < NODES - 1 + 10 {
        let (a, b) = (rng.below(NODES), rng.below(NODES));
        if a != b && !edges.contains(&(b, a)) {
            edges.insert((a, b));
        }
    }
    edges.into_iter().collect()
}

async fn connect(nodes: &[Node], edges: &[(usize, usize)]) {
    let mut dials = Vec::new();
    for &(a, b) in edges {
        let (from, to) = (nodes[a].clone(), nodes[b].clone());
        dials.push(tokio::spawn(async move {
            from.dial(to.dial_addrs()[0].clone()).await.unwrap();
        }));
    }
    for d in dials {
        d.await.unwrap();
    }
}

/// What a node's registry says: origin -> (version, available).
fn view(node: &Node) -> BTreeMap<PeerId, (u64, bool)> {
    node.registry()
        .into_iter()
        .map(|e| (e.origin, (e.version, e.available)))
        .collect()
}

/// The registry every node should have: each node's own current version,
/// all available.
fn expected(nodes: &[Node]) -> BTreeMap<PeerId, (u64, bool)> {
    nodes
        .iter()
        .map(|n| {
            let own = n.registry().into_iter().find(|e| e.local).unwrap();
            (own.origin, (own.version, true))
        })
        .collect()
}

/// Polls until `check` holds for every node, or panics naming the nodes it
/// does not hold for.
async fn wait_all(what: &str, nodes: &[Node], check: impl Fn(&Node) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let failing: Vec<usize> = (0..nodes.len()).filter(|i| !check(&nodes[*i])).collect();
        if failing.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < CONVERGE,
            "{what}: still not true on nodes {failing:?} after {CONVERGE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_converged(nodes: &[Node]) -> Duration {
    let started = Instant::now();
    loop {
        let want = expected(nodes);
        let differing: Vec<usize> = (0..nodes.len())
            .filter(|i| view(&nodes[*i]) != want)
            .collect();
        if differing.is_empty() {
            return started.elapsed();
        }
        if started.elapsed() > CONVERGE {
            let sample = differing[0];
            panic!(
                "registries did not converge within {CONVERGE:?}: nodes {differing:?} differ; node {sample} has {} entries, {} available (want {})",
                view(&nodes[sample]).len(),
                view(&nodes[sample]).values().filter(|(_, a)| *a).count(),
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn agents_of(node: &Node, origin: &PeerId) -> Vec<String> {
    node.registry()
        .into_iter()
        .find(|e| e.origin == *origin)
        .map(|e| e.agents.into_iter().map(|a| a.id).collect())
        .unwrap_or_default()
}

async fn shutdown_all(nodes: Vec<Node>) {
    let stops: Vec<_> = nodes
        .into_iter()
        .map(|n| tokio::spawn(async move { n.shutdown().await }))
        .collect();
    for s in stops {
        s.await.unwrap();
    }
}

async fn converge_in(edges: Vec<(usize, usize)>, topology: &str) {
    let _one = ONE_MESH_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_all(&dir, Duration::from_secs(30)).await;
    let started = Instant::now();
    connect(&nodes, &edges).await;
    let took = wait_converged(&nodes).await;
    eprintln!(
        "{topology}: {NODES} nodes converged {:?} after the last dial ({:?} after the first)",
        took,
        started.elapsed()
    );
    // Everyone sees every other node's agent with its tool.
    for node in &nodes {
        let remote = node.remote_agents();
        assert_eq!(remote.len(), NODES - 1);
        for agents in remote.values() {
            assert!(
                agents
                    .iter()
                    .any(|a| a.id.starts_with("agent-") && a.tools[0].name == "hello")
            );
        }
    }
    // The first node calls the last one's agent, which is not its neighbour:
    // the registry gave it the address to dial.
    let last = &nodes[NODES - 1];
    let address = format!("{}/agent-{:02}", last.peer_id(), NODES - 1)
        .parse()
        .unwrap();
    let result = nodes[0]
        .call_tool(&address, "hello", json!({}))
        .await
        .unwrap();
    assert_eq!(result.content.len(), 1);
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_in_a_line_converge() {
    converge_in(line(), "line").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_in_a_ring_converge() {
    converge_in(ring(), "ring").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_added_and_removed_on_one_node_is_seen_everywhere_and_never_returns() {
    let _one = ONE_MESH_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_all(&dir, Duration::from_secs(30)).await;
    connect(&nodes, &random(7)).await;
    let took = wait_converged(&nodes).await;
    eprintln!("random: {NODES} nodes converged {took:?} after the last dial");

    let origin = nodes[0].peer_id();
    nodes[0].add_agent(Named("extra".into())).unwrap();
    let took = wait_all("the added agent is seen", &nodes, |n| {
        agents_of(n, &origin).contains(&"extra".to_string())
    })
    .await;
    eprintln!("added agent seen everywhere after {took:?}");

    assert!(nodes[0].remove_agent("extra"));
    let took = wait_all("the removed agent is gone", &nodes, |n| {
        let agents = agents_of(n, &origin);
        !agents.is_empty() && !agents.contains(&"extra".to_string())
    })
    .await;
    eprintln!("removed agent gone everywhere after {took:?}");

    // Tombstone: through several heartbeats and a fresh round of
    // anti-entropy (a new connection), the removed agent stays removed.
    nodes[NODES - 1]
        .dial(nodes[1].dial_addrs()[0].clone())
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for (i, node) in nodes.iter().enumerate() {
            assert!(
                !agents_of(node, &origin).contains(&"extra".to_string()),
                "the removed agent came back on node {i}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_converged(&nodes).await;
    shutdown_all(nodes).await;
}

/// A node in a runtime of its own, so the test can crash it: dropping the
/// runtime kills every task and socket at once, without a goodbye.
struct Crashable {
    runtime: Option<tokio::runtime::Runtime>,
    node: Option<Node>,
}

impl Crashable {
    fn start(config: DawnConfig, agent: Named) -> Crashable {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let node = runtime
                .block_on(NodeBuilder::new(config).agent(agent).start())
                .unwrap();
            Crashable {
                runtime: Some(runtime),
                node: Some(node),
            }
        })
        .join()
        .unwrap()
    }

    fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    fn crash(&mut self) {
        self.node = None;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_becomes_unavailable_everywhere_and_returns_after_restart() {
    let _one = ONE_MESH_AT_A_TIME.lock().await;
    // A short liveness bound (the default is 25 s).
    let liveness = Duration::from_secs(4);
    let dir = tempfile::tempdir().unwrap();
    let victim = 17;
    let mut crashable = Crashable::start(
        config(&dir, "victim", liveness),
        Named(format!("agent-{victim:02}")),
    );
    let mut nodes = Vec::new();
    for i in 0..NODES {
        nodes.push(if i == victim {
            crashable.node().clone()
        } else {
            start(&dir, i, liveness).await
        });
    }
    connect(&nodes, &random(11)).await;
    wait_converged(&nodes).await;
    let victim_id = nodes[victim].peer_id();
    let before = view(&nodes[0])[&victim_id].0;
    let others: Vec<Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n.clone())
        .collect();
    drop(nodes);

    crashable.crash();
    let took = wait_all("the crashed node is unavailable", &others, |n| {
        view(n)
            .get(&victim_id)
            .is_some_and(|(_, available)| !available)
            && !n.remote_agents().contains_key(&victim_id)
    })
    .await;
    eprintln!(
        "crashed node unavailable everywhere {took:?} after the crash (liveness_timeout {liveness:?})"
    );
    // Still listed (until registry.expiry), with its agents, as unavailable.
    assert!(agents_of(&others[0], &victim_id).contains(&format!("agent-{victim:02}")));

    // Restart on the same data directory, without any bootstrap peer: it
    // rejoins from its address book, with a higher version.
    let restarted = NodeBuilder::new(config(&dir, "victim", liveness))
        .agent(Named(format!("agent-{victim:02}")))
        .start()
        .await
        .unwrap();
    assert_eq!(restarted.peer_id(), victim_id);
    let took = wait_all("the restarted node is available again", &others, |n| {
        view(n)
            .get(&victim_id)
            .is_some_and(|(version, available)| *available && *version > before)
            && n.remote_agents().contains_key(&victim_id)
    })
    .await;
    eprintln!("restarted node available everywhere {took:?} after its restart");
    let mut all = others;
    all.push(restarted);
    wait_converged(&all).await;
    shutdown_all(all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_serves_its_cached_view_unconfirmed_until_a_peer_confirms_it() {
    let _one = ONE_MESH_AT_A_TIME.lock().await;
    let liveness = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let a = start(&dir, 0, liveness).await;
    let b = start(&dir, 1, liveness).await;
    let c = start(&dir, 2, liveness).await;
    let trio = [a.clone(), b.clone(), c.clone()];
    connect(&trio, &[(0, 1), (1, 2), (2, 0)]).await;
    wait_converged(&trio).await;
    let (a_id, b_id) = (a.peer_id(), b.peer_id());

    c.shutdown().await;
    b.shutdown().await;
    // The database stays open while any handle lives.
    drop((trio, c, b));

    // C restarts while B is gone: its cached view is served at once, and B
    // stays unconfirmed (nobody can confirm it).
    let c = start(&dir, 2, liveness).await;
    let b_entry = c
        .registry()
        .into_iter()
        .find(|e| e.origin == b_id)
        .expect("B is served from the cache");
    assert!(!b_entry.confirmed);
    assert_eq!(b_entry.agents[0].id, "agent-01");
    assert!(c.registry().iter().any(|e| e.origin == a_id));

    // C rejoins A from its address book (no bootstrap peer): A confirms
    // itself, B's entry turns unavailable after the liveness timeout.
    wait_all("A is confirmed on C", std::slice::from_ref(&c), |n| {
        n.registry()
            .iter()
            .any(|e| e.origin == a_id && e.confirmed && e.available)
    })
    .await;
    wait_all("B is unavailable on C", std::slice::from_ref(&c), |n| {
        n.registry()
            .iter()
            .any(|e| e.origin == b_id && !e.available && !e.confirmed)
    })
    .await;
    shutdown_all(vec![a, c]).await;
}
