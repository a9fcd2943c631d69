#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The alert engine and its notifiers, against real HTTP receivers.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use dawn_observe::{
    alerts::{
        ActiveAlert, AlertEngine, AlertState, InMemorySource, builtin_rules, names,
        prometheus_rules,
    },
    config::{AlertsConfig, ForRule},
    notify::{
        AlertNotification, AlertStatus, AlertmanagerNotifier, LogNotifier, Notifier, NotifyError,
        SIGNATURE_HEADER, WebhookNotifier, rfc3339, verify_signature,
    },
};
use serde_json::Value;
use tokio::{
    sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel},
    time::{Instant, advance},
};
use tracing_subscriber::{Layer, layer::SubscriberExt as _};

// ------------------------------------------------------------------ helpers

/// Forwards every batch to a channel.
struct ChannelNotifier(UnboundedSender<Vec<AlertNotification>>);

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

/// Only the rules named, everything else off.
fn config_with(rules: &[&str]) -> AlertsConfig {
    let mut c = AlertsConfig::default();
    c.no_peers.enabled = rules.contains(&names::NO_PEERS);
    c.error_rate.enabled = rules.contains(&names::HIGH_ERROR_RATE);
    c.circuit_breaker_open.enabled = rules.contains(&names::CIRCUIT_BREAKER_OPEN);
    c.disk_space_low.enabled = rules.contains(&names::DISK_SPACE_LOW);
    c.mcp_server_down.enabled = rules.contains(&names::MCP_SERVER_DOWN);
    c.log.enabled = false;
    c
}

fn engine(config: &AlertsConfig, source: &InMemorySource) -> AlertEngine {
    AlertEngine::from_config(config, source.clone()).unwrap()
}

fn states(active: &[ActiveAlert]) -> Vec<(String, AlertState)> {
    active.iter().map(|a| (a.describe(), a.state)).collect()
}

/// A request a receiver got.
#[derive(Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Receiver {
    /// Status codes to answer with, in order; 200 once exhausted.
    script: Arc<Mutex<VecDeque<StatusCode>>>,
    tx: UnboundedSender<Received>,
}

async fn receive(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = r
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(StatusCode::OK);
    let _ = r.tx.send(Received {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    status
}

/// An HTTP receiver on 127.0.0.1 answering POSTs to `path`.
async fn receiver(
    path: &str,
    script: &[StatusCode],
) -> (
    String,
    UnboundedReceiver<Received>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = unbounded_channel();
    let state = Receiver {
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
        tx,
    };
    let app = Router::new().route(path, post(receive)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), rx, task)
}

/// Waits for the next item, failing the test instead of hanging forever.
async fn next<T>(rx: &mut UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("timed out waiting")
        .expect("channel closed")
}

fn sample_alert(status: AlertStatus) -> AlertNotification {
    let mut labels = BTreeMap::new();
    labels.insert("alertname".to_owned(), "DawnNoPeers".to_owned());
    labels.insert("severity".to_owned(), "warning".to_owned());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "summary".to_owned(),
        "The node has no connected peers".to_owned(),
    );
    let starts_at = SystemTime::now() - Duration::from_secs(60);
    AlertNotification {
        status,
        labels,
        annotations,
        value: 0.0,
        starts_at,
        ends_at: (status == AlertStatus::Resolved).then(SystemTime::now),
        generator_url: Some("http://127.0.0.1:9090/health".into()),
    }
}

// ------------------------------------------------------------------ states

