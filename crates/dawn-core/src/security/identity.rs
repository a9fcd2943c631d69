//! Loading the node key at start: plain or encrypted, with the passphrase
//! from the embedding program (e.g. dawn-node's prompt), `DAWN_PASSPHRASE`
//! or `security.passphrase_file`; every unlock and failure audited.

use dawn_security::{
    AuditDecision, AuditEvent, AuditRecord, IdentityError, KeyFileStatus, NodeIdentity,
    PASSPHRASE_ENV, Passphrase, PassphraseError, SecretFileError,
};

use super::SecurityError;
use crate::{config::DawnConfig, data_dir::DataDir};

/// How the node key's passphrase is supplied beyond `DAWN_PASSPHRASE` and
/// `security.passphrase_file`: a binary that asked for it interactively
/// passes it here ([`crate::NodeBuilder::passphrase`]).
#[derive(Clone, Default)]
pub struct KeyUnlock {
    passphrase: Option<Passphrase>,
}

impl std::fmt::Debug for KeyUnlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyUnlock")
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl KeyUnlock {
    /// Uses `passphrase` before any other source.
    pub fn with_passphrase(passphrase: Passphrase) -> Self {
        KeyUnlock {
            passphrase: Some(passphrase),
        }
    }
}

/// Whether starting a node with `config` needs a key passphrase: the key
/// file exists and is encrypted, or it is missing and
/// `security.encryption_at_rest` (or `require_passphrase`) asks for a new
/// encrypted one. Also tells whether `DAWN_PASSPHRASE` or
/// `security.passphrase_file` will supply it: `(needed, supplied)`. A binary
/// asks interactively when needed and not supplied. Blocking (reads the key
/// file's header).
pub fn passphrase_needed(config: &DawnConfig) -> (bool, bool) {
    let path = DataDir::new(&config.node.data_root).node_key();
    let needed = match NodeIdentity::key_file_info(&path) {
        Ok(info) => info.encrypted,
        Err(IdentityError::File(SecretFileError::NotFound { .. })) => {
            config.security.encryption_at_rest || config.security.require_passphrase
        }
        // Loading will report the problem itself.
        Err(_) => false,
    };
    let supplied =
        std::env::var_os(PASSPHRASE_ENV).is_some() || config.security.passphrase_file.is_some();
    (needed, supplied)
}

/// The passphrase: from `unlock`, else `DAWN_PASSPHRASE`, else
/// `security.passphrase_file`.
fn resolve(
    config: &DawnConfig,
    unlock: &KeyUnlock,
    why: &str,
) -> Result<Passphrase, SecurityError> {
    if let Some(passphrase) = &unlock.passphrase {
        return Ok(passphrase.clone());
    }
    match Passphrase::from_env(PASSPHRASE_ENV) {
        Ok(passphrase) => return Ok(passphrase),
        Err(PassphraseError::EnvNotSet { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    if let Some(file) = &config.security.passphrase_file {
        return Ok(Passphrase::from_file(file)?);
    }
    Err(SecurityError::PassphraseNeeded(format!(
        "{why}: set {PASSPHRASE_ENV}, set security.passphrase_file, or start dawn-node on a \
         terminal to be asked for it"
    )))
}

/// Loads (or creates) the node key as the configuration says, auditing
/// `key_unlocked` / `key_unlock_failed`. The key file is never modified by a
/// failed attempt. Blocking.
pub(super) fn load(
    config: &DawnConfig,
    data_dir: &DataDir,
    unlock: KeyUnlock,
    record: &dyn Fn(AuditRecord),
) -> Result<(NodeIdentity, KeyFileStatus), SecurityError> {
    let path = data_dir.node_key();
    let security = &config.security;
    let failed = |reason: String| {
        record(
            AuditRecord::new(AuditEvent::KeyUnlockFailed)
                .decision(AuditDecision::Deny)
                .reason(reason)
                .detail("path", path.display().to_string()),
        );
    };
    let unlocked = |identity: &NodeIdentity, how: &str| {
        record(
            AuditRecord::new(AuditEvent::KeyUnlocked)
                .decision(AuditDecision::Allow)
                .reason(how.to_owned())
                .detail("peer_id", identity.peer_id().to_string())
                .detail("path", path.display().to_string()),
        );
    };
    match NodeIdentity::key_file_info(&path) {
        Err(IdentityError::File(SecretFileError::NotFound { .. })) => {
            if !(security.encryption_at_rest || security.require_passphrase) {
                return Ok(NodeIdentity::load_or_create(&path)?);
            }
            let passphrase = resolve(
                config,
                &unlock,
                "security.encryption_at_rest is true and a new node key must be created encrypted",
            )
            .inspect_err(|e| failed(e.to_string()))?;
            match NodeIdentity::create_encrypted(&path, &passphrase) {
                Ok(identity) => {
                    unlocked(&identity, "created a new encrypted node key");
                    Ok((identity, KeyFileStatus::Created))
                }
                Err(error) => {
                    failed(error.to_string());
                    Err(error.into())
                }
            }
        }
        Err(error) => {
            failed(error.to_string());
            Err(error.into())
        }
        Ok(info) if info.encrypted => {
            let passphrase = resolve(
                config,
                &unlock,
                &format!("the node key {} is encrypted", path.display()),
            )
            .inspect_err(|e| failed(e.to_string()))?;
            match NodeIdentity::load_with(&path, Some(&passphrase)) {
                Ok(identity) => {
                    unlocked(&identity, "unlocked the node key with its passphrase");
                    Ok((identity, KeyFileStatus::Loaded))
                }
                Err(error) => {
                    failed(error.to_string());
                    Err(error.into())
                }
            }
        }
        Ok(_) => {
            if security.require_passphrase {
                let error = SecurityError::PlainKey { path: path.clone() };
                failed(error.to_string());
                return Err(error);
            }
            if security.encryption_at_rest {
                tracing::warn!(
                    path = %path.display(),
                    "security.encryption_at_rest is true but the node key is not encrypted; \
                     encrypt it with `dawn-cli identity encrypt` while the node is stopped"
                );
            }
            Ok((NodeIdentity::load(&path)?, KeyFileStatus::Loaded))
        }
    }
}
