//! Benchmark (not a test): how long the mesh registry takes to converge,
//! and how many bytes it costs, for 10, 30 and 100 nodes on this machine;
//! and how much memory an idle node uses.
//!
//! ```text
//! cargo bench -p dawn-core --bench registry_convergence            # 10, 30, 100
//! cargo bench -p dawn-core --bench registry_convergence -- 30 100  # chosen sizes
//! cargo bench -p dawn-core --bench registry_convergence -- 0       # idle processes only
//! ```
//!
//! Method, per size N:
//!
//! - N real nodes in one process (one tokio runtime), each on its own
//!   127.0.0.1 TCP port with its own data directory, the default registry
//!   settings (heartbeat 10 s, liveness timeout 25 s), Kademlia and mDNS off
//!   (so the graph is the one described here), one agent each with one tool.
//! - Node i > 0 has up to two bootstrap peers, picked at random (fixed
//!   seed) among the nodes started before it: a random connected graph
//!   with about 2N edges. Nodes are started one after the other.
//! - Convergence: every node's registry lists all N nodes, each available,
//!   at the version that node itself announces. Time is measured from the
//!   return of the last `NodeBuilder::start` (the registries of nodes not
//!   yet converged are polled every 50 ms).
//! - Bytes: the sum over all nodes of the bytes they sent on all
//!   connections (libp2p's bandwidth counters: TCP payload after Noise and
//!   Yamux framing, so everything: identify, ping, gossip, RPC) from the
//!   first start to convergence; then per node per second over 10 s of
//!   idling after convergence (heartbeats, gossip control, ping, identify).
//! - Memory: resident set size of the process (from /proc/self/status)
//!   after the idle period, minus before the first node, divided by N.
//! - Idle process: if `target/release/dawn-node` exists, two real
//!   processes, the second bootstrapped from the first, idle for 15 s; their
//!   VmRSS. After `cargo xtask dist` that binary has the function layout
//!   (xtask/src/layout.rs) and `target/layout/dawn-node.plain` is the same
//!   build linked without it: then both are measured, alternately, two
//!   rounds each, and the ratio is printed. (`cargo build --release -p
//!   dawn-node` alone gives the plain link.)
//! - `-- 0` as the only size measures only the idle processes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use dawn_core::{
    Agent, CallContext, CallError, DawnConfig, Node, NodeBuilder, PeerId,
    mcp::{CallToolResult, ContentBlock, JsonObject, Tool},
};
use serde_json::json;

struct Named(String);

#[async_trait]
impl Agent for Named {
    fn id(&self) -> &str {
        &self.0
    }
    fn description(&self) -> String {
        format!("benchmark agent {}", self.0)
    }
    fn tools(&self) -> Vec<Tool> {
        vec![Tool::new(
            "work",
            "does some work",
            json!({"type": "object", "properties": {"n": {"type": "integer"}}})
                .as_object()
                .cloned()
                .unwrap(),
        )]
    }
    async fn call_tool(
        &self,
        _ctx: &CallContext,
        _tool: &str,
        _args: JsonObject,
    ) -> Result<CallToolResult, CallError> {
        Ok(CallToolResult::success(vec![ContentBlock::text("done")]))
    }
}

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

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

/// `BENCH_DEBUG=S`: print, S seconds (default 3) after the last start,
/// which records each node still lacks.
fn debug_after() -> Option<Duration> {
    let value = std::env::var("BENCH_DEBUG").ok()?;
    Some(Duration::from_secs(value.parse().unwrap_or(3)))
}

fn node_converged(node: &Node, want: &BTreeMap<PeerId, u64>) -> bool {
    let entries = node.registry();
    entries.len() == want.len()
        && entries
            .iter()
            .all(|e| e.available && want.get(&e.origin) == Some(&e.version))
}

fn converged(nodes: &[Node], want: &BTreeMap<PeerId, u64>) -> bool {
    nodes.iter().all(|n| node_converged(n, want))
}

struct Measured {
    nodes: usize,
    converge: Duration,
    bytes_to_converge: u64,
    idle_bytes_per_node_per_sec: f64,
    rss_per_node_kib: u64,
}

