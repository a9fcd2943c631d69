//! Mounted MCP servers: existing MCP servers that appear as agents of the
//! node (config `mcp.servers`).
//!
//! Each configured server becomes one [`McpServerAgent`], registered for the
//! node's lifetime under the configured id, plus a supervisor task:
//!
//! - **stdio** (`command`): the command runs as a child process in its own
//!   process group, with the node's environment minus its `DAWN_*`
//!   variables plus `env`. Its stderr is read line by line into the node's
//!   log (`mounted server stderr`, field `server`) and the last lines are
//!   kept in [`MountedServerStatus::stderr_tail`]. When it exits, closes
//!   stdout, or stops answering pings, it is killed (with its process group)
//!   and started again after a backoff delay. At node shutdown its stdin is
//!   closed, then SIGTERM, then SIGKILL goes to its process group.
//! - **Streamable HTTP** (`url`): connected with an optional bearer token or
//!   headers; reconnected after a backoff delay when the connection fails.
//!
//! Backoff delays double from `restart.initial_backoff` to
//! `restart.max_backoff` with jitter, and start again from the initial delay
//! once a server has stayed up for `restart.reset_after`. A server that
//! fails to start never stops the node: it is logged, reported in
//! [`MountedServerStatus`] and retried. While a server is down its agent has
//! no tools, resources or prompts and requests that reach it fail with
//! `unreachable` ("mounted server X is not running (restarting in 4s):
//! ..."); calls to its former tools are refused earlier by the node's tool
//! table with `unknown_tool`.
//!
//! Once connected (protocol revision 2025-11-25), the server's tools,
//! resources, resource templates and prompts are listed (all pages) and
//! cached; the server's list-changed notifications refresh the cache, and
//! `notifications/resources/updated` reaches subscribers. Calls are forwarded
//! with the caller's deadline (at most `call_timeout`):
//!
//! - **cancellation**: when the caller cancels, the deadline passes or the
//!   call is abandoned, the server gets `notifications/cancelled`.
//! - **progress**: rmcp sends its own progress token upstream; the agent maps
//!   it back to the call and reports progress under the caller's token,
//!   dropping values that do not increase.
//! - **logging**: a server's `notifications/message` names no request, so it
//!   goes to the caller only when exactly one call to the server is in
//!   flight; otherwise to the node's log.
//! - **sampling, elicitation, roots**: a request from the server is
//!   forwarded to the client of the call in flight; with several calls in
//!   flight, to the most recent one (MCP over stdio does not say which
//!   request it belongs to). With no call in flight, sampling and
//!   elicitation are refused and `roots/list` answers with no roots.
//!
//! The gauge `dawn_mcp_server_up{server}` is 1 while a server is running.

mod agent;
mod client;
mod process;
mod status;
mod supervisor;

use std::sync::{Arc, RwLock};

use tokio::sync::watch;

pub use agent::McpServerAgent;
pub use status::{MountedServerState, MountedServerStatus, MountedTransport};

use crate::{error::NodeError, node::Node};

/// The node's mounted servers, in configuration order.
#[derive(Default)]
pub(crate) struct MountedServers {
    agents: RwLock<Vec<McpServerAgent>>,
}

impl MountedServers {
    /// Every server's status.
    pub(crate) fn statuses(&self) -> Vec<MountedServerStatus> {
        self.agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(McpServerAgent::status)
            .collect()
    }

    /// A receiver of one server's status changes.
    pub(crate) fn watch(&self, id: &str) -> Option<watch::Receiver<MountedServerStatus>> {
        self.agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|a| a.inner.id == id)
            .map(McpServerAgent::watch_status)
    }
}

/// Registers one agent per configured server (without tools until it is
/// connected).
pub(crate) fn register(node: &Node) -> Result<(), NodeError> {
    let shared = &node.shared;
    for config in &shared.config.mcp.servers {
        let agent = McpServerAgent::new(config.clone())?;
        node.add_agent_arc(Arc::new(agent.clone()))?;
        shared
            .mounted
            .agents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(agent);
    }
    Ok(())
}

/// Starts the supervisor of every registered server: connections are made
/// in the background, and failures never fail the node. They stop when the
/// node shuts down.
pub(crate) fn start(node: &Node) {
    let shared = &node.shared;
    for agent in shared
        .mounted
        .agents
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        shared.background_spawn(supervisor::run(
            agent.inner.clone(),
            shared.stop.child_token(),
        ));
    }
}
