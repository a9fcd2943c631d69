//! `cargo xtask docs`: regenerate (or check) the files under `docs/` that are
//! generated from code.
//!
//! The list of generated files and their renderers live in the crates that
//! own the facts (`dawn_core::generated_docs::GENERATED`); their freshness
//! test (`crates/dawn-core/tests/docs_fresh.rs`) rewrites stale files when
//! `DAWN_UPDATE_DOCS=1` is set. This command runs that test, and dawn-cli's
//! `cli_docs` test for `docs/cli.md` (generated from the clap definitions of
//! both binaries), so xtask does not have to compile the node itself.

use std::path::Path;

use anyhow::Result;

use crate::command;

/// Arguments of `cargo xtask docs`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Generated files: docs/configuration.md (config keys), docs/errors.md (error kinds), \
docs/cli.md (clap definitions; bins/dawn-cli/tests/cli_docs.rs); see crates/dawn-core/src/generated_docs.rs."
)]
pub struct DocsArgs {
    /// Only check that the files are current; fail, listing stale files, if not.
    #[arg(long)]
    pub check: bool,
}

/// Runs `cargo xtask docs [--check]` in the workspace at `root`.
pub fn run(args: &DocsArgs, root: &Path) -> Result<()> {
    // One command over the whole workspace: the feature set is then the one
    // `cargo test --workspace` builds with, so after the test step nothing
    // is compiled again (`-p dawn-core` alone would resolve other features
    // and rebuild dawn-core and its dependencies).
    let mut cmd = command::cargo(root);
    cmd.args([
        "test",
        "-q",
        "--workspace",
        "--test",
        "docs_fresh",
        "--test",
        "cli_docs",
    ]);
    if !args.check {
        cmd.env("DAWN_UPDATE_DOCS", "1");
    }
    command::run(&mut cmd)?;
    println!(
        "{}",
        if args.check {
            "generated docs are up to date"
        } else {
            "generated docs written"
        }
    );
    Ok(())
}
