//! The alert engine: rules evaluated on an interval over the node's own
//! metrics, with Prometheus-style states and notifications.
//!
//! Each rule is a small PromQL-like [`Condition`] over one metric — a gauge
//! value or a counter rate, optionally summed, compared with a threshold —
//! plus a `for` duration, labels and annotations. Every result of a rule
//! (one per matching series, or one for a sum) is an alert instance that
//! moves through the states
//!
//! ```text
//! inactive --condition holds--> pending --held for `for`--> firing
//!     ^                            |                          |
//!     +-------condition clears-----+----condition clears------+--> resolved
//! ```
//!
//! A notification is sent when an alert starts firing and when it resolves;
//! while it fires it is re-sent every `resend_interval` to notifiers that want
//! reminders (Alertmanager). Notifiers run on their own tasks with bounded
//! queues: a slow or failing receiver never delays evaluation; failures are
//! logged and counted in `dawn_alert_notifications_total`.
//!
//! Metric values come from a [`MetricSource`]: [`RecorderSource`] reads the
//! installed Prometheus recorder, [`InMemorySource`] holds values set by hand.
//!
//! # Built-in rules
//!
//! [`builtin_rules`] turns `observability.alerts` into these rules; the PromQL
//! column is exactly what the engine evaluates ([`Condition::promql`]) for
//! one node. [`prometheus_rules`] writes the equivalent Prometheus rule file
//! (summing `by (instance)`).
//!
//! | Alert | Severity | Condition (defaults) | `for` |
//! |---|---|---|---|
//! | `DawnNoPeers` | warning | `(sum(dawn_connected_peers) or vector(0)) < 1` | 2m |
//! | `DawnHighErrorRate` | warning | `sum(rate(dawn_errors_total{kind!~"<caller kinds>"}[5m])) > 0.1` | 2m |
//! | `DawnCircuitBreakerOpen` | warning | `sum(dawn_circuit_breaker_state{state="open"}) > 0` | 1m |
//! | `DawnDiskSpaceLow` | critical | `dawn_disk_available_bytes < 1073741824` | 5m |
//! | `DawnMcpServerDown` | warning | `dawn_mcp_server_up == 0` (one alert per `server`) | 1m |
//!
//! Rates follow PromQL's `rate()`: the increase between the samples inside
//! the window (counter resets handled) divided by the time they span, so the
//! error-rate alert resolves once a window passes without errors. One
//! difference: a counter series first seen while the engine runs is taken to
//! have been 0 at the previous evaluation (in-process counters start at 0), so
//! a burst of a new error kind is not missed.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    fmt::Write as _,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior},
};

use crate::{
    config::AlertsConfig,
    exposition,
    metrics::MetricsHandle,
    notify::{
        AlertNotification, AlertStatus, AlertmanagerNotifier, LogNotifier, Notifier, NotifyError,
        WebhookNotifier,
    },
    units,
};

// ---------------------------------------------------------------- sources

/// Labels of one series.
pub type Labels = BTreeMap<String, String>;

/// Current values of metric series, by metric name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricSnapshot {
    series: HashMap<String, Vec<(Labels, f64)>>,
}

impl MetricSnapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        MetricSnapshot::default()
    }

    /// Every sample of a Prometheus/OpenMetrics text.
    pub fn from_exposition(text: &str) -> Self {
        let mut snap = MetricSnapshot::new();
        for s in exposition::parse_samples(text) {
            snap.insert(s.name, s.labels, s.value);
        }
        snap
    }

    /// Adds or replaces one series.
    pub fn insert(&mut self, name: impl Into<String>, labels: Labels, value: f64) {
        let series = self.series.entry(name.into()).or_default();
        match series.iter_mut().find(|(l, _)| *l == labels) {
            Some(entry) => entry.1 = value,
            None => series.push((labels, value)),
        }
    }

    /// Every series of a metric.
    pub fn series(&self, name: &str) -> &[(Labels, f64)] {
        self.series.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// The value of one series.
    pub fn value(&self, name: &str, labels: &Labels) -> Option<f64> {
        self.series(name)
            .iter()
            .find(|(l, _)| l == labels)
            .map(|(_, v)| *v)
    }
}

/// Where the engine reads metric values from; asked once per evaluation.
pub trait MetricSource: Send + Sync + 'static {
    /// The current value of every series.
    fn snapshot(&self) -> MetricSnapshot;
}

impl<F> MetricSource for F
where
    F: Fn() -> MetricSnapshot + Send + Sync + 'static,
{
    fn snapshot(&self) -> MetricSnapshot {
        self()
    }
}

/// Reads the metrics recorded through the `metrics` facade from the
/// installed exporter (renders and parses its text; a few hundred series
/// take well under a millisecond).
#[derive(Debug, Clone)]
pub struct RecorderSource {
    handle: MetricsHandle,
}

impl RecorderSource {
    /// Reads from this exporter.
    pub fn new(handle: MetricsHandle) -> Self {
        RecorderSource { handle }
    }
}

