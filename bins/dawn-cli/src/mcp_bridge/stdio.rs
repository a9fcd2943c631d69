//! The client's side of the bridge: newline-delimited JSON-RPC on a byte
//! stream pair (stdin/stdout), as an rmcp [`Transport`] in the server role
//! (it receives what an MCP client sends and sends what a server answers).
//!
//! rmcp has such a transport (`AsyncRwTransport`), but it drops lines that
//! are not JSON without a word (on purpose, upstream issue rust-sdk#938). A
//! bridge should tell the client instead, so this one answers such a line
//! with a JSON-RPC parse error (-32700, `"id": null`) and JSON that is not a
//! JSON-RPC message with an invalid-request error (-32600), then carries on.
//! Everything else is plain framing: one message per line, `\r\n` and a
//! UTF-8 byte-order mark tolerated, lines longer than a limit refused
//! without buffering them.

use std::{io, sync::Arc};

use rmcp::{
    RoleServer,
    model::{ClientJsonRpcMessage, ErrorCode, RequestId, ServerJsonRpcMessage},
    transport::Transport,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader},
    sync::Mutex,
};

/// Longest line (one message) accepted, as rmcp's own stdio transport.
pub const MAX_LINE_LENGTH: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Newline-delimited JSON-RPC over `R` (incoming) and `W` (outgoing).
pub struct StdioTransport<R, W> {
    reader: BufReader<R>,
    /// The line being read; kept across cancelled `receive` calls.
    line: Vec<u8>,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    max_line_length: usize,
    writer: Arc<Mutex<Option<W>>>,
}

impl<R, W> StdioTransport<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    /// A transport reading messages from `reader` and writing to `writer`.
    pub fn new(reader: R, writer: W) -> Self {
        StdioTransport {
            reader: BufReader::new(reader),
            line: Vec::new(),
            discarding: false,
            max_line_length: MAX_LINE_LENGTH,
            writer: Arc::new(Mutex::new(Some(writer))),
        }
    }

    /// Changes the longest line accepted (for tests).
    #[cfg(test)]
    pub fn with_max_line_length(mut self, max: usize) -> Self {
        self.max_line_length = max;
        self
    }

    /// Reads up to the next `\n` into `self.line`, never holding more than
    /// `max_line_length` bytes. Cancel-safe: bytes read stay in `self.line`.
    async fn read_line(&mut self) -> LineRead {
        loop {
            let available = match self.reader.fill_buf().await {
                Ok(bytes) => bytes,
                Err(e) => return LineRead::Failed(e),
            };
            if available.is_empty() {
                return LineRead::Eof;
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let take = newline.map_or(available.len(), |at| at + 1);
            let mut done = None;
            if self.discarding {
                self.discarding = newline.is_none();
            } else if self.line.len().saturating_add(take) > self.max_line_length {
                self.line.clear();
                self.discarding = newline.is_none();
                done = Some(LineRead::Oversized);
            } else {
                self.line.extend_from_slice(&available[..take]);
                if newline.is_some() {
                    done = Some(LineRead::Line);
                }
            }
            self.reader.consume(take);
            if let Some(done) = done {
                return done;
            }
        }
    }

    /// Writes an error answer without blocking the reader. It runs as its
    /// own task so that a `receive` cancelled by the caller's `select!`
    /// never leaves half a line on the output.
    fn reply(&self, answer: &Value) {
        let mut bytes = answer.to_string().into_bytes();
        bytes.push(b'\n');
        let writer = self.writer.clone();
        tokio::spawn(async move {
            if let Err(e) = write_line(&writer, &bytes).await {
                tracing::debug!("cannot answer a malformed message: {e}");
            }
        });
    }
}

enum LineRead {
    /// A whole line (with its `\n`) is in `line`.
    Line,
    /// A line longer than the limit was dropped.
    Oversized,
    /// The input is closed.
    Eof,
    Failed(io::Error),
}