#[tokio::test(start_paused = true)]
async fn no_peers_goes_pending_then_firing_after_for_then_resolves() {
    let source = InMemorySource::new();
    let mut config = config_with(&[names::NO_PEERS]);
    config.no_peers = ForRule::new(Duration::from_secs(120));
    let mut e = engine(&config, &source).with_external_label("node_id", "12D3KooWTest");
    let t0 = Instant::now();

    // The gauge is absent: counts as 0 peers. Pending, no notification.
    let ev = e.evaluate();
    assert!(ev.changes.is_empty());
    assert_eq!(
        states(&e.active()),
        [("DawnNoPeers".into(), AlertState::Pending)]
    );

    source.set("dawn_connected_peers", &[("transport", "tcp")], 0.0);
    advance(Duration::from_secs(119)).await;
    assert!(e.evaluate().changes.is_empty(), "not yet: for is 2m");
    assert_eq!(e.active()[0].state, AlertState::Pending);

    advance(Duration::from_secs(1)).await;
    let ev = e.evaluate();
    assert_eq!(ev.changes.len(), 1);
    let firing = &ev.changes[0];
    assert_eq!(firing.status, AlertStatus::Firing);
    assert_eq!(firing.name(), "DawnNoPeers");
    assert_eq!(firing.labels["severity"], "warning");
    assert_eq!(firing.labels["node_id"], "12D3KooWTest");
    assert_eq!(
        firing.annotations["summary"],
        "The node has no connected peers"
    );
    assert!(firing.ends_at.is_none());
    assert_eq!(Instant::now() - t0, Duration::from_secs(120));
    assert_eq!(e.active()[0].state, AlertState::Firing);

    // Still firing: no new change.
    advance(Duration::from_secs(15)).await;
    assert!(e.evaluate().changes.is_empty());

    // A peer connects: resolved, with an end time after the start.
    source.set("dawn_connected_peers", &[("transport", "quic")], 1.0);
    advance(Duration::from_secs(15)).await;
    let ev = e.evaluate();
    assert_eq!(ev.changes.len(), 1);
    let resolved = &ev.changes[0];
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(resolved.starts_at, firing.starts_at);
    assert_eq!(
        resolved
            .ends_at
            .unwrap()
            .duration_since(resolved.starts_at)
            .unwrap(),
        Duration::from_secs(30)
    );
    assert!(e.active().is_empty());

    // A condition that clears before `for` never notifies.
    source.set("dawn_connected_peers", &[("transport", "quic")], 0.0);
    advance(Duration::from_secs(15)).await;
    assert!(e.evaluate().changes.is_empty());
    source.set("dawn_connected_peers", &[("transport", "quic")], 2.0);
    advance(Duration::from_secs(15)).await;
    assert!(e.evaluate().changes.is_empty());
    assert!(e.active().is_empty());
}

#[tokio::test(start_paused = true)]
async fn error_rate_fires_on_a_rate_and_resolves_when_errors_stop() {
    let source = InMemorySource::new();
    let mut config = config_with(&[names::HIGH_ERROR_RATE]);
    config.error_rate.threshold = 0.1;
    config.error_rate.window = Duration::from_secs(300);
    config.error_rate.for_ = Duration::from_secs(60);
    let mut e = engine(&config, &source);
    let step = Duration::from_secs(15);
    let internal = [("kind", "internal"), ("component", "core")];

    // A large total from before the engine started is not a rate.
    source.set("dawn_errors_total", &internal, 10_000.0);
    assert!(e.evaluate().changes.is_empty());
    advance(step).await;
    assert!(e.evaluate().changes.is_empty());
    assert!(e.active().is_empty(), "a constant total has rate 0");

    // Caller errors are excluded by default, however many.
    for _ in 0..8 {
        source.increment(
            "dawn_errors_total",
            &[("kind", "invalid_params"), ("component", "core")],
            100.0,
        );
        advance(step).await;
        assert!(e.evaluate().changes.is_empty());
    }
    assert!(e.active().is_empty());

    // 3 node errors per 15 s = 0.2/s > 0.1/s: pending, then firing after 1m.
    // The first is a new series (unknown kind): its burst counts from 0.
    let store = [("kind", "store_unavailable"), ("component", "store")];
    let mut fired_at = None;
    let mut last_error_at = Instant::now();
    for i in 0..10 {
        source.increment("dawn_errors_total", &store, 3.0);
        advance(step).await;
        last_error_at = Instant::now();
        let ev = e.evaluate();
        if i == 0 {
            assert_eq!(e.active()[0].state, AlertState::Pending);
            assert!(
                (e.active()[0].value - 0.2).abs() < 1e-9,
                "{}",
                e.active()[0].value
            );
        }
        if let Some(n) = ev.changes.first() {
            assert_eq!(n.status, AlertStatus::Firing);
            assert_eq!(n.name(), "DawnHighErrorRate");
            assert!(
                n.annotations["description"].starts_with("0.2 errors per second over the last 5m")
            );
            fired_at.get_or_insert(i);
        }
    }
    assert_eq!(
        fired_at,
        Some(4),
        "fires one `for` (4 steps of 15 s) after turning pending"
    );

    // Errors stop. The total stays high, but the rate falls to 0 once the
    // last increase leaves the 5m window.
    let mut resolved_after = None;
    for _ in 0..30 {
        advance(step).await;
        let ev = e.evaluate();
        if let Some(n) = ev.changes.first() {
            assert_eq!(n.status, AlertStatus::Resolved);
            resolved_after = Some(Instant::now() - last_error_at);
            break;
        }
    }
    // A rate over 5m falls below 0.2/2 once about half the window is
    // error-free; at the latest when the whole window is.
    let resolved_after = resolved_after.expect("resolved within 30 steps");
    assert!(
        resolved_after > Duration::from_secs(120) && resolved_after <= Duration::from_secs(300),
        "{resolved_after:?}"
    );
    assert!(e.active().is_empty());

    // A counter reset (node restart of the producer) is not a burst.
    source.set("dawn_errors_total", &store, 0.0);
    advance(step).await;
    assert!(e.evaluate().changes.is_empty());
    assert!(e.active().is_empty());
}

