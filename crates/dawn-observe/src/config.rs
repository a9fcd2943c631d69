//! The `observability` configuration section: metrics, health and alerts.
//!
//! ```toml
//! [observability.metrics]
//! enabled = true
//! path = "/metrics"
//! require_token = false     # the API bearer token on /metrics
//!
//! [observability.health]
//! cache_ttl = "1s"          # results reused for this long (0 = always run checks)
//! check_timeout = "5s"      # a check running longer is unhealthy
//! min_peers = 1             # fewer connected peers = degraded (0 = no check)
//! disk = { degraded_below = "1GiB", unhealthy_below = "100MiB" }
//! bootstrap_timeout = "30s" # ready without a bootstrap peer after this long
//! require_token = false     # the API bearer token on GET /health
//!
//! [observability.alerts]
//! enabled = true
//! evaluation_interval = "15s"
//! resend_interval = "1m"    # firing alerts are re-sent to Alertmanager this often
//! no_peers = { enabled = true, for = "2m" }
//! error_rate = { enabled = true, threshold = 0.1, window = "5m", for = "2m" }
//! circuit_breaker_open = { enabled = true, for = "1m" }
//! disk_space_low = { enabled = true, below = "1GiB", for = "5m" }
//! mcp_server_down = { enabled = true, for = "1m" }
//! log = { enabled = true }
//!
//! [[observability.alerts.webhooks]]
//! url = "https://hooks.example.com/dawn"
//! secret_env = "DAWN_WEBHOOK_SECRET"   # or secret = "..."
//!
//! [[observability.alerts.alertmanagers]]
//! url = "http://alertmanager:9093"
//! ```
//!
//! Durations are written `500ms`, `30s`, `5m`, `2h`, `1d` or as a number of
//! seconds; sizes `512KiB`, `4MiB`, `1GiB`, `10MB` or a number of bytes.
//! [`KEYS`] documents every key for `docs/configuration.md`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units;

/// `observability`: metrics, health checks and alerting.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Health endpoint behaviour and thresholds.
    pub health: HealthConfig,
    /// The alert engine: rules and notifiers.
    pub alerts: AlertsConfig,
}

/// `observability.metrics`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve metrics (and record them). Default `true`.
    pub enabled: bool,
    /// HTTP path on the API server. Default `/metrics`.
    pub path: String,
    /// Require the API bearer token on the metrics path. Default `false`:
    /// Prometheus scrapes without credentials, and the metrics carry no
    /// secrets, peer ids or request data.
    pub require_token: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            path: "/metrics".into(),
            require_token: false,
        }
    }
}

/// `observability.health`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How long a health report is reused, protecting the node from probe
    /// storms. Default `1s`; `0s` runs the checks on every request.
    #[serde(with = "units::duration")]
    pub cache_ttl: Duration,
    /// Longest a single check may run before it counts as unhealthy.
    /// Default `5s`.
    #[serde(with = "units::duration")]
    pub check_timeout: Duration,
    /// Fewer connected peers than this makes the node degraded. Default 1;
    /// 0 disables the peer check.
    pub min_peers: u32,
    /// Free-space thresholds for the data directory.
    pub disk: DiskThresholds,
    /// Longest the node waits for a bootstrap peer before it reports ready
    /// anyway. Default `30s`.
    #[serde(with = "units::duration")]
    pub bootstrap_timeout: Duration,
    /// Require the API bearer token on `GET /health` (the detailed report).
    /// `/health/live` and `/health/ready` never need it. Default `false`.
    pub require_token: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            cache_ttl: Duration::from_secs(1),
            check_timeout: Duration::from_secs(5),
            min_peers: 1,
            disk: DiskThresholds::default(),
            bootstrap_timeout: Duration::from_secs(30),
            require_token: false,
        }
    }
}

/// `observability.health.disk`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskThresholds {
    /// Less free space than this is degraded. Default `1GiB`.
    #[serde(with = "units::size")]
    pub degraded_below: u64,
    /// Less free space than this is unhealthy. Default `100MiB`.
    #[serde(with = "units::size")]
    pub unhealthy_below: u64,
}

impl Default for DiskThresholds {
    fn default() -> Self {
        DiskThresholds {
            degraded_below: 1 << 30,
            unhealthy_below: 100 << 20,
        }
    }
}

