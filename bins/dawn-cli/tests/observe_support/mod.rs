//! Helpers for the observability process tests: `dawn-node` processes with a
//! config file, extra flags and environment; plain HTTP requests to their
//! API; a small HTTP receiver for alert notifications; and reading
//! Prometheus scrapes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{self, STARTUP_TIMEOUT, wait_for};

/// Generous deadline for anything the mesh or the alert engine must do.
pub const WAIT: Duration = Duration::from_secs(60);

/// How to start a node.
#[derive(Default, Clone)]
pub struct NodeOptions {
    /// Written to `<dir>/config.toml` and passed with `--config` when set.
    pub config: Option<String>,
    /// `--peer` addresses.
    pub peers: Vec<String>,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

/// A running `dawn-node`; killed when dropped.
pub struct Node {
    child: Child,
    dir: TempDir,
    pub data_root: PathBuf,
    pub log: PathBuf,
    pub api: String,
}

impl Node {
    pub fn start(options: &NodeOptions) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let data_root = dir.path().join("data");
        let log = dir.path().join("node.stderr");
        let mut command = Command::new(common::node_bin());
        command
            .arg("--data-root")
            .arg(&data_root)
            .args([
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--api-listen",
                "127.0.0.1:0",
            ])
            .args(&options.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        if let Some(config) = &options.config {
            let path = dir.path().join("config.toml");
            std::fs::write(&path, config).unwrap();
            command.arg("--config").arg(path);
        }
        for peer in &options.peers {
            command.args(["--peer", peer]);
        }
        for name in [
            "DAWN_NODE__DATA_ROOT",
            "DAWN_API_TOKEN",
            "DAWN_API_URL",
            "RUST_LOG",
            "LOG_LEVEL",
            "LOG_FORMAT",
        ] {
            command.env_remove(name);
        }
        for (k, v) in &options.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("cannot start dawn-node");
        let addr_file = data_root.join("api.addr");
        let log_path = log.clone();
        wait_for("the node's api.addr", STARTUP_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "dawn-node exited with {status}:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::fs::read_to_string(&addr_file)
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(|_| ())
        });
        let api = std::fs::read_to_string(&addr_file)
            .unwrap()
            .trim()
            .to_owned();
        Node {
            child,
            dir,
            data_root,
            log,
            api,
        }
    }

    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_root.join("api.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// GET with the API token.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.api, path, Some(&self.token()))
    }

    /// GET without a token.
    pub fn get_anonymous(&self, path: &str) -> (u16, String) {
        http_get(&self.api, path, None)
    }

    /// `GET /metrics` (no token), checked for status 200.
    pub fn scrape(&self) -> String {
        let (status, body) = self.get_anonymous("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    pub fn status(&self) -> Value {
        let (code, body) = self.get("/api/v1/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn peer_id(&self) -> String {
        self.status()["node_id"].as_str().unwrap().to_owned()
    }

    /// The loopback TCP address with `/p2p/<id>`.
    pub fn dial_addr(&self) -> String {
        let status = self.status();
        status["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
            .unwrap()
            .to_owned()
    }

    pub fn peers_connected(&self) -> u64 {
        self.status()["peers_connected"].as_u64().unwrap_or(0)
    }

    /// Runs `dawn-cli --data-root <data> <args>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut full: Vec<&OsStr> = vec![OsStr::new("--data-root"), self.data_root.as_os_str()];
        full.extend(args.iter().map(OsStr::new));
        common::cli(&full)
    }

    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
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
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET (Connection: close).
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP server on 127.0.0.1 that records every request and answers 200.
pub struct Receiver {
    pub addr: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Receiver { addr, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until some request satisfies `pred`; returns it.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Received) -> bool) -> Received {
        wait_for(what, WAIT, || self.received().into_iter().find(|r| pred(r)))
    }
}

fn serve(stream: TcpStream, sink: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        sink.lock().unwrap().push(Received {
            method,
            path,
            headers,
            body,
        });
        let stream = reader.get_mut();
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// The value of `name` summed over the series whose labels include all of
/// `labels` (0 when there is none).
pub fn metric(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    dawn_observe::exposition::parse_samples(scrape)
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// `promtool`, or `None` with a message. Under `DAWN_REQUIRE_TOOLS=1` (set
/// by `cargo xtask ci`, which installs it) a missing promtool fails the test.
pub fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let required = std::env::var("DAWN_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "promtool is required (DAWN_REQUIRE_TOOLS=1) but not on PATH: install Debian's \
             `prometheus` package (apt-get install -y prometheus), or run `cargo xtask ci`, which does"
        );
        eprintln!(
            "SKIPPED the promtool checks: promtool is not on PATH (apt-get install -y prometheus)"
        );
    }
    found
}

/// Runs `promtool check metrics` on a scrape; panics with its output on failure.
pub fn promtool_check_metrics(promtool: &Path, scrape: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
