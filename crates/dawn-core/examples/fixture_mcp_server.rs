//! A small MCP server used by the tests of mounted servers
//! (`tests/mounted_servers.rs`). Not an example to copy.
//!
//! Speaks MCP over stdio, or with `--http` serves Streamable HTTP on a free
//! port of 127.0.0.1 and prints `listening on http://127.0.0.1:PORT/mcp` as
//! its first stdout line. Offers:
//!
//! - tools `add {a, b}`, `slow {ms}` (reports progress 1, 2, 2, 1.5, 3, then
//!   waits `ms` or until cancelled, printing `slow: cancelled` to stderr),
//!   `ask` (asks the client for a sampling completion and returns its text),
//!   `log` (sends a log message, then answers), `crash` (exits with status 3),
//!   `add_tool {name}` (adds a tool and sends `tools/list_changed`);
//! - resource `fixture://greeting`, template `fixture://items/{id}`;
//! - prompt `greet {name}`.
//!
//! It writes `fixture server starting (pid N)` to stderr when it starts.
#![allow(deprecated)] // sampling and logging are part of protocol 2025-11-25

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
        CreateMessageRequestParams, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
        Implementation, JsonObject, ListPromptsResult, ListResourceTemplatesResult,
        ListResourcesResult, ListToolsResult, LoggingLevel, LoggingMessageNotificationParam,
        PaginatedRequestParams, ProgressNotificationParam, Prompt, PromptArgument, PromptMessage,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
        ResourceContents, ResourceTemplate, Role, SamplingMessage, ServerCapabilities,
        ServerConfig, Tool,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Fixture {
    extra_tools: Arc<Mutex<Vec<String>>>,
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

fn text(s: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(s.into())])
}

fn int(args: &JsonObject, key: &str) -> Result<i64, McpError> {
    args.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| McpError::invalid_params(format!("{key} must be an integer"), None))
}

impl Fixture {
    fn tools(&self) -> Vec<Tool> {
        let object = || schema(json!({"type": "object"}));
        let mut tools = vec![
            Tool::new(
                "add",
                "adds two integers",
                schema(json!({
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                    "required": ["a", "b"]
                })),
            ),
            Tool::new(
                "slow",
                "reports progress, then waits ms milliseconds or until cancelled",
                schema(json!({
                    "type": "object",
                    "properties": {"ms": {"type": "integer", "minimum": 0}},
                    "required": ["ms"]
                })),
            ),
            Tool::new("ask", "asks the client's model a question", object()),
            Tool::new("log", "sends a log message", object()),
            Tool::new("crash", "exits the server process", object()),
            Tool::new(
                "add_tool",
                "adds a tool named name",
                schema(json!({
                    "type": "object",
                    "properties": {"name": {"type": "string"}},
                    "required": ["name"]
                })),
            ),
        ];
        for name in self
            .extra_tools
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
        {
            tools.push(Tool::new(name, "a tool added at run time", object()));
        }
        tools
    }
}

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_prompts()
                .enable_resources()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("fixture", "1.0.0"))
        .with_instructions("Test fixture for mounted MCP servers")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.clone().unwrap_or_default();
        let result = match request.name.as_ref() {
            "add" => {
                let sum = int(&args, "a")? + int(&args, "b")?;
                let mut result = text(sum.to_string());
                result.structured_content = Some(json!({ "sum": sum }));
                result
            }
            "slow" => {
                let ms = u64::try_from(int(&args, "ms")?).unwrap_or(0);
                if let Some(token) = ctx.meta.get_progress_token() {
                    // Out of order and repeated on purpose: the node must
                    // pass on only 1, 2, 3.
                    for p in [1.0, 2.0, 2.0, 1.5, 3.0] {
                        let _ = ctx
                            .peer
                            .notify_progress(
                                ProgressNotificationParam::new(token.clone(), p)
                                    .with_message("working"),
                            )
                            .await;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => text("slept"),
                    () = ctx.ct.cancelled() => {
                        eprintln!("slow: cancelled");
                        text("cancelled")
                    }
                }
            }
            "ask" => {
                let params = CreateMessageRequestParams::new(
                    vec![SamplingMessage::user_text("What is 6 times 7?")],
                    32,
                );
                let answer =
                    ctx.peer.create_message(params).await.map_err(|e| {
                        McpError::internal_error(format!("sampling failed: {e}"), None)
                    })?;
                let answer = serde_json::to_value(&answer).unwrap_or_default();
                let said = answer["content"]["text"].as_str().unwrap_or("?").to_owned();
                text(format!("the model said: {said}"))
            }
            "log" => {
                let _ = ctx
                    .peer
                    .notify_logging_message(
                        LoggingMessageNotificationParam::new(
                            LoggingLevel::Info,
                            json!("hello from the log tool"),
                        )
                        .with_logger("fixture"),
                    )
                    .await;
                text("logged")
            }
            "crash" => {
                eprintln!("crashing on request");
                std::process::exit(3);
            }
            "add_tool" => {
                let name = args
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("extra")
                    .to_owned();
                if let Ok(mut tools) = self.extra_tools.lock() {
                    tools.push(name.clone());
                }
                let _ = ctx.peer.notify_tool_list_changed().await;
                text(format!("added {name}"))
            }
            other if self.tools().iter().any(|t| t.name == other) => text(format!("{other} ran")),
            other => {
                return Err(McpError::invalid_params(
                    format!("no tool named {other}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(vec![Resource::new(
            "fixture://greeting",
            "greeting",
        )]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("fixture://items/{id}", "item"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let body = match request.uri.as_str() {
            "fixture://greeting" => "hello from the fixture".to_owned(),
            uri => match uri.strip_prefix("fixture://items/") {
                Some(id) => format!("item {id}"),
                None => {
                    return Err(McpError::resource_not_found(
                        format!("no resource {uri}"),
                        None,
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![ResourceContents::text(body, request.uri)]).into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(vec![Prompt::new(
            "greet",
            Some("greets someone"),
            Some(vec![PromptArgument::new("name").with_required(true)]),
        )]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let name = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("nobody")
            .to_owned();
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Say hello to {name}"),
        )])
        .into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("fixture server starting (pid {})", std::process::id());
    if std::env::args().any(|a| a == "--http") {
        let service = StreamableHttpService::new(
            || Ok(Fixture::default()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let router = axum::Router::new().route_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on http://{}/mcp", listener.local_addr()?);
        axum::serve(listener, router).await?;
    } else {
        let server = Fixture::default().serve(rmcp::transport::stdio()).await?;
        server.waiting().await?;
    }
    Ok(())
}
