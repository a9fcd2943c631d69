//! What observability costs on the remote call path: remote `echo` between
//! two nodes over TCP on 127.0.0.1 with metrics recorded (the Prometheus
//! recorder installed, `observability.metrics.enabled = true`, the default)
//! against metrics recording disabled (`enabled = false`: no recorder, every
//! `metrics::` call is a no-op). Both variants log through the real
//! subscriber at INFO (to a discarded stderr), keep every resilience
//! mechanism on (with a rate limit far above the load), and run the alert
//! engine only when metrics are on, as a node would.
//!
//! A metrics recorder is process-wide, so each variant runs in a child
//! process of this bench (re-executed with `--variant with|without`); the
//! parent alternates them over rounds in the same run and compares medians.
//!
//! Goals: throughput with 64 calls in flight at most 3% lower with metrics
//! (`metrics_overhead_throughput`), and process CPU time per call at most
//! 3% higher (`metrics_overhead_cpu_per_call`; on a shared machine the
//! steadier of the two); the one-at-a-time p50 latency is reported too.
//!
//! Run: `cargo bench -p dawn-core --bench observe_overhead` (add `--
//! --quick` for a short smoke run). Knobs: `--rounds N`, `--secs S`,
//! `--inflight N`, `--calls N` (sequential calls per child). Results go to
//! `<target>/bench-results/observe_overhead.json`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use dawn_core::{AgentAddress, DawnConfig, Node, NodeBuilder};
use serde_json::{Value, json};

const GOAL_MAX_OVERHEAD: f64 = 0.03;

#[derive(Debug, Clone)]
struct Settings {
    quick: bool,
    rounds: usize,
    secs: f64,
    inflight: usize,
    calls: usize,
    variant: Option<String>,
}

impl Settings {
    fn parse() -> Settings {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let quick = args.iter().any(|a| a == "--quick")
            || std::env::var("DAWN_BENCH_QUICK").is_ok_and(|v| v == "1");
        Settings {
            quick,
            rounds: value("--rounds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { 1 } else { 5 }),
            secs: value("--secs")
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { 1.0 } else { 5.0 }),
            inflight: value("--inflight")
                .and_then(|v| v.parse().ok())
                .unwrap_or(64),
            calls: value("--calls")
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { 200 } else { 2000 }),
            variant: value("--variant"),
        }
    }
}

// ---------------------------------------------------------------- child

async fn start_node(dir: PathBuf, metrics: bool) -> Node {
    let mut config = DawnConfig::ephemeral(dir);
    config.api.enabled = false;
    config.observability.metrics.enabled = metrics;
    config.observability.alerts.enabled = metrics;
    // Every resilience mechanism stays on, with a rate limit far above the
    // load (the default quota for a peer of unknown trust, 100 calls a
    // minute, would refuse almost every call), as in remote_echo.
    config.resilience.rate_limit.max_requests = 1_000_000;
    config.resilience.rate_limit.time_window = Duration::from_secs(1).into();
    NodeBuilder::new(config).start().await.unwrap()
}

async fn echo(node: &Node, address: &AgentAddress, message: &str) {
    let result = node
        .call_tool(address, "echo", json!({ "message": message }))
        .await
        .unwrap();
    assert_eq!(
        result
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.as_str()),
        Some(message)
    );
}