impl MetricSource for RecorderSource {
    fn snapshot(&self) -> MetricSnapshot {
        MetricSnapshot::from_exposition(&self.handle.render_recorder())
    }
}

/// Metric values held in memory and set by hand: for embedding programs
/// without a recorder, and for exercising rules. Clones share values.
#[derive(Debug, Clone, Default)]
pub struct InMemorySource {
    values: Arc<Mutex<MetricSnapshot>>,
}

fn to_labels(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl InMemorySource {
    /// No series.
    pub fn new() -> Self {
        InMemorySource::default()
    }

    /// Sets a gauge series.
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, to_labels(labels), value);
    }

    /// Adds to a counter series (created at 0).
    pub fn increment(&self, name: &str, labels: &[(&str, &str)], by: f64) {
        let labels = to_labels(labels);
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let current = values.value(name, &labels).unwrap_or(0.0);
        values.insert(name, labels, current + by);
    }

    /// Removes a series.
    pub fn remove(&self, name: &str, labels: &[(&str, &str)]) {
        let labels = to_labels(labels);
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = values.series.get_mut(name) {
            series.retain(|(l, _)| *l != labels);
        }
    }
}

impl MetricSource for InMemorySource {
    fn snapshot(&self) -> MetricSnapshot {
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

// ---------------------------------------------------------------- conditions

/// A label matcher of a [`Selector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelMatcher {
    /// `label="value"`
    Equal(String, String),
    /// `label!="value"`
    NotEqual(String, String),
    /// `label=~"a|b"`
    OneOf(String, Vec<String>),
    /// `label!~"a|b"`
    NoneOf(String, Vec<String>),
}

impl LabelMatcher {
    fn matches(&self, labels: &Labels) -> bool {
        let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
        match self {
            LabelMatcher::Equal(k, v) => get(k) == v,
            LabelMatcher::NotEqual(k, v) => get(k) != v,
            LabelMatcher::OneOf(k, vs) => vs.iter().any(|v| v == get(k)),
            LabelMatcher::NoneOf(k, vs) => !vs.iter().any(|v| v == get(k)),
        }
    }

    fn promql(&self) -> String {
        let alt = |vs: &[String]| {
            vs.iter()
                .map(|v| regex_escape(v))
                .collect::<Vec<_>>()
                .join("|")
        };
        match self {
            LabelMatcher::Equal(k, v) => format!("{k}=\"{}\"", promql_string(v)),
            LabelMatcher::NotEqual(k, v) => format!("{k}!=\"{}\"", promql_string(v)),
            LabelMatcher::OneOf(k, vs) => format!("{k}=~\"{}\"", promql_string(&alt(vs))),
            LabelMatcher::NoneOf(k, vs) => format!("{k}!~\"{}\"", promql_string(&alt(vs))),
        }
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn promql_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A metric name with label matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// Metric name.
    pub metric: String,
    /// All must match.
    pub matchers: Vec<LabelMatcher>,
}

impl Selector {
    /// Every series of `metric`.
    pub fn new(metric: impl Into<String>) -> Self {
        Selector {
            metric: metric.into(),
            matchers: Vec::new(),
        }
    }

    /// Adds a matcher.
    #[must_use]
    pub fn with(mut self, matcher: LabelMatcher) -> Self {
        self.matchers.push(matcher);
        self
    }

    fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// The PromQL selector.
    pub fn promql(&self) -> String {
        if self.matchers.is_empty() {
            self.metric.clone()
        } else {
            let m: Vec<String> = self.matchers.iter().map(LabelMatcher::promql).collect();
            format!("{}{{{}}}", self.metric, m.join(","))
        }
    }
}

/// What is computed per series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// The current value (gauges).
    Value,
    /// Per-second increase over a window (counters), like PromQL `rate()`.
    Rate {
        /// The window.
        window: Duration,
    },
}

/// How per-series values are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregation {
    /// One alert instance per series (carrying its labels).
    PerSeries,
    /// One instance for the sum of all series.
    Sum {
        /// Value used when no series matches (`or vector(x)`); `None` means
        /// no result, so the alert cannot fire.
        absent_as: Option<f64>,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
}

impl Comparison {
    /// The PromQL operator.
    pub const fn as_str(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
        }
    }

    /// Whether `value <op> threshold` holds.
    #[allow(clippy::float_cmp)]
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Less => value < threshold,
            Comparison::LessOrEqual => value <= threshold,
            Comparison::Greater => value > threshold,
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Equal => value == threshold,
            Comparison::NotEqual => value != threshold,
        }
    }
}

/// `aggregation(function(selector)) op threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The series read.
    pub selector: Selector,
    /// Value or rate.
    pub function: Function,
    /// Per series or summed.
    pub aggregation: Aggregation,
    /// Comparison with the threshold.
    pub op: Comparison,
    /// Threshold.
    pub threshold: f64,
}

