//! The built-in `conformance` agent, driven in process: a few fixtures of the
//! official MCP conformance suite, so that breakage shows up in `cargo test`
//! without Node.js (`cargo xtask conformance` runs the real suite).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use dawn_core::{
    AgentAddress, CallError, CallOptions, DawnConfig, ErrorKind, Node, NodeBuilder, Upstream,
    jsonrpc::Request,
};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

async fn start(dir: &tempfile::TempDir, conformance_agent: bool) -> Node {
    let mut config = DawnConfig::ephemeral(dir.path().join("node"));
    config.api.enabled = false;
    config.mcp.conformance_agent = conformance_agent;
    NodeBuilder::new(config).start().await.unwrap()
}

fn agent() -> AgentAddress {
    "conformance".parse().unwrap()
}

async fn request(node: &Node, method: &str, params: Value) -> Result<Value, CallError> {
    node.request(
        &agent(),
        Request::new(1, method, Some(params)),
        CallOptions::default(),
    )
    .await
}

/// Records notifications and answers sampling and elicitation like the
/// suite's client does.
struct Client {
    notifications: Mutex<Vec<Request>>,
    requests: Mutex<Vec<Request>>,
}

impl Client {
    fn new() -> Arc<Client> {
        Arc::new(Client {
            notifications: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl Upstream for Client {
    async fn notify(&self, notification: Request) {
        self.notifications.lock().await.push(notification);
    }

    async fn request(&self, request: Request) -> Result<Value, CallError> {
        let answer = match request.method.as_str() {
            "sampling/createMessage" => Ok(json!({
                "role": "assistant",
                "content": { "type": "text", "text": "This is a test response from the client" },
                "model": "test-model",
                "stopReason": "endTurn"
            })),
            "elicitation/create" => Ok(json!({
                "action": "accept",
                "content": { "username": "testuser", "email": "test@example.com" }
            })),
            other => Err(CallError::new(ErrorKind::MethodNotFound, other.to_owned())),
        };
        self.requests.lock().await.push(request);
        answer
    }
}

/// Calls a tool with `client` attached as the MCP client of the call.
async fn call_with_client(node: &Node, params: Value, client: Arc<Client>) -> Value {
    node.send_with_upstream(
        &agent(),
        Request::new("call-1", "tools/call", Some(params)),
        CallOptions::default(),
        client,
    )
    .await
    .expect("a request has a response")
    .into_result()
    .unwrap()
}

#[tokio::test]
async fn the_agent_is_served_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let off = start(&dir, false).await;
    assert!(!off.agents().iter().any(|a| a.id == "conformance"));
    off.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let on = start(&dir, true).await;
    let summary = on
        .agents()
        .into_iter()
        .find(|a| a.id == "conformance")
        .expect("conformance agent registered");
    assert_eq!(summary.resources, 3);
    assert_eq!(summary.prompts, 4);
    on.shutdown().await;
}

#[tokio::test]
async fn tools_return_the_content_the_suite_checks() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, true).await;

    let text = node
        .call_tool(&agent(), "test_simple_text", Value::Null)
        .await
        .unwrap();
    let text = serde_json::to_value(&text).unwrap();
    assert_eq!(
        text["content"],
        json!([{ "type": "text", "text": "This is a simple text response for testing." }])
    );
    assert_ne!(text["isError"], json!(true));

    let error = node
        .call_tool(&agent(), "test_error_handling", json!({}))
        .await
        .unwrap();
    assert_eq!(error.is_error, Some(true));
    let error = serde_json::to_value(&error).unwrap();
    assert_eq!(
        error["content"][0]["text"],
        "This tool intentionally returns an error for testing"
    );

    let mixed = node
        .call_tool(&agent(), "test_multiple_content_types", json!({}))
        .await
        .unwrap();
    let mixed = serde_json::to_value(&mixed).unwrap();
    let kinds: Vec<&str> = mixed["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["text", "image", "resource"]);
    assert_eq!(mixed["content"][1]["mimeType"], "image/png");
    assert_eq!(
        mixed["content"][2]["resource"]["uri"],
        "test://mixed-content-resource"
    );

    let audio = node
        .call_tool(&agent(), "test_audio_content", json!({}))
        .await
        .unwrap();
    let audio = serde_json::to_value(&audio).unwrap();
    assert_eq!(audio["content"][0]["type"], "audio");
    assert_eq!(audio["content"][0]["mimeType"], "audio/wav");

    // The 2020-12 schema is listed verbatim.
    let tools = request(&node, "tools/list", json!({})).await.unwrap();
    let schema_tool = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "json_schema_2020_12_tool")
        .expect("json_schema_2020_12_tool listed");
    let schema = &schema_tool["inputSchema"];
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["$defs"]["address"]["$anchor"], "addressDef");
    assert_eq!(schema["additionalProperties"], json!(false));
    assert!(schema["allOf"][0]["anyOf"].is_array());
    assert!(schema.get("if").is_some() && schema.get("then").is_some());

