//! The on-disk format of a node key file (`node.key`): one JSON object,
//! versioned, readable by a human.
//!
//! Version 1, unencrypted:
//!
//! ```json
//! {"format":"dawn-node-key","version":1,"key_type":"ed25519","encryption":"none",
//!  "public_key":"<64 hex chars>","secret_key":"<64 hex chars: the ed25519 secret seed>"}
//! ```
//!
//! Version 1, encrypted with a passphrase (see the private `node_key_crypto`
//! module for the scheme):
//!
//! ```json
//! {"format":"dawn-node-key","version":1,"key_type":"ed25519","encryption":"aes-256-gcm",
//!  "public_key":"<64 hex chars>",
//!  "kdf":{"name":"argon2id","version":19,"memory_kib":65536,"iterations":3,"parallelism":1,
//!         "salt":"<32 hex chars>"},
//!  "key_check":"<64 hex chars>","nonce":"<24 hex chars>",
//!  "ciphertext":"<96 hex chars: the sealed seed and the GCM tag>"}
//! ```
//!
//! Both forms share version 1: the `encryption` field, which version 1 always
//! had, says which one a file is, so a Dawn that predates encryption reports an
//! encrypted file as "encrypted, a passphrase is required" rather than as
//! corrupt. The KDF's name and parameters are recorded so they can be raised
//! later without a format change. The public key stays in clear, so the peer
//! ID can be shown without the passphrase.
//!
//! `format` and `version` are checked first, so any later layout can be
//! recognised. `encryption` is checked before any key field. Unknown extra
//! fields are ignored.

use libp2p_identity::ed25519;
use serde::Serialize;
use serde_json::error::Category;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::node_key_crypto::{
    ARGON2_VERSION, GCM_NONCE_LEN, KEY_CHECK_LEN, KdfParams, SALT_LEN, SEALED_SEED_LEN, SealedSeed,
};

/// Value of the `format` field.
pub(crate) const FORMAT_TAG: &str = "dawn-node-key";
/// The newest format version this build reads and the one it writes.
pub(crate) const CURRENT_VERSION: u64 = 1;
/// Value of `key_type` for Ed25519 keys.
const KEY_TYPE_ED25519: &str = "ed25519";
/// Value of `encryption` for a plaintext secret key.
const ENCRYPTION_NONE: &str = "none";
/// Value of `encryption` for a passphrase-encrypted secret key.
pub(crate) const ENCRYPTION_AES_256_GCM: &str = "aes-256-gcm";
/// Value of `kdf.name` for argon2id.
const KDF_ARGON2ID: &str = "argon2id";
/// Length of an Ed25519 public key and of its secret seed.
const ED25519_KEY_LEN: usize = 32;

/// Why a key file could not be decoded. The caller adds the path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The content is damaged or is not a Dawn node key file; the reason
    /// reads well inside parentheses.
    Corrupt(String),
    /// A newer Dawn wrote the file.
    NewerVersion(u64),
    /// The secret key is encrypted with a scheme this build cannot decrypt.
    UnsupportedEncryption(String),
}

/// A decoded key file.
#[derive(Debug)]
pub(crate) enum KeyFileContents {
    /// An unencrypted key.
    Plain(ed25519::Keypair),
    /// A passphrase-encrypted key: the public key in clear and the sealed
    /// secret seed.
    Encrypted {
        /// The raw Ed25519 public key.
        public_key: [u8; ED25519_KEY_LEN],
        /// The sealed seed.
        sealed: SealedSeed,
    },
}

/// The `secret_key` field, taken out of the parsed document first so that it
/// is wiped whatever happens next.
enum SecretField {
    Missing,
    NotAString,
    Hex(Zeroizing<String>),
}

/// What version 1 writes. Field order is the file's field order.
#[derive(Serialize)]
struct DocumentV1<'a> {
    format: &'static str,
    version: u64,
    key_type: &'static str,
    encryption: &'static str,
    public_key: &'a str,
    secret_key: &'a str,
}

