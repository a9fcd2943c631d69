//! The peer address book: which addresses each known peer was reachable at, and when.
//!
//! One record per peer in the `peers` table, keyed by the peer id's string form, valued by the
//! JSON of the peer's addresses and timestamps. Each peer keeps at most
//! [`MAX_ADDRESSES_PER_PEER`] addresses, so a peer announcing many addresses cannot grow the
//! database without bound.

use std::cmp::Reverse;

use redb::{ReadableTable, TableDefinition, TableError};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::schema;
use crate::store::Store;

/// The name of the [`PEERS`] table.
pub(crate) const PEERS_TABLE: &str = "peers";

/// The address book: peer id to the JSON of a [`StoredPeer`].
pub(crate) const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new(PEERS_TABLE);

/// The most addresses kept per peer. Recording one more evicts the least recently seen.
pub const MAX_ADDRESSES_PER_PEER: usize = 16;

/// How an address of a peer became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressSource {
    /// From the node's configuration (e.g. a bootstrap address).
    Config,
    /// We dialed the address successfully.
    Dialed,
    /// The peer announced it through the identify protocol.
    Identify,
    /// Discovered on the local network through mDNS.
    Mdns,
    /// Found through the Kademlia DHT.
    Kademlia,
    /// The remote address of a connection the peer opened to us.
    Inbound,
    /// Added by an operator.
    Manual,
}

/// One known address of a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressEntry {
    /// The address, as a multiaddr string.
    pub addr: String,
    /// Where the address was most recently learned from.
    pub source: AddressSource,
    /// Every source the address was learned from, in the order first seen
    /// (empty in records written before this field existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<AddressSource>,
    /// When the address was first recorded (unix milliseconds).
    pub first_seen_ms: u64,
    /// When the address was most recently recorded (unix milliseconds).
    pub last_seen_ms: u64,
}

/// A known peer and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// The peer id, in its string form.
    pub peer_id: String,
    /// The peer's addresses, most recently seen first.
    pub addresses: Vec<AddressEntry>,
    /// When the peer was first recorded (unix milliseconds).
    pub first_seen_ms: u64,
    /// When the peer was most recently seen: an address recorded or a connection made (unix
    /// milliseconds).
    pub last_seen_ms: u64,
}

/// A peer as stored: [`PeerEntry`] without the id, which is the record's key. New fields must
/// carry `#[serde(default)]` so records written by older builds still decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPeer {
    addresses: Vec<AddressEntry>,
    first_seen_ms: u64,
    last_seen_ms: u64,
}

impl StoredPeer {
    fn new(now_ms: u64) -> StoredPeer {
        StoredPeer {
            addresses: Vec::new(),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
        }
    }

    fn into_entry(self, peer_id: String) -> PeerEntry {
        PeerEntry {
            peer_id,
            addresses: self.addresses,
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
        }
    }

    fn mark_seen(&mut self, now_ms: u64) {
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
    }

    /// Adds `addr` or refreshes it, then evicts the least recently seen other addresses beyond
    /// the cap. The address just recorded is always kept.
    fn record_address(&mut self, addr: &str, source: AddressSource, now_ms: u64) {
        match self.addresses.iter_mut().find(|entry| entry.addr == addr) {
            Some(entry) => {
                entry.source = source;
                if !entry.sources.contains(&source) {
                    entry.sources.push(source);
                }
                entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
            }
            None => self.addresses.push(AddressEntry {
                addr: addr.to_string(),
                source,
                sources: vec![source],
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
            }),
        }
        self.mark_seen(now_ms);
        self.sort_addresses();
        while self.addresses.len() > MAX_ADDRESSES_PER_PEER {
            // Sorted most recent first, so the last entry that is not `addr` is the least
            // recently seen one.
            let Some(evicted) = self.addresses.iter().rposition(|entry| entry.addr != addr) else {
                break;
            };
            self.addresses.remove(evicted);
        }
    }

    /// Orders addresses most recently seen first; ties by most recently first seen, then by
    /// address, so the order is deterministic.
    fn sort_addresses(&mut self) {
        self.addresses.sort_by(|a, b| {
            (Reverse(a.last_seen_ms), Reverse(a.first_seen_ms), &a.addr).cmp(&(
                Reverse(b.last_seen_ms),
                Reverse(b.first_seen_ms),
                &b.addr,
            ))
        });
    }
}

