//! Errors starting and running a node.

use std::net::SocketAddr;

use crate::{address::AddressError, config::ConfigError, data_dir::DataDirError};

/// Why a node could not start or an operation on it failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory cannot be used.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The node key cannot be loaded or created.
    #[error(transparent)]
    Identity(#[from] dawn_security::IdentityError),
    /// The API token cannot be loaded or created.
    #[error(transparent)]
    Token(#[from] dawn_security::TokenError),
    /// Security could not be set up: audit log, key passphrase, trust.
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    /// The database cannot be opened.
    #[error(transparent)]
    Store(#[from] dawn_store::StoreError),
    /// The network layer failed.
    #[error(transparent)]
    Transport(#[from] dawn_transport::TransportError),
    /// The HTTP API cannot bind its address.
    #[error("cannot serve the HTTP API on {addr}: {source}")]
    Api {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// An agent with that id is already registered.
    #[error("an agent with id {0:?} is already registered on this node")]
    DuplicateAgent(String),
    /// The agent id is invalid.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
}
