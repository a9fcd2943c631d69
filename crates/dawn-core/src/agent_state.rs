//! Agent state: each agent's persistent, transactional key-value store (kept in the node's
//! database, see [`dawn_store::AgentStore`]), reached through [`crate::AgentHandle::store`]
//! or [`Node::agent_store`], and the admin API under `/api/v1/agents/{agent}/state`.
//!
//! A write returns once it is durably committed: state an agent wrote before a crash is there
//! after the restart, and backups carry it.

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use dawn_resilience::ErrorKind;
use dawn_store::{AgentStore, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{address::AgentId, error::NodeError, jsonrpc::CallError, node::Node};

impl Node {
    /// The persistent state store of agent `agent` (a valid agent id; the agent need not be
    /// running). Agents normally use the store given to them in [`crate::AgentHandle::store`];
    /// this reaches the same namespace.
    ///
    /// The store's methods block until the disk confirms each commit; from async code run
    /// them inside `tokio::task::spawn_blocking` (the handle is cheap to clone).
    pub fn agent_store(&self, agent: &str) -> Result<AgentStore, NodeError> {
        let id = AgentId::new(agent)?;
        Ok(self.shared.store.agent_store(id.as_str())?)
    }
}

/// The admin API routes for agent state (token-protected like every `/api` route).
pub(crate) fn routes() -> Router<Node> {
    Router::new()
        .route("/api/v1/agents/{agent}/state", get(list))
        .route(
            "/api/v1/agents/{agent}/state/{*key}",
            get(read).put(write).delete(remove),
        )
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    (
        crate::http_api::http_status(Some(kind)),
        Json(json!({ "error": CallError::new(kind, message) })),
    )
        .into_response()
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::InvalidInput { detail, .. } => error(ErrorKind::InvalidParams, detail),
        other => error(ErrorKind::Internal, other.to_string()),
    }
}

fn open(node: &Node, agent: &str) -> Result<AgentStore, String> {
    node.agent_store(agent).map_err(|e| e.to_string())
}

/// JSON values as they are; other bytes as hex.
fn value_json(bytes: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => json!({ "value": value }),
        Err(_) => json!({ "value_hex": hex::encode(bytes) }),
    }
}

/// Runs a store operation off the async runtime; a failure is the error response to send.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Box<Response>> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Box::new(store_error(e))),
        Err(e) => Err(Box::new(error(
            ErrorKind::Internal,
            format!("the state task failed: {e}"),
        ))),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
}

/// `GET /api/v1/agents/{agent}/state?prefix=P`: every entry (whose key starts with P).
async fn list(
    State(node): State<Node>,
    Path(agent): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let store = match open(&node, &agent) {
        Ok(store) => store,
        Err(message) => return error(ErrorKind::InvalidParams, message),
    };
    match blocking(move || store.list(&query.prefix)).await {
        Ok(entries) => {
            let entries: Vec<Value> = entries
                .iter()
                .map(|(key, bytes)| {
                    let mut entry = value_json(bytes);
                    entry["key"] = json!(key);
                    entry
                })
                .collect();
            Json(json!({ "agent": agent, "entries": entries })).into_response()
        }
        Err(response) => *response,
    }
}

/// `GET /api/v1/agents/{agent}/state/{key}`.
async fn read(State(node): State<Node>, Path((agent, key)): Path<(String, String)>) -> Response {
    let store = match open(&node, &agent) {
        Ok(store) => store,
        Err(message) => return error(ErrorKind::InvalidParams, message),
    };
    let lookup = key.clone();
    match blocking(move || store.get(&lookup)).await {
        Ok(Some(bytes)) => {
            let mut answer = value_json(&bytes);
            answer["agent"] = json!(agent);
            answer["key"] = json!(key);
            Json(answer).into_response()
        }
        Ok(None) => error(
            ErrorKind::UnknownResource,
            format!("agent {agent} has no state under {key:?}"),
        ),
        Err(response) => *response,
    }
}

/// `PUT /api/v1/agents/{agent}/state/{key}` with a JSON body: stores it; answers once the
/// write is durable.
async fn write(
    State(node): State<Node>,
    Path((agent, key)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if serde_json::from_slice::<Value>(&body).is_err() {
        return error(
            ErrorKind::InvalidParams,
            "the body must be a JSON value (the state to store)",
        );
    }
    let store = match open(&node, &agent) {
        Ok(store) => store,
        Err(message) => return error(ErrorKind::InvalidParams, message),
    };
    let target = key.clone();
    match blocking(move || store.put(&target, &body)).await {
        Ok(()) => Json(json!({ "agent": agent, "key": key, "stored": true })).into_response(),
        Err(response) => *response,
    }
}

/// `DELETE /api/v1/agents/{agent}/state/{key}`.
async fn remove(State(node): State<Node>, Path((agent, key)): Path<(String, String)>) -> Response {
    let store = match open(&node, &agent) {
        Ok(store) => store,
        Err(message) => return error(ErrorKind::InvalidParams, message),
    };
    let target = key.clone();
    match blocking(move || store.delete(&target)).await {
        Ok(existed) => (
            StatusCode::OK,
            Json(json!({ "agent": agent, "key": key, "deleted": existed })),
        )
            .into_response(),
        Err(response) => *response,
    }
}
