//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

use dawn_transport::{InboundCalls, Transport, TransportConfig, TransportEvent, identity::Keypair};
use tokio::sync::broadcast;

/// A generous bound for anything the network has to do.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A config for in-process meshes: memory transport, no mDNS, no Kademlia.
pub fn memory_config() -> TransportConfig {
    TransportConfig {
        listen: vec!["/memory/0".parse().unwrap()],
        enable_mdns: false,
        enable_kademlia: false,
        connect_timeout: Duration::from_secs(5),
        ..TransportConfig::default()
    }
}

pub async fn start(config: TransportConfig) -> (Transport, InboundCalls) {
    Transport::start(Keypair::generate_ed25519(), config)
        .await
        .unwrap()
}

/// Answers every call with its body.
pub fn serve_echo(mut calls: InboundCalls) {
    tokio::spawn(async move {
        while let Some(call) = calls.recv().await {
            let body = call.body().clone();
            call.respond(body).await;
        }
    });
}

/// Waits (at most [`PATIENCE`]) for the first event `pick` maps to `Some`.
pub async fn next_matching<T>(
    events: &mut broadcast::Receiver<TransportEvent>,
    what: &str,
    pick: impl FnMut(TransportEvent) -> Option<T>,
) -> T {
    next_matching_within(events, what, PATIENCE, pick).await
}

/// [`next_matching`] with its own patience.
pub async fn next_matching_within<T>(
    events: &mut broadcast::Receiver<TransportEvent>,
    what: &str,
    patience: Duration,
    mut pick: impl FnMut(TransportEvent) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(event) {
                        return found;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    panic!("lagged {n} events while waiting for {what}")
                }
                Err(broadcast::error::RecvError::Closed) => {
                    panic!("event stream closed while waiting for {what}")
                }
            }
        }
    };
    tokio::time::timeout(patience, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out after {patience:?} waiting for {what}"))
}
