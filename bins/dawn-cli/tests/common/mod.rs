//! Shared helpers for dawn-cli integration tests: real `dawn-node`
//! processes in temporary data directories, and running the CLI.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    ffi::OsStr,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;
use tempfile::TempDir;

/// How long to wait for a node to publish its API, or for the mesh to settle.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Environment variables that would point the CLI or node somewhere else.
const ISOLATED_ENV: &[&str] = &["DAWN_NODE__DATA_ROOT", "DAWN_API_TOKEN", "DAWN_API_URL"];

pub fn cli_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_dawn-cli"))
}

/// The `dawn-node` binary next to the CLI. `cargo test --workspace` (the
/// test command) builds it in the same build, for dawn-node's own
/// integration tests. `cargo test -p dawn-cli` does not: then the one an
/// earlier build left there is used, and it is built once per test process
/// only if there is none (after changing the node, test with `--workspace`
/// or run `cargo test --workspace --no-run` first).
pub fn node_bin() -> &'static Path {
    static NODE_BIN: OnceLock<PathBuf> = OnceLock::new();
    NODE_BIN.get_or_init(|| {
        let path = cli_bin().with_file_name(format!("dawn-node{}", std::env::consts::EXE_SUFFIX));
        if !path.exists() {
            let status = workspace_test_build()
                .status()
                .expect("cannot run cargo test --workspace --no-run");
            assert!(status.success(), "cargo test --workspace --no-run failed");
        }
        assert!(
            path.exists(),
            "dawn-node not found at {} after building it",
            path.display()
        );
        path
    })
}

/// `cargo test -q --workspace --no-run` (with `--release` when this test
/// is a release build): the build `cargo test --workspace` makes, dawn-node
/// included, so it is a no-op after the test command.
///
/// The variables Cargo sets for this test process (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`, ...) are removed: build scripts such as ring's rerun
/// when they differ, and the dependency tree above them would be rebuilt as
/// another variant.
pub fn workspace_test_build() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .args(["test", "-q", "--workspace", "--no-run"]);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_for_this_crate = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "OUT_DIR",
        ]
        .iter()
        .any(|prefix| key.starts_with(prefix));
        if set_for_this_crate {
            build.env_remove(key.as_ref());
        }
    }
    if cli_bin().parent().and_then(Path::file_name) == Some(OsStr::new("release")) {
        build.arg("--release");
    }
    build
}

/// Polls `probe` until it returns `Some`, or panics after `timeout` with
/// `what` and the last diagnostic from `describe`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A running `dawn-node`; killed when dropped.
pub struct TestNode {
    child: Child,
    dir: TempDir,
    pub data_root: PathBuf,
    log: PathBuf,
}

impl TestNode {
    /// Starts a node on loopback with OS-chosen ports, connecting to `peers`,
    /// and waits until its API address is published.
    pub fn start(peers: &[&str]) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let data_root = dir.path().join("data");
        let log = dir.path().join("node.log");
        let child = spawn_node(&data_root, &log, peers);
        let mut node = TestNode {
            child,
            dir,
            data_root,
            log,
        };
        node.wait_for_api();
        node
    }

    /// Sends SIGTERM and waits for the process to exit; returns its status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let child = &mut self.child;
        wait_for("dawn-node to exit after SIGTERM", STARTUP_TIMEOUT, || {
            child.try_wait().unwrap()
        })
    }

    /// Starts the node again on the same data directory (after
    /// [`TestNode::terminate`]), without any `--peer`.
    pub fn restart(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_some(),
            "restart of a running node"
        );
        let log = self.dir.path().join("node-restarted.log");
        self.child = spawn_node(&self.data_root, &log, &[]);
        self.log = log;
        self.wait_for_api();
    }

    fn wait_for_api(&mut self) {
        let addr_file = self.data_root.join("api.addr");
        let log = self.log.clone();
        let child = &mut self.child;
        wait_for("the node's api.addr", STARTUP_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "dawn-node exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            addr_file.exists().then_some(())
        });
    }

    /// What the node wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A scratch directory that lives as long as the node.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the CLI against this node (`--data-root` first).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut full: Vec<&OsStr> = vec![OsStr::new("--data-root"), self.data_root.as_os_str()];
        full.extend(args.iter().map(OsStr::new));
        cli(&full)
    }

    /// Runs the CLI with `--json`, expects success and parses stdout.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.push("--json");
        let out = self.cli(&full);
        assert_success(&out, &full);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{full:?} printed invalid JSON ({e}):\n{}", stdout(&out)))
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> String {
        self.cli_json(&["status"])["node_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A TCP listen address of the node, with `/p2p/<peer-id>`.
    pub fn dial_addr(&self) -> String {
        let status = self.cli_json(&["status"]);
        status["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/") && a.contains("/p2p/"))
            .unwrap_or_else(|| panic!("no loopback TCP address in {status}"))
            .to_owned()
    }
}

/// Spawns `dawn-node` on loopback with OS-chosen ports.
fn spawn_node(data_root: &Path, log: &Path, peers: &[&str]) -> Child {
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
    for peer in peers {
        command.args(["--peer", peer]);
    }
    for name in ISOLATED_ENV {
        command.env_remove(name);
    }
    command.spawn().expect("cannot start dawn-node")
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dawn-cli <args>` with a clean environment (no DAWN_* variables, no
/// RUST_LOG, backtraces on), for tests that drive the process themselves.
pub fn cli_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut command = Command::new(cli_bin());
    command
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG");
    for name in ISOLATED_ENV {
        command.env_remove(name);
    }
    command
}

/// Runs the CLI with a clean environment (no DAWN_* variables, backtraces
/// on so that a panic would show).
pub fn cli<S: AsRef<OsStr>>(args: &[S]) -> Output {
    cli_with_env(args, &[])
}

/// Like [`cli`], with extra environment variables.
pub fn cli_with_env<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &OsStr)]) -> Output {
    let mut command = Command::new(cli_bin());
    command
        .args(args)
        .stdin(Stdio::null())
        .env("RUST_BACKTRACE", "1");
    for name in ISOLATED_ENV {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("cannot run dawn-cli")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_success<S: std::fmt::Debug>(out: &Output, args: &[S]) {
    assert!(
        out.status.success(),
        "dawn-cli {args:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Asserts a failure with the given exit code reported as one line on
/// stderr (no panic, no backtrace) and returns that line.
pub fn assert_one_line_failure(out: &Output, code: i32) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "unexpected exit status {}; stdout: {}; stderr: {err}",
        out.status,
        stdout(out)
    );
    assert!(
        !err.contains("panicked") && !err.to_lowercase().contains("backtrace"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    err.trim_end().to_owned()
}

/// Writes a well-formed token that no node uses, mode 0600.
pub fn write_foreign_token(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, format!("dawn_{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
