//! The Prometheus exporter and the table of every metric Dawn emits.
//!
//! Crates record with the [`metrics`](https://docs.rs/metrics) facade
//! (`metrics::counter!("dawn_calls_total", ...)`). The node calls
//! [`install`] once; it installs a process-wide `metrics-exporter-prometheus`
//! recorder, describes every entry of [`METRICS`] (help text and unit), and
//! returns a [`MetricsHandle`] whose [`render`](MetricsHandle::render)
//! produces the scrape body: the recorder's metrics, the process metrics
//! ([`crate::process`]), and any extra sources such as libp2p's
//! `prometheus_client` registry, merged into one valid document
//! ([`crate::exposition::merge`]).
//!
//! [`METRICS`] is the single list of metric names, types, labels and help
//! texts. `docs/metrics.md` is generated from it ([`markdown`]) and
//! [`documentation_problems`] checks a live scrape against it, so that a
//! metric added in code without an entry here fails a test.
//!
//! Naming follows Prometheus conventions: `dawn_` prefix, base units
//! (`_seconds`, `_bytes`), `_total` only on counters, and label values from
//! small fixed sets — never peer ids, request ids, or names chosen by remote
//! parties.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex, OnceLock, PoisonError, RwLock},
    time::{Duration, Instant},
};

use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{exposition, process};

pub use crate::exposition::CONTENT_TYPE;

/// Bucket upper bounds, in seconds, for every histogram whose name ends in
/// `_seconds`: 100 µs to 30 s, suitable for RPC and tool-call latency.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Bucket upper bounds, in bytes, for every histogram whose name ends in
/// `_bytes`: 64 B to 64 MiB (the largest allowed message), by powers of 4.
pub const BYTES_BUCKETS: &[f64] = &[
    64.0,
    256.0,
    1024.0,
    4096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// The type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (resets on restart); name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Distribution of observations in buckets.
    Histogram,
}

impl MetricKind {
    /// The Prometheus type name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Who produces a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricOrigin {
    /// Recorded through the `metrics` facade by Dawn's crates.
    Recorder,
    /// Written at scrape time from `/proc/self` (Linux only).
    Process,
}

/// One label of a metric.
#[derive(Debug, Clone, Copy)]
pub struct LabelDoc {
    /// Label name.
    pub name: &'static str,
    /// The values it takes (always a bounded set).
    pub values: &'static str,
}

/// Documentation of one metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricDoc {
    /// Full name as exported.
    pub name: &'static str,
    /// Type.
    pub kind: MetricKind,
    /// Base unit, if any (also implied by the name's suffix).
    pub unit: Option<Unit>,
    /// Help text (the `# HELP` line).
    pub help: &'static str,
    /// Labels, in the order the code usually writes them.
    pub labels: &'static [LabelDoc],
    /// Who produces it.
    pub origin: MetricOrigin,
}

const fn label(name: &'static str, values: &'static str) -> LabelDoc {
    LabelDoc { name, values }
}

const fn dawn(
    name: &'static str,
    kind: MetricKind,
    unit: Option<Unit>,
    help: &'static str,
    labels: &'static [LabelDoc],
) -> MetricDoc {
    MetricDoc {
        name,
        kind,
        unit,
        help,
        labels,
        origin: MetricOrigin::Recorder,
    }
}

