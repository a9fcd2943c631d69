//! The bridge itself: a message pump between two rmcp transports.
//!
//! `downstream` faces the MCP client (server role: it receives client
//! messages, sends server messages); `upstream` faces the node (client role:
//! it sends client messages, receives server messages). Every message is
//! passed on as it is, in order, in both directions: requests, responses,
//! errors and notifications alike, including the node's own requests
//! (sampling, elicitation, roots) and the client's answers to them. The
//! pump holds no protocol state besides the ids of client requests still
//! owed an answer, so that it can answer them itself when the node cannot
//! be reached and wait for them briefly when the client closes its side.

use std::{collections::HashSet, error::Error as StdError, future::Future, time::Duration};

use futures::{StreamExt as _, future::BoxFuture, stream::FuturesUnordered};
use rmcp::{
    RoleClient, RoleServer,
    model::{
        ClientJsonRpcMessage, ClientNotification, ErrorCode, ErrorData, RequestId,
        ServerJsonRpcMessage,
    },
    transport::{Transport, streamable_http_client::StreamableHttpError},
};
use tokio::time::Instant;

use dawn_core::{CallError, ErrorKind};

/// How the pump ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PumpEnd {
    /// The client closed its input (or output); answers owed were passed on
    /// or the drain time ran out.
    ClientClosed,
    /// `stop` completed (a signal).
    Stopped,
    /// The node side of the bridge is gone for good; the last error seen
    /// on the way to the node, if any.
    UpstreamClosed(Option<String>),
}

/// Ids of client requests that have not been answered yet.
type Owed = HashSet<RequestId>;

/// An upstream send in progress: the request id it carries (if it is a
/// request) and, when it ends, its error.
type Sending = BoxFuture<'static, (Option<RequestId>, Result<(), String>)>;

/// Passes messages between `downstream` and `upstream` until one side
/// ends or `stop` completes. After the client closes its side, answers
/// still owed (and messages still on their way to the node) are passed on
/// for up to `drain`. Closing the transports is left to the caller.
pub async fn run<D, U>(
    downstream: &mut D,
    upstream: &mut U,
    stop: impl Future<Output = ()>,
    drain: Duration,
) -> PumpEnd
where
    D: Transport<RoleServer>,
    U: Transport<RoleClient>,
{
    let mut owed = Owed::new();
    let mut sending = FuturesUnordered::<Sending>::new();
    let mut client_open = true;
    let mut drain_deadline: Option<Instant> = None;
    let mut last_error: Option<String> = None;
    let mut stop = std::pin::pin!(stop);

    let end = loop {
        if !client_open && owed.is_empty() && sending.is_empty() {
            break PumpEnd::ClientClosed;
        }
        tokio::select! {
            message = downstream.receive(), if client_open => {
                let Some(message) = message else {
                    tracing::debug!(owed = owed.len(), "the client closed its input");
                    client_open = false;
                    drain_deadline = Some(Instant::now() + drain);
                    continue;
                };
                let id = request_id(&message);
                if let Some(id) = &id {
                    owed.insert(id.clone());
                }
                if let Some(cancelled) = cancelled_id(&message) {
                    // A cancelled request gets no answer.
                    owed.remove(cancelled);
                }
                tracing::trace!(?message, "client -> node");
                let send = upstream.send(message);
                sending.push(Box::pin(async move {
                    (id, send.await.map_err(|e| describe(&e)))
                }));
            }
            message = upstream.receive() => {
                let Some(message) = message else {
                    break PumpEnd::UpstreamClosed(last_error.take());
                };
                if let Some(id) = answered_id(&message) {
                    owed.remove(id);
                }
                tracing::trace!(?message, "node -> client");
                if let Err(e) = downstream.send(message).await {
                    tracing::debug!("cannot write to the client: {e}");
                    break PumpEnd::ClientClosed;
                }
            }
            Some((id, result)) = sending.next(), if !sending.is_empty() => {
                let Err(error) = result else { continue };
                tracing::warn!(request = ?id, "cannot pass a message to the node: {error}");
                if let Some(id) = id
                    && owed.remove(&id)
                    && let Err(e) = downstream.send(undeliverable(&error, id)).await
                {
                    tracing::debug!("cannot write to the client: {e}");
                    break PumpEnd::ClientClosed;
                }
                last_error = Some(error);
            }
            () = tokio::time::sleep_until(drain_deadline.unwrap_or_else(Instant::now)),
                if drain_deadline.is_some() =>
            {
                tracing::debug!(owed = owed.len(), "gave up waiting for answers");
                break PumpEnd::ClientClosed;
            }
            () = &mut stop => break PumpEnd::Stopped,
        }
    };

    if let PumpEnd::UpstreamClosed(reason) = end {
        // The node side is gone: collect why from the sends still running
        // (they end at once), and answer every request still owed.
        let mut reason = reason;
        while let Ok(Some((id, result))) =
            tokio::time::timeout(Duration::from_millis(200), sending.next()).await
        {
            if let Err(error) = result {
                if let Some(id) = id
                    && owed.remove(&id)
                {
                    let _ = downstream.send(undeliverable(&error, id)).await;
                }
                reason.get_or_insert(error);
            }
        }
        let why = reason
            .clone()
            .unwrap_or_else(|| "the connection to the node closed".to_owned());
        for id in owed.drain() {
            let _ = downstream.send(undeliverable(&why, id)).await;
        }
        return PumpEnd::UpstreamClosed(reason);
    }
    end
}

