//! Node identity key files on a real filesystem: creation, reload, and refusal
//! of damaged or exposed files without modifying them.

// Test helpers outside #[test] fns panic on setup failure by design.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dawn_security::{IdentityError, KeyFileStatus, NODE_KEY_FILE, NodeIdentity, SecretFileError};

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A data dir with a valid key file; returns (tempdir guard, key path, bytes).
fn existing_key() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NODE_KEY_FILE);
    NodeIdentity::create(&path).unwrap();
    let bytes = fs::read(&path).unwrap();
    (dir, path, bytes)
}

/// Overwrites the key file (keeping mode 0600) and returns the load error,
/// checking the file bytes are unchanged by the failed load.
fn load_error_for(path: &Path, contents: &[u8]) -> IdentityError {
    fs::write(path, contents).unwrap();
    let err = NodeIdentity::load(path).unwrap_err();
    let err2 = NodeIdentity::load_or_create(path).unwrap_err();
    assert_eq!(err.to_string(), err2.to_string());
    assert_eq!(fs::read(path).unwrap(), contents, "file was modified");
    assert_eq!(mode_of(path), 0o600);
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    err
}

fn assert_corrupt(err: &IdentityError, reason_part: &str) {
    match err {
        IdentityError::Corrupt { reason, .. } => {
            assert!(reason.contains(reason_part), "reason {reason:?}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("refusing to start"), "{msg}");
    assert!(msg.contains("It was not modified"), "{msg}");
    assert!(
        msg.contains("move it away to create a new identity"),
        "{msg}"
    );
}

#[test]
fn first_call_creates_private_dir_and_file_then_reloads_same_identity() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data").join("identity");
    let path = dir.join(NODE_KEY_FILE);

    let (created, status) = NodeIdentity::load_or_create(&path).unwrap();
    assert_eq!(status, KeyFileStatus::Created);
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(mode_of(&dir), 0o700);
    let bytes = fs::read(&path).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains(r#""format":"dawn-node-key""#), "{text}");
    assert!(text.contains(&created.public_key_hex()), "{text}");

    let (loaded, status) = NodeIdentity::load_or_create(&path).unwrap();
    assert_eq!(status, KeyFileStatus::Loaded);
    assert_eq!(loaded.peer_id(), created.peer_id());
    assert_eq!(
        NodeIdentity::load(&path).unwrap().peer_id(),
        created.peer_id()
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "load changed the file");

    // The loaded key signs like the original.
    let sig = loaded.sign(b"msg");
    assert!(dawn_security::verify(&created.public_key(), b"msg", &sig));

    // Only the key file is in the directory (no temp files).
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn create_refuses_to_overwrite() {
    let (_dir, path, bytes) = existing_key();
    let err = NodeIdentity::create(&path).unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::File(SecretFileError::AlreadyExists { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn load_of_missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NODE_KEY_FILE);
    let err = NodeIdentity::load(&path).unwrap_err();
    assert!(
        matches!(err, IdentityError::File(SecretFileError::NotFound { .. })),
        "{err:?}"
    );
    assert!(!path.exists());
}

#[test]
fn truncated_file_is_corrupt_and_untouched() {
    let (_dir, path, bytes) = existing_key();
    let err = load_error_for(&path, &bytes[..bytes.len() / 2]);
    assert_corrupt(&err, "truncated JSON");
}

#[test]
fn empty_file_is_corrupt_and_untouched() {
    let (_dir, path, _) = existing_key();
    let err = load_error_for(&path, b"");
    assert_corrupt(&err, "the file is empty");
}

#[test]
fn garbage_is_corrupt_and_untouched() {
    let (_dir, path, _) = existing_key();
    let err = load_error_for(&path, &[0xff, 0x00, 0x13, 0x37, 0xde, 0xad]);
    assert_corrupt(&err, "not valid JSON");
    let err = load_error_for(&path, br#"{"hello":"world"}"#);
    assert_corrupt(&err, "not a Dawn node key file");
}

#[test]
fn mismatched_public_key_is_corrupt_and_untouched() {
    let (_dir, path, bytes) = existing_key();
    let other = NodeIdentity::generate().unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let mine = NodeIdentity::load(&path).unwrap().public_key_hex();
    let swapped = text.replace(&mine, &other.public_key_hex());
    assert_ne!(swapped, text);
    let err = load_error_for(&path, swapped.as_bytes());
    assert_corrupt(&err, "public_key does not match secret_key");
}

#[test]
fn bad_hex_and_wrong_length_are_corrupt() {
    let (_dir, path, bytes) = existing_key();
    let text = String::from_utf8(bytes).unwrap();
    let public = NodeIdentity::load(&path).unwrap().public_key_hex();

    let bad_hex = text.replace(&public, &"zz".repeat(32));
    assert_corrupt(
        &load_error_for(&path, bad_hex.as_bytes()),
        "public_key is not valid hex",
    );

    let short = text.replace(&public, &public[..62]);
    assert_corrupt(
        &load_error_for(&path, short.as_bytes()),
        "public_key is 31 bytes, expected 32",
    );
}

#[test]
fn newer_version_names_newer_dawn_and_is_untouched() {
    let (_dir, path, bytes) = existing_key();
    let text = String::from_utf8(bytes).unwrap();
    let newer = text.replace(r#""version":1"#, r#""version":7"#);
    let err = load_error_for(&path, newer.as_bytes());
    assert!(
        matches!(
            err,
            IdentityError::NewerVersion {
                version: 7,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("written by a newer version of Dawn")
    );
}

#[test]
fn unknown_encryption_scheme_is_refused_and_untouched() {
    let (_dir, path, _) = existing_key();
    let encrypted = br#"{"format":"dawn-node-key","version":1,"key_type":"ed25519","encryption":"chacha20-poly1305","public_key":"00","kdf":{"name":"scrypt"},"salt":"00","nonce":"00","ciphertext":"00"}"#;
    let err = load_error_for(&path, encrypted);
    assert!(
        matches!(err, IdentityError::UnsupportedEncryption { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("encrypted (chacha20-poly1305), which this version of Dawn cannot decrypt"),
        "{err}"
    );
}

#[test]
fn world_readable_key_file_is_refused_with_chmod_hint() {
    let (_dir, path, bytes) = existing_key();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    for err in [
        NodeIdentity::load(&path).unwrap_err(),
        NodeIdentity::load_or_create(&path).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                IdentityError::File(SecretFileError::InsecurePermissions { mode: 0o644, .. })
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("0644"), "{msg}");
    }
    assert_eq!(fs::read(&path).unwrap(), bytes);
    assert_eq!(
        mode_of(&path),
        0o644,
        "mode must not be changed behind the operator's back"
    );

    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    NodeIdentity::load(&path).unwrap();
}

#[test]
fn existing_directory_mode_is_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("shared");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
    let path = dir.join(NODE_KEY_FILE);
    NodeIdentity::create(&path).unwrap();
    assert_eq!(mode_of(&dir), 0o750);
    assert_eq!(mode_of(&path), 0o600);
}