/// Measures one variant in this process; prints one JSON line.
async fn child(settings: &Settings, metrics: bool) {
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(dir.path().join("a"), metrics).await;
    let b = start_node(dir.path().join("b"), metrics).await;
    b.dial(a.dial_addrs()[0].clone()).await.unwrap();
    let address: AgentAddress = format!("{}/system", a.peer_id()).parse().unwrap();
    let message = "x".repeat(256);

    // Warm up connections, caches and the allocator.
    for _ in 0..200 {
        echo(&b, &address, &message).await;
    }

    // One call at a time.
    let mut latencies = Vec::with_capacity(settings.calls);
    for _ in 0..settings.calls {
        let t = Instant::now();
        echo(&b, &address, &message).await;
        latencies.push(t.elapsed().as_nanos() as u64);
    }
    latencies.sort_unstable();
    let p50_us = latencies[latencies.len() / 2] as f64 / 1000.0;

    // Many in flight for a fixed window.
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = dawn_observe::process::read_stats().map_or(0.0, |s| s.cpu_seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..settings.inflight {
        let (b, address, message) = (b.clone(), address.clone(), message.clone());
        let (done, stop) = (done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                echo(&b, &address, &message).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(settings.secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = dawn_observe::process::read_stats().map_or(0.0, |s| s.cpu_seconds) - cpu_before;
    let calls = done.load(Ordering::Relaxed) as f64;
    let calls_per_sec = calls / elapsed;
    // CPU time of the whole process (both nodes) per call: far less
    // sensitive than throughput to other load on the machine.
    let cpu_us_per_call = cpu * 1e6 / calls;

    // The recorder really recorded (or really did not).
    match b.metrics() {
        Some(handle) => assert!(handle.render().contains("dawn_calls_total{")),
        None => assert!(!metrics),
    }
    println!(
        "{}",
        json!({ "calls_per_sec": calls_per_sec, "p50_us": p50_us, "cpu_us_per_call": cpu_us_per_call })
    );
    b.shutdown().await;
    a.shutdown().await;
}

// ---------------------------------------------------------------- parent

/// One child's figures.
#[derive(Debug, Clone, Copy)]
struct Measured {
    calls_per_sec: f64,
    p50_us: f64,
    cpu_us_per_call: f64,
}

fn run_child(settings: &Settings, variant: &str) -> Measured {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--variant",
            variant,
            "--secs",
            &settings.secs.to_string(),
            "--inflight",
            &settings.inflight.to_string(),
            "--calls",
            &settings.calls.to_string(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the {variant} child failed: {}",
        out.status
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(line.trim().lines().last().unwrap()).unwrap();
    Measured {
        calls_per_sec: v["calls_per_sec"].as_f64().unwrap(),
        p50_us: v["p50_us"].as_f64().unwrap(),
        cpu_us_per_call: v["cpu_us_per_call"].as_f64().unwrap(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn output_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("bench-results").join("observe_overhead.json")
}

fn measured_json(m: &Measured) -> Value {
    json!({ "calls_per_sec": m.calls_per_sec, "p50_us": m.p50_us, "cpu_us_per_call": m.cpu_us_per_call })
}

fn parent(settings: &Settings) {
    println!(
        "observe_overhead: remote echo, 256 B, {} in flight for {}s and {} one-at-a-time calls per child, {} round(s)",
        settings.inflight, settings.secs, settings.calls, settings.rounds
    );
    let mut rounds: Vec<(Measured, Measured)> = Vec::new();
    for round in 0..settings.rounds {
        // Alternate the order so drift does not favour one variant.
        let order = if round % 2 == 0 {
            ["without", "with"]
        } else {
            ["with", "without"]
        };
        let mut off = None;
        let mut on = None;
        for variant in order {
            let m = run_child(settings, variant);
            if variant == "with" {
                on = Some(m);
            } else {
                off = Some(m);
            }
        }
        let (off, on) = (off.unwrap(), on.unwrap());
        println!(
            "round {}: metrics off {:.0} calls/s, p50 {:.0} us, cpu {:.1} us/call | metrics on {:.0} calls/s, p50 {:.0} us, cpu {:.1} us/call",
            round + 1,
            off.calls_per_sec,
            off.p50_us,
            off.cpu_us_per_call,
            on.calls_per_sec,
            on.p50_us,
            on.cpu_us_per_call
        );
        rounds.push((off, on));
    }
    let throughput: Vec<f64> = rounds
        .iter()
        .map(|(off, on)| 1.0 - on.calls_per_sec / off.calls_per_sec)
        .collect();
    let cpu: Vec<f64> = rounds
        .iter()
        .map(|(off, on)| on.cpu_us_per_call / off.cpu_us_per_call - 1.0)
        .collect();
    let overhead = median(throughput.clone());
    let cpu_overhead = median(cpu.clone());
    let p50_off = median(rounds.iter().map(|r| r.0.p50_us).collect());
    let p50_on = median(rounds.iter().map(|r| r.1.p50_us).collect());
    let pass = overhead <= GOAL_MAX_OVERHEAD;
    let cpu_pass = cpu_overhead <= GOAL_MAX_OVERHEAD;
    let verdict = |p: bool| if p { "PASS" } else { "MISS" };
    println!(
        "goal: throughput lost to metrics + INFO tracing <= {:.0}%: {:.1}% (median of rounds)  {}",
        GOAL_MAX_OVERHEAD * 100.0,
        overhead * 100.0,
        verdict(pass)
    );
    println!(
        "goal: extra CPU time per call <= {:.0}%: {:.1}% (median of rounds)  {}",
        GOAL_MAX_OVERHEAD * 100.0,
        cpu_overhead * 100.0,
        verdict(cpu_pass)
    );
    println!("p50 latency one at a time: {p50_off:.0} us without metrics, {p50_on:.0} us with");
    if settings.quick {
        println!("note: --quick run; the goals are defined for the full run");
    }
    let report = json!({
        "settings": { "rounds": settings.rounds, "secs": settings.secs, "inflight": settings.inflight, "calls": settings.calls, "quick": settings.quick },
        "rounds": rounds.iter().map(|(off, on)| json!({
            "with_metrics": measured_json(on),
            "without_metrics": measured_json(off),
        })).collect::<Vec<_>>(),
        "summary": {
            "goals": [
                {
                    "name": "metrics_overhead_throughput",
                    "description": format!("calls/s with {} in flight: 1 - with/without metrics <= {GOAL_MAX_OVERHEAD}", settings.inflight),
                    "target_max": GOAL_MAX_OVERHEAD, "value": overhead, "per_round": throughput, "pass": pass,
                },
                {
                    "name": "metrics_overhead_cpu_per_call",
                    "description": format!("process CPU time per call with {} in flight: with/without metrics - 1 <= {GOAL_MAX_OVERHEAD}", settings.inflight),
                    "target_max": GOAL_MAX_OVERHEAD, "value": cpu_overhead, "per_round": cpu, "pass": cpu_pass,
                },
            ],
            "p50_us_without_metrics": p50_off,
            "p50_us_with_metrics": p50_on,
        },
    });
    let path = output_path();
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("results: {}", path.display());
}

fn main() {
    let settings = Settings::parse();
    match settings.variant.as_deref() {
        Some(variant @ ("with" | "without")) => {
            let _ = dawn_observe::logging::init(&dawn_observe::logging::LogSettings {
                level: "info".into(),
                format: dawn_observe::logging::LogFormat::Text,
                file: None,
            });
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(child(&settings, variant == "with"));
        }
        Some(other) => panic!("unknown --variant {other}"),
        None => parent(&settings),
    }
}
