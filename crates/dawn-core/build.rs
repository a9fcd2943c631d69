//! Records the git commit of the build for `dawn_build_info{commit}`:
//! `DAWN_BUILD_COMMIT` if set (release builds from a source archive or a
//! container build without `.git`), else `git rev-parse --short=12 HEAD`,
//! else `unknown`.

use std::{path::PathBuf, process::Command};

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=DAWN_BUILD_COMMIT");
    let from_env = std::env::var("DAWN_BUILD_COMMIT")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        });
    let commit = from_env.or_else(|| {
        // Rebuild when HEAD moves: HEAD itself (checkouts), the branch ref it
        // points to (commits) and packed-refs (where `git pack-refs` and
        // `git clone` keep refs). `--git-path` resolves each one where git
        // keeps it, also in a linked worktree. A path that does not exist is
        // not named: Cargo treats a missing `rerun-if-changed` file as
        // changed, which would rerun this script, and rebuild this crate and
        // everything above it, on every cargo command.
        let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
        watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
        for name in &watched {
            if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", name])
                .map(PathBuf::from)
                .filter(|p| p.exists())
            {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    let commit = commit.unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=DAWN_BUILD_COMMIT={commit}");
}
