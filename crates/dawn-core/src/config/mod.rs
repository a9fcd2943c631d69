//! The node's configuration: schema, defaults, loading and validation.
//!
//! Sources, lowest precedence first: embedded defaults, a config file (TOML
//! or YAML, chosen by extension), environment variables (`DAWN_` + the key
//! path with `__` between levels, e.g. `DAWN_NODE__DATA_ROOT`; also
//! `LOG_LEVEL`, `LOG_FORMAT` and `RUST_LOG`), then command-line flags.
//! Unknown keys are errors. Every key is listed in [`KEYS`], from which
//! `docs/configuration.md` is generated.

mod backup;
mod discovery;
mod keys;
mod load;
mod reload;
mod security;
mod units;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use dawn_transport::Multiaddr;
use serde::{Deserialize, Serialize};

pub use backup::BackupSection;
pub use discovery::{DiscoverySection, RegistrySection};
pub use keys::{KEYS, KeyDoc, render_markdown};
pub use load::{ConfigError, ConfigIssue, ConfigLoader};
pub use reload::{RELOADABLE_KEYS, changed_keys, is_reloadable};
pub use security::{AuditAllowed, AuditSection, SecuritySection};
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
    /// Rate limits, concurrency limits, circuit breakers, retries and
    /// deadlines of calls (`dawn_resilience::ResilienceConfig`).
    pub resilience: dawn_resilience::ResilienceConfig,
    /// Trust, authorization policy, audit log and the node key at rest.
    pub security: SecuritySection,
    /// Metrics, health checks and alerts (`dawn_observe::config`).
    pub observability: dawn_observe::config::ObservabilityConfig,
    /// How nodes find each other: mDNS, Kademlia, dialing discovered peers,
    /// the address book.
    pub discovery: DiscoverySection,
    /// The mesh registry: announcements, liveness, anti-entropy.
    pub registry: RegistrySection,
    /// Scheduled backups of the node's state.
    pub backup: BackupSection,
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
    /// External MCP servers mounted as agents of this node (`[[mcp.servers]]`).
    pub servers: Vec<MountedServerConfig>,
}

/// One external MCP server mounted as an agent (`[[mcp.servers]]`): a
/// command spoken to over stdio, or a Streamable HTTP URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountedServerConfig {
    /// The agent id the server's tools, resources and prompts appear under.
    pub id: String,
    /// What the server offers; defaults to the server's own description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// stdio: the program to run (a path, or a name looked up in `PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// stdio: arguments of `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// stdio: environment variables set for `command`, on top of the node's
    /// environment (without its `DAWN_*` variables).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// stdio: working directory of `command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP: the server's MCP endpoint (`http://` or `https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Streamable HTTP: name of an environment variable of the node holding
    /// a bearer token for the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    /// Streamable HTTP: extra headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How long connecting (spawning, MCP handshake, first listing) may take.
    #[serde(default = "MountedServerConfig::default_startup_timeout")]
    pub startup_timeout: HumanDuration,
    /// Longest a forwarded call may take (the caller's deadline may be shorter).
    #[serde(default = "MountedServerConfig::default_call_timeout")]
    pub call_timeout: HumanDuration,
    /// How the server is restarted (stdio) or reconnected (HTTP) after a failure.
    #[serde(default)]
    pub restart: RestartPolicy,
}

impl MountedServerConfig {
    fn default_startup_timeout() -> HumanDuration {
        HumanDuration::secs(30)
    }

    fn default_call_timeout() -> HumanDuration {
        HumanDuration::secs(300)
    }

    /// A stdio server running `command` with `args`, with default timeouts.
    pub fn stdio(id: impl Into<String>, command: impl Into<String>, args: Vec<String>) -> Self {
        MountedServerConfig {
            command: Some(command.into()),
            args,
            ..MountedServerConfig::empty(id.into())
        }
    }

    /// A Streamable HTTP server at `url`, with default timeouts.
    pub fn http(id: impl Into<String>, url: impl Into<String>) -> Self {
        MountedServerConfig {
            url: Some(url.into()),
            ..MountedServerConfig::empty(id.into())
        }
    }

    fn empty(id: String) -> Self {
        MountedServerConfig {
            id,
            description: None,
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            bearer_token_env: None,
            headers: BTreeMap::new(),
            startup_timeout: Self::default_startup_timeout(),
            call_timeout: Self::default_call_timeout(),
            restart: RestartPolicy::default(),
        }
    }

