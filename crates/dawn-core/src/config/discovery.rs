//! `[discovery]` (how nodes find each other) and `[registry]` (how they
//! agree on who offers what).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ByteSize, HumanDuration};

/// `[discovery]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySection {
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Run the Kademlia DHT (`/dawn/kad/1.0.0`) to find peers beyond the
    /// bootstrap list.
    pub kademlia: bool,
    /// How often the Kademlia routing table is refreshed.
    pub kad_refresh_interval: HumanDuration,
    /// Dial discovered peers while fewer than `transport.low_watermark` are
    /// connected.
    pub auto_dial: bool,
    /// Addresses in the address book not seen for this long are dropped.
    pub address_ttl: HumanDuration,
}

impl Default for DiscoverySection {
    fn default() -> Self {
        DiscoverySection {
            mdns: true,
            kademlia: true,
            kad_refresh_interval: HumanDuration::secs(60),
            auto_dial: true,
            address_ttl: HumanDuration::secs(7 * 86_400),
        }
    }
}

/// `[registry]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySection {
    /// How often the node announces that it is alive (a heartbeat).
    pub announce_interval: HumanDuration,
    /// A node not heard from for this long has its agents marked
    /// unavailable.
    pub liveness_timeout: HumanDuration,
    /// A node unavailable for this long is removed from the registry.
    pub expiry: HumanDuration,
    /// How often the registry is compared with one random connected peer
    /// (besides on every new connection).
    pub sync_interval: HumanDuration,
    /// Largest signed record accepted or announced.
    pub max_record_size: ByteSize,
}

impl Default for RegistrySection {
    fn default() -> Self {
        RegistrySection {
            announce_interval: HumanDuration::secs(10),
            liveness_timeout: HumanDuration::secs(25),
            expiry: HumanDuration::secs(3600),
            sync_interval: HumanDuration::secs(60),
            max_record_size: ByteSize(256 << 10),
        }
    }
}

fn check_duration(
    issue: &mut dyn FnMut(&str, String),
    key: &str,
    value: HumanDuration,
    min: Duration,
    max: Duration,
) {
    if value.0 < min || value.0 > max || value.0.is_zero() {
        issue(
            key,
            format!(
                "{value} is out of range (allowed: {} to {})",
                HumanDuration(min.max(Duration::from_millis(1))),
                HumanDuration(max)
            ),
        );
    }
}

impl DiscoverySection {
    pub(crate) fn validate(&self, issue: &mut dyn FnMut(&str, String)) {
        check_duration(
            issue,
            "discovery.kad_refresh_interval",
            self.kad_refresh_interval,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        );
        check_duration(
            issue,
            "discovery.address_ttl",
            self.address_ttl,
            Duration::from_secs(60),
            Duration::from_secs(365 * 86_400),
        );
    }
}

impl RegistrySection {
    pub(crate) fn validate(&self, issue: &mut dyn FnMut(&str, String)) {
        let day = Duration::from_secs(86_400);
        check_duration(
            issue,
            "registry.announce_interval",
            self.announce_interval,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        );
        check_duration(
            issue,
            "registry.liveness_timeout",
            self.liveness_timeout,
            Duration::from_millis(200),
            day,
        );
        check_duration(
            issue,
            "registry.expiry",
            self.expiry,
            Duration::from_secs(1),
            30 * day,
        );
        check_duration(
            issue,
            "registry.sync_interval",
            self.sync_interval,
            Duration::from_millis(100),
            day,
        );
        if self.liveness_timeout.0 < self.announce_interval.0 * 2 {
            issue(
                "registry.liveness_timeout",
                format!(
                    "{} must be at least twice registry.announce_interval ({}), so one lost announcement does not mark a node unavailable",
                    self.liveness_timeout, self.announce_interval
                ),
            );
        }
        if self.expiry.0 < self.liveness_timeout.0 {
            issue(
                "registry.expiry",
                format!(
                    "{} must be at least registry.liveness_timeout ({})",
                    self.expiry, self.liveness_timeout
                ),
            );
        }
        if !(4096..=(1 << 20) - 4096).contains(&self.max_record_size.0) {
            issue(
                "registry.max_record_size",
                format!(
                    "{} is out of range (allowed: 4KiB to 1020KiB, below the gossip message limit)",
                    self.max_record_size
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues_of(section: &RegistrySection) -> Vec<(String, String)> {
        let mut out = Vec::new();
        section.validate(&mut |k, m| out.push((k.to_owned(), m)));
        out
    }

    #[test]
    fn defaults_are_valid_and_bound_liveness_at_30_seconds() {
        assert!(issues_of(&RegistrySection::default()).is_empty());
        let mut out = Vec::new();
        DiscoverySection::default().validate(&mut |k, m| out.push((k.to_owned(), m)));
        assert!(out.is_empty(), "{out:?}");
        // Unavailable at most liveness_timeout + 1 s (the sweep) after the
        // last sign of life.
        assert!(
            RegistrySection::default().liveness_timeout.0 + Duration::from_secs(1)
                <= Duration::from_secs(30)
        );
    }

    #[test]
    fn inconsistent_timings_are_refused_with_the_key() {
        let section = RegistrySection {
            announce_interval: HumanDuration::secs(10),
            liveness_timeout: HumanDuration::secs(15),
            expiry: HumanDuration::secs(5),
            ..RegistrySection::default()
        };
        let keys: Vec<String> = issues_of(&section).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["registry.liveness_timeout", "registry.expiry"]);
    }
}
