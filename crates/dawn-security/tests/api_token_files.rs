//! API token files on a real filesystem.

// Test helpers outside #[test] fns panic on setup failure by design.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dawn_security::{API_TOKEN_FILE, ApiToken, SecretFileError, TokenError};

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn created_0600_and_reloads_equal() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    let path = dir.join(API_TOKEN_FILE);

    let (token, created) = ApiToken::load_or_create(&path).unwrap();
    assert!(created);
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{}\n", token.as_str())
    );

    let (again, created) = ApiToken::load_or_create(&path).unwrap();
    assert!(!created);
    assert_eq!(again.as_str(), token.as_str());
    assert_eq!(ApiToken::load(&path).unwrap().as_str(), token.as_str());
    assert!(again.verify(token.as_str()));
}

#[test]
fn verify_accepts_only_the_token() {
    let root = tempfile::tempdir().unwrap();
    let (token, _) = ApiToken::load_or_create(&root.path().join(API_TOKEN_FILE)).unwrap();
    let t = token.as_str().to_owned();
    let other = ApiToken::generate().unwrap();

    assert!(token.verify(&t));
    assert!(!token.verify(other.as_str()));
    assert!(!token.verify(&t[..t.len() - 1]));
    assert!(!token.verify(&t[..5]));
    assert!(!token.verify(""));

    assert!(token.verify_bearer_header(&format!("Bearer {t}")));
    assert!(token.verify_bearer_header(&format!("bearer {t}")));
    assert!(token.verify_bearer_header(&format!("BeArEr {t}")));
    assert!(!token.verify_bearer_header(&t));
    assert!(!token.verify_bearer_header(&format!("Bearer {}", other.as_str())));
    assert!(!token.verify_bearer_header(&format!("Token {t}")));
    assert!(!token.verify_bearer_header("Bearer "));
    assert!(!token.verify_bearer_header(""));
}

#[test]
fn whitespace_around_token_in_file_is_ignored() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join(API_TOKEN_FILE);
    let token = ApiToken::rotate(&path).unwrap();
    fs::write(&path, format!("\n  {}\r\n\n", token.as_str())).unwrap();
    assert_eq!(ApiToken::load(&path).unwrap().as_str(), token.as_str());
}

#[test]
fn rotate_replaces_token_and_old_one_stops_verifying() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join(API_TOKEN_FILE);
    let (old, _) = ApiToken::load_or_create(&path).unwrap();

    let new = ApiToken::rotate(&path).unwrap();
    assert_ne!(new.as_str(), old.as_str());
    assert_eq!(mode_of(&path), 0o600);
    let reloaded = ApiToken::load(&path).unwrap();
    assert_eq!(reloaded.as_str(), new.as_str());
    assert!(reloaded.verify(new.as_str()));
    assert!(!reloaded.verify(old.as_str()));
    assert!(!reloaded.verify_bearer_header(&format!("Bearer {}", old.as_str())));
    assert_eq!(
        fs::read_dir(root.path()).unwrap().count(),
        1,
        "temp file left"
    );
}

#[test]
fn rotate_fixes_an_exposed_file() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join(API_TOKEN_FILE);
    ApiToken::load_or_create(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = ApiToken::load(&path).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::File(SecretFileError::InsecurePermissions { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
    let new = ApiToken::rotate(&path).unwrap();
    assert_eq!(mode_of(&path), 0o600);
    assert!(ApiToken::load(&path).unwrap().verify(new.as_str()));
}

#[test]
fn empty_or_garbled_file_is_an_error_and_untouched() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join(API_TOKEN_FILE);
    let (token, _) = ApiToken::load_or_create(&path).unwrap();
    let cut = &token.as_str()[..20];
    let cases: [(&[u8], &str); 6] = [
        (b"", "it is empty"),
        (b"  \n", "it is empty"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"hunter2\n", "does not start with \"dawn_\""),
        (cut.as_bytes(), "characters after \"dawn_\", expected 64"),
        (
            b"dawn_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "other than lowercase hex",
        ),
    ];
    for (contents, reason_part) in cases {
        fs::write(&path, contents).unwrap();
        for err in [
            ApiToken::load(&path).unwrap_err(),
            ApiToken::load_or_create(&path).unwrap_err(),
        ] {
            match &err {
                TokenError::Malformed { reason, .. } => {
                    assert!(
                        reason.contains(reason_part),
                        "{reason:?} vs {reason_part:?}"
                    );
                }
                other => panic!("expected Malformed, got {other:?}"),
            }
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("it was not modified"), "{msg}");
            assert!(
                !msg.contains("hunter2"),
                "error echoes file contents: {msg}"
            );
        }
        assert_eq!(fs::read(&path).unwrap(), contents, "file was modified");
    }
}

#[test]
fn debug_does_not_leak() {
    let root = tempfile::tempdir().unwrap();
    let (token, _) = ApiToken::load_or_create(&root.path().join(API_TOKEN_FILE)).unwrap();
    for rendered in [
        format!("{token:?}"),
        format!("{token:#?}"),
        format!("{:?}", Some(&token)),
    ] {
        assert!(!rendered.contains(token.as_str()), "{rendered}");
        assert!(!rendered.contains(&token.as_str()[5..15]), "{rendered}");
        assert!(rendered.contains("ApiToken(<redacted>)"), "{rendered}");
    }
}
