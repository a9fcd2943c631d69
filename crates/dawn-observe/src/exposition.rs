//! Reading and merging Prometheus text exposition.
//!
//! A scrape of a Dawn node is assembled from several producers: the `metrics`
//! recorder, the process metrics, and registries such as libp2p's
//! `prometheus_client` registry, which writes OpenMetrics text. [`merge`]
//! turns all of them into one valid Prometheus text (version 0.0.4) document:
//!
//! - each metric family appears once, with one `# HELP` and one `# TYPE` line
//!   (the first producer's wins) and all its samples together;
//! - OpenMetrics specifics are translated: `# EOF` and `# UNIT` lines are
//!   dropped, a counter family `foo` with samples `foo_total` becomes family
//!   `foo_total`, `_created` samples, exemplars and timestamps are dropped,
//!   `info` and `stateset` become gauges, `unknown` becomes `untyped`;
//! - a series (name and label set) that two producers both report is kept
//!   once (the first);
//! - a family whose type disagrees with an earlier one of the same name is
//!   dropped rather than producing an invalid document.

use std::collections::{BTreeMap, HashMap, HashSet};

/// The content type of the text this module produces.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One sample read from exposition text.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's metric name, e.g. `dawn_calls_total` or
    /// `dawn_call_duration_seconds_bucket`.
    pub name: String,
    /// Its labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A metric family in a merged document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyInfo {
    /// Family name as written in `# TYPE`.
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    /// Whether the family has a `# HELP` line.
    pub has_help: bool,
}

#[derive(Debug, Clone)]
struct RawSample {
    name: String,
    labels_raw: String,
    value: String,
}

#[derive(Debug, Clone)]
struct Family {
    name: String,
    help: Option<String>,
    kind: String,
    samples: Vec<RawSample>,
}

/// Parses every sample line (comments and malformed lines are skipped).
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(parse_sample_line)
        .filter_map(|raw| {
            let value = parse_value(&raw.value)?;
            let labels = parse_labels(&raw.labels_raw)?;
            Some(Sample {
                name: raw.name,
                labels,
                value,
            })
        })
        .collect()
}

