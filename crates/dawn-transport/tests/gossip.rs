//! Gossipsub with node-side validation, over the memory transport. Kademlia
//! and mDNS are off so the connection graph is exactly what the tests dial.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{memory_config, start};
use dawn_transport::{GossipValidation, PeerId, PublishError, Transport, TransportEvent};
use tokio::sync::mpsc;

const TOPIC: &str = "dawn/test/registry";

/// What a validating node saw: (author, payload).
type Seen = mpsc::UnboundedReceiver<(Option<PeerId>, Bytes)>;

/// Validates every gossip message `node` receives with `verdict`, and
/// reports each one (with its verdict applied) on the returned channel.
fn validate(node: &Transport, verdict: fn(&[u8]) -> GossipValidation) -> Seen {
    let mut events = node.subscribe();
    let node = node.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let TransportEvent::GossipMessage {
                id,
                source,
                propagation_source,
                topic,
                data,
            } = event
            {
                assert_eq!(topic, TOPIC);
                let result = verdict(&data);
                if node
                    .report_validation(id, propagation_source, result)
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tx.send((source, data));
            }
        }
    });
    rx
}

fn accept_all(_: &[u8]) -> GossipValidation {
    GossipValidation::Accept
}

/// Nodes in a line: node i dials node i+1. Every node subscribes.
async fn line(n: usize) -> Vec<Transport> {
    line_with(n, memory_config()).await
}

async fn line_with(n: usize, config: dawn_transport::TransportConfig) -> Vec<Transport> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        let (node, _calls) = start(config.clone()).await;
        assert!(node.gossip_subscribe(TOPIC).await.unwrap());
        nodes.push(node);
    }
    for pair in nodes.windows(2) {
        pair[0]
            .dial(pair[1].listen_addrs()[0].clone())
            .await
            .unwrap();
    }
    nodes
}

/// Receives the next message `seen` reports, at most `within`.
async fn next(seen: &mut Seen, within: Duration) -> Option<(Option<PeerId>, Bytes)> {
    tokio::time::timeout(within, seen.recv())
        .await
        .ok()
        .flatten()
}

/// Meshes form on heartbeats after the subscriptions are exchanged. Publish
/// numbered probes from `from` until `at` (at the far end) receives one, so
/// every hop in between has the next one in its mesh. Each attempt waits on
/// the receiving side, with a bound of a few heartbeats.
async fn await_mesh(from: &Transport, at: &mut Seen) {
    for attempt in 0..60u32 {
        let probe = Bytes::from(format!("probe-{attempt}"));
        match from.publish(TOPIC, probe).await {
            Ok(()) | Err(PublishError::NoPeers(_)) => {}
            Err(e) => panic!("probe publish failed: {e}"),
        }
        if let Some((_, data)) = next(at, Duration::from_millis(500)).await {
            assert!(data.starts_with(b"probe-"));
            return;
        }
    }
    panic!("gossip mesh did not form within 30 s");
}

/// Drops queued probes.
fn drain(seen: &mut Seen) {
    while seen.try_recv().is_ok() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_on_one_node_reaches_all_others_through_the_mesh() {
    let nodes = line(4).await;
    let mut seen: Vec<Seen> = nodes.iter().map(|n| validate(n, accept_all)).collect();
    await_mesh(&nodes[0], &mut seen[3]).await;
    for s in &mut seen {
        drain(s);
    }

    nodes[0]
        .publish(TOPIC, Bytes::from_static(b"hello mesh"))
        .await
        .unwrap();
    let author = nodes[0].local_peer_id();
    for (i, s) in seen.iter_mut().enumerate().skip(1) {
        // Stray probes may still arrive; skip them.
        loop {
            let (source, data) = next(s, common::PATIENCE)
                .await
                .unwrap_or_else(|| panic!("node {i} never got the message"));
            if data.starts_with(b"probe-") {
                continue;
            }
            assert_eq!(&data[..], b"hello mesh", "node {i}");
            assert_eq!(source, Some(author), "signed by the publisher");
            break;
        }
    }
    // The publisher does not receive its own message.
    assert!(seen[0].try_recv().is_err());
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_with_kademlia_all_receive_an_announcement() {
    // As a node runs: Kademlia on, so the line quickly becomes a dense graph.
    let config = dawn_transport::TransportConfig {
        enable_kademlia: true,
        ..memory_config()
    };
    let nodes = line_with(30, config).await;
    let mut seen: Vec<Seen> = nodes.iter().map(|n| validate(n, accept_all)).collect();
    await_mesh(&nodes[0], &mut seen[29]).await;
    nodes[0]
        .publish(TOPIC, Bytes::from_static(b"announce"))
        .await
        .unwrap();
    for (i, s) in seen.iter_mut().enumerate().skip(1) {
        loop {
            let (_, data) = next(s, common::PATIENCE)
                .await
                .unwrap_or_else(|| panic!("node {i} never got the announcement"));
            if &data[..] == b"announce" {
                break;
            }
        }
    }
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_message_is_not_forwarded_and_an_accepted_one_is() {
    // a - b - c: c hears of a's messages only through b.
    let nodes = line(3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut at_b = validate(b, |data| {
        if data == b"forged" {
            GossipValidation::Reject
        } else {
            GossipValidation::Accept
        }
    });
    let mut at_c = validate(c, accept_all);
    await_mesh(a, &mut at_c).await;
    assert!(!a.is_connected(&c.local_peer_id()), "a and c must not meet");
    assert!(
        b.gossip_mesh_peers(TOPIC)
            .await
            .unwrap()
            .contains(&c.local_peer_id())
    );

    a.publish(TOPIC, Bytes::from_static(b"forged"))
        .await
        .unwrap();
    // b sees (and rejects) it...
    loop {
        let (_, data) = next(&mut at_b, common::PATIENCE).await.expect("b got it");
        if &data[..] == b"forged" {
            break;
        }
    }
    // ...then a valid message follows the same path. b reports its verdicts
    // in the order the messages arrived, so had "forged" been forwarded it
    // would reach c ahead of "genuine".
    a.publish(TOPIC, Bytes::from_static(b"genuine"))
        .await
        .unwrap();
    loop {
        let (source, data) = next(&mut at_c, common::PATIENCE)
            .await
            .expect("the accepted message reaches c");
        assert_ne!(&data[..], b"forged", "a rejected message was forwarded");
        if &data[..] == b"genuine" {
            assert_eq!(source, Some(a.local_peer_id()));
            break;
        }
    }
    // c has nothing more: the rejected message is gone for good (b dropped
    // it from its cache, so it is not offered through IHAVE either).
    assert!(at_c.try_recv().is_err());
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn publishing_without_subscribed_peers_is_a_soft_error_and_size_is_bounded() {
    let config = dawn_transport::TransportConfig {
        gossip_max_message_size: 4096,
        ..memory_config()
    };
    let (node, _calls) = start(config).await;
    let err = node
        .publish(TOPIC, Bytes::from_static(b"alone"))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::NoPeers(_)), "{err}");
    assert!(err.is_soft());
    let err = node
        .publish(TOPIC, Bytes::from(vec![0u8; 5000]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::TooLarge {
                len: 5000,
                max: 4096
            }
        ),
        "{err}"
    );
    assert!(!err.is_soft());
    node.shutdown().await;
}
