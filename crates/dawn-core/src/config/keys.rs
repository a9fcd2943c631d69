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
        "Browser origins allowed to use the MCP endpoints, e.g. `https://app.example.com:443`. Empty: requests with an `Origin` header are refused.",
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
            "| `{}` | {} | {} | `{}` | {} |\n",
            doc.key,
            doc.kind,
            default,
            env_var_name(doc.key),
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
        "## Example\n\n```toml\n[node]\ndata_root = \"/var/lib/dawn\"\nlisten = [\"/ip4/0.0.0.0/tcp/8000\", \"/ip4/0.0.0.0/udp/8000/quic-v1\"]\nbootstrap = [\"/ip4/10.0.0.2/tcp/8000/p2p/12D3KooW...\"]\n\n[api]\nlisten = \"127.0.0.1:9090\"\n\n[logging]\nlevel = \"info\"\nformat = \"json\"\n```\n",
    );
    out
}
