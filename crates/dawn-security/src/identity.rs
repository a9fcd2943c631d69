//! The node's long-term identity: an Ed25519 keypair whose public key is the
//! node's libp2p [`PeerId`], stored in a key file (`node.key`).
//!
//! The key file is created once, with mode `0600` inside a `0700` directory,
//! and is never replaced or modified by a later load: a file that cannot be
//! read is reported, not regenerated, because a new key would silently give
//! the node a new identity. The format is described in the private
//! `node_key_file` module: one versioned JSON object.
//!
//! # Encryption at rest
//!
//! The secret key can be sealed with a [`Passphrase`]: argon2id derives an
//! AES-256-GCM key ([`KdfParams::RECOMMENDED`]: 64 MiB, 3 passes, 1 lane;
//! about 0.25-0.5 s to unlock in a release build on a 2-core machine), with a
//! random salt and nonce per encryption; the KDF's parameters are recorded in
//! the file. The public key stays in clear, so [`NodeIdentity::key_file_info`]
//! shows the peer ID without the passphrase.
//!
//! * [`NodeIdentity::load_with`] unlocks an encrypted file (a plain file loads
//!   whether or not a passphrase is given; use `key_file_info` to insist on
//!   encryption).
//! * An encrypted file without a passphrase fails with
//!   [`IdentityError::PassphraseRequired`], which says how to supply one
//!   ([`PASSPHRASE_ENV`] or `--passphrase-file`).
//! * A wrong passphrase fails with [`IdentityError::WrongPassphrase`]; an
//!   encrypted file whose ciphertext was altered fails with
//!   [`IdentityError::Corrupt`]. Loading never modifies the file.
//! * [`NodeIdentity::change_passphrase`], [`NodeIdentity::encrypt_existing`]
//!   and [`NodeIdentity::decrypt_existing`] rewrite the file atomically (a new
//!   `0600` file is written and fsynced, then renamed over the old one): on any
//!   failure the old file is left exactly as it was. Rewriting does not erase
//!   the old bytes from the disk itself; if a plaintext key may have been
//!   copied, encrypting it later does not protect that copy.
//!
//! Loading and creating block on file I/O, and unlocking an encrypted key
//! takes a deliberate fraction of a second of CPU; async callers should use
//! `tokio::task::spawn_blocking`.

use std::fmt;
use std::path::{Path, PathBuf};

