//! The node's observability: dawn-observe's metrics exporter, health checks,
//! readiness and alert engine, wired to the node's own components.
//!
//! - [`NodeObservability::new`] runs before the node exists: it installs the
//!   process-wide Prometheus recorder (when `observability.metrics.enabled`),
//!   sets `dawn_build_info`, and prepares the health checker and readiness.
//! - [`start`] runs once the node is built: it registers the component
//!   checks (store, transport, peers, disk, each mounted MCP server, alert
//!   state), follows the initial bootstrap for readiness, and starts the
//!   alert engine.
//! - [`telemetry`] holds the small recording helpers the call paths use
//!   (`dawn_calls_total`, `dawn_errors_total`, `dawn_agent_tool_calls_total`).
//!
//! The HTTP side (`/metrics`, `/health`, `/health/live`, `/health/ready`) is
//! [`crate::observe_api`].

pub(crate) mod checks;
pub(crate) mod telemetry;

use std::sync::{Arc, Mutex, PoisonError, Weak};

use dawn_observe::{
    alerts::{ActiveAlert, AlertEngine, AlertEngineHandle, RecorderSource},
    health::{
        AlertStateCheck, CheckOptions, DiskSpaceCheck, HealthChecker, HealthReport, HealthSettings,
        PeerCountCheck, Readiness, ReadinessReport, conditions,
    },
    metrics::MetricsHandle,
};
use dawn_transport::PeerId;
use libp2p::multiaddr::Protocol;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    config::DawnConfig,
    error::NodeError,
    node::{Node, NodeEvent, NodeShared},
};

/// The git commit this build came from (`DAWN_BUILD_COMMIT` at build time,
/// else `git rev-parse`), or `unknown`.
pub const BUILD_COMMIT: &str = env!("DAWN_BUILD_COMMIT");

/// Metrics, health and alerting state of one node.
pub(crate) struct NodeObservability {
    /// The process-wide exporter, when metrics are enabled.
    pub(crate) metrics: Option<MetricsHandle>,
    /// Component checks behind `GET /health`.
    pub(crate) health: Arc<HealthChecker>,
    /// Conditions behind `GET /health/ready`.
    pub(crate) readiness: Readiness,
    alerts: Mutex<AlertEngineHandle>,
}

impl NodeObservability {
    /// Installs the metrics exporter (if enabled) and prepares health and
    /// readiness. The store is open by the time this runs.
    pub(crate) fn new(config: &DawnConfig, peer_id: &PeerId) -> Self {
        let observe = &config.observability;
        let metrics = if observe.metrics.enabled {
            match dawn_observe::metrics::install() {
                Ok(handle) => {
                    dawn_observe::metrics::set_build_info(crate::VERSION, BUILD_COMMIT);
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics are not served: the embedding program installed its own metrics recorder");
                    None
                }
            }
        } else {
            None
        };
        dawn_observe::logging::set_node_id(&peer_id.to_string());
        let health = Arc::new(HealthChecker::new(HealthSettings::from_config(
            &observe.health,
            crate::VERSION,
            peer_id.to_string(),
        )));
        let readiness = Readiness::node_default();
        readiness.set_ready(conditions::STORE);
        NodeObservability {
            metrics,
            health,
            readiness,
            alerts: Mutex::new(AlertEngineHandle::disabled()),
        }
    }

    /// The running alert engine (a disabled handle when alerting is off).
    pub(crate) fn alerts(&self) -> AlertEngineHandle {
        self.alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Brings the transport and shutdown conditions up to date; called
    /// before each readiness report.
    pub(crate) fn refresh_readiness(&self, shared: &NodeShared) {
        let listening = shared.transport.listen_addrs().len();
        if listening > 0 {
            self.readiness.set_ready_with_note(
                conditions::TRANSPORT,
                format!("listening on {listening} address(es)"),
            );
        } else {
            self.readiness.set_not_ready(
                conditions::TRANSPORT,
                "the transport is not listening on any address",
            );
        }
        if shared.is_shutting_down() && !self.readiness.is_shutting_down() {
            self.readiness.begin_shutdown();
        }
    }
}

impl Node {
    /// The health report of `GET /health` (cached for
    /// `observability.health.cache_ttl`).
    pub async fn health(&self) -> Arc<HealthReport> {
        self.shared.observe.health.report().await
    }

    /// The readiness report of `GET /health/ready`.
    pub fn readiness(&self) -> ReadinessReport {
        let observe = &self.shared.observe;
        observe.refresh_readiness(&self.shared);
        observe.readiness.report()
    }

    /// Pending and firing alerts as of the alert engine's last evaluation
    /// (none when alerting is disabled).
    pub fn alerts(&self) -> Vec<ActiveAlert> {
        self.shared.observe.alerts().active()
    }