/// `observability.alerts`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Run the alert engine. Default `true`.
    pub enabled: bool,
    /// How often rules are evaluated. Default `15s`.
    #[serde(with = "units::duration")]
    pub evaluation_interval: Duration,
    /// How often still-firing alerts are re-sent to Alertmanager (which
    /// otherwise resolves them on its own). Default `1m`.
    #[serde(with = "units::duration")]
    pub resend_interval: Duration,
    /// Link put in notifications (`generatorURL`), e.g. the node's health
    /// page. Default unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
    /// `DawnNoPeers`: no peer connected.
    pub no_peers: ForRule,
    /// `DawnHighErrorRate`: errors per second over a window.
    pub error_rate: ErrorRateRule,
    /// `DawnCircuitBreakerOpen`: a breaker to some peer is open.
    pub circuit_breaker_open: ForRule,
    /// `DawnDiskSpaceLow`: little free space in the data directory.
    pub disk_space_low: DiskSpaceRule,
    /// `DawnMcpServerDown`: a mounted MCP server does not answer.
    pub mcp_server_down: ForRule,
    /// The log notifier.
    pub log: LogNotifierConfig,
    /// Webhook receivers.
    pub webhooks: Vec<WebhookConfig>,
    /// Alertmanager instances (all receive every alert).
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            evaluation_interval: Duration::from_secs(15),
            resend_interval: Duration::from_secs(60),
            generator_url: None,
            no_peers: ForRule::new(Duration::from_secs(120)),
            error_rate: ErrorRateRule::default(),
            circuit_breaker_open: ForRule::new(Duration::from_secs(60)),
            disk_space_low: DiskSpaceRule::default(),
            mcp_server_down: ForRule::new(Duration::from_secs(60)),
            log: LogNotifierConfig::default(),
            webhooks: Vec::new(),
            alertmanagers: Vec::new(),
        }
    }
}

/// A built-in rule whose only settings are on/off and its `for` duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForRule {
    /// Evaluate this rule. Default `true`.
    pub enabled: bool,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for", with = "units::duration")]
    pub for_: Duration,
}

impl ForRule {
    /// An enabled rule with this `for` duration.
    pub const fn new(for_: Duration) -> Self {
        ForRule {
            enabled: true,
            for_,
        }
    }
}

impl Default for ForRule {
    fn default() -> Self {
        ForRule::new(Duration::from_secs(60))
    }
}

/// Error kinds caused by callers rather than by the node, left out of the
/// error-rate rule by default.
pub const CALLER_ERROR_KINDS: &[&str] = &[
    "parse_error",
    "invalid_request",
    "method_not_found",
    "invalid_params",
    "unauthorized",
    "unknown_resource",
    "unknown_agent",
    "unknown_tool",
    "unknown_prompt",
    "rate_limited",
];

/// `observability.alerts.error_rate`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorRateRule {
    /// Evaluate this rule. Default `true`.
    pub enabled: bool,
    /// Errors per second (summed over kinds and components) above which the
    /// condition holds. Default `0.1` (30 errors in 5 minutes).
    pub threshold: f64,
    /// Window the rate is computed over. Default `5m`.
    #[serde(with = "units::duration")]
    pub window: Duration,
    /// How long the rate must stay above the threshold. Default `2m`.
    #[serde(rename = "for", with = "units::duration")]
    pub for_: Duration,
    /// Error kinds not counted. Default: the kinds caused by callers
    /// ([`CALLER_ERROR_KINDS`]); `[]` counts every error.
    pub exclude_kinds: Vec<String>,
}

