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

/// The keys documented here; [`KEYS`] adds those of the sections owned by
/// other crates.
const OWN_KEYS: &[KeyDoc] = &[
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
        "Peers dialed at start and redialed while disconnected (with backoff, see `node.redial_interval`); they are protected from connection pruning. Each must end in `/p2p/<peer-id>` so the peer's identity is verified. Without any, a restarted node rejoins from its address book.",
    ),
    key(
        "node.shutdown_grace",
        "duration",
        "On SIGTERM/SIGINT, how long the node waits for in-flight calls before closing connections.",
    ),
    key(
        "node.redial_interval",
        "duration",
        "How often bootstrap and remembered (address book) peers that are not connected are considered for a redial. Each peer's dials are further spaced by the `resilience.retry.dial` backoff; remembered peers are dialed only while fewer than `transport.low_watermark` peers are connected, bootstrap peers always.",
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
        "transport.low_watermark",
        "integer",
        "Connection manager: when more than `transport.high_watermark` peers are connected, the least useful unprotected ones (no recent calls, connected longest ago) are disconnected down to this many. Discovered peers are dialed automatically only while fewer than this many are connected.",
    ),
    key(
        "transport.high_watermark",
        "integer",
        "Connection manager: the number of connected peers above which pruning starts (1 to 10000, at least `transport.low_watermark`). Bootstrap peers are never pruned.",
    ),
    key(
        "discovery.mdns",
        "bool",
        "Find peers on the local network with mDNS (each node answers under a random instance name). mDNS only advertises addresses of the interface it answers on: listen on `0.0.0.0` or a LAN address for it to be useful.",
    ),
    key(
        "discovery.kademlia",
        "bool",
        "Run the Kademlia DHT under `/dawn/kad/1.0.0`: bootstrapped from the first connected peers, refreshed every `discovery.kad_refresh_interval`, with random walks that find peers beyond the bootstrap list. Off: the node knows only bootstrap peers, the address book, mDNS and the peers that connect to it.",
    ),
    key(
        "discovery.kad_refresh_interval",
        "duration",
        "How often the Kademlia routing table is refreshed and a random walk looks for new peers (1s to 1d).",
    ),
    key(
        "discovery.auto_dial",
        "bool",
        "Dial peers found by mDNS or Kademlia while fewer than `transport.low_watermark` peers are connected (each peer's dials back off as in `node.redial_interval`).",
    ),
    key(
        "discovery.address_ttl",
        "duration",
        "Addresses in the peer address book not seen for this long are dropped, and peers left without addresses are forgotten (1m to 365d). Checked every quarter of this (at most hourly), and only while the node is connected to a peer, so a node that was offline keeps its book to rejoin.",
    ),
    key(
        "registry.announce_interval",
        "duration",
        "How often the node publishes a signed heartbeat on the registry gossip topic (its record is published whenever its agents, tools, resources, prompts or addresses change). The first heartbeat goes out 3 s after start (or after this interval, if shorter). 100ms to 1h.",
    ),
    key(
        "registry.liveness_timeout",
        "duration",
        "A node not heard from (no newer record or heartbeat) for this long has its agents marked unavailable everywhere; a node that shuts down gracefully is marked at once. At least twice `registry.announce_interval`. With the defaults, a node that dies is marked unavailable at most 26s after its last heartbeat (timeout plus a 1s sweep).",
    ),
    key(
        "registry.expiry",
        "duration",
        "A node unavailable for this long is removed from the registry (a tombstone keeps its version for another period so old copies do not return). At least `registry.liveness_timeout`, at most 30d.",
    ),
    key(
        "registry.sync_interval",
        "duration",
        "Anti-entropy: besides on every new connection, the node compares its registry with one random connected peer this often.",
    ),
    key(
        "registry.max_record_size",
        "size",
        "Largest signed registry record accepted or announced (4KiB to 1020KiB). Larger announcements are rejected as `too_large`. If this node's own record would be larger (too many agents or tool schemas), it logs an error and keeps announcing its previous record.",
    ),
    key(
        "resilience.rate_limit.enabled",
        "bool",
        "Limit the rate of inbound calls per peer (GCRA, keyed by peer id; idle peers are forgotten, so memory stays bounded). A call over the limit is refused with `rate_limited` (-32005) and `data.retry_after_ms`. See docs/resilience.md.",
    ),
    key(
        "resilience.rate_limit.max_requests",
        "integer",
        "Calls a peer may make per `time_window` (also the burst size), for peers whose trust level has no quota under `per_trust_level`. 1 to 1000000.",
    ),
    key(
        "resilience.rate_limit.time_window",
        "duration",
        "The window of `max_requests`; one more call is admitted every `time_window / max_requests`.",
    ),
    key(
        "resilience.rate_limit.per_trust_level.trusted.max_requests",
        "integer",
        "Calls per window for `trusted` peers. Quotas for other levels go in `[resilience.rate_limit.per_trust_level.<level>]` with `max_requests` and `time_window` (`untrusted`, `unknown`, `verified`, `trusted`, `bootstrap`); levels without an entry use the default quota.",
    ),
    key(
        "resilience.rate_limit.per_trust_level.trusted.time_window",
        "duration",
        "The window of the `trusted` quota.",
    ),
    key(
        "resilience.rate_limit.per_trust_level.bootstrap.max_requests",
        "integer",
        "Calls per window for `bootstrap` peers.",
    ),
    key(
        "resilience.rate_limit.per_trust_level.bootstrap.time_window",
        "duration",
        "The window of the `bootstrap` quota.",
    ),
    key(
        "resilience.bulkhead.enabled",
        "bool",
        "Limit how many inbound calls one peer may have in flight at once (resource watches are not counted).",
    ),
    key(
        "resilience.bulkhead.max_concurrent",
        "integer",
        "Inbound calls in flight per peer. 1 to 100000.",
    ),
    key(
        "resilience.bulkhead.max_wait",
        "duration",
        "How long a call beyond `max_concurrent` waits for a slot before it is refused with `busy` (-32006). 0s to 1m.",
    ),
    key(
        "resilience.bulkhead.max_waiting",
        "integer",
        "Calls per peer that may wait for a slot at once; further calls are refused with `busy` at once, so there is never an unbounded queue. 0 to 100000.",
    ),
    key(
        "resilience.circuit_breaker.enabled",
        "bool",
        "Keep a circuit breaker per peer for outbound calls: after repeated failures (dial failed, connection lost, timeout, peer busy or shutting down) calls to that peer fail fast with `breaker_open` (-32007) and `data.retry_after_ms`, until a trial call succeeds.",
    ),
    key(
        "resilience.circuit_breaker.failure_threshold",
        "integer",
        "Consecutive failed calls to a peer that open its breaker. 1 to 10000.",
    ),
    key(
        "resilience.circuit_breaker.timeout",
        "duration",
        "How long an open breaker refuses calls before it lets trial calls through (half-open).",
    ),
    key(
        "resilience.circuit_breaker.failure_ratio",
        "number",
        "The breaker also opens when at least this share of the calls in `window` failed (once there were `min_calls`). More than 0 to 1.",
    ),
    key(
        "resilience.circuit_breaker.window",
        "duration",
        "Sliding window of `failure_ratio`; a breaker unused this long is forgotten.",
    ),
    key(
        "resilience.circuit_breaker.min_calls",
        "integer",
        "Calls in `window` needed before `failure_ratio` applies. 1 to 1000000.",
    ),
    key(
        "resilience.circuit_breaker.half_open_max_calls",
        "integer",
        "Trial calls let through while half-open; when that many succeed the breaker closes, and a failed trial opens it again. 1 to 1000.",
    ),
    key(
        "resilience.retry.max_attempts",
        "integer",
        "Attempts per outbound call, the first included, for calls that are safe to repeat (reads, and tools annotated `readOnlyHint` or `idempotentHint`) failing with `unreachable`, `network_timeout`, `connection_lost` or `busy`. Other calls are never retried. 1 (no retries) to 10.",
    ),
    key(
        "resilience.retry.initial_backoff",
        "duration",
        "Upper bound of the delay before the first retry; each further bound doubles up to `max_backoff`, and each delay is random between half and all of its bound (jitter).",
    ),
    key(
        "resilience.retry.max_backoff",
        "duration",
        "Upper bound of any delay between retries. At most 5m.",
    ),
    key(
        "resilience.retry.budget_ratio",
        "number",
        "Retry budget: each call earns this many retry tokens and each retry spends one, so retries add at most this share of load on a failing peer. 0 to 1.",
    ),
    key(
        "resilience.retry.budget_max_tokens",
        "integer",
        "Most retry tokens that can be saved up (the budget starts full). 0 to 100000.",
    ),
    key(
        "resilience.retry.dial.initial_backoff",
        "duration",
        "After dialing a peer (redials of bootstrap and remembered peers), the next dial waits at least half of this; the bound doubles with every dial up to `max_backoff`, so a dead or flapping peer cannot cause a dial storm.",
    ),
    key(
        "resilience.retry.dial.max_backoff",
        "duration",
        "Upper bound of the wait between two dials of the same peer.",
    ),
    key(
        "resilience.retry.dial.stable_after",
        "duration",
        "How long a connection must stay up before the dial backoff of that peer starts over; a peer that keeps dropping connections sooner keeps backing off.",
    ),
    key(
        "resilience.deadlines.default",
        "duration",
        "Deadline of a call when the caller gives none. The remaining time travels with the call to the remote node, which stops the agent's work when it passes; the caller gets `deadline_exceeded` (-32008), never a hang.",
    ),
    key(
        "resilience.deadlines.max",
        "duration",
        "Largest deadline accepted: longer ones asked for by local callers or sent by remote peers are cut to this.",
    ),
    key(
        "logging.level",
        "string",
        "`error`, `warn`, `info`, `debug`, `trace`, or `RUST_LOG`-style directives such as `info,dawn_transport=debug`. Also set by `LOG_LEVEL` and `RUST_LOG` (lower precedence than `DAWN_LOGGING__LEVEL`).",
    ),
    key(
        "logging.format",
        "`text` or `json`",
        "Log line format on stderr (and in the log file). Also set by `LOG_FORMAT`. `json` writes one object per line with `timestamp`, `level`, `target`, `message`, the event's fields and the fields of its spans (`node_id`, `peer_id`, `request_id`, ...) at the top level; see docs/observability.md.",
    ),
    KeyDoc {
        key: "logging.file",
        kind: "path",
        description: "Also append logs to this file (created with its parent directories).",
        default_doc: Some("unset"),
    },
    key(
        "logging.rotation",
        "`never`, `daily` or a size",
        "When the log file is rotated: `never` (rotate it externally, e.g. logrotate with `copytruncate`), `daily` (at the first line of each UTC day), or a size such as `100MiB` (before a line would take it past that size). `dawn.log` becomes `dawn.log.1`, `dawn.log.1` becomes `dawn.log.2`, and so on.",
    ),
    key(
        "logging.keep",
        "integer",
        "Rotated log files kept besides the current one (0 to 1000); older ones are deleted.",
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
        "security.trust_level_default",
        "`untrusted`, `unknown`, `verified`, `trusted` or `bootstrap`",
        "Trust level of peers with no record (not pinned by `trusted_peers`/`blocked_peers`, not set with `dawn-cli trust set`, not a `node.bootstrap` peer). With the default `unknown` such a peer can connect, discover, list and call read-only tools, but not tools that may change state. See docs/security.md.",
    ),
    key(
        "security.reject_unknown",
        "bool",
        "Refuse peers that have no trust record: their connections are closed at once and all their requests are refused. Give peers a record with `security.trusted_peers`, `node.bootstrap` or `dawn-cli trust set`.",
    ),
    key(
        "security.trusted_peers",
        "list of peer ids",
        "Peers pinned at `trusted` (may call state-changing tools; never pruned by the connection manager). Pins are read at start and cannot be changed with `dawn-cli trust set`.",
    ),
    key(
        "security.blocked_peers",
        "list of peer ids",
        "Peers pinned at `untrusted`: banned at start, every connection refused, every request denied. A peer may not be in both lists.",
    ),
    key(
        "security.encryption_at_rest",
        "bool",
        "Create the node key (`node.key`) encrypted with a passphrase (argon2id + AES-256-GCM) when the node first starts. The passphrase comes from `DAWN_PASSPHRASE`, else `security.passphrase_file`, else an interactive prompt (dawn-node on a terminal). An existing plain key is not changed: use `dawn-cli identity encrypt`.",
    ),
    key(
        "security.require_passphrase",
        "bool",
        "Refuse to start unless the node key is encrypted and the passphrase unlocks it. Recommended in production.",
    ),
    KeyDoc {
        key: "security.passphrase_file",
        kind: "path",
        description: "File holding the node key passphrase (mode 0600; one trailing newline is ignored), used when `DAWN_PASSPHRASE` is not set.",
        default_doc: Some("unset"),
    },
    key(
        "security.policy.min_level.connect",
        "trust level",
        "Lowest level that may open or keep a connection. `untrusted` peers are always refused; no minimum may be `untrusted`.",
    ),
    key(
        "security.policy.min_level.discover",
        "trust level",
        "Lowest level whose registry records (announcements) are accepted and that is sent ours.",
    ),
    key(
        "security.policy.min_level.list_tools",
        "trust level",
        "Lowest level that may list an agent's tools, resources and prompts.",
    ),
    key(
        "security.policy.min_level.call_read_only_tools",
        "trust level",
        "Lowest level that may call tools that declare themselves read-only (MCP `readOnlyHint`). Cannot be stricter than `call_tools`.",
    ),
    key(
        "security.policy.min_level.call_tools",
        "trust level",
        "Lowest level that may call any other tool (one that may change state), and MCP methods the node does not know.",
    ),
    key(
        "security.policy.min_level.read_resources",
        "trust level",
        "Lowest level that may read (and watch) resources.",
    ),
    key(
        "security.policy.min_level.get_prompts",
        "trust level",
        "Lowest level that may get prompts (and completions).",
    ),
    KeyDoc {
        key: "security.policy.agents",
        kind: "table",
        description: "Per-agent minimums: `[security.policy.agents.<agent>]` with `min_level` (raises every minimum for that agent) and `tools = { <tool> = \"<level>\" }` (the exact minimum for calls of that tool; it may also loosen one). State-changing tools of the built-in agents need `trusted` unless named here.",
        default_doc: Some("`{}`"),
    },
    key(
        "security.reputation.half_life_secs",
        "integer",
        "Seconds for a peer's misbehaviour score to decay halfway back to 0.",
    ),
    key(
        "security.reputation.disconnect_below",
        "number",
        "Disconnect a peer whose score falls below this (-100 to 0).",
    ),
    key(
        "security.reputation.ban_below",
        "number",
        "Ban a peer whose score falls below this (-100 to 0, not above `disconnect_below`).",
    ),
    key(
        "security.reputation.ban_duration_secs",
        "integer",
        "How long a reputation ban lasts, in seconds; the peer is let in again when it ends.",
    ),
    key(
        "security.reputation.penalties.protocol_violation",
        "number",
        "Points subtracted when a peer breaks the protocol.",
    ),
    key(
        "security.reputation.penalties.malformed_message",
        "number",
        "Points subtracted for a message that does not decode (e.g. a request that is not JSON-RPC).",
    ),
    key(
        "security.reputation.penalties.oversized_message",
        "number",
        "Points subtracted for a message over the size limit.",
    ),
    key(
        "security.reputation.penalties.forged_record",
        "number",
        "Points subtracted for a forged registry record.",
    ),
    key(
        "security.reputation.penalties.rate_limit_exceeded",
        "number",
        "Points subtracted when a peer exceeds a rate limit, at most once per `rate_limit_interval_secs`.",
    ),
    key(
        "security.reputation.rate_limit_interval_secs",
        "integer",
        "A peer whose calls are refused by the rate limit loses `penalties.rate_limit_exceeded` at most once per this many seconds (0 to 86400; 0: for every refused call). A burst costs one penalty; with the defaults, about 100 s of sustained abuse gets a peer disconnected and about 3 min banned.",
    ),
    key(
        "security.audit.max_file_size",
        "size",
        "The audit log (`<data_root>/audit/audit.jsonl`) is rotated to `audit.NNNNNN.jsonl` before it grows beyond this; the hash chain continues across files. 4KiB to 1TiB.",
    ),
    key(
        "security.audit.fsync",
        "bool",
        "Sync each batch of audit records to disk (survives a machine crash). `false` only hands them to the OS.",
    ),
    key(
        "security.audit.allowed",
        "`state_changing`, `all` or `none`",
        "Which allowed peer requests are recorded; denials, connections, trust changes, API auth failures and key events always are. `state_changing`: calls of tools not declared read-only. `all` also records listings and read-only calls (one record per request).",
    ),
    key(
        "security.audit.queue_capacity",
        "integer",
        "Audit records queued for the writer thread; when full, records are dropped, counted in `dawn_audit_records_dropped_total` and noted in the log by an `audit_records_dropped` record.",
    ),
    key(
        "backup.interval",
        "duration",
        "How often the running node writes a backup archive (database snapshot, node key, audit log, configuration, signed manifest; see docs/backup.md). The first one is written one interval after start. `0s` (the default) turns scheduled backups off; `dawn-cli backup create` works either way. 1s to 366d.",
    ),
    KeyDoc {
        key: "backup.dir",
        kind: "path",
        description: "Directory for backup archives (scheduled, and `dawn-cli backup create` without `--out`); created with mode 0700. Put it on another disk, or copy the archives off the machine. `~/` is expanded.",
        default_doc: Some("`<data_root>/backups`"),
    },
    key(
        "backup.keep",
        "integer",
        "After each backup, keep only this many archives of this node in `backup.dir`, deleting the oldest (only files named `dawn-backup-*.tar.zst` whose manifest names this node). 0 keeps all.",
    ),
];

