//! Running external programs: echoed, with inherited output, and failing with
//! the command line and exit status in the error.

use std::{
    ffi::OsString,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// A `cargo` command run from `root`. Uses the same cargo that runs xtask
/// (`$CARGO`), so toolchain overrides carry over to nested invocations.
///
/// The variables `cargo run` set for xtask itself (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`, ...) are removed: build scripts such as ring's rerun
/// when they change, so builds started from xtask would otherwise be
/// another variant of the dependency tree than a plain `cargo test`.
pub fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command.current_dir(root);
    for (key, _) in std::env::vars_os() {
        if set_by_cargo_for_xtask(&key.to_string_lossy()) {
            command.env_remove(&key);
        }
    }
    command
}

/// Whether `key` is one of the variables Cargo sets for the crate it runs,
/// as opposed to ones that configure Cargo (`CARGO_HOME`,
/// `CARGO_TARGET_DIR`, `CARGO_PROFILE_*`, ...).
fn set_by_cargo_for_xtask(key: &str) -> bool {
    [
        "CARGO_MANIFEST_",
        "CARGO_PKG_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ]
    .iter()
    .any(|prefix| key.starts_with(prefix))
}

/// Runs `command` with inherited stdin/stdout/stderr after printing it, and
/// fails unless it exits successfully.
pub fn run(command: &mut Command) -> Result<()> {
    let line = display(command);
    println!("$ {line}");
    let status = command
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Whether `command` can be started and exits successfully, with its output
/// discarded: the way to ask "is this tool installed?" (e.g. `cargo nextest
/// --version`) before deciding to use or install it.
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The command as a person would type it: `cargo` rather than the full path
/// in `$CARGO`, then the arguments.
fn display(command: &Command) -> String {
    let program = Path::new(command.get_program())
        .file_stem()
        .unwrap_or(command.get_program())
        .to_string_lossy()
        .into_owned();
    std::iter::once(program)
        .chain(command.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_variables_cargo_sets_for_xtask_are_left_out() {
        for key in [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            assert!(set_by_cargo_for_xtask(key), "{key}");
        }
        for key in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_PROFILE_RELEASE_LTO",
            "CARGO_TERM_COLOR",
            "RUSTFLAGS",
        ] {
            assert!(!set_by_cargo_for_xtask(key), "{key}");
        }
    }

    #[test]
    fn display_shows_program_name_and_args() {
        let mut command = Command::new("/opt/toolchain/bin/cargo");
        command.args(["fmt", "--all", "--check"]);
        assert_eq!(display(&command), "cargo fmt --all --check");
    }

    #[test]
    fn run_reports_the_failing_command() {
        let mut command = cargo(Path::new("."));
        command.args(["definitely-not-a-cargo-subcommand-xtask"]);
        command.stderr(Stdio::null());
        let error = run(&mut command).unwrap_err().to_string();
        assert!(
            error.contains("cargo definitely-not-a-cargo-subcommand-xtask"),
            "{error}"
        );
    }

    #[test]
    fn succeeds_is_false_for_a_missing_program() {
        assert!(!succeeds(&mut Command::new(
            "no-such-program-for-xtask-tests"
        )));
    }
}
