#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Prometheus exporter: installation, rendering, merging, documentation.

use std::{
    collections::HashMap,
    io::Write as _,
    process::{Command, Stdio},
};

use dawn_observe::{
    alerts::{MetricSource, RecorderSource},
    exposition,
    metrics::{self as m, METRICS, MetricKind, MetricOrigin},
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

fn type_lines(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for l in text.lines() {
        if let Some(rest) = l
            .strip_prefix("# TYPE ")
            .or_else(|| l.strip_prefix("# HELP "))
        {
            let kind = if l.starts_with("# TYPE") {
                "TYPE"
            } else {
                "HELP"
            };
            let name = rest.split(' ').next().unwrap();
            *counts.entry(format!("{kind} {name}")).or_default() += 1;
        }
    }
    counts
}

fn assert_no_duplicate_metadata(text: &str) {
    for (line, n) in type_lines(text) {
        assert_eq!(n, 1, "{line} appears {n} times in:\n{text}");
    }
}

/// Runs `promtool check metrics` when promtool is installed; returns whether
/// it ran.
fn promtool_check(text: &str) -> bool {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed; skipping `promtool check metrics`");
        return false;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- input ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Emits every recorder metric of the table once, with placeholder labels.
fn emit_every_documented_metric() {
    for d in METRICS
        .iter()
        .filter(|d| d.origin == MetricOrigin::Recorder)
    {
        let labels: Vec<metrics::Label> = d
            .labels
            .iter()
            .map(|l| metrics::Label::new(l.name, "test"))
            .collect();
        match d.kind {
            MetricKind::Counter => metrics::counter!(d.name, labels).increment(1),
            MetricKind::Gauge => metrics::gauge!(d.name, labels).set(1.0),
            MetricKind::Histogram => metrics::histogram!(d.name, labels).record(0.002),
        }
    }
}

#[test]
fn install_is_idempotent_and_renders_recorded_metrics() {
    let a = m::install().unwrap();
    let b = m::install().unwrap();
    assert!(m::installed().is_some());

    metrics::counter!("dawn_calls_total", "direction" => "inbound", "method" => "tools/call", "status" => "ok")
        .increment(3);
    metrics::histogram!("dawn_call_duration_seconds", "direction" => "inbound", "method" => "tools/call")
        .record(0.0042);
    metrics::histogram!("dawn_message_size_bytes", "direction" => "inbound", "kind" => "request")
        .record(3000.0);

    // Both handles see the same recorder.
    for text in [a.render(), b.render()] {
        assert!(
            text.contains(
                "dawn_calls_total{direction=\"inbound\",method=\"tools/call\",status=\"ok\"} 3"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE dawn_call_duration_seconds histogram"));
        assert!(text.contains(
            "dawn_call_duration_seconds_bucket{direction=\"inbound\",method=\"tools/call\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "dawn_call_duration_seconds_bucket{direction=\"inbound\",method=\"tools/call\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains("# TYPE dawn_message_size_bytes histogram"));
        assert!(text.contains(
            "dawn_message_size_bytes_bucket{direction=\"inbound\",kind=\"request\",le=\"4096\"} 1"
        ));
        assert!(text.contains("# HELP dawn_calls_total Calls handled or made"));
        assert!(text.contains("# TYPE dawn_uptime_seconds gauge"));
    }
}

#[test]
fn every_documented_metric_is_described_and_nothing_undocumented_is_exported() {
    let handle = m::install().unwrap();
    emit_every_documented_metric();
    m::set_build_info("0.1.0", "abc1234");
    let text = handle.render();
    for d in METRICS {
        if d.origin == MetricOrigin::Process && !cfg!(target_os = "linux") {
            continue;
        }
        assert!(
            text.contains(&format!("# HELP {} {}", d.name, d.help)),
            "{} has no help line in:\n{text}",
            d.name
        );
        assert!(
            text.contains(&format!("# TYPE {} {}", d.name, d.kind.as_str())),
            "{} is not a {}",
            d.name,
            d.kind.as_str()
        );
    }
    assert!(text.contains("dawn_build_info{version=\"0.1.0\",commit=\"abc1234\"} 1"));
    assert_eq!(m::documentation_problems(&text), Vec::<String>::new());

    // A metric missing from the table is reported (added as text, so the
    // process-wide recorder stays clean for the other tests).
    let extra = "# TYPE dawn_undocumented_things_total counter\ndawn_undocumented_things_total 1\n";
    let problems = m::documentation_problems(&handle.render_with(&[extra]));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("dawn_undocumented_things_total"));
}

#[cfg(target_os = "linux")]
#[test]
fn process_metrics_are_in_every_scrape() {
    let handle = m::install().unwrap();
    let text = handle.render();
    let samples = exposition::parse_samples(&text);
    let value = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .value
    };
    assert!(value("process_resident_memory_bytes") > 1_000_000.0);
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    assert!(value("process_start_time_seconds") > 1.6e9);
    assert!(value("process_cpu_seconds_total") >= 0.0);
    assert!(value("process_threads") >= 1.0);
}

fn libp2p_like_registry() -> Registry {
    let mut registry = Registry::with_prefix("libp2p");
    let conns = Family::<Vec<(String, String)>, Counter>::default();
    registry.register(
        "swarm_connections_incoming",
        "Number of incoming connections per \"address stack\"",
        conns.clone(),
    );
    conns
        .get_or_create(&vec![("protocols".into(), "/ip4/tcp".into())])
        .inc_by(4);
    let hist = Histogram::new([0.01, 0.1, 1.0]);
    registry.register(
        "swarm_connections_establishment_duration",
        "Time it took (locally) to establish connections",
        hist.clone(),
    );
    hist.observe(0.05);
    registry
}

#[test]
fn render_with_merges_openmetrics_sources_without_duplicate_metadata() {
    let handle = m::install().unwrap();
    metrics::counter!("dawn_connections_total", "direction" => "inbound", "status" => "established")
        .increment(2);
    let registry = libp2p_like_registry();
    let mut om = String::new();
    encode(&mut om, &registry).unwrap();
    assert!(om.contains("# EOF"), "prometheus_client writes OpenMetrics");

    // The same family from another producer, plus one new series of it.
    let overlapping = "# HELP dawn_connections_total Other help.\n# TYPE dawn_connections_total counter\n\
                       dawn_connections_total{direction=\"outbound\",status=\"failed\"} 7\n";
    let text = handle.render_with(&[&om, &om, overlapping]);
    assert_no_duplicate_metadata(&text);
    assert!(!text.contains("# EOF"));
    assert!(!text.contains("# UNIT"));
    assert!(text.contains("# TYPE libp2p_swarm_connections_incoming_total counter"));
    assert!(text.contains("libp2p_swarm_connections_incoming_total{protocols=\"/ip4/tcp\"} 4"));
    assert!(text.contains("# TYPE libp2p_swarm_connections_establishment_duration histogram"));
    assert!(text.contains("dawn_connections_total{direction=\"outbound\",status=\"failed\"} 7"));
    assert!(text.contains("# HELP dawn_connections_total Peer-to-peer connection attempts"));
    // HELP escaping is valid for the 0.0.4 format (no \" in HELP).
    assert!(text.contains("per \"address stack\""), "{text}");

    // The same through a registered source.
    handle.add_source("libp2p", move || {
        let mut s = String::new();
        let _ = encode(&mut s, &registry);
        s
    });
    let text = handle.render();
    assert_no_duplicate_metadata(&text);
    assert!(text.contains("libp2p_swarm_connections_incoming_total{protocols=\"/ip4/tcp\"} 4"));
    assert!(handle.remove_source("libp2p"));
    assert!(!handle.render().contains("libp2p_"));
}

#[test]
fn promtool_accepts_a_full_scrape() {
    let handle = m::install().unwrap();
    emit_every_documented_metric();
    let mut om = String::new();
    encode(&mut om, &libp2p_like_registry()).unwrap();
    let text = handle.render_with(&[&om]);
    assert_no_duplicate_metadata(&text);
    promtool_check(&text);
}

#[test]
fn recorder_source_reads_current_values() {
    let handle = m::install().unwrap();
    metrics::gauge!("dawn_connected_peers", "transport" => "quic").set(3.0);
    metrics::counter!("dawn_errors_total", "kind" => "internal", "component" => "store")
        .increment(5);
    let snap = RecorderSource::new(handle).snapshot();
    let peers: f64 = snap
        .series("dawn_connected_peers")
        .iter()
        .filter(|(l, _)| l.get("transport").map(String::as_str) == Some("quic"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(peers, 3.0);
    let errors = snap
        .series("dawn_errors_total")
        .iter()
        .find(|(l, _)| l.get("component").map(String::as_str) == Some("store"))
        .map(|(_, v)| *v);
    assert!(errors >= Some(5.0));
}

#[tokio::test]
async fn metrics_endpoint_serves_prometheus_text() {
    let handle = m::install().unwrap();
    metrics::counter!("dawn_api_auth_failures_total").increment(1);
    let app = handle.router("/metrics");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = resp.text().await.unwrap();
    assert!(body.contains("# TYPE dawn_api_auth_failures_total counter"));
    server.abort();
}

#[test]
fn metrics_markdown_lists_every_metric() {
    let md = m::markdown();
    for d in METRICS {
        assert!(md.contains(&format!("| `{}` | {} |", d.name, d.kind.as_str())));
    }
}