impl Default for ErrorRateRule {
    fn default() -> Self {
        ErrorRateRule {
            enabled: true,
            threshold: 0.1,
            window: Duration::from_secs(300),
            for_: Duration::from_secs(120),
            exclude_kinds: CALLER_ERROR_KINDS.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// `observability.alerts.disk_space_low`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskSpaceRule {
    /// Evaluate this rule. Default `true`.
    pub enabled: bool,
    /// Fire when `dawn_disk_available_bytes` is below this. Default `1GiB`.
    #[serde(with = "units::size")]
    pub below: u64,
    /// How long it must stay below. Default `5m`.
    #[serde(rename = "for", with = "units::duration")]
    pub for_: Duration,
}

impl Default for DiskSpaceRule {
    fn default() -> Self {
        DiskSpaceRule {
            enabled: true,
            below: 1 << 30,
            for_: Duration::from_secs(300),
        }
    }
}

/// `observability.alerts.log`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogNotifierConfig {
    /// Log firing alerts at WARN and resolved ones at INFO. Default `true`.
    pub enabled: bool,
}

impl Default for LogNotifierConfig {
    fn default() -> Self {
        LogNotifierConfig { enabled: true }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

const fn default_retries() -> u32 {
    3
}

/// One entry of `observability.alerts.webhooks`.
///
/// Each notification is a JSON `POST` (see [`crate::notify::WebhookNotifier`]);
/// with a secret, the body is signed in `X-Dawn-Signature: sha256=<hex>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL to POST to.
    pub url: String,
    /// HMAC-SHA256 key for the signature header. Prefer `secret_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Name of an environment variable holding the HMAC key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Per-attempt timeout. Default `10s`.
    #[serde(default = "default_timeout", with = "units::duration")]
    pub timeout: Duration,
    /// Retries after a failed attempt (connection error, timeout, 429 or
    /// 5xx), with exponential backoff. Default 3.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_env", &self.secret_env)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl WebhookConfig {
    /// A webhook to `url` with default settings and no secret.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            secret: None,
            secret_env: None,
            timeout: default_timeout(),
            max_retries: default_retries(),
        }
    }

    /// The signing key: `secret`, else the value of `secret_env`.
    pub fn resolve_secret(&self) -> Result<Option<String>, String> {
        if let Some(s) = &self.secret {
            return Ok(Some(s.clone()));
        }
        match &self.secret_env {
            None => Ok(None),
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(v)),
                _ => Err(format!("environment variable {var} is not set or empty")),
            },
        }
    }
}

/// One entry of `observability.alerts.alertmanagers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://alertmanager:9093`; alerts go to
    /// `<url>/api/v2/alerts`.
    pub url: String,
    /// Per-attempt timeout. Default `10s`.
    #[serde(default = "default_timeout", with = "units::duration")]
    pub timeout: Duration,
    /// Retries after a failed attempt. Default 3.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

impl AlertmanagerConfig {
    /// An Alertmanager at `url` with default settings.
    pub fn new(url: impl Into<String>) -> Self {
        AlertmanagerConfig {
            url: url.into(),
            timeout: default_timeout(),
            max_retries: default_retries(),
        }
    }
}

/// A problem found by `validate`: the full key (`observability.…`) and
/// what is wrong.
pub type ConfigProblem = (String, String);

const MAX_RETRIES: u32 = 10;

