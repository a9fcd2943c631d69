//! `cargo xtask ci`: the project's whole test command (what `.ci/run` runs).
//!
//! The steps are the entries of [`STEPS`], run in that order. To add one:
//!
//! 1. write `fn name(ctx: &Context) -> Result<()>` in this module, running
//!    programs with [`command::run`] so each is echoed and a failure names
//!    the command;
//! 2. if it needs a tool that a fresh machine may lack, have that function
//!    check for it with [`command::succeeds`] (e.g. `cargo deny --version`)
//!    and install a pinned version when absent (`cargo install --locked
//!    cargo-deny@X.Y.Z`, `apt-get install -y ...`), since CI runs on a new
//!    machine with only what the project's own files install;
//! 3. add a [`Step`] to [`STEPS`] at the place it should run.
//!
//! `--only`, `--skip`, `--list` and `--help` take step names from [`STEPS`].

use std::{
    cell::Cell,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::builder::{PossibleValue, PossibleValuesParser};

use crate::{command, conformance, deny, deploy, dist, docs, promtool};

/// Arguments of `cargo xtask ci`.
#[derive(Debug, clap::Args)]
pub struct CiArgs {
    /// Run only this step (repeatable); steps still run in their usual order.
    #[arg(long, value_name = "STEP", value_parser = step_names())]
    pub only: Vec<String>,
    /// Leave out this step (repeatable).
    #[arg(long, value_name = "STEP", value_parser = step_names())]
    pub skip: Vec<String>,
    /// Print the steps in order and exit.
    #[arg(long)]
    pub list: bool,
}

/// What a step gets to work with.
pub struct Context {
    /// The workspace root; commands run from here.
    pub root: PathBuf,
    /// Set once the `test` step has built the workspace, binaries included
    /// (dawn-node's own integration tests make `cargo test --workspace`
    /// build `target/debug/dawn-node`). Later steps then use those binaries
    /// instead of building them again with `-p`, whose different feature
    /// set would recompile tokio and everything above it a second time.
    pub binaries_built: Cell<bool>,
}

impl Context {
    /// A `cargo` command run from the workspace root.
    fn cargo<const N: usize>(&self, args: [&str; N]) -> Command {
        let mut cargo = command::cargo(&self.root);
        cargo.args(args);
        cargo
    }
}

/// One CI step.
pub struct Step {
    /// Name used by `--only` / `--skip` and in headers.
    pub name: &'static str,
    /// One line saying what the step checks (shown in headers and `--help`).
    pub about: &'static str,
    /// Runs the step; an error fails CI.
    pub run: fn(&Context) -> Result<()>,
}

/// Every step, in the order they run.
pub const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        about: "formatting: cargo fmt --all --check",
        run: fmt,
    },
    Step {
        name: "clippy",
        about: "lints: cargo clippy --workspace --all-targets -- -D warnings",
        run: clippy,
    },
    Step {
        name: "test",
        about: "tests: doctests + cargo nextest run --workspace (cargo test if nextest is absent); installs promtool, DAWN_REQUIRE_TOOLS=1",
        run: test,
    },
    Step {
        name: "docs",
        about: "generated docs are current: cargo xtask docs --check",
        run: docs_fresh,
    },
    Step {
        name: "conformance",
        about: "official MCP conformance suite, direct and via a peer: cargo xtask conformance",
        run: mcp_conformance,
    },
    Step {
        name: "deny",
        about: "dependency policy (advisories, licenses, bans, sources): cargo xtask deny",
        run: dependency_policy,
    },
    Step {
        name: "deploy",
        about: "Dockerfile, compose, systemd and workflow checks, image commands run locally: cargo xtask deploy",
        run: deploy_check,
    },
    Step {
        name: "dist",
        about: "release archive self-test (dev profile): cargo xtask dist --check",
        run: dist_check,
    },
];

fn step_names() -> PossibleValuesParser {
    PossibleValuesParser::new(
        STEPS
            .iter()
            .map(|step| PossibleValue::new(step.name).help(step.about)),
    )
}

fn fmt(ctx: &Context) -> Result<()> {
    command::run(&mut ctx.cargo(["fmt", "--all", "--check"]))
        .context("code is not formatted: run `cargo fmt --all`")
}