const fn proc_metric(
    name: &'static str,
    kind: MetricKind,
    unit: Option<Unit>,
    help: &'static str,
) -> MetricDoc {
    MetricDoc {
        name,
        kind,
        unit,
        help,
        labels: &[],
        origin: MetricOrigin::Process,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

const DIRECTION_P2P: LabelDoc = label("direction", "`inbound`, `outbound`");
const CALL_DIRECTION: LabelDoc = label(
    "direction",
    "`inbound` (a peer called us), `outbound` (we called a peer), `local` (a call to an agent on this node)",
);
const CALL_METHOD: LabelDoc = label(
    "method",
    "the JSON-RPC method, from a fixed list: `tools_call`, `tools_list`, `resources_read`, `resources_list`, `resource_templates_list`, `prompts_get`, `prompts_list`, `complete`, `ping`, `describe`, `agents`, `registry_sync`, `watch_resource`; `other` for any other method, `invalid` for a request that could not be parsed",
);
const CALL_STATUS: LabelDoc = label(
    "status",
    "`ok`, or the error kind (`docs/errors.md`, e.g. `deadline_exceeded`; `other` for an error without a Dawn kind)",
);
const BREAKER_STATE: &str = "`closed`, `open`, `half_open`";

/// Every metric Dawn exports. `docs/metrics.md` is generated from this list
/// and tests check live scrapes against it.
pub const METRICS: &[MetricDoc] = &[
    // --- build and lifetime
    dawn(
        "dawn_build_info",
        Gauge,
        None,
        "Build of the running node; always 1, the labels carry the information.",
        &[
            label("version", "the node's version, e.g. `0.1.0`"),
            label("commit", "the git commit it was built from, or `unknown`"),
        ],
    ),
    dawn(
        "dawn_uptime_seconds",
        Gauge,
        Some(Unit::Seconds),
        "Seconds since the node's metrics exporter was installed (node start).",
        &[],
    ),
    // --- peers and connections
    dawn(
        "dawn_connected_peers",
        Gauge,
        None,
        "Peers with at least one open connection, by the transport of that connection.",
        &[label("transport", "`tcp`, `quic`, `memory`, `other`")],
    ),
    dawn(
        "dawn_peers_discovered_total",
        Counter,
        None,
        "Peers (or new addresses of known peers) found by discovery.",
        &[label("source", "`mdns`, `kademlia`")],
    ),
    dawn(
        "dawn_peers_pruned_total",
        Counter,
        None,
        "Connections closed because the node was above its connection high watermark.",
        &[],
    ),
    dawn(
        "dawn_gossip_published_total",
        Counter,
        None,
        "Gossip messages published by this node, by outcome.",
        &[label("status", "`ok`, `no_peers`, `error`")],
    ),
    dawn(
        "dawn_peer_dials_total",
        Counter,
        None,
        "Dials of peers that were not connected: bootstrap and remembered peers being redialed, and peers found by discovery (mDNS, Kademlia), by outcome.",
        &[label("outcome", "`connected`, `failed`")],
    ),
    dawn(
        "dawn_connections_total",
        Counter,
        None,
        "Peer-to-peer connection attempts by direction and outcome.",
        &[DIRECTION_P2P, label("status", "`established`, `failed`")],
    ),
    dawn(
        "dawn_network_bytes_total",
        Counter,
        Some(Unit::Bytes),
        "Bytes received (inbound) and sent (outbound) on peer-to-peer connections.",
        &[DIRECTION_P2P],
    ),
    // --- calls and messages
    dawn(
        "dawn_calls_total",
        Counter,
        None,
        "Calls handled or made, by direction, JSON-RPC method and outcome.",
        &[CALL_DIRECTION, CALL_METHOD, CALL_STATUS],
    ),
    dawn(
        "dawn_call_duration_seconds",
        Histogram,
        Some(Unit::Seconds),
        "Time from start to response of a call, by direction and JSON-RPC method.",
        &[CALL_DIRECTION, CALL_METHOD],
    ),
    dawn(
        "dawn_message_size_bytes",
        Histogram,
        Some(Unit::Bytes),
        "Size of RPC message bodies sent and received over the peer-to-peer transport.",
        &[
            DIRECTION_P2P,
            label(
                "kind",
                "`request`, `response`, `event` (a notification or request from the serving agent during a call), `event_reply`",
            ),
        ],
    ),
    dawn(
        "dawn_errors_total",
        Counter,
        None,
        "Errors by kind (the error taxonomy's stable labels) and the component that produced them. A failed call counts once on each node that saw it fail: the caller (outbound or local) and the serving node (inbound).",
        &[
            label(
                "kind",
                "an error kind label from `docs/errors.md`, or `other`",
            ),
            label(
                "component",
                "`transport` (dialing, connections, protocol), `resilience` (rate limits, breakers, deadlines, retries), `security` (authorization), `core` (routing and agents), `store` (the database)",
            ),
        ],
    ),
    dawn(
        "dawn_agent_tool_calls_total",
        Counter,
        None,
        "Tool calls served by this node's own agents, by agent, tool and outcome. Only local agents are labelled: remote agent and tool names are chosen by other nodes and would make the label set unbounded.",
        &[
            label("agent", "id of an agent hosted on this node"),
            label(
                "tool",
                "name of a tool of that agent; `other` when the agent has no tool of the requested name",
            ),
            label(
                "status",
                "`ok`, `tool_error` (the tool answered with `isError: true`), or the error kind (e.g. `invalid_params`)",
            ),
        ],
    ),
    dawn(
        "dawn_registry_entries",
        Gauge,
        None,
        "Entries in the mesh registry: available nodes (this one included), nodes whose record is kept but that are unavailable, and the agents and tools of available nodes.",
        &[label(
            "kind",
            "`nodes`, `unavailable_nodes`, `agents`, `tools`",
        )],
    ),
    dawn(
        "dawn_registry_rejected_total",
        Counter,
        None,
        "Registry records (announcements) from peers that were refused, by reason.",
        &[label(
            "reason",
            "`malformed`, `too_large`, `forged`, `replayed`",
        )],
    ),
    // --- resilience
    dawn(
        "dawn_rate_limit_rejected_total",
        Counter,
        None,
        "Calls rejected by the per-caller rate limiter, by quota class.",
        &[label(
            "class",
            "a configured quota class (a trust level) or `default`",
        )],
    ),
    dawn(
        "dawn_rate_limit_keys",
        Gauge,
        None,
        "Callers tracked by the rate limiter after its last eviction sweep.",
        &[],
    ),
    dawn(
        "dawn_bulkhead_rejected_total",
        Counter,
        None,
        "Calls rejected because the caller had too many calls in flight.",
        &[label("reason", "`wait_timeout`, `too_many_waiting`")],
    ),
    dawn(
        "dawn_circuit_breaker_state",
        Gauge,
        None,
        "Circuit breakers (one per remote peer) currently in each state.",
        &[label("state", BREAKER_STATE)],
    ),
    dawn(
        "dawn_circuit_breaker_transitions_total",
        Counter,
        None,
        "Circuit breaker state changes, by old and new state.",
        &[label("from", BREAKER_STATE), label("to", BREAKER_STATE)],
    ),
    dawn(
        "dawn_circuit_breaker_rejected_total",
        Counter,
        None,
        "Calls refused at once because the breaker for their peer was open.",
        &[],
    ),
    dawn(
        "dawn_retries_total",
        Counter,
        None,
        "Retries of failed operations (each attempt after the first).",
        &[],
    ),
    dawn(
        "dawn_retry_budget_exhausted_total",
        Counter,
        None,
        "Retries not made because the retry budget was spent.",
        &[],
    ),
    // --- security and API
    dawn(
        "dawn_audit_events_total",
        Counter,
        None,
        "Audit log records written, by event type.",
        &[label(
            "event",
            "`connection_accepted`, `connection_refused`, `call_allowed`, `call_denied`, `trust_changed`, `announcement_rejected`, `api_auth_failed`, `token_rotated`, `key_unlocked`, `key_unlock_failed`, `passphrase_changed`, `peer_disconnected`, `peer_banned`, `backup_created`, `backup_restored`, `config_reloaded`, `audit_records_dropped`",
        )],
    ),
    dawn(
        "dawn_config_reloads_total",
        Counter,
        None,
        "Configuration reloads (SIGHUP to dawn-node, or `Node::reload_config`), by result.",
        &[label(
            "result",
            "`applied` (valid; reloadable keys now apply), `refused` (invalid; nothing changed)",
        )],
    ),
    dawn(
        "dawn_api_auth_failures_total",
        Counter,
        None,
        "HTTP API requests rejected for a missing or wrong token.",
        &[],
    ),
    dawn(
        "dawn_security_denials_total",
        Counter,
        None,
        "Requests and connections from peers refused by trust and policy (JSON-RPC -32001 `not permitted`, or a refused connection), by the permission they needed.",
        &[label(
            "permission",
            "`connect`, `discover`, `list_tools`, `call_tool`, `call_read_only_tool`, `read_resource`, `get_prompt`",
        )],
    ),
    dawn(
        "dawn_audit_records_dropped_total",
        Counter,
        None,
        "Audit records that could not be queued for the audit log writer (queue full or writer stopped); the log itself notes the gap with an `audit_records_dropped` record.",
        &[],
    ),
    // --- backups
    dawn(
        "dawn_backups_total",
        Counter,
        None,
        "Backups written by the node (scheduled, or asked for through `POST /api/v1/backup` / `dawn-cli backup create`), by outcome.",
        &[label("status", "`ok`, `error`")],
    ),
    dawn(
        "dawn_backup_last_success_timestamp_seconds",
        Gauge,
        Some(Unit::Seconds),
        "Unix time of the last successful backup written by the node (absent until one succeeds).",
        &[],
    ),
    dawn(
        "dawn_backup_last_size_bytes",
        Gauge,
        Some(Unit::Bytes),
        "Size of the archive of the last successful backup written by the node.",
        &[],
    ),
    dawn(
        "dawn_backup_last_duration_seconds",
        Gauge,
        Some(Unit::Seconds),
        "How long the last successful backup written by the node took.",
        &[],
    ),
    // --- resources and dependencies
    dawn(
        "dawn_disk_available_bytes",
        Gauge,
        Some(Unit::Bytes),
        "Bytes available to the node on the filesystem of its data directory.",
        &[],
    ),
    dawn(
        "dawn_mcp_server_up",
        Gauge,
        None,
        "1 if the mounted MCP server answered its last check, 0 if not.",
        &[label(
            "server",
            "name of a mounted MCP server from the configuration",
        )],
    ),
    // --- alerting
    dawn(
        "dawn_alerts_firing",
        Gauge,
        None,
        "Alerts of each built-in or configured rule currently firing.",
        &[label(
            "alertname",
            "a rule name, e.g. `DawnNoPeers` (see docs/alerts)",
        )],
    ),
    dawn(
        "dawn_alert_notifications_total",
        Counter,
        None,
        "Alert notifications by notifier and outcome; `dropped` means the notifier's queue was full.",
        &[
            label("notifier", "`log`, `webhook`, `alertmanager`"),
            label("status", "`sent`, `failed`, `dropped`"),
        ],
    ),
    // --- process (Linux)
    proc_metric(
        "process_cpu_seconds_total",
        Counter,
        Some(Unit::Seconds),
        "Total user and system CPU time spent in seconds.",
    ),
    proc_metric(
        "process_resident_memory_bytes",
        Gauge,
        Some(Unit::Bytes),
        "Resident memory size in bytes.",
    ),
    proc_metric(
        "process_virtual_memory_bytes",
        Gauge,
        Some(Unit::Bytes),
        "Virtual memory size in bytes.",
    ),
    proc_metric(
        "process_open_fds",
        Gauge,
        None,
        "Number of open file descriptors.",
    ),
    proc_metric(
        "process_max_fds",
        Gauge,
        None,
        "Maximum number of open file descriptors.",
    ),
    proc_metric(
        "process_start_time_seconds",
        Gauge,
        Some(Unit::Seconds),
        "Start time of the process since unix epoch in seconds.",
    ),
    proc_metric(
        "process_threads",
        Gauge,
        None,
        "Number of OS threads in the process.",
    ),
];

/// Looks up a metric's documentation by name.
pub fn doc(name: &str) -> Option<&'static MetricDoc> {
    METRICS.iter().find(|d| d.name == name)
}

/// Why the exporter could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Another `metrics` recorder was installed in this process first.
    #[error("another metrics recorder is already installed in this process")]
    OtherRecorderInstalled,
    /// The exporter rejected its configuration (a bug).
    #[error("cannot build the Prometheus exporter: {0}")]
    Build(String),
}

