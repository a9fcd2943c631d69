//! The node's error taxonomy: one stable kind per failure a caller can see.

use std::fmt;

macro_rules! error_kinds {
    ($( $(#[$doc:meta])* $variant:ident = ($code:expr, $label:literal, $retry:expr, $desc:literal), )*) => {
        /// Every error a client or peer can observe, with a stable JSON-RPC code
        /// and metric label.
        ///
        /// Codes in the JSON-RPC reserved range (-32700, -32600..-32603) keep
        /// their standard meaning; -32002 is MCP's "resource not found"; the rest
        /// of -32001..-32099 are Dawn's own. Codes and labels never change once
        /// released: clients match on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum ErrorKind {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorKind {
            /// Every kind, in code order (used to generate `docs/errors.md`).
            pub const ALL: &'static [ErrorKind] = &[ $( ErrorKind::$variant, )* ];

            /// The JSON-RPC error code sent on the wire.
            pub const fn jsonrpc_code(self) -> i64 {
                match self { $( ErrorKind::$variant => $code, )* }
            }

            /// The stable snake_case name, used as the `kind` metric label and in
            /// the `data.kind` field of JSON-RPC errors.
            pub const fn as_str(self) -> &'static str {
                match self { $( ErrorKind::$variant => $label, )* }
            }

            /// Whether repeating the same call later can succeed (the failure is
            /// about conditions, not about the request itself). Whether a retry
            /// is *safe* also depends on the call being idempotent.
            pub const fn is_transient(self) -> bool {
                match self { $( ErrorKind::$variant => $retry, )* }
            }

            /// A one-line explanation for documentation.
            pub const fn description(self) -> &'static str {
                match self { $( ErrorKind::$variant => $desc, )* }
            }
        }
    };
}

error_kinds! {
    /// The message was not valid JSON.
    ParseError = (-32700, "parse_error", false, "The message was not valid JSON."),
    /// The message was JSON but not a valid JSON-RPC 2.0 request.
    InvalidRequest = (-32600, "invalid_request", false, "The message was JSON but not a valid JSON-RPC 2.0 request."),
    /// The method does not exist on the target.
    MethodNotFound = (-32601, "method_not_found", false, "The method does not exist on the target agent."),
    /// The parameters (for tools: the arguments) do not match the schema.
    InvalidParams = (-32602, "invalid_params", false, "The parameters do not match what the method expects; for tool calls, the arguments failed validation against the tool's input schema and `data.errors` lists each failing field."),
    /// A bug or unexpected condition inside the node or agent.
    Internal = (-32603, "internal", false, "An unexpected condition inside the node or the agent."),
    /// The caller is not allowed to do this.
    Unauthorized = (-32001, "unauthorized", false, "The caller is not allowed to perform this operation."),
    /// The named resource does not exist (MCP's standard code).
    UnknownResource = (-32002, "unknown_resource", false, "The resource URI is not served by the agent (MCP's standard resource-not-found code)."),
    /// No agent with that id on the target node.
    UnknownAgent = (-32003, "unknown_agent", false, "No agent with that id exists on the target node."),
    /// The agent has no tool with that name.
    UnknownTool = (-32004, "unknown_tool", false, "The agent has no tool with that name."),
    /// The caller exceeded its rate limit; `data.retry_after_ms` says when to retry.
    RateLimited = (-32005, "rate_limited", true, "The caller exceeded its rate limit; `data.retry_after_ms` says when to try again."),
    /// The target has too many calls in flight from this caller.
    Busy = (-32006, "busy", true, "The target has too many calls in flight from this caller (`data.max_concurrent`) and no slot freed up within `resilience.bulkhead.max_wait`; try again shortly."),
    /// The local circuit breaker for that peer is open.
    BreakerOpen = (-32007, "breaker_open", true, "Calls to that peer are failing; the local circuit breaker is open and `data.retry_after_ms` says when it will try again."),
    /// The call's deadline passed before it completed.
    DeadlineExceeded = (-32008, "deadline_exceeded", true, "The call did not finish before its deadline; the remote side stops working on it."),
    /// The peer is not known to this node.
    UnknownPeer = (-32009, "unknown_peer", false, "The peer id is malformed or no address is known for it."),
    /// The peer could not be reached (dial failed, protocol unsupported).
    Unreachable = (-32010, "unreachable", true, "The peer could not be reached: dialing failed or it does not speak the Dawn RPC protocol."),
    /// The connection failed while the call was in flight.
    ConnectionLost = (-32011, "connection_lost", true, "The connection to the peer closed while the call was in flight; the call may or may not have run."),
    /// A message exceeded the configured maximum size.
    MessageTooLarge = (-32012, "message_too_large", false, "A request or response exceeded the configured maximum message size (`transport.max_message_size`)."),
    /// Retries were attempted and all failed.
    RetryExhausted = (-32013, "retry_exhausted", true, "A call that is safe to repeat was retried and every attempt failed, or a retry was due but the retry budget was spent; `data.attempts` counts the attempts, `data.budget_exhausted` says which, and `data.last_error` is the error of the last attempt."),
    /// The node is shutting down and accepts no new work.
    ShuttingDown = (-32014, "shutting_down", true, "The node is shutting down and accepts no new calls."),
    /// A network operation (dial, stream open) timed out.
    NetworkTimeout = (-32015, "network_timeout", true, "A network operation such as dialing or opening a stream timed out."),
    /// The agent has no prompt with that name.
    UnknownPrompt = (-32016, "unknown_prompt", false, "The agent has no prompt with that name."),
    /// The peer broke the wire protocol.
    ProtocolViolation = (-32017, "protocol_violation", false, "The peer sent a message that breaks the Dawn RPC protocol."),
    /// The call was cancelled by the caller.
    Cancelled = (-32018, "cancelled", false, "The caller cancelled the call."),
}

/// A JSON-RPC error code that is not part of Dawn's taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("JSON-RPC error code {0} is not a Dawn error kind")]
pub struct UnknownErrorCode(pub i64);

impl ErrorKind {
    /// The kind for a JSON-RPC error code.
    pub fn from_jsonrpc_code(code: i64) -> Result<ErrorKind, UnknownErrorCode> {
        ErrorKind::ALL
            .iter()
            .copied()
            .find(|k| k.jsonrpc_code() == code)
            .ok_or(UnknownErrorCode(code))
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_and_labels_are_unique_and_round_trip() {
        let mut codes = HashSet::new();
        let mut labels = HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(
                codes.insert(kind.jsonrpc_code()),
                "duplicate code for {kind}"
            );
            assert!(labels.insert(kind.as_str()), "duplicate label for {kind}");
            assert_eq!(ErrorKind::from_jsonrpc_code(kind.jsonrpc_code()), Ok(*kind));
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert!(ErrorKind::from_jsonrpc_code(-1).is_err());
    }

    #[test]
    fn mandated_codes_are_stable() {
        assert_eq!(ErrorKind::Unauthorized.jsonrpc_code(), -32001);
        assert_eq!(ErrorKind::UnknownResource.jsonrpc_code(), -32002);
        assert_eq!(ErrorKind::RateLimited.jsonrpc_code(), -32005);
        assert_eq!(ErrorKind::InvalidParams.jsonrpc_code(), -32602);
    }
}