/// What an encrypted version 1 file writes.
#[derive(Serialize)]
struct EncryptedDocumentV1<'a> {
    format: &'static str,
    version: u64,
    key_type: &'static str,
    encryption: &'static str,
    public_key: &'a str,
    kdf: KdfDocument,
    key_check: String,
    nonce: String,
    ciphertext: String,
}

/// The `kdf` object of an encrypted file.
#[derive(Serialize)]
struct KdfDocument {
    name: &'static str,
    version: u32,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

/// Encodes a public key and its sealed secret seed as a version 1 encrypted
/// key file, with a trailing newline.
pub(crate) fn encode_encrypted(
    public_key: &[u8; ED25519_KEY_LEN],
    sealed: &SealedSeed,
) -> Result<Vec<u8>, serde_json::Error> {
    let public_key = hex::encode(public_key);
    let document = EncryptedDocumentV1 {
        format: FORMAT_TAG,
        version: CURRENT_VERSION,
        key_type: KEY_TYPE_ED25519,
        encryption: ENCRYPTION_AES_256_GCM,
        public_key: &public_key,
        kdf: KdfDocument {
            name: KDF_ARGON2ID,
            version: ARGON2_VERSION,
            memory_kib: sealed.kdf.memory_kib,
            iterations: sealed.kdf.iterations,
            parallelism: sealed.kdf.parallelism,
            salt: hex::encode(sealed.salt),
        },
        key_check: hex::encode(sealed.key_check),
        nonce: hex::encode(sealed.nonce),
        ciphertext: hex::encode(&sealed.ciphertext),
    };
    let mut bytes = serde_json::to_vec(&document)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Encodes an Ed25519 keypair as a version 1 unencrypted key file, with a
/// trailing newline. The returned buffer is wiped when dropped.
pub(crate) fn encode(keypair: &ed25519::Keypair) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    let public_key = hex::encode(keypair.public().to_bytes());
    let secret = keypair.secret();
    let secret_key = Zeroizing::new(hex::encode(secret.as_ref()));
    let document = DocumentV1 {
        format: FORMAT_TAG,
        version: CURRENT_VERSION,
        key_type: KEY_TYPE_ED25519,
        encryption: ENCRYPTION_NONE,
        public_key: &public_key,
        secret_key: &secret_key,
    };
    let mut bytes = Zeroizing::new(Vec::with_capacity(256));
    serde_json::to_writer(&mut *bytes, &document)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Decodes an unencrypted key file, checking that the public key matches the
/// secret key. An encrypted file gives [`DecodeError::UnsupportedEncryption`]
/// (used by tests of the plain format).
#[cfg(test)]
pub(crate) fn decode(bytes: &[u8]) -> Result<ed25519::Keypair, DecodeError> {
    match decode_any(bytes)? {
        KeyFileContents::Plain(keypair) => Ok(keypair),
        KeyFileContents::Encrypted { .. } => Err(DecodeError::UnsupportedEncryption(
            ENCRYPTION_AES_256_GCM.to_owned(),
        )),
    }
}

/// Decodes a key file of either form. For a plain file, checks that the
/// public key matches the secret key; for an encrypted one, checks the shape
/// of every field (decryption is the caller's).
pub(crate) fn decode_any(bytes: &[u8]) -> Result<KeyFileContents, DecodeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Corrupt("the file is empty".to_owned()));
    }
    let mut doc: Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
    let secret_key = match doc.remove("secret_key") {
        None => SecretField::Missing,
        Some(Value::String(hex)) => SecretField::Hex(Zeroizing::new(hex)),
        Some(_) => SecretField::NotAString,
    };
    match doc.get("format") {
        Some(Value::String(tag)) if tag == FORMAT_TAG => {}
        Some(other) => {
            return Err(DecodeError::Corrupt(format!(
                "\"format\" is {other}, expected {FORMAT_TAG:?}: not a Dawn node key file"
            )));
        }
        None => {
            return Err(DecodeError::Corrupt(
                "no \"format\" field: not a Dawn node key file".to_owned(),
            ));
        }
    }
    match doc.get("version").and_then(Value::as_u64) {
        Some(CURRENT_VERSION) => decode_v1(&doc, secret_key),
        Some(v) if v > CURRENT_VERSION => Err(DecodeError::NewerVersion(v)),
        Some(v) => Err(DecodeError::Corrupt(format!("unknown format version {v}"))),
        None => Err(DecodeError::Corrupt(
            "missing or non-integer \"version\" field".to_owned(),
        )),
    }
}