impl Condition {
    /// The equivalent PromQL expression for a single node.
    pub fn promql(&self) -> String {
        self.promql_grouped(&[])
    }

    /// The PromQL expression for a Prometheus server scraping many nodes:
    /// sums are taken `by` the given labels (e.g. `instance`). With grouping
    /// labels, `absent_as` is not expressed (the node exports its gauges
    /// from start-up, so absence means the target is down, which `up`
    /// covers).
    pub fn promql_grouped(&self, by: &[&str]) -> String {
        let inner = match self.function {
            Function::Value => self.selector.promql(),
            Function::Rate { window } => format!(
                "rate({}[{}])",
                self.selector.promql(),
                units::format_duration(window)
            ),
        };
        let expr = match self.aggregation {
            Aggregation::PerSeries => inner,
            Aggregation::Sum { absent_as } => {
                let sum = if by.is_empty() {
                    format!("sum({inner})")
                } else {
                    format!("sum by ({}) ({inner})", by.join(", "))
                };
                match absent_as {
                    Some(v) if by.is_empty() => format!("({sum} or vector({}))", fmt_num(v)),
                    _ => sum,
                }
            }
        };
        format!("{expr} {} {}", self.op.as_str(), fmt_num(self.threshold))
    }

    fn evaluate(
        &self,
        snap: &MetricSnapshot,
        rates: &mut RateState,
        now: Instant,
    ) -> Vec<(Labels, f64)> {
        let matching: Vec<(&Labels, f64)> = snap
            .series(&self.selector.metric)
            .iter()
            .filter(|(l, _)| self.selector.matches(l))
            .map(|(l, v)| (l, *v))
            .collect();
        let values: Vec<(Labels, f64)> = match self.function {
            Function::Value => matching.into_iter().map(|(l, v)| (l.clone(), v)).collect(),
            Function::Rate { window } => rates.observe(&matching, now, window),
        };
        match self.aggregation {
            Aggregation::PerSeries => values
                .into_iter()
                .filter(|(_, v)| self.op.holds(*v, self.threshold))
                .collect(),
            Aggregation::Sum { absent_as } => {
                let total = if values.is_empty() {
                    absent_as
                } else {
                    Some(values.iter().map(|(_, v)| v).sum())
                };
                match total {
                    Some(t) if self.op.holds(t, self.threshold) => vec![(Labels::new(), t)],
                    _ => Vec::new(),
                }
            }
        }
    }
}

fn fmt_num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        #[allow(clippy::cast_possible_truncation)]
        let i = v as i64;
        i.to_string()
    } else {
        format!("{v}")
    }
}

#[derive(Debug, Default)]
struct RateState {
    series: HashMap<Labels, VecDeque<(Instant, f64)>>,
    last_eval: Option<Instant>,
}

impl RateState {
    fn observe(
        &mut self,
        matching: &[(&Labels, f64)],
        now: Instant,
        window: Duration,
    ) -> Vec<(Labels, f64)> {
        let baseline = self.last_eval;
        for (labels, v) in matching {
            let history = self.series.entry((*labels).clone()).or_insert_with(|| {
                // In-process counters start at 0: a series that appeared
                // since the last evaluation was 0 then.
                baseline
                    .map(|t| VecDeque::from([(t, 0.0)]))
                    .unwrap_or_default()
            });
            history.push_back((now, *v));
        }
        let cutoff = now.checked_sub(window);
        for history in self.series.values_mut() {
            while let (Some((t, _)), Some(cutoff)) = (history.front(), cutoff) {
                if *t < cutoff {
                    history.pop_front();
                } else {
                    break;
                }
            }
        }
        self.series.retain(|_, h| !h.is_empty());
        self.last_eval = Some(now);
        self.series
            .iter()
            .filter_map(|(labels, h)| Some((labels.clone(), rate(h)?)))
            .collect()
    }
}

fn rate(samples: &VecDeque<(Instant, f64)>) -> Option<f64> {
    let (first, _) = samples.front()?;
    let (last, _) = samples.back()?;
    let span = last.duration_since(*first);
    if samples.len() < 2 || span.is_zero() {
        return None;
    }
    let mut increase = 0.0;
    let mut prev: Option<f64> = None;
    for (_, v) in samples {
        if let Some(p) = prev {
            increase += if *v >= p { v - p } else { *v };
        }
        prev = Some(*v);
    }
    Some(increase / span.as_secs_f64())
}

// ---------------------------------------------------------------- rules

/// An alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// The alert name (`alertname` label), e.g. `DawnNoPeers`.
    pub name: String,
    /// When the alert is active.
    pub condition: Condition,
    /// How long the condition must hold before the alert fires (0: at once).
    pub for_: Duration,
    /// Labels added to the alert (e.g. `severity`).
    pub labels: Labels,
    /// Annotations (`summary`, `description`); `{{ $value }}` and
    /// `{{ $labels.<name> }}` are replaced.
    pub annotations: Labels,
}

