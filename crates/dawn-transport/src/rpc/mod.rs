//! The Dawn RPC protocol: JSON-RPC messages to named agents over one
//! long-lived, multiplexed libp2p stream per peer and direction.
//!
//! A node opens at most one outbound stream to each peer and sends all of its
//! calls to that peer over it, each frame tagged with a call id. The peer
//! answers on the same stream, in any order. Calls therefore cost no stream or
//! connection set-up once a peer is linked, any number can be in flight, and
//! the reader of a stream is never blocked by agent work: inbound requests are
//! handed to the node as [`InboundCall`]s and answered from whatever task runs
//! them. Writers batch frames and flush only when their queue is empty.

mod client;
pub(crate) mod frame;
mod io;
mod server;

pub(crate) use client::RpcClient;
pub use client::{CallUpdate, OutboundCall};
pub use frame::{DecodedFrame, MAX_AGENT_ID_LEN, decode_all};
pub(crate) use server::{CallSink, serve_incoming};
pub use server::{EventSender, InboundCall, InboundCalls};

use libp2p::StreamProtocol;

/// The protocol id negotiated for Dawn RPC streams.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/dawn/rpc/1.0.0");
