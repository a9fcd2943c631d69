//! Observability for Dawn nodes: process-wide log setup today; metrics
//! export, health checks and alerting build on it.
//!
//! Libraries in the workspace only *emit* `tracing` events and `metrics`
//! measurements; a binary (or an embedding program) decides where they go by
//! calling into this crate once at start-up.
//!
//! ```
//! use dawn_observe::logging::{LogFormat, LogSettings, parse_level};
//!
//! assert!(parse_level("info,dawn_transport=debug").is_ok());
//! assert!(parse_level("loud").is_err());
//! let settings = LogSettings { level: "warn".into(), format: LogFormat::Json, file: None };
//! // dawn_observe::logging::init(&settings) installs it for the whole process.
//! # let _ = settings;
//! ```

pub mod logging;
