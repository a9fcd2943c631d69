//! Which configuration keys a running node applies when it reloads its
//! configuration, and which keys differ between two configurations.
//!
//! `dawn-node` reloads its configuration on SIGHUP; embedding programs call
//! [`crate::Node::reload_config`]. Keys in [`RELOADABLE_KEYS`] take effect at
//! once; any other key that differs from the running configuration is
//! reported (and logged) as needing a restart, and the running value stays.

use serde_json::Value;

use super::DawnConfig;

/// The keys a running node applies on reload, in documentation order.
pub const RELOADABLE_KEYS: &[&str] = &[
    "security.trust_level_default",
    "security.reject_unknown",
    "security.trusted_peers",
    "security.blocked_peers",
];

/// Whether `key` (a dotted key path) takes effect on reload.
pub fn is_reloadable(key: &str) -> bool {
    RELOADABLE_KEYS.contains(&key)
}

/// The dotted keys whose values differ between `old` and `new`, sorted.
/// Lists and tables of lists (such as `mcp.servers`) count as one key.
pub fn changed_keys(old: &DawnConfig, new: &DawnConfig) -> Vec<String> {
    let (Ok(old), Ok(new)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        // Serializing a configuration cannot fail (plain data); if it ever
        // did, report everything as changed rather than nothing.
        return vec!["*".to_owned()];
    };
    let mut changed = Vec::new();
    diff("", &old, &new, &mut changed);
    changed.sort();
    changed
}

fn diff(prefix: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                diff(
                    &path,
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(prefix.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_differs_between_equal_configurations() {
        let config = DawnConfig::default();
        assert!(changed_keys(&config, &config.clone()).is_empty());
    }

    #[test]
    fn changed_leaves_are_named_by_their_dotted_path() {
        let old = DawnConfig::default();
        let mut new = old.clone();
        new.security.reject_unknown = !old.security.reject_unknown;
        new.security.blocked_peers =
            vec!["12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".into()];
        new.api.listen = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            changed_keys(&old, &new),
            [
                "api.listen",
                "security.blocked_peers",
                "security.reject_unknown"
            ]
        );
        assert!(is_reloadable("security.blocked_peers"));
        assert!(!is_reloadable("api.listen"));
    }

    #[test]
    fn every_reloadable_key_is_a_documented_key() {
        for key in RELOADABLE_KEYS {
            assert!(
                super::super::KEYS.iter().any(|doc| doc.key == *key),
                "{key} is not in config/keys.rs"
            );
        }
    }
}
