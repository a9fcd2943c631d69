//! The process test for the mesh registry: 8 real `dawn-node`
//! processes in a line, each knowing only one bootstrap peer, converge to
//! the same registry (checked with `dawn-cli agents --all`); stopping the
//! two bridging nodes splits the line into two halves, each of which marks
//! the other half unavailable while a node in one half changes its agents;
//! restarting the bridging nodes heals the mesh and every node converges
//! again, including the change made during the split.
//!
//! Kademlia and mDNS are off, so the connection graph is the line itself
//! and stopping the bridging nodes really separates the halves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsStr,
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{assert_success, cli, node_bin, stdout, wait_for};
use serde_json::Value;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(90);
const NODES: usize = 8;

/// Registry and dial timings short enough for a test.
const ENV: &[(&str, &str)] = &[
    ("DAWN_DISCOVERY__MDNS", "false"),
    ("DAWN_DISCOVERY__KADEMLIA", "false"),
    ("DAWN_REGISTRY__ANNOUNCE_INTERVAL", "500ms"),
    ("DAWN_REGISTRY__LIVENESS_TIMEOUT", "3s"),
    ("DAWN_NODE__REDIAL_INTERVAL", "1s"),
    ("DAWN_RESILIENCE__RETRY__DIAL__INITIAL_BACKOFF", "200ms"),
    ("DAWN_RESILIENCE__RETRY__DIAL__MAX_BACKOFF", "1s"),
];

struct Proc {
    child: Option<Child>,
    dir: TempDir,
    data_root: PathBuf,
    runs: usize,
}

