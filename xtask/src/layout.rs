//! Function layout for `cargo xtask dist`: the functions a running node
//! executes are linked together at the start of `dawn-node`'s code.
//!
//! Why: an idle node's resident memory is mostly code pages of its own
//! executable, not data. The kernel maps file pages around each code page
//! fault (fault-around, and whole large page-cache folios on recent kernels:
//! about 128 KiB per fault here), and the few thousand functions a node runs
//! are spread over the whole 30 MB `.text` among the many it never runs, so
//! most of the executable ends up mapped. Linked together, the same
//! functions fill a few MiB. Nothing else changes: same code, same
//! optimisation, only the order of functions in the file.
//!
//! How:
//!
//! 1. [`record`]: the built node runs a short training session under
//!    valgrind's callgrind, with native nodes as its peers: a fresh start
//!    that dials one peer and is dialed by another, local and remote calls
//!    both ways, idle heartbeats, SIGTERM; then a restart on the same data
//!    that rejoins and idles. Callgrind lists every function that ran.
//! 2. [`executed_functions`] reads those names (symbols of `dawn-node`
//!    only, in order of first appearance) into an order file.
//! 3. `dist` builds again with [`ORDER_ENV`] naming that file: dawn-node's
//!    build script passes it to the linker as `--symbol-ordering-file` (lld,
//!    the Rust toolchain's default linker on x86_64 Linux). Only dawn-node
//!    is linked again; the dependencies and dawn-cli are not rebuilt.
//! 4. [`placement`] checks with `nm` that the listed functions now form one
//!    block at the start of `.text`, and fails the dist otherwise.
//!
//! The effect is measured by `cargo bench -p dawn-core --bench
//! registry_convergence` (idle VmRSS of real processes), see
//! docs/benchmarks.md.

use std::{
    collections::HashSet, ffi::OsString, fs, path::Path, process::Command, thread, time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    command,
    nodes::{DawnNode, NodeSpec},
};

/// The training session's agent and tool, on every node.
const ECHO: (&str, &str) = ("system", "echo");
/// How long the recorded node idles once its peer is known: long enough for
/// the registry heartbeat (first one 3 s after start), gossipsub heartbeats,
/// ping and the connection manager's ticks.
const IDLE: Duration = Duration::from_secs(15);

/// The environment variable dawn-node's build script reads: a file of
/// symbol names to link first (bins/dawn-node/build.rs).
pub const ORDER_ENV: &str = "DAWN_NODE_SYMBOL_ORDER";

/// The target whose default linker (rust-lld) takes a symbol ordering file.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Whether valgrind can be run here.
pub fn available() -> bool {
    command::succeeds(Command::new("valgrind").arg("--version"))
}

