//! `dawn-cli mcp`: a real MCP client (rmcp's, launching the bridge as a
//! child process exactly as Claude Desktop does) talks to real `dawn-node`
//! processes through the stdio bridge; raw stdin/stdout for what a client
//! library would not send.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Child, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{
    STARTUP_TIMEOUT, TestNode, assert_one_line_failure, cli_command, stdout, wait_for,
    write_foreign_token,
};
use rmcp::{
    RoleClient, ServiceExt as _,
    model::{CallToolRequestParams, CallToolResult},
    service::RunningService,
    transport::TokioChildProcess,
};
use serde_json::{Value, json};

/// How long to wait for one answer from the bridge.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Launches `dawn-cli --data-root <root> mcp <extra>` as an MCP server
/// child and completes the MCP handshake with it.
async fn connect(data_root: &Path, extra: &[&str]) -> RunningService<RoleClient, ()> {
    let mut args = vec!["--data-root", data_root.to_str().unwrap(), "mcp"];
    args.extend_from_slice(extra);
    let transport = TokioChildProcess::new(tokio::process::Command::from(cli_command(&args)))
        .expect("cannot launch dawn-cli mcp");
    tokio::time::timeout(ANSWER_TIMEOUT, ().serve(transport))
        .await
        .expect("the MCP handshake through the bridge timed out")
        .expect("the MCP handshake through the bridge failed")
}