/// The `observability` keys, documented next to their schema in dawn-observe.
const OBSERVABILITY_KEYS: &[dawn_observe::config::ConfigKeyDoc] = dawn_observe::config::KEYS;

const ALL_KEYS_LEN: usize = OWN_KEYS.len() + OBSERVABILITY_KEYS.len();

const ALL_KEYS: [KeyDoc; ALL_KEYS_LEN] = {
    let mut out = [key("", "", ""); ALL_KEYS_LEN];
    let mut i = 0;
    while i < OWN_KEYS.len() {
        out[i] = OWN_KEYS[i];
        i += 1;
    }
    let mut j = 0;
    while j < OBSERVABILITY_KEYS.len() {
        let d = OBSERVABILITY_KEYS[j];
        out[i + j] = key(d.key, d.kind, d.description);
        j += 1;
    }
    out
};

/// Every configuration key.
pub const KEYS: &[KeyDoc] = &ALL_KEYS;

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
    out.push_str(
        "**Reloading.** `dawn-node` re-reads its configuration (file, environment and flags) \
         on SIGHUP (`systemctl reload dawn-node`, `kill -HUP <pid>`). Keys marked *Reloadable* \
         below take effect at once; every other key that changed is logged as needing a restart \
         and keeps its running value. An invalid configuration is refused as a whole and the \
         node keeps running as it was. Each reload is written to the audit log \
         (`config_reloaded`) and counted in `dawn_config_reloads_total`. Reloadable keys: ",
    );
    out.push_str(
        &super::RELOADABLE_KEYS
            .iter()
            .map(|key| format!("`{key}`"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push_str(".\n\n");
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
            if super::is_reloadable(doc.key) {
                format!("{} *Reloadable.*", doc.description)
            } else {
                doc.description.to_owned()
            }
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
