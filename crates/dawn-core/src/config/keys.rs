//! The documented list of every config key; `docs/configuration.md` is
//! rendered from it and a test keeps it equal to the schema.

use serde_json::Value;

use super::{DawnConfig, load::env_var_name};

/// Documentation of one configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// Dotted key path, e.g. `api.listen`.
    pub key: &'static str,
    /// Value type as users write it.
    pub kind: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Shown instead of the computed default when that depends on the machine.
    pub default_doc: Option<&'static str>,
}

const fn key(key: &'static str, kind: &'static str, description: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        kind,
        description,
        default_doc: None,
    }
}

/// Every configuration key.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "node.data_root",
        kind: "path",
        description: "Directory holding the node key (`node.key`), API token (`api.token`), database (`dawn.redb`) and runtime files. Created with mode 0700. `~/` is expanded.",
        default_doc: Some("`$XDG_DATA_HOME/dawn`, else `~/.local/share/dawn`"),
    },
    key(
        "node.listen",
        "list of multiaddrs",
        "Peer-to-peer listen addresses: TCP (`/ip4/0.0.0.0/tcp/8000`), QUIC (`/ip4/0.0.0.0/udp/8000/quic-v1`). Port 0 picks a free port.",
    ),
    key(
        "node.bootstrap",
        "list of multiaddrs",
        "Peers dialed at start and redialed while disconnected. Each must end in `/p2p/<peer-id>` so the peer's identity is verified.",
    ),
    key(
        "node.shutdown_grace",
        "duration",
        "On SIGTERM/SIGINT, how long the node waits for in-flight calls before closing connections.",
    ),
    key(
        "node.redial_interval",
        "duration",
        "How often bootstrap and remembered peers that are not connected are dialed again.",
    ),
    key(
        "api.enabled",
        "bool",
        "Serve the HTTP API (status, peers, agents, calls).",
    ),
    key(
        "api.listen",
        "socket address",
        "Address of the HTTP API. Keep it on 127.0.0.1 unless a reverse proxy with TLS is in front; port 0 picks a free port (written to `<data_root>/api.addr`).",
    ),
    key(
        "api.require_token",
        "bool",
        "Require `Authorization: Bearer <token>` on `/api` and `/mcp`. Set to `false` only for local tests with clients that cannot send headers; refused unless `api.listen` is a loopback address.",
    ),
    key(
        "transport.max_message_size",
        "size",
        "Largest RPC message (request or response) sent or accepted; larger ones are refused with `message_too_large`. 1KiB to 64MiB.",
    ),
    key(
        "transport.call_timeout",
        "duration",
        "Deadline of a call when the caller gives none. The deadline travels to the remote node, which stops work when it passes.",
    ),
    key(
        "transport.connect_timeout",
        "duration",
        "How long dialing a peer and opening the RPC stream may take.",
    ),
    key(
        "transport.idle_connection_timeout",
        "duration",
        "How long a connection with no open streams is kept.",
    ),
    key(
        "logging.level",
        "string",
        "`error`, `warn`, `info`, `debug`, `trace`, or `RUST_LOG`-style directives such as `info,dawn_transport=debug`. Also set by `LOG_LEVEL` and `RUST_LOG` (lower precedence than `DAWN_LOGGING__LEVEL`).",
    ),
    key(
        "logging.format",
        "`text` or `json`",
        "Log line format on stderr (and in the log file). Also set by `LOG_FORMAT`.",
    ),
    key(
        "mcp.enabled",
        "bool",
        "Serve the MCP endpoints `/mcp`, `/mcp/agents/{agent}` and `/mcp/peers/{peer}/agents/{agent}` on the API server.",
    ),
    key(
        "mcp.allowed_hosts",
        "list of strings",
        "`Host` header values accepted besides loopback and the API address (protection against DNS rebinding), e.g. `dawn.example.com:443`.",
    ),
    key(
        "mcp.allowed_origins",
        "list of strings",
        "Browser origins allowed to use the MCP endpoints (`*` matches any port), e.g. `https://app.example.com:443`. Default: pages served from loopback (`http://127.0.0.1:*`, `http://localhost:*`, `http://[::1]:*`), which are local processes anyway; the bearer token is still required. Empty list: every request with an `Origin` header is refused.",
    ),
    key(
        "mcp.max_body_size",
        "size",
        "Largest MCP request body; larger ones get HTTP 413.",
    ),
    key(
        "mcp.page_size",
        "integer",
        "Items per page of tools/resources/prompts lists (1 to 1000); clients follow `nextCursor`.",
    ),
    key(
        "mcp.conformance_agent",
        "bool",
        "Serve the built-in `conformance` agent with the fixtures of the official MCP conformance suite. For testing only.",
    ),
    key(
        "mcp.servers",
        "list of tables",
        "External MCP servers mounted as agents of this node (`[[mcp.servers]]` in TOML). Each is a command spoken to over stdio (spawned, supervised, restarted with backoff; its stderr goes to the node's log) or a Streamable HTTP URL (reconnected with backoff). Their tools, resources and prompts appear on the mesh like a native agent's; while a server is down its agent stays registered with no tools, resources or prompts, and requests to it fail with `unreachable` (naming the last error and when the next attempt is due; calls to its former tools get `unknown_tool`). A server that cannot start does not stop the node. The keys of one entry follow.",
    ),
    KeyDoc {
        key: "mcp.servers[].id",
        kind: "string",
        description: "Agent id of the server (1-48 characters `a-z`, `0-9`, `_`, `-`, starting with a letter); unique on the node.",
        default_doc: Some("required"),
    },
    KeyDoc {
        key: "mcp.servers[].description",
        kind: "string",
        description: "What the agent offers, as shown to peers and clients.",
        default_doc: Some("the server's own instructions or name"),
    },
    KeyDoc {
        key: "mcp.servers[].command",
        kind: "string",
        description: "stdio: program to run, a path or a name looked up in `PATH`. Exactly one of `command` and `url` is set. The child gets the node's environment without its `DAWN_*` variables, plus `env`; it runs in its own process group, which is stopped (stdin closed, then SIGTERM, then SIGKILL) when the node stops.",
        default_doc: Some("unset"),
    },
    KeyDoc {
        key: "mcp.servers[].args",
        kind: "list of strings",
        description: "stdio: arguments of `command`.",
        default_doc: Some("`[]`"),
    },
    KeyDoc {
        key: "mcp.servers[].env",
        kind: "table of strings",
        description: "stdio: environment variables set for `command`.",
        default_doc: Some("`{}`"),
    },
    KeyDoc {
        key: "mcp.servers[].cwd",
        kind: "path",
        description: "stdio: working directory of `command`.",
        default_doc: Some("the node's working directory"),
    },
    KeyDoc {
        key: "mcp.servers[].url",
        kind: "string",
        description: "Streamable HTTP: the server's MCP endpoint, `http://` or `https://`.",
        default_doc: Some("unset"),
    },
    KeyDoc {
        key: "mcp.servers[].bearer_token_env",
        kind: "string",
        description: "Streamable HTTP: name of an environment variable of the node that holds a bearer token for the server (sent as `Authorization: Bearer ...`). If the variable is unset the server is reported `failed` and not retried.",
        default_doc: Some("unset"),
    },
    KeyDoc {
        key: "mcp.servers[].headers",
        kind: "table of strings",
        description: "Streamable HTTP: extra headers sent with every request.",
        default_doc: Some("`{}`"),
    },
    KeyDoc {
        key: "mcp.servers[].startup_timeout",
        kind: "duration",
        description: "How long starting may take: spawning or connecting, the MCP handshake and the first listing of tools, resources and prompts.",
        default_doc: Some("`30s`"),
    },
    KeyDoc {
        key: "mcp.servers[].call_timeout",
        kind: "duration",
        description: "Longest time a call forwarded to the server may take; the caller's deadline applies when it is shorter. On timeout or cancellation the server gets `notifications/cancelled`.",
        default_doc: Some("`5m`"),
    },
    KeyDoc {
        key: "mcp.servers[].restart.initial_backoff",
        kind: "duration",
        description: "First delay before restarting (stdio) or reconnecting (HTTP) after a failure. Delays double up to `max_backoff`, each with random jitter between half and all of its value.",
        default_doc: Some("`1s`"),
    },
    KeyDoc {
        key: "mcp.servers[].restart.max_backoff",
        kind: "duration",
        description: "Largest delay between restarts or reconnects.",
        default_doc: Some("`1m`"),
    },
    KeyDoc {
        key: "mcp.servers[].restart.reset_after",
        kind: "duration",
        description: "Once the server has stayed up this long, the next failure starts again from `initial_backoff`.",
        default_doc: Some("`1m`"),
    },
    key(
        "logging.file",
        "path",
        "Also append logs to this file. Unset by default.",
    ),
];

