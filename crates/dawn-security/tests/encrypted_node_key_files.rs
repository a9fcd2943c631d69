//! Passphrase-encrypted node key files on a real filesystem: round trips,
//! wrong passphrases, passphrase changes, damage, and passphrase files. Every
//! failure must leave the key file byte-for-byte unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dawn_security::{
    IdentityError, KdfParams, KeyFileStatus, NODE_KEY_FILE, NodeIdentity, Passphrase,
    PassphraseError, SecretFileError,
};

/// Cheapest parameters the library will write (the OWASP minimum), to keep
/// tests quick; one test uses the recommended ones.
const FAST: KdfParams = KdfParams::MINIMUM;

fn pass(text: &str) -> Passphrase {
    Passphrase::new(text.to_owned()).unwrap()
}

/// A temp dir with an encrypted key file: (guard, path, identity, bytes).
fn encrypted_key(passphrase: &str) -> (tempfile::TempDir, PathBuf, NodeIdentity, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity").join(NODE_KEY_FILE);
    let identity = NodeIdentity::create_encrypted_with_kdf(&path, &pass(passphrase), FAST).unwrap();
    let bytes = fs::read(&path).unwrap();
    (dir, path, identity, bytes)
}

fn assert_unchanged(path: &Path, bytes: &[u8]) {
    assert_eq!(fs::read(path).unwrap(), bytes, "the key file was modified");
    let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let others: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != NODE_KEY_FILE)
        .collect();
    assert!(others.is_empty(), "files left behind: {others:?}");
}

#[test]
fn recommended_parameters_round_trip_and_public_key_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NODE_KEY_FILE);
    let created = NodeIdentity::create_encrypted(&path, &pass("correct horse battery")).unwrap();

    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(r#""encryption":"aes-256-gcm""#), "{text}");
    assert!(
        text.contains(r#""kdf":{"name":"argon2id","version":19,"memory_kib":65536,"iterations":3,"parallelism":1,"salt":""#),
        "{text}"
    );
    assert!(!text.contains("secret_key"), "{text}");
    assert!(text.contains(&created.public_key_hex()));

    let info = NodeIdentity::key_file_info(&path).unwrap();
    assert_eq!(info.peer_id, created.peer_id());
    assert!(info.encrypted);
    assert_eq!(info.kdf, Some(KdfParams::RECOMMENDED));

    let loaded = NodeIdentity::load_with(&path, Some(&pass("correct horse battery"))).unwrap();
    assert_eq!(loaded.peer_id(), created.peer_id());
    let signature = loaded.sign(b"msg");
    assert!(dawn_security::verify(
        &created.public_key(),
        b"msg",
        &signature
    ));
}

#[test]
fn missing_passphrase_says_how_to_supply_one() {
    let (_dir, path, _, bytes) = encrypted_key("correct horse battery");
    for error in [
        NodeIdentity::load(&path).unwrap_err(),
        NodeIdentity::load_with(&path, None).unwrap_err(),
        NodeIdentity::load_or_create(&path).unwrap_err(),
    ] {
        assert!(
            matches!(&error, IdentityError::PassphraseRequired { path: p } if *p == path),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("DAWN_PASSPHRASE"), "{message}");
        assert!(message.contains("--passphrase-file"), "{message}");
    }
    assert_unchanged(&path, &bytes);
}

#[test]
fn wrong_passphrase_is_one_clear_error_and_file_is_untouched() {
    let (_dir, path, _, bytes) = encrypted_key("correct horse battery");
    let error = NodeIdentity::load_with(&path, Some(&pass("correct horse battery!"))).unwrap_err();
    assert!(
        matches!(&error, IdentityError::WrongPassphrase { path: p } if *p == path),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "wrong passphrase for key file {}; it was not modified",
            path.display()
        )
    );
    let error =
        NodeIdentity::load_or_create_with(&path, Some(&pass("nope nope nope"))).unwrap_err();
    assert!(
        matches!(error, IdentityError::WrongPassphrase { .. }),
        "{error:?}"
    );
    assert_unchanged(&path, &bytes);
}

