//! The node's configuration: schema, defaults, loading and validation.
//!
//! Sources, lowest precedence first: embedded defaults, a config file (TOML
//! or YAML, chosen by extension), environment variables (`DAWN_` + the key
//! path with `__` between levels, e.g. `DAWN_NODE__DATA_ROOT`; also
//! `LOG_LEVEL`, `LOG_FORMAT` and `RUST_LOG`), then command-line flags.
//! Unknown keys are errors. Every key is listed in [`KEYS`], from which
//! `docs/configuration.md` is generated.

mod keys;
mod load;
mod units;

use std::{net::SocketAddr, path::PathBuf};

use dawn_transport::Multiaddr;
use serde::{Deserialize, Serialize};

pub use keys::{KEYS, KeyDoc, render_markdown};
pub use load::{ConfigError, ConfigIssue, ConfigLoader};
pub use units::{ByteSize, HumanDuration, parse_duration, parse_size};

/// The whole configuration of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct DawnConfig {
    /// Identity, data and peer-to-peer addresses.
    pub node: NodeSection,
    /// The HTTP API (status, calls, MCP).
    pub api: ApiSection,
    /// Message sizes and timeouts of the peer-to-peer transport.
    pub transport: TransportSection,
    /// Log level, format and destination.
    pub logging: LoggingSection,
    /// The MCP endpoints for standard clients.
    pub mcp: McpSection,
}

/// `[mcp]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpSection {
    /// Serve `/mcp`, `/mcp/agents/{agent}` and `/mcp/peers/{peer}/agents/{agent}`.
    pub enabled: bool,
    /// Extra `Host` header values accepted besides loopback (DNS-rebinding
    /// protection), e.g. `dawn.example.com` or `dawn.example.com:443`.
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the endpoints (e.g.
    /// `https://app.example.com:443`); empty refuses every request that
    /// carries an `Origin` header.
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted (larger ones get 413).
    pub max_body_size: ByteSize,
    /// Items per page of `tools/list`, `resources/list`, `prompts/list`.
    pub page_size: usize,
    /// Serve the built-in `conformance` agent with the fixtures the official
    /// MCP conformance suite expects (testing only).
    pub conformance_agent: bool,
}

impl Default for McpSection {
    fn default() -> Self {
        McpSection {
            enabled: true,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_size: ByteSize(4 << 20),
            page_size: 100,
            conformance_agent: false,
        }
    }
}

/// `[node]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Where the key, database and other state live.
    pub data_root: PathBuf,
    /// Peer-to-peer listen addresses.
    #[serde(deserialize_with = "de_multiaddrs")]
    pub listen: Vec<Multiaddr>,
    /// Peers to connect to at start (multiaddrs ending in `/p2p/<peer-id>`).
    #[serde(deserialize_with = "de_multiaddrs")]
    pub bootstrap: Vec<Multiaddr>,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_grace: HumanDuration,
    /// How often disconnected bootstrap and remembered peers are redialed.
    pub redial_interval: HumanDuration,
}

/// `[api]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Whether to serve the HTTP API at all.
    pub enabled: bool,
    /// Socket address of the HTTP API.
    #[serde(deserialize_with = "de_socket_addr")]
    pub listen: SocketAddr,
}

/// `[transport]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSection {
    /// Largest RPC message (request or response body).
    pub max_message_size: ByteSize,
    /// Default deadline of a call when the caller gives none.
    pub call_timeout: HumanDuration,
    /// How long dialing a peer and opening a stream may take.
    pub connect_timeout: HumanDuration,
    /// How long an unused connection is kept open.
    pub idle_connection_timeout: HumanDuration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[logging]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or `RUST_LOG`-style
    /// directives such as `info,dawn_transport=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
    /// Also write logs to this file (in addition to stderr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// The default data directory: `$XDG_DATA_HOME/dawn`, else
/// `$HOME/.local/share/dawn`, else `./dawn-data`.
pub fn default_data_root() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("dawn");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/dawn"),
        None => PathBuf::from("dawn-data"),
    }
}

/// Expands a leading `~/` with `$HOME`.
pub fn expand_home(path: PathBuf) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path,
    }
}

fn de_socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{s:?} is not a socket address (use ip:port, e.g. 127.0.0.1:9090)"
        ))
    })
}

