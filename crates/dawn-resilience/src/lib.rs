//! Resilience building blocks shared by every Dawn node.
//!
//! This crate owns two things today:
//!
//! * [`ErrorKind`] — the error taxonomy of the node. Every error a client or a
//!   remote peer can see has one stable kind, and each kind has one stable
//!   JSON-RPC error code and one metric label. `docs/errors.md` is generated
//!   from [`ErrorKind::ALL`].
//! * [`Deadline`] — an absolute point in time by which a call must finish, which
//!   travels with a call to a remote node as the remaining budget.
//!
//! Rate limits, circuit breakers, retry policies and bulkheads build on these.
//!
//! ```
//! use dawn_resilience::{Deadline, ErrorKind};
//! use std::time::Duration;
//!
//! let kind = ErrorKind::UnknownAgent;
//! assert_eq!(kind.jsonrpc_code(), -32003);
//! assert_eq!(kind.as_str(), "unknown_agent");
//!
//! let deadline = Deadline::after(Duration::from_secs(5));
//! assert!(!deadline.is_expired());
//! assert!(deadline.remaining() <= Duration::from_secs(5));
//! ```

mod deadline;
mod error_kind;

pub use deadline::Deadline;
pub use error_kind::{ErrorKind, UnknownErrorCode};