type Source = Arc<dyn Fn() -> String + Send + Sync>;

struct HandleInner {
    prometheus: PrometheusHandle,
    histograms: Arc<crate::histogram::Histograms>,
    started: Instant,
    sources: RwLock<Vec<(String, Source)>>,
}

/// The installed exporter: renders scrapes and holds extra sources.
///
/// Cheap to clone; all clones share one recorder.
#[derive(Clone)]
pub struct MetricsHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sources: Vec<String> = self
            .inner
            .sources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        f.debug_struct("MetricsHandle")
            .field("sources", &sources)
            .finish_non_exhaustive()
    }
}

static INSTALLED: OnceLock<MetricsHandle> = OnceLock::new();
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// How often histogram samples are folded into their buckets when nobody
/// scrapes (bounds the memory held between scrapes).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder, or returns the one this
/// function installed earlier (so several nodes in one process, as in tests,
/// share it).
///
/// Describes every entry of [`METRICS`], configures histogram buckets
/// ([`SECONDS_BUCKETS`] for `*_seconds`, [`BYTES_BUCKETS`] for `*_bytes`,
/// recorded straight into atomic bucket counters, see
/// [`crate::histogram`]; other histograms are exported as summaries), and
/// starts a small
/// background thread that folds histogram samples into buckets every few
/// seconds. It also creates, at 0, the series that alerting expects to exist
/// from the start: `dawn_connected_peers{transport="tcp"|"quic"}` and
/// `dawn_circuit_breaker_state{state="closed"|"open"|"half_open"}` (the code
/// maintaining them should `set` absolute values).
pub fn install() -> Result<MetricsHandle, MetricsError> {
    if let Some(h) = INSTALLED.get() {
        return Ok(h.clone());
    }
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(h) = INSTALLED.get() {
        return Ok(h.clone());
    }
    let build_error = |e: BuildError| match e {
        BuildError::FailedToSetGlobalRecorder(_) => MetricsError::OtherRecorderInstalled,
        other => MetricsError::Build(other.to_string()),
    };
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES_BUCKETS))
        .map_err(build_error)?
        .build_recorder();
    let prometheus = recorder.handle();
    let histograms = Arc::new(crate::histogram::Histograms::default());
    ::metrics::set_global_recorder(crate::histogram::DawnRecorder {
        prometheus: recorder,
        histograms: Arc::clone(&histograms),
    })
    .map_err(|_| MetricsError::OtherRecorderInstalled)?;
    describe_all();
    let upkeep = prometheus.clone();
    if let Err(e) = std::thread::Builder::new()
        .name("dawn-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })
    {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded at scrape time only");
    }
    let handle = MetricsHandle {
        inner: Arc::new(HandleInner {
            prometheus,
            histograms,
            started: Instant::now(),
            sources: RwLock::new(Vec::new()),
        }),
    };
    let installed = INSTALLED.get_or_init(|| handle);
    // Series that must exist from the start, so that "no peers" and
    // "breaker open" read 0 rather than "no data" in Prometheus and in the
    // alert engine before the first event.
    ::metrics::gauge!("dawn_uptime_seconds").set(0.0);
    for transport in ["tcp", "quic"] {
        ::metrics::gauge!("dawn_connected_peers", "transport" => transport).set(0.0);
    }
    for state in ["closed", "open", "half_open"] {
        ::metrics::gauge!("dawn_circuit_breaker_state", "state" => state).set(0.0);
    }
    Ok(installed.clone())
}

