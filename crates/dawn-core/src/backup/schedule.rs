//! Backups of a running node: on demand (API), on a schedule (`backup.*`), their status for
//! health checks, and their metrics.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use dawn_resilience::ErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::create::{BackupSource, BackupSummary, CreateOptions, create_backup, default_dir};
use super::{BackupError, NoProgress};
use crate::jsonrpc::CallError;
use crate::node::{Node, now_ms};

/// A finished backup, as kept in [`BackupStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRun {
    /// The number of the attempt since the node started (1, 2, ...).
    pub attempt: u64,
    /// When it finished, unix milliseconds.
    pub finished_ms: u64,
    /// The archive written (for a success), if any.
    pub path: Option<PathBuf>,
    /// The archive's size in bytes (0 for a failure).
    pub bytes: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Why it failed (for a failure).
    pub error: Option<String>,
}

/// The node's backups: schedule, the last success and failure. Read it for health checks
/// ([`crate::Node::backup_status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStatus {
    /// The schedule's interval in seconds (`None`: scheduled backups are off).
    pub interval_secs: Option<u64>,
    /// Where archives go.
    pub dir: PathBuf,
    /// How many archives are kept (0: all).
    pub keep: u32,
    /// Whether a backup is being written now.
    pub running: bool,
    /// The last successful backup since the node started.
    pub last_success: Option<BackupRun>,
    /// The last failed backup since the node started.
    pub last_failure: Option<BackupRun>,
    /// When the next scheduled backup is due, unix milliseconds.
    pub next_due_ms: Option<u64>,
}

impl BackupStatus {
    /// Whether scheduled backups are falling behind at `now_ms`: the schedule is on and no
    /// backup succeeded within two intervals (counted from the node's start when none has).
    /// `started_ms` is when the node started. Health checks can report this as degraded.
    pub fn is_overdue(&self, now_ms: u64, started_ms: u64) -> bool {
        let Some(interval) = self.interval_secs else {
            return false;
        };
        let since = self
            .last_success
            .as_ref()
            .map_or(started_ms, |run| run.finished_ms);
        now_ms.saturating_sub(since) > interval.saturating_mul(2000)
    }

