//! Health checks of the node's own components (the generic ones, disk, peer
//! count and alert state, come from `dawn_observe::health`).

use std::sync::Weak;

use dawn_observe::health::{CheckResult, HealthCheck};

use crate::{mounted::MountedServerState, node::NodeShared};

fn stopped() -> CheckResult {
    CheckResult::unhealthy("the node has stopped")
}

/// Writes a probe value to the database, commits it and reads it back
/// (`dawn_store::Store::check`), on a blocking thread.
pub(crate) struct StoreCheck {
    node: Weak<NodeShared>,
}

impl StoreCheck {
    pub(crate) fn new(node: Weak<NodeShared>) -> Self {
        StoreCheck { node }
    }
}

#[async_trait::async_trait]
impl HealthCheck for StoreCheck {
    async fn check(&self) -> CheckResult {
        let Some(shared) = self.node.upgrade() else {
            return stopped();
        };
        let store = shared.store.clone();
        drop(shared);
        match tokio::task::spawn_blocking(move || store.check()).await {
            Ok(Ok(())) => CheckResult::healthy("database read and write ok"),
            Ok(Err(error)) => {
                crate::observe::telemetry::record_error("internal", "store");
                CheckResult::unhealthy(format!("database probe failed: {error}"))
            }
            Err(_) => CheckResult::unhealthy("the database probe task failed"),
        }
    }
}

/// Healthy while the transport listens on at least one address.
pub(crate) struct TransportCheck {
    node: Weak<NodeShared>,
}

impl TransportCheck {
    pub(crate) fn new(node: Weak<NodeShared>) -> Self {
        TransportCheck { node }
    }
}

#[async_trait::async_trait]
impl HealthCheck for TransportCheck {
    async fn check(&self) -> CheckResult {
        let Some(shared) = self.node.upgrade() else {
            return stopped();
        };
        let addrs = shared.transport.listen_addrs();
        if addrs.is_empty() {
            return CheckResult::unhealthy(if shared.config.node.listen.is_empty() {
                "not listening: node.listen is empty".to_owned()
            } else {
                "not listening on any of node.listen".to_owned()
            });
        }
        let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        CheckResult::healthy(format!("listening on {}", list.join(", ")))
    }
}

/// The state of one mounted MCP server: healthy while running, degraded
/// while starting, unhealthy while down (registered non-critical, so a
/// down server makes the node degraded, not unhealthy).
pub(crate) struct MountedServerCheck {
    node: Weak<NodeShared>,
    id: String,
}

impl MountedServerCheck {
    pub(crate) fn new(node: Weak<NodeShared>, id: String) -> Self {
        MountedServerCheck { node, id }
    }
}

#[async_trait::async_trait]
impl HealthCheck for MountedServerCheck {
    async fn check(&self) -> CheckResult {
        let Some(shared) = self.node.upgrade() else {
            return stopped();
        };
        let Some(status) = shared
            .mounted
            .statuses()
            .into_iter()
            .find(|s| s.id == self.id)
        else {
            return CheckResult::unhealthy(format!("mounted server {} is not registered", self.id));
        };
        match &status.state {
            MountedServerState::Running => CheckResult::healthy(format!(
                "running ({} tools, {} resources, {} prompts)",
                status.tools, status.resources, status.prompts
            )),
            MountedServerState::Starting => CheckResult::degraded("starting"),
            MountedServerState::Restarting {
                attempt,
                next_in,
                last_error,
            } => CheckResult::unhealthy(format!(
                "down: {last_error}; attempt {attempt}, next in {}",
                dawn_observe::units::format_duration(*next_in)
            )),
            MountedServerState::Failed { error } => {
                CheckResult::unhealthy(format!("failed: {error}"))
            }
            MountedServerState::Stopped => CheckResult::unhealthy("stopped"),
        }
    }
}

/// Scheduled backups (registered only when `backup.interval` is set):
/// degraded when the last attempt failed or no backup succeeded within two
/// intervals, healthy otherwise. Non-critical: a node that cannot back up
/// still serves calls.
pub(crate) struct BackupCheck {
    node: Weak<NodeShared>,
    started_ms: u64,
}

impl BackupCheck {
    pub(crate) fn new(node: Weak<NodeShared>) -> Self {
        BackupCheck {
            node,
            started_ms: crate::node::now_ms(),
        }
    }
}

#[async_trait::async_trait]
impl HealthCheck for BackupCheck {
    async fn check(&self) -> CheckResult {
        let Some(shared) = self.node.upgrade() else {
            return stopped();
        };
        let status = crate::Node { shared }.backup_status();
        if status.last_attempt_failed() {
            let error = status
                .last_failure
                .as_ref()
                .and_then(|run| run.error.clone())
                .unwrap_or_else(|| "unknown error".to_owned());
            return CheckResult::degraded(format!("the last backup failed: {error}"));
        }
        if status.is_overdue(crate::node::now_ms(), self.started_ms) {
            return CheckResult::degraded(
                "no backup succeeded within two backup intervals".to_owned(),
            );
        }
        match &status.last_success {
            Some(run) => CheckResult::healthy(format!(
                "last backup {} bytes in {} ms",
                run.bytes, run.duration_ms
            )),
            None => CheckResult::healthy("scheduled; no backup due yet"),
        }
    }
}
