//! Mounted MCP servers (`mcp.servers`): a real MCP server process
//! (`examples/fixture_mcp_server.rs`) mounted over stdio and over Streamable
//! HTTP, called locally and from another node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use common::*;
use dawn_core::{
    CallError, CallOptions, DawnConfig, ErrorKind, MountedServerState, MountedServerStatus, Node,
    NodeBuilder, NodeEvent, Upstream,
    config::{ConfigError, ConfigLoader, HumanDuration, KEYS, MountedServerConfig},
    jsonrpc::Request,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The fixture server binary: built next to the test binaries by `cargo
/// test`, or built here when only this test target was built.
fn fixture() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let path = profile.join("examples").join("fixture_mcp_server");
        if !path.is_file() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = std::process::Command::new(cargo);
            build.args([
                "build",
                "-q",
                "-p",
                "dawn-core",
                "--example",
                "fixture_mcp_server",
            ]);
            if profile.file_name().is_some_and(|p| p == "release") {
                build.arg("--release");
            }
            let status = build.status().unwrap();
            assert!(status.success(), "building the fixture server failed");
        }
        assert!(path.is_file(), "no fixture server at {}", path.display());
        path
    })
}

fn stdio_server(id: &str) -> MountedServerConfig {
    MountedServerConfig::stdio(id, fixture().to_string_lossy(), Vec::new())
}

async fn node_with(dir: &tempfile::TempDir, name: &str, servers: Vec<MountedServerConfig>) -> Node {
    let mut config = DawnConfig::ephemeral(dir.path().join(name));
    config.api.enabled = false;
    config.mcp.servers = servers;
    NodeBuilder::new(config).start().await.unwrap()
}

/// Waits until the status of `id` satisfies `pred`.
async fn wait_status(
    node: &Node,
    id: &str,
    what: &str,
    mut pred: impl FnMut(&MountedServerStatus) -> bool,
) -> MountedServerStatus {
    let mut rx = node.watch_mounted_server(id).unwrap();
    match tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| pred(s))).await {
        Ok(status) => status.unwrap().clone(),
        Err(_) => panic!("{id} never became {what}: {:?}", node.mounted_servers()),
    }
}

async fn running(node: &Node, id: &str) -> MountedServerStatus {
    wait_status(node, id, "running", MountedServerStatus::is_running).await
}

/// Records what an agent sends upstream; answers sampling with "42".
struct Recorder {
    notes: mpsc::UnboundedSender<Request>,
    requests: mpsc::UnboundedSender<Request>,
}

#[async_trait]
impl Upstream for Recorder {
    async fn notify(&self, notification: Request) {
        let _ = self.notes.send(notification);
    }
    async fn request(&self, request: Request) -> Result<Value, CallError> {
        let _ = self.requests.send(request.clone());
        match request.method.as_str() {
            "sampling/createMessage" => Ok(json!({
                "role": "assistant",
                "content": {"type": "text", "text": "42"},
                "model": "test-model"
            })),
            other => Err(CallError::new(ErrorKind::MethodNotFound, other.to_owned())),
        }
    }
}

fn recorder() -> (
    Arc<Recorder>,
    mpsc::UnboundedReceiver<Request>,
    mpsc::UnboundedReceiver<Request>,
) {
    let (notes, notes_rx) = mpsc::unbounded_channel();
    let (requests, requests_rx) = mpsc::unbounded_channel();
    (
        Arc::new(Recorder { notes, requests }),
        notes_rx,
        requests_rx,
    )
}

fn tool_call(name: &str, args: Value) -> Request {
    Request::new(
        1,
        "tools/call",
        Some(json!({ "name": name, "arguments": args })),
    )
}