impl ObservabilityConfig {
    /// Checks values serde cannot: ranges, URLs, relations between keys.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut problem = |key: &str, msg: String| {
            out.push((format!("observability.{key}"), msg));
        };
        let m = &self.metrics;
        if !m.path.starts_with('/') || m.path.len() < 2 || m.path.contains(char::is_whitespace) {
            problem(
                "metrics.path",
                format!("{:?} must be an absolute URL path such as /metrics", m.path),
            );
        } else if m.path == "/health" || m.path.starts_with("/health/") {
            problem(
                "metrics.path",
                format!("{:?} collides with the health endpoints", m.path),
            );
        }
        let h = &self.health;
        if h.cache_ttl > Duration::from_secs(60) {
            problem(
                "health.cache_ttl",
                "must be at most 60s (probes would see stale results)".into(),
            );
        }
        if h.check_timeout.is_zero() || h.check_timeout > Duration::from_secs(60) {
            problem(
                "health.check_timeout",
                "must be more than 0s and at most 60s".into(),
            );
        }
        if h.bootstrap_timeout > Duration::from_secs(3600) {
            problem("health.bootstrap_timeout", "must be at most 1h".into());
        }
        if h.disk.unhealthy_below > h.disk.degraded_below {
            problem(
                "health.disk.unhealthy_below",
                format!(
                    "{} is more than health.disk.degraded_below ({})",
                    units::format_size(h.disk.unhealthy_below),
                    units::format_size(h.disk.degraded_below)
                ),
            );
        }
        let a = &self.alerts;
        if a.evaluation_interval < Duration::from_secs(1)
            || a.evaluation_interval > Duration::from_secs(3600)
        {
            problem(
                "alerts.evaluation_interval",
                "must be between 1s and 1h".into(),
            );
        }
        if a.resend_interval < a.evaluation_interval {
            problem(
                "alerts.resend_interval",
                "must be at least alerts.evaluation_interval".into(),
            );
        }
        if let Some(u) = &a.generator_url
            && let Err(e) = check_url(u)
        {
            problem("alerts.generator_url", e);
        }
        for (key, d) in [
            ("alerts.no_peers.for", a.no_peers.for_),
            ("alerts.error_rate.for", a.error_rate.for_),
            (
                "alerts.circuit_breaker_open.for",
                a.circuit_breaker_open.for_,
            ),
            ("alerts.disk_space_low.for", a.disk_space_low.for_),
            ("alerts.mcp_server_down.for", a.mcp_server_down.for_),
        ] {
            if d > Duration::from_secs(7 * 86_400) {
                problem(key, "must be at most 7d".into());
            }
        }
        let e = &a.error_rate;
        if !e.threshold.is_finite() || e.threshold < 0.0 {
            problem(
                "alerts.error_rate.threshold",
                format!(
                    "{} must be a number of errors per second, at least 0",
                    e.threshold
                ),
            );
        }
        if e.window < a.evaluation_interval.saturating_mul(2) {
            problem(
                "alerts.error_rate.window",
                format!(
                    "{} must be at least twice alerts.evaluation_interval ({}) so a rate can be computed",
                    units::format_duration(e.window),
                    units::format_duration(a.evaluation_interval)
                ),
            );
        } else if e.window > Duration::from_secs(86_400) {
            problem("alerts.error_rate.window", "must be at most 1d".into());
        }
        if e.exclude_kinds
            .iter()
            .any(|k| k.is_empty() || k.contains('"'))
        {
            problem(
                "alerts.error_rate.exclude_kinds",
                "entries must be error kind labels such as invalid_params".into(),
            );
        }
        for (i, w) in a.webhooks.iter().enumerate() {
            let key = |field: &str| format!("alerts.webhooks[{i}].{field}");
            if let Err(e) = check_url(&w.url) {
                problem(&key("url"), e);
            }
            if w.secret.as_deref() == Some("") {
                problem(&key("secret"), "must not be empty".into());
            }
            if w.secret.is_some() && w.secret_env.is_some() {
                problem(
                    &key("secret_env"),
                    "set secret or secret_env, not both".into(),
                );
            }
            if let Err(e) = w.resolve_secret() {
                problem(&key("secret_env"), e);
            }
            if w.timeout.is_zero() || w.timeout > Duration::from_secs(300) {
                problem(
                    &key("timeout"),
                    "must be more than 0s and at most 5m".into(),
                );
            }
            if w.max_retries > MAX_RETRIES {
                problem(
                    &key("max_retries"),
                    format!("must be at most {MAX_RETRIES}"),
                );
            }
        }
        for (i, am) in a.alertmanagers.iter().enumerate() {
            let key = |field: &str| format!("alerts.alertmanagers[{i}].{field}");
            if let Err(e) = check_url(&am.url) {
                problem(&key("url"), e);
            }
            if am.timeout.is_zero() || am.timeout > Duration::from_secs(300) {
                problem(
                    &key("timeout"),
                    "must be more than 0s and at most 5m".into(),
                );
            }
            if am.max_retries > MAX_RETRIES {
                problem(
                    &key("max_retries"),
                    format!("must be at most {MAX_RETRIES}"),
                );
            }
        }
        out
    }
}

fn check_url(u: &str) -> Result<(), String> {
    match reqwest::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        Ok(_) => Err(format!(
            "{u:?} must be an http:// or https:// URL with a host"
        )),
        Err(e) => Err(format!("{u:?} is not a URL: {e}")),
    }
}

/// Documentation of one configuration key.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKeyDoc {
    /// Full dotted key path, e.g. `observability.health.cache_ttl`.
    pub key: &'static str,
    /// Value type as users write it.
    pub kind: &'static str,
    /// What it does.
    pub description: &'static str,
}

const fn key(key: &'static str, kind: &'static str, description: &'static str) -> ConfigKeyDoc {
    ConfigKeyDoc {
        key,
        kind,
        description,
    }
}

