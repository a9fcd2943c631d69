//! Health and readiness.
//!
//! - **Health** ([`HealthChecker`]): named component checks, run
//!   concurrently, each under a timeout (a check that hangs makes *its*
//!   component unhealthy, `timed out after 5s`; the endpoint answers anyway).
//!   Results are cached for a short TTL so a storm of probes runs the checks
//!   once. The overall status is the worst component status, except that a
//!   check registered as non-critical can only make the node degraded.
//! - **Readiness** ([`Readiness`]): a set of conditions the node must reach
//!   before it should receive traffic (store open, transport listening,
//!   initial bootstrap done or timed out) and that it leaves when shutting
//!   down.
//! - **HTTP** ([`router`]): `/health/live`, `/health/ready`, `/health`; 200 for
//!   healthy or degraded (and ready), 503 for unhealthy (or not ready).
//!
//! Ready-made checks: [`check_fn`] / [`sync_check`] wrap closures,
//! [`PeerCountCheck`], [`DiskSpaceCheck`] and [`AlertStateCheck`].

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{alerts::AlertEngineHandle, config::DiskThresholds, units};

/// Health of a component or of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working normally.
    Healthy,
    /// Working, with reduced capacity or a problem needing attention.
    Degraded,
    /// Not working.
    Unhealthy,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `unhealthy`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    /// 200 for healthy and degraded, 503 for unhealthy.
    pub const fn http_status(self) -> StatusCode {
        match self {
            HealthStatus::Healthy | HealthStatus::Degraded => StatusCode::OK,
            HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Status of the component.
    pub status: HealthStatus,
    /// What was found, for operators.
    pub message: String,
}

impl CheckResult {
    /// A healthy result.
    pub fn healthy(message: impl Into<String>) -> Self {
        CheckResult {
            status: HealthStatus::Healthy,
            message: message.into(),
        }
    }

    /// A degraded result.
    pub fn degraded(message: impl Into<String>) -> Self {
        CheckResult {
            status: HealthStatus::Degraded,
            message: message.into(),
        }
    }

    /// An unhealthy result.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        CheckResult {
            status: HealthStatus::Unhealthy,
            message: message.into(),
        }
    }
}

/// A component check. Implementations should really exercise the component
/// (read and write the store, look at the listeners) and may take a while;
/// the checker bounds them with a timeout.
#[async_trait::async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// Runs the check.
    async fn check(&self) -> CheckResult;
}

/// How a check is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Whether an unhealthy result makes the node unhealthy (`true`) or only
    /// degraded (`false`).
    pub critical: bool,
    /// This check's timeout instead of the checker's default.
    pub timeout: Option<Duration>,
}

impl CheckOptions {
    /// A critical check with the default timeout.
    pub const fn critical() -> Self {
        CheckOptions {
            critical: true,
            timeout: None,
        }
    }

    /// A non-critical check with the default timeout.
    pub const fn non_critical() -> Self {
        CheckOptions {
            critical: false,
            timeout: None,
        }
    }