#[tokio::test]
async fn a_stdio_server_is_an_agent_locally_and_over_the_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let a = node_with(&dir, "a", vec![stdio_server("fixture")]).await;
    let status = running(&a, "fixture").await;
    assert_eq!(status.tools, 6, "{status:?}");
    assert_eq!((status.resources, status.prompts), (1, 1));
    assert_eq!(status.server.as_deref(), Some("fixture 1.0.0"));
    assert_eq!(status.restarts, 0);
    assert!(status.pid.is_some());
    assert_eq!(
        serde_json::to_value(&status).unwrap()["state"],
        json!({"kind": "running"})
    );
    // The child's stderr reaches the node (and the status).
    let status = wait_status(&a, "fixture", "a stderr line", |s| {
        s.stderr_tail
            .iter()
            .any(|l| l.starts_with("fixture server starting"))
    })
    .await;
    assert!(status.stderr_tail[0].contains(&status.pid.unwrap().to_string()));

    // The agent and its lists.
    let agents = a.agents();
    let fixture = agents.iter().find(|s| s.id == "fixture").unwrap();
    assert_eq!(fixture.description, "Test fixture for mounted MCP servers");
    let names: Vec<&str> = fixture.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["add", "add_tool", "ask", "crash", "log", "slow"]);

    // Local calls: a tool, a resource, a template resource, a prompt.
    let here = addr(None, "fixture");
    let r = a
        .call_tool(&here, "add", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert_eq!(r.structured_content, Some(json!({"sum": 42})));
    let e = a
        .call_tool(&here, "add", json!({"a": "two", "b": 40}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::InvalidParams), "{e}");
    let v = a
        .request(
            &here,
            Request::new(
                2,
                "resources/read",
                Some(json!({"uri": "fixture://greeting"})),
            ),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(v["contents"][0]["text"], json!("hello from the fixture"));
    let v = a
        .request(
            &here,
            Request::new(
                3,
                "resources/read",
                Some(json!({"uri": "fixture://items/7"})),
            ),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(v["contents"][0]["text"], json!("item 7"));
    let v = a
        .request(
            &here,
            Request::new(4, "resources/templates/list", None),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        v["resourceTemplates"][0]["uriTemplate"],
        json!("fixture://items/{id}")
    );
    let v = a
        .request(
            &here,
            Request::new(
                5,
                "prompts/get",
                Some(json!({"name": "greet", "arguments": {"name": "Ada"}})),
            ),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        v["messages"][0]["content"]["text"],
        json!("Say hello to Ada")
    );

    // From another node.
    let b = start_node(&dir, "b", |_| {}).await;
    connect(&b, &a).await;
    let there = addr(Some(a.peer_id()), "fixture");
    let r = b
        .call_tool(&there, "add", json!({"a": 20, "b": 22}))
        .await
        .unwrap();
    assert_eq!(r.structured_content, Some(json!({"sum": 42})));
    // The registry is eventually consistent: a's record lists the mounted
    // server's tools once it has loaded them and announced again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tools = b.remote_agents().get(&a.peer_id()).and_then(|agents| {
            agents
                .iter()
                .find(|s| s.id == "fixture")
                .map(|s| s.tools.len())
        });
        if tools == Some(6) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b never saw the fixture's 6 tools on a: {tools:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A log message of the only call in flight goes to that call's caller.
    let (upstream, mut notes, _) = recorder();
    let response = b
        .send_with_upstream(
            &there,
            tool_call("log", json!({})),
            CallOptions::default(),
            upstream,
        )
        .await
        .unwrap();
    assert!(response.error.is_none(), "{response:?}");
    let note = notes.recv().await.unwrap();
    assert_eq!(note.method, "notifications/message");
    let params = note.params.unwrap();
    assert_eq!(params["data"], json!("hello from the log tool"));
    assert_eq!(params["logger"], json!("fixture"));
    assert_eq!(params["level"], json!("info"));

    // The server's tools/list_changed refreshes the agent's tools.
    let mut events = a.subscribe();
    a.call_tool(&here, "add_tool", json!({"name": "fresh"}))
        .await
        .unwrap();
    wait_for(
        &mut events,
        |e| matches!(e, NodeEvent::AgentChanged(id) if id == "fixture"),
    )
    .await;
    let r = a.call_tool(&here, "fresh", json!({})).await.unwrap();
    assert_eq!(text_of(&r), "fresh ran");
    assert_eq!(a.mounted_servers()[0].tools, 7);

    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn progress_reaches_the_caller_and_cancellation_reaches_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let a = node_with(&dir, "a", vec![stdio_server("fixture")]).await;
    running(&a, "fixture").await;
    let b = start_node(&dir, "b", |_| {}).await;
    connect(&b, &a).await;

    let (upstream, mut notes, _) = recorder();
    let cancel = tokio_util::sync::CancellationToken::new();
    let request = Request::new(
        7,
        "tools/call",
        Some(json!({
            "name": "slow",
            "arguments": {"ms": 600_000},
            "_meta": {"progressToken": "caller-token"}
        })),
    );
    let target = addr(Some(a.peer_id()), "fixture");
    let caller = b.clone();
    let options = CallOptions::default().with_cancel(cancel.clone());
    let call = tokio::spawn(async move {
        caller
            .send_with_upstream(&target, request, options, upstream)
            .await
    });

    // The fixture sends 1, 2, 2, 1.5, 3: only increasing values arrive,
    // under the caller's token.
    let mut seen = Vec::new();
    while seen.last() != Some(&3.0) {
        let note = tokio::time::timeout(Duration::from_secs(30), notes.recv())
            .await
            .expect("progress did not arrive")
            .unwrap();
        assert_eq!(note.method, "notifications/progress");
        let params = note.params.unwrap();
        assert_eq!(params["progressToken"], json!("caller-token"));
        assert_eq!(params["message"], json!("working"));
        seen.push(params["progress"].as_f64().unwrap());
    }
    assert_eq!(seen, vec![1.0, 2.0, 3.0]);

    // Cancelling on node b cancels the request on the server behind node a.
    cancel.cancel();
    let response = call.await.unwrap().unwrap();
    let error = response.error.unwrap();
    assert_eq!(error.kind(), Some(ErrorKind::Cancelled), "{error:?}");
    wait_status(&a, "fixture", "told of the cancellation", |s| {
        s.stderr_tail.iter().any(|l| l == "slow: cancelled")
    })
    .await;

    // A deadline cancels the request on the server too.
    let e = a
        .request(
            &addr(None, "fixture"),
            tool_call("slow", json!({"ms": 600_000})),
            CallOptions::default().with_timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::DeadlineExceeded), "{e}");
    wait_status(&a, "fixture", "told of the deadline", |s| {
        s.stderr_tail
            .iter()
            .filter(|l| *l == "slow: cancelled")
            .count()
            == 2
    })
    .await;
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn sampling_requests_of_the_server_reach_the_callers_client() {
    let dir = tempfile::tempdir().unwrap();
    let a = node_with(&dir, "a", vec![stdio_server("fixture")]).await;
    running(&a, "fixture").await;
    let b = start_node(&dir, "b", |_| {}).await;
    connect(&b, &a).await;
    let target = addr(Some(a.peer_id()), "fixture");

    let (upstream, _, mut requests) = recorder();
    let response = b
        .send_with_upstream(
            &target,
            tool_call("ask", json!({})),
            CallOptions::default(),
            upstream,
        )
        .await
        .unwrap();
    let result = response.result.unwrap();
    assert_eq!(
        result["content"][0]["text"],
        json!("the model said: 42"),
        "{result}"
    );
    let asked = requests.recv().await.unwrap();
    assert_eq!(asked.method, "sampling/createMessage");
    assert_eq!(
        asked.params.unwrap()["messages"][0]["content"]["text"],
        json!("What is 6 times 7?")
    );

    // Without a client that can answer, the server's request fails and so
    // does its tool, instead of hanging.
    let e = a
        .call_tool(&addr(None, "fixture"), "ask", json!({}))
        .await
        .unwrap_err();
    assert!(e.message.contains("sampling failed"), "{e}");
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_crashed_server_is_restarted_and_works_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = stdio_server("fixture");
    server.restart.initial_backoff = HumanDuration::millis(1000);
    server.restart.max_backoff = HumanDuration::millis(4000);
    let a = node_with(&dir, "a", vec![server]).await;
    let first = running(&a, "fixture").await;
    let here = addr(None, "fixture");

    let e = a.call_tool(&here, "crash", json!({})).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::ConnectionLost), "{e}");
    let down = wait_status(&a, "fixture", "restarting", |s| {
        matches!(s.state, MountedServerState::Restarting { .. })
    })
    .await;
    let MountedServerState::Restarting {
        attempt,
        next_in,
        last_error,
    } = &down.state
    else {
        unreachable!()
    };
    assert_eq!(*attempt, 1);
    assert!(
        (Duration::from_millis(500)..Duration::from_millis(1000)).contains(next_in),
        "{next_in:?}"
    );
    assert!(last_error.contains("exited"), "{last_error}");
    assert!(last_error.contains("crashing on request"), "{last_error}");
    assert_eq!(down.tools, 0);

    // While it is down, the agent stays registered without tools, and calls
    // fail clearly.
    let agents = a.agents();
    let fixture = agents.iter().find(|s| s.id == "fixture").unwrap();
    assert!(fixture.tools.is_empty(), "{fixture:?}");
    let e = a.call_tool(&here, "add", json!({"a": 1, "b": 2})).await;
    // (If the restart already happened, the call simply works.)
    if let Err(e) = e {
        assert!(
            matches!(
                e.kind(),
                Some(ErrorKind::Unreachable | ErrorKind::UnknownTool)
            ),
            "{e}"
        );
    }
    let e = a
        .request(
            &here,
            Request::new(
                9,
                "resources/read",
                Some(json!({"uri": "fixture://greeting"})),
            ),
            CallOptions::default(),
        )
        .await;
    if let Err(e) = e {
        assert_eq!(e.kind(), Some(ErrorKind::Unreachable), "{e}");
        assert!(
            e.message.contains("mounted server fixture is not running"),
            "{e}"
        );
        assert!(e.message.contains("crashing on request"), "{e}");
    }

    let again = running(&a, "fixture").await;
    assert_eq!(again.restarts, 1);
    assert_ne!(again.pid, first.pid);
    assert!(again.last_error.as_deref().unwrap().contains("exited"));
    let r = a
        .call_tool(&here, "add", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert_eq!(r.structured_content, Some(json!({"sum": 3})));
    a.shutdown().await;
}

