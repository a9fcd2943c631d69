#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `dawn-cli verify-release`: a release directory signed the way `cargo
//! xtask dist` signs it is accepted; tampering, a wrong key, a missing or
//! malformed file are refused with exit status 1 and a message naming the
//! problem.

use std::{fs, path::Path, process::Command};

use base64::Engine as _;
use ring::{
    digest,
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair as _},
};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_key() -> Ed25519KeyPair {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

/// Writes two archives, SHA256SUMS and its signature into `dir`.
fn write_release(dir: &Path, key: &Ed25519KeyPair) {
    let files = [
        (
            "dawn-0.1.0-aarch64-unknown-linux-gnu.tar.gz",
            &b"arm archive"[..],
        ),
        (
            "dawn-0.1.0-x86_64-unknown-linux-gnu.tar.gz",
            &b"x86 archive"[..],
        ),
    ];
    let mut sums = String::new();
    for (name, data) in files {
        fs::write(dir.join(name), data).unwrap();
        sums.push_str(&format!("{}  {name}\n", sha256_hex(data)));
    }
    fs::write(dir.join("SHA256SUMS"), &sums).unwrap();
    let sig = key.sign(sums.as_bytes());
    fs::write(
        dir.join("SHA256SUMS.sig"),
        format!("{}\n", b64(sig.as_ref())),
    )
    .unwrap();
}

fn verify(dir: &Path, key: &str, extra: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dawn-cli"))
        .arg("verify-release")
        .arg(dir)
        .args(["--key", key])
        .args(extra)
        // The command is offline: a node's data directory is irrelevant.
        .env("DAWN_NODE__DATA_ROOT", dir.join("no-node"))
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_signed_release_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key();
    write_release(dir.path(), &key);
    let public = b64(key.public_key().as_ref());
    let (ok, stdout, stderr) = verify(dir.path(), &public, &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("SHA256SUMS: signature valid"), "{stdout}");
    assert!(
        stdout.contains("dawn-0.1.0-x86_64-unknown-linux-gnu.tar.gz: ok"),
        "{stdout}"
    );

    // The key can come from a file, and --json gives a machine answer.
    let key_file = dir.path().join("release.pub");
    fs::write(&key_file, format!("{public}\n")).unwrap();
    let (ok, stdout, _) = verify(dir.path(), &format!("@{}", key_file.display()), &["--json"]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["files"].as_array().unwrap().len(), 2);
}

#[test]
fn one_downloaded_archive_is_enough() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key();
    write_release(dir.path(), &key);
    fs::remove_file(
        dir.path()
            .join("dawn-0.1.0-aarch64-unknown-linux-gnu.tar.gz"),
    )
    .unwrap();
    let (ok, stdout, stderr) = verify(dir.path(), &b64(key.public_key().as_ref()), &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("dawn-0.1.0-aarch64-unknown-linux-gnu.tar.gz: missing"),
        "{stdout}"
    );

    // ... but not none.
    fs::remove_file(
        dir.path()
            .join("dawn-0.1.0-x86_64-unknown-linux-gnu.tar.gz"),
    )
    .unwrap();
    let (ok, _, stderr) = verify(dir.path(), &b64(key.public_key().as_ref()), &[]);
    assert!(!ok);
    assert!(stderr.contains("none of the files"), "{stderr}");
}

#[test]
fn tampering_and_wrong_keys_are_refused() {
    let key = new_key();
    let public = b64(key.public_key().as_ref());

    // A changed archive: the signature is fine, the checksum is not.
    let dir = tempfile::tempdir().unwrap();
    write_release(dir.path(), &key);
    fs::write(
        dir.path()
            .join("dawn-0.1.0-x86_64-unknown-linux-gnu.tar.gz"),
        b"x86 archive with a backdoor",
    )
    .unwrap();
    let (ok, stdout, stderr) = verify(dir.path(), &public, &[]);
    assert!(!ok);
    assert!(
        stdout.contains("dawn-0.1.0-x86_64-unknown-linux-gnu.tar.gz: checksum mismatch"),
        "{stdout}"
    );
    assert!(stderr.contains("do not install"), "{stderr}");

    // A changed SHA256SUMS (matching the changed archive): bad signature.
    let dir = tempfile::tempdir().unwrap();
    write_release(dir.path(), &key);
    let forged = format!(
        "{}  dawn-0.1.0-x86_64-unknown-linux-gnu.tar.gz\n",
        sha256_hex(b"evil")
    );
    fs::write(dir.path().join("SHA256SUMS"), forged).unwrap();
    let (ok, _, stderr) = verify(dir.path(), &public, &[]);
    assert!(!ok);
    assert!(stderr.contains("signature does not match"), "{stderr}");

    // Another key.
    let dir = tempfile::tempdir().unwrap();
    write_release(dir.path(), &key);
    let other = b64(new_key().public_key().as_ref());
    let (ok, _, stderr) = verify(dir.path(), &other, &[]);
    assert!(!ok);
    assert!(stderr.contains("signature does not match"), "{stderr}");

    // No signature.
    fs::remove_file(dir.path().join("SHA256SUMS.sig")).unwrap();
    let (ok, _, stderr) = verify(dir.path(), &public, &[]);
    assert!(!ok);
    assert!(stderr.contains("unsigned release"), "{stderr}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let key = new_key();
    let public = b64(key.public_key().as_ref());

    // Not a key.
    let dir = tempfile::tempdir().unwrap();
    write_release(dir.path(), &key);
    let (ok, _, stderr) = verify(dir.path(), "hello", &[]);
    assert!(!ok);
    assert!(stderr.contains("Ed25519 public key"), "{stderr}");

    // A signed SHA256SUMS with a line that tries to escape the directory.
    let dir = tempfile::tempdir().unwrap();
    let sums = format!("{}  ../../etc/passwd\n", sha256_hex(b"x"));
    fs::write(dir.path().join("SHA256SUMS"), &sums).unwrap();
    let sig = key.sign(sums.as_bytes());
    fs::write(dir.path().join("SHA256SUMS.sig"), b64(sig.as_ref())).unwrap();
    let (ok, _, stderr) = verify(dir.path(), &public, &[]);
    assert!(!ok);
    assert!(stderr.contains("line 1"), "{stderr}");

    // No such directory.
    let (ok, _, stderr) = verify(&dir.path().join("nope"), &public, &[]);
    assert!(!ok);
    assert!(stderr.contains("cannot read"), "{stderr}");
}