impl Proc {
    fn start(peer: Option<&str>, extra_env: &[(&str, &str)]) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let data_root = dir.path().join("data");
        let mut p = Proc {
            child: None,
            dir,
            data_root,
            runs: 0,
        };
        p.spawn(peer, extra_env);
        p
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("node-{}.log", self.runs))
    }

    fn spawn(&mut self, peer: Option<&str>, extra_env: &[(&str, &str)]) {
        self.runs += 1;
        let _ = std::fs::remove_file(self.data_root.join("api.addr"));
        let mut command = Command::new(node_bin());
        command
            .arg("--data-root")
            .arg(&self.data_root)
            .args([
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--api-listen",
                "127.0.0.1:0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(self.log_path()).unwrap());
        if let Some(peer) = peer {
            command.args(["--peer", peer]);
        }
        for name in [
            "DAWN_NODE__DATA_ROOT",
            "DAWN_API_TOKEN",
            "DAWN_API_URL",
            "RUST_LOG",
        ] {
            command.env_remove(name);
        }
        for (k, v) in ENV.iter().chain(extra_env) {
            command.env(k, v);
        }
        self.child = Some(command.spawn().expect("cannot start dawn-node"));
        let addr_file = self.data_root.join("api.addr");
        let log = self.log_path();
        let child = self.child.as_mut().unwrap();
        wait_for("the node's api.addr", WAIT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "dawn-node exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            addr_file.exists().then_some(())
        });
    }

    /// SIGTERM and wait for exit 0.
    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = wait_for("dawn-node to exit", WAIT, || child.try_wait().unwrap());
        assert!(status.success(), "exit {status}:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn cli_json(&self, args: &[&str]) -> Value {
        let mut full: Vec<&OsStr> = vec![OsStr::new("--data-root"), self.data_root.as_os_str()];
        full.extend(args.iter().map(OsStr::new));
        full.push(OsStr::new("--json"));
        let out = cli(&full);
        assert_success(&out, &full);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn peer_id(&self) -> String {
        self.cli_json(&["status"])["node_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn dial_addr(&self) -> String {
        self.cli_json(&["status"])["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/") && a.contains("/p2p/"))
            .unwrap()
            .to_owned()
    }

    /// `dawn-cli agents --all`: peer id -> (version, available, agent ids).
    fn registry(&self) -> BTreeMap<String, (u64, bool, BTreeSet<String>)> {
        self.cli_json(&["agents", "--all"])["remote"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["peer_id"].as_str().unwrap().to_owned(),
                    (
                        r["version"].as_u64().unwrap(),
                        r["available"].as_bool().unwrap(),
                        r["agents"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|a| a["id"].as_str().unwrap().to_owned())
                            .collect(),
                    ),
                )
            })
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether every running node in `group` lists exactly the other members of
/// `group` as available, `down` as unavailable, and all agree on versions.
fn agree(nodes: &[Proc], ids: &[String], group: &[usize], down: &[usize]) -> Result<(), String> {
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    for &i in group {
        let view = nodes[i].registry();
        for &j in group.iter().filter(|j| **j != i) {
            match view.get(&ids[j]) {
                Some((v, true, _)) => {
                    if *versions.entry(ids[j].clone()).or_insert(*v) != *v {
                        return Err(format!("node {i} has another version of node {j}"));
                    }
                }
                other => return Err(format!("node {i} sees node {j} as {other:?}")),
            }
        }
        for &j in down {
            if let Some((_, true, _)) = view.get(&ids[j]) {
                return Err(format!("node {i} still sees node {j} available"));
            }
        }
    }
    Ok(())
}

fn wait_agree(what: &str, nodes: &[Proc], ids: &[String], group: &[usize], down: &[usize]) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let Err(last) = agree(nodes, ids, group, down) else {
            return;
        };
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not reached within {WAIT:?}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn eight_processes_converge_split_into_two_halves_and_heal() {
    // A line: node i knows only node i-1.
    let mut nodes: Vec<Proc> = Vec::new();
    let mut ids = Vec::new();
    for i in 0..NODES {
        let peer = (i > 0).then(|| nodes[i - 1].dial_addr());
        nodes.push(Proc::start(peer.as_deref(), &[]));
        ids.push(nodes[i].peer_id());
    }
    let all: Vec<usize> = (0..NODES).collect();
    wait_agree("all 8 nodes converge", &nodes, &ids, &all, &[]);
    // The table form shows every node's agents with their status.
    let out = {
        let root = nodes[0].data_root.clone();
        cli(&[
            OsStr::new("--data-root"),
            root.as_os_str(),
            OsStr::new("agents"),
            OsStr::new("--all"),
        ])
    };
    assert_success(&out, &["agents", "--all"]);
    let table = stdout(&out);
    assert!(table.contains("STATUS"), "{table}");
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains("available") && l.contains("system"))
            .count(),
        NODES - 1,
        "{table}"
    );

    // Split: stop the bridging nodes 3 and 4 (SIGTERM: they say goodbye).
    let (left, right): (Vec<usize>, Vec<usize>) = ([0, 1, 2].to_vec(), [5, 6, 7].to_vec());
    nodes[3].stop();
    nodes[4].stop();
    wait_agree(
        "the left half is on its own",
        &nodes,
        &ids,
        &left,
        &[3, 4, 5, 6, 7],
    );
    wait_agree(
        "the right half is on its own",
        &nodes,
        &ids,
        &right,
        &[0, 1, 2, 3, 4],
    );

    // A change in the right half while split: node 6 comes back with one
    // more agent (the built-in conformance agent).
    nodes[6].stop();
    let peer5 = nodes[5].dial_addr();
    nodes[6].spawn(Some(&peer5), &[("DAWN_MCP__CONFORMANCE_AGENT", "true")]);
    wait_for("the right half to see node 6's new agent", WAIT, || {
        right
            .iter()
            .filter(|i| **i != 6)
            .all(|i| {
                nodes[*i]
                    .registry()
                    .get(&ids[6])
                    .is_some_and(|(_, up, agents)| *up && agents.contains("conformance"))
            })
            .then_some(())
    });
    assert!(
        !nodes[0].registry()[&ids[6]].2.contains("conformance"),
        "the left half cannot know yet"
    );

    // Heal: restart the bridging nodes (3 knows 2; 4 knows the new 3).
    let peer2 = nodes[2].dial_addr();
    nodes[3].spawn(Some(&peer2), &[]);
    let peer3 = nodes[3].dial_addr();
    nodes[4].spawn(Some(&peer3), &[]);
    wait_agree("all 8 nodes converge again", &nodes, &ids, &all, &[]);
    for (i, node) in nodes.iter().enumerate() {
        if i != 6 {
            assert!(
                node.registry()[&ids[6]].2.contains("conformance"),
                "node {i} missed the change made during the split"
            );
        }
    }
    for node in &mut nodes {
        node.stop();
    }
}
