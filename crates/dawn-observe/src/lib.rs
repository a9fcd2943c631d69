//! Observability for Dawn nodes: logs, Prometheus metrics, health checks and
//! alerts.
//!
//! Libraries in the workspace only *emit* `tracing` events and `metrics`
//! measurements; a binary (or an embedding program) decides where they go by
//! calling into this crate at start-up:
//!
//! - [`logging`]: the process-wide `tracing` subscriber (text or flat JSON
//!   lines, level directives, optional rotated log file, secret-looking
//!   fields redacted; [`log_format`]);
//! - [`metrics`]: installs the Prometheus recorder, renders scrapes (with
//!   process metrics and extra sources such as libp2p's registry), and holds
//!   [`metrics::METRICS`], the documented list of every metric;
//! - [`health`]: component checks with timeouts and caching, readiness
//!   conditions, and the `/health` routes;
//! - [`alerts`] and [`notify`]: the rule engine over the node's own metrics
//!   and its log, webhook and Alertmanager notifiers;
//! - [`config`]: the `observability` configuration section.
//!
//! ```
//! use std::sync::Arc;
//! use dawn_observe::{
//!     alerts::{AlertEngine, InMemorySource},
//!     config::ObservabilityConfig,
//!     health::{CheckOptions, CheckResult, HealthChecker, HealthSettings, Readiness, sync_check},
//!     logging::{LogFormat, LogSettings, parse_level},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! assert!(parse_level("info,dawn_transport=debug").is_ok());
//! let settings = LogSettings { level: "warn".into(), format: LogFormat::Json, file: None };
//! // dawn_observe::logging::init(&settings) installs it for the whole process.
//! # let _ = settings;
//!
//! let config = ObservabilityConfig::default();
//! assert!(config.validate().is_empty());
//!
//! // Metrics: install once, then `handle.render()` at GET /metrics.
//! let metrics = dawn_observe::metrics::install().unwrap();
//! metrics::counter!("dawn_api_auth_failures_total").increment(1);
//! assert!(metrics.render().contains("dawn_api_auth_failures_total 1"));
//!
//! // Health: named checks, aggregated.
//! let checker = HealthChecker::new(HealthSettings::from_config(&config.health, "0.1.0", "12D3KooW..."))
//!     .with_check("store", CheckOptions::critical(), sync_check(|| CheckResult::healthy("open")));
//! assert_eq!(checker.report().await.status, dawn_observe::health::HealthStatus::Healthy);
//! let _routes = dawn_observe::health::router(Arc::new(checker), Readiness::node_default());
//!
//! // Alerts: built-in rules from config, over the recorder's metrics.
//! let engine = AlertEngine::from_config(&config.alerts, InMemorySource::new()).unwrap();
//! assert_eq!(engine.rules().len(), 5);
//! # }
//! ```

pub mod alerts;
pub mod config;
pub mod exposition;
pub mod health;
pub mod histogram;
pub mod log_format;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod process;
pub mod units;
