//! Atomic, durable, owner-only secret file writes on a real filesystem.

// Test helpers outside #[test] fns panic on setup failure by design.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dawn_security::{
    SecretFileError, create_secret_file, ensure_private_dir, read_secret_file, write_secret_file,
};

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn write_replaces_existing_file_and_leaves_no_temp_files() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("secrets");
    ensure_private_dir(&dir).unwrap();
    let path = dir.join("s.key");

    write_secret_file(&path, b"one").unwrap();
    let first_inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
    write_secret_file(&path, b"two, longer").unwrap();
    let second_inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());

    assert_eq!(read_secret_file(&path).unwrap().as_slice(), b"two, longer");
    // Replaced by rename (a new inode), not rewritten in place.
    assert_ne!(first_inode, second_inode);
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(entries(&dir), vec!["s.key".to_owned()]);
}

#[test]
fn write_replaces_a_file_with_loose_mode_by_a_0600_one() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("s");
    fs::write(&path, b"old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    write_secret_file(&path, b"new").unwrap();
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(read_secret_file(&path).unwrap().as_slice(), b"new");
}

#[test]
fn old_readers_keep_the_old_contents() {
    // A reader holding the old file open still sees whole old contents after
    // the replace: it is never truncated in place.
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("s");
    write_secret_file(&path, b"old contents").unwrap();
    let mut old = fs::File::open(&path).unwrap();
    write_secret_file(&path, b"new").unwrap();
    let mut seen = String::new();
    std::io::Read::read_to_string(&mut old, &mut seen).unwrap();
    assert_eq!(seen, "old contents");
}

#[test]
fn create_never_clobbers_and_leaves_no_temp_files() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("s");
    create_secret_file(&path, b"first").unwrap();
    let err = create_secret_file(&path, b"second").unwrap_err();
    assert!(
        matches!(err, SecretFileError::AlreadyExists { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(fs::read(&path).unwrap(), b"first");
    assert_eq!(entries(root.path()), vec!["s".to_owned()]);
}

#[test]
fn failed_write_names_the_path_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ro");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).unwrap();
    let path = dir.join("s");
    let result = write_secret_file(&path, b"x");
    // Root ignores directory permissions; only check the failure otherwise.
    if let Err(err) = result {
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(entries(&dir).is_empty());
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
}
