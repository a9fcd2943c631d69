//! Runs `examples/embed.rs` and checks what it prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, process::Command};

/// The example binary that `cargo test` builds next to the test binaries,
/// or `cargo run --example` when it is not there.
fn example_command() -> Command {
    let exe = std::env::current_exe().unwrap();
    let candidate: Option<PathBuf> = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("embed"));
    match candidate {
        Some(path) if path.is_file() => Command::new(path),
        _ => {
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cmd.args(["run", "-q", "-p", "dawn-core", "--example", "embed"]);
            cmd
        }
    }
}

#[test]
fn the_embedding_example_runs_and_calls_across_nodes() {
    let output = example_command().output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "example failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("offers thermometer"), "{stdout}");
    assert!(stdout.contains("21.5 °C = 70.7 °F"), "{stdout}");
    assert!(
        stdout.contains("invalid arguments:") && stdout.contains("/celsius"),
        "{stdout}"
    );
}