    /// The process-wide metrics exporter, when `observability.metrics` is
    /// enabled: `render()` is the body of `GET /metrics` without libp2p's
    /// metrics.
    pub fn metrics(&self) -> Option<MetricsHandle> {
        self.shared.observe.metrics.clone()
    }
}

/// Registers the health checks, follows the initial bootstrap and starts the
/// alert engine. Runs inside the node's runtime, after the transport started.
pub(crate) fn start(node: &Node) -> Result<(), NodeError> {
    let shared = &node.shared;
    let observe = &shared.observe;
    let config = &shared.config.observability;
    let weak = Arc::downgrade(shared);

    let checker = &observe.health;
    checker.add_check(
        "store",
        CheckOptions::critical(),
        checks::StoreCheck::new(weak.clone()),
    );
    checker.add_check(
        "transport",
        CheckOptions::critical(),
        checks::TransportCheck::new(weak.clone()),
    );
    let peers = weak.clone();
    checker.add_check(
        "peers",
        CheckOptions::non_critical(),
        PeerCountCheck::new(
            usize::try_from(config.health.min_peers).unwrap_or(usize::MAX),
            move || {
                peers
                    .upgrade()
                    .map_or(0, |s| s.transport.connected_peers().len())
            },
        ),
    );
    checker.add_check(
        "disk",
        CheckOptions::critical(),
        DiskSpaceCheck::new(shared.data_dir.root(), config.health.disk),
    );
    for server in &shared.config.mcp.servers {
        checker.add_check(
            format!("mcp_server:{}", server.id),
            CheckOptions::non_critical(),
            checks::MountedServerCheck::new(weak.clone(), server.id.clone()),
        );
    }

    if !shared.config.backup.interval.0.is_zero() {
        checker.add_check(
            "backup",
            CheckOptions::non_critical(),
            checks::BackupCheck::new(weak.clone()),
        );
    }

    follow_bootstrap(shared);

    let alerts_config = &config.alerts;
    if alerts_config.enabled {
        match &observe.metrics {
            Some(metrics) => {
                let data_root = shared.data_dir.root().to_path_buf();
                let engine =
                    AlertEngine::from_config(alerts_config, RecorderSource::new(metrics.clone()))
                        .map_err(|e| {
                            NodeError::Internal(format!("cannot start the alert engine: {e}"))
                        })?
                        .with_external_label("node_id", &shared.peer_id().to_string())
                        .before_evaluation(move || {
                            // statvfs is quick; the gauge feeds DawnDiskSpaceLow.
                            let _ = dawn_observe::health::record_disk_space(&data_root);
                        });
                let handle = engine.spawn();
                checker.add_check(
                    "alerts",
                    CheckOptions::non_critical(),
                    AlertStateCheck::new(handle.clone()),
                );
                *observe
                    .alerts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = handle.clone();
                let stop = shared.stop.clone();
                shared.background_spawn(async move {
                    stop.cancelled().await;
                    handle.shutdown().await;
                });
            }
            None => tracing::warn!(
                "observability.alerts.enabled is true but metrics are disabled: the alert engine reads the node's metrics, so it does not run"
            ),
        }
    }
    Ok(())
}

/// Peer ids of `node.bootstrap`.
fn bootstrap_peers(shared: &NodeShared) -> Vec<PeerId> {
    shared
        .config
        .node
        .bootstrap
        .iter()
        .filter_map(|a| match a.iter().last() {
            Some(Protocol::P2p(peer)) => Some(peer),
            _ => None,
        })
        .collect()
}

/// Marks the bootstrap condition met once a bootstrap peer is connected, or
/// after `observability.health.bootstrap_timeout`.
fn follow_bootstrap(shared: &Arc<NodeShared>) {
    let readiness = shared.observe.readiness.clone();
    let peers = bootstrap_peers(shared);
    if peers.is_empty() {
        readiness.set_ready_with_note(conditions::BOOTSTRAP, "no bootstrap peers configured");
        return;
    }
    let timeout = shared.config.observability.health.bootstrap_timeout;
    let mut events = shared.events.subscribe();
    let weak: Weak<NodeShared> = Arc::downgrade(shared);
    let stop = shared.stop.clone();
    shared.background_spawn(async move {
        let connected = |weak: &Weak<NodeShared>| -> Option<PeerId> {
            let shared = weak.upgrade()?;
            peers
                .iter()
                .find(|p| shared.transport.is_connected(p))
                .copied()
        };
        let wait = async {
            loop {
                if let Some(peer) = connected(&weak) {
                    return Some(peer);
                }
                match events.recv().await {
                    Ok(NodeEvent::PeerConnected(_)) | Err(RecvError::Lagged(_)) => {}
                    Ok(_) => {}
                    Err(RecvError::Closed) => return None,
                }
            }
        };
        tokio::select! {
            () = stop.cancelled() => {}
            result = tokio::time::timeout(timeout, wait) => match result {
                Ok(Some(peer)) => readiness.set_ready_with_note(
                    conditions::BOOTSTRAP,
                    format!("connected to bootstrap peer {peer}"),
                ),
                Ok(None) => {}
                Err(_) => {
                    tracing::warn!(timeout = ?timeout, "no bootstrap peer connected in time; reporting ready anyway");
                    readiness.set_ready_with_note(
                        conditions::BOOTSTRAP,
                        format!(
                            "timed out after {} without a bootstrap peer",
                            dawn_observe::units::format_duration(timeout)
                        ),
                    );
                }
            },
        }
    });
}