/// Runs the training session for the binaries in `bin_dir`, under `work`,
/// and returns the `dawn-node` functions that ran, in order of first run.
///
/// The recorded node plays every part a node plays: it starts fresh and
/// dials a peer it was given, accepts a second peer that dials it, serves
/// and sends calls, idles; then it starts again on the same data (identity,
/// database and address book already there), rejoins and idles.
pub fn record(bin_dir: &Path, work: &Path) -> Result<Vec<String>> {
    if work.exists() {
        fs::remove_dir_all(work).with_context(|| format!("cannot clear {}", work.display()))?;
    }
    fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let callgrind = |profile: &Path| -> Vec<OsString> {
        let mut out_file = OsString::from("--callgrind-out-file=");
        out_file.push(profile);
        [
            "valgrind",
            "--tool=callgrind",
            "--demangle=no",
            "--dump-instr=no",
        ]
        .iter()
        .map(OsString::from)
        .chain([out_file])
        .collect()
    };
    let spec = |name: &'static str, peer: Option<String>, wrapper: Vec<OsString>| NodeSpec {
        bin_dir: bin_dir.to_path_buf(),
        data_root: work.join(name),
        log: work.join(format!("node-{name}.log")),
        name,
        config: "# Written by cargo xtask dist (function layout training).\n".to_owned(),
        peer,
        wrapper,
        // Under callgrind the node runs 20 to 50 times slower.
        startup_timeout: Duration::from_secs(300),
        stop_timeout: Duration::from_secs(300),
    };
    let args = r#"{"message":"layout"}"#;
    let profiles = [work.join("callgrind-1.out"), work.join("callgrind-2.out")];

    println!("function layout: running a node under callgrind (slow, a minute or two)");
    let mut first_peer = DawnNode::start(spec("peer-1", None, Vec::new()))?;
    let first_peer_info = first_peer.wait_ready()?;
    let remote = format!("{}/{}", first_peer_info.node_id, ECHO.0);
    let recorded_spec = |profile: &Path| {
        spec(
            "recorded",
            Some(first_peer_info.dial.clone()),
            callgrind(profile),
        )
    };
    {
        let mut recorded = DawnNode::start(recorded_spec(&profiles[0]))?;
        let recorded_info = recorded.wait_ready()?;
        let mut second_peer =
            DawnNode::start(spec("peer-2", Some(recorded_info.dial.clone()), Vec::new()))?;
        let second_peer_info = second_peer.wait_ready()?;
        recorded.wait_for_remote_agent(&first_peer_info.node_id, ECHO.0)?;
        recorded.wait_for_remote_agent(&second_peer_info.node_id, ECHO.0)?;
        second_peer.wait_for_remote_agent(&recorded_info.node_id, ECHO.0)?;
        // Calls: served locally, sent to a peer, and served for a peer.
        let local = format!("{}/{}", recorded_info.node_id, ECHO.0);
        for _ in 0..3 {
            recorded.cli(&["call", ECHO.0, ECHO.1, "--args", args])?;
            recorded.cli(&["call", &remote, ECHO.1, "--args", args])?;
            second_peer.cli(&["call", &local, ECHO.1, "--args", args])?;
        }
        for query in [
            &["status"][..],
            &["peers"],
            &["agents", "--all"],
            &["tools"],
        ] {
            recorded.cli_json(query)?;
        }
        // Idle time is what the layout is for: the node's timers run here.
        thread::sleep(IDLE);
        stop_recorded(&mut recorded, work)?;
    }
    {
        // A restart: the usual start of a node in production.
        let mut recorded = DawnNode::start(recorded_spec(&profiles[1]))?;
        recorded.wait_ready()?;
        recorded.wait_for_remote_agent(&first_peer_info.node_id, ECHO.0)?;
        recorded.cli(&["call", &remote, ECHO.1, "--args", args])?;
        thread::sleep(IDLE);
        stop_recorded(&mut recorded, work)?;
    }
    first_peer.stop();

    let mut functions = Vec::new();
    let mut seen = HashSet::new();
    for profile in &profiles {
        let text = fs::read_to_string(profile)
            .with_context(|| format!("callgrind wrote no profile to {}", profile.display()))?;
        let ran = executed_functions(&text, "dawn-node");
        ensure!(
            ran.len() > 100,
            "callgrind's profile lists only {} functions of dawn-node; see {}",
            ran.len(),
            profile.display()
        );
        functions.extend(ran.into_iter().filter(|f| seen.insert(f.clone())));
    }
    Ok(functions)
}

/// Stops the recorded node; callgrind writes its profile as it exits.
fn stop_recorded(node: &mut DawnNode, work: &Path) -> Result<()> {
    node.check_alive()?;
    ensure!(
        node.stop(),
        "the recorded node did not stop after SIGTERM; see {}",
        work.join("node-recorded.log").display()
    );
    Ok(())
}

/// The functions of the object whose file name is `object` that appear in
/// a callgrind profile (as callers or callees), in order of first
/// appearance, without callgrind's recursion suffixes (`'2`) and without
/// addresses of code that has no symbol.
pub fn executed_functions(profile: &str, object: &str) -> Vec<String> {
    let mut objects: Vec<(String, String)> = Vec::new();
    let mut names: Vec<(String, String)> = Vec::new();
    // Remembers an id's string: `(id) name` defines it, `(id)` refers to it.
    fn resolve(table: &mut Vec<(String, String)>, value: &str) -> Option<String> {
        let value = value.trim();
        let Some(rest) = value.strip_prefix('(') else {
            return Some(value.to_owned());
        };
        let (id, name) = rest.split_once(')')?;
        let name = name.trim();
        if name.is_empty() {
            table
                .iter()
                .find(|(known, _)| known == id)
                .map(|(_, n)| n.clone())
        } else {
            table.push((id.to_owned(), name.to_owned()));
            Some(name.to_owned())
        }
    }
    let is_ours = |path: &str| Path::new(path).file_name().is_some_and(|f| f == object);
    let mut current_object = String::new();
    let mut callee_object: Option<String> = None;
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for line in profile.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let function_object = match key {
            "ob" => {
                current_object = resolve(&mut objects, value).unwrap_or_default();
                continue;
            }
            "cob" => {
                callee_object = resolve(&mut objects, value);
                continue;
            }
            "fn" => {
                callee_object = None;
                current_object.clone()
            }
            "cfn" => callee_object
                .take()
                .unwrap_or_else(|| current_object.clone()),
            _ => continue,
        };
        let Some(name) = resolve(&mut names, value) else {
            continue;
        };
        if !is_ours(&function_object) {
            continue;
        }
        let name = match name.rsplit_once('\'') {
            Some((base, level)) if level.chars().all(|c| c.is_ascii_digit()) => base.to_owned(),
            _ => name,
        };
        if name.starts_with("0x") || name.contains(' ') {
            continue;
        }
        if seen.insert(name.clone()) {
            order.push(name);
        }
    }
    order
}