/// The id of a client request (requests are owed an answer).
fn request_id(message: &ClientJsonRpcMessage) -> Option<RequestId> {
    match message {
        ClientJsonRpcMessage::Request(request) => Some(request.id.clone()),
        _ => None,
    }
}

/// The request a client's `notifications/cancelled` gives up on.
fn cancelled_id(message: &ClientJsonRpcMessage) -> Option<&RequestId> {
    match message {
        ClientJsonRpcMessage::Notification(n) => match &n.notification {
            ClientNotification::CancelledNotification(c) => c.params.request_id.as_ref(),
            _ => None,
        },
        _ => None,
    }
}

/// The id a node message answers, if it is an answer.
fn answered_id(message: &ServerJsonRpcMessage) -> Option<&RequestId> {
    match message {
        ServerJsonRpcMessage::Response(response) => Some(&response.id),
        ServerJsonRpcMessage::Error(error) => error.id.as_ref(),
        _ => None,
    }
}

/// The answer to a request that could not be passed to the node.
fn undeliverable(error: &str, id: RequestId) -> ServerJsonRpcMessage {
    let call = CallError::new(
        ErrorKind::Unreachable,
        format!("dawn-cli could not pass the request to the node: {error}"),
    );
    let code = i32::try_from(call.code).unwrap_or(ErrorCode::INTERNAL_ERROR.0);
    ServerJsonRpcMessage::error(
        ErrorData::new(ErrorCode(code), call.message, call.data),
        Some(id),
    )
}

