//! Inbound side: accept peers' streams, hand each request to the node.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt as _;
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    frame::{Frame, Kind},
    io::{FrameReader, split_stream},
};
use crate::{error::FailureCode, limits::PeerActivity};

/// Replies to mid-call requests queued per call.
const REPLY_QUEUE: usize = 16;

/// A function that takes every inbound call, installed with
/// [`InboundCalls::serve_with`].
type InboundHandler = Box<dyn Fn(InboundCall) + Send + Sync>;

/// The stream of calls peers make to this node.
///
/// Read it with [`InboundCalls::recv`], or hand every call to a function
/// with [`InboundCalls::serve_with`], which saves a channel hop and a task
/// wake-up per call.
pub struct InboundCalls {
    rx: mpsc::Receiver<InboundCall>,
    handler: Arc<OnceLock<InboundHandler>>,
}

impl std::fmt::Debug for InboundCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundCalls").finish_non_exhaustive()
    }
}

impl InboundCalls {
    fn new(rx: mpsc::Receiver<InboundCall>, handler: Arc<OnceLock<InboundHandler>>) -> Self {
        InboundCalls { rx, handler }
    }

    /// The next inbound call, or `None` once the transport has shut down.
    pub async fn recv(&mut self) -> Option<InboundCall> {
        self.rx.recv().await
    }

    /// From now on, calls `handler` with every inbound call, directly on the
    /// task that reads the caller's stream (no queue, no extra task hop).
    ///
    /// `handler` must return quickly: it should spawn the work that answers
    /// the call, never await it, or it stalls every call from that peer.
    /// Calls already queued, or racing with this installation, are handed to
    /// `handler` too, from a small task that lives until the transport shuts
    /// down. Must be called inside a tokio runtime.
    pub fn serve_with<F>(self, handler: F)
    where
        F: Fn(InboundCall) + Send + Sync + 'static,
    {
        let InboundCalls {
            mut rx,
            handler: slot,
        } = self;
        if slot.set(Box::new(handler)).is_err() {
            // Unreachable: `self` is consumed and is the only setter.
            tracing::error!("inbound call handler installed twice; keeping the first");
        }
        tokio::spawn(async move {
            while let Some(call) = rx.recv().await {
                if let Some(handler) = slot.get() {
                    handler(call);
                }
            }
        });
    }
}

/// Where stream readers deliver inbound calls: the handler once installed,
/// the queue read by [`InboundCalls::recv`] until then.
#[derive(Clone)]
pub(crate) struct CallSink {
    queue: mpsc::Sender<InboundCall>,
    handler: Arc<OnceLock<InboundHandler>>,
}

impl CallSink {
    /// A sink and the [`InboundCalls`] that reads it.
    pub(crate) fn new(queue_len: usize) -> (CallSink, InboundCalls) {
        let (queue, rx) = mpsc::channel(queue_len);
        let handler = Arc::new(OnceLock::new());
        (
            CallSink {
                queue,
                handler: handler.clone(),
            },
            InboundCalls::new(rx, handler),
        )
    }

    async fn deliver(&self, call: InboundCall) {
        if let Some(handler) = self.handler.get() {
            handler(call);
            return;
        }
        if let Err(mpsc::error::SendError(call)) = self.queue.send(call).await {
            let id = call.responder.id;
            call.responder
                .finish(Frame::Failure {
                    id,
                    code: FailureCode::ShuttingDown,
                    message: "node is shutting down".into(),
                })
                .await;
        }
    }
}

struct Inflight {
    cancel: CancellationToken,
    /// Opened on demand ([`EventSender::open_replies`]): most calls never
    /// send the caller a request, so most never need it.
    replies: Option<mpsc::Sender<Bytes>>,
}

type InflightMap = Arc<Mutex<HashMap<u64, Inflight>>>;

