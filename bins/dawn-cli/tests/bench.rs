//! `dawn-cli bench` against a real node (a smoke test: timing goals live in
//! benchmarks, not here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestNode, assert_one_line_failure, assert_success, stdout};

#[test]
fn bench_reports_calls_and_latency() {
    let node = TestNode::start(&[]);
    let args = [
        "bench",
        "--target",
        "system",
        "--tool",
        "echo",
        "--concurrency",
        "2",
        "--duration",
        "1",
        "--size",
        "64",
    ];
    let report = node.cli_json(&args);
    assert!(report["calls"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["ok"], report["calls"], "{report}");
    assert_eq!(report["concurrency"], 2);
    assert_eq!(report["size_bytes"], 64);
    assert!(report["calls_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    let latency = &report["latency_ms"];
    let p50 = latency["p50"].as_f64().unwrap();
    let p99 = latency["p99"].as_f64().unwrap();
    let max = latency["max"].as_f64().unwrap();
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");

    let out = node.cli(&args[..args.len() - 2]);
    assert_success(&out, &args);
    let summary = stdout(&out);
    for expected in ["calls/s", "p50", "p99", "0 errors"] {
        assert!(
            summary.contains(expected),
            "missing {expected:?} in:\n{summary}"
        );
    }
}

#[test]
fn bench_of_a_missing_tool_fails_before_measuring() {
    let node = TestNode::start(&[]);
    let out = node.cli(&[
        "bench",
        "--target",
        "system",
        "--tool",
        "nosuch",
        "--duration",
        "1",
    ]);
    let line = assert_one_line_failure(&out, 1);
    assert!(
        line.starts_with("error: the first call to system/nosuch failed"),
        "{line}"
    );
    assert!(line.contains("unknown_tool"), "{line}");
}
