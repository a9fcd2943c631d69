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
        // Rebuild when HEAD moves: HEAD itself (checkouts) and the branch
        // ref it points to (commits).
        if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
            let git_dir = PathBuf::from(git_dir);
            println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
            if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
                println!(
                    "cargo:rerun-if-changed={}",
                    git_dir.join(reference).display()
                );
            }
            println!(
                "cargo:rerun-if-changed={}",
                git_dir.join("packed-refs").display()
            );
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    let commit = commit.unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=DAWN_BUILD_COMMIT={commit}");
}
