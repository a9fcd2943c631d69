//! Agent state and backups through the embedding API: agents keep state across restarts; a
//! running node backs itself up under writes; archives verify and restore onto a fresh data
//! directory with the same identity and state; damaged, tampered, foreign-signed and newer
//! archives are refused with errors naming the file, and a refused or failed restore leaves the
//! data directory exactly as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    io::Read as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use dawn_core::{
    Agent, AgentHandle, CallContext, CallError, DawnConfig, ErrorKind, NodeBuilder,
    backup::{
        self, BackupError, BackupSource, CreateOptions, NoProgress, RestoreOptions,
        restore_archive, verify_archive,
    },
    mcp::{CallToolResult, ContentBlock, JsonObject, Tool},
};
use dawn_security::{NodeIdentity, Passphrase};
use dawn_store::{Store, TrustEntry, TrustSource};
use serde_json::{Value, json};

/// An agent that counts calls in its persistent state.
struct Counter {
    handle: std::sync::Mutex<Option<AgentHandle>>,
}

impl Counter {
    fn new() -> Self {
        Counter {
            handle: std::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl Agent for Counter {
    fn id(&self) -> &str {
        "counter"
    }
    fn description(&self) -> String {
        "counts calls durably".into()
    }
    fn tools(&self) -> Vec<Tool> {
        vec![Tool::new(
            "incr",
            "adds one to the counter and returns it",
            json!({"type": "object"}).as_object().cloned().unwrap(),
        )]
    }
    async fn call_tool(
        &self,
        _ctx: &CallContext,
        _name: &str,
        _args: JsonObject,
    ) -> Result<CallToolResult, CallError> {
        let store = self
            .handle
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .store()
            .clone();
        let value = tokio::task::spawn_blocking(move || {
            store.transaction(|txn| -> Result<u64, dawn_store::StoreError> {
                let next = txn.get_json::<u64>("count")?.unwrap_or(0) + 1;
                txn.put_json("count", &next)?;
                Ok(next)
            })
        })
        .await
        .unwrap()
        .map_err(|e| CallError::new(ErrorKind::Internal, e.to_string()))?;
        Ok(CallToolResult::success(vec![ContentBlock::text(
            value.to_string(),
        )]))
    }
    fn attach(&self, handle: AgentHandle) {
        *self.handle.lock().unwrap() = Some(handle);
    }
}

fn config(root: &Path) -> DawnConfig {
    DawnConfig::ephemeral(root)
}

async fn incr(node: &dawn_core::Node) -> u64 {
    let result = node
        .call_tool(&"counter".parse().unwrap(), "incr", json!({}))
        .await
        .unwrap();
    let text = serde_json::to_value(&result).unwrap()["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    text.parse().unwrap()
}

/// Every file under `dir` with its bytes (the state of a data directory, for comparisons).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Waits until the audit log under `root` has an `event` record.
async fn wait_for_audit(root: &Path, event: &str) {
    let log = root.join("audit").join("audit.jsonl");
    let needle = format!("\"event\":\"{event}\"");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).is_ok_and(|text| text.contains(&needle)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {event} record in {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Names in `dir` that a restore might have left behind.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.contains("restore"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keeps_its_state_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let node = NodeBuilder::new(config(&root))
        .agent(Counter::new())
        .start()
        .await
        .unwrap();
    assert_eq!(incr(&node).await, 1);
    assert_eq!(incr(&node).await, 2);
    assert_eq!(incr(&node).await, 3);
    node.shutdown().await;
    drop(node);

    let node = NodeBuilder::new(config(&root))
        .agent(Counter::new())
        .start()
        .await
        .unwrap();
    assert_eq!(incr(&node).await, 4);
    // The embedding program reaches the same namespace; other agents do not.
    let store = node.agent_store("counter").unwrap();
    assert_eq!(store.get_json::<u64>("count").unwrap(), Some(4));
    assert_eq!(
        node.agent_store("other").unwrap().get("count").unwrap(),
        None
    );
    assert!(node.agent_store("Not/Valid").is_err());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_node_backs_up_under_writes_and_restores_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let node = NodeBuilder::new(config(&root))
        .agent(Counter::new())
        .start()
        .await
        .unwrap();
    let peer_id = node.peer_id();
    for _ in 0..5 {
        incr(&node).await;
    }
    let other = NodeIdentity::generate().unwrap().peer_id().to_string();
    node.store()
        .put_trust_entry(&TrustEntry {
            peer_id: other.clone(),
            level: "trusted".into(),
            note: Some("ops".into()),
            source: TrustSource::Operator,
            updated_ms: 1,
        })
        .unwrap();

    // A writer keeps writing agent state while the backup runs.
    let writes = node.agent_store("writer").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                writes.put_json(&format!("k{n:06}"), &n).unwrap();
                acknowledged.store(n, Ordering::Release);
            }
            n
        })
    };
    // Wait for the writer to get going (poll, with a deadline).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::Acquire) < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer made no progress"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before_backup = acknowledged.load(Ordering::Acquire);
    let summary = node.backup_now(CreateOptions::default()).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let total_written = writer.join().unwrap();
    assert!(total_written >= before_backup);

    assert!(
        summary.path.starts_with(root.join("backups")),
        "{}",
        summary.path.display()
    );
    assert_eq!(summary.manifest.node_id, peer_id.to_string());
    let status = node.backup_status();
    assert_eq!(status.last_success.as_ref().unwrap().bytes, summary.bytes);
    assert!(!status.running);
    assert!(!status.last_attempt_failed());

    let report = verify_archive(&summary.path, &NoProgress).unwrap();
    assert_eq!(report.manifest.node_id, peer_id.to_string());
    assert_eq!(report.manifest.tables["trust"], 1);

    // Restore onto a fresh data directory while the original keeps running.
    let restored_root = dir.path().join("restored");
    let restored = restore_archive(
        &summary.path,
        &restored_root,
        &RestoreOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(restored.previous, None);
    node.shutdown().await;
    drop(node);

    let node = NodeBuilder::new(config(&restored_root))
        .agent(Counter::new())
        .start()
        .await
        .unwrap();
    assert_eq!(node.peer_id(), peer_id, "same identity after restore");
    assert_eq!(incr(&node).await, 6, "agent state restored");
    let trust = node.store().trust_entry(&other).unwrap().unwrap();
    assert_eq!(
        (trust.level.as_str(), trust.note.as_deref()),
        ("trusted", Some("ops"))
    );
    let writes = node.agent_store("writer").unwrap();
    for n in 1..=before_backup {
        assert_eq!(
            writes.get_json::<u64>(&format!("k{n:06}")).unwrap(),
            Some(n),
            "write {n} was acknowledged before the backup started"
        );
    }
    // The snapshot is consistent: the writes it holds are a prefix of the sequence.
    let keys = writes.keys("").unwrap();
    assert_eq!(keys.last().cloned(), Some(format!("k{:06}", keys.len())));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backup_at_a_time_and_bad_directories_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeBuilder::new(config(&dir.path().join("data")))
        .start()
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        node.backup_now(CreateOptions::default()),
        node.backup_now(CreateOptions::default())
    );
    let busy = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(BackupError::Busy)))
        .count();
    let ok = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok + busy, 2, "{a:?} {b:?}");
    assert!(ok >= 1);

    // A file where the directory should be: a clear error, recorded in the status.
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, b"x").unwrap();
    let error = node
        .backup_now(CreateOptions {
            dir: Some(blocked.clone()),
            keep: None,
        })
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not-a-dir"), "{error}");
    let status = node.backup_status();
    assert!(status.last_attempt_failed());
    assert!(
        status
            .last_failure
            .unwrap()
            .error
            .unwrap()
            .contains("not-a-dir")
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_run_and_keep_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("data"));
    cfg.backup.interval = dawn_core::config::HumanDuration::secs(1);
    cfg.backup.keep = 2;
    let backups = dir.path().join("elsewhere");
    cfg.backup.dir = Some(backups.clone());
    let node = NodeBuilder::new(cfg).start().await.unwrap();
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::write(backups.join("unrelated.tar.zst"), b"not mine").unwrap();

    // Wait (with a deadline) until at least three scheduled backups succeeded.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "scheduled backups did not run: {:?}",
            node.backup_status()
        );
        if let Some(run) = node.backup_status().last_success {
            seen.insert(run.path.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = node.backup_status();
    assert_eq!(status.interval_secs, Some(1));
    assert_eq!(status.dir, backups);
    assert!(status.next_due_ms.is_some());
    assert!(!status.is_overdue(status.last_success.as_ref().unwrap().finished_ms, 0));
    node.shutdown().await;

    let listed = backup::list_backups(&backups).unwrap();
    let mine: Vec<_> = listed.iter().filter(|l| l.manifest.is_ok()).collect();
    assert_eq!(mine.len(), 2, "keep = 2: {listed:?}");
    assert!(
        backups.join("unrelated.tar.zst").exists(),
        "files that are not this node's archives are never deleted"
    );
}

/// A scheduled backup still writing when the node shuts down holds the node's database: shutdown
/// waits for it (it used to give up after 5 s, release the data directory and return with the
/// database still open, so a node restarted in the same process failed with `Store(Locked)`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_running_scheduled_backup_and_closes_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut cfg = config(&root);
    cfg.backup.interval = dawn_core::config::HumanDuration::secs(1);
    cfg.backup.dir = Some(dir.path().join("backups"));
    let node = NodeBuilder::new(cfg.clone()).start().await.unwrap();
    // A rotated audit file that is a FIFO: the backup blocks opening it until a writer does.
    let fifo = root.join("audit").join("audit.000001.jsonl");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !node.backup_status().running {
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup started: {:?}",
            node.backup_status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stopping = node.clone();
    let mut shutdown = tokio::spawn(async move { stopping.shutdown().await });
    // Longer than shutdown waits for the other background tasks (5 s).
    let returned_early = tokio::time::timeout(Duration::from_secs(8), &mut shutdown)
        .await
        .is_ok();
    // Let the backup finish: open the other end (the backup's open returns), unlink the FIFO
    // (a retry of the audit copy does not find it again), close it (the backup reads EOF).
    tokio::task::spawn_blocking(move || {
        let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        std::fs::remove_file(&fifo).unwrap();
        drop(writer);
    })
    .await
    .unwrap();
    assert!(
        !returned_early,
        "shutdown returned while a scheduled backup still held the database"
    );
    shutdown.await.unwrap();
    assert!(!node.backup_status().running);
    drop(node);

    // Nothing of the old node holds the database: the node starts again at once.
    let again = NodeBuilder::new(cfg).start().await.unwrap();
    again.shutdown().await;
}

/// Builds a node's data directory offline (no running node) with some state; returns the
/// configuration pointing at it.
fn offline_data_dir(root: &Path, passphrase: Option<&Passphrase>) -> DawnConfig {
    std::fs::create_dir_all(root).unwrap();
    let key = root.join("node.key");
    match passphrase {
        Some(p) => {
            NodeIdentity::create_encrypted_with_kdf(&key, p, dawn_security::KdfParams::MINIMUM)
                .unwrap();
        }
        None => {
            NodeIdentity::create(&key).unwrap();
        }
    }
    let store = Store::open(root.join("dawn.redb")).unwrap();
    store
        .agent_store("notes")
        .unwrap()
        .put_json("hello", &"world")
        .unwrap();
    config(root)
}

#[test]
fn offline_backup_keeps_an_encrypted_key_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let passphrase = Passphrase::new("correct horse battery".into()).unwrap();
    let cfg = offline_data_dir(&root, Some(&passphrase));
    let key_bytes = std::fs::read(root.join("node.key")).unwrap();

    // Without the passphrase the manifest cannot be signed: a clear error.
    if std::env::var_os(dawn_security::PASSPHRASE_ENV).is_none() {
        let error = BackupSource::offline(&cfg, None).unwrap_err();
        assert!(error.to_string().contains("DAWN_PASSPHRASE"), "{error}");
    }

    let source = BackupSource::offline(&cfg, Some(passphrase.clone())).unwrap();
    let summary = backup::create_backup(&source, &CreateOptions::default(), &NoProgress).unwrap();
    drop(source);
    assert!(summary.manifest.key_encrypted);
    let report = verify_archive(&summary.path, &NoProgress).unwrap();
    assert!(report.checks.iter().any(|c| c.contains("encrypted")));

    let target = dir.path().join("restored");
    restore_archive(
        &summary.path,
        &target,
        &RestoreOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        std::fs::read(target.join("node.key")).unwrap(),
        key_bytes,
        "the key file is restored byte for byte, still encrypted"
    );
    let identity = NodeIdentity::load_with(&target.join("node.key"), Some(&passphrase)).unwrap();
    assert_eq!(identity.peer_id().to_string(), summary.manifest.node_id);
    let store = Store::open(target.join("dawn.redb")).unwrap();
    assert_eq!(
        store
            .agent_store("notes")
            .unwrap()
            .get_json::<String>("hello")
            .unwrap()
            .as_deref(),
        Some("world")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_backup_and_restore_are_refused_while_a_node_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let cfg = config(&root);
    let node = NodeBuilder::new(cfg.clone()).start().await.unwrap();
    let summary = node.backup_now(CreateOptions::default()).await.unwrap();

    let error = BackupSource::offline(&cfg, None).unwrap_err();
    assert!(
        error.to_string().contains("in use by another dawn-node"),
        "{error}"
    );

    // The node audits the backup in the background: let that write land first.
    wait_for_audit(&root, "backup_created").await;
    let before = tree(&root);
    let error = restore_archive(
        &summary.path,
        &root,
        &RestoreOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(error, BackupError::NodeRunning { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("stop it first"), "{error}");
    assert_eq!(tree(&root), before, "nothing changed");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    node.shutdown().await;
}

// --- tampering: read an archive's entries, change them, write them back ---

fn read_entries(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(zstd::Decoder::new(file).unwrap());
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (path, bytes)
        })
        .collect()
}

fn write_entries(archive: &Path, entries: &[(String, Vec<u8>)]) {
    let file = std::fs::File::create(archive).unwrap();
    let mut tar = tar::Builder::new(zstd::Encoder::new(file, 3).unwrap());
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        if path.contains("..") {
            // `append_data` refuses `..`; write the raw name like a hostile tool would.
            header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            tar.append(&header, bytes.as_slice()).unwrap();
        } else {
            tar.append_data(&mut header, path, bytes.as_slice())
                .unwrap();
        }
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn manifest_of(entries: &[(String, Vec<u8>)]) -> Value {
    serde_json::from_slice(&entries[0].1).unwrap()
}

/// Replaces the manifest and signs it with `identity` (or keeps the old signature).
fn set_manifest(
    entries: &mut [(String, Vec<u8>)],
    manifest: &Value,
    identity: Option<&NodeIdentity>,
) {
    let bytes = serde_json::to_vec_pretty(manifest).unwrap();
    if let Some(identity) = identity {
        entries[1].1 = hex::encode(identity.sign(&bytes)).into_bytes();
    }
    entries[0].1 = bytes;
}

/// A stopped node's data directory with a backup of it; returns (root, archive, identity).
async fn data_dir_with_backup(dir: &Path) -> (PathBuf, PathBuf, NodeIdentity) {
    let root = dir.join("data");
    let node = NodeBuilder::new(config(&root))
        .agent(Counter::new())
        .start()
        .await
        .unwrap();
    incr(&node).await;
    let summary = node.backup_now(CreateOptions::default()).await.unwrap();
    node.shutdown().await;
    drop(node);
    let identity = NodeIdentity::load(&root.join("node.key")).unwrap();
    (root, summary.path, identity)
}

/// Restoring `archive` over `root` must fail with an error containing `needle`, leaving `root`
/// byte for byte as it was and no staging directory behind.
fn assert_restore_refused(archive: &Path, root: &Path, needle: &str) -> BackupError {
    let before = tree(root);
    let error =
        restore_archive(archive, root, &RestoreOptions::default(), &NoProgress).unwrap_err();
    assert!(
        error.to_string().contains(needle),
        "expected {needle:?} in: {error}"
    );
    assert_eq!(
        tree(root),
        before,
        "the data directory changed after: {error}"
    );
    let parent = root.parent().unwrap();
    assert!(leftovers(parent).is_empty(), "{:?}", leftovers(parent));
    // verify reports the same problem.
    let verify = verify_archive(archive, &NoProgress).unwrap_err();
    assert!(
        verify.to_string().contains(needle),
        "expected {needle:?} in: {verify}"
    );
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_tampered_archives_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (root, archive, _) = data_dir_with_backup(dir.path()).await;
    let original = read_entries(&archive);
    assert_eq!(original[0].0, "manifest.json");
    assert_eq!(original[1].0, "manifest.sig");
    let bad = dir.path().join("bad.tar.zst");

    // One byte of the database changed (same size): its checksum names it.
    let mut entries = original.clone();
    let db = entries.iter_mut().find(|(p, _)| p == "dawn.redb").unwrap();
    let middle = db.1.len() / 2;
    db.1[middle] ^= 0x40;
    write_entries(&bad, &entries);
    let error = assert_restore_refused(&bad, &root, "dawn.redb");
    assert!(error.to_string().contains("SHA-256"), "{error}");

    // The key file truncated.
    let mut entries = original.clone();
    let key = entries.iter_mut().find(|(p, _)| p == "node.key").unwrap();
    key.1.truncate(key.1.len() / 2);
    write_entries(&bad, &entries);
    assert_restore_refused(&bad, &root, "node.key");

    // A file missing from the end (an archive cut short).
    let mut entries = original.clone();
    let last = entries.pop().unwrap();
    write_entries(&bad, &entries);
    assert_restore_refused(&bad, &root, &last.0);

    // The compressed file itself truncated, and bit-flipped (which entry the damage shows in
    // depends on the compression, so only the archive is named for sure).
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() * 2 / 3]).unwrap();
    assert_restore_refused(&bad, &root, "bad.tar.zst");
    for at in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 10] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x01;
        std::fs::write(&bad, &flipped).unwrap();
        assert_restore_refused(&bad, &root, "bad.tar.zst");
    }

    // Not an archive at all.
    std::fs::write(&bad, b"hello").unwrap();
    assert_restore_refused(&bad, &root, "not a Dawn backup");

    // The manifest edited without re-signing.
    let mut entries = original.clone();
    let mut manifest = manifest_of(&entries);
    manifest["tables"]["agent_state"] = json!(999);
    set_manifest(&mut entries, &manifest, None);
    write_entries(&bad, &entries);
    assert_restore_refused(&bad, &root, "bad signature");

    // Signed by another key, still naming this node.
    let stranger = NodeIdentity::generate().unwrap();
    let mut entries = original.clone();
    let manifest = manifest_of(&entries);
    set_manifest(&mut entries, &manifest, Some(&stranger));
    write_entries(&bad, &entries);
    assert_restore_refused(&bad, &root, "bad signature");

    // Signed by another key that also claims to be the node: the key file gives it away.
    let mut entries = original.clone();
    let mut manifest = manifest_of(&entries);
    manifest["node_id"] = json!(stranger.peer_id().to_string());
    manifest["public_key"] = json!(hex::encode(stranger.public_key().encode_protobuf()));
    set_manifest(&mut entries, &manifest, Some(&stranger));
    write_entries(&bad, &entries);
    assert_restore_refused(&bad, &root, "node.key");

    // A file the manifest does not list, and a path that climbs out.
    let mut entries = original.clone();
    entries.push(("extra.txt".into(), b"surprise".to_vec()));
    write_entries(&bad, &entries);
    assert_restore_refused(&bad, &root, "not listed in the manifest");
    let mut entries = original.clone();
    entries.insert(2, ("../escaped".into(), b"outside".to_vec()));
    write_entries(&bad, &entries);
    assert_restore_refused(&bad, &root, "not a plain relative path");
    assert!(!dir.path().join("escaped").exists());

    // The untouched archive still restores over the same directory.
    let report = restore_archive(&archive, &root, &RestoreOptions::default(), &NoProgress).unwrap();
    assert!(
        report.previous.unwrap().exists(),
        "the previous data is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_from_a_newer_dawn_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (root, archive, identity) = data_dir_with_backup(dir.path()).await;
    let original = read_entries(&archive);
    let bad = dir.path().join("newer.tar.zst");

    for (field, value, needle) in [
        ("dawn_version", json!("99.0.0"), "Dawn version 99.0.0"),
        ("format_version", json!(2), "backup format 2"),
        (
            "schema_version",
            json!(dawn_store::SCHEMA_VERSION + 1),
            "database schema",
        ),
    ] {
        let mut entries = original.clone();
        let mut manifest = manifest_of(&entries);
        manifest[field] = value;
        // Properly signed by the node itself: only the version is the problem.
        set_manifest(&mut entries, &manifest, Some(&identity));
        write_entries(&bad, &entries);
        let error = assert_restore_refused(&bad, &root, needle);
        assert!(
            matches!(error, BackupError::NewerVersion { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("upgrade Dawn"), "{error}");
        // Listing still shows what it is.
        let listed = backup::read_manifest(&bad).unwrap_err();
        assert!(listed.to_string().contains("newer Dawn"), "{listed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_failing_at_the_swap_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let (root, archive, _) = data_dir_with_backup(dir.path()).await;
    // Something the restore must carry over or put back.
    std::fs::write(root.join("backups").join("keep-me.txt"), b"mine").unwrap();
    let before = tree(&root);

    let error = restore_archive(
        &archive,
        &root,
        &RestoreOptions {
            fail_before_swap: true,
        },
        &NoProgress,
    )
    .unwrap_err();

    assert!(matches!(error, BackupError::RolledBack { .. }), "{error:?}");
    assert!(error.to_string().contains("rolled back"), "{error}");
    assert_eq!(tree(&root), before, "the original data is back as it was");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );

    // Without the failure the same restore works and carries the backups over.
    let report = restore_archive(&archive, &root, &RestoreOptions::default(), &NoProgress).unwrap();
    assert_eq!(
        std::fs::read(root.join("backups").join("keep-me.txt")).unwrap(),
        b"mine"
    );
    assert_eq!(
        std::fs::read(root.join("api.token")).unwrap(),
        before[Path::new("api.token")],
        "the API token is carried over"
    );
    let previous = report.previous.unwrap();
    assert_eq!(
        std::fs::read(previous.join("dawn.redb")).unwrap(),
        before[Path::new("dawn.redb")],
        "the previous database is kept aside unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_backup_api_refuse_bad_input_and_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeBuilder::new(config(&dir.path().join("data")))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", node.api_addr().unwrap());
    let token = std::fs::read_to_string(node.data_dir().api_token()).unwrap();
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, body: Option<&str>| {
        let mut request = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token.trim());
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let value: Value = response.json().await.unwrap();
            (status, value)
        }
    };
    use reqwest::Method;

    // Agent state: good round trip, keys with slashes, non-JSON values shown as hex.
    let (status, answer) = send(
        Method::PUT,
        "/api/v1/agents/notes/state/a/b",
        Some(r#"{"x":1}"#),
    )
    .await;
    assert_eq!((status, &answer["stored"]), (200, &json!(true)), "{answer}");
    let (_, answer) = send(Method::GET, "/api/v1/agents/notes/state/a/b", None).await;
    assert_eq!(answer["value"], json!({"x": 1}));
    node.agent_store("notes")
        .unwrap()
        .put("raw", &[0xff, 0x00])
        .unwrap();
    let (_, answer) = send(Method::GET, "/api/v1/agents/notes/state?prefix=r", None).await;
    assert_eq!(
        answer["entries"],
        json!([{"key": "raw", "value_hex": "ff00"}])
    );

    // Bad input: clear errors with their kinds.
    for (method, path, body, expected, needle) in [
        (
            Method::PUT,
            "/api/v1/agents/notes/state/k",
            Some("not json"),
            400,
            "JSON",
        ),
        (
            Method::PUT,
            "/api/v1/agents/Bad%20Id/state/k",
            Some("1"),
            400,
            "not a valid agent id",
        ),
        (
            Method::GET,
            "/api/v1/agents/notes/state/missing",
            None,
            404,
            "no state",
        ),
        (
            Method::POST,
            "/api/v1/backup",
            Some("{\"dir\": \"relative\"}"),
            400,
            "absolute",
        ),
        (
            Method::POST,
            "/api/v1/backup",
            Some("{\"keep\": -1}"),
            400,
            "invalid backup request",
        ),
        (
            Method::POST,
            "/api/v1/backup",
            Some("{\"bogus\": 1}"),
            400,
            "unknown field",
        ),
    ] {
        let (status, answer) = send(method.clone(), path, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{method} {path}: {answer}");
    }
    let long_key = "k".repeat(dawn_store::MAX_AGENT_STATE_KEY_BYTES + 1);
    let (status, answer) = send(
        Method::PUT,
        &format!("/api/v1/agents/notes/state/{long_key}"),
        Some("1"),
    )
    .await;
    assert_eq!(status, 400, "{answer}");

    // The node keeps serving: an empty body means "defaults".
    let (status, answer) = send(Method::POST, "/api/v1/backup", None).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["path"].as_str().unwrap().ends_with(".tar.zst"));
    let (status, answer) = send(Method::GET, "/api/v1/backup", None).await;
    assert_eq!(status, 200);
    assert_eq!(answer["last_success"]["attempt"], 1, "{answer}");
    let (status, answer) = send(Method::DELETE, "/api/v1/agents/notes/state/a/b", None).await;
    assert_eq!((status, &answer["deleted"]), (200, &json!(true)));
    node.shutdown().await;
}
