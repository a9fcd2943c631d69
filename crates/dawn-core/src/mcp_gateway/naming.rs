//! How the mesh view names tools, prompts and resources so they never
//! collide and stay valid MCP names.
//!
//! * Tools and prompts of a local agent: `<agent>__<name>`.
//! * Of an agent on another node: `<node>.<agent>__<name>`, where `<node>` is
//!   the last 8 characters of the node's peer id (stable across restarts,
//!   because the peer id is).
//! * Names are at most 64 characters of `A-Za-z0-9_.-`. A longer name, or one
//!   with other characters, keeps a readable prefix and ends in `-` plus 8 hex
//!   digits of the SHA-256 of the original name, so it stays unique and stable.
//! * Resource URIs become `dawn://<peer-id>/<agent>/<original-uri>`; resource
//!   templates get the same prefix on their `uriTemplate`.

use dawn_transport::PeerId;

/// Longest name produced (common clients reject longer tool names).
pub const MAX_NAME_LEN: usize = 64;
/// Separator between agent and item.
pub const AGENT_SEPARATOR: &str = "__";
/// URI scheme of mesh resource URIs.
pub const MESH_URI_PREFIX: &str = "dawn://";

/// The short, stable alias of a node used in names.
pub fn node_alias(peer: &PeerId) -> String {
    let s = peer.to_base58();
    s[s.len().saturating_sub(8)..].to_owned()
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn short_hash(s: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    hex::encode(&digest.as_ref()[..4])
}

/// The mesh name of item `name` of `agent` on the node with `alias` (`None`
/// for this node).
pub fn mesh_name(alias: Option<&str>, agent: &str, name: &str) -> String {
    let prefix = match alias {
        Some(a) => format!("{a}.{agent}{AGENT_SEPARATOR}"),
        None => format!("{agent}{AGENT_SEPARATOR}"),
    };
    let plain = format!("{prefix}{name}");
    if plain.len() <= MAX_NAME_LEN && name.chars().all(allowed) {
        return plain;
    }
    let suffix = format!("-{}", short_hash(name));
    let room = MAX_NAME_LEN.saturating_sub(prefix.len() + suffix.len());
    let readable: String = name
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(room)
        .collect();
    format!("{prefix}{readable}{suffix}")
}

/// `dawn://<peer>/<agent>/<uri>`
pub fn mesh_uri(peer: &PeerId, agent: &str, uri: &str) -> String {
    format!("{MESH_URI_PREFIX}{peer}/{agent}/{uri}")
}

/// Splits a mesh URI into peer, agent and the agent's own URI.
pub fn parse_mesh_uri(uri: &str) -> Option<(PeerId, String, String)> {
    let rest = uri.strip_prefix(MESH_URI_PREFIX)?;
    let (peer, rest) = rest.split_once('/')?;
    let (agent, inner) = rest.split_once('/')?;
    Some((peer.parse().ok()?, agent.to_owned(), inner.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
            .parse()
            .unwrap()
    }

    #[test]
    fn names_are_valid_unique_and_stable() {
        assert_eq!(mesh_name(None, "system", "echo"), "system__echo");
        let alias = node_alias(&peer());
        assert_eq!(alias, "Bj4kx6nXTN"[2..].to_owned());
        assert_eq!(
            mesh_name(Some(&alias), "system", "echo"),
            format!("{alias}.system__echo")
        );
        let long = "a_very_long_tool_name_that_goes_on_and_on_and_on_beyond_any_reasonable_length";
        let n1 = mesh_name(Some(&alias), "agent", long);
        let n2 = mesh_name(Some(&alias), "agent", &format!("{long}2"));
        assert!(n1.len() <= MAX_NAME_LEN && n2.len() <= MAX_NAME_LEN);
        assert_ne!(n1, n2);
        assert_eq!(n1, mesh_name(Some(&alias), "agent", long));
        let odd = mesh_name(None, "agent", "weird name/with:chars");
        assert!(odd.chars().all(allowed), "{odd}");
        assert_ne!(odd, mesh_name(None, "agent", "weird name/with chars"));
    }

    #[test]
    fn uris_round_trip() {
        let u = mesh_uri(&peer(), "docs", "file:///a/b.txt");
        assert_eq!(
            parse_mesh_uri(&u),
            Some((peer(), "docs".into(), "file:///a/b.txt".into()))
        );
        assert_eq!(parse_mesh_uri("file:///x"), None);
    }
}
