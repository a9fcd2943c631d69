//! `cargo xtask deny`: `cargo deny check` against `deny.toml` (advisories,
//! licenses, bans, sources), installing a pinned cargo-deny when absent.
//!
//! The advisory check needs the RustSec advisory database, a git repository
//! that cargo-deny fetches from GitHub. Where it cannot be fetched (a machine
//! that reaches only package registries), this command:
//!
//! - uses a copy fetched earlier, if there is one (`--disable-fetch`), and
//!   says how old it is;
//! - otherwise checks licenses, bans and sources only and prints, loudly,
//!   that advisories were NOT checked — unless `--require-advisories` (or
//!   `DAWN_DENY_REQUIRE_ADVISORIES=1`, set by the GitHub workflow) makes that
//!   an error.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use anyhow::{Context as _, Result, bail};

use crate::command;

/// The cargo-deny version installed when none is present.
pub const CARGO_DENY_VERSION: &str = "0.20.2";

/// Arguments of `cargo xtask deny`.
#[derive(Debug, Default, clap::Args)]
pub struct DenyArgs {
    /// Fail if the advisory database can be neither fetched nor found
    /// locally, instead of checking licenses, bans and sources only.
    #[arg(long, env = "DAWN_DENY_REQUIRE_ADVISORIES", value_parser = clap::builder::FalseyValueParser::new())]
    pub require_advisories: bool,
}

fn cargo_deny(root: &Path) -> Command {
    let mut cmd = command::cargo(root);
    cmd.arg("deny");
    cmd
}

/// Installs cargo-deny unless `cargo deny --version` works.
fn ensure_installed(root: &Path) -> Result<()> {
    if command::succeeds(cargo_deny(root).arg("--version")) {
        return Ok(());
    }
    println!("cargo-deny is not installed: installing {CARGO_DENY_VERSION} (a few minutes, once)");
    let mut install = command::cargo(root);
    install.args([
        "install",
        "--locked",
        &format!("cargo-deny@{CARGO_DENY_VERSION}"),
    ]);
    // cargo-deny's own release profile asks for fat LTO in one codegen unit:
    // a smaller, slightly faster binary, paid for with a much longer
    // single-threaded build on every fresh CI machine. A policy check over a
    // few hundred crates does not need it.
    install
        .env("CARGO_PROFILE_RELEASE_LTO", "off")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
    command::run(&mut install).context("cannot install cargo-deny")
}

/// Where cargo-deny keeps advisory databases.
fn advisory_dbs() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    Some(cargo_home.join("advisory-dbs"))
}

/// Age in days of the newest local advisory database, if any.
fn local_db_age_days() -> Option<u64> {
    let dir = advisory_dbs()?;
    let newest = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            // The fetch time: the mtime of the checkout's git metadata.
            let git = e.path().join(".git");
            let meta = std::fs::metadata(if git.exists() { git } else { e.path() }).ok()?;
            meta.modified().ok()
        })
        .max()?;
    let age = SystemTime::now().duration_since(newest).unwrap_or_default();
    Some(age.as_secs() / 86_400)
}

/// Runs `cargo xtask deny`.
pub fn run(args: &DenyArgs, root: &Path) -> Result<()> {
    ensure_installed(root)?;
    if command::run(cargo_deny(root).args(["fetch", "db"])).is_ok() {
        return command::run(cargo_deny(root).args(["check", "--hide-inclusion-graph"]))
            .context("cargo deny check failed (see deny.toml)");
    }
    if let Some(days) = local_db_age_days() {
        println!(
            "the advisory database cannot be fetched: checking against the local copy, fetched {days} day(s) ago"
        );
        return command::run(cargo_deny(root).args([
            "check",
            "--disable-fetch",
            "--hide-inclusion-graph",
        ]))
        .context("cargo deny check failed (see deny.toml)");
    }
    if args.require_advisories {
        bail!(
            "the RustSec advisory database cannot be fetched and there is no local copy; \
             advisories cannot be checked"
        );
    }
    println!(
        "\nWARNING: the RustSec advisory database cannot be fetched (no access to GitHub) and there \
         is no local copy:\nWARNING: advisories are NOT checked here; checking licenses, bans and \
         sources. The GitHub CI workflow checks advisories.\n"
    );
    command::run(cargo_deny(root).args([
        "check",
        "--hide-inclusion-graph",
        "bans",
        "licenses",
        "sources",
    ]))
    .context("cargo deny check failed (see deny.toml)")
}

impl DenyArgs {
    /// The arguments `cargo xtask ci` uses: `--require-advisories` when
    /// `DAWN_DENY_REQUIRE_ADVISORIES` is set to a true value.
    pub fn from_env() -> DenyArgs {
        let require = std::env::var("DAWN_DENY_REQUIRE_ADVISORIES")
            .is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "no" | "off"));
        DenyArgs {
            require_advisories: require,
        }
    }
}
