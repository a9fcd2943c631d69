//! Security with real `dawn-node` processes driven through `dawn-cli`: trust
//! set on the running node lets a peer call a state-changing tool, untrusted
//! peers are disconnected, `reject_unknown` refuses connections, the audit
//! log records every decision and `audit verify` catches an edited line; API
//! token failures are audited and rotation works; an encrypted node key
//! with a wrong passphrase, exposed or truncated key file gives one clear
//! error and nothing changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    ffi::OsStr,
    fs::File,
    io::{Read as _, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::OnceLock,
    time::Duration,
};

use common::{
    STARTUP_TIMEOUT, assert_success, cli_bin, cli_with_env, node_bin, stderr, stdout, wait_for,
};
use serde_json::Value;
use tempfile::TempDir;

/// Waits on a loaded machine.
const WAIT: Duration = Duration::from_secs(60);

/// The MCP server example of dawn-core, whose `add` tool does not declare
/// itself read-only (so it counts as state-changing).
fn fixture_server() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let profile = cli_bin().parent().unwrap().to_path_buf();
        let path = profile.join("examples").join("fixture_mcp_server");
        if !path.is_file() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args([
                "build",
                "-q",
                "-p",
                "dawn-core",
                "--example",
                "fixture_mcp_server",
            ]);
            if profile.file_name() == Some(OsStr::new("release")) {
                build.arg("--release");
            }
            assert!(
                build.status().unwrap().success(),
                "cannot build the fixture"
            );
        }
        path
    })
}

/// A `dawn-node` process with its own data directory; killed when dropped.
struct Node {
    child: Child,
    data_root: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

/// How to start a node.
#[derive(Default)]
struct Start<'a> {
    peers: Vec<String>,
    env: Vec<(&'a str, String)>,
    config: Option<String>,
}

fn spawn(data_root: &Path, log: &Path, start: &Start<'_>) -> Child {
    let mut command = Command::new(node_bin());
    command
        .arg("--data-root")
        .arg(data_root)
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap());
    for peer in &start.peers {
        command.args(["--peer", peer]);
    }
    if let Some(config) = &start.config {
        let path = log.with_extension("toml");
        std::fs::write(&path, config).unwrap();
        command.arg("--config").arg(path);
    }
    for name in [
        "DAWN_NODE__DATA_ROOT",
        "DAWN_API_TOKEN",
        "DAWN_API_URL",
        "DAWN_PASSPHRASE",
    ] {
        command.env_remove(name);
    }
    for (name, value) in &start.env {
        command.env(name, value);
    }
    command.spawn().expect("cannot start dawn-node")
}

impl Node {
    fn start(start: Start<'_>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let data_root = dir.path().join("data");
        Self::start_in(dir, data_root, start)
    }

    fn start_in(dir: TempDir, data_root: PathBuf, start: Start<'_>) -> Node {
        let log = dir.path().join("node.log");
        let child = spawn(&data_root, &log, &start);
        let mut node = Node {
            child,
            data_root,
            log,
            _dir: dir,
        };
        let addr_file = node.data_root.join("api.addr");
        let log = node.log.clone();
        let child = &mut node.child;
        wait_for("the node's api.addr", STARTUP_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "dawn-node exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            addr_file.exists().then_some(())
        });
        node
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    fn cli_env(&self, args: &[&str], env: &[(&str, &OsStr)]) -> Output {
        let mut full: Vec<&OsStr> = vec![OsStr::new("--data-root"), self.data_root.as_os_str()];
        full.extend(args.iter().map(OsStr::new));
        cli_with_env(&full, env)
    }

