//! The node's HTTP API (axum): status, peers, agents, tool calls.
//!
//! Every `/api` route requires `Authorization: Bearer <token>`, where the
//! token is the content of `<data_root>/api.token`.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Query, Request as HttpRequest, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response as HttpResponse},
    routing::{get, post},
};
use dawn_resilience::ErrorKind;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    address::AgentAddress,
    error::NodeError,
    jsonrpc::{CallError, Request, request_from_value},
    node::{CallOptions, Node, peer_json},
};

/// The HTTP status for an error kind.
pub fn http_status(kind: Option<ErrorKind>) -> StatusCode {
    match kind {
        Some(ErrorKind::ParseError | ErrorKind::InvalidRequest | ErrorKind::InvalidParams) => {
            StatusCode::BAD_REQUEST
        }
        Some(ErrorKind::Unauthorized) => StatusCode::FORBIDDEN,
        Some(
            ErrorKind::UnknownAgent
            | ErrorKind::UnknownTool
            | ErrorKind::UnknownPeer
            | ErrorKind::UnknownResource
            | ErrorKind::UnknownPrompt
            | ErrorKind::MethodNotFound,
        ) => StatusCode::NOT_FOUND,
        Some(ErrorKind::RateLimited) => StatusCode::TOO_MANY_REQUESTS,
        Some(ErrorKind::MessageTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
        Some(ErrorKind::DeadlineExceeded | ErrorKind::NetworkTimeout) => {
            StatusCode::GATEWAY_TIMEOUT
        }
        Some(
            ErrorKind::Unreachable
            | ErrorKind::ConnectionLost
            | ErrorKind::ProtocolViolation
            | ErrorKind::BreakerOpen
            | ErrorKind::RetryExhausted,
        ) => StatusCode::BAD_GATEWAY,
        Some(ErrorKind::ShuttingDown | ErrorKind::Busy) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

struct ApiError(CallError);

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        // "Come back later" errors (rate_limited, breaker_open) also say when
        // in the standard header, in whole seconds rounded up.
        let retry_after = self
            .0
            .data
            .as_ref()
            .and_then(|d| d.get("retry_after_ms"))
            .and_then(Value::as_u64)
            .map(|ms| ms.div_ceil(1000));
        let mut response =
            (http_status(self.0.kind()), Json(json!({ "error": self.0 }))).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(CallError::new(ErrorKind::InvalidParams, message))
}

/// Builds the router (without binding it).
pub fn router(node: Node) -> Router {
    let api = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/peers", get(peers))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/tools", get(tools))
        .route("/api/v1/call", post(call))
        .route("/api/v1/rpc", post(rpc));
    let api = api.merge(crate::security::api::routes());
    let api = api.merge(crate::openapi::routes());
    let api = api
        .merge(crate::agent_state::routes())
        .merge(crate::backup::schedule::routes());
    let protected = crate::mcp_gateway::routes(api, &node)
        .route_layer(middleware::from_fn_with_state(node.clone(), require_token));
    protected
        .merge(crate::observe_api::routes(&node))
        .fallback(not_found)
        .with_state(node)
}

async fn not_found() -> ApiError {
    ApiError(CallError::new(
        ErrorKind::MethodNotFound,
        "no such endpoint",
    ))
}

pub(crate) async fn require_token(
    State(node): State<Node>,
    headers: HeaderMap,
    request: HttpRequest,
    next: Next,
) -> HttpResponse {
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    match node.shared.security.verify_api_token(presented) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            tracing::warn!(path = %request.uri().path(), reason, "API request refused");
            node.shared
                .security
                .api_auth_failed(request.uri().path(), reason);
            let mut response = (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": CallError::new(ErrorKind::Unauthorized, format!("{reason}: send Authorization: Bearer <token from {}>", node.data_dir().api_token().display())) })),
            )
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

async fn status(State(node): State<Node>) -> Json<Value> {
    Json(json!({
        "node_id": node.peer_id().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": node.uptime().as_secs(),
        "listen_addrs": node.dial_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "api_addr": node.api_addr().map(|a| a.to_string()),
        "data_root": node.data_dir().root().display().to_string(),
        "peers_connected": node.connected_peers().len(),
        "agents": node.agents().iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
        "shutting_down": node.is_shutting_down(),
    }))
}

async fn peers(State(node): State<Node>) -> Json<Value> {
    Json(json!({ "peers": node.connected_peers().iter().map(peer_json).collect::<Vec<_>>() }))
}

/// Local agents, and every other node of the mesh registry with its agents
/// and whether they are available now.
async fn agents(State(node): State<Node>) -> Json<Value> {
    let remote: Vec<Value> = node
        .registry()
        .into_iter()
        .filter(|entry| !entry.local)
        .map(|entry| {
            let agents: Vec<crate::node::AgentSummary> =
                entry.agents.iter().map(crate::AgentDescriptor::summary).collect();
            json!({
                "peer_id": entry.origin.to_string(),
                "agents": agents,
                "available": entry.available,
                "confirmed": entry.confirmed,
                "version": entry.version,
                "last_heard_ms": entry.last_heard.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
        })
        .collect();
    Json(json!({ "node_id": node.peer_id().to_string(), "local": node.agents(), "remote": remote }))
}

#[derive(Deserialize)]
struct ToolsQuery {
    agent: String,
}

fn parse_address(s: &str) -> Result<AgentAddress, ApiError> {
    s.parse::<AgentAddress>()
        .map_err(|e| bad_request(e.to_string()))
}

async fn tools(
    State(node): State<Node>,
    Query(q): Query<ToolsQuery>,
) -> Result<Json<Value>, ApiError> {
    let address = parse_address(&q.agent)?;
    let result = node
        .request(
            &address,
            Request::new(1, "tools/list", None),
            CallOptions::default().for_api_client(),
        )
        .await
        .map_err(ApiError)?;
    Ok(Json(
        json!({ "agent": address.to_string(), "tools": result.get("tools").cloned().unwrap_or(json!([])) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    agent: String,
    tool: String,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

fn options(timeout_ms: Option<u64>) -> CallOptions {
    let mut options = CallOptions::default().for_api_client();
    if let Some(ms) = timeout_ms {
        options = options.with_timeout(Duration::from_millis(ms));
    }
    options
}

async fn call(
    State(node): State<Node>,
    body: Result<Json<CallBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|e| bad_request(e.body_text()))?;
    let address = parse_address(&body.agent)?;
    let arguments = match body.arguments {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(bad_request("arguments must be a JSON object")),
    };
    let request = Request::new(
        1,
        "tools/call",
        Some(json!({ "name": body.tool, "arguments": arguments })),
    );
    let result = node
        .request(&address, request, options(body.timeout_ms))
        .await
        .map_err(ApiError)?;
    Ok(Json(json!({ "result": result })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RpcBody {
    agent: String,
    request: Value,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Sends any JSON-RPC message to an agent and returns the JSON-RPC response.
async fn rpc(
    State(node): State<Node>,
    body: Result<Json<RpcBody>, axum::extract::rejection::JsonRejection>,
) -> HttpResponse {
    let body = match body {
        Ok(Json(body)) => body,
        Err(e) => return bad_request(e.body_text()).into_response(),
    };
    let address = match parse_address(&body.agent) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let request = match request_from_value(body.request) {
        Ok(r) => r,
        Err((id, error)) => return Json(crate::jsonrpc::Response::err(id, error)).into_response(),
    };
    match node.send(&address, request, options(body.timeout_ms)).await {
        Some(response) => Json(response).into_response(),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// Binds the API, records its address in the data directory and serves it
/// until the node stops.
pub(crate) async fn serve(node: Node) -> Result<(), NodeError> {
    let addr = node.config().api.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Api { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| NodeError::Api { addr, source })?;
    if !node.config().api.require_token {
        tracing::warn!(%bound, "api.require_token is false: anyone who can reach the API can use it (testing only)");
    }
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "the HTTP API listens on a non-loopback address without TLS; put a TLS-terminating proxy in front or bind it to 127.0.0.1");
    }
    node.data_dir().write_api_addr(bound)?;
    *node
        .shared
        .api_addr
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(bound);
    let app = router(node.clone());
    let stop = node.shared.stop.clone();
    node.shared.background_spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "HTTP API server failed");
        }
    });
    tracing::info!(%bound, "HTTP API listening");
    Ok(())
}