async fn write_line<W: AsyncWrite + Unpin>(
    writer: &Mutex<Option<W>>,
    bytes: &[u8],
) -> io::Result<()> {
    let mut guard = writer.lock().await;
    let Some(out) = guard.as_mut() else {
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "the output is closed",
        ));
    };
    out.write_all(bytes).await?;
    out.flush().await
}

/// What one input line amounts to.
#[derive(Debug)]
pub enum Decoded {
    /// A message to pass on.
    Message(Box<ClientJsonRpcMessage>),
    /// An empty line.
    Blank,
    /// Not a message; answer the client with this error.
    Reply(Value),
    /// Not a message, and nothing can be answered (a malformed response).
    Drop(String),
}

/// Decodes one line (without or with its `\n`).
pub fn decode(line: &[u8]) -> Decoded {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Decoded::Blank;
    }
    let error = match serde_json::from_slice::<ClientJsonRpcMessage>(line) {
        Ok(message) => return Decoded::Message(Box::new(message)),
        Err(e) => e,
    };
    let value = match serde_json::from_slice::<Value>(line) {
        Ok(value) => value,
        Err(syntax) => {
            return Decoded::Reply(error_answer(
                None,
                ErrorCode::PARSE_ERROR,
                &format!("Parse error: the line is not JSON ({syntax})"),
            ));
        }
    };
    let Some(object) = value.as_object() else {
        let what = if value.is_array() {
            "batches are not part of MCP; send one message per line"
        } else {
            "a message must be a JSON object"
        };
        return Decoded::Reply(error_answer(
            None,
            ErrorCode::INVALID_REQUEST,
            &format!("Invalid Request: {what}"),
        ));
    };
    let id = object
        .get("id")
        .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
    let is_response = !object.contains_key("method")
        && (object.contains_key("result") || object.contains_key("error"));
    if is_response {
        // Answering a response could start an error ping-pong.
        return Decoded::Drop(format!("malformed JSON-RPC response: {error}"));
    }
    let detail = match object.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => error.to_string(),
        _ => "\"jsonrpc\" must be \"2.0\"".to_owned(),
    };
    Decoded::Reply(error_answer(
        id,
        ErrorCode::INVALID_REQUEST,
        &format!("Invalid Request: {detail}"),
    ))
}

/// A JSON-RPC error answer; `id` is `null` when unknown, as JSON-RPC 2.0
/// requires (and as the node's own HTTP endpoint answers).
fn error_answer(id: Option<RequestId>, code: ErrorCode, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code.0, "message": message },
    })
}

