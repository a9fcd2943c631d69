//! Standard MCP clients (the official Rust SDK's client) against a node's
//! Streamable HTTP endpoints, across two nodes.
#![allow(clippy::unwrap_used, clippy::expect_used, deprecated)]

mod common;

use std::time::Duration;

use common::*;
use dawn_core::{DawnConfig, Node, NodeBuilder};
use rmcp::{
    ClientHandler, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, ClientRequest, GetPromptRequestParams, ProgressNotificationParam,
        ReadResourceRequestParams, Request as McpRequest, ResourceUpdatedNotificationParam,
        SubscribeRequestParams,
    },
    service::{NotificationContext, PeerRequestOptions, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::json;
use tokio::sync::mpsc;

async fn api_node(
    dir: &tempfile::TempDir,
    name: &str,
) -> (Node, tokio::sync::broadcast::Receiver<&'static str>) {
    let mut config = DawnConfig::ephemeral(dir.path().join(name));
    config.api.enabled = true;
    let agent = TestAgent::new();
    let probe = agent.probe.subscribe();
    (
        NodeBuilder::new(config).agent(agent).start().await.unwrap(),
        probe,
    )
}

fn token(node: &Node) -> String {
    std::fs::read_to_string(node.data_dir().api_token())
        .unwrap()
        .trim()
        .to_owned()
}

/// Records what the server pushes to the client.
#[derive(Clone)]
struct Recorder {
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
    updated: mpsc::UnboundedSender<String>,
    list_changed: mpsc::UnboundedSender<()>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params);
    }
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.updated.send(params.uri);
    }
    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.list_changed.send(());
    }
}

struct Client {
    service: RunningService<RoleClient, Recorder>,
    progress: mpsc::UnboundedReceiver<ProgressNotificationParam>,
    updated: mpsc::UnboundedReceiver<String>,
    list_changed: mpsc::UnboundedReceiver<()>,
}

async fn client(node: &Node, path: &str) -> Client {
    let url = format!("http://{}{path}", node.api_addr().unwrap());
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(token(node)),
    );
    let (p_tx, progress) = mpsc::unbounded_channel();
    let (u_tx, updated) = mpsc::unbounded_channel();
    let (l_tx, list_changed) = mpsc::unbounded_channel();
    let service = Recorder {
        progress: p_tx,
        updated: u_tx,
        list_changed: l_tx,
    }
    .serve(transport)
    .await
    .unwrap();
    Client {
        service,
        progress,
        updated,
        list_changed,
    }
}

async fn two_nodes(
    dir: &tempfile::TempDir,
) -> (Node, Node, tokio::sync::broadcast::Receiver<&'static str>) {
    let (a, _) = api_node(dir, "a").await;
    let (b, probe_b) = api_node(dir, "b").await;
    connect(&a, &b).await;
    (a, b, probe_b)
}

fn call(name: &str, args: serde_json::Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_owned()).with_arguments(args.as_object().cloned().unwrap())
}