fn lock(map: &InflightMap) -> std::sync::MutexGuard<'_, HashMap<u64, Inflight>> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts inbound Dawn RPC streams until the transport shuts down; each
/// stream's reader and writer run on `streams`.
pub(crate) async fn serve_incoming(
    mut incoming: libp2p_stream::IncomingStreams,
    calls: CallSink,
    max_body: usize,
    shutdown: CancellationToken,
    activity: Arc<PeerActivity>,
    streams: TaskTracker,
) {
    loop {
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            next = incoming.next() => next,
        };
        let Some((peer, stream)) = next else { break };
        let stop = shutdown.child_token();
        let (reader, tx) = split_stream(
            stream,
            max_body,
            stop.clone(),
            activity.handle(peer),
            &streams,
        );
        streams.spawn(serve_stream(
            peer,
            reader,
            tx,
            calls.clone(),
            max_body,
            stop,
            shutdown.clone(),
        ));
    }
}

async fn serve_stream(
    peer: PeerId,
    mut reader: FrameReader,
    tx: mpsc::Sender<Frame>,
    calls: CallSink,
    max_body: usize,
    stop: CancellationToken,
    shutdown: CancellationToken,
) {
    let inflight: InflightMap = Arc::new(Mutex::new(HashMap::new()));
    tracing::debug!(%peer, "serving an inbound rpc stream");
    loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            next = reader.next() => next,
        };
        let frame = match next {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                tracing::warn!(%peer, %error, "closing inbound rpc stream after a bad frame");
                break;
            }
            None => break,
        };
        match frame {
            Frame::Request {
                id,
                deadline_ms,
                agent,
                body,
            } => {
                let received = Instant::now();
                // Not a child of `stop`: registering with (and leaving) the
                // stream's token on every call contends on its lock. The
                // reader cancels every call in flight itself when it stops.
                let cancel = CancellationToken::new();
                let duplicate = match lock(&inflight).entry(id) {
                    std::collections::hash_map::Entry::Occupied(_) => true,
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(Inflight {
                            cancel: cancel.clone(),
                            replies: None,
                        });
                        false
                    }
                };
                if duplicate {
                    let _ = tx
                        .send(Frame::Failure {
                            id,
                            code: FailureCode::ProtocolViolation,
                            message: "call id already in flight".into(),
                        })
                        .await;
                    continue;
                }
                let call = InboundCall {
                    peer,
                    agent,
                    body,
                    budget: Duration::from_millis(u64::from(deadline_ms)),
                    received,
                    cancel,
                    responder: Responder {
                        id,
                        tx: tx.clone(),
                        inflight: inflight.clone(),
                        max_body,
                        done: false,
                    },
                };
                calls.deliver(call).await;
            }
            Frame::Cancel { id } => {
                if let Some(entry) = lock(&inflight).get(&id) {
                    entry.cancel.cancel();
                }
            }
            Frame::EventReply { id, body } => {
                let replies = lock(&inflight).get(&id).and_then(|e| e.replies.clone());
                if let Some(replies) = replies {
                    let _ = replies.try_send(body);
                }
            }
            Frame::Oversized {
                kind: Some(Kind::Request),
                id,
                len,
            } => {
                tracing::debug!(%peer, id, len, "refusing an oversized request");
                let _ = tx
                    .send(Frame::Failure {
                        id,
                        code: FailureCode::MessageTooLarge,
                        message: format!(
                            "request of {len} bytes exceeds the maximum message size of {max_body} bytes"
                        ),
                    })
                    .await;
            }
            Frame::Oversized {
                kind: Some(Kind::EventReply),
                ..
            } => {}
            other => {
                tracing::warn!(%peer, frame = ?other_kind(&other), "peer sent a frame not allowed on an inbound stream; closing it");
                break;
            }
        }
    }
    // The caller is gone, or this node is: stop all work it started.
    stop.cancel();
    for (_, entry) in lock(&inflight).drain() {
        entry.cancel.cancel();
    }
    drop(tx);
    if shutdown.is_cancelled() {
        // The transport is shutting down. The writer writes what is queued
        // and closes its half of the stream; the caller reads up to that
        // close and closes its half. Reading until then means the caller has
        // every response before the connection closes: a connection closed
        // with the caller's frames still unread is reset, and a reset can
        // lose data still in flight to the caller.
        let _ = tokio::time::timeout(crate::SHUTDOWN_FLUSH, async {
            while let Some(Ok(_)) = reader.next().await {}
        })
        .await;
    }
    tracing::debug!(%peer, "inbound rpc stream closed");
}

fn other_kind(frame: &Frame) -> &'static str {
    match frame {
        Frame::Response { .. } => "response",
        Frame::Failure { .. } => "failure",
        Frame::Event { .. } => "event",
        Frame::Oversized { .. } => "oversized",
        _ => "other",
    }
}

