//! Security for a Dawn node.
//!
//! This crate provides:
//!
//! - the node's long-term **identity** ([`NodeIdentity`]): an Ed25519 keypair
//!   whose public key is the node's libp2p [`PeerId`](libp2p_identity::PeerId),
//!   kept in a versioned JSON key file (`node.key`, see [`identity`]),
//!   optionally **encrypted at rest** with a [`Passphrase`] (argon2id +
//!   AES-256-GCM);
//! - the **API token** ([`ApiToken`]) that guards the node's HTTP API, kept in
//!   `api.token` and compared in constant time;
//! - **secret files** ([`secret_file`]): owner-only (`0700`) directories,
//!   atomic and durable `0600` writes, and reads that refuse files other users
//!   can read or write;
//! - **trust** ([`trust`]): [`TrustLevel`]s per peer, combining configuration
//!   pins, operator records in the store and a default ([`TrustRegistry`]);
//! - **authorization policy** ([`policy`]): which level may connect, discover,
//!   list, call, read and prompt, with per-agent and per-tool minimums
//!   ([`Policy`], [`Decision`]);
//! - the **audit log** ([`audit`]): hash-chained JSON Lines with rotation,
//!   verification, tail and follow ([`AuditLog`], [`AuditSink`], [`verify`]);
//! - **reputation** ([`reputation`]): per-peer misbehaviour scores with decay,
//!   disconnect and ban thresholds ([`ReputationTracker`]).
//!
//! The node (dawn-core) wires these together; this crate decides nothing on
//! its own about connections or calls.
//!
//! Loading, writing, database commits and audit appends here are blocking:
//! from async code, call them inside `tokio::task::spawn_blocking` (or use the
//! non-blocking [`AuditSink`]). Lookups of trust and policy decisions only
//! read memory.
//!
//! # Example
//!
//! ```
//! use dawn_security::{API_TOKEN_FILE, ApiToken, KeyFileStatus, NODE_KEY_FILE, NodeIdentity};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data_dir = tempfile::tempdir()?;
//! let key_path = data_dir.path().join("identity").join(NODE_KEY_FILE);
//!
//! // First start: a new identity is generated and stored with mode 0600.
//! let (identity, status) = NodeIdentity::load_or_create(&key_path)?;
//! assert_eq!(status, KeyFileStatus::Created);
//!
//! // Later starts load the same identity.
//! let (again, status) = NodeIdentity::load_or_create(&key_path)?;
//! assert_eq!(status, KeyFileStatus::Loaded);
//! assert_eq!(again.peer_id(), identity.peer_id());
//!
//! let signature = identity.sign(b"hello mesh");
//! assert!(dawn_security::verify(&again.public_key(), b"hello mesh", &signature));
//!
//! // The API token: the server checks the Authorization header...
//! let (token, created) = ApiToken::load_or_create(&data_dir.path().join(API_TOKEN_FILE))?;
//! assert!(created);
//! assert!(token.verify_bearer_header(&format!("Bearer {}", token.as_str())));
//! assert!(!token.verify_bearer_header("Bearer dawn_guess"));
//! // ...and never prints it.
//! assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
//! # Ok(())
//! # }
//! ```
//!
//! Trust, policy and the audit log together:
//!
//! ```
//! use dawn_security::{
//!     AuditDecision, AuditEvent, AuditLog, AuditRecord, Permission, Policy, Requirement,
//!     TrustLevel, TrustRegistry, TrustSettings,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data_dir = tempfile::tempdir()?;
//! let store = dawn_store::Store::open(data_dir.path().join("dawn.redb"))?;
//! let trust = TrustRegistry::open(store, TrustSettings::default())?;
//! let policy = Policy::default();
//! let audit = AuditLog::open(&data_dir.path().join("audit"), 64 * 1024 * 1024)?;
//!
//! let peer = dawn_security::NodeIdentity::generate()?.peer_id();
//! let write = Permission::CallTool { read_only: false };
//! let decision = trust.authorize(&peer, &policy, write, &Requirement::tool("files", "delete"));
//! assert!(!decision.allowed, "an unknown peer cannot change anything");
//! audit.append(
//!     &AuditRecord::new(AuditEvent::CallDenied)
//!         .peer(peer)
//!         .agent("files")
//!         .tool("delete")
//!         .decision(AuditDecision::Deny)
//!         .reason(decision.detail.clone()),
//! )?;
//!
//! trust.set(&peer, TrustLevel::Trusted, Some("our gateway".into()), 1_700_000_000_000)?;
//! assert!(trust.authorize(&peer, &policy, write, &Requirement::tool("files", "delete")).allowed);
//! assert_eq!(dawn_security::audit::verify(audit.dir())?.records, 1);
//! # Ok(())
//! # }
//! ```

pub mod api_token;
pub mod audit;
pub mod identity;
mod node_key_crypto;
mod node_key_file;
pub mod passphrase;
pub mod passphrase_prompt;
pub mod policy;
pub mod reputation;
pub mod secret_file;
pub mod trust;

pub use api_token::{API_TOKEN_FILE, API_TOKEN_PREFIX, ApiToken, TokenError};
pub use audit::{
    AUDIT_DIR, AuditDecision, AuditEntry, AuditError, AuditEvent, AuditFilter, AuditFollower,
    AuditLog, AuditLogOptions, AuditRecord, AuditSink, FsyncPolicy, VerifyError, VerifyReport,
};
pub use identity::{
    IdentityError, KeyFileInfo, KeyFileStatus, NODE_KEY_FILE, NodeIdentity, verify,
};
pub use node_key_crypto::KdfParams;
pub use passphrase::{MIN_NEW_PASSPHRASE_CHARS, PASSPHRASE_ENV, Passphrase, PassphraseError};
pub use policy::{
    AgentPolicyConfig, Decision, DecisionRule, Permission, PermissionMinimums, Policy,
    PolicyConfig, PolicyError, Requirement,
};
pub use reputation::{
    Offence, OffencePenalties, PeerStanding, ReputationAction, ReputationConfig, ReputationError,
    ReputationTracker,
};
pub use secret_file::{
    SecretFileError, create_secret_file, ensure_private_dir, read_secret_file, write_secret_file,
};
pub use trust::{
    PeerTrust, TrustChange, TrustError, TrustLevel, TrustOrigin, TrustReconfiguration,
    TrustRegistry, TrustSettings,
};
