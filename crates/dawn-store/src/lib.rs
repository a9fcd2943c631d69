//! The Dawn node's embedded database.
//!
//! `dawn-store` keeps everything a node persists between runs in one [redb] file: typed tables
//! whose values are JSON records (so records can gain fields without a migration), a schema
//! version with forward migrations run on open, and a health probe. Domains live in their own
//! modules: the peer address book ([`AddressSource`], [`PeerEntry`]), trust records
//! ([`TrustEntry`]) and peer reputation ([`ReputationEntry`]). The meaning of trust levels and
//! reputation scores belongs to `dawn-security`; this crate only keeps the records. Agents keep
//! their own state in per-agent namespaces ([`AgentStore`]), and [`Store::snapshot_to`] writes
//! a consistent copy of the whole database while it is in use, for backups.
//!
//! Identifiers such as peer ids and addresses are plain strings here, and times are unix
//! milliseconds passed in by the caller, so the crate depends on neither libp2p nor a clock.
//!
//! Every write commits durably before it returns. Calls block on file I/O: from async code,
//! run them through `tokio::task::spawn_blocking`.
//!
//! # Example
//!
//! ```
//! use dawn_store::{AddressSource, Store, StoreError};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data_dir = tempfile::tempdir()?;
//! let store = Store::open(data_dir.path().join("dawn.redb"))?;
//! assert_eq!(store.schema_version()?, dawn_store::SCHEMA_VERSION);
//!
//! store.record_peer_address("12D3KooWPeer", "/ip4/10.0.0.7/tcp/8000", AddressSource::Identify, 1_000)?;
//! let peer = store.peer("12D3KooWPeer")?.ok_or("peer was just recorded")?;
//! assert_eq!(peer.addresses[0].addr, "/ip4/10.0.0.7/tcp/8000");
//!
//! // A second handle on the same file is refused while the first is open.
//! let second = Store::open(store.path());
//! assert!(matches!(second, Err(StoreError::Locked { .. })));
//! # Ok(())
//! # }
//! ```
//!
//! [redb]: https://docs.rs/redb

mod agent_state;
mod error;
mod json_table;
mod peers;
mod registry;
mod reputation;
mod schema;
mod snapshot;
mod store;
mod trust;

pub use agent_state::{
    AgentStore, AgentTransaction, MAX_AGENT_NAMESPACE_BYTES, MAX_AGENT_STATE_KEY_BYTES,
    MAX_AGENT_STATE_VALUE_BYTES,
};
pub use error::StoreError;
pub use peers::{AddressEntry, AddressSource, MAX_ADDRESSES_PER_PEER, PeerEntry};
pub use registry::RegistryCacheEntry;
pub use reputation::ReputationEntry;
pub use schema::SCHEMA_VERSION;
pub use snapshot::SnapshotReport;
pub use store::Store;
pub use trust::{TrustEntry, TrustSource};
