//! Command-line syntax of the security commands: `trust`, `audit`,
//! `identity` and `token`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use dawn_security::{AuditEvent, TrustLevel};

/// `dawn-cli trust ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TrustCommand {
    /// List every peer with a trust record: pinned by the configuration
    /// (`security.trusted_peers`, `security.blocked_peers`), set by an
    /// operator, or a `node.bootstrap` peer. Peers without a record have
    /// the default level (shown in the header).
    List,
    /// Show one peer's effective trust level, where it comes from, and its
    /// reputation.
    Show {
        /// The peer id (12D3KooW...).
        #[arg(value_name = "PEER")]
        peer: String,
    },
    /// Set a peer's trust level on the running node. It applies at once:
    /// `untrusted` disconnects and bans the peer; `trusted` lets it call
    /// tools that change state. Levels: untrusted, unknown, verified,
    /// trusted, bootstrap.
    Set {
        /// The peer id (12D3KooW...).
        #[arg(value_name = "PEER")]
        peer: String,
        /// The new level.
        #[arg(value_name = "LEVEL", value_parser = parse_level)]
        level: TrustLevel,
        /// Why (kept with the record and in the audit log).
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Remove a peer's stored record: it goes back to `bootstrap` (if listed
    /// in node.bootstrap) or the default level.
    Remove {
        /// The peer id (12D3KooW...).
        #[arg(value_name = "PEER")]
        peer: String,
    },
}

/// `dawn-cli audit ...` (reads `<data-root>/audit` directly; the node need
/// not run).
#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain of the audit log. Exit status 0 if it is
    /// intact; otherwise 1 and the first bad line (`file:line`) with what is
    /// wrong (edited, deleted, inserted or reordered lines, missing files).
    Verify,
    /// Print the newest audit records, oldest first; with --follow, keep
    /// printing new ones as they are written (until interrupted).
    Tail(AuditTailArgs),
}

/// Options of `dawn-cli audit tail`.
#[derive(Debug, Clone, Args)]
pub struct AuditTailArgs {
    /// How many records to print.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 20)]
    pub lines: usize,
    /// Keep printing records as they are appended.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only records of this event type (e.g. call_denied, connection_refused,
    /// trust_changed, api_auth_failed, key_unlock_failed).
    #[arg(long, value_name = "TYPE", value_parser = parse_event)]
    pub event: Option<AuditEvent>,
    /// Only records about this peer id.
    #[arg(long, value_name = "PEER")]
    pub peer: Option<String>,
}

/// Where passphrases come from.
#[derive(Debug, Clone, Args)]
pub struct PassphraseArgs {
    /// File holding the current passphrase (mode 0600), instead of
    /// $DAWN_PASSPHRASE or a prompt.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// File holding the new passphrase (mode 0600), instead of
    /// $DAWN_NEW_PASSPHRASE or a prompt (asked twice).
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
}

/// `dawn-cli identity ...` (works on `<data-root>/node.key` directly).
#[derive(Debug, Clone, Subcommand)]
pub enum IdentityCommand {
    /// Show the node's peer id and whether its key is encrypted (no
    /// passphrase needed).
    Show,
    /// Create the node key before the first start. Refuses to overwrite an
    /// existing key.
    Init {
        /// Encrypt the new key with a passphrase (argon2id + AES-256-GCM).
        #[arg(long)]
        encrypt: bool,
        #[command(flatten)]
        passphrases: PassphraseArgs,
    },
    /// Encrypt the existing plain key with a new passphrase (atomic: on any
    /// failure the old file stays as it was). The node must be stopped.
    Encrypt {
        #[command(flatten)]
        passphrases: PassphraseArgs,
    },
    /// Remove the passphrase: write the key unencrypted. The node must be
    /// stopped.
    Decrypt {
        #[command(flatten)]
        passphrases: PassphraseArgs,
    },
    /// Change the key's passphrase (also upgrades old KDF parameters). The
    /// node must be stopped. A wrong current passphrase changes nothing.
    ChangePassphrase {
        #[command(flatten)]
        passphrases: PassphraseArgs,
    },
}

/// `dawn-cli token ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Replace the API bearer token in <data-root>/api.token with a new
    /// random one. With a running node the rotation goes through its API and
    /// the old token stops working at once; otherwise the file is replaced
    /// and the node uses the new token when it starts. The token itself is
    /// never printed.
    Rotate,
}

fn parse_level(raw: &str) -> Result<TrustLevel, String> {
    raw.parse::<TrustLevel>().map_err(|e| e.to_string())
}

fn parse_event(raw: &str) -> Result<AuditEvent, String> {
    raw.parse::<AuditEvent>().map_err(|e| e.to_string())
}
