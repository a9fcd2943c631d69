//! Measures the costs quoted in the docs: unlocking an encrypted node key
//! (argon2id) and appending to the audit log (with and without fsync).
//!
//! ```text
//! cargo run -p dawn-security --release --example measure_security_costs [DIR]
//! ```
//!
//! `DIR` (default: a temp dir) should be on the disk the node will use, since
//! fsync cost depends on it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dawn_security::audit::{AuditLog, AuditLogOptions, FsyncPolicy};
use dawn_security::{AuditEvent, AuditRecord, KdfParams, NODE_KEY_FILE, NodeIdentity, Passphrase};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let root = std::env::args()
        .nth(1)
        .map_or_else(|| temp.path().to_path_buf(), PathBuf::from);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("profile: {profile}; directory: {}", root.display());

    let passphrase = Passphrase::new("measure the unlock time".to_owned())?;
    for (name, kdf) in [
        ("recommended", KdfParams::RECOMMENDED),
        ("OWASP minimum", KdfParams::MINIMUM),
    ] {
        let path = root.join(format!("{}-{}", name.replace(' ', "-"), NODE_KEY_FILE));
        let _ = std::fs::remove_file(&path);
        NodeIdentity::create_encrypted_with_kdf(&path, &passphrase, kdf)?;
        let runs = 5;
        let start = Instant::now();
        for _ in 0..runs {
            NodeIdentity::load_with(&path, Some(&passphrase))?;
        }
        println!(
            "unlock, {name} (m={} KiB, t={}, p={}): {:.0} ms",
            kdf.memory_kib,
            kdf.iterations,
            kdf.parallelism,
            per(start.elapsed(), runs).as_secs_f64() * 1000.0
        );
    }

    let record = AuditRecord::new(AuditEvent::CallDenied)
        .peer("12D3KooWExamplePeerIdForMeasuringAuditAppendCost")
        .agent("files")
        .tool("delete")
        .reason("level unknown is below the minimum trusted for call_tool");
    for fsync in [FsyncPolicy::EveryWrite, FsyncPolicy::Never] {
        let dir = root.join(format!("audit-{fsync:?}"));
        let _ = std::fs::remove_dir_all(&dir);
        let log = AuditLog::open_with(
            &dir,
            AuditLogOptions {
                fsync,
                ..AuditLogOptions::default()
            },
        )?;
        let runs = 2000;
        let start = Instant::now();
        for _ in 0..runs {
            log.append(&record)?;
        }
        println!(
            "audit append, one record per call, {fsync:?}: {:.1} us",
            per(start.elapsed(), runs).as_secs_f64() * 1e6
        );
        let batch = vec![record.clone(); 100];
        let start = Instant::now();
        for _ in 0..20 {
            log.append_batch(&batch)?;
        }
        println!(
            "audit append, batches of 100, {fsync:?}: {:.1} us per record",
            per(start.elapsed(), 2000).as_secs_f64() * 1e6
        );
    }
    Ok(())
}

fn per(total: Duration, runs: u32) -> Duration {
    total / runs
}
