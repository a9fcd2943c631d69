//! The signed registry announcements: records (what a node offers) and
//! heartbeats (that it is still there), their wire format, signing and
//! verification.
//!
//! # Wire format (version 1)
//!
//! ```text
//! "DRG" | 0x01 | kind: u8 | key_len: u16 BE | key | sig_len: u16 BE | sig | body
//! ```
//!
//! - `kind`: 1 = record, 2 = heartbeat.
//! - `key`: the origin's public key, libp2p protobuf encoding.
//! - `sig`: the key's signature over `"dawn-registry/1" | kind | body`.
//! - `body`: JSON, a [`RecordBody`] or a [`HeartbeatBody`].
//!
//! The signature covers the body bytes exactly as sent, so verifiers never
//! re-serialize. A body is accepted only if the key's peer id equals the
//! body's `origin`.

use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use dawn_transport::{Multiaddr, PeerId, identity};
use serde::{Deserialize, Serialize};

use crate::{address::AgentId, descriptor::AgentDescriptor};

const MAGIC: &[u8; 3] = b"DRG";
const WIRE_VERSION: u8 = 1;
const SIGNING_CONTEXT: &[u8] = b"dawn-registry/1";
/// Longest encoded public key accepted (ed25519 is 36 bytes; RSA can be
/// several hundred).
const MAX_KEY_LEN: usize = 2048;
/// Longest signature accepted.
const MAX_SIG_LEN: usize = 1024;

/// Why an announcement was dropped. Also the `reason` label of
/// `dawn_registry_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RegistryRejectReason {
    /// Not a well-formed announcement: bad framing, undecodable key or
    /// body, invalid agent ids, duplicate agents, version 0.
    Malformed,
    /// Larger than `registry.max_record_size`.
    TooLarge,
    /// The signature does not verify, the signer is not the record's
    /// origin, or a gossip message carries a record of another node than
    /// its author.
    Forged,
    /// Older than what is already known about its origin (a replay, or a
    /// late copy).
    Replayed,
}

impl RegistryRejectReason {
    /// Every reason, for metrics and stats.
    pub const ALL: [RegistryRejectReason; 4] = [
        RegistryRejectReason::Malformed,
        RegistryRejectReason::TooLarge,
        RegistryRejectReason::Forged,
        RegistryRejectReason::Replayed,
    ];

    /// `malformed`, `too_large`, `forged` or `replayed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryRejectReason::Malformed => "malformed",
            RegistryRejectReason::TooLarge => "too_large",
            RegistryRejectReason::Forged => "forged",
            RegistryRejectReason::Replayed => "replayed",
        }
    }

    /// Whether the sender is at fault (the announcement is invalid, not just
    /// old): such messages are rejected in gossipsub, which lowers the
    /// sender's peer score.
    pub fn is_misbehaviour(self) -> bool {
        !matches!(self, RegistryRejectReason::Replayed)
    }
}

impl std::fmt::Display for RegistryRejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of announcement an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Record = 1,
    Heartbeat = 2,
}

/// What a node offers: its agents with their tools, resources and prompts,
/// and the addresses it can be reached at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecordBody {
    /// The node the record describes (must be the signer).
    pub(crate) origin: PeerId,
    /// Increases with every announcement of the origin, across restarts.
    pub(crate) version: u64,
    /// Where the origin can be dialed.
    #[serde(default)]
    pub(crate) addrs: Vec<Multiaddr>,
    /// Its agents.
    #[serde(default)]
    pub(crate) agents: Vec<AgentDescriptor>,
}

/// "Still here": sent every `registry.announce_interval`, and with
/// `leaving` when the node shuts down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HeartbeatBody {
    /// The node (must be the signer).
    pub(crate) origin: PeerId,
    /// From the same counter as record versions: every heartbeat has a
    /// higher `seq` than everything the origin sent before.
    pub(crate) seq: u64,
    /// The version of the origin's current record.
    pub(crate) version: u64,
    /// The node is shutting down: mark its agents unavailable now.
    #[serde(default)]
    pub(crate) leaving: bool,
}

/// A verified record with its envelope (as received, for re-serving and
/// caching) and a digest of the body (the tie-break between different
/// records of the same version).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SignedRecord {
    pub(crate) body: RecordBody,
    pub(crate) envelope: Bytes,
    pub(crate) digest: [u8; 32],
}

/// A verified heartbeat with its envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SignedHeartbeat {
    pub(crate) body: HeartbeatBody,
    pub(crate) envelope: Bytes,
}

/// A verified announcement.
#[derive(Debug, Clone)]
pub(crate) enum Announcement {
    Record(Arc<SignedRecord>),
    Heartbeat(SignedHeartbeat),
}

impl Announcement {
    pub(crate) fn origin(&self) -> PeerId {
        match self {
            Announcement::Record(r) => r.body.origin,
            Announcement::Heartbeat(h) => h.body.origin,
        }
    }
}

/// A rejected announcement: why, and the origin it claimed if that could be
/// read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) reason: RegistryRejectReason,
    pub(crate) origin: Option<PeerId>,
}