impl AlertRule {
    /// A rule with no labels or annotations.
    pub fn new(name: impl Into<String>, condition: Condition, for_: Duration) -> Self {
        AlertRule {
            name: name.into(),
            condition,
            for_,
            labels: Labels::new(),
            annotations: Labels::new(),
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The condition as PromQL for a single node.
    pub fn promql(&self) -> String {
        self.condition.promql()
    }
}

/// Names of the built-in rules.
pub mod names {
    /// No peer connected.
    pub const NO_PEERS: &str = "DawnNoPeers";
    /// Error rate above the threshold.
    pub const HIGH_ERROR_RATE: &str = "DawnHighErrorRate";
    /// A circuit breaker is open.
    pub const CIRCUIT_BREAKER_OPEN: &str = "DawnCircuitBreakerOpen";
    /// Little free space in the data directory.
    pub const DISK_SPACE_LOW: &str = "DawnDiskSpaceLow";
    /// A mounted MCP server does not answer.
    pub const MCP_SERVER_DOWN: &str = "DawnMcpServerDown";
}

/// The built-in rules enabled in `config` (see the module docs).
pub fn builtin_rules(config: &AlertsConfig) -> Vec<AlertRule> {
    let mut rules = Vec::new();
    let gauge_sum = |metric: Selector, absent_as, op, threshold| Condition {
        selector: metric,
        function: Function::Value,
        aggregation: Aggregation::Sum { absent_as },
        op,
        threshold,
    };
    if config.no_peers.enabled {
        rules.push(
            AlertRule::new(
                names::NO_PEERS,
                gauge_sum(
                    Selector::new("dawn_connected_peers"),
                    Some(0.0),
                    Comparison::Less,
                    1.0,
                ),
                config.no_peers.for_,
            )
            .label("severity", "warning")
            .annotation("summary", "The node has no connected peers")
            .annotation(
                "description",
                &format!(
                    "No peer has been connected for at least {}; remote agents are unreachable. Check the network, node.bootstrap and the peers' health.",
                    units::format_duration(config.no_peers.for_)
                ),
            ),
        );
    }
    let e = &config.error_rate;
    if e.enabled {
        let mut selector = Selector::new("dawn_errors_total");
        if !e.exclude_kinds.is_empty() {
            selector = selector.with(LabelMatcher::NoneOf("kind".into(), e.exclude_kinds.clone()));
        }
        rules.push(
            AlertRule::new(
                names::HIGH_ERROR_RATE,
                Condition {
                    selector,
                    function: Function::Rate { window: e.window },
                    aggregation: Aggregation::Sum { absent_as: None },
                    op: Comparison::Greater,
                    threshold: e.threshold,
                },
                e.for_,
            )
            .label("severity", "warning")
            .annotation("summary", "High error rate")
            .annotation(
                "description",
                &format!(
                    "{{{{ $value }}}} errors per second over the last {} (threshold {}). See dawn_errors_total by kind and component.",
                    units::format_duration(e.window),
                    fmt_num(e.threshold)
                ),
            ),
        );
    }
    if config.circuit_breaker_open.enabled {
        rules.push(
            AlertRule::new(
                names::CIRCUIT_BREAKER_OPEN,
                gauge_sum(
                    Selector::new("dawn_circuit_breaker_state")
                        .with(LabelMatcher::Equal("state".into(), "open".into())),
                    None,
                    Comparison::Greater,
                    0.0,
                ),
                config.circuit_breaker_open.for_,
            )
            .label("severity", "warning")
            .annotation("summary", "A circuit breaker is open")
            .annotation(
                "description",
                "{{ $value }} circuit breaker(s) open: calls to those peers fail fast until they recover.",
            ),
        );
    }
    let d = &config.disk_space_low;
    if d.enabled {
        #[allow(clippy::cast_precision_loss)]
        let below = d.below as f64;
        rules.push(
            AlertRule::new(
                names::DISK_SPACE_LOW,
                Condition {
                    selector: Selector::new("dawn_disk_available_bytes"),
                    function: Function::Value,
                    aggregation: Aggregation::PerSeries,
                    op: Comparison::Less,
                    threshold: below,
                },
                d.for_,
            )
            .label("severity", "critical")
            .annotation("summary", "Low disk space in the data directory")
            .annotation(
                "description",
                &format!(
                    "{{{{ $value }}}} bytes available in the data directory, below {}. The database and audit log need room to write.",
                    units::format_size(d.below)
                ),
            ),
        );
    }
    if config.mcp_server_down.enabled {
        rules.push(
            AlertRule::new(
                names::MCP_SERVER_DOWN,
                Condition {
                    selector: Selector::new("dawn_mcp_server_up"),
                    function: Function::Value,
                    aggregation: Aggregation::PerSeries,
                    op: Comparison::Equal,
                    threshold: 0.0,
                },
                config.mcp_server_down.for_,
            )
            .label("severity", "warning")
            .annotation("summary", "Mounted MCP server {{ $labels.server }} is down")
            .annotation(
                "description",
                "The mounted MCP server {{ $labels.server }} has not answered its health check; its tools are unavailable.",
            ),
        );
    }
    rules
}

/// A Prometheus rule file (YAML) with the given rules, summing by `group_by`
/// labels (typically `["instance"]`). Check it with `promtool check rules`.
pub fn prometheus_rules(group: &str, rules: &[AlertRule], group_by: &[&str]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut out = format!("groups:\n  - name: {}\n    rules:\n", q(group));
    for r in rules {
        let _ = writeln!(out, "      - alert: {}", r.name);
        let _ = writeln!(
            out,
            "        expr: {}",
            q(&r.condition.promql_grouped(group_by))
        );
        if !r.for_.is_zero() {
            let _ = writeln!(out, "        for: {}", units::format_duration(r.for_));
        }
        for (section, map) in [("labels", &r.labels), ("annotations", &r.annotations)] {
            if map.is_empty() {
                continue;
            }
            let _ = writeln!(out, "        {section}:");
            for (k, v) in map {
                let _ = writeln!(out, "          {k}: {}", q(v));
            }
        }
    }
    out
}

/// `deploy/prometheus/rules/dawn-alerts.yml`: the built-in rules with their
/// default thresholds, for a Prometheus server scraping many nodes (sums
/// taken `by (instance)`). Generated; a test keeps the file current.
pub fn default_prometheus_rules_file() -> String {
    let mut out = String::from(
        "# Generated from dawn_observe::alerts::builtin_rules with the default\n\
         # observability.alerts settings (crates/dawn-observe/src/alerts.rs); do not edit.\n\
         # Regenerate with `cargo xtask docs`. These are the alerts each node also\n\
         # evaluates itself; if you change thresholds in the node configuration,\n\
         # copy this file and change them here too.\n",
    );
    out.push_str(&prometheus_rules(
        "dawn-alerts",
        &builtin_rules(&AlertsConfig::default()),
        &["instance"],
    ));
    out
}

/// Replaces `{{ $value }}` and `{{ $labels.name }}`.
fn expand(template: &str, value: f64, labels: &Labels) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = after[..end].trim();
        if expr == "$value" {
            out.push_str(&format_value(value));
        } else if let Some(name) = expr.strip_prefix("$labels.") {
            out.push_str(labels.get(name).map(String::as_str).unwrap_or(""));
        } else {
            out.push_str(&rest[start..start + 2 + end + 2]);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn format_value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 {
        fmt_num(v)
    } else if v.is_finite() {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        format!("{v}")
    }
}

// ---------------------------------------------------------------- engine

/// State of an active alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, for less than the rule's `for`.
    Pending,
    /// The condition has held for `for`; notifications were sent.
    Firing,
}

/// An alert that is pending or firing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveAlert {
    /// Rule name.
    pub name: String,
    /// Pending or firing.
    pub state: AlertState,
    /// All labels (`alertname`, external labels, series labels, rule labels).
    pub labels: Labels,
    /// The labels of the series it is about (empty for sums).
    pub series_labels: Labels,
    /// Expanded annotations.
    pub annotations: Labels,
    /// The value at the last evaluation.
    pub value: f64,
    /// When the condition started holding.
    pub active_at: SystemTime,
    /// When it started firing.
    pub fired_at: Option<SystemTime>,
}