    /// Whether the most recent backup attempt failed.
    pub fn last_attempt_failed(&self) -> bool {
        match (&self.last_failure, &self.last_success) {
            (Some(failure), Some(success)) => failure.attempt > success.attempt,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// Per-node backup state (inside the node's shared state).
#[derive(Debug, Default)]
pub(crate) struct BackupState {
    /// Held while a backup is written: one at a time.
    running: tokio::sync::Mutex<()>,
    /// Attempts made since start.
    attempts: std::sync::atomic::AtomicU64,
    last_success: Mutex<Option<BackupRun>>,
    last_failure: Mutex<Option<BackupRun>>,
    next_due_ms: Mutex<Option<u64>>,
}

impl BackupState {
    /// Waits until no backup is being written, however long that takes, and keeps any new one
    /// from starting ([`BackupError::Busy`]) while the guard lives. A backup holds the node's
    /// database, so shutdown waits for it here rather than returning with the database open.
    pub(crate) async fn finish_and_refuse_new(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.running.lock().await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Node {
    /// Writes a backup archive of this node now (see [`crate::backup`]): a consistent snapshot
    /// of the database taken while the node keeps running, the node key, the audit log and
    /// the configuration, in a manifest signed by the node key. Without `options.dir` the
    /// archive goes to `backup.dir` (default `<data_root>/backups`); `options.keep` prunes
    /// older archives of this node. Fails with [`BackupError::Busy`] while another backup
    /// runs. The outcome is recorded in [`Node::backup_status`] and the `dawn_backup_*`
    /// metrics.
    pub async fn backup_now(&self, options: CreateOptions) -> Result<BackupSummary, BackupError> {
        let state = &self.shared.backup;
        let Ok(_running) = state.running.try_lock() else {
            return Err(BackupError::Busy);
        };
        let shared = &self.shared;
        let source = BackupSource::online(
            shared.data_dir.clone(),
            shared.store.clone(),
            shared.identity.clone(),
            shared.config.clone(),
        );
        let attempt = state
            .attempts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let started = std::time::Instant::now();
        let result =
            tokio::task::spawn_blocking(move || create_backup(&source, &options, &NoProgress))
                .await
                .unwrap_or_else(|e| {
                    Err(BackupError::Config(format!("the backup task failed: {e}")))
                });
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(summary) => {
                let run = BackupRun {
                    attempt,
                    finished_ms: now_ms(),
                    path: Some(summary.path.clone()),
                    bytes: summary.bytes,
                    duration_ms,
                    error: None,
                };
                metrics::counter!("dawn_backups_total", "status" => "ok").increment(1);
                metrics::gauge!("dawn_backup_last_success_timestamp_seconds")
                    .set(run.finished_ms as f64 / 1000.0);
                metrics::gauge!("dawn_backup_last_size_bytes").set(summary.bytes as f64);
                metrics::gauge!("dawn_backup_last_duration_seconds")
                    .set(summary.duration.as_secs_f64());
                *lock(&state.last_success) = Some(run);
                shared.security.backup_created(&summary.path, summary.bytes);
            }
            Err(error) => {
                tracing::error!(%error, "backup failed");
                metrics::counter!("dawn_backups_total", "status" => "error").increment(1);
                *lock(&state.last_failure) = Some(BackupRun {
                    attempt,
                    finished_ms: now_ms(),
                    path: None,
                    bytes: 0,
                    duration_ms,
                    error: Some(error.to_string()),
                });
            }
        }
        result
    }

    /// The state of this node's backups: schedule, whether one is running, the last success
    /// and failure since start. For health checks see [`BackupStatus::is_overdue`] and
    /// [`BackupStatus::last_attempt_failed`].
    pub fn backup_status(&self) -> BackupStatus {
        let config = &self.shared.config.backup;
        let state = &self.shared.backup;
        BackupStatus {
            interval_secs: (!config.interval.0.is_zero())
                .then(|| config.interval.0.as_secs().max(1)),
            dir: default_dir(&self.shared.config),
            keep: config.keep,
            running: state.running.try_lock().is_err(),
            last_success: lock(&state.last_success).clone(),
            last_failure: lock(&state.last_failure).clone(),
            next_due_ms: *lock(&state.next_due_ms),
        }
    }
}

/// Starts the backup schedule of `node` if `backup.interval` is set.
pub(crate) fn start(node: &Node) {
    let interval: Duration = node.shared.config.backup.interval.0;
    if interval.is_zero() {
        return;
    }
    let keep = node.shared.config.backup.keep;
    let weak = std::sync::Arc::downgrade(&node.shared);
    let stop = node.shared.stop.clone();
    tracing::info!(
        interval = %node.shared.config.backup.interval,
        dir = %default_dir(&node.shared.config).display(),
        keep,
        "scheduled backups on"
    );
    node.shared.background_spawn(async move {
        loop {
            *lock(
                &match weak.upgrade() {
                    Some(shared) => shared,
                    None => return,
                }
                .backup
                .next_due_ms,
            ) = Some(
                now_ms().saturating_add(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX)),
            );
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let Some(shared) = weak.upgrade() else { return };
            let node = Node { shared };
            let options = CreateOptions {
                dir: None,
                keep: Some(keep),
            };
            match node.backup_now(options).await {
                Ok(summary) => tracing::info!(
                    path = %summary.path.display(),
                    bytes = summary.bytes,
                    "scheduled backup written"
                ),
                Err(BackupError::Busy) => {
                    tracing::info!("scheduled backup skipped: another backup is running")
                }
                // Already logged and recorded by backup_now.
                Err(_) => {}
            }
        }
    });
}

/// The body of `POST /api/v1/backup`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupRequest {
    /// Directory to write into (on the node's machine); default `backup.dir`.
    #[serde(default)]
    dir: Option<PathBuf>,
    /// Keep only this many archives of this node in the directory.
    #[serde(default)]
    keep: Option<u32>,
}

fn error_response(kind: ErrorKind, message: String) -> Response {
    (
        crate::http_api::http_status(Some(kind)),
        Json(json!({ "error": CallError::new(kind, message) })),
    )
        .into_response()
}

/// `POST /api/v1/backup`: writes an archive now and answers its summary.
pub(crate) async fn api_create(State(node): State<Node>, body: axum::body::Bytes) -> Response {
    let request: BackupRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BackupRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return error_response(
                    ErrorKind::InvalidParams,
                    format!(
                        "invalid backup request (expected {{\"dir\": \"/abs/path\", \"keep\": N}}, both optional): {e}"
                    ),
                );
            }
        }
    };
    if let Some(dir) = &request.dir
        && !dir.is_absolute()
    {
        return error_response(
            ErrorKind::InvalidParams,
            format!(
                "dir must be an absolute path on the node's machine, not {}",
                dir.display()
            ),
        );
    }
    let options = CreateOptions {
        dir: request.dir,
        keep: request.keep,
    };
    match node.backup_now(options).await {
        Ok(summary) => (StatusCode::OK, Json(summary.to_json())).into_response(),
        Err(BackupError::Busy) => error_response(ErrorKind::Busy, BackupError::Busy.to_string()),
        Err(error) => error_response(ErrorKind::Internal, error.to_string()),
    }
}

/// `GET /api/v1/backup`: the backup status.
pub(crate) async fn api_status(State(node): State<Node>) -> Json<Value> {
    Json(serde_json::to_value(node.backup_status()).unwrap_or(Value::Null))
}

/// The backup routes of the admin API (token-protected like every `/api` route).
pub(crate) fn routes() -> axum::Router<Node> {
    axum::Router::new().route(
        "/api/v1/backup",
        axum::routing::get(api_status).post(api_create),
    )
}