#[test]
fn change_passphrase_replaces_it_atomically() {
    let (_dir, path, identity, bytes) = encrypted_key("old passphrase");

    // Failures first: each leaves the file as it was.
    let error = NodeIdentity::change_passphrase_with_kdf(
        &path,
        &pass("not the old one"),
        &pass("new passphrase"),
        FAST,
    )
    .unwrap_err();
    assert!(
        matches!(error, IdentityError::WrongPassphrase { .. }),
        "{error:?}"
    );
    assert_unchanged(&path, &bytes);

    let error = NodeIdentity::change_passphrase_with_kdf(
        &path,
        &pass("old passphrase"),
        &pass("short"),
        FAST,
    )
    .unwrap_err();
    assert!(
        matches!(error, IdentityError::WeakPassphrase { min_chars: 8 }),
        "{error:?}"
    );
    assert_unchanged(&path, &bytes);

    let weak_kdf = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    let error = NodeIdentity::change_passphrase_with_kdf(
        &path,
        &pass("old passphrase"),
        &pass("new passphrase"),
        weak_kdf,
    )
    .unwrap_err();
    assert!(
        matches!(error, IdentityError::KdfParams { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("weaker than the minimum"),
        "{error}"
    );
    assert_unchanged(&path, &bytes);

    NodeIdentity::change_passphrase_with_kdf(
        &path,
        &pass("old passphrase"),
        &pass("new passphrase"),
        FAST,
    )
    .unwrap();

    let new_bytes = fs::read(&path).unwrap();
    assert_ne!(new_bytes, bytes);
    assert_unchanged(&path, &new_bytes);
    let error = NodeIdentity::load_with(&path, Some(&pass("old passphrase"))).unwrap_err();
    assert!(
        matches!(error, IdentityError::WrongPassphrase { .. }),
        "{error:?}"
    );
    let loaded = NodeIdentity::load_with(&path, Some(&pass("new passphrase"))).unwrap();
    assert_eq!(loaded.peer_id(), identity.peer_id());
}

#[test]
fn change_passphrase_of_a_plain_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NODE_KEY_FILE);
    NodeIdentity::create(&path).unwrap();
    let bytes = fs::read(&path).unwrap();
    let error =
        NodeIdentity::change_passphrase(&path, &pass("whatever1"), &pass("whatever2")).unwrap_err();
    assert!(
        matches!(error, IdentityError::NotEncrypted { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("is not encrypted"), "{error}");
    assert_unchanged(&path, &bytes);
}

#[test]
fn encrypt_existing_then_decrypt_keeps_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NODE_KEY_FILE);
    let identity = NodeIdentity::create(&path).unwrap();
    assert!(!NodeIdentity::key_file_info(&path).unwrap().encrypted);

    NodeIdentity::encrypt_existing_with_kdf(&path, &pass("a good passphrase"), FAST).unwrap();
    let encrypted_bytes = fs::read(&path).unwrap();
    assert_unchanged(&path, &encrypted_bytes);
    assert!(NodeIdentity::key_file_info(&path).unwrap().encrypted);
    assert!(matches!(
        NodeIdentity::load(&path).unwrap_err(),
        IdentityError::PassphraseRequired { .. }
    ));
    let error = NodeIdentity::encrypt_existing_with_kdf(&path, &pass("another passphrase"), FAST)
        .unwrap_err();
    assert!(
        matches!(error, IdentityError::AlreadyEncrypted { .. }),
        "{error:?}"
    );
    assert_unchanged(&path, &encrypted_bytes);

    let error = NodeIdentity::decrypt_existing(&path, &pass("not it at all")).unwrap_err();
    assert!(
        matches!(error, IdentityError::WrongPassphrase { .. }),
        "{error:?}"
    );
    assert_unchanged(&path, &encrypted_bytes);

    NodeIdentity::decrypt_existing(&path, &pass("a good passphrase")).unwrap();
    assert_eq!(
        NodeIdentity::load(&path).unwrap().peer_id(),
        identity.peer_id()
    );
}

#[test]
fn load_or_create_with_a_passphrase_creates_an_encrypted_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id").join(NODE_KEY_FILE);
    let passphrase = pass("a good passphrase");
    let (created, status) = NodeIdentity::load_or_create_with(&path, Some(&passphrase)).unwrap();
    assert_eq!(status, KeyFileStatus::Created);
    assert!(NodeIdentity::key_file_info(&path).unwrap().encrypted);
    let (loaded, status) = NodeIdentity::load_or_create_with(&path, Some(&passphrase)).unwrap();
    assert_eq!(status, KeyFileStatus::Loaded);
    assert_eq!(loaded.peer_id(), created.peer_id());
}

#[test]
fn plain_file_loads_even_when_a_passphrase_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NODE_KEY_FILE);
    let identity = NodeIdentity::create(&path).unwrap();
    let loaded = NodeIdentity::load_with(&path, Some(&pass("irrelevant"))).unwrap();
    assert_eq!(loaded.peer_id(), identity.peer_id());
}

#[test]
fn truncated_encrypted_file_is_corrupt_and_untouched() {
    let (_dir, path, _, bytes) = encrypted_key("correct horse battery");
    for cut in [bytes.len() / 2, bytes.len() - 3, 10] {
        fs::write(&path, &bytes[..cut]).unwrap();
        let error =
            NodeIdentity::load_with(&path, Some(&pass("correct horse battery"))).unwrap_err();
        assert!(
            matches!(&error, IdentityError::Corrupt { reason, .. } if reason.contains("truncated JSON")),
            "cut at {cut}: {error:?}"
        );
        assert!(error.to_string().contains("It was not modified"), "{error}");
        assert_unchanged(&path, &bytes[..cut]);
    }
}

