//! Security for a Dawn node.
//!
//! Today this crate provides:
//!
//! - the node's long-term **identity** ([`NodeIdentity`]): an Ed25519 keypair
//!   whose public key is the node's libp2p [`PeerId`](libp2p_identity::PeerId),
//!   kept in a versioned JSON key file (`node.key`, see [`identity`]);
//! - the **API token** ([`ApiToken`]) that guards the node's HTTP API, kept in
//!   `api.token` and compared in constant time;
//! - **secret files** ([`secret_file`]): owner-only (`0700`) directories,
//!   atomic and durable `0600` writes, and reads that refuse files other users
//!   can read or write.
//!
//! Key files are stored unencrypted (`"encryption":"none"`) for now; the
//! format records its version and encryption scheme so passphrase-encrypted
//! keys can be added without breaking existing files. Trust levels and trust
//! policy, per-agent permissions, the audit log and peer reputation belong in
//! this crate too but are not written yet.
//!
//! All loading and writing here is blocking file I/O: from async code, call
//! it inside `tokio::task::spawn_blocking`.
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

pub mod api_token;
pub mod identity;
mod node_key_file;
pub mod secret_file;

pub use api_token::{API_TOKEN_FILE, API_TOKEN_PREFIX, ApiToken, TokenError};
pub use identity::{IdentityError, KeyFileStatus, NODE_KEY_FILE, NodeIdentity, verify};
pub use secret_file::{
    SecretFileError, create_secret_file, ensure_private_dir, read_secret_file, write_secret_file,
};
