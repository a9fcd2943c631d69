//! Starting, restarting and stopping nodes: identity, data directory lock,
//! address book, API token, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{os::unix::fs::PermissionsExt, time::Duration};

use common::*;
use dawn_core::{CallOptions, DawnConfig, NodeBuilder, NodeError, NodeEvent, jsonrpc::Request};
use serde_json::json;

#[tokio::test]
async fn identity_is_created_private_and_stable_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let first = a.peer_id();
    let root = a.data_dir().root().to_path_buf();
    a.shutdown().await;
    drop(a);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("node.key")), 0o600);
    let key_before = std::fs::read(root.join("node.key")).unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    assert_eq!(a.peer_id(), first);
    assert_eq!(std::fs::read(root.join("node.key")).unwrap(), key_before);
}

#[tokio::test]
async fn a_second_node_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _a = start_node(&dir, "a", |_| {}).await;
    let mut config = DawnConfig::ephemeral(dir.path().join("a"));
    config.api.enabled = false;
    let err = NodeBuilder::new(config).start().await.unwrap_err();
    assert!(matches!(err, NodeError::DataDir(_)), "{err}");
    assert!(
        err.to_string().contains("in use by another dawn-node"),
        "{err}"
    );
}

#[tokio::test]
async fn a_corrupt_key_file_stops_start_up_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let key = a.data_dir().node_key();
    a.shutdown().await;
    drop(a);
    let full = std::fs::read(&key).unwrap();
    std::fs::write(&key, &full[..full.len() / 2]).unwrap();
    let truncated = std::fs::read(&key).unwrap();
    let mut config = DawnConfig::ephemeral(dir.path().join("a"));
    config.api.enabled = false;
    let err = NodeBuilder::new(config).start().await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&key.display().to_string()) && msg.contains("corrupt"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        truncated,
        "the key file must not be replaced"
    );
}

#[tokio::test]
async fn a_restarted_node_redials_peers_from_its_address_book() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_node(&dir, "b", |_| {}).await;
    let a = start_node(&dir, "a", |_| {}).await;
    connect(&a, &b).await;
    let known = a
        .store()
        .peer(&b.peer_id().to_string())
        .unwrap()
        .expect("b is in a's address book");
    assert!(!known.addresses.is_empty());
    a.shutdown().await;
    drop(a);

    // No bootstrap, no dial: the address book alone brings b back.
    let a = start_node(&dir, "a", |_| {}).await;
    let mut events = a.subscribe();
    if !a.connected_peers().iter().any(|p| p.peer_id == b.peer_id()) {
        wait_for(
            &mut events,
            |e| matches!(e, NodeEvent::PeerConnected(p) if *p == b.peer_id()),
        )
        .await;
    }
    let r = a
        .call_tool(
            &addr(Some(b.peer_id()), "system"),
            "echo",
            json!({"message": "again"}),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&r), "again");
}

#[tokio::test]
async fn bootstrap_peers_from_config_are_dialed() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_node(&dir, "b", |_| {}).await;
    let bootstrap = b.dial_addrs()[0].clone();
    let mut events_b = b.subscribe();
    let a = start_node(&dir, "a", |c| c.node.bootstrap = vec![bootstrap]).await;
    wait_for(
        &mut events_b,
        |e| matches!(e, NodeEvent::PeerConnected(p) if *p == a.peer_id()),
    )
    .await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let (b, mut probe) = start_probed(&dir, "b", |_| {}).await;
    connect(&a, &b).await;
    let target = addr(Some(b.peer_id()), "tester");
    let a2 = a.clone();
    let t2 = target.clone();
    let in_flight =
        tokio::spawn(async move { a2.call_tool(&t2, "sleep", json!({"ms": 300})).await });
    expect_probe(&mut probe, "sleep-started").await;
    let b2 = b.clone();
    let stopping = tokio::spawn(async move { b2.shutdown().await });
    // The call that was running completes normally.
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!(text_of(&r), "slept");
    stopping.await.unwrap();
    // A new call to the stopped node fails with a clear error, quickly.
    let e = a
        .request(
            &target,
            Request::new(
                1,
                "tools/call",
                Some(json!({"name": "add", "arguments": {"a": 1, "b": 2}})),
            ),
            CallOptions::default().with_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    assert!(e.kind().is_some(), "{e}");
}

#[tokio::test]
async fn the_api_requires_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DawnConfig::ephemeral(dir.path().join("a"));
    config.api.enabled = true;
    let node = NodeBuilder::new(config).start().await.unwrap();
    let api = node.api_addr().unwrap();
    assert_eq!(node.data_dir().read_api_addr(), Some(api));
    let token_path = node.data_dir().api_token();
    assert_eq!(
        std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let token = std::fs::read_to_string(&token_path)
        .unwrap()
        .trim()
        .to_owned();
    let client = reqwest::Client::new();
    let url = format!("http://{api}/api/v1/status");

    let missing = client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!(-32001));
    let wrong = client
        .get(&url)
        .bearer_auth("dawn_0000")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let status: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(status["node_id"], json!(node.peer_id().to_string()));

    // A call through the API, and its errors.
    let call = |body: serde_json::Value| {
        client
            .post(format!("http://{api}/api/v1/call"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = call(json!({"agent": "system", "tool": "echo", "arguments": {"message": "via api"}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["result"]["content"][0]["text"], json!("via api"));
    let r = call(json!({"agent": "ghost", "tool": "echo"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = call(json!({"agent": "system", "tool": "echo", "arguments": {"message": 1}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .post(format!("http://{api}/api/v1/call"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The node still serves after bad input.
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    node.shutdown().await;
    assert_eq!(node.data_dir().read_api_addr(), None);
}

#[tokio::test]
async fn agents_can_be_added_and_removed_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DawnConfig::ephemeral(dir.path().join("a"));
    config.api.enabled = false;
    let node = NodeBuilder::new(config).start().await.unwrap();
    assert_eq!(node.agents().len(), 1);
    node.add_agent(TestAgent::new()).unwrap();
    assert!(matches!(
        node.add_agent(TestAgent::new()),
        Err(NodeError::DuplicateAgent(_))
    ));
    let r = node
        .call_tool(&addr(None, "tester"), "add", json!({"a": 1, "b": 1}))
        .await
        .unwrap();
    assert_eq!(r.structured_content, Some(json!({"sum": 2})));
    assert!(node.remove_agent("tester"));
    let e = node
        .call_tool(&addr(None, "tester"), "add", json!({"a": 1, "b": 1}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(dawn_core::ErrorKind::UnknownAgent));
}
