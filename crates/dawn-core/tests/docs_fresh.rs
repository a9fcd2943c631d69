//! Generated docs (`docs/configuration.md`, `docs/errors.md`, ...) must equal
//! what the code generates, so plain `cargo test` catches a config key,
//! error kind or metric changed without regenerating the docs.
//!
//! With `DAWN_UPDATE_DOCS=1` the test rewrites stale files instead of
//! failing; `cargo xtask docs` runs it that way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use dawn_core::generated_docs::GENERATED;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn generated_docs_are_fresh() {
    let update = std::env::var_os("DAWN_UPDATE_DOCS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for doc in GENERATED {
        let path = doc.path.split('/').fold(workspace_root(), |p, c| p.join(c));
        // A missing file is as stale as an outdated one; CRLF checkouts are fine.
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .replace("\r\n", "\n");
        let generated = (doc.render)();
        if on_disk == generated {
            continue;
        }
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
            eprintln!("wrote {}", doc.path);
            continue;
        }
        let line = on_disk
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| on_disk.lines().count().min(generated.lines().count()));
        stale.push(format!(
            "{} (first difference at line {}, generated from {})",
            doc.path,
            line + 1,
            doc.source
        ));
    }
    assert!(
        stale.is_empty(),
        "generated docs are stale: run `cargo xtask docs`\n  {}",
        stale.join("\n  ")
    );
}