/// Merges several exposition texts (Prometheus 0.0.4 or OpenMetrics) into
/// one Prometheus text document; see the module documentation for the rules.
pub fn merge(parts: &[&str]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: HashMap<String, Family> = HashMap::new();
    let mut seen_series: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();
    for part in parts {
        for family in normalize(parse_families(part)) {
            match families.get_mut(&family.name) {
                Some(existing) if existing.kind != family.kind => {
                    tracing::debug!(
                        family = %family.name,
                        first = %existing.kind,
                        other = %family.kind,
                        "dropping a metric family whose type disagrees with an earlier producer"
                    );
                }
                Some(existing) => {
                    if existing.help.is_none() {
                        existing.help = family.help;
                    }
                    for s in family.samples {
                        if remember(&mut seen_series, &s) {
                            existing.samples.push(s);
                        }
                    }
                }
                None => {
                    let mut fresh = Family {
                        samples: Vec::with_capacity(family.samples.len()),
                        ..family.clone()
                    };
                    for s in family.samples {
                        if remember(&mut seen_series, &s) {
                            fresh.samples.push(s);
                        }
                    }
                    order.push(fresh.name.clone());
                    families.insert(fresh.name.clone(), fresh);
                }
            }
        }
    }
    let mut out = String::new();
    for name in order {
        let Some(f) = families.get(&name) else {
            continue;
        };
        if f.samples.is_empty() {
            continue;
        }
        if let Some(help) = &f.help {
            out.push_str("# HELP ");
            out.push_str(&f.name);
            out.push(' ');
            out.push_str(&escape_help(help));
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(&f.name);
        out.push(' ');
        out.push_str(&f.kind);
        out.push('\n');
        for s in &f.samples {
            out.push_str(&s.name);
            out.push_str(&s.labels_raw);
            out.push(' ');
            out.push_str(&s.value);
            out.push('\n');
        }
    }
    out
}

/// The families of a document as [`merge`] would write them.
pub fn families(text: &str) -> Vec<FamilyInfo> {
    let mut seen = HashSet::new();
    normalize(parse_families(text))
        .into_iter()
        .filter(|f| !f.samples.is_empty() && seen.insert(f.name.clone()))
        .map(|f| FamilyInfo {
            has_help: f.help.is_some(),
            name: f.name,
            kind: f.kind,
        })
        .collect()
}

fn remember(seen: &mut HashSet<(String, BTreeMap<String, String>)>, sample: &RawSample) -> bool {
    let labels = parse_labels(&sample.labels_raw).unwrap_or_default();
    seen.insert((sample.name.clone(), labels))
}

/// Splits a document into families as written, before normalisation.
fn parse_families(text: &str) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    // Metadata seen for a name whose samples have not started yet.
    let mut current: Option<Family> = None;
    let flush = |current: &mut Option<Family>, out: &mut Vec<Family>| {
        if let Some(f) = current.take() {
            out.push(f);
        }
    };
    for line in text.lines() {
        let line = line.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            let keyword = words.next().unwrap_or_default();
            let name = words.next().unwrap_or_default().to_owned();
            let rest = words.next().unwrap_or_default();
            match keyword {
                "HELP" | "TYPE" if !name.is_empty() => {
                    let same = current.as_ref().is_some_and(|f| f.name == name);
                    if !same {
                        flush(&mut current, &mut out);
                        current = Some(Family {
                            name: name.clone(),
                            help: None,
                            kind: "untyped".into(),
                            samples: Vec::new(),
                        });
                    }
                    if let Some(f) = current.as_mut() {
                        if keyword == "HELP" {
                            f.help = Some(unescape_help(rest));
                        } else {
                            f.kind = rest.trim().to_ascii_lowercase();
                        }
                    }
                }
                // `# UNIT`, `# EOF` and plain comments carry nothing we keep.
                _ => {}
            }
            continue;
        }
        let Some(sample) = parse_sample_line(trimmed) else {
            continue;
        };
        let belongs = current
            .as_ref()
            .is_some_and(|f| sample_belongs(&f.kind, &f.name, &sample.name));
        if !belongs {
            flush(&mut current, &mut out);
            current = Some(Family {
                name: sample.name.clone(),
                help: None,
                kind: "untyped".into(),
                samples: Vec::new(),
            });
        }
        if let Some(f) = current.as_mut() {
            f.samples.push(sample);
        }
    }
    flush(&mut current, &mut out);
    out
}

/// Whether a sample named `sample` can be part of family `family` of `kind`
/// in either text format.
fn sample_belongs(kind: &str, family: &str, sample: &str) -> bool {
    if sample == family {
        return true;
    }
    let Some(suffix) = sample.strip_prefix(family) else {
        return false;
    };
    let allowed: &[&str] = match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "gaugehistogram" => &["_bucket", "_gsum", "_gcount"],
        "summary" => &["_sum", "_count", "_created"],
        "info" => &["_info"],
        _ => &[],
    };
    allowed.contains(&suffix)
}

/// Rewrites families into Prometheus 0.0.4 terms.
fn normalize(families: Vec<Family>) -> Vec<Family> {
    let mut out = Vec::new();
    for mut f in families {
        let kind = match f.kind.as_str() {
            "counter" | "gauge" | "histogram" | "summary" | "untyped" => f.kind.clone(),
            "info" | "stateset" => "gauge".into(),
            _ => "untyped".into(),
        };
        let created = format!("{}_created", f.name);
        f.samples.retain(|s| s.name != created);
        let total = format!("{}_total", f.name);
        let info = format!("{}_info", f.name);
        let accepted_name = if f.kind == "counter" && f.samples.iter().any(|s| s.name == total) {
            total
        } else if f.kind == "info" && f.samples.iter().any(|s| s.name == info) {
            info
        } else {
            f.name.clone()
        };
        // Samples that a 0.0.4 parser would not accept under this family are
        // split out as untyped families of their own.
        let (kept, stray): (Vec<RawSample>, Vec<RawSample>) = f
            .samples
            .into_iter()
            .partition(|s| accepts_04(&kind, &accepted_name, &s.name));
        out.push(Family {
            name: accepted_name,
            help: f.help,
            kind,
            samples: kept,
        });
        let mut stray_families: Vec<Family> = Vec::new();
        for s in stray {
            match stray_families.iter_mut().find(|sf| sf.name == s.name) {
                Some(sf) => sf.samples.push(s),
                None => stray_families.push(Family {
                    name: s.name.clone(),
                    help: None,
                    kind: "untyped".into(),
                    samples: vec![s],
                }),
            }
        }
        out.extend(stray_families);
    }
    out
}

