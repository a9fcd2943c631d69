//! `cargo xtask bench`: runs the workspace benchmarks and summarises the
//! goals they report.
//!
//! Every Dawn benchmark with goals writes a JSON file to
//! `target/bench-results/<name>.json` whose `summary.goals[]` entries carry
//! `name`, `value` and `pass` (see `docs/benchmarks.md`). This command runs
//! `cargo bench` (all benches, or the ones named with `--bench`), then prints
//! one line per goal. A missed goal does not fail the command: benchmarks
//! report, they do not gate (speed is judged on a quiet machine, not in CI).

use std::{fs, path::Path};

use anyhow::{Context as _, Result};

use crate::{command, json::Json};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Run only this bench target (repeatable), e.g. `--bench remote_echo`.
    #[arg(long = "bench", value_name = "NAME")]
    benches: Vec<String>,
    /// A short smoke run (sets `DAWN_BENCH_QUICK=1`): checks that every
    /// bench works, with numbers too noisy to judge goals by.
    #[arg(long)]
    quick: bool,
    /// Only print the summary of the last results; run nothing.
    #[arg(long)]
    summary: bool,
}

/// Runs the benches and prints the goals.
pub fn run(args: &BenchArgs, root: &Path) -> Result<()> {
    let results = root.join("target").join("bench-results");
    if !args.summary {
        let mut cargo = command::cargo(root);
        cargo.args(["bench", "--workspace"]);
        for bench in &args.benches {
            cargo.args(["--bench", bench]);
        }
        if args.quick {
            cargo.env("DAWN_BENCH_QUICK", "1");
        }
        command::run(&mut cargo)?;
    }
    print!("{}", summarise(&results)?);
    Ok(())
}

/// One line per goal of every results file in `dir`, sorted by file name.
fn summarise(dir: &Path) -> Result<String> {
    let mut out = String::from("\nbenchmark goals:\n");
    let Ok(entries) = fs::read_dir(dir) else {
        out.push_str(&format!("  (no results in {})\n", dir.display()));
        return Ok(out);
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in files {
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let doc = Json::parse(&text).with_context(|| format!("parsing {}", file.display()))?;
        let bench = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let goals = doc.get("summary").and_then(|s| s.get("goals"));
        let goals = goals.map(Json::items).unwrap_or_default();
        if goals.is_empty() {
            out.push_str(&format!("  {bench}: no goals reported\n"));
        }
        for goal in goals {
            let name = goal.get("name").and_then(Json::as_str).unwrap_or("?");
            let value = match goal.get("value") {
                Some(Json::Number(n)) => format!("{n:.2}"),
                Some(Json::String(s)) => s.clone(),
                _ => "?".into(),
            };
            let verdict = match goal.get("pass") {
                Some(Json::Bool(true)) => "PASS",
                Some(Json::Bool(false)) => "MISS",
                _ => "n/a",
            };
            out.push_str(&format!("  {bench}: {name} = {value} {verdict}\n"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_are_listed_per_file_with_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("remote_echo.json"),
            r#"{"summary":{"goals":[{"name":"p50 ratio <= 1.3","value":0.7,"pass":true},
               {"name":"throughput ratio >= 3","value":2.5,"pass":false}]}}"#,
        )
        .unwrap();
        fs::write(dir.path().join("other.json"), r#"{"summary":{}}"#).unwrap();
        let text = summarise(dir.path()).unwrap();
        assert!(text.contains("other: no goals reported"), "{text}");
        assert!(
            text.contains("remote_echo: p50 ratio <= 1.3 = 0.70 PASS"),
            "{text}"
        );
        assert!(
            text.contains("remote_echo: throughput ratio >= 3 = 2.50 MISS"),
            "{text}"
        );
    }

    #[test]
    fn a_corrupt_results_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("broken.json"), "{not json").unwrap();
        let error = format!("{:#}", summarise(dir.path()).unwrap_err());
        assert!(error.contains("broken.json"), "{error}");
    }
}