/// Leaf keys of the default configuration, with their values.
pub(crate) fn default_leaves() -> Vec<(String, Value)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => out.push((prefix.to_owned(), other.clone())),
        }
    }
    let mut out = Vec::new();
    let value = serde_json::to_value(DawnConfig::default()).unwrap_or(Value::Null);
    walk("", &value, &mut out);
    out
}

fn render_default(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        Value::Array(items) if items.is_empty() => "`[]`".into(),
        Value::Array(items) => items
            .iter()
            .map(render_default)
            .collect::<Vec<_>>()
            .join(", "),
        other => format!("`{other}`"),
    }
}

/// The environment column: keys inside a list of tables (`a.b[].c`) have no
/// variable of their own; the whole list is set through the list's variable.
fn env_column(key: &str) -> String {
    match key.split_once("[]") {
        Some((list, _)) => format!("in `{}`", env_var_name(list)),
        None => format!("`{}`", env_var_name(key)),
    }
}

/// Renders `docs/configuration.md`.
pub fn render_markdown() -> String {
    let defaults = default_leaves();
    let mut out = String::from(
        "# Configuration\n\n\
         <!-- Generated by `cargo xtask docs` from crates/dawn-core/src/config/keys.rs; do not edit. -->\n\n\
         Dawn reads, lowest precedence first: embedded defaults, a config file given with \
         `--config FILE` (TOML if it ends in `.toml`, YAML if `.yaml`/`.yml`), environment \
         variables, then command-line flags. Unknown keys are errors. `dawn-node --check-config` \
         validates and exits; `dawn-node --print-config` prints the effective configuration.\n\n\
         Environment variables are `DAWN_` followed by the key path in capitals with `__` between \
         levels, e.g. `DAWN_NODE__DATA_ROOT=/data`. Values are parsed like TOML values, so lists are \
         written `DAWN_NODE__LISTEN='[\"/ip4/0.0.0.0/tcp/8000\"]'`. Other `DAWN_` variables without \
         `__` (such as `DAWN_API_TOKEN`) are not config keys.\n\n\
         Durations are written `500ms`, `30s`, `5m`, `2h`, `1d` or as a number of seconds. Sizes are \
         written `512KiB`, `4MiB`, `1GiB`, `10MB` or as a number of bytes.\n\n",
    );
    let mut section = "";
    for doc in KEYS {
        let this_section = doc.key.split('.').next().unwrap_or_default();
        if this_section != section {
            section = this_section;
            out.push_str(&format!(
                "## `[{section}]`\n\n| Key | Type | Default | Environment | Description |\n|---|---|---|---|---|\n"
            ));
        }
        let default = match doc.default_doc {
            Some(d) => d.to_owned(),
            None => defaults
                .iter()
                .find(|(k, _)| k == doc.key)
                .map(|(_, v)| render_default(v))
                .unwrap_or_else(|| "unset".into()),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            doc.key,
            doc.kind,
            default,
            env_column(doc.key),
            doc.description
        ));
        let next_section = KEYS
            .iter()
            .skip_while(|d| d.key != doc.key)
            .nth(1)
            .map(|d| d.key.split('.').next().unwrap_or_default());
        if next_section != Some(section) {
            out.push('\n');
        }
    }
    out.push_str(
        "## Example\n\n```toml\n[node]\ndata_root = \"/var/lib/dawn\"\nlisten = [\"/ip4/0.0.0.0/tcp/8000\", \"/ip4/0.0.0.0/udp/8000/quic-v1\"]\nbootstrap = [\"/ip4/10.0.0.2/tcp/8000/p2p/12D3KooW...\"]\n\n[api]\nlisten = \"127.0.0.1:9090\"\n\n[logging]\nlevel = \"info\"\nformat = \"json\"\n\n\
         # A local MCP server spoken to over stdio, mounted as agent `files`.\n\
         [[mcp.servers]]\nid = \"files\"\ncommand = \"npx\"\nargs = [\"-y\", \"@modelcontextprotocol/server-filesystem\", \"/srv/shared\"]\n\n\
         # A remote Streamable HTTP server, mounted as agent `search`.\n\
         [[mcp.servers]]\nid = \"search\"\nurl = \"https://mcp.example.com/mcp\"\nbearer_token_env = \"SEARCH_MCP_TOKEN\"\n\
         restart = { initial_backoff = \"2s\", max_backoff = \"5m\" }\n```\n",
    );
    out
}
