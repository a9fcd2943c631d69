//! Failures are one clear line on stderr and a non-zero exit status: no
//! node, unreachable API, wrong token, node-reported errors, bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::{TestNode, assert_one_line_failure, cli, stderr, stdout, write_foreign_token};

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn no_node_running_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    for command in ["status", "peers", "agents", "tools"] {
        let out = cli(&["--data-root", root, command]);
        let line = assert_one_line_failure(&out, 1);
        assert!(
            line.starts_with("dawn-cli: no node is running on"),
            "{line}"
        );
        assert!(
            line.contains(&format!("dawn-node --data-root {root}")),
            "{line}"
        );
    }
}

#[test]
fn unreachable_api_is_one_line() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let out = cli(&[
        "--api",
        url.as_str(),
        "--data-root",
        dir.path().to_str().unwrap(),
        "status",
    ]);
    let line = assert_one_line_failure(&out, 1);
    assert_eq!(
        line,
        format!("dawn-cli: cannot reach the node API at {url}: connection refused")
    );
}

#[test]
fn stale_api_addr_file_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    std::fs::write(dir.path().join("api.addr"), format!("127.0.0.1:{port}\n")).unwrap();
    let out = cli(&["--data-root", dir.path().to_str().unwrap(), "status"]);
    let line = assert_one_line_failure(&out, 1);
    assert!(line.contains("connection refused"), "{line}");
    assert!(line.contains("stale"), "{line}");
}

#[test]
fn wrong_or_unusable_token_names_the_token_file() {
    let node = TestNode::start(&[]);
    let foreign = node.scratch().join("other.token");
    write_foreign_token(&foreign);
    let foreign_str = foreign.to_str().unwrap();
    let out = node.cli(&["--token-file", foreign_str, "status"]);
    let line = assert_one_line_failure(&out, 1);
    assert!(line.contains("rejected the API token"), "{line}");
    assert!(line.contains(foreign_str), "{line}");
    assert!(!line.contains(&"ab".repeat(32)), "the token leaked: {line}");

    // A token file others can read is refused before any request.
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = node.cli(&["--token-file", foreign_str, "status"]);
    let line = assert_one_line_failure(&out, 1);
    assert!(
        line.contains(foreign_str) && line.contains("chmod 600"),
        "{line}"
    );

    let missing = node.scratch().join("missing.token");
    let out = node.cli(&["--token-file", missing.to_str().unwrap(), "status"]);
    let line = assert_one_line_failure(&out, 1);
    assert!(line.contains("does not exist"), "{line}");

    // --api with a data directory that has no token: the node asks for one.
    let api_addr = std::fs::read_to_string(node.data_root.join("api.addr")).unwrap();
    let url = format!("http://{}", api_addr.trim());
    let empty = tempfile::tempdir().unwrap();
    let out = cli(&[
        "--api",
        url.as_str(),
        "--data-root",
        empty.path().to_str().unwrap(),
        "status",
    ]);
    let line = assert_one_line_failure(&out, 1);
    assert!(line.contains("requires a bearer token"), "{line}");
    assert!(
        line.contains("api.token") && line.contains("--token-file"),
        "{line}"
    );
}

#[test]
fn node_errors_show_message_kind_and_code() {
    let node = TestNode::start(&[]);
    let cases: [(&[&str], &str); 5] = [
        (&["call", "nosuch", "echo"], "unknown_agent"),
        (&["call", "system", "nosuch"], "unknown_tool"),
        (
            &["call", "system", "echo", "--args", r#"{"message": 5}"#],
            "invalid_params",
        ),
        (
            &["call", "system", "echo", "--args", r#"{"msg": "x"}"#],
            "invalid_params",
        ),
        (&["tools", "nosuch"], "unknown_agent"),
    ];
    for (args, kind) in cases {
        for json in [false, true] {
            let mut args = args.to_vec();
            if json {
                args.push("--json");
            }
            let out = node.cli(&args);
            let line = assert_one_line_failure(&out, 1);
            assert!(line.starts_with("error: "), "{args:?}: {line}");
            assert!(
                line.contains(&format!("({kind}, code -")),
                "{args:?}: {line}"
            );
            assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
        }
    }
}

#[test]
fn bad_args_json_is_a_usage_error() {
    // No node is needed: the command line is rejected first.
    for (bad, expected) in [
        ("{oops", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ] {
        let out = cli(&["call", "system", "echo", "--args", bad]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("--args") && err.contains(expected), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn version_and_help() {
    let out = cli(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("dawn-cli {}", env!("CARGO_PKG_VERSION"))
    );
    let out = cli(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for word in [
        "status",
        "peers",
        "agents",
        "tools",
        "call",
        "bench",
        "--data-root",
        "--api",
        "--token-file",
        "--json",
        "Exit status",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = cli(&["bench", "--help"]);
    let help = stdout(&out);
    for word in [
        "--target",
        "--tool",
        "--concurrency",
        "--duration",
        "--size",
        "[default: 16]",
    ] {
        assert!(help.contains(word), "bench --help lacks {word}:\n{help}");
    }
}
