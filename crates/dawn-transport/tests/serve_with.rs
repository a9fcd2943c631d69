//! `InboundCalls::serve_with`: calls handed to a function on the stream
//! reader's task, over real TCP on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use dawn_transport::{
    CallUpdate, InboundCall, InboundCalls, PeerId, Transport, TransportConfig, identity::Keypair,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn config() -> TransportConfig {
    TransportConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        enable_mdns: false,
        enable_kademlia: false,
        connect_timeout: Duration::from_secs(10),
        ..TransportConfig::default()
    }
}

/// Two transports, A connected to B; B's inbound calls and peer id.
async fn connected_pair() -> (Transport, Transport, InboundCalls, PeerId) {
    let (a, _a_calls) = Transport::start(Keypair::generate_ed25519(), config())
        .await
        .unwrap();
    let (b, b_calls) = Transport::start(Keypair::generate_ed25519(), config())
        .await
        .unwrap();
    let peer = a.dial(b.listen_addrs()[0].clone()).await.unwrap();
    (a, b, b_calls, peer)
}

/// "echo" answers with the body; "ask" sends the caller a request and
/// answers with the caller's reply; "wait" sends the event "started", then
/// reports to `cancelled` when the caller cancels.
fn handler(cancelled: tokio::sync::mpsc::Sender<()>) -> impl Fn(InboundCall) + Send + Sync {
    move |call: InboundCall| {
        let cancelled = cancelled.clone();
        tokio::spawn(async move {
            match call.agent() {
                "echo" => {
                    let body = call.body().clone();
                    call.respond(body).await;
                }
                "ask" => {
                    let events = call.events();
                    // Opened lazily, once: a second open gives nothing.
                    let mut replies = events.open_replies().unwrap();
                    assert!(events.clone().open_replies().is_none());
                    assert!(events.send(Bytes::from_static(b"question")).await);
                    let answer = replies.recv().await.unwrap();
                    call.respond(answer).await;
                }
                "wait" => {
                    let token = call.cancellation();
                    // Tell the caller the call is running.
                    assert!(call.events().send(Bytes::from_static(b"started")).await);
                    tokio::select! {
                        () = token.cancelled() => { let _ = cancelled.send(()).await; }
                        () = tokio::time::sleep(PATIENCE) => call.respond(Bytes::from_static(b"late")).await,
                    }
                }
                _ => drop(call),
            }
        });
    }
}

#[tokio::test]
async fn calls_reach_the_handler_including_those_queued_before_it() {
    let (a, b, b_calls, peer) = connected_pair().await;

    // A call made before the handler is installed waits in the queue ...
    let early = {
        let a = a.clone();
        tokio::spawn(async move {
            a.call(peer, "echo", Bytes::from_static(b"early"), PATIENCE)
                .await
        })
    };
    // ... (give it time to be read and queued; the test passes either way)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (tx, mut cancelled) = tokio::sync::mpsc::channel(4);
    b_calls.serve_with(handler(tx));
    // ... and is answered by the handler once it is.
    let reply = tokio::time::timeout(PATIENCE, early)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Bytes::from_static(b"early"));

    // Many calls in flight, all answered.
    let calls = (0..64u32).map(|i| {
        let a = a.clone();
        async move {
            let body = Bytes::from(i.to_string());
            let reply = a.call(peer, "echo", body.clone(), PATIENCE).await.unwrap();
            assert_eq!(reply, body);
        }
    });
    tokio::time::timeout(PATIENCE, futures::future::join_all(calls))
        .await
        .unwrap();

    // A mid-call request and its reply (the reply channel is opened lazily).
    let mut call = a
        .start_call(peer, "ask", Bytes::from_static(b"?"), PATIENCE)
        .await
        .unwrap();
    let answer = tokio::time::timeout(PATIENCE, async {
        loop {
            match call.next().await {
                CallUpdate::Event(event) => {
                    assert_eq!(event, Bytes::from_static(b"question"));
                    call.reply_to_event(Bytes::from_static(b"answer"))
                        .await
                        .unwrap();
                }
                CallUpdate::Done(done) => break done.unwrap(),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(answer, Bytes::from_static(b"answer"));

    // Cancelling a call still reaches the handler's task.
    let mut call = a
        .start_call(peer, "wait", Bytes::from_static(b"."), PATIENCE)
        .await
        .unwrap();
    match tokio::time::timeout(PATIENCE, call.next()).await.unwrap() {
        CallUpdate::Event(event) => assert_eq!(event, Bytes::from_static(b"started")),
        CallUpdate::Done(done) => panic!("the call ended early: {done:?}"),
    }
    call.cancel();
    tokio::time::timeout(PATIENCE, cancelled.recv())
        .await
        .unwrap()
        .unwrap();

    // A call the handler drops unanswered fails instead of hanging.
    let dropped = a
        .call(peer, "nobody", Bytes::from_static(b"."), PATIENCE)
        .await;
    assert!(dropped.is_err(), "{dropped:?}");

    a.shutdown().await;
    b.shutdown().await;
}

/// A graceful shutdown waits for the calls in flight, then closes the
/// transport at once: a response queued by the last call must still reach
/// its caller. The response here is 3 MiB, many flow-control windows, so it
/// is still being written when the shutdown starts; the shutdown lets every
/// stream's writer finish what is queued before it closes the connections.
#[tokio::test(flavor = "current_thread")]
async fn a_response_queued_just_before_shutdown_reaches_the_caller() {
    let (a, b, b_calls, peer) = connected_pair().await;
    let server = b.clone();
    b_calls.serve_with(move |call: InboundCall| {
        let server = server.clone();
        tokio::spawn(async move {
            let body = call.body().clone();
            call.respond(body).await;
            server.shutdown().await;
        });
    });
    let last_words = Bytes::from(
        (0..3 * 1024 * 1024)
            .map(|i: u32| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let reply = a.call(peer, "echo", last_words.clone(), PATIENCE).await;
    assert!(
        reply.as_ref().is_ok_and(|r| *r == last_words),
        "{:?}",
        reply.map(|r| r.len())
    );
    // The server is gone after the first call.
    let after = a
        .call(peer, "echo", Bytes::from_static(b"anyone?"), PATIENCE)
        .await;
    assert!(after.is_err(), "{after:?}");
    a.shutdown().await;
}
