//! Rendering API answers for people (tables, tool results) and for scripts
//! (pretty JSON), and writing them without panicking on a closed pipe.

use std::{
    fmt::Write as _,
    io,
    time::{SystemTime, UNIX_EPOCH},
};

use comfy_table::{Cell, ContentArrangement, Table, presets};
use serde_json::Value;

use crate::api_client::{Agents, Peers, Status};

/// Writes `text` to stdout, adding a final newline if missing. A closed
/// pipe (`dawn-cli ... | head`) is not an error.
pub fn stdout(text: &str) -> anyhow::Result<()> {
    write_to(&mut io::stdout().lock(), text)
}

/// Writes `text` to stderr, adding a final newline if missing.
pub fn stderr(text: &str) -> anyhow::Result<()> {
    write_to(&mut io::stderr().lock(), text)
}

fn write_to(out: &mut impl io::Write, text: &str) -> anyhow::Result<()> {
    let result = out
        .write_all(text.as_bytes())
        .and_then(|()| {
            if text.ends_with('\n') || text.is_empty() {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush());
    match result {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write the output: {e}"))
        }
        _ => Ok(()),
    }
}

/// Pretty JSON (what `--json` prints).
pub fn json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if !header.is_empty() {
        table.set_header(header.to_vec());
    }
    table
}

fn finish(table: &mut Table) -> String {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.trim_fmt()
}

