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
pub fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command.current_dir(root);
    command
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
