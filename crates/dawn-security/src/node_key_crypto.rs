//! Passphrase encryption of a node's secret key: argon2id key derivation and
//! AES-256-GCM (ring).
//!
//! Sealing a 32-byte Ed25519 secret seed:
//!
//! 1. a fresh random 16-byte salt and 12-byte nonce (ring's `SystemRandom`);
//! 2. `argon2id(v=0x13, m, t, p)(passphrase, salt)` gives 64 bytes: the first
//!    32 are the AES-256-GCM key, the last 32 a *check key*;
//! 3. `key_check = HMAC-SHA256(check key, "dawn-node-key passphrase check")`
//!    lets a wrong passphrase be told apart from a damaged file (it helps an
//!    attacker no more than the ciphertext itself: testing a guess still costs
//!    one argon2id run);
//! 4. `ciphertext = AES-256-GCM(key, nonce, aad, seed)` (32 bytes + 16-byte
//!    tag), where `aad = "dawn-node-key/v1/ed25519/aes-256-gcm/" + public key
//!    hex`, binding the ciphertext to the public key stored beside it.
//!
//! Opening reverses this: a `key_check` mismatch is a wrong passphrase; a
//! matching check with a failed GCM tag means the file was altered.
//!
//! # Cost
//!
//! [`KdfParams::RECOMMENDED`] is argon2id with 64 MiB, 3 passes, 1 lane (the
//! memory and passes of RFC 9106's second recommended option; one lane because
//! the implementation here runs lanes one after another). It is stronger than
//! the OWASP minimum ([`KdfParams::MINIMUM`]: 19 MiB, 2 passes, 1 lane), which
//! is the floor for writing a key. Measured on the project's 2-core machine
//! (`examples/measure_security_costs.rs`): one unlock takes about 0.25 s in a
//! release build with a core to itself (0.45-0.5 s while other builds kept
//! the machine busy) and 0.5-0.8 s in a debug build; the OWASP minimum takes
//! 60-85 ms in release.

use argon2::{Algorithm, Argon2, Params, Version};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::passphrase::Passphrase;

/// Length of the random salt.
pub(crate) const SALT_LEN: usize = 16;
/// Length of the key check (a full HMAC-SHA256 tag).
pub(crate) const KEY_CHECK_LEN: usize = 32;
/// Length of the AES-GCM nonce.
pub(crate) const GCM_NONCE_LEN: usize = NONCE_LEN;
/// Length of a sealed 32-byte seed: the seed plus the 16-byte GCM tag.
pub(crate) const SEALED_SEED_LEN: usize = 32 + 16;
/// The argon2 version this build writes and reads (0x13 = 19).
pub(crate) const ARGON2_VERSION: u32 = 0x13;

/// The message MACed into the key check.
const KEY_CHECK_MESSAGE: &[u8] = b"dawn-node-key passphrase check";
/// The prefix of the AEAD associated data; the public key hex follows.
const AAD_PREFIX: &str = "dawn-node-key/v1/ed25519/aes-256-gcm/";

/// Largest memory cost accepted when reading a key file (4 GiB): a damaged or
/// hostile file must not make the node try to allocate without bound.
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// Largest pass count accepted when reading.
const MAX_ITERATIONS: u32 = 64;
/// Largest lane count accepted when reading.
const MAX_PARALLELISM: u32 = 64;

