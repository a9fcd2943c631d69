//! Health, readiness and the observability routes of real nodes (in this
//! process, over real sockets): each component check is broken for real and
//! the report, the HTTP status and readiness follow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use common::{addr, start_node};
use dawn_core::{
    DawnConfig, Multiaddr, Node, NodeBuilder,
    config::{ConfigLoader, HumanDuration, MountedServerConfig},
};
use dawn_observe::health::HealthStatus;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(45);

fn token(node: &Node) -> String {
    std::fs::read_to_string(node.data_dir().api_token())
        .unwrap()
        .trim()
        .to_owned()
}

fn base(node: &Node) -> String {
    format!("http://{}", node.api_addr().expect("API enabled"))
}

/// GET `path`; returns the status and the body (JSON when it parses).
async fn get(node: &Node, path: &str, with_token: bool) -> (u16, Value, String) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", base(node)));
    if with_token {
        request = request.bearer_auth(token(node));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

async fn with_api(
    dir: &tempfile::TempDir,
    name: &str,
    tweak: impl FnOnce(&mut DawnConfig),
) -> Node {
    start_node(dir, name, |c| {
        c.api.enabled = true;
        // Every request sees fresh check results.
        c.observability.health.cache_ttl = Duration::ZERO;
        tweak(c);
    })
    .await
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// Polls `/health` until `pred` holds.
async fn health_until(node: &Node, what: &str, pred: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, report, _) = get(node, "/health", false).await;
        if pred(status, &report) {
            return report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last report ({status}): {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The fixture MCP server binary (see tests/mounted_servers.rs).
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
            assert!(
                build.status().unwrap().success(),
                "building the fixture server failed"
            );
        }
        path
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_covers_every_component_and_follows_peers_and_mounted_servers() {
    let dir = tempfile::tempdir().unwrap();
    let mut ghost = MountedServerConfig::stdio("ghost", "/nonexistent/dawn-no-such-server", vec![]);
    ghost.restart.initial_backoff = HumanDuration::millis(200);
    let fixture_server =
        MountedServerConfig::stdio("files", fixture().to_string_lossy(), Vec::new());
    let a = with_api(&dir, "a", |c| {
        c.observability.health.min_peers = 1;
        c.mcp.servers = vec![ghost, fixture_server];
    })
    .await;

    // Probes need no token.
    let (status, live, _) = get(&a, "/health/live", false).await;
    assert_eq!((status, live), (200, json!({"status": "alive"})));
    let (status, ready, _) = get(&a, "/health/ready", false).await;
    assert_eq!(status, 200, "{ready:#}");
    assert_eq!(ready["ready"], true);
    let bootstrap = ready["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "bootstrap")
        .unwrap();
    assert_eq!(bootstrap["detail"], "no bootstrap peers configured");

    // No peer and a mounted server that cannot start: degraded (those checks
    // are not critical), so still 200.
    let report = health_until(&a, "the fixture server to run", |_, r| {
        r["checks"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["name"] == "mcp_server:files" && c["status"] == "healthy")
        })
    })
    .await;
    assert_eq!(report["status"], "degraded", "{report:#}");
    assert_eq!(report["node_id"], a.peer_id().to_string());
    assert_eq!(report["version"], dawn_core::VERSION);
    assert!(report["uptime_secs"].is_u64());
    for name in ["store", "transport", "disk"] {
        let c = check(&report, name);
        assert_eq!(c["status"], "healthy", "{c}");
        assert_eq!(c["critical"], true, "{c}");
        assert!(c["duration_ms"].is_u64(), "{c}");
    }
    assert_eq!(
        check(&report, "store")["message"],
        "database read and write ok"
    );
    assert!(
        check(&report, "transport")["message"]
            .as_str()
            .unwrap()
            .contains("/ip4/127.0.0.1/tcp/"),
    );
    let peers = check(&report, "peers");
    assert_eq!(peers["status"], "degraded");
    assert_eq!(peers["message"], "0 peers connected (minimum 1)");
    let ghost = check(&report, "mcp_server:ghost");
    assert_eq!(ghost["status"], "unhealthy", "{ghost}");
    assert_eq!(ghost["critical"], false);
    assert!(
        ghost["message"]
            .as_str()
            .unwrap()
            .contains("dawn-no-such-server"),
        "{ghost}"
    );
    assert!(
        check(&report, "mcp_server:files")["message"]
            .as_str()
            .unwrap()
            .starts_with("running ("),
    );
    assert_eq!(check(&report, "alerts")["status"], "healthy");

    // The same report through the embedding API.
    let embedded = a.health().await;
    assert_eq!(embedded.status, HealthStatus::Degraded);

    // A peer connects: the peer check turns healthy.
    let b = start_node(&dir, "b", |c| {
        c.node.bootstrap = vec![a.dial_addrs()[0].clone()];
    })
    .await;
    let report = health_until(&a, "the peer check to pass", |_, r| {
        r["checks"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["name"] == "peers" && c["status"] == "healthy")
        })
    })
    .await;
    assert_eq!(
        check(&report, "peers")["message"],
        "1 peers connected (minimum 1)"
    );

    // It goes away: degraded again.
    b.shutdown().await;
    health_until(&a, "the peer check to fail again", |_, r| {
        r["checks"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["name"] == "peers" && c["status"] == "degraded")
        })
    })
    .await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_disk_space_makes_the_node_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let a = with_api(&dir, "a", |c| {
        c.observability.health.min_peers = 0;
        // More than any test machine has.
        c.observability.health.disk.degraded_below = 1 << 62;
        c.observability.health.disk.unhealthy_below = 1 << 61;
    })
    .await;
    let (status, report, _) = get(&a, "/health", false).await;
    assert_eq!(status, 503, "{report:#}");
    assert_eq!(report["status"], "unhealthy");
    let disk = check(&report, "disk");
    assert_eq!(disk["status"], "unhealthy");
    assert!(
        disk["message"].as_str().unwrap().contains(" free of "),
        "{disk}"
    );
    assert!(
        disk["message"].as_str().unwrap().contains("; below "),
        "{disk}"
    );
    assert!(
        disk["message"]
            .as_str()
            .unwrap()
            .contains(&a.data_dir().root().display().to_string()),
        "{disk}"
    );
    // Readiness is about taking traffic, not about disk space.
    let (status, _, _) = get(&a, "/health/ready", false).await;
    assert_eq!(status, 200);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_listens_nowhere_is_unhealthy_and_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let a = with_api(&dir, "a", |c| {
        c.node.listen = Vec::new();
        c.observability.health.min_peers = 0;
    })
    .await;
    let (status, report, _) = get(&a, "/health", false).await;
    assert_eq!(status, 503, "{report:#}");
    let transport = check(&report, "transport");
    assert_eq!(transport["status"], "unhealthy");
    assert_eq!(transport["message"], "not listening: node.listen is empty");
    let (status, ready, _) = get(&a, "/health/ready", false).await;
    assert_eq!(status, 503, "{ready:#}");
    assert_eq!(ready["ready"], false);
    assert!(
        ready["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("transport: "),
        "{ready:#}"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_a_bootstrap_peer_or_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A bootstrap peer that never answers: a closed port, a valid peer id.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nobody = dawn_core::PeerId::random();
    let unreachable: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{nobody}")
        .parse()
        .unwrap();
    let a = with_api(&dir, "a", |c| {
        c.node.bootstrap = vec![unreachable];
        c.observability.health.bootstrap_timeout = Duration::from_secs(3);
    })
    .await;
    let (status, ready, _) = get(&a, "/health/ready", false).await;
    assert_eq!(status, 503, "{ready:#}");
    assert!(
        ready["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("bootstrap: ")),
        "{ready:#}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    let ready = loop {
        let (status, ready, _) = get(&a, "/health/ready", false).await;
        if status == 200 {
            break ready;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {ready:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let bootstrap = ready["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "bootstrap")
        .unwrap();
    assert_eq!(
        bootstrap["detail"],
        "timed out after 3s without a bootstrap peer"
    );

    // A reachable bootstrap peer: ready as soon as it is connected.
    let b = with_api(&dir, "b", |c| {
        c.node.bootstrap = vec![a.dial_addrs()[0].clone()];
        c.observability.health.bootstrap_timeout = Duration::from_secs(600);
    })
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let report = b.readiness();
        if report.ready {
            let c = report
                .conditions
                .iter()
                .find(|c| c.name == "bootstrap")
                .unwrap();
            assert_eq!(
                c.detail,
                format!("connected to bootstrap peer {}", a.peer_id())
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutting_down_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let (a, mut probe) = common::start_probed(&dir, "a", |c| {
        c.api.enabled = true;
        c.node.shutdown_grace = dawn_core::config::HumanDuration::secs(30);
    })
    .await;
    // A call in flight keeps the node in its shutdown grace period.
    let caller = a.clone();
    let call = tokio::spawn(async move {
        caller
            .call_tool(&addr(None, "tester"), "sleep", json!({"ms": 4000}))
            .await
    });
    common::expect_probe(&mut probe, "sleep-started").await;
    let stopping = a.clone();
    let shutdown = tokio::spawn(async move { stopping.shutdown().await });
    let deadline = tokio::time::Instant::now() + WAIT;
    let ready = loop {
        let (status, ready, _) = get(&a, "/health/ready", false).await;
        if status == 503 {
            break ready;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready: {ready:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ready["reasons"][0], "shutting down", "{ready:#}");
    // Liveness is unaffected while the process still serves.
    let (status, _, _) = get(&a, "/health/live", false).await;
    assert_eq!(status, 200);
    call.await.unwrap().unwrap();
    shutdown.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_metrics_and_the_report_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let open = with_api(&dir, "open", |_| {}).await;
    let (status, _, body) = get(&open, "/metrics", false).await;
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE dawn_build_info gauge"), "{body}");
    assert!(body.contains("# TYPE process_resident_memory_bytes gauge"));
    assert!(body.contains("libp2p_"), "libp2p metrics are included");
    // The API proper still needs the token.
    let (status, _, _) = get(&open, "/api/v1/status", false).await;
    assert_eq!(status, 401);

    let guarded = with_api(&dir, "guarded", |c| {
        c.observability.metrics.require_token = true;
        c.observability.metrics.path = "/internal/metrics".into();
        c.observability.health.require_token = true;
    })
    .await;
    for (path, without, with) in [
        ("/internal/metrics", 401, 200),
        ("/health", 401, 200),
        ("/health/live", 200, 200),
        ("/health/ready", 200, 200),
    ] {
        let (status, _, _) = get(&guarded, path, false).await;
        assert_eq!(status, without, "{path} without token");
        let (status, _, _) = get(&guarded, path, true).await;
        assert!(
            status == with || (path == "/health" && status == 503),
            "{path} with token: {status}"
        );
    }
    let (status, _, _) = get(&guarded, "/metrics", true).await;
    assert_eq!(
        status, 404,
        "the default path is not served when another is configured"
    );

    let dark = with_api(&dir, "dark", |c| {
        c.observability.metrics.enabled = false;
        c.observability.alerts.enabled = false;
    })
    .await;
    let (status, _, _) = get(&dark, "/metrics", true).await;
    assert_eq!(status, 404);
    assert!(dark.metrics().is_none());
    assert!(dark.alerts().is_empty());

    // Bad requests get clear errors and the node keeps serving.
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/health", base(&open)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let (status, body, _) = get(&open, "/health/nope", false).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["data"]["kind"], "method_not_found");
    let (status, _, _) = get(&open, "/health/live", false).await;
    assert_eq!(status, 200);

    for node in [open, guarded, dark] {
        node.shutdown().await;
    }
}

#[test]
fn observability_settings_are_validated_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let load = |toml: &str| {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        ConfigLoader::new().file(&path).load()
    };
    for (toml, expected) in [
        (
            "[observability.metrics]\npath = \"metrics\"\n",
            "observability.metrics.path",
        ),
        (
            "[observability.metrics]\npath = \"/health/x\"\n",
            "observability.metrics.path",
        ),
        (
            "[observability.health]\ndisk = { degraded_below = \"1MiB\", unhealthy_below = \"1GiB\" }\n",
            "observability.health.disk.unhealthy_below",
        ),
        (
            "[observability.alerts]\nerror_rate = { threshold = -1 }\n",
            "observability.alerts.error_rate.threshold",
        ),
        (
            "[[observability.alerts.webhooks]]\nurl = \"ftp://x\"\n",
            "observability.alerts.webhooks[0].url",
        ),
        ("[logging]\nrotation = \"hourly\"\n", "logging.rotation"),
        ("[logging]\nkeep = 5000\n", "logging.keep"),
        ("[observability.health]\nmin_peer = 1\n", "min_peer"),
    ] {
        let error = load(toml).expect_err(toml).to_string();
        assert!(error.contains(expected), "{toml}: {error}");
    }
    let config = load(
        "[observability.metrics]\nrequire_token = true\n[observability.health]\nbootstrap_timeout = \"5s\"\n[logging]\nrotation = \"10MiB\"\nkeep = 3\n",
    )
    .unwrap();
    assert!(config.observability.metrics.require_token);
    assert_eq!(
        config.observability.health.bootstrap_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(
        config.logging.rotation,
        dawn_observe::logging::LogRotation::Size(10 << 20)
    );
    assert_eq!(config.logging.keep, 3);
    // Invalid values stop the node before it starts.
    let mut bad = DawnConfig::ephemeral(dir.path().join("n"));
    bad.observability.health.check_timeout = Duration::ZERO;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let error = rt
        .block_on(NodeBuilder::new(bad).start())
        .expect_err("invalid config")
        .to_string();
    assert!(
        error.contains("observability.health.check_timeout"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_are_reported_and_a_failing_one_degrades_the_node() {
    let dir = tempfile::tempdir().unwrap();
    // backup.dir is a regular file: every scheduled backup fails.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"a file where the backup directory should be").unwrap();
    let a = with_api(&dir, "a", |c| {
        c.observability.health.min_peers = 0;
        c.backup.interval = HumanDuration::secs(1);
        c.backup.dir = Some(blocker.clone());
    })
    .await;
    let report = health_until(&a, "the backup check to report the failure", |_, r| {
        r["checks"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["name"] == "backup" && c["status"] == "degraded")
        })
    })
    .await;
    assert_eq!(report["status"], "degraded", "{report:#}");
    let backup = check(&report, "backup");
    assert!(
        backup["message"]
            .as_str()
            .unwrap()
            .starts_with("the last backup failed: "),
        "{backup}"
    );
    // Degraded is still ready and still 200: the node serves calls.
    let (status, _, _) = get(&a, "/health", false).await;
    assert_eq!(status, 200);
    a.shutdown().await;
    // The handle keeps the database open until it is dropped.
    drop(a);

    // The same node with a usable directory: the check turns healthy after a success.
    let b = with_api(&dir, "a", |c| {
        c.observability.health.min_peers = 0;
        c.backup.interval = HumanDuration::secs(1);
        c.backup.dir = Some(dir.path().join("backups"));
    })
    .await;
    let report = health_until(&b, "a successful scheduled backup", |_, r| {
        r["checks"].as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["name"] == "backup"
                    && c["status"] == "healthy"
                    && c["message"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("last backup ")
            })
        })
    })
    .await;
    assert_eq!(report["status"], "healthy", "{report:#}");
    b.shutdown().await;
    drop(b);

    // Without a schedule there is no backup check at all.
    let c = with_api(&dir, "a", |c| c.observability.health.min_peers = 0).await;
    let (_, report, _) = get(&c, "/health", false).await;
    assert!(
        !report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "backup"),
        "{report:#}"
    );
    c.shutdown().await;
}
