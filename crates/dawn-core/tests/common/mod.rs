//! Shared helpers for dawn-core integration tests: test agents and node set-up.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_trait::async_trait;
use dawn_core::{
    Agent, AgentAddress, AgentHandle, CallContext, CallError, DawnConfig, ErrorKind, Node,
    NodeBuilder, NodeEvent, PeerId,
    mcp::{
        CallToolResult, ContentBlock, GetPromptResult, JsonObject, Prompt, PromptArgument,
        PromptMessage, ReadResourceResult, Resource, ResourceContents, Role, Tool, ToolAnnotations,
    },
};
use dawn_security::TrustLevel;
use serde_json::{Value, json};

pub fn schema(v: Value) -> JsonObject {
    v.as_object().cloned().unwrap()
}

/// An agent with tools for exercising the call path. It reports what its
/// `sleep` tool does on `probe` ("sleep-started", "sleep-stopped").
pub struct TestAgent {
    pub probe: tokio::sync::broadcast::Sender<&'static str>,
    handle: std::sync::Mutex<Option<AgentHandle>>,
    memo: std::sync::Mutex<String>,
}

impl TestAgent {
    pub fn new() -> Self {
        TestAgent {
            probe: tokio::sync::broadcast::channel(64).0,
            handle: std::sync::Mutex::new(None),
            memo: std::sync::Mutex::new("first".into()),
        }
    }
}

#[async_trait]
impl Agent for TestAgent {
    fn id(&self) -> &str {
        "tester"
    }
    fn description(&self) -> String {
        "test agent".into()
    }
    fn tools(&self) -> Vec<Tool> {
        vec![
            Tool::new(
                "add",
                "adds two integers",
                schema(json!({
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                    "required": ["a", "b"],
                    "additionalProperties": false
                })),
            )
            .with_annotations(ToolAnnotations::new().read_only(true)),
            Tool::new(
                "sleep",
                "sleeps for ms milliseconds, honouring cancellation",
                schema(
                    json!({"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}}, "required": ["ms"]}),
                ),
            ),
            Tool::new(
                "progress",
                "reports progress three times",
                schema(json!({"type": "object"})),
            ),
            Tool::new(
                "ask",
                "asks the client a question",
                schema(json!({"type": "object"})),
            ),
            Tool::new(
                "set_memo",
                "changes the memo://note resource",
                schema(
                    json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
                ),
            ),
            Tool::new(
                "blob",
                "returns a text of n bytes",
                schema(
                    json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
                ),
            ),
        ]
    }
    fn resources(&self) -> Vec<Resource> {
        vec![Resource::new("memo://note", "note").with_description("a note that set_memo changes")]
    }
    fn prompts(&self) -> Vec<Prompt> {
        vec![Prompt::new(
            "greet",
            Some("greets someone"),
            Some(vec![PromptArgument::new("name").with_required(true)]),
        )]
    }
    async fn read_resource(
        &self,
        _ctx: &CallContext,
        uri: &str,
    ) -> Result<ReadResourceResult, CallError> {
        if uri != "memo://note" {
            return Err(CallError::new(
                ErrorKind::UnknownResource,
                format!("no resource {uri}"),
            ));
        }
        let text = self.memo.lock().unwrap().clone();
        Ok(ReadResourceResult::new(vec![ResourceContents::text(
            text, uri,
        )]))
    }
    async fn get_prompt(
        &self,
        _ctx: &CallContext,
        _name: &str,
        args: JsonObject,
    ) -> Result<GetPromptResult, CallError> {
        let who = args
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("nobody")
            .to_owned();
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Say hello to {who}"),
        )]))
    }
    fn attach(&self, handle: AgentHandle) {
        *self.handle.lock().unwrap() = Some(handle);
    }
    async fn call_tool(
        &self,
        ctx: &CallContext,
        name: &str,
        args: JsonObject,
    ) -> Result<CallToolResult, CallError> {
        match name {
            "set_memo" => {
                *self.memo.lock().unwrap() = args["text"].as_str().unwrap().to_owned();
                if let Some(h) = self.handle.lock().unwrap().as_ref() {
                    h.resource_updated("memo://note");
                }
                Ok(CallToolResult::success(vec![ContentBlock::text("ok")]))
            }
            "add" => {
                let a = args["a"].as_i64().unwrap();
                let b = args["b"].as_i64().unwrap();
                Ok(CallToolResult::structured(json!({ "sum": a + b })))
            }
            "sleep" => {
                let ms = args["ms"].as_u64().unwrap();
                let _ = self.probe.send("sleep-started");
                // Reports "sleep-stopped" however the work ends early: the
                // node cancels the token and drops the future.
                struct StopGuard(tokio::sync::broadcast::Sender<&'static str>, bool);
                impl Drop for StopGuard {
                    fn drop(&mut self) {
                        if !self.1 {
                            let _ = self.0.send("sleep-stopped");
                        }
                    }
                }
                let mut guard = StopGuard(self.probe.clone(), false);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => {
                        guard.1 = true;
                        Ok(CallToolResult::success(vec![ContentBlock::text("slept")]))
                    }
                    () = ctx.cancellation().cancelled() => Ok(CallToolResult::success(vec![ContentBlock::text("cancelled")])),
                }
            }
            "progress" => {
                for i in 1..=3 {
                    ctx.progress(f64::from(i), Some(3.0), Some("working")).await;
                }
                Ok(CallToolResult::success(vec![ContentBlock::text("done")]))
            }
            "ask" => {
                let answer = ctx
                    .request_client("sampling/createMessage", json!({"messages": []}))
                    .await?;
                Ok(CallToolResult::structured(json!({ "answer": answer })))
            }
            "blob" => {
                let n = args["n"].as_u64().unwrap() as usize;
                Ok(CallToolResult::success(vec![ContentBlock::text(
                    "x".repeat(n),
                )]))
            }
            _ => unreachable!("validated by the node"),
        }
    }
}