fn clippy(ctx: &Context) -> Result<()> {
    command::run(&mut ctx.cargo([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

fn test(ctx: &Context) -> Result<()> {
    // Tools the tests run (promtool); with them required, a missing one
    // fails its tests instead of skipping them.
    promtool::ensure()?;
    let tools_required = |mut cmd: Command| {
        cmd.env(promtool::REQUIRE_TOOLS_ENV, "1");
        cmd
    };
    if command::succeeds(&mut ctx.cargo(["nextest", "--version"])) {
        // nextest does not run doctests. They go first so that nextest's
        // summary of the whole suite is the last test report in the log.
        command::run(&mut tools_required(ctx.cargo([
            "test",
            "--workspace",
            "--doc",
        ])))?;
        command::run(&mut tools_required(ctx.cargo([
            "nextest",
            "run",
            "--workspace",
            "--no-fail-fast",
        ])))?;
    } else {
        println!("cargo-nextest is not installed: using cargo test");
        command::run(&mut tools_required(ctx.cargo([
            "test",
            "--workspace",
            "--no-fail-fast",
        ])))?;
    }
    ctx.binaries_built.set(true);
    Ok(())
}

fn docs_fresh(ctx: &Context) -> Result<()> {
    if ctx.binaries_built.get() {
        // The freshness tests are part of the suite the test step just ran,
        // in check mode: running them again would only compile another
        // feature variant of the workspace.
        println!(
            "checked by the test step: dawn-core's docs_fresh and dawn-cli's cli_docs tests passed"
        );
        return Ok(());
    }
    docs::run(&docs::DocsArgs { check: true }, &ctx.root)
}

fn mcp_conformance(ctx: &Context) -> Result<()> {
    let args = conformance::ConformanceArgs {
        scenario: None,
        target: Vec::new(),
        no_build: ctx.binaries_built.get(),
    };
    conformance::run(&args, &ctx.root)
}

fn dependency_policy(ctx: &Context) -> Result<()> {
    deny::run(&deny::DenyArgs::from_env(), &ctx.root)
}

fn deploy_check(ctx: &Context) -> Result<()> {
    deploy::run(
        &deploy::DeployArgs {
            no_build: ctx.binaries_built.get(),
        },
        &ctx.root,
    )
}

fn dist_check(ctx: &Context) -> Result<()> {
    let args = dist::DistArgs {
        check: true,
        no_build: ctx.binaries_built.get(),
        ..Default::default()
    };
    dist::run(&args, &ctx.root)
}

/// The steps `--only` and `--skip` leave, in run order.
fn select<'a>(steps: &'a [Step], only: &[String], skip: &[String]) -> Result<Vec<&'a Step>> {
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let skipped = |name: &str| skip.iter().any(|s| s == name);
    let selected: Vec<&Step> = steps
        .iter()
        .filter(|step| wanted(step.name) && !skipped(step.name))
        .collect();
    if selected.is_empty() {
        bail!("--only and --skip leave no step to run");
    }
    Ok(selected)
}

/// Runs `cargo xtask ci` against the workspace at `root`.
pub fn run(args: &CiArgs, root: &Path) -> Result<()> {
    if args.list {
        for step in STEPS {
            println!("{:<11} {}", step.name, step.about);
        }
        return Ok(());
    }
    let selected = select(STEPS, &args.only, &args.skip)?;
    let left_out: Vec<&str> = STEPS
        .iter()
        .filter(|s| !selected.iter().any(|t| t.name == s.name))
        .map(|s| s.name)
        .collect();
    if !left_out.is_empty() {
        println!("ci: not running {}", left_out.join(", "));
    }
    let ctx = Context {
        root: root.to_path_buf(),
        binaries_built: Cell::new(false),
    };
    let started = Instant::now();
    let mut timings = Vec::with_capacity(selected.len());
    for (i, step) in selected.iter().enumerate() {
        println!(
            "\n==> ci [{}/{}] {}: {}",
            i + 1,
            selected.len(),
            step.name,
            step.about
        );
        let step_started = Instant::now();
        let result = (step.run)(&ctx);
        let took = step_started.elapsed();
        if let Err(error) = result {
            println!("==> {} FAILED after {}", step.name, human(took));
            print_timings(&timings);
            return Err(error.context(format!(
                "ci step `{}` failed after {} (run only it with `cargo xtask ci --only {}`)",
                step.name,
                human(took),
                step.name
            )));
        }
        println!("==> {} ok in {}", step.name, human(took));
        timings.push((step.name, took));
    }
    print_timings(&timings);
    let steps = match timings.len() {
        1 => "the 1 step".to_owned(),
        n => format!("all {n} steps"),
    };
    println!("ci: {steps} succeeded in {}", human(started.elapsed()));
    Ok(())
}

fn print_timings(timings: &[(&str, Duration)]) {
    if timings.is_empty() {
        return;
    }
    println!("\nci: steps that succeeded:");
    for (name, took) in timings {
        println!("  {name:<11} {:>9}", human(*took));
    }
}

/// `4.2s`, `3m 07s`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m {:02}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn names(steps: &[&Step]) -> Vec<&'static str> {
        steps.iter().map(|s| s.name).collect()
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn step_names_are_unique() {
        let mut seen = HashSet::new();
        for step in STEPS {
            assert!(seen.insert(step.name), "duplicate step {}", step.name);
        }
    }

    #[test]
    fn the_required_steps_run_in_order() {
        let all = names(&select(STEPS, &[], &[]).unwrap());
        assert_eq!(all[..4], ["fmt", "clippy", "test", "docs"]);
    }

    #[test]
    fn only_keeps_list_order_and_skip_removes() {
        let picked = select(STEPS, &strings(&["docs", "fmt"]), &[]).unwrap();
        assert_eq!(names(&picked), ["fmt", "docs"]);

        let picked = select(STEPS, &[], &strings(&["test", "clippy"])).unwrap();
        assert!(!names(&picked).contains(&"test"));
        assert!(!names(&picked).contains(&"clippy"));
        assert!(names(&picked).contains(&"fmt"));

        let picked = select(STEPS, &strings(&["fmt", "docs"]), &strings(&["fmt"])).unwrap();
        assert_eq!(names(&picked), ["docs"]);

        assert!(select(STEPS, &strings(&["fmt"]), &strings(&["fmt"])).is_err());
    }

    #[test]
    fn unknown_step_names_are_rejected_by_the_parser() {
        use clap::Parser;

        #[derive(Debug, Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: CiArgs,
        }
        let parsed = Wrapper::try_parse_from(["ci", "--only", "fmt", "--only", "docs"]).unwrap();
        assert_eq!(parsed.args.only, ["fmt", "docs"]);
        assert!(Wrapper::try_parse_from(["ci", "--skip", "nope"]).is_err());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(4200)), "4.2s");
        assert_eq!(human(Duration::from_secs(187)), "3m 07s");
    }
}