impl Store {
    /// Records that `peer_id` is reachable at `addr`, learned from `source` at `now_ms`.
    ///
    /// Adds the address, or refreshes its `last_seen_ms` (keeping `first_seen_ms`; the source
    /// becomes `source`). Creates the peer if absent and marks it seen. If the peer then has
    /// more than [`MAX_ADDRESSES_PER_PEER`] addresses, the least recently seen ones other than
    /// `addr` are dropped. Timestamps never move backwards: a `now_ms` older than a stored
    /// `last_seen_ms` leaves it as it is.
    pub fn record_peer_address(
        &self,
        peer_id: &str,
        addr: &str,
        source: AddressSource,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.update_peer(peer_id, now_ms, |peer| {
            peer.record_address(addr, source, now_ms)
        })
    }

    /// Marks `peer_id` as seen at `now_ms` (e.g. a connection was established) without touching
    /// its addresses. Creates the peer, with no addresses, if absent.
    pub fn touch_peer(&self, peer_id: &str, now_ms: u64) -> Result<(), StoreError> {
        self.update_peer(peer_id, now_ms, |peer| peer.mark_seen(now_ms))
    }

    /// The peer `peer_id`, if known.
    pub fn peer(&self, peer_id: &str) -> Result<Option<PeerEntry>, StoreError> {
        self.read(|txn| {
            let table = match txn.open_table(PEERS) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(error) => return Err(self.redb_error(error)),
            };
            let stored = table.get(peer_id).map_err(|error| self.redb_error(error))?;
            match stored {
                Some(bytes) => {
                    let peer: StoredPeer =
                        schema::decode(self.path(), PEERS_TABLE, peer_id, bytes.value())?;
                    Ok(Some(peer.into_entry(peer_id.to_string())))
                }
                None => Ok(None),
            }
        })
    }

    /// All known peers, most recently seen first (ties in peer id order).
    pub fn peers(&self) -> Result<Vec<PeerEntry>, StoreError> {
        let mut peers = self.read(|txn| {
            let table = match txn.open_table(PEERS) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(error) => return Err(self.redb_error(error)),
            };
            let mut peers = Vec::new();
            for row in table.iter().map_err(|error| self.redb_error(error))? {
                let (key, value) = row.map_err(|error| self.redb_error(error))?;
                let peer_id = key.value();
                let peer: StoredPeer =
                    schema::decode(self.path(), PEERS_TABLE, peer_id, value.value())?;
                peers.push(peer.into_entry(peer_id.to_string()));
            }
            Ok(peers)
        })?;
        peers.sort_by(|a, b| {
            (Reverse(a.last_seen_ms), &a.peer_id).cmp(&(Reverse(b.last_seen_ms), &b.peer_id))
        });
        Ok(peers)
    }

    /// Forgets the peer `peer_id` and all its addresses. Returns whether it was known.
    pub fn remove_peer(&self, peer_id: &str) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut table = txn
                .open_table(PEERS)
                .map_err(|error| self.redb_error(error))?;
            let removed = table
                .remove(peer_id)
                .map_err(|error| self.redb_error(error))?;
            Ok(removed.is_some())
        })
    }

    /// Drops every address last seen before `cutoff_ms`, then every peer left with no
    /// addresses that was itself last seen before `cutoff_ms`. Returns how many addresses were
    /// dropped.
    pub fn expire_peer_addresses(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        self.write(|txn| {
            let mut table = txn
                .open_table(PEERS)
                .map_err(|error| self.redb_error(error))?;
            let mut changed: Vec<(String, Option<StoredPeer>)> = Vec::new();
            let mut removed_addresses = 0;
            for row in table.iter().map_err(|error| self.redb_error(error))? {
                let (key, value) = row.map_err(|error| self.redb_error(error))?;
                let peer_id = key.value();
                let mut peer: StoredPeer =
                    schema::decode(self.path(), PEERS_TABLE, peer_id, value.value())?;
                let before = peer.addresses.len();
                peer.addresses
                    .retain(|entry| entry.last_seen_ms >= cutoff_ms);
                let removed = before - peer.addresses.len();
                removed_addresses += removed;
                if peer.addresses.is_empty() && peer.last_seen_ms < cutoff_ms {
                    changed.push((peer_id.to_string(), None));
                } else if removed > 0 {
                    changed.push((peer_id.to_string(), Some(peer)));
                }
            }
            for (peer_id, peer) in changed {
                match peer {
                    Some(peer) => {
                        let bytes = schema::encode(self.path(), PEERS_TABLE, &peer_id, &peer)?;
                        table
                            .insert(peer_id.as_str(), bytes.as_slice())
                            .map_err(|error| self.redb_error(error))?;
                    }
                    None => {
                        table
                            .remove(peer_id.as_str())
                            .map_err(|error| self.redb_error(error))?;
                    }
                }
            }
            Ok(removed_addresses)
        })
    }

    /// Reads the peer (or a new one seen at `now_ms`), applies `change`, and writes it back, in
    /// one write transaction.
    fn update_peer(
        &self,
        peer_id: &str,
        now_ms: u64,
        change: impl FnOnce(&mut StoredPeer),
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut table = txn
                .open_table(PEERS)
                .map_err(|error| self.redb_error(error))?;
            let stored = table
                .get(peer_id)
                .map_err(|error| self.redb_error(error))?
                .map(|bytes| schema::decode(self.path(), PEERS_TABLE, peer_id, bytes.value()))
                .transpose()?;
            let mut peer = stored.unwrap_or_else(|| StoredPeer::new(now_ms));
            change(&mut peer);
            let bytes = schema::encode(self.path(), PEERS_TABLE, peer_id, &peer)?;
            table
                .insert(peer_id, bytes.as_slice())
                .map_err(|error| self.redb_error(error))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(addr: &str, first_seen_ms: u64, last_seen_ms: u64) -> AddressEntry {
        AddressEntry {
            addr: addr.to_string(),
            source: AddressSource::Dialed,
            sources: vec![AddressSource::Dialed],
            first_seen_ms,
            last_seen_ms,
        }
    }

    #[test]
    fn address_source_serializes_snake_case() {
        let json = serde_json::to_string(&AddressSource::Mdns).unwrap();
        assert_eq!(json, "\"mdns\"");
        let parsed: AddressSource = serde_json::from_str("\"kademlia\"").unwrap();
        assert_eq!(parsed, AddressSource::Kademlia);
    }

    #[test]
    fn stored_peer_ignores_unknown_fields_from_newer_builds() {
        let json = br#"{"addresses":[],"first_seen_ms":1,"last_seen_ms":2,"reputation":5}"#;
        let peer: StoredPeer = serde_json::from_slice(json).unwrap();
        assert_eq!(peer.last_seen_ms, 2);
    }

    #[test]
    fn eviction_keeps_the_address_just_recorded_even_if_oldest() {
        let mut peer = StoredPeer::new(100);
        for i in 0..MAX_ADDRESSES_PER_PEER as u64 {
            peer.addresses
                .push(address(&format!("/a/{i}"), 100 + i, 100 + i));
        }
        peer.record_address("/late", AddressSource::Inbound, 1);
        assert_eq!(peer.addresses.len(), MAX_ADDRESSES_PER_PEER);
        assert!(peer.addresses.iter().any(|entry| entry.addr == "/late"));
        assert!(!peer.addresses.iter().any(|entry| entry.addr == "/a/0"));
    }

    #[test]
    fn refresh_never_moves_last_seen_backwards() {
        let mut peer = StoredPeer::new(100);
        peer.record_address("/a", AddressSource::Dialed, 200);
        peer.record_address("/a", AddressSource::Identify, 150);
        peer.record_address("/a", AddressSource::Dialed, 160);
        assert_eq!(peer.addresses[0].last_seen_ms, 200);
        assert_eq!(peer.addresses[0].source, AddressSource::Dialed);
        assert_eq!(
            peer.addresses[0].sources,
            [AddressSource::Dialed, AddressSource::Identify]
        );
        assert_eq!(peer.last_seen_ms, 200);
    }
}
