//! `docs/configuration.md` is generated from the config key table by
//! `cargo xtask docs`; this fails when the two drift apart, so plain
//! `cargo test` catches a key added or changed without regenerating the docs.

use std::path::Path;

#[test]
fn configuration_md_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    // A missing file is as stale as an outdated one; CRLF checkouts are fine.
    let on_disk = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let generated = dawn_core::config::render_markdown();
    if on_disk != generated {
        let first_difference = on_disk
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| on_disk.lines().count().min(generated.lines().count()));
        panic!(
            "docs/configuration.md is stale: run `cargo xtask docs` \
             (first difference at line {})",
            first_difference + 1
        );
    }
}
