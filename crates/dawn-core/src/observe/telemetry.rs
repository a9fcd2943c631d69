//! Recording helpers for the call paths. Label values all come from fixed
//! sets (see `docs/metrics.md`); nothing here labels by peer or request id.

use std::time::Duration;

use serde_json::Value;

use crate::jsonrpc::CallError;

/// The component an error kind is attributed to in `dawn_errors_total`.
pub(crate) fn component_of(kind: &str) -> &'static str {
    match kind {
        "unreachable" | "connection_lost" | "network_timeout" | "protocol_violation"
        | "message_too_large" | "unknown_peer" => "transport",
        "rate_limited" | "busy" | "breaker_open" | "deadline_exceeded" | "retry_exhausted" => {
            "resilience"
        }
        "unauthorized" => "security",
        _ => "core",
    }
}

/// The metric label of an error: its kind, or `other`.
pub(crate) fn error_label(error: &CallError) -> &'static str {
    error.kind().map(|k| k.as_str()).unwrap_or("other")
}

/// Counts one error in `dawn_errors_total`.
pub(crate) fn record_error(kind: &'static str, component: &'static str) {
    metrics::counter!("dawn_errors_total", "kind" => kind, "component" => component).increment(1);
}

/// Values of the `direction` label of `dawn_calls_total`.
const DIRECTIONS: [&str; 3] = ["inbound", "outbound", "local"];

/// Values of the `method` label (`node::inbound::method_label`, plus
/// `invalid` for unparseable requests).
const METHODS: [&str; 15] = [
    "tools_call",
    "tools_list",
    "resources_read",
    "resources_list",
    "resource_templates_list",
    "prompts_get",
    "prompts_list",
    "ping",
    "describe",
    "agents",
    "registry_sync",
    "watch_resource",
    "complete",
    "other",
    "invalid",
];

/// `ok`, `other`, then the error kinds.
fn status_index(status: &str) -> Option<usize> {
    match status {
        "ok" => Some(0),
        "other" => Some(1),
        _ => dawn_resilience::ErrorKind::ALL
            .iter()
            .position(|k| k.as_str() == status)
            .map(|i| i + 2),
    }
}

fn call_slot(direction: &str, method: &str, status: &str) -> Option<usize> {
    let d = DIRECTIONS.iter().position(|x| *x == direction)?;
    let m = METHODS.iter().position(|x| *x == method)?;
    let s = status_index(status)?;
    let statuses = dawn_resilience::ErrorKind::ALL.len() + 2;
    Some((d * METHODS.len() + m) * statuses + s)
}

/// The handles of one `(direction, method, status)` combination.
struct CallHandles {
    calls: metrics::Counter,
    duration: metrics::Histogram,
}

/// Handles resolved once per combination, so the hot path skips the
/// recorder's key construction and lookup. Only used once dawn-observe's
/// recorder is installed (handles taken earlier would stay no-ops).
static CALL_HANDLES: std::sync::OnceLock<Box<[std::sync::OnceLock<CallHandles>]>> =
    std::sync::OnceLock::new();

/// Counts one call in `dawn_calls_total` (and its duration in
/// `dawn_call_duration_seconds` when given), and a failed one in
/// `dawn_errors_total`.
pub(crate) fn record_call(
    direction: &'static str,
    method: &'static str,
    status: &'static str,
    elapsed: Option<Duration>,
) {
    let cached = dawn_observe::metrics::is_installed()
        .then(|| call_slot(direction, method, status))
        .flatten()
        .and_then(|slot| {
            let slots = CALL_HANDLES.get_or_init(|| {
                let n = DIRECTIONS.len()
                    * METHODS.len()
                    * (dawn_resilience::ErrorKind::ALL.len() + 2);
                (0..n).map(|_| std::sync::OnceLock::new()).collect()
            });
            slots.get(slot).map(|h| {
                h.get_or_init(|| CallHandles {
                    calls: metrics::counter!("dawn_calls_total", "direction" => direction, "method" => method, "status" => status),
                    duration: metrics::histogram!("dawn_call_duration_seconds", "direction" => direction, "method" => method),
                })
            })
        });
    match cached {
        Some(handles) => {
            handles.calls.increment(1);
            if let Some(elapsed) = elapsed {
                handles.duration.record(elapsed.as_secs_f64());
            }
        }
        None => {
            metrics::counter!("dawn_calls_total", "direction" => direction, "method" => method, "status" => status)
                .increment(1);
            if let Some(elapsed) = elapsed {
                metrics::histogram!("dawn_call_duration_seconds", "direction" => direction, "method" => method)
                    .record(elapsed.as_secs_f64());
            }
        }
    }
    if status != "ok" {
        record_error(status, component_of(status));
    }
}

