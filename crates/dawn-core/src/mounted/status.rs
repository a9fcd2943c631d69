//! What the node reports about each mounted server (for health endpoints,
//! `dawn-cli` and tests).

use std::time::Duration;

use serde::{Serialize, Serializer};

/// Most stderr lines kept per server in [`MountedServerStatus::stderr_tail`].
pub(crate) const STDERR_TAIL_LINES: usize = 20;

/// How the node talks to a mounted server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountedTransport {
    /// A child process spoken to over stdin/stdout.
    Stdio,
    /// A Streamable HTTP endpoint.
    Http,
}

/// Where a mounted server is in its life cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MountedServerState {
    /// Spawning or connecting, the MCP handshake, or the first listing.
    Starting,
    /// Connected; its tools, resources and prompts are offered.
    Running,
    /// Down; the next start (stdio) or connection (HTTP) is scheduled.
    Restarting {
        /// Consecutive failed starts or lost connections, from 1. Back to 0
        /// once the server stayed up for `restart.reset_after`.
        attempt: u32,
        /// Time left until the next attempt.
        #[serde(rename = "next_in_ms", serialize_with = "millis")]
        next_in: Duration,
        /// Why the last start failed or the connection ended.
        last_error: String,
    },
    /// Cannot be started without a configuration change (for example the
    /// environment variable holding its token is not set); not retried.
    Failed {
        /// Why.
        error: String,
    },
    /// The node is shutting down; the server was stopped.
    Stopped,
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The status of one mounted MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MountedServerStatus {
    /// The agent id (`mcp.servers[].id`).
    pub id: String,
    /// stdio or Streamable HTTP.
    pub transport: MountedTransport,
    /// The command (stdio) or the URL without credentials and query (HTTP).
    pub target: String,
    /// Life-cycle state.
    pub state: MountedServerState,
    /// How many times the node started the server again (stdio) or
    /// reconnected (HTTP) after the first attempt, successful or not.
    pub restarts: u64,
    /// Process id of the running child (stdio only).
    pub pid: Option<u32>,
    /// Name and version the server reported in its MCP handshake.
    pub server: Option<String>,
    /// Number of tools currently offered.
    pub tools: usize,
    /// Number of resources currently offered.
    pub resources: usize,
    /// Number of prompts currently offered.
    pub prompts: usize,
    /// The most recent failure, kept after the server recovered.
    pub last_error: Option<String>,
    /// The last lines the child wrote to stderr (stdio only), oldest first.
    pub stderr_tail: Vec<String>,
}

impl MountedServerStatus {
    pub(crate) fn new(id: String, transport: MountedTransport, target: String) -> Self {
        MountedServerStatus {
            id,
            transport,
            target,
            state: MountedServerState::Starting,
            restarts: 0,
            pid: None,
            server: None,
            tools: 0,
            resources: 0,
            prompts: 0,
            last_error: None,
            stderr_tail: Vec::new(),
        }
    }

    /// Whether the server is connected and its tools are offered.
    pub fn is_running(&self) -> bool {
        self.state == MountedServerState::Running
    }
}