/// The handle [`install`] returned, if it has been called in this process.
pub fn installed() -> Option<MetricsHandle> {
    INSTALLED.get().cloned()
}

/// Whether [`install`] has installed the recorder in this process (cheap:
/// for code that caches metric handles, which is only right once the
/// recorder that will serve them is in place).
pub fn is_installed() -> bool {
    INSTALLED.get().is_some()
}

/// Sets `dawn_build_info{version, commit} 1`. Call once at start-up.
pub fn set_build_info(version: &str, commit: &str) {
    ::metrics::gauge!(
        "dawn_build_info",
        "version" => version.to_owned(),
        "commit" => commit.to_owned()
    )
    .set(1.0);
}

/// Registers help text and units of every recorder metric in [`METRICS`]
/// with the installed recorder. [`install`] does this; it is public for
/// programs that install their own recorder.
pub fn describe_all() {
    for d in METRICS
        .iter()
        .filter(|d| d.origin == MetricOrigin::Recorder)
    {
        match (d.kind, d.unit) {
            (MetricKind::Counter, Some(u)) => ::metrics::describe_counter!(d.name, u, d.help),
            (MetricKind::Counter, None) => ::metrics::describe_counter!(d.name, d.help),
            (MetricKind::Gauge, Some(u)) => ::metrics::describe_gauge!(d.name, u, d.help),
            (MetricKind::Gauge, None) => ::metrics::describe_gauge!(d.name, d.help),
            (MetricKind::Histogram, Some(u)) => ::metrics::describe_histogram!(d.name, u, d.help),
            (MetricKind::Histogram, None) => ::metrics::describe_histogram!(d.name, d.help),
        }
    }
}

