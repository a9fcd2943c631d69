//! The process-level fault tests: real `dawn-node` processes with a
//! mounted MCP server (`examples/journal_mcp_server.rs`) that sleeps or
//! appends ids to a synced journal file, called from a node embedded in the
//! test over TCP on 127.0.0.1.
//!
//! - SIGKILL mid-call: the caller gets a clear error (not a hang until the
//!   deadline), its circuit breaker for that peer opens and fails fast, and
//!   when the peer comes back the breaker goes half-open, then closed, and
//!   calls succeed, without restarting the caller.
//! - SIGTERM under load: calls in flight are drained and acknowledged, new
//!   calls are refused with `shutting_down` (-32014) and never run, every
//!   acknowledged append is in the journal, the process exits 0 and the data
//!   directory opens again.
//! - A second signal during the drain exits at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::HashSet,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{cli_bin, node_bin};
use dawn_core::{
    AgentAddress, BreakerState, CallError, CallOptions, DawnConfig, ErrorKind, Node, NodeBuilder,
    NodeEvent, PeerId, mcp::CallToolResult,
};
use serde_json::{Value, json};

/// Generous bound for anything awaited on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// The journal MCP server binary: built next to the test binaries by
/// `cargo test -p dawn-cli`, or built here when only this test was built.
fn journal_server() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let profile = cli_bin().parent().unwrap();
        let path = profile.join("examples").join("journal_mcp_server");
        if !path.is_file() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args([
                "build",
                "-q",
                "-p",
                "dawn-cli",
                "--example",
                "journal_mcp_server",
            ]);
            if profile.file_name().is_some_and(|p| p == "release") {
                build.arg("--release");
            }
            assert!(
                build.status().unwrap().success(),
                "building the journal server failed"
            );
        }
        assert!(path.is_file(), "no journal server at {}", path.display());
        path
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `probe` every 50 ms until it returns `Some`, for at most `timeout`.
async fn eventually<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `dawn-node` process on a fixed P2P port with a config file; killed
/// when dropped.
struct NodeProcess {
    child: Child,
    dir: PathBuf,
    data_root: PathBuf,
    config: PathBuf,
    port: u16,
    log: PathBuf,
    runs: usize,
}

impl NodeProcess {
    /// Starts `dawn-node` with the journal server mounted as agent
    /// `journal` (journal file `<dir>/journal.txt`), trusting `caller`,
    /// plus `extra` TOML, and waits until its API is up.
    async fn start(dir: &Path, caller: PeerId, extra: &str) -> NodeProcess {
        let config = dir.join("node.toml");
        let journal = dir.join("journal.txt");
        std::fs::write(
            &config,
            format!(
                "[security]\ntrusted_peers = [\"{caller}\"]\n\n\
                 {extra}\n\n\
                 [[mcp.servers]]\nid = \"journal\"\ncommand = {command:?}\n\
                 env = {{ JOURNAL_FILE = {journal:?} }}\n",
                command = journal_server().display().to_string(),
                journal = journal.display().to_string(),
            ),
        )
        .unwrap();
        let mut node = NodeProcess {
            child: Command::new("true").spawn().unwrap(),
            dir: dir.to_owned(),
            data_root: dir.join("data"),
            config,
            port: free_port(),
            log: dir.join("node-0.log"),
            runs: 0,
        };
        node.spawn().await;
        node
    }

