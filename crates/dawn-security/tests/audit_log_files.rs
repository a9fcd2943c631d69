//! The audit log on real files: appending, the hash chain and what `verify`
//! catches, rotation, reopening, damaged tails, tail, follow and the
//! non-blocking sink.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dawn_security::audit::{
    ACTIVE_FILE, AuditDecision, AuditError, AuditEvent, AuditFilter, AuditFollower, AuditLog,
    AuditRecord, AuditSink, ChainProblem, GENESIS_PREV, MAX_AUDIT_FIELD_BYTES, VerifyError, tail,
    verify,
};
use ring::digest::{SHA256, digest};

const BIG: u64 = 64 * 1024 * 1024;

fn record(i: u64) -> AuditRecord {
    let (event, decision) = if i.is_multiple_of(2) {
        (AuditEvent::CallDenied, AuditDecision::Deny)
    } else {
        (AuditEvent::CallAllowed, AuditDecision::Allow)
    };
    AuditRecord::new(event)
        .peer(format!("peer-{}", i % 3))
        .agent("files")
        .tool("delete")
        .decision(decision)
        .reason(format!("reason {i}"))
        .request_id(format!("r-{i}"))
}

/// A log directory holding `n` records in one file.
fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("audit");
    let log = AuditLog::open(&dir, BIG).unwrap();
    for i in 1..=n {
        log.append(&record(i)).unwrap();
    }
    (root, dir)
}

