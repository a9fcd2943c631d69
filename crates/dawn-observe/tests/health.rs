#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Health checks, readiness and their HTTP endpoints.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use dawn_observe::{
    alerts::{
        Aggregation, AlertEngine, AlertEngineHandle, AlertRule, Comparison, Condition, Function,
        InMemorySource, Selector,
    },
    config::DiskThresholds,
    health::{
        AlertStateCheck, CheckOptions, CheckResult, DiskSpaceCheck, HealthCheck, HealthChecker,
        HealthReport, HealthSettings, HealthStatus, PeerCountCheck, Readiness, ReadinessReport,
        check_fn, conditions, router, sync_check,
    },
    notify::{AlertNotification, AlertStatus, Notifier, NotifyError},
};

fn settings(cache_ttl: Duration) -> HealthSettings {
    HealthSettings {
        version: "0.1.0".into(),
        node_id: "12D3KooWTest".into(),
        cache_ttl,
        check_timeout: Duration::from_secs(2),
    }
}

fn status_of(report: &HealthReport, name: &str) -> HealthStatus {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
        .status
}

#[tokio::test]
async fn overall_status_is_the_worst_critical_component() {
    let ok = || sync_check(|| CheckResult::healthy("fine"));
    let checker = HealthChecker::new(settings(Duration::ZERO))
        .with_check("a", CheckOptions::critical(), ok())
        .with_check("b", CheckOptions::critical(), ok());
    let r = checker.report().await;
    assert_eq!(r.status, HealthStatus::Healthy);
    assert_eq!(r.version, "0.1.0");
    assert_eq!(r.node_id, "12D3KooWTest");
    assert_eq!(r.checks.len(), 2);

    checker.add_check(
        "slow_disk",
        CheckOptions::critical(),
        sync_check(|| CheckResult::degraded("90% full")),
    );
    assert_eq!(checker.report().await.status, HealthStatus::Degraded);

    // A non-critical unhealthy component only degrades the node.
    checker.add_check(
        "mcp:files",
        CheckOptions::non_critical(),
        sync_check(|| CheckResult::unhealthy("down")),
    );
    let r = checker.report().await;
    assert_eq!(r.status, HealthStatus::Degraded);
    assert_eq!(status_of(&r, "mcp:files"), HealthStatus::Unhealthy);
    assert!(
        !r.checks
            .iter()
            .find(|c| c.name == "mcp:files")
            .unwrap()
            .critical
    );

    // A critical unhealthy one makes it unhealthy; removing it recovers.
    checker.add_check(
        "store",
        CheckOptions::critical(),
        sync_check(|| CheckResult::unhealthy("read failed")),
    );
    assert_eq!(checker.report().await.status, HealthStatus::Unhealthy);
    assert!(checker.remove_check("store"));
    assert!(!checker.remove_check("store"));
    assert_eq!(checker.report().await.status, HealthStatus::Degraded);

    // The JSON shape.
    let json = serde_json::to_value(checker.report().await.as_ref()).unwrap();
    for key in ["status", "version", "node_id", "uptime_secs", "checks"] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    let first = &json["checks"][0];
    for key in ["name", "status", "message", "duration_ms", "critical"] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }
    assert_eq!(json["status"], "degraded");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_times_out_and_marks_only_its_component() {
    let checker = HealthChecker::new(settings(Duration::ZERO))
        .with_check(
            "store",
            CheckOptions::critical(),
            sync_check(|| CheckResult::healthy("ok")),
        )
        .with_check(
            "transport",
            CheckOptions::critical(),
            check_fn(|| async {
                std::future::pending::<()>().await;
                CheckResult::healthy("unreachable")
            }),
        )
        .with_check(
            "peers",
            CheckOptions::non_critical().with_timeout(Duration::from_millis(300)),
            check_fn(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                CheckResult::healthy("unreachable")
            }),
        );
    let started = tokio::time::Instant::now();
    let r = checker.report().await;
    // Checks run concurrently: the whole report takes the longest timeout.
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(status_of(&r, "store"), HealthStatus::Healthy);
    let transport = r.checks.iter().find(|c| c.name == "transport").unwrap();
    assert_eq!(transport.status, HealthStatus::Unhealthy);
    assert_eq!(transport.message, "timed out after 2s");
    assert_eq!(transport.duration_ms, 2000);
    let peers = r.checks.iter().find(|c| c.name == "peers").unwrap();
    assert_eq!(peers.message, "timed out after 300ms");
    assert_eq!(r.status, HealthStatus::Unhealthy);
}

