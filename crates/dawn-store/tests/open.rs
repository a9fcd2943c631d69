//! Opening database files: creation, reopening, schema versions, damaged and locked files.

// Helpers shared by the tests panic on setup failures, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use dawn_store::{AddressSource, SCHEMA_VERSION, Store, StoreError};
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("dawn.redb")
}

/// A closed database holding a few peers, returned with its bytes.
fn real_database(dir: &tempfile::TempDir) -> (PathBuf, Vec<u8>) {
    let path = db_path(dir);
    {
        let store = Store::open(&path).unwrap();
        for i in 0..50u64 {
            store
                .record_peer_address(
                    &format!("peer-{i}"),
                    &format!("/ip4/10.0.0.{i}/tcp/8000"),
                    AddressSource::Dialed,
                    1_000 + i,
                )
                .unwrap();
        }
    }
    let bytes = fs::read(&path).unwrap();
    (path, bytes)
}

/// Writes `bytes` as a database file, opens it, and checks that the open fails as corrupt,
/// names the file, and leaves the bytes unchanged.
fn assert_corrupt_and_untouched(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
    let error = Store::open(path).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { path: p, .. } if p == path),
        "expected Corrupt naming {}, got {error:?}",
        path.display()
    );
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    assert_eq!(
        fs::read(path).unwrap(),
        bytes,
        "the damaged file was modified"
    );
}

#[test]
fn open_creates_the_file_at_the_current_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    assert!(!path.exists());

    let store = Store::open(&path).unwrap();

    assert!(path.is_file());
    assert_eq!(store.path(), path);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[cfg(unix)]
#[test]
fn new_database_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let _store = Store::open(&path).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn reopening_keeps_the_data_and_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let store = Store::open(&path).unwrap();
        store
            .record_peer_address("peer-a", "/ip4/1.2.3.4/tcp/1", AddressSource::Config, 10)
            .unwrap();
        store.touch_peer("peer-b", 20).unwrap();
    }

    let store = Store::open(&path).unwrap();

    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let peers = store.peers().unwrap();
    let ids: Vec<&str> = peers.iter().map(|peer| peer.peer_id.as_str()).collect();
    assert_eq!(ids, ["peer-b", "peer-a"]);
    assert_eq!(peers[1].addresses[0].addr, "/ip4/1.2.3.4/tcp/1");
}

#[test]
fn missing_parent_directory_is_an_io_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("dawn.redb");
    let error = Store::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    assert_eq!(error.path(), path);
    assert!(error.to_string().contains("no-such-dir"), "{error}");
}

#[test]
fn newer_schema_is_refused_with_path_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(Store::open(&path).unwrap());
    {
        let database = redb::Database::open(&path).unwrap();
        let txn = database.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", b"7".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let bytes_before = fs::read(&path).unwrap();

    let error = Store::open(&path).unwrap_err();

    match &error {
        StoreError::NewerSchema {
            path: error_path,
            found,
            supported,
        } => {
            assert_eq!(error_path, &path);
            assert_eq!(*found, 7);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        format!(
            "database {} was written by a newer Dawn (schema 7); this build supports schema {SCHEMA_VERSION} at most",
            path.display()
        )
    );
    // Refusing touched no data: the version is still the newer one.
    let database = redb::Database::open(&path).unwrap();
    let txn = database.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    assert_eq!(
        redb::ReadableTable::get(&meta, "schema_version")
            .unwrap()
            .unwrap()
            .value(),
        b"7"
    );
    assert!(!bytes_before.is_empty());
}

#[test]
fn redb_file_of_another_program_is_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let database = redb::Database::create(&path).unwrap();
        let txn = database.begin_write().unwrap();
        txn.open_table(TableDefinition::<u64, u64>::new("someone_elses"))
            .unwrap()
            .insert(1, 2)
            .unwrap();
        txn.commit().unwrap();
    }

    let error = Store::open(&path).unwrap_err();

    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("someone_elses"), "{error}");
    let database = redb::Database::open(&path).unwrap();
    let txn = database.begin_read().unwrap();
    assert!(txn.open_table(META).is_err(), "no meta table was added");
    let theirs = txn
        .open_table(TableDefinition::<u64, u64>::new("someone_elses"))
        .unwrap();
    assert_eq!(theirs.len().unwrap(), 1);
}