#[tokio::test]
async fn a_server_that_cannot_start_does_not_stop_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        MountedServerConfig::stdio("ghost", "/nonexistent/dawn-no-such-server", vec![]);
    server.restart.initial_backoff = HumanDuration::millis(200);
    server.restart.max_backoff = HumanDuration::millis(3200);
    let a = node_with(&dir, "a", vec![server, stdio_server("fixture")]).await;

    // The other server is unaffected.
    running(&a, "fixture").await;
    let r = a
        .call_tool(&addr(None, "fixture"), "add", json!({"a": 1, "b": 1}))
        .await
        .unwrap();
    assert_eq!(r.structured_content, Some(json!({"sum": 2})));

    // Retries with growing delays.
    let mut rx = a.watch_mounted_server("ghost").unwrap();
    let mut seen: Vec<(u32, Duration)> = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            {
                let status = rx.borrow_and_update();
                if let MountedServerState::Restarting {
                    attempt,
                    next_in,
                    last_error,
                } = &status.state
                {
                    assert!(last_error.contains("cannot start"), "{last_error}");
                    assert!(
                        last_error.contains("/nonexistent/dawn-no-such-server"),
                        "{last_error}"
                    );
                    if seen.last().map(|(a, _)| a) != Some(attempt) {
                        seen.push((*attempt, *next_in));
                    }
                }
                if seen.len() >= 4 {
                    return;
                }
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("too few retries: {seen:?}"));
    for pair in seen.windows(2) {
        let ((a1, d1), (a2, d2)) = (pair[0], pair[1]);
        assert!(a2 > a1, "{seen:?}");
        assert!(d2 > d1, "delays do not grow: {seen:?}");
    }
    // Attempt n waits between half and all of 200ms * 2^(n-1).
    for (attempt, delay) in &seen {
        let nominal =
            Duration::from_millis(200 * (1 << (attempt - 1))).min(Duration::from_millis(3200));
        assert!(
            *delay >= nominal / 2 && *delay <= nominal,
            "attempt {attempt} waits {delay:?}: {seen:?}"
        );
    }

    // The agent is registered, without tools; calls say why.
    let statuses = a.mounted_servers();
    let ghost = statuses.iter().find(|s| s.id == "ghost").unwrap();
    assert!(ghost.restarts >= 3, "{ghost:?}");
    assert!(ghost.pid.is_none());
    let agents = a.agents();
    let agent = agents.iter().find(|s| s.id == "ghost").unwrap();
    assert!(agent.tools.is_empty());
    let e = a
        .request(
            &addr(None, "ghost"),
            Request::new(1, "resources/read", Some(json!({"uri": "x://y"}))),
            CallOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Unreachable), "{e}");
    assert!(
        e.message.contains("mounted server ghost is not running"),
        "{e}"
    );
    a.shutdown().await;
    let ghost = a
        .mounted_servers()
        .into_iter()
        .find(|s| s.id == "ghost")
        .unwrap();
    assert_eq!(ghost.state, MountedServerState::Stopped);
}