    fn cli_json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.push("--json");
        let out = self.cli(&full);
        assert_success(&out, &full);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{full:?}: invalid JSON ({e}): {}", stdout(&out)))
    }

    fn peer_id(&self) -> String {
        self.cli_json(&["status"])["node_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn dial_addr(&self) -> String {
        let status = self.cli_json(&["status"]);
        status["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
            .unwrap()
            .to_owned()
    }

    fn connected_to(&self, peer: &str) -> bool {
        self.cli_json(&["peers"])["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == peer)
    }

    /// Audit records as `audit tail --json` prints them (one per line).
    fn audit(&self, filter: &[&str]) -> Vec<Value> {
        audit_tail(&self.data_root, filter)
    }

    /// Sends SIGHUP: the node reloads its configuration.
    fn hangup(&self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// The config file given with `--config` (see [`spawn`]).
    fn config_file(&self) -> PathBuf {
        self.log.with_extension("toml")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let child = &mut self.child;
        wait_for("dawn-node to exit", STARTUP_TIMEOUT, || {
            child.try_wait().unwrap()
        })
    }

    /// A raw authenticated GET of the node's API (for /metrics).
    fn http_get(&self, path: &str) -> String {
        let addr = std::fs::read_to_string(self.data_root.join("api.addr")).unwrap();
        let token = std::fs::read_to_string(self.data_root.join("api.token")).unwrap();
        let mut stream = std::net::TcpStream::connect(addr.trim()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token.trim()
        )
        .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        body
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn audit_tail(data_root: &Path, filter: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "--data-root",
        data_root.to_str().unwrap(),
        "audit",
        "tail",
        "-n",
        "100000",
        "--json",
    ];
    args.extend_from_slice(filter);
    let out = cli_with_env(&args, &[]);
    assert_success(&out, &args);
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn fails_with(out: &Output, needle: &str) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected a failure; stdout: {}",
        stdout(out)
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    err
}

/// The config of a node mounting the fixture server as agent `fixture`.
fn fixture_mount() -> String {
    let fixture = fixture_server().display().to_string();
    format!("[[mcp.servers]]\nid = \"fixture\"\ncommand = {fixture:?}\n")
}

/// Node A mounting the fixture (config file [`fixture_mount`]) and node B
/// peered with it, once B lists A's fixture tools.
fn fixture_pair() -> (Node, Node) {
    let a = Node::start(Start {
        config: Some(fixture_mount()),
        ..Start::default()
    });
    let b = Node::start(Start {
        peers: vec![a.dial_addr()],
        ..Start::default()
    });
    let target = format!("{}/fixture", a.peer_id());
    wait_for("B to learn A's fixture agent", WAIT, || {
        let out = b.cli(&["tools", &target, "--json"]);
        (out.status.success() && stdout(&out).contains("\"add\"")).then_some(())
    });
    (a, b)
}

#[test]
fn trust_set_lets_an_unknown_peer_change_state_and_the_audit_log_has_every_decision() {
    let (mut a, b) = fixture_pair();
    let (a_id, b_id) = (a.peer_id(), b.peer_id());
    let target = format!("{a_id}/fixture");

    // B is unknown to A: a tool that may change state is refused, and the
    // refusal says nothing about A's policy.
    let call = ["call", target.as_str(), "add", "--args", r#"{"a":2,"b":3}"#];
    let out = b.cli(&call);
    let err = fails_with(&out, "not permitted (unauthorized, code -32001)");
    for secret in ["trusted", "unknown", "min_level"] {
        assert!(!err.contains(secret), "leaks {secret:?}: {err}");
    }
    let show = a.cli_json(&["trust", "show", &b_id]);
    assert_eq!(show["level"], "unknown");
    assert_eq!(show["connected"], true);

    // The operator trusts B on the running node.
    let out = a.cli(&["trust", "set", &b_id, "trusted", "--note", "CI peer"]);
    assert_success(&out, &["trust", "set"]);
    assert!(
        stdout(&out).contains("unknown -> trusted"),
        "{}",
        stdout(&out)
    );
    let list = a.cli_json(&["trust", "list"]);
    let entry = list["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == b_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["level"], "trusted");
    assert_eq!(entry["note"], "CI peer");
    let out = b.cli(&call);
    assert_success(&out, &call);
    assert!(stdout(&out).contains('5'), "{}", stdout(&out));

    // Invalid input: clear errors, the node keeps running.
    let out = a.cli(&["trust", "set", &b_id, "godlike"]);
    fails_with(&out, "unknown trust level");
    let out = a.cli(&["trust", "set", "not-a-peer", "trusted"]);
    fails_with(&out, "not a peer id");
    let out = a.cli(&["trust", "set", &a_id, "trusted"]);
    fails_with(&out, "own peer id");

    // The refusal is counted in the metrics.
    let metrics = a.http_get("/metrics");
    assert!(
        metrics.contains("dawn_security_denials_total{permission=\"call_tool\"}"),
        "{metrics}"
    );

    // Every decision is in A's audit log.
    let denied = a.audit(&["--event", "call_denied", "--peer", &b_id]);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["agent"], "fixture");
    assert_eq!(denied[0]["tool"], "add");
    assert_eq!(denied[0]["decision"], "deny");
    assert!(
        denied[0]["reason"]
            .as_str()
            .unwrap()
            .contains("below the minimum trusted")
    );
    let all = a.audit(&[]);
    let events: Vec<&str> = all.iter().filter_map(|r| r["event"].as_str()).collect();
    for event in [
        "connection_accepted",
        "call_denied",
        "trust_changed",
        "call_allowed",
    ] {
        assert!(events.contains(&event), "{event} missing from {events:?}");
    }
    let out = a.cli(&["audit", "verify"]);
    assert_success(&out, &["audit", "verify"]);
    assert!(stdout(&out).contains("is intact"), "{}", stdout(&out));

    // Untrusted: disconnected at once, and B's calls fail.
    let out = a.cli(&["trust", "set", &b_id, "untrusted"]);
    assert_success(&out, &["trust", "set", "untrusted"]);
    wait_for("A to drop B", WAIT, || {
        (!a.connected_to(&b_id)).then_some(())
    });
    let out = b.cli(&call);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(a.cli_json(&["trust", "show", &b_id])["banned"] == true);

    // A line edited after the fact is found, by file and line.
    assert!(a.terminate().success());
    let file = a.data_root.join("audit").join("audit.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("\"call_denied\""))
        .unwrap()
        + 1;
    std::fs::write(
        &file,
        text.replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1),
    )
    .unwrap();
    let out = a.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    fails_with(&out, &format!("audit.jsonl:{line}:"));
}

#[test]
fn trust_lists_in_the_config_file_apply_on_sighup_and_a_bad_reload_changes_nothing() {
    let mount = fixture_mount();
    let (mut a, b) = fixture_pair();
    let (a_id, b_id) = (a.peer_id(), b.peer_id());
    let target = format!("{a_id}/fixture");
    let call = ["call", target.as_str(), "add", "--args", r#"{"a":2,"b":3}"#];
    fails_with(&b.cli(&call), "not permitted");
    let reloads = |a: &Node, result: &str| -> usize {
        let needle = format!("dawn_config_reloads_total{{result=\"{result}\"}} ");
        a.http_get("/metrics")
            .lines()
            .find_map(|l| l.strip_prefix(&needle))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as usize)
    };

    // The operator adds B to security.trusted_peers (and changes a key that
    // needs a restart) and sends SIGHUP: B may change state at once.
    std::fs::write(
        a.config_file(),
        format!(
            "{mount}\n[security]\ntrusted_peers = [\"{b_id}\"]\n\n[logging]\nlevel = \"debug\"\n"
        ),
    )
    .unwrap();
    a.hangup();
    let show = wait_for("A to trust B from its config", WAIT, || {
        let show = a.cli_json(&["trust", "show", &b_id]);
        (show["level"] == "trusted").then_some(show)
    });
    assert_eq!(show["origin"], "config (security.trusted_peers)");
    assert_eq!(show["pinned"], true);
    let out = b.cli(&call);
    assert_success(&out, &call);
    assert!(stdout(&out).contains('5'), "{}", stdout(&out));
    // Pinned: the operator is told which key to edit.
    let out = a.cli(&["trust", "set", &b_id, "unknown"]);
    let err = fails_with(&out, "security.trusted_peers");
    assert!(err.contains("reload"), "{err}");
    let reloaded = wait_for("the config_reloaded audit record", WAIT, || {
        let records = a.audit(&["--event", "config_reloaded"]);
        (!records.is_empty()).then_some(records)
    });
    let details = &reloaded[0]["details"];
    assert_eq!(details["applied"], "security.trusted_peers", "{details}");
    assert_eq!(details["restart_required"], "logging.level", "{details}");
    let changed = a.audit(&["--event", "trust_changed", "--peer", &b_id]);
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(
        changed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("configuration reload"),
        "{changed:?}"
    );
    wait_for("the restart warning in A's log", WAIT, || {
        let log = a.log_text();
        (log.contains("take effect only after a restart") && log.contains("logging.level"))
            .then_some(())
    });
    assert_eq!(reloads(&a, "applied"), 1);

    // Bad reloads: a file that does not parse, then a peer both trusted and
    // blocked. Each is refused with a clear log line; B stays trusted and
    // the node keeps serving.
    let good = std::fs::read_to_string(a.config_file()).unwrap();
    for (n, bad) in [
        format!("{good}\n[security\n"),
        format!(
            "{mount}\n[security]\ntrusted_peers = [\"{b_id}\"]\nblocked_peers = [\"{b_id}\"]\n"
        ),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(a.config_file(), bad).unwrap();
        a.hangup();
        wait_for("A to refuse the bad configuration", WAIT, || {
            (a.log_text().matches("configuration reload refused").count() == n + 1).then_some(())
        });
    }
    let log = a.log_text();
    assert!(log.contains("security.blocked_peers"), "{log}");
    assert_eq!(reloads(&a, "refused"), 2);
    assert_eq!(reloads(&a, "applied"), 1);
    assert_eq!(a.cli_json(&["trust", "show", &b_id])["level"], "trusted");
    let out = b.cli(&call);
    assert_success(&out, &call);

    // B moves to security.blocked_peers: banned and disconnected at once.
    std::fs::write(
        a.config_file(),
        format!("{mount}\n[security]\nblocked_peers = [\"{b_id}\"]\n"),
    )
    .unwrap();
    a.hangup();
    wait_for("A to drop B", WAIT, || {
        let show = a.cli_json(&["trust", "show", &b_id]);
        (show["level"] == "untrusted" && show["banned"] == true && show["connected"] == false)
            .then_some(())
    });
    assert!(!b.cli(&call).status.success());
    let changed = a.audit(&["--event", "trust_changed", "--peer", &b_id]);
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert_eq!(changed[1]["details"]["to"], "untrusted");

    // Unblocked again by the next reload: the ban lifts and B reconnects.
    std::fs::write(a.config_file(), &mount).unwrap();
    a.hangup();
    wait_for("B to reconnect to A", WAIT, || {
        a.connected_to(&b_id).then_some(())
    });
    assert_eq!(a.cli_json(&["trust", "show", &b_id])["level"], "unknown");
    fails_with(&b.cli(&call), "not permitted");
    let out = a.cli(&["audit", "verify"]);
    assert_success(&out, &["audit", "verify"]);
    assert!(a.terminate().success());
}

#[test]
fn reject_unknown_refuses_an_unknown_node() {
    let a = Node::start(Start {
        env: vec![("DAWN_SECURITY__REJECT_UNKNOWN", "true".into())],
        ..Start::default()
    });
    let b = Node::start(Start {
        peers: vec![a.dial_addr()],
        ..Start::default()
    });
    let b_id = b.peer_id();
    let refused = wait_for("A to refuse B", WAIT, || {
        let refused = a.audit(&["--event", "connection_refused", "--peer", &b_id]);
        (!refused.is_empty()).then_some(refused)
    });
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("reject_unknown")
    );
    assert!(!a.connected_to(&b_id));
    let out = b.cli(&[
        "call",
        &format!("{}/system", a.peer_id()),
        "echo",
        "--args",
        r#"{"message":"hi"}"#,
    ]);
    assert!(!out.status.success());
}

#[test]
fn api_auth_failures_are_audited_and_token_rotation_locks_out_the_old_token() {
    let node = Node::start(Start::default());
    let scratch = node._dir.path().to_path_buf();
    let old_copy = scratch.join("old.token");
    std::fs::copy(node.data_root.join("api.token"), &old_copy).unwrap();
    let foreign = scratch.join("foreign.token");
    common::write_foreign_token(&foreign);

    let out = node.cli(&["--token-file", foreign.to_str().unwrap(), "status"]);
    fails_with(&out, "rejected the API token");
    let auth = node.audit(&["--event", "api_auth_failed"]);
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert_eq!(auth[0]["reason"], "wrong token");
    assert_eq!(auth[0]["details"]["path"], "/api/v1/status");

    // The MCP endpoint is guarded (and audited) the same way.
    let addr = std::fs::read_to_string(node.data_root.join("api.addr")).unwrap();
    let mut stream = std::net::TcpStream::connect(addr.trim()).unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let auth = node.audit(&["--event", "api_auth_failed"]);
    assert_eq!(auth.len(), 2, "{auth:?}");
    assert_eq!(auth[1]["reason"], "missing bearer token");
    assert_eq!(auth[1]["details"]["path"], "/mcp");

    // Rotation through the running node: the old token stops working at once.
    let out = node.cli(&["token", "rotate"]);
    assert_success(&out, &["token", "rotate"]);
    assert!(!stdout(&out).contains("dawn_"), "the token leaked");
    let out = node.cli(&["--token-file", old_copy.to_str().unwrap(), "status"]);
    fails_with(&out, "rejected the API token");
    node.cli_json(&["status"]);
    assert_eq!(node.audit(&["--event", "token_rotated"]).len(), 1);
    assert_eq!(node.audit(&["--event", "api_auth_failed"]).len(), 3);
    let out = node.cli(&["audit", "tail", "--event", "nonsense"]);
    fails_with(&out, "unknown audit event type");
}

fn secret(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Runs dawn-node on `data_root` expecting it to exit at once with an
/// error; returns its stderr.
fn node_fails(data_root: &Path, env: &[(&str, &str)]) -> String {
    let log = data_root.with_extension("log");
    let mut child = spawn(
        data_root,
        &log,
        &Start {
            env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            ..Start::default()
        },
    );
    let status = wait_for("dawn-node to give up", WAIT, || child.try_wait().unwrap());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "dawn-node started: {text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

#[test]
fn encrypted_node_key_errors_are_clear_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_str = data.to_str().unwrap();
    let first = secret(dir.path(), "first", "first passphrase\n");
    let second = secret(dir.path(), "second", "second passphrase\n");

    let out = cli_with_env(
        &[
            "--data-root",
            data_str,
            "identity",
            "init",
            "--encrypt",
            "--new-passphrase-file",
            first.to_str().unwrap(),
        ],
        &[],
    );
    assert_success(&out, &["identity", "init"]);
    let shown: Value = serde_json::from_slice(
        &cli_with_env(
            &["--data-root", data_str, "identity", "show", "--json"],
            &[],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(shown["encrypted"], true);
    let peer_id = shown["peer_id"].as_str().unwrap().to_owned();
    let key = data.join("node.key");
    let original = std::fs::read(&key).unwrap();

    // Wrong passphrase, and none at all: one clear error each.
    let log = node_fails(&data, &[("DAWN_PASSPHRASE", "not it at all")]);
    assert!(log.contains("wrong passphrase for key file"), "{log}");
    let log = node_fails(&data, &[]);
    assert!(log.contains("DAWN_PASSPHRASE"), "{log}");
    assert_eq!(std::fs::read(&key).unwrap(), original);

    // The right one starts the node, with the same identity.
    let mut node = Node::start_in(
        tempfile::tempdir().unwrap(),
        data.clone(),
        Start {
            env: vec![("DAWN_PASSPHRASE", "first passphrase".into())],
            ..Start::default()
        },
    );
    assert_eq!(node.peer_id(), peer_id);
    // Key changes need the node stopped.
    let change = [
        "--data-root",
        data_str,
        "identity",
        "change-passphrase",
        "--passphrase-file",
        first.to_str().unwrap(),
        "--new-passphrase-file",
        second.to_str().unwrap(),
    ];
    fails_with(&cli_with_env(&change, &[]), "stopped");
    assert!(node.terminate().success());
    let unlocks = audit_tail(&data, &["--event", "key_unlock_failed"]);
    assert_eq!(unlocks.len(), 2, "{unlocks:?}");
    assert_eq!(audit_tail(&data, &["--event", "key_unlocked"]).len(), 1);

    // Changing the passphrase: a wrong current one changes nothing.
    let wrong = secret(dir.path(), "wrong", "wrong passphrase\n");
    let mut bad_change = change;
    bad_change[5] = wrong.to_str().unwrap();
    fails_with(&cli_with_env(&bad_change, &[]), "wrong passphrase");
    assert_eq!(std::fs::read(&key).unwrap(), original);
    assert_success(&cli_with_env(&change, &[]), &change);
    assert_ne!(std::fs::read(&key).unwrap(), original);
    let log = node_fails(&data, &[("DAWN_PASSPHRASE", "first passphrase")]);
    assert!(log.contains("wrong passphrase"), "{log}");
    let changed = std::fs::read(&key).unwrap();

    // A key file others can read: refused, named, unchanged.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = node_fails(&data, &[("DAWN_PASSPHRASE", "second passphrase")]);
    assert!(
        log.contains("chmod 600") && log.contains("node.key"),
        "{log}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A truncated key file: refused, never replaced.
    std::fs::write(&key, &changed[..changed.len() / 2]).unwrap();
    let log = node_fails(&data, &[("DAWN_PASSPHRASE", "second passphrase")]);
    assert!(log.contains("node.key") && log.contains("corrupt"), "{log}");
    assert_eq!(std::fs::read(&key).unwrap(), &changed[..changed.len() / 2]);
    std::fs::write(&key, &changed).unwrap();

    // Decrypting, then require_passphrase refuses the plain key.
    let decrypt = [
        "--data-root",
        data_str,
        "identity",
        "decrypt",
        "--passphrase-file",
        second.to_str().unwrap(),
    ];
    assert_success(&cli_with_env(&decrypt, &[]), &decrypt);
    let log = node_fails(&data, &[("DAWN_SECURITY__REQUIRE_PASSPHRASE", "true")]);
    assert!(log.contains("security.require_passphrase"), "{log}");
    let shown: Value = serde_json::from_slice(
        &cli_with_env(
            &["--data-root", data_str, "identity", "show", "--json"],
            &[],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(shown["encrypted"], false);
    assert_eq!(shown["peer_id"], peer_id.as_str());
    let out = cli_with_env(&["--data-root", data_str, "audit", "verify"], &[]);
    assert_success(&out, &["audit", "verify"]);
}

#[test]
fn backup_and_restore_are_audited() {
    let mut node = Node::start(Start::default());
    let out_dir = node._dir.path().join("archives");
    let created = node.cli_json(&["backup", "create", "--out", out_dir.to_str().unwrap()]);
    let archive = created["path"].as_str().unwrap().to_owned();
    let records = wait_for("the backup_created record", WAIT, || {
        let records = node.audit(&["--event", "backup_created"]);
        (!records.is_empty()).then_some(records)
    });
    assert_eq!(records[0]["details"]["archive"], archive.as_str());
    assert!(node.terminate().success());

    let out = node.cli(&["backup", "restore", &archive]);
    assert_success(&out, &["backup", "restore"]);
    let restored = node.audit(&["--event", "backup_restored"]);
    assert_eq!(restored.len(), 1, "{restored:?}");
    let out = node.cli(&["audit", "verify"]);
    assert_success(&out, &["audit", "verify"]);
}

#[test]
fn audit_tail_follow_prints_new_records_as_they_are_written() {
    use std::io::BufRead as _;

    let node = Node::start(Start::default());
    let mut follow = common::cli_command(&[
        "--data-root",
        node.data_root.to_str().unwrap(),
        "audit",
        "tail",
        "-n",
        "0",
        "--follow",
        "--json",
        "--event",
        "trust_changed",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // A random but valid peer id: the identity of a throwaway data dir.
    let other = tempfile::tempdir().unwrap();
    let other_str = other.path().join("d");
    let out = cli_with_env(
        &[
            "--data-root",
            other_str.to_str().unwrap(),
            "identity",
            "init",
            "--json",
        ],
        &[],
    );
    assert_success(&out, &["identity", "init"]);
    let peer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let peer = peer["peer_id"].as_str().unwrap().to_owned();
    let out = node.cli(&["trust", "set", &peer, "verified"]);
    assert_success(&out, &["trust", "set"]);
    let line = lines.recv_timeout(WAIT).unwrap().unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["event"], "trust_changed");
    assert_eq!(record["peer"], peer.as_str());
    assert_eq!(record["details"]["to"], "verified");
}