/// argon2id cost parameters, as recorded in an encrypted key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Number of passes over the memory.
    pub iterations: u32,
    /// Number of lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// What new key files use: 64 MiB, 3 passes, 1 lane.
    pub const RECOMMENDED: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// The OWASP minimum for argon2id (19 MiB, 2 passes, 1 lane); nothing
    /// weaker is written.
    pub const MINIMUM: KdfParams = KdfParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// Checks that parameters are at least [`KdfParams::MINIMUM`] (and within
    /// the bounds a reader accepts), as required to write a key.
    pub(crate) fn check_for_writing(&self) -> Result<(), String> {
        if self.memory_kib < Self::MINIMUM.memory_kib || self.iterations < Self::MINIMUM.iterations
        {
            return Err(format!(
                "argon2id parameters m={} KiB, t={} are weaker than the minimum m={} KiB, t={}",
                self.memory_kib,
                self.iterations,
                Self::MINIMUM.memory_kib,
                Self::MINIMUM.iterations
            ));
        }
        self.check_for_reading()
    }

    /// Checks that parameters are within the bounds a reader accepts.
    pub(crate) fn check_for_reading(&self) -> Result<(), String> {
        if self.parallelism == 0 || self.parallelism > MAX_PARALLELISM {
            return Err(format!(
                "argon2id parallelism {} is outside 1..={MAX_PARALLELISM}",
                self.parallelism
            ));
        }
        if self.iterations == 0 || self.iterations > MAX_ITERATIONS {
            return Err(format!(
                "argon2id iterations {} is outside 1..={MAX_ITERATIONS}",
                self.iterations
            ));
        }
        let min_memory = 8 * self.parallelism;
        if self.memory_kib < min_memory || self.memory_kib > MAX_MEMORY_KIB {
            return Err(format!(
                "argon2id memory {} KiB is outside {min_memory}..={MAX_MEMORY_KIB} KiB",
                self.memory_kib
            ));
        }
        Ok(())
    }

    /// Whether these parameters are weaker than [`KdfParams::RECOMMENDED`] in
    /// memory or passes (a reason to re-encrypt with `change_passphrase`).
    pub fn is_weaker_than_recommended(&self) -> bool {
        self.memory_kib < Self::RECOMMENDED.memory_kib
            || self.iterations < Self::RECOMMENDED.iterations
    }
}

impl Default for KdfParams {
    /// [`KdfParams::RECOMMENDED`].
    fn default() -> Self {
        Self::RECOMMENDED
    }
}

/// A sealed secret seed and everything needed to open it, except the
/// passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SealedSeed {
    pub(crate) kdf: KdfParams,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) key_check: [u8; KEY_CHECK_LEN],
    pub(crate) nonce: [u8; GCM_NONCE_LEN],
    pub(crate) ciphertext: Vec<u8>,
}

/// Why sealing failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SealError {
    /// The random number generator failed.
    Random,
    /// Parameters rejected (reason inside).
    Params(String),
}

/// Why opening failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// The key check did not match: wrong passphrase (or an altered check).
    WrongPassphrase,
    /// The check matched but the ciphertext did not authenticate: the file
    /// was altered or damaged.
    Altered,
    /// Parameters or lengths rejected (reason inside).
    Invalid(String),
}

/// Encrypts `seed` under `passphrase` with `kdf`, binding it to
/// `public_key`.
pub(crate) fn seal(
    seed: &[u8; 32],
    public_key: &[u8; 32],
    passphrase: &Passphrase,
    kdf: KdfParams,
) -> Result<SealedSeed, SealError> {
    kdf.check_for_writing().map_err(SealError::Params)?;
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    rng.fill(&mut salt).map_err(|_| SealError::Random)?;
    let mut nonce = [0u8; GCM_NONCE_LEN];
    rng.fill(&mut nonce).map_err(|_| SealError::Random)?;

    let keys = derive(passphrase, &salt, kdf).map_err(SealError::Params)?;
    let key_check = key_check(&keys);
    let aead = aead_key(&keys).map_err(SealError::Params)?;
    let mut in_out = Zeroizing::new(seed.to_vec());
    aead.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad(public_key).as_bytes()),
        &mut *in_out,
    )
    .map_err(|_| SealError::Params("AES-256-GCM sealing failed".to_owned()))?;
    // `in_out` now holds ciphertext and tag only: nothing secret remains.
    let ciphertext = in_out.to_vec();
    Ok(SealedSeed {
        kdf,
        salt,
        key_check,
        nonce,
        ciphertext,
    })
}