#[test]
fn random_bytes_are_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut state: u32 = 0x9E37_79B9;
    let bytes: Vec<u8> = (0..16 * 1024)
        .map(|_| {
            // xorshift32: deterministic noise.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    assert_corrupt_and_untouched(&db_path(&dir), &bytes);
}

#[test]
fn a_few_bytes_are_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    assert_corrupt_and_untouched(&db_path(&dir), b"hi\n");
}

#[test]
fn truncated_databases_are_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = real_database(&dir);
    for length in [100, 4096, bytes.len() / 2, bytes.len() - 4096] {
        assert_corrupt_and_untouched(&path, &bytes[..length]);
    }
}

#[test]
fn flipped_header_bytes_are_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = real_database(&dir);
    // The redb header is 320 bytes: magic number, god byte and region geometry (0..64), then
    // two 128-byte commit slots.
    for range in [0..320, 0..9, 10..64, 64..192, 192..320, 64..320] {
        let mut damaged = bytes.clone();
        for byte in &mut damaged[range.clone()] {
            *byte ^= 0xFF;
        }
        assert_corrupt_and_untouched(&path, &damaged);
    }
}

#[test]
fn damaged_data_page_is_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = real_database(&dir);
    // Flip one bit in each page in turn. A page no committed tree reaches (free space) may be
    // damaged harmlessly; every page that matters must be caught by the checksums.
    let page_size = 4096;
    let mut caught = 0;
    for page in 1..bytes.len() / page_size {
        let mut damaged = bytes.clone();
        damaged[page * page_size + 100] ^= 0x01;
        fs::write(&path, &damaged).unwrap();
        match Store::open(&path) {
            Err(StoreError::Corrupt { .. }) => {
                assert_eq!(
                    fs::read(&path).unwrap(),
                    damaged,
                    "page {page} was modified"
                );
                caught += 1;
            }
            Ok(store) => {
                // The damage was in free space: all the data is still there.
                assert_eq!(store.peers().unwrap().len(), 50, "page {page}");
            }
            Err(other) => panic!("page {page}: unexpected error {other:?}"),
        }
    }
    assert!(caught > 0, "no damaged page was detected");
}

#[test]
fn copy_of_an_open_database_recovers_like_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let crash_image = dir.path().join("crashed.redb");
    let store = Store::open(&path).unwrap();
    store
        .record_peer_address("peer-a", "/ip4/1.2.3.4/tcp/1", AddressSource::Dialed, 10)
        .unwrap();
    // While the store is open, the file says "not shut down cleanly": a copy of it is what a
    // crash leaves behind.
    fs::copy(&path, &crash_image).unwrap();
    drop(store);

    let recovered = Store::open(&crash_image).unwrap();

    assert_eq!(recovered.schema_version().unwrap(), SCHEMA_VERSION);
    let peer = recovered.peer("peer-a").unwrap().unwrap();
    assert_eq!(peer.addresses[0].addr, "/ip4/1.2.3.4/tcp/1");
}

#[test]
fn second_open_of_the_same_file_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let first = Store::open(&path).unwrap();

    let error = Store::open(&path).unwrap_err();

    assert!(
        matches!(&error, StoreError::Locked { path: p } if *p == path),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("another dawn-node may be running"),
        "{message}"
    );

    // Once the first handle (and all its clones) are gone, the file opens again.
    let clone = first.clone();
    drop(first);
    assert!(matches!(Store::open(&path), Err(StoreError::Locked { .. })));
    drop(clone);
    Store::open(&path).unwrap();
}

#[test]
fn check_writes_and_reads_back_repeatedly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(db_path(&dir)).unwrap();
    for _ in 0..3 {
        store.check().unwrap();
    }
    // The probe does not disturb the data or the schema version.
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(store.peers().unwrap().is_empty());
}

#[test]
fn store_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Store>();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(db_path(&dir)).unwrap();
    let handles: Vec<_> = (0..4u64)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..10u64 {
                    store
                        .record_peer_address(
                            &format!("peer-{thread}"),
                            &format!("/ip4/10.0.{thread}.{i}/tcp/1"),
                            AddressSource::Kademlia,
                            i,
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let peers = store.peers().unwrap();
    assert_eq!(peers.len(), 4);
    assert!(peers.iter().all(|peer| peer.addresses.len() == 10));
}
