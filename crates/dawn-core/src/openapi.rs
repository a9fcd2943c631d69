//! The OpenAPI 3.1 description of the node's HTTP API, served at
//! `GET /api/v1/openapi.json` and rendered into `docs/api.md`.
//!
//! `crates/dawn-core/tests/openapi.rs` checks it against the router: every
//! route string in the source is documented, and every documented operation
//! reaches a handler on a real node.

use std::fmt::Write as _;

use axum::{Json, Router, routing::get};
use serde_json::{Map, Value, json};

use crate::node::Node;

/// The `/api/v1/openapi.json` route (merged into the token-protected API).
pub(crate) fn routes() -> Router<Node> {
    Router::new().route("/api/v1/openapi.json", get(|| async { Json(document()) }))
}

/// One operation: method, path, summary, description, whether it needs the
/// token, parameters and an example request body.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    description: &'static str,
    auth: bool,
    query: &'static [(&'static str, &'static str, bool)],
    body: Option<Value>,
}

fn ops() -> Vec<Op> {
    let op = |method, path, summary, description| Op {
        method,
        path,
        summary,
        description,
        auth: true,
        query: &[],
        body: None,
    };
    vec![
        op(
            "get",
            "/api/v1/status",
            "Node status",
            "Node id, version, uptime, listen and API addresses, data root, connected peer count, local agents, and whether the node is shutting down.",
        ),
        op(
            "get",
            "/api/v1/peers",
            "Connected peers",
            "`{\"peers\": [...]}`: every connected peer with its addresses and trust level.",
        ),
        op(
            "get",
            "/api/v1/agents",
            "Agents",
            "`{\"node_id\", \"local\": [...], \"remote\": [...]}`: this node's agents, and the agents other nodes announced through the mesh registry (with `available`, `confirmed`, `version`, `last_heard_ms`).",
        ),
        Op {
            query: &[(
                "agent",
                "Agent address: `NAME` (local) or `PEER_ID/NAME` (remote).",
                true,
            )],
            ..op(
                "get",
                "/api/v1/tools",
                "Tools of an agent",
                "`{\"agent\", \"tools\": [...]}`: the agent's MCP tools (name, description, input schema).",
            )
        },
        Op {
            body: Some(
                json!({"agent": "PEER_ID/system", "tool": "echo", "arguments": {"message": "hi"}, "timeout_ms": 30000}),
            ),
            ..op(
                "post",
                "/api/v1/call",
                "Call a tool",
                "Calls `tool` on `agent` (local or remote) with `arguments` (default `{}`) and returns `{\"result\": CallToolResult}`. `timeout_ms` is optional. Errors are `{\"error\": {code, message, data.kind}}` with the HTTP status from docs/errors.md.",
            )
        },
        Op {
            body: Some(
                json!({"agent": "system", "request": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, "timeout_ms": 30000}),
            ),
            ..op(
                "post",
                "/api/v1/rpc",
                "Raw JSON-RPC to an agent",
                "Sends the JSON-RPC `request` to `agent` and returns the agent's JSON-RPC response as it is, errors included, with status 200.",
            )
        },
        op(
            "get",
            "/api/v1/trust",
            "Trust levels",
            "Every peer with a trust level set (by the API, the CLI or the config) and its note.",
        ),
        op(
            "get",
            "/api/v1/trust/{peer}",
            "Trust level of a peer",
            "The peer's trust level (untrusted, unknown, verified, trusted, bootstrap) and where it comes from.",
        ),
        Op {
            body: Some(json!({"level": "trusted", "note": "ops laptop"})),
            ..op(
                "put",
                "/api/v1/trust/{peer}",
                "Set a peer's trust level",
                "Sets the level (and an optional note). Peers pinned by the config cannot be changed (400).",
            )
        },
        op(
            "delete",
            "/api/v1/trust/{peer}",
            "Forget a peer's trust level",
            "Removes the stored level; the peer falls back to the default.",
        ),
        op(
            "post",
            "/api/v1/token/rotate",
            "Rotate the API token",
            "Writes a new token to `<data-root>/api.token` and returns it; the old token stops working.",
        ),
        op(
            "get",
            "/api/v1/agents/{agent}/state",
            "List an agent's state keys",
            "Keys stored by a local agent in the node's store.",
        ),
        op(
            "get",
            "/api/v1/agents/{agent}/state/{key}",
            "Read a state value",
            "The value stored under `key` (which may contain `/`).",
        ),
        Op {
            body: Some(json!({"any": "JSON value"})),
            ..op(
                "put",
                "/api/v1/agents/{agent}/state/{key}",
                "Write a state value",
                "Stores the JSON body under `key`.",
            )
        },
        op(
            "delete",
            "/api/v1/agents/{agent}/state/{key}",
            "Delete a state value",
            "Removes `key`.",
        ),
        op(
            "get",
            "/api/v1/backup",
            "Backup status",
            "Last backup, schedule and retention (see docs/backup.md).",
        ),
        Op {
            body: Some(json!({"dir": "/var/backups/dawn", "keep": 7})),
            ..op(
                "post",
                "/api/v1/backup",
                "Create a backup",
                "Takes a consistent backup now; `dir` and `keep` are optional (defaults from the config).",
            )
        },
        op(
            "get",
            "/api/v1/openapi.json",
            "This document",
            "The OpenAPI 3.1 description of the API.",
        ),
        op(
            "post",
            "/mcp",
            "MCP gateway: the whole mesh",
            "MCP Streamable HTTP endpoint (also GET for the event stream and DELETE to end a session): every agent of the mesh, tools named `AGENT__TOOL` (see docs/mcp.md).",
        ),
        op(
            "post",
            "/mcp/agents/{agent}",
            "MCP gateway: one local agent",
            "MCP Streamable HTTP endpoint exposing one local agent's tools as they are.",
        ),
        op(
            "post",
            "/mcp/peers/{peer}/agents/{agent}",
            "MCP gateway: one remote agent",
            "MCP Streamable HTTP endpoint exposing one agent of another node, called through the mesh.",
        ),
        Op {
            auth: false,
            ..op(
                "get",
                "/health/live",
                "Liveness",
                "`{\"status\": \"alive\"}` while the process serves HTTP. No token.",
            )
        },
        Op {
            auth: false,
            ..op(
                "get",
                "/health/ready",
                "Readiness",
                "200 when the node is ready for traffic, 503 otherwise, with the reasons. No token.",
            )
        },
        Op {
            auth: false,
            ..op(
                "get",
                "/health",
                "Health report",
                "Overall status and each component check (store, transport, peers, disk, mounted MCP servers, alerts); 503 when unhealthy. Needs the token if `observability.health.require_token` is set.",
            )
        },
        Op {
            auth: false,
            ..op(
                "get",
                "/metrics",
                "Prometheus metrics",
                "Prometheus text exposition (see docs/metrics.md). The path is `observability.metrics.path` (default `/metrics`); needs the token if `observability.metrics.require_token` is set.",
            )
        },
    ]
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in ops() {
        let mut parameters: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(op.query.iter().map(|(name, description, required)| {
            json!({"name": name, "in": "query", "required": required, "description": description, "schema": {"type": "string"}})
        }));
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({"description": "Success", "content": {"application/json": {"schema": {"type": "object"}}}}),
        );
        if op.auth {
            responses.insert(
                "401".into(),
                error_response("Missing or wrong API token (`WWW-Authenticate: Bearer`)"),
            );
        }
        responses.insert(
            "default".into(),
            error_response("Error; the status per error kind is in docs/errors.md"),
        );
        let mut operation = json!({
            "summary": op.summary,
            "description": op.description,
            "operationId": format!("{}_{}", op.method, op.path.trim_start_matches('/').replace(['/', '{', '}', '.'], "_")),
            "responses": responses,
        });
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if !op.auth {
            operation["security"] = json!([]);
        }
        if let Some(example) = op.body {
            operation["requestBody"] = json!({
                "required": op.method != "post" || op.path != "/api/v1/backup",
                "content": {"application/json": {"schema": {"type": "object"}, "example": example}}
            });
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Dawn node HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The admin and MCP API of a Dawn node, on `api.listen` (default 127.0.0.1, plain HTTP). \
                Every `/api/v1/*` and `/mcp*` request needs `Authorization: Bearer <token>`, the token being in \
                `<data-root>/api.token` (mode 0600; rotate with `dawn-cli token rotate`). Errors are \
                `{\"error\": {\"code\", \"message\", \"data\": {\"kind\"}}}` (docs/errors.md)."
        },
        "servers": [{"url": "http://127.0.0.1:9090", "description": "a node's api.listen (see <data-root>/api.addr)"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "The token in <data-root>/api.token"}
            },
            "schemas": {
                "ErrorBody": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "integer", "description": "Stable JSON-RPC error code (docs/errors.md)"},
                            "message": {"type": "string"},
                            "data": {"type": "object", "properties": {"kind": {"type": "string"}}}
                        }
                    }}
                }
            }
        }
    })
}

