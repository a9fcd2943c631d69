//! Observability of real `dawn-node` processes: `/metrics` after real
//! traffic between two nodes (counters move by exactly the calls made, the
//! scrape matches the metric table and passes `promtool check metrics`),
//! `dawn-cli health` exit statuses, alerts delivered to a real webhook and
//! Alertmanager receiver (firing, then resolved), and JSON logs with context
//! fields, rotation and no secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod observe_support;

use common::{stderr, stdout, wait_for};
use observe_support::{
    Node, NodeOptions, Receiver, WAIT, metric, promtool, promtool_check_metrics,
};
use serde_json::Value;

fn connected(a: &Node, b: &Node) {
    wait_for("the two nodes to connect", WAIT, || {
        (a.peers_connected() >= 1 && b.peers_connected() >= 1).then_some(())
    });
}

fn call(node: &Node, agent: &str, tool: &str, args: &str) -> std::process::Output {
    node.cli(&["call", agent, tool, "--args", args])
}

#[test]
fn metrics_count_real_traffic_between_two_nodes() {
    let a = Node::start(&NodeOptions::default());
    let b = Node::start(&NodeOptions {
        peers: vec![a.dial_addr()],
        ..NodeOptions::default()
    });
    connected(&a, &b);
    let a_id = a.peer_id();
    let remote = format!("{a_id}/system");

    let a0 = a.scrape();
    let b0 = b.scrape();

    const OK: usize = 5;
    const BAD: usize = 2;
    const LOCAL: usize = 3;
    for i in 0..OK {
        let out = call(
            &b,
            &remote,
            "echo",
            &format!(r#"{{"message":"hello {i}"}}"#),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), format!("hello {i}"));
    }
    for _ in 0..BAD {
        // Missing the required `message`: invalid_params from A's agent.
        let out = call(&b, &remote, "echo", "{}");
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(stderr(&out).contains("invalid_params"), "{}", stderr(&out));
    }
    for _ in 0..LOCAL {
        let out = call(&a, "system", "echo", r#"{"message":"local"}"#);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    let a1 = a.scrape();
    let b1 = b.scrape();
    let delta = |before: &str, after: &str, name: &str, labels: &[(&str, &str)]| {
        metric(after, name, labels) - metric(before, name, labels)
    };
    let n = |x: usize| x as f64;

    // The caller: outbound calls by outcome, their latency, their errors.
    let out_call = |status| {
        delta(
            &b0,
            &b1,
            "dawn_calls_total",
            &[
                ("direction", "outbound"),
                ("method", "tools_call"),
                ("status", status),
            ],
        )
    };
    assert_eq!(out_call("ok"), n(OK), "B outbound ok");
    assert_eq!(
        out_call("invalid_params"),
        n(BAD),
        "B outbound invalid_params"
    );
    assert_eq!(
        delta(
            &b0,
            &b1,
            "dawn_call_duration_seconds_count",
            &[("direction", "outbound"), ("method", "tools_call")]
        ),
        n(OK + BAD)
    );
    assert_eq!(
        delta(
            &b0,
            &b1,
            "dawn_errors_total",
            &[("kind", "invalid_params"), ("component", "core")]
        ),
        n(BAD)
    );
    assert!(
        delta(
            &b0,
            &b1,
            "dawn_message_size_bytes_count",
            &[("direction", "outbound"), ("kind", "request")]
        ) >= n(OK + BAD)
    );
    assert!(
        delta(
            &b0,
            &b1,
            "dawn_message_size_bytes_count",
            &[("direction", "inbound"), ("kind", "response")]
        ) >= n(OK + BAD)
    );

    // The served node: inbound calls, local calls, its agent's tool calls.
    let in_call = |status| {
        delta(
            &a0,
            &a1,
            "dawn_calls_total",
            &[
                ("direction", "inbound"),
                ("method", "tools_call"),
                ("status", status),
            ],
        )
    };
    assert_eq!(in_call("ok"), n(OK), "A inbound ok");
    assert_eq!(
        in_call("invalid_params"),
        n(BAD),
        "A inbound invalid_params"
    );
    assert_eq!(
        delta(
            &a0,
            &a1,
            "dawn_calls_total",
            &[
                ("direction", "local"),
                ("method", "tools_call"),
                ("status", "ok")
            ]
        ),
        n(LOCAL)
    );
    assert_eq!(
        delta(
            &a0,
            &a1,
            "dawn_call_duration_seconds_count",
            &[("direction", "local"), ("method", "tools_call")]
        ),
        n(LOCAL)
    );
    assert_eq!(
        delta(
            &a0,
            &a1,
            "dawn_agent_tool_calls_total",
            &[("agent", "system"), ("tool", "echo"), ("status", "ok")]
        ),
        n(OK + LOCAL)
    );
    assert_eq!(
        delta(
            &a0,
            &a1,
            "dawn_agent_tool_calls_total",
            &[
                ("agent", "system"),
                ("tool", "echo"),
                ("status", "invalid_params")
            ]
        ),
        n(BAD)
    );
    assert_eq!(
        delta(
            &a0,
            &a1,
            "dawn_errors_total",
            &[("kind", "invalid_params"), ("component", "core")]
        ),
        n(BAD)
    );
    assert!(
        delta(
            &a0,
            &a1,
            "dawn_message_size_bytes_count",
            &[("direction", "inbound"), ("kind", "request")]
        ) >= n(OK + BAD)
    );

    // Connections and traffic on both sides.
    for (name, s0, s1) in [("A", &a0, &a1), ("B", &b0, &b1)] {
        assert!(
            metric(s1, "dawn_connected_peers", &[("transport", "tcp")]) >= 1.0,
            "{name}"
        );
        assert!(
            metric(s1, "dawn_connections_total", &[("status", "established")]) >= 1.0,
            "{name}"
        );
        for direction in ["inbound", "outbound"] {
            assert!(
                delta(
                    s0,
                    s1,
                    "dawn_network_bytes_total",
                    &[("direction", direction)]
                ) > 0.0,
                "{name} {direction} bytes"
            );
        }
        assert_eq!(
            metric(s1, "dawn_build_info", &[("version", dawn_core::VERSION)]),
            1.0
        );
        assert!(metric(s1, "dawn_uptime_seconds", &[]) > 0.0);
        assert!(metric(s1, "process_resident_memory_bytes", &[]) > 0.0);
        assert!(metric(s1, "process_open_fds", &[]) > 0.0);
        assert!(metric(s1, "process_cpu_seconds_total", &[]) > 0.0);
        assert!(
            s1.contains("\nlibp2p_"),
            "{name}: libp2p metrics in the same scrape"
        );
        assert!(metric(s1, "dawn_registry_entries", &[("kind", "nodes")]) >= 1.0);

        // Every family is documented with its type and help text.
        let problems = dawn_observe::metrics::documentation_problems(s1);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        // No unbounded label values: peer ids never appear in Dawn's series.
        for sample in dawn_observe::exposition::parse_samples(s1) {
            if sample.name.starts_with("dawn_") {
                for value in sample.labels.values() {
                    assert!(
                        !value.contains("12D3KooW"),
                        "{name}: {} has a peer id label",
                        sample.name
                    );
                }
            }
        }
    }

    if let Some(promtool) = promtool() {
        promtool_check_metrics(&promtool, &a1);
        promtool_check_metrics(&promtool, &b1);
    }
}

#[test]
fn dawn_cli_health_exit_status_follows_the_node() {
    // Alone, with the default minimum of one peer: degraded, which is fine.
    let mut a = Node::start(&NodeOptions::default());
    let out = a.cli(&["health"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("status:   degraded"), "{text}");
    assert!(text.contains("ready:    yes"), "{text}");
    assert!(text.contains("0 peers connected (minimum 1)"), "{text}");
    let json: Value = serde_json::from_slice(&a.cli(&["health", "--json"]).stdout).unwrap();
    assert_eq!(json["status"], "degraded");
    assert_eq!(json["ready"]["ready"], true);
    assert_eq!(json["node_id"], a.peer_id());

    // Without any token (a container health check run as another user).
    let elsewhere = tempfile::tempdir().unwrap();
    let out = common::cli(&[
        "--api",
        &format!("http://{}", a.api),
        "--data-root",
        elsewhere.path().to_str().unwrap(),
        "health",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // Not enough disk space by configuration: unhealthy, exit status 1, and
    // the report says why; still ready (readiness is about traffic).
    let b = Node::start(&NodeOptions {
        env: vec![
            (
                "DAWN_OBSERVABILITY__HEALTH__DISK__DEGRADED_BELOW".into(),
                "4000TiB".into(),
            ),
            (
                "DAWN_OBSERVABILITY__HEALTH__DISK__UNHEALTHY_BELOW".into(),
                "2000TiB".into(),
            ),
        ],
        ..NodeOptions::default()
    });
    let out = b.cli(&["health"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("status:   unhealthy"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("disk") && l.contains("unhealthy")),
        "{text}"
    );
    assert!(b.cli(&["health", "--ready"]).status.success());

    // A stopped node: one line on stderr, exit status 1.
    a.terminate();
    let out = a.cli(&["health"]);
    let line = common::assert_one_line_failure(&out, 1);
    assert!(line.contains("no node is running"), "{line}");
    // ... and the same through --api, where only the address is known.
    let out = common::cli(&[
        "--api",
        &format!("http://{}", a.api),
        "--data-root",
        elsewhere.path().to_str().unwrap(),
        "health",
        "--timeout",
        "5",
    ]);
    let line = common::assert_one_line_failure(&out, 1);
    assert!(line.contains("cannot reach"), "{line}");
}

#[test]
fn alerts_fire_and_resolve_through_webhook_and_alertmanager() {
    let receiver = Receiver::start();
    const SECRET: &str = "whsec-dawn-test-0123456789";
    let config = format!(
        r#"
[observability.alerts]
evaluation_interval = "1s"
resend_interval = "1s"
no_peers = {{ for = "0s" }}

[[observability.alerts.webhooks]]
url = "http://{addr}/hook"
secret = "{SECRET}"
max_retries = 1

[[observability.alerts.alertmanagers]]
url = "http://{addr}"
max_retries = 1
"#,
        addr = receiver.addr
    );
    let a = Node::start(&NodeOptions {
        config: Some(config),
        ..NodeOptions::default()
    });
    let a_id = a.peer_id();

    // Alone: DawnNoPeers fires.
    let is_no_peers = |alert: &Value| alert["labels"]["alertname"] == "DawnNoPeers";
    let firing = receiver.wait_for("a firing webhook notification", |r| {
        r.path == "/hook"
            && r.json()["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| is_no_peers(a) && a["status"] == "firing"))
    });
    assert_eq!(firing.method, "POST");
    let signature = firing.headers.get("x-dawn-signature").expect("signed");
    assert!(dawn_observe::notify::verify_signature(
        SECRET.as_bytes(),
        &firing.body,
        signature
    ));
    let alert = firing.json()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| is_no_peers(a))
        .cloned()
        .unwrap();
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["labels"]["node_id"], a_id);
    assert_eq!(
        alert["annotations"]["summary"],
        "The node has no connected peers"
    );

    let am = receiver.wait_for("alerts on the Alertmanager API", |r| {
        r.path == "/api/v2/alerts"
            && r.json()
                .as_array()
                .is_some_and(|a| a.iter().any(is_no_peers))
    });
    assert_eq!(am.method, "POST");

    // The node reports it: metrics, health, the alert list.
    wait_for("dawn_alerts_firing to show it", WAIT, || {
        (metric(
            &a.scrape(),
            "dawn_alerts_firing",
            &[("alertname", "DawnNoPeers")],
        ) == 1.0)
            .then_some(())
    });
    let (_, health) = a.get_anonymous("/health");
    let health: Value = serde_json::from_str(&health).unwrap();
    let alerts_check = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "alerts")
        .unwrap()
        .clone();
    assert_eq!(alerts_check["status"], "degraded", "{alerts_check}");
    assert!(
        alerts_check["message"]
            .as_str()
            .unwrap()
            .contains("DawnNoPeers")
    );

    // A peer connects: resolved on both receivers.
    let b = Node::start(&NodeOptions {
        peers: vec![a.dial_addr()],
        ..NodeOptions::default()
    });
    connected(&a, &b);
    let resolved = receiver.wait_for("a resolved webhook notification", |r| {
        r.path == "/hook"
            && r.json()["alerts"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|a| is_no_peers(a) && a["status"] == "resolved")
            })
    });
    let signature = resolved.headers.get("x-dawn-signature").unwrap();
    assert!(dawn_observe::notify::verify_signature(
        SECRET.as_bytes(),
        &resolved.body,
        signature
    ));
    receiver.wait_for("a resolved alert on the Alertmanager API", |r| {
        r.path == "/api/v2/alerts"
            && r.json().as_array().is_some_and(|alerts| {
                alerts.iter().any(|a| {
                    is_no_peers(a)
                        && a["endsAt"].as_str().is_some_and(|t| {
                            // Resolved: endsAt is not in the future.
                            t <= dawn_observe::notify::rfc3339(std::time::SystemTime::now())
                                .as_str()
                        })
                })
            })
    });
    wait_for("dawn_alerts_firing to clear", WAIT, || {
        (metric(
            &a.scrape(),
            "dawn_alerts_firing",
            &[("alertname", "DawnNoPeers")],
        ) == 0.0)
            .then_some(())
    });
    assert!(
        metric(
            &a.scrape(),
            "dawn_alert_notifications_total",
            &[("notifier", "webhook"), ("status", "sent")]
        ) >= 2.0
    );
    // The webhook secret is configuration, never log output.
    assert!(!a.stderr_log().contains(SECRET));
}

#[test]
fn json_logs_carry_context_rotate_and_hold_no_secrets() {
    const PASSPHRASE: &str = "correct horse battery staple 42";
    const WEBHOOK_SECRET: &str = "whsec-log-test-secret-987";
    let logs_dir = tempfile::tempdir().unwrap();
    let log_file = logs_dir.path().join("logs/dawn.log");
    let config = format!(
        r#"
[logging]
level = "debug"
format = "json"
file = "{file}"
rotation = "16KiB"
keep = 3

[security]
encryption_at_rest = true

[[observability.alerts.webhooks]]
url = "http://127.0.0.1:9/hook"
secret = "{WEBHOOK_SECRET}"
max_retries = 0
"#,
        file = log_file.display()
    );
    let a = Node::start(&NodeOptions {
        config: Some(config.clone()),
        env: vec![("DAWN_PASSPHRASE".into(), PASSPHRASE.into())],
        ..NodeOptions::default()
    });
    let b = Node::start(&NodeOptions {
        peers: vec![a.dial_addr()],
        args: vec![
            "--log-format".into(),
            "json".into(),
            "--log-level".into(),
            "trace".into(),
        ],
        ..NodeOptions::default()
    });
    connected(&a, &b);
    let remote = format!("{}/system", a.peer_id());
    for i in 0..40 {
        let out = call(&b, &remote, "echo", &format!(r#"{{"message":"m{i}"}}"#));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // A wrong token is refused and logged, without the token.
    let (status, _) =
        observe_support::http_get(&a.api, "/api/v1/status", Some("dawn_wrongwrongwrong"));
    assert_eq!(status, 401);

    let secrets = [
        a.token(),
        b.token(),
        PASSPHRASE.to_owned(),
        WEBHOOK_SECRET.to_owned(),
        "dawn_wrongwrongwrong".to_owned(),
    ];
    let mut files = vec![a.log.clone(), b.log.clone(), log_file.clone()];
    wait_for("the log file to rotate", WAIT, || {
        log_file.with_extension("log.1").exists().then_some(())
    });
    for n in 1..=3 {
        let p = log_file.with_extension(format!("log.{n}"));
        if p.exists() {
            files.push(p);
        }
    }
    assert!(
        !log_file.with_extension("log.4").exists(),
        "only `keep` rotated files"
    );

    let mut saw_node_id = false;
    let mut saw_call_context = false;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{} contains a secret",
                file.display()
            );
        }
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // dawn-node's own start-up banner on stderr is plain text.
            if file.extension().is_some_and(|e| e == "stderr") && !line.starts_with('{') {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", file.display()));
            for key in ["timestamp", "level", "target", "message"] {
                assert!(v.get(key).is_some(), "{key} missing: {line}");
            }
            saw_node_id |= v["node_id"]
                .as_str()
                .is_some_and(|s| s.starts_with("12D3KooW"));
            saw_call_context |= v["peer_id"].is_string() && v.get("request_id").is_some();
        }
    }
    assert!(saw_node_id, "no line carries node_id");
    assert!(saw_call_context, "no line carries peer_id and request_id");
    let refused = std::fs::read_to_string(&a.log).unwrap();
    assert!(
        refused.contains("API request refused"),
        "the refusal is logged"
    );
}

/// A store that cannot write any more (a file-size limit set on the running
/// node, as a full or failing disk would) makes the node unhealthy: the
/// store check fails, `/health` answers 503, `dawn-cli health` exits 1, and
/// the node keeps serving.
#[cfg(target_os = "linux")]
#[test]
fn a_store_that_cannot_write_makes_the_node_unhealthy() {
    use rustix::process::{Pid, Resource, Rlimit, getrlimit, prlimit};

    let a = Node::start(&NodeOptions {
        env: vec![("DAWN_OBSERVABILITY__HEALTH__MIN_PEERS".into(), "0".into())],
        ..NodeOptions::default()
    });
    let (status, _) = a.get_anonymous("/health");
    assert_eq!(status, 200);

    // Writes at offsets past 4 KiB now fail with EFBIG (the node handles
    // SIGXFSZ, so the signal does not kill it).
    let pid = Pid::from_raw(i32::try_from(a.pid()).unwrap()).unwrap();
    // The node inherited this process's limits.
    let old = getrlimit(Resource::Fsize);
    prlimit(
        Some(pid),
        Resource::Fsize,
        Rlimit {
            current: Some(4096),
            maximum: old.maximum,
        },
    )
    .unwrap();

    let report: Value = wait_for("the store check to fail", WAIT, || {
        let (status, body) = a.get_anonymous("/health");
        (status == 503).then(|| serde_json::from_str(&body).unwrap())
    });
    let store = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "store")
        .unwrap()
        .clone();
    assert_eq!(store["status"], "unhealthy", "{report:#}");
    assert!(
        store["message"]
            .as_str()
            .unwrap()
            .starts_with("database probe failed: "),
        "{store}"
    );
    let out = a.cli(&["health"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("store") && l.contains("unhealthy"))
    );
    // Still alive and answering.
    assert_eq!(a.get_anonymous("/health/live").0, 200);
    assert!(
        metric(
            &a.scrape(),
            "dawn_errors_total",
            &[("kind", "internal"), ("component", "store")]
        ) >= 1.0
    );
}