/// Starts the fixture with `--http` and returns it with its URL.
async fn http_fixture() -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(fixture())
        .arg("--http")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line.strip_prefix("listening on ").unwrap().to_owned();
    (child, url)
}

#[tokio::test]
async fn a_streamable_http_server_is_an_agent() {
    let (mut server, url) = http_fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = MountedServerConfig::http("remote", &url);
    config
        .headers
        .insert("x-dawn-test".into(), "mounted".into());
    let a = node_with(&dir, "a", vec![config]).await;
    let status = running(&a, "remote").await;
    assert_eq!((status.tools, status.resources, status.prompts), (6, 1, 1));
    assert_eq!(status.target, url);
    assert!(status.pid.is_none());

    let here = addr(None, "remote");
    let r = a
        .call_tool(&here, "add", json!({"a": 40, "b": 2}))
        .await
        .unwrap();
    assert_eq!(r.structured_content, Some(json!({"sum": 42})));
    let v = a
        .request(
            &here,
            Request::new(
                2,
                "resources/read",
                Some(json!({"uri": "fixture://greeting"})),
            ),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(v["contents"][0]["text"], json!("hello from the fixture"));

    // Progress over HTTP, under the caller's token.
    let (upstream, mut notes, _) = recorder();
    let request = Request::new(
        3,
        "tools/call",
        Some(json!({"name": "slow", "arguments": {"ms": 0}, "_meta": {"progressToken": 5}})),
    );
    let response = a
        .send_with_upstream(&here, request, CallOptions::default(), upstream)
        .await
        .unwrap();
    assert!(response.error.is_none(), "{response:?}");
    let mut seen = Vec::new();
    while seen.last() != Some(&3.0) {
        let note = tokio::time::timeout(Duration::from_secs(30), notes.recv())
            .await
            .expect("progress did not arrive")
            .unwrap();
        let params = note.params.unwrap();
        assert_eq!(params["progressToken"], json!(5));
        seen.push(params["progress"].as_f64().unwrap());
    }
    assert_eq!(seen, vec![1.0, 2.0, 3.0]);

    // When the server goes away, the next call notices and the node
    // reconnects with backoff.
    server.kill().await.unwrap();
    let e = a
        .call_tool(&here, "add", json!({"a": 1, "b": 1}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            Some(ErrorKind::ConnectionLost | ErrorKind::Unreachable)
        ),
        "{e}"
    );
    wait_status(&a, "remote", "restarting", |s| {
        matches!(s.state, MountedServerState::Restarting { .. })
    })
    .await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_missing_token_variable_fails_without_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MountedServerConfig::http("locked", "http://127.0.0.1:9/mcp");
    config.bearer_token_env = Some("DAWN_TEST_NO_SUCH_TOKEN_VARIABLE".into());
    let a = node_with(&dir, "a", vec![config]).await;
    let status = wait_status(&a, "locked", "failed", |s| {
        matches!(s.state, MountedServerState::Failed { .. })
    })
    .await;
    assert_eq!(status.restarts, 0);
    let MountedServerState::Failed { error } = &status.state else {
        unreachable!()
    };
    assert!(
        error.contains("DAWN_TEST_NO_SUCH_TOKEN_VARIABLE"),
        "{error}"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_server_process() {
    let dir = tempfile::tempdir().unwrap();
    let a = node_with(&dir, "a", vec![stdio_server("fixture")]).await;
    let pid = running(&a, "fixture").await.pid.unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists());
    a.shutdown().await;
    assert!(
        !proc_dir.exists(),
        "the fixture server (pid {pid}) outlived the node"
    );
    let status = a.mounted_servers().remove(0);
    assert_eq!(status.state, MountedServerState::Stopped);
    assert_eq!(status.pid, None);
}

// --- configuration ---------------------------------------------------------

fn load_toml(dir: &tempfile::TempDir, toml: &str) -> Result<DawnConfig, ConfigError> {
    let path = dir.path().join("dawn.toml");
    std::fs::write(&path, toml).unwrap();
    ConfigLoader::new().file(&path).load()
}

fn issues(result: Result<DawnConfig, ConfigError>) -> Vec<String> {
    match result {
        Err(ConfigError::Invalid(issues)) => issues.iter().map(ToString::to_string).collect(),
        Err(other) => vec![other.to_string()],
        Ok(config) => panic!("config unexpectedly valid: {:?}", config.mcp.servers),
    }
}

#[test]
fn mounted_server_config_is_validated_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = load_toml(
        &dir,
        r#"
[[mcp.servers]]
id = "files"
command = "npx"
args = ["-y", "server"]
env = { A = "1" }
cwd = "/tmp"
startup_timeout = "5s"
call_timeout = "2m"
restart = { initial_backoff = "500ms", max_backoff = "30s", reset_after = "2m" }

[[mcp.servers]]
id = "search"
url = "https://mcp.example.com/mcp"
bearer_token_env = "SEARCH_TOKEN"
headers = { "X-Team" = "dawn" }
"#,
    )
    .unwrap();
    let servers = &config.mcp.servers;
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0].args, ["-y", "server"]);
    assert_eq!(servers[0].call_timeout, HumanDuration::secs(120));
    assert_eq!(
        servers[0].restart.initial_backoff,
        HumanDuration::millis(500)
    );
    assert_eq!(servers[1].startup_timeout, HumanDuration::secs(30));
    assert_eq!(servers[1].restart.max_backoff, HumanDuration::secs(60));

    let cases: &[(&str, &[&str])] = &[
        (
            "[[mcp.servers]]\nid = \"x\"\ncommand = \"a\"\nurl = \"http://h/mcp\"\n",
            &["mcp.servers[0]: set either command (stdio) or url"],
        ),
        (
            "[[mcp.servers]]\nid = \"x\"\ncommand = \"a\"\n[[mcp.servers]]\nid = \"y\"\n",
            &["mcp.servers[1]: set command"],
        ),
        (
            "[[mcp.servers]]\nid = \"Not Valid\"\ncommand = \"a\"\n",
            &["mcp.servers[0].id", "not a valid agent id"],
        ),
        (
            "[[mcp.servers]]\nid = \"system\"\ncommand = \"a\"\n",
            &["mcp.servers[0].id", "built-in agent"],
        ),
        (
            "[[mcp.servers]]\nid = \"x\"\ncommand = \"a\"\n[[mcp.servers]]\nid = \"x\"\ncommand = \"b\"\n",
            &["mcp.servers[1].id", "used by another mounted server"],
        ),
        (
            "[[mcp.servers]]\nid = \"x\"\ncommand = \" \"\n",
            &["mcp.servers[0].command: must not be empty"],
        ),
        (
            "[[mcp.servers]]\nid = \"x\"\nurl = \"ftp://h/mcp\"\n",
            &["mcp.servers[0].url", "not an http:// or https:// URL"],
        ),
        (
            "[[mcp.servers]]\nid = \"x\"\nurl = \"http://h/mcp\"\nargs = [\"a\"]\n",
            &["mcp.servers[0].args: applies only to command"],
        ),
        (
            "[[mcp.servers]]\nid = \"x\"\ncommand = \"a\"\nbearer_token_env = \"T\"\n",
            &["mcp.servers[0].bearer_token_env: applies only to url"],
        ),
        (
            "[[mcp.servers]]\nid = \"x\"\nurl = \"http://h/mcp\"\nheaders = { \"bad header\" = \"v\" }\n",
            &["mcp.servers[0].headers", "not a valid HTTP header name"],
        ),
        (
            "[[mcp.servers]]\nid = \"x\"\nurl = \"http://h/mcp\"\nbearer_token_env = \"T\"\nheaders = { Authorization = \"Bearer y\" }\n",
            &["mcp.servers[0].headers", "bearer_token_env"],
        ),
        (
            "[[mcp.servers]]\nid = \"x\"\ncommand = \"a\"\nrestart = { initial_backoff = \"10s\", max_backoff = \"1s\" }\n",
            &[
                "mcp.servers[0].restart.initial_backoff",
                "more than restart.max_backoff",
            ],
        ),
        (
            "[[mcp.servers]]\nid = \"x\"\ncommand = \"a\"\ncall_timeout = \"0s\"\n",
            &["mcp.servers[0].call_timeout", "out of range"],
        ),
        (
            "[[mcp.servers]]\nid = \"x\"\ncommand = \"a\"\ncomand = \"b\"\n",
            &["comand", "unknown key"],
        ),
    ];
    for (toml, needles) in cases {
        let found = issues(load_toml(&dir, toml));
        let all = found.join("\n");
        for needle in *needles {
            assert!(all.contains(needle), "{toml}\n=> {all}\n(lacks {needle:?})");
        }
    }
}

