//! Outbound side: one link (stream) per peer, many calls in flight on it.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{
    FutureExt as _,
    future::{BoxFuture, Shared},
};
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    PROTOCOL,
    frame::{Frame, Kind, MAX_AGENT_ID_LEN},
    io::{FrameReader, split_stream},
};
use crate::{error::RpcError, limits::PeerActivity, swarm::Connector};

/// Mid-call events queued per call before the link reader drops extras.
const EVENT_QUEUE: usize = 64;

type LinkFuture = Shared<BoxFuture<'static, Result<Arc<Link>, RpcError>>>;

/// Opens and caches links; hands out calls.
pub(crate) struct RpcClient {
    control: Mutex<libp2p_stream::Control>,
    links: Mutex<HashMap<PeerId, LinkFuture>>,
    connector: Connector,
    max_body: usize,
    connect_timeout: Duration,
    activity: Arc<PeerActivity>,
    /// Where every link's writer runs (see [`split_stream`]).
    streams: TaskTracker,
}

struct PendingCall {
    reply: oneshot::Sender<Result<Bytes, RpcError>>,
    events: Option<mpsc::Sender<Bytes>>,
}

/// One outbound stream to one peer.
pub(crate) struct Link {
    peer: PeerId,
    tx: mpsc::Sender<Frame>,
    pending: Mutex<HashMap<u64, PendingCall>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    stop: CancellationToken,
    max_body: usize,
}

impl Link {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, PendingCall>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the link dead and fails every call still waiting on it.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop.cancel();
        let drained: Vec<PendingCall> = self.lock_pending().drain().map(|(_, p)| p).collect();
        for call in drained {
            let _ = call.reply.send(Err(RpcError::ConnectionLost(self.peer)));
        }
    }

    fn complete(&self, id: u64, result: Result<Bytes, RpcError>) {
        let pending = self.lock_pending().remove(&id);
        if let Some(call) = pending {
            let _ = call.reply.send(result);
        }
    }
}

impl RpcClient {
    pub(crate) fn new(
        control: libp2p_stream::Control,
        connector: Connector,
        max_body: usize,
        connect_timeout: Duration,
        activity: Arc<PeerActivity>,
        streams: TaskTracker,
    ) -> Self {
        RpcClient {
            control: Mutex::new(control),
            links: Mutex::new(HashMap::new()),
            connector,
            max_body,
            connect_timeout,
            activity,
            streams,
        }
    }