impl Rejection {
    fn new(reason: RegistryRejectReason) -> Self {
        Rejection {
            reason,
            origin: None,
        }
    }
}

fn signed_message(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + 1 + body.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.push(kind as u8);
    message.extend_from_slice(body);
    message
}

/// Frames and signs `body` with `keypair`.
pub(crate) fn seal(
    keypair: &identity::Keypair,
    kind: Kind,
    body: &[u8],
) -> Result<Bytes, identity::SigningError> {
    let signature = keypair.sign(&signed_message(kind, body))?;
    let key = keypair.public().encode_protobuf();
    let mut out = BytesMut::with_capacity(4 + 1 + 2 + key.len() + 2 + signature.len() + body.len());
    out.put_slice(MAGIC);
    out.put_u8(WIRE_VERSION);
    out.put_u8(kind as u8);
    // Lengths are bounded by the key types libp2p supports.
    out.put_u16(u16::try_from(key.len()).unwrap_or(u16::MAX));
    out.put_slice(&key);
    out.put_u16(u16::try_from(signature.len()).unwrap_or(u16::MAX));
    out.put_slice(&signature);
    out.put_slice(body);
    Ok(out.freeze())
}

/// Signs a record body.
pub(crate) fn seal_record(
    keypair: &identity::Keypair,
    body: RecordBody,
) -> Result<Arc<SignedRecord>, String> {
    let json = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let envelope = seal(keypair, Kind::Record, &json).map_err(|e| e.to_string())?;
    Ok(Arc::new(SignedRecord {
        digest: digest(&json),
        body,
        envelope,
    }))
}

/// Signs a heartbeat body.
pub(crate) fn seal_heartbeat(
    keypair: &identity::Keypair,
    body: HeartbeatBody,
) -> Result<SignedHeartbeat, String> {
    let json = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let envelope = seal(keypair, Kind::Heartbeat, &json).map_err(|e| e.to_string())?;
    Ok(SignedHeartbeat { body, envelope })
}

fn digest(body: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, body);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Reads a big-endian u16 length and that many bytes.
fn take_prefixed<'a>(bytes: &mut &'a [u8], max: usize) -> Option<&'a [u8]> {
    if bytes.len() < 2 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
    if len == 0 || len > max || bytes.len() < 2 + len {
        return None;
    }
    let value = &bytes[2..2 + len];
    *bytes = &bytes[2 + len..];
    Some(value)
}

/// Decodes and verifies an envelope: framing, signature, signer = origin,
/// and the body's content rules. `max_size` bounds the whole envelope.
pub(crate) fn open(envelope: &Bytes, max_size: usize) -> Result<Announcement, Rejection> {
    use RegistryRejectReason::{Forged, Malformed, TooLarge};
    if envelope.len() > max_size {
        return Err(Rejection::new(TooLarge));
    }
    let mut rest: &[u8] = envelope;
    if rest.len() < 5 || &rest[..3] != MAGIC || rest[3] != WIRE_VERSION {
        return Err(Rejection::new(Malformed));
    }
    let kind = match rest[4] {
        1 => Kind::Record,
        2 => Kind::Heartbeat,
        _ => return Err(Rejection::new(Malformed)),
    };
    rest = &rest[5..];
    let key = take_prefixed(&mut rest, MAX_KEY_LEN).ok_or(Rejection::new(Malformed))?;
    let signature = take_prefixed(&mut rest, MAX_SIG_LEN).ok_or(Rejection::new(Malformed))?;
    let body = rest;
    let key =
        identity::PublicKey::try_decode_protobuf(key).map_err(|_| Rejection::new(Malformed))?;
    // Read the claimed origin first, so a forgery can be attributed.
    let claimed: Option<PeerId> = serde_json::from_slice::<OriginOnly>(body)
        .ok()
        .map(|o| o.origin);
    if !key.verify(&signed_message(kind, body), signature) {
        return Err(Rejection {
            reason: Forged,
            origin: claimed,
        });
    }
    let signer = key.to_peer_id();
    let malformed = |origin| Rejection {
        reason: Malformed,
        origin,
    };
    match kind {
        Kind::Record => {
            let parsed: RecordBody =
                serde_json::from_slice(body).map_err(|_| malformed(claimed))?;
            if parsed.origin != signer {
                return Err(Rejection {
                    reason: Forged,
                    origin: Some(parsed.origin),
                });
            }
            check_record(&parsed).map_err(|()| malformed(Some(parsed.origin)))?;
            Ok(Announcement::Record(Arc::new(SignedRecord {
                digest: digest(body),
                body: parsed,
                envelope: envelope.clone(),
            })))
        }
        Kind::Heartbeat => {
            let parsed: HeartbeatBody =
                serde_json::from_slice(body).map_err(|_| malformed(claimed))?;
            if parsed.origin != signer {
                return Err(Rejection {
                    reason: Forged,
                    origin: Some(parsed.origin),
                });
            }
            if parsed.seq == 0 || parsed.seq < parsed.version {
                return Err(malformed(Some(parsed.origin)));
            }
            Ok(Announcement::Heartbeat(SignedHeartbeat {
                body: parsed,
                envelope: envelope.clone(),
            }))
        }
    }
}