impl MetricsHandle {
    /// The scrape body: recorder metrics, process metrics and every added
    /// source, merged (no family twice, no OpenMetrics-only syntax).
    pub fn render(&self) -> String {
        self.render_with(&[])
    }

    /// Like [`render`](Self::render), with further exposition texts appended
    /// (Prometheus or OpenMetrics; merged with the same rules).
    pub fn render_with(&self, extra: &[&str]) -> String {
        let recorder = self.render_recorder_counters_and_gauges();
        let histograms = self.inner.histograms.render();
        let process = process::render();
        let sources: Vec<Source> = self
            .inner
            .sources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, s)| Arc::clone(s))
            .collect();
        let produced: Vec<String> = sources.iter().map(|s| s()).collect();
        let mut parts: Vec<&str> = Vec::with_capacity(3 + produced.len() + extra.len());
        parts.push(&recorder);
        parts.push(&histograms);
        parts.push(&process);
        parts.extend(produced.iter().map(String::as_str));
        parts.extend_from_slice(extra);
        exposition::merge(&parts)
    }

    /// Only the metrics recorded through the `metrics` facade (what the
    /// alert engine's [`RecorderSource`](crate::alerts::RecorderSource) reads).
    pub fn render_recorder(&self) -> String {
        let mut text = self.render_recorder_counters_and_gauges();
        text.push_str(&self.inner.histograms.render());
        text
    }

    fn render_recorder_counters_and_gauges(&self) -> String {
        ::metrics::gauge!("dawn_uptime_seconds").set(self.inner.started.elapsed().as_secs_f64());
        self.inner.prometheus.render()
    }

    /// Adds (or replaces, by `name`) a producer of exposition text called at
    /// every scrape, e.g. a closure encoding libp2p's `prometheus_client`
    /// registry. Its output may be OpenMetrics; it is translated.
    pub fn add_source(
        &self,
        name: impl Into<String>,
        source: impl Fn() -> String + Send + Sync + 'static,
    ) {
        let name = name.into();
        let mut sources = self
            .inner
            .sources
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        sources.retain(|(n, _)| *n != name);
        sources.push((name, Arc::new(source)));
    }

    /// Removes a source added with [`add_source`](Self::add_source); returns
    /// whether it existed.
    pub fn remove_source(&self, name: &str) -> bool {
        let mut sources = self
            .inner
            .sources
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = sources.len();
        sources.retain(|(n, _)| n != name);
        sources.len() != before
    }

    /// Time since [`install`].
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// An axum router serving `GET <path>` with the scrape body.
    pub fn router(&self, path: &str) -> axum::Router {
        let handle = self.clone();
        axum::Router::new().route(
            path,
            axum::routing::get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
                        handle.render(),
                    )
                }
            }),
        )
    }
}

