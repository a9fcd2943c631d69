//! `dawn-cli verify-release DIR --key PUBKEY`: checks a downloaded release
//! (as written by `cargo xtask dist`) before installing it.
//!
//! 1. `DIR/SHA256SUMS.sig` must be a valid Ed25519 signature of the exact
//!    bytes of `DIR/SHA256SUMS` by the release key (base64 of its 32-byte
//!    public key, or `@FILE` holding that).
//! 2. Every file listed in `SHA256SUMS` that is present in DIR must have the
//!    listed SHA-256. Listed files that are absent are reported and skipped
//!    (a user usually downloads one archive), but at least one must be there.
//!
//! Works offline; talks to no node.

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use ring::{digest, signature};
use serde_json::json;

use crate::output;

/// The checksums file in a release directory.
pub const CHECKSUMS: &str = "SHA256SUMS";
/// Its detached signature.
pub const SIGNATURE: &str = "SHA256SUMS.sig";

/// Options of `dawn-cli verify-release`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyReleaseArgs {
    /// Directory holding SHA256SUMS, SHA256SUMS.sig and the downloaded
    /// archive(s).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The release public key: base64 of the 32-byte Ed25519 key (as
    /// published with the release), or @FILE to read it from a file.
    #[arg(long, value_name = "PUBKEY")]
    pub key: String,
}

/// What happened to one listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileStatus {
    Ok,
    Mismatch,
    Missing,
}

impl FileStatus {
    fn as_str(&self) -> &'static str {
        match self {
            FileStatus::Ok => "ok",
            FileStatus::Mismatch => "checksum mismatch",
            FileStatus::Missing => "missing",
        }
    }
}

/// Runs the command; exit status 0 when the release verifies, 1 otherwise.
pub fn main(args: &VerifyReleaseArgs, json_output: bool) -> Result<ExitCode> {
    let key = public_key(&args.key)?;
    let sums_path = args.dir.join(CHECKSUMS);
    let sums =
        fs::read(&sums_path).with_context(|| format!("cannot read {}", sums_path.display()))?;
    let sig_path = args.dir.join(SIGNATURE);
    let sig_text = fs::read_to_string(&sig_path).with_context(|| {
        format!(
            "cannot read {} (an unsigned release cannot be verified)",
            sig_path.display()
        )
    })?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig_text.trim())
        .with_context(|| format!("{} is not base64", sig_path.display()))?;
    if signature::UnparsedPublicKey::new(&signature::ED25519, &key)
        .verify(&sums, &sig)
        .is_err()
    {
        bail!(
            "{CHECKSUMS}: the signature does not match the key: the file was changed, or signed \
             with another key"
        );
    }
    let listed = parse_checksums(&String::from_utf8_lossy(&sums))?;
    let mut results = Vec::with_capacity(listed.len());
    for (expected, name) in &listed {
        let path = args.dir.join(name);
        let status = if !path.is_file() {
            FileStatus::Missing
        } else if sha256_file(&path)? == *expected {
            FileStatus::Ok
        } else {
            FileStatus::Mismatch
        };
        results.push((name.clone(), status));
    }
    let verified = results.iter().filter(|(_, s)| *s == FileStatus::Ok).count();
    let bad = results
        .iter()
        .filter(|(_, s)| *s == FileStatus::Mismatch)
        .count();
    let ok = bad == 0 && verified > 0;
    if json_output {
        let files: Vec<_> = results
            .iter()
            .map(|(name, status)| json!({ "file": name, "status": status.as_str() }))
            .collect();
        output::stdout(&serde_json::to_string_pretty(&json!({
            "signature": "valid",
            "ok": ok,
            "files": files,
        }))?)?;
    } else {
        output::stdout(&format!("{CHECKSUMS}: signature valid"))?;
        for (name, status) in &results {
            output::stdout(&format!("{name}: {}", status.as_str()))?;
        }
    }
    if bad > 0 {
        output::stderr(&format!(
            "dawn-cli: {bad} file(s) do not match {CHECKSUMS}: do not install them"
        ))?;
    } else if verified == 0 {
        output::stderr(&format!(
            "dawn-cli: none of the files listed in {CHECKSUMS} is in {}",
            args.dir.display()
        ))?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The public key from `base64` or `@FILE`.
fn public_key(raw: &str) -> Result<Vec<u8>> {
    let text = match raw.strip_prefix('@') {
        Some(file) => fs::read_to_string(file)
            .with_context(|| format!("cannot read the public key file {file}"))?,
        None => raw.to_owned(),
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .context("--key must be an Ed25519 public key: base64 of 32 bytes (or @FILE)")?;
    Ok(key)
}

/// `<sha256 hex>  <file name>` lines (as written by sha256sum; a `*`
/// before the name, marking binary mode, is accepted).
fn parse_checksums(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(hash, rest)| {
            let name = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*'))?;
            let valid_hash = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
            let valid_name = !name.is_empty()
                && !name.contains('/')
                && !name.contains('\\')
                && name != "."
                && name != "..";
            (valid_hash && valid_name).then(|| (hash.to_ascii_lowercase(), name.to_owned()))
        });
        match parsed {
            Some(entry) => out.push(entry),
            None => bail!(
                "{CHECKSUMS} line {}: expected `<sha256>  <file name>`, got {line:?}",
                i + 1
            ),
        }
    }
    if out.is_empty() {
        bail!("{CHECKSUMS} lists no files");
    }
    Ok(out)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut context = digest::Context::new(&digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Ok(context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn checksum_lines() {
        let hash = "a".repeat(64);
        let parsed = parse_checksums(&format!("{hash}  dawn.tar.gz\n{hash} *b.bin\n")).unwrap();
        assert_eq!(parsed[0], (hash.clone(), "dawn.tar.gz".to_owned()));
        assert_eq!(parsed[1].1, "b.bin");
        for bad in [
            format!("{hash} dawn.tar.gz"),
            format!("{hash}  ../etc/passwd"),
            format!("{hash}  dir/file"),
            "abc  dawn.tar.gz".to_owned(),
            format!("{}  x", "g".repeat(64)),
        ] {
            assert!(parse_checksums(&bad).is_err(), "{bad:?}");
        }
        assert!(parse_checksums("\n").is_err());
    }

    #[test]
    fn public_keys_are_32_bytes_of_base64() {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(public_key(&key).unwrap(), vec![7u8; 32]);
        assert!(public_key("not base64!").is_err());
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 31]);
        assert!(public_key(&short).is_err());
        assert!(public_key("@/nonexistent/key.pub").is_err());
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
