//! Naming agents: `AgentId` and `AgentAddress` (`<peer-id>/<agent-id>`).

use std::{fmt, str::FromStr};

use dawn_transport::PeerId;
use serde::{Deserialize, Serialize};

/// Longest agent id (bytes). Short enough that `<agent>__<tool>` stays usable
/// in MCP clients that cap tool names at 64 characters.
pub const MAX_AGENT_ID_LEN: usize = 48;

/// The name of an agent on one node: 1–48 characters of `a-z`, `0-9`, `_`,
/// `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

/// Why a string is not a valid agent id or address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The agent id breaks the naming rules.
    #[error(
        "{0:?} is not a valid agent id: use 1-{MAX_AGENT_ID_LEN} characters a-z, 0-9, '_' or '-', starting with a letter"
    )]
    InvalidAgentId(String),
    /// The peer part is not a peer id.
    #[error("{0:?} is not a valid peer id")]
    InvalidPeerId(String),
}

impl AgentId {
    /// Validates and wraps an agent id.
    pub fn new(id: impl Into<String>) -> Result<AgentId, AddressError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= MAX_AGENT_ID_LEN
            && id.as_bytes()[0].is_ascii_lowercase()
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(AgentId(id))
        } else {
            Err(AddressError::InvalidAgentId(id))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AgentId {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AgentId::new(s)
    }
}

impl TryFrom<String> for AgentId {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        AgentId::new(s)
    }
}

impl From<AgentId> for String {
    fn from(id: AgentId) -> String {
        id.0
    }
}

impl AsRef<str> for AgentId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Where an agent lives: on a given peer, or (without a peer) on this node.
///
/// Written `<peer-id>/<agent-id>` or just `<agent-id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentAddress {
    /// The node hosting the agent; `None` means the local node.
    pub peer: Option<PeerId>,
    /// The agent on that node.
    pub agent: AgentId,
}

impl AgentAddress {
    /// An agent on this node.
    pub fn local(agent: AgentId) -> Self {
        AgentAddress { peer: None, agent }
    }

    /// An agent on another node.
    pub fn remote(peer: PeerId, agent: AgentId) -> Self {
        AgentAddress {
            peer: Some(peer),
            agent,
        }
    }
}

impl fmt::Display for AgentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.peer {
            Some(peer) => write!(f, "{peer}/{}", self.agent),
            None => write!(f, "{}", self.agent),
        }
    }
}

impl FromStr for AgentAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((peer, agent)) => {
                let peer = peer
                    .parse::<PeerId>()
                    .map_err(|_| AddressError::InvalidPeerId(peer.to_owned()))?;
                Ok(AgentAddress::remote(peer, AgentId::new(agent)?))
            }
            None => Ok(AgentAddress::local(AgentId::new(s)?)),
        }
    }
}

impl TryFrom<String> for AgentAddress {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AgentAddress> for String {
    fn from(a: AgentAddress) -> String {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids() {
        assert!(AgentId::new("system").is_ok());
        assert!(AgentId::new("a-b_9").is_ok());
        for bad in ["", "9abc", "Sys", "a b", "a/b", &"a".repeat(49)] {
            assert!(AgentId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn addresses_parse_and_print() {
        let local: AgentAddress = "system".parse().unwrap();
        assert_eq!(local.peer, None);
        assert_eq!(local.to_string(), "system");
        let peer = libp2p_peer();
        let remote: AgentAddress = format!("{peer}/echo-bot").parse().unwrap();
        assert_eq!(remote.peer, Some(peer));
        assert_eq!(remote.to_string(), format!("{peer}/echo-bot"));
        assert!(matches!(
            "nope/system".parse::<AgentAddress>(),
            Err(AddressError::InvalidPeerId(_))
        ));
        assert!(matches!(
            format!("{peer}/Bad").parse::<AgentAddress>(),
            Err(AddressError::InvalidAgentId(_))
        ));
    }

    fn libp2p_peer() -> PeerId {
        "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
            .parse()
            .unwrap()
    }
}
