//! `docs/troubleshooting.md` quotes the messages users will see: every code
//! span in one of its `###` headings must exist in the code (the non-test
//! Rust sources under `crates/` and `bins/`), so the page cannot quote a
//! message that no longer exists.
//!
//! Placeholders in `{braces}` and `...` (text left out) split a quoted message
//! into fragments; each fragment must appear in the sources. Sources are read
//! with string continuations (`\` at the end of a line) joined and `\"`
//! unescaped; comment lines and the inline `#[cfg(test)] mod ... {` module of a
//! file are left out, so a message quoted only in docs or tests does not
//! count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `(heading, quoted message)` for every code span in a `###` heading.
fn quoted_messages(doc: &str) -> Vec<(String, String)> {
    let mut messages = Vec::new();
    for heading in doc.lines().filter_map(|l| l.strip_prefix("### ")) {
        let spans: Vec<&str> = heading.split('`').skip(1).step_by(2).collect();
        assert!(
            heading.matches('`').count() % 2 == 0,
            "unbalanced ` in troubleshooting heading: {heading}"
        );
        assert!(
            !spans.is_empty(),
            "troubleshooting heading quotes no message (put it in `backticks`): {heading}"
        );
        messages.extend(spans.iter().map(|s| (heading.to_owned(), (*s).to_owned())));
    }
    messages
}

/// The literal fragments of a quoted message: split on `{placeholder}` and
/// `...`, blank pieces dropped.
fn fragments(message: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut rest = message;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("...") {
            pieces.push(std::mem::take(&mut current));
            rest = &rest[3..];
        } else if c == '{' {
            let end = rest
                .find('}')
                .unwrap_or_else(|| panic!("unclosed {{ in quoted message: {message}"));
            pieces.push(std::mem::take(&mut current));
            rest = &rest[end + 1..];
        } else {
            current.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    pieces.push(current);
    pieces.retain(|p| !p.trim().is_empty());
    pieces
}

/// One source file as searched: test module and comment lines left out,
/// string continuations joined, `\"` unescaped.
fn searchable(source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    // The inline unit-test module: `#[cfg(test)]` followed by `mod NAME {`.
    let test_module = lines
        .windows(2)
        .position(|w| {
            let next = w[1].trim();
            w[0].trim() == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{')
        })
        .unwrap_or(lines.len());
    let mut out = String::with_capacity(source.len());
    let mut continued = false;
    for line in &lines[..test_module] {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        let line = if continued { trimmed } else { line };
        match line.strip_suffix('\\') {
            Some(head) => {
                out.push_str(head);
                continued = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
                continued = false;
            }
        }
    }
    out.replace("\\\"", "\"")
}

fn rust_sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "tests" | "benches" | "examples" | "target")
                && !name.starts_with('.')
            {
                rust_sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, searchable(&text)));
        }
    }
}

fn sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for dir in ["crates", "bins"] {
        rust_sources(&workspace_root().join(dir), &mut out);
    }
    assert!(out.len() > 20, "found only {} source files", out.len());
    out
}

fn in_sources(sources: &[(PathBuf, String)], fragment: &str) -> bool {
    sources.iter().any(|(_, text)| text.contains(fragment))
}

#[test]
fn every_message_in_troubleshooting_exists_in_the_code() {
    let path = workspace_root().join("docs/troubleshooting.md");
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let messages = quoted_messages(&doc);
    assert!(
        messages.len() >= 15,
        "docs/troubleshooting.md quotes only {} messages in `###` headings; \
         the convention is one `### `message`` heading per message",
        messages.len()
    );
    let sources = sources();
    let mut missing = Vec::new();
    for (heading, message) in &messages {
        for fragment in fragments(message) {
            if !in_sources(&sources, &fragment) {
                missing.push(format!(
                    "{fragment:?} (from `{message}` in heading \"{heading}\")"
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md quotes text that is not in the code under crates/ \
         and bins/ (fix the doc with the real message):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_check_is_not_vacuous() {
    assert_eq!(
        fragments("cannot listen on {addr}: {reason}"),
        ["cannot listen on ", ": "]
    );
    assert_eq!(fragments("a ... b{x}"), ["a ", " b"]);
    let sources = sources();
    // A real message whose source string is continued over lines.
    assert!(in_sources(
        &sources,
        "it was not modified. Rotate the token to replace it (clients will need the new token)"
    ));
    // Made up, or only in tests and comments: not found.
    assert!(!in_sources(
        &sources,
        "this message is not produced anywhere in dawn"
    ));
    assert!(!in_sources(&sources, "The key file uses a format version"));
    assert!(quoted_messages("### `a {x}` / `b`\ntext `c`\n").len() == 2);
}