    // Its arguments are validated against that schema: `email` is required
    // unless the contact method is the phone.
    let rejected = node
        .call_tool(
            &agent(),
            "json_schema_2020_12_tool",
            json!({ "name": "Ada" }),
        )
        .await
        .unwrap_err();
    assert_eq!(rejected.kind(), Some(ErrorKind::InvalidParams));
    let accepted = node
        .call_tool(
            &agent(),
            "json_schema_2020_12_tool",
            json!({ "name": "Ada", "email": "ada@example.com" }),
        )
        .await
        .unwrap();
    assert_ne!(accepted.is_error, Some(true));
    node.shutdown().await;
}

#[tokio::test]
async fn resources_and_prompts_match_the_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, true).await;

    let text = request(
        &node,
        "resources/read",
        json!({ "uri": "test://static-text" }),
    )
    .await
    .unwrap();
    assert_eq!(
        text["contents"],
        json!([{
            "uri": "test://static-text",
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource."
        }])
    );

    let binary = request(
        &node,
        "resources/read",
        json!({ "uri": "test://static-binary" }),
    )
    .await
    .unwrap();
    assert_eq!(binary["contents"][0]["mimeType"], "image/png");
    assert!(binary["contents"][0]["blob"].as_str().unwrap().len() > 20);

    let templated = request(
        &node,
        "resources/read",
        json!({ "uri": "test://template/123/data" }),
    )
    .await
    .unwrap();
    assert_eq!(templated["contents"][0]["uri"], "test://template/123/data");
    let data: Value =
        serde_json::from_str(templated["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        data,
        json!({ "id": "123", "templateTest": true, "data": "Data for ID: 123" })
    );

    let missing = request(&node, "resources/read", json!({ "uri": "test://nope" }))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), Some(ErrorKind::UnknownResource));

    let templates = request(&node, "resources/templates/list", json!({}))
        .await
        .unwrap();
    assert_eq!(
        templates["resourceTemplates"][0]["uriTemplate"],
        "test://template/{id}/data"
    );

    let simple = request(
        &node,
        "prompts/get",
        json!({ "name": "test_simple_prompt" }),
    )
    .await
    .unwrap();
    assert_eq!(
        simple["messages"],
        json!([{ "role": "user", "content": { "type": "text", "text": "This is a simple prompt for testing." } }])
    );

    let with_args = request(
        &node,
        "prompts/get",
        json!({ "name": "test_prompt_with_arguments", "arguments": { "arg1": "hello", "arg2": "world" } }),
    )
    .await
    .unwrap();
    assert_eq!(
        with_args["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='hello', arg2='world'"
    );
    let missing_arg = request(
        &node,
        "prompts/get",
        json!({ "name": "test_prompt_with_arguments", "arguments": { "arg1": "hello" } }),
    )
    .await
    .unwrap_err();
    assert_eq!(missing_arg.kind(), Some(ErrorKind::InvalidParams));

    let embedded = request(
        &node,
        "prompts/get",
        json!({ "name": "test_prompt_with_embedded_resource", "arguments": { "resourceUri": "test://example-resource" } }),
    )
    .await
    .unwrap();
    assert_eq!(embedded["messages"][0]["content"]["type"], "resource");
    assert_eq!(
        embedded["messages"][0]["content"]["resource"]["uri"],
        "test://example-resource"
    );

    let completion = request(
        &node,
        "completion/complete",
        json!({
            "ref": { "type": "ref/prompt", "name": "test_prompt_with_arguments" },
            "argument": { "name": "arg1", "value": "par" }
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        completion["completion"]["values"],
        json!(["paris", "park", "party"])
    );
    let template_completion = request(
        &node,
        "completion/complete",
        json!({
            "ref": { "type": "ref/resource", "uri": "test://template/{id}/data" },
            "argument": { "name": "id", "value": "1" }
        }),
    )
    .await
    .unwrap();
    assert_eq!(template_completion["completion"]["values"], json!(["123"]));
    node.shutdown().await;
}

#[tokio::test]
async fn progress_logging_sampling_and_elicitation_reach_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, true).await;

    let client = Client::new();
    call_with_client(
        &node,
        json!({ "name": "test_tool_with_progress", "arguments": {}, "_meta": { "progressToken": "p-1" } }),
        client.clone(),
    )
    .await;
    let progress: Vec<(Value, f64, f64)> = client
        .notifications
        .lock()
        .await
        .iter()
        .filter(|n| n.method == "notifications/progress")
        .map(|n| {
            let p = n.params.clone().unwrap();
            (
                p["progressToken"].clone(),
                p["progress"].as_f64().unwrap(),
                p["total"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        progress,
        [
            (json!("p-1"), 0.0, 100.0),
            (json!("p-1"), 50.0, 100.0),
            (json!("p-1"), 100.0, 100.0)
        ]
    );

    let client = Client::new();
    call_with_client(
        &node,
        json!({ "name": "test_tool_with_logging", "arguments": {} }),
        client.clone(),
    )
    .await;
    let logs: Vec<Value> = client
        .notifications
        .lock()
        .await
        .iter()
        .filter(|n| n.method == "notifications/message")
        .map(|n| n.params.clone().unwrap())
        .collect();
    assert_eq!(logs.len(), 3);
    assert!(logs.iter().all(|l| l["level"] == "info"));
    assert_eq!(logs[0]["data"], "Tool execution started");
    assert_eq!(logs[2]["data"], "Tool execution completed");

    let client = Client::new();
    let sampled = call_with_client(
        &node,
        json!({ "name": "test_sampling", "arguments": { "prompt": "Test prompt for sampling" } }),
        client.clone(),
    )
    .await;
    assert_eq!(
        sampled["content"][0]["text"],
        "LLM response: This is a test response from the client"
    );
    let asked = client.requests.lock().await;
    assert_eq!(asked.len(), 1);
    let params = asked[0].params.clone().unwrap();
    assert_eq!(
        params["messages"][0]["content"]["text"],
        "Test prompt for sampling"
    );
    assert_eq!(params["maxTokens"], 100);
    drop(asked);

    let client = Client::new();
    let elicited = call_with_client(
        &node,
        json!({ "name": "test_elicitation", "arguments": { "message": "Who are you?" } }),
        client.clone(),
    )
    .await;
    let text = elicited["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("User response: action=accept"), "{text}");
    assert!(text.contains("testuser"), "{text}");
    let asked = client.requests.lock().await;
    let schema = &asked[0].params.as_ref().unwrap()["requestedSchema"];
    assert_eq!(schema["required"], json!(["username", "email"]));
    drop(asked);

    // Without a client to ask, sampling is a tool error the model can read.
    let alone = node
        .call_tool(
            &agent(),
            "test_sampling",
            json!({ "prompt": "anyone there?" }),
        )
        .await
        .unwrap();
    assert_eq!(alone.is_error, Some(true));
    node.shutdown().await;
}

/// Forwards notifications to a channel (for waiting on them).
struct Watcher(mpsc::UnboundedSender<Request>);

#[async_trait]
impl Upstream for Watcher {
    async fn notify(&self, notification: Request) {
        let _ = self.0.send(notification);
    }
    async fn request(&self, request: Request) -> Result<Value, CallError> {
        Err(CallError::new(ErrorKind::MethodNotFound, request.method))
    }
}

#[tokio::test]
async fn the_watched_resource_changes_while_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, true).await;
    let uri = "test://watched-resource";
    let before = request(&node, "resources/read", json!({ "uri": uri }))
        .await
        .unwrap();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let watch = {
        let node = node.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            node.watch_resource(&agent(), uri, Arc::new(Watcher(tx)), cancel)
                .await
        })
    };
    let update = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let n = rx.recv().await.expect("watch ended early");
            if n.method == "notifications/resources/updated" {
                break n;
            }
        }
    })
    .await
    .expect("an update within 15s");
    assert_eq!(update.params.unwrap()["uri"], uri);
    let after = request(&node, "resources/read", json!({ "uri": uri }))
        .await
        .unwrap();
    assert_ne!(before["contents"][0]["text"], after["contents"][0]["text"]);

    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), watch).await;
    node.shutdown().await;
}