/// Compares a scrape with [`METRICS`]: every `dawn_*` and `process_*` family
/// must be listed with the same type and have help text. Returns one message
/// per problem (empty when consistent).
pub fn documentation_problems(exposition: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for family in exposition::families(exposition) {
        if !(family.name.starts_with("dawn_") || family.name.starts_with("process_")) {
            continue;
        }
        match doc(&family.name) {
            None => problems.push(format!(
                "{} ({}) is exported but not listed in dawn_observe::metrics::METRICS",
                family.name, family.kind
            )),
            Some(d) if d.kind.as_str() != family.kind => problems.push(format!(
                "{} is exported as a {} but documented as a {}",
                family.name,
                family.kind,
                d.kind.as_str()
            )),
            Some(_) if !family.has_help => {
                problems.push(format!("{} has no # HELP line", family.name));
            }
            Some(_) => {}
        }
    }
    problems
}

/// Renders `docs/metrics.md` from [`METRICS`].
pub fn markdown() -> String {
    let mut out = String::from(
        "# Metrics\n\n\
         <!-- Generated from crates/dawn-observe/src/metrics.rs (METRICS); do not edit. -->\n\n\
         A node serves Prometheus metrics at `/metrics` on its API address (`api.listen`; path and \
         access in `observability.metrics`, no token needed unless `observability.metrics.require_token` \
         is set). The response also contains rust-libp2p's own metrics (`libp2p_*`) and the process \
         metrics below. Metrics are process-wide: a program embedding several nodes exports their sum. \
         See docs/observability.md for health checks, alerts and dashboards.\n\n\
         Conventions: every Dawn metric starts with `dawn_`; durations are in seconds and sizes in \
         bytes; only counters end in `_total`. Label values always come from small fixed sets: \
         peer ids, request ids and names chosen by remote nodes are never labels.\n\n\
         Histograms ending in `_seconds` have buckets from 100 µs to 30 s; those ending in `_bytes` \
         from 64 B to 64 MiB.\n\n\
         | Name | Type | Labels | Description |\n|---|---|---|---|\n",
    );
    for d in METRICS
        .iter()
        .filter(|d| d.origin == MetricOrigin::Recorder)
    {
        write_row(&mut out, d);
    }
    out.push_str(
        "\n## Process metrics\n\n\
         Standard process metrics, read from `/proc/self` at each scrape (Linux only).\n\n\
         | Name | Type | Labels | Description |\n|---|---|---|---|\n",
    );
    for d in METRICS.iter().filter(|d| d.origin == MetricOrigin::Process) {
        write_row(&mut out, d);
    }
    out
}

