//! Reloading a running node's configuration: the keys in
//! [`RELOADABLE_KEYS`](crate::config::RELOADABLE_KEYS) (today the trust
//! settings) take effect at once; other changed keys are reported as needing
//! a restart.

use dawn_security::{AuditDecision, AuditEvent, AuditRecord, TrustReconfiguration};

use super::Node;
use crate::config::{ConfigError, DawnConfig, changed_keys, is_reloadable};
use crate::security::{SecurityError, trust_settings};

/// What [`Node::reload_config`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigReload {
    /// Reloadable keys whose new values now apply, sorted.
    pub applied: Vec<String>,
    /// Keys that differ from the configuration the node started with and
    /// that take effect only at a restart (their running values stay),
    /// sorted.
    pub restart_required: Vec<String>,
    /// How peers' trust changed.
    pub trust: TrustReconfiguration,
}

/// Why [`Node::reload_config`] refused a configuration. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The trust settings could not be applied (for example a peer in both
    /// `security.trusted_peers` and `security.blocked_peers`).
    #[error(transparent)]
    Security(#[from] SecurityError),
}

impl Node {
    /// Applies `config` to the running node, as `dawn-node` does on SIGHUP.
    ///
    /// The keys in [`RELOADABLE_KEYS`](crate::config::RELOADABLE_KEYS) take
    /// effect at once: peers that became `untrusted` are banned and
    /// disconnected, peers no longer admitted (for example under a newly set
    /// `security.reject_unknown`) are disconnected, unblocked peers may
    /// connect again, and every peer whose trust changed gets a
    /// `trust_changed` audit record. Other keys that differ from the
    /// configuration the node started with are listed in
    /// [`ConfigReload::restart_required`] and keep their running values.
    ///
    /// An invalid configuration is refused as a whole: nothing changes. Each
    /// reload, applied or refused, is counted in `dawn_config_reloads_total`;
    /// an applied one is audited as `config_reloaded`.
    pub async fn reload_config(&self, config: DawnConfig) -> Result<ConfigReload, ReloadError> {
        let result = self.apply_reload(config).await;
        let outcome = if result.is_ok() { "applied" } else { "refused" };
        metrics::counter!("dawn_config_reloads_total", "result" => outcome).increment(1);
        result
    }

    async fn apply_reload(&self, config: DawnConfig) -> Result<ConfigReload, ReloadError> {
        let issues = config.validate();
        if !issues.is_empty() {
            return Err(ConfigError::Invalid(issues).into());
        }
        let shared = &self.shared;
        let mut running = shared.running_config.lock().await;
        let applied: Vec<String> = changed_keys(&running, &config)
            .into_iter()
            .filter(|key| is_reloadable(key))
            .collect();
        let restart_required: Vec<String> = changed_keys(&shared.config, &config)
            .into_iter()
            .filter(|key| !is_reloadable(key))
            .collect();

        let mut next = running.clone();
        next.security.trust_level_default = config.security.trust_level_default;
        next.security.reject_unknown = config.security.reject_unknown;
        next.security.trusted_peers = config.security.trusted_peers;
        next.security.blocked_peers = config.security.blocked_peers;
        let trust = shared
            .security
            .reconfigure_trust(trust_settings(&next))
            .await?;
        *running = next;
        drop(running);

        let join = |keys: &[String]| keys.join(", ");
        shared.security.audit(
            AuditRecord::new(AuditEvent::ConfigReloaded)
                .decision(AuditDecision::Allow)
                .reason("configuration reloaded")
                .detail("applied", join(&applied))
                .detail("restart_required", join(&restart_required))
                .detail("trust_changes", trust.changes.len()),
        );
        Ok(ConfigReload {
            applied,
            restart_required,
            trust,
        })
    }
}
