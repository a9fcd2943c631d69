//! Alert notifiers: log, signed webhook, Alertmanager v2.
//!
//! The engine hands each notifier a batch of [`AlertNotification`]s (all
//! changes of one evaluation) on the notifier's own task. HTTP notifiers
//! retry connection errors, timeouts, `429` and `5xx` with exponential
//! backoff (jittered, 500 ms doubling up to 30 s by default), and give up on
//! other `4xx` at once.
//!
//! **Webhook** body (`Content-Type: application/json`):
//!
//! ```json
//! {
//!   "version": "1",
//!   "status": "firing",
//!   "alerts": [{
//!     "status": "firing",
//!     "labels": {"alertname": "DawnNoPeers", "severity": "warning"},
//!     "annotations": {"summary": "...", "description": "..."},
//!     "startsAt": "2025-01-01T00:00:00.000Z",
//!     "endsAt": null,
//!     "generatorURL": null,
//!     "value": 0
//!   }]
//! }
//! ```
//!
//! With a secret, the request carries `X-Dawn-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of the exact body bytes under the secret; receivers verify it
//! with [`verify_signature`] or any HMAC library.
//!
//! **Alertmanager**: `POST <url>/api/v2/alerts` with the v2 list of
//! `{labels, annotations, startsAt, endsAt, generatorURL}`. Firing alerts carry
//! an `endsAt` in the future (now + [`crate::alerts::resolve_timeout`]) and are
//! re-sent while they fire, as Prometheus does; resolved alerts carry the
//! time they resolved.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use backon::{ExponentialBuilder, Retryable as _};
use serde::Serialize;
use serde_json::{Value, json};

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The alert started firing (or, in a reminder, still fires).
    Firing,
    /// The alert's condition cleared.
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert as sent to notifiers.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertNotification {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// All labels, including `alertname`.
    pub labels: BTreeMap<String, String>,
    /// Expanded annotations (`summary`, `description`).
    pub annotations: BTreeMap<String, String>,
    /// The rule's value at the last evaluation.
    pub value: f64,
    /// When the alert started firing.
    pub starts_at: SystemTime,
    /// When it resolved (`None` while firing).
    pub ends_at: Option<SystemTime>,
    /// Link for operators, if configured.
    pub generator_url: Option<String>,
}

impl AlertNotification {
    /// The `alertname` label.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// Why a notification failed (after retries).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The request could not be made or timed out.
    #[error("request to {url} failed: {source}")]
    Request {
        /// Where to.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The receiver answered with an error status.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// Where to.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The notifier could not be set up.
    #[error("invalid notifier setup: {0}")]
    Setup(String),
}

impl NotifyError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Request { .. } => true,
            NotifyError::Status { status, .. } => *status == 429 || *status >= 500,
            NotifyError::Setup(_) => false,
        }
    }
}

/// Receives alert notifications.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Short name used as the `notifier` metric label: `log`, `webhook`,
    /// `alertmanager` (keep it to a fixed set).
    fn kind(&self) -> &'static str;

    /// Whether still-firing alerts should be re-sent every resend interval
    /// (Alertmanager needs it; people reading webhooks do not).
    fn wants_reminders(&self) -> bool {
        false
    }

    /// Delivers one batch (never empty). Retries are the notifier's business.
    async fn notify(&self, alerts: &[AlertNotification]) -> Result<(), NotifyError>;
}

/// Logs firing alerts at WARN and resolved ones at INFO (target
/// `dawn_observe::alerts`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[async_trait::async_trait]
impl Notifier for LogNotifier {
    fn kind(&self) -> &'static str {
        "log"
    }

    async fn notify(&self, alerts: &[AlertNotification]) -> Result<(), NotifyError> {
        for a in alerts {
            let summary = a.annotations.get("summary").map_or("", String::as_str);
            let description = a.annotations.get("description").map_or("", String::as_str);
            let labels = labels_text(&a.labels);
            match a.status {
                AlertStatus::Firing => tracing::warn!(
                    target: "dawn_observe::alerts",
                    alertname = a.name(),
                    labels = %labels,
                    value = a.value,
                    summary,
                    description,
                    "alert firing"
                ),
                AlertStatus::Resolved => tracing::info!(
                    target: "dawn_observe::alerts",
                    alertname = a.name(),
                    labels = %labels,
                    summary,
                    "alert resolved"
                ),
            }
        }
        Ok(())
    }
}

/// Formats a time as RFC 3339 in UTC with milliseconds,
/// e.g. `2025-01-31T12:00:00.000Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) — H. Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// The webhook body for a batch (see the module docs).
pub fn webhook_payload(alerts: &[AlertNotification]) -> Value {
    let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
        "firing"
    } else {
        "resolved"
    };
    json!({
        "version": "1",
        "status": status,
        "alerts": alerts.iter().map(|a| json!({
            "status": a.status.as_str(),
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.starts_at),
            "endsAt": a.ends_at.map(rfc3339),
            "generatorURL": a.generator_url,
            "value": if a.value.is_finite() { json!(a.value) } else { Value::Null },
        })).collect::<Vec<_>>(),
    })
}

/// The Alertmanager v2 `postableAlerts` body. Firing alerts get
/// `endsAt = now + resolve_timeout`; resolved ones their resolution time.
pub fn alertmanager_payload(
    alerts: &[AlertNotification],
    now: SystemTime,
    resolve_timeout: Duration,
) -> Value {
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                let ends_at = match (a.status, a.ends_at) {
                    (AlertStatus::Resolved, Some(t)) => t,
                    (AlertStatus::Resolved, None) => now,
                    (AlertStatus::Firing, _) => now + resolve_timeout,
                };
                let mut obj = json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": rfc3339(ends_at),
                });
                if let (Some(url), Some(map)) = (&a.generator_url, obj.as_object_mut()) {
                    map.insert("generatorURL".into(), Value::String(url.clone()));
                }
                obj
            })
            .collect(),
    )
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