#[tokio::test]
async fn the_mesh_view_lists_and_calls_tools_resources_and_prompts_of_both_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = two_nodes(&dir).await;
    let c = client(&a, "/mcp").await;
    let info = c.service.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "dawn");

    let tools = c.service.list_all_tools().await.unwrap();
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    let alias = dawn_core::mcp_gateway::naming::node_alias(&b.peer_id());
    assert!(names.contains(&"system__echo".to_owned()), "{names:?}");
    assert!(names.contains(&"tester__add".to_owned()), "{names:?}");
    let remote_add = format!("{alias}.tester__add");
    assert!(names.contains(&remote_add), "{names:?}");
    for t in &tools {
        assert!(
            t.name.len() <= 64
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        );
    }
    let described = tools
        .iter()
        .find(|t| t.name == remote_add.as_str())
        .unwrap();
    assert!(
        described
            .description
            .as_deref()
            .unwrap()
            .contains(&b.peer_id().to_string())
    );

    // A remote tool call.
    let r = c
        .service
        .call_tool(call(&remote_add, json!({"a": 20, "b": 22})))
        .await
        .unwrap();
    assert_eq!(r.structured_content, Some(json!({"sum": 42})));
    // Invalid arguments come back as a JSON-RPC error naming the field.
    let e = c
        .service
        .call_tool(call(&remote_add, json!({"a": "x", "b": 1})))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/a"), "{e}");

    // A remote resource.
    let resources = c.service.list_all_resources().await.unwrap();
    let remote_uri = format!("dawn://{}/tester/memo://note", b.peer_id());
    assert!(
        resources.iter().any(|r| r.uri == remote_uri),
        "{resources:?}"
    );
    let read = c
        .service
        .read_resource(ReadResourceRequestParams::new(remote_uri.clone()))
        .await
        .unwrap();
    let v = serde_json::to_value(&read).unwrap();
    assert_eq!(v["contents"][0]["text"], json!("first"));
    assert_eq!(v["contents"][0]["uri"], json!(remote_uri));

    // A remote prompt.
    let prompt = c
        .service
        .get_prompt(
            GetPromptRequestParams::new(format!("{alias}.tester__greet"))
                .with_arguments(json!({"name": "Ada"}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    let v = serde_json::to_value(&prompt).unwrap();
    assert_eq!(
        v["messages"][0]["content"]["text"],
        json!("Say hello to Ada")
    );
    c.service.cancel().await.unwrap();
}

#[tokio::test]
async fn progress_from_a_remote_tool_reaches_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = two_nodes(&dir).await;
    let mut c = client(&a, &format!("/mcp/peers/{}/agents/tester", b.peer_id())).await;
    let handle = c
        .service
        .send_cancellable_request(
            ClientRequest::CallToolRequest(McpRequest::new(call("progress", json!({})))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    handle.await_response().await.unwrap();
    let mut seen = Vec::new();
    while let Ok(p) = c.progress.try_recv() {
        assert_eq!(p.progress_token, token);
        seen.push(p.progress);
    }
    // Notifications may trail the response on another stream: wait for all three.
    while seen.len() < 3 {
        let p = tokio::time::timeout(Duration::from_secs(10), c.progress.recv())
            .await
            .unwrap()
            .unwrap();
        seen.push(p.progress);
    }
    assert_eq!(seen, vec![1.0, 2.0, 3.0]);
}

#[tokio::test]
async fn cancelling_a_slow_remote_call_stops_the_remote_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b, mut probe) = two_nodes(&dir).await;
    let c = client(&a, "/mcp").await;
    let alias = dawn_core::mcp_gateway::naming::node_alias(&_b.peer_id());
    let handle = c
        .service
        .send_cancellable_request(
            ClientRequest::CallToolRequest(McpRequest::new(call(
                &format!("{alias}.tester__sleep"),
                json!({"ms": 600000}),
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    expect_probe(&mut probe, "sleep-started").await;
    handle.cancel(Some("user gave up".into())).await.unwrap();
    expect_probe(&mut probe, "sleep-stopped").await;
}

#[tokio::test]
async fn single_agent_endpoints_use_the_agents_own_names() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = two_nodes(&dir).await;
    let local = client(&a, "/mcp/agents/tester").await;
    let names: Vec<String> = local
        .service
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        names.contains(&"add".to_owned()) && !names.iter().any(|n| n.contains("__")),
        "{names:?}"
    );
    let remote = client(&a, &format!("/mcp/peers/{}/agents/system", b.peer_id())).await;
    let r = remote
        .service
        .call_tool(call("info", json!({})))
        .await
        .unwrap();
    assert_eq!(
        r.structured_content.unwrap()["node_id"],
        json!(b.peer_id().to_string())
    );
}

#[tokio::test]
async fn subscriptions_to_remote_resources_deliver_updates() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = two_nodes(&dir).await;
    let mut c = client(&a, "/mcp").await;
    let uri = format!("dawn://{}/tester/memo://note", b.peer_id());
    c.service
        .subscribe(SubscribeRequestParams::new(uri.clone()))
        .await
        .unwrap();
    // Change it on b (through b's own node API) until the update arrives: the
    // watch call may still be on its way when the first change happens.
    let target = addr(None, "tester");
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            b.call_tool(&target, "set_memo", json!({"text": "second"}))
                .await
                .unwrap();
            if let Ok(Some(u)) =
                tokio::time::timeout(Duration::from_millis(500), c.updated.recv()).await
            {
                return u;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(got, uri);
}

#[tokio::test]
async fn list_changed_is_sent_when_the_mesh_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = api_node(&dir, "a").await;
    let mut c = client(&a, "/mcp").await;
    // Wait until the session is fully initialized (a list call round-trips).
    c.service.list_all_tools().await.unwrap();
    let (b, _) = api_node(&dir, "b").await;
    connect(&a, &b).await;
    tokio::time::timeout(Duration::from_secs(10), c.list_changed.recv())
        .await
        .unwrap()
        .unwrap();
    let names: Vec<String> = c
        .service
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    let alias = dawn_core::mcp_gateway::naming::node_alias(&b.peer_id());
    assert!(
        names.contains(&format!("{alias}.system__echo")),
        "{names:?}"
    );
}

#[tokio::test]
async fn http_security_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = api_node(&dir, "a").await;
    let url = format!("http://{}/mcp", a.api_addr().unwrap());
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let post = |body: String| {
        http.post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body)
    };
    // No token.
    assert_eq!(post(init.to_string()).send().await.unwrap().status(), 401);
    let tok = token(&a);
    // A foreign Host header (DNS rebinding) is refused.
    let r = post(init.to_string())
        .bearer_auth(&tok)
        .header("host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A browser Origin that is not allowed is refused.
    let r = post(init.to_string())
        .bearer_auth(&tok)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A page served from loopback is a local process: accepted by default.
    let r = post(init.to_string())
        .bearer_auth(&tok)
        .header("origin", "http://localhost:6274")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Malformed JSON: 400 with a JSON-RPC parse error.
    let r = post("{not json".into())
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!(-32700));
    // Unknown session.
    let r = post(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string())
        .bearer_auth(&tok)
        .header("mcp-session-id", "no-such-session")
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "unknown session");
    // Unsupported protocol version header.
    let r = post(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string())
        .bearer_auth(&tok)
        .header("mcp-protocol-version", "1999-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unsupported MCP-Protocol-Version");
    // Oversized body.
    let big = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"system__echo","arguments":{"message": "x".repeat(5 << 20)}}});
    let r = post(big.to_string())
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // After all that, a real client still works.
    let c = client(&a, "/mcp").await;
    let r = c
        .service
        .call_tool(call("system__echo", json!({"message": "still here"})))
        .await
        .unwrap();
    assert_eq!(r.content[0].as_text().unwrap().text, "still here");
}