/// Every key of [`ObservabilityConfig`] (as `observability.…`), for the
/// node's configuration reference. Defaults come from serialising
/// `ObservabilityConfig::default()`.
pub const KEYS: &[ConfigKeyDoc] = &[
    key(
        "observability.metrics.enabled",
        "bool",
        "Record metrics and serve them on the API server.",
    ),
    key(
        "observability.metrics.path",
        "string",
        "HTTP path of the Prometheus endpoint.",
    ),
    key(
        "observability.metrics.require_token",
        "bool",
        "Require `Authorization: Bearer <api token>` on the metrics path. Off by default so Prometheus can scrape without credentials; metrics carry no secrets, peer ids or request data. When on, give Prometheus the token (`authorization: { credentials_file: ... }`).",
    ),
    key(
        "observability.health.cache_ttl",
        "duration",
        "How long a `/health` report is reused; protects the node from probe storms. `0s` runs the checks on every request.",
    ),
    key(
        "observability.health.check_timeout",
        "duration",
        "Longest a single health check may run; a check that takes longer is reported unhealthy (`timed out after ...`).",
    ),
    key(
        "observability.health.min_peers",
        "integer",
        "Fewer connected peers than this makes the node degraded. 0 disables the check.",
    ),
    key(
        "observability.health.disk.degraded_below",
        "size",
        "Free space in the data directory below which the node is degraded.",
    ),
    key(
        "observability.health.disk.unhealthy_below",
        "size",
        "Free space in the data directory below which the node is unhealthy.",
    ),
    key(
        "observability.health.bootstrap_timeout",
        "duration",
        "`/health/ready` waits for a connection to one of `node.bootstrap` (if any are configured) at most this long after start, then reports ready anyway.",
    ),
    key(
        "observability.health.require_token",
        "bool",
        "Require the API bearer token on `GET /health` (the detailed report). `/health/live` and `/health/ready` never require it, so orchestrator probes work without credentials.",
    ),
    key(
        "observability.alerts.enabled",
        "bool",
        "Run the built-in alert engine.",
    ),
    key(
        "observability.alerts.evaluation_interval",
        "duration",
        "How often alert rules are evaluated.",
    ),
    key(
        "observability.alerts.resend_interval",
        "duration",
        "How often still-firing alerts are re-sent to Alertmanager.",
    ),
    key(
        "observability.alerts.generator_url",
        "URL",
        "Link included in notifications (`generatorURL`).",
    ),
    key(
        "observability.alerts.no_peers.enabled",
        "bool",
        "Evaluate `DawnNoPeers`.",
    ),
    key(
        "observability.alerts.no_peers.for",
        "duration",
        "How long the node must have no connected peer before `DawnNoPeers` fires.",
    ),
    key(
        "observability.alerts.error_rate.enabled",
        "bool",
        "Evaluate `DawnHighErrorRate`.",
    ),
    key(
        "observability.alerts.error_rate.threshold",
        "number",
        "Errors per second (over `window`) above which `DawnHighErrorRate` is pending.",
    ),
    key(
        "observability.alerts.error_rate.window",
        "duration",
        "Window the error rate is computed over.",
    ),
    key(
        "observability.alerts.error_rate.for",
        "duration",
        "How long the error rate must stay above the threshold.",
    ),
    key(
        "observability.alerts.error_rate.exclude_kinds",
        "list of strings",
        "Error kinds not counted; by default those caused by callers (invalid params, unknown tool, rate limited, ...).",
    ),
    key(
        "observability.alerts.circuit_breaker_open.enabled",
        "bool",
        "Evaluate `DawnCircuitBreakerOpen`.",
    ),
    key(
        "observability.alerts.circuit_breaker_open.for",
        "duration",
        "How long some circuit breaker must be open before the alert fires.",
    ),
    key(
        "observability.alerts.disk_space_low.enabled",
        "bool",
        "Evaluate `DawnDiskSpaceLow`.",
    ),
    key(
        "observability.alerts.disk_space_low.below",
        "size",
        "Free space in the data directory below which `DawnDiskSpaceLow` is pending.",
    ),
    key(
        "observability.alerts.disk_space_low.for",
        "duration",
        "How long free space must stay below the threshold.",
    ),
    key(
        "observability.alerts.mcp_server_down.enabled",
        "bool",
        "Evaluate `DawnMcpServerDown`.",
    ),
    key(
        "observability.alerts.mcp_server_down.for",
        "duration",
        "How long a mounted MCP server must be down before the alert fires.",
    ),
    key(
        "observability.alerts.log.enabled",
        "bool",
        "Log firing alerts at WARN and resolved ones at INFO.",
    ),
    key(
        "observability.alerts.webhooks",
        "list of tables",
        "Webhook receivers: `url`, `secret` or `secret_env` (HMAC-SHA256 key; signature in `X-Dawn-Signature: sha256=<hex>`), `timeout` (default 10s), `max_retries` (default 3).",
    ),
    key(
        "observability.alerts.alertmanagers",
        "list of tables",
        "Alertmanagers receiving alerts through `POST <url>/api/v2/alerts`: `url`, `timeout` (default 10s), `max_retries` (default 3).",
    ),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = ObservabilityConfig::default();
        assert_eq!(c.validate(), Vec::<ConfigProblem>::new());
        let text = toml::to_string(&c).unwrap();
        let back: ObservabilityConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn parses_the_documented_shape() {
        let c: ObservabilityConfig = toml::from_str(
            r#"
            [health]
            cache_ttl = 0
            disk = { degraded_below = "2GiB", unhealthy_below = "200MiB" }
            [alerts]
            no_peers = { for = "5m" }
            error_rate = { threshold = 0.5, exclude_kinds = [] }
            [[alerts.webhooks]]
            url = "https://hooks.example.com/x"
            secret = "s3cret"
            [[alerts.alertmanagers]]
            url = "http://am:9093"
            max_retries = 5
            "#,
        )
        .unwrap();
        assert_eq!(c.health.cache_ttl, Duration::ZERO);
        assert_eq!(c.health.disk.degraded_below, 2 << 30);
        assert_eq!(c.alerts.no_peers.for_, Duration::from_secs(300));
        assert!(c.alerts.no_peers.enabled);
        assert!(c.alerts.error_rate.exclude_kinds.is_empty());
        assert_eq!(c.alerts.webhooks[0].timeout, Duration::from_secs(10));
        assert_eq!(c.alerts.alertmanagers[0].max_retries, 5);
        assert_eq!(c.validate(), Vec::<ConfigProblem>::new());
        assert!(!format!("{c:?}").contains("s3cret"), "secrets are redacted");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(toml::from_str::<ObservabilityConfig>("[alerts]\nno_peer = {}\n").is_err());
        assert!(
            toml::from_str::<ObservabilityConfig>("[health]\ncheck_timeout = \"soon\"\n").is_err()
        );
        let mut c = ObservabilityConfig::default();
        c.metrics.path = "metrics".into();
        c.health.disk.unhealthy_below = 2 << 30;
        c.alerts.error_rate.window = Duration::from_secs(10);
        c.alerts.error_rate.threshold = -1.0;
        c.alerts.webhooks.push(WebhookConfig::new("ftp://x"));
        c.alerts.alertmanagers.push(AlertmanagerConfig {
            max_retries: 99,
            ..AlertmanagerConfig::new("http://am:9093")
        });
        let keys: Vec<String> = c.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "observability.metrics.path",
                "observability.health.disk.unhealthy_below",
                "observability.alerts.error_rate.threshold",
                "observability.alerts.error_rate.window",
                "observability.alerts.webhooks[0].url",
                "observability.alerts.alertmanagers[0].max_retries",
            ]
        );
    }

    #[test]
    fn every_default_leaf_is_documented() {
        fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        let p = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        leaves(&p, v, out);
                    }
                }
                _ => out.push(prefix.to_owned()),
            }
        }
        let mut found = Vec::new();
        leaves(
            "",
            &serde_json::to_value(ObservabilityConfig::default()).unwrap(),
            &mut found,
        );
        let found: Vec<String> = found.iter().map(|k| format!("observability.{k}")).collect();
        for k in &found {
            assert!(KEYS.iter().any(|d| d.key == k), "{k} undocumented");
        }
        for d in KEYS {
            assert!(
                found.iter().any(|k| k == d.key) || d.key == "observability.alerts.generator_url",
                "{} documented but not a key",
                d.key
            );
        }
    }
}