#[derive(Deserialize)]
struct OriginOnly {
    origin: PeerId,
}

/// Content rules of a record: a version, valid and unique agent ids.
fn check_record(body: &RecordBody) -> Result<(), ()> {
    if body.version == 0 {
        return Err(());
    }
    let mut seen = std::collections::HashSet::new();
    for agent in &body.agents {
        if AgentId::new(agent.id.as_str()).is_err() || !seen.insert(agent.id.as_str()) {
            return Err(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn body(origin: PeerId, version: u64) -> RecordBody {
        RecordBody {
            origin,
            version,
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
            agents: vec![AgentDescriptor {
                id: "echo".into(),
                description: "echoes".into(),
                tools: vec![],
                resources: vec![],
                resource_templates: vec![],
                prompts: vec![],
            }],
        }
    }

    #[test]
    fn a_sealed_record_opens_to_the_same_body() {
        let key = identity::Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let sealed = seal_record(&key, body(me, 7)).unwrap();
        match open(&sealed.envelope, 1 << 20).unwrap() {
            Announcement::Record(r) => {
                assert_eq!(r.body, body(me, 7));
                assert_eq!(r.digest, sealed.digest);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_record_signed_by_another_key_is_forged() {
        let key = identity::Keypair::generate_ed25519();
        let victim = PeerId::random();
        let sealed = seal_record(&key, body(victim, 7)).unwrap();
        let rejection = open(&sealed.envelope, 1 << 20).unwrap_err();
        assert_eq!(rejection.reason, RegistryRejectReason::Forged);
        assert_eq!(rejection.origin, Some(victim));
    }

    #[test]
    fn a_tampered_body_is_forged() {
        let key = identity::Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let sealed = seal_record(&key, body(me, 7)).unwrap();
        let mut bytes = sealed.envelope.to_vec();
        let n = bytes.len();
        // Change the last byte of the description inside the JSON body.
        let pos = bytes
            .windows(6)
            .rposition(|w| w == b"echoes")
            .expect("description in body");
        bytes[pos] = b'E';
        assert_eq!(bytes.len(), n);
        let rejection = open(&Bytes::from(bytes), 1 << 20).unwrap_err();
        assert_eq!(rejection.reason, RegistryRejectReason::Forged);
        assert_eq!(rejection.origin, Some(me));
    }

    #[test]
    fn garbage_and_truncations_are_malformed_and_never_panic() {
        let key = identity::Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let sealed = seal_record(&key, body(me, 7)).unwrap();
        for cut in 0..sealed.envelope.len() {
            let truncated = sealed.envelope.slice(..cut);
            let rejection = open(&truncated, 1 << 20).unwrap_err();
            assert!(
                matches!(
                    rejection.reason,
                    RegistryRejectReason::Malformed | RegistryRejectReason::Forged
                ),
                "cut at {cut}: {rejection:?}"
            );
        }
        assert_eq!(
            open(&Bytes::from_static(b"hello world"), 1 << 20)
                .unwrap_err()
                .reason,
            RegistryRejectReason::Malformed
        );
    }

    #[test]
    fn a_validly_signed_but_invalid_record_is_malformed() {
        let key = identity::Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let mut bad = body(me, 7);
        bad.agents.push(bad.agents[0].clone());
        let sealed = seal_record(&key, bad).unwrap();
        assert_eq!(
            open(&sealed.envelope, 1 << 20).unwrap_err().reason,
            RegistryRejectReason::Malformed
        );
        let mut bad = body(me, 7);
        bad.agents[0].id = "Not An Id".into();
        let sealed = seal_record(&key, bad).unwrap();
        assert_eq!(
            open(&sealed.envelope, 1 << 20).unwrap_err().reason,
            RegistryRejectReason::Malformed
        );
        let sealed = seal_record(&key, body(me, 0)).unwrap();
        assert_eq!(
            open(&sealed.envelope, 1 << 20).unwrap_err().reason,
            RegistryRejectReason::Malformed
        );
    }

    #[test]
    fn oversized_envelopes_are_refused_before_parsing() {
        let key = identity::Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let sealed = seal_record(&key, body(me, 7)).unwrap();
        assert_eq!(
            open(&sealed.envelope, sealed.envelope.len() - 1)
                .unwrap_err()
                .reason,
            RegistryRejectReason::TooLarge
        );
    }

    #[test]
    fn heartbeats_round_trip() {
        let key = identity::Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let hb = seal_heartbeat(
            &key,
            HeartbeatBody {
                origin: me,
                seq: 9,
                version: 7,
                leaving: true,
            },
        )
        .unwrap();
        match open(&hb.envelope, 1 << 20).unwrap() {
            Announcement::Heartbeat(h) => assert_eq!(h, hb),
            other => panic!("{other:?}"),
        }
    }
}
