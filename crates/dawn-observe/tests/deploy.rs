//! The monitoring files in `deploy/`: the Prometheus configuration and rules
//! pass `promtool check` and the rule unit tests pass `promtool test rules`;
//! the Grafana dashboard and the recording rules query only metrics (and
//! labels) that Dawn exports, per `dawn_observe::metrics::METRICS`.
//!
//! promtool comes from Debian's `prometheus` package. `cargo xtask ci`
//! installs it and sets `DAWN_REQUIRE_TOOLS=1`, under which a missing
//! promtool fails these tests; elsewhere they skip the promtool part with a
//! message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use dawn_observe::metrics::{METRICS, MetricKind, doc};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy(rel: &str) -> PathBuf {
    rel.split('/').fold(root().join("deploy"), |p, c| p.join(c))
}

fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("DAWN_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "promtool is required (DAWN_REQUIRE_TOOLS=1) but not on PATH: install Debian's \
             `prometheus` package (apt-get install -y prometheus), or run `cargo xtask ci`, which does"
        );
        eprintln!("SKIPPED: promtool is not on PATH (apt-get install -y prometheus)");
    }
    found
}

fn run_promtool(promtool: &Path, args: &[&str], cwd: &Path) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn files_in(dir: &Path, suffix: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    files.sort();
    files
}

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    let Some(promtool) = promtool() else { return };
    let dir = deploy("prometheus");
    run_promtool(&promtool, &["check", "config", "prometheus.yml"], &dir);
    let rules = files_in(&dir.join("rules"), ".yml");
    assert!(rules.contains(&"dawn-alerts.yml".to_owned()), "{rules:?}");
    let mut args = vec!["check".to_owned(), "rules".to_owned()];
    args.extend(rules.iter().map(|r| format!("rules/{r}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_promtool(&promtool, &args, &dir);
    let tests = files_in(&dir.join("tests"), ".test.yml");
    assert!(
        !tests.is_empty(),
        "no rule tests in deploy/prometheus/tests"
    );
    for t in tests {
        run_promtool(&promtool, &["test", "rules", &format!("tests/{t}")], &dir);
    }
}

/// Every built-in alert has a unit test in the rule tests.
#[test]
fn every_built_in_alert_is_unit_tested() {
    let tests = std::fs::read_to_string(deploy("prometheus/tests/dawn-rules.test.yml")).unwrap();
    let rules = dawn_observe::alerts::builtin_rules(&Default::default());
    assert_eq!(rules.len(), 5);
    for rule in rules {
        assert!(
            tests.contains(&format!("alertname: {}", rule.name)),
            "{} has no alert_rule_test",
            rule.name
        );
    }
}

/// `(metric name, labels in its selectors)` plus the `by (...)` labels of
/// one PromQL expression.
#[derive(Debug, Default)]
struct Refs {
    metrics: Vec<(String, Vec<String>)>,
    grouping: Vec<String>,
}

const KEYWORDS: &[&str] = &[
    "sum",
    "by",
    "without",
    "rate",
    "increase",
    "irate",
    "histogram_quantile",
    "count",
    "max",
    "min",
    "avg",
    "le",
    "or",
    "and",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "vector",
    "label_values",
    "bool",
    "offset",
];

fn promql_refs(expr: &str) -> Refs {
    let mut refs = Refs::default();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            // Skip string literals.
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if c == '[' || c == '{' {
            // Ranges and selectors (the selector's labels were read with
            // its metric name).
            let close = if c == '[' { ']' } else { '}' };
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            continue;
        }
        if c == '$' {
            // Grafana variables such as $__rate_interval.
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let rest: String = chars[i..].iter().collect();
            let rest = rest.trim_start();
            if word == "by" || word == "without" {
                let open = rest.find('(').unwrap();
                let close = rest.find(')').unwrap();
                refs.grouping.extend(
                    rest[open + 1..close]
                        .split(',')
                        .map(|l| l.trim().to_owned())
                        .filter(|l| !l.is_empty()),
                );
                // Past the closing parenthesis of the label list.
                let skipped = chars[i..].len() - rest.chars().count();
                i += skipped + rest[..=close].chars().count();
                continue;
            }
            if KEYWORDS.contains(&word.as_str()) || rest.starts_with('(') {
                continue;
            }
            let mut labels = Vec::new();
            if let Some(inner) = rest.strip_prefix('{') {
                let close = inner.find('}').unwrap();
                for matcher in inner[..close].split(',') {
                    let name: String = matcher
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        labels.push(name);
                    }
                }
            }
            if word.parse::<f64>().is_err() {
                refs.metrics.push((word, labels));
            }
            continue;
        }
        i += 1;
    }
    refs
}

/// The documented family a series name belongs to (histogram series carry
/// `_bucket`, `_sum` or `_count`).
fn family(name: &str) -> Option<&'static dawn_observe::metrics::MetricDoc> {
    if let Some(d) = doc(name) {
        return Some(d);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        doc(base).filter(|d| d.kind == MetricKind::Histogram)
    })
}