impl ActiveAlert {
    /// `Name` or `Name{label="value",...}` with the series labels.
    pub fn describe(&self) -> String {
        if self.series_labels.is_empty() {
            self.name.clone()
        } else {
            let l: Vec<String> = self
                .series_labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            format!("{}{{{}}}", self.name, l.join(","))
        }
    }
}

#[derive(Debug, Clone)]
struct Instance {
    state: AlertState,
    labels: Labels,
    series_labels: Labels,
    annotations: Labels,
    value: f64,
    active_at: Instant,
    fired_at: Option<Instant>,
    last_sent: Option<Instant>,
}

/// Maps the engine's monotonic clock to wall-clock timestamps (so that
/// tests with paused tokio time get consistent timestamps too).
#[derive(Debug, Clone, Copy)]
struct WallClock {
    base_instant: Instant,
    base_system: SystemTime,
}

impl WallClock {
    fn new() -> Self {
        WallClock {
            base_instant: Instant::now(),
            base_system: SystemTime::now(),
        }
    }

    fn at(&self, t: Instant) -> SystemTime {
        self.base_system + t.saturating_duration_since(self.base_instant)
    }
}

/// Notifications produced by one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Alerts that started firing or resolved.
    pub changes: Vec<AlertNotification>,
    /// Alerts still firing whose resend interval has passed.
    pub reminders: Vec<AlertNotification>,
}

/// Why an engine could not be built from configuration.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A notifier could not be created.
    #[error("alert notifier {index} ({kind}): {source}")]
    Notifier {
        /// `webhook` or `alertmanager`.
        kind: &'static str,
        /// Position in its list.
        index: usize,
        /// Why.
        source: NotifyError,
    },
    /// A webhook's secret could not be read.
    #[error("webhook {index}: {message}")]
    Secret {
        /// Position in the list.
        index: usize,
        /// Why.
        message: String,
    },
}

