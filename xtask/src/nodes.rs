//! Real `dawn-node` processes for the xtask commands that drive a small mesh
//! (the MCP conformance suite, the function-layout training run of `dist`):
//! start one, wait until its API answers, ask it things through
//! `dawn-cli --json`, stop it with SIGTERM.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::json::Json;

/// How to start one node.
pub struct NodeSpec {
    /// Directory holding `dawn-node` and `dawn-cli`.
    pub bin_dir: PathBuf,
    /// The node's data root (created).
    pub data_root: PathBuf,
    /// File receiving the node's stdout and stderr.
    pub log: PathBuf,
    /// Name used in messages.
    pub name: &'static str,
    /// Configuration file contents (TOML), written next to the data root.
    pub config: String,
    /// Multiaddr of a peer to bootstrap from (`--peer`).
    pub peer: Option<String>,
    /// Program and arguments to run the node under (e.g. valgrind), if any.
    pub wrapper: Vec<OsString>,
    /// How long the node may take to come up, and to learn a peer's agents.
    pub startup_timeout: Duration,
    /// How long it may take to stop after SIGTERM before it is killed.
    pub stop_timeout: Duration,
}

/// What a started node tells about itself.
pub struct NodeInfo {
    /// Its peer id.
    pub node_id: String,
    /// `host:port` of the HTTP API.
    pub api: String,
    /// A multiaddr ending in `/p2p/<node_id>`.
    pub dial: String,
}

/// A `dawn-node` process, stopped when dropped.
pub struct DawnNode {
    name: &'static str,
    child: Child,
    data_root: PathBuf,
    log: PathBuf,
    cli: PathBuf,
    startup_timeout: Duration,
    stop_timeout: Duration,
    /// Set by [`DawnNode::stop`]: the exit is expected from then on.
    stopped: bool,
}