use libp2p_identity::{Keypair, PeerId, PublicKey, ed25519};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::node_key_crypto::{self, KdfParams, OpenError, SealError};
use crate::node_key_file::{self, CURRENT_VERSION, DecodeError, KeyFileContents};
use crate::passphrase::{MIN_NEW_PASSPHRASE_CHARS, PASSPHRASE_ENV, Passphrase};
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

    /// The secret key is encrypted with a scheme this build cannot decrypt.
    #[error(
        "key file {} is encrypted ({encryption}), which this version of Dawn cannot decrypt \
         (it supports aes-256-gcm with argon2id); refusing to start. It was not modified. \
         Upgrade Dawn to use it",
        path.display()
    )]
    UnsupportedEncryption {
        /// The key file.
        path: PathBuf,
        /// The scheme found in the file.
        encryption: String,
    },

    /// The key file is encrypted and no passphrase was supplied.
    #[error(
        "key file {} is encrypted (aes-256-gcm); a passphrase is required to unlock it: set the \
         {env} environment variable, or pass --passphrase-file FILE (a file only its owner can \
         read). It was not modified",
        path.display(),
        env = PASSPHRASE_ENV
    )]
    PassphraseRequired {
        /// The key file.
        path: PathBuf,
    },

    /// The passphrase does not unlock the key file.
    #[error("wrong passphrase for key file {}; it was not modified", path.display())]
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },

    /// An operation that needs an encrypted key file found a plain one.
    #[error(
        "key file {} is not encrypted, so it has no passphrase to use or change; encrypt it \
         first. It was not modified",
        path.display()
    )]
    NotEncrypted {
        /// The key file.
        path: PathBuf,
    },

    /// An operation that needs a plain key file found an encrypted one.
    #[error(
        "key file {} is already encrypted; use change-passphrase to change its passphrase. \
         It was not modified",
        path.display()
    )]
    AlreadyEncrypted {
        /// The key file.
        path: PathBuf,
    },

    /// A new passphrase is too short.
    #[error("the new passphrase is too short: use at least {min_chars} characters")]
    WeakPassphrase {
        /// The minimum number of characters.
        min_chars: usize,
    },

    /// Key derivation parameters were refused for writing.
    #[error("cannot encrypt key file {}: {reason}", path.display())]
    KdfParams {
        /// The key file being written.
        path: PathBuf,
        /// What is wrong with the parameters.
        reason: String,
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

/// What a key file says without being unlocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileInfo {
    /// The identity's peer ID (from the public key, kept in clear).
    pub peer_id: PeerId,
    /// Whether the secret key is passphrase-encrypted.
    pub encrypted: bool,
    /// The KDF parameters of an encrypted file.
    pub kdf: Option<KdfParams>,
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

    /// Reads the identity from an existing unencrypted key file.
    ///
    /// Fails, without touching the file, if it is missing, readable or
    /// writable by group or others, corrupt, encrypted (see
    /// [`NodeIdentity::load_with`]), or from a newer Dawn.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        Self::load_with(path, None)
    }

    /// Reads the identity from an existing key file, unlocking it with
    /// `passphrase` if it is encrypted. A plain file loads whatever
    /// `passphrase` is.
    ///
    /// Fails, without touching the file, like [`NodeIdentity::load`], and
    /// with [`IdentityError::PassphraseRequired`] (encrypted, no passphrase),
    /// [`IdentityError::WrongPassphrase`], or [`IdentityError::Corrupt`] for
    /// an encrypted key that was altered.
    pub fn load_with(path: &Path, passphrase: Option<&Passphrase>) -> Result<Self, IdentityError> {
        match read_key_file(path)? {
            KeyFileContents::Plain(keypair) => Ok(Self::from_ed25519(keypair)),
            KeyFileContents::Encrypted { public_key, sealed } => {
                let passphrase = passphrase.ok_or_else(|| IdentityError::PassphraseRequired {
                    path: path.to_path_buf(),
                })?;
                let identity = unseal(path, &public_key, &sealed, passphrase)?;
                if sealed.kdf.is_weaker_than_recommended() {
                    tracing::warn!(
                        path = %path.display(),
                        memory_kib = sealed.kdf.memory_kib,
                        iterations = sealed.kdf.iterations,
                        "key file uses weaker key derivation parameters than recommended; \
                         change its passphrase to upgrade them"
                    );
                }
                Ok(identity)
            }
        }
    }

    /// Reads what a key file says without unlocking it: the peer ID, and
    /// whether (and how) it is encrypted. Checks the file like a load does
    /// (permissions, format), except that an encrypted secret is not opened.
    pub fn key_file_info(path: &Path) -> Result<KeyFileInfo, IdentityError> {
        match read_key_file(path)? {
            KeyFileContents::Plain(keypair) => Ok(KeyFileInfo {
                peer_id: Self::from_ed25519(keypair).peer_id(),
                encrypted: false,
                kdf: None,
            }),
            KeyFileContents::Encrypted { public_key, sealed } => {
                let public = ed25519::PublicKey::try_from_bytes(&public_key).map_err(|e| {
                    IdentityError::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!("public_key is not a valid key: {e}"),
                    }
                })?;
                Ok(KeyFileInfo {
                    peer_id: PublicKey::from(public).to_peer_id(),
                    encrypted: true,
                    kdf: Some(sealed.kdf),
                })
            }
        }
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

    /// Generates a new identity and writes it to `path` encrypted with
    /// `passphrase` ([`KdfParams::RECOMMENDED`]). Like
    /// [`NodeIdentity::create`], never overwrites an existing file. The
    /// passphrase must have at least
    /// [`MIN_NEW_PASSPHRASE_CHARS`]
    /// characters.
    pub fn create_encrypted(path: &Path, passphrase: &Passphrase) -> Result<Self, IdentityError> {
        Self::create_encrypted_with_kdf(path, passphrase, KdfParams::RECOMMENDED)
    }

    /// [`NodeIdentity::create_encrypted`] with explicit KDF parameters, which
    /// must be at least [`KdfParams::MINIMUM`].
    pub fn create_encrypted_with_kdf(
        path: &Path,
        passphrase: &Passphrase,
        kdf: KdfParams,
    ) -> Result<Self, IdentityError> {
        let identity = Self::generate()?;
        identity.write_new_encrypted(path, passphrase, kdf)?;
        tracing::info!(
            path = %path.display(),
            peer_id = %identity.peer_id(),
            "created new encrypted node identity"
        );
        Ok(identity)
    }

    /// Loads the identity from `path`, or creates a new one there if no file
    /// exists. Any other problem with an existing file is an error; the file
    /// is never replaced.
    pub fn load_or_create(path: &Path) -> Result<(Self, KeyFileStatus), IdentityError> {
        Self::load_or_create_with(path, None)
    }

    /// Loads the identity from `path` (unlocking it with `passphrase` if it is
    /// encrypted), or creates a new one there if no file exists: encrypted
    /// with `passphrase` if one is given, plain otherwise. Any other problem
    /// with an existing file is an error; the file is never replaced.
    pub fn load_or_create_with(
        path: &Path,
        passphrase: Option<&Passphrase>,
    ) -> Result<(Self, KeyFileStatus), IdentityError> {
        match Self::load_with(path, passphrase) {
            Ok(identity) => Ok((identity, KeyFileStatus::Loaded)),
            Err(IdentityError::File(SecretFileError::NotFound { .. })) => {
                let created = match passphrase {
                    Some(passphrase) => Self::create_encrypted(path, passphrase),
                    None => Self::create(path),
                };
                match created {
                    Ok(identity) => Ok((identity, KeyFileStatus::Created)),
                    // Another process created it between our load and create.
                    Err(IdentityError::File(SecretFileError::AlreadyExists { .. })) => {
                        Ok((Self::load_with(path, passphrase)?, KeyFileStatus::Loaded))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Re-encrypts the key file at `path` under `new`, after unlocking it
    /// with `old`, using [`KdfParams::RECOMMENDED`] (so this also upgrades
    /// old parameters). Atomic: the new file is written and fsynced beside the
    /// old one, then renamed over it; on any failure the old file is
    /// unchanged. Fails with [`IdentityError::NotEncrypted`] for a plain file.
    pub fn change_passphrase(
        path: &Path,
        old: &Passphrase,
        new: &Passphrase,
    ) -> Result<(), IdentityError> {
        Self::change_passphrase_with_kdf(path, old, new, KdfParams::RECOMMENDED)
    }

    /// [`NodeIdentity::change_passphrase`] with explicit KDF parameters (at
    /// least [`KdfParams::MINIMUM`]).
    pub fn change_passphrase_with_kdf(
        path: &Path,
        old: &Passphrase,
        new: &Passphrase,
        kdf: KdfParams,
    ) -> Result<(), IdentityError> {
        check_new_passphrase(new)?;
        let identity = match read_key_file(path)? {
            KeyFileContents::Plain(_) => {
                return Err(IdentityError::NotEncrypted {
                    path: path.to_path_buf(),
                });
            }
            KeyFileContents::Encrypted { public_key, sealed } => {
                unseal(path, &public_key, &sealed, old)?
            }
        };
        let bytes = identity.encrypted_bytes(path, new, kdf)?;
        secret_file::write_secret_file(path, &bytes)?;
        tracing::info!(path = %path.display(), "changed the node key passphrase");
        Ok(())
    }

    /// Encrypts an existing plain key file in place with `passphrase`
    /// ([`KdfParams::RECOMMENDED`]); atomic like
    /// [`NodeIdentity::change_passphrase`]. Fails with
    /// [`IdentityError::AlreadyEncrypted`] for an encrypted file.
    pub fn encrypt_existing(path: &Path, passphrase: &Passphrase) -> Result<(), IdentityError> {
        Self::encrypt_existing_with_kdf(path, passphrase, KdfParams::RECOMMENDED)
    }

    /// [`NodeIdentity::encrypt_existing`] with explicit KDF parameters (at
    /// least [`KdfParams::MINIMUM`]).
    pub fn encrypt_existing_with_kdf(
        path: &Path,
        passphrase: &Passphrase,
        kdf: KdfParams,
    ) -> Result<(), IdentityError> {
        check_new_passphrase(passphrase)?;
        let identity = match read_key_file(path)? {
            KeyFileContents::Plain(keypair) => Self::from_ed25519(keypair),
            KeyFileContents::Encrypted { .. } => {
                return Err(IdentityError::AlreadyEncrypted {
                    path: path.to_path_buf(),
                });
            }
        };
        let bytes = identity.encrypted_bytes(path, passphrase, kdf)?;
        secret_file::write_secret_file(path, &bytes)?;
        tracing::info!(path = %path.display(), "encrypted the node key file");
        Ok(())
    }

    /// Replaces an encrypted key file with a plain one after unlocking it
    /// with `passphrase`; atomic like [`NodeIdentity::change_passphrase`].
    /// Fails with [`IdentityError::NotEncrypted`] for a plain file.
    pub fn decrypt_existing(path: &Path, passphrase: &Passphrase) -> Result<(), IdentityError> {
        let identity = match read_key_file(path)? {
            KeyFileContents::Plain(_) => {
                return Err(IdentityError::NotEncrypted {
                    path: path.to_path_buf(),
                });
            }
            KeyFileContents::Encrypted { public_key, sealed } => {
                unseal(path, &public_key, &sealed, passphrase)?
            }
        };
        let bytes =
            node_key_file::encode(&identity.ed25519).map_err(|source| IdentityError::Encode {
                path: path.to_path_buf(),
                source,
            })?;
        secret_file::write_secret_file(path, &bytes)?;
        tracing::warn!(path = %path.display(), "removed the passphrase from the node key file");
        Ok(())
    }

    /// Writes this identity to a new key file at `path` encrypted with
    /// `passphrase` and `kdf` (mode `0600`, parent directory created with mode
    /// `0700`); never overwrites an existing file.
    pub fn write_new_encrypted(
        &self,
        path: &Path,
        passphrase: &Passphrase,
        kdf: KdfParams,
    ) -> Result<(), IdentityError> {
        check_new_passphrase(passphrase)?;
        let bytes = self.encrypted_bytes(path, passphrase, kdf)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            secret_file::ensure_private_dir(dir)?;
        }
        secret_file::create_secret_file(path, &bytes)?;
        Ok(())
    }

    /// Seals this identity's secret seed and encodes the encrypted key file.
    fn encrypted_bytes(
        &self,
        path: &Path,
        passphrase: &Passphrase,
        kdf: KdfParams,
    ) -> Result<Vec<u8>, IdentityError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(self.ed25519.secret().as_ref());
        let public_key = self.ed25519.public().to_bytes();
        let sealed =
            node_key_crypto::seal(&seed, &public_key, passphrase, kdf).map_err(|e| match e {
                SealError::Random => IdentityError::Random,
                SealError::Params(reason) => IdentityError::KdfParams {
                    path: path.to_path_buf(),
                    reason,
                },
            })?;
        node_key_file::encode_encrypted(&public_key, &sealed).map_err(|source| {
            IdentityError::Encode {
                path: path.to_path_buf(),
                source,
            }
        })
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

/// Reads and decodes a key file (checking its permissions), without opening
/// an encrypted secret.
fn read_key_file(path: &Path) -> Result<KeyFileContents, IdentityError> {
    let bytes = secret_file::read_secret_file(path)?;
    node_key_file::decode_any(&bytes).map_err(|e| decode_error(path, e))
}

/// Opens a sealed seed and checks it yields `public_key`.
fn unseal(
    path: &Path,
    public_key: &[u8; 32],
    sealed: &node_key_crypto::SealedSeed,
    passphrase: &Passphrase,
) -> Result<NodeIdentity, IdentityError> {
    let corrupt = |reason: String| IdentityError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut seed = node_key_crypto::open(sealed, public_key, passphrase).map_err(|e| match e {
        OpenError::WrongPassphrase => IdentityError::WrongPassphrase {
            path: path.to_path_buf(),
        },
        OpenError::Altered => corrupt(
            "the passphrase is right but the encrypted key failed authentication: the file \
             was altered or damaged"
                .to_owned(),
        ),
        OpenError::Invalid(reason) => corrupt(reason),
    })?;
    // `try_from_bytes` wipes the buffer on success; `Zeroizing` covers errors.
    let secret = ed25519::SecretKey::try_from_bytes(&mut *seed)
        .map_err(|e| corrupt(format!("the decrypted secret key is not valid: {e}")))?;
    let keypair = ed25519::Keypair::from(secret);
    if &keypair.public().to_bytes() != public_key {
        return Err(corrupt(
            "public_key does not match the decrypted secret key".to_owned(),
        ));
    }
    tracing::debug!(path = %path.display(), "unlocked encrypted node key");
    Ok(NodeIdentity::from_ed25519(keypair))
}

/// Refuses a new passphrase shorter than [`MIN_NEW_PASSPHRASE_CHARS`].
fn check_new_passphrase(passphrase: &Passphrase) -> Result<(), IdentityError> {
    if passphrase.char_count() < MIN_NEW_PASSPHRASE_CHARS {
        return Err(IdentityError::WeakPassphrase {
            min_chars: MIN_NEW_PASSPHRASE_CHARS,
        });
    }
    Ok(())
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
        DecodeError::UnsupportedEncryption(encryption) => {
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
        let enc =
            decode_error(path, DecodeError::UnsupportedEncryption("rot13".into())).to_string();
        assert!(
            enc.contains("/d/node.key is encrypted (rot13), which this version of Dawn cannot")
        );
        let required = IdentityError::PassphraseRequired {
            path: path.to_path_buf(),
        }
        .to_string();
        assert_eq!(
            required,
            "key file /d/node.key is encrypted (aes-256-gcm); a passphrase is required to unlock \
             it: set the DAWN_PASSPHRASE environment variable, or pass --passphrase-file FILE (a \
             file only its owner can read). It was not modified"
        );
    }
}
