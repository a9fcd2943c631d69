//! Wire format of the Dawn RPC protocol.
//!
//! Every frame is `len: u32 BE | kind: u8 | id: u64 BE | payload`, where `len`
//! counts everything after itself. `id` correlates a request with its
//! response, cancellation and mid-call events; ids are chosen by the side that
//! opened the stream and are unique per stream.
//!
//! | kind | name        | direction        | payload                                            |
//! |------|-------------|------------------|----------------------------------------------------|
//! | 0    | Request     | caller -> callee | `deadline_ms: u32 BE, agent_len: u8, agent, body`  |
//! | 1    | Response    | callee -> caller | `body` (a JSON-RPC response produced by the node)  |
//! | 2    | Failure     | callee -> caller | `code: u16 BE, message (UTF-8)`                    |
//! | 3    | Cancel      | caller -> callee | empty                                              |
//! | 4    | Event       | callee -> caller | `body` (a JSON-RPC notification or request)        |
//! | 5    | EventReply  | caller -> callee | `body` (a JSON-RPC response to an Event request)   |
//!
//! The decoder never buffers more than the configured maximum: a frame whose
//! length exceeds it is reported as [`Frame::Oversized`] after reading its
//! header, and its remaining bytes are discarded as they arrive.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::FailureCode;

/// Bytes of `kind` + `id`.
const HEADER_LEN: usize = 1 + 8;
/// Worst-case bytes a request adds around its body (header, deadline, agent id).
pub(crate) const MAX_FRAME_OVERHEAD: usize = HEADER_LEN + 4 + 1 + u8::MAX as usize;
/// Longest agent id the wire format can carry.
pub const MAX_AGENT_ID_LEN: usize = u8::MAX as usize;

/// Frame kinds as they appear on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Request = 0,
    Response = 1,
    Failure = 2,
    Cancel = 3,
    Event = 4,
    EventReply = 5,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0 => Kind::Request,
            1 => Kind::Response,
            2 => Kind::Failure,
            3 => Kind::Cancel,
            4 => Kind::Event,
            5 => Kind::EventReply,
            _ => return None,
        })
    }
}

/// One decoded (or to-be-encoded) frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Request {
        id: u64,
        deadline_ms: u32,
        agent: String,
        body: Bytes,
    },
    Response {
        id: u64,
        body: Bytes,
    },
    Failure {
        id: u64,
        code: FailureCode,
        message: String,
    },
    Cancel {
        id: u64,
    },
    Event {
        id: u64,
        body: Bytes,
    },
    EventReply {
        id: u64,
        body: Bytes,
    },
    /// Decoder only: a frame larger than the limit was skipped.
    Oversized {
        kind: Option<Kind>,
        id: u64,
        len: usize,
    },
}