    /// The same options with their own timeout.
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Fixed facts and tunables of a [`HealthChecker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Reported `version`.
    pub version: String,
    /// Reported `node_id`.
    pub node_id: String,
    /// How long a report is reused (0: never).
    pub cache_ttl: Duration,
    /// Default per-check timeout.
    pub check_timeout: Duration,
}

impl HealthSettings {
    /// Settings from `observability.health`.
    pub fn from_config(
        config: &crate::config::HealthConfig,
        version: impl Into<String>,
        node_id: impl Into<String>,
    ) -> Self {
        HealthSettings {
            version: version.into(),
            node_id: node_id.into(),
            cache_ttl: config.cache_ttl,
            check_timeout: config.check_timeout,
        }
    }
}

/// One component in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The check's name.
    pub name: String,
    /// Its status (as the check reported it).
    pub status: HealthStatus,
    /// Its message.
    pub message: String,
    /// How long it ran.
    pub duration_ms: u64,
    /// Whether it can make the node unhealthy.
    pub critical: bool,
}

/// The body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Worst component status (non-critical checks count as at most degraded).
    pub status: HealthStatus,
    /// Node version.
    pub version: String,
    /// Node id.
    pub node_id: String,
    /// Seconds since the checker was created.
    pub uptime_secs: u64,
    /// Every check, in registration order.
    pub checks: Vec<CheckReport>,
}

impl HealthReport {
    /// The overall status from a set of component reports.
    pub fn aggregate(checks: &[CheckReport]) -> HealthStatus {
        checks
            .iter()
            .map(|c| match (c.status, c.critical) {
                (HealthStatus::Unhealthy, false) => HealthStatus::Degraded,
                (s, _) => s,
            })
            .max()
            .unwrap_or(HealthStatus::Healthy)
    }
}

#[derive(Clone)]
struct Registered {
    name: String,
    options: CheckOptions,
    check: Arc<dyn HealthCheck>,
}

/// Runs the registered checks and aggregates them; see the module docs.
pub struct HealthChecker {
    settings: HealthSettings,
    started: Instant,
    checks: RwLock<Vec<Registered>>,
    cache: tokio::sync::Mutex<Option<(Instant, Arc<HealthReport>)>>,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker")
            .field("settings", &self.settings)
            .field("checks", &self.check_names())
            .finish_non_exhaustive()
    }
}

impl HealthChecker {
    /// A checker with no checks yet.
    pub fn new(settings: HealthSettings) -> Self {
        HealthChecker {
            settings,
            started: Instant::now(),
            checks: RwLock::new(Vec::new()),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// Adds a check (replacing one of the same name). Builder style.
    #[must_use]
    pub fn with_check(
        self,
        name: impl Into<String>,
        options: CheckOptions,
        check: impl HealthCheck,
    ) -> Self {
        self.add_check(name, options, check);
        self
    }

    /// Adds a check, replacing one with the same name (e.g. when an MCP
    /// server is re-mounted).
    pub fn add_check(
        &self,
        name: impl Into<String>,
        options: CheckOptions,
        check: impl HealthCheck,
    ) {
        let name = name.into();
        let mut checks = self.checks.write().unwrap_or_else(PoisonError::into_inner);
        let entry = Registered {
            name: name.clone(),
            options,
            check: Arc::new(check),
        };
        match checks.iter_mut().find(|c| c.name == name) {
            Some(existing) => *existing = entry,
            None => checks.push(entry),
        }
    }

    /// Removes a check; returns whether it existed.
    pub fn remove_check(&self, name: &str) -> bool {
        let mut checks = self.checks.write().unwrap_or_else(PoisonError::into_inner);
        let before = checks.len();
        checks.retain(|c| c.name != name);
        checks.len() != before
    }

    /// Names of the registered checks.
    pub fn check_names(&self) -> Vec<String> {
        self.checks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// The settings it was created with.
    pub fn settings(&self) -> &HealthSettings {
        &self.settings
    }

    /// The current report: cached if younger than the TTL, otherwise all
    /// checks run now. Callers arriving while checks run wait for that run
    /// and share its result (even with a TTL of 0), so a probe storm never
    /// runs the checks more than once at a time.
    pub async fn report(&self) -> Arc<HealthReport> {
        let requested = Instant::now();
        let mut cache = self.cache.lock().await;
        if let Some((at, report)) = cache.as_ref() {
            let fresh =
                !self.settings.cache_ttl.is_zero() && at.elapsed() < self.settings.cache_ttl;
            let finished_after_request = *at > requested;
            if fresh || finished_after_request {
                return Arc::clone(report);
            }
        }
        let report = Arc::new(self.run().await);
        *cache = Some((Instant::now(), Arc::clone(&report)));
        report
    }

    /// Runs every check now, ignoring and not updating the cache.
    pub async fn run(&self) -> HealthReport {
        let checks: Vec<Registered> = self
            .checks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let default_timeout = self.settings.check_timeout;
        let runs = checks.into_iter().map(|c| async move {
            let timeout = c.options.timeout.unwrap_or(default_timeout);
            let started = Instant::now();
            let check = Arc::clone(&c.check);
            let mut task = tokio::spawn(async move { check.check().await });
            let result = match tokio::time::timeout(timeout, &mut task).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) if e.is_panic() => CheckResult::unhealthy("the check panicked"),
                Ok(Err(_)) => CheckResult::unhealthy("the check was cancelled"),
                Err(_) => {
                    task.abort();
                    CheckResult::unhealthy(format!(
                        "timed out after {}",
                        units::format_duration(timeout)
                    ))
                }
            };
            CheckReport {
                name: c.name,
                status: result.status,
                message: result.message,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                critical: c.options.critical,
            }
        });
        let checks = futures::future::join_all(runs).await;
        HealthReport {
            status: HealthReport::aggregate(&checks),
            version: self.settings.version.clone(),
            node_id: self.settings.node_id.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            checks,
        }
    }
}

/// A check from an async closure.
pub struct FnCheck<F>(F);

/// Wraps `|| async { CheckResult::healthy("ok") }` as a [`HealthCheck`].
pub fn check_fn<F, Fut>(f: F) -> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckResult> + Send + 'static,
{
    FnCheck(f)
}

#[async_trait::async_trait]
impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckResult> + Send + 'static,
{
    async fn check(&self) -> CheckResult {
        (self.0)().await
    }
}

/// A check from a quick synchronous closure.
pub struct SyncCheck<F>(F);

/// Wraps `|| CheckResult::healthy("ok")` as a [`HealthCheck`]. The closure
/// must not block; use [`check_fn`] with `spawn_blocking` for slow work.
pub fn sync_check<F>(f: F) -> SyncCheck<F>
where
    F: Fn() -> CheckResult + Send + Sync + 'static,
{
    SyncCheck(f)
}

#[async_trait::async_trait]
impl<F> HealthCheck for SyncCheck<F>
where
    F: Fn() -> CheckResult + Send + Sync + 'static,
{
    async fn check(&self) -> CheckResult {
        (self.0)()
    }
}

/// Degraded when fewer peers than the minimum are connected.
pub struct PeerCountCheck {
    count: Box<dyn Fn() -> usize + Send + Sync>,
    min_peers: usize,
}

impl PeerCountCheck {
    /// `count` returns the number of connected peers.
    pub fn new(min_peers: usize, count: impl Fn() -> usize + Send + Sync + 'static) -> Self {
        PeerCountCheck {
            count: Box::new(count),
            min_peers,
        }
    }
}

#[async_trait::async_trait]
impl HealthCheck for PeerCountCheck {
    async fn check(&self) -> CheckResult {
        let n = (self.count)();
        let msg = format!("{n} peers connected (minimum {})", self.min_peers);
        if n < self.min_peers {
            CheckResult::degraded(msg)
        } else {
            CheckResult::healthy(msg)
        }
    }
}

/// Space on the filesystem holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes available to unprivileged users.
    pub available: u64,
    /// Size of the filesystem.
    pub total: u64,
}

/// Reads the space of the filesystem holding `path` (blocking: call from
/// `spawn_blocking` in async code).
pub fn disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(path)?;
        Ok(DiskSpace {
            available: s.f_bavail.saturating_mul(s.f_frsize),
            total: s.f_blocks.saturating_mul(s.f_frsize),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "disk space is only read on Unix",
        ))
    }
}

/// Reads the space of `path`'s filesystem and sets `dawn_disk_available_bytes`
/// (blocking; the alert engine's pre-evaluation hook or a timer can call it).
pub fn record_disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    let space = disk_space(path)?;
    #[allow(clippy::cast_precision_loss)]
    ::metrics::gauge!("dawn_disk_available_bytes").set(space.available as f64);
    Ok(space)
}

/// Free space in a directory against [`DiskThresholds`]; also updates
/// `dawn_disk_available_bytes`.
pub struct DiskSpaceCheck {
    path: PathBuf,
    thresholds: DiskThresholds,
}

impl DiskSpaceCheck {
    /// Checks the filesystem holding `path` (normally the data directory).
    pub fn new(path: impl Into<PathBuf>, thresholds: DiskThresholds) -> Self {
        DiskSpaceCheck {
            path: path.into(),
            thresholds,
        }
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[async_trait::async_trait]
impl HealthCheck for DiskSpaceCheck {
    async fn check(&self) -> CheckResult {
        let path = self.path.clone();
        let space = match tokio::task::spawn_blocking(move || record_disk_space(&path)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return CheckResult::unhealthy(format!(
                    "cannot read free space of {}: {e}",
                    self.path.display()
                ));
            }
            Err(_) => return CheckResult::unhealthy("the disk check task failed"),
        };
        #[allow(clippy::cast_precision_loss)]
        let percent = if space.total == 0 {
            0.0
        } else {
            space.available as f64 * 100.0 / space.total as f64
        };
        let msg = format!(
            "{} free of {} ({percent:.0}%) in {}",
            human_bytes(space.available),
            human_bytes(space.total),
            self.path.display()
        );
        if space.available < self.thresholds.unhealthy_below {
            CheckResult::unhealthy(format!(
                "{msg}; below {}",
                human_bytes(self.thresholds.unhealthy_below)
            ))
        } else if space.available < self.thresholds.degraded_below {
            CheckResult::degraded(format!(
                "{msg}; below {}",
                human_bytes(self.thresholds.degraded_below)
            ))
        } else {
            CheckResult::healthy(msg)
        }
    }
}

/// Reflects the alert engine: healthy when nothing fires, degraded while
/// alerts fire, unhealthy while an alert with `severity="critical"` fires.
/// Register it non-critical unless alerts should fail the health endpoint.
pub struct AlertStateCheck {
    alerts: AlertEngineHandle,
}

impl AlertStateCheck {
    /// Reads the engine through its handle.
    pub fn new(alerts: AlertEngineHandle) -> Self {
        AlertStateCheck { alerts }
    }
}

#[async_trait::async_trait]
impl HealthCheck for AlertStateCheck {
    async fn check(&self) -> CheckResult {
        let firing = self.alerts.firing();
        if firing.is_empty() {
            return CheckResult::healthy("no alerts firing");
        }
        let mut names: Vec<String> = firing.iter().map(|a| a.describe()).collect();
        names.sort();
        names.dedup();
        let msg = format!("{} alert(s) firing: {}", firing.len(), names.join(", "));
        if firing
            .iter()
            .any(|a| a.labels.get("severity").map(String::as_str) == Some("critical"))
        {
            CheckResult::unhealthy(msg)
        } else {
            CheckResult::degraded(msg)
        }
    }
}

/// Names of the node's standard readiness conditions.
pub mod conditions {
    /// The database is open.
    pub const STORE: &str = "store";
    /// The transport listens on its addresses.
    pub const TRANSPORT: &str = "transport";
    /// The initial bootstrap finished or timed out.
    pub const BOOTSTRAP: &str = "bootstrap";
}

#[derive(Debug, Clone)]
struct Condition {
    name: String,
    ready: bool,
    detail: String,
}

#[derive(Debug, Default)]
struct ReadinessState {
    conditions: Vec<Condition>,
    shutting_down: bool,
}

/// Conditions the node must meet to receive traffic. Cheap to clone; clones
/// share state.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<Mutex<ReadinessState>>,
}

/// One condition in a [`ReadinessReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionReport {
    /// Condition name.
    pub name: String,
    /// Whether it is met.
    pub ready: bool,
    /// Why not, or a note on how it was met.
    pub detail: String,
}

/// The body of `GET /health/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessReport {
    /// Every condition met and not shutting down.
    pub ready: bool,
    /// Why not ready (empty when ready).
    pub reasons: Vec<String>,
    /// Every condition.
    pub conditions: Vec<ConditionReport>,
}

impl ReadinessReport {
    /// 200 when ready, 503 when not.
    pub const fn http_status(&self) -> StatusCode {
        if self.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

impl Readiness {
    /// No conditions: ready until shutdown.
    pub fn new() -> Self {
        Readiness::default()
    }

    /// The node's standard conditions, all unmet: store, transport,
    /// bootstrap.
    pub fn node_default() -> Self {
        let r = Readiness::new();
        r.require(conditions::STORE, "the store is not open yet");
        r.require(conditions::TRANSPORT, "the transport is not listening yet");
        r.require(
            conditions::BOOTSTRAP,
            "the initial bootstrap has not finished",
        );
        r
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReadinessState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, name: &str, ready: bool, detail: String) {
        let mut state = self.lock();
        match state.conditions.iter_mut().find(|c| c.name == name) {
            Some(c) => {
                c.ready = ready;
                c.detail = detail;
            }
            None => state.conditions.push(Condition {
                name: name.to_owned(),
                ready,
                detail,
            }),
        }
    }

    /// Adds an unmet condition (or marks an existing one unmet).
    pub fn require(&self, name: &str, reason: impl Into<String>) {
        self.set(name, false, reason.into());
    }

    /// Marks a condition met.
    pub fn set_ready(&self, name: &str) {
        self.set(name, true, String::new());
    }

    /// Marks a condition met, with a note (e.g. "timed out after 30s").
    pub fn set_ready_with_note(&self, name: &str, note: impl Into<String>) {
        self.set(name, true, note.into());
    }

    /// Marks a condition unmet.
    pub fn set_not_ready(&self, name: &str, reason: impl Into<String>) {
        self.set(name, false, reason.into());
    }

    /// Whether a condition is met (`false` if unknown).
    pub fn is_met(&self, name: &str) -> bool {
        self.lock()
            .conditions
            .iter()
            .any(|c| c.name == name && c.ready)
    }

    /// Marks the condition met after `timeout` unless it was met before —
    /// for "initial bootstrap done or timed out". Needs a tokio runtime.
    pub fn ready_after(&self, name: &str, timeout: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let note = format!("timed out after {}", units::format_duration(timeout));
            let mut state = this.lock();
            match state.conditions.iter_mut().find(|c| c.name == name) {
                Some(c) if c.ready => {}
                Some(c) => {
                    c.ready = true;
                    c.detail = note;
                }
                None => state.conditions.push(Condition {
                    name,
                    ready: true,
                    detail: note,
                }),
            }
        })
    }

