//! Several in-process nodes on 127.0.0.1 calling each other's agents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use common::*;
use dawn_core::{
    CallError, CallOptions, ErrorKind, Upstream,
    jsonrpc::{Request, Response},
};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[tokio::test]
async fn local_and_remote_calls_work_and_errors_are_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let b = start_node(&dir, "b", |_| {}).await;
    connect(&a, &b).await;
    let b_id = Some(b.peer_id());

    // Local echo, and the same through the full address of the local node.
    let r = a
        .call_tool(&addr(None, "system"), "echo", json!({"message": "hi"}))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "hi");
    let r = a
        .call_tool(
            &addr(Some(a.peer_id()), "system"),
            "echo",
            json!({"message": "me"}),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&r), "me");

    // Remote echo and a remote tool with structured output.
    let r = a
        .call_tool(
            &addr(b_id, "system"),
            "echo",
            json!({"message": "over there"}),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&r), "over there");
    let r = a
        .call_tool(&addr(b_id, "tester"), "add", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert_eq!(r.structured_content, Some(json!({"sum": 42})));

    // Remote system/info names the remote node.
    let r = a
        .call_tool(&addr(b_id, "system"), "info", json!({}))
        .await
        .unwrap();
    assert_eq!(
        r.structured_content.unwrap()["node_id"],
        json!(b.peer_id().to_string())
    );

    // Distinct errors.
    let e = a
        .call_tool(&addr(b_id, "nobody"), "echo", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::UnknownAgent), "{e}");
    let e = a
        .call_tool(&addr(None, "nobody"), "echo", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::UnknownAgent), "{e}");
    let e = a
        .call_tool(&addr(b_id, "tester"), "divide", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::UnknownTool), "{e}");
    let stranger: dawn_core::PeerId = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
        .parse()
        .unwrap();
    let e = a
        .call_tool(
            &addr(Some(stranger), "system"),
            "echo",
            json!({"message": "x"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::UnknownPeer), "{e}");

    // Invalid arguments name the field.
    let e = a
        .call_tool(&addr(b_id, "tester"), "add", json!({"a": "two", "b": 1}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::InvalidParams), "{e}");
    assert!(e.message.contains("/a"), "{e}");
    assert_eq!(e.data.as_ref().unwrap()["errors"][0]["path"], json!("/a"));
    let e = a
        .call_tool(&addr(b_id, "tester"), "add", json!({"a": 1}))
        .await
        .unwrap_err();
    assert!(e.message.contains("\"b\""), "missing field named: {e}");
    let e = a
        .call_tool(
            &addr(b_id, "system"),
            "echo",
            json!({"message": 5, "extra": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.data.as_ref().unwrap()["errors"].as_array().unwrap().len(),
        2,
        "{e}"
    );

    // Both nodes keep working after all of that.
    let r = b
        .call_tool(
            &addr(Some(a.peer_id()), "system"),
            "echo",
            json!({"message": "back"}),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&r), "back");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn caller_ids_are_kept_and_notifications_get_no_response() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let b = start_node(&dir, "b", |_| {}).await;
    connect(&a, &b).await;
    let target = addr(Some(b.peer_id()), "system");
    for id in [json!("req-7"), json!(99), json!(0)] {
        let response = a
            .send(
                &target,
                Request::new(id.clone(), "ping", None),
                CallOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(response.id, id);
        assert_eq!(response.result, Some(json!({})));
    }
    let none = a
        .send(
            &target,
            Request::notification("notifications/initialized", None),
            CallOptions::default(),
        )
        .await;
    assert!(none.is_none());
    let unknown = a
        .send(
            &target,
            Request::new(5, "no/such/method", None),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(unknown.error.unwrap().code, -32601);
}

#[tokio::test]
async fn oversized_messages_are_refused_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let small = |c: &mut dawn_core::DawnConfig| {
        c.transport.max_message_size = dawn_core::config::ByteSize(4096)
    };
    let a = start_node(&dir, "a", small).await;
    let b = start_node(&dir, "b", small).await;
    connect(&a, &b).await;
    let target = addr(Some(b.peer_id()), "system");
    let e = a
        .call_tool(&target, "echo", json!({"message": "x".repeat(10_000)}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::MessageTooLarge), "{e}");
    let e = a
        .call_tool(
            &addr(Some(b.peer_id()), "tester"),
            "blob",
            json!({"n": 10_000}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::MessageTooLarge), "{e}");
    // Still fine afterwards.
    let r = a
        .call_tool(&target, "echo", json!({"message": "small"}))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "small");
}

#[tokio::test]
async fn deadline_expiry_is_a_timeout_and_stops_remote_work() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let (b, mut probe) = start_probed(&dir, "b", |_| {}).await;
    connect(&a, &b).await;
    let target = addr(Some(b.peer_id()), "tester");
    let request = Request::new(
        1,
        "tools/call",
        Some(json!({"name": "sleep", "arguments": {"ms": 600_000}})),
    );
    let e = a
        .request(
            &target,
            request,
            CallOptions::default().with_timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::DeadlineExceeded), "{e}");
    // The remote agent was told to stop.
    expect_probe(&mut probe, "sleep-started").await;
    expect_probe(&mut probe, "sleep-stopped").await;
}

