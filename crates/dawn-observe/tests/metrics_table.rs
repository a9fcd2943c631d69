//! The metric table (`dawn_observe::metrics::METRICS`, from which
//! `docs/metrics.md` is generated) against the code: every `dawn_*` metric
//! recorded anywhere in the workspace's sources is listed with the same
//! type, and every listed metric is recorded somewhere. A live scrape of a
//! real node is checked against the table too (dawn-cli's
//! `tests/observability.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use dawn_observe::metrics::{METRICS, MetricKind, MetricOrigin, doc};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether byte `at` of `text` is on a comment line (`//`, `///`, `//!`).
fn in_comment(text: &str, at: usize) -> bool {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..at].trim_start().starts_with("//")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(name, kind, file)` of every `counter!("dawn_…"`, `gauge!(…` and
/// `histogram!(…` in library and binary sources (not tests).
fn recorded_in_sources() -> Vec<(String, MetricKind, String)> {
    let root = workspace_root();
    let mut files = Vec::new();
    for top in ["crates", "bins"] {
        let Ok(entries) = std::fs::read_dir(root.join(top)) else {
            continue;
        };
        for entry in entries.flatten() {
            rust_files(&entry.path().join("src"), &mut files);
        }
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (macro_name, kind) in [
            ("counter!(", MetricKind::Counter),
            ("gauge!(", MetricKind::Gauge),
            ("histogram!(", MetricKind::Histogram),
        ] {
            let mut rest = text.as_str();
            while let Some(i) = rest.find(macro_name) {
                rest = &rest[i + macro_name.len()..];
                // describe_counter!(…) and friends document, they do not record.
                let at = text.len() - rest.len() - macro_name.len();
                if text[..at].ends_with("describe_") || in_comment(&text, at) {
                    continue;
                }
                let args = rest.trim_start();
                let Some(literal) = args.strip_prefix('"') else {
                    continue; // a name from a variable (e.g. the table itself)
                };
                let Some(end) = literal.find('"') else {
                    continue;
                };
                let name = &literal[..end];
                if name.starts_with("dawn_") {
                    let rel = file.strip_prefix(&root).unwrap_or(&file);
                    found.push((name.to_owned(), kind, rel.display().to_string()));
                }
            }
        }
    }
    found
}

#[test]
fn every_recorded_metric_is_in_the_table_with_its_type() {
    let found = recorded_in_sources();
    assert!(
        found.iter().any(|(n, _, _)| n == "dawn_calls_total"),
        "the scan found no dawn_calls_total: {found:?}"
    );
    let mut problems = Vec::new();
    for (name, kind, file) in &found {
        match doc(name) {
            None => problems.push(format!(
                "{name} ({}) is recorded in {file} but not listed in dawn_observe::metrics::METRICS",
                kind.as_str()
            )),
            Some(d) if d.kind != *kind => problems.push(format!(
                "{name} is recorded as a {} in {file} but listed as a {}",
                kind.as_str(),
                d.kind.as_str()
            )),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_listed_metric_is_recorded_somewhere() {
    let found: BTreeSet<String> = recorded_in_sources()
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    let missing: Vec<&str> = METRICS
        .iter()
        .filter(|d| d.origin == MetricOrigin::Recorder && !found.contains(d.name))
        .map(|d| d.name)
        .collect();
    assert!(
        missing.is_empty(),
        "listed in METRICS but recorded nowhere in crates/*/src or bins/*/src: {missing:?}"
    );
}

#[test]
fn labels_used_in_code_are_documented() {
    // For single-line macro calls, the label keys written in code must be
    // the documented ones (order aside).
    let root = workspace_root();
    let mut files = Vec::new();
    for top in ["crates", "bins"] {
        for entry in std::fs::read_dir(root.join(top)).unwrap().flatten() {
            rust_files(&entry.path().join("src"), &mut files);
        }
    }
    let mut problems = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Join continuation lines of a macro call: take from the macro to the
        // matching closing parenthesis.
        for m in ["counter!(", "gauge!(", "histogram!("] {
            let mut rest = text.as_str();
            while let Some(i) = rest.find(m) {
                let call_start = &rest[i + m.len()..];
                rest = call_start;
                if in_comment(&text, text.len() - call_start.len() - m.len()) {
                    continue;
                }
                let mut depth = 1;
                let mut end = None;
                for (j, c) in call_start.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some(end) = end else { continue };
                let call = &call_start[..end];
                let Some(literal) = call.trim_start().strip_prefix('"') else {
                    continue;
                };
                let Some(name_end) = literal.find('"') else {
                    continue;
                };
                let name = &literal[..name_end];
                let Some(d) = doc(name) else { continue };
                let mut keys: Vec<&str> = call
                    .split("=>")
                    .take(call.matches("=>").count())
                    .filter_map(|part| {
                        let part = part.trim_end();
                        let q_end = part.rfind('"')?;
                        let q_start = part[..q_end].rfind('"')?;
                        Some(&part[q_start + 1..q_end])
                    })
                    .collect();
                keys.sort_unstable();
                let mut documented: Vec<&str> = d.labels.iter().map(|l| l.name).collect();
                documented.sort_unstable();
                if keys != documented {
                    problems.insert(
                        format!("{name} in {}", file.strip_prefix(&root).unwrap().display()),
                        format!("labels {keys:?}, documented {documented:?}"),
                    );
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
