//! The node's security: every inbound path goes through here.
//!
//! [`NodeSecurity`] combines dawn-security's pieces for one running node:
//!
//! - the [`TrustRegistry`] (config pins, stored records, bootstrap peers,
//!   the default level) and the [`Policy`] (`security.policy`);
//! - the audit log (`<data_root>/audit/`), written by a dedicated thread
//!   through an [`AuditSink`];
//! - the [`ReputationTracker`] (misbehaviour scores, bans that expire);
//! - the API token, which `dawn-cli token rotate` can replace while the node
//!   runs.
//!
//! The checks, one per inbound path:
//!
//! - **peer RPC** ([`NodeSecurity::authorize_call`], from `node/inbound.rs`):
//!   each JSON-RPC method maps to a [`Permission`]; a refusal is JSON-RPC
//!   error -32001 `not permitted`, counted in
//!   `dawn_security_denials_total{permission}` and audited;
//! - **connections** (`admission`): on `PeerConnected`, untrusted peers are
//!   banned, and under `security.reject_unknown` peers without a record are
//!   disconnected;
//! - **registry gossip** ([`NodeSecurity::authorize_discovery`],
//!   [`NodeSecurity::announcement_rejected`]);
//! - **HTTP API and MCP** ([`NodeSecurity::verify_api_token`], with failures
//!   audited as `api_auth_failed`).

pub(crate) mod admission;
pub(crate) mod api;
mod authorize;
#[cfg(test)]
mod decoder_props;
mod identity;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock, RwLock},
    time::{Duration, Instant},
};

use dawn_security::{
    ApiToken, AuditDecision, AuditEvent, AuditLog, AuditLogOptions, AuditRecord, AuditSink,
    FsyncPolicy, NodeIdentity, Offence, Permission, Policy, ReputationAction, ReputationTracker,
    TrustRegistry, TrustSettings, audit::AuditWriterThread,
};
use dawn_store::Store;
use dawn_transport::{PeerId, Transport};

pub use dawn_security::{
    Passphrase, PassphraseError, PeerTrust, TrustChange, TrustLevel, passphrase_prompt,
};
pub use identity::{KeyUnlock, passphrase_needed};

use crate::{
    config::{AuditAllowed, DawnConfig, SecuritySection},
    data_dir::DataDir,
};

