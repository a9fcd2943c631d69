//! The observability routes of the HTTP API: Prometheus metrics and health.
//!
//! | Route | Token | Answer |
//! |---|---|---|
//! | `GET /health/live` | never | `200 {"status":"alive"}` while the process serves HTTP |
//! | `GET /health/ready` | never | `200` when ready, `503` when not (store, transport, bootstrap, shutdown) |
//! | `GET /health` | `observability.health.require_token` | `200` healthy or degraded, `503` unhealthy; JSON report |
//! | `GET /metrics` | `observability.metrics.require_token` | Prometheus text: Dawn, libp2p and process metrics |
//!
//! Probes must work without credentials (Kubernetes, Docker `HEALTHCHECK`);
//! the detailed report and the metrics can be put behind the API token.

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
};
use dawn_observe::health::LivenessReport;

use crate::node::Node;

/// The routes, to be merged into the API router (which adds the state).
pub(crate) fn routes(node: &Node) -> Router<Node> {
    let config = &node.config().observability;
    let token = || middleware::from_fn_with_state(node.clone(), crate::http_api::require_token);
    let mut router = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready));
    let mut health = Router::new().route("/health", get(health));
    if config.health.require_token {
        health = health.route_layer(token());
    }
    router = router.merge(health);
    if node.shared.observe.metrics.is_some() {
        let mut metrics = Router::new().route(&config.metrics.path, get(metrics));
        if config.metrics.require_token {
            metrics = metrics.route_layer(token());
        }
        router = router.merge(metrics);
    }
    router
}

async fn live() -> Json<LivenessReport> {
    Json(LivenessReport {
        status: "alive".into(),
    })
}

async fn ready(State(node): State<Node>) -> Response {
    let observe = &node.shared.observe;
    observe.refresh_readiness(&node.shared);
    let report = observe.readiness.report();
    (report.http_status(), Json(report)).into_response()
}

async fn health(State(node): State<Node>) -> Response {
    let report = node.shared.observe.health.report().await;
    (report.status.http_status(), Json(report.as_ref().clone())).into_response()
}

async fn metrics(State(node): State<Node>) -> Response {
    let Some(handle) = node.shared.observe.metrics.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let shared = node.shared.clone();
    // Reading /proc and encoding a few hundred series: keep it off the
    // async workers.
    let body = tokio::task::spawn_blocking(move || {
        shared.transport.sync_byte_counters();
        let libp2p = shared.transport.render_libp2p_metrics();
        handle.render_with(&[&libp2p])
    })
    .await;
    match body {
        Ok(body) => (
            [(header::CONTENT_TYPE, dawn_observe::metrics::CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
