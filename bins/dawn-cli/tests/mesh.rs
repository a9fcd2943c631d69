//! Two nodes: B connects to A; the CLI on B sees A and calls A's agents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{STARTUP_TIMEOUT, TestNode, assert_success, stdout, wait_for};
use serde_json::Value;

#[test]
fn calls_and_lists_agents_across_two_nodes() {
    let a = TestNode::start(&[]);
    let a_addr = a.dial_addr();
    let a_id = a.peer_id();
    let b = TestNode::start(&[a_addr.as_str()]);

    wait_for("B to list A among its peers", STARTUP_TIMEOUT, || {
        let peers = b.cli_json(&["peers"]);
        peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == a_id.as_str())
            .then_some(())
    });
    let out = b.cli(&["peers"]);
    assert_success(&out, &["peers"]);
    let table = stdout(&out);
    assert!(
        table.starts_with("PEER ID") && table.contains(&a_id),
        "{table}"
    );
    assert!(table.contains("outbound"), "{table}");

    let remote = format!("{a_id}/system");
    let args = [
        "call",
        remote.as_str(),
        "echo",
        "--args",
        r#"{"message":"hello"}"#,
    ];
    let out = b.cli(&args);
    assert_success(&out, &args);
    assert_eq!(stdout(&out), "hello\n");

    let tools = b.cli_json(&["tools", remote.as_str()]);
    assert!(
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo"),
        "{tools}"
    );

    let agents = wait_for("B to learn A's agents", STARTUP_TIMEOUT, || {
        let agents = b.cli_json(&["agents", "--all"]);
        let knows_a = agents["remote"].as_array().unwrap().iter().any(|r| {
            r["peer_id"] == a_id.as_str()
                && r["agents"]
                    .as_array()
                    .is_some_and(|list| list.iter().any(|x| x["id"] == "system"))
        });
        knows_a.then_some(agents)
    });
    assert!(agents["local"].as_array().is_some_and(|l| !l.is_empty()));
    let out = b.cli(&["agents", "--all"]);
    assert_success(&out, &["agents", "--all"]);
    let table = stdout(&out);
    let row = table
        .lines()
        .find(|l| l.starts_with(&a_id))
        .unwrap_or_else(|| panic!("no row for A in:\n{table}"));
    assert!(row.contains("system") && row.contains("echo"), "{table}");
    let local_only: Value = b.cli_json(&["agents"]);
    assert!(local_only.get("remote").is_none());
}