/// `docs/api.md`: the API reference rendered from [`document`].
pub fn render_markdown() -> String {
    let doc = document();
    let mut out = String::from(
        "# HTTP API\n\n\
         <!-- Generated by `cargo xtask docs` from dawn_core::openapi::document \
         (crates/dawn-core/src/openapi.rs); do not edit. -->\n\n",
    );
    let _ = writeln!(
        out,
        "{}\n\n\
         The machine-readable form of this page is the OpenAPI 3.1 document the node serves at \
         `GET /api/v1/openapi.json` (token required):\n\n\
         ```sh\n\
         curl -H \"Authorization: Bearer $(cat <data-root>/api.token)\" \"http://$(cat <data-root>/api.addr)/api/v1/openapi.json\"\n\
         ```\n\n\
         `dawn-cli` (docs/cli.md) wraps most of these endpoints.\n",
        doc["info"]["description"].as_str().unwrap_or_default()
    );
    out.push_str("| Method | Path | Token | Summary |\n|---|---|---|---|\n");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            let token = if op.get("security").is_some() {
                "no"
            } else {
                "yes"
            };
            let _ = writeln!(
                out,
                "| {} | `{path}` | {token} | {} |",
                method.to_uppercase(),
                op["summary"].as_str().unwrap_or_default()
            );
        }
    }
    for (path, item) in &paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            let _ = writeln!(
                out,
                "\n## {} `{path}`\n\n{}",
                method.to_uppercase(),
                op["description"].as_str().unwrap_or_default()
            );
            for p in op["parameters"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "\n- {} parameter `{}`{}{}",
                    p["in"].as_str().unwrap_or_default(),
                    p["name"].as_str().unwrap_or_default(),
                    if p["required"] == true {
                        " (required)"
                    } else {
                        ""
                    },
                    p["description"]
                        .as_str()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                );
            }
            if let Some(example) = op
                .pointer("/requestBody/content/application~1json/example")
                .and_then(|e| serde_json::to_string_pretty(e).ok())
            {
                let _ = writeln!(out, "\nRequest body example:\n\n```json\n{example}\n```");
            }
        }
    }
    out
}