fn write_row(out: &mut String, d: &MetricDoc) {
    let labels = if d.labels.is_empty() {
        "—".to_owned()
    } else {
        d.labels
            .iter()
            .map(|l| format!("`{}`: {}", l.name, l.values))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    let _ = writeln!(
        out,
        "| `{}` | {} | {} | {} |",
        d.name,
        d.kind.as_str(),
        labels,
        d.help
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_follows_naming_conventions() {
        let mut names = std::collections::HashSet::new();
        for d in METRICS {
            assert!(names.insert(d.name), "{} listed twice", d.name);
            assert!(
                d.name.starts_with("dawn_") || d.name.starts_with("process_"),
                "{}",
                d.name
            );
            assert_eq!(
                d.kind == MetricKind::Counter,
                d.name.ends_with("_total"),
                "{}: _total exactly on counters",
                d.name
            );
            if d.kind == MetricKind::Histogram {
                assert!(
                    d.name.ends_with("_seconds") || d.name.ends_with("_bytes"),
                    "{}: histograms need a bucketed unit",
                    d.name
                );
            }
            match d.unit {
                Some(Unit::Seconds) => assert!(
                    d.name.contains("_seconds"),
                    "{}: seconds in the name",
                    d.name
                ),
                Some(Unit::Bytes) => assert!(d.name.contains("_bytes"), "{}", d.name),
                _ => {}
            }
            assert!(d.help.ends_with('.'), "{}: help is a sentence", d.name);
            for l in d.labels {
                assert!(
                    l.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{}",
                    l.name
                );
            }
        }
        let md = markdown();
        for d in METRICS {
            assert!(md.contains(&format!("`{}`", d.name)));
        }
    }
}
