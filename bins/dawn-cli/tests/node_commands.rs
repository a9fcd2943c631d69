//! `status`, `peers`, `agents`, `tools` and `call` against a real node, as
//! tables and as JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestNode, assert_success, cli, cli_with_env, stdout};
use serde_json::Value;

#[test]
fn status_as_table_and_json() {
    let node = TestNode::start(&[]);
    let status = node.cli_json(&["status"]);
    let node_id = status["node_id"].as_str().unwrap();
    assert!(node_id.starts_with("12D3"), "{status}");
    assert!(!status["version"].as_str().unwrap().is_empty());
    let api_addr = std::fs::read_to_string(node.data_root.join("api.addr")).unwrap();
    assert_eq!(status["api_addr"].as_str(), Some(api_addr.trim()));
    assert!(
        status["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "system"),
        "{status}"
    );
    assert!(node.dial_addr().ends_with(&format!("/p2p/{node_id}")));

    let out = node.cli(&["status"]);
    assert_success(&out, &["status"]);
    let table = stdout(&out);
    for expected in [
        "Node ID",
        node_id,
        "Uptime",
        "Listen",
        "0 connected",
        "system",
    ] {
        assert!(
            table.contains(expected),
            "missing {expected:?} in:\n{table}"
        );
    }
}

#[test]
fn global_options_work_after_the_command_and_from_the_environment() {
    let node = TestNode::start(&[]);
    let root = node.data_root.to_str().unwrap();

    let after = cli(&["status", "--json", "--data-root", root]);
    assert_success(&after, &["status", "--json", "--data-root", root]);
    let after: Value = serde_json::from_slice(&after.stdout).unwrap();

    let env = cli_with_env(
        &["status", "--json"],
        &[("DAWN_NODE__DATA_ROOT", node.data_root.as_os_str())],
    );
    assert_success(&env, &["status", "--json"]);
    let env: Value = serde_json::from_slice(&env.stdout).unwrap();
    assert_eq!(after["node_id"], env["node_id"]);

    // --api with the token from --token-file, data root elsewhere.
    let api = format!("http://{}", after["api_addr"].as_str().unwrap());
    let token = node.data_root.join("api.token");
    let empty = tempfile::tempdir().unwrap();
    let args = [
        "--api",
        api.as_str(),
        "--token-file",
        token.to_str().unwrap(),
        "--data-root",
        empty.path().to_str().unwrap(),
        "status",
        "--json",
    ];
    let out = cli(&args);
    assert_success(&out, &args);
    let via_api: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(via_api["node_id"], after["node_id"]);

    // The token can also come from $DAWN_API_TOKEN.
    let secret = std::fs::read_to_string(&token).unwrap();
    let args = [
        "--api",
        api.as_str(),
        "--data-root",
        empty.path().to_str().unwrap(),
        "peers",
    ];
    let out = cli_with_env(&args, &[("DAWN_API_TOKEN", secret.trim().as_ref())]);
    assert_success(&out, &args);
}

#[test]
fn peers_of_a_lone_node() {
    let node = TestNode::start(&[]);
    let peers = node.cli_json(&["peers"]);
    assert_eq!(peers["peers"], serde_json::json!([]), "{peers}");
    let out = node.cli(&["peers"]);
    assert_success(&out, &["peers"]);
    assert_eq!(stdout(&out).trim(), "no peers connected");
}

#[test]
fn agents_as_table_and_json() {
    let node = TestNode::start(&[]);
    let agents = node.cli_json(&["agents"]);
    let system = agents["local"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "system")
        .unwrap_or_else(|| panic!("no system agent in {agents}"));
    assert!(
        system["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo"),
        "{agents}"
    );
    assert!(
        agents.get("remote").is_none(),
        "remote agents shown without --all: {agents}"
    );
    let all = node.cli_json(&["agents", "--all"]);
    assert_eq!(all["remote"], serde_json::json!([]), "{all}");

    let out = node.cli(&["agents"]);
    assert_success(&out, &["agents"]);
    let table = stdout(&out);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("AGENT"), "{table}");
    let row = lines.next().unwrap();
    assert!(row.starts_with("system") && row.contains("echo"), "{table}");

    let out = node.cli(&["agents", "--all"]);
    assert_success(&out, &["agents", "--all"]);
    let table = stdout(&out);
    assert!(table.starts_with("PEER"), "{table}");
    assert!(table.contains("local"), "{table}");
}

#[test]
fn tools_of_all_agents_and_of_one() {
    let node = TestNode::start(&[]);
    let one = node.cli_json(&["tools", "system"]);
    assert_eq!(one["agent"], "system");
    let echo = one["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "echo")
        .unwrap_or_else(|| panic!("no echo in {one}"));
    assert_eq!(echo["inputSchema"]["required"][0], "message", "{echo}");

    let all = node.cli_json(&["tools"]);
    let all = all.as_array().unwrap();
    assert!(all.iter().any(|a| a["agent"] == "system"), "{all:?}");

    for args in [&["tools"][..], &["tools", "system"][..]] {
        let out = node.cli(args);
        assert_success(&out, args);
        let table = stdout(&out);
        assert!(table.starts_with("AGENT"), "{table}");
        let echo_row = table
            .lines()
            .find(|l| l.contains("echo"))
            .unwrap_or_else(|| panic!("no echo row in:\n{table}"));
        assert!(echo_row.starts_with("system"), "{table}");
        assert!(echo_row.contains("message: string"), "{table}");
        assert!(echo_row.contains("yes"), "{table}");
    }
}

#[test]
fn call_prints_text_structured_and_json_results() {
    let node = TestNode::start(&[]);
    let args = ["call", "system", "echo", "--args", r#"{"message":"hello"}"#];
    let out = node.cli(&args);
    assert_success(&out, &args);
    assert_eq!(stdout(&out), "hello\n");

    let answer = node.cli_json(&args);
    assert_eq!(answer["result"]["content"][0]["text"], "hello", "{answer}");

    // Structured content prints as JSON (once, not also as its text copy).
    let out = node.cli(&["call", "system", "info"]);
    assert_success(&out, &["call", "system", "info"]);
    let info: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(&out)));
    assert_eq!(info["node_id"].as_str(), Some(node.peer_id().as_str()));

    // --args @FILE
    let file = node.scratch().join("args.json");
    std::fs::write(&file, r#"{"message": "from a file"}"#).unwrap();
    let at_file = format!("@{}", file.display());
    let args = ["call", "system", "echo", "--args", at_file.as_str()];
    let out = node.cli(&args);
    assert_success(&out, &args);
    assert_eq!(stdout(&out), "from a file\n");
}
