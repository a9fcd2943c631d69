//! The small part of JSON-RPC 2.0 the node needs: parse a request, build a
//! response, carry an error object.

use dawn_resilience::ErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A JSON-RPC request or notification (no `id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The caller's id; absent for notifications. Kept verbatim in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// The method, e.g. `tools/call`.
    pub method: String,
    /// Parameters, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl Request {
    /// A request with an id.
    pub fn new(id: impl Into<Value>, method: impl Into<String>, params: Option<Value>) -> Self {
        Request {
            jsonrpc: "2.0".into(),
            id: Some(id.into()),
            method: method.into(),
            params,
        }
    }

    /// A notification (no response expected).
    pub fn notification(method: impl Into<String>, params: Option<Value>) -> Self {
        Request {
            jsonrpc: "2.0".into(),
            id: None,
            method: method.into(),
            params,
        }
    }

    /// Whether this is a notification.
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }

    /// Serializes to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A JSON-RPC error object, as returned to clients and peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct CallError {
    /// The JSON-RPC error code (see `docs/errors.md`).
    pub code: i64,
    /// A human-readable message.
    pub message: String,
    /// Structured details; Dawn errors carry at least `{"kind": "<label>"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl CallError {
    /// An error of a given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CallError {
            code: kind.jsonrpc_code(),
            message: message.into(),
            data: Some(json!({ "kind": kind.as_str() })),
        }
    }

    /// Adds a field to `data`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        match &mut self.data {
            Some(Value::Object(map)) => {
                map.insert(key.to_owned(), value.into());
            }
            _ => self.data = Some(json!({ key: value.into() })),
        }
        self
    }

    /// The taxonomy kind, if the code is one of Dawn's.
    pub fn kind(&self) -> Option<ErrorKind> {
        ErrorKind::from_jsonrpc_code(self.code).ok()
    }
}

/// A JSON-RPC response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The id of the request answered (null if it could not be read).
    pub id: Value,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CallError>,
}

impl Response {
    /// A success response.
    pub fn ok(id: Value, result: Value) -> Self {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: Some(result),
            error: None,
        }
    }

    /// An error response.
    pub fn err(id: Value, error: CallError) -> Self {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(error),
        }
    }

    /// Serializes to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses response bytes from a peer; anything malformed becomes an error.
    pub fn parse(bytes: &[u8]) -> Result<Response, CallError> {
        let response: Response = serde_json::from_slice(bytes).map_err(|e| {
            CallError::new(
                ErrorKind::ProtocolViolation,
                format!("peer sent a malformed response: {e}"),
            )
        })?;
        if response.result.is_some() == response.error.is_some() {
            return Err(CallError::new(
                ErrorKind::ProtocolViolation,
                "peer sent a response with both or neither of result and error",
            ));
        }
        Ok(response)
    }

    /// The result, or the error.
    pub fn into_result(self) -> Result<Value, CallError> {
        match (self.result, self.error) {
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
            (None, None) => Ok(Value::Null),
        }
    }
}

/// Parses a request. On failure returns the id (if one could be read) and
/// the error to answer with: parse error for bad JSON, invalid request for
/// JSON that is not a JSON-RPC 2.0 request.
pub fn parse_request(bytes: &[u8]) -> Result<Request, (Value, CallError)> {
    // Fast path: a well-formed request decodes straight into `Request`.
    if let Ok(request) = serde_json::from_slice::<Request>(bytes)
        && request.jsonrpc == "2.0"
        && matches!(request.id, None | Some(Value::String(_) | Value::Number(_)))
    {
        return Ok(request);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        (
            Value::Null,
            CallError::new(ErrorKind::ParseError, format!("invalid JSON: {e}")),
        )
    })?;
    request_from_value(value)
}

/// Like [`parse_request`] for an already-parsed value.
pub fn request_from_value(value: Value) -> Result<Request, (Value, CallError)> {
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    if !matches!(id, Value::Null | Value::String(_) | Value::Number(_)) {
        return Err((
            Value::Null,
            CallError::new(
                ErrorKind::InvalidRequest,
                "id must be a string, a number or absent",
            ),
        ));
    }
    if value.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((
            id,
            CallError::new(ErrorKind::InvalidRequest, "jsonrpc must be \"2.0\""),
        ));
    }
    serde_json::from_value::<Request>(value).map_err(|e| {
        (
            id,
            CallError::new(
                ErrorKind::InvalidRequest,
                format!("not a JSON-RPC request: {e}"),
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_notifications() {
        let r = parse_request(br#"{"jsonrpc":"2.0","id":"abc","method":"ping"}"#).unwrap();
        assert_eq!(r.id, Some(json!("abc")));
        let n = parse_request(br#"{"jsonrpc":"2.0","method":"notifications/x"}"#).unwrap();
        assert!(n.is_notification());
    }

    #[test]
    fn rejects_malformed_input_with_the_right_codes() {
        let (id, e) = parse_request(b"{not json").unwrap_err();
        assert_eq!((id, e.code), (Value::Null, -32700));
        let (id, e) = parse_request(br#"{"jsonrpc":"1.0","id":5,"method":"x"}"#).unwrap_err();
        assert_eq!((id, e.code), (json!(5), -32600));
        let (_, e) = parse_request(br#"{"jsonrpc":"2.0","id":5}"#).unwrap_err();
        assert_eq!(e.code, -32600);
        let (_, e) = parse_request(br#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#).unwrap_err();
        assert_eq!(e.code, -32600);
        let (_, e) = parse_request(br#"[1,2]"#).unwrap_err();
        assert_eq!(e.code, -32600);
    }

    #[test]
    fn errors_carry_kind_and_extra_data() {
        let e = CallError::new(ErrorKind::RateLimited, "slow down").with("retry_after_ms", 250);
        assert_eq!(e.kind(), Some(ErrorKind::RateLimited));
        assert_eq!(
            e.data,
            Some(json!({"kind": "rate_limited", "retry_after_ms": 250}))
        );
    }

    #[test]
    fn responses_round_trip_and_bad_ones_are_refused() {
        let ok = Response::ok(json!(1), json!({"x": 1}));
        assert_eq!(Response::parse(&ok.to_bytes()).unwrap(), ok);
        assert!(Response::parse(br#"{"jsonrpc":"2.0","id":1}"#).is_err());
        assert!(Response::parse(b"garbage").is_err());
    }
}