fn accepts_04(kind: &str, family: &str, sample: &str) -> bool {
    if sample == family {
        return kind != "histogram";
    }
    let Some(suffix) = sample.strip_prefix(family) else {
        return false;
    };
    match kind {
        "histogram" => matches!(suffix, "_bucket" | "_sum" | "_count"),
        "summary" => matches!(suffix, "_sum" | "_count"),
        _ => false,
    }
}

/// Parses `name{labels} value [timestamp] [# exemplar]`; the timestamp and
/// exemplar are dropped.
fn parse_sample_line(line: &str) -> Option<RawSample> {
    let line = line.trim();
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || !is_metric_name(name) {
        return None;
    }
    let rest = &line[name_end..];
    let (labels_raw, rest) = if rest.starts_with('{') {
        let end = closing_brace(rest)?;
        (&rest[..=end], &rest[end + 1..])
    } else {
        ("", rest)
    };
    let value = rest.split_whitespace().next()?;
    if value == "#" {
        return None;
    }
    parse_value(value)?;
    Some(RawSample {
        name: name.to_owned(),
        labels_raw: labels_raw.to_owned(),
        value: value.to_owned(),
    })
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Index of the `}` closing a label block that starts at index 0.
fn closing_brace(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == '}' {
            return Some(i);
        }
    }
    None
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// Parses `{a="1",b="x\"y"}` (or an empty string) into unescaped labels.
fn parse_labels(raw: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    if raw.is_empty() {
        return Some(labels);
    }
    let inner = raw.strip_prefix('{')?.strip_suffix('}')?;
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
    }
    Some(labels)
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_labels_with_escapes() {
        let s = parse_samples("x{a=\"1\",b=\"q\\\"uote\\\\ \\n\"} 2.5\ny 3 1700000000\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels["b"], "q\"uote\\ \n");
        assert_eq!(s[0].value, 2.5);
        assert_eq!(s[1].name, "y");
        assert_eq!(s[1].value, 3.0);
    }

    #[test]
    fn openmetrics_counters_become_total_families() {
        let om = "# HELP conns Connections.\n# TYPE conns counter\nconns_total{dir=\"in\"} 3\nconns_created{dir=\"in\"} 1.7e9\n# TYPE build info\nbuild_info{v=\"1\"} 1\n# EOF\n";
        let merged = merge(&[om]);
        assert_eq!(
            merged,
            "# HELP conns_total Connections.\n# TYPE conns_total counter\nconns_total{dir=\"in\"} 3\n# TYPE build_info gauge\nbuild_info{v=\"1\"} 1\n"
        );
    }

    #[test]
    fn duplicate_families_and_series_merge_once() {
        let a = "# HELP x_total X.\n# TYPE x_total counter\nx_total{k=\"a\"} 1\n";
        let b = "# HELP x_total X again.\n# TYPE x_total counter\nx_total{k=\"a\"} 9\nx_total{k=\"b\"} 2\n";
        let c = "# TYPE x_total gauge\nx_total 5\n";
        let merged = merge(&[a, b, c]);
        assert_eq!(
            merged,
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{k=\"a\"} 1\nx_total{k=\"b\"} 2\n"
        );
    }

    #[test]
    fn histograms_keep_their_samples() {
        let h = "# TYPE d_seconds histogram\nd_seconds_bucket{le=\"0.1\"} 1\nd_seconds_bucket{le=\"+Inf\"} 2\nd_seconds_sum 0.3\nd_seconds_count 2\n";
        assert_eq!(merge(&[h]), h);
        let fams = families(h);
        assert_eq!(fams.len(), 1);
        assert_eq!(fams[0].kind, "histogram");
    }
}