type Hook = Box<dyn Fn() + Send + Sync>;

/// Evaluates rules and sends notifications; see the module docs.
pub struct AlertEngine {
    rules: Vec<AlertRule>,
    source: Box<dyn MetricSource>,
    notifiers: Vec<Arc<dyn Notifier>>,
    interval: Duration,
    resend_interval: Duration,
    external_labels: Labels,
    generator_url: Option<String>,
    hooks: Vec<Hook>,
    clock: WallClock,
    instances: BTreeMap<(usize, Labels), Instance>,
    rates: Vec<RateState>,
    active: Arc<RwLock<Vec<ActiveAlert>>>,
}

impl std::fmt::Debug for AlertEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertEngine")
            .field(
                "rules",
                &self.rules.iter().map(|r| &r.name).collect::<Vec<_>>(),
            )
            .field(
                "notifiers",
                &self.notifiers.iter().map(|n| n.kind()).collect::<Vec<_>>(),
            )
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl AlertEngine {
    /// An engine reading `source`, with no rules or notifiers, evaluating
    /// every 15 s and re-sending firing alerts every minute.
    pub fn new(source: impl MetricSource) -> Self {
        AlertEngine {
            rules: Vec::new(),
            source: Box::new(source),
            notifiers: Vec::new(),
            interval: Duration::from_secs(15),
            resend_interval: Duration::from_secs(60),
            external_labels: Labels::new(),
            generator_url: None,
            hooks: Vec::new(),
            clock: WallClock::new(),
            instances: BTreeMap::new(),
            rates: Vec::new(),
            active: Arc::new(RwLock::new(Vec::new())),
        }
    }

    /// The built-in rules and the notifiers of `observability.alerts`.
    /// (`enabled` is the caller's business: don't spawn a disabled engine.)
    pub fn from_config(
        config: &AlertsConfig,
        source: impl MetricSource,
    ) -> Result<Self, AlertError> {
        let resolve_after = resolve_timeout(config.evaluation_interval, config.resend_interval);
        let mut engine = AlertEngine::new(source)
            .with_interval(config.evaluation_interval)
            .with_resend_interval(config.resend_interval)
            .with_rules(builtin_rules(config));
        engine.generator_url.clone_from(&config.generator_url);
        if config.log.enabled {
            engine = engine.with_notifier(Arc::new(LogNotifier));
        }
        for (index, w) in config.webhooks.iter().enumerate() {
            let secret = w
                .resolve_secret()
                .map_err(|message| AlertError::Secret { index, message })?;
            let n = WebhookNotifier::new(&w.url, secret.as_deref(), w.timeout, w.max_retries)
                .map_err(|source| AlertError::Notifier {
                    kind: "webhook",
                    index,
                    source,
                })?;
            engine = engine.with_notifier(Arc::new(n));
        }
        for (index, am) in config.alertmanagers.iter().enumerate() {
            let n = AlertmanagerNotifier::new(&am.url, am.timeout, am.max_retries, resolve_after)
                .map_err(|source| AlertError::Notifier {
                kind: "alertmanager",
                index,
                source,
            })?;
            engine = engine.with_notifier(Arc::new(n));
        }
        Ok(engine)
    }

    /// Adds a rule.
    #[must_use]
    pub fn with_rule(mut self, rule: AlertRule) -> Self {
        self.rules.push(rule);
        self.rates.push(RateState::default());
        self
    }

    /// Adds rules.
    #[must_use]
    pub fn with_rules(mut self, rules: impl IntoIterator<Item = AlertRule>) -> Self {
        for r in rules {
            self = self.with_rule(r);
        }
        self
    }

    /// Adds a notifier.
    #[must_use]
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// Sets the evaluation interval (at least 1 ms).
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Sets how often firing alerts are re-sent to notifiers that want
    /// reminders.
    #[must_use]
    pub fn with_resend_interval(mut self, interval: Duration) -> Self {
        self.resend_interval = interval;
        self
    }

    /// Adds a label to every alert (e.g. `node_id`), like Prometheus's
    /// external labels.
    #[must_use]
    pub fn with_external_label(mut self, key: &str, value: &str) -> Self {
        self.external_labels
            .insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets the `generatorURL` of notifications.
    #[must_use]
    pub fn with_generator_url(mut self, url: impl Into<String>) -> Self {
        self.generator_url = Some(url.into());
        self
    }

    /// Runs `hook` before each evaluation, e.g. to refresh a gauge such as
    /// `dawn_disk_available_bytes` ([`crate::health::record_disk_space`]).
    /// It runs on the engine's task, so it must be quick.
    #[must_use]
    pub fn before_evaluation(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.hooks.push(Box::new(hook));
        self
    }

    /// The rules.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// Currently pending and firing alerts.
    pub fn active(&self) -> Vec<ActiveAlert> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Evaluates every rule once, now, and returns the notifications due
    /// (without sending them; [`spawn`](Self::spawn) sends them).
    pub fn evaluate(&mut self) -> Evaluation {
        let now = Instant::now();
        for hook in &self.hooks {
            hook();
        }
        let snapshot = self.source.snapshot();
        let mut out = Evaluation::default();
        let mut firing_per_rule: Vec<usize> = vec![0; self.rules.len()];
        for (ri, rule) in self.rules.iter().enumerate() {
            let Some(rates) = self.rates.get_mut(ri) else {
                continue;
            };
            let results = rule.condition.evaluate(&snapshot, rates, now);
            let mut seen: HashSet<Labels> = HashSet::new();
            for (series_labels, value) in results {
                seen.insert(series_labels.clone());
                let mut labels = self.external_labels.clone();
                labels.extend(series_labels.clone());
                labels.extend(rule.labels.clone());
                labels.insert("alertname".into(), rule.name.clone());
                let annotations: Labels = rule
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), expand(v, value, &labels)))
                    .collect();
                let key = (ri, series_labels.clone());
                let inst = self.instances.entry(key).or_insert_with(|| Instance {
                    state: AlertState::Pending,
                    labels: labels.clone(),
                    series_labels,
                    annotations: annotations.clone(),
                    value,
                    active_at: now,
                    fired_at: None,
                    last_sent: None,
                });
                inst.value = value;
                inst.labels = labels;
                inst.annotations = annotations;
                if inst.state == AlertState::Pending
                    && now.duration_since(inst.active_at) >= rule.for_
                {
                    inst.state = AlertState::Firing;
                    inst.fired_at = Some(now);
                    inst.last_sent = Some(now);
                    out.changes.push(notification(
                        &self.clock,
                        inst,
                        AlertStatus::Firing,
                        None,
                        &self.generator_url,
                    ));
                } else if inst.state == AlertState::Firing
                    && inst
                        .last_sent
                        .is_none_or(|t| now.duration_since(t) >= self.resend_interval)
                {
                    inst.last_sent = Some(now);
                    out.reminders.push(notification(
                        &self.clock,
                        inst,
                        AlertStatus::Firing,
                        None,
                        &self.generator_url,
                    ));
                }
                if inst.state == AlertState::Firing
                    && let Some(n) = firing_per_rule.get_mut(ri)
                {
                    *n += 1;
                }
            }
            let gone: Vec<(usize, Labels)> = self
                .instances
                .keys()
                .filter(|(r, l)| *r == ri && !seen.contains(l))
                .cloned()
                .collect();
            for key in gone {
                if let Some(inst) = self.instances.remove(&key)
                    && inst.state == AlertState::Firing
                {
                    out.changes.push(notification(
                        &self.clock,
                        &inst,
                        AlertStatus::Resolved,
                        Some(now),
                        &self.generator_url,
                    ));
                }
            }
        }
        for (rule, n) in self.rules.iter().zip(&firing_per_rule) {
            #[allow(clippy::cast_precision_loss)]
            ::metrics::gauge!("dawn_alerts_firing", "alertname" => rule.name.clone())
                .set(*n as f64);
        }
        let active: Vec<ActiveAlert> = self
            .instances
            .iter()
            .map(|((ri, _), inst)| ActiveAlert {
                name: self
                    .rules
                    .get(*ri)
                    .map(|r| r.name.clone())
                    .unwrap_or_default(),
                state: inst.state,
                labels: inst.labels.clone(),
                series_labels: inst.series_labels.clone(),
                annotations: inst.annotations.clone(),
                value: inst.value,
                active_at: self.clock.at(inst.active_at),
                fired_at: inst.fired_at.map(|t| self.clock.at(t)),
            })
            .collect();
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = active;
        out
    }

    /// Runs the engine on the current tokio runtime: evaluates every
    /// interval (the first time immediately) and hands notifications to each
    /// notifier's queue.
    pub fn spawn(mut self) -> AlertEngineHandle {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let workers: Vec<Worker> = self
            .notifiers
            .iter()
            .map(|n| Worker::spawn(Arc::clone(n)))
            .collect();
        let active = Arc::clone(&self.active);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(self.interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop_rx.changed() => break,
                }
                let evaluation = self.evaluate();
                for w in &workers {
                    let mut batch = evaluation.changes.clone();
                    if w.wants_reminders {
                        batch.extend(evaluation.reminders.iter().cloned());
                    }
                    w.send(batch);
                }
            }
        });
        AlertEngineHandle {
            active,
            stop: Arc::new(stop_tx),
            task: Arc::new(Mutex::new(Some(task))),
        }
    }
}