    /// Starts a call; the returned handle yields events and the response.
    pub(crate) async fn start_call(
        self: &Arc<Self>,
        peer: PeerId,
        agent: &str,
        body: Bytes,
        timeout: Duration,
        with_events: bool,
    ) -> Result<OutboundCall, RpcError> {
        let deadline = Instant::now() + timeout;
        if body.len() > self.max_body {
            return Err(RpcError::RequestTooLarge {
                len: body.len(),
                max: self.max_body,
            });
        }
        if agent.len() > MAX_AGENT_ID_LEN {
            return Err(RpcError::AgentIdTooLong(agent.len()));
        }
        let link = match tokio::time::timeout_at(deadline.into(), self.link(peer)).await {
            Ok(link) => link?,
            Err(_) => {
                return Err(RpcError::DeadlineExceeded {
                    peer,
                    after: timeout,
                });
            }
        };
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        let (events_tx, events_rx) = if with_events {
            let (tx, rx) = mpsc::channel(EVENT_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        link.lock_pending().insert(
            id,
            PendingCall {
                reply: reply_tx,
                events: events_tx,
            },
        );
        let call = OutboundCall {
            peer,
            id,
            link: link.clone(),
            reply: reply_rx,
            events: events_rx,
            deadline,
            timeout,
            finished: false,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let frame = Frame::Request {
            id,
            deadline_ms: u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX),
            agent: agent.to_owned(),
            body,
        };
        if link.tx.send(frame).await.is_err() {
            link.close();
            return Err(RpcError::ConnectionLost(peer));
        }
        Ok(call)
    }

    /// The live link to `peer`, opening one if needed. Concurrent callers share
    /// one attempt; a failed attempt is forgotten so the next call retries.
    async fn link(self: &Arc<Self>, peer: PeerId) -> Result<Arc<Link>, RpcError> {
        for _ in 0..2 {
            let fut = {
                let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(existing) = links.get(&peer) {
                    match existing.peek() {
                        Some(Ok(link)) if !link.is_closed() => return Ok(link.clone()),
                        Some(_) => {
                            links.remove(&peer);
                        }
                        None => {}
                    }
                }
                links
                    .entry(peer)
                    .or_insert_with(|| {
                        let this = self.clone();
                        async move { this.open_link(peer).await }.boxed().shared()
                    })
                    .clone()
            };
            match fut.clone().await {
                Ok(link) if !link.is_closed() => return Ok(link),
                Ok(_) => self.forget(peer, &fut),
                Err(e) => {
                    self.forget(peer, &fut);
                    return Err(e);
                }
            }
        }
        Err(RpcError::ConnectionLost(peer))
    }

    fn forget(&self, peer: PeerId, fut: &LinkFuture) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if links.get(&peer).is_some_and(|f| f.ptr_eq(fut)) {
            links.remove(&peer);
        }
    }

    async fn open_link(self: Arc<Self>, peer: PeerId) -> Result<Arc<Link>, RpcError> {
        self.connector
            .ensure_connected(peer, self.connect_timeout)
            .await?;
        let mut control = self
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let stream =
            match tokio::time::timeout(self.connect_timeout, control.open_stream(peer, PROTOCOL))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
                    return Err(RpcError::UnsupportedProtocol(peer));
                }
                Ok(Err(e)) => {
                    return Err(RpcError::Unreachable {
                        peer,
                        reason: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(RpcError::ConnectTimeout {
                        peer,
                        after: self.connect_timeout,
                    });
                }
            };
        let stop = CancellationToken::new();
        let (reader, tx) = split_stream(
            stream,
            self.max_body,
            stop.clone(),
            self.activity.handle(peer),
            &self.streams,
        );
        let link = Arc::new(Link {
            peer,
            tx,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            stop,
            max_body: self.max_body,
        });
        tokio::spawn(read_responses(link.clone(), reader, self.max_body));
        tracing::debug!(%peer, "rpc link opened");
        Ok(link)
    }

    /// Closes every link (used at shutdown).
    pub(crate) fn close_all(&self) {
        let links: Vec<LinkFuture> = self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, f)| f)
            .collect();
        for fut in links {
            if let Some(Ok(link)) = fut.peek() {
                link.close();
            }
        }
    }
}

async fn read_responses(link: Arc<Link>, mut reader: FrameReader, max_body: usize) {
    let peer = link.peer;
    loop {
        let next = tokio::select! {
            biased;
            () = link.stop.cancelled() => break,
            next = reader.next() => next,
        };
        let frame = match next {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                tracing::warn!(%peer, %error, "closing rpc link after a bad frame");
                break;
            }
            None => break,
        };
        match frame {
            Frame::Response { id, body } => link.complete(id, Ok(body)),
            Frame::Failure { id, code, message } => link.complete(
                id,
                Err(RpcError::Remote {
                    peer,
                    code,
                    message,
                }),
            ),
            Frame::Event { id, body } => {
                let events = link.lock_pending().get(&id).and_then(|p| p.events.clone());
                if let Some(events) = events
                    && events.try_send(body).is_err()
                {
                    tracing::debug!(%peer, id, "dropping a mid-call event: caller is not keeping up");
                }
            }
            Frame::Oversized {
                kind: Some(Kind::Response),
                id,
                ..
            } => link.complete(
                id,
                Err(RpcError::ResponseTooLarge {
                    peer,
                    max: max_body,
                }),
            ),
            Frame::Oversized {
                kind: Some(Kind::Event),
                id,
                len,
            } => {
                tracing::debug!(%peer, id, len, "dropping an oversized mid-call event");
            }
            other => {
                tracing::warn!(%peer, frame = ?kind_of(&other), "peer broke the rpc protocol on our link; closing it");
                break;
            }
        }
    }
    link.close();
    tracing::debug!(%peer, "rpc link closed");
}

