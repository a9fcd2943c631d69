//! Fixed-bucket histograms for the hot path.
//!
//! `metrics-exporter-prometheus` keeps every histogram observation in a
//! lock-free list (with an epoch pin and a clock read per observation) and
//! folds them into buckets later; on the remote call path, which records
//! six observations per call, that cost more than the rest of the metrics
//! together. Every histogram whose name ends in `_seconds` or `_bytes` has
//! known bucket bounds ([`crate::metrics::SECONDS_BUCKETS`],
//! [`crate::metrics::BYTES_BUCKETS`]), so [`DawnRecorder`] records those
//! straight into atomic bucket counters (a binary search and three atomic
//! adds, no allocation) and renders them itself; counters, gauges and other
//! histograms go to the Prometheus recorder it wraps.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::PrometheusRecorder;

use crate::metrics::{BYTES_BUCKETS, SECONDS_BUCKETS};

/// One histogram series: cumulative at render time, per-bucket while
/// recording.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [f64],
    /// `bounds.len() + 1` counters; the last is `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum, as `f64` bits.
    sum: AtomicU64,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        AtomicHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        // The first bound >= value: Prometheus buckets are `le`.
        let i = self.bounds.partition_point(|b| *b < value);
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
}

impl HistogramFn for AtomicHistogram {
    fn record(&self, value: f64) {
        self.observe(value);
    }
}

/// The bucket bounds for a histogram name, if it has fixed ones.
pub fn bounds_for(name: &str) -> Option<&'static [f64]> {
    if name.ends_with("_seconds") {
        Some(SECONDS_BUCKETS)
    } else if name.ends_with("_bytes") {
        Some(BYTES_BUCKETS)
    } else {
        None
    }
}

/// Every fixed-bucket histogram series of the process.
#[derive(Debug, Default)]
pub struct Histograms {
    series: RwLock<HashMap<Key, Arc<AtomicHistogram>>>,
    help: RwLock<HashMap<String, String>>,
}

impl Histograms {
    fn get_or_create(&self, key: &Key, bounds: &'static [f64]) -> Arc<AtomicHistogram> {
        if let Some(h) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Arc::clone(h);
        }
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            series
                .entry(key.clone())
                .or_insert_with(|| Arc::new(AtomicHistogram::new(bounds))),
        )
    }

    /// Prometheus text of every series, grouped by name (sorted), with the
    /// described help text.
    pub fn render(&self) -> String {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        let help = self.help.read().unwrap_or_else(PoisonError::into_inner);
        let mut by_name: Vec<(&Key, &Arc<AtomicHistogram>)> = series.iter().collect();
        by_name.sort_by(|(a, _), (b, _)| {
            a.name()
                .cmp(b.name())
                .then_with(|| labels_text(a).cmp(&labels_text(b)))
        });
        let mut out = String::new();
        let mut current: Option<&str> = None;
        for (key, h) in by_name {
            let name = key.name();
            if current != Some(name) {
                current = Some(name);
                if let Some(text) = help.get(name) {
                    let _ = writeln!(out, "# HELP {name} {}", escape_help(text));
                }
                let _ = writeln!(out, "# TYPE {name} histogram");
            }
            let labels = labels_text(key);
            let sep = if labels.is_empty() { "" } else { "," };
            let mut cumulative = 0u64;
            for (i, bucket) in h.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = h
                    .bounds
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| format!("{b}"));
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
                );
            }
            let braces = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            };
            let sum = f64::from_bits(h.sum.load(Ordering::Relaxed));
            let _ = writeln!(out, "{name}_sum{braces} {sum}");
            // The count as the +Inf bucket saw it keeps the series consistent.
            let _ = writeln!(out, "{name}_count{braces} {cumulative}");
        }
        out
    }
}

fn labels_text(key: &Key) -> String {
    key.labels()
        .map(|l| format!("{}=\"{}\"", l.key(), escape_label(l.value())))
        .collect::<Vec<_>>()
        .join(",")
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The process-wide recorder: the Prometheus recorder, with fixed-bucket
/// histograms kept here (see the module docs).
#[derive(Debug)]
pub struct DawnRecorder {
    pub(crate) prometheus: PrometheusRecorder,
    pub(crate) histograms: Arc<Histograms>,
}

impl Recorder for DawnRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if bounds_for(key.as_str()).is_some() {
            self.histograms
                .help
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.as_str().to_owned(), description.to_string());
        }
        self.prometheus.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.prometheus.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.prometheus.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        match bounds_for(key.name()) {
            Some(bounds) => Histogram::from_arc(self.histograms.get_or_create(key, bounds)),
            None => self.prometheus.register_histogram(key, metadata),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_le_and_cumulative() {
        let histograms = Histograms::default();
        let key = Key::from_parts("x_seconds", vec![metrics::Label::new("m", "a\"b")]);
        let h = histograms.get_or_create(&key, SECONDS_BUCKETS);
        for v in [0.0001, 0.00011, 0.004, 100.0, f64::NAN] {
            h.observe(v);
        }
        histograms
            .help
            .write()
            .unwrap()
            .insert("x_seconds".into(), "Help.".into());
        let text = histograms.render();
        assert!(
            text.starts_with("# HELP x_seconds Help.\n# TYPE x_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{m=\"a\\\"b\",le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{m=\"a\\\"b\",le=\"0.00025\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{m=\"a\\\"b\",le=\"0.005\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{m=\"a\\\"b\",le=\"30\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{m=\"a\\\"b\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_count{m=\"a\\\"b\"} 4\n"), "{text}");
        let sum: f64 = text
            .lines()
            .find(|l| l.starts_with("x_seconds_sum"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 100.00421).abs() < 1e-9, "{sum}");
        assert_eq!(bounds_for("dawn_message_size_bytes"), Some(BYTES_BUCKETS));
        assert_eq!(bounds_for("dawn_things"), None);
    }
}