/// Checks an `X-Dawn-Signature` header value in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, body, &sig).is_ok()
}

/// Header carrying the webhook signature.
pub const SIGNATURE_HEADER: &str = "X-Dawn-Signature";

#[derive(Debug, Clone)]
struct HttpPoster {
    client: reqwest::Client,
    url: String,
    max_retries: u32,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl HttpPoster {
    fn new(url: &str, timeout: Duration, max_retries: u32) -> Result<Self, NotifyError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| NotifyError::Setup(format!("{url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(NotifyError::Setup(format!("{url:?} is not an http(s) URL")));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("dawn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Setup(e.to_string()))?;
        Ok(HttpPoster {
            client,
            url: url.to_owned(),
            max_retries,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        })
    }

    async fn post_once(
        &self,
        body: &[u8],
        headers: &[(&'static str, String)],
    ) -> Result<(), NotifyError> {
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.map_err(|source| NotifyError::Request {
            url: self.url.clone(),
            source,
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(NotifyError::Status {
            url: self.url.clone(),
            status: status.as_u16(),
            body: text.chars().take(200).collect(),
        })
    }

    async fn post(
        &self,
        kind: &'static str,
        body: &[u8],
        headers: &[(&'static str, String)],
    ) -> Result<(), NotifyError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff)
            .with_max_times(usize::try_from(self.max_retries).unwrap_or(usize::MAX))
            .with_jitter();
        (|| self.post_once(body, headers))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(NotifyError::is_retryable)
            .notify(|e: &NotifyError, after: Duration| {
                tracing::debug!(notifier = kind, error = %e, retry_in_ms = after.as_millis(), "alert notification failed; retrying");
            })
            .await
    }
}

/// Posts signed JSON to a webhook; see the module docs.
#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    poster: HttpPoster,
    secret: Option<Vec<u8>>,
}

impl WebhookNotifier {
    /// A webhook to `url`, signing with `secret` if given.
    pub fn new(
        url: &str,
        secret: Option<&str>,
        timeout: Duration,
        max_retries: u32,
    ) -> Result<Self, NotifyError> {
        Ok(WebhookNotifier {
            poster: HttpPoster::new(url, timeout, max_retries)?,
            secret: secret.map(|s| s.as_bytes().to_vec()),
        })
    }

    /// Changes the retry backoff (first delay, longest delay).
    #[must_use]
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.poster.min_backoff = min;
        self.poster.max_backoff = max;
        self
    }
}

#[async_trait::async_trait]
impl Notifier for WebhookNotifier {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn notify(&self, alerts: &[AlertNotification]) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&webhook_payload(alerts))
            .map_err(|e| NotifyError::Setup(e.to_string()))?;
        let headers: Vec<(&'static str, String)> = self
            .secret
            .as_ref()
            .map(|s| (SIGNATURE_HEADER, sign(s, &body)))
            .into_iter()
            .collect();
        self.poster.post("webhook", &body, &headers).await
    }
}

/// Sends alerts to an Alertmanager's v2 API; see the module docs.
#[derive(Debug, Clone)]
pub struct AlertmanagerNotifier {
    poster: HttpPoster,
    resolve_timeout: Duration,
}

impl AlertmanagerNotifier {
    /// Alertmanager at base URL `url` (`/api/v2/alerts` is appended).
    /// `resolve_timeout` is how far in the future a firing alert's `endsAt`
    /// lies (see [`crate::alerts::resolve_timeout`]).
    pub fn new(
        url: &str,
        timeout: Duration,
        max_retries: u32,
        resolve_timeout: Duration,
    ) -> Result<Self, NotifyError> {
        let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
        Ok(AlertmanagerNotifier {
            poster: HttpPoster::new(&endpoint, timeout, max_retries)?,
            resolve_timeout,
        })
    }

    /// Changes the retry backoff (first delay, longest delay).
    #[must_use]
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.poster.min_backoff = min;
        self.poster.max_backoff = max;
        self
    }
}

#[async_trait::async_trait]
impl Notifier for AlertmanagerNotifier {
    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    fn wants_reminders(&self) -> bool {
        true
    }

    async fn notify(&self, alerts: &[AlertNotification]) -> Result<(), NotifyError> {
        let payload = alertmanager_payload(alerts, SystemTime::now(), self.resolve_timeout);
        let body = serde_json::to_vec(&payload).map_err(|e| NotifyError::Setup(e.to_string()))?;
        self.poster.post("alertmanager", &body, &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_735_689_599); // last second of 2024
        assert_eq!(rfc3339(t), "2024-12-31T23:59:59.000Z");
    }

    #[test]
    fn signatures_verify() {
        let sig = sign(b"key", b"body");
        // Known answer from `printf body | openssl dgst -sha256 -hmac key`.
        assert_eq!(
            sig,
            "sha256=515aae133b435d4000956731f68ae5cf5eb85d4f0dc6a546d2bfcd3595ec1ae1"
        );
        assert!(verify_signature(b"key", b"body", &sig));
        assert!(!verify_signature(b"key", b"body2", &sig));
        assert!(!verify_signature(b"other", b"body", &sig));
        assert!(!verify_signature(b"key", b"body", "sha1=00"));
    }
}
