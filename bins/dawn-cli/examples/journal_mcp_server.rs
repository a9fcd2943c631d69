//! A small MCP server (stdio) used by the resilience fault tests
//! (`tests/resilience_faults.rs`), mounted into `dawn-node` processes. Not an
//! example to copy.
//!
//! Tools:
//!
//! - `append {id, delay_ms}`: waits `delay_ms`, then appends the line `id` to
//!   the file named by `$JOURNAL_FILE` and syncs it to disk before answering,
//!   so every acknowledged append is on disk. Not idempotent.
//! - `sleep {ms}`: waits `ms` milliseconds (or until cancelled) and answers
//!   `slept`. Annotated neither read-only nor idempotent, so the node never
//!   retries it.
//!
//! It writes `journal server starting (pid N)` to stderr when it starts, and
//! `append ID: started` / `sleep: started` when a call begins (the node logs
//! a mounted server's stderr, so tests can see when a call is in flight).

use std::{io::Write as _, sync::Arc, time::Duration};

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
        Tool, ToolAnnotations,
    },
    service::RequestContext,
};
use serde_json::{Value, json};

#[derive(Clone)]
struct Journal {
    path: Option<std::path::PathBuf>,
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

fn text(s: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(s.into())])
}

fn millis(args: &JsonObject, key: &str) -> u64 {
    args.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl Journal {
    fn append(&self, id: &str) -> Result<(), McpError> {
        let path = self
            .path
            .as_ref()
            .ok_or_else(|| McpError::internal_error("JOURNAL_FILE is not set", None))?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| McpError::internal_error(format!("cannot open the journal: {e}"), None))?;
        file.write_all(format!("{id}\n").as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| McpError::internal_error(format!("cannot write the journal: {e}"), None))
    }
}

impl ServerHandler for Journal {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("journal", "1.0.0"))
            .with_instructions("Appends ids to a journal file (resilience fault tests)")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let not_idempotent = ToolAnnotations::new()
            .read_only(false)
            .idempotent(false)
            .destructive(false);
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new(
                "append",
                "waits delay_ms, then appends id to the journal file (synced)",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "delay_ms": {"type": "integer", "minimum": 0}
                    },
                    "required": ["id"]
                })),
            )
            .with_annotations(not_idempotent.clone()),
            Tool::new(
                "sleep",
                "waits ms milliseconds or until cancelled",
                schema(json!({
                    "type": "object",
                    "properties": {"ms": {"type": "integer", "minimum": 0}},
                    "required": ["ms"]
                })),
            )
            .with_annotations(not_idempotent),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.clone().unwrap_or_default();
        let wait = |ms: u64| {
            let ct = ctx.ct.clone();
            async move {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => true,
                    () = ct.cancelled() => false,
                }
            }
        };
        let result = match request.name.as_ref() {
            "append" => {
                let id = args
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| McpError::invalid_params("id must be a string", None))?
                    .to_owned();
                eprintln!("append {id}: started");
                if !wait(millis(&args, "delay_ms")).await {
                    return Err(McpError::internal_error("cancelled", None));
                }
                self.append(&id)?;
                text(format!("appended {id}"))
            }
            "sleep" => {
                eprintln!("sleep: started");
                if wait(millis(&args, "ms")).await {
                    text("slept")
                } else {
                    text("cancelled")
                }
            }
            other => {
                return Err(McpError::invalid_params(format!("no tool {other:?}"), None));
            }
        };
        Ok(result.into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("journal server starting (pid {})", std::process::id());
    let journal = Journal {
        path: std::env::var_os("JOURNAL_FILE").map(Into::into),
    };
    let server = journal.serve(rmcp::transport::stdio()).await?;
    server.waiting().await?;
    Ok(())
}