fn kind_of(frame: &Frame) -> &'static str {
    match frame {
        Frame::Request { .. } => "request",
        Frame::Response { .. } => "response",
        Frame::Failure { .. } => "failure",
        Frame::Cancel { .. } => "cancel",
        Frame::Event { .. } => "event",
        Frame::EventReply { .. } => "event_reply",
        Frame::Oversized { .. } => "oversized",
    }
}

/// What an in-flight call produced next.
#[derive(Debug)]
pub enum CallUpdate {
    /// A mid-call message from the callee (a JSON-RPC notification or request).
    Event(Bytes),
    /// The final outcome; no more updates follow.
    Done(Result<Bytes, RpcError>),
}

/// An outbound call in flight. Dropping it before the response cancels the
/// call on the remote side.
pub struct OutboundCall {
    peer: PeerId,
    id: u64,
    link: Arc<Link>,
    reply: oneshot::Receiver<Result<Bytes, RpcError>>,
    events: Option<mpsc::Receiver<Bytes>>,
    deadline: Instant,
    timeout: Duration,
    finished: bool,
}

impl std::fmt::Debug for OutboundCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundCall")
            .field("peer", &self.peer)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl OutboundCall {
    /// The peer being called.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The next event or the final result, bounded by the call's deadline.
    /// After `Done` has been returned, further calls return `Done` with a
    /// `ConnectionLost` error.
    pub async fn next(&mut self) -> CallUpdate {
        if self.finished {
            return CallUpdate::Done(Err(RpcError::ConnectionLost(self.peer)));
        }
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let outcome = match self.events.as_mut() {
            Some(events) => tokio::select! {
                biased;
                Some(event) = events.recv() => return CallUpdate::Event(event),
                reply = &mut self.reply => Some(reply),
                () = tokio::time::sleep_until(deadline) => None,
            },
            None => tokio::select! {
                reply = &mut self.reply => Some(reply),
                () = tokio::time::sleep_until(deadline) => None,
            },
        };
        self.finished = true;
        CallUpdate::Done(match outcome {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(RpcError::ConnectionLost(self.peer)),
            None => {
                self.abandon();
                Err(RpcError::DeadlineExceeded {
                    peer: self.peer,
                    after: self.timeout,
                })
            }
        })
    }

    /// Waits for the final result, discarding events.
    pub async fn response(mut self) -> Result<Bytes, RpcError> {
        loop {
            if let CallUpdate::Done(result) = self.next().await {
                return result;
            }
        }
    }

    /// Answers a request the callee sent as an event.
    pub async fn reply_to_event(&self, body: Bytes) -> Result<(), RpcError> {
        if body.len() > self.link.max_body {
            return Err(RpcError::RequestTooLarge {
                len: body.len(),
                max: self.link.max_body,
            });
        }
        self.link
            .tx
            .send(Frame::EventReply { id: self.id, body })
            .await
            .map_err(|_| RpcError::ConnectionLost(self.peer))
    }

    /// Cancels the call on the remote side.
    pub fn cancel(mut self) {
        self.abandon();
    }

    fn abandon(&mut self) {
        self.finished = true;
        let removed = self.link.lock_pending().remove(&self.id).is_some();
        if removed && !self.link.is_closed() {
            let _ = self.link.tx.try_send(Frame::Cancel { id: self.id });
        }
    }
}

impl Drop for OutboundCall {
    fn drop(&mut self) {
        if !self.finished {
            self.abandon();
        }
    }
}
