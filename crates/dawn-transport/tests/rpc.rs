//! Two real transports on 127.0.0.1 calling each other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use dawn_transport::{
    CallUpdate, FailureCode, InboundCalls, Multiaddr, RpcError, Transport, TransportConfig,
    TransportEvent, identity::Keypair,
};

fn config(listen: &str, max: usize) -> TransportConfig {
    TransportConfig {
        listen: vec![listen.parse().unwrap()],
        max_message_size: max,
        connect_timeout: Duration::from_secs(5),
        ..TransportConfig::default()
    }
}

async fn start(listen: &str, max: usize) -> (Transport, InboundCalls) {
    Transport::start(Keypair::generate_ed25519(), config(listen, max))
        .await
        .unwrap()
}

/// Serves calls: agent "echo" answers with the body; "slow" waits for
/// cancellation and reports it; "events" sends three events first; "big"
/// answers with a body larger than the limit.
fn serve(mut calls: InboundCalls, cancelled: tokio::sync::mpsc::Sender<u64>) {
    tokio::spawn(async move {
        while let Some(mut call) = calls.recv().await {
            let cancelled = cancelled.clone();
            tokio::spawn(async move {
                match call.agent() {
                    "echo" => {
                        let body = call.body().clone();
                        call.respond(body).await;
                    }
                    "slow" => {
                        let token = call.cancellation();
                        tokio::select! {
                            () = token.cancelled() => { let _ = cancelled.send(1).await; }
                            () = tokio::time::sleep(Duration::from_secs(30)) => call.respond(Bytes::from_static(b"late")).await,
                        }
                    }
                    "events" => {
                        let events = call.events();
                        let mut replies = call.take_replies().unwrap();
                        for i in 0..3u8 {
                            assert!(events.send(Bytes::from(vec![b'0' + i])).await);
                        }
                        // Ask the caller something and wait for its answer.
                        assert!(events.send(Bytes::from_static(b"question")).await);
                        let answer = replies.recv().await.unwrap();
                        call.respond(answer).await;
                    }
                    "big" => call.respond(Bytes::from(vec![b'x'; 2048])).await,
                    _ => call.fail(FailureCode::Internal, "no such agent").await,
                }
            });
        }
    });
}

async fn pair(
    listen: &str,
    max: usize,
) -> (Transport, Transport, tokio::sync::mpsc::Receiver<u64>) {
    let (a, _a_calls) = start(listen, max).await;
    let (b, b_calls) = start(listen, max).await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    serve(b_calls, tx);
    let id = a.dial(b.listen_addrs()[0].clone()).await.unwrap();
    assert_eq!(id, b.local_peer_id());
    (a, b, rx)
}

#[tokio::test]
async fn echo_over_tcp_and_quic() {
    for listen in ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"] {
        let (a, b, _) = pair(listen, 1 << 20).await;
        let reply = a
            .call(
                b.local_peer_id(),
                "echo",
                Bytes::from_static(b"hi"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(&reply[..], b"hi", "over {listen}");
        let peers = a.connected_peers();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].peer_id, b.local_peer_id());
    }
}

#[tokio::test]
async fn many_calls_in_flight_share_one_link_and_stay_correlated() {
    let (a, b, _) = pair("/ip4/127.0.0.1/tcp/0", 1 << 20).await;
    let mut tasks = Vec::new();
    for i in 0..500u32 {
        let a = a.clone();
        let peer = b.local_peer_id();
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(i.to_string());
            let reply = a
                .call(peer, "echo", body.clone(), Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(reply, body);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn oversized_request_is_refused_before_sending_and_oversized_response_is_an_error() {
    let (a, b, _) = pair("/ip4/127.0.0.1/tcp/0", 1024).await;
    let err = a
        .call(
            b.local_peer_id(),
            "echo",
            Bytes::from(vec![0u8; 1025]),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::RequestTooLarge {
                len: 1025,
                max: 1024
            }
        ),
        "{err}"
    );
    // The callee refuses to send a response over its own limit.
    let err = a
        .call(
            b.local_peer_id(),
            "big",
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Remote {
                code: FailureCode::MessageTooLarge,
                ..
            }
        ),
        "{err}"
    );
    // The link still works afterwards.
    let ok = a
        .call(
            b.local_peer_id(),
            "echo",
            Bytes::from_static(b"after"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(&ok[..], b"after");
}

#[tokio::test]
async fn receiver_with_smaller_limit_skips_the_frame_and_answers_too_large() {
    let (a, _a_calls) = start("/ip4/127.0.0.1/tcp/0", 1 << 20).await;
    let (b, b_calls) = start("/ip4/127.0.0.1/tcp/0", 1024).await;
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    serve(b_calls, tx);
    a.dial(b.listen_addrs()[0].clone()).await.unwrap();
    let err = a
        .call(
            b.local_peer_id(),
            "echo",
            Bytes::from(vec![7u8; 200_000]),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Remote {
                code: FailureCode::MessageTooLarge,
                ..
            }
        ),
        "{err}"
    );
    let ok = a
        .call(
            b.local_peer_id(),
            "echo",
            Bytes::from_static(b"next"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(&ok[..], b"next");
}

#[tokio::test]
async fn deadline_expiry_returns_an_error_and_cancels_the_remote_work() {
    let (a, b, mut cancelled) = pair("/ip4/127.0.0.1/tcp/0", 1 << 20).await;
    let err = a
        .call(
            b.local_peer_id(),
            "slow",
            Bytes::new(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::DeadlineExceeded { .. }), "{err}");
    // The callee observed the cancellation.
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), cancelled.recv())
            .await
            .unwrap(),
        Some(1)
    );
}

#[tokio::test]
async fn dropping_a_call_cancels_it_remotely() {
    let (a, b, mut cancelled) = pair("/ip4/127.0.0.1/tcp/0", 1 << 20).await;
    let call = a
        .start_call(
            b.local_peer_id(),
            "slow",
            Bytes::new(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    drop(call);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), cancelled.recv())
            .await
            .unwrap(),
        Some(1)
    );
}

