//! `dawn-cli backup` against real `dawn-node` processes: a backup of a running node under
//! writes restores onto a fresh data directory, where the node starts with the same peer id,
//! trust records and agent state, a verifying audit chain, and rejoins its peer; restore is
//! refused while a node runs and rolled back when the archive turns out bad midway; offline
//! backups with retention; archives from a newer Dawn are refused; damaged database and key
//! files are reported by name and left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backup_support;
mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use backup_support::{Api, Node, read_entries, restore_leftovers, tree, write_entries};
use common::{STARTUP_TIMEOUT, assert_one_line_failure, assert_success, cli, stdout, wait_for};
use serde_json::{Value, json};

fn cli_json(args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.push("--json");
    let out = cli(&full);
    assert_success(&out, &full);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{full:?} printed invalid JSON ({e}):\n{}", stdout(&out)))
}

fn root_arg(root: &Path) -> &str {
    root.to_str().unwrap()
}

fn peer_id(api: &Api) -> String {
    api.request("GET", "/api/v1/status", None)["node_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn dial_addr(api: &Api) -> String {
    let status = api.request("GET", "/api/v1/status", None);
    status["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/") && a.contains("/p2p/"))
        .unwrap()
        .to_owned()
}

fn connected(api: &Api, peer: &str) -> bool {
    api.request("GET", "/api/v1/peers", None)["peers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["peer_id"] == peer)
}

#[test]
fn backup_of_a_running_node_restores_elsewhere_with_identity_state_and_peers() {
    let dir = tempfile::tempdir().unwrap();
    let root_a = dir.path().join("a");
    let root_b = dir.path().join("b");
    let a = Node::start(&root_a, &dir.path().join("a.log"), &[]);
    let api_a = a.api();
    let id_a = peer_id(&api_a);
    let b = Node::start(
        &root_b,
        &dir.path().join("b.log"),
        &["--peer", &dial_addr(&api_a)],
    );
    let api_b = b.api();
    let id_b = peer_id(&api_b);
    wait_for("B and A to connect", STARTUP_TIMEOUT, || {
        (connected(&api_a, &id_b) && connected(&api_b, &id_a)).then_some(())
    });

    // State on A: a trust record for B (audited), agent state.
    api_a.request(
        "PUT",
        &format!("/api/v1/trust/{id_b}"),
        Some(&json!({"level": "trusted", "note": "partner"})),
    );
    api_a.request(
        "PUT",
        "/api/v1/agents/notes/state/greeting",
        Some(&json!("hello")),
    );
    api_a.request(
        "PUT",
        "/api/v1/agents/notes/state/nested/key",
        Some(&json!({"list": [1, 2, 3]})),
    );

    // The trust change reaches the audit log (written by a background thread).
    let audit_file = root_a.join("audit").join("audit.jsonl");
    wait_for("the trust change to be audited", STARTUP_TIMEOUT, || {
        std::fs::read_to_string(&audit_file)
            .is_ok_and(|t| t.contains("trust_changed"))
            .then_some(())
    });

    // A writer keeps writing while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    let writer = {
        let (api, stop, acked) = (api_a.clone(), stop.clone(), acked.clone());
        thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("k{n:05}");
                api.request(
                    "PUT",
                    &format!("/api/v1/agents/load/state/{key}"),
                    Some(&json!(n)),
                );
                acked.lock().unwrap().insert(key, json!(n));
            }
        })
    };
    wait_for("the writer to start", STARTUP_TIMEOUT, || {
        (acked.lock().unwrap().len() >= 10).then_some(())
    });
    let acked_before = acked.lock().unwrap().clone();
    let out_dir = dir.path().join("archives");
    let summary = cli_json(&[
        "--data-root",
        root_arg(&root_a),
        "backup",
        "create",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let archive = PathBuf::from(summary["path"].as_str().unwrap());
    assert!(archive.starts_with(&out_dir), "{summary}");
    assert_eq!(summary["node_id"], id_a.as_str());
    assert!(summary["audit_records"].as_u64().unwrap() >= 1, "{summary}");
    assert_eq!(summary["tables"]["trust"], 1, "{summary}");

    // The node reports the backup in its status.
    let status = api_a.request("GET", "/api/v1/backup", None);
    assert_eq!(status["last_success"]["path"], archive.to_str().unwrap());

    // verify, list.
    let verified = cli_json(&["backup", "verify", archive.to_str().unwrap()]);
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["node_id"], id_a.as_str());
    let listed = cli_json(&["backup", "list", out_dir.to_str().unwrap()]);
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["backups"][0]["node_id"], id_a.as_str());

    // Stop A; restore its archive onto a fresh data directory; start the node there.
    a.terminate();
    let root_c = dir.path().join("fresh").join("c");
    let restored = cli_json(&[
        "--data-root",
        root_arg(&root_c),
        "backup",
        "restore",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(restored["previous_data_moved_to"], Value::Null);
    assert_eq!(restored["node_id"], id_a.as_str());
    let audit_report = dawn_security::audit::verify(&root_c.join("audit")).unwrap();
    assert!(audit_report.records >= 1);
    // The mesh registry cache and every other table came back row for row.
    {
        let store = dawn_store::Store::open(root_c.join("dawn.redb")).unwrap();
        let counts = store.table_counts().unwrap();
        for (table, rows) in verified["tables"].as_object().unwrap() {
            assert_eq!(
                Some(rows.as_u64().unwrap()),
                counts.get(table).copied(),
                "{table}"
            );
        }
        assert_eq!(
            store.registry_entries().unwrap().len() as u64,
            verified["tables"]["registry"].as_u64().unwrap_or(0)
        );
        assert_eq!(
            store
                .agent_store("notes")
                .unwrap()
                .get_json::<String>("greeting")
                .unwrap()
                .as_deref(),
            Some("hello")
        );
    }

    let c = Node::start(&root_c, &dir.path().join("c.log"), &[]);
    let api_c = c.api();
    assert_eq!(peer_id(&api_c), id_a, "same peer id after restore");
    assert_eq!(
        api_c.trust_levels().get(&id_b).map(String::as_str),
        Some("trusted")
    );
    let notes = api_c.agent_state("notes");
    assert_eq!(notes["greeting"], json!("hello"));
    assert_eq!(notes["nested/key"], json!({"list": [1, 2, 3]}));
    let load = api_c.agent_state("load");
    for (key, value) in &acked_before {
        assert_eq!(
            load.get(key),
            Some(value),
            "{key} was acknowledged before the backup"
        );
    }
    // It rejoins its peer from the restored address book.
    wait_for(
        "the restored node and B to reconnect",
        STARTUP_TIMEOUT,
        || (connected(&api_c, &id_b) && connected(&api_b, &id_a)).then_some(()),
    );
    // The restored audit chain goes on verifying as the node appends to it.
    api_c.request(
        "PUT",
        &format!("/api/v1/trust/{id_b}"),
        Some(&json!({"level": "verified"})),
    );
    c.terminate();
    let after = dawn_security::audit::verify(&root_c.join("audit")).unwrap();
    assert!(after.records > audit_report.records);
    drop(b);
}

#[test]
fn restore_is_refused_while_the_node_runs_and_rolled_back_on_a_bad_archive() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let node = Node::start(&root, &dir.path().join("node.log"), &[]);
    let api = node.api();
    api.request("PUT", "/api/v1/agents/notes/state/keep", Some(&json!("me")));
    let summary = cli_json(&["--data-root", root_arg(&root), "backup", "create"]);
    let archive = PathBuf::from(summary["path"].as_str().unwrap());

    // Refused while running: one clear line, nothing changed. The node
    // audits the backup in the background: let that write land first.
    wait_for("the backup_created audit record", STARTUP_TIMEOUT, || {
        std::fs::read_to_string(root.join("audit").join("audit.jsonl"))
            .is_ok_and(|t| t.contains("\"event\":\"backup_created\""))
            .then_some(())
    });
    let before = tree(&root);
    let out = cli(&[
        "--data-root",
        root_arg(&root),
        "backup",
        "restore",
        archive.to_str().unwrap(),
    ]);
    let line = assert_one_line_failure(&out, 1);
    assert!(line.contains("is running on it"), "{line}");
    assert!(line.contains("pid"), "{line}");
    assert_eq!(tree(&root), before);
    assert!(restore_leftovers(dir.path()).is_empty());

    node.terminate();
    api.try_request("GET", "/api/v1/status", None).unwrap_err();

    // An archive whose last file is damaged: earlier files were already written into the
    // staging directory when the damage shows, and everything is rolled back.
    let mut entries = read_entries(&archive);
    // The last non-empty file (the database and the key come before it).
    let (name, bytes) = entries
        .iter_mut()
        .rev()
        .find(|(_, bytes)| !bytes.is_empty())
        .unwrap();
    let name = name.clone();
    assert!(name != "dawn.redb" && name != "node.key", "{name}");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    let bad = dir.path().join("bad.tar.zst");
    write_entries(&bad, &entries);
    let before = tree(&root);
    let out = cli(&[
        "--data-root",
        root_arg(&root),
        "backup",
        "restore",
        bad.to_str().unwrap(),
    ]);
    let line = assert_one_line_failure(&out, 1);
    assert!(
        line.contains(&name),
        "the damaged file {name} is named: {line}"
    );
    assert!(line.contains("SHA-256"), "{line}");
    assert_eq!(tree(&root), before, "the data directory is as it was");
    assert!(
        restore_leftovers(dir.path()).is_empty(),
        "{:?}",
        restore_leftovers(dir.path())
    );

    // verify says the same.
    let out = cli(&["backup", "verify", bad.to_str().unwrap()]);
    let line = assert_one_line_failure(&out, 1);
    assert!(line.contains(&name), "{line}");

    // The good archive restores over the directory; the previous data is kept aside.
    let restored = cli(&[
        "--data-root",
        root_arg(&root),
        "backup",
        "restore",
        archive.to_str().unwrap(),
    ]);
    assert_success(&restored, &["backup", "restore"]);
    let text = stdout(&restored);
    assert!(text.contains("previous data moved to"), "{text}");
    let aside = restore_leftovers(dir.path());
    assert_eq!(aside.len(), 1, "{aside:?}");
    let mut expected = before.clone();
    expected.retain(|path, _| !path.starts_with("backups"));
    assert_eq!(
        tree(&dir.path().join(&aside[0])),
        expected,
        "the previous data directory is kept as it was (its backups/ moved to the restored one)"
    );
    assert!(archive.exists(), "the archives moved along with backups/");
    let node = Node::start(&root, &dir.path().join("node2.log"), &[]);
    assert_eq!(node.api().agent_state("notes")["keep"], json!("me"));
}