/// Checks one expression; returns problems.
fn check_expr(where_: &str, expr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let refs = promql_refs(expr);
    let mut known_labels: BTreeSet<String> = ["instance", "job"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for (name, labels) in &refs.metrics {
        if name == "up" || name.contains(':') {
            continue; // Prometheus's own, or a recording rule.
        }
        let Some(d) = family(name) else {
            problems.push(format!(
                "{where_}: {name} is not a Dawn metric (not in METRICS): {expr}"
            ));
            continue;
        };
        let mut allowed: BTreeSet<String> = d.labels.iter().map(|l| l.name.to_owned()).collect();
        allowed.extend(["instance".to_owned(), "job".to_owned()]);
        if d.kind == MetricKind::Histogram {
            allowed.insert("le".to_owned());
        }
        for l in labels {
            if !allowed.contains(l) {
                problems.push(format!("{where_}: {name} has no label {l}: {expr}"));
            }
        }
        known_labels.extend(allowed);
    }
    for l in &refs.grouping {
        if !known_labels.contains(l) {
            problems.push(format!(
                "{where_}: grouping by {l}, which none of the metrics has: {expr}"
            ));
        }
    }
    problems
}

#[test]
fn the_promql_checker_catches_mistakes() {
    assert!(
        check_expr(
            "t",
            "sum by (direction) (rate(dawn_calls_total{status=\"ok\"}[5m]))"
        )
        .is_empty()
    );
    assert!(
        check_expr(
            "t",
            "histogram_quantile(0.5, sum by (le) (rate(dawn_call_duration_seconds_bucket[5m])))"
        )
        .is_empty()
    );
    assert_eq!(
        check_expr("t", "rate(dawn_no_such_metric_total[5m])").len(),
        1
    );
    assert_eq!(check_expr("t", "dawn_calls_total{peer=\"x\"}").len(), 1);
    assert_eq!(check_expr("t", "sum by (tool) (dawn_calls_total)").len(), 1);
    assert!(check_expr("t", "count(up{job=\"dawn\"} == 1)").is_empty());
}

fn collect_exprs(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "expr"
                    && let Some(e) = v.as_str()
                {
                    out.push((path.to_owned(), e.to_owned()));
                }
                if k == "query"
                    && let Some(q) = v.get("query").and_then(Value::as_str)
                {
                    out.push((format!("{path}.query"), q.to_owned()));
                }
                let title = map.get("title").and_then(Value::as_str).unwrap_or(k);
                collect_exprs(v, &format!("{path}/{title}"), out);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_exprs(item, path, out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_queries_only_exported_metrics() {
    let dir = deploy("grafana/dashboards");
    let dashboards = files_in(&dir, ".json");
    assert!(!dashboards.is_empty());
    for file in dashboards {
        let text = std::fs::read_to_string(dir.join(&file)).unwrap();
        let dashboard: Value = serde_json::from_str(&text).unwrap();
        assert!(
            dashboard["uid"].is_string() && dashboard["title"].is_string(),
            "{file}"
        );
        let panels = dashboard["panels"].as_array().unwrap();
        let mut ids = BTreeSet::new();
        for p in panels {
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: duplicate panel id"
            );
            for k in ["x", "y", "w", "h"] {
                assert!(
                    p["gridPos"][k].is_u64(),
                    "{file}: panel {} has no gridPos.{k}",
                    p["title"]
                );
            }
            if p["type"] != "row" {
                assert!(
                    !p["targets"].as_array().unwrap().is_empty(),
                    "{file}: {} has no query",
                    p["title"]
                );
            }
        }
        let mut exprs = Vec::new();
        collect_exprs(&dashboard, &file, &mut exprs);
        assert!(exprs.len() >= 20, "{file}: only {} queries", exprs.len());
        let mut problems = Vec::new();
        let mut used = BTreeSet::new();
        for (where_, expr) in &exprs {
            let expr = expr.replace("label_values(dawn_build_info, instance)", "dawn_build_info");
            problems.extend(check_expr(where_, &expr));
            for (m, _) in promql_refs(&expr).metrics {
                if let Some(d) = family(&m) {
                    used.insert(d.name);
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // The main metrics of the issue are all on the dashboard.
        for main in [
            "dawn_connected_peers",
            "dawn_connections_total",
            "dawn_network_bytes_total",
            "dawn_calls_total",
            "dawn_call_duration_seconds",
            "dawn_message_size_bytes",
            "dawn_errors_total",
            "dawn_agent_tool_calls_total",
            "dawn_registry_entries",
            "dawn_rate_limit_rejected_total",
            "dawn_circuit_breaker_state",
            "dawn_circuit_breaker_transitions_total",
            "dawn_audit_events_total",
            "dawn_build_info",
            "dawn_uptime_seconds",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            assert!(used.contains(main), "{file}: no panel shows {main}");
        }
    }
    // Provisioning points at the dashboards directory as mounted.
    let provider =
        std::fs::read_to_string(deploy("grafana/provisioning/dashboards/dawn.yml")).unwrap();
    assert!(
        provider.contains("path: /var/lib/grafana/dashboards"),
        "{provider}"
    );
    let datasource =
        std::fs::read_to_string(deploy("grafana/provisioning/datasources/prometheus.yml")).unwrap();
    assert!(datasource.contains("type: prometheus"), "{datasource}");
}

#[test]
fn the_recording_rules_query_only_exported_metrics() {
    let dir = deploy("prometheus/rules");
    let mut problems = Vec::new();
    for file in files_in(&dir, ".yml") {
        let text = std::fs::read_to_string(dir.join(&file)).unwrap();
        // `expr:` values, single-line or `|` blocks.
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim_start();
            if let Some(rest) = line.strip_prefix("expr:") {
                let mut expr = rest.trim().to_owned();
                if expr == "|" {
                    expr.clear();
                    let indent = lines[i].len() - line.len();
                    while i + 1 < lines.len() {
                        let next = lines[i + 1];
                        if next.trim().is_empty() || next.len() - next.trim_start().len() > indent {
                            expr.push_str(next.trim());
                            expr.push(' ');
                            i += 1;
                        } else {
                            break;
                        }
                    }
                } else if let Ok(Value::String(s)) = serde_json::from_str::<Value>(&expr) {
                    expr = s;
                }
                problems.extend(check_expr(&file, &expr));
            }
            i += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(METRICS.len() > 20);
}