impl<R, W> Transport<RoleServer> for StdioTransport<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let bytes = serde_json::to_vec(&item);
        let writer = self.writer.clone();
        async move {
            let mut bytes = bytes.map_err(io::Error::other)?;
            bytes.push(b'\n');
            write_line(&writer, &bytes).await
        }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            match self.read_line().await {
                LineRead::Line => {}
                // A last line without its `\n`: take it, EOF comes next.
                LineRead::Eof if !self.line.is_empty() => {}
                LineRead::Eof => return None,
                LineRead::Oversized => {
                    tracing::warn!(
                        limit = self.max_line_length,
                        "dropped a message longer than the limit"
                    );
                    self.reply(&error_answer(
                        None,
                        ErrorCode::INVALID_REQUEST,
                        &format!(
                            "Invalid Request: message longer than {} bytes",
                            self.max_line_length
                        ),
                    ));
                    continue;
                }
                LineRead::Failed(e) => {
                    tracing::warn!("cannot read the input: {e}");
                    return None;
                }
            }
            let decoded = decode(&self.line);
            self.line.clear();
            match decoded {
                Decoded::Message(message) => return Some(*message),
                Decoded::Blank => {}
                Decoded::Reply(answer) => {
                    tracing::debug!(%answer, "answered a malformed message");
                    self.reply(&answer);
                }
                Decoded::Drop(why) => tracing::warn!("ignored a message: {why}"),
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        let writer = self.writer.lock().await.take();
        if let Some(mut writer) = writer {
            writer.shutdown().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rmcp::model::{ClientRequest, ErrorData, JsonRpcMessage};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn answer(decoded: Decoded) -> Value {
        match decoded {
            Decoded::Reply(answer) => answer,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn messages_decode_with_crlf_and_bom() {
        let line = b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\r\n";
        let Decoded::Message(message) = decode(line) else {
            panic!("not a message")
        };
        let JsonRpcMessage::Request(request) = *message else {
            panic!("not a request")
        };
        assert_eq!(request.id, RequestId::Number(7));
        assert!(matches!(request.request, ClientRequest::PingRequest(_)));
        assert!(matches!(decode(b"  \r\n"), Decoded::Blank));
    }

    #[test]
    fn unknown_methods_and_bad_params_pass_through_for_the_node_to_judge() {
        for line in [
            r#"{"jsonrpc":"2.0","id":1,"method":"vendor/thing","params":{"x":1}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"nope":true}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/vendor","params":{}}"#,
        ] {
            assert!(
                matches!(decode(line.as_bytes()), Decoded::Message(_)),
                "{line}"
            );
        }
    }

    #[test]
    fn request_meta_survives_the_round_trip() {
        // Progress tokens and other `_meta` must reach the node unchanged.
        let line = r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"t","arguments":{"k":[1,2]},"_meta":{"progressToken":"p1","vendor/x":{"y":true}}}}"#;
        let Decoded::Message(message) = decode(line.as_bytes()) else {
            panic!("not a message")
        };
        let back = serde_json::to_value(&*message).unwrap();
        let original: Value = serde_json::from_str(line).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn not_json_is_a_parse_error_with_a_null_id() {
        let a = answer(decode(b"{oops\n"));
        assert_eq!(a["error"]["code"], -32700);
        assert!(a["id"].is_null() && a.as_object().unwrap().contains_key("id"));
        assert_eq!(a["jsonrpc"], "2.0");
    }

    #[test]
    fn json_that_is_not_a_message_is_an_invalid_request() {
        let a = answer(decode(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#));
        assert_eq!(a["error"]["code"], -32600);
        assert!(a["error"]["message"].as_str().unwrap().contains("batch"));
        let a = answer(decode(br#"{"jsonrpc":"1.0","id":"x","method":"ping"}"#));
        assert_eq!(a["error"]["code"], -32600);
        assert_eq!(a["id"], "x");
        let a = answer(decode(br#"{"id":3}"#));
        assert_eq!(a["id"], 3);
        assert!(matches!(
            decode(br#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#),
            Decoded::Drop(_)
        ));
    }

    #[tokio::test]
    async fn receive_answers_garbage_and_keeps_going() {
        let (mut client, bridge) = tokio::io::duplex(1 << 16);
        let (read, write) = tokio::io::split(bridge);
        let mut transport = StdioTransport::new(read, write).with_max_line_length(64);
        client
            .write_all(
                format!(
                    "not json\n{}\n\n{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}\n",
                    "x".repeat(100)
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let message = transport.receive().await.unwrap();
        assert!(matches!(message, JsonRpcMessage::Request(r) if r.id == RequestId::Number(1)));

        transport
            .send(ServerJsonRpcMessage::error(
                ErrorData::internal_error("boom", None),
                Some(RequestId::Number(1)),
            ))
            .await
            .unwrap();
        // The error answers are written by tasks: wait for all three lines.
        let mut out = Vec::new();
        while out.iter().filter(|&&b| b == b'\n').count() < 3 {
            let mut chunk = [0u8; 1024];
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "output closed early");
            out.extend_from_slice(&chunk[..n]);
        }
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut codes: Vec<i64> = lines
            .iter()
            .map(|l| l["error"]["code"].as_i64().unwrap())
            .collect();
        codes.sort_unstable();
        assert_eq!(codes, [-32700, -32603, -32600]);

        // A last message without its newline still counts, then EOF.
        client
            .write_all(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        drop(client);
        assert!(matches!(
            transport.receive().await,
            Some(JsonRpcMessage::Notification(_))
        ));
        assert!(transport.receive().await.is_none());
    }
}