async fn tool_names(client: &RunningService<RoleClient, ()>) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    name: &str,
    arguments: Value,
) -> CallToolResult {
    let params = CallToolRequestParams::new(name.to_owned())
        .with_arguments(arguments.as_object().cloned().unwrap());
    client.call_tool(params).await.unwrap()
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_uses_the_mesh_and_one_agent_through_the_bridge() {
    let node = TestNode::start(&[]);

    // The whole mesh (/mcp): names carry the agent.
    let client = connect(&node.data_root, &[]).await;
    let info = client.peer_info().expect("no initialize result");
    assert!(info.capabilities.tools.is_some(), "{info:?}");
    let names = tool_names(&client).await;
    assert!(names.iter().any(|n| n == "system__echo"), "{names:?}");
    let result = call(&client, "system__echo", json!({"message": "through stdio"})).await;
    assert_eq!(result.is_error, Some(false), "{result:?}");
    assert_eq!(text_of(&result), "through stdio");
    // A tool error comes back as the node sent it, and the session goes on.
    let err = client
        .call_tool(CallToolRequestParams::new("system__nope"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let result = call(&client, "system__echo", json!({"message": "still here"})).await;
    assert_eq!(text_of(&result), "still here");
    client.cancel().await.unwrap();

    // One local agent (/mcp/agents/system): its own names.
    let client = connect(&node.data_root, &["--agent", "system"]).await;
    let mut names = tool_names(&client).await;
    names.sort();
    assert_eq!(names, ["echo", "info", "peers"]);
    let result = call(&client, "echo", json!({"message": "agent view"})).await;
    assert_eq!(text_of(&result), "agent view");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_agent_is_reached_through_the_second_node() {
    let a = TestNode::start(&[]);
    let a_id = a.peer_id();
    let b = TestNode::start(&[a.dial_addr().as_str()]);
    wait_for("B to learn A's agents", STARTUP_TIMEOUT, || {
        let agents = b.cli_json(&["agents", "--all"]);
        agents["remote"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| {
                r["peer_id"] == a_id.as_str()
                    && r["agents"]
                        .as_array()
                        .is_some_and(|list| list.iter().any(|x| x["id"] == "system"))
            })
            .then_some(())
    });

    let address = format!("{a_id}/system");
    let client = connect(&b.data_root, &["--agent", &address]).await;
    let names = tool_names(&client).await;
    assert!(names.iter().any(|n| n == "info"), "{names:?}");
    let result = call(&client, "info", json!({})).await;
    let info = result
        .structured_content
        .expect("info has structured content");
    assert_eq!(info["node_id"], a_id.as_str(), "{info}");
    client.cancel().await.unwrap();
}

/// `dawn-cli mcp` driven line by line.
struct RawBridge {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every line the bridge wrote to stdout.
    seen: Vec<String>,
}

impl RawBridge {
    fn start(data_root: &Path) -> RawBridge {
        let mut child = cli_command(&["--data-root", data_root.to_str().unwrap(), "mcp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        RawBridge {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    fn write(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line on stdout, as JSON.
    fn read(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(ANSWER_TIMEOUT)
            .expect("no line from the bridge in time");
        self.seen.push(line.clone());
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
    }

    /// The answer to request `id`, skipping notifications.
    fn answer(&mut self, id: i64) -> Value {
        loop {
            let message = self.read();
            if message.get("method").is_none() && message["id"] == id {
                return message;
            }
        }
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the bridge did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut err, &mut text).unwrap();
        }
        text
    }
}

impl Drop for RawBridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn initialize(bridge: &mut RawBridge) {
    bridge.write(
        &json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"}
            }
        })
        .to_string(),
    );
    let answer = bridge.answer(1);
    assert_eq!(
        answer["result"]["protocolVersion"], "2025-11-25",
        "{answer}"
    );
    bridge.write(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
}

#[test]
fn malformed_input_is_answered_and_closing_stdin_exits_zero() {
    let node = TestNode::start(&[]);
    let mut bridge = RawBridge::start(&node.data_root);
    initialize(&mut bridge);

    bridge.write("this is not json");
    let error = bridge.read();
    assert_eq!(error["jsonrpc"], "2.0", "{error}");
    assert_eq!(error["error"]["code"], -32700, "{error}");
    assert!(error["id"].is_null(), "{error}");

    bridge.write(r#"{"jsonrpc":"2.0","id":"not-a-request"}"#);
    let error = bridge.read();
    assert_eq!(error["error"]["code"], -32600, "{error}");
    assert_eq!(error["id"], "not-a-request", "{error}");

    // The session still works, and unknown methods reach the node.
    bridge.write(
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "system__echo", "arguments": {"message": "after garbage"}}})
        .to_string(),
    );
    let answer = bridge.answer(2);
    assert_eq!(
        answer["result"]["content"][0]["text"], "after garbage",
        "{answer}"
    );
    bridge.write(r#"{"jsonrpc":"2.0","id":3,"method":"vendor/unknown"}"#);
    let answer = bridge.answer(3);
    assert_eq!(answer["error"]["code"], -32601, "{answer}");

    // A request written just before stdin closes is still answered.
    bridge.write(r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#);
    bridge.close_stdin();
    let answer = bridge.answer(4);
    assert_eq!(answer["result"], json!({}), "{answer}");
    let status = bridge.wait(STARTUP_TIMEOUT);
    assert!(status.success(), "exit status {status}");

    // Nothing but JSON-RPC on stdout, and no logs on stderr by default.
    while let Ok(line) = bridge.lines.recv_timeout(Duration::from_millis(200)) {
        bridge.seen.push(line);
    }
    for line in &bridge.seen {
        let message: Value = serde_json::from_str(line).unwrap();
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
    }
    let stderr = bridge.stderr();
    assert!(stderr.is_empty(), "stderr: {stderr}");
}

/// Runs the bridge with stdin left open: a failure must come before any
/// input is read.
fn run_failing(args: &[&str]) -> std::process::Output {
    let mut child = cli_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dawn-cli {args:?} waited for input instead of failing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn no_node_or_a_wrong_token_is_one_line_before_reading_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let out = run_failing(&["--data-root", root, "mcp"]);
    let line = assert_one_line_failure(&out, 1);
    assert!(
        line.starts_with("dawn-cli: no node is running on"),
        "{line}"
    );
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(&out));

    // A stale address: the node is gone.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.path().join("api.addr"), format!("127.0.0.1:{port}\n")).unwrap();
    let out = run_failing(&["--data-root", root, "mcp", "--agent", "system"]);
    let line = assert_one_line_failure(&out, 1);
    assert!(line.contains("connection refused"), "{line}");
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(&out));

    let node = TestNode::start(&[]);
    let foreign = node.scratch().join("other.token");
    write_foreign_token(&foreign);
    let out = run_failing(&[
        "--data-root",
        node.data_root.to_str().unwrap(),
        "--token-file",
        foreign.to_str().unwrap(),
        "mcp",
    ]);
    let line = assert_one_line_failure(&out, 1);
    assert!(line.contains("rejected the API token"), "{line}");
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(&out));
}
