//! Embeds two Dawn nodes in one program: the first hosts a custom agent, the
//! second calls it over an encrypted libp2p connection.
//!
//! Run with `cargo run -p dawn-core --example embed`.

use async_trait::async_trait;
use dawn_core::{
    Agent, CallContext, CallError, DawnConfig, NodeBuilder, NodeEvent,
    mcp::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations},
};
use serde_json::json;

/// A tiny agent that converts temperatures.
struct Thermometer;

#[async_trait]
impl Agent for Thermometer {
    fn id(&self) -> &str {
        "thermometer"
    }

    fn description(&self) -> String {
        "Converts temperatures between Celsius and Fahrenheit".into()
    }

    fn tools(&self) -> Vec<Tool> {
        let schema = json!({
            "type": "object",
            "properties": {
                "celsius": {"type": "number", "description": "Temperature in °C"}
            },
            "required": ["celsius"],
            "additionalProperties": false
        });
        vec![
            Tool::new(
                "to_fahrenheit",
                "Converts °C to °F",
                schema.as_object().cloned().unwrap_or_default(),
            )
            .with_annotations(ToolAnnotations::new().read_only(true).idempotent(true)),
        ]
    }

    async fn call_tool(
        &self,
        _ctx: &CallContext,
        _name: &str,
        arguments: JsonObject,
    ) -> Result<CallToolResult, CallError> {
        // The node validated the arguments against the schema already.
        let celsius = arguments["celsius"].as_f64().unwrap_or_default();
        let fahrenheit = celsius * 9.0 / 5.0 + 32.0;
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "{fahrenheit:.1}"
        ))]))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;

    // A node hosting the agent, on a free 127.0.0.1 port, without the HTTP API.
    let mut config = DawnConfig::ephemeral(dir.path().join("host"));
    config.api.enabled = false;
    let host = NodeBuilder::new(config).agent(Thermometer).start().await?;

    // A second node that calls it.
    let mut config = DawnConfig::ephemeral(dir.path().join("caller"));
    config.api.enabled = false;
    let caller = NodeBuilder::new(config).start().await?;
    let mut events = caller.subscribe();
    caller.dial(host.dial_addrs()[0].clone()).await?;

    // Wait until the caller has learned the host's agents.
    while !matches!(events.recv().await?, NodeEvent::RemoteAgentsChanged(p) if p == host.peer_id())
    {
    }
    for (peer, agents) in caller.remote_agents() {
        for agent in agents {
            println!("{peer} offers {}: {}", agent.id, agent.description);
        }
    }

    let address = format!("{}/thermometer", host.peer_id()).parse()?;
    let result = caller
        .call_tool(&address, "to_fahrenheit", json!({"celsius": 21.5}))
        .await?;
    let text = serde_json::to_value(&result.content)?[0]["text"].clone();
    println!("21.5 °C = {} °F", text.as_str().unwrap_or_default());

    // Invalid arguments are refused before the agent runs.
    let err = caller
        .call_tool(&address, "to_fahrenheit", json!({"celsius": "warm"}))
        .await
        .err()
        .ok_or("invalid arguments were accepted")?;
    println!("invalid arguments: {err}");

    caller.shutdown().await;
    host.shutdown().await;
    Ok(())
}
