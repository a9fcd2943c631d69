//! Property tests of the decoders that read bytes from peers: the Dawn RPC
//! frame decoder, the JSON-RPC request parser and the registry record
//! decoder. Whatever arrives, they return an error (never panic, never
//! accept a tampered record).
//!
//! These stand in for cargo-fuzz targets in the normal test suite (see
//! docs/security.md). Run with more cases:
//! `PROPTEST_CASES=100000 cargo test -p dawn-core --lib decoder_props`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use dawn_transport::identity::Keypair;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::registry::record::{self, HeartbeatBody, RecordBody};

/// A record signed by `keypair` with one agent and one tool.
fn sealed_record(keypair: &Keypair, version: u64) -> Bytes {
    let descriptor: crate::descriptor::AgentDescriptor = serde_json::from_value(json!({
        "id": "files",
        "description": "files",
        "tools": [{"name": "read", "inputSchema": {"type": "object"}}],
    }))
    .unwrap();
    let body = RecordBody {
        origin: keypair.public().to_peer_id(),
        version,
        addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
        agents: vec![descriptor],
    };
    record::seal_record(keypair, body).unwrap().envelope.clone()
}

fn sealed_heartbeat(keypair: &Keypair, seq: u64) -> Bytes {
    let body = HeartbeatBody {
        origin: keypair.public().to_peer_id(),
        seq,
        version: seq,
        leaving: false,
    };
    record::seal_heartbeat(keypair, body).unwrap().envelope
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "2.0",
            "tools/call",
            "id",
            "method",
            "params",
            "jsonrpc"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["jsonrpc", "id", "method", "params", "name", "x"])
                    .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rpc_frames_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048), max in 0usize..4096) {
        let _ = dawn_transport::rpc::decode_all(max, &data);
    }

    #[test]
    fn rpc_frames_with_plausible_headers_never_panic(
        len in 0u32..600,
        kind in 0u8..8,
        rest in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut data = len.to_be_bytes().to_vec();
        data.push(kind);
        data.extend_from_slice(&rest);
        let _ = dawn_transport::rpc::decode_all(256, &data);
    }

    #[test]
    fn json_rpc_bytes_are_parsed_or_refused_with_a_json_rpc_error(data in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err((_, error)) = crate::jsonrpc::parse_request(&data) {
            prop_assert!(error.kind().is_some(), "{error:?}");
        }
    }

    #[test]
    fn json_rpc_values_are_parsed_or_refused_with_a_json_rpc_error(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        match crate::jsonrpc::parse_request(&bytes) {
            Ok(request) => prop_assert!(!request.method.is_empty()),
            Err((_, error)) => prop_assert!(error.kind().is_some(), "{error:?}"),
        }
    }

    #[test]
    fn registry_envelopes_of_random_bytes_are_rejected(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(record::open(&Bytes::from(data), 1 << 20).is_err());
    }

    #[test]
    fn registry_envelopes_with_a_valid_header_and_random_rest_are_rejected(
        kind in 0u8..4,
        rest in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let valid = sealed_record(&Keypair::generate_ed25519(), 1);
        let mut data = valid[..4].to_vec();
        data.push(kind);
        data.extend_from_slice(&rest);
        prop_assert!(record::open(&Bytes::from(data), 1 << 20).is_err());
    }

    #[test]
    fn tampered_registry_records_are_rejected(
        heartbeat in any::<bool>(),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        cut in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let keypair = Keypair::generate_ed25519();
        let valid = if heartbeat {
            sealed_heartbeat(&keypair, 5)
        } else {
            sealed_record(&keypair, 5)
        };
        prop_assert!(record::open(&valid, 1 << 20).is_ok());

        // Any changed byte: rejected.
        let mut flipped = valid.to_vec();
        let at = position.index(flipped.len());
        flipped[at] ^= flip;
        prop_assert!(record::open(&Bytes::from(flipped), 1 << 20).is_err(), "byte {at} changed");

        // Any truncation: rejected.
        let keep = cut.index(valid.len());
        prop_assert!(record::open(&valid.slice(..keep), 1 << 20).is_err(), "cut at {keep}");

        // Bytes appended to the body: rejected.
        let mut longer = valid.to_vec();
        longer.extend_from_slice(&extra);
        prop_assert!(record::open(&Bytes::from(longer), 1 << 20).is_err());

        // Signed by someone else than the origin it names: rejected.
        let other = Keypair::generate_ed25519();
        let body = RecordBody {
            origin: keypair.public().to_peer_id(),
            version: 9,
            addrs: Vec::new(),
            agents: Vec::new(),
        };
        let forged = record::seal_record(&other, body).unwrap().envelope.clone();
        prop_assert!(record::open(&forged, 1 << 20).is_err());
    }
}
