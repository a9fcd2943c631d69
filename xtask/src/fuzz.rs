//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` over the decoders
//! that read bytes from peers (`rpc_message`: the Dawn RPC frame decoder and
//! JSON-RPC parsing; `registry_record`: registry envelope decoding and
//! signature checks), each run for a bounded time.
//!
//! cargo-fuzz needs a nightly toolchain (`rustup toolchain install
//! nightly`); cargo-fuzz itself is installed (pinned) when absent. Without
//! nightly this command says so and runs the property tests over the same
//! decoders instead (`dawn_core::fuzzing`, shared by both), and succeeds.
//!
//! libFuzzer starts from the committed seeds in `fuzz/corpus/<target>/` and
//! writes what it finds to `fuzz/found/<target>/` (not committed), so runs
//! on one machine build on each other. A crash fails the command; the input
//! is saved under `fuzz/artifacts/<target>/` and cargo-fuzz prints how to
//! replay it.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::command;

/// The fuzz targets (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: &[&str] = &["rpc_message", "registry_record"];

/// The cargo-fuzz version installed when none is present.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Seconds per target with `--smoke`.
const SMOKE_SECS: u64 = 30;
/// Seconds per target without `--smoke`.
const LONG_SECS: u64 = 600;

/// The test filter of the property tests that stand in for fuzzing.
const PROPTESTS: &str = "security::decoder_props";

/// Arguments of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Short bounded run of each target (30 s each unless --secs), as CI
    /// does.
    #[arg(long)]
    pub smoke: bool,
    /// Run only this target (repeatable; default: all).
    #[arg(long = "target", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
    /// Seconds per target (default: 30 with --smoke, 600 without).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub secs: Option<u64>,
    /// The sanitizer cargo-fuzz builds with (address, leak, memory,
    /// thread, none).
    #[arg(long, default_value = "address")]
    pub sanitizer: String,
    /// The nightly toolchain to fuzz with (e.g. a dated
    /// `nightly-2026-11-01`).
    #[arg(long, env = "DAWN_FUZZ_TOOLCHAIN", default_value = "nightly")]
    pub toolchain: String,
}

/// A command run with the nightly `toolchain` through rustup.
fn nightly(toolchain: &str, program: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", toolchain, program]);
    // The stable cargo running xtask must not leak into the nightly build.
    cmd.env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

fn nightly_available(toolchain: &str) -> bool {
    command::succeeds(nightly(toolchain, "rustc").arg("--version"))
}

/// Installs cargo-fuzz unless `cargo fuzz --version` works.
fn ensure_cargo_fuzz(root: &Path, toolchain: &str) -> Result<()> {
    if command::succeeds(nightly(toolchain, "cargo").args(["fuzz", "--version"])) {
        return Ok(());
    }
    println!("cargo-fuzz is not installed: installing {CARGO_FUZZ_VERSION} (a few minutes, once)");
    command::run(command::cargo(root).args([
        "install",
        "--locked",
        &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
    ]))
    .context("cannot install cargo-fuzz")
}

/// What one target's run reported.
#[derive(Debug, Default, PartialEq, Eq)]
struct RunStats {
    /// `stat::number_of_executed_units`.
    executions: Option<u64>,
    /// `stat::new_units_added`.
    new_units: Option<u64>,
    /// Coverage (`cov:`) of the last status line.
    coverage: Option<u64>,
}

impl RunStats {
    /// Reads libFuzzer's status lines and final stats.
    fn observe(&mut self, line: &str) {
        let stat = |name: &str| {
            line.strip_prefix(name)
                .and_then(|rest| rest.trim().trim_start_matches(':').trim().parse().ok())
        };
        if let Some(n) = stat("stat::number_of_executed_units") {
            self.executions = Some(n);
        } else if let Some(n) = stat("stat::new_units_added") {
            self.new_units = Some(n);
        } else if line.starts_with('#')
            && let Some(cov) = line
                .split_whitespace()
                .skip_while(|w| *w != "cov:")
                .nth(1)
                .and_then(|n| n.parse().ok())
        {
            self.coverage = Some(cov);
        }
    }
}

fn show(value: Option<u64>) -> String {
    value.map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// Runs one target for `secs` seconds, echoing its output.
fn run_target(root: &Path, args: &FuzzArgs, target: &str, secs: u64) -> Result<RunStats> {
    let sanitizer = &args.sanitizer;
    let work = root.join("fuzz/found").join(target);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let seeds = root.join("fuzz/corpus").join(target);
    let mut cmd = nightly(&args.toolchain, "cargo");
    cmd.current_dir(root)
        .args([
            "fuzz",
            "run",
            "--fuzz-dir",
            "fuzz",
            "--sanitizer",
            sanitizer,
            target,
        ])
        .arg(&work)
        .arg(&seeds)
        .args([
            "--",
            &format!("-max_total_time={secs}"),
            "-print_final_stats=1",
            "-timeout=20",
        ]);
    println!(
        "$ cargo +{} fuzz run --fuzz-dir fuzz --sanitizer {sanitizer} {target} {} {} -- -max_total_time={secs} -print_final_stats=1 -timeout=20",
        args.toolchain,
        work.display(),
        seeds.display()
    );
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `rustup run {} cargo fuzz`", args.toolchain))?;
    let mut stats = RunStats::default();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("cannot read the fuzzer's output")?;
            stats.observe(&line);
            eprintln!("{line}");
        }
    }
    let status = child.wait().context("cannot wait for cargo fuzz")?;
    if !status.success() {
        bail!(
            "fuzz target {target} failed ({status}): a crashing input, if any, is in {} \
             (replay: cargo +{} fuzz run {target} <file>)",
            root.join("fuzz/artifacts").join(target).display(),
            args.toolchain
        );
    }
    Ok(stats)
}