async fn run(n: usize) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let rss_before = rss_kib("self");
    let mut rng = Lcg(42);
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    for i in 0..n {
        let mut config = DawnConfig::ephemeral(dir.path().join(format!("n{i}")));
        config.api.enabled = false;
        config.discovery.mdns = false;
        config.discovery.kademlia = false;
        if i > 0 {
            let mut peers: Vec<usize> = (0..2.min(i)).map(|_| rng.below(i)).collect();
            peers.dedup();
            config.node.bootstrap = peers
                .into_iter()
                .map(|p| nodes[p].dial_addrs()[0].clone())
                .collect();
        }
        nodes.push(
            NodeBuilder::new(config)
                .agent(Named(format!("agent-{i}")))
                .start()
                .await
                .unwrap(),
        );
    }
    let last_start = Instant::now();
    let want: BTreeMap<PeerId, u64> = nodes
        .iter()
        .map(|node| {
            let own = node.registry().into_iter().find(|e| e.local).unwrap();
            (own.origin, own.version)
        })
        .collect();
    let mut reported = false;
    // Polling every node's full registry costs CPU the nodes need, so only
    // nodes not yet converged are polled; the end is confirmed on all.
    let mut pending: Vec<usize> = (0..n).collect();
    loop {
        pending.retain(|&i| !node_converged(&nodes[i], &want));
        if pending.is_empty() && converged(&nodes, &want) {
            break;
        }
        if !reported
            && let Some(after) = debug_after()
            && last_start.elapsed() > after
        {
            reported = true;
            for (i, node) in nodes.iter().enumerate() {
                let entries = node.registry();
                let missing: Vec<String> = want
                    .iter()
                    .filter(|(o, v)| {
                        !entries
                            .iter()
                            .any(|e| e.origin == **o && e.version == **v && e.available)
                    })
                    .map(|(o, v)| {
                        let j = nodes.iter().position(|n| n.peer_id() == *o).unwrap();
                        let have = entries.iter().find(|e| e.origin == *o);
                        format!(
                            "n{j}={o} (want v{v:x}, have {:?})",
                            have.map(|e| (format!("{:x}", e.version), e.available, e.confirmed))
                        )
                    })
                    .collect();
                if !missing.is_empty() {
                    eprintln!(
                        "node {i} ({} peers): {}",
                        node.connected_peers().len(),
                        missing.join(", ")
                    );
                }
            }
        }
        assert!(
            last_start.elapsed() < Duration::from_secs(300),
            "{n} nodes did not converge within 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let converge = last_start.elapsed();
    let sent = |nodes: &[Node]| nodes.iter().map(|n| n.network_bytes().1).sum::<u64>();
    let bytes_to_converge = sent(&nodes);
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let idle_bytes = sent(&nodes) - bytes_to_converge;
    let rss_after = rss_kib("self");
    let stops: Vec<_> = nodes
        .into_iter()
        .map(|node| tokio::spawn(async move { node.shutdown().await }))
        .collect();
    for stop in stops {
        stop.await.unwrap();
    }
    Measured {
        nodes: n,
        converge,
        bytes_to_converge,
        idle_bytes_per_node_per_sec: idle_bytes as f64 / n as f64 / idle.as_secs_f64(),
        rss_per_node_kib: rss_after.saturating_sub(rss_before) / n as u64,
    }
}

/// Two real `dawn-node` processes of `node_bin`, idle: their resident
/// memory.
fn idle_processes(runtime: &tokio::runtime::Runtime, node_bin: &Path) -> Option<(u64, u64)> {
    let dir = tempfile::tempdir().ok()?;
    let spawn = |name: &str, peer: Option<String>| {
        let mut command = std::process::Command::new(node_bin);
        command
            .arg("--data-root")
            .arg(dir.path().join(name))
            .args([
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--api-listen",
                "127.0.0.1:0",
            ])
            .env("DAWN_DISCOVERY__MDNS", "false")
            .env("DAWN_LOGGING__LEVEL", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(peer) = peer {
            command.args(["--peer", &peer]);
        }
        command.spawn()
    };
    let mut first = spawn("a", None).ok()?;
    let addr_file = dir.path().join("a").join("api.addr");
    let started = Instant::now();
    while !addr_file.exists() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first node's p2p address, from its API.
    let api = std::fs::read_to_string(&addr_file).ok()?;
    let token = std::fs::read_to_string(dir.path().join("a").join("api.token")).ok()?;
    let status: serde_json::Value = runtime
        .block_on(async {
            reqwest::Client::new()
                .get(format!("http://{}/api/v1/status", api.trim()))
                .bearer_auth(token.trim())
                .send()
                .await?
                .json()
                .await
        })
        .ok()?;
    let peer = status["listen_addrs"]
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| a.contains("/tcp/"))?
        .to_owned();
    let mut second = spawn("b", Some(peer)).ok()?;
    std::thread::sleep(Duration::from_secs(15));
    let rss = (
        rss_kib(&first.id().to_string()),
        rss_kib(&second.id().to_string()),
    );
    let _ = first.kill();
    let _ = second.kill();
    let _ = first.wait();
    let _ = second.wait();
    Some(rss)
}

/// The idle-process measurement: the release binary, and the plain link of
/// the same build when `cargo xtask dist` left one.
fn idle_memory(runtime: &tokio::runtime::Runtime) {
    let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
    else {
        return;
    };
    // target/release/deps/<bench> -> target/release/dawn-node
    let release = target.join("release").join("dawn-node");
    if !release.exists() {
        eprintln!(
            "(skipping the idle process measurement: build {} with `cargo xtask dist` or `cargo build --release -p dawn-node`)",
            release.display()
        );
        return;
    }
    let plain = target.join("layout").join("dawn-node.plain");
    let newer = |a: &Path, b: &Path| {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        modified(a) >= modified(b)
    };
    // Only a plain copy from the dist that produced this release binary.
    if !plain.exists() || !newer(&release, &plain) {
        if let Some((a, b)) = idle_processes(runtime, &release) {
            println!(
                "idle dawn-node processes ({}), 15 s after start, one bootstrapped from the other: VmRSS {a} KiB and {b} KiB",
                release.display()
            );
        }
        return;
    }
    let mut rounds: Vec<(&str, u64, u64)> = Vec::new();
    for _ in 0..2 {
        for (name, bin) in [("plain", &plain), ("layout", &release)] {
            if let Some((a, b)) = idle_processes(runtime, bin) {
                rounds.push((name, a, b));
            }
        }
    }
    for (name, a, b) in &rounds {
        println!(
            "idle dawn-node processes, {name} link, 15 s after start: VmRSS {a} KiB and {b} KiB"
        );
    }
    let mean = |which: &str| {
        let values: Vec<u64> = rounds
            .iter()
            .filter(|r| r.0 == which)
            .flat_map(|r| [r.1, r.2])
            .collect();
        values.iter().sum::<u64>() as f64 / values.len().max(1) as f64
    };
    println!(
        "idle VmRSS with the function layout: {:.0} KiB vs {:.0} KiB plain ({:.2}x)",
        mean("layout"),
        mean("plain"),
        mean("layout") / mean("plain")
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = match sizes.as_slice() {
        [] => vec![10, 30, 100],
        [0] => Vec::new(),
        _ => sizes,
    };
    if let Some(level) = std::env::var_os("BENCH_LOG") {
        let _ = dawn_observe::logging::init(&dawn_observe::logging::LogSettings {
            level: level.to_string_lossy().into_owned(),
            format: dawn_observe::logging::LogFormat::Text,
            file: None,
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:>6} | {:>14} | {:>22} | {:>24} | {:>18}",
        "nodes",
        "converge (s)",
        "bytes sent to converge",
        "idle bytes/node/s (sent)",
        "RSS per node (KiB)"
    );
    for n in sizes {
        let r = runtime.block_on(run(n));
        println!(
            "{:>6} | {:>14.2} | {:>22} | {:>24.0} | {:>18}",
            r.nodes,
            r.converge.as_secs_f64(),
            r.bytes_to_converge,
            r.idle_bytes_per_node_per_sec,
            r.rss_per_node_kib
        );
    }
    idle_memory(&runtime);
}
