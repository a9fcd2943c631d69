//! The README quick start, followed literally: the ```sh blocks of its
//! "Set up" and "Two nodes on one machine" sections are extracted and run in
//! order, so the README cannot drift from what the product does.
//!
//! `cargo run -p dawn-node [-- ARGS]` and `cargo run -p dawn-cli -- ARGS`
//! run the already-built binaries (`dawn-node` is built once if missing, like
//! the other process tests). The only substitutions: `<first node id>` is the
//! id printed by `status`, `/tmp/dawn-b` is a temporary directory, and
//! `HOME`/`XDG_DATA_HOME` point into a temporary home so the default data
//! directory (`~/.local/share/dawn`) is isolated. The README's fixed ports
//! (8000, 9090, 8001, 9091) are used as written; the test fails with a clear
//! message when one of them is already taken on the machine.
//!
//! `cargo xtask ci` is not run: the test checks that `.ci/run` runs exactly
//! that command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeSet,
    fs::File,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use common::{cli_bin, node_bin, stderr, stdout, wait_for};
use tempfile::TempDir;

/// Generous: a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// The README sections the test follows, in order.
const SECTIONS: [&str; 2] = ["Set up", "Two nodes on one machine"];

/// The placeholder the README uses for the first node's peer id.
const FIRST_ID: &str = "<first node id>";

/// The second node's data directory in the README (replaced by a temp dir).
const SECOND_DATA_ROOT: &str = "/tmp/dawn-b";

/// The API address of a node started without `--api-listen` (embedded default).
const DEFAULT_API: &str = "127.0.0.1:9090";

/// Every outcome the quick start must show; the test fails if a README edit
/// drops the command that demonstrates one of them.
const OUTCOMES: [&str; 7] = [
    "first node serves its API on the default 127.0.0.1:9090",
    "`cargo xtask ci` is what .ci/run runs",
    "`status` prints the node id and a dialable 127.0.0.1:8000 address",
    "second node serves its API",
    "`peers` on the second node lists the first node",
    "`agents --all` on the second node lists the first node's system agent",
    "`call <first node id>/system echo` answers hello",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The commands of the ```sh blocks of the `## {title}` section, in order,
/// with backslash-continued lines joined.
fn section_commands(readme: &str, title: &str) -> Vec<String> {
    let heading = format!("## {title}");
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.trim_end() == heading)
        .unwrap_or_else(|| {
            panic!(
                "README.md has no `{heading}` section; tests/readme.rs runs its \
                 commands literally: update the test together with the README"
            )
        });
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in &lines[start + 1..] {
        let trimmed = line.trim();
        if !in_block {
            if line.starts_with("## ") {
                break;
            }
            in_block = trimmed == "```sh";
            continue;
        }
        if trimmed == "```" {
            assert!(
                pending.is_empty(),
                "README `{heading}`: a ```sh block ends in a continued line: {pending}"
            );
            in_block = false;
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head.trim_end());
            pending.push(' ');
        } else {
            pending.push_str(trimmed);
            commands.push(std::mem::take(&mut pending));
        }
    }
    assert!(!in_block, "README `{heading}`: unclosed ```sh block");
    assert!(
        !commands.is_empty(),
        "README `{heading}` has no ```sh code block; tests/readme.rs runs them \
         literally: update the test together with the README"
    );
    commands
}

