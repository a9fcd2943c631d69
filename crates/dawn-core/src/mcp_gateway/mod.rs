//! MCP for standard clients: Streamable HTTP endpoints on the API server
//! (built on the official Rust SDK, `rmcp`).
//!
//! | Path | Serves |
//! |---|---|
//! | `/mcp` | the mesh view: every local agent and every agent on connected peers, namespaced (see [`naming`]) |
//! | `/mcp/agents/{agent}` | one local agent, its own names |
//! | `/mcp/peers/{peer}/agents/{agent}` | one agent of another node, through this node |
//!
//! All three require the API bearer token, validate `Host` (DNS rebinding)
//! and `Origin`, and cap request bodies.

mod handler;
pub mod naming;
mod upstream;

use std::sync::Arc;

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::Request,
    http::{Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};

use crate::node::Node;
use handler::{GatewayHandler, ViewKind};

/// Adds the MCP routes to `router`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    node: &Node,
) -> Router<S> {
    let config = &node.config().mcp;
    if !config.enabled {
        return router;
    }
    let api = node.api_addr();
    let mut hosts: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "[::1]".into(),
    ];
    if let Some(api) = api {
        hosts.push(api.to_string());
        hosts.push(format!("localhost:{}", api.port()));
        hosts.push(format!("127.0.0.1:{}", api.port()));
    }
    hosts.extend(config.allowed_hosts.iter().cloned());
    let mut server_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_max_request_body_bytes(usize::try_from(config.max_body_size.0).unwrap_or(usize::MAX))
        .with_cancellation_token(node.shared.stop.child_token());
    server_config = if config.allowed_origins.is_empty() {
        server_config.enforce_origin_validation()
    } else {
        server_config.with_allowed_origins(config.allowed_origins.clone())
    };
    let page_size = config.page_size;
    let service = |kind: ViewKind| {
        let node = node.clone();
        StreamableHttpService::new(
            move || Ok(GatewayHandler::new(node.clone(), kind, page_size)),
            Arc::new(LocalSessionManager::default()),
            server_config.clone(),
        )
    };
    let limit = usize::try_from(config.max_body_size.0).unwrap_or(usize::MAX);
    let mcp = Router::new()
        .route_service("/mcp", service(ViewKind::Mesh))
        .route_service("/mcp/agents/{agent}", service(ViewKind::Agent))
        .route_service(
            "/mcp/peers/{peer}/agents/{agent}",
            service(ViewKind::RemoteAgent),
        )
        .layer(middleware::from_fn(move |req, next| {
            json_guard(limit, req, next)
        }));
    router.merge(mcp)
}

/// Answers bodies that are too large (413) or not JSON (400 with a JSON-RPC
/// parse error) before they reach the MCP service, so clients get the
/// standard error instead of a transport-specific one.
async fn json_guard(limit: usize, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds the limit of {limit} bytes (mcp.max_body_size)"),
            )
                .into_response();
        }
    };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": { "code": -32700, "message": format!("parse error: {e}") },
        });
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