#[tokio::test(start_paused = true)]
async fn per_series_rules_carry_their_labels() {
    let source = InMemorySource::new();
    let config = config_with(&[
        names::MCP_SERVER_DOWN,
        names::CIRCUIT_BREAKER_OPEN,
        names::DISK_SPACE_LOW,
    ]);
    let mut e = engine(&config, &source);
    source.set("dawn_mcp_server_up", &[("server", "files")], 0.0);
    source.set("dawn_mcp_server_up", &[("server", "search")], 1.0);
    source.set("dawn_circuit_breaker_state", &[("state", "open")], 2.0);
    source.set("dawn_circuit_breaker_state", &[("state", "closed")], 5.0);
    source.set("dawn_disk_available_bytes", &[], 10.0 * 1024.0 * 1024.0);
    e.evaluate();
    let mut active = states(&e.active());
    active.sort();
    assert_eq!(
        active,
        [
            ("DawnCircuitBreakerOpen".into(), AlertState::Pending),
            ("DawnDiskSpaceLow".into(), AlertState::Pending),
            (
                "DawnMcpServerDown{server=\"files\"}".into(),
                AlertState::Pending
            ),
        ]
    );
    advance(Duration::from_secs(300)).await;
    let ev = e.evaluate();
    let mut fired: Vec<&AlertNotification> = ev.changes.iter().collect();
    fired.sort_by_key(|n| n.name().to_owned());
    assert_eq!(fired.len(), 3);
    assert_eq!(
        fired[0].annotations["description"].split(' ').next(),
        Some("2")
    );
    assert_eq!(fired[1].labels["severity"], "critical");
    assert_eq!(fired[1].value, 10_485_760.0);
    assert_eq!(fired[2].labels["server"], "files");
    assert_eq!(
        fired[2].annotations["summary"],
        "Mounted MCP server files is down"
    );

    // Only the recovered series resolves.
    source.set("dawn_mcp_server_up", &[("server", "files")], 1.0);
    source.set("dawn_mcp_server_up", &[("server", "search")], 0.0);
    advance(Duration::from_secs(15)).await;
    let ev = e.evaluate();
    assert_eq!(ev.changes.len(), 1);
    assert_eq!(ev.changes[0].status, AlertStatus::Resolved);
    assert_eq!(ev.changes[0].labels["server"], "files");
    assert!(states(&e.active()).contains(&(
        "DawnMcpServerDown{server=\"search\"}".into(),
        AlertState::Pending
    )));
}