/// POSIX-shell word splitting for the plain commands a README shows: single
/// and double quotes and backslash escapes. Anything else the shell would
/// interpret (variables, pipes, redirections, `;`, `&`, globs) is refused, so
/// the test never runs a command differently from a shell.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                words.extend(word.take());
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => panic!("unclosed ' in README command: {command}"),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => panic!("unclosed \" in README command: {command}"),
                        },
                        Some(c @ ('$' | '`')) => {
                            panic!(
                                "README command uses shell expansion ({c}), which the test does not follow: {command}"
                            )
                        }
                        Some(c) => w.push(c),
                        None => panic!("unclosed \" in README command: {command}"),
                    }
                }
            }
            '\\' => {
                let escaped = chars
                    .next()
                    .unwrap_or_else(|| panic!("trailing \\ in README command: {command}"));
                word.get_or_insert_with(String::new).push(escaped);
            }
            '$' | '`' | '|' | '&' | ';' | '<' | '>' | '(' | ')' | '*' | '?' | '[' | '~' => {
                panic!(
                    "README command uses shell syntax ({c}) that tests/readme.rs does not \
                     follow; keep the quick start to plain commands or teach the test: {command}"
                )
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// What one README command does, mapped to the built binaries.
#[derive(Debug)]
enum Step {
    /// `cargo run -p dawn-node [-- ARGS]`
    Node(Vec<String>),
    /// `cargo run -p dawn-cli -- ARGS`
    Cli(Vec<String>),
    /// `cargo xtask ci`
    Ci(Vec<String>),
}

fn step(words: Vec<String>, command: &str) -> Step {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["cargo", "run", "-p", package, rest @ ..] => {
            let args = match rest {
                [] => Vec::new(),
                ["--", args @ ..] => args.iter().map(|a| (*a).to_owned()).collect(),
                _ => panic!("README command passes cargo options the test does not map: {command}"),
            };
            match *package {
                "dawn-node" => Step::Node(args),
                "dawn-cli" => Step::Cli(args),
                other => panic!(
                    "README runs package {other}, which tests/readme.rs does not map: {command}"
                ),
            }
        }
        ["cargo", "xtask", "ci"] => Step::Ci(words),
        _ => panic!(
            "README command not understood by tests/readme.rs (it maps `cargo run -p \
             dawn-node|dawn-cli` and `cargo xtask ci`): {command}"
        ),
    }
}

/// Fails clearly when a port the README uses is taken on this machine.
fn assert_ports_free() {
    let tcp = [8000, 9090, 8001, 9091];
    for port in tcp {
        if let Err(e) = TcpListener::bind(("0.0.0.0", port)) {
            panic!(
                "TCP port {port} is already in use on this machine ({e}); the README quick \
                 start uses the fixed ports 8000, 9090, 8001 and 9091, so this test cannot \
                 run while another process holds one of them"
            );
        }
    }
    // QUIC on the first node's peer-to-peer port.
    if let Err(e) = UdpSocket::bind(("0.0.0.0", 8000)) {
        panic!(
            "UDP port 8000 is already in use on this machine ({e}); the README quick start \
             runs its first node on port 8000 (TCP and QUIC), so this test cannot run while \
             another process holds it"
        );
    }
}