#[test]
fn servers_can_come_from_the_environment() {
    let config = ConfigLoader::new()
        .env_vars([(
            "DAWN_MCP__SERVERS".to_owned(),
            "[{id = \"files\", command = \"npx\", args = [\"-y\", \"x\"]}]".to_owned(),
        )])
        .load()
        .unwrap();
    assert_eq!(config.mcp.servers.len(), 1);
    assert_eq!(config.mcp.servers[0].command.as_deref(), Some("npx"));
}

/// A sample TOML value for each key of a mounted server entry.
fn sample(field: &str) -> &'static str {
    match field {
        "id" => "\"sample\"",
        "description" => "\"a sample\"",
        "command" => "\"sample-server\"",
        "args" => "[\"--flag\"]",
        "env" => "{ A = \"b\" }",
        "cwd" => "\"/tmp\"",
        "url" => "\"http://127.0.0.1:1/mcp\"",
        "bearer_token_env" => "\"SAMPLE_TOKEN\"",
        "headers" => "{ X-Sample = \"1\" }",
        "startup_timeout" | "call_timeout" => "\"5s\"",
        "restart.initial_backoff" => "\"1s\"",
        "restart.max_backoff" | "restart.reset_after" => "\"10s\"",
        other => panic!("mcp.servers[].{other} has no sample value in this test"),
    }
}