/// Why the node's security could not be set up. Messages name the file or
/// the config key to fix.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The audit log cannot be opened (locked, damaged tail, permissions).
    #[error("cannot open the audit log: {0}")]
    Audit(#[from] dawn_security::AuditError),
    /// The audit writer thread could not start.
    #[error("cannot start the audit log writer: {0}")]
    AuditThread(std::io::Error),
    /// Trust configuration or stored records are invalid.
    #[error(transparent)]
    Trust(#[from] dawn_security::TrustError),
    /// `security.policy` is invalid.
    #[error(transparent)]
    Policy(#[from] dawn_security::PolicyError),
    /// Reputation settings or records are invalid.
    #[error(transparent)]
    Reputation(#[from] dawn_security::ReputationError),
    /// The node key cannot be loaded, unlocked or created.
    #[error(transparent)]
    Identity(#[from] dawn_security::IdentityError),
    /// The key passphrase could not be read.
    #[error("cannot read the node key passphrase: {0}")]
    Passphrase(#[from] dawn_security::PassphraseError),
    /// A passphrase is needed and none was supplied.
    #[error("{0}")]
    PassphraseNeeded(String),
    /// `security.require_passphrase` is set but the key file is not
    /// encrypted.
    #[error(
        "security.require_passphrase is true but the node key {} is not encrypted; encrypt it \
         with `dawn-cli identity encrypt` (the node must be stopped) or set \
         security.require_passphrase = false",
        path.display()
    )]
    PlainKey {
        /// The key file.
        path: PathBuf,
    },
    /// The API token cannot be loaded or created.
    #[error(transparent)]
    Token(#[from] dawn_security::TokenError),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The audit writer: the sink async code records through, and its thread.
struct AuditWriter {
    sink: AuditSink,
    thread: AuditWriterThread,
}

/// The security state of one running node (see the [module docs](self)).
pub(crate) struct NodeSecurity {
    trust: TrustRegistry,
    policy: Policy,
    reputation: ReputationTracker,
    audit: Mutex<Option<AuditWriter>>,
    audit_dir: PathBuf,
    audit_allowed: AuditAllowed,
    /// `None` when `api.require_token` is false.
    api_token: RwLock<Option<ApiToken>>,
    token_path: PathBuf,
    /// Set once the transport runs; admission and bans go through it.
    transport: OnceLock<Transport>,
    /// When each peer was last penalized for exceeding a rate limit.
    rate_limit_penalized: Mutex<HashMap<PeerId, Instant>>,
}

impl std::fmt::Debug for NodeSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSecurity")
            .field("trust", &self.trust)
            .field("audit_dir", &self.audit_dir)
            .finish_non_exhaustive()
    }
}

/// The trust settings from the configuration.
pub(crate) fn trust_settings(config: &DawnConfig) -> TrustSettings {
    let security: &SecuritySection = &config.security;
    TrustSettings {
        default_level: security.trust_level_default,
        reject_unknown: security.reject_unknown,
        trusted_peers: SecuritySection::peers(&security.trusted_peers),
        blocked_peers: SecuritySection::peers(&security.blocked_peers),
        bootstrap_peers: config
            .node
            .bootstrap
            .iter()
            .filter_map(|addr| match addr.iter().last() {
                Some(libp2p::multiaddr::Protocol::P2p(peer)) => Some(peer),
                _ => None,
            })
            .collect(),
    }
}

impl NodeSecurity {
    /// Opens the audit log, loads (or creates) the node key, builds the trust
    /// registry, policy and reputation tracker, and loads the API token.
    /// Blocking: call from `spawn_blocking` with the data directory locked.
    pub(crate) fn open(
        config: &DawnConfig,
        data_dir: &DataDir,
        store: &Store,
        unlock: KeyUnlock,
    ) -> Result<(NodeSecurity, NodeIdentity, dawn_security::KeyFileStatus), SecurityError> {
        let security = &config.security;
        let audit_dir = data_dir.audit_dir();
        let log = AuditLog::open_with(
            &audit_dir,
            AuditLogOptions {
                max_file_bytes: security.audit.max_file_size.0,
                fsync: if security.audit.fsync {
                    FsyncPolicy::EveryWrite
                } else {
                    FsyncPolicy::Never
                },
            },
        )?;
        let (sink, thread) = AuditSink::spawn(log, security.audit.queue_capacity)
            .map_err(SecurityError::AuditThread)?;
        let writer = AuditWriter { sink, thread };
        let record = |record: AuditRecord| {
            let _ = writer.sink.record(record);
        };
        let loaded = identity::load(config, data_dir, unlock, &record);
        let (identity, status) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                close_writer(writer);
                return Err(error);
            }
        };
        let built = (|| -> Result<_, SecurityError> {
            let trust = TrustRegistry::open(store.clone(), trust_settings(config))?;
            let policy = Policy::new(security.policy.clone())?;
            let reputation = ReputationTracker::open(store.clone(), security.reputation.clone())?;
            let token = if config.api.enabled && config.api.require_token {
                Some(ApiToken::load_or_create(&data_dir.api_token())?.0)
            } else {
                None
            };
            Ok((trust, policy, reputation, token))
        })();
        let (trust, policy, reputation, token) = match built {
            Ok(parts) => parts,
            Err(error) => {
                close_writer(writer);
                return Err(error);
            }
        };
        if trust.default_level() >= TrustLevel::Trusted {
            tracing::warn!(
                level = %trust.default_level(),
                "security.trust_level_default lets every unknown peer call state-changing tools"
            );
        }
        Ok((
            NodeSecurity {
                trust,
                policy,
                reputation,
                audit: Mutex::new(Some(writer)),
                audit_dir,
                audit_allowed: security.audit.allowed,
                api_token: RwLock::new(token),
                token_path: data_dir.api_token(),
                transport: OnceLock::new(),
                rate_limit_penalized: Mutex::new(HashMap::new()),
            },
            identity,
            status,
        ))
    }

    /// The trust registry.
    pub(crate) fn trust(&self) -> &TrustRegistry {
        &self.trust
    }

    /// The reputation tracker.
    pub(crate) fn reputation(&self) -> &ReputationTracker {
        &self.reputation
    }

    /// The audit log directory.
    pub(crate) fn audit_dir(&self) -> &Path {
        &self.audit_dir
    }

    /// Queues an audit record (never blocks). A record that cannot be queued
    /// is counted by the sink and reported in the log itself later.
    pub(crate) fn audit(&self, record: AuditRecord) {
        let event = record.event.as_str().to_owned();
        let guard = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(writer) => {
                if writer.sink.record(record).is_ok() {
                    metrics::counter!("dawn_audit_events_total", "event" => event).increment(1);
                } else {
                    metrics::counter!("dawn_audit_records_dropped_total").increment(1);
                }
            }
            None => {
                metrics::counter!("dawn_audit_records_dropped_total").increment(1);
                tracing::warn!(event, "audit record after the audit log was closed");
            }
        }
    }

    /// Waits until every record queued so far is written. Blocking.
    pub(crate) fn flush_audit(&self) {
        let sink = self
            .audit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|w| w.sink.clone());
        if let Some(sink) = sink {
            let _ = sink.flush();
        }
    }

    /// Closes the audit log: writes what is queued, stops the writer thread
    /// and releases the log's lock. Later records are counted as dropped.
    pub(crate) async fn close(&self) {
        let writer = self.audit.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || close_writer(writer)).await;
        }
    }

    /// Whether allowed requests with this permission are audited.
    fn audits_allowed(&self, permission: Permission) -> bool {
        match self.audit_allowed {
            AuditAllowed::All => true,
            AuditAllowed::None => false,
            AuditAllowed::StateChanging => permission == Permission::CallTool { read_only: false },
        }
    }

    /// Checks an `Authorization` header against the API token. `Ok(())` when
    /// the node requires no token.
    pub(crate) fn verify_api_token(&self, header: Option<&str>) -> Result<(), &'static str> {
        let guard = self.api_token.read().unwrap_or_else(|e| e.into_inner());
        let Some(token) = guard.as_ref() else {
            return Ok(());
        };
        match header {
            Some(value) if token.verify_bearer_header(value) => Ok(()),
            Some(_) => Err("wrong token"),
            None => Err("missing bearer token"),
        }
    }

    /// Records a refused API or MCP request.
    pub(crate) fn api_auth_failed(&self, path: &str, reason: &str) {
        metrics::counter!("dawn_api_auth_failures_total").increment(1);
        self.audit(
            AuditRecord::new(AuditEvent::ApiAuthFailed)
                .decision(AuditDecision::Deny)
                .reason(reason)
                .detail("path", path),
        );
    }

    /// Replaces the API token file with a new token and uses it at once; the
    /// old token stops working. Blocking (writes the file).
    pub(crate) fn rotate_api_token(&self, by: &str) -> Result<(), SecurityError> {
        let mut guard = self.api_token.write().unwrap_or_else(|e| e.into_inner());
        let token = ApiToken::rotate(&self.token_path)?;
        *guard = Some(token);
        drop(guard);
        tracing::info!(path = %self.token_path.display(), "API token rotated");
        self.audit(
            AuditRecord::new(AuditEvent::TokenRotated)
                .reason(format!("rotated through {by}"))
                .detail("path", self.token_path.display().to_string()),
        );
        Ok(())
    }

    /// Whether this node requires an API token.
    pub(crate) fn token_required(&self) -> bool {
        self.api_token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Counts a refusal in `dawn_security_denials_total`.
    fn count_denial(permission: Permission) {
        metrics::counter!("dawn_security_denials_total", "permission" => permission.name())
            .increment(1);
    }

    /// Whether `peer` may send us registry records and receive ours
    /// (`discover`). A refusal is counted and audited as
    /// `announcement_rejected`; the caller drops the record.
    pub fn authorize_discovery(&self, peer: &PeerId) -> bool {
        let decision = self.trust.authorize(
            peer,
            &self.policy,
            Permission::Discover,
            &dawn_security::Requirement::none(),
        );
        if !decision.allowed {
            Self::count_denial(Permission::Discover);
            self.audit(
                AuditRecord::new(AuditEvent::AnnouncementRejected)
                    .peer(peer)
                    .decision(AuditDecision::Deny)
                    .reason(decision.detail)
                    .detail("level", decision.level.as_str()),
            );
        }
        decision.allowed
    }

    /// Records that a registry announcement from `peer` was rejected for
    /// `reason` (bad signature, wrong owner, malformed, stale...). With
    /// `offence`, the peer's reputation drops too.
    pub fn announcement_rejected(&self, peer: &PeerId, reason: &str, offence: Option<Offence>) {
        self.audit(
            AuditRecord::new(AuditEvent::AnnouncementRejected)
                .peer(peer)
                .decision(AuditDecision::Deny)
                .reason(reason),
        );
        if let Some(offence) = offence {
            self.offence(peer, offence);
        }
    }

    /// Lowers `peer`'s reputation for `offence` and carries out what that
    /// calls for (disconnect, or a ban that expires). Writes to the database
    /// (a short commit, moved off the async worker when possible).
    pub fn offence(&self, peer: &PeerId, offence: Offence) {
        let penalized = blocking_in_place(|| {
            self.reputation
                .penalize(peer, offence, crate::node::now_ms())
        });
        let action = match penalized {
            Ok(standing) => standing.action,
            Err(error) => {
                tracing::warn!(%peer, %error, "cannot record a reputation penalty");
                ReputationAction::None
            }
        };
        self.enforce_reputation(peer, action, offence.as_str());
    }

    /// Called for every request refused by a rate limit. Sustained abuse
    /// costs reputation: at most one `rate_limit_exceeded` offence per peer
    /// per `security.reputation.rate_limit_interval_secs` (default 10 s), so
    /// a burst that an honest peer may cause costs little, while a peer that
    /// keeps hammering the node is disconnected after a minute or two and
    /// then banned (default penalties).
    pub(crate) fn rate_limited(&self, peer: &PeerId) {
        let now = Instant::now();
        let interval = Duration::from_secs(self.reputation.config().rate_limit_interval_secs);
        if !interval.is_zero() {
            let mut last = self
                .rate_limit_penalized
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last
                .get(peer)
                .is_some_and(|t| now.duration_since(*t) < interval)
            {
                return;
            }
            if last.len() > 10_000 {
                last.retain(|_, t| now.duration_since(*t) < interval);
            }
            last.insert(*peer, now);
        }
        self.offence(peer, Offence::RateLimitExceeded);
    }
}

