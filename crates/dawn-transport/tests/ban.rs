//! Bans: disconnect at once, refuse in both directions, unban lets back in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{next_matching, start};
use dawn_transport::{Multiaddr, TransportConfig, TransportEvent};

fn tcp() -> TransportConfig {
    TransportConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        enable_mdns: false,
        ..common::memory_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_peer_is_disconnected_refused_and_let_back_after_unban() {
    let (a, _ac) = start(tcp()).await;
    let (b, _bc) = start(tcp()).await;
    let (a_id, b_id) = (a.local_peer_id(), b.local_peer_id());
    let a_addr = a.listen_addrs()[0].clone();
    let b_addr: Multiaddr = format!("{}/p2p/{b_id}", b.listen_addrs()[0])
        .parse()
        .unwrap();
    let mut a_events = a.subscribe();
    b.dial(a_addr.clone()).await.unwrap();
    next_matching(&mut a_events, "b connecting", |e| match e {
        TransportEvent::PeerConnected { peer, .. } if peer == b_id => Some(()),
        _ => None,
    })
    .await;

    a.ban(b_id).await.unwrap();
    assert!(a.is_banned(&b_id));
    assert_eq!(a.banned_peers(), vec![b_id]);
    next_matching(&mut a_events, "b being disconnected", |e| match e {
        TransportEvent::PeerDisconnected { peer, .. } if peer == b_id => Some(()),
        _ => None,
    })
    .await;
    assert!(!a.is_connected(&b_id));

    // a does not dial it...
    let err = a.dial(b_addr.clone()).await.unwrap_err();
    assert!(
        err.to_string().contains("blocked") || err.to_string().contains("denied"),
        "{err}"
    );
    // ...and refuses it when it dials (its side may see the connection
    // open before a closes it).
    let _ = b.dial(a_addr.clone()).await;
    let error = next_matching(&mut a_events, "b being refused", |e| match e {
        TransportEvent::InboundFailed { error, .. } => Some(error),
        TransportEvent::PeerConnected { peer, .. } if peer == b_id => {
            panic!("a banned peer got in")
        }
        _ => None,
    })
    .await;
    assert!(error.contains("denied"), "{error}");
    assert!(!a.is_connected(&b_id));
    // Calls to it fail too.
    assert!(
        a.call(
            b_id,
            "echo",
            bytes::Bytes::new(),
            std::time::Duration::from_secs(2)
        )
        .await
        .is_err()
    );

    a.unban(b_id).await.unwrap();
    assert!(!a.is_banned(&b_id));
    b.dial(a_addr).await.unwrap();
    next_matching(&mut a_events, "b back after unban", |e| match e {
        TransportEvent::PeerConnected { peer, .. } if peer == b_id => Some(()),
        _ => None,
    })
    .await;
    assert!(a.is_connected(&b_id));
    assert!(b.is_connected(&a_id));
}