/// Why a byte stream could not be decoded. Any of these ends the stream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("malformed {0:?} frame: {1}")]
    Malformed(Kind, &'static str),
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

/// Length-prefixed frame codec with a hard size limit.
#[derive(Debug)]
pub(crate) struct FrameCodec {
    /// Largest body accepted or sent.
    max_body: usize,
    /// Bytes of an oversized frame still to be thrown away.
    discarding: usize,
}

impl FrameCodec {
    pub(crate) fn new(max_body: usize) -> Self {
        FrameCodec {
            max_body,
            discarding: 0,
        }
    }

    fn max_frame(&self) -> usize {
        self.max_body.saturating_add(MAX_FRAME_OVERHEAD)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if self.discarding > 0 {
            let n = self.discarding.min(src.len());
            src.advance(n);
            self.discarding -= n;
            if self.discarding > 0 {
                return Ok(None);
            }
        }
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len < HEADER_LEN {
            return Err(FrameError::Short(len));
        }
        if len > self.max_frame() {
            if src.len() < 4 + HEADER_LEN {
                return Ok(None);
            }
            src.advance(4);
            let kind = Kind::from_u8(src.get_u8());
            let id = src.get_u64();
            self.discarding = len - HEADER_LEN;
            let n = self.discarding.min(src.len());
            src.advance(n);
            self.discarding -= n;
            return Ok(Some(Frame::Oversized { kind, id, len }));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let mut frame = src.split_to(len).freeze();
        let raw_kind = frame.get_u8();
        let kind = Kind::from_u8(raw_kind).ok_or(FrameError::UnknownKind(raw_kind))?;
        let id = frame.get_u64();
        let decoded = match kind {
            Kind::Request => {
                if frame.len() < 5 {
                    return Err(FrameError::Malformed(kind, "missing deadline or agent"));
                }
                let deadline_ms = frame.get_u32();
                let agent_len = frame.get_u8() as usize;
                if frame.len() < agent_len {
                    return Err(FrameError::Malformed(kind, "agent id cut short"));
                }
                let agent = String::from_utf8(frame.split_to(agent_len).to_vec())
                    .map_err(|_| FrameError::Malformed(kind, "agent id is not UTF-8"))?;
                Frame::Request {
                    id,
                    deadline_ms,
                    agent,
                    body: frame,
                }
            }
            Kind::Response => Frame::Response { id, body: frame },
            Kind::Failure => {
                if frame.len() < 2 {
                    return Err(FrameError::Malformed(kind, "missing code"));
                }
                let code = FailureCode::from_u16(frame.get_u16());
                let message = String::from_utf8_lossy(&frame).into_owned();
                Frame::Failure { id, code, message }
            }
            Kind::Cancel => Frame::Cancel { id },
            Kind::Event => Frame::Event { id, body: frame },
            Kind::EventReply => Frame::EventReply { id, body: frame },
        };
        Ok(Some(decoded))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let (kind, id) = match &frame {
            Frame::Request { id, .. } => (Kind::Request, *id),
            Frame::Response { id, .. } => (Kind::Response, *id),
            Frame::Failure { id, .. } => (Kind::Failure, *id),
            Frame::Cancel { id } => (Kind::Cancel, *id),
            Frame::Event { id, .. } => (Kind::Event, *id),
            Frame::EventReply { id, .. } => (Kind::EventReply, *id),
            Frame::Oversized { .. } => {
                return Err(FrameError::Malformed(
                    Kind::Failure,
                    "cannot encode a skipped frame",
                ));
            }
        };
        let body_len = match &frame {
            Frame::Request { body, .. }
            | Frame::Response { body, .. }
            | Frame::Event { body, .. }
            | Frame::EventReply { body, .. } => body.len(),
            Frame::Failure { message, .. } => message.len(),
            _ => 0,
        };
        if body_len > self.max_body {
            return Err(FrameError::TooLarge {
                len: body_len,
                max: self.max_body,
            });
        }
        let extra = match &frame {
            Frame::Request { agent, .. } => {
                if agent.len() > MAX_AGENT_ID_LEN {
                    return Err(FrameError::Malformed(
                        Kind::Request,
                        "agent id longer than 255 bytes",
                    ));
                }
                4 + 1 + agent.len()
            }
            Frame::Failure { .. } => 2,
            _ => 0,
        };
        let len = HEADER_LEN + extra + body_len;
        dst.reserve(4 + len);
        dst.put_u32(len as u32);
        dst.put_u8(kind as u8);
        dst.put_u64(id);
        match frame {
            Frame::Request {
                deadline_ms,
                agent,
                body,
                ..
            } => {
                dst.put_u32(deadline_ms);
                dst.put_u8(agent.len() as u8);
                dst.put_slice(agent.as_bytes());
                dst.put_slice(&body);
            }
            Frame::Response { body, .. }
            | Frame::Event { body, .. }
            | Frame::EventReply { body, .. } => dst.put_slice(&body),
            Frame::Failure { code, message, .. } => {
                dst.put_u16(code.as_u16());
                dst.put_slice(message.as_bytes());
            }
            Frame::Cancel { .. } | Frame::Oversized { .. } => {}
        }
        Ok(())
    }
}

/// One frame as [`decode_all`] reports it (for property tests and fuzzing).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFrame {
    /// The frame kind: `request`, `response`, `failure`, `cancel`, `event`,
    /// `event_reply`, or `oversized` for a frame over the limit (skipped).
    pub kind: &'static str,
    /// The agent a request is addressed to.
    pub agent: Option<String>,
    /// The JSON-RPC body of a request, response, event or event reply.
    pub body: Option<Bytes>,
}

/// Decodes one complete buffer into frames with the codec every RPC stream
/// uses (for property tests and fuzzing). A trailing partial frame is left
/// undecoded, as a stream would wait for the rest of it.
#[doc(hidden)]
pub fn decode_all(max_body: usize, data: &[u8]) -> Result<Vec<DecodedFrame>, String> {
    let mut codec = FrameCodec::new(max_body);
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    loop {
        let frame = match codec.decode(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(frames),
            Err(e) => return Err(e.to_string()),
        };
        let (kind, agent, body) = match frame {
            Frame::Request { agent, body, .. } => ("request", Some(agent), Some(body)),
            Frame::Response { body, .. } => ("response", None, Some(body)),
            Frame::Failure { .. } => ("failure", None, None),
            Frame::Cancel { .. } => ("cancel", None, None),
            Frame::Event { body, .. } => ("event", None, Some(body)),
            Frame::EventReply { body, .. } => ("event_reply", None, Some(body)),
            Frame::Oversized { .. } => ("oversized", None, None),
        };
        frames.push(DecodedFrame { kind, agent, body });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        codec.encode(frame.clone(), &mut buf).unwrap();
        let decoded = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(decoded, frame);
        assert!(buf.is_empty());
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(Frame::Request {
            id: 7,
            deadline_ms: 1500,
            agent: "system".into(),
            body: Bytes::from_static(b"{\"jsonrpc\":\"2.0\"}"),
        });
        round_trip(Frame::Response {
            id: u64::MAX,
            body: Bytes::from_static(b"{}"),
        });
        round_trip(Frame::Failure {
            id: 1,
            code: FailureCode::MessageTooLarge,
            message: "too big".into(),
        });
        round_trip(Frame::Cancel { id: 3 });
        round_trip(Frame::Event {
            id: 3,
            body: Bytes::from_static(b"e"),
        });
        round_trip(Frame::EventReply {
            id: 3,
            body: Bytes::new(),
        });
    }

    #[test]
    fn partial_input_waits_for_more() {
        let mut codec = FrameCodec::new(1024);
        let mut full = BytesMut::new();
        codec
            .encode(
                Frame::Response {
                    id: 9,
                    body: Bytes::from_static(b"hello"),
                },
                &mut full,
            )
            .unwrap();
        let mut buf = BytesMut::new();
        for (i, b) in full.iter().enumerate() {
            buf.put_u8(*b);
            let out = codec.decode(&mut buf).unwrap();
            if i + 1 < full.len() {
                assert!(out.is_none());
            } else {
                assert!(out.is_some());
            }
        }
    }

    #[test]
    fn oversized_frame_is_skipped_without_buffering_and_stream_continues() {
        let mut big = FrameCodec::new(1 << 20);
        let mut small = FrameCodec::new(16);
        let mut wire = BytesMut::new();
        big.encode(
            Frame::Response {
                id: 1,
                body: Bytes::from(vec![b'x'; 100_000]),
            },
            &mut wire,
        )
        .unwrap();
        big.encode(
            Frame::Response {
                id: 2,
                body: Bytes::from_static(b"ok"),
            },
            &mut wire,
        )
        .unwrap();
        // Feed in 4 KiB chunks: the decoder's buffer never holds the big body.
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in wire.chunks(4096) {
            buf.extend_from_slice(chunk);
            while let Some(f) = small.decode(&mut buf).unwrap() {
                frames.push(f);
            }
            assert!(
                buf.len() <= 4096 + 32,
                "decoder buffered {} bytes",
                buf.len()
            );
        }
        assert_eq!(frames.len(), 2);
        assert!(matches!(
            frames[0],
            Frame::Oversized {
                kind: Some(Kind::Response),
                id: 1,
                ..
            }
        ));
        assert_eq!(
            frames[1],
            Frame::Response {
                id: 2,
                body: Bytes::from_static(b"ok")
            }
        );
    }

    #[test]
    fn encoder_refuses_oversized_bodies() {
        let mut codec = FrameCodec::new(8);
        let mut buf = BytesMut::new();
        let err = codec
            .encode(
                Frame::Response {
                    id: 1,
                    body: Bytes::from_static(b"123456789"),
                },
                &mut buf,
            )
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 9, max: 8 }));
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert!(decode_all(64, &[0, 0, 0, 2, 0, 0]).is_err()); // shorter than header
        assert!(decode_all(64, &[0, 0, 0, 9, 42, 0, 0, 0, 0, 0, 0, 0, 1]).is_err()); // kind 42
        // Request whose agent length points past the end.
        assert!(decode_all(64, &[0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 9]).is_err());
    }
}