/// Runs blocking `f` without stalling other tasks of a multi-threaded tokio
/// runtime (`block_in_place`); elsewhere it just runs `f`.
fn blocking_in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn close_writer(writer: AuditWriter) {
    let AuditWriter { sink, thread } = writer;
    let _ = sink.flush();
    drop(sink);
    if thread.join().is_err() {
        tracing::error!("the audit writer thread panicked");
    }
}

impl crate::Node {
    /// `peer`'s effective trust level and where it comes from.
    pub fn trust(&self, peer: &PeerId) -> dawn_security::PeerTrust {
        self.shared.security.trust().lookup(peer)
    }

    /// Every peer with a pin, a stored trust record or a bootstrap entry.
    pub fn trust_list(&self) -> Vec<dawn_security::PeerTrust> {
        self.shared.security.trust().list()
    }

    /// Sets `peer`'s trust level as an operator would with `dawn-cli trust
    /// set`: durable, audited (`trust_changed`), and applied at once
    /// (`untrusted` bans and disconnects the peer).
    pub async fn set_trust(
        &self,
        peer: PeerId,
        level: TrustLevel,
        note: Option<String>,
    ) -> Result<dawn_security::TrustChange, SecurityError> {
        self.shared
            .security
            .set_trust(peer, level, note, "the embedding program")
            .await
    }