impl DawnNode {
    /// Starts the node, listening on 127.0.0.1 only (TCP and API on free
    /// ports, mDNS off).
    pub fn start(spec: NodeSpec) -> Result<DawnNode> {
        fs::create_dir_all(&spec.data_root)
            .with_context(|| format!("cannot create {}", spec.data_root.display()))?;
        let config = spec.data_root.with_extension("toml");
        fs::write(&config, &spec.config)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let log_file = fs::File::create(&spec.log)
            .with_context(|| format!("cannot create {}", spec.log.display()))?;
        let node_bin = spec.bin_dir.join("dawn-node");
        let mut command = match spec.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&node_bin);
                command
            }
            None => Command::new(&node_bin),
        };
        command
            .arg("--config")
            .arg(&config)
            .arg("--data-root")
            .arg(&spec.data_root)
            .args([
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--api-listen",
                "127.0.0.1:0",
            ])
            .env("DAWN_DISCOVERY__MDNS", "false")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        if let Some(peer) = &spec.peer {
            command.args(["--peer", peer]);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", node_bin.display()))?;
        Ok(DawnNode {
            name: spec.name,
            child,
            data_root: spec.data_root,
            log: spec.log,
            cli: spec.bin_dir.join("dawn-cli"),
            startup_timeout: spec.startup_timeout,
            stop_timeout: spec.stop_timeout,
            stopped: false,
        })
    }

    /// Fails with the end of the node's log if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "node {} exited ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// Runs `dawn-cli --data-root <node> ARGS`.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let output = Command::new(&self.cli)
            .arg("--data-root")
            .arg(&self.data_root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.cli.display()))?;
        if !output.status.success() {
            bail!(
                "dawn-cli {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output)
    }

    /// Runs `dawn-cli --data-root <node> ARGS --json` and parses its output.
    pub fn cli_json(&self, args: &[&str]) -> Result<Json> {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let output = self.cli(&with_json)?;
        Json::parse(&String::from_utf8_lossy(&output.stdout))
            .with_context(|| format!("dawn-cli {} printed invalid JSON", args.join(" ")))
    }

    /// Waits until the node's API answers, and returns its identity.
    pub fn wait_ready(&mut self) -> Result<NodeInfo> {
        self.poll_until("come up", |node| {
            let api = fs::read_to_string(node.data_root.join("api.addr"))
                .map(|a| a.trim().to_owned())
                .unwrap_or_default();
            if api.is_empty() {
                return Err("api.addr was not written".into());
            }
            let status = node.cli_json(&["status"]).map_err(|e| format!("{e:#}"))?;
            node_info(&status, api).map_err(|e| format!("{e:#}"))
        })
    }

    /// Waits until this node lists `agent` on peer `peer_id`.
    pub fn wait_for_remote_agent(&mut self, peer_id: &str, agent: &str) -> Result<()> {
        self.poll_until(&format!("learn agent {agent} of {peer_id}"), |node| {
            let agents = node
                .cli_json(&["agents", "--all"])
                .map_err(|e| format!("{e:#}"))?;
            knows_remote_agent(&agents, peer_id, agent)
                .then_some(())
                .ok_or_else(|| "not listed yet".to_owned())
        })
    }

    /// Polls `probe` every 200 ms until it succeeds, for at most the startup
    /// timeout; fails with the last reason and the end of the node's log,
    /// or at once if the node exits.
    fn poll_until<T>(
        &mut self,
        what: &str,
        mut probe: impl FnMut(&DawnNode) -> Result<T, String>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.startup_timeout;
        loop {
            self.check_alive()?;
            let why = match probe(self) {
                Ok(value) => return Ok(value),
                Err(why) => why,
            };
            if Instant::now() > deadline {
                bail!(
                    "node {} did not {what} within {}s ({why}); end of {}:\n{}",
                    self.name,
                    self.startup_timeout.as_secs(),
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Asks the node to shut down (SIGTERM) and waits for it; kills it if it
    /// lingers. Returns whether it exited by itself.
    pub fn stop(&mut self) -> bool {
        self.stopped = true;
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return true;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + self.stop_timeout;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for DawnNode {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if let Err(error) = self.check_alive() {
            eprintln!("{error:#}");
            return;
        }
        self.stop();
    }
}

/// Reads `node_id` and the first listen address from `dawn-cli status --json`.
fn node_info(status: &Json, api: String) -> Result<NodeInfo> {
    let node_id = status
        .get("node_id")
        .and_then(Json::as_str)
        .context("status has no node_id")?
        .to_owned();
    let dial = status
        .get("listen_addrs")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .filter_map(Json::as_str)
        .find(|a| a.ends_with(&format!("/p2p/{node_id}")))
        .context("status lists no listen address ending in /p2p/<node_id>")?
        .to_owned();
    Ok(NodeInfo { node_id, api, dial })
}

/// Whether `dawn-cli agents --all --json` lists `agent` on `peer_id`.
fn knows_remote_agent(agents: &Json, peer_id: &str, agent: &str) -> bool {
    agents
        .get("remote")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.get("peer_id").and_then(Json::as_str) == Some(peer_id))
        .flat_map(|p| p.get("agents").map(Json::items).unwrap_or_default())
        .any(|a| a.get("id").and_then(Json::as_str) == Some(agent))
}

/// The last `lines` lines of a file (for error messages quoting a log).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_remote_agent_and_the_dial_address() {
        let agents = Json::parse(
            r#"{"node_id":"B","local":[],"remote":[{"peer_id":"A","agents":[{"id":"system"},{"id":"conformance"}]}]}"#,
        )
        .unwrap();
        assert!(knows_remote_agent(&agents, "A", "conformance"));
        assert!(!knows_remote_agent(&agents, "B", "conformance"));
        assert!(!knows_remote_agent(&agents, "A", "other"));

        let status =
            Json::parse(r#"{"node_id":"A","listen_addrs":["/ip4/127.0.0.1/tcp/5/p2p/A"]}"#)
                .unwrap();
        let info = node_info(&status, "127.0.0.1:9".into()).unwrap();
        assert_eq!(info.dial, "/ip4/127.0.0.1/tcp/5/p2p/A");
        assert!(
            node_info(
                &Json::parse(r#"{"node_id":"A","listen_addrs":[]}"#).unwrap(),
                String::new()
            )
            .is_err()
        );
    }
}
