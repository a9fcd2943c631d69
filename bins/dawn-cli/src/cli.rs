//! Command-line syntax: every command, argument and flag, with the help
//! text that `--help` shows (and that `docs/cli.md` is generated from).

use std::{path::PathBuf, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand};
use dawn_core::AgentAddress;
use serde_json::{Map, Value};

const AFTER_HELP: &str = "\
Finding the node:
  The API address is read from <data-root>/api.addr, which a running dawn-node
  writes, and the bearer token from <data-root>/api.token. The data directory is
  --data-root, else $DAWN_NODE__DATA_ROOT, else node.data_root from --config,
  else the default (~/.local/share/dawn, or $XDG_DATA_HOME/dawn).
  With --api URL the address is given directly; the token is then taken from
  --token-file, else $DAWN_API_TOKEN, else <data-root>/api.token.

Exit status:
  0  success
  1  the node, the API or the tool reported an error, or the node is unreachable
  2  invalid command line (unknown flag, malformed --args JSON, ...)";

/// Talk to a running Dawn node: inspect it, list agents and tools, call
/// tools, load-test it, and bridge MCP clients to it over stdio.
#[derive(Debug, Parser)]
#[command(name = "dawn-cli", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Options shared by all commands (accepted before or after the command).
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by all commands.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Data directory of the node to talk to (its api.addr and api.token are used).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "DAWN_NODE__DATA_ROOT",
        hide_env_values = true
    )]
    pub data_root: Option<PathBuf>,

    /// Node config file (TOML or YAML) to take node.data_root from, when
    /// --data-root and $DAWN_NODE__DATA_ROOT are not given.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Node API base URL, e.g. http://127.0.0.1:9090, instead of the
    /// address in <data-root>/api.addr. Plain HTTP only.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "DAWN_API_URL",
        hide_env_values = true
    )]
    pub api: Option<String>,

    /// File holding the API bearer token (mode 0600), instead of
    /// $DAWN_API_TOKEN or <data-root>/api.token.
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Print machine-readable JSON (the API's response, pretty-printed)
    /// instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the node's id, version, uptime, addresses, peer count and agents.
    Status,

    /// List the peers the node is connected to.
    Peers,

    /// List the node's agents (with --all, those of every node in the mesh
    /// registry too).
    ///
    /// With --all, the STATUS column says whether a node is `available`
    /// (heard from recently), `unavailable` (not heard from within
    /// registry.liveness_timeout, or shut down), or `unconfirmed` (from the
    /// node's cache at start, no peer confirmed it yet). With --json, prints
    /// the API's answer (`node_id`, `local`, and with --all `remote`: one
    /// entry per node with `peer_id`, `agents`, `available`, `confirmed`,
    /// `version` and `last_heard_ms`).
    Agents {
        /// Also list the agents of the other nodes of the mesh, with their
        /// peer id and status.
        #[arg(long)]
        all: bool,
    },

    /// List tools: of one agent, or of every local agent.
    ///
    /// The table shows each tool's arguments (`name: type`, `?` marking
    /// optional ones) and whether it is read-only. With --json, prints the
    /// API's answer (`agent`, `tools`: MCP tool objects with `inputSchema`);
    /// without AGENT, a JSON array with one such answer per local agent.
    Tools {
        /// Agent address: a local agent id (e.g. `system`) or
        /// `<peer-id>/<agent>` for an agent on a peer. Omit it to list the
        /// tools of all local agents.
        #[arg(value_name = "AGENT")]
        agent: Option<String>,
    },

    /// Call a tool and print its result.
    ///
    /// Text content is printed as plain text and structured content as
    /// pretty JSON. A result flagged as an error is printed to stderr and
    /// the exit status is 1. With --json, prints the API's answer
    /// (`{"result": <MCP CallToolResult>}`); the exit status is still 1 when
    /// the result is flagged as an error. Errors reported by the node read
    /// `error: <message> (<kind>, code <code>)`.
    Call {
        /// Agent address: a local agent id or `<peer-id>/<agent>`.
        #[arg(value_name = "AGENT")]
        agent: String,
        /// Tool name.
        #[arg(value_name = "TOOL")]
        tool: String,
        /// Tool arguments as a JSON object, e.g. '{"message":"hi"}';
        /// `@FILE` reads them from a file and `@-` from stdin. Default: {}.
        #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
        args: Option<Map<String, Value>>,
        /// Give up on the call after this many seconds (sent to the node as
        /// the call's deadline). Default: the node's own call timeout.
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
    },

    /// Load-test a tool through the node's API and report throughput and
    /// latency.
    ///
    /// N workers call the tool back to back for the given duration over one
    /// shared, pooled HTTP client. Failed calls (including results flagged
    /// as errors) are counted as errors and left out of the latency figures.
    /// One call is made before the run; if it fails (unknown agent or tool,
    /// invalid arguments) the error is reported and nothing is measured.
    ///
    /// The report gives the calls made (successful and failed), the errors
    /// by kind, successful calls per second and the latency p50/p90/p99/max
    /// in milliseconds. With --json it is an object with `calls`, `ok`,
    /// `errors`, `error_kinds`, `calls_per_sec`, `latency_ms` (`min`, `mean`,
    /// `p50`, `p90`, `p99`, `max`; null if no call succeeded), `elapsed_secs`
    /// and the run's parameters. The exit status is 1 if no call succeeded.
    Bench(BenchArgs),

    /// Serve MCP on stdin/stdout, bridged to the node (for MCP clients that
    /// launch a command, such as Claude Desktop).
    ///
    /// Newline-delimited JSON-RPC read on stdin (the MCP stdio transport) goes
    /// to the node's Streamable HTTP endpoint, and everything the node sends
    /// (responses, notifications, and its own requests such as sampling or
    /// elicitation) is written to stdout, which carries nothing else. Without
    /// --agent the client sees the whole mesh (`/mcp`: every agent of this
    /// node and of its peers, names prefixed); with --agent, one agent with
    /// its own tool names.
    ///
    /// The node is checked first (an authenticated GET /api/v1/status): if it
    /// cannot be reached or refuses the token, one line on stderr and exit
    /// status 1, before stdin is read. A line that is not JSON is answered
    /// with a JSON-RPC parse error (-32700) and the bridge carries on. When
    /// stdin closes, answers still owed are awaited (up to 5 s), then the MCP
    /// session is closed (HTTP DELETE) and the exit status is 0; SIGTERM,
    /// SIGINT and SIGHUP close the session at once, also with status 0. If
    /// the node ends the session for good, the reason is one line on stderr
    /// and the exit status is 1. Logs go to stderr, and only with -v or
    /// $RUST_LOG.
    ///
    /// Claude Desktop (claude_desktop_config.json):
    /// {"mcpServers": {"dawn": {"command": "dawn-cli", "args": ["mcp"]}}}
    Mcp(McpArgs),

    /// Back up, verify and restore the node's state (see docs/backup.md).
    ///
    /// An archive (`.tar.zst`) holds a consistent snapshot of the database, the
    /// node key file as it is (still encrypted if it was), the audit log, the
    /// configuration and a manifest (each file's size and SHA-256) signed by the
    /// node key.
    #[command(subcommand)]
    Backup(BackupCommand),

    /// Show and set peers' trust levels on the running node: who may
    /// connect, list, and call tools that change state (see
    /// docs/security.md).
    #[command(subcommand)]
    Trust(crate::security_cli::TrustCommand),

    /// Verify and read the security audit log in <data-root>/audit (works
    /// whether or not the node runs).
    #[command(subcommand)]
    Audit(crate::security_cli::AuditCommand),

    /// The node key in <data-root>/node.key: show it, create it, encrypt or
    /// decrypt it, change its passphrase. Passphrases come from
    /// --passphrase-file / --new-passphrase-file, $DAWN_PASSPHRASE /
    /// $DAWN_NEW_PASSPHRASE, or a prompt on a terminal.
    #[command(subcommand)]
    Identity(crate::security_cli::IdentityCommand),

    /// The API bearer token.
    #[command(subcommand)]
    Token(crate::security_cli::TokenCommand),

    /// Show the node's health: overall status, readiness and each component
    /// check (store, transport, peers, disk, mounted MCP servers, alerts).
    ///
    /// Reads GET /health and GET /health/ready (no token needed unless
    /// observability.health.require_token is set). The exit status is 0
    /// when the node is healthy or degraded and 1 when it is unhealthy or
    /// cannot be reached, so it can serve as a container health check:
    /// HEALTHCHECK CMD ["dawn-cli", "health"]. With --ready the exit status
    /// follows readiness instead (0 only when ready to receive traffic).
    /// With --json, prints the /health report with the readiness report
    /// under `ready`.
    Health(HealthArgs),

    /// Verify a downloaded release before installing it: SHA256SUMS must
    /// carry a valid Ed25519 signature (SHA256SUMS.sig) by the release key,
    /// and every listed file present in DIR must match its checksum.
    ///
    /// Listed files that are absent are reported and skipped (at least one
    /// must be present). Exit status 0 when everything checks out, 1 on a
    /// bad signature, a checksum mismatch or a malformed SHA256SUMS. Works
    /// offline. See docs/deployment.md.
    VerifyRelease(crate::verify_release::VerifyReleaseArgs),

    /// Write man pages and shell completions under DIR (used by `cargo
    /// xtask dist`).
    #[command(hide = true)]
    GenerateAssets {
        /// Output directory (man/ and completions/ are created in it).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Options of `dawn-cli health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Check readiness only (GET /health/ready): exit 0 when ready.
    #[arg(long)]
    pub ready: bool,
    /// Give up after this many seconds (unreachable counts as unhealthy).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// `dawn-cli backup ...`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write a backup archive of the node.
    ///
    /// With a node running on the data directory (or with --api), the node
    /// writes the archive itself while it keeps running (POST /api/v1/backup);
    /// --out is then a directory on the node's machine. Without a running node
    /// the data directory is opened directly (and locked meanwhile); an
    /// encrypted node key is unlocked with $DAWN_PASSPHRASE (or
    /// security.passphrase_file) to sign the manifest. With --json, prints the
    /// summary: path, bytes, duration_ms, node_id, created, tables, files,
    /// pruned.
    Create {
        /// Directory to write the archive into. Default: backup.dir, else
        /// <data-root>/backups.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Keep only the newest N archives of this node in the directory,
        /// deleting older ones (0: keep all).
        #[arg(long, value_name = "N")]
        keep: Option<u32>,
    },
    /// List the backup archives in a directory (default: backup.dir, else
    /// <data-root>/backups), oldest first.
    List {
        /// The directory.
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Check an archive: format and version, signature, every file's size and
    /// checksum, the database opens with the rows listed, the key belongs to
    /// the node that signed, the audit chain verifies. Exit status 1 with the
    /// failing file named if anything is wrong.
    Verify {
        /// The archive (.tar.zst).
        #[arg(value_name = "ARCHIVE")]
        archive: PathBuf,
    },
    /// Restore an archive into the data directory (--data-root).
    ///
    /// Refused while a node runs on it. The archive is verified first (into a
    /// staging directory next to the data directory); then the current data
    /// directory is moved aside to <data-root>.pre-restore-<time> (kept; the
    /// path is printed) and the restored one is renamed into place. If
    /// anything fails, the original data directory is left or put back as it
    /// was. The api.token and backups/ of the current directory are carried
    /// over. Restoring an archive made by a newer Dawn is refused.
    Restore {
        /// The archive (.tar.zst).
        #[arg(value_name = "ARCHIVE")]
        archive: PathBuf,
    },
}

/// Options of `dawn-cli mcp`.
#[derive(Debug, Clone, Args)]
pub struct McpArgs {
    /// Serve one agent instead of the whole mesh: a local agent id (e.g.
    /// `system`, served from /mcp/agents/<agent>) or `<peer-id>/<agent>` for
    /// an agent on a peer (/mcp/peers/<peer-id>/agents/<agent>).
    #[arg(long, value_name = "ADDRESS", value_parser = parse_agent_address)]
    pub agent: Option<AgentAddress>,
    /// Log the bridge's activity to stderr (-v: info, -vv: debug, -vvv:
    /// trace). $RUST_LOG, when set, chooses the filter instead.
    #[arg(long, short = 'v', action = ArgAction::Count)]
    pub verbose: u8,
}

/// Options of `dawn-cli bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Agent to call: a local agent id or `<peer-id>/<agent>`.
    #[arg(long, value_name = "AGENT")]
    pub target: String,
    /// Tool to call.
    #[arg(long, value_name = "TOOL", default_value = "echo")]
    pub tool: String,
    /// Number of concurrent workers.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// How long to run, in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Size in bytes of the `message` sent to the echo tool (ignored for
    /// other tools and when --args is given).
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    pub size: usize,
    /// Tool arguments as a JSON object (or `@FILE`, `@-`); replaces the
    /// generated echo message. Default for tools other than echo: {}.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub args: Option<Map<String, Value>>,
}

/// Parses `--agent`: `<agent>` or `<peer-id>/<agent>`.
fn parse_agent_address(raw: &str) -> Result<AgentAddress, String> {
    raw.trim().parse().map_err(|e: dawn_core::AddressError| {
        format!("{e} (use <agent> for a local agent or <peer-id>/<agent>)")
    })
}

/// Parses `--args`: a JSON object, `@FILE` or `@-` (stdin).
fn parse_json_object(raw: &str) -> Result<Map<String, Value>, String> {
    let (text, origin) = match raw.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("cannot read JSON from stdin: {e}"))?;
            (text, "stdin".to_owned())
        }
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read JSON file {path}: {e}"))?;
            (text, path.to_owned())
        }
        None => (raw.to_owned(), "the argument".to_owned()),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "expected a JSON object like '{{\"message\":\"hi\"}}', got {} in {origin}",
            json_type(&other)
        )),
        Err(e) => Err(format!("invalid JSON in {origin}: {e}")),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a positive number of seconds, e.g. `10` or `0.5`.