/// Runs `cargo xtask fuzz`.
pub fn run(args: &FuzzArgs, root: &Path) -> Result<()> {
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    let secs = args
        .secs
        .unwrap_or(if args.smoke { SMOKE_SECS } else { LONG_SECS });
    if !nightly_available(&args.toolchain) {
        println!(
            "\nno {0} toolchain (`rustup run {0} rustc --version` failed): cargo-fuzz \
             cannot run here.\nRunning the property tests over the same decoders instead \
             (install it with `rustup toolchain install {0}` to fuzz).\n",
            args.toolchain
        );
        command::run(command::cargo(root).args(["test", "-p", "dawn-core", "--lib", PROPTESTS]))
            .context("the decoder property tests failed")?;
        println!("\nfuzzing skipped (no nightly toolchain); the decoder property tests passed");
        return Ok(());
    }
    ensure_cargo_fuzz(root, &args.toolchain)?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for target in &targets {
        match run_target(root, args, target, secs) {
            Ok(stats) => results.push((*target, stats)),
            Err(error) => {
                eprintln!("\nerror: {error:#}");
                failures.push(*target);
            }
        }
    }
    println!("\nfuzzing, {secs} s per target:");
    for (target, stats) in &results {
        println!(
            "  {target:<16} ok: {} executions, {} new inputs, coverage {}",
            show(stats.executions),
            show(stats.new_units),
            show(stats.coverage)
        );
    }
    for target in &failures {
        println!("  {target:<16} FAILED (see above)");
    }
    if !failures.is_empty() {
        bail!("fuzz target(s) failed: {}", failures.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_a_source_file_and_seeds() {
        let root = crate::workspace_root();
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        for target in TARGETS {
            assert!(
                root.join(format!("fuzz/fuzz_targets/{target}.rs"))
                    .is_file()
            );
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target}"
            );
            let seeds = std::fs::read_dir(root.join("fuzz/corpus").join(target)).unwrap();
            assert!(seeds.count() > 0, "no seeds for {target}");
        }
    }

    #[test]
    fn libfuzzer_stats_are_read() {
        let mut stats = RunStats::default();
        for line in [
            "#2\tINITED cov: 512 ft: 600 corp: 5/1024b exec/s: 0 rss: 40Mb",
            "#4096\tpulse  cov: 530 ft: 700 corp: 9/2Kb lim: 43 exec/s: 2048 rss: 41Mb",
            "Done 81234 runs in 21 second(s)",
            "stat::number_of_executed_units: 81234",
            "stat::new_units_added:           17",
        ] {
            stats.observe(line);
        }
        assert_eq!(
            stats,
            RunStats {
                executions: Some(81234),
                new_units: Some(17),
                coverage: Some(530),
            }
        );
    }
}