#[tokio::test]
async fn a_panicking_check_is_unhealthy() {
    let checker = HealthChecker::new(settings(Duration::ZERO)).with_check(
        "buggy",
        CheckOptions::critical(),
        check_fn(|| async {
            let v: Vec<u8> = Vec::new();
            // Index out of bounds on purpose.
            let _ = v[usize::from(v.is_empty())];
            CheckResult::healthy("unreachable")
        }),
    );
    let r = checker.report().await;
    assert_eq!(r.status, HealthStatus::Unhealthy);
    assert_eq!(r.checks[0].message, "the check panicked");
}

#[tokio::test(start_paused = true)]
async fn results_are_cached_for_the_ttl() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let checker = Arc::new(
        HealthChecker::new(settings(Duration::from_secs(1))).with_check(
            "counted",
            CheckOptions::critical(),
            sync_check(move || {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                CheckResult::healthy(format!("run {n}"))
            }),
        ),
    );
    // A storm of concurrent probes runs the checks once.
    let probes: Vec<_> = (0..20)
        .map(|_| {
            let c = Arc::clone(&checker);
            tokio::spawn(async move { c.report().await })
        })
        .collect();
    for p in probes {
        assert_eq!(p.await.unwrap().checks[0].message, "run 1");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_millis(999)).await;
    checker.report().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_millis(2)).await;
    assert_eq!(checker.report().await.checks[0].message, "run 2");

    // TTL 0: every report runs the checks.
    let runs0 = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs0);
    let uncached = HealthChecker::new(settings(Duration::ZERO)).with_check(
        "counted",
        CheckOptions::critical(),
        sync_check(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            CheckResult::healthy("ok")
        }),
    );
    uncached.report().await;
    uncached.report().await;
    assert_eq!(runs0.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_probes_share_one_run_even_without_cache() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let checker = Arc::new(HealthChecker::new(settings(Duration::ZERO)).with_check(
        "slow",
        CheckOptions::critical(),
        check_fn(move || {
            let counted = Arc::clone(&counted);
            async move {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                CheckResult::healthy(format!("run {n}"))
            }
        }),
    ));
    // Paused time only advances once every probe is waiting, so all of them
    // asked before the first run finished.
    let probes: Vec<_> = (0..10)
        .map(|_| {
            let c = Arc::clone(&checker);
            tokio::spawn(async move { c.report().await })
        })
        .collect();
    for p in probes {
        assert_eq!(p.await.unwrap().checks[0].message, "run 1");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A later probe runs the checks again.
    assert_eq!(checker.report().await.checks[0].message, "run 2");
}

#[tokio::test(start_paused = true)]
async fn readiness_reports_reasons_until_every_condition_is_met() {
    let r = Readiness::node_default();
    let report = r.report();
    assert!(!report.ready);
    assert_eq!(report.reasons.len(), 3);
    assert!(report.reasons.iter().any(|s| s.starts_with("store: ")));
    assert_eq!(report.http_status(), 503);

    r.set_ready(conditions::STORE);
    r.set_ready(conditions::TRANSPORT);
    let bootstrap = r.ready_after(conditions::BOOTSTRAP, Duration::from_secs(30));
    assert_eq!(
        r.report().reasons,
        ["bootstrap: the initial bootstrap has not finished"]
    );
    bootstrap.await.unwrap();
    let report = r.report();
    assert!(report.ready, "{report:?}");
    assert!(report.reasons.is_empty());
    let b = report
        .conditions
        .iter()
        .find(|c| c.name == "bootstrap")
        .unwrap();
    assert_eq!(b.detail, "timed out after 30s");

    // Transport lost its listeners.
    r.set_not_ready(conditions::TRANSPORT, "no listen address is open");
    assert_eq!(r.report().reasons, ["transport: no listen address is open"]);
    r.set_ready(conditions::TRANSPORT);

    // A bootstrap that finishes before its deadline keeps its own note.
    let r2 = Readiness::new();
    r2.require("bootstrap", "not yet");
    let waiter = r2.ready_after("bootstrap", Duration::from_secs(30));
    r2.set_ready_with_note("bootstrap", "connected to 2 bootstrap peers");
    waiter.await.unwrap();
    assert_eq!(
        r2.report().conditions[0].detail,
        "connected to 2 bootstrap peers"
    );

    r.begin_shutdown();
    let report = r.report();
    assert!(!report.ready);
    assert_eq!(report.reasons, ["shutting down"]);
    assert!(r.is_shutting_down());
}

#[tokio::test]
async fn disk_check_against_a_temp_dir() {
    let dir = tempfile::tempdir().unwrap();
    let space = dawn_observe::health::disk_space(dir.path()).unwrap();
    assert!(space.total >= space.available && space.total > 0);

    let check = |degraded_below, unhealthy_below| {
        HealthChecker::new(settings(Duration::ZERO)).with_check(
            "disk",
            CheckOptions::critical(),
            DiskSpaceCheck::new(
                dir.path(),
                DiskThresholds {
                    degraded_below,
                    unhealthy_below,
                },
            ),
        )
    };
    let r = check(0, 0).report().await;
    assert_eq!(r.status, HealthStatus::Healthy);
    assert!(
        r.checks[0]
            .message
            .contains(&dir.path().display().to_string())
    );
    assert!(r.checks[0].message.contains(" free of "));
    let r = check(u64::MAX, 0).report().await;
    assert_eq!(r.status, HealthStatus::Degraded);
    let r = check(u64::MAX, u64::MAX).report().await;
    assert_eq!(r.status, HealthStatus::Unhealthy);
    assert!(r.checks[0].message.contains("; below "));

    let gone = dir.path().join("missing");
    let missing = HealthChecker::new(settings(Duration::ZERO)).with_check(
        "disk",
        CheckOptions::critical(),
        DiskSpaceCheck::new(&gone, DiskThresholds::default()),
    );
    let r = missing.report().await;
    assert_eq!(r.status, HealthStatus::Unhealthy);
    assert!(
        r.checks[0].message.starts_with("cannot read free space"),
        "{}",
        r.checks[0].message
    );
}

#[tokio::test]
async fn peer_count_check_degrades_below_minimum() {
    let peers = Arc::new(AtomicUsize::new(0));
    let p = Arc::clone(&peers);
    let checker = HealthChecker::new(settings(Duration::ZERO)).with_check(
        "peers",
        CheckOptions::critical(),
        PeerCountCheck::new(2, move || p.load(Ordering::SeqCst)),
    );
    let r = checker.report().await;
    assert_eq!(r.status, HealthStatus::Degraded);
    assert_eq!(r.checks[0].message, "0 peers connected (minimum 2)");
    peers.store(2, Ordering::SeqCst);
    assert_eq!(checker.report().await.status, HealthStatus::Healthy);
}

/// Forwards every batch to a channel.
struct ChannelNotifier(tokio::sync::mpsc::UnboundedSender<Vec<AlertNotification>>);

#[async_trait::async_trait]
impl Notifier for ChannelNotifier {
    fn kind(&self) -> &'static str {
        "log"
    }
    async fn notify(&self, alerts: &[AlertNotification]) -> Result<(), NotifyError> {
        let _ = self.0.send(alerts.to_vec());
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn alert_state_check_follows_the_engine() {
    let source = InMemorySource::new();
    let rule = |name: &str, metric: &str, severity: &str| {
        AlertRule::new(
            name,
            Condition {
                selector: Selector::new(metric),
                function: Function::Value,
                aggregation: Aggregation::PerSeries,
                op: Comparison::Greater,
                threshold: 0.0,
            },
            Duration::ZERO,
        )
        .label("severity", severity)
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = AlertEngine::new(source.clone())
        .with_interval(Duration::from_secs(10))
        .with_rule(rule("PeersLow", "peers_low", "warning"))
        .with_rule(rule("StoreBroken", "store_broken", "critical"))
        .with_notifier(Arc::new(ChannelNotifier(tx)))
        .spawn();
    let checker = HealthChecker::new(settings(Duration::ZERO)).with_check(
        "alerts",
        CheckOptions::non_critical(),
        AlertStateCheck::new(handle.clone()),
    );
    let r = checker.report().await;
    assert_eq!(r.checks[0].status, HealthStatus::Healthy);
    assert_eq!(r.checks[0].message, "no alerts firing");

    // Notifications are sent after the engine published its state, so
    // receiving one means the check sees the same evaluation.
    source.set("peers_low", &[], 1.0);
    assert_eq!(rx.recv().await.unwrap()[0].status, AlertStatus::Firing);
    let r = checker.report().await;
    assert_eq!(r.checks[0].status, HealthStatus::Degraded);
    assert_eq!(r.checks[0].message, "1 alert(s) firing: PeersLow");
    assert_eq!(r.status, HealthStatus::Degraded);

    source.set("store_broken", &[], 1.0);
    rx.recv().await.unwrap();
    let r = checker.report().await;
    assert_eq!(r.checks[0].status, HealthStatus::Unhealthy);
    assert_eq!(
        r.checks[0].message,
        "2 alert(s) firing: PeersLow, StoreBroken"
    );
    // Registered non-critical: the node is degraded, not unhealthy.
    assert_eq!(r.status, HealthStatus::Degraded);

    source.set("peers_low", &[], 0.0);
    source.set("store_broken", &[], 0.0);
    let resolved = rx.recv().await.unwrap();
    assert_eq!(resolved.len(), 2);
    assert!(resolved.iter().all(|a| a.status == AlertStatus::Resolved));
    assert_eq!(
        checker.report().await.checks[0].status,
        HealthStatus::Healthy
    );
    handle.shutdown().await;

    // With alerting disabled the check is simply healthy.
    let disabled = AlertStateCheck::new(AlertEngineHandle::disabled());
    assert_eq!(disabled.check().await.status, HealthStatus::Healthy);
}

async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn http_endpoints_map_status_codes() {
    let store_ok = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = Arc::clone(&store_ok);
    let checker = Arc::new(
        HealthChecker::new(settings(Duration::ZERO))
            .with_check(
                "store",
                CheckOptions::critical(),
                sync_check(move || {
                    if flag.load(Ordering::SeqCst) {
                        CheckResult::healthy("read and write ok")
                    } else {
                        CheckResult::unhealthy("write failed: disk full")
                    }
                }),
            )
            .with_check(
                "peers",
                CheckOptions::critical(),
                sync_check(|| CheckResult::degraded("0 peers")),
            ),
    );
    let readiness = Readiness::node_default();
    let (base, server) = serve(router(Arc::clone(&checker), readiness.clone())).await;
    let client = reqwest::Client::new();

    let live = client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(
        live.json::<serde_json::Value>().await.unwrap()["status"],
        "alive"
    );

    // Degraded is still 200.
    let resp = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let report: HealthReport = resp.json().await.unwrap();
    assert_eq!(report.status, HealthStatus::Degraded);

    // Break the store: 503 with the reason.
    store_ok.store(false, Ordering::SeqCst);
    let resp = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let report: HealthReport = resp.json().await.unwrap();
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert_eq!(
        report
            .checks
            .iter()
            .find(|c| c.name == "store")
            .unwrap()
            .message,
        "write failed: disk full"
    );

    // Readiness: 503 until ready, 200 after, 503 when shutting down.
    let resp = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let ready: ReadinessReport = resp.json().await.unwrap();
    assert_eq!(ready.reasons.len(), 3);
    for c in [
        conditions::STORE,
        conditions::TRANSPORT,
        conditions::BOOTSTRAP,
    ] {
        readiness.set_ready(c);
    }
    let resp = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.json::<ReadinessReport>().await.unwrap().ready);
    readiness.begin_shutdown();
    let resp = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    server.abort();
}
