//! Backup, verify and restore of a data directory holding 100k records.
//!
//! Builds a data directory offline: 80,000 agent state entries (8 agents, ~120-byte JSON
//! values), 10,000 peers in the address book, 10,000 trust records, and an audit log of
//! 10,000 records. Then, for 3 rounds: `create_backup` (offline source: snapshot, copy,
//! checksum, sign, compress), `verify_archive` (extract, checksum, open the database, verify
//! the audit chain) and `restore_archive` into a fresh directory. Prints the sizes and the
//! median times.
//!
//! `cargo bench -p dawn-core --bench backup`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dawn_core::{
    DawnConfig,
    backup::{self, BackupSource, CreateOptions, NoProgress, RestoreOptions},
};
use dawn_security::{AuditEvent, AuditLog, AuditRecord, NodeIdentity};
use dawn_store::{AddressSource, Store, TrustEntry, TrustSource};

const AGENT_ENTRIES: usize = 80_000;
const PEERS: usize = 10_000;
const TRUST: usize = 10_000;
const AUDIT_RECORDS: usize = 10_000;
const ROUNDS: usize = 3;

fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    let built = Instant::now();
    NodeIdentity::create(&root.join("node.key")).unwrap();
    let store = Store::open(root.join("dawn.redb")).unwrap();
    for agent in 0..8 {
        let ns = store.agent_store(&format!("agent{agent}")).unwrap();
        ns.transaction(|txn| -> Result<(), dawn_store::StoreError> {
            for i in 0..AGENT_ENTRIES / 8 {
                let value = serde_json::json!({
                    "id": i,
                    "agent": agent,
                    "note": "the quick brown fox jumps over the lazy dog",
                    "tags": ["alpha", "beta"],
                });
                txn.put_json(&format!("item/{i:06}"), &value)?;
            }
            Ok(())
        })
        .unwrap();
    }
    let peer_ids: Vec<String> = (0..PEERS.max(TRUST))
        .map(|_| NodeIdentity::generate().unwrap().peer_id().to_string())
        .collect();
    for (i, peer) in peer_ids.iter().take(PEERS).enumerate() {
        store
            .record_peer_address(
                peer,
                &format!(
                    "/ip4/10.{}.{}.{}/tcp/8000",
                    i / 65536,
                    i / 256 % 256,
                    i % 256
                ),
                AddressSource::Identify,
                i as u64,
            )
            .unwrap();
    }
    let entries: Vec<TrustEntry> = peer_ids
        .iter()
        .take(TRUST)
        .map(|peer| TrustEntry {
            peer_id: peer.clone(),
            level: "verified".into(),
            note: Some("bench".into()),
            source: TrustSource::Operator,
            updated_ms: 1,
        })
        .collect();
    for chunk in entries.chunks(1000) {
        for entry in chunk {
            store.put_trust_entry(entry).unwrap();
        }
    }
    drop(store);
    let audit = AuditLog::open(&root.join("audit"), 64 * 1024 * 1024).unwrap();
    let records: Vec<AuditRecord> = (0..AUDIT_RECORDS)
        .map(|i| {
            AuditRecord::new(AuditEvent::Other("bench".into()))
                .peer(&peer_ids[i % peer_ids.len()])
                .agent("files")
                .tool("read")
                .reason("benchmark record")
        })
        .collect();
    for chunk in records.chunks(1000) {
        audit.append_batch(chunk).unwrap();
    }
    drop(audit);
    let records = AGENT_ENTRIES + PEERS + TRUST;
    eprintln!(
        "built a data directory with {records} database records and {AUDIT_RECORDS} audit records in {:.1?}",
        built.elapsed()
    );

    let config = DawnConfig::ephemeral(&root);
    let data_bytes = dir_size(&root);
    let (mut create, mut verify, mut restore) = (Vec::new(), Vec::new(), Vec::new());
    let mut archive_bytes = 0;
    for round in 0..ROUNDS {
        let out = work.path().join(format!("out{round}"));
        let t = Instant::now();
        let source = BackupSource::offline(&config, None).unwrap();
        let summary = backup::create_backup(
            &source,
            &CreateOptions {
                dir: Some(out),
                keep: None,
            },
            &NoProgress,
        )
        .unwrap();
        drop(source);
        create.push(t.elapsed());
        archive_bytes = summary.bytes;

        let t = Instant::now();
        backup::verify_archive(&summary.path, &NoProgress).unwrap();
        verify.push(t.elapsed());

        let target = work.path().join(format!("restored{round}"));
        let t = Instant::now();
        backup::restore_archive(
            &summary.path,
            &target,
            &RestoreOptions::default(),
            &NoProgress,
        )
        .unwrap();
        restore.push(t.elapsed());
    }
    println!("| records | data directory | archive | create | verify | restore |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {records} + {AUDIT_RECORDS} audit | {:.1} MiB | {:.1} MiB | {:.2} s | {:.2} s | {:.2} s |",
        data_bytes as f64 / 1048576.0,
        archive_bytes as f64 / 1048576.0,
        median(create).as_secs_f64(),
        median(verify).as_secs_f64(),
        median(restore).as_secs_f64(),
    );
}