/// Sends the one final frame of a call.
struct Responder {
    id: u64,
    tx: mpsc::Sender<Frame>,
    inflight: InflightMap,
    max_body: usize,
    done: bool,
}

impl Responder {
    async fn finish(mut self, frame: Frame) {
        self.done = true;
        lock(&self.inflight).remove(&self.id);
        let _ = self.tx.send(frame).await;
    }

    fn checked(&self, body: Bytes) -> Frame {
        if body.len() > self.max_body {
            Frame::Failure {
                id: self.id,
                code: FailureCode::MessageTooLarge,
                message: format!(
                    "response of {} bytes exceeds the maximum message size of {} bytes",
                    body.len(),
                    self.max_body
                ),
            }
        } else {
            Frame::Response { id: self.id, body }
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.inflight).remove(&self.id);
            let _ = self.tx.try_send(Frame::Failure {
                id: self.id,
                code: FailureCode::Internal,
                message: "the call was dropped without a response".into(),
            });
        }
    }
}

/// A call a peer made to an agent on this node.
///
/// Answer it with [`InboundCall::respond`]. If it is dropped unanswered, the
/// caller receives an internal failure.
pub struct InboundCall {
    peer: PeerId,
    agent: String,
    body: Bytes,
    budget: Duration,
    received: Instant,
    cancel: CancellationToken,
    responder: Responder,
}

impl std::fmt::Debug for InboundCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundCall")
            .field("peer", &self.peer)
            .field("agent", &self.agent)
            .field("id", &self.responder.id)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl InboundCall {
    /// The calling peer (authenticated by the Noise handshake).
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The agent the call is addressed to.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The request body (a JSON-RPC message).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// When the caller stops waiting: time of receipt plus the budget it sent.
    pub fn deadline(&self) -> Instant {
        self.received + self.budget
    }

    /// Cancelled when the caller cancels the call or its connection closes.
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// A handle for sending mid-call messages (progress, logs, requests) to
    /// the caller.
    pub fn events(&self) -> EventSender {
        EventSender {
            id: self.responder.id,
            tx: self.responder.tx.clone(),
            max_body: self.responder.max_body,
            inflight: self.responder.inflight.clone(),
        }
    }

    /// Takes the receiver of the caller's replies to mid-call requests (see
    /// [`EventSender::open_replies`]; `None` the second time).
    pub fn take_replies(&mut self) -> Option<mpsc::Receiver<Bytes>> {
        self.events().open_replies()
    }

    /// Sends the response. A body over the maximum message size is replaced
    /// by a `MessageTooLarge` failure.
    pub async fn respond(self, body: Bytes) {
        let frame = self.responder.checked(body);
        self.responder.finish(frame).await;
    }

    /// Fails the call at the transport level.
    pub async fn fail(self, code: FailureCode, message: impl Into<String>) {
        let id = self.responder.id;
        self.responder
            .finish(Frame::Failure {
                id,
                code,
                message: message.into(),
            })
            .await;
    }
}

/// Sends mid-call messages of one inbound call to its caller.
#[derive(Clone)]
pub struct EventSender {
    id: u64,
    tx: mpsc::Sender<Frame>,
    max_body: usize,
    inflight: InflightMap,
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSender").field("id", &self.id).finish()
    }
}

impl EventSender {
    /// Opens the receiver of the caller's replies to this call's mid-call
    /// requests. Open it before sending the first request, or replies that
    /// arrive earlier are dropped. `None` if it was already opened (by any
    /// clone, or by [`InboundCall::take_replies`]) or the call has ended.
    pub fn open_replies(&self) -> Option<mpsc::Receiver<Bytes>> {
        let mut inflight = lock(&self.inflight);
        let entry = inflight.get_mut(&self.id)?;
        if entry.replies.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::channel(REPLY_QUEUE);
        entry.replies = Some(tx);
        Some(rx)
    }

    /// Sends one event. Returns `false` if it was too large or the stream is gone.
    pub async fn send(&self, body: Bytes) -> bool {
        if body.len() > self.max_body {
            return false;
        }
        self.tx
            .send(Frame::Event { id: self.id, body })
            .await
            .is_ok()
    }
}