/// Replaces one hex digit of `field`'s value (first occurrence) with another.
fn flip_hex_digit(text: &str, field: &str, offset: usize) -> String {
    let marker = format!("\"{field}\":\"");
    let start = text.find(&marker).unwrap() + marker.len() + offset;
    let old = text.as_bytes()[start];
    let new = if old == b'0' { '1' } else { '0' };
    let mut out = text.to_owned();
    out.replace_range(start..=start, &new.to_string());
    out
}

#[test]
fn bit_flipped_ciphertext_fails_authentication_and_is_untouched() {
    let (_dir, path, _, bytes) = encrypted_key("correct horse battery");
    let text = String::from_utf8(bytes).unwrap();
    for offset in [0, 40, 95] {
        let damaged = flip_hex_digit(&text, "ciphertext", offset);
        fs::write(&path, &damaged).unwrap();
        let error =
            NodeIdentity::load_with(&path, Some(&pass("correct horse battery"))).unwrap_err();
        match &error {
            IdentityError::Corrupt { reason, .. } => {
                assert!(reason.contains("failed authentication"), "{reason}");
                assert!(reason.contains("altered or damaged"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_unchanged(&path, damaged.as_bytes());
    }

    // Damage to the nonce also fails authentication.
    let damaged = flip_hex_digit(&text, "nonce", 5);
    fs::write(&path, &damaged).unwrap();
    let error = NodeIdentity::load_with(&path, Some(&pass("correct horse battery"))).unwrap_err();
    assert!(matches!(error, IdentityError::Corrupt { .. }), "{error:?}");

    // Damage to the salt changes the derived key: indistinguishable from a
    // wrong passphrase.
    let damaged = flip_hex_digit(&text, "salt", 3);
    fs::write(&path, &damaged).unwrap();
    let error = NodeIdentity::load_with(&path, Some(&pass("correct horse battery"))).unwrap_err();
    assert!(
        matches!(error, IdentityError::WrongPassphrase { .. }),
        "{error:?}"
    );
    assert_unchanged(&path, damaged.as_bytes());
}

#[test]
fn swapped_public_key_is_detected() {
    let (_dir, path, identity, bytes) = encrypted_key("correct horse battery");
    let other = NodeIdentity::generate().unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let swapped = text.replace(&identity.public_key_hex(), &other.public_key_hex());
    fs::write(&path, &swapped).unwrap();
    // Without the passphrase the file looks fine but shows the other id...
    assert_eq!(
        NodeIdentity::key_file_info(&path).unwrap().peer_id,
        other.peer_id()
    );
    // ...and unlocking it fails: the ciphertext is bound to the public key.
    let error = NodeIdentity::load_with(&path, Some(&pass("correct horse battery"))).unwrap_err();
    assert!(matches!(error, IdentityError::Corrupt { .. }), "{error:?}");
    assert_unchanged(&path, swapped.as_bytes());
}

#[test]
fn passphrase_file_must_be_private_and_loses_its_trailing_newline() {
    let (dir, path, identity, _) = encrypted_key("correct horse battery");
    let pass_file = dir.path().join("passphrase");
    fs::write(&pass_file, "correct horse battery\n").unwrap();

    fs::set_permissions(&pass_file, fs::Permissions::from_mode(0o644)).unwrap();
    let error = Passphrase::from_file(&pass_file).unwrap_err();
    assert!(
        matches!(
            error,
            PassphraseError::File(SecretFileError::InsecurePermissions { mode: 0o644, .. })
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("chmod 600"), "{message}");
    assert!(
        message.contains(&pass_file.display().to_string()),
        "{message}"
    );

    fs::set_permissions(&pass_file, fs::Permissions::from_mode(0o600)).unwrap();
    let passphrase = Passphrase::from_file(&pass_file).unwrap();
    assert_eq!(format!("{passphrase:?}"), "Passphrase(<redacted>)");
    let loaded = NodeIdentity::load_with(&path, Some(&passphrase)).unwrap();
    assert_eq!(loaded.peer_id(), identity.peer_id());

    fs::write(&pass_file, "correct horse battery\r\n").unwrap();
    let crlf = Passphrase::from_file(&pass_file).unwrap();
    NodeIdentity::load_with(&path, Some(&crlf)).unwrap();

    fs::write(&pass_file, "\n").unwrap();
    let error = Passphrase::from_file(&pass_file).unwrap_err();
    assert!(matches!(error, PassphraseError::Empty { .. }), "{error:?}");
    assert!(error.to_string().contains(&pass_file.display().to_string()));

    let missing = dir.path().join("nope");
    assert!(matches!(
        Passphrase::from_file(&missing).unwrap_err(),
        PassphraseError::File(SecretFileError::NotFound { .. })
    ));
}

#[test]
fn new_passphrases_must_not_be_short() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NODE_KEY_FILE);
    let error = NodeIdentity::create_encrypted_with_kdf(&path, &pass("1234567"), FAST).unwrap_err();
    assert!(
        matches!(error, IdentityError::WeakPassphrase { .. }),
        "{error:?}"
    );
    assert!(!path.exists());
}