#[test]
fn offline_backups_with_retention_and_newer_versions_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let node = Node::start(&root, &dir.path().join("node.log"), &[]);
    node.api()
        .request("PUT", "/api/v1/agents/notes/state/a", Some(&json!(1)));
    node.terminate();

    // No node: the CLI opens the data directory itself.
    let mut paths = Vec::new();
    for _ in 0..3 {
        let summary = cli_json(&[
            "--data-root",
            root_arg(&root),
            "backup",
            "create",
            "--keep",
            "2",
        ]);
        paths.push(PathBuf::from(summary["path"].as_str().unwrap()));
    }
    let listed = cli_json(&["--data-root", root_arg(&root), "backup", "list"]);
    let names: Vec<&str> = listed["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [paths[1].to_str().unwrap(), paths[2].to_str().unwrap()],
        "--keep 2 deleted the oldest"
    );
    // Plain output: progress lines, then the summary.
    let out = cli(&["--data-root", root_arg(&root), "backup", "create"]);
    assert_success(&out, &["backup", "create"]);
    let text = stdout(&out);
    assert!(text.contains("snapshot database..."), "{text}");
    assert!(text.contains("backup written: "), "{text}");
    assert!(text.contains("offline"), "{text}");
    assert!(stdout(&cli(&["--data-root", root_arg(&root), "backup", "list"])).contains("ARCHIVE"));

    // The offline backup holds the state and restores; the database was not changed by it.
    let verified = cli_json(&["backup", "verify", paths[2].to_str().unwrap()]);
    assert_eq!(verified["tables"]["agent_state"], 1);

    // An archive from a newer Dawn (properly signed by the node): refused, nothing changed.
    let identity = dawn_security::NodeIdentity::load(&root.join("node.key")).unwrap();
    let mut entries = read_entries(&paths[2]);
    let mut manifest: Value = serde_json::from_slice(&entries[0].1).unwrap();
    manifest["dawn_version"] = json!("99.1.0");
    entries[0].1 = serde_json::to_vec_pretty(&manifest).unwrap();
    entries[1].1 = hex::encode(identity.sign(&entries[0].1)).into_bytes();
    let newer = dir.path().join("newer.tar.zst");
    write_entries(&newer, &entries);
    let before = tree(&root);
    for args in [
        vec!["backup", "verify", newer.to_str().unwrap()],
        vec![
            "--data-root",
            root_arg(&root),
            "backup",
            "restore",
            newer.to_str().unwrap(),
        ],
    ] {
        let line = assert_one_line_failure(&cli(&args), 1);
        assert!(line.contains("newer Dawn"), "{line}");
        assert!(line.contains("99.1.0"), "{line}");
        assert!(line.contains("upgrade Dawn"), "{line}");
    }
    assert_eq!(tree(&root), before);

    // Bad input gets a clear line: a missing archive, a file that is no archive.
    let line = assert_one_line_failure(&cli(&["backup", "verify", "/nonexistent/x.tar.zst"]), 1);
    assert!(line.contains("/nonexistent/x.tar.zst"), "{line}");
    let junk = dir.path().join("junk.tar.zst");
    std::fs::write(&junk, b"not an archive at all").unwrap();
    let line = assert_one_line_failure(&cli(&["backup", "verify", junk.to_str().unwrap()]), 1);
    assert!(line.contains("not a Dawn backup archive"), "{line}");
}

