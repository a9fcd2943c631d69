//! The node's long-term identity: an Ed25519 keypair whose public key is the
//! node's libp2p [`PeerId`], stored in a key file (`node.key`).
//!
//! The key file is created once, with mode `0600` inside a `0700` directory,
//! and is never replaced or modified by a later load: a file that cannot be
//! read is reported, not regenerated, because a new key would silently give
//! the node a new identity. The format is described in the private
//! `node_key_file` module: one versioned JSON object.
//!
//! Loading and creating block on file I/O; async callers should use
//! `tokio::task::spawn_blocking`.

use std::fmt;
use std::path::{Path, PathBuf};

use libp2p_identity::{Keypair, PeerId, PublicKey, ed25519};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::node_key_file::{self, CURRENT_VERSION, DecodeError};
use crate::secret_file::{self, SecretFileError};

/// Default file name of the node key inside the data directory.
pub const NODE_KEY_FILE: &str = "node.key";

/// An error loading, creating or generating a node identity.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// The key file could not be read or written: missing, exposed to other
    /// users (`chmod 600`), or an I/O failure. The message names the file.
    #[error(transparent)]
    File(#[from] SecretFileError),

    /// The key file exists but is damaged or is not a Dawn node key file.
    #[error(
        "key file {} is corrupt ({reason}); refusing to start. It was not modified. \
         Restore it from a backup, or move it away to create a new identity \
         (the node will then have a new peer ID)",
        path.display()
    )]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The key file uses a format version newer than this build understands.
    #[error(
        "key file {} has format version {version}, written by a newer version of Dawn \
         (this version reads version {supported}); refusing to start. It was not modified. \
         Upgrade Dawn to use it",
        path.display()
    )]
    NewerVersion {
        /// The key file.
        path: PathBuf,
        /// The version found in the file.
        version: u64,
        /// The newest version this build reads.
        supported: u64,
    },

    /// The secret key in the file is encrypted, which needs a passphrase;
    /// this version of Dawn cannot decrypt key files.
    #[error(
        "key file {} is encrypted ({encryption}); a passphrase is required, and this version \
         of Dawn cannot decrypt key files. It was not modified",
        path.display()
    )]
    UnsupportedEncryption {
        /// The key file.
        path: PathBuf,
        /// The `encryption` value found in the file.
        encryption: String,
    },

    /// The operating system's random number generator failed.
    #[error("cannot generate a node key: the system random number generator failed")]
    Random,

    /// Serialising a key file failed (not expected to happen).
    #[error("cannot encode key file {}: {source}", path.display())]
    Encode {
        /// The key file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

/// Whether [`NodeIdentity::load_or_create`] found an existing key or made one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileStatus {
    /// No key file existed; a new identity was generated and written.
    Created,
    /// An existing key file was read.
    Loaded,
}

/// A node's Ed25519 identity keypair.
///
/// `Debug` shows only the peer ID, never the secret key.
#[derive(Clone)]
pub struct NodeIdentity {
    ed25519: ed25519::Keypair,
    keypair: Keypair,
}