    /// Removes `peer`'s stored trust record (back to bootstrap or the
    /// default level), audited and applied at once.
    pub async fn remove_trust(
        &self,
        peer: PeerId,
    ) -> Result<Option<dawn_security::TrustChange>, SecurityError> {
        self.shared
            .security
            .remove_trust(peer, "the embedding program")
            .await
    }

    /// `peer`'s reputation now: its misbehaviour score (decay applied),
    /// offences, and ban if any.
    pub fn reputation(&self, peer: &PeerId) -> dawn_security::PeerStanding {
        self.shared
            .security
            .reputation()
            .standing(peer, crate::node::now_ms())
    }

    /// The audit log directory (`<data_root>/audit`).
    pub fn audit_dir(&self) -> &Path {
        self.shared.security.audit_dir()
    }

    /// Waits until every audit record queued so far is on disk (for tests
    /// and tools that read the log right after an event).
    pub async fn flush_audit(&self) {
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.security.flush_audit()).await;
    }
}

impl NodeSecurity {
    /// Records a backup written by this node (`backup_created`).
    pub(crate) fn backup_created(&self, archive: &Path, bytes: u64) {
        self.audit(backup_created_record(archive, bytes));
    }
}

fn backup_created_record(archive: &Path, bytes: u64) -> AuditRecord {
    AuditRecord::new(AuditEvent::BackupCreated)
        .reason("a backup archive was written")
        .detail("archive", archive.display().to_string())
        .detail("bytes", bytes)
}

/// Appends `record` to the audit log of a data directory that no node is
/// running on (for tools such as dawn-cli working offline). Fails if a node
/// holds the log. Blocking.
pub fn audit_offline(
    data_dir: &DataDir,
    record: AuditRecord,
) -> Result<(), dawn_security::AuditError> {
    let log = AuditLog::open(
        &data_dir.audit_dir(),
        dawn_security::audit::DEFAULT_MAX_FILE_BYTES,
    )?;
    log.append(&record)?;
    Ok(())
}

/// Records, offline, that a backup of `data_dir` was written to `archive`.
pub fn audit_backup_created(
    data_dir: &DataDir,
    archive: &Path,
    bytes: u64,
) -> Result<(), dawn_security::AuditError> {
    audit_offline(data_dir, backup_created_record(archive, bytes))
}

/// Records, in the restored data directory's own log, that it was restored
/// from `archive`.
pub fn audit_backup_restored(
    data_root: &Path,
    archive: &Path,
) -> Result<(), dawn_security::AuditError> {
    audit_offline(
        &DataDir::new(data_root),
        AuditRecord::new(AuditEvent::BackupRestored)
            .reason("the data directory was restored from a backup archive")
            .detail("archive", archive.display().to_string()),
    )
}
