//! The built-in `system` agent: node info, peers, echo.

use std::sync::Weak;

use async_trait::async_trait;
use dawn_resilience::ErrorKind;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use crate::{
    agent::{Agent, CallContext},
    jsonrpc::CallError,
    node::NodeShared,
};

/// The id of the built-in agent.
pub const SYSTEM_AGENT_ID: &str = "system";

pub(crate) struct SystemAgent {
    pub(crate) node: Weak<NodeShared>,
}

fn schema(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

fn read_only() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .idempotent(true)
        .destructive(false)
        .open_world(false)
}

#[async_trait]
impl Agent for SystemAgent {
    fn id(&self) -> &str {
        SYSTEM_AGENT_ID
    }

    fn description(&self) -> String {
        "Built-in node agent: node information, connected peers, echo".into()
    }

    fn tools(&self) -> Vec<Tool> {
        vec![
            Tool::new(
                "info",
                "Node id, version, uptime, listen addresses and local agents",
                schema(json!({"type": "object", "properties": {}, "additionalProperties": false})),
            )
            .with_annotations(read_only()),
            Tool::new(
                "peers",
                "Peers this node is connected to",
                schema(json!({"type": "object", "properties": {}, "additionalProperties": false})),
            )
            .with_annotations(read_only()),
            Tool::new(
                "echo",
                "Returns the message it is given (for tests and benchmarks)",
                schema(json!({
                    "type": "object",
                    "properties": {"message": {"type": "string", "description": "Text to send back"}},
                    "required": ["message"],
                    "additionalProperties": false
                })),
            )
            .with_annotations(read_only()),
        ]
    }

    async fn call_tool(
        &self,
        _ctx: &CallContext,
        name: &str,
        arguments: JsonObject,
    ) -> Result<CallToolResult, CallError> {
        match name {
            "echo" => {
                let message = arguments
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok(CallToolResult::success(vec![ContentBlock::text(message)]))
            }
            "info" | "peers" => {
                let node = self.node.upgrade().ok_or_else(|| {
                    CallError::new(ErrorKind::ShuttingDown, "the node is shutting down")
                })?;
                let value = if name == "info" {
                    node.info_json()
                } else {
                    node.peers_json()
                };
                Ok(CallToolResult::structured(value))
            }
            other => Err(CallError::new(
                ErrorKind::UnknownTool,
                format!("no tool {other}"),
            )),
        }
    }
}
