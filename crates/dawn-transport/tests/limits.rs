//! Hard connection limits and the watermark connection manager.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::HashSet, time::Duration};

use bytes::Bytes;
use common::{memory_config, next_matching, serve_echo, start};
use dawn_transport::{PeerId, TransportConfig, TransportEvent};

#[tokio::test]
async fn max_connections_per_peer_is_honoured_in_both_directions() {
    // Outbound: a second dial to the same peer is denied locally.
    let (a, _ac) = start(TransportConfig {
        max_connections_per_peer: 1,
        ..memory_config()
    })
    .await;
    let (b, _bc) = start(memory_config()).await;
    let b_addr = b.listen_addrs()[0].clone();
    a.dial(b_addr.clone()).await.unwrap();
    let err = a.dial(b_addr).await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    assert_eq!(a.connected_peers()[0].addresses.len(), 1);

    // Inbound: the limited side refuses the second connection.
    let (c, _cc) = start(TransportConfig {
        max_connections_per_peer: 1,
        ..memory_config()
    })
    .await;
    let mut c_events = c.subscribe();
    let c_addr = c.listen_addrs()[0].clone();
    b.dial(c_addr.clone()).await.unwrap();
    // The dialer may see the second connection open and then close.
    let _ = b.dial(c_addr).await;
    let error = next_matching(&mut c_events, "the refused connection", |e| match e {
        TransportEvent::InboundFailed { error, .. } => Some(error),
        _ => None,
    })
    .await;
    assert!(error.contains("denied"), "{error}");
    let peers = c.connected_peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].addresses.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_high_watermark_idle_unprotected_peers_are_pruned_down_to_low() {
    let (hub, _hub_calls) = start(TransportConfig {
        low_watermark: 2,
        high_watermark: 4,
        // Only a new connection triggers pruning in this test.
        prune_interval: Duration::from_secs(3600),
        ..memory_config()
    })
    .await;
    let hub_addr = hub.listen_addrs()[0].clone();
    let mut events = hub.subscribe();
    let mut spokes = Vec::new();
    for _ in 0..5 {
        let (spoke, calls) = start(memory_config()).await;
        serve_echo(calls);
        spokes.push(spoke);
    }
    let ids: Vec<PeerId> = spokes.iter().map(|s| s.local_peer_id()).collect();
    let connected = |events: &mut tokio::sync::broadcast::Receiver<TransportEvent>, who: PeerId| {
        let mut events = events.resubscribe();
        async move {
            next_matching(&mut events, "a spoke connecting", |e| match e {
                TransportEvent::PeerConnected { peer, .. } if peer == who => Some(()),
                _ => None,
            })
            .await
        }
    };

    // Spoke 0 is protected (a bootstrap peer); spoke 1 carries RPC traffic.
    hub.protect(ids[0]).await.unwrap();
    assert!(hub.is_protected(&ids[0]));
    for (i, spoke) in spokes.iter().enumerate().take(2) {
        let wait = connected(&mut events, ids[i]);
        spoke.dial(hub_addr.clone()).await.unwrap();
        wait.await;
    }
    let reply = hub
        .call(
            ids[1],
            "echo",
            Bytes::from_static(b"busy"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(&reply[..], b"busy");
    // Spokes 2 and 3 bring the hub to the high watermark: nothing happens.
    for (i, spoke) in spokes.iter().enumerate().skip(2).take(2) {
        let wait = connected(&mut events, ids[i]);
        spoke.dial(hub_addr.clone()).await.unwrap();
        wait.await;
    }
    assert_eq!(hub.connected_peers().len(), 4);

    // Spoke 4 crosses it: the hub prunes down to 2, keeping the protected
    // and the active peer, and lets the newcomer in before pruning.
    spokes[4].dial(hub_addr.clone()).await.unwrap();
    let mut pruned = HashSet::new();
    while pruned.len() < 3 {
        let peer = next_matching(&mut events, "peers being pruned", |e| match e {
            TransportEvent::PeerPruned { peer } => Some(peer),
            _ => None,
        })
        .await;
        assert!(pruned.insert(peer), "pruned twice: {peer}");
    }
    let expected: HashSet<PeerId> = ids[2..].iter().copied().collect();
    assert_eq!(pruned, expected);
    let mut gone = HashSet::new();
    while gone.len() < 3 {
        let peer = next_matching(&mut events, "pruned peers disconnecting", |e| match e {
            TransportEvent::PeerDisconnected { peer, .. } => Some(peer),
            _ => None,
        })
        .await;
        assert!(
            expected.contains(&peer),
            "kept peer {peer} was disconnected"
        );
        gone.insert(peer);
    }
    assert!(hub.is_connected(&ids[0]));
    assert!(hub.is_connected(&ids[1]));
    assert_eq!(hub.connected_peers().len(), 2);

    // Unprotected, spoke 0 is fair game the next time.
    hub.unprotect(ids[0]).await.unwrap();
    assert!(!hub.is_protected(&ids[0]));
}

#[tokio::test]
async fn over_the_memory_limit_new_connections_are_refused() {
    // Any running process uses more than one byte.
    let (a, _ac) = start(TransportConfig {
        max_memory_bytes: Some(1),
        ..memory_config()
    })
    .await;
    let (b, _bc) = start(memory_config()).await;
    let mut a_events = a.subscribe();
    let err = a.dial(b.listen_addrs()[0].clone()).await.unwrap_err();
    assert!(err.to_string().contains("memory"), "{err}");
    let _ = b.dial(a.listen_addrs()[0].clone()).await;
    let error = next_matching(&mut a_events, "the refused connection", |e| match e {
        TransportEvent::InboundFailed { error, .. } => Some(error),
        _ => None,
    })
    .await;
    assert!(error.contains("memory"), "{error}");
    assert!(a.connected_peers().is_empty());
}
