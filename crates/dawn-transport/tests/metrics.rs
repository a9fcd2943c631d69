//! libp2p's registry and the facade metrics after real traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{serve_echo, start};
use dawn_transport::TransportConfig;
use metrics_util::{
    CompositeKey,
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
};

fn labels_match(key: &CompositeKey, name: &str, labels: &[(&str, &str)]) -> bool {
    let key = key.key();
    key.name() == name
        && labels
            .iter()
            .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
}

type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// One snapshot (taking a snapshot drains histograms).
fn snapshot(snapshotter: &Snapshotter) -> Snapshot {
    snapshotter.snapshot().into_vec()
}

fn find<'a>(snapshot: &'a Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    snapshot
        .iter()
        .find(|(key, ..)| labels_match(key, name, labels))
        .map(|(.., value)| value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_and_dawn_metrics_move_with_traffic() {
    // This test binary owns the process-wide recorder.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let config = TransportConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        enable_mdns: false,
        ..TransportConfig::default()
    };
    let (a, _ac) = start(config.clone()).await;
    let (b, b_calls) = start(config).await;
    serve_echo(b_calls);
    let b_id = a.dial(b.listen_addrs()[0].clone()).await.unwrap();
    let body = Bytes::from(vec![b'x'; 1000]);
    let reply = a
        .call(b_id, "echo", body.clone(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, body);

    let text = a.render_libp2p_metrics();
    for family in [
        "libp2p_swarm_dial_attempt",
        "libp2p_swarm_connections_established",
        "libp2p_identify_",
        "libp2p_ping_",
        "libp2p_kad_",
        "libp2p_gossipsub_",
        "libp2p_bandwidth_bytes_total",
    ] {
        assert!(text.contains(family), "{family} missing from:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "one OpenMetrics document");
    assert_eq!(text.matches("# EOF").count(), 1);
    // Connections were counted, and bytes moved over TCP.
    assert!(
        text.lines().any(
            |l| l.starts_with("libp2p_swarm_connections_established_total") && !l.ends_with(" 0")
        ),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("libp2p_bandwidth_bytes_total")
                && l.contains("tcp")
                && !l.ends_with(" 0")),
        "{text}"
    );

    // Facade: connected peers by transport, RPC message sizes.
    let snap = snapshot(&snapshotter);
    assert_eq!(
        find(&snap, "dawn_connected_peers", &[("transport", "tcp")]),
        Some(&DebugValue::Gauge(1.0.into()))
    );
    let Some(DebugValue::Histogram(sizes)) = find(
        &snap,
        "dawn_message_size_bytes",
        &[("direction", "outbound"), ("kind", "request")],
    ) else {
        panic!("no outbound request size histogram");
    };
    assert!(sizes.contains(&1000.0.into()), "{sizes:?}");
    assert!(matches!(
        find(
            &snap,
            "dawn_message_size_bytes",
            &[("direction", "inbound"), ("kind", "response")],
        ),
        Some(DebugValue::Histogram(_))
    ));

    // Shutting down publishes the final byte totals.
    a.shutdown().await;
    let snap = snapshot(&snapshotter);
    for direction in ["inbound", "outbound"] {
        match find(
            &snap,
            "dawn_network_bytes_total",
            &[("direction", direction)],
        ) {
            Some(DebugValue::Counter(n)) => assert!(*n > 1000, "{direction}: {n}"),
            other => panic!("{direction}: {other:?}"),
        }
    }
    b.shutdown().await;
}