/// An upstream error in a few words: for HTTP failures, the innermost
/// cause (e.g. "connection refused") rather than reqwest's outer message.
pub fn describe(error: &(dyn StdError + 'static)) -> String {
    if let Some(StreamableHttpError::Client(e)) =
        error.downcast_ref::<StreamableHttpError<reqwest::Error>>()
    {
        return crate::api_client::root_cause(e);
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io;

    use rmcp::{
        model::{ClientRequest, JsonRpcMessage, PingRequest, ServerResult},
        service::{RxJsonRpcMessage, ServiceRole, TxJsonRpcMessage},
    };
    use tokio::sync::mpsc;

    use super::*;

    /// A transport driven by the test through channels.
    struct Scripted<R: ServiceRole> {
        incoming: mpsc::UnboundedReceiver<RxJsonRpcMessage<R>>,
        outgoing: mpsc::UnboundedSender<TxJsonRpcMessage<R>>,
        /// When set, every send fails with this message.
        fail_sends: Option<String>,
    }

    struct Handle<R: ServiceRole> {
        to_transport: Option<mpsc::UnboundedSender<RxJsonRpcMessage<R>>>,
        from_transport: mpsc::UnboundedReceiver<TxJsonRpcMessage<R>>,
    }

    fn scripted<R: ServiceRole>(fail_sends: Option<&str>) -> (Scripted<R>, Handle<R>) {
        let (to_transport, incoming) = mpsc::unbounded_channel();
        let (outgoing, from_transport) = mpsc::unbounded_channel();
        (
            Scripted {
                incoming,
                outgoing,
                fail_sends: fail_sends.map(str::to_owned),
            },
            Handle {
                to_transport: Some(to_transport),
                from_transport,
            },
        )
    }

    impl<R: ServiceRole> Transport<R> for Scripted<R> {
        type Error = io::Error;

        fn send(
            &mut self,
            item: TxJsonRpcMessage<R>,
        ) -> impl Future<Output = Result<(), io::Error>> + Send + 'static {
            let result = match &self.fail_sends {
                Some(why) => Err(io::Error::other(why.clone())),
                None => self
                    .outgoing
                    .send(item)
                    .map_err(|_| io::Error::other("closed")),
            };
            std::future::ready(result)
        }

        async fn receive(&mut self) -> Option<RxJsonRpcMessage<R>> {
            self.incoming.recv().await
        }

        async fn close(&mut self) -> Result<(), io::Error> {
            Ok(())
        }
    }

    fn ping(id: i64) -> ClientJsonRpcMessage {
        JsonRpcMessage::request(
            ClientRequest::PingRequest(PingRequest::default()),
            RequestId::Number(id),
        )
    }

    fn pong(id: i64) -> ServerJsonRpcMessage {
        JsonRpcMessage::response(ServerResult::empty(()), RequestId::Number(id))
    }

    const LONG: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn messages_flow_both_ways_and_owed_answers_are_awaited_after_eof() {
        let (mut down, mut client) = scripted::<RoleServer>(None);
        let (mut up, mut node) = scripted::<RoleClient>(None);
        let pump = tokio::spawn(async move {
            let end = run(&mut down, &mut up, std::future::pending(), LONG).await;
            (end, down, up)
        });

        let to_bridge = client.to_transport.as_ref().unwrap();
        to_bridge.send(ping(1)).unwrap();
        to_bridge.send(ping(2)).unwrap();
        for id in [1, 2] {
            let JsonRpcMessage::Request(r) = node.from_transport.recv().await.unwrap() else {
                panic!("not a request")
            };
            assert_eq!(r.id, RequestId::Number(id));
        }
        // The client goes away with two answers owed: both still arrive.
        client.to_transport = None;
        let to_client = node.to_transport.as_ref().unwrap();
        to_client.send(pong(2)).unwrap();
        to_client.send(pong(1)).unwrap();
        let (end, _, _) = pump.await.unwrap();
        assert_eq!(end, PumpEnd::ClientClosed);
        let mut ids = Vec::new();
        while let Ok(JsonRpcMessage::Response(r)) = client.from_transport.try_recv() {
            ids.push(r.id);
        }
        assert_eq!(ids, [RequestId::Number(2), RequestId::Number(1)]);
    }

    #[tokio::test]
    async fn eof_with_nothing_owed_ends_at_once_and_drain_is_bounded() {
        let (mut down, mut client) = scripted::<RoleServer>(None);
        let (mut up, _node) = scripted::<RoleClient>(None);
        client.to_transport = None;
        let end = run(&mut down, &mut up, std::future::pending(), LONG).await;
        assert_eq!(end, PumpEnd::ClientClosed);

        let (mut down, mut client) = scripted::<RoleServer>(None);
        let (mut up, _node) = scripted::<RoleClient>(None);
        client.to_transport.as_ref().unwrap().send(ping(9)).unwrap();
        client.to_transport = None;
        let started = std::time::Instant::now();
        let end = run(
            &mut down,
            &mut up,
            std::future::pending(),
            Duration::from_millis(100),
        )
        .await;
        assert_eq!(end, PumpEnd::ClientClosed);
        assert!(started.elapsed() < LONG);
    }

    #[tokio::test]
    async fn a_cancelled_request_is_not_awaited_after_eof() {
        let (mut down, mut client) = scripted::<RoleServer>(None);
        let (mut up, mut node) = scripted::<RoleClient>(None);
        let to_bridge = client.to_transport.take().unwrap();
        to_bridge.send(ping(1)).unwrap();
        let cancel: ClientJsonRpcMessage = serde_json::from_value(serde_json::json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": 1, "reason": "user gave up"},
        }))
        .unwrap();
        to_bridge.send(cancel).unwrap();
        drop(to_bridge);
        let end = run(&mut down, &mut up, std::future::pending(), LONG).await;
        assert_eq!(end, PumpEnd::ClientClosed);
        // Both went to the node, in order.
        assert!(matches!(
            node.from_transport.try_recv(),
            Ok(JsonRpcMessage::Request(_))
        ));
        assert!(matches!(
            node.from_transport.try_recv(),
            Ok(JsonRpcMessage::Notification(_))
        ));
    }

    #[tokio::test]
    async fn requests_the_node_cannot_take_are_answered_with_an_error() {
        let (mut down, mut client) = scripted::<RoleServer>(None);
        let (mut up, _node) = scripted::<RoleClient>(Some("connection refused"));
        client.to_transport.as_ref().unwrap().send(ping(5)).unwrap();
        let stop = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let end = run(&mut down, &mut up, stop, LONG).await;
        assert_eq!(end, PumpEnd::Stopped);
        let Ok(JsonRpcMessage::Error(e)) = client.from_transport.try_recv() else {
            panic!("no error answer")
        };
        assert_eq!(e.id, Some(RequestId::Number(5)));
        assert_eq!(e.error.code.0, -32010);
        assert!(e.error.message.contains("connection refused"), "{e:?}");
    }

    #[tokio::test]
    async fn when_the_node_side_ends_owed_requests_are_answered() {
        let (mut down, mut client) = scripted::<RoleServer>(None);
        let (mut up, mut node) = scripted::<RoleClient>(None);
        client.to_transport.as_ref().unwrap().send(ping(3)).unwrap();
        let pump = tokio::spawn(async move {
            let end = run(&mut down, &mut up, std::future::pending(), LONG).await;
            (end, down)
        });
        assert!(node.from_transport.recv().await.is_some());
        node.to_transport = None;
        let (end, _down) = pump.await.unwrap();
        assert_eq!(end, PumpEnd::UpstreamClosed(None));
        let Ok(JsonRpcMessage::Error(e)) = client.from_transport.try_recv() else {
            panic!("no error answer")
        };
        assert_eq!(e.id, Some(RequestId::Number(3)));
    }

    #[test]
    fn errors_are_described_with_their_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] io::Error);
        let e = Outer(io::Error::other("inner"));
        assert_eq!(describe(&e), "outer: inner");
    }
}