    fn validate(&self, key: &str, issue: &mut dyn FnMut(String, String)) {
        if let Err(e) = crate::address::AgentId::new(self.id.as_str()) {
            issue(format!("{key}.id"), e.to_string());
        }
        match (&self.command, &self.url) {
            (Some(_), Some(_)) => issue(
                key.to_owned(),
                "set either command (stdio) or url (Streamable HTTP), not both".into(),
            ),
            (None, None) => issue(
                key.to_owned(),
                "set command (a program spoken to over stdio) or url (a Streamable HTTP endpoint)"
                    .into(),
            ),
            (Some(command), None) => {
                if command.trim().is_empty() {
                    issue(format!("{key}.command"), "must not be empty".into());
                }
                for (field, set) in [
                    ("bearer_token_env", self.bearer_token_env.is_some()),
                    ("headers", !self.headers.is_empty()),
                ] {
                    if set {
                        issue(
                            format!("{key}.{field}"),
                            "applies only to url (Streamable HTTP) servers".into(),
                        );
                    }
                }
                for name in self.env.keys() {
                    if name.is_empty() || name.contains('=') || name.contains('\0') {
                        issue(
                            format!("{key}.env"),
                            format!("{name:?} is not a valid environment variable name"),
                        );
                    }
                }
            }
            (None, Some(url)) => {
                match url.parse::<axum::http::Uri>() {
                    Ok(uri)
                        if matches!(uri.scheme_str(), Some("http" | "https"))
                            && uri.host().is_some_and(|h| !h.is_empty()) => {}
                    _ => issue(
                        format!("{key}.url"),
                        format!("{url:?} is not an http:// or https:// URL"),
                    ),
                }
                for (field, set) in [
                    ("args", !self.args.is_empty()),
                    ("env", !self.env.is_empty()),
                    ("cwd", self.cwd.is_some()),
                ] {
                    if set {
                        issue(
                            format!("{key}.{field}"),
                            "applies only to command (stdio) servers".into(),
                        );
                    }
                }
                if let Some(var) = &self.bearer_token_env {
                    if var.is_empty() || var.contains('=') || var.contains('\0') {
                        issue(
                            format!("{key}.bearer_token_env"),
                            format!("{var:?} is not a valid environment variable name"),
                        );
                    }
                    if self
                        .headers
                        .keys()
                        .any(|h| h.eq_ignore_ascii_case("authorization"))
                    {
                        issue(
                            format!("{key}.headers"),
                            "sets Authorization although bearer_token_env is set; use one of them"
                                .into(),
                        );
                    }
                }
                for (name, value) in &self.headers {
                    if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        issue(
                            format!("{key}.headers"),
                            format!("{name:?} is not a valid HTTP header name"),
                        );
                    } else if axum::http::HeaderValue::from_str(value).is_err() {
                        issue(
                            format!("{key}.headers"),
                            format!("the value of {name} is not a valid HTTP header value"),
                        );
                    }
                }
            }
        }
        let day = std::time::Duration::from_secs(86_400);
        for (field, d) in [
            ("startup_timeout", self.startup_timeout),
            ("call_timeout", self.call_timeout),
            ("restart.initial_backoff", self.restart.initial_backoff),
            ("restart.max_backoff", self.restart.max_backoff),
            ("restart.reset_after", self.restart.reset_after),
        ] {
            if d.0.is_zero() || d.0 > day {
                issue(
                    format!("{key}.{field}"),
                    format!("{d} is out of range (allowed: more than 0s, at most 1d)"),
                );
            }
        }
        if self.restart.initial_backoff > self.restart.max_backoff {
            issue(
                format!("{key}.restart.initial_backoff"),
                format!(
                    "{} is more than restart.max_backoff ({})",
                    self.restart.initial_backoff, self.restart.max_backoff
                ),
            );
        }
    }
}

