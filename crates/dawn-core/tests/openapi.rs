//! The OpenAPI document (`GET /api/v1/openapi.json`, `docs/api.md`) against
//! the routes the node really serves:
//! - every route string registered in the source (`/api/v1/...`, `/health...`,
//!   `/mcp...`, and the metrics path) is documented, with the same methods;
//! - every documented operation reaches a handler on a real node (never the
//!   router's "no such endpoint" fallback nor 405);
//! - the served document is the one in the code, behind the bearer token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use common::start_node;
use dawn_core::Node;
use serde_json::Value;

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Route strings and their methods, read from `.route(...)` /
/// `.route_service(...)` calls in crates/dawn-core/src. axum's `{*key}`
/// wildcard is written `{key}` in OpenAPI.
fn routes_in_source() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    source_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices(".route") {
            let call = &text[i..];
            let Some(open) = call.find('(') else { continue };
            let service = call[..open].contains("route_service");
            let rest = call[open + 1..].trim_start();
            // The metrics route takes its path from the config.
            let path = if rest.starts_with("&config.metrics.path") {
                "/metrics".to_owned()
            } else if let Some(quoted) = rest.strip_prefix('"') {
                quoted[..quoted.find('"').unwrap()].replace("{*", "{")
            } else {
                continue;
            };
            if !["/api/", "/health", "/mcp", "/metrics"]
                .iter()
                .any(|p| path.starts_with(p))
            {
                continue;
            }
            // Methods: `get(`, `.post(`, ... up to the call's closing parenthesis.
            let mut depth = 0usize;
            let mut end = open;
            for (j, c) in call[open..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let args = &call[open..end];
            let methods = routes.entry(path.clone()).or_default();
            if service {
                // An MCP Streamable HTTP service: POST requests, GET stream, DELETE session.
                methods.insert("post".into());
                continue;
            }
            for m in ["get", "post", "put", "delete", "patch"] {
                if args.contains(&format!("{m}(")) {
                    methods.insert(m.into());
                }
            }
        }
    }
    routes
}

#[test]
fn every_route_in_the_source_is_documented() {
    let doc = dawn_core::openapi::document();
    let routes = routes_in_source();
    assert!(
        routes.len() >= 15,
        "found only {} routes in the source; did the router move? {routes:?}",
        routes.len()
    );
    for (path, methods) in &routes {
        let item = doc["paths"]
            .get(path)
            .unwrap_or_else(|| panic!("route {path} is not in the OpenAPI document"));
        for method in methods {
            assert!(
                item.get(method).is_some(),
                "{} {path} is served but not documented",
                method.to_uppercase()
            );
        }
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                routes.get(path).is_some_and(|m| m.contains(method)),
                "{} {path} is documented but no route in the source serves it",
                method.to_uppercase()
            );
        }
    }
}

fn read_token(node: &Node) -> String {
    std::fs::read_to_string(node.data_dir().api_token())
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_reaches_a_handler() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir, "api", |c| {
        c.api.enabled = true;
        c.observability.metrics.enabled = true;
    })
    .await;
    let base = format!("http://{}", node.api_addr().unwrap());
    let token = read_token(&node);
    let client = reqwest::Client::new();

    // The served document is the code's, and needs the token.
    let url = format!("{base}/api/v1/openapi.json");
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let served: Value = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, dawn_core::openapi::document());
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(
        served["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );

    let peer = node.peer_id().to_string();
    for (path, item) in served["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{peer}", &peer)
            .replace("{agent}", "test")
            .replace("{key}", "some/key");
        for (method, op) in item.as_object().unwrap() {
            let query = if path == "/api/v1/tools" {
                "?agent=test"
            } else {
                ""
            };
            let mut request = client.request(
                method.to_uppercase().parse().unwrap(),
                format!("{base}{concrete}{query}"),
            );
            // Re-read: POST /api/v1/token/rotate (visited before /api/v1/tools) replaces it.
            request = request.bearer_auth(read_token(&node));
            if let Some(example) = op.pointer("/requestBody/content/application~1json/example") {
                request = request.json(example);
            }
            if path.starts_with("/mcp") {
                request = request
                    .header("accept", "application/json, text/event-stream")
                    .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert_ne!(
                status, 405,
                "{method} {path} answered 405: the route does not take this method"
            );
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path} fell through to the router's fallback: {status} {body}"
            );
            assert_ne!(status, 401, "{method} {path} refused the token: {body}");
        }
    }

    // Unauthenticated operations really are.
    for path in ["/health/live", "/health/ready", "/health", "/metrics"] {
        let status = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_ne!(status, 401, "{path} wants a token");
        assert_ne!(status, 404, "{path} is not served");
    }
    node.shutdown().await;
}

#[test]
fn generated_api_md_lists_every_operation() {
    let md = dawn_core::openapi::render_markdown();
    let doc = dawn_core::openapi::document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let heading = format!("## {} `{path}`", method.to_uppercase());
            assert!(md.contains(&heading), "docs/api.md lacks {heading}");
        }
    }
    assert!(md.contains("Authorization: Bearer"));
}
