#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Behaviour of the resilience mechanisms, with time driven by tokio's paused
//! clock (no sleeps).

mod bulkhead;
mod circuit_breaker;
mod config;
mod dial_backoff;
mod rate_limit;
mod retry;

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Mutex,
    task::{Context, Poll},
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Metric identity: name and sorted labels.
type MetricId = (String, Vec<(String, String)>);

/// Metrics recorded by the code under test, readable by name and labels.
///
/// The debugging recorder resets values when read, so reads are accumulated
/// here (counters and increment-only-used gauges add up correctly).
pub struct Recorded {
    recorder: DebuggingRecorder,
    snapshotter: Snapshotter,
    totals: Mutex<HashMap<MetricId, f64>>,
}

impl Default for Recorded {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorded {
    /// An empty recorder.
    pub fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        Recorded {
            recorder,
            snapshotter,
            totals: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` with this recorder as the thread's recorder.
    pub fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// Polls `future` with this recorder as the thread's recorder.
    pub async fn during_async<F: Future>(&self, future: F) -> F::Output {
        struct WithRecorder<'a, F> {
            recorder: &'a DebuggingRecorder,
            future: Pin<Box<F>>,
        }
        impl<F: Future> Future for WithRecorder<'_, F> {
            type Output = F::Output;
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
                let recorder = self.recorder;
                metrics::with_local_recorder(recorder, || self.future.as_mut().poll(cx))
            }
        }
        WithRecorder {
            recorder: &self.recorder,
            future: Box::pin(future),
        }
        .await
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut totals = self.totals.lock().unwrap();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut key_labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            key_labels.sort();
            #[allow(clippy::cast_precision_loss)]
            let delta = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(v) => v.0,
                DebugValue::Histogram(_) => continue,
            };
            *totals
                .entry((key.name().to_owned(), key_labels))
                .or_default() += delta;
        }
        let mut wanted: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wanted.sort();
        totals
            .get(&(name.to_owned(), wanted))
            .copied()
            .unwrap_or(0.0)
    }

    /// A counter's value (0 when never incremented).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.value(name, labels) as u64
    }

    /// A gauge's value (0 when never changed).
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
    }
}