fn notification(
    clock: &WallClock,
    inst: &Instance,
    status: AlertStatus,
    ended: Option<Instant>,
    generator_url: &Option<String>,
) -> AlertNotification {
    AlertNotification {
        status,
        labels: inst.labels.clone(),
        annotations: inst.annotations.clone(),
        value: inst.value,
        starts_at: clock.at(inst.fired_at.unwrap_or(inst.active_at)),
        ends_at: ended.map(|t| clock.at(t)),
        generator_url: generator_url.clone(),
    }
}

/// How long Alertmanager keeps a firing alert without hearing about it again:
/// four resend (or evaluation) intervals, as Prometheus does.
pub fn resolve_timeout(evaluation_interval: Duration, resend_interval: Duration) -> Duration {
    evaluation_interval.max(resend_interval).saturating_mul(4)
}

/// Queue length per notifier; batches beyond it are dropped and counted.
const NOTIFIER_QUEUE: usize = 64;

struct Worker {
    kind: &'static str,
    wants_reminders: bool,
    tx: mpsc::Sender<Vec<AlertNotification>>,
}

impl Worker {
    fn spawn(notifier: Arc<dyn Notifier>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Vec<AlertNotification>>(NOTIFIER_QUEUE);
        let kind = notifier.kind();
        let wants_reminders = notifier.wants_reminders();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                match notifier.notify(&batch).await {
                    Ok(()) => {
                        ::metrics::counter!("dawn_alert_notifications_total", "notifier" => kind, "status" => "sent")
                            .increment(1);
                    }
                    Err(e) => {
                        ::metrics::counter!("dawn_alert_notifications_total", "notifier" => kind, "status" => "failed")
                            .increment(1);
                        tracing::warn!(notifier = kind, alerts = batch.len(), error = %e, "alert notification failed");
                    }
                }
            }
        });
        Worker {
            kind,
            wants_reminders,
            tx,
        }
    }

    fn send(&self, batch: Vec<AlertNotification>) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.tx.try_send(batch) {
            let n = match &e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => {
                    b.len()
                }
            };
            tracing::warn!(
                notifier = self.kind,
                alerts = n,
                "alert notifier queue is full; notification dropped"
            );
            ::metrics::counter!("dawn_alert_notifications_total", "notifier" => self.kind, "status" => "dropped")
                .increment(1);
        }
    }
}