/// The `status` of a finished tool call of a local agent: `ok`,
/// `tool_error` when the tool's result has `isError: true`, or the kind.
pub(crate) fn tool_status(result: &Result<Value, CallError>) -> &'static str {
    match result {
        Ok(value) if value.get("isError").and_then(Value::as_bool) == Some(true) => "tool_error",
        Ok(_) => "ok",
        Err(error) => error_label(error),
    }
}

/// Counts one tool call served by a local agent.
///
/// Once a recorder is installed, the counter handles are kept (per agent,
/// tool and status) so that a call does not register the series again:
/// building its key and looking it up costs more than the increment.
pub(crate) fn record_tool_call(agent: &str, tool: &str, status: &'static str) {
    let register = || {
        metrics::counter!(
            "dawn_agent_tool_calls_total",
            "agent" => agent.to_owned(),
            "tool" => tool.to_owned(),
            "status" => status
        )
    };
    if !dawn_observe::metrics::is_installed() {
        register().increment(1);
        return;
    }
    let cache = TOOL_CALL_HANDLES.get_or_init(Default::default);
    let cached = cache
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(agent)
        .and_then(|tools| tools.get(tool))
        .and_then(|statuses| statuses.iter().find(|(s, _)| *s == status))
        .map(|(_, counter)| counter.clone());
    let counter = match cached {
        Some(counter) => counter,
        None => {
            let counter = register();
            cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(agent.to_owned())
                .or_default()
                .entry(tool.to_owned())
                .or_default()
                .push((status, counter.clone()));
            counter
        }
    };
    counter.increment(1);
}

/// Counter handles of `dawn_agent_tool_calls_total` by agent, tool, status.
/// Bounded: tool labels are the agent's own tool names or `other`.
type ToolCallHandles = std::collections::HashMap<
    String,
    std::collections::HashMap<String, Vec<(&'static str, metrics::Counter)>>,
>;
static TOOL_CALL_HANDLES: std::sync::OnceLock<std::sync::RwLock<ToolCallHandles>> =
    std::sync::OnceLock::new();

#[cfg(test)]
mod tests {
    use dawn_resilience::ErrorKind;

    use super::*;

    #[test]
    fn every_error_kind_has_a_component() {
        for kind in ErrorKind::ALL {
            let component = component_of(kind.as_str());
            assert!(
                ["transport", "resilience", "security", "core"].contains(&component),
                "{kind}"
            );
        }
        assert_eq!(component_of("breaker_open"), "resilience");
        assert_eq!(component_of("unreachable"), "transport");
        assert_eq!(component_of("unauthorized"), "security");
        assert_eq!(component_of("invalid_params"), "core");
    }

    #[test]
    fn every_call_label_has_a_cache_slot_of_its_own() {
        let mut seen = std::collections::HashSet::new();
        for d in DIRECTIONS {
            for m in METHODS {
                for s in ["ok", "other"]
                    .into_iter()
                    .chain(ErrorKind::ALL.iter().map(|k| k.as_str()))
                {
                    assert!(seen.insert(call_slot(d, m, s).unwrap()));
                }
            }
        }
        assert_eq!(call_slot("sideways", "tools_call", "ok"), None);
        // Every method label the node produces is cached and documented.
        let documented = dawn_observe::metrics::doc("dawn_calls_total")
            .unwrap()
            .labels
            .iter()
            .find(|l| l.name == "method")
            .unwrap()
            .values;
        for method in [
            "tools/call",
            "tools/list",
            "resources/read",
            "resources/list",
            "resources/templates/list",
            "prompts/get",
            "prompts/list",
            "ping",
            "dawn/describe",
            "dawn/agents",
            "dawn/registry_sync",
            "dawn/watch_resource",
            "completion/complete",
            "something/else",
        ] {
            let label = crate::node::method_label(method);
            assert!(METHODS.contains(&label), "{label}");
            assert!(
                documented.contains(&format!("`{label}`")),
                "{label} undocumented"
            );
        }
    }

    #[test]
    fn tool_status_reads_is_error() {
        assert_eq!(tool_status(&Ok(serde_json::json!({"content": []}))), "ok");
        assert_eq!(
            tool_status(&Ok(serde_json::json!({"content": [], "isError": true}))),
            "tool_error"
        );
        assert_eq!(
            tool_status(&Err(CallError::new(ErrorKind::InvalidParams, "x"))),
            "invalid_params"
        );
    }
}