/// `GET /health/live` answered 200 (no token needed).
fn api_answers(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /health/live HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// The value after `flag` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The quick start's state: a temporary home, the nodes it started (killed
/// on drop, also when the test panics) and what it has shown so far.
struct QuickStart {
    home: TempDir,
    scratch: TempDir,
    nodes: Vec<(Child, PathBuf)>,
    first_id: Option<String>,
    shown: BTreeSet<&'static str>,
}

impl Drop for QuickStart {
    fn drop(&mut self) {
        for (child, _) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl QuickStart {
    fn new() -> QuickStart {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".local/share")).unwrap();
        QuickStart {
            home,
            scratch: tempfile::tempdir().unwrap(),
            nodes: Vec::new(),
            first_id: None,
            shown: BTreeSet::new(),
        }
    }

    /// `~/.local/share/dawn` in the temporary home.
    fn default_data_root(&self) -> PathBuf {
        self.home.path().join(".local/share/dawn")
    }

    fn second_data_root(&self) -> PathBuf {
        self.scratch.path().join("dawn-b")
    }

    /// A command in the isolated environment: temporary HOME and
    /// XDG_DATA_HOME (`$HOME/.local/share`), no DAWN_* or RUST_LOG variables.
    fn command(&self, program: &Path, args: &[String]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(self.home.path())
            .stdin(Stdio::null())
            .env("HOME", self.home.path())
            .env("XDG_DATA_HOME", self.home.path().join(".local/share"))
            .env("RUST_BACKTRACE", "1")
            .env_remove("RUST_LOG");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DAWN_") {
                command.env_remove(name);
            }
        }
        command
    }

    /// The README text with the test's substitutions applied.
    fn substitute(&self, command: &str) -> String {
        let mut command =
            command.replace(SECOND_DATA_ROOT, &self.second_data_root().to_string_lossy());
        if command.contains(FIRST_ID) {
            let id = self.first_id.as_deref().unwrap_or_else(|| {
                panic!("README uses {FIRST_ID} before `status` printed it: {command}")
            });
            command = command.replace(FIRST_ID, id);
        }
        command
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, (_, log)) in self.nodes.iter().enumerate() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            out.push_str(&format!("--- node {} log ---\n{text}\n", i + 1));
        }
        out
    }

    fn run(&mut self, command: &str) {
        let literal = self.substitute(command);
        eprintln!("README: {literal}");
        match step(shell_words(&literal), command) {
            Step::Node(args) => self.start_node(&args, command),
            Step::Cli(args) => self.cli(&args, command),
            Step::Ci(words) => self.check_ci(&words),
        }
    }

    fn start_node(&mut self, args: &[String], command: &str) {
        let n = self.nodes.len() + 1;
        let log = self.scratch.path().join(format!("node-{n}.log"));
        let child = self
            .command(node_bin(), args)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("cannot start dawn-node");
        self.nodes.push((child, log));
        let api = flag_value(args, "--api-listen")
            .unwrap_or(DEFAULT_API)
            .to_owned();
        let what = format!("`{command}` to serve its API on {api}");
        wait_for(&what, DEADLINE, || {
            let (child, _) = self.nodes.last_mut().unwrap();
            if let Ok(Some(status)) = child.try_wait() {
                panic!("`{command}` exited with {status}:\n{}", self.logs());
            }
            api_answers(&api).then_some(())
        });
        if args.is_empty() {
            assert_eq!(api, DEFAULT_API);
            let key = self.default_data_root().join("node.key");
            assert!(
                key.exists(),
                "the first node should keep its data in ~/.local/share/dawn, but {} is missing",
                key.display()
            );
            self.shown.insert(OUTCOMES[0]);
        } else {
            self.shown.insert(OUTCOMES[3]);
        }
    }

    fn check_ci(&mut self, words: &[String]) {
        let path = workspace_root().join(".ci/run");
        let script = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let commands: Vec<&str> = script
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter(|l| l.contains("cargo"))
            .collect();
        let expected = format!("exec {} \"$@\"", words.join(" "));
        assert_eq!(
            commands,
            [expected.as_str()],
            ".ci/run must run exactly the README's test command `{}`",
            words.join(" ")
        );
        self.shown.insert(OUTCOMES[1]);
    }

    fn output(&self, args: &[String]) -> Output {
        self.command(cli_bin(), args)
            .output()
            .expect("cannot run dawn-cli")
    }

    fn cli(&mut self, args: &[String], command: &str) {
        // The subcommand, after the global `--data-root DIR`.
        let mut rest = args;
        while let [flag, _, tail @ ..] = rest {
            if flag != "--data-root" {
                break;
            }
            rest = tail;
        }
        let subcommand = rest.first().map(String::as_str).unwrap_or_default();
        let failed = |out: &Output| {
            format!(
                "`{command}` failed with {}:\nstdout: {}\nstderr: {}\n{}",
                out.status,
                stdout(out),
                stderr(out),
                self.logs()
            )
        };
        match subcommand {
            "status" => {
                let out = self.output(args);
                assert!(out.status.success(), "{}", failed(&out));
                self.check_status(&stdout(&out), command);
            }
            "peers" => {
                let id = self.first_id.clone().expect("`peers` before `status`");
                wait_for(&format!("`{command}` to list {id}"), DEADLINE, || {
                    let out = self.output(args);
                    (out.status.success() && stdout(&out).contains(&id)).then_some(())
                });
                self.shown.insert(OUTCOMES[4]);
            }
            "agents" => {
                let id = self.first_id.clone().expect("`agents` before `status`");
                wait_for(
                    &format!("`{command}` to list the system agent of {id}"),
                    DEADLINE,
                    || {
                        let out = self.output(args);
                        let listed = stdout(&out).lines().any(|line| {
                            let cells: Vec<&str> = line.split_whitespace().collect();
                            cells.first() == Some(&id.as_str()) && cells.contains(&"system")
                        });
                        (out.status.success() && listed).then_some(())
                    },
                );
                self.shown.insert(OUTCOMES[5]);
            }
            "call" => {
                let out = self.output(args);
                assert!(out.status.success(), "{}", failed(&out));
                assert_eq!(
                    stdout(&out).trim_end(),
                    "hello",
                    "`{command}` printed the wrong answer"
                );
                let id = self.first_id.as_deref().unwrap_or_default();
                if rest.get(1).map(String::as_str) == Some(format!("{id}/system").as_str()) {
                    self.shown.insert(OUTCOMES[6]);
                }
            }
            _ => {
                let out = self.output(args);
                assert!(out.status.success(), "{}", failed(&out));
            }
        }
    }

    fn check_status(&mut self, table: &str, command: &str) {
        let id = table
            .lines()
            .find_map(|line| line.strip_prefix("Node ID"))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("`{command}` printed no `Node ID` row:\n{table}"));
        assert!(
            id.starts_with("12D3KooW") && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "`{command}` printed a node id that is not a peer id: {id:?}\n{table}"
        );
        let dial = format!("/ip4/127.0.0.1/tcp/8000/p2p/{id}");
        assert!(
            table
                .lines()
                .any(|line| line.split_whitespace().any(|w| w == dial)),
            "`{command}` does not print the dialable address {dial}:\n{table}"
        );
        assert!(
            table.contains("/udp/8000/quic-v1/p2p/"),
            "the README says the first node listens on port 8000 with QUIC too:\n{table}"
        );
        let data_root = self.default_data_root();
        assert!(
            table.lines().any(|line| line.starts_with("Data root")
                && line.trim_end().ends_with(&*data_root.to_string_lossy())),
            "the first node should use ~/.local/share/dawn ({}):\n{table}",
            data_root.display()
        );
        self.first_id = Some(id);
        self.shown.insert(OUTCOMES[2]);
    }
}