/// A running engine: its alert state, and a way to stop it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AlertEngineHandle {
    active: Arc<RwLock<Vec<ActiveAlert>>>,
    stop: Arc<watch::Sender<bool>>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl AlertEngineHandle {
    /// A handle to no engine (alerting disabled): nothing is ever active.
    pub fn disabled() -> Self {
        let (stop, _) = watch::channel(true);
        AlertEngineHandle {
            active: Arc::new(RwLock::new(Vec::new())),
            stop: Arc::new(stop),
            task: Arc::new(Mutex::new(None)),
        }
    }

    /// Pending and firing alerts as of the last evaluation.
    pub fn active(&self) -> Vec<ActiveAlert> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Firing alerts as of the last evaluation.
    pub fn firing(&self) -> Vec<ActiveAlert> {
        let mut v = self.active();
        v.retain(|a| a.state == AlertState::Firing);
        v
    }

    /// Stops evaluating and waits for the engine task to end. Notifications
    /// already queued are still delivered by their notifiers' tasks.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand() {
        let mut l = Labels::new();
        l.insert("server".into(), "files".into());
        assert_eq!(
            expand("{{ $labels.server }} at {{$value}} {{ other }}", 0.25, &l),
            "files at 0.25 {{ other }}"
        );
        assert_eq!(
            expand("x {{ $value }}", 1_073_741_824.0, &l),
            "x 1073741824"
        );
        assert_eq!(format_value(1.0 / 3.0), "0.3333");
    }

    #[test]
    fn builtin_promql() {
        let rules = builtin_rules(&AlertsConfig::default());
        let q: Vec<String> = rules.iter().map(AlertRule::promql).collect();
        assert_eq!(q[0], "(sum(dawn_connected_peers) or vector(0)) < 1");
        assert!(
            q[1].starts_with("sum(rate(dawn_errors_total{kind!~\"parse_error|invalid_request|"),
            "{}",
            q[1]
        );
        assert!(q[1].ends_with("\"}[5m])) > 0.1"), "{}", q[1]);
        assert_eq!(q[2], "sum(dawn_circuit_breaker_state{state=\"open\"}) > 0");
        assert_eq!(q[3], "dawn_disk_available_bytes < 1073741824");
        assert_eq!(q[4], "dawn_mcp_server_up == 0");
        assert_eq!(
            rules[0].condition.promql_grouped(&["instance"]),
            "sum by (instance) (dawn_connected_peers) < 1"
        );
    }

    #[test]
    fn rate_handles_resets() {
        let t = Instant::now();
        let s: VecDeque<(Instant, f64)> = [
            (t, 10.0),
            (t + Duration::from_secs(10), 20.0),
            (t + Duration::from_secs(20), 5.0),
        ]
        .into();
        assert_eq!(rate(&s), Some(15.0 / 20.0));
    }
}
