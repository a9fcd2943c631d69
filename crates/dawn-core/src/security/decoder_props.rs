//! Property tests of the decoders that read bytes from peers: the Dawn RPC
//! frame decoder, the JSON-RPC request parser and the registry record
//! decoder. Whatever arrives, they return an error (never panic, never
//! accept a tampered record).
//!
//! They go through the same entry points as the cargo-fuzz targets in
//! `fuzz/` ([`crate::fuzzing`]), and stand in for them where no nightly
//! toolchain is available (see docs/security.md). Run with more cases:
//! `PROPTEST_CASES=100000 cargo test -p dawn-core --lib decoder_props`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use dawn_transport::identity::Keypair;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::{
    fuzzing,
    registry::record::{self, HeartbeatBody, RecordBody},
};

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

/// A frame of `kind` with id 1 and `payload`, as a peer's transport writes it.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(1 + 8 + payload.len()).unwrap();
    let mut data = len.to_be_bytes().to_vec();
    data.push(kind);
    data.extend_from_slice(&1u64.to_be_bytes());
    data.extend_from_slice(payload);
    data
}

/// A request frame (deadline 5 s) carrying `body` to `agent`.
fn request_frame(agent: &str, body: &[u8]) -> Vec<u8> {
    let mut payload = 5000u32.to_be_bytes().to_vec();
    payload.push(u8::try_from(agent.len()).unwrap());
    payload.extend_from_slice(agent.as_bytes());
    payload.extend_from_slice(body);
    frame(0, &payload)
}

/// The seed inputs of the fuzz targets (`fuzz/corpus/<target>/<name>`):
/// valid messages, so that fuzzing starts past the framing and signature
/// checks. Rewritten by `DAWN_UPDATE_FUZZ_SEEDS=1 cargo test -p dawn-core
/// --lib fuzz_seed`.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let keypair = Keypair::generate_ed25519();
    let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#;
    let ping = br#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#;
    let response =
        br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}"#;
    let event = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#;
    vec![
        (
            "rpc_message",
            "request-tools-call",
            request_frame("system", call),
        ),
        (
            "rpc_message",
            "ping-then-cancel",
            [request_frame("files", ping), frame(3, &[])].concat(),
        ),
        (
            "rpc_message",
            "response-event-failure",
            [
                frame(1, response),
                frame(4, event),
                frame(2, b"\x00\x01busy"),
            ]
            .concat(),
        ),
        (
            "registry_record",
            "record",
            sealed_record(&keypair, 3).to_vec(),
        ),
        (
            "registry_record",
            "heartbeat",
            sealed_heartbeat(&keypair, 4).to_vec(),
        ),
    ]
}

#[test]
fn fuzz_seed_corpora_are_valid_inputs() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    if std::env::var_os("DAWN_UPDATE_FUZZ_SEEDS").is_some() {
        for (target, name, data) in seeds() {
            std::fs::create_dir_all(corpus.join(target)).unwrap();
            std::fs::write(corpus.join(target).join(name), data).unwrap();
        }
    }
    for (target, _, _) in seeds() {
        let dir = corpus.join(target);
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            files += 1;
            if target == "rpc_message" {
                let outcome = fuzzing::rpc_message(&data);
                assert!(
                    outcome.error.is_none() && outcome.frames > 0,
                    "{}: {outcome:?}",
                    path.display()
                );
            } else {
                assert_eq!(
                    fuzzing::registry_record(&data),
                    Ok(()),
                    "{}",
                    path.display()
                );
            }
        }
        assert!(files > 0, "no seeds in {}", dir.display());
    }
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
        let _ = fuzzing::rpc_message(&data);
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
        let _ = fuzzing::rpc_message(&data);
    }

    #[test]
    fn framed_json_rpc_requests_reach_the_request_parser(value in json_value(), agent in "[a-z]{0,8}") {
        let body = serde_json::to_vec(&value).unwrap();
        let data = request_frame(&agent, &body);
        let outcome = fuzzing::rpc_message(&data);
        prop_assert_eq!(outcome.frames, 1, "{:?}", outcome);
        prop_assert_eq!(outcome.error, None);
    }

    #[test]
    fn json_rpc_bytes_are_parsed_or_refused_with_a_json_rpc_error(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = fuzzing::json_rpc_request(&data);
    }

    #[test]
    fn json_rpc_values_are_parsed_or_refused_with_a_json_rpc_error(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = fuzzing::json_rpc_request(&bytes);
    }

    #[test]
    fn registry_envelopes_of_random_bytes_are_rejected(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(fuzzing::registry_record(&data).is_err());
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
        prop_assert!(fuzzing::registry_record(&data).is_err());
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
        prop_assert!(fuzzing::registry_record(&valid).is_ok());

        // Any changed byte: rejected.
        let mut flipped = valid.to_vec();
        let at = position.index(flipped.len());
        flipped[at] ^= flip;
        prop_assert!(fuzzing::registry_record(&flipped).is_err(), "byte {at} changed");

        // Any truncation: rejected.
        let keep = cut.index(valid.len());
        prop_assert!(fuzzing::registry_record(&valid[..keep]).is_err(), "cut at {keep}");

        // Bytes appended to the body: rejected.
        let mut longer = valid.to_vec();
        longer.extend_from_slice(&extra);
        prop_assert!(fuzzing::registry_record(&longer).is_err());

        // Signed by someone else than the origin it names: rejected.
        let other = Keypair::generate_ed25519();
        let body = RecordBody {
            origin: keypair.public().to_peer_id(),
            version: 9,
            addrs: Vec::new(),
            agents: Vec::new(),
        };
        let forged = record::seal_record(&other, body).unwrap().envelope.clone();
        prop_assert!(fuzzing::registry_record(&forged).is_err());
    }
}
