//! Helpers for the backup and crash-safety process tests: `dawn-node` processes on a given
//! data directory, a minimal HTTP client for the node API, archive tampering and directory
//! snapshots.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::common::{STARTUP_TIMEOUT, node_bin, wait_for};

/// A `dawn-node` on an explicit data directory; killed (SIGKILL) when dropped.
pub struct Node {
    pub child: Child,
    pub data_root: PathBuf,
    pub log: PathBuf,
}

impl Node {
    /// Starts `dawn-node` on `data_root` (loopback, OS-chosen ports) with `extra` arguments,
    /// and waits for it to publish a fresh API address. A stale `api.addr` left by a killed
    /// node is removed first.
    pub fn start(data_root: &Path, log: &Path, extra: &[&str]) -> Node {
        let _ = std::fs::remove_file(data_root.join("api.addr"));
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
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log).unwrap());
        for name in ["DAWN_NODE__DATA_ROOT", "DAWN_API_TOKEN", "DAWN_API_URL"] {
            command.env_remove(name);
        }
        let mut child = command.spawn().expect("cannot start dawn-node");
        let addr_file = data_root.join("api.addr");
        wait_for("the node's api.addr", STARTUP_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "dawn-node exited with {status}:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            addr_file.exists().then_some(())
        });
        Node {
            child,
            data_root: data_root.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    /// An API client for this node (address and token from the data directory).
    pub fn api(&self) -> Api {
        Api::of(&self.data_root)
    }

    /// SIGTERM, and wait for the exit; panics unless it exits 0.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let child = &mut self.child;
        let status = wait_for("dawn-node to exit", STARTUP_TIMEOUT, || {
            child.try_wait().unwrap()
        });
        assert!(status.success(), "dawn-node exited with {status}");
    }

    /// SIGKILL, and reap the process.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 client for the node API (one connection per request).
#[derive(Clone, Debug)]
pub struct Api {
    pub addr: String,
    token: String,
}

impl Api {
    pub fn of(data_root: &Path) -> Api {
        Api {
            addr: std::fs::read_to_string(data_root.join("api.addr"))
                .unwrap()
                .trim()
                .to_owned(),
            token: std::fs::read_to_string(data_root.join("api.token"))
                .unwrap()
                .trim()
                .to_owned(),
        }
    }

    /// Sends a request; returns the status and the JSON body, or an error if the connection
    /// failed (for example because the node was killed).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Value)> {
        let mut stream = TcpStream::connect(&self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "incomplete response")
        })?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status"))?;
        let value = serde_json::from_str(body).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e}: {body}"))
        })?;
        Ok((status, value))
    }

    /// Like [`Api::try_request`], expecting success (2xx).
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, value) = self
            .try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status}: {value}"
        );
        value
    }

    /// Every state entry of `agent`, key to value.
    pub fn agent_state(&self, agent: &str) -> BTreeMap<String, Value> {
        let answer = self.request("GET", &format!("/api/v1/agents/{agent}/state"), None);
        answer["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["key"].as_str().unwrap().to_owned(), e["value"].clone()))
            .collect()
    }

    /// Every stored trust record, peer to level.
    pub fn trust_levels(&self) -> BTreeMap<String, String> {
        let answer = self.request("GET", "/api/v1/trust", None);
        answer["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["has_record"] == true)
            .map(|p| {
                (
                    p["peer_id"].as_str().unwrap().to_owned(),
                    p["level"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// Every file under `dir` with its bytes, except `node.lock` (whose content is the pid of
/// whoever locked the directory last).
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if path.file_name().is_some_and(|n| n != "node.lock") {
                let rel = path.strip_prefix(base).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Names in `dir` containing `restore` (staging or moved-aside directories).
pub fn restore_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.contains("restore"))
        .collect()
}

/// An archive's entries, in order.
pub fn read_entries(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let file = File::open(archive).unwrap();
    let mut tar = tar::Archive::new(zstd::Decoder::new(file).unwrap());
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (path, bytes)
        })
        .collect()
}

/// Writes entries as a `.tar.zst`.
pub fn write_entries(archive: &Path, entries: &[(String, Vec<u8>)]) {
    let file = File::create(archive).unwrap();
    let mut tar = tar::Builder::new(zstd::Encoder::new(file, 3).unwrap());
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// A small deterministic pseudo-random generator (xorshift), seeded per test run and printed
/// so a failing run can be repeated with `DAWN_TEST_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_time() -> Rng {
        let seed = std::env::var("DAWN_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("random seed: DAWN_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}