#[tokio::test(start_paused = true)]
async fn firing_alerts_are_resent_as_reminders() {
    let source = InMemorySource::new();
    let mut config = config_with(&[names::CIRCUIT_BREAKER_OPEN]);
    config.circuit_breaker_open.for_ = Duration::ZERO;
    let mut e = engine(&config, &source).with_resend_interval(Duration::from_secs(60));
    source.set("dawn_circuit_breaker_state", &[("state", "open")], 1.0);
    let ev = e.evaluate();
    assert_eq!(ev.changes.len(), 1, "for 0: fires at once");
    assert!(ev.reminders.is_empty());
    let mut reminders = 0;
    for _ in 0..8 {
        advance(Duration::from_secs(15)).await;
        let ev = e.evaluate();
        assert!(ev.changes.is_empty());
        reminders += ev.reminders.len();
    }
    assert_eq!(reminders, 2, "every 60 s over 120 s");
}

#[test]
fn builtin_rules_mirror_as_a_prometheus_rule_file() {
    let rules = builtin_rules(&AlertsConfig::default());
    let yaml = prometheus_rules("dawn", &rules, &["instance"]);
    for r in &rules {
        assert!(yaml.contains(&format!("- alert: {}", r.name)));
    }
    assert!(yaml.contains("sum by (instance) (rate(dawn_errors_total{kind!~"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dawn.rules.yml");
    std::fs::write(&file, &yaml).unwrap();
    match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules:\n{}{}\n{yaml}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("promtool not installed; skipping `promtool check rules`"),
    }
}

// ------------------------------------------------------------------ notifiers

#[tokio::test]
async fn webhook_posts_signed_json_and_retries_after_a_500() {
    let (base, mut rx, server) = receiver("/hook", &[StatusCode::INTERNAL_SERVER_ERROR]).await;
    let hook = WebhookNotifier::new(
        &format!("{base}/hook"),
        Some("s3cret"),
        Duration::from_secs(5),
        3,
    )
    .unwrap()
    .with_backoff(Duration::from_millis(10), Duration::from_millis(50));
    hook.notify(&[sample_alert(AlertStatus::Firing)])
        .await
        .unwrap();

    let first = next(&mut rx).await;
    let second = next(&mut rx).await;
    assert_eq!(first.body, second.body, "the retry sends the same body");
    for r in [&first, &second] {
        assert_eq!(r.path, "/hook");
        assert_eq!(r.headers["content-type"], "application/json");
        let sig = r.headers[SIGNATURE_HEADER].to_str().unwrap();
        assert!(sig.starts_with("sha256="));
        assert!(verify_signature(b"s3cret", &r.body, sig));
        assert!(!verify_signature(b"wrong", &r.body, sig));
    }
    let body = second.json();
    assert_eq!(body["version"], "1");
    assert_eq!(body["status"], "firing");
    let alert = &body["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "DawnNoPeers");
    assert_eq!(
        alert["annotations"]["summary"],
        "The node has no connected peers"
    );
    assert!(alert["endsAt"].is_null());
    assert!(alert["startsAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(alert["generatorURL"], "http://127.0.0.1:9090/health");
    assert!(rx.try_recv().is_err(), "no third attempt after success");
    server.abort();
}

#[tokio::test]
async fn webhook_gives_up_on_client_errors_and_after_max_retries() {
    let (base, mut rx, server) = receiver("/hook", &[StatusCode::BAD_REQUEST]).await;
    let hook = WebhookNotifier::new(&format!("{base}/hook"), None, Duration::from_secs(5), 3)
        .unwrap()
        .with_backoff(Duration::from_millis(5), Duration::from_millis(5));
    let err = hook
        .notify(&[sample_alert(AlertStatus::Firing)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, NotifyError::Status { status: 400, .. }),
        "{err}"
    );
    let only = next(&mut rx).await;
    assert!(
        only.headers.get(SIGNATURE_HEADER).is_none(),
        "unsigned without a secret"
    );
    assert!(rx.try_recv().is_err(), "a 400 is not retried");

    let script = [StatusCode::SERVICE_UNAVAILABLE; 3];
    let (base, mut rx, server2) = receiver("/hook", &script).await;
    let hook = WebhookNotifier::new(&format!("{base}/hook"), None, Duration::from_secs(5), 2)
        .unwrap()
        .with_backoff(Duration::from_millis(5), Duration::from_millis(5));
    let err = hook
        .notify(&[sample_alert(AlertStatus::Firing)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, NotifyError::Status { status: 503, .. }),
        "{err}"
    );
    for _ in 0..3 {
        next(&mut rx).await;
    }
    assert!(rx.try_recv().is_err(), "1 attempt + 2 retries");
    server.abort();
    server2.abort();
}

#[tokio::test]
async fn alertmanager_payload_matches_the_v2_api() {
    let (base, mut rx, server) = receiver("/api/v2/alerts", &[]).await;
    let am = AlertmanagerNotifier::new(
        &format!("{base}/"),
        Duration::from_secs(5),
        0,
        Duration::from_secs(240),
    )
    .unwrap();
    assert!(am.wants_reminders());
    let before = SystemTime::now();
    am.notify(&[
        sample_alert(AlertStatus::Firing),
        sample_alert(AlertStatus::Resolved),
    ])
    .await
    .unwrap();
    let r = next(&mut rx).await;
    assert_eq!(r.path, "/api/v2/alerts");
    let body = r.json();
    let alerts = body.as_array().expect("a JSON array of postable alerts");
    assert_eq!(alerts.len(), 2);
    for a in alerts {
        let mut keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "annotations",
                "endsAt",
                "generatorURL",
                "labels",
                "startsAt"
            ]
        );
        assert_eq!(a["labels"]["alertname"], "DawnNoPeers");
        assert!(
            a["labels"]
                .as_object()
                .unwrap()
                .values()
                .all(Value::is_string)
        );
    }
    let now = rfc3339(before);
    // RFC 3339 strings of equal format compare in time order.
    let firing_end = alerts[0]["endsAt"].as_str().unwrap();
    assert!(
        firing_end > now.as_str(),
        "firing: endsAt in the future ({firing_end} vs {now})"
    );
    let resolved_end = alerts[1]["endsAt"].as_str().unwrap();
    assert!(resolved_end >= now.as_str() && resolved_end < firing_end);
    assert!(alerts[1]["startsAt"].as_str().unwrap() < resolved_end);
    server.abort();
}

/// Events seen by [`Captured`]: level and fields.
type Events = Arc<Mutex<Vec<(tracing::Level, BTreeMap<String, String>)>>>;

/// A tracing layer recording events, optionally announcing each message.
#[derive(Default, Clone)]
struct Captured(Events, Option<UnboundedSender<String>>);

struct Visitor<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Visitor(&mut fields));
        if let Some(tx) = &self.1 {
            let _ = tx.send(fields.get("message").cloned().unwrap_or_default());
        }
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields));
    }
}