struct RecordingUpstream {
    notifications: Mutex<Vec<Request>>,
}

#[async_trait]
impl Upstream for RecordingUpstream {
    async fn notify(&self, notification: Request) {
        self.notifications.lock().await.push(notification);
    }
    async fn request(&self, request: Request) -> Result<Value, CallError> {
        assert_eq!(request.method, "sampling/createMessage");
        Ok(json!({"role": "assistant", "content": {"type": "text", "text": "42"}}))
    }
}

#[tokio::test]
async fn progress_and_client_requests_cross_the_hop() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let b = start_node(&dir, "b", |_| {}).await;
    connect(&a, &b).await;
    let target = addr(Some(b.peer_id()), "tester");
    let upstream = Arc::new(RecordingUpstream {
        notifications: Mutex::new(Vec::new()),
    });
    let request = Request::new(
        "p1",
        "tools/call",
        Some(json!({"name": "progress", "arguments": {}, "_meta": {"progressToken": "tok"}})),
    );
    let response: Response = a
        .send_with_upstream(&target, request, CallOptions::default(), upstream.clone())
        .await
        .unwrap();
    assert!(response.error.is_none(), "{response:?}");
    let notes = upstream.notifications.lock().await.clone();
    let progress: Vec<f64> = notes
        .iter()
        .filter(|n| n.method == "notifications/progress")
        .map(|n| n.params.as_ref().unwrap()["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(progress, vec![1.0, 2.0, 3.0]);
    assert!(
        notes
            .iter()
            .all(|n| n.params.as_ref().unwrap()["progressToken"] == json!("tok"))
    );

    // A request from the remote agent to the client, answered upstream.
    let request = Request::new(
        2,
        "tools/call",
        Some(json!({"name": "ask", "arguments": {}})),
    );
    let response = a
        .send_with_upstream(&target, request, CallOptions::default(), upstream.clone())
        .await
        .unwrap();
    let result = response.result.unwrap();
    assert_eq!(
        result["structuredContent"]["answer"]["content"]["text"],
        json!("42")
    );

    // Without an upstream the agent gets a clear error instead of hanging.
    let e = a.call_tool(&target, "ask", json!({})).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::MethodNotFound), "{e}");
}

#[tokio::test]
async fn cancelling_a_remote_call_cancels_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let (b, mut probe) = start_probed(&dir, "b", |_| {}).await;
    connect(&a, &b).await;
    let target = addr(Some(b.peer_id()), "tester");
    let cancel = tokio_util::sync::CancellationToken::new();
    let request = Request::new(
        1,
        "tools/call",
        Some(json!({"name": "sleep", "arguments": {"ms": 600_000}})),
    );
    let a2 = a.clone();
    let options = CallOptions::default().with_cancel(cancel.clone());
    let call = tokio::spawn(async move { a2.request(&target, request, options).await });
    expect_probe(&mut probe, "sleep-started").await;
    cancel.cancel();
    let e = call.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Cancelled));
    expect_probe(&mut probe, "sleep-stopped").await;
}

#[tokio::test]
async fn many_concurrent_remote_calls() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir, "a", |_| {}).await;
    let b = start_node(&dir, "b", |_| {}).await;
    connect(&a, &b).await;
    let target = addr(Some(b.peer_id()), "tester");
    let mut tasks = Vec::new();
    for i in 0..200i64 {
        let a = a.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let r = a
                .call_tool(&target, "add", json!({"a": i, "b": 1}))
                .await
                .unwrap();
            assert_eq!(r.structured_content, Some(json!({"sum": i + 1})));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn remote_agents_are_learned_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    // A short liveness bound, in case the goodbye of a graceful shutdown is
    // lost.
    let short = |c: &mut dawn_core::DawnConfig| {
        c.registry.announce_interval = dawn_core::config::HumanDuration(Duration::from_millis(500));
        c.registry.liveness_timeout = dawn_core::config::HumanDuration::secs(3);
    };
    let a = start_node(&dir, "a", short).await;
    let b = start_node(&dir, "b", short).await;
    connect(&a, &b).await;
    let remote = a.remote_agents();
    let ids: Vec<String> = remote[&b.peer_id()].iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, vec!["system".to_string(), "tester".to_string()]);
    let mut events = a.subscribe();
    b.shutdown().await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while a.remote_agents().contains_key(&b.peer_id()) {
            let _ = events.recv().await;
        }
    })
    .await
    .expect("b's agents were still listed 30 s after it stopped");
    let entry = a
        .registry()
        .into_iter()
        .find(|e| e.origin == b.peer_id())
        .expect("b stays in the registry, unavailable");
    assert!(!entry.available);
}