fn parse_seconds(raw: &str) -> Result<Duration, String> {
    let secs: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("{raw:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err("must be a positive number of seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let before =
            Cli::try_parse_from(["dawn-cli", "--json", "--data-root", "/d", "status"]).unwrap();
        let after =
            Cli::try_parse_from(["dawn-cli", "status", "--data-root", "/d", "--json"]).unwrap();
        for cli in [before, after] {
            assert!(cli.global.json);
            assert_eq!(cli.global.data_root, Some(PathBuf::from("/d")));
        }
    }

    #[test]
    fn args_must_be_a_json_object() {
        assert_eq!(
            parse_json_object(r#"{"message":"hi"}"#).unwrap()["message"],
            "hi"
        );
        assert!(
            parse_json_object("[1]")
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(
            parse_json_object("{oops")
                .unwrap_err()
                .contains("invalid JSON")
        );
    }

    #[test]
    fn seconds_accept_fractions_and_reject_nonsense() {
        assert_eq!(parse_seconds("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn mcp_agent_addresses() {
        let cli = Cli::try_parse_from(["dawn-cli", "mcp"]).unwrap();
        let Command::Mcp(mcp) = cli.command else {
            panic!("not mcp")
        };
        assert!(mcp.agent.is_none());
        assert_eq!(mcp.verbose, 0);

        let peer = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let remote = format!("{peer}/system");
        let cli = Cli::try_parse_from(["dawn-cli", "mcp", "--agent", &remote, "-vv"]).unwrap();
        let Command::Mcp(mcp) = cli.command else {
            panic!("not mcp")
        };
        assert_eq!(mcp.agent.unwrap().to_string(), remote);
        assert_eq!(mcp.verbose, 2);

        for bad in ["Nope", "nope/system", "a/b/c", ""] {
            let err = Cli::try_parse_from(["dawn-cli", "mcp", "--agent", bad]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bench_defaults() {
        let cli = Cli::try_parse_from(["dawn-cli", "bench", "--target", "system"]).unwrap();
        let Command::Bench(bench) = cli.command else {
            panic!("not bench")
        };
        assert_eq!(bench.tool, "echo");
        assert_eq!(bench.concurrency, 16);
        assert_eq!(bench.duration, Duration::from_secs(10));
        assert_eq!(bench.size, 256);
    }
}
