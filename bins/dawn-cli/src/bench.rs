//! `dawn-cli bench`: N workers call one tool through the node's
//! `/api/v1/call` for a fixed time; the report gives throughput and the
//! latency distribution of the successful calls.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use crate::{
    api_client::{ApiClient, ApiError},
    cli::BenchArgs,
    output,
};

/// How long one call may take before it counts as a `timeout` error.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What one worker saw.
#[derive(Debug, Default)]
struct WorkerStats {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

/// The outcome of a benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// The agent address called.
    pub target: String,
    /// The tool called.
    pub tool: String,
    /// The node API used.
    pub api: String,
    /// Number of workers.
    pub concurrency: u32,
    /// Requested run time.
    pub duration: Duration,
    /// Actual run time (until the last call in flight finished).
    pub elapsed: Duration,
    /// Size of the generated echo message, if one was generated.
    pub size_bytes: Option<usize>,
    /// Successful calls.
    pub ok: u64,
    /// Failed calls, by error kind (`tool_error` for results flagged
    /// `isError`, `timeout`, `unreachable`, or the node's error kind).
    pub errors: BTreeMap<String, u64>,
    /// Latency percentiles of the successful calls.
    pub latency: Option<Latency>,
}

/// Latency figures of the successful calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Fastest call.
    pub min: Duration,
    /// Average.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest call.
    pub max: Duration,
}

impl Latency {
    /// Computes the figures (nearest-rank percentiles); `None` if empty.
    pub fn of(mut samples: Vec<Duration>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |p: f64| {
            // Nearest rank: the smallest sample with at least p% at or below it.
            let r = (p / 100.0 * n as f64).ceil() as usize;
            samples[r.clamp(1, n) - 1]
        };
        let total: Duration = samples.iter().sum();
        Some(Latency {
            min: samples[0],
            mean: total / u32::try_from(n).unwrap_or(u32::MAX),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: samples[n - 1],
        })
    }

    fn to_json(self) -> Value {
        json!({
            "min": ms(self.min),
            "mean": ms(self.mean),
            "p50": ms(self.p50),
            "p90": ms(self.p90),
            "p99": ms(self.p99),
            "max": ms(self.max),
        })
    }
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

impl BenchReport {
    /// All calls made, successful or not.
    pub fn calls(&self) -> u64 {
        self.ok + self.error_count()
    }

    /// Failed calls.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Successful calls per second of actual run time.
    pub fn calls_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        json!({
            "target": self.target,
            "tool": self.tool,
            "api": self.api,
            "concurrency": self.concurrency,
            "duration_secs": self.duration.as_secs_f64(),
            "elapsed_secs": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "size_bytes": self.size_bytes,
            "calls": self.calls(),
            "ok": self.ok,
            "errors": self.error_count(),
            "error_kinds": self.errors,
            "calls_per_sec": (self.calls_per_sec() * 10.0).round() / 10.0,
            "latency_ms": self.latency.map_or(Value::Null, Latency::to_json),
        })
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "bench {}/{} via {}: {} workers for {:.1} s",
            self.target,
            self.tool,
            self.api,
            self.concurrency,
            self.duration.as_secs_f64()
        );
        if let Some(size) = self.size_bytes {
            let _ = write!(s, ", {size}-byte messages");
        }
        let _ = write!(
            s,
            "\n  calls       {} ({} ok, {} errors) in {:.2} s\n  throughput  {:.1} calls/s (successful)",
            self.calls(),
            self.ok,
            self.error_count(),
            self.elapsed.as_secs_f64(),
            self.calls_per_sec()
        );
        match self.latency {
            Some(l) => {
                let _ = write!(
                    s,
                    "\n  latency     p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                    ms(l.p50),
                    ms(l.p90),
                    ms(l.p99),
                    ms(l.max)
                );
            }
            None => s.push_str("\n  latency     - (no successful call)"),
        }
        if !self.errors.is_empty() {
            let kinds: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = write!(s, "\n  errors      {}", kinds.join(", "));
        }
        s
    }
}

/// The tool arguments: `--args`, else a `--size`-byte message for echo,
/// else `{}`. The second value is the generated message's size.
fn arguments(args: &BenchArgs) -> (Map<String, Value>, Option<usize>) {
    if let Some(explicit) = &args.args {
        return (explicit.clone(), None);
    }
    if args.tool == "echo" {
        let message: String = "abcdefghijklmnopqrstuvwxyz0123456789"
            .chars()
            .cycle()
            .take(args.size)
            .collect();
        let mut map = Map::new();
        map.insert("message".into(), Value::String(message));
        return (map, Some(args.size));
    }
    (Map::new(), None)
}

/// The error label a failed call is counted under.
fn error_label(error: &ApiError) -> String {
    match error {
        ApiError::Remote(e) => e
            .kind()
            .map_or_else(|| format!("code {}", e.code), str::to_owned),
        ApiError::Unreachable { .. } => "unreachable".into(),
        ApiError::Timeout { .. } => "timeout".into(),
        ApiError::Unauthorized(_) => "unauthorized".into(),
        ApiError::Unexpected { .. } => "unexpected_answer".into(),
    }
}