fn decode_v1(
    doc: &Map<String, Value>,
    secret_key: SecretField,
) -> Result<KeyFileContents, DecodeError> {
    let encryption = required_str(doc, "encryption")?;
    if encryption == ENCRYPTION_AES_256_GCM {
        return decode_v1_encrypted(doc);
    }
    if encryption != ENCRYPTION_NONE {
        return Err(DecodeError::UnsupportedEncryption(encryption.to_owned()));
    }
    check_key_type(doc)?;
    let public_key = decode_hex_32("public_key", required_str(doc, "public_key")?)?;
    let secret_hex = match &secret_key {
        SecretField::Hex(hex) => hex.as_str(),
        SecretField::Missing => {
            return Err(DecodeError::Corrupt("no \"secret_key\" field".to_owned()));
        }
        SecretField::NotAString => {
            return Err(DecodeError::Corrupt(
                "\"secret_key\" is not a string".to_owned(),
            ));
        }
    };
    let mut secret_seed = decode_hex_32("secret_key", secret_hex)?;
    // `try_from_bytes` wipes the buffer on success; `Zeroizing` covers errors.
    let secret = ed25519::SecretKey::try_from_bytes(secret_seed.as_mut_slice())
        .map_err(|e| DecodeError::Corrupt(format!("secret_key is not a valid key: {e}")))?;
    let keypair = ed25519::Keypair::from(secret);
    if keypair.public().to_bytes().as_slice() != public_key.as_slice() {
        return Err(DecodeError::Corrupt(
            "public_key does not match secret_key".to_owned(),
        ));
    }
    Ok(KeyFileContents::Plain(keypair))
}

fn check_key_type(doc: &Map<String, Value>) -> Result<(), DecodeError> {
    let key_type = required_str(doc, "key_type")?;
    if key_type != KEY_TYPE_ED25519 {
        return Err(DecodeError::Corrupt(format!(
            "unsupported key_type {key_type:?}; this version of Dawn supports {KEY_TYPE_ED25519:?}"
        )));
    }
    Ok(())
}

fn decode_v1_encrypted(doc: &Map<String, Value>) -> Result<KeyFileContents, DecodeError> {
    check_key_type(doc)?;
    let public_key: [u8; ED25519_KEY_LEN] =
        decode_hex_array("public_key", required_str(doc, "public_key")?)?;
    let kdf = match doc.get("kdf") {
        Some(Value::Object(kdf)) => kdf,
        Some(_) => return Err(DecodeError::Corrupt("\"kdf\" is not an object".to_owned())),
        None => return Err(DecodeError::Corrupt("no \"kdf\" field".to_owned())),
    };
    let kdf_name = required_str(kdf, "name")?;
    if kdf_name != KDF_ARGON2ID {
        return Err(DecodeError::UnsupportedEncryption(format!(
            "{ENCRYPTION_AES_256_GCM} with kdf {kdf_name}"
        )));
    }
    let argon2_version = required_u32(kdf, "kdf.version", "version")?;
    if argon2_version != ARGON2_VERSION {
        return Err(DecodeError::UnsupportedEncryption(format!(
            "{ENCRYPTION_AES_256_GCM} with argon2id version {argon2_version}"
        )));
    }
    let params = KdfParams {
        memory_kib: required_u32(kdf, "kdf.memory_kib", "memory_kib")?,
        iterations: required_u32(kdf, "kdf.iterations", "iterations")?,
        parallelism: required_u32(kdf, "kdf.parallelism", "parallelism")?,
    };
    params.check_for_reading().map_err(DecodeError::Corrupt)?;
    let salt: [u8; SALT_LEN] = decode_hex_array("kdf.salt", required_str(kdf, "salt")?)?;
    let key_check: [u8; KEY_CHECK_LEN] =
        decode_hex_array("key_check", required_str(doc, "key_check")?)?;
    let nonce: [u8; GCM_NONCE_LEN] = decode_hex_array("nonce", required_str(doc, "nonce")?)?;
    let ciphertext = decode_hex_len(
        "ciphertext",
        required_str(doc, "ciphertext")?,
        SEALED_SEED_LEN,
    )?;
    Ok(KeyFileContents::Encrypted {
        public_key,
        sealed: SealedSeed {
            kdf: params,
            salt,
            key_check,
            nonce,
            ciphertext,
        },
    })
}