    /// From now on the node is not ready (reason "shutting down").
    pub fn begin_shutdown(&self) {
        self.lock().shutting_down = true;
    }

    /// Whether [`begin_shutdown`](Self::begin_shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    /// The current state.
    pub fn report(&self) -> ReadinessReport {
        let state = self.lock();
        let mut reasons = Vec::new();
        if state.shutting_down {
            reasons.push("shutting down".to_owned());
        }
        for c in state.conditions.iter().filter(|c| !c.ready) {
            reasons.push(format!("{}: {}", c.name, c.detail));
        }
        ReadinessReport {
            ready: reasons.is_empty(),
            reasons,
            conditions: state
                .conditions
                .iter()
                .map(|c| ConditionReport {
                    name: c.name.clone(),
                    ready: c.ready,
                    detail: c.detail.clone(),
                })
                .collect(),
        }
    }
}

/// The body of `GET /health/live`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessReport {
    /// Always `alive`: answering at all is the signal.
    pub status: String,
}

/// Routes `GET /health/live`, `GET /health/ready` and `GET /health` for the
/// node's API server (merge it into the API router).
pub fn router(checker: Arc<HealthChecker>, readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async {
                Json(LivenessReport {
                    status: "alive".into(),
                })
            }),
        )
        .route(
            "/health/ready",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let report = readiness.report();
                    (report.http_status(), Json(report)).into_response()
                }
            }),
        )
        .route(
            "/health",
            get(move || {
                let checker = Arc::clone(&checker);
                async move {
                    let report = checker.report().await;
                    (report.status.http_status(), Json(report.as_ref().clone())).into_response()
                }
            }),
        )
}