/// `mcp.servers[].restart`: delays between restarts (stdio) or reconnects
/// (HTTP) of a mounted server.
///
/// The delay doubles from `initial_backoff` up to `max_backoff`, with random
/// jitter (each delay lies between half and all of its nominal value), and
/// starts again from `initial_backoff` once the server has stayed up for
/// `reset_after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// The first delay.
    pub initial_backoff: HumanDuration,
    /// The largest delay.
    pub max_backoff: HumanDuration,
    /// Uptime after which the next failure starts again from `initial_backoff`.
    pub reset_after: HumanDuration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial_backoff: HumanDuration::secs(1),
            max_backoff: HumanDuration::secs(60),
            reset_after: HumanDuration::secs(60),
        }
    }
}

impl Default for McpSection {
    fn default() -> Self {
        McpSection {
            enabled: true,
            allowed_hosts: Vec::new(),
            allowed_origins: ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
                .map(String::from)
                .to_vec(),
            max_body_size: ByteSize(4 << 20),
            page_size: 100,
            conformance_agent: false,
            servers: Vec::new(),
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
    /// Require the bearer token on `/api` and `/mcp` routes. Only for tests
    /// with clients that cannot send headers; refused unless the API listens
    /// on a loopback address.
    pub require_token: bool,
}

/// `[transport]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSection {
    /// Largest RPC message (request or response body).
    pub max_message_size: ByteSize,
    /// How long dialing a peer and opening a stream may take.
    pub connect_timeout: HumanDuration,
    /// How long an unused connection is kept open.
    pub idle_connection_timeout: HumanDuration,
    /// Above `high_watermark` connected peers, the least useful are
    /// disconnected down to this many; discovered peers are dialed while
    /// fewer are connected.
    pub low_watermark: usize,
    /// See `low_watermark`.
    pub high_watermark: usize,
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
    /// When the log file is rotated: `never`, `daily`, or a size such as
    /// `100MiB`.
    pub rotation: dawn_observe::logging::LogRotation,
    /// Rotated log files kept besides the current one.
    pub keep: usize,
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
            require_token: true,
        }
    }
}

impl Default for TransportSection {
    fn default() -> Self {
        TransportSection {
            max_message_size: ByteSize(4 << 20),
            connect_timeout: HumanDuration::secs(10),
            idle_connection_timeout: HumanDuration::secs(120),
            low_watermark: 64,
            high_watermark: 96,
        }
    }
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection {
            level: "info".into(),
            format: LogFormat::Text,
            file: None,
            rotation: dawn_observe::logging::LogRotation::Never,
            keep: 7,
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
        if !self.api.require_token && !self.api.listen.ip().is_loopback() {
            issue(
                "api.require_token",
                format!(
                    "false is only allowed when api.listen is a loopback address, not {}",
                    self.api.listen
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
        self.security
            .validate(&mut |key, message| issue(key, message));
        self.discovery
            .validate(&mut |key, message| issue(key, message));
        self.registry
            .validate(&mut |key, message| issue(key, message));
        self.backup
            .validate(&mut |key, message| issue(key, message));
        if self.transport.low_watermark > self.transport.high_watermark
            || !(1..=10_000).contains(&self.transport.high_watermark)
        {
            issue(
                "transport.low_watermark",
                format!(
                    "{} must not exceed transport.high_watermark ({}), which must be 1 to 10000",
                    self.transport.low_watermark, self.transport.high_watermark
                ),
            );
        }
        for invalid in self.resilience.validate() {
            issue(&invalid.key, invalid.message);
        }
        if let Err(e) = dawn_observe::logging::parse_level(&self.logging.level) {
            issue("logging.level", e);
        }
        if self.logging.keep > 1000 {
            issue(
                "logging.keep",
                format!("{} is out of range (allowed: 0 to 1000)", self.logging.keep),
            );
        }
        for (key, message) in self.observability.validate() {
            issue(&key, message);
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, server) in self.mcp.servers.iter().enumerate() {
            let key = format!("mcp.servers[{i}]");
            server.validate(&key, &mut |key, message| issue(&key, message));
            // The built-in agents: `system`, and `conformance` when enabled.
            if server.id == crate::system_agent::SYSTEM_AGENT_ID
                || (self.mcp.conformance_agent && server.id == "conformance")
            {
                issue(
                    &format!("{key}.id"),
                    format!("{:?} is the id of a built-in agent", server.id),
                );
            } else if !seen.insert(server.id.as_str()) {
                issue(
                    &format!("{key}.id"),
                    format!("{:?} is used by another mounted server", server.id),
                );
            }
        }
        issues
    }
}
