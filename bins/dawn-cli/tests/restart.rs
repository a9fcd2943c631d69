//! The issue's process test: two real `dawn-node` processes, a call across
//! them with `dawn-cli`, then a graceful stop (SIGTERM, exit 0) and restart
//! of one node: same peer id, and the two find each other again from the
//! address book alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{STARTUP_TIMEOUT, TestNode, assert_success, stdout, wait_for};

fn connected(node: &TestNode, peer: &str) -> bool {
    node.cli_json(&["peers"])["peers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["peer_id"] == peer)
}

fn echo(from: &TestNode, to: &str, message: &str) -> String {
    let target = format!("{to}/system");
    let args_json = format!(r#"{{"message":"{message}"}}"#);
    let args = [
        "call",
        target.as_str(),
        "echo",
        "--args",
        args_json.as_str(),
    ];
    let out = from.cli(&args);
    assert_success(&out, &args);
    stdout(&out)
}

#[test]
fn two_nodes_call_across_stop_gracefully_and_reconnect_after_restart() {
    let mut a = TestNode::start(&[]);
    let a_id = a.peer_id();
    let b = TestNode::start(&[a.dial_addr().as_str()]);
    let b_id = b.peer_id();
    wait_for("B to connect to A", STARTUP_TIMEOUT, || {
        connected(&b, &a_id).then_some(())
    });
    assert_eq!(echo(&b, &a_id, "hello"), "hello\n");
    assert_eq!(echo(&a, &b_id, "and back"), "and back\n");

    // SIGTERM: graceful shutdown, exit status 0, data directory released.
    let status = a.terminate();
    assert!(
        status.success(),
        "dawn-node exited with {status}:\n{}",
        a.log()
    );
    assert!(a.log().contains("shutdown complete"), "{}", a.log());
    assert!(
        !a.data_root.join("api.addr").exists(),
        "api.addr must be removed on exit"
    );
    wait_for("B to notice A left", STARTUP_TIMEOUT, || {
        (!connected(&b, &a_id)).then_some(())
    });

    // Restart A: no --peer, a new port. Same identity; it redials B from its
    // address book, and B can call it again.
    a.restart();
    assert_eq!(a.peer_id(), a_id, "the peer id must survive a restart");
    wait_for("A to reconnect to B", STARTUP_TIMEOUT, || {
        connected(&a, &b_id).then_some(())
    });
    wait_for("B to see A again", STARTUP_TIMEOUT, || {
        connected(&b, &a_id).then_some(())
    });
    assert_eq!(echo(&b, &a_id, "welcome back"), "welcome back\n");
}