/// Where the ordered functions ended up in a binary.
#[derive(Debug)]
pub struct Placement {
    /// Functions of the order file found in the binary.
    pub found: usize,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Bytes from the start of `.text` to the end of the last of them.
    pub span: u64,
}

/// Reads the binary's symbols with `nm` and measures where the functions of
/// `functions` are.
pub fn placement(binary: &Path, functions: &[String]) -> Result<Placement> {
    let output = Command::new("nm")
        .args(["--defined-only", "--print-size"])
        .arg(binary)
        .output()
        .context("cannot run nm (binutils) to check the function layout")?;
    ensure!(output.status.success(), "nm {} failed", binary.display());
    let wanted: HashSet<&str> = functions.iter().map(String::as_str).collect();
    let mut text_start = u64::MAX;
    let mut found = HashSet::new();
    let mut bytes = 0;
    let mut end = 0;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [address, size, kind, name] = fields[..] else {
            continue;
        };
        if !matches!(kind, "t" | "T" | "w" | "W") {
            continue;
        }
        let (Ok(address), Ok(size)) = (
            u64::from_str_radix(address, 16),
            u64::from_str_radix(size, 16),
        ) else {
            continue;
        };
        text_start = text_start.min(address);
        if wanted.contains(name) && found.insert(name.to_owned()) {
            bytes += size;
            end = end.max(address + size);
        }
    }
    if found.is_empty() {
        bail!("none of the ordered functions is in {}", binary.display());
    }
    Ok(Placement {
        found: found.len(),
        bytes,
        span: end.saturating_sub(text_start),
    })
}

/// Records, relinks and checks: the whole layout step of `dist` for the
/// binaries in `bin_dir`. `relink` builds again with [`ORDER_ENV`] set to
/// the order file it is given.
pub fn apply(bin_dir: &Path, work: &Path, relink: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let functions = record(bin_dir, work)?;
    let order_file = work.join("dawn-node.order");
    fs::write(&order_file, functions.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", order_file.display()))?;
    println!(
        "function layout: {} functions ran; linking dawn-node with them first",
        functions.len()
    );
    // The plain link of the same build, kept for comparison: the
    // registry_convergence bench measures both.
    let plain = work.join("dawn-node.plain");
    fs::copy(bin_dir.join("dawn-node"), &plain)
        .with_context(|| format!("cannot copy dawn-node to {}", plain.display()))?;
    relink(&order_file)?;
    let binary = bin_dir.join("dawn-node");
    let placed = placement(&binary, &functions)?;
    // Together means: the block from the start of .text to the last of them
    // is not much larger than they are (alignment padding, and functions of
    // the list that lld found in another section).
    ensure!(
        placed.span <= placed.bytes + placed.bytes / 2 + (1 << 20),
        "the linker did not group the executed functions: {} of them, {} bytes, spread over {} bytes of .text",
        placed.found,
        placed.bytes,
        placed.span
    );
    println!(
        "function layout: {} functions ({:.1} MiB) in the first {:.1} MiB of .text",
        placed.found,
        placed.bytes as f64 / 1_048_576.0,
        placed.span as f64 / 1_048_576.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A callgrind profile in its compressed form: names are given once with
    /// an id, then referred to by the id alone.
    const PROFILE: &str = "\
version: 1
creator: callgrind-3.19.0
cmd: /opt/dawn/bin/dawn-node --data-root x
positions: line
events: Ir
ob=(1) /usr/lib/x86_64-linux-gnu/libc.so.6
fn=(1) malloc
0 10
ob=(2) /opt/dawn/bin/dawn-node
fn=(2) main
0 5
cob=(1)
cfn=(1)
calls=1 0
0 10
cfn=(3) _ZN4dawn5start17h0123456789abcdefE
calls=1 0
0 20
fn=(3)
0 20
cfn=(4) _ZN4dawn4tick17hfedcba9876543210E'2
calls=1 0
0 3
fn=(5) 0x00000000008770b0
0 1
fn=(6) (below main)
0 1
ob=(1)
fn=(7) free
0 1
ob=(2)
fn=(4)
0 2
";

    #[test]
    fn lists_the_binarys_own_functions_once_in_order_of_first_appearance() {
        assert_eq!(
            executed_functions(PROFILE, "dawn-node"),
            [
                "main",
                "_ZN4dawn5start17h0123456789abcdefE",
                "_ZN4dawn4tick17hfedcba9876543210E",
            ]
        );
    }

    #[test]
    fn functions_of_other_objects_are_left_out() {
        assert_eq!(executed_functions(PROFILE, "libc.so.6"), ["malloc", "free"]);
        assert!(executed_functions(PROFILE, "dawn-cli").is_empty());
    }
}