#[tokio::test]
async fn events_flow_back_and_replies_flow_forward() {
    let (a, b, _) = pair("/ip4/127.0.0.1/tcp/0", 1 << 20).await;
    let mut call = a
        .start_call(
            b.local_peer_id(),
            "events",
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        match call.next().await {
            CallUpdate::Event(e) if &e[..] == b"question" => {
                call.reply_to_event(Bytes::from_static(b"answer"))
                    .await
                    .unwrap();
            }
            CallUpdate::Event(e) => seen.push(e),
            CallUpdate::Done(result) => {
                assert_eq!(&result.unwrap()[..], b"answer");
                break;
            }
        }
    }
    assert_eq!(
        seen,
        vec![
            Bytes::from_static(b"0"),
            Bytes::from_static(b"1"),
            Bytes::from_static(b"2")
        ]
    );
}

#[tokio::test]
async fn peer_shutdown_mid_call_fails_fast_with_connection_lost() {
    let (a, b, _) = pair("/ip4/127.0.0.1/tcp/0", 1 << 20).await;
    let peer = b.local_peer_id();
    let a2 = a.clone();
    let pending = tokio::spawn(async move {
        a2.call(peer, "slow", Bytes::new(), Duration::from_secs(30))
            .await
    });
    // Wait until the call is on the wire: the link exists once echo works.
    a.call(
        peer,
        "echo",
        Bytes::from_static(b"x"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    b.shutdown().await;
    let err = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("call must not hang")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, RpcError::ConnectionLost(_)), "{err}");
}

#[tokio::test]
async fn unknown_peer_without_address_is_a_clear_error() {
    let (a, _calls) = start("/ip4/127.0.0.1/tcp/0", 1024).await;
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let err = a
        .call(stranger, "echo", Bytes::new(), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::NoAddress(p) if p == stranger),
        "{err}"
    );
}

#[tokio::test]
async fn reconnects_using_known_addresses_after_disconnect() {
    let (a, b, _) = pair("/ip4/127.0.0.1/tcp/0", 1 << 20).await;
    let peer = b.local_peer_id();
    let mut events = a.subscribe();
    a.disconnect(peer).await.unwrap();
    loop {
        if let TransportEvent::PeerDisconnected { peer: p, .. } = events.recv().await.unwrap()
            && p == peer
        {
            break;
        }
    }
    assert!(!a.is_connected(&peer));
    // The next call redials the address learned when we first dialed.
    let reply = a
        .call(
            peer,
            "echo",
            Bytes::from_static(b"again"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(&reply[..], b"again");
}

#[tokio::test]
async fn dialing_a_wrong_peer_id_is_refused() {
    let (a, _ac) = start("/ip4/127.0.0.1/tcp/0", 1024).await;
    let (b, _bc) = start("/ip4/127.0.0.1/tcp/0", 1024).await;
    let wrong = Keypair::generate_ed25519().public().to_peer_id();
    let addr: Multiaddr = format!("{}/p2p/{wrong}", b.listen_addrs()[0])
        .parse()
        .unwrap();
    assert!(a.dial(addr).await.is_err());
}

#[tokio::test]
async fn memory_transport_works_for_in_process_meshes() {
    let (a, b, _) = pair("/memory/0", 1 << 20).await;
    let reply = a
        .call(
            b.local_peer_id(),
            "echo",
            Bytes::from_static(b"mem"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(&reply[..], b"mem");
}