impl NodeIdentity {
    /// Generates a new random identity (secret seed from the operating
    /// system's random number generator via `ring`).
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(seed.as_mut_slice())
            .map_err(|_| IdentityError::Random)?;
        let secret = ed25519::SecretKey::try_from_bytes(seed.as_mut_slice())
            .map_err(|_| IdentityError::Random)?;
        Ok(Self::from_ed25519(ed25519::Keypair::from(secret)))
    }

    /// Wraps an existing Ed25519 keypair.
    pub fn from_ed25519(keypair: ed25519::Keypair) -> Self {
        Self {
            keypair: Keypair::from(keypair.clone()),
            ed25519: keypair,
        }
    }

    /// The keypair, for building a libp2p swarm.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The node's peer ID (derived from the public key).
    pub fn peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.keypair.public()
    }

    /// The raw 32-byte Ed25519 public key, hex-encoded (as in the key file).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.ed25519.public().to_bytes())
    }

    /// Signs `msg` with the node's key (a 64-byte Ed25519 signature). Verify
    /// with [`verify`] or `libp2p_identity::PublicKey::verify`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.ed25519.sign(msg)
    }

    /// Reads the identity from an existing key file.
    ///
    /// Fails, without touching the file, if it is missing, readable or
    /// writable by group or others, corrupt, encrypted, or from a newer Dawn.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let bytes = secret_file::read_secret_file(path)?;
        let keypair = node_key_file::decode(&bytes).map_err(|e| decode_error(path, e))?;
        Ok(Self::from_ed25519(keypair))
    }

    /// Generates a new identity and writes it to `path`, creating the parent
    /// directory with mode `0700` if needed. Fails with
    /// [`SecretFileError::AlreadyExists`] if any file is already at `path`;
    /// an existing file is never overwritten.
    pub fn create(path: &Path) -> Result<Self, IdentityError> {
        let identity = Self::generate()?;
        identity.write_new(path)?;
        tracing::info!(
            path = %path.display(),
            peer_id = %identity.peer_id(),
            "created new node identity"
        );
        Ok(identity)
    }

    /// Loads the identity from `path`, or creates a new one there if no file
    /// exists. Any other problem with an existing file is an error; the file
    /// is never replaced.
    pub fn load_or_create(path: &Path) -> Result<(Self, KeyFileStatus), IdentityError> {
        match Self::load(path) {
            Ok(identity) => Ok((identity, KeyFileStatus::Loaded)),
            Err(IdentityError::File(SecretFileError::NotFound { .. })) => {
                match Self::create(path) {
                    Ok(identity) => Ok((identity, KeyFileStatus::Created)),
                    // Another process created it between our load and create.
                    Err(IdentityError::File(SecretFileError::AlreadyExists { .. })) => {
                        Ok((Self::load(path)?, KeyFileStatus::Loaded))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Writes this identity to a new key file at `path` (mode `0600`, parent
    /// directory created with mode `0700`); never overwrites an existing file.
    pub fn write_new(&self, path: &Path) -> Result<(), IdentityError> {
        let bytes =
            node_key_file::encode(&self.ed25519).map_err(|source| IdentityError::Encode {
                path: path.to_path_buf(),
                source,
            })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            secret_file::ensure_private_dir(dir)?;
        }
        secret_file::create_secret_file(path, &bytes)?;
        Ok(())
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

/// Checks an Ed25519 (or other libp2p) signature made by
/// [`NodeIdentity::sign`]. Returns `false` for a malformed signature.
pub fn verify(public_key: &PublicKey, msg: &[u8], signature: &[u8]) -> bool {
    public_key.verify(msg, signature)
}

fn decode_error(path: &Path, e: DecodeError) -> IdentityError {
    let path = path.to_path_buf();
    match e {
        DecodeError::Corrupt(reason) => IdentityError::Corrupt { path, reason },
        DecodeError::NewerVersion(version) => IdentityError::NewerVersion {
            path,
            version,
            supported: CURRENT_VERSION,
        },
        DecodeError::Encrypted(encryption) => {
            IdentityError::UnsupportedEncryption { path, encryption }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identities_differ_and_sign() {
        let a = NodeIdentity::generate().unwrap();
        let b = NodeIdentity::generate().unwrap();
        assert_ne!(a.peer_id(), b.peer_id());
        let sig = a.sign(b"hello");
        assert_eq!(sig.len(), 64);
        assert!(verify(&a.public_key(), b"hello", &sig));
        assert!(!verify(&a.public_key(), b"hellO", &sig));
        assert!(!verify(&b.public_key(), b"hello", &sig));
        assert!(!verify(&a.public_key(), b"hello", &sig[..10]));
    }

    #[test]
    fn public_key_hex_and_peer_id_agree() {
        let id = NodeIdentity::generate().unwrap();
        assert_eq!(id.public_key_hex().len(), 64);
        let raw = hex::decode(id.public_key_hex()).unwrap();
        let pk = PublicKey::from(ed25519::PublicKey::try_from_bytes(&raw).unwrap());
        assert_eq!(pk.to_peer_id(), id.peer_id());
        assert_eq!(id.keypair().public().to_peer_id(), id.peer_id());
    }

    #[test]
    fn debug_shows_peer_id_only() {
        let id = NodeIdentity::generate().unwrap();
        let secret = hex::encode(id.ed25519.secret().as_ref());
        let debug = format!("{id:?}");
        assert!(debug.contains(&id.peer_id().to_string()), "{debug}");
        assert!(!debug.contains(&secret));
    }

    #[test]
    fn error_messages() {
        let path = Path::new("/d/node.key");
        let corrupt = decode_error(path, DecodeError::Corrupt("x".into())).to_string();
        assert_eq!(
            corrupt,
            "key file /d/node.key is corrupt (x); refusing to start. It was not modified. \
             Restore it from a backup, or move it away to create a new identity \
             (the node will then have a new peer ID)"
        );
        let newer = decode_error(path, DecodeError::NewerVersion(3)).to_string();
        assert!(
            newer.contains("/d/node.key has format version 3, written by a newer version of Dawn")
        );
        let enc = decode_error(path, DecodeError::Encrypted("aes-256-gcm".into())).to_string();
        assert!(enc.contains("/d/node.key is encrypted (aes-256-gcm); a passphrase is required"));
    }
}