fn de_multiaddrs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
    struct V;
    fn parse<E: serde::de::Error>(s: &str) -> Result<Multiaddr, E> {
        s.parse::<Multiaddr>().map_err(|e| {
            E::custom(format!(
                "{s:?} is not a multiaddr ({e}; e.g. /ip4/0.0.0.0/tcp/8000 or /ip4/10.0.0.2/tcp/8000/p2p/<peer-id>)"
            ))
        })
    }
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<Multiaddr>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a multiaddr or a list of multiaddrs")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![parse(v)?])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(parse(&s)?);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

fn addr(s: &str) -> Multiaddr {
    // Constant, known-good addresses.
    s.parse().unwrap_or_else(|_| Multiaddr::empty())
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            data_root: default_data_root(),
            listen: vec![
                addr("/ip4/0.0.0.0/tcp/8000"),
                addr("/ip4/0.0.0.0/udp/8000/quic-v1"),
            ],
            bootstrap: Vec::new(),
            shutdown_grace: HumanDuration::secs(10),
            redial_interval: HumanDuration::secs(30),
        }
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

impl Default for TransportSection {
    fn default() -> Self {
        TransportSection {
            max_message_size: ByteSize(4 << 20),
            call_timeout: HumanDuration::secs(30),
            connect_timeout: HumanDuration::secs(10),
            idle_connection_timeout: HumanDuration::secs(120),
        }
    }
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection {
            level: "info".into(),
            format: LogFormat::Text,
            file: None,
        }
    }
}

impl DawnConfig {
    /// A configuration for tests and embedded use: data in `data_root`, P2P
    /// on a free TCP port of 127.0.0.1, API on a free port of 127.0.0.1.
    pub fn ephemeral(data_root: impl Into<PathBuf>) -> Self {
        let mut config = DawnConfig::default();
        config.node.data_root = data_root.into();
        config.node.listen = vec![addr("/ip4/127.0.0.1/tcp/0")];
        config.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }

    /// Checks the values that types alone cannot; returns every problem.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut issue = |key: &str, message: String| {
            issues.push(ConfigIssue {
                key: key.to_owned(),
                message,
                source: None,
            })
        };
        for a in &self.node.bootstrap {
            if !a
                .iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
            {
                issue(
                    "node.bootstrap",
                    format!(
                        "{a} has no /p2p/<peer-id> suffix; the peer's identity must be known to connect securely"
                    ),
                );
            }
        }
        if self.node.data_root.as_os_str().is_empty() {
            issue("node.data_root", "must not be empty".into());
        }
        let size = self.transport.max_message_size.0;
        if !(1024..=(64 << 20)).contains(&size) {
            issue(
                "transport.max_message_size",
                format!(
                    "{} is out of range (allowed: 1KiB to 64MiB)",
                    self.transport.max_message_size
                ),
            );
        }
        for (key, d) in [
            ("transport.call_timeout", self.transport.call_timeout),
            ("transport.connect_timeout", self.transport.connect_timeout),
            (
                "transport.idle_connection_timeout",
                self.transport.idle_connection_timeout,
            ),
            ("node.redial_interval", self.node.redial_interval),
        ] {
            if d.0.is_zero() || d.0 > std::time::Duration::from_secs(86_400) {
                issue(
                    key,
                    format!("{d} is out of range (allowed: more than 0s, at most 1d)"),
                );
            }
        }
        if self.node.shutdown_grace.0 > std::time::Duration::from_secs(3600) {
            issue(
                "node.shutdown_grace",
                format!(
                    "{} is out of range (allowed: 0s to 1h)",
                    self.node.shutdown_grace
                ),
            );
        }
        if !(1..=1000).contains(&self.mcp.page_size) {
            issue(
                "mcp.page_size",
                format!(
                    "{} is out of range (allowed: 1 to 1000)",
                    self.mcp.page_size
                ),
            );
        }
        if !(1024..=(256 << 20)).contains(&self.mcp.max_body_size.0) {
            issue(
                "mcp.max_body_size",
                format!(
                    "{} is out of range (allowed: 1KiB to 256MiB)",
                    self.mcp.max_body_size
                ),
            );
        }
        if let Err(e) = dawn_observe::logging::parse_level(&self.logging.level) {
            issue("logging.level", e);
        }
        issues
    }
}
