//! The embeddable Dawn node.
//!
//! A [`Node`] hosts [`Agent`]s that speak MCP (tools, resources, prompts) and
//! joins a libp2p mesh in which any node can call any agent on any other
//! node. Programs embed it with [`NodeBuilder`]; the `dawn-node` binary is a
//! thin wrapper around the same API.
//!
//! ```no_run
//! use dawn_core::{Agent, CallContext, CallError, DawnConfig, NodeBuilder, mcp};
//! use serde_json::json;
//!
//! struct Greeter;
//!
//! #[async_trait::async_trait]
//! impl Agent for Greeter {
//!     fn id(&self) -> &str { "greeter" }
//!     fn description(&self) -> String { "Says hello".into() }
//!     fn tools(&self) -> Vec<mcp::Tool> {
//!         let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]});
//!         vec![mcp::Tool::new("greet", "Greets someone", schema.as_object().cloned().unwrap_or_default())]
//!     }
//!     async fn call_tool(&self, _ctx: &CallContext, _tool: &str, args: mcp::JsonObject)
//!         -> Result<mcp::CallToolResult, CallError> {
//!         let name = args.get("name").and_then(|v| v.as_str()).unwrap_or("world");
//!         Ok(mcp::CallToolResult::success(vec![mcp::ContentBlock::text(format!("Hello, {name}!"))]))
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let node = NodeBuilder::new(DawnConfig::ephemeral("/tmp/dawn-example"))
//!     .agent(Greeter)
//!     .start()
//!     .await?;
//! let result = node.call_tool(&"greeter".parse()?, "greet", json!({"name": "Ada"})).await?;
//! println!("{result:?}");
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! See `examples/embed.rs` for a complete program with two nodes.

mod address;
mod agent;
mod agent_state;
mod agent_table;
pub mod backup;
pub mod config;
mod conformance_agent;
mod data_dir;
mod descriptor;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod generated_docs;
pub mod http_api;
pub mod jsonrpc;
pub mod mcp_gateway;
pub mod mounted;
mod node;
mod observe;
mod observe_api;
pub mod openapi;
mod registry;
pub mod security;
mod system_agent;

pub use address::{AddressError, AgentAddress, AgentId, MAX_AGENT_ID_LEN};
pub use agent::{Agent, AgentHandle, CallContext, Caller, Upstream};
pub use config::{DawnConfig, LogFormat};
pub use data_dir::{DataDir, DataDirError, DataDirLock};
pub use dawn_resilience::ErrorKind;
pub use dawn_store::{AgentStore, AgentTransaction};
pub use dawn_transport::{Multiaddr, PeerId, PeerInfo};
pub use descriptor::AgentDescriptor;
pub use error::NodeError;
pub use jsonrpc::CallError;
pub use mounted::{McpServerAgent, MountedServerState, MountedServerStatus};
pub use node::{
    AgentSummary, BreakerState, CallOptions, ConfigReload, Node, NodeBuilder, NodeEvent,
    ReloadError, ResilienceStats, ToolSummary,
};
pub use registry::{RegistryEntry, RegistryRejectReason, RegistryStats, TOPIC as REGISTRY_TOPIC};
pub use system_agent::SYSTEM_AGENT_ID;

/// The MCP data model (from the official Rust SDK, `rmcp`).
pub mod mcp {
    pub use rmcp::model::*;
}

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