#[test]
fn readme_quick_start_works_as_written() {
    let readme_path = workspace_root().join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", readme_path.display()));
    let commands: Vec<String> = SECTIONS
        .iter()
        .flat_map(|title| section_commands(&readme, title))
        .collect();
    for command in &commands {
        for (i, _) in command.match_indices("/tmp/") {
            assert!(
                command[i..].starts_with(SECOND_DATA_ROOT),
                "README command writes to a /tmp path other than {SECOND_DATA_ROOT}, \
                 which the test does not isolate: {command}"
            );
        }
    }
    assert!(
        readme.contains(&format!("HTTP API on `{DEFAULT_API}`")),
        "README no longer says the default API address is {DEFAULT_API}"
    );

    assert_ports_free();
    let mut quick_start = QuickStart::new();
    for command in &commands {
        quick_start.run(command);
    }
    let missing: Vec<&str> = OUTCOMES
        .iter()
        .filter(|o| !quick_start.shown.contains(*o))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "the README quick start no longer shows: {missing:?}\ncommands: {commands:#?}"
    );
}

#[test]
fn shell_words_follow_the_shell() {
    assert_eq!(
        shell_words(r#"call a/system echo --args '{"message":"hello"}'"#),
        [
            "call",
            "a/system",
            "echo",
            "--args",
            r#"{"message":"hello"}"#
        ]
    );
    assert_eq!(shell_words(r#"a "b c" d\ e ''"#), ["a", "b c", "d e", ""]);
}