    /// Starts the process (again), on the same port and data directory.
    async fn spawn(&mut self) {
        self.runs += 1;
        self.log = self.dir.join(format!("node-{}.log", self.runs));
        // A SIGKILLed node leaves its api.addr behind.
        let _ = std::fs::remove_file(self.data_root.join("api.addr"));
        let mut command = Command::new(node_bin());
        command
            .arg("--config")
            .arg(&self.config)
            .arg("--data-root")
            .arg(&self.data_root)
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{}", self.port)])
            .args(["--api-listen", "127.0.0.1:0"])
            .env_remove("DAWN_NODE__DATA_ROOT")
            .env_remove("RUST_LOG")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&self.log).unwrap());
        self.child = command.spawn().expect("cannot start dawn-node");
        let addr_file = self.data_root.join("api.addr");
        let log = self.log.clone();
        let child = &mut self.child;
        eventually("dawn-node to start", PATIENCE, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "dawn-node exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // api.addr is written while the node starts; the banner with
            // the peer id (read by `peer_id`) is printed once it has.
            let banner = std::fs::read_to_string(&log).is_ok_and(|l| l.contains("peer id:"));
            (addr_file.exists() && banner).then_some(())
        })
        .await;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_for_log(&self, needle: &str) {
        eventually(&format!("{needle:?} in the node's log"), PATIENCE, || {
            self.log().contains(needle).then_some(())
        })
        .await;
    }

    fn peer_id(&self) -> PeerId {
        let log = self.log();
        let line = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("peer id:"))
            .unwrap_or_else(|| panic!("no peer id in the log:\n{log}"));
        line.trim().parse().unwrap()
    }

    fn dial_addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.port, self.peer_id())
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success(), "kill {signal} {pid} failed");
    }

    /// SIGKILL, and reap the process.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn wait_exit(&mut self, what: &str, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        eventually(what, timeout, || child.try_wait().unwrap()).await
    }

    fn journal(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("journal.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node embedded in the test: the caller.
async fn start_caller(dir: &Path, tweak: impl FnOnce(&mut DawnConfig)) -> Node {
    let mut config = DawnConfig::ephemeral(dir.join("caller"));
    config.api.enabled = false;
    tweak(&mut config);
    NodeBuilder::new(config).start().await.unwrap()
}

/// Dials the process and waits until its `journal` agent is known.
async fn connect(caller: &Node, node: &NodeProcess) -> PeerId {
    let peer = caller
        .dial(node.dial_addr().parse().unwrap())
        .await
        .unwrap();
    eventually("the journal agent to be known", PATIENCE, || {
        caller
            .remote_agents()
            .get(&peer)
            .is_some_and(|agents| {
                agents
                    .iter()
                    .any(|a| a.id == "journal" && !a.tools.is_empty())
            })
            .then_some(())
    })
    .await;
    peer
}

fn journal_at(peer: PeerId) -> AgentAddress {
    format!("{peer}/journal").parse().unwrap()
}

async fn call(
    caller: &Node,
    address: &AgentAddress,
    tool: &str,
    arguments: Value,
    timeout: Duration,
) -> Result<CallToolResult, CallError> {
    let request = dawn_core::jsonrpc::Request::new(
        1,
        "tools/call",
        Some(json!({ "name": tool, "arguments": arguments })),
    );
    let value = caller
        .request(
            address,
            request,
            CallOptions::default().with_timeout(timeout),
        )
        .await?;
    Ok(serde_json::from_value(value).unwrap())
}

fn is_tool_error(result: &CallToolResult) -> bool {
    result.is_error == Some(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_call_gives_a_clear_error_opens_the_breaker_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let caller = start_caller(dir.path(), |c| {
        c.resilience.circuit_breaker.failure_threshold = 2;
        c.resilience.circuit_breaker.timeout = Duration::from_secs(1).into();
    })
    .await;
    let node_dir = dir.path().join("a");
    std::fs::create_dir_all(&node_dir).unwrap();
    let mut a = NodeProcess::start(&node_dir, caller.peer_id(), "").await;
    let peer = connect(&caller, &a).await;
    let journal = journal_at(peer);
    let mut events = caller.subscribe();

    // A call that would take ten minutes, with a one-minute deadline.
    let in_flight = {
        let (caller, journal) = (caller.clone(), journal.clone());
        tokio::spawn(async move {
            call(
                &caller,
                &journal,
                "sleep",
                json!({"ms": 600_000}),
                Duration::from_secs(60),
            )
            .await
        })
    };
    a.wait_for_log("sleep: started").await;
    a.kill();

    // A clear error at once, not a timeout at the deadline.
    let e = in_flight.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::ConnectionLost), "{e}");
    // One more failure (the peer is gone) opens the breaker...
    let e = call(
        &caller,
        &journal,
        "sleep",
        json!({"ms": 1}),
        Duration::from_secs(30),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            Some(ErrorKind::Unreachable | ErrorKind::NetworkTimeout | ErrorKind::ConnectionLost)
        ),
        "{e}"
    );
    assert_eq!(caller.breaker_state(&peer), BreakerState::Open);
    // ... which fails fast and says when it will try again.
    let e = call(
        &caller,
        &journal,
        "sleep",
        json!({"ms": 1}),
        Duration::from_secs(30),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, -32007, "{e}");
    let data = e.data.unwrap();
    assert_eq!(data["kind"], "breaker_open");
    assert!(
        (1..=1000).contains(&data["retry_after_ms"].as_u64().unwrap()),
        "{data}"
    );

    // The peer comes back (same identity, same address); the caller is not
    // restarted. A trial call half-opens the breaker and closes it.
    a.spawn().await;
    assert_eq!(a.peer_id(), peer);
    let result = {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match call(
                &caller,
                &journal,
                "sleep",
                json!({"ms": 1}),
                Duration::from_secs(30),
            )
            .await
            {
                Ok(result) if !is_tool_error(&result) => break result,
                Ok(result) => panic!("tool error: {result:?}"),
                Err(e) => {
                    assert!(e.kind().is_some_and(ErrorKind::is_transient), "{e}");
                    assert!(
                        Instant::now() < deadline,
                        "the peer never answered again: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    assert!(serde_json::to_string(&result).unwrap().contains("slept"));
    assert_eq!(caller.breaker_state(&peer), BreakerState::Closed);
    let mut transitions = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let NodeEvent::CircuitBreaker { peer: p, from, to } = event {
            assert_eq!(p, peer);
            transitions.push((from, to));
        }
    }
    assert_eq!(
        transitions.first(),
        Some(&(BreakerState::Closed, BreakerState::Open)),
        "{transitions:?}"
    );
    assert!(
        transitions.contains(&(BreakerState::Open, BreakerState::HalfOpen)),
        "{transitions:?}"
    );
    assert_eq!(
        transitions.last(),
        Some(&(BreakerState::HalfOpen, BreakerState::Closed)),
        "{transitions:?}"
    );
    caller.shutdown().await;
}

/// What one call of the load saw.
#[derive(Debug)]
struct Outcome {
    id: String,
    result: Result<(), CallError>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_acknowledged_call_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let caller = start_caller(dir.path(), |_| {}).await;
    let node_dir = dir.path().join("a");
    std::fs::create_dir_all(&node_dir).unwrap();
    let grace = Duration::from_secs(30);
    let mut a = NodeProcess::start(
        &node_dir,
        caller.peer_id(),
        "[node]\nshutdown_grace = \"30s\"\n",
    )
    .await;
    let peer = connect(&caller, &a).await;
    let journal = journal_at(peer);

    // Load: 8 workers appending ids one after another (100 ms each), until
    // their first failure after the signal.
    let signalled = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (caller, journal) = (caller.clone(), journal.clone());
        let (signalled, acked, outcomes) = (signalled.clone(), acked.clone(), outcomes.clone());
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("w{w}-{i}");
                let result = call(
                    &caller,
                    &journal,
                    "append",
                    json!({"id": id, "delay_ms": 100}),
                    Duration::from_secs(30),
                )
                .await
                .map(|r| assert!(!is_tool_error(&r), "{r:?}"));
                let failed = result.is_err();
                if !failed {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                outcomes.lock().unwrap().push(Outcome { id, result });
                if failed && signalled.load(Ordering::SeqCst) {
                    return;
                }
            }
        }));
    }
    // And one long call, in flight when the signal comes.
    let long = {
        let (caller, journal) = (caller.clone(), journal.clone());
        tokio::spawn(async move {
            call(
                &caller,
                &journal,
                "append",
                json!({"id": "long", "delay_ms": 3000}),
                Duration::from_secs(30),
            )
            .await
        })
    };
    a.wait_for_log("append long: started").await;
    eventually("20 acknowledged appends", PATIENCE, || {
        (acked.load(Ordering::SeqCst) >= 20).then_some(())
    })
    .await;

    signalled.store(true, Ordering::SeqCst);
    a.signal("-TERM");
    a.wait_for_log("signal received").await;
    // New calls are refused while the node drains, and never run.
    let e = call(
        &caller,
        &journal,
        "append",
        json!({"id": "refused", "delay_ms": 0}),
        Duration::from_secs(30),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, -32014, "{e}");
    assert_eq!(e.kind(), Some(ErrorKind::ShuttingDown));
    // The call in flight is drained and acknowledged.
    let long = long.await.unwrap().unwrap();
    assert!(!is_tool_error(&long), "{long:?}");

    let status = a
        .wait_exit("dawn-node to exit after SIGTERM", grace + PATIENCE)
        .await;
    assert!(
        status.success(),
        "dawn-node exited with {status}:\n{}",
        a.log()
    );
    assert!(a.log().contains("shutdown complete"), "{}", a.log());
    for worker in workers {
        worker.await.unwrap();
    }

    // Every acknowledged append is in the journal; refused ones are not.
    let journal_ids: HashSet<String> = a.journal().into_iter().collect();
    assert!(journal_ids.contains("long"));
    assert!(!journal_ids.contains("refused"));
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let mut acked_ids = 0;
    for outcome in outcomes.iter() {
        match &outcome.result {
            Ok(()) => {
                acked_ids += 1;
                assert!(
                    journal_ids.contains(&outcome.id),
                    "acknowledged {} is not in the journal",
                    outcome.id
                );
            }
            Err(e) => {
                // Every failure is a clear one; none waited for its deadline.
                assert!(
                    matches!(
                        e.kind(),
                        Some(
                            ErrorKind::ShuttingDown
                                | ErrorKind::ConnectionLost
                                | ErrorKind::Unreachable
                                | ErrorKind::NetworkTimeout
                                | ErrorKind::BreakerOpen
                        )
                    ),
                    "{}: {e}",
                    outcome.id
                );
                if e.kind() == Some(ErrorKind::ShuttingDown) {
                    assert!(
                        !journal_ids.contains(&outcome.id),
                        "refused {} ran",
                        outcome.id
                    );
                }
            }
        }
    }
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.result
                .as_ref()
                .err()
                .map(|e| format!("{}: {}", o.id, e.kind().map_or("?", ErrorKind::as_str)))
        })
        .collect();
    eprintln!(
        "SIGTERM under load: {acked_ids} acknowledged, {} journal lines, failures after the signal: {failures:?}",
        journal_ids.len()
    );
    assert!(acked_ids >= 20);

    // The data directory opens cleanly: the node starts again on it with
    // the same identity, and stops cleanly.
    a.spawn().await;
    assert_eq!(a.peer_id(), peer);
    a.signal("-TERM");
    let status = a
        .wait_exit("the restarted dawn-node to exit", PATIENCE)
        .await;
    assert!(
        status.success(),
        "restarted dawn-node exited with {status}:\n{}",
        a.log()
    );
    caller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let caller = start_caller(dir.path(), |_| {}).await;
    let node_dir = dir.path().join("a");
    std::fs::create_dir_all(&node_dir).unwrap();
    // A drain that would take ten minutes.
    let mut a = NodeProcess::start(
        &node_dir,
        caller.peer_id(),
        "[node]\nshutdown_grace = \"10m\"\n",
    )
    .await;
    let peer = connect(&caller, &a).await;
    let journal = journal_at(peer);
    let in_flight = {
        let caller = caller.clone();
        tokio::spawn(async move {
            call(
                &caller,
                &journal,
                "sleep",
                json!({"ms": 600_000}),
                Duration::from_secs(300),
            )
            .await
        })
    };
    a.wait_for_log("sleep: started").await;
    a.signal("-TERM");
    a.wait_for_log("signal received").await;
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "the node did not wait for its call"
    );
    a.signal("-TERM");
    let status = a
        .wait_exit("dawn-node to exit after a second signal", PATIENCE)
        .await;
    assert_eq!(status.code(), Some(130), "{}", a.log());
    assert!(a.log().contains("second signal"), "{}", a.log());
    let e = in_flight.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::ConnectionLost), "{e}");
    caller.shutdown().await;
}
