//! Durations in configuration: whole seconds (`60`) or a number with a unit
//! (`"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`).
//!
//! The syntax is the same as dawn-core's config units, so a config file reads
//! the same in every section. Values serialize as strings such as `"30s"`.

use std::{fmt, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration written as seconds (`60`) or with a unit (`"500ms"`, `"30s"`,
/// `"5m"`, `"2h"`, `"1d"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// From whole seconds.
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    /// From milliseconds.
    pub const fn millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> HumanDuration {
        HumanDuration(d)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            f.write_str("0s")
        } else if ms.is_multiple_of(86_400_000) {
            write!(f, "{}d", ms / 86_400_000)
        } else if ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`, `"1.5s"` or a bare
/// number of seconds. The result is rounded to whole milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use e.g. 500ms, 30s, 5m, 2h)"))?;
    let factor_ms = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1000.0,
        "ms" => 1.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        other => {
            return Err(format!(
                "{s:?} has an unknown duration unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    let ms = value * factor_ms;
    if !ms.is_finite() || !(0.0..=1e15).contains(&ms) {
        return Err(format!("{s:?} is out of range"));
    }
    // In range 0..=1e15 after the check above, so the conversion is exact enough.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = ms.round() as u64;
    Ok(Duration::from_millis(ms))
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30s, 500ms, 5m or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration::secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v).map(HumanDuration::secs).map_err(|_| {
                    E::custom(format!("{v} is negative; a duration must be at least 0"))
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                parse_duration(&v.to_string())
                    .map(HumanDuration)
                    .map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_config_syntax() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1e300d").is_err());
    }

    #[test]
    fn displays_round_trip() {
        for d in [
            HumanDuration::millis(1500),
            HumanDuration::secs(60),
            HumanDuration::secs(7200),
            HumanDuration::secs(0),
            HumanDuration::secs(86_400 * 3),
        ] {
            assert_eq!(HumanDuration(parse_duration(&d.to_string()).unwrap()), d);
        }
        assert_eq!(HumanDuration::secs(60).to_string(), "1m");
        assert_eq!(HumanDuration::millis(500).to_string(), "500ms");
    }

    #[test]
    fn deserializes_numbers_and_strings() {
        let v: HumanDuration = serde_json::from_str("60").unwrap();
        assert_eq!(v, HumanDuration::secs(60));
        let v: HumanDuration = serde_json::from_str("\"500ms\"").unwrap();
        assert_eq!(v, HumanDuration::millis(500));
        let v: HumanDuration = serde_json::from_str("0.25").unwrap();
        assert_eq!(v, HumanDuration::millis(250));
        assert!(serde_json::from_str::<HumanDuration>("-1").is_err());
        assert_eq!(
            serde_json::to_string(&HumanDuration::secs(30)).unwrap(),
            "\"30s\""
        );
    }
}