#[tokio::test]
async fn log_notifier_logs_firing_at_warn_and_resolved_at_info() {
    let captured = Captured::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
    LogNotifier
        .notify(&[
            sample_alert(AlertStatus::Firing),
            sample_alert(AlertStatus::Resolved),
        ])
        .await
        .unwrap();
    let events = captured.0.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].0, tracing::Level::WARN);
    assert_eq!(events[0].1["message"], "alert firing");
    assert_eq!(events[0].1["alertname"], "DawnNoPeers");
    assert_eq!(events[0].1["labels"], "severity=\"warning\"");
    assert_eq!(events[0].1["summary"], "The node has no connected peers");
    assert_eq!(events[1].0, tracing::Level::INFO);
    assert_eq!(events[1].1["message"], "alert resolved");
}

// ------------------------------------------------------------------ end to end

#[tokio::test]
async fn engine_sends_firing_then_resolved_to_webhook_and_alertmanager() {
    let (hook_base, mut hooks, s1) = receiver("/hook", &[]).await;
    let (am_base, mut ams, s2) = receiver("/api/v2/alerts", &[]).await;
    let mut config = config_with(&[names::MCP_SERVER_DOWN]);
    config.evaluation_interval = Duration::from_millis(20);
    config.resend_interval = Duration::from_secs(3600);
    config.mcp_server_down.for_ = Duration::ZERO;
    config.generator_url = Some("http://127.0.0.1:9090/health".into());
    config.webhooks.push(dawn_observe::config::WebhookConfig {
        secret: Some("k".into()),
        ..dawn_observe::config::WebhookConfig::new(format!("{hook_base}/hook"))
    });
    config
        .alertmanagers
        .push(dawn_observe::config::AlertmanagerConfig::new(am_base));
    let source = InMemorySource::new();
    source.set("dawn_mcp_server_up", &[("server", "files")], 1.0);
    let handle = engine(&config, &source).spawn();

    source.set("dawn_mcp_server_up", &[("server", "files")], 0.0);
    let firing = next(&mut hooks).await;
    let sig = firing.headers[SIGNATURE_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(verify_signature(b"k", &firing.body, &sig));
    let body = firing.json();
    assert_eq!(body["status"], "firing");
    assert_eq!(
        body["alerts"][0]["labels"]["alertname"],
        "DawnMcpServerDown"
    );
    assert_eq!(body["alerts"][0]["labels"]["server"], "files");
    let am_firing = next(&mut ams).await.json();
    assert_eq!(am_firing[0]["labels"]["server"], "files");
    assert!(am_firing[0]["endsAt"].as_str().unwrap() > rfc3339(SystemTime::now()).as_str());
    assert_eq!(handle.firing().len(), 1);

    source.set("dawn_mcp_server_up", &[("server", "files")], 1.0);
    let resolved = next(&mut hooks).await.json();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert!(resolved["alerts"][0]["endsAt"].is_string());
    assert_eq!(
        resolved["alerts"][0]["startsAt"], body["alerts"][0]["startsAt"],
        "same alert"
    );
    let am_resolved = next(&mut ams).await.json();
    assert!(am_resolved[0]["endsAt"].as_str().unwrap() <= rfc3339(SystemTime::now()).as_str());
    assert!(handle.firing().is_empty());
    handle.shutdown().await;
    s1.abort();
    s2.abort();
}

#[tokio::test]
async fn failing_and_hanging_receivers_never_block_evaluation() {
    let metrics = dawn_observe::metrics::install().unwrap();
    // Refuses connections.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    // Accepts connections and never answers.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_url = format!("http://{}/hook", hanging.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = hanging.accept().await {
            held.push(sock);
        }
    });

    let (tx, mut rx) = unbounded_channel();
    let (events_tx, mut events) = unbounded_channel();
    let captured = Captured(Arc::default(), Some(events_tx));
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(captured));

    let source = InMemorySource::new();
    let mut config = config_with(&[names::CIRCUIT_BREAKER_OPEN]);
    config.evaluation_interval = Duration::from_millis(20);
    config.circuit_breaker_open.for_ = Duration::ZERO;
    let handle = engine(&config, &source)
        .with_notifier(Arc::new(
            WebhookNotifier::new(&hanging_url, None, Duration::from_secs(600), 0).unwrap(),
        ))
        .with_notifier(Arc::new(
            WebhookNotifier::new(&refused_url, None, Duration::from_secs(5), 0).unwrap(),
        ))
        .with_notifier(Arc::new(ChannelNotifier(tx)))
        .spawn();

    source.set("dawn_circuit_breaker_state", &[("state", "open")], 1.0);
    assert_eq!(next(&mut rx).await[0].status, AlertStatus::Firing);
    source.set("dawn_circuit_breaker_state", &[("state", "open")], 0.0);
    assert_eq!(next(&mut rx).await[0].status, AlertStatus::Resolved);

    // The refused webhook's failure is logged, then counted.
    loop {
        if next(&mut events).await == "alert notification failed" {
            break;
        }
    }
    let text = metrics.render();
    assert!(
        text.lines().any(|l| l
            .starts_with("dawn_alert_notifications_total{notifier=\"webhook\",status=\"failed\"}")),
        "{text}"
    );
    // (Its value is shared with the other tests of this process.)
    assert!(text.contains("dawn_alerts_firing{alertname=\"DawnCircuitBreakerOpen\"}"));
    handle.shutdown().await;
    holder.abort();
}