/// Decrypts a sealed seed with `passphrase`, checking it is bound to
/// `public_key`. The caller still checks that the seed yields `public_key`.
pub(crate) fn open(
    sealed: &SealedSeed,
    public_key: &[u8; 32],
    passphrase: &Passphrase,
) -> Result<Zeroizing<[u8; 32]>, OpenError> {
    sealed.kdf.check_for_reading().map_err(OpenError::Invalid)?;
    if sealed.ciphertext.len() != SEALED_SEED_LEN {
        return Err(OpenError::Invalid(format!(
            "ciphertext is {} bytes, expected {SEALED_SEED_LEN}",
            sealed.ciphertext.len()
        )));
    }
    let keys = derive(passphrase, &sealed.salt, sealed.kdf).map_err(OpenError::Invalid)?;
    let check_key = hmac::Key::new(hmac::HMAC_SHA256, &keys[32..]);
    if hmac::verify(&check_key, KEY_CHECK_MESSAGE, &sealed.key_check).is_err() {
        return Err(OpenError::WrongPassphrase);
    }
    let aead = aead_key(&keys).map_err(OpenError::Invalid)?;
    let mut in_out = Zeroizing::new(sealed.ciphertext.clone());
    let plaintext = aead
        .open_in_place(
            Nonce::assume_unique_for_key(sealed.nonce),
            Aad::from(aad(public_key).as_bytes()),
            &mut in_out,
        )
        .map_err(|_| OpenError::Altered)?;
    let mut seed = Zeroizing::new([0u8; 32]);
    if plaintext.len() != seed.len() {
        return Err(OpenError::Altered);
    }
    seed.copy_from_slice(plaintext);
    Ok(seed)
}

/// Runs argon2id: 64 bytes, AES key then check key.
fn derive(
    passphrase: &Passphrase,
    salt: &[u8],
    kdf: KdfParams,
) -> Result<Zeroizing<[u8; 64]>, String> {
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(64))
        .map_err(|e| format!("invalid argon2id parameters: {e}"))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 64]);
    argon2
        .hash_password_into(passphrase.as_bytes(), salt, out.as_mut_slice())
        .map_err(|e| format!("argon2id failed: {e}"))?;
    Ok(out)
}

fn key_check(keys: &[u8; 64]) -> [u8; KEY_CHECK_LEN] {
    let check_key = hmac::Key::new(hmac::HMAC_SHA256, &keys[32..]);
    let tag = hmac::sign(&check_key, KEY_CHECK_MESSAGE);
    let mut out = [0u8; KEY_CHECK_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

fn aead_key(keys: &[u8; 64]) -> Result<LessSafeKey, String> {
    UnboundKey::new(&AES_256_GCM, &keys[..32])
        .map(LessSafeKey::new)
        .map_err(|_| "cannot build the AES-256-GCM key".to_owned())
}

fn aad(public_key: &[u8; 32]) -> String {
    format!("{AAD_PREFIX}{}", hex::encode(public_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrase(text: &str) -> Passphrase {
        Passphrase::new(text.to_owned()).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips_and_is_randomised() {
        let seed = [7u8; 32];
        let public = [9u8; 32];
        let pass = passphrase("correct horse battery");
        let a = seal(&seed, &public, &pass, KdfParams::MINIMUM).unwrap();
        let b = seal(&seed, &public, &pass, KdfParams::MINIMUM).unwrap();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(a.ciphertext.len(), SEALED_SEED_LEN);
        assert_eq!(*open(&a, &public, &pass).unwrap(), seed);

        assert_eq!(
            open(&a, &public, &passphrase("wrong horse battery")).unwrap_err(),
            OpenError::WrongPassphrase
        );
        assert_eq!(
            open(&a, &[8u8; 32], &pass).unwrap_err(),
            OpenError::Altered,
            "bound to the public key"
        );
        let mut flipped = a.clone();
        flipped.ciphertext[3] ^= 1;
        assert_eq!(
            open(&flipped, &public, &pass).unwrap_err(),
            OpenError::Altered
        );
        let mut other_nonce = a.clone();
        other_nonce.nonce[0] ^= 1;
        assert_eq!(
            open(&other_nonce, &public, &pass).unwrap_err(),
            OpenError::Altered
        );
    }

    #[test]
    fn weak_params_are_not_written_and_absurd_ones_not_read() {
        let weak = KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        assert!(matches!(
            seal(&[1; 32], &[2; 32], &passphrase("long enough"), weak),
            Err(SealError::Params(_))
        ));
        assert!(weak.check_for_reading().is_ok());
        let huge = KdfParams {
            memory_kib: u32::MAX,
            ..KdfParams::RECOMMENDED
        };
        assert!(huge.check_for_reading().unwrap_err().contains("memory"));
        assert!(KdfParams::MINIMUM.is_weaker_than_recommended());
        assert!(!KdfParams::default().is_weaker_than_recommended());
    }
}
