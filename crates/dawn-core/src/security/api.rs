//! HTTP API routes for security: trust records and token rotation.
//!
//! | Method | Path | What |
//! |---|---|---|
//! | GET | `/api/v1/trust` | every peer with a pin, stored record or bootstrap entry, plus the defaults |
//! | GET | `/api/v1/trust/{peer}` | one peer's effective level and where it comes from |
//! | PUT | `/api/v1/trust/{peer}` | set a level: `{"level": "trusted", "note": "..."}` |
//! | DELETE | `/api/v1/trust/{peer}` | remove the stored record (back to bootstrap or the default) |
//! | POST | `/api/v1/token/rotate` | write a new `api.token`; the old token stops working at once |
//!
//! Changes apply to the running node at once and are audited
//! (`trust_changed`, `token_rotated`). These routes sit behind the bearer
//! token like every `/api` route.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use dawn_resilience::ErrorKind;
use dawn_security::{PeerTrust, TrustError, TrustLevel};
use dawn_transport::PeerId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::SecurityError;
use crate::{jsonrpc::CallError, node::Node};

/// The security routes, to be merged into the API router (behind the token
/// check).
pub(crate) fn routes() -> Router<Node> {
    Router::new()
        .route("/api/v1/trust", get(list))
        .route("/api/v1/trust/{peer}", get(show).put(set).delete(remove))
        .route("/api/v1/token/rotate", post(rotate_token))
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    let error = CallError::new(kind, message);
    (
        crate::http_api::http_status(error.kind()),
        Json(json!({ "error": error })),
    )
        .into_response()
}

fn parse_peer(text: &str) -> Result<PeerId, String> {
    text.trim()
        .parse::<PeerId>()
        .map_err(|e| format!("{text:?} is not a peer id ({e}); use the 12D3KooW... form"))
}

fn trust_error(e: SecurityError) -> Response {
    match e {
        SecurityError::Trust(
            e @ (TrustError::PinnedByConfig { .. } | TrustError::NoteTooLong { .. }),
        ) => error(ErrorKind::InvalidParams, e.to_string()),
        other => {
            tracing::error!(error = %other, "cannot change a trust record");
            error(ErrorKind::Internal, other.to_string())
        }
    }
}

/// The JSON form of a peer's trust.
pub(crate) fn trust_json(node: &Node, trust: &PeerTrust) -> Value {
    let transport = &node.shared.transport;
    json!({
        "peer_id": trust.peer.to_string(),
        "level": trust.level.as_str(),
        "origin": trust.origin.to_string(),
        "source": trust.origin.source().to_string(),
        "pinned": trust.origin.is_pinned(),
        "has_record": trust.origin.has_record(),
        "note": trust.note,
        "updated_ms": trust.updated_ms,
        "connected": transport.is_connected(&trust.peer),
        "banned": transport.is_banned(&trust.peer),
    })
}

async fn list(State(node): State<Node>) -> Json<Value> {
    let security = &node.shared.security;
    let peers: Vec<Value> = security
        .trust()
        .list()
        .iter()
        .map(|t| trust_json(&node, t))
        .collect();
    Json(json!({
        "default_level": security.trust().default_level().as_str(),
        "reject_unknown": security.trust().reject_unknown(),
        "peers": peers,
    }))
}

async fn show(State(node): State<Node>, Path(peer): Path<String>) -> Response {
    let peer = match parse_peer(&peer) {
        Ok(peer) => peer,
        Err(message) => return error(ErrorKind::InvalidParams, message),
    };
    let trust = node.shared.security.trust().lookup(&peer);
    let standing = node
        .shared
        .security
        .reputation()
        .standing(&peer, crate::node::now_ms());
    let mut value = trust_json(&node, &trust);
    value["reputation"] = json!({
        "score": standing.score,
        "offences": standing.offences,
        "last_offence": standing.last_offence,
        "banned_until_ms": standing.banned_until_ms,
    });
    Json(value).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    level: String,
    #[serde(default)]
    note: Option<String>,
}

async fn set(
    State(node): State<Node>,
    Path(peer): Path<String>,
    body: Result<Json<SetBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let peer = match parse_peer(&peer) {
        Ok(peer) => peer,
        Err(message) => return error(ErrorKind::InvalidParams, message),
    };
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return error(ErrorKind::InvalidParams, e.body_text()),
    };
    let level = match body.level.parse::<TrustLevel>() {
        Ok(level) => level,
        Err(e) => return error(ErrorKind::InvalidParams, e.to_string()),
    };
    if peer == node.peer_id() {
        return error(
            ErrorKind::InvalidParams,
            "that is this node's own peer id; trust levels are for other peers",
        );
    }
    let note = body.note.filter(|n| !n.trim().is_empty());
    match node
        .shared
        .security
        .set_trust(peer, level, note, "api")
        .await
    {
        Ok(change) => Json(json!({
            "before": trust_json(&node, &change.before),
            "after": trust_json(&node, &change.after),
        }))
        .into_response(),
        Err(e) => trust_error(e),
    }
}

async fn remove(State(node): State<Node>, Path(peer): Path<String>) -> Response {
    let peer = match parse_peer(&peer) {
        Ok(peer) => peer,
        Err(message) => return error(ErrorKind::InvalidParams, message),
    };
    match node.shared.security.remove_trust(peer, "api").await {
        Ok(Some(change)) => Json(json!({
            "removed": true,
            "before": trust_json(&node, &change.before),
            "after": trust_json(&node, &change.after),
        }))
        .into_response(),
        Ok(None) => Json(json!({
            "removed": false,
            "after": trust_json(&node, &node.shared.security.trust().lookup(&peer)),
        }))
        .into_response(),
        Err(e) => trust_error(e),
    }
}

async fn rotate_token(State(node): State<Node>) -> Response {
    if !node.shared.security.token_required() {
        return error(
            ErrorKind::InvalidParams,
            "this node does not use an API token (api.require_token = false)",
        );
    }
    let shared = node.shared.clone();
    let result =
        tokio::task::spawn_blocking(move || shared.security.rotate_api_token("the API")).await;
    match result {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(json!({
                "rotated": true,
                "token_file": node.data_dir().api_token().display().to_string(),
            })),
        )
            .into_response(),
        Ok(Err(e)) => error(ErrorKind::Internal, e.to_string()),
        Err(e) => error(
            ErrorKind::Internal,
            format!("token rotation task failed: {e}"),
        ),
    }
}