/// A field that must hold a non-negative integer that fits a `u32`.
fn required_u32(doc: &Map<String, Value>, label: &str, field: &str) -> Result<u32, DecodeError> {
    match doc.get(field) {
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                DecodeError::Corrupt(format!("\"{label}\" is not a 32-bit unsigned integer"))
            }),
        None => Err(DecodeError::Corrupt(format!("no \"{label}\" field"))),
    }
}

/// Decodes a hex field that must hold exactly `len` (non-secret) bytes.
fn decode_hex_len(field: &str, text: &str, len: usize) -> Result<Vec<u8>, DecodeError> {
    let bytes = hex::decode(text)
        .map_err(|e| DecodeError::Corrupt(format!("{field} is not valid hex: {e}")))?;
    if bytes.len() != len {
        return Err(DecodeError::Corrupt(format!(
            "{field} is {} bytes, expected {len}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Decodes a hex field into a fixed-size (non-secret) array.
fn decode_hex_array<const N: usize>(field: &str, text: &str) -> Result<[u8; N], DecodeError> {
    let bytes = decode_hex_len(field, text, N)?;
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// A field that must be present and hold a string.
fn required_str<'a>(doc: &'a Map<String, Value>, field: &str) -> Result<&'a str, DecodeError> {
    match doc.get(field) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(DecodeError::Corrupt(format!("\"{field}\" is not a string"))),
        None => Err(DecodeError::Corrupt(format!("no \"{field}\" field"))),
    }
}

/// Decodes a hex field that must hold exactly 32 bytes. The result is wiped
/// when dropped (it may be a secret).
fn decode_hex_32(field: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    let bytes = Zeroizing::new(
        hex::decode(text)
            .map_err(|e| DecodeError::Corrupt(format!("{field} is not valid hex: {e}")))?,
    );
    if bytes.len() != ED25519_KEY_LEN {
        return Err(DecodeError::Corrupt(format!(
            "{field} is {} bytes, expected {ED25519_KEY_LEN}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Turns a JSON error into a reason that says what kind of damage it is.
fn json_error(e: &serde_json::Error) -> DecodeError {
    let kind = match e.classify() {
        Category::Eof => "truncated JSON",
        Category::Syntax => "not valid JSON",
        Category::Data => "unexpected JSON content",
        Category::Io => "unreadable JSON",
    };
    DecodeError::Corrupt(format!("{kind}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: &str = "public_key";

    fn sample() -> (ed25519::Keypair, String) {
        let keypair =
            ed25519::Keypair::from(ed25519::SecretKey::try_from_bytes([7u8; 32]).unwrap());
        let text = String::from_utf8(encode(&keypair).unwrap().to_vec()).unwrap();
        (keypair, text)
    }

    fn corrupt_reason(text: &str) -> String {
        match decode(text.as_bytes()) {
            Err(DecodeError::Corrupt(reason)) => reason,
            other => panic!("expected Corrupt for {text:?}, got {other:?}"),
        }
    }

    fn with_field(text: &str, field: &str, value: serde_json::Value) -> String {
        let mut doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).unwrap();
        doc.insert(field.to_owned(), value);
        serde_json::to_string(&doc).unwrap()
    }

    fn without_field(text: &str, field: &str) -> String {
        let mut doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).unwrap();
        doc.remove(field);
        serde_json::to_string(&doc).unwrap()
    }

    #[test]
    fn round_trip_and_layout() {
        let (keypair, text) = sample();
        assert!(text.starts_with(
            r#"{"format":"dawn-node-key","version":1,"key_type":"ed25519","encryption":"none","public_key":""#
        ));
        assert!(text.ends_with("\"}\n"));
        assert!(text.contains(&hex::encode([7u8; 32])));
        let decoded = decode(text.as_bytes()).unwrap();
        assert_eq!(decoded.to_bytes(), keypair.to_bytes());
    }

    #[test]
    fn unknown_extra_fields_are_ignored() {
        let (keypair, text) = sample();
        let text = with_field(&text, "comment", "laptop".into());
        assert_eq!(
            decode(text.as_bytes()).unwrap().to_bytes(),
            keypair.to_bytes()
        );
    }

    #[test]
    fn empty_and_whitespace() {
        assert_eq!(corrupt_reason(""), "the file is empty");
        assert_eq!(corrupt_reason(" \n\t"), "the file is empty");
    }

    #[test]
    fn truncated_and_garbage() {
        let (_, text) = sample();
        let reason = corrupt_reason(&text[..text.len() / 2]);
        assert!(reason.starts_with("truncated JSON: "), "{reason}");
        let reason = corrupt_reason("\u{1}\u{2}garbage");
        assert!(reason.starts_with("not valid JSON: "), "{reason}");
        let reason = corrupt_reason("[1,2]");
        assert!(reason.starts_with("unexpected JSON content: "), "{reason}");
    }

    #[test]
    fn format_tag() {
        let (_, text) = sample();
        let reason = corrupt_reason(&with_field(&text, "format", "other".into()));
        assert!(reason.contains("not a Dawn node key file"), "{reason}");
        let reason = corrupt_reason(&without_field(&text, "format"));
        assert!(reason.contains("no \"format\" field"), "{reason}");
    }

    #[test]
    fn versions() {
        let (_, text) = sample();
        assert_eq!(
            decode(with_field(&text, "version", 2.into()).as_bytes()).unwrap_err(),
            DecodeError::NewerVersion(2)
        );
        let reason = corrupt_reason(&with_field(&text, "version", 0.into()));
        assert!(reason.contains("unknown format version 0"), "{reason}");
        for bad in [serde_json::Value::from("1"), (-1).into(), 1.5.into()] {
            let reason = corrupt_reason(&with_field(&text, "version", bad));
            assert!(reason.contains("\"version\""), "{reason}");
        }
        let reason = corrupt_reason(&without_field(&text, "version"));
        assert!(reason.contains("\"version\""), "{reason}");
    }

    #[test]
    fn unknown_encryption_is_reported_before_key_fields() {
        let (_, text) = sample();
        let text = with_field(&text, "encryption", "chacha20-poly1305".into());
        let text = without_field(&text, "secret_key");
        let text = with_field(&text, "ciphertext", "00".into());
        assert_eq!(
            decode_any(text.as_bytes()).unwrap_err(),
            DecodeError::UnsupportedEncryption("chacha20-poly1305".to_owned())
        );
    }

    fn sealed_sample() -> (String, [u8; 32], SealedSeed) {
        let public_key = [3u8; 32];
        let sealed = SealedSeed {
            kdf: KdfParams::MINIMUM,
            salt: [4; SALT_LEN],
            key_check: [5; KEY_CHECK_LEN],
            nonce: [6; GCM_NONCE_LEN],
            ciphertext: vec![7; SEALED_SEED_LEN],
        };
        let text = String::from_utf8(encode_encrypted(&public_key, &sealed).unwrap()).unwrap();
        (text, public_key, sealed)
    }

    #[test]
    fn encrypted_round_trip_and_layout() {
        let (text, public_key, sealed) = sealed_sample();
        assert!(text.starts_with(
            r#"{"format":"dawn-node-key","version":1,"key_type":"ed25519","encryption":"aes-256-gcm","public_key":""#
        ), "{text}");
        assert!(text.contains(r#""kdf":{"name":"argon2id","version":19,"memory_kib":19456,"iterations":2,"parallelism":1,"salt":"#), "{text}");
        assert!(!text.contains("secret_key"));
        assert!(text.ends_with("\"}\n"));
        match decode_any(text.as_bytes()).unwrap() {
            KeyFileContents::Encrypted {
                public_key: p,
                sealed: s,
            } => {
                assert_eq!(p, public_key);
                assert_eq!(s, sealed);
            }
            other => panic!("expected encrypted, got {other:?}"),
        }
    }

    #[test]
    fn encrypted_fields_are_checked() {
        let (text, _, _) = sealed_sample();
        let reason = corrupt_reason_any(&without_field(&text, "kdf"));
        assert_eq!(reason, "no \"kdf\" field");
        let reason = corrupt_reason_any(&with_field(&text, "nonce", "00".into()));
        assert_eq!(reason, "nonce is 1 bytes, expected 12");
        let reason = corrupt_reason_any(&with_field(&text, "ciphertext", "zz".into()));
        assert!(
            reason.starts_with("ciphertext is not valid hex"),
            "{reason}"
        );
        let reason = corrupt_reason_any(&without_field(&text, "key_check"));
        assert_eq!(reason, "no \"key_check\" field");

        let mut doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap();
        doc["kdf"]["name"] = "scrypt".into();
        let other_kdf = serde_json::to_string(&doc).unwrap();
        assert_eq!(
            decode_any(other_kdf.as_bytes()).unwrap_err(),
            DecodeError::UnsupportedEncryption("aes-256-gcm with kdf scrypt".to_owned())
        );
        doc["kdf"]["name"] = "argon2id".into();
        doc["kdf"]["memory_kib"] = (u64::from(u32::MAX) + 1).into();
        let reason = corrupt_reason_any(&serde_json::to_string(&doc).unwrap());
        assert_eq!(
            reason,
            "\"kdf.memory_kib\" is not a 32-bit unsigned integer"
        );
        doc["kdf"]["memory_kib"] = u32::MAX.into();
        let reason = corrupt_reason_any(&serde_json::to_string(&doc).unwrap());
        assert!(reason.contains("argon2id memory"), "{reason}");
    }

    fn corrupt_reason_any(text: &str) -> String {
        match decode_any(text.as_bytes()) {
            Err(DecodeError::Corrupt(reason)) => reason,
            other => panic!("expected Corrupt for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn key_fields() {
        let (_, text) = sample();
        let reason = corrupt_reason(&with_field(&text, "key_type", "rsa".into()));
        assert!(reason.contains("unsupported key_type \"rsa\""), "{reason}");

        let reason = corrupt_reason(&with_field(&text, PUBLIC, "zz".into()));
        assert!(reason.contains("public_key is not valid hex"), "{reason}");
        let reason = corrupt_reason(&with_field(&text, PUBLIC, "abcd".into()));
        assert!(
            reason.contains("public_key is 2 bytes, expected 32"),
            "{reason}"
        );
        let reason = corrupt_reason(&without_field(&text, PUBLIC));
        assert!(reason.contains("no \"public_key\" field"), "{reason}");

        let reason = corrupt_reason(&with_field(&text, "secret_key", "xyz".into()));
        assert!(reason.contains("secret_key is not valid hex"), "{reason}");
        let reason = corrupt_reason(&with_field(
            &text,
            "secret_key",
            hex::encode([1u8; 64]).into(),
        ));
        assert!(
            reason.contains("secret_key is 64 bytes, expected 32"),
            "{reason}"
        );
        let reason = corrupt_reason(&without_field(&text, "secret_key"));
        assert!(reason.contains("no \"secret_key\" field"), "{reason}");
    }

    #[test]
    fn mismatched_public_key() {
        let (_, text) = sample();
        let other = ed25519::Keypair::from(ed25519::SecretKey::try_from_bytes([9u8; 32]).unwrap());
        let text = with_field(&text, PUBLIC, hex::encode(other.public().to_bytes()).into());
        assert_eq!(
            corrupt_reason(&text),
            "public_key does not match secret_key"
        );
    }
}