#[test]
fn every_key_of_a_mounted_server_is_documented_and_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = "mcp.servers[].";
    let documented: Vec<&str> = KEYS
        .iter()
        .filter_map(|k| k.key.strip_prefix(prefix))
        .collect();
    // Every field of a fully populated entry is documented...
    let mut full = MountedServerConfig::stdio("x", "y", vec!["z".into()]);
    full.description = Some("d".into());
    full.env.insert("A".into(), "b".into());
    full.cwd = Some("/tmp".into());
    full.url = Some("http://h/mcp".into());
    full.bearer_token_env = Some("T".into());
    full.headers.insert("x-a".into(), "b".into());
    fn leaves(prefix: String, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) if !prefix.ends_with("env") && !prefix.ends_with("headers") => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(key, v, out);
                }
            }
            _ => out.push(prefix),
        }
    }
    let mut fields = Vec::new();
    leaves(
        String::new(),
        &serde_json::to_value(&full).unwrap(),
        &mut fields,
    );
    for field in &fields {
        assert!(
            documented.contains(&field.as_str()),
            "{prefix}{field} is not documented in config::KEYS"
        );
    }
    // ...and every documented key is accepted in an entry of its kind.
    for field in &documented {
        let http_only = ["url", "bearer_token_env", "headers"].contains(field);
        let base = if http_only {
            "id = \"sample\"\nurl = \"http://127.0.0.1:1/mcp\"\n"
        } else {
            "id = \"sample\"\ncommand = \"sample-server\"\n"
        };
        let mut toml = format!("[[mcp.servers]]\n{base}");
        if !base.contains(&format!("{field} =")) && !field.starts_with("restart.") {
            toml.push_str(&format!("{field} = {}\n", sample(field)));
        }
        if let Some(inner) = field.strip_prefix("restart.") {
            toml.push_str(&format!(
                "[mcp.servers.restart]\n{inner} = {}\n",
                sample(field)
            ));
        }
        load_toml(&dir, &toml)
            .unwrap_or_else(|e| panic!("documented key {prefix}{field} rejected: {e}\n{toml}"));
    }
}

#[test]
fn the_documented_example_configuration_loads() {
    let docs = dawn_core::config::render_markdown();
    let example = docs
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    // From the mounted servers on (the rest has placeholder peer ids).
    let example = &example[example.find("# A local MCP server").unwrap()..];
    assert!(example.contains("[[mcp.servers]]"));
    let dir = tempfile::tempdir().unwrap();
    let config = load_toml(&dir, example).unwrap();
    assert_eq!(config.mcp.servers.len(), 2);
    assert_eq!(
        config.mcp.servers[1].restart.max_backoff,
        HumanDuration::secs(300)
    );
}
