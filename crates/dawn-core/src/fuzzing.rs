//! Entry points over the decoders that read bytes from peers, shared by the
//! cargo-fuzz targets in `fuzz/` and the property tests of the normal suite
//! (`security/decoder_props.rs`). Not a stable API.
//!
//! Each function takes arbitrary bytes, runs them through the same code the
//! node runs on them, and panics only if a decoder breaks its contract (an
//! assertion here), so any panic a fuzzer finds is a bug.

use bytes::Bytes;
use serde_json::Value;

use crate::{
    jsonrpc::{self, Request, Response},
    registry::record::{self, Announcement},
};

/// The frame body limit used for fuzzing: small, so oversized frames and
/// the discard path are reached, and large enough for real messages.
pub const MAX_RPC_BODY: usize = 64 * 1024;

/// The envelope limit used for fuzzing (the default
/// `registry.max_record_size` is larger; size checks come first anyway).
pub const MAX_RECORD_SIZE: usize = 256 * 1024;

/// What [`rpc_message`] made of its input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RpcOutcome {
    /// Frames decoded before the end of the input or the first error.
    pub frames: usize,
    /// Request bodies parsed as JSON-RPC requests.
    pub requests: usize,
    /// The frame decoder's error, if the stream would be closed.
    pub error: Option<String>,
}

/// Bytes arriving on a `/dawn/rpc/1.0.0` stream: decoded into frames by the
/// transport's codec, then each body handled as the node handles it
/// (request bodies by [`jsonrpc::parse_request`], responses and event
/// replies as [`Response`], events as [`Request`]). The whole input is also
/// parsed as one request body, so the JSON-RPC parser is reached without a
/// valid frame header.
///
/// Panics if a refused request's error has no Dawn error kind, or if an
/// accepted request is not JSON-RPC 2.0 with a string, number or no id.
pub fn rpc_message(data: &[u8]) -> RpcOutcome {
    let mut outcome = RpcOutcome::default();
    outcome.requests += usize::from(json_rpc_request(data).is_some());
    let frames = match dawn_transport::rpc::decode_all(MAX_RPC_BODY, data) {
        Ok(frames) => frames,
        Err(error) => {
            // The stream is closed at the first bad frame.
            outcome.error = Some(error);
            return outcome;
        }
    };
    outcome.frames = frames.len();
    for frame in frames {
        let Some(body) = frame.body else { continue };
        match frame.kind {
            "request" => outcome.requests += usize::from(json_rpc_request(&body).is_some()),
            "response" | "event_reply" => {
                let _ = serde_json::from_slice::<Response>(&body);
            }
            "event" => {
                let _ = serde_json::from_slice::<Request>(&body);
            }
            _ => {}
        }
    }
    outcome
}

/// One JSON-RPC request body, parsed as `node/inbound.rs` does. Returns the
/// request if it is accepted; checks the parser's contract either way.
pub fn json_rpc_request(body: &[u8]) -> Option<Request> {
    match jsonrpc::parse_request(body) {
        Ok(request) => {
            assert_eq!(request.jsonrpc, "2.0", "accepted {request:?}");
            assert!(
                matches!(request.id, None | Some(Value::String(_) | Value::Number(_))),
                "accepted a request with id {:?}",
                request.id
            );
            Some(request)
        }
        Err((id, error)) => {
            assert!(
                error.kind().is_some(),
                "refusal without an error kind: {error:?}"
            );
            assert!(
                matches!(id, Value::Null | Value::String(_) | Value::Number(_)),
                "refusal answered with id {id:?}"
            );
            None
        }
    }
}

/// A registry envelope as it arrives by gossip or from the registry cache:
/// framing, signature, signer = origin and content rules
/// (`registry::record::open`). Returns whether it was accepted and, if not,
/// the rejection reason.
///
/// Panics if an accepted envelope does not open again to the same
/// announcement or the announcement does not keep the envelope as received.
pub fn registry_record(data: &[u8]) -> Result<(), crate::RegistryRejectReason> {
    let envelope = Bytes::copy_from_slice(data);
    let announcement = record::open(&envelope, MAX_RECORD_SIZE).map_err(|r| r.reason)?;
    let again = record::open(&envelope, MAX_RECORD_SIZE)
        .unwrap_or_else(|r| panic!("accepted once, then rejected: {r:?}"));
    assert_eq!(announcement.origin(), again.origin());
    match &announcement {
        Announcement::Record(r) => assert_eq!(r.envelope, envelope),
        Announcement::Heartbeat(h) => {
            assert_eq!(h.envelope, envelope);
            assert!(h.body.seq >= 1 && h.body.seq >= h.body.version);
        }
    }
    Ok(())
}