#[test]
fn damaged_database_or_key_file_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let node = Node::start(&root, &dir.path().join("node.log"), &[]);
    node.api()
        .request("PUT", "/api/v1/agents/notes/state/a", Some(&json!(1)));
    node.terminate();
    let db = root.join("dawn.redb");
    let key = root.join("node.key");
    let good_db = std::fs::read(&db).unwrap();
    let good_key = std::fs::read(&key).unwrap();

    let damaged: Vec<(&str, &Path, Vec<u8>)> = vec![
        ("dawn.redb", &db, good_db[..good_db.len() / 2].to_vec()),
        ("dawn.redb", &db, {
            let mut bytes = good_db.clone();
            // Flip bits in every page after the header, so whatever pages are in use are hit.
            for at in (4096..bytes.len()).step_by(4096) {
                bytes[at + 100] ^= 0xFF;
            }
            bytes
        }),
        ("node.key", &key, good_key[..good_key.len() / 2].to_vec()),
        ("node.key", &key, {
            // One bit of the secret key flipped: still well-formed hex, but the wrong key.
            let mut bytes = good_key.clone();
            let text = String::from_utf8(good_key.clone()).unwrap();
            let at = text.find("\"secret_key\":\"").unwrap() + "\"secret_key\":\"".len() + 10;
            // The hex digit's lowest bit flipped.
            let digit = (bytes[at] as char).to_digit(16).unwrap() ^ 1;
            bytes[at] = std::char::from_digit(digit, 16).unwrap() as u8;
            bytes
        }),
    ];
    for (name, path, bytes) in damaged {
        std::fs::write(path, &bytes).unwrap();

        // The node refuses to start, naming the file, and does not touch it.
        let log = dir.path().join("refused.log");
        let mut command = std::process::Command::new(common::node_bin());
        let status = command
            .args([
                "--data-root",
                root_arg(&root),
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
            ])
            .args(["--api-listen", "127.0.0.1:0"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !status.success(),
            "dawn-node started on a damaged {name}:\n{text}"
        );
        assert!(text.contains(name), "the message names {name}:\n{text}");
        assert!(!text.contains("panicked"), "{text}");
        assert_eq!(std::fs::read(path).unwrap(), bytes, "{name} was modified");

        // An offline backup refuses too, naming the file, and writes no archive.
        let out = cli(&["--data-root", root_arg(&root), "backup", "create"]);
        let line = assert_one_line_failure(&out, 1);
        assert!(line.contains(name), "{line}");
        assert_eq!(std::fs::read(path).unwrap(), bytes, "{name} was modified");
        let archives = std::fs::read_dir(root.join("backups"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(archives, 0, "no archive is written from damaged files");

        std::fs::write(&db, &good_db).unwrap();
        std::fs::write(&key, &good_key).unwrap();
    }
    // Repaired by hand: the node starts again.
    drop(Node::start(&root, &dir.path().join("again.log"), &[]));
}