/// `1d 2h`, `3h 4m`, `5m 6s`, `7s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// The `status` table.
pub fn status(status: &Status) -> String {
    let mut t = table(&[]);
    let listen = if status.listen_addrs.is_empty() {
        "-".to_owned()
    } else {
        status.listen_addrs.join("\n")
    };
    let rows: [(&str, String); 9] = [
        ("Node ID", status.node_id.clone()),
        ("Version", status.version.clone()),
        (
            "State",
            if status.shutting_down {
                "shutting down".into()
            } else {
                "running".into()
            },
        ),
        ("Uptime", duration(status.uptime_secs)),
        ("API", status.api_addr.clone().unwrap_or_else(|| "-".into())),
        ("Data root", status.data_root.clone()),
        ("Listen", listen),
        ("Peers", format!("{} connected", status.peers_connected)),
        ("Agents", status.agents.join(", ")),
    ];
    for (key, value) in rows {
        t.add_row(vec![Cell::new(key), Cell::new(value)]);
    }
    finish(&mut t)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The `peers` table.
pub fn peers(peers: &Peers) -> String {
    if peers.peers.is_empty() {
        return "no peers connected".into();
    }
    let now = now_ms();
    let mut t = table(&[
        "PEER ID",
        "DIRECTION",
        "TRANSPORT",
        "ADDRESS",
        "CONNECTED",
        "RTT",
        "VERSION",
    ]);
    for p in &peers.peers {
        let connected = p
            .connected_since_ms
            .map(|since| duration(now.saturating_sub(since) / 1000))
            .unwrap_or_else(|| "-".into());
        let rtt = p
            .rtt_ms
            .map(|ms| format!("{ms:.1} ms"))
            .unwrap_or_else(|| "-".into());
        t.add_row(vec![
            p.peer_id.clone(),
            p.direction.clone(),
            p.transport.clone(),
            p.addresses.join("\n"),
            connected,
            rtt,
            p.agent_version.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    finish(&mut t)
}

/// The `agents` table; with `all`, remote agents too (and a PEER column).
pub fn agents(agents: &Agents, all: bool) -> String {
    let mut header = Vec::new();
    if all {
        header.extend(["PEER", "STATUS"]);
    }
    header.extend(["AGENT", "TOOLS", "RESOURCES", "PROMPTS", "DESCRIPTION"]);
    let mut t = table(&header);
    let local = agents.local.iter().map(|a| ("local", "local", a));
    let remote = agents.remote.iter().filter(|_| all).flat_map(|r| {
        let status = match (r.available, r.confirmed) {
            (true, true) => "available",
            (true, false) => "unconfirmed",
            (false, _) => "unavailable",
        };
        r.agents
            .iter()
            .map(move |a| (r.peer_id.as_str(), status, a))
    });
    for (peer, status, agent) in local.chain(remote) {
        let mut row = Vec::new();
        if all {
            row.push(peer.to_owned());
            row.push(status.to_owned());
        }
        let tools: Vec<&str> = agent.tools.iter().map(|t| t.name.as_str()).collect();
        row.extend([
            agent.id.clone(),
            tools.join(", "),
            agent.resources.to_string(),
            agent.prompts.to_string(),
            agent.description.clone(),
        ]);
        t.add_row(row);
    }
    let mut out = finish(&mut t);
    if all && agents.remote.is_empty() {
        out.push_str("\n(no remote agents known: no node of the mesh has announced any yet)");
    }
    out
}

/// The `tools` table for one or more `/api/v1/tools` answers.
pub fn tools(answers: &[Value]) -> String {
    let mut t = table(&["AGENT", "TOOL", "ARGUMENTS", "READ-ONLY", "DESCRIPTION"]);
    let mut any = false;
    for answer in answers {
        let agent = answer.get("agent").and_then(Value::as_str).unwrap_or("?");
        let list = answer
            .get("tools")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for tool in list {
            any = true;
            let read_only = match tool.pointer("/annotations/readOnlyHint") {
                Some(Value::Bool(true)) => "yes",
                Some(Value::Bool(false)) => "no",
                _ => "-",
            };
            t.add_row(vec![
                agent.to_owned(),
                tool.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned(),
                arguments(tool.get("inputSchema")),
                read_only.to_owned(),
                tool.get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ]);
        }
    }
    if !any {
        return "no tools".into();
    }
    finish(&mut t)
}

/// `name: type` per property of an input schema, `?` marking optional ones.
fn arguments(schema: Option<&Value>) -> String {
    let Some(properties) = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    else {
        return "-".into();
    };
    if properties.is_empty() {
        return "-".into();
    }
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    properties
        .iter()
        .map(|(name, prop)| {
            let optional = if required.contains(&name.as_str()) {
                ""
            } else {
                "?"
            };
            format!("{name}{optional}: {}", schema_type(prop))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn schema_type(prop: &Value) -> String {
    match prop.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("|"),
        _ if prop.get("enum").is_some() => "enum".into(),
        _ => "any".into(),
    }
}

/// A tool result rendered for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedResult {
    /// What to print.
    pub text: String,
    /// Whether the tool flagged the result as an error.
    pub is_error: bool,
}

/// Whether an MCP `CallToolResult` is flagged as an error.
pub fn is_error_result(result: &Value) -> bool {
    result.get("isError").and_then(Value::as_bool) == Some(true)
}

/// Renders an MCP `CallToolResult`: text content as plain text, structured
/// content as pretty JSON (text blocks that merely repeat it are skipped),
/// other content as a one-line summary.
pub fn call_result(result: &Value) -> RenderedResult {
    let structured = result.get("structuredContent").filter(|v| !v.is_null());
    let mut text = String::new();
    let mut push = |s: &str| {
        text.push_str(s);
        if !s.ends_with('\n') {
            text.push('\n');
        }
    };
    if let Some(value) = structured {
        push(&json(value));
    }
    let blocks = result
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for block in blocks {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" => {
                let s = block.get("text").and_then(Value::as_str).unwrap_or("");
                let repeats_structured = structured
                    .is_some_and(|v| serde_json::from_str::<Value>(s).ok().as_ref() == Some(v));
                if !repeats_structured {
                    push(s);
                }
            }
            "image" | "audio" => push(&binary_summary(kind, block)),
            "resource" => {
                let resource = block.get("resource").unwrap_or(&Value::Null);
                match resource.get("text").and_then(Value::as_str) {
                    Some(s) => push(s),
                    None => push(&binary_summary("resource", resource)),
                }
            }
            "resource_link" => {
                let uri = block.get("uri").and_then(Value::as_str).unwrap_or("?");
                push(&format!("[resource link: {uri}]"));
            }
            _ => push(&block.to_string()),
        }
    }
    RenderedResult {
        text,
        is_error: is_error_result(result),
    }
}

/// `[image: image/png, 1234 bytes]`, from a base64 `data`/`blob` member.
fn binary_summary(kind: &str, block: &Value) -> String {
    let mut s = format!("[{kind}");
    if let Some(uri) = block.get("uri").and_then(Value::as_str) {
        let _ = write!(s, " {uri}");
    }
    if let Some(mime) = block.get("mimeType").and_then(Value::as_str) {
        let _ = write!(s, ": {mime}");
    }
    let data = block
        .get("data")
        .or_else(|| block.get("blob"))
        .and_then(Value::as_str);
    if let Some(data) = data {
        let padding = data.bytes().rev().take_while(|&b| b == b'=').count();
        let bytes = (data.len() / 4 * 3).saturating_sub(padding);
        let _ = write!(s, ", {bytes} bytes");
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(7), "7s");
        assert_eq!(duration(366), "6m 6s");
        assert_eq!(duration(3 * 3600 + 240), "3h 4m");
        assert_eq!(duration(86_400 + 7200), "1d 2h");
    }

    #[test]
    fn text_results_print_as_text() {
        let r = call_result(&json!({"content": [{"type": "text", "text": "hello"}]}));
        assert_eq!(r.text, "hello\n");
        assert!(!r.is_error);
    }

    #[test]
    fn structured_results_print_as_json_once() {
        let value = json!({"a": 1});
        let r = call_result(&json!({
            "content": [{"type": "text", "text": value.to_string()}],
            "structuredContent": value,
        }));
        assert_eq!(r.text, "{\n  \"a\": 1\n}\n");
    }

    #[test]
    fn error_results_are_flagged() {
        let r =
            call_result(&json!({"content": [{"type": "text", "text": "boom"}], "isError": true}));
        assert!(r.is_error);
        assert_eq!(r.text, "boom\n");
    }

    #[test]
    fn binary_content_is_summarised() {
        let r = call_result(&json!({"content": [
            {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"}
        ]}));
        assert_eq!(r.text, "[image: image/png, 5 bytes]\n");
    }

    #[test]
    fn tool_arguments_mark_optional_ones() {
        let schema = json!({"type": "object", "properties": {
            "message": {"type": "string"}, "count": {"type": ["integer", "null"]}
        }, "required": ["message"]});
        let out = arguments(Some(&schema));
        assert!(out.contains("message: string"), "{out}");
        assert!(out.contains("count?: integer|null"), "{out}");
        assert_eq!(arguments(Some(&json!({"type": "object"}))), "-");
    }

    #[test]
    fn tables_have_headers_and_rows() {
        let out = tools(&[json!({"agent": "system", "tools": [
            {"name": "echo", "description": "Echoes", "inputSchema": {"properties": {"message": {"type": "string"}}, "required": ["message"]},
             "annotations": {"readOnlyHint": true}}
        ]})]);
        let mut lines = out.lines();
        assert!(lines.next().unwrap().starts_with("AGENT"), "{out}");
        let row = lines.next().unwrap();
        assert!(
            row.starts_with("system") && row.contains("echo") && row.contains("yes"),
            "{out}"
        );
        assert_eq!(tools(&[]), "no tools");
    }
}