fn lines_of(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

/// Recomputes a line's hash after an edit, as a careful forger would.
fn rehash(line: &str) -> String {
    let cut = line.rfind(r#","hash":""#).unwrap();
    let body = format!("{}}}", &line[..cut]);
    let hash = hex::encode(digest(&SHA256, body.as_bytes()));
    format!(r#"{},"hash":"{hash}"}}"#, &line[..cut])
}

fn hash_of(line: &str) -> String {
    let start = line.rfind(r#","hash":""#).unwrap() + r#","hash":""#.len();
    line[start..start + 64].to_owned()
}

fn broken_at(dir: &Path) -> (PathBuf, u64, ChainProblem) {
    match verify(dir) {
        Err(VerifyError::Broken { location, problem }) => (location.path, location.line, problem),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn append_then_verify() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("audit");
    let log = AuditLog::open(&dir, BIG).unwrap();
    let first = log.append(&record(1)).unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.prev, GENESIS_PREV);
    assert_eq!(first.time.len(), "2024-01-02T03:04:05.678Z".len());
    assert!(first.time.ends_with('Z'));
    let second = log.append(&record(2)).unwrap();
    assert_eq!(second.seq, 2);
    assert_eq!(second.prev, first.hash);
    assert_eq!(log.head().next_seq, 3);

    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 2);
    assert_eq!(report.last_seq, Some(2));
    assert_eq!(report.last_hash, second.hash);
    assert_eq!(report.files, vec![dir.join(ACTIVE_FILE)]);

    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(mode_of(&dir.join(ACTIVE_FILE)), 0o600);
    let lines = lines_of(&dir.join(ACTIVE_FILE));
    assert!(lines[1].starts_with(r#"{"time":""#), "{}", lines[1]);
    assert!(lines[1].contains(r#""seq":2,"event":"call_denied","peer":"peer-2","agent":"files","tool":"delete","decision":"deny","reason":"reason 2","request_id":"r-2","prev":""#), "{}", lines[1]);
    assert_eq!(hash_of(&lines[0]), first.hash);
}

#[test]
fn a_second_writer_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("audit");
    let first = AuditLog::open(&dir, BIG).unwrap();
    let error = AuditLog::open(&dir, BIG).unwrap_err();
    assert!(matches!(error, AuditError::Locked { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&dir.display().to_string()),
        "{error}"
    );
    first.append(&record(1)).unwrap();
    drop(first);
    let second = AuditLog::open(&dir, BIG).unwrap();
    assert_eq!(second.head().next_seq, 2);
}

#[test]
fn empty_log_verifies_and_missing_dir_is_named() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("audit");
    drop(AuditLog::open(&dir, BIG).unwrap());
    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 0);
    assert_eq!(report.last_hash, GENESIS_PREV);

    let missing = root.path().join("nope");
    let error = verify(&missing).unwrap_err();
    assert!(matches!(error, VerifyError::NoLog { .. }), "{error:?}");
    assert!(error.to_string().contains(&missing.display().to_string()));
}

#[test]
fn an_edited_field_is_reported_at_its_line() {
    let (_root, dir) = log_with(10);
    let path = dir.join(ACTIVE_FILE);
    let mut lines = lines_of(&path);
    lines[4] = lines[4].replace(r#""reason":"reason 5""#, r#""reason":"reason five""#);
    write_lines(&path, &lines);

    let (file, line, problem) = broken_at(&dir);
    assert_eq!((file, line), (path.clone(), 5));
    assert_eq!(problem, ChainProblem::Edited);
    let message = verify(&dir).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}:5: ", path.display())),
        "{message}"
    );
    assert!(message.contains("edited"), "{message}");
}

#[test]
fn an_edit_with_a_recomputed_hash_is_caught_at_the_next_line() {
    let (_root, dir) = log_with(10);
    let path = dir.join(ACTIVE_FILE);
    let mut lines = lines_of(&path);
    lines[4] = rehash(&lines[4].replace(r#""decision":"allow""#, r#""decision":"deny""#));
    write_lines(&path, &lines);

    let (_, line, problem) = broken_at(&dir);
    assert_eq!(line, 6);
    match problem {
        ChainProblem::PrevMismatch {
            previous: Some(previous),
        } => assert_eq!(previous.line, 5),
        other => panic!("expected PrevMismatch, got {other:?}"),
    }
}

#[test]
fn a_deleted_line_is_reported_where_it_was() {
    let (_root, dir) = log_with(10);
    let path = dir.join(ACTIVE_FILE);
    let mut lines = lines_of(&path);
    lines.remove(6);
    write_lines(&path, &lines);

    let (_, line, problem) = broken_at(&dir);
    assert_eq!(line, 7);
    assert_eq!(
        problem,
        ChainProblem::UnexpectedSeq {
            expected: 7,
            found: 8
        }
    );
    assert!(problem.to_string().contains("missing"), "{problem}");
}

#[test]
fn swapped_lines_are_reported_at_the_first() {
    let (_root, dir) = log_with(10);
    let path = dir.join(ACTIVE_FILE);
    let mut lines = lines_of(&path);
    lines.swap(2, 3);
    write_lines(&path, &lines);

    let (_, line, problem) = broken_at(&dir);
    assert_eq!(line, 3);
    assert_eq!(
        problem,
        ChainProblem::UnexpectedSeq {
            expected: 3,
            found: 4
        }
    );
}

#[test]
fn inserted_lines_are_caught() {
    // A copy of an earlier line.
    let (_root, dir) = log_with(10);
    let path = dir.join(ACTIVE_FILE);
    let original = lines_of(&path);
    let mut lines = original.clone();
    lines.insert(5, original[1].clone());
    write_lines(&path, &lines);
    let (_, line, _) = broken_at(&dir);
    assert_eq!(line, 6);

    // A careful forgery: right seq, right prev, valid own hash. The line after
    // it no longer fits.
    let mut lines = original.clone();
    let forged = original[4]
        .replace(r#""seq":5,"#, r#""seq":6,"#)
        .replace(
            &format!(r#""prev":"{}""#, hash_of(&original[3])),
            &format!(r#""prev":"{}""#, hash_of(&original[4])),
        )
        .replace(r#""reason":"reason 5""#, r#""reason":"forged""#);
    lines.insert(5, rehash(&forged));
    write_lines(&path, &lines);
    let (_, line, problem) = broken_at(&dir);
    assert_eq!(line, 7);
    assert_eq!(
        problem,
        ChainProblem::UnexpectedSeq {
            expected: 7,
            found: 6
        }
    );

    // A line that is not a record at all.
    let mut lines = original;
    lines.insert(2, "hello".to_owned());
    write_lines(&path, &lines);
    let (_, line, problem) = broken_at(&dir);
    assert_eq!(line, 3);
    assert!(matches!(problem, ChainProblem::Malformed(_)), "{problem:?}");
}

#[test]
fn a_truncated_last_line_fails_verification() {
    let (_root, dir) = log_with(3);
    let path = dir.join(ACTIVE_FILE);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let (_, line, problem) = broken_at(&dir);
    assert_eq!(line, 3);
    assert_eq!(problem, ChainProblem::Incomplete);
}

/// A log rotated over several files: (guard, dir, files in order).
fn rotated_log(records: u64, max_file_bytes: u64) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("audit");
    let log = AuditLog::open(&dir, max_file_bytes).unwrap();
    for i in 1..=records {
        log.append(&record(i)).unwrap();
    }
    (root, dir)
}

#[test]
fn rotation_keeps_the_chain_across_files() {
    // Each record is about 330 bytes: three per 1000-byte file.
    let (_root, dir) = rotated_log(14, 1000);
    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 14);
    assert!(report.files.len() >= 4, "{:?}", report.files);
    let names: Vec<String> = report
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names[0], "audit.000001.jsonl");
    assert_eq!(names[1], "audit.000002.jsonl");
    assert_eq!(names.last().unwrap(), ACTIVE_FILE);
    for file in &report.files {
        assert!(
            fs::metadata(file).unwrap().len() <= 1000,
            "{}",
            file.display()
        );
        assert_eq!(mode_of(file), 0o600);
    }
    // The first record of file 2 continues from the last of file 1.
    let first_file = lines_of(&report.files[0]);
    let second_file = lines_of(&report.files[1]);
    assert!(second_file[0].contains(&format!(
        r#""prev":"{}""#,
        hash_of(first_file.last().unwrap())
    )));

    // A record bigger than the limit gets a file of its own.
    let log = AuditLog::open(&dir, 1000).unwrap();
    log.append(
        &AuditRecord::new(AuditEvent::TrustChanged)
            .reason("x".repeat(900))
            .detail("y", "z".repeat(500)),
    )
    .unwrap();
    assert_eq!(verify(&dir).unwrap().records, 15);
}

#[test]
fn a_deleted_rotated_file_is_caught() {
    let (_root, dir) = rotated_log(14, 1000);
    let files = verify(&dir).unwrap().files;
    fs::remove_file(&files[1]).unwrap();
    let error = verify(&dir).unwrap_err();
    match &error {
        VerifyError::MissingFile { path } => assert_eq!(path, &files[1]),
        other => panic!("expected MissingFile, got {other:?}"),
    }
    assert!(
        error.to_string().contains("audit.000002.jsonl: missing"),
        "{error}"
    );

    // Renaming the later files to close the gap breaks the chain instead.
    let rotated: Vec<&PathBuf> = files.iter().filter(|p| !p.ends_with(ACTIVE_FILE)).collect();
    for pair in rotated.windows(2).skip(1) {
        fs::rename(pair[1], pair[0]).unwrap();
    }
    let (file, line, problem) = broken_at(&dir);
    assert_eq!(file, files[1]);
    assert_eq!(line, 1);
    assert!(
        matches!(problem, ChainProblem::UnexpectedSeq { .. }),
        "{problem:?}"
    );
}

#[test]
fn a_deleted_first_file_and_reordered_files_are_caught() {
    let (_root, dir) = rotated_log(14, 1000);
    let files = verify(&dir).unwrap().files;

    // Swap the contents of files 2 and 3.
    let two = fs::read(&files[1]).unwrap();
    let three = fs::read(&files[2]).unwrap();
    fs::write(&files[1], &three).unwrap();
    fs::write(&files[2], &two).unwrap();
    let (file, line, _) = broken_at(&dir);
    assert_eq!((file, line), (files[1].clone(), 1));
    fs::write(&files[1], &two).unwrap();
    fs::write(&files[2], &three).unwrap();
    verify(&dir).unwrap();

    fs::remove_file(&files[0]).unwrap();
    let error = verify(&dir).unwrap_err();
    assert!(
        matches!(&error, VerifyError::MissingFile { path } if *path == files[0]),
        "{error:?}"
    );
}

#[test]
fn reopening_resumes_the_chain() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("audit");
    for round in 0..3u64 {
        let log = AuditLog::open(&dir, 1000).unwrap();
        assert_eq!(log.head().next_seq, round * 5 + 1);
        for i in 0..5 {
            log.append(&record(round * 5 + i)).unwrap();
        }
    }
    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 15);
    assert!(report.files.len() > 1);

    // A crash between rotating and creating the new active file: the chain
    // resumes from the newest rotated file.
    let active = dir.join(ACTIVE_FILE);
    let next = format!("audit.{:06}.jsonl", report.files.len());
    fs::rename(&active, dir.join(&next)).unwrap();
    let log = AuditLog::open(&dir, 1000).unwrap();
    assert_eq!(log.head().next_seq, 16);
    log.append(&record(16)).unwrap();
    assert_eq!(verify(&dir).unwrap().records, 16);
}

#[test]
fn a_damaged_tail_stops_the_writer_with_a_clear_error() {
    let (_root, dir) = log_with(5);
    let path = dir.join(ACTIVE_FILE);
    let original = lines_of(&path);

    // Last line edited.
    let mut lines = original.clone();
    lines[4] = lines[4].replace("reason 5", "reason 6");
    write_lines(&path, &lines);
    let bytes = fs::read(&path).unwrap();
    let error = AuditLog::open(&dir, BIG).unwrap_err();
    match &error {
        AuditError::CorruptTail { location, problem } => {
            assert_eq!((location.path.clone(), location.line), (path.clone(), 5));
            assert_eq!(*problem, ChainProblem::Edited);
        }
        other => panic!("expected CorruptTail, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&format!("{}:5", path.display())),
        "{message}"
    );
    assert!(
        message.contains("refusing to continue the hash chain"),
        "{message}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing written");

    // Interrupted write (no final newline).
    let mut text = original.join("\n");
    text.push('\n');
    text.push_str(&original[0][..40]);
    fs::write(&path, &text).unwrap();
    let error = AuditLog::open(&dir, BIG).unwrap_err();
    assert!(
        matches!(&error, AuditError::CorruptTail { location, problem: ChainProblem::Incomplete } if location.line == 6),
        "{error:?}"
    );
    assert!(error.to_string().contains("incomplete"), "{error}");

    // Second-to-last line removed: the last no longer follows.
    let mut lines = original.clone();
    lines.remove(3);
    write_lines(&path, &lines);
    let error = AuditLog::open(&dir, BIG).unwrap_err();
    assert!(
        matches!(&error, AuditError::CorruptTail { location, .. } if location.line == 4),
        "{error:?}"
    );

    // Restored: opens again.
    write_lines(&path, &original);
    AuditLog::open(&dir, BIG).unwrap();
}

#[test]
fn long_fields_are_truncated_and_details_round_trip() {
    let (_root, dir) = log_with(0);
    let log = AuditLog::open(&dir, BIG).unwrap();
    let entry = log
        .append(
            &AuditRecord::new(AuditEvent::TrustChanged)
                .peer("p")
                .tool("t".repeat(5000))
                .detail("from", "unknown")
                .detail("to", "trusted"),
        )
        .unwrap();
    assert!(entry.record.tool.as_ref().unwrap().len() <= MAX_AUDIT_FIELD_BYTES);
    let shown = tail(&dir, 1, &AuditFilter::all()).unwrap();
    assert_eq!(shown[0].record.details["to"], "trusted");
    assert_eq!(shown[0].record.tool, entry.record.tool);
    verify(&dir).unwrap();
}

#[test]
fn tail_returns_the_newest_matching_records_across_files() {
    let (_root, dir) = rotated_log(20, 1000);
    let last3 = tail(&dir, 3, &AuditFilter::all()).unwrap();
    let seqs: Vec<u64> = last3.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [18, 19, 20]);

    let peer1 = AuditFilter {
        peer: Some("peer-1".into()),
        ..AuditFilter::default()
    };
    let seqs: Vec<u64> = tail(&dir, 4, &peer1)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [10, 13, 16, 19]);

    let denied = AuditFilter {
        event: Some("call_denied".parse().unwrap()),
        peer: None,
    };
    let all_denied = tail(&dir, 100, &denied).unwrap();
    assert_eq!(all_denied.len(), 10);
    assert!(
        all_denied
            .iter()
            .all(|e| e.record.event == AuditEvent::CallDenied)
    );
    assert_eq!(all_denied.first().unwrap().seq, 2);

    let both = AuditFilter {
        event: Some(AuditEvent::CallDenied),
        peer: Some("peer-0".into()),
    };
    let seqs: Vec<u64> = tail(&dir, 100, &both)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [6, 12, 18]);

    assert!(tail(&dir, 0, &AuditFilter::all()).unwrap().is_empty());
    assert!(
        tail(&dir.join("missing"), 5, &AuditFilter::all())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn follow_sees_appended_records_across_rotation() {
    let (_root, dir) = rotated_log(4, 1000);
    let log = AuditLog::open(&dir, 1000).unwrap();
    let mut follower = AuditFollower::from_end(&dir, AuditFilter::all()).unwrap();
    assert_eq!(follower.next_seq(), 5);
    assert!(follower.poll().unwrap().is_empty());

    // Enough records to rotate several times between two polls.
    for i in 5..=14 {
        log.append(&record(i)).unwrap();
    }
    let seqs: Vec<u64> = follower.poll().unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (5..=14).collect::<Vec<_>>());
    assert!(follower.poll().unwrap().is_empty());

    log.append(&record(15)).unwrap();
    let next = follower
        .next_timeout(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    assert_eq!(next.seq, 15);

    // From the start, filtered.
    let mut from_start = AuditFollower::from_seq(
        &dir,
        1,
        AuditFilter {
            peer: Some("peer-2".into()),
            ..AuditFilter::default()
        },
    );
    let seqs: Vec<u64> = from_start.poll().unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [2, 5, 8, 11, 14]);
}

#[test]
fn follow_keeps_up_with_a_concurrent_writer() {
    let (_root, dir) = log_with(0);
    let mut follower = AuditFollower::from_end(&dir, AuditFilter::all())
        .unwrap()
        .with_poll_interval(Duration::from_millis(5));
    let writer_dir = dir.clone();
    let writer = std::thread::spawn(move || {
        let log = AuditLog::open(&writer_dir, 1500).unwrap();
        for i in 1..=40 {
            log.append(&record(i)).unwrap();
            if i.is_multiple_of(7) {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seqs = Vec::new();
    while seqs.len() < 40 && Instant::now() < deadline {
        if let Some(entry) = follower.next_timeout(Duration::from_millis(200)).unwrap() {
            seqs.push(entry.seq);
        }
    }
    writer.join().unwrap();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    assert!(verify(&dir).unwrap().files.len() > 3);
}

#[test]
fn sink_writes_everything_it_accepts_and_reports_what_it_drops() {
    let (_root, dir) = log_with(0);
    let log = AuditLog::open(&dir, 1 << 20).unwrap();
    let (sink, writer) = AuditSink::spawn(log, 1).unwrap();
    // A queue of one overflows quickly; keep going until it has (bounded).
    let mut total = 0u64;
    let mut accepted = 0u64;
    while total < 3000 || (sink.stats().dropped == 0 && total < 1_000_000) {
        total += 1;
        if sink.record(record(total)).is_ok() {
            accepted += 1;
        }
    }
    sink.flush().unwrap();
    let stats = sink.stats();
    assert!(stats.dropped > 0, "a queue of one never overflowed");
    assert_eq!(stats.dropped, total - accepted);
    assert_eq!(stats.failed, 0);
    drop(sink);
    writer.join().unwrap();

    let report = verify(&dir).unwrap();
    assert_eq!(report.records, stats.written);
    let notices = tail(
        &dir,
        usize::MAX,
        &AuditFilter {
            event: Some(AuditEvent::AuditRecordsDropped),
            peer: None,
        },
    )
    .unwrap();
    let reported: u64 = notices
        .iter()
        .map(|n| n.record.details["dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(reported, stats.dropped, "every drop is reported in the log");
    assert_eq!(stats.written, accepted + notices.len() as u64);
}

#[test]
fn sink_with_room_loses_nothing() {
    let (_root, dir) = log_with(0);
    let log = AuditLog::open(&dir, 4096).unwrap();
    let (sink, writer) = AuditSink::spawn(log, 1000).unwrap();
    let clone = sink.clone();
    for i in 1..=500 {
        clone.record(record(i)).unwrap();
    }
    drop(clone);
    drop(sink);
    writer.join().unwrap();
    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 500);
    assert!(report.files.len() > 10);
}