/// Runs the benchmark. One call is made first, and its failure aborts the
/// run (a wrong agent, tool or arguments is reported, not measured).
pub async fn run(client: &ApiClient, args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let (arguments, size_bytes) = arguments(args);
    let body = Bytes::from(
        json!({ "agent": args.target, "tool": args.tool, "arguments": arguments }).to_string(),
    );

    let first = client
        .call_raw(body.clone(), CALL_TIMEOUT)
        .await
        .with_context(|| format!("the first call to {}/{} failed", args.target, args.tool))?;
    let first_result = first.get("result").unwrap_or(&Value::Null);
    if output::is_error_result(first_result) {
        let text = output::call_result(first_result).text;
        anyhow::bail!(
            "the first call to {}/{} returned a tool error: {}",
            args.target,
            args.tool,
            text.trim()
        );
    }

    let start = Instant::now();
    let deadline = start + args.duration;
    let mut workers = JoinSet::new();
    for _ in 0..args.concurrency {
        let client = client.clone();
        let body = body.clone();
        workers.spawn(async move { worker(client, body, deadline).await });
    }
    let mut latencies = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(joined) = workers.join_next().await {
        let stats = joined.context("a benchmark worker failed")?;
        latencies.extend(stats.latencies);
        for (kind, n) in stats.errors {
            *errors.entry(kind).or_default() += n;
        }
    }
    let elapsed = start.elapsed();
    Ok(BenchReport {
        target: args.target.clone(),
        tool: args.tool.clone(),
        api: client.base_display(),
        concurrency: args.concurrency,
        duration: args.duration,
        elapsed,
        size_bytes,
        ok: latencies.len() as u64,
        errors,
        latency: Latency::of(latencies),
    })
}

/// Calls back to back until the deadline. Stops early if the node becomes
/// unreachable (every further call would fail at once).
async fn worker(client: ApiClient, body: Bytes, deadline: Instant) -> WorkerStats {
    let mut stats = WorkerStats::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        let outcome = client.call_raw(body.clone(), CALL_TIMEOUT).await;
        let latency = started.elapsed();
        match outcome {
            Ok(answer) => {
                if output::is_error_result(answer.get("result").unwrap_or(&Value::Null)) {
                    *stats.errors.entry("tool_error".into()).or_default() += 1;
                } else {
                    stats.latencies.push(latency);
                }
            }
            Err(error) => {
                *stats.errors.entry(error_label(&error)).or_default() += 1;
                if matches!(error, ApiError::Unreachable { .. }) {
                    break;
                }
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn millis(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let l = Latency::of(millis(&(1..=100).collect::<Vec<_>>())).unwrap();
        assert_eq!(l.min, Duration::from_millis(1));
        assert_eq!(l.p50, Duration::from_millis(50));
        assert_eq!(l.p90, Duration::from_millis(90));
        assert_eq!(l.p99, Duration::from_millis(99));
        assert_eq!(l.max, Duration::from_millis(100));
        let one = Latency::of(millis(&[7])).unwrap();
        assert_eq!(
            (one.p50, one.p99, one.max),
            (
                Duration::from_millis(7),
                Duration::from_millis(7),
                Duration::from_millis(7)
            )
        );
        assert!(Latency::of(Vec::new()).is_none());
    }

    #[test]
    fn report_counts_errors_apart() {
        let report = BenchReport {
            target: "system".into(),
            tool: "echo".into(),
            api: "http://127.0.0.1:1".into(),
            concurrency: 2,
            duration: Duration::from_secs(1),
            elapsed: Duration::from_secs(2),
            size_bytes: Some(8),
            ok: 10,
            errors: BTreeMap::from([("rate_limited".to_owned(), 3)]),
            latency: Latency::of(millis(&[1, 2, 3])),
        };
        let json = report.to_json();
        assert_eq!(json["calls"], 13);
        assert_eq!(json["ok"], 10);
        assert_eq!(json["errors"], 3);
        assert_eq!(json["error_kinds"]["rate_limited"], 3);
        assert_eq!(json["calls_per_sec"], 5.0);
        assert_eq!(json["latency_ms"]["p50"], 2.0);
        let summary = report.summary();
        assert!(summary.contains("rate_limited 3"), "{summary}");
        assert!(summary.contains("p99 3.00 ms"), "{summary}");
    }

    #[test]
    fn echo_payload_has_the_requested_size() {
        let args = BenchArgs {
            target: "system".into(),
            tool: "echo".into(),
            concurrency: 1,
            duration: Duration::from_secs(1),
            size: 300,
            args: None,
        };
        let (map, size) = arguments(&args);
        assert_eq!(map["message"].as_str().unwrap().len(), 300);
        assert_eq!(size, Some(300));
        let other = BenchArgs {
            tool: "info".into(),
            ..args
        };
        assert_eq!(arguments(&other), (Map::new(), None));
    }
}
