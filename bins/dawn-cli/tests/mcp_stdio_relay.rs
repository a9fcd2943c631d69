//! What a server does in the middle of a call crosses `dawn-cli mcp` both
//! ways: its progress notifications and its own requests to the client
//! (sampling here; elicitation and roots take the same path) reach the
//! client, the client's answers reach the server, and the request's
//! `_meta` arrives intact.
//!
//! The server is an in-process rmcp Streamable HTTP server standing in for
//! a node (reached with `--api`), because a stock `dawn-node` has no agent
//! that asks its client anything. The client is rmcp's, launching the
//! bridge as a child process.
#![allow(clippy::unwrap_used, clippy::expect_used, deprecated)]

mod common;

use std::time::Duration;

use axum::{Json, Router, routing::get};
use common::cli_command;
use rmcp::{
    ClientHandler, ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt as _,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest,
        CreateMessageRequestParams, CreateMessageResult, ListToolsResult, MetaObject,
        PaginatedRequestParams, ProgressNotificationParam, Request, RequestMetaObject,
        SamplingMessage, ServerCapabilities, ServerConfig, ServerResult, Tool,
    },
    service::{NotificationContext, PeerRequestOptions, RequestContext},
    transport::{
        TokioChildProcess,
        streamable_http_server::{StreamableHttpService, session::local::LocalSessionManager},
    },
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A server with one tool, `ask`, that reports progress, asks the client's
/// model the question it was given, and returns the answer with the
/// `_meta` it received.
struct Asker;

impl ServerHandler for Asker {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({"type": "object", "properties": {"question": {"type": "string"}}});
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "ask",
            "Asks the client's model",
            schema.as_object().cloned().unwrap(),
        )]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let question = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("question"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(token) = ctx.meta.get_progress_token() {
            let _ = ctx
                .peer
                .notify_progress(ProgressNotificationParam::new(token, 1.0))
                .await;
        }
        let sampled = ctx
            .peer
            .create_message(CreateMessageRequestParams::new(
                vec![SamplingMessage::user_text(question)],
                64,
            ))
            .await
            .map_err(|e| ErrorData::internal_error(format!("sampling failed: {e}"), None))?;
        let answer = sampled
            .message
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone())
            .unwrap_or_default();
        let meta = serde_json::to_value(&ctx.meta).unwrap();
        Ok(CallToolResult::structured(json!({
            "answer": answer,
            "model": sampled.model,
            "meta": meta,
        }))
        .into())
    }
}

/// The client: a "model" that answers sampling requests, and a progress log.
#[derive(Clone)]
struct Model {
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
}

impl ClientHandler for Model {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let asked = params
            .messages
            .first()
            .and_then(|m| m.content.first())
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone())
            .unwrap_or_default();
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(format!("you asked: {asked}")),
            "stdio-test-model".to_owned(),
        ))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params);
    }
}

/// Serves `Asker` at `/mcp` and a stand-in `/api/v1/status` for the
/// bridge's start-up check; returns the base URL.
async fn serve_asker() -> String {
    let mcp = StreamableHttpService::new(
        || Ok(Asker),
        std::sync::Arc::new(LocalSessionManager::default()),
        Default::default(),
    );
    let router = Router::new()
        .route(
            "/api/v1/status",
            get(|| async { Json(json!({"node_id": "stand-in"})) }),
        )
        .route_service("/mcp", mcp);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_progress_and_meta_cross_the_bridge() {
    let base = serve_asker().await;
    // An empty data directory: no token, the address comes from --api.
    let dir = tempfile::tempdir().unwrap();
    let command = cli_command(&[
        "--api",
        base.as_str(),
        "--data-root",
        dir.path().to_str().unwrap(),
        "mcp",
    ]);
    let transport = TokioChildProcess::new(tokio::process::Command::from(command)).unwrap();
    let (progress_tx, mut progress) = mpsc::unbounded_channel();
    let client = Model {
        progress: progress_tx,
    }
    .serve(transport)
    .await
    .expect("the MCP handshake through the bridge failed");

    let mut meta = MetaObject::default();
    meta.0
        .insert("vendor.example/trace".into(), json!({"id": "t-1"}));
    let params = CallToolRequestParams::new("ask")
        .with_arguments(json!({"question": "why?"}).as_object().cloned().unwrap());
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(params)),
            PeerRequestOptions::no_options().with_meta(RequestMetaObject(meta)),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let response = tokio::time::timeout(Duration::from_secs(30), handle.await_response())
        .await
        .expect("no answer through the bridge")
        .unwrap();
    let ServerResult::CallToolResult(result) = response else {
        panic!("not a tool result: {response:?}")
    };
    let out = result.structured_content.expect("structured result");
    // The server's sampling request reached the client, and its answer
    // came back to the server.
    assert_eq!(out["answer"], "you asked: why?", "{out}");
    assert_eq!(out["model"], "stdio-test-model", "{out}");
    // The request's `_meta` (progress token and a vendor key) arrived intact.
    assert_eq!(
        out["meta"]["vendor.example/trace"],
        json!({"id": "t-1"}),
        "{out}"
    );
    assert_eq!(
        out["meta"]["progressToken"],
        serde_json::to_value(&token).unwrap(),
        "{out}"
    );
    // The server's progress notification reached the client.
    let p = tokio::time::timeout(Duration::from_secs(10), progress.recv())
        .await
        .expect("no progress notification")
        .unwrap();
    assert_eq!(p.progress_token, token);
    assert!((p.progress - 1.0).abs() < f64::EPSILON);

    client.cancel().await.unwrap();
}