pub async fn start_node(
    dir: &tempfile::TempDir,
    name: &str,
    tweak: impl FnOnce(&mut DawnConfig),
) -> Node {
    start_probed(dir, name, tweak).await.0
}

/// Starts a node with a [`TestAgent`] and returns the agent's probe.
pub async fn start_probed(
    dir: &tempfile::TempDir,
    name: &str,
    tweak: impl FnOnce(&mut DawnConfig),
) -> (Node, tokio::sync::broadcast::Receiver<&'static str>) {
    let mut config = DawnConfig::ephemeral(dir.path().join(name));
    config.api.enabled = false;
    tweak(&mut config);
    let agent = TestAgent::new();
    let probe = agent.probe.subscribe();
    (
        NodeBuilder::new(config).agent(agent).start().await.unwrap(),
        probe,
    )
}

pub async fn expect_probe(probe: &mut tokio::sync::broadcast::Receiver<&'static str>, what: &str) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if probe.recv().await.unwrap() == what {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("agent never reported {what}"));
}

/// Connects `a` to `b` and waits until `a` knows `b`'s agents. Both trust
/// each other (`trusted`), so every tool may be called either way.
pub async fn connect(a: &Node, b: &Node) {
    a.set_trust(b.peer_id(), TrustLevel::Trusted, None)
        .await
        .unwrap();
    b.set_trust(a.peer_id(), TrustLevel::Trusted, None)
        .await
        .unwrap();
    let mut events = a.subscribe();
    let peer = a.dial(b.dial_addrs()[0].clone()).await.unwrap();
    assert_eq!(peer, b.peer_id());
    wait_for(
        &mut events,
        |e| matches!(e, NodeEvent::RemoteAgentsChanged(p) if *p == peer),
    )
    .await;
}

pub async fn wait_for(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    pred: impl Fn(&NodeEvent) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = events.recv().await.unwrap();
            if pred(&e) {
                return;
            }
        }
    })
    .await
    .expect("event did not arrive within 20 s");
}

pub fn addr(peer: Option<PeerId>, agent: &str) -> AgentAddress {
    match peer {
        Some(p) => format!("{p}/{agent}").parse().unwrap(),
        None => agent.parse().unwrap(),
    }
}

pub fn text_of(result: &CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}
